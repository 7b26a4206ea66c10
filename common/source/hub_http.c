/* The transfers of the hub sources: JSON API calls and ranged reads through
 * one HTTP client (common/source/http_req.c) on the loop, retried with backoff
 * (Retry-After honoured), timed for stalls, and checked against the listing
 * (commit, ETag, size) so that a file changing mid-pull fails with
 * SB_ECHANGED. Callbacks run from the client's timer, never from libcurl or
 * from the starting call. */
#include "common/source/hub_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"

#define HEADER_LINE_MAX (HUB_URL_MAX + 64)

struct hub_req *hub_req_new(struct hub_impl *hi, enum hub_req_kind kind)
{
	struct hub_req *r = xcalloc(1, sizeof *r);
	http_req_init(&r->base, &hi->http);
	r->hi = hi;
	r->kind = kind;
	return r;
}

void hub_req_free(struct hub_req *r)
{
	http_req_close(&r->base);
	buf_close(&r->body);
	free(r->url);
	free(r);
}

/* The URL without query or credentials: safe in messages. */
static char *shown_url(const char *url)
{
	char *out = http_url_for_messages(url);
	return out ? out : xstrdup("(malformed URL)");
}

static const char *req_url(const struct hub_req *r)
{
	return r->kind == REQ_API ? r->url : r->hi->files[r->index].url;
}

void hub_req_finish(struct hub_req *r, int status, const char *detail)
{
	if (status < 0 && detail) {
		free(r->base.detail);
		r->base.detail = xstrdup(detail);
	}
	http_req_finish(&r->base, status);
}

/* The client's hooks. */

static void describe(const struct http_req *b, struct buf *out)
{
	const struct hub_req *r = (const struct hub_req *)b;
	char *u = shown_url(req_url(r));
	buf_printf(out, "%s: GET %s: ", r->hi->pub.name, u);
	free(u);
}

/* A failed read: the reads behind it must not wait for its digest. */
static int finishing(struct http_req *b)
{
	struct hub_req *r = hub_req_of(b);
	int status = b->status;
	if (r->kind == REQ_RANGE && status < 0 && status != SB_ECANCELED && status != SB_ECORRUPT)
		hub_check_failed(r->hi, r->index);
	return 0;
}

static void fill_reply(const struct hub_req *r, struct hub_reply *rep, char *shown)
{
	memset(rep, 0, sizeof *rep);
	rep->status = r->base.resp.status;
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

/* A transport failure's detail without the "NAME: GET URL: " that
 * describe() put in front: the reply's consumer names the request itself. */
static const char *own_detail(const struct hub_req *r)
{
	struct buf pre = BUF_INIT;
	describe(&r->base, &pre);
	const char *d = r->base.detail;
	if (!strncmp(d, buf_cstr(&pre), pre.len))
		d += pre.len;
	buf_close(&pre);
	return d;
}

static void deliver_api(struct hub_impl *hi, struct hub_req *r)
{
	struct hub_reply rep;
	json_t *doc = NULL;
	char *shown = shown_url(r->url);
	int status = r->base.status;
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
	if (status < 0 && r->base.detail && !rep.message[0])
		snprintf(rep.message, sizeof rep.message, "%s", own_detail(r));
	hub_json_cb cb = r->jcb;
	void *arg = r->arg;
	cb(&hi->pub, status, doc, &rep, arg);
	json_decref(doc);
	free(shown);
	hub_req_free(r);
}

static void deliver(struct http_req *b)
{
	struct hub_req *r = hub_req_of(b);
	struct hub_impl *hi = r->hi;
	if (r->kind == REQ_API) {
		deliver_api(hi, r);
		return;
	}
	if (r == hi->listing)
		hi->listing = NULL;
	source_req_deliver(hi->pub.src, b, r->cb, r->arg);
}

static void free_hook(struct http_req *b)
{
	hub_req_free(hub_req_of(b));
}

static void status_failed(struct http_req *b)
{
	struct hub_req *r = hub_req_of(b);
	const struct http_resp *p = &b->resp;
	long st = p->status;
	uint64_t size = r->kind == REQ_RANGE ? r->hi->pub.src->listing.files[r->index].size : 0;
	const char *why = r->hx.error_code[0] ? r->hx.error_code : http_resp_reason(p);
	if (r->kind == REQ_RANGE && st == 412) {
		http_req_fail(b, SB_ECHANGED, "HTTP 412 %s: the file changed", why);
		return;
	}
	if (r->kind == REQ_RANGE && st == 416 && p->range_unsatisfied && p->range_total >= 0 &&
	    (uint64_t)p->range_total != size) {
		http_req_fail(b, SB_ECHANGED, "size is now %" PRId64 ", the listing said %" PRIu64,
			      p->range_total, size);
		return;
	}
	/* A signed CDN address may expire: asking the hub again gets a new one. */
	http_req_status_failed(b, why, r->kind == REQ_RANGE && st == 403 && r->hx.responses > 1);
}

/* Response headers. */

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
	char v[HEADER_LINE_MAX];
	struct hub_hdrs *x = &r->hx;
	struct http_header h;
	if (n >= 5 && !memcmp(line, "HTTP/", 5)) {
		const char *sp = memchr(line, ' ', n);
		if (sp && sp + 1 < line + n && sp[1] != '1')
			x->responses++;
		/* Only the final answer's error and pagination count. */
		x->error_code[0] = x->error_message[0] = x->next[0] = '\0';
		x->next_overflow = 0;
		return;
	}
	if (!http_header_split(line, n, &h))
		return;
	if (http_header_is(&h, "x-error-code")) {
		http_header_value(&h, x->error_code, sizeof x->error_code);
	} else if (http_header_is(&h, "x-error-message")) {
		http_header_value(&h, x->error_message, sizeof x->error_message);
	} else if (http_header_is(&h, "link")) {
		if (http_header_value(&h, v, sizeof v))
			parse_link(x, v);
		else
			x->next_overflow = 1;
	} else if (http_header_is(&h, "x-repo-commit")) {
		http_header_value(&h, x->repo_commit, sizeof x->repo_commit);
	} else if (http_header_is(&h, "x-linked-etag")) {
		http_header_value(&h, x->linked_etag, sizeof x->linked_etag);
	} else if (http_header_is(&h, "etag") && x->responses == 1) {
		http_header_value(&h, x->first_etag, sizeof x->first_etag);
	}
}

