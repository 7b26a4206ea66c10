/* The s3://bucket/prefix source. list() pages through ListObjectsV2
 * (continuation tokens, 1000 keys a page) and turns the keys under the
 * prefix into confined relative paths; read() is one ranged GET per call,
 * all of them in parallel through one curl multi on the loop, each sent
 * with If-Match on the listed ETag and checked against it, so an object
 * replaced mid-pull fails with SB_ECHANGED instead of mixing versions.
 * Requests are signed with SigV4 (common/sigv4.c) when credentials are set.
 * Callbacks run from one timer (`wake`), never from inside libcurl or from
 * the call that started the operation. */
#include "common/source.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/http_multi.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"
#include "common/s3.h"
#include "common/sigv4.h"

#define LIST_PAGE_KEYS	     "1000"	 /* the most ListObjectsV2 returns */
#define LIST_BODY_MAX	     (8u << 20)	 /* one page of 1000 long keys is ~1 MB */
#define ERROR_BODY_MAX	     (64u << 10) /* error document kept for its Code */
#define RANGE_SPEC_MAX	     48
#define QUERY_PARAMS_MAX     5
#define BUCKET_REGION_HEADER "x-amz-bucket-region:"

enum req_kind { REQ_LIST, REQ_RANGE };
enum req_state { ST_RUNNING, ST_WAITING, ST_DONE };
enum list_phase {
	PHASE_DIR,    /* the keys under "prefix/" */
	PHASE_SINGLE, /* nothing there: is "prefix" itself an object? */
};

struct s3_source;

struct s3_req {
	struct s3_req *prev, *next;
	int on_done_list;
	struct s3_source *s3;
	enum req_kind kind;
	enum req_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct http_resp resp;
	char errbuf[CURL_ERROR_SIZE];
	char bucket_region[S3_REGION_MAX]; /* x-amz-bucket-region of the answer */
	struct buf body;		   /* LIST: the page; any kind: an error document */
	uint64_t due;			   /* ST_WAITING: loop time of the next attempt */
	uint64_t last_io;		   /* ST_RUNNING: loop time bytes last arrived */
	unsigned failures;		   /* failed attempts */
	int checked;			   /* the response was judged at its first body byte */
	int verdict;			   /* < 0: the write callback refused the response */
	int status;			   /* ST_DONE: what the callback receives */
	char *detail;			   /* one line for source_set_error */
	char *what;			   /* "s3://bucket/key" before messages; NULL: a listing */
	/* REQ_RANGE */
	size_t index;
	uint64_t off;
	size_t len, got;
	uint8_t *buf;
	uint64_t count; /* bytes this attempt */
	/* REQ_LIST */
	enum list_phase phase;
	char *token; /* continuation token of the page asked for */
	source_done_cb cb;
	void *arg;
};

struct req_list {
	struct s3_req *head;
};

struct s3_source {
	struct source *src;
	uv_loop_t *loop;
	struct http_multi *multi;
	uv_timer_t wake;
	int closing;
	uint64_t stall_ms;
	uint64_t rng;
	struct s3_config cfg;
	char *config_error; /* reported by list(), where the user sees it */
	char *shown;	    /* "s3://bucket/prefix" */
	char *dir_prefix;   /* keys of a directory source start with this */
	char *single_key;   /* set when the source is one object */
	int listed;
	struct source_listing building;
	size_t cap;
	struct req_list active; /* running, or waiting to retry */
	struct req_list done;	/* callbacks still to run */
};

static void start_attempt(struct s3_req *r);

/* Lists (doubly linked, head only). */

static void list_push(struct req_list *l, struct s3_req *r)
{
	r->prev = NULL;
	r->next = l->head;
	if (l->head)
		l->head->prev = r;
	l->head = r;
}

