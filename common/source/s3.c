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
 * the call that started the operation. */
#include "common/source/source.h"

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

#define LIST_PAGE_KEYS	     "1000"	/* the most ListObjectsV2 returns */
#define LIST_BODY_MAX	     (8u << 20) /* one page of 1000 long keys is ~1 MB */
#define LIST_IDLE_PAGES_MAX  100	/* truncated pages in a row without a new file */
#define QUERY_PARAMS_MAX     5
#define BUCKET_REGION_HEADER "x-amz-bucket-region"
#define CHECKSUM_HEADER	     "x-amz-checksum-sha256"
#define CHECKSUM_TYPE_HEADER "x-amz-checksum-type"
#define CHECKSUM_TEXT_MAX    96 /* base64 of 32 bytes, or a composite "...-N" */

enum req_kind { REQ_LIST, REQ_RANGE, REQ_SUM };
enum list_phase {
	PHASE_DIR,    /* the keys under "prefix/" */
	PHASE_SINGLE, /* nothing there: is "prefix" itself an object? */
};

struct s3_source;

/* base comes first: the client's lists hold &base. */
struct s3_req {
	struct http_req base;
	struct s3_source *s3;
	enum req_kind kind;
	char bucket_region[AWS_REGION_MAX]; /* x-amz-bucket-region of the answer */
	struct buf body;		    /* LIST: the page; any kind: an error document */
	char *what;			    /* "s3://bucket/key" before messages; NULL: a listing */
	size_t index;			    /* REQ_RANGE, REQ_SUM */
	/* REQ_SUM: the x-amz-checksum-sha256 and -type answered */
	char sum[CHECKSUM_TEXT_MAX], sum_type[CHECKSUM_TEXT_MAX];
	/* REQ_LIST */
	enum list_phase phase;
	char *token;   /* continuation token of the page asked for */
	unsigned idle; /* pages in a row that added no file */
	source_done_cb cb;
	void *arg;
};

struct s3_source {
	struct http_client http; /* first: its close callback frees the source */
	struct source *src;
	struct s3_config cfg;
	char *config_error; /* reported by list(), where the user sees it */
	char *shown;	    /* "s3://bucket/prefix" */
	char *dir_prefix;   /* keys of a directory source start with this */
	char *single_key;   /* set when the source is one object */
	int listed;
	struct source_listing building;
	size_t cap;
	/* HeadObject of the objects listed with a SHA-256 checksum, before the
	 * listing ends: their paths, how far they went, and the listing's
	 * request, which ends with the first failure when they are done. */
	char **sum_paths;
	size_t nsum, sum_next, sum_busy;
	struct s3_req *sum_list;
	int sum_rc;
	char *sum_detail;
};

static struct s3_req *to_req(struct http_req *b)
{
	return (struct s3_req *)b;
}

static struct s3_req *req_new(struct s3_source *s3, enum req_kind kind)
{
	struct s3_req *r = xcalloc(1, sizeof *r);
	http_req_init(&r->base, &s3->http);
	r->s3 = s3;
	r->kind = kind;
	return r;
}

static void req_free(struct s3_req *r)
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

static void sum_delivered(struct s3_req *r);
static const char *object_key(struct s3_source *s3, size_t index, struct buf *tmp);

static void deliver(struct http_req *b)
{
	struct s3_req *r = to_req(b);
	if (r->kind == REQ_SUM)
		sum_delivered(r);
	else
		source_req_deliver(r->s3->src, b, r->cb, r->arg);
}

static void free_hook(struct http_req *b)
{
	req_free(to_req(b));
}

/* Failed responses. */

static const char *credential_hint(const struct s3_source *s3)
{
	return s3->cfg.access_key ? "" : " (no credentials: AWS_ACCESS_KEY_ID is not set)";
}