static void on_header(struct http_req *b, const char *line, size_t n)
{
	hub_header(hub_req_of(b), line, n);
}

/* API calls. */

static size_t on_api_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hub_req *r = arg;
	size_t n = size * nmemb;
	r->base.last_io = uv_now(r->hi->http.loop);
	if (!r->base.checked) {
		r->base.checked = 1;
		r->base.discard = r->base.resp.status < 200 || r->base.resp.status >= 300;
		if (!r->base.discard && r->base.resp.content_length > (int64_t)HUB_API_BODY_MAX) {
			http_req_refuse(&r->base, SB_ETOOBIG,
					"answer of %" PRId64 " bytes (limit %u)",
					r->base.resp.content_length, HUB_API_BODY_MAX);
			return 0;
		}
	}
	size_t limit = r->base.discard ? HTTP_ERROR_BODY_MAX : HUB_API_BODY_MAX;
	if (r->body.len + n > limit) {
		if (r->base.discard)
			return 0; /* enough of the error page */
		http_req_refuse(&r->base, SB_ETOOBIG, "answer larger than %u bytes",
				HUB_API_BODY_MAX);
		return 0;
	}
	buf_append(&r->body, data, n);
	return n;
}

static void api_done(struct hub_req *r, CURLcode rc)
{
	if (r->base.discard && rc == CURLE_WRITE_ERROR)
		rc = CURLE_OK; /* the error page was cut short on purpose */
	if (http_req_attempt_failed(&r->base, rc))
		return;
	if (r->hx.next_overflow) {
		http_req_fail(&r->base, SB_ETOOBIG, "a Link header longer than %u bytes",
			      HUB_URL_MAX);
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
		return http_req_refuse(&r->base, SB_ECHANGED, "served from commit %s, not %s",
				       r->hx.repo_commit, version);
	const char *tag = r->hx.linked_etag[0] ? r->hx.linked_etag : r->hx.first_etag;
	if (x->etag && tag[0]) {
		http_etag_opaque(tag, got, sizeof got);
		if (strcmp(got, x->etag) != 0)
			return http_req_refuse(&r->base, SB_ECHANGED,
					       "ETag %s, the listing said %s", got, x->etag);
	}
	return 0;
}

static int range_check(struct http_req *b)
{
	struct hub_req *r = hub_req_of(b);
	const struct http_resp *p = &r->base.resp;
	uint64_t size = req_file(r)->size;
	if (p->status < 200 || p->status >= 300) {
		r->base.discard = 1;
		return 0;
	}
	if (check_version(r) < 0)
		return -1;
	int rc = http_req_check_range(&r->base, size);
	if (rc == HTTP_RANGE_RESIZED)
		return http_req_refuse(&r->base, SB_ECHANGED,
				       "size is now %" PRId64 ", the listing said %" PRIu64,
				       p->range_total, size);
	return rc;
}

/* An error answer to a ranged read: the status says enough. */
static size_t range_error_body(struct http_req *b, const char *data, size_t n)
{
	return 0;
}

static void range_done(struct hub_req *r, CURLcode rc)
{
	if (r->base.discard && rc == CURLE_WRITE_ERROR)
		rc = CURLE_OK;
	if (http_req_attempt_failed(&r->base, rc))
		return;
	if (http_req_range_judge(&r->base) < 0) {
		hub_req_finish(r, r->base.verdict, NULL);
		return;
	}
	if (r->base.got == r->base.len) {
		hub_check_landed(r);
		return;
	}
	http_req_ask_rest(&r->base);
}

/* Transfers. */

static void done(struct http_req *b, CURLcode rc)
{
	struct hub_req *r = hub_req_of(b);
	if (r->kind == REQ_API)
		api_done(r, rc);
	else
		range_done(r, rc);
}

static void setup(struct http_req *b, CURL *e)
{
	struct hub_req *r = hub_req_of(b);
	struct hub_impl *hi = r->hi;
	curl_easy_setopt(e, CURLOPT_URL, req_url(r));
	memset(&r->hx, 0, sizeof r->hx);
	buf_reset(&r->body);
	/* libcurl keeps custom Authorization and Cookie headers from other
	 * hosts a redirect leads to (the CDN never sees the token). */
	if (hi->pub.auth)
		http_req_add_header(b, "%s", hi->pub.auth);
	if (r->kind == REQ_API) {
		http_req_add_header(b, "Accept: application/json");
		curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_api_body);
	} else {
		http_req_set_range(b, e);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_req_range_body);
	}
}

