/* The transfer side of the hub sources: see source_hub.h. Every request
 * (an API call, a ranged read, the listing itself) is a struct hub_req on
 * one of three lists: active (running or waiting to retry), held (a read
 * whose bytes arrived but wait for the bytes before them to be hashed) and
 * done (callbacks still to run, from the `wake` timer). */
#include "common/source_hub.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/err.h"
#include "common/http_multi.h"
#include "common/log.h"
#include "common/path.h"

#define ERROR_BODY_MAX	(64u << 10) /* error page kept for its message */
#define RANGE_SPEC_MAX	48
#define HEADER_LINE_MAX (HUB_URL_MAX + 64)
#define DIGEST_MAX	32

enum req_kind { REQ_LIST, REQ_API, REQ_RANGE };
enum req_state { ST_IDLE, ST_RUNNING, ST_WAITING, ST_HELD, ST_HASHING, ST_DONE };

struct req_list {
	struct hub_req *head, *tail;
};

/* Headers that only some hops of a redirect chain carry. */
struct hub_hdrs {
	int responses; /* final (non-1xx) status lines seen */
	char error_code[HUB_ERROR_CODE_MAX];
	char error_message[HUB_MESSAGE_MAX];
	char next[HUB_URL_MAX];
	char repo_commit[64];
	char linked_etag[HTTP_ETAG_MAX];
	char first_etag[HTTP_ETAG_MAX]; /* ETag of the hub's own (first) answer */
};

struct hub_req {
	struct hub_req *prev, *next;
	struct req_list *on;
	struct hub_impl *hi;
	enum req_kind kind;
	enum req_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct http_resp resp;
	struct hub_hdrs hx;
	char errbuf[CURL_ERROR_SIZE];
	uint64_t due, last_io;
	unsigned failures;
	int checked, discard, verdict;
	int status;
	char *detail;
	/* REQ_API */
	char *url;
	struct buf body;
	hub_json_cb jcb;
	/* REQ_RANGE */
	size_t index;
	uint64_t off;
	size_t len, got;
	uint8_t *buf;
	uint64_t count; /* bytes of this attempt */
	int canceled;	/* while hashing: deliver SB_ECANCELED */
	/* REQ_LIST and REQ_RANGE */
	source_done_cb cb;
	void *arg;
};

enum verify_state { V_ACTIVE, V_OFF, V_OK, V_BAD };

struct hub_file {
	char *url;
	char *etag;
	enum hub_check check;
	uint8_t want[DIGEST_MAX];
};

/* The digest check of one file. */
struct verify {
	enum verify_state state;
	EVP_MD_CTX *ctx;
	uint64_t hashed; /* bytes [0, hashed) are in ctx */
	uint64_t asked;	 /* reads asked for cover [0, asked) */
	struct req_list held;
	struct req_list batch; /* being hashed on the pool */
	uv_work_t work;
	size_t index;
	struct hub_impl *hi;
};

struct pending_file {
	struct source_file f;
	struct hub_file x;
};

struct hub_impl {
	struct hub pub;
	uv_loop_t *loop;
	struct http_multi *multi;
	uv_timer_t wake;
	int closing;
	int works; /* pool jobs running: the memory stays until they end */
	int wake_open;
	uint64_t stall_ms;
	uint64_t rng;
	struct req_list active, done;
	struct hub_req *listing; /* the REQ_LIST in progress */
	int listed;
	struct hub_file *files;	  /* parallel to src->listing.files */
	struct verify **verifies; /* per file, made at its first read */
	size_t nfiles;
	struct pending_file *pend; /* the listing being built */
	size_t npend, cappend;
};