/* Status and S3 error code into an error and a line for the user. */
static void status_failed(struct http_req *b)
{
	struct s3_req *r = to_req(b);
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
static size_t keep_error_body(struct s3_req *r, const char *data, size_t n)
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
	struct s3_req *r = to_req(b);
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

/* list() */

static const char *file_etag(const struct source_file *f)
{
	return f->digest && !strncmp(f->digest, "etag:", 5) ? f->digest + 5 : NULL;
}

static int add_file(struct s3_req *r, const char *path, const struct s3_object *o)
{
	struct source_listing *l = &r->s3->building;
	uint64_t max = r->s3->src->opt.limits.files;
	if (l->nfiles >= max) {
		http_req_fail(&r->base, SB_ETOOBIG,
			      "more objects than the limit of %llu per dataset (--max-files)",
			      (unsigned long long)max);
		return -1;
	}
	if (l->nfiles == r->s3->cap) {
		r->s3->cap = r->s3->cap ? r->s3->cap * 2 : 256;
		l->files = xrealloc(l->files, r->s3->cap * sizeof *l->files);
	}
	struct source_file *f = &l->files[l->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	f->type = SRC_REGULAR;
	f->size = o->size;
	f->mode = 0644;
	f->mtime_ns = o->mtime_ns;
	f->digest = o->etag ? xasprintf("etag:%s", o->etag)
			    : xasprintf("s3:%" PRId64 ":%" PRIu64, o->mtime_ns, o->size);
	if (o->sha256 && o->composite) {
		log_debug("%s: %s has a composite SHA-256 checksum (of its parts): the whole "
			  "file cannot be checked against it",
			  r->s3->shown, path);
	} else if (o->sha256) {
		struct s3_source *s3 = r->s3;
		s3->sum_paths = xrealloc(s3->sum_paths, (s3->nsum + 1) * sizeof *s3->sum_paths);
		s3->sum_paths[s3->nsum++] = xstrdup(path);
	}
	return 0;
}

/* Keys of one page into the listing. 0, or -1 after failing r. */
static int take_page(struct s3_req *r, const struct s3_list_page *page)
{
	struct s3_source *s3 = r->s3;
	size_t plen = strlen(s3->dir_prefix);
	for (size_t i = 0; i < page->n; i++) {
		const struct s3_object *o = &page->objects[i];
		if (r->phase == PHASE_SINGLE) {
			if (strcmp(o->key, s3->src->uri.prefix) != 0)
				continue;
			const char *base = strrchr(o->key, '/');
			base = base ? base + 1 : o->key;
			if (path_check_relative(base) < 0) {
				http_req_fail(&r->base, SB_ECONFINE,
					      "key \"%s\" cannot be used as a file name", o->key);
				return -1;
			}
			s3->single_key = xstrdup(o->key);
			return add_file(r, base, o);
		}
		if (strncmp(o->key, s3->dir_prefix, plen) != 0) {
			http_req_fail(&r->base, SB_ECONFINE,
				      "key \"%s\" lies outside the prefix \"%s\"", o->key,
				      s3->dir_prefix);
			return -1;
		}
		const char *rel = o->key + plen;
		size_t n = strlen(rel);
		if (n == 0 || rel[n - 1] == '/')
			continue; /* a directory marker ("folder/") */
		if (path_check_relative(rel) < 0) {
			http_req_fail(&r->base, SB_ECONFINE,
				      "key \"%s\" escapes the dataset directory", o->key);
			return -1;
		}
		if (add_file(r, rel, o) < 0)
			return -1;
	}
	return 0;
}

/* HeadObject with the checksum mode on. */

static void sums_clear(struct s3_source *s3)
{
	for (size_t i = 0; i < s3->nsum; i++)
		free(s3->sum_paths[i]);
	free(s3->sum_paths);
	free(s3->sum_detail);
	s3->sum_paths = NULL;
	s3->sum_detail = NULL;
	s3->nsum = s3->sum_next = s3->sum_busy = 0;
	s3->sum_rc = 0;
}

static int path_cmp(const void *key, const void *file)
{
	return strcmp(key, ((const struct source_file *)file)->path);
}

/* Keep max_parallel HeadObject requests going; end the listing once all
 * are back. */
static void sum_pump(struct s3_source *s3)
{
	struct source_listing *l = &s3->src->listing;
	while (s3->sum_rc == 0 && s3->sum_next < s3->nsum &&
	       s3->sum_busy < (size_t)s3->src->max_parallel) {
		const char *path = s3->sum_paths[s3->sum_next++];
		const struct source_file *f =
		    bsearch(path, l->files, l->nfiles, sizeof *l->files, path_cmp);
		if (!f)
			continue;
		struct s3_req *h = req_new(s3, REQ_SUM);
		struct buf key = BUF_INIT;
		h->index = (size_t)(f - l->files);
		h->what = xasprintf("HeadObject s3://%s/%s", s3->src->uri.bucket,
				    object_key(s3, h->index, &key));
		buf_close(&key);
		s3->sum_busy++;
		http_req_start(&h->base);
	}
	if (s3->sum_busy || !s3->sum_list)
		return;
	struct s3_req *r = s3->sum_list;
	s3->sum_list = NULL;
	if (s3->sum_rc < 0) {
		free(r->what); /* the HeadObject's line says what failed */
		r->what = NULL;
		http_req_fail(&r->base, s3->sum_rc, "%s", s3->sum_detail ? s3->sum_detail : "");
	} else {
		s3->listed = 1;
		http_req_finish(&r->base, 0);
	}
	sums_clear(s3);
}

/* A HeadObject answer: the object as listed, and its SHA-256 unless the
 * checksum is of its parts. */
static void sum_done(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	struct source_file *f = &s3->src->listing.files[r->index];
	const char *want = file_etag(f);
	char got[HTTP_ETAG_MAX];
	size_t n = 0;
	http_etag_opaque(r->base.resp.etag, got, sizeof got);
	if (want && r->base.resp.etag[0] && strcmp(want, got) != 0) {
		http_req_fail(&r->base, SB_ECHANGED,
			      "the object changed after it was listed (ETag %s, now %s)", want,
			      got);
		return;
	}
	if (!strcmp(r->sum_type, "COMPOSITE") || strchr(r->sum, '-')) {
		log_debug("%s: %s has a composite SHA-256 checksum (of its parts): the whole "
			  "file cannot be checked against it",
			  s3->shown, f->path);
	} else if (!r->sum[0]) {
		log_debug("%s: %s: HeadObject names no SHA-256 checksum", s3->shown, f->path);
	} else if (sodium_base642bin(f->content_sha256, sizeof f->content_sha256, r->sum,
				     strlen(r->sum), NULL, &n, NULL,
				     sodium_base64_VARIANT_ORIGINAL) != 0 ||
		   n != sizeof f->content_sha256) {
		http_req_fail(&r->base, SB_EPROTO,
			      "x-amz-checksum-sha256 \"%.60s\" is not a SHA-256", r->sum);
		return;
	} else {
		f->has_content_sha256 = 1;
	}
	http_req_finish(&r->base, 0);
}

static void sum_delivered(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	if (r->base.status < 0 && s3->sum_rc == 0) {
		s3->sum_rc = r->base.status;
		s3->sum_detail = r->base.detail ? xstrdup(r->base.detail) : NULL;
	}
	req_free(r);
	s3->sum_busy--;
	sum_pump(s3);
}

static void list_complete(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	struct source *src = s3->src;
	source_listing_close(&src->listing);
	src->listing = s3->building;
	memset(&s3->building, 0, sizeof s3->building);
	s3->cap = 0;
	source_listing_sort(&src->listing);
	for (size_t i = 1; i < src->listing.nfiles; i++)
		if (!strcmp(src->listing.files[i - 1].path, src->listing.files[i].path)) {
			http_req_fail(&r->base, SB_EPROTO, "key %s%s listed twice", s3->dir_prefix,
				      src->listing.files[i].path);
			return;
		}
	if (s3->nsum) {
		s3->sum_list = r;
		sum_pump(s3);
		return;
	}
	s3->listed = 1;
	http_req_finish(&r->base, 0);
}

static void list_done(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	struct s3_list_page page;
	char err[S3_ERR_MAX];
	if (s3_list_parse((const char *)r->body.ptr, r->body.len, &page, err) < 0) {
		http_req_fail(&r->base, SB_EPROTO, "malformed ListObjectsV2 answer: %s", err);
		return;
	}
	size_t before = s3->building.nfiles;
	int rc = take_page(r, &page);
	int more = page.truncated && !s3->single_key && r->phase == PHASE_DIR;
	r->idle = s3->building.nfiles > before ? 0 : r->idle + 1;
	if (rc == 0 && more && r->token && !strcmp(r->token, page.next_token)) {
		http_req_fail(&r->base, SB_EPROTO,
			      "ListObjectsV2 returned the same continuation token twice");
		rc = -1;
	} else if (rc == 0 && more && r->idle >= LIST_IDLE_PAGES_MAX) {
		/* S3 may return short pages, even empty ones, but a server
		 * that never moves on would be listed forever. */
		http_req_fail(&r->base, SB_EPROTO,
			      "ListObjectsV2 returned %u truncated pages in a row without an "
			      "object",
			      r->idle);
		rc = -1;
	}
	if (rc < 0) {
		s3_list_page_close(&page);
		return;
	}
	if (more) {
		free(r->token);
		r->token = page.next_token;
		page.next_token = NULL;
	}
	s3_list_page_close(&page);
	r->base.failures = 0;
	if (more) {
		http_req_start(&r->base);
	} else if (s3->building.nfiles > 0) {
		list_complete(r);
	} else if (r->phase == PHASE_DIR && strcmp(s3->dir_prefix, s3->src->uri.prefix) != 0) {
		r->phase = PHASE_SINGLE;
		free(r->token);
		r->token = NULL;
		http_req_start(&r->base);
	} else {
		http_req_fail(&r->base, SB_ENOTFOUND, "no objects under %s", s3->shown);
	}
}

static size_t on_list_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb;
	r->base.last_io = uv_now(r->s3->http.loop);
	long st = r->base.resp.status;
	if (st < 200 || st >= 300)
		return keep_error_body(r, data, n);
	if (r->body.len + n > LIST_BODY_MAX) {
		http_req_refuse(&r->base, SB_ETOOBIG, "ListObjectsV2 answer larger than %u bytes",
				LIST_BODY_MAX);
		return 0;
	}
	buf_append(&r->body, data, n);
	return n;
}

/* read() */

static int range_check(struct http_req *b)
{
	struct s3_req *r = to_req(b);
	struct s3_source *s3 = r->s3;
	const struct source_file *f = &s3->src->listing.files[r->index];
	const struct http_resp *p = &r->base.resp;
	const char *want = file_etag(f);
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
	return keep_error_body(to_req(b), data, n);
}

static void range_done(struct s3_req *r)
{
	if (http_req_range_judge(&r->base) < 0) {
		http_req_finish(&r->base, r->base.verdict);
		return;
	}
	if (r->base.got == r->base.len) {
		http_req_finish(&r->base, 0);
		return;
	}
	/* A clean but short answer: ask for the rest straight away. */
	if (r->base.count > 0)
		http_req_start(&r->base);
	else
		http_req_retry(&r->base, SB_EHTTP, "response ended %zu bytes short",
			       r->base.len - r->base.got);
}

/* Transfers. */

static void done(struct http_req *b, CURLcode rc)
{
	struct s3_req *r = to_req(b);
	if (http_req_attempt_failed(b, rc))
		return;
	if (r->kind == REQ_LIST)
		list_done(r);
	else if (r->kind == REQ_SUM)
		sum_done(r);
	else
		range_done(r);
}

static const char *object_key(struct s3_source *s3, size_t index, struct buf *tmp)
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
		s3_target(c, s3->src->uri.bucket, object_key(s3, r->index, &key), "", url, &host,
			  &path);
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
	struct s3_req *r = to_req(b);
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
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_list_body);
	} else if (r->kind == REQ_SUM) {
		r->sum[0] = r->sum_type[0] = '\0';
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else {
		const char *etag = file_etag(&r->s3->src->listing.files[r->index]);
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

static int s3_list(struct source *src, source_done_cb cb, void *arg)
{
	struct s3_source *s3 = src->impl;
	if (s3->sum_list)
		return -EBUSY;
	for (struct http_req *b = s3->http.active.head; b; b = b->next)
		if (to_req(b)->kind == REQ_LIST)
			return -EBUSY;
	source_listing_close(&s3->building);
	s3->cap = 0;
	free(s3->single_key);
	s3->single_key = NULL;
	s3->listed = 0;
	sums_clear(s3);
	struct s3_req *r = req_new(s3, REQ_LIST);
	r->cb = cb;
	r->arg = arg;
	r->phase = PHASE_DIR;
	if (s3->config_error) {
		http_req_fail(&r->base, SB_ECONFIG, "%s", s3->config_error);
		return 0;
	}
	r->what = xasprintf("ListObjectsV2 %s://%s%s", s3->cfg.scheme, s3->cfg.host, s3->cfg.base);
	http_req_start(&r->base);
	return 0;
}

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
	struct s3_req *r = req_new(s3, REQ_RANGE);
	struct buf key = BUF_INIT;
	r->what = xasprintf("s3://%s/%s", src->uri.bucket, object_key(s3, index, &key));
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
		req_free(s3->sum_list);
	sums_clear(s3);
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
    .list = s3_list,
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
