/* The Kubernetes API client: one libcurl multi on the loop, bearer tokens
 * read again when their file changes or after a 401, one-shot calls, and
 * list+watch loops that follow resourceVersion. */
#include "common/kube.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/err.h"
#include "common/hash.h"
#include "common/http_multi.h"
#include "common/log.h"

#define KUBE_LIST_LIMIT	     500
#define KUBE_CONNECT_S	     10
#define KUBE_TOKEN_MAX	     (64u << 10)
#define KUBE_WATCH_GRACE_S   30 /* past timeoutSeconds before the client gives up */
#define KUBE_IDLE_TIMEOUT_MS 0

struct kube {
	uv_loop_t *loop;
	struct http_multi *multi;
	struct kube_config cfg;
	char *token; /* what is sent now */
	struct timespec token_mtime;
	off_t token_size;
	uint64_t rng;
	struct kube_call *calls;
	struct kube_watch *watches;
	int open_handles; /* watch timers whose close callback has not run */
	int freeing;
};

struct kube_call {
	struct kube *k;
	CURL *easy;
	struct curl_slist *hdrs;
	struct buf resp;
	char *method, *url, *ctype, *body;
	kube_call_cb cb;
	void *arg;
	int token_retried;
	int too_big;
	struct kube_call *prev, *next;
};

enum watch_phase { W_IDLE, W_LIST, W_WATCH };

struct kube_watch {
	struct kube *k;
	char *path, *query;
	const struct kube_watch_ops *ops;
	void *arg;
	enum watch_phase phase;
	CURL *easy;
	struct curl_slist *hdrs;
	struct buf in;	    /* LIST: the body; WATCH: bytes of a line not yet ended */
	struct buf pending; /* WATCH: complete lines waiting for the timer */
	char *rv;	    /* resourceVersion to watch from */
	char *cont;	    /* LIST: continue token of the next page */
	int relist;	    /* a 410 arrived: list again */
	int too_big;
	int token_retried;
	long last_error; /* code of the last failure reported, 0 after a success */
	unsigned backoff_ms;
	uint64_t lists;
	uv_timer_t timer; /* backoff, and delivering pending lines */
	int stopped;
	int in_event; /* inside ops->event */
	struct kube_watch *prev, *next;
};

/* ---- helpers ---- */

void kube_query_escape(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			buf_append(b, s, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			buf_append(b, e, 3);
		}
	}
}

#define KUBE_NAME_MAX	    63
#define KUBE_KEY_PREFIX_MAX 50
#define KUBE_KEY_HASH_HEX   12

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

static int alnum(char c)
{
	return name_char(c) && c != '-' && c != '_' && c != '.';
}

int kube_label_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > KUBE_NAME_MAX || !alnum(s[0]) || !alnum(s[n - 1]))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return 0;
	return 1;
}

/* 1 when s ends in "." and KUBE_KEY_HASH_HEX lowercase hex digits, the form
 * of a mapped key. */