static void start_attempt(struct hub_req *r);
static void verify_release(struct verify *v, int status, const char *detail);
static void retry_or_fail(struct hub_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static struct hub_impl *impl_of(struct source *src)
{
	return ((struct hub *)src->impl)->impl;
}

/* Lists. */

static void list_push(struct req_list *l, struct hub_req *r)
{
	r->on = l;
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

/* Insert keeping l sorted by offset (held reads of one file). */
static void list_insert_sorted(struct req_list *l, struct hub_req *r)
{
	struct hub_req *at = l->head;
	while (at && at->off <= r->off)
		at = at->next;
	if (!at) {
		list_push(l, r);
		return;
	}
	r->on = l;
	r->next = at;
	r->prev = at->prev;
	if (at->prev)
		at->prev->next = r;
	else
		l->head = r;
	at->prev = r;
}

static void list_del(struct hub_req *r)
{
	struct req_list *l = r->on;
	if (!l)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	r->on = NULL;
}

static struct hub_req *req_new(struct hub_impl *hi, enum req_kind kind)
{
	struct hub_req *r = xcalloc(1, sizeof *r);
	r->hi = hi;
	r->kind = kind;
	http_resp_reset(&r->resp);
	return r;
}

static void req_drop_easy(struct hub_req *r)
{
	if (!r->easy)
		return;
	http_multi_remove(r->hi->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
}

static void req_free(struct hub_req *r)
{
	list_del(r);
	req_drop_easy(r);
	curl_slist_free_all(r->hdrs);
	buf_close(&r->body);
	free(r->url);
	free(r->detail);
	free(r);
}

/* The URL without query or credentials: safe in messages. */
static char *shown_url(const char *url)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		curl_url_set(u, CURLUPART_USER, NULL, 0);
		curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		curl_url_set(u, CURLUPART_QUERY, NULL, 0);
		curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
		if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
			out = xstrdup(s);
	}
	curl_free(s);
	curl_url_cleanup(u);
	return out ? out : xstrdup("(malformed URL)");
}

static const char *req_url(const struct hub_req *r)
{
	return r->kind == REQ_API ? r->url : r->hi->files[r->index].url;
}

static void set_detail(struct hub_req *r, const char *fmt, va_list ap)
{
	struct buf b = BUF_INIT;
	char *u = shown_url(req_url(r));
	buf_printf(&b, "%s: GET %s: ", r->hi->pub.name, u);
	buf_vprintf(&b, fmt, ap);
	free(u);
	free(r->detail);
	r->detail = buf_steal(&b);
}

/* Deferred delivery and timers. */

static void on_wake(uv_timer_t *t);

/* Stalls are timed here: curl's low-speed check averages over seconds. */
static int watched(const struct hub_impl *hi, const struct hub_req *r)
{
	return hi->stall_ms && r->state == ST_RUNNING && r->easy;
}

static void wake_arm(struct hub_impl *hi)
{
	if (hi->closing)
		return;
	uint64_t now = uv_now(hi->loop), delay = UINT64_MAX;
	if (hi->done.head) {
		delay = 0;
	} else {
		for (struct hub_req *r = hi->active.head; r; r = r->next) {
			uint64_t at;
			if (r->state == ST_WAITING)
				at = r->due;
			else if (watched(hi, r))
				at = r->last_io + hi->stall_ms;
			else
				continue;
			uint64_t d = at > now ? at - now : 0;
			if (d < delay)
				delay = d;
		}
	}
	if (delay == UINT64_MAX)
		uv_timer_stop(&hi->wake);
	else
		uv_timer_start(&hi->wake, on_wake, delay, 0);
}

static void verify_off(struct verify *v, const char *why);

static void finish(struct hub_req *r, int status)
{
	struct hub_impl *hi = r->hi;
	/* Bytes that never came: reads behind them must not wait for them. */
	if (r->kind == REQ_RANGE && status < 0 && status != SB_ECANCELED && status != SB_ECORRUPT &&
	    hi->verifies && hi->verifies[r->index])
		verify_off(hi->verifies[r->index], "a read failed");
	r->status = status;
	req_drop_easy(r);
	list_del(r);
	r->state = ST_DONE;
	list_push(&hi->done, r);
	wake_arm(hi);
}

static void fail(struct hub_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct hub_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	finish(r, code);
}

static int refuse(struct hub_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct hub_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	r->verdict = code;
	return -1;
}

static void fill_reply(const struct hub_req *r, struct hub_reply *rep, char *shown)
{
	memset(rep, 0, sizeof *rep);
	rep->status = r->resp.status;
	snprintf(rep->error_code, sizeof rep->error_code, "%s", r->hx.error_code);
	snprintf(rep->message, sizeof rep->message, "%s", r->hx.error_message);
	rep->next_url = r->hx.next[0] ? (char *)r->hx.next : NULL;
	rep->shown_url = shown;
}

/* An error page's own words: HF's {"error": …}, ModelScope's {"Message": …}. */
static void take_body_message(struct hub_req *r)
{
	if (r->hx.error_message[0] || !r->body.len)
		return;
	json_t *doc = json_loadb((const char *)r->body.ptr, r->body.len, 0, NULL);
	const char *m = json_string_value(json_object_get(doc, "error"));
	if (!m)
		m = json_string_value(json_object_get(doc, "Message"));
	if (m)
		snprintf(r->hx.error_message, sizeof r->hx.error_message, "%s", m);
	json_decref(doc);
}

static void deliver_api(struct hub_impl *hi, struct hub_req *r)
{
	struct hub_reply rep;
	json_t *doc = NULL;
	char *shown = shown_url(r->url);
	int status = r->status;
	if (status == 0) {
		json_error_t jerr;
		doc = json_loadb((const char *)r->body.ptr, r->body.len, JSON_REJECT_DUPLICATES,
				 &jerr);
		if (!doc) {
			status = SB_EPROTO;
			snprintf(r->hx.error_message, sizeof r->hx.error_message,
				 "malformed JSON (%s at line %d)", jerr.text, jerr.line);
		}
	} else {
		take_body_message(r);
	}
	fill_reply(r, &rep, shown);
	if (status < 0 && r->detail && !rep.message[0])
		snprintf(rep.message, sizeof rep.message, "%s", r->detail);
	hub_json_cb cb = r->jcb;
	void *arg = r->arg;
	cb(&hi->pub, status, doc, &rep, arg);
	json_decref(doc);
	free(shown);
	req_free(r);
}

static void on_wake(uv_timer_t *t)
{
	struct hub_impl *hi = t->data;
	uint64_t now = uv_now(hi->loop);
	struct hub_req *r, *next;
	for (r = hi->active.head; r; r = next) {
		next = r->next;
		if (r->state == ST_WAITING && r->due <= now) {
			start_attempt(r);
		} else if (watched(hi, r) && now - r->last_io >= hi->stall_ms) {
			req_drop_easy(r);
			retry_or_fail(r, SB_ESTALL, "no data for %u s",
				      hi->pub.src->opt.stall_seconds);
		}
	}
	/* A callback may free the source; hi lives until the timer's close
	 * callback (and the last pool job), src does not. */
	while ((r = hi->done.head) && !hi->closing) {
		list_del(r);
		if (r->kind == REQ_API) {
			deliver_api(hi, r);
			continue;
		}
		struct source *src = hi->pub.src;
		source_done_cb cb = r->cb;
		void *arg = r->arg;
		int status = r->status;
		if (status < 0 && r->detail)
			source_set_error(src, "%s", r->detail);
		if (r == hi->listing)
			hi->listing = NULL;
		req_free(r);
		cb(src, status, arg);
	}
	wake_arm(hi);
}

/* Failure handling. */

static void retry_or_fail(struct hub_req *r, int code, const char *fmt, ...)
{
	struct hub_impl *hi = r->hi;
	struct buf what = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&what, fmt, ap);
	va_end(ap);
	int retries = hi->pub.src->opt.retries > 0 ? hi->pub.src->opt.retries : 0;
	r->failures++;
	if (r->failures > (unsigned)retries) {
		fail(r, code, "%s (gave up after %u attempts)", buf_cstr(&what), r->failures);
	} else {
		uint64_t delay = http_backoff_ms(r->failures, r->resp.retry_after, &hi->rng);
		char *u = shown_url(req_url(r));
		log_info("%s: GET %s: %s; retry %u of %d in %" PRIu64 " ms", hi->pub.name, u,
			 buf_cstr(&what), r->failures, retries, delay);
		free(u);
		r->state = ST_WAITING;
		r->due = uv_now(hi->loop) + delay;
		wake_arm(hi);
	}
	buf_close(&what);
}

static void status_failed(struct hub_req *r)
{
	const struct http_resp *p = &r->resp;
	long st = p->status;
	const char *why = r->hx.error_code[0] ? r->hx.error_code : http_resp_reason(p);
	if (r->kind == REQ_RANGE && st == 412) {
		fail(r, SB_ECHANGED, "HTTP 412 %s: the file changed", why);
		return;
	}
	if (r->kind == REQ_RANGE && st == 416 && p->range_unsatisfied && p->range_total >= 0 &&
	    (uint64_t)p->range_total != r->hi->pub.src->listing.files[r->index].size) {
		fail(r, SB_ECHANGED, "size is now %" PRId64 ", the listing said %" PRIu64,
		     p->range_total, r->hi->pub.src->listing.files[r->index].size);
		return;
	}
	/* A signed CDN address may expire: asking the hub again gets a new one. */
	int cdn_expired = r->kind == REQ_RANGE && st == 403 && r->hx.responses > 1;
	if (http_status_retryable(st) || cdn_expired)
		retry_or_fail(r, http_status_error(st), "HTTP %ld %s", st, why);
	else
		fail(r, http_status_error(st), "HTTP %ld %s", st, why);
}

static int attempt_failed(struct hub_req *r, CURLcode rc)
{
	long st = r->resp.status;
	if (r->verdict < 0) {
		finish(r, r->verdict);
		return 1;
	}
	if ((rc == CURLE_OK || rc == CURLE_WRITE_ERROR) && (st < 200 || st >= 300)) {
		status_failed(r);
		return 1;
	}
	if (rc != CURLE_OK) {
		const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
		int code = rc == CURLE_OPERATION_TIMEDOUT ? SB_ESTALL : SB_EHTTP;
		if (http_curl_retryable(rc))
			retry_or_fail(r, code, "%s", why);
		else
			fail(r, code, "%s", why);
		return 1;
	}
	return 0;
}

/* Response headers. */

static void copy_value(char *dst, size_t cap, const char *v)
{
	snprintf(dst, cap, "%s", v);
}

/* Link: <url>; rel="next", <url>; rel="last" */
static void parse_link(struct hub_hdrs *x, const char *v)
{
	while (*v) {
		const char *lt = strchr(v, '<');
		const char *gt = lt ? strchr(lt, '>') : NULL;
		if (!gt)
			return;
		const char *end = strchr(gt, ',');
		size_t plen = end ? (size_t)(end - gt) : strlen(gt);
		char params[256];
		snprintf(params, sizeof params, "%.*s", (int)plen, gt + 1);
		if (strcasestr(params, "rel=\"next\"") || strcasestr(params, "rel=next")) {
			size_t n = (size_t)(gt - lt - 1);
			if (n < sizeof x->next)
				snprintf(x->next, sizeof x->next, "%.*s", (int)n, lt + 1);
			return;
		}
		if (!end)
			return;
		v = end + 1;
	}
}

static void hub_header(struct hub_req *r, const char *line, size_t n)
{
	char tmp[HEADER_LINE_MAX];
	struct hub_hdrs *x = &r->hx;
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	if (n == 0 || n >= sizeof tmp)
		return;
	memcpy(tmp, line, n);
	tmp[n] = '\0';
	if (strncmp(tmp, "HTTP/", 5) == 0) {
		const char *sp = strchr(tmp, ' ');
		if (sp && sp[1] != '1')
			x->responses++;
		/* Only the final answer's error and pagination count. */
		x->error_code[0] = x->error_message[0] = x->next[0] = '\0';
		return;
	}
	char *colon = strchr(tmp, ':');
	if (!colon)
		return;
	*colon = '\0';
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	for (char *e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t');)
		*--e = '\0';
	if (!strcasecmp(tmp, "x-error-code"))
		copy_value(x->error_code, sizeof x->error_code, v);
	else if (!strcasecmp(tmp, "x-error-message"))
		copy_value(x->error_message, sizeof x->error_message, v);
	else if (!strcasecmp(tmp, "link"))
		parse_link(x, v);
	else if (!strcasecmp(tmp, "x-repo-commit"))
		copy_value(x->repo_commit, sizeof x->repo_commit, v);
	else if (!strcasecmp(tmp, "x-linked-etag"))
		copy_value(x->linked_etag, sizeof x->linked_etag, v);
	else if (!strcasecmp(tmp, "etag") && x->responses == 1)
		copy_value(x->first_etag, sizeof x->first_etag, v);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hub_req *r = arg;
	r->last_io = uv_now(r->hi->loop);
	http_resp_header(&r->resp, data, size * nmemb);
	hub_header(r, data, size * nmemb);
	return size * nmemb;
}

/* API calls. */

static size_t on_api_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hub_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->hi->loop);
	if (!r->checked) {
		r->checked = 1;
		r->discard = r->resp.status < 200 || r->resp.status >= 300;
		if (!r->discard && r->resp.content_length > (int64_t)HUB_API_BODY_MAX) {
			refuse(r, SB_ETOOBIG, "answer of %" PRId64 " bytes (limit %u)",
			       r->resp.content_length, HUB_API_BODY_MAX);
			return 0;
		}
	}
	size_t limit = r->discard ? ERROR_BODY_MAX : HUB_API_BODY_MAX;
	if (r->body.len + n > limit) {
		if (r->discard)
			return 0; /* enough of the error page */
		refuse(r, SB_ETOOBIG, "answer larger than %u bytes", HUB_API_BODY_MAX);
		return 0;
	}
	buf_append(&r->body, data, n);
	return n;
}