static void list_del(struct req_list *l, struct s3_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else if (l->head == r)
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

static void req_unlink(struct s3_req *r)
{
	list_del(r->on_done_list ? &r->s3->done : &r->s3->active, r);
}

static struct s3_req *req_new(struct s3_source *s3, enum req_kind kind)
{
	struct s3_req *r = xcalloc(1, sizeof *r);
	r->s3 = s3;
	r->kind = kind;
	http_resp_reset(&r->resp);
	return r;
}

static void req_drop_easy(struct s3_req *r)
{
	if (!r->easy)
		return;
	http_multi_remove(r->s3->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
}

static void req_free(struct s3_req *r)
{
	req_unlink(r);
	req_drop_easy(r);
	curl_slist_free_all(r->hdrs);
	buf_close(&r->body);
	free(r->detail);
	free(r->what);
	free(r->token);
	free(r);
}

/* Deferred delivery and the stall watch. */

static void on_wake(uv_timer_t *t);

static void wake_arm(struct s3_source *s3)
{
	if (s3->closing)
		return;
	uint64_t now = uv_now(s3->loop), delay = UINT64_MAX;
	if (s3->done.head) {
		delay = 0;
	} else {
		for (struct s3_req *r = s3->active.head; r; r = r->next) {
			uint64_t at;
			if (r->state == ST_WAITING)
				at = r->due;
			else if (s3->stall_ms && r->easy)
				at = r->last_io + s3->stall_ms;
			else
				continue;
			uint64_t d = at > now ? at - now : 0;
			if (d < delay)
				delay = d;
		}
	}
	if (delay == UINT64_MAX)
		uv_timer_stop(&s3->wake);
	else
		uv_timer_start(&s3->wake, on_wake, delay, 0);
}

static void finish(struct s3_req *r, int status)
{
	struct s3_source *s3 = r->s3;
	r->status = status;
	req_drop_easy(r);
	req_unlink(r);
	r->state = ST_DONE;
	r->on_done_list = 1;
	list_push(&s3->done, r);
	wake_arm(s3);
}

static void set_detail(struct s3_req *r, const char *fmt, va_list ap)
{
	struct buf b = BUF_INIT;
	if (r->what)
		buf_printf(&b, "%s: ", r->what);
	buf_vprintf(&b, fmt, ap);
	free(r->detail);
	r->detail = buf_steal(&b);
}

static void fail(struct s3_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct s3_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	finish(r, code);
}

/* Refuse a response from inside a write callback; the transfer ends with
 * CURLE_WRITE_ERROR and on_done reports code. */
static int refuse(struct s3_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct s3_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	r->verdict = code;
	return -1;
}

static void retry_or_fail(struct s3_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void retry_or_fail(struct s3_req *r, int code, const char *fmt, ...)
{
	struct s3_source *s3 = r->s3;
	struct buf what = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&what, fmt, ap);
	va_end(ap);
	int retries = s3->src->opt.retries > 0 ? s3->src->opt.retries : 0;
	r->failures++;
	if (r->failures > (unsigned)retries) {
		fail(r, code, "%s (gave up after %u attempts)", buf_cstr(&what), r->failures);
	} else {
		uint64_t delay = http_backoff_ms(r->failures, r->resp.retry_after, &s3->rng);
		log_info("%s: %s; retry %u of %d in %" PRIu64 " ms", r->what ? r->what : s3->shown,
			 buf_cstr(&what), r->failures, retries, delay);
		r->state = ST_WAITING;
		r->due = uv_now(s3->loop) + delay;
		wake_arm(s3);
	}
	buf_close(&what);
}

static void on_wake(uv_timer_t *t)
{
	struct s3_source *s3 = t->data;
	uint64_t now = uv_now(s3->loop);
	struct s3_req *r, *next;
	for (r = s3->active.head; r; r = next) {
		next = r->next;
		if (r->state == ST_WAITING && r->due <= now) {
			start_attempt(r);
		} else if (r->state == ST_RUNNING && s3->stall_ms && r->easy &&
			   now - r->last_io >= s3->stall_ms) {
			req_drop_easy(r);
			retry_or_fail(r, SB_ESTALL, "no data for %u s", s3->src->opt.stall_seconds);
		}
	}
	/* A callback may free the source: s3 lives until the wake timer's
	 * close callback, src does not. */
	while ((r = s3->done.head) && !s3->closing) {
		struct source *src = s3->src;
		source_done_cb cb = r->cb;
		void *arg = r->arg;
		int status = r->status;
		if (status < 0 && r->detail)
			source_set_error(src, "%s", r->detail);
		req_free(r);
		cb(src, status, arg);
	}
	wake_arm(s3);
}

/* Failed responses. */

static const char *credential_hint(const struct s3_source *s3)
{
	return s3->cfg.access_key ? "" : " (no credentials: AWS_ACCESS_KEY_ID is not set)";
}

/* Status and S3 error code into an error and a line for the user. */
static void status_failed(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	long st = r->resp.status;
	struct s3_error e;
	if (s3_error_parse((const char *)r->body.ptr, r->body.len, &e) < 0)
		snprintf(e.code, sizeof e.code, "%s", http_resp_reason(&r->resp));
	const char *c = e.code, *msg = e.message[0] ? e.message : "";
	const char *region = e.region[0] ? e.region : r->bucket_region;
	if (http_status_retryable(st) || (st == 400 && !strcmp(c, "RequestTimeout"))) {
		retry_or_fail(r, http_status_error(st), "HTTP %ld %s", st, c);
	} else if (!strcmp(c, "SignatureDoesNotMatch")) {
		fail(r, SB_EAUTH,
		     "HTTP %ld %s: the secret key does not match the access key %s "
		     "(check %s)",
		     st, c, s3->cfg.access_key, s3->cfg.credentials_from);
	} else if (!strcmp(c, "InvalidAccessKeyId")) {
		fail(r, SB_EAUTH,
		     "HTTP %ld %s: S3 does not know the access key %s "
		     "(check %s)",
		     st, c, s3->cfg.access_key, s3->cfg.credentials_from);
	} else if (!strcmp(c, "ExpiredToken") || !strcmp(c, "InvalidToken") ||
		   !strcmp(c, "RequestTimeTooSkewed")) {
		fail(r, SB_EAUTH, "HTTP %ld %s: %s", st, c, msg);
	} else if (st == 404 && !strcmp(c, "NoSuchBucket")) {
		fail(r, SB_ENOTFOUND, "bucket %s does not exist (HTTP 404 NoSuchBucket)",
		     s3->src->uri.bucket);
	} else if (r->kind == REQ_RANGE && (st == 412 || st == 416 || st == 404)) {
		fail(r, SB_ECHANGED, "the object changed after it was listed (HTTP %ld %s)", st, c);
	} else if (region[0] && strcmp(region, s3->cfg.region) != 0) {
		fail(r, SB_EHTTP4XX,
		     "HTTP %ld %s: the bucket is in region %s, not %s "
		     "(pass --s3-region %s or set AWS_REGION)",
		     st, c, region, s3->cfg.region, region);
	} else if (st == 403) {
		fail(r, SB_EDENIED, "HTTP 403 %s%s%s%s", c, msg[0] ? ": " : "", msg,
		     credential_hint(s3));
	} else {
		fail(r, http_status_error(st), "HTTP %ld %s%s%s", st, c, msg[0] ? ": " : "", msg);
	}
}

static void transport_failed(struct s3_req *r, CURLcode rc)
{
	const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
	int code = rc == CURLE_OPERATION_TIMEDOUT ? SB_ESTALL : SB_EHTTP;
	if (http_curl_retryable(rc))
		retry_or_fail(r, code, "%s", why);
	else
		fail(r, code, "%s", why);
}

/* 1 when the attempt failed and was dealt with. */
static int attempt_failed(struct s3_req *r, CURLcode rc)
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
		transport_failed(r, rc);
		return 1;
	}
	return 0;
}