static int looks_mapped(const char *s)
{
	size_t n = strlen(s);
	if (n < KUBE_KEY_HASH_HEX + 1 || s[n - KUBE_KEY_HASH_HEX - 1] != '.')
		return 0;
	for (size_t i = n - KUBE_KEY_HASH_HEX; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

char *kube_dataset_key(const char *name)
{
	if (kube_label_name_ok(name) && !looks_mapped(name))
		return xstrdup(name);
	struct buf b = BUF_INIT;
	for (const char *p = name; *p && b.len < KUBE_KEY_PREFIX_MAX; p++)
		if (name_char(*p) && (b.len || alnum(*p)))
			buf_append(&b, p, 1);
	while (b.len && !alnum((char)b.ptr[b.len - 1]))
		b.len--;
	struct hash_id h;
	hash_sha256(name, strlen(name), &h);
	char hex[2 * HASH_LEN + 1];
	hash_to_hex(&h, hex);
	buf_printf(&b, "%s.%.*s", b.len ? "" : "x", KUBE_KEY_HASH_HEX, hex);
	return buf_steal(&b);
}

void kube_time_now(char out[32])
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

const char *kube_namespace(const struct kube *k)
{
	return k->cfg.namespace;
}

/* Reads the token file when it changed (or when force is set). */
static void token_refresh(struct kube *k, int force)
{
	if (!k->cfg.token_file)
		return;
	struct stat st;
	if (stat(k->cfg.token_file, &st) < 0) {
		log_warn("kubernetes: token file %s: %s", k->cfg.token_file, strerror(errno));
		return;
	}
	if (!force && k->token && st.st_mtim.tv_sec == k->token_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == k->token_mtime.tv_nsec && st.st_size == k->token_size)
		return;
	struct buf b = BUF_INIT;
	int rc = buf_read_file(k->cfg.token_file, KUBE_TOKEN_MAX, &b);
	if (rc == 0) {
		while (b.len && (b.ptr[b.len - 1] == '\n' || b.ptr[b.len - 1] == '\r' ||
				 b.ptr[b.len - 1] == ' '))
			b.len--;
		free(k->token);
		k->token = xstrndup(b.ptr ? (const char *)b.ptr : "", b.len);
		k->token_mtime = st.st_mtim;
		k->token_size = st.st_size;
	} else {
		log_warn("kubernetes: token file %s: %s", k->cfg.token_file, sb_strerror(rc));
	}
	buf_close(&b);
}

/* A new easy handle for url with TLS, credentials and headers set. */
static CURL *easy_for(struct kube *k, const char *url, struct curl_slist **hdrs, const char *accept)
{
	CURL *e = curl_easy_init();
	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)KUBE_CONNECT_S);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
	if (k->cfg.ca.len) {
		struct curl_blob ca = {k->cfg.ca.ptr, k->cfg.ca.len, CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
	}
	if (k->cfg.cert.len && k->cfg.key.len) {
		struct curl_blob cert = {k->cfg.cert.ptr, k->cfg.cert.len, CURL_BLOB_COPY};
		struct curl_blob key = {k->cfg.key.ptr, k->cfg.key.len, CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
		curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
		curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
	}
	token_refresh(k, 0);
	const char *token = k->token ? k->token : k->cfg.token;
	*hdrs = curl_slist_append(NULL, accept);
	if (token && *token) {
		char *h = xasprintf("Authorization: Bearer %s", token);
		*hdrs = curl_slist_append(*hdrs, h);
		free(h);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, *hdrs);
	return e;
}

static long response_code(CURL *e)
{
	long code = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

/* The message of a Status object, or the transport's. */
static char *describe(const char *what, long code, json_t *body, CURLcode rc)
{
	const char *msg = json_string_value(json_object_get(body, "message"));
	if (rc != CURLE_OK && code == 0)
		return xasprintf("%s: %s", what, curl_easy_strerror(rc));
	if (msg)
		return xasprintf("%s: HTTP %ld: %s", what, code, msg);
	return xasprintf("%s: HTTP %ld", what, code);
}

static uint64_t jitter(struct kube *k, unsigned ms)
{
	k->rng ^= k->rng << 13;
	k->rng ^= k->rng >> 7;
	k->rng ^= k->rng << 17;
	return ms / 2 + k->rng % (ms / 2 + 1);
}

/* ---- calls ---- */

static size_t call_write(char *p, size_t size, size_t n, void *arg)
{
	struct kube_call *c = arg;
	if (c->resp.len + size * n > KUBE_BODY_MAX) {
		c->too_big = 1;
		return 0;
	}
	buf_append(&c->resp, p, size * n);
	return size * n;
}

static void call_done(CURL *easy, CURLcode rc, void *arg);

static int call_start(struct kube_call *c)
{
	struct kube *k = c->k;
	c->easy = easy_for(k, c->url, &c->hdrs, "Accept: application/json");
	if (!c->easy)
		return SB_EHTTP;
	curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, c->method);
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT, (long)KUBE_CALL_TIMEOUT_S);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, call_write);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
	if (c->body) {
		char *ct = xasprintf("Content-Type: %s", c->ctype ? c->ctype : "application/json");
		c->hdrs = curl_slist_append(c->hdrs, ct);
		free(ct);
		curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->hdrs);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
	}
	buf_reset(&c->resp);
	return http_multi_add(k->multi, c->easy, call_done, c) < 0 ? SB_EHTTP : 0;
}