static void api_done(struct hub_req *r, CURLcode rc)
{
	if (r->discard && rc == CURLE_WRITE_ERROR)
		rc = CURLE_OK; /* the error page was cut short on purpose */
	if (attempt_failed(r, rc))
		return;
	finish(r, 0);
}

/* Ranged reads. */

static const struct source_file *req_file(const struct hub_req *r)
{
	return &r->hi->pub.src->listing.files[r->index];
}

/* Every answer must describe the listed version of the file. */
static int check_version(struct hub_req *r)
{
	struct hub_impl *hi = r->hi;
	const struct hub_file *x = &hi->files[r->index];
	const char *version = hi->pub.src->listing.version;
	char got[HTTP_ETAG_MAX];
	if (r->hx.repo_commit[0] && version && hub_is_hex(version, strlen(version)) &&
	    strcmp(r->hx.repo_commit, version) != 0)
		return refuse(r, SB_ECHANGED, "served from commit %s, not %s", r->hx.repo_commit,
			      version);
	const char *tag = r->hx.linked_etag[0] ? r->hx.linked_etag : r->hx.first_etag;
	if (x->etag && tag[0]) {
		http_etag_opaque(tag, got, sizeof got);
		if (strcmp(got, x->etag) != 0)
			return refuse(r, SB_ECHANGED, "ETag %s, the listing said %s", got, x->etag);
	}
	return 0;
}

static int range_check(struct hub_req *r)
{
	const struct http_resp *p = &r->resp;
	uint64_t size = req_file(r)->size;
	uint64_t first = r->off + r->got, last = r->off + r->len - 1;
	if (p->status < 200 || p->status >= 300) {
		r->discard = 1;
		return 0;
	}
	if (check_version(r) < 0)
		return -1;
	if (p->status == 200) {
		if (first == 0 && r->len == size &&
		    (p->content_length < 0 || (uint64_t)p->content_length == size))
			return 0;
		return refuse(r, SB_EHTTP,
			      "server ignored the range bytes=%" PRIu64 "-%" PRIu64 " (HTTP 200)",
			      first, last);
	}
	if (p->status != 206)
		return refuse(r, SB_EHTTP, "unexpected HTTP %ld %s", p->status,
			      http_resp_reason(p));
	if (!p->has_range || p->range_unsatisfied)
		return refuse(r, SB_EPROTO, "HTTP 206 without a Content-Range");
	if (p->range_total >= 0 && (uint64_t)p->range_total != size)
		return refuse(r, SB_ECHANGED, "size is now %" PRId64 ", the listing said %" PRIu64,
			      p->range_total, size);
	if (p->range_first != first || p->range_last > last)
		return refuse(r, SB_EPROTO,
			      "asked for bytes %" PRIu64 "-%" PRIu64 ", got %" PRIu64 "-%" PRIu64,
			      first, last, p->range_first, p->range_last);
	return 0;
}

static size_t on_range_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hub_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->hi->loop);
	if (!r->checked) {
		r->checked = 1;
		if (range_check(r) < 0)
			return 0;
	}
	if (r->discard)
		return 0; /* the status says enough */
	if (n > r->len - r->got) {
		refuse(r, SB_EPROTO, "server sent more than the %zu bytes asked for", r->len);
		return 0;
	}
	memcpy(r->buf + r->got, data, n);
	r->got += n;
	r->count += n;
	r->hi->pub.src->bytes_read += n;
	return n;
}

static void verify_landed(struct hub_req *r);

static void range_done(struct hub_req *r, CURLcode rc)
{
	if (r->discard && rc == CURLE_WRITE_ERROR)
		rc = CURLE_OK;
	if (attempt_failed(r, rc))
		return;
	if (!r->checked) {
		r->checked = 1;
		if (range_check(r) < 0) {
			finish(r, r->verdict);
			return;
		}
	}
	if (r->got == r->len) {
		verify_landed(r);
		return;
	}
	if (r->count > 0)
		start_attempt(r); /* a clean but short answer: ask for the rest */
	else
		retry_or_fail(r, SB_EHTTP, "response ended %zu bytes short", r->len - r->got);
}

/* Transfers. */

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
	struct hub_req *r = arg;
	curl_easy_cleanup(easy);
	r->easy = NULL;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	if (r->kind == REQ_API)
		api_done(r, rc);
	else
		range_done(r, rc);
}

static void add_header(struct hub_req *r, const char *line)
{
	struct curl_slist *l = curl_slist_append(r->hdrs, line);
	if (!l)
		fatal("out of memory");
	r->hdrs = l;
}

static void start_attempt(struct hub_req *r)
{
	struct hub_impl *hi = r->hi;
	struct source *src = hi->pub.src;
	char range[RANGE_SPEC_MAX];
	CURL *e = curl_easy_init();
	if (!e) {
		fail(r, -ENOMEM, "cannot create a transfer");
		return;
	}
	http_easy_defaults(e, src->opt.connect_seconds, src->opt.stall_seconds);
	curl_easy_setopt(e, CURLOPT_URL, req_url(r));
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r);
	r->errbuf[0] = '\0';
	http_resp_reset(&r->resp);
	memset(&r->hx, 0, sizeof r->hx);
	r->checked = r->discard = r->verdict = 0;
	r->count = 0;
	buf_reset(&r->body);
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	/* libcurl keeps custom Authorization and Cookie headers from other
	 * hosts a redirect leads to (the CDN never sees the token). */
	if (hi->pub.auth)
		add_header(r, hi->pub.auth);
	if (r->kind == REQ_API) {
		add_header(r, "Accept: application/json");
		curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_api_body);
	} else {
		snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, r->off + r->got,
			 r->off + r->len - 1);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_range_body);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	r->easy = e;
	r->state = ST_RUNNING;
	r->last_io = uv_now(hi->loop);
	int rc = http_multi_add(hi->multi, e, on_done, r);
	if (rc < 0) {
		curl_easy_cleanup(e);
		r->easy = NULL;
		fail(r, rc, "cannot start the transfer");
		return;
	}
	wake_arm(hi);
}

int hub_get_json(struct hub *h, const char *url, hub_json_cb cb, void *arg)
{
	struct hub_impl *hi = h->impl;
	if (hi->closing)
		return SB_ECANCELED;
	if (strlen(url) >= HUB_URL_MAX)
		return SB_ETOOBIG;
	struct hub_req *r = req_new(hi, REQ_API);
	r->url = xstrdup(url);
	r->jcb = cb;
	r->arg = arg;
	list_push(&hi->active, r);
	start_attempt(r);
	return 0;
}

/* Digest checks. */

static const EVP_MD *check_md(enum hub_check c)
{
	return c == HUB_CHECK_SHA256 ? EVP_sha256() : EVP_sha1();
}

static size_t check_len(enum hub_check c)
{
	return c == HUB_CHECK_SHA256 ? 32 : 20;
}

static const char *check_name(enum hub_check c)
{
	return c == HUB_CHECK_SHA256 ? "SHA-256" : "git blob id";
}

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static void digest_start(EVP_MD_CTX *ctx, enum hub_check c, uint64_t size)
{
	if (!EVP_DigestInit_ex(ctx, check_md(c), NULL))
		fatal("EVP_DigestInit_ex failed");
	if (c == HUB_CHECK_GIT_BLOB) {
		char head[40];
		int n = snprintf(head, sizeof head, "blob %" PRIu64, size);
		EVP_DigestUpdate(ctx, head, (size_t)n + 1); /* with its NUL */
	}
}

/* 1 when the digest in ctx is the one the hub lists; got gets its hex. */
static int digest_matches(EVP_MD_CTX *ctx, const struct hub_file *x, char *got)
{
	uint8_t d[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	EVP_DigestFinal_ex(ctx, d, &n);
	hex_encode(d, n, got);
	return n == check_len(x->check) && memcmp(d, x->want, n) == 0;
}

static struct verify *verify_get(struct hub_impl *hi, size_t index)
{
	const struct hub_file *x = &hi->files[index];
	if (x->check == HUB_CHECK_NONE)
		return NULL;
	if (!hi->verifies[index]) {
		struct verify *v = xcalloc(1, sizeof *v);
		v->hi = hi;
		v->index = index;
		v->ctx = EVP_MD_CTX_new();
		if (!v->ctx)
			fatal("out of memory");
		digest_start(v->ctx, x->check, hi->pub.src->listing.files[index].size);
		hi->verifies[index] = v;
	}
	return hi->verifies[index];
}

static void verify_free(struct verify *v)
{
	if (!v)
		return;
	EVP_MD_CTX_free(v->ctx);
	free(v);
}

/* Give up checking this file; what waits goes on unchecked. */
static void verify_off(struct verify *v, const char *why)
{
	if (v->state != V_ACTIVE)
		return;
	v->state = V_OFF;
	log_info("%s: %s: whole-file digest not checked here (%s)", v->hi->pub.name,
		 v->hi->pub.src->listing.files[v->index].path, why);
	verify_release(v, 0, NULL);
}

/* Finish r with status and, when it fails, detail (copied). */
static void finish_detail(struct hub_req *r, int status, const char *detail)
{
	if (status < 0 && detail) {
		free(r->detail);
		r->detail = xstrdup(detail);
	}
	finish(r, status);
}

/* Finish every held read of v with status. */
static void verify_release(struct verify *v, int status, const char *detail)
{
	struct hub_req *r;
	while ((r = v->held.head)) {
		list_del(r);
		finish_detail(r, status, detail);
	}
}

static void hash_work(uv_work_t *w)
{
	struct verify *v = w->data;
	for (struct hub_req *r = v->batch.head; r; r = r->next) {
		uint64_t end = r->off + r->len;
		if (end <= v->hashed)
			continue; /* a re-read of bytes already hashed */
		size_t skip = (size_t)(v->hashed - r->off);
		EVP_DigestUpdate(v->ctx, r->buf + skip, r->len - skip);
		v->hashed = end;
	}
}

static void verify_pump(struct verify *v);

static void hash_done(uv_work_t *w, int status)
{
	struct verify *v = w->data;
	struct hub_impl *hi = v->hi;
	hi->works--;
	if (hi->closing) {
		if (hi->works == 0 && !hi->wake_open)
			free(hi);
		return;
	}
	const struct source_file *f = &hi->pub.src->listing.files[v->index];
	const struct hub_file *x = &hi->files[v->index];
	int result = 0;
	char *why = NULL;
	if (v->hashed == f->size && v->state == V_ACTIVE) {
		char got[2 * EVP_MAX_MD_SIZE + 1], want[2 * DIGEST_MAX + 1];
		if (digest_matches(v->ctx, x, got)) {
			v->state = V_OK;
		} else {
			v->state = V_BAD;
			hex_encode(x->want, check_len(x->check), want);
			result = SB_ECORRUPT;
			why = xasprintf("%s: %s: %s of the download is %s, the hub lists %s",
					hi->pub.name, f->path, check_name(x->check), got, want);
		}
	}
	struct hub_req *r;
	while ((r = v->batch.head)) {
		list_del(r);
		if (r->canceled)
			finish(r, SB_ECANCELED);
		else
			finish_detail(r, result, why);
	}
	if (v->state == V_BAD)
		verify_release(v, SB_ECORRUPT, why);
	else
		verify_pump(v);
	free(why);
}

/* Hash the held reads that continue the hashed prefix, on the pool. */
static void verify_pump(struct verify *v)
{
	struct hub_impl *hi = v->hi;
	if (v->batch.head || v->state != V_ACTIVE)
		return;
	uint64_t reach = v->hashed;
	struct hub_req *r;
	while ((r = v->held.head) && r->off <= reach) {
		list_del(r);
		r->state = ST_HASHING;
		list_push(&v->batch, r);
		if (r->off + r->len > reach)
			reach = r->off + r->len;
	}
	if (!v->batch.head)
		return;
	v->work.data = v;
	hi->works++;
	int rc = uv_queue_work(hi->loop, &v->work, hash_work, hash_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

/* A read's bytes are all in: deliver it now, or once the bytes before it
 * are hashed. */
static void verify_landed(struct hub_req *r)
{
	struct hub_impl *hi = r->hi;
	struct verify *v = hi->verifies[r->index];
	if (!v || v->state == V_OFF || v->state == V_OK) {
		finish(r, 0);
		return;
	}
	if (v->state == V_BAD) {
		finish(r, SB_ECORRUPT);
		return;
	}
	list_del(r);
	r->state = ST_HELD;
	list_insert_sorted(&v->held, r);
	verify_pump(v);
}

/* Operations. */

static int hub_read(struct source *src, size_t index, uint64_t off, size_t len, void *buf,
		    source_done_cb cb, void *arg)
{
	struct hub_impl *hi = impl_of(src);
	if (!hi->listed || index >= hi->nfiles) {
		source_set_error(src, "%s: read before a listing", hi->pub.name);
		return -EINVAL;
	}
	const struct source_file *f = &src->listing.files[index];
	if (off > f->size || len > f->size - off) {
		source_set_error(src,
				 "%s: %s: bytes %" PRIu64 "+%zu lie past the end (%" PRIu64 ")",
				 hi->pub.name, f->path, off, len, f->size);
		return -EINVAL;
	}
	struct hub_req *r = req_new(hi, REQ_RANGE);
	r->index = index;
	r->off = off;
	r->len = len;
	r->buf = buf;
	r->cb = cb;
	r->arg = arg;
	struct verify *v = verify_get(hi, index);
	if (v && v->state == V_ACTIVE) {
		if (off > v->asked)
			verify_off(v, "the reads skip bytes");
		else if (off + len > v->asked)
			v->asked = off + len;
	}
	list_push(&hi->active, r);
	if (len == 0) {
		finish(r, 0);
		return 0;
	}
	start_attempt(r);
	return 0;
}

static void cancel_verify(struct verify *v)
{
	for (struct hub_req *r = v->batch.head; r; r = r->next)
		r->canceled = 1;
	verify_release(v, SB_ECANCELED, NULL);
}

static void hub_cancel(struct source *src)
{
	struct hub_impl *hi = impl_of(src);
	struct hub_req *r, *next;
	for (r = hi->done.head; r; r = r->next) {
		if (r->kind == REQ_API)
			continue;
		r->status = SB_ECANCELED;
		free(r->detail);
		r->detail = NULL;
	}
	for (r = hi->active.head; r; r = next) {
		next = r->next;
		if (r->kind == REQ_API) {
			req_free(r); /* its listing is canceled below */
			continue;
		}
		free(r->detail);
		r->detail = NULL;
		finish(r, SB_ECANCELED);
	}
	/* API answers not yet delivered would continue a canceled listing. */
	for (r = hi->done.head; r; r = next) {
		next = r->next;
		if (r->kind == REQ_API)
			req_free(r);
	}
	if (hi->listing && hi->listing->state != ST_DONE)
		finish(hi->listing, SB_ECANCELED);
	for (size_t i = 0; i < hi->nfiles; i++)
		if (hi->verifies[i])
			cancel_verify(hi->verifies[i]);
}

static void pending_close(struct hub_impl *hi)
{
	for (size_t i = 0; i < hi->npend; i++) {
		free(hi->pend[i].f.path);
		free(hi->pend[i].f.digest);
		free(hi->pend[i].x.url);
		free(hi->pend[i].x.etag);
	}
	free(hi->pend);
	hi->pend = NULL;
	hi->npend = hi->cappend = 0;
}

static void files_close(struct hub_impl *hi)
{
	for (size_t i = 0; i < hi->nfiles; i++) {
		free(hi->files[i].url);
		free(hi->files[i].etag);
		verify_free(hi->verifies[i]);
	}
	free(hi->files);
	free(hi->verifies);
	hi->files = NULL;
	hi->verifies = NULL;
	hi->nfiles = 0;
	hi->listed = 0;
}

static int hub_list(struct source *src, source_done_cb cb, void *arg)
{
	struct hub_impl *hi = impl_of(src);
	if (hi->listing)
		return -EBUSY;
	for (size_t i = 0; i < hi->nfiles; i++)
		if (hi->verifies[i] && (hi->verifies[i]->batch.head || hi->verifies[i]->held.head))
			return -EBUSY;
	files_close(hi);
	pending_close(hi);
	source_listing_close(&src->listing);
	struct hub_req *r = req_new(hi, REQ_LIST);
	r->cb = cb;
	r->arg = arg;
	r->state = ST_RUNNING;
	list_push(&hi->active, r);
	hi->listing = r;
	int rc = hi->pub.ops->list(&hi->pub);
	if (rc < 0) {
		hi->listing = NULL;
		req_free(r);
	}
	return rc;
}

static void wake_closed(uv_handle_t *h)
{
	struct hub_impl *hi = h->data;
	hi->wake_open = 0;
	if (hi->works == 0)
		free(hi);
}

static void hub_free(struct source *src)
{
	if (!src->impl)
		return;
	struct hub_impl *hi = impl_of(src);
	hi->closing = 1;
	if (hi->pub.ops->free)
		hi->pub.ops->free(&hi->pub);
	while (hi->active.head)
		req_free(hi->active.head);
	while (hi->done.head)
		req_free(hi->done.head);
	for (size_t i = 0; i < hi->nfiles; i++) {
		struct verify *v = hi->verifies[i];
		if (!v)
			continue;
		while (v->held.head)
			req_free(v->held.head);
		/* A running hash job still reads v and the buffers: the
		 * caller may free only once no operation is in flight, so
		 * none should be left; should one be, leak v, not crash. */
		if (v->batch.head)
			hi->verifies[i] = NULL;
	}
	files_close(hi);
	pending_close(hi);
	free(hi->pub.endpoint);
	free(hi->pub.auth);
	http_multi_free(hi->multi);
	uv_close((uv_handle_t *)&hi->wake, wake_closed);
	src->impl = NULL;
}

static const struct source_ops hub_source_ops = {
    .name = "hub",
    .list = hub_list,
    .read = hub_read,
    .pread = NULL,
    .cancel = hub_cancel,
    .free = hub_free,
};

int hub_init(struct source *src, const struct hub_ops *ops, const char *endpoint,
	     const char *auth_header, void *kind, struct hub **out)
{
	struct hub_impl *hi = xcalloc(1, sizeof *hi);
	int rc = http_multi_new(src->loop, &hi->multi);
	if (rc < 0) {
		free(hi);
		return rc;
	}
	hi->loop = src->loop;
	hi->stall_ms = (uint64_t)src->opt.stall_seconds * 1000;
	hi->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)hi) | 1;
	uv_timer_init(src->loop, &hi->wake);
	hi->wake.data = hi;
	hi->wake_open = 1;
	struct hub *h = &hi->pub;
	h->src = src;
	h->ops = ops;
	h->impl = hi;
	h->kind = kind;
	h->name = src->uri.canonical;
	size_t n = strlen(endpoint);
	while (n > 0 && endpoint[n - 1] == '/')
		n--;
	h->endpoint = xstrndup(endpoint, n);
	h->auth = auth_header ? xstrdup(auth_header) : NULL;
	h->has_token = auth_header != NULL;
	src->ops = &hub_source_ops;
	src->impl = h;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	*out = h;
	return 0;
}

/* Building the listing. */

void hub_add_file(struct hub *h, const char *path, uint64_t size, int64_t mtime_ns,
		  const char *digest, const char *url, const char *etag, enum hub_check check,
		  const uint8_t *want)
{
	struct hub_impl *hi = h->impl;
	if (hi->npend == hi->cappend) {
		hi->cappend = hi->cappend ? 2 * hi->cappend : 64;
		hi->pend = xrealloc(hi->pend, hi->cappend * sizeof *hi->pend);
	}
	struct pending_file *p = &hi->pend[hi->npend++];
	memset(p, 0, sizeof *p);
	p->f.path = xstrdup(path);
	p->f.type = SRC_REGULAR;
	p->f.size = size;
	p->f.mode = 0644;
	p->f.mtime_ns = mtime_ns;
	p->f.digest = digest ? xstrdup(digest) : NULL;
	p->x.url = xstrdup(url);
	p->x.etag = etag ? xstrdup(etag) : NULL;
	p->x.check = check;
	if (check != HUB_CHECK_NONE)
		memcpy(p->x.want, want, check_len(check));
}

static int cmp_pending(const void *a, const void *b)
{
	return strcmp(((const struct pending_file *)a)->f.path,
		      ((const struct pending_file *)b)->f.path);
}

/* An empty file has no reads to check: its digest is checked here. */
static int empty_matches(const struct hub_file *x)
{
	char got[2 * EVP_MAX_MD_SIZE + 1];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		fatal("out of memory");
	digest_start(ctx, x->check, 0);
	int ok = digest_matches(ctx, x, got);
	EVP_MD_CTX_free(ctx);
	return ok;
}

void hub_list_done(struct hub *h, const char *version)
{
	struct hub_impl *hi = h->impl;
	struct source *src = h->src;
	if (!hi->listing)
		return;
	qsort(hi->pend, hi->npend, sizeof *hi->pend, cmp_pending);
	for (size_t i = 0; i < hi->npend; i++) {
		const struct pending_file *p = &hi->pend[i];
		if (i > 0 && strcmp(hi->pend[i - 1].f.path, p->f.path) == 0) {
			hub_list_fail(h, SB_EPROTO, "%s: the hub lists %s twice", h->name,
				      p->f.path);
			return;
		}
		if (p->f.size == 0 && p->x.check != HUB_CHECK_NONE && !empty_matches(&p->x)) {
			hub_list_fail(h, SB_ECORRUPT, "%s: %s is empty but its %s says otherwise",
				      h->name, p->f.path, check_name(p->x.check));
			return;
		}
	}
	source_listing_close(&src->listing);
	src->listing.nfiles = hi->npend;
	src->listing.files = xcalloc(hi->npend + 1, sizeof *src->listing.files);
	hi->files = xcalloc(hi->npend + 1, sizeof *hi->files);
	hi->verifies = xcalloc(hi->npend + 1, sizeof *hi->verifies);
	hi->nfiles = hi->npend;
	for (size_t i = 0; i < hi->npend; i++) {
		src->listing.files[i] = hi->pend[i].f;
		hi->files[i] = hi->pend[i].x;
	}
	free(hi->pend);
	hi->pend = NULL;
	hi->npend = hi->cappend = 0;
	src->listing.version = version ? xstrdup(version) : NULL;
	hi->listed = 1;
	finish(hi->listing, 0);
}

void hub_list_fail(struct hub *h, int code, const char *fmt, ...)
{
	struct hub_impl *hi = h->impl;
	if (!hi->listing)
		return;
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(hi->listing->detail);
	hi->listing->detail = buf_steal(&b);
	pending_close(hi);
	finish(hi->listing, code);
}

void hub_list_fail_reply(struct hub *h, int status, const struct hub_reply *rep)
{
	const char *msg = rep->message[0] ? rep->message : NULL;
	if (status == SB_EDENIED || rep->status == 401 || rep->status == 403) {
		if (h->has_token)
			hub_list_fail(
			    h, SB_EDENIED,
			    "%s: access denied: the %s given has no access (HTTP %ld%s%s)", h->name,
			    h->ops->token_env, rep->status, msg ? ": " : "", msg ? msg : "");
		else
			hub_list_fail(h, SB_EDENIED,
				      "%s: access denied: set %s (gated or private repository)",
				      h->name, h->ops->token_env);
		return;
	}
	if (status == SB_ENOTFOUND) {
		hub_list_fail(h, SB_ENOTFOUND, "%s: not found (HTTP %ld%s%s)", h->name, rep->status,
			      msg ? ": " : "", msg ? msg : "");
		return;
	}
	if (status == SB_EPROTO)
		hub_list_fail(h, status, "%s: GET %s: malformed answer: %s", h->name,
			      rep->shown_url, msg ? msg : "not what the API documents");
	else if (rep->status)
		hub_list_fail(h, status, "%s: GET %s: HTTP %ld%s%s", h->name, rep->shown_url,
			      rep->status, msg ? ": " : "", msg ? msg : "");
	else
		hub_list_fail(h, status, "%s: GET %s: %s", h->name, rep->shown_url,
			      msg ? msg : sb_strerror(status));
}

/* Helpers. */

void hub_quote(struct buf *b, const char *s, const char *safe, int plus)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || strchr("-._~", *p) || (*p && strchr(safe, *p)))
			buf_append(b, p, 1);
		else if (plus && *p == ' ')
			buf_append(b, "+", 1);
		else
			buf_printf(b, "%%%02X", *p);
	}
}