/* An error document is kept (bounded) for its Code. */
static size_t keep_error_body(struct s3_req *r, const char *data, size_t n)
{
	if (r->body.len + n > ERROR_BODY_MAX)
		return 0;
	buf_append(&r->body, data, n);
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb, k = sizeof BUCKET_REGION_HEADER - 1;
	r->last_io = uv_now(r->s3->loop);
	http_resp_header(&r->resp, data, n);
	/* S3 names the bucket's region here, also on the 301 it answers when
	 * asked in the wrong one. */
	if (n > k && !strncasecmp(data, BUCKET_REGION_HEADER, k)) {
		size_t a = k, b;
		while (a < n && data[a] == ' ')
			a++;
		for (b = a; b < n && data[b] != ' ' && data[b] != '\r' && data[b] != '\n';)
			b++;
		snprintf(r->bucket_region, sizeof r->bucket_region, "%.*s", (int)(b - a), data + a);
		if (b - a >= sizeof r->bucket_region || !s3_valid_region(r->bucket_region))
			r->bucket_region[0] = '\0';
	}
	return n;
}

/* list() */

static const char *file_etag(const struct source_file *f)
{
	return f->digest && !strncmp(f->digest, "etag:", 5) ? f->digest + 5 : NULL;
}

static int add_file(struct s3_req *r, const char *path, const struct s3_object *o)
{
	struct source_listing *l = &r->s3->building;
	if (l->nfiles >= MANIFEST_MAX_FILES) {
		fail(r, SB_ETOOBIG, "more than %u objects", MANIFEST_MAX_FILES);
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
				fail(r, SB_ECONFINE, "key \"%s\" cannot be used as a file name",
				     o->key);
				return -1;
			}
			s3->single_key = xstrdup(o->key);
			return add_file(r, base, o);
		}
		if (strncmp(o->key, s3->dir_prefix, plen) != 0) {
			fail(r, SB_ECONFINE, "key \"%s\" lies outside the prefix \"%s\"", o->key,
			     s3->dir_prefix);
			return -1;
		}
		const char *rel = o->key + plen;
		size_t n = strlen(rel);
		if (n == 0 || rel[n - 1] == '/')
			continue; /* a directory marker ("folder/") */
		if (path_check_relative(rel) < 0) {
			fail(r, SB_ECONFINE, "key \"%s\" escapes the dataset directory", o->key);
			return -1;
		}
		if (add_file(r, rel, o) < 0)
			return -1;
	}
	return 0;
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
			fail(r, SB_EPROTO, "key %s%s listed twice", s3->dir_prefix,
			     src->listing.files[i].path);
			return;
		}
	s3->listed = 1;
	finish(r, 0);
}