static void call_release(struct kube_call *c)
{
	if (c->easy) {
		http_multi_remove(c->k->multi, c->easy);
		curl_easy_cleanup(c->easy);
	}
	curl_slist_free_all(c->hdrs);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->k->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	buf_close(&c->resp);
	free(c->method);
	free(c->url);
	free(c->ctype);
	free(c->body);
	free(c);
}

static void call_done(CURL *easy, CURLcode rc, void *arg)
{
	struct kube_call *c = arg;
	long code = response_code(easy);
	curl_easy_cleanup(easy);
	c->easy = NULL;
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	if (code == 401 && !c->token_retried && c->k->cfg.token_file) {
		c->token_retried = 1;
		token_refresh(c->k, 1);
		if (call_start(c) == 0)
			return;
	}
	json_t *body =
	    c->resp.len ? json_loadb((const char *)c->resp.ptr, c->resp.len, 0, NULL) : NULL;
	int status = 0;
	char *detail = NULL;
	if (c->too_big) {
		status = SB_ETOOBIG;
		detail = xasprintf("%s %s: answer larger than %u bytes", c->method, c->url,
				   KUBE_BODY_MAX);
	} else if (rc != CURLE_OK || code < 200 || code > 299) {
		char *what = xasprintf("%s %s", c->method, c->url);
		status = code ? http_status_error(code) : SB_EHTTP;
		detail = describe(what, code, body, rc);
		free(what);
	}
	c->cb(status, code, body, detail, c->arg);
	json_decref(body);
	free(detail);
	call_release(c);
}

struct kube_call *kube_call(struct kube *k, const char *method, const char *path,
			    const char *content_type, const char *body, kube_call_cb cb, void *arg)
{
	struct kube_call *c = xcalloc(1, sizeof *c);
	c->k = k;
	c->method = xstrdup(method);
	c->url = xasprintf("%s%s", k->cfg.server, path);
	c->ctype = content_type ? xstrdup(content_type) : NULL;
	c->body = body ? xstrdup(body) : NULL;
	c->cb = cb;
	c->arg = arg;
	c->next = k->calls;
	if (k->calls)
		k->calls->prev = c;
	k->calls = c;
	if (call_start(c) < 0) {
		call_release(c);
		return NULL;
	}
	return c;
}

void kube_call_cancel(struct kube_call *c)
{
	if (c)
		call_release(c);
}

/* ---- watches ---- */

static void watch_next(struct kube_watch *w, unsigned delay_ms);
static void on_watch_timer(uv_timer_t *t);

static void emit(struct kube_watch *w, enum kube_event ev, json_t *obj)
{
	w->in_event++;
	w->ops->event(w, ev, obj, w->arg);
	w->in_event--;
}

static void set_rv(struct kube_watch *w, json_t *obj)
{
	const char *rv =
	    json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	if (rv && *rv) {
		free(w->rv);
		w->rv = xstrdup(rv);
	}
}

static void report(struct kube_watch *w, long code, const char *detail)
{
	if (code == w->last_error)
		return;
	w->last_error = code;
	if (w->ops->error)
		w->ops->error(w, code, detail, w->arg);
	else
		log_warn("kubernetes: %s", detail);
}

static unsigned backoff(struct kube_watch *w)
{
	unsigned ms = w->backoff_ms ? w->backoff_ms : KUBE_BACKOFF_MIN_MS;
	w->backoff_ms = ms * 2 > KUBE_BACKOFF_MAX_MS ? KUBE_BACKOFF_MAX_MS : ms * 2;
	return (unsigned)jitter(w->k, ms);
}

