/* The s3://bucket/prefix source. list() pages through ListObjectsV2
 * (continuation tokens, 1000 keys a page) and turns the keys under the
 * prefix into confined relative paths, then asks HeadObject for the
 * SHA-256 of every object listed with a full-object SHA-256 checksum (so
 * the assembled file can be checked whole); read() is one ranged GET per call,
 * all of them in parallel through one HTTP client (common/source/http_req.c) on
 * the loop, each sent with If-Match on the listed ETag and checked against
 * it, so an object replaced mid-pull fails with SB_ECHANGED instead of
 * mixing versions.
 * Requests are signed with SigV4 (common/source/sigv4.c) when credentials are set.
 * Callbacks run from the client's timer, never from inside libcurl or from
 * the call that started the operation. list() is in s3_list.c. */
#include "common/source/s3_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/source/http_req.h"
#include "common/log.h"
#include "common/path.h"
#include "common/source/s3_api.h"
#include "common/source/sigv4.h"

struct s3_req *source_s3_req_new(struct s3_source *s3, enum req_kind kind)
{
	struct s3_req *r = xcalloc(1, sizeof *r);
	http_req_init(&r->base, &s3->http);
	r->s3 = s3;
	r->kind = kind;
	return r;
}

void source_s3_req_free(struct s3_req *r)
{
	http_req_close(&r->base);
	buf_close(&r->body);
	free(r->what);
	free(r->token);
	free(r);
}

/* The client's hooks. */

static void describe(const struct http_req *b, struct buf *out)
{
	const struct s3_req *r = (const struct s3_req *)b;
	if (r->what)
		buf_printf(out, "%s: ", r->what);
}

static void deliver(struct http_req *b)
{
	struct s3_req *r = s3_req_of(b);
	if (r->kind == REQ_SUM)
		source_s3_sum_delivered(r);
	else
		source_req_deliver(r->s3->src, b, r->cb, r->arg);
}

static void free_hook(struct http_req *b)
{
	source_s3_req_free(s3_req_of(b));
}

/* Failed responses. */

static const char *credential_hint(const struct s3_source *s3)
{
	return s3->cfg.access_key ? "" : " (no credentials: AWS_ACCESS_KEY_ID is not set)";
}

/* Status and S3 error code into an error and a line for the user. */
static void status_failed(struct http_req *b)
{
	struct s3_req *r = s3_req_of(b);
	struct s3_source *s3 = r->s3;
	long st = b->resp.status;
	struct s3_error e;
	if (s3_error_parse((const char *)r->body.ptr, r->body.len, &e) < 0)
		snprintf(e.code, sizeof e.code, "%s", http_resp_reason(&b->resp));
	const char *c = e.code, *msg = e.message[0] ? e.message : "";
	const char *region = e.region[0] ? e.region : r->bucket_region;
	if (http_status_retryable(st) || (st == 400 && !strcmp(c, "RequestTimeout"))) {
		http_req_status_failed(b, c, 1);
	} else if (!strcmp(c, "SignatureDoesNotMatch")) {
		http_req_fail(b, SB_EAUTH,
			      "HTTP %ld %s: the secret key does not match the access key %s "
			      "(check %s)",
			      st, c, s3->cfg.access_key, s3->cfg.credentials_from);
	} else if (!strcmp(c, "InvalidAccessKeyId")) {
		http_req_fail(b, SB_EAUTH,
			      "HTTP %ld %s: S3 does not know the access key %s "
			      "(check %s)",
			      st, c, s3->cfg.access_key, s3->cfg.credentials_from);
	} else if (!strcmp(c, "ExpiredToken") || !strcmp(c, "InvalidToken") ||
		   !strcmp(c, "RequestTimeTooSkewed")) {
		http_req_fail(b, SB_EAUTH, "HTTP %ld %s: %s", st, c, msg);
	} else if (st == 404 && !strcmp(c, "NoSuchBucket")) {
		http_req_fail(b, SB_ENOTFOUND, "bucket %s does not exist (HTTP 404 NoSuchBucket)",
			      s3->src->uri.bucket);
	} else if (r->kind != REQ_LIST && (st == 412 || st == 416 || st == 404)) {
		http_req_fail(b, SB_ECHANGED,
			      "the object changed after it was listed (HTTP %ld %s)", st, c);
	} else if (region[0] && strcmp(region, s3->cfg.region) != 0) {
		http_req_fail(b, SB_EHTTP4XX,
			      "HTTP %ld %s: the bucket is in region %s, not %s "
			      "(pass --s3-region %s or set AWS_REGION)",
			      st, c, region, s3->cfg.region, region);
	} else if (st == 403) {
		http_req_fail(b, SB_EDENIED, "HTTP 403 %s%s%s%s", c, msg[0] ? ": " : "", msg,
			      credential_hint(s3));
	} else {
		http_req_fail(b, http_status_error(st), "HTTP %ld %s%s%s", st, c,
			      msg[0] ? ": " : "", msg);
	}
}