static const struct http_req_ops req_ops = {
    .setup = setup,
    .done = done,
    .deliver = deliver,
    .describe = describe,
    .free = free_hook,
    .header = on_header,
    .status_failed = status_failed,
    .finishing = finishing,
    .range_check = range_check,
    .error_body = range_error_body,
};

static void client_closed(struct http_client *c)
{
	struct hub_impl *hi = (struct hub_impl *)((char *)c - offsetof(struct hub_impl, http));
	hi->wake_open = 0;
	if (hi->works == 0)
		free(hi);
}

int hub_http_init(struct hub_impl *hi, struct source *src)
{
	struct http_client_options o;
	source_http_options(src, &o);
	int rc = http_client_init(&hi->http, src->loop, &req_ops, &o);
	if (rc == 0)
		hi->wake_open = 1;
	return rc;
}

void hub_http_close(struct hub_impl *hi)
{
	http_client_close(&hi->http, client_closed);
}

/* An API call answered by hi->answer: its lines and body go where
 * libcurl's would, then the attempt ends as a transfer would. */
static void answer_from_memory(struct hub_req *r)
{
	struct hub_impl *hi = r->hi;
	struct buf head = BUF_INIT, body = BUF_INIT;
	r->base.once = 1; /* a retry would go to the network */
	http_req_unlink(&r->base);
	http_req_push(&hi->http.active, &r->base);
	r->base.state = HTTP_REQ_RUNNING;
	http_resp_reset(&r->base.resp);
	memset(&r->hx, 0, sizeof r->hx);
	hi->answer(hi->answer_arg, r->url, &head, &body);
	const char *p = (const char *)head.ptr, *end = p + head.len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		http_resp_header(&r->base.resp, p, n);
		hub_header(r, p, n);
		p += n;
	}
	size_t took = body.len ? on_api_body((char *)body.ptr, 1, body.len, r) : body.len;
	api_done(r, took == body.len ? CURLE_OK : CURLE_WRITE_ERROR);
	buf_close(&head);
	buf_close(&body);
}

int hub_answer_from(struct source *src, hub_answer_fn fn, void *arg)
{
	if (!src->ops || strcmp(src->ops->name, "hub") != 0)
		return -EINVAL;
	struct hub_impl *hi = ((struct hub *)src->impl)->impl;
	hi->answer = fn;
	hi->answer_arg = arg;
	return 0;
}

int hub_get_json(struct hub *h, const char *url, hub_json_cb cb, void *arg)
{
	struct hub_impl *hi = h->impl;
	if (hi->http.closing)
		return SB_ECANCELED;
	if (strlen(url) >= HUB_URL_MAX)
		return SB_ETOOBIG;
	struct hub_req *r = hub_req_new(hi, REQ_API);
	r->url = xstrdup(url);
	r->jcb = cb;
	r->arg = arg;
	if (hi->answer)
		answer_from_memory(r);
	else
		http_req_start(&r->base);
	return 0;
}