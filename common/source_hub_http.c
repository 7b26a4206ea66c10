/* The transfers of the hub sources: JSON API calls and ranged reads through
 * one curl multi on the loop, retried with backoff (Retry-After honoured),
 * timed for stalls, and checked against the listing (commit, ETag, size)
 * so that a file changing mid-pull fails with SB_ECHANGED. Callbacks run
 * from the wake timer, never from libcurl or from the starting call. */
#include "common/source_hub_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/log.h"

#define ERROR_BODY_MAX	(64u << 10) /* error page kept for its message */
#define RANGE_SPEC_MAX	48
#define HEADER_LINE_MAX (HUB_URL_MAX + 64)

static void retry_or_fail(struct hub_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Lists. */

void hub_req_push(struct hub_req_list *l, struct hub_req *r)
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

void hub_req_unlink(struct hub_req *r)
{
	struct hub_req_list *l = r->on;
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

struct hub_req *hub_req_new(struct hub_impl *hi, enum hub_req_kind kind)
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

void hub_req_free(struct hub_req *r)
{
	hub_req_unlink(r);
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
		uv_timer_start(&hi->wake, hub_on_wake, delay, 0);
}

void hub_req_finish(struct hub_req *r, int status, const char *detail)
{
	struct hub_impl *hi = r->hi;
	if (status < 0 && detail) {
		free(r->detail);
		r->detail = xstrdup(detail);
	}
	if (r->kind == REQ_RANGE && status < 0 && status != SB_ECANCELED && status != SB_ECORRUPT)
		hub_check_failed(hi, r->index);
	r->status = status;
	req_drop_easy(r);
	hub_req_unlink(r);
	r->state = ST_DONE;
	hub_req_push(&hi->done, r);
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
	hub_req_finish(r, code, NULL);
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
	hub_req_free(r);
}

void hub_on_wake(uv_timer_t *t)
{
	struct hub_impl *hi = t->data;
	uint64_t now = uv_now(hi->loop);
	struct hub_req *r, *next;
	for (r = hi->active.head; r; r = next) {
		next = r->next;
		if (r->state == ST_WAITING && r->due <= now) {
			hub_req_start(r);
		} else if (watched(hi, r) && now - r->last_io >= hi->stall_ms) {
			req_drop_easy(r);
			retry_or_fail(r, SB_ESTALL, "no data for %u s",
				      hi->pub.src->opt.stall_seconds);
		}
	}
	/* A callback may free the source; hi lives until the timer's close
	 * callback (and the last pool job), src does not. */
	while ((r = hi->done.head) && !hi->closing) {
		hub_req_unlink(r);
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
		hub_req_free(r);
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
		hub_req_finish(r, r->verdict, NULL);
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
			else
				x->next_overflow = 1;
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
	if (n >= sizeof tmp && !strncasecmp(line, "link:", 5))
		x->next_overflow = 1;
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
		x->next_overflow = 0;
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
	if (r->hx.next_overflow) {
		fail(r, SB_ETOOBIG, "a Link header longer than %u bytes", HUB_URL_MAX);
		return;
	}
	hub_req_finish(r, 0, NULL);
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

static void range_done(struct hub_req *r, CURLcode rc)
{
	if (r->discard && rc == CURLE_WRITE_ERROR)
		rc = CURLE_OK;
	if (attempt_failed(r, rc))
		return;
	if (!r->checked) {
		r->checked = 1;
		if (range_check(r) < 0) {
			hub_req_finish(r, r->verdict, NULL);
			return;
		}
	}
	if (r->got == r->len) {
		hub_check_landed(r);
		return;
	}
	if (r->count > 0)
		hub_req_start(r); /* a clean but short answer: ask for the rest */
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

void hub_req_start(struct hub_req *r)
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
	struct hub_req *r = hub_req_new(hi, REQ_API);
	r->url = xstrdup(url);
	r->jcb = cb;
	r->arg = arg;
	hub_req_push(&hi->active, r);
	hub_req_start(r);
	return 0;
}