/* An error document is kept (bounded) for its Code. */
size_t source_s3_keep_error_body(struct s3_req *r, const char *data, size_t n)
{
	if (r->body.len + n > HTTP_ERROR_BODY_MAX)
		return 0;
	buf_append(&r->body, data, n);
	return n;
}

/* S3 names the bucket's region in x-amz-bucket-region, also on the 301 it
 * answers when asked in the wrong one. */
static void on_header(struct http_req *b, const char *data, size_t n)
{
	struct s3_req *r = s3_req_of(b);
	struct http_header h;
	if (!http_header_split(data, n, &h))
		return;
	if (r->kind == REQ_SUM && http_header_is(&h, CHECKSUM_HEADER)) {
		http_header_value(&h, r->sum, sizeof r->sum);
	} else if (r->kind == REQ_SUM && http_header_is(&h, CHECKSUM_TYPE_HEADER)) {
		http_header_value(&h, r->sum_type, sizeof r->sum_type);
	} else if (http_header_is(&h, BUCKET_REGION_HEADER)) {
		if (!http_header_value(&h, r->bucket_region, sizeof r->bucket_region) ||
		    !aws_region_valid(r->bucket_region))
			r->bucket_region[0] = '\0';
	}
}

/* read() */

static int range_check(struct http_req *b)
{
	struct s3_req *r = s3_req_of(b);
	struct s3_source *s3 = r->s3;
	const struct source_file *f = &s3->src->listing.files[r->index];
	const struct http_resp *p = &r->base.resp;
	const char *want = source_s3_file_etag(f);
	char got[HTTP_ETAG_MAX];
	uint64_t first = r->base.off + r->base.got;
	if (p->status < 200 || p->status >= 300) {
		r->base.discard = 1; /* an error document; judged when it is complete */
		return 0;
	}
	http_etag_opaque(p->etag, got, sizeof got);
	if (want && p->etag[0] && strcmp(want, got) != 0)
		return http_req_refuse(&r->base, SB_ECHANGED,
				       "the object changed after it was listed (ETag %s, "
				       "now %s)",
				       want, got);
	if (p->status == 200) {
		if (first == 0 && r->base.len == f->size && p->content_length == (int64_t)f->size)
			return 0; /* the whole object, as asked */
		return http_req_refuse(&r->base, SB_EPROTO, "the server ignored the Range header");
	}
	if (p->status != 206 || !p->has_range || p->range_unsatisfied)
		return http_req_refuse(&r->base, SB_EPROTO, "unexpected HTTP %ld to a ranged GET",
				       p->status);
	if (p->range_total >= 0 && (uint64_t)p->range_total != f->size)
		return http_req_refuse(&r->base, SB_ECHANGED,
				       "the object changed after it was listed (size %" PRIu64
				       ", now %" PRId64 ")",
				       f->size, p->range_total);
	return http_req_check_span(&r->base);
}

static size_t range_error_body(struct http_req *b, const char *data, size_t n)
{
	return source_s3_keep_error_body(s3_req_of(b), data, n);
}

/* Transfers. */

static void done(struct http_req *b, CURLcode rc)
{
	struct s3_req *r = s3_req_of(b);
	if (http_req_attempt_failed(b, rc))
		return;
	if (r->kind == REQ_LIST)
		source_s3_list_done(r);
	else if (r->kind == REQ_SUM)
		source_s3_sum_done(r);
	else
		http_req_range_end(&r->base);
}