/* One line of a watch stream; 0, or 1 when the watch must end (410). */
static int watch_line(struct kube_watch *w, const char *line, size_t n)
{
	json_t *ev = json_loadb(line, n, 0, NULL);
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");
	int end = 0;
	if (!type || !json_is_object(obj)) {
		log_warn("kubernetes: watch %s: malformed event ignored", w->path);
	} else if (!strcmp(type, "BOOKMARK")) {
		set_rv(w, obj);
	} else if (!strcmp(type, "ERROR")) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		if (code == 410)
			w->relist = 1;
		else
			log_warn("kubernetes: watch %s: %s", w->path,
				 json_string_value(json_object_get(obj, "message"))
				     ? json_string_value(json_object_get(obj, "message"))
				     : "error event");
		end = 1;
	} else {
		enum kube_event e = !strcmp(type, "ADDED")	? KUBE_ADDED
				    : !strcmp(type, "MODIFIED") ? KUBE_MODIFIED
				    : !strcmp(type, "DELETED")	? KUBE_DELETED
								: KUBE_RESET;
		set_rv(w, obj);
		if (e != KUBE_RESET)
			emit(w, e, obj);
	}
	json_decref(ev);
	return end;
}

/* Delivers the complete lines received so far (from the timer: never from
 * inside libcurl, so callbacks may start calls). */
static void deliver_pending(struct kube_watch *w)
{
	size_t at = 0;
	int end = 0;
	while (!w->stopped && !end && at < w->pending.len) {
		const char *line = (const char *)w->pending.ptr + at;
		const char *nl = memchr(line, '\n', w->pending.len - at);
		size_t n = (size_t)(nl - line);
		end = n > 0 && watch_line(w, line, n);
		at += n + 1;
	}
	buf_reset(&w->pending);
	if (!end || w->stopped || !w->easy)
		return;
	/* An ERROR event ends the watch even if the server keeps the stream. */
	http_multi_remove(w->k->multi, w->easy);
	curl_easy_cleanup(w->easy);
	w->easy = NULL;
	curl_slist_free_all(w->hdrs);
	w->hdrs = NULL;
	if (w->relist) {
		w->relist = 0;
		w->phase = W_LIST;
		watch_next(w, 0);
	} else {
		watch_next(w, backoff(w));
	}
}

static size_t watch_write(char *p, size_t size, size_t n, void *arg)
{
	struct kube_watch *w = arg;
	size_t len = size * n;
	if (w->phase == W_LIST) {
		if (w->in.len + len > KUBE_BODY_MAX) {
			w->too_big = 1;
			return 0;
		}
		buf_append(&w->in, p, len);
		return len;
	}
	const char *nl = memrchr(p, '\n', len);
	if (!nl) {
		if (w->in.len + len > KUBE_BODY_MAX) {
			w->too_big = 1;
			return 0;
		}
		buf_append(&w->in, p, len);
		return len;
	}
	size_t head = (size_t)(nl - p) + 1;
	buf_append(&w->pending, w->in.ptr, w->in.len);
	buf_append(&w->pending, p, head);
	buf_reset(&w->in);
	buf_append(&w->in, p + head, len - head);
	if (!uv_is_active((uv_handle_t *)&w->timer))
		uv_timer_start(&w->timer, on_watch_timer, 0, 0);
	return len;
}

static void watch_done(CURL *easy, CURLcode rc, void *arg);

static int watch_request(struct kube_watch *w)
{
	struct kube *k = w->k;
	struct buf url = BUF_INIT;
	buf_printf(&url, "%s%s?", k->cfg.server, w->path);
	if (w->query && *w->query)
		buf_printf(&url, "%s&", w->query);
	if (w->phase == W_LIST) {
		buf_printf(&url, "limit=%d", KUBE_LIST_LIMIT);
		if (w->cont) {
			buf_append_str(&url, "&continue=");
			kube_query_escape(&url, w->cont);
		}
	} else {
		buf_printf(&url, "watch=1&allowWatchBookmarks=true&timeoutSeconds=%d",
			   KUBE_WATCH_TIMEOUT_S);
		buf_append_str(&url, "&resourceVersion=");
		kube_query_escape(&url, w->rv ? w->rv : "");
	}
	w->easy = easy_for(k, buf_cstr(&url), &w->hdrs, "Accept: application/json");
	buf_close(&url);
	if (!w->easy)
		return SB_EHTTP;
	curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, watch_write);
	curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(w->easy, CURLOPT_TIMEOUT,
			 (long)(w->phase == W_LIST ? KUBE_CALL_TIMEOUT_S
						   : KUBE_WATCH_TIMEOUT_S + KUBE_WATCH_GRACE_S));
	buf_reset(&w->in);
	w->too_big = 0;
	if (w->phase == W_LIST && !w->cont)
		w->lists++;
	return http_multi_add(k->multi, w->easy, watch_done, w) < 0 ? SB_EHTTP : 0;
}