static void list_done(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	struct s3_list_page page;
	char err[S3_ERR_MAX];
	if (s3_list_parse((const char *)r->body.ptr, r->body.len, &page, err) < 0) {
		fail(r, SB_EPROTO, "malformed ListObjectsV2 answer: %s", err);
		return;
	}
	int rc = take_page(r, &page);
	int more = page.truncated && !s3->single_key && r->phase == PHASE_DIR;
	if (rc == 0 && more && r->token && !strcmp(r->token, page.next_token)) {
		fail(r, SB_EPROTO, "ListObjectsV2 returned the same continuation token twice");
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
	r->failures = 0;
	if (more) {
		start_attempt(r);
	} else if (s3->building.nfiles > 0) {
		list_complete(r);
	} else if (r->phase == PHASE_DIR && strcmp(s3->dir_prefix, s3->src->uri.prefix) != 0) {
		r->phase = PHASE_SINGLE;
		free(r->token);
		r->token = NULL;
		start_attempt(r);
	} else {
		fail(r, SB_ENOTFOUND, "no objects under %s", s3->shown);
	}
}

static size_t on_list_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->s3->loop);
	long st = r->resp.status;
	if (st < 200 || st >= 300)
		return keep_error_body(r, data, n);
	if (r->body.len + n > LIST_BODY_MAX) {
		refuse(r, SB_ETOOBIG, "ListObjectsV2 answer larger than %u bytes", LIST_BODY_MAX);
		return 0;
	}
	buf_append(&r->body, data, n);
	return n;
}

/* read() */

static int range_check(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	const struct source_file *f = &s3->src->listing.files[r->index];
	const struct http_resp *p = &r->resp;
	const char *want = file_etag(f);
	char got[HTTP_ETAG_MAX];
	uint64_t first = r->off + r->got, last = r->off + r->len - 1;
	if (p->status < 200 || p->status >= 300)
		return 0; /* an error document; judged when it is complete */
	http_etag_opaque(p->etag, got, sizeof got);
	if (want && p->etag[0] && strcmp(want, got) != 0)
		return refuse(r, SB_ECHANGED,
			      "the object changed after it was listed (ETag %s, "
			      "now %s)",
			      want, got);
	if (p->status == 200) {
		if (first == 0 && r->len == f->size && p->content_length == (int64_t)f->size)
			return 0; /* the whole object, as asked */
		return refuse(r, SB_EPROTO, "the server ignored the Range header");
	}
	if (p->status != 206 || !p->has_range || p->range_unsatisfied)
		return refuse(r, SB_EPROTO, "unexpected HTTP %ld to a ranged GET", p->status);
	if (p->range_total >= 0 && (uint64_t)p->range_total != f->size)
		return refuse(r, SB_ECHANGED,
			      "the object changed after it was listed (size %" PRIu64
			      ", now %" PRId64 ")",
			      f->size, p->range_total);
	if (p->range_first != first || p->range_last > last)
		return refuse(r, SB_EPROTO,
			      "asked for bytes %" PRIu64 "-%" PRIu64 ", got %" PRIu64 "-%" PRIu64,
			      first, last, p->range_first, p->range_last);
	return 0;
}