const char *source_s3_object_key(struct s3_source *s3, size_t index, struct buf *tmp)
{
	if (s3->single_key)
		return s3->single_key;
	buf_printf(tmp, "%s%s", s3->dir_prefix, s3->src->listing.files[index].path);
	return buf_cstr(tmp);
}

/* The URL of this attempt, with the Host, x-amz-* and Authorization
 * headers; what is signed is byte for byte what libcurl sends. */
static void build_request(struct s3_req *r, struct buf *url)
{
	struct s3_source *s3 = r->s3;
	char *why = NULL;
	if (s3_config_refresh(&s3->cfg, &why) < 0) { /* the old keys go until they fail */
		log_warn("%s: renewing the AWS credentials: %s", s3->shown, why);
		free(why);
	}
	const struct s3_config *c = &s3->cfg;
	struct buf host = BUF_INIT, path = BUF_INIT, query = BUF_INIT, key = BUF_INIT;
	if (r->kind == REQ_LIST) {
		struct sigv4_param q[QUERY_PARAMS_MAX];
		size_t n = 0;
		int single = r->phase == PHASE_SINGLE;
		if (r->token)
			q[n++] = (struct sigv4_param){"continuation-token", r->token};
		q[n++] = (struct sigv4_param){"encoding-type", "url"};
		q[n++] = (struct sigv4_param){"list-type", "2"};
		q[n++] = (struct sigv4_param){"max-keys", single ? "1" : LIST_PAGE_KEYS};
		q[n++] =
		    (struct sigv4_param){"prefix", single ? s3->src->uri.prefix : s3->dir_prefix};
		sigv4_query(&query, q, n);
		s3_target(c, s3->src->uri.bucket, NULL, buf_cstr(&query), url, &host, &path);
	} else {
		s3_target(c, s3->src->uri.bucket, source_s3_object_key(s3, r->index, &key), "", url,
			  &host, &path);
	}
	http_req_add_header(&r->base, "Host: %s", buf_cstr(&host));
	if (c->access_key) {
		char date[SIGV4_DATE_LEN + 1];
		sigv4_date(time(NULL), date);
		struct sigv4_header h[5] = {
		    {"host", buf_cstr(&host)},
		    {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
		    {"x-amz-date", date},
		};
		size_t nh = 3;
		if (c->session_token)
			h[nh++] = (struct sigv4_header){"x-amz-security-token", c->session_token};
		if (r->kind == REQ_SUM)
			h[nh++] = (struct sigv4_header){"x-amz-checksum-mode", "ENABLED"};
		struct sigv4_request rq = {
		    .method = r->kind == REQ_SUM ? "HEAD" : "GET",
		    .path = buf_cstr(&path),
		    .query = buf_cstr(&query),
		    .headers = h,
		    .nheaders = nh,
		    .payload_hash = SIGV4_EMPTY_SHA256,
		    .amz_date = date,
		    .region = c->region,
		    .service = "s3",
		    .access_key = c->access_key,
		    .secret_key = c->secret_key,
		};
		struct buf auth = BUF_INIT;
		if (sigv4_authorization(&rq, &auth) < 0)
			fatal("s3: cannot sign a complete request");
		for (size_t i = 1; i < rq.nheaders; i++)
			http_req_add_header(&r->base, "%s: %s", h[i].name, h[i].value);
		http_req_add_header(&r->base, "Authorization: %s", buf_cstr(&auth));
		buf_close(&auth);
	} else if (r->kind == REQ_SUM) {
		http_req_add_header(&r->base, "x-amz-checksum-mode: ENABLED");
	}
	buf_close(&host);
	buf_close(&path);
	buf_close(&query);
	buf_close(&key);
}

static void setup(struct http_req *b, CURL *e)
{
	struct s3_req *r = s3_req_of(b);
	struct buf url = BUF_INIT;
	/* A signed request is valid for its own host only. */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	r->bucket_region[0] = '\0';
	buf_reset(&r->body);
	build_request(r, &url);
	curl_easy_setopt(e, CURLOPT_URL, buf_cstr(&url));
	buf_close(&url);
	if (r->kind == REQ_LIST) {
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, source_s3_list_body);
	} else if (r->kind == REQ_SUM) {
		r->sum[0] = r->sum_type[0] = '\0';
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else {
		const char *etag = source_s3_file_etag(&r->s3->src->listing.files[r->index]);
		http_req_set_range(b, e);
		if (etag)
			http_req_add_header(b, "If-Match: \"%s\"", etag);
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
    .range_check = range_check,
    .error_body = range_error_body,
};

/* Operations. */

static int s3_read(struct source *src, size_t index, uint64_t off, size_t len, void *buf,
		   source_done_cb cb, void *arg)
{
	struct s3_source *s3 = src->impl;
	if (!s3->listed || index >= src->listing.nfiles) {
		source_set_error(src, "%s: read before a listing", s3->shown);
		return -EINVAL;
	}
	const struct source_file *f = &src->listing.files[index];
	if (off > f->size || len > f->size - off) {
		source_set_error(src,
				 "%s: bytes %" PRIu64 "+%zu of %s lie past its end (%" PRIu64 ")",
				 s3->shown, off, len, f->path, f->size);
		return -EINVAL;
	}
	struct s3_req *r = source_s3_req_new(s3, REQ_RANGE);
	struct buf key = BUF_INIT;
	r->what = xasprintf("s3://%s/%s", src->uri.bucket, source_s3_object_key(s3, index, &key));
	buf_close(&key);
	r->index = index;
	r->base.off = off;
	r->base.len = len;
	r->base.buf = buf;
	r->cb = cb;
	r->arg = arg;
	if (len == 0)
		http_req_finish(&r->base, 0);
	else
		http_req_start(&r->base);
	return 0;
}

static void s3_cancel(struct source *src)
{
	struct s3_source *s3 = src->impl;
	struct http_req *r, *next;
	for (r = s3->http.done.head; r; r = r->next)
		http_req_cancel(r);
	for (r = s3->http.active.head; r; r = next) {
		next = r->next;
		http_req_cancel(r);
	}
}

static void source_closed(struct http_client *c)
{
	free(c); /* the first member of its s3_source */
}

static void s3_free(struct source *src)
{
	struct s3_source *s3 = src->impl;
	if (!s3)
		return;
	if (s3->sum_list)
		source_s3_req_free(s3->sum_list);
	source_s3_sums_clear(s3);
	http_client_close(&s3->http, source_closed);
	source_listing_close(&s3->building);
	s3_config_close(&s3->cfg);
	free(s3->config_error);
	free(s3->shown);
	free(s3->dir_prefix);
	free(s3->single_key);
	src->impl = NULL;
}

static const struct source_ops s3_ops = {
    .name = "s3",
    .list = source_s3_list,
    .read = s3_read,
    .pread = NULL,
    .cancel = s3_cancel,
    .free = s3_free,
};

int source_s3_new(struct source *src)
{
	const struct source_uri *u = &src->uri;
	if (!u->bucket || !u->prefix)
		return SB_EURI;
	struct s3_source *s3 = xcalloc(1, sizeof *s3);
	s3->src = src;
	size_t n = strlen(u->prefix);
	/* Like `aws s3 sync`, a prefix names a directory: "p" lists "p/". */
	s3->dir_prefix =
	    n && u->prefix[n - 1] != '/' ? xasprintf("%s/", u->prefix) : xstrdup(u->prefix);
	s3->shown = xasprintf("s3://%s/%s", u->bucket, s3->dir_prefix);
	int style = src->opt.s3.path_style == 1 ? 1 : src->opt.s3.path_style == 2 ? 0 : -1;
	if (s3_config_init(&s3->cfg, u->bucket, src->opt.s3.endpoint, src->opt.s3.region, style,
			   &s3->config_error) < 0 &&
	    !s3->config_error)
		s3->config_error = xstrdup("cannot read the S3 configuration");
	struct http_client_options o;
	source_http_options(src, &o);
	int rc = http_client_init(&s3->http, src->loop, &req_ops, &o);
	if (rc < 0) {
		s3_config_close(&s3->cfg);
		free(s3->config_error);
		free(s3->shown);
		free(s3->dir_prefix);
		free(s3);
		return rc;
	}
	src->ops = &s3_ops;
	src->impl = s3;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	return 0;
}