/* A page of the list arrived: events for its items; 1 when more pages follow. */
static int list_page(struct kube_watch *w, json_t *body)
{
	json_t *items = json_object_get(body, "items"), *it;
	json_t *meta = json_object_get(body, "metadata");
	size_t i;
	if (!w->cont)
		emit(w, KUBE_RESET, NULL);
	json_array_foreach(items, i, it)
	{
		if (w->stopped)
			return 0;
		emit(w, KUBE_ADDED, it);
	}
	const char *cont = json_string_value(json_object_get(meta, "continue"));
	free(w->cont);
	w->cont = cont && *cont ? xstrdup(cont) : NULL;
	if (w->cont)
		return 1;
	set_rv(w, body);
	if (!w->stopped)
		emit(w, KUBE_SYNCED, NULL);
	return 0;
}

/* What follows a finished list request. */
static void list_done(struct kube_watch *w, long code, CURLcode rc)
{
	json_t *body = w->in.len ? json_loadb((const char *)w->in.ptr, w->in.len, 0, NULL) : NULL;
	if (rc == CURLE_OK && code == 200 && json_is_object(body)) {
		w->last_error = 0;
		w->backoff_ms = 0;
		w->token_retried = 0;
		int more = list_page(w, body);
		json_decref(body);
		if (!w->stopped) {
			w->phase = more ? W_LIST : W_WATCH;
			watch_next(w, 0);
		}
		return;
	}
	free(w->cont); /* a continue token that expired (410) starts over */
	w->cont = NULL;
	char *what = xasprintf("list %s", w->path);
	char *detail = w->too_big
			   ? xasprintf("%s: answer larger than %u bytes", what, KUBE_BODY_MAX)
			   : describe(what, code, body, rc);
	free(what);
	json_decref(body);
	if (code == 401 && !w->token_retried && w->k->cfg.token_file) {
		w->token_retried = 1;
		token_refresh(w->k, 1);
		free(detail);
		watch_next(w, 0);
		return;
	}
	report(w, code ? code : -1, detail);
	free(detail);
	watch_next(w, backoff(w));
}

static void watch_done(CURL *easy, CURLcode rc, void *arg)
{
	struct kube_watch *w = arg;
	long code = response_code(easy);
	curl_easy_cleanup(easy);
	w->easy = NULL;
	curl_slist_free_all(w->hdrs);
	w->hdrs = NULL;
	if (w->phase == W_LIST) {
		list_done(w, code, rc);
		return;
	}
	deliver_pending(w);
	if (w->stopped)
		return;
	if (w->relist || code == 410) {
		log_debug("kubernetes: watch %s: resourceVersion %s expired; listing again",
			  w->path, w->rv ? w->rv : "");
		w->relist = 0;
		w->phase = W_LIST;
		watch_next(w, 0);
		return;
	}
	if (code == 200 && (rc == CURLE_OK || rc == CURLE_OPERATION_TIMEDOUT)) {
		w->backoff_ms = 0; /* the server ended the watch: resume at once */
		w->token_retried = 0;
		w->last_error = 0;
		watch_next(w, 0);
		return;
	}
	if (code == 200 && !w->too_big) {
		/* The stream broke (an API server restart, a proxy): resume from
		 * the last resourceVersion, after a short pause. */
		log_debug("kubernetes: watch %s: stream ended: %s", w->path,
			  curl_easy_strerror(rc));
		w->backoff_ms = 0;
		watch_next(w, backoff(w));
		return;
	}
	if (code == 401 && !w->token_retried && w->k->cfg.token_file) {
		w->token_retried = 1;
		token_refresh(w->k, 1);
		watch_next(w, 0);
		return;
	}
	char *what = xasprintf("watch %s", w->path);
	char *detail = describe(what, code, NULL, rc);
	report(w, code ? code : -1, detail);
	free(what);
	free(detail);
	watch_next(w, backoff(w));
}