int hub_is_hex(const char *s, size_t n)
{
	if (!s || strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return 0;
	return 1;
}

static int hexval(int c)
{
	return c <= '9' ? c - '0' : c - 'a' + 10;
}

void hub_hex_decode(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n / 2; i++)
		out[i] = (uint8_t)(hexval(s[2 * i]) * 16 + hexval(s[2 * i + 1]));
}

static char *origin_of(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
		out = xasprintf("%s://%s:%s", scheme, host, port);
		for (char *c = out; *c; c++)
			*c = (char)tolower((unsigned char)*c);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

int hub_same_origin(const struct hub *h, const char *url)
{
	char *a = origin_of(h->endpoint), *b = origin_of(url);
	int same = a && b && strcmp(a, b) == 0;
	free(a);
	free(b);
	return same;
}

const char *hub_getenv(const char *const *names)
{
	for (; *names; names++) {
		const char *v = getenv(*names);
		if (v && *v)
			return v;
	}
	return NULL;
}

/* Read once when the source is made, before any transfer: a small local
 * file, like the environment. */
char *hub_read_token_file(const char *path)
{
	char buf[HUB_TOKEN_MAX + 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	if (n <= 0 || n > HUB_TOKEN_MAX)
		return NULL;
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x21 || buf[i] == 0x7f)
			return NULL; /* not a token: would break the header line */
	return n ? xstrdup(buf) : NULL;
}