static size_t on_range_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->s3->loop);
	if (!r->checked) {
		r->checked = 1;
		if (range_check(r) < 0)
			return 0;
	}
	long st = r->resp.status;
	if (st < 200 || st >= 300)
		return keep_error_body(r, data, n);
	if (n > r->len - r->got) {
		refuse(r, SB_EPROTO, "server sent more than the %zu bytes asked for", r->len);
		return 0;
	}
	memcpy(r->buf + r->got, data, n);
	r->got += n;
	r->count += n;
	r->s3->src->bytes_read += n;
	return n;
}

static void range_done(struct s3_req *r)
{
	if (!r->checked) {
		r->checked = 1;
		if (range_check(r) < 0) {
			finish(r, r->verdict);
			return;
		}
	}
	if (r->got == r->len) {
		finish(r, 0);
		return;
	}
	/* A clean but short answer: ask for the rest straight away. */
	if (r->count > 0)
		start_attempt(r);
	else
		retry_or_fail(r, SB_EHTTP, "response ended %zu bytes short", r->len - r->got);
}

/* Transfers. */

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
	struct s3_req *r = arg;
	curl_easy_cleanup(easy);
	r->easy = NULL;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	if (attempt_failed(r, rc))
		return;
	if (r->kind == REQ_LIST)
		list_done(r);
	else
		range_done(r);
}

static void add_header(struct s3_req *r, const char *name, const char *value)
{
	char *line = xasprintf("%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(r->hdrs, line);
	free(line);
	if (!l)
		fatal("out of memory");
	r->hdrs = l;
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
	add_header(r, "Host", buf_cstr(&host));
	if (c->access_key) {
		char date[SIGV4_DATE_LEN + 1];
		sigv4_date(time(NULL), date);
		struct sigv4_header h[4] = {
		    {"host", buf_cstr(&host)},
		    {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
		    {"x-amz-date", date},
		    {"x-amz-security-token", c->session_token},
		};
		struct sigv4_request rq = {
		    .method = "GET",
		    .path = buf_cstr(&path),
		    .query = buf_cstr(&query),
		    .headers = h,
		    .nheaders = c->session_token ? 4 : 3,
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
			add_header(r, h[i].name, h[i].value);
		add_header(r, "Authorization", buf_cstr(&auth));
		buf_close(&auth);
	}
	buf_close(&host);
	buf_close(&path);
	buf_close(&query);
	buf_close(&key);
}

static void start_attempt(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	struct source *src = s3->src;
	char range[RANGE_SPEC_MAX];
	struct buf url = BUF_INIT;
	CURL *e = curl_easy_init();
	if (!e) {
		fail(r, -ENOMEM, "cannot create a transfer");
		return;
	}
	http_easy_defaults(e, src->opt.connect_seconds, src->opt.stall_seconds);
	/* A signed request is valid for its own host only. */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r);
	r->errbuf[0] = '\0';
	r->bucket_region[0] = '\0';
	http_resp_reset(&r->resp);
	r->checked = r->verdict = 0;
	r->count = 0;
	buf_reset(&r->body);
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	build_request(r, &url);
	curl_easy_setopt(e, CURLOPT_URL, buf_cstr(&url));
	buf_close(&url);
	if (r->kind == REQ_LIST) {
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_list_body);
	} else {
		const char *etag = file_etag(&src->listing.files[r->index]);
		snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, r->off + r->got,
			 r->off + r->len - 1);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
		if (etag) {
			char *quoted = xasprintf("\"%s\"", etag);
			add_header(r, "If-Match", quoted);
			free(quoted);
		}
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_range_body);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	r->easy = e;
	r->state = ST_RUNNING;
	r->last_io = uv_now(s3->loop);
	int rc = http_multi_add(s3->multi, e, on_done, r);
	if (rc < 0) {
		curl_easy_cleanup(e);
		r->easy = NULL;
		fail(r, rc, "cannot start the transfer");
		return;
	}
	wake_arm(s3); /* the stall deadline */
}