static void on_watch_timer(uv_timer_t *t)
{
	struct kube_watch *w = t->data;
	if (w->pending.len) {
		deliver_pending(w);
		return;
	}
	if (w->stopped || w->easy)
		return;
	if (watch_request(w) < 0)
		watch_next(w, backoff(w));
}

static void watch_next(struct kube_watch *w, unsigned delay_ms)
{
	if (w->stopped)
		return;
	uv_timer_start(&w->timer, on_watch_timer, delay_ms, 0);
}

struct kube_watch *kube_watch_start(struct kube *k, const char *path, const char *query,
				    const struct kube_watch_ops *ops, void *arg)
{
	struct kube_watch *w = xcalloc(1, sizeof *w);
	w->k = k;
	w->path = xstrdup(path);
	w->query = query ? xstrdup(query) : NULL;
	w->ops = ops;
	w->arg = arg;
	w->phase = W_LIST;
	uv_timer_init(k->loop, &w->timer);
	w->timer.data = w;
	k->open_handles++;
	w->next = k->watches;
	if (k->watches)
		k->watches->prev = w;
	k->watches = w;
	watch_next(w, 0);
	return w;
}

uint64_t kube_watch_lists(const struct kube_watch *w)
{
	return w->lists;
}

static void kube_release(struct kube *k);

static void watch_closed(uv_handle_t *h)
{
	struct kube_watch *w = h->data;
	struct kube *k = w->k;
	buf_close(&w->in);
	buf_close(&w->pending);
	free(w->path);
	free(w->query);
	free(w->rv);
	free(w->cont);
	free(w);
	if (--k->open_handles == 0 && k->freeing)
		kube_release(k);
}

void kube_watch_stop(struct kube_watch *w)
{
	if (!w || w->stopped)
		return;
	struct kube *k = w->k;
	w->stopped = 1;
	if (w->easy) {
		http_multi_remove(k->multi, w->easy);
		curl_easy_cleanup(w->easy);
		w->easy = NULL;
	}
	curl_slist_free_all(w->hdrs);
	w->hdrs = NULL;
	if (w->prev)
		w->prev->next = w->next;
	else
		k->watches = w->next;
	if (w->next)
		w->next->prev = w->prev;
	uv_close((uv_handle_t *)&w->timer, watch_closed);
}

/* ---- the client ---- */

int kube_new(uv_loop_t *loop, const struct kube_config *cfg, struct kube **out)
{
	struct kube *k = xcalloc(1, sizeof *k);
	k->loop = loop;
	if (http_multi_new(loop, &k->multi) < 0) {
		free(k);
		return SB_EHTTP;
	}
	k->cfg.server = xstrdup(cfg->server);
	buf_append(&k->cfg.ca, cfg->ca.ptr, cfg->ca.len);
	buf_append(&k->cfg.cert, cfg->cert.ptr, cfg->cert.len);
	buf_append(&k->cfg.key, cfg->key.ptr, cfg->key.len);
	k->cfg.token = cfg->token ? xstrdup(cfg->token) : NULL;
	k->cfg.token_file = cfg->token_file ? xstrdup(cfg->token_file) : NULL;
	k->cfg.namespace = cfg->namespace ? xstrdup(cfg->namespace) : NULL;
	k->cfg.source = cfg->source ? xstrdup(cfg->source) : NULL;
	k->rng = (uint64_t)uv_hrtime() | 1;
	*out = k;
	return 0;
}

static void kube_release(struct kube *k)
{
	http_multi_free(k->multi);
	kube_config_close(&k->cfg);
	free(k->token);
	free(k);
}

void kube_free(struct kube *k)
{
	if (!k)
		return;
	k->freeing = 1;
	for (struct kube_call *c = k->calls, *next; c; c = next) {
		next = c->next;
		call_release(c);
	}
	while (k->watches)
		kube_watch_stop(k->watches);
	if (k->open_handles == 0)
		kube_release(k);
}