/* Operations. */

static int s3_list(struct source *src, source_done_cb cb, void *arg)
{
	struct s3_source *s3 = src->impl;
	for (struct s3_req *r = s3->active.head; r; r = r->next)
		if (r->kind == REQ_LIST)
			return -EBUSY;
	source_listing_close(&s3->building);
	s3->cap = 0;
	free(s3->single_key);
	s3->single_key = NULL;
	s3->listed = 0;
	struct s3_req *r = req_new(s3, REQ_LIST);
	r->cb = cb;
	r->arg = arg;
	r->phase = PHASE_DIR;
	list_push(&s3->active, r);
	if (s3->config_error) {
		fail(r, SB_ECONFIG, "%s", s3->config_error);
		return 0;
	}
	r->what = xasprintf("ListObjectsV2 %s://%s%s", s3->cfg.scheme, s3->cfg.host, s3->cfg.base);
	start_attempt(r);
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
	r->off = off;
	r->len = len;
	r->buf = buf;
	r->cb = cb;
	r->arg = arg;
	list_push(&s3->active, r);
	if (len == 0)
		finish(r, 0);
	else
		start_attempt(r);
	return 0;
}

static void s3_cancel(struct source *src)
{
	struct s3_source *s3 = src->impl;
	struct s3_req *r, *next;
	for (r = s3->done.head; r; r = r->next) {
		r->status = SB_ECANCELED;
		free(r->detail);
		r->detail = NULL;
	}
	for (r = s3->active.head; r; r = next) {
		next = r->next;
		free(r->detail);
		r->detail = NULL;
		finish(r, SB_ECANCELED);
	}
}

static void wake_closed(uv_handle_t *h)
{
	free(h->data);
}

static void s3_free(struct source *src)
{
	struct s3_source *s3 = src->impl;
	if (!s3)
		return;
	s3->closing = 1;
	while (s3->active.head)
		req_free(s3->active.head);
	while (s3->done.head)
		req_free(s3->done.head);
	source_listing_close(&s3->building);
	s3_config_close(&s3->cfg);
	free(s3->config_error);
	free(s3->shown);
	free(s3->dir_prefix);
	free(s3->single_key);
	http_multi_free(s3->multi);
	uv_close((uv_handle_t *)&s3->wake, wake_closed);
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
	s3->loop = src->loop;
	s3->stall_ms = (uint64_t)src->opt.stall_seconds * 1000;
	size_t n = strlen(u->prefix);
	/* Like `aws s3 sync`, a prefix names a directory: "p" lists "p/". */
	s3->dir_prefix =
	    n && u->prefix[n - 1] != '/' ? xasprintf("%s/", u->prefix) : xstrdup(u->prefix);
	s3->shown = xasprintf("s3://%s/%s", u->bucket, s3->dir_prefix);
	int style = src->opt.s3_path_style == 1 ? 1 : src->opt.s3_path_style == 2 ? 0 : -1;
	if (s3_config_init(&s3->cfg, u->bucket, src->opt.s3_endpoint, src->opt.s3_region, style,
			   &s3->config_error) < 0 &&
	    !s3->config_error)
		s3->config_error = xstrdup("cannot read the S3 configuration");
	int rc = http_multi_new(src->loop, &s3->multi);
	if (rc < 0) {
		s3_config_close(&s3->cfg);
		free(s3->config_error);
		free(s3->shown);
		free(s3->dir_prefix);
		free(s3);
		return rc;
	}
	uv_timer_init(src->loop, &s3->wake);
	s3->wake.data = s3;
	s3->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)s3) | 1;
	src->ops = &s3_ops;
	src->impl = s3;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	return 0;
}
