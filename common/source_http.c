/* The http(s):// single-file source. list() learns size and validators with
 * HEAD (or a one-byte ranged GET when HEAD is refused); read() is one ranged
 * GET per call, all of them running in parallel through one curl multi on
 * the loop. A server that gives no size or no ranges is read as one
 * sequential stream instead. Every response is checked against the listing's
 * validators, so a file that changes mid-transfer fails with SB_ECHANGED
 * rather than mixing two versions. Callbacks run from one timer (`wake`),
 * never from inside libcurl or from the call that started the operation. */
#include "common/source.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_multi.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"

#define SEQ_SPILL_MAX	   (8u << 20)  /* stream bytes held ahead of the reader */
#define SEQ_PROGRESS_RESET (1u << 20)  /* stream progress that forgives failures */
#define ERROR_BODY_MAX	   (64u << 10) /* error page drained before hanging up */
#define RANGE_SPEC_MAX	   48

enum req_kind {
	REQ_HEAD,     /* list: HEAD */
	REQ_PROBE,    /* list: GET bytes=0-0, when HEAD is refused or unclear */
	REQ_COUNT,    /* list: GET of the whole body to learn its length */
	REQ_RANGE,    /* read: GET bytes=a-b into the caller's buffer */
	REQ_STREAM,   /* sequential mode: the one GET feeding REQ_SEQ_READs */
	REQ_SEQ_READ, /* sequential mode: a read waiting for stream bytes */
};

enum req_state { ST_IDLE, ST_RUNNING, ST_WAITING, ST_DONE };

struct http_req;
struct req_list {
	struct http_req *head, *tail;
};

struct http_source;

struct http_req {
	struct http_req *prev, *next;
	struct req_list *on;
	struct http_source *hs;
	enum req_kind kind;
	enum req_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct http_resp resp;
	char errbuf[CURL_ERROR_SIZE];
	uint64_t due;	   /* ST_WAITING: loop time of the next attempt */
	uint64_t last_io;  /* ST_RUNNING: loop time bytes last arrived */
	unsigned failures; /* failed attempts (stream: since real progress) */
	int checked;	   /* the response was judged at its first body byte */
	int discard;	   /* an error response: drain it, store nothing */
	int whole;	   /* a 200 carrying the whole file was accepted */
	int verdict;	   /* < 0: the write callback refused the response */
	size_t discarded;
	int status;   /* ST_DONE: what the callback receives */
	char *detail; /* one line for source_set_error */
	uint64_t off; /* RANGE/SEQ_READ: file offset; STREAM: attempt start */
	size_t len, got;
	uint8_t *buf;
	uint64_t skip;	/* STREAM: leading bytes of a 200 seen before */
	uint64_t count; /* PROBE/COUNT: body bytes; others: bytes this attempt */
	source_done_cb cb;
	void *arg;
};

struct http_source {
	struct source *src;
	uv_loop_t *loop;
	struct http_multi *multi;
	uv_timer_t wake;
	int closing;
	uint64_t stall_ms; /* 0: no stall detection */
	char *shown_url;   /* without credentials or query: safe in messages */
	char *name;
	/* What the listing learnt. */
	char *etag; /* as sent, or NULL */
	char *last_modified;
	uint64_t size;
	int size_known;
	int ranges; /* 1 ranged GETs work, 0 they do not, -1 not known yet */
	int counted;
	int listed;
	uint64_t rng;
	struct req_list active; /* running, or waiting to retry */
	struct req_list done;	/* callbacks still to run */
	struct {
		struct http_req *xfer;
		struct req_list reads;
		uint64_t pos;	   /* file offset of the next byte off the wire */
		uint64_t next_off; /* where the next read must start */
		struct buf spill;  /* bytes off the wire no read has asked for */
		size_t spill_off;
		int paused;
		int error; /* sticky once the stream gave up */
		char *error_detail;
	} seq;
};

static void start_attempt(struct http_req *r);

/* Lists. */

static void list_push(struct req_list *l, struct http_req *r)
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

static void list_del(struct http_req *r)
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

static struct http_req *req_new(struct http_source *hs, enum req_kind kind)
{
	struct http_req *r = xcalloc(1, sizeof *r);
	r->hs = hs;
	r->kind = kind;
	http_resp_reset(&r->resp);
	return r;
}

static void req_drop_easy(struct http_req *r)
{
	if (!r->easy)
		return;
	http_multi_remove(r->hs->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
}

static void req_free(struct http_req *r)
{
	list_del(r);
	req_drop_easy(r);
	curl_slist_free_all(r->hdrs);
	free(r->detail);
	free(r);
}

static const char *req_method(const struct http_req *r)
{
	return r->kind == REQ_HEAD ? "HEAD" : "GET";
}

static void set_detail(struct http_req *r, const char *fmt, va_list ap)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s %s: ", req_method(r), r->hs->shown_url);
	buf_vprintf(&b, fmt, ap);
	free(r->detail);
	r->detail = buf_steal(&b);
}

/* Deferred delivery. */

static void on_wake(uv_timer_t *t);

/* Stalls are timed here rather than by CURLOPT_LOW_SPEED_*, whose speed is
 * averaged over several seconds: after a burst, a dead connection would
 * look alive for up to ~5 s longer than stall_seconds. A stream paused by
 * back-pressure is idle on purpose. */
static int watched(const struct http_source *hs, const struct http_req *r)
{
	return hs->stall_ms && r->state == ST_RUNNING && r->easy &&
	       !(r->kind == REQ_STREAM && hs->seq.paused);
}

static void wake_arm(struct http_source *hs)
{
	if (hs->closing)
		return;
	uint64_t now = uv_now(hs->loop), delay = UINT64_MAX;
	if (hs->done.head) {
		delay = 0;
	} else {
		for (struct http_req *r = hs->active.head; r; r = r->next) {
			uint64_t at;
			if (r->state == ST_WAITING)
				at = r->due;
			else if (watched(hs, r))
				at = r->last_io + hs->stall_ms;
			else
				continue;
			uint64_t d = at > now ? at - now : 0;
			if (d < delay)
				delay = d;
		}
	}
	if (delay == UINT64_MAX)
		uv_timer_stop(&hs->wake);
	else
		uv_timer_start(&hs->wake, on_wake, delay, 0);
}

static void seq_fail(struct http_source *hs, struct http_req *x);

/* The operation ends with status; its callback runs from the loop. */
static void finish(struct http_req *r, int status)
{
	struct http_source *hs = r->hs;
	r->status = status;
	if (r->kind == REQ_STREAM) {
		seq_fail(hs, r);
		return;
	}
	req_drop_easy(r);
	list_del(r);
	r->state = ST_DONE;
	list_push(&hs->done, r);
	wake_arm(hs);
}

static void fail(struct http_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct http_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	finish(r, code);
}

/* Refuse a response from inside the write callback; the transfer ends with
 * CURLE_WRITE_ERROR and on_done reports code. */
static int refuse(struct http_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct http_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	r->verdict = code;
	return -1;
}

static void retry_or_fail(struct http_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void on_wake(uv_timer_t *t)
{
	struct http_source *hs = t->data;
	uint64_t now = uv_now(hs->loop);
	struct http_req *r, *next;
	for (r = hs->active.head; r; r = next) {
		next = r->next;
		if (r->state == ST_WAITING && r->due <= now) {
			start_attempt(r);
		} else if (watched(hs, r) && now - r->last_io >= hs->stall_ms) {
			req_drop_easy(r);
			retry_or_fail(r, SB_ESTALL, "no data for %u s", hs->src->opt.stall_seconds);
		}
	}
	/* A callback may free the source: hs itself lives until the wake
	 * timer's close callback, src does not, so stop touching src then. */
	while ((r = hs->done.head) && !hs->closing) {
		struct source *src = hs->src;
		source_done_cb cb = r->cb;
		void *arg = r->arg;
		int status = r->status;
		if (status < 0 && r->detail)
			source_set_error(src, "%s", r->detail);
		req_free(r);
		cb(src, status, arg);
	}
	wake_arm(hs);
}

/* Failure handling shared by every kind. */

static void retry_or_fail(struct http_req *r, int code, const char *fmt, ...)
{
	struct http_source *hs = r->hs;
	struct buf what = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&what, fmt, ap);
	va_end(ap);
	int retries = hs->src->opt.retries > 0 ? hs->src->opt.retries : 0;
	/* A long stream on a flaky link may fail now and then; only failures
	 * in a row without real progress should use up the retries. */
	if (r->kind == REQ_STREAM && r->count >= SEQ_PROGRESS_RESET)
		r->failures = 0;
	r->failures++;
	if (r->failures > (unsigned)retries) {
		fail(r, code, "%s (gave up after %u attempts)", buf_cstr(&what), r->failures);
	} else {
		uint64_t delay = http_backoff_ms(r->failures, r->resp.retry_after, &hs->rng);
		log_info("%s %s: %s; retry %u of %d in %" PRIu64 " ms", req_method(r),
			 hs->shown_url, buf_cstr(&what), r->failures, retries, delay);
		r->state = ST_WAITING;
		r->due = uv_now(hs->loop) + delay;
		wake_arm(hs);
	}
	buf_close(&what);
}

static void status_failed(struct http_req *r)
{
	const struct http_resp *p = &r->resp;
	long st = p->status;
	if (st == 416 && p->range_unsatisfied && p->range_total >= 0 && r->hs->listed &&
	    (uint64_t)p->range_total != r->hs->size) {
		fail(r, SB_ECHANGED,
		     "source changed during transfer (size %" PRIu64 ", now %" PRId64 ")",
		     r->hs->size, p->range_total);
		return;
	}
	if (http_status_retryable(st))
		retry_or_fail(r, http_status_error(st), "HTTP %ld %s", st, http_resp_reason(p));
	else
		fail(r, http_status_error(st), "HTTP %ld %s", st, http_resp_reason(p));
}

static void transport_failed(struct http_req *r, CURLcode rc)
{
	const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
	int code = rc == CURLE_OPERATION_TIMEDOUT ? SB_ESTALL : SB_EHTTP;
	if (http_curl_retryable(rc))
		retry_or_fail(r, code, "%s", why);
	else
		fail(r, code, "%s", why);
}

/* Deal with a failed attempt: a refusal from the write callback, an error
 * status, or a transport error. 1 when the attempt failed. */
static int attempt_failed(struct http_req *r, CURLcode rc)
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

static size_t drain(struct http_req *r, size_t n)
{
	r->discarded += n;
	return r->discarded > ERROR_BODY_MAX ? 0 : n;
}

/* Validators: every response must describe the version that was listed. */
static int check_validators(struct http_req *r)
{
	struct http_source *hs = r->hs;
	const struct http_resp *p = &r->resp;
	char a[HTTP_ETAG_MAX], b[HTTP_ETAG_MAX];
	if (hs->etag && p->etag[0]) {
		http_etag_opaque(hs->etag, a, sizeof a);
		http_etag_opaque(p->etag, b, sizeof b);
		if (strcmp(a, b) != 0)
			return refuse(r, SB_ECHANGED,
				      "source changed during transfer (ETag %s, now %s)", hs->etag,
				      p->etag);
	} else if (!hs->etag && hs->last_modified && p->last_modified[0] &&
		   strcmp(hs->last_modified, p->last_modified) != 0) {
		return refuse(r, SB_ECHANGED,
			      "source changed during transfer (Last-Modified %s, now %s)",
			      hs->last_modified, p->last_modified);
	}
	return 0;
}

static void add_header(struct http_req *r, const char *name, const char *value)
{
	char *line = xasprintf("%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(r->hdrs, line);
	free(line);
	if (!l)
		fatal("out of memory");
	r->hdrs = l;
}

/* If-Range turns a change of the file into a 200 instead of bytes of the
 * new version spliced into the old. A weak ETag may not be used there. */
static void add_if_range(struct http_req *r)
{
	struct http_source *hs = r->hs;
	if (hs->etag && !http_etag_is_weak(hs->etag))
		add_header(r, "If-Range", hs->etag);
	else if (!hs->etag && hs->last_modified)
		add_header(r, "If-Range", hs->last_modified);
}

/* list() */

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	r->last_io = uv_now(r->hs->loop);
	http_resp_header(&r->resp, data, size * nmemb);
	return size * nmemb;
}

static size_t on_list_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->hs->loop);
	if (!r->checked) {
		r->checked = 1;
		long st = r->resp.status;
		if (st < 200 || st >= 300) {
			r->discard = 1;
		} else if (r->kind == REQ_PROBE && st == 200 && r->resp.content_length >= 0) {
			r->whole = 1; /* the headers told us everything */
			return 0;
		}
	}
	if (r->discard)
		return drain(r, n);
	r->count += n;
	return n;
}

static void take_validators(struct http_source *hs, const struct http_resp *p)
{
	free(hs->etag);
	free(hs->last_modified);
	hs->etag = p->etag[0] ? xstrdup(p->etag) : NULL;
	hs->last_modified = p->last_modified[0] ? xstrdup(p->last_modified) : NULL;
}

static void list_complete(struct http_req *r)
{
	struct http_source *hs = r->hs;
	struct source *src = hs->src;
	char opaque[HTTP_ETAG_MAX];
	source_listing_close(&src->listing);
	struct source_file *f = xcalloc(1, sizeof *f);
	f->path = xstrdup(hs->name);
	f->type = SRC_REGULAR;
	f->size = hs->size;
	f->mode = 0644;
	if (hs->last_modified) {
		time_t t = curl_getdate(hs->last_modified, NULL);
		if (t != (time_t)-1)
			f->mtime_ns = (int64_t)t * 1000000000;
	}
	if (hs->etag) {
		http_etag_opaque(hs->etag, opaque, sizeof opaque);
		f->digest = xasprintf("etag:%s", opaque);
	} else if (hs->last_modified) {
		f->digest = xasprintf("lm:%s:%" PRIu64, hs->last_modified, hs->size);
	} else {
		f->digest = xasprintf("size:%" PRIu64, hs->size);
	}
	src->listing.files = f;
	src->listing.nfiles = 1;
	src->listing.version = xstrdup(f->digest);
	src->sequential = hs->ranges != 1 || hs->counted;
	src->max_parallel = src->sequential ? 1 : src->opt.jobs > 0 ? src->opt.jobs : 1;
	hs->listed = 1;
	finish(r, 0);
}

static void list_next(struct http_req *r, enum req_kind kind)
{
	r->kind = kind;
	r->failures = 0;
	start_attempt(r);
}

static void list_done(struct http_req *r, CURLcode rc)
{
	struct http_source *hs = r->hs;
	const struct http_resp *p = &r->resp;
	long st = p->status;
	if (r->whole && rc == CURLE_WRITE_ERROR)
		rc = CURLE_OK;
	if (r->kind == REQ_HEAD && rc == CURLE_OK && (st == 405 || st == 501)) {
		list_next(r, REQ_PROBE);
		return;
	}
	if (r->kind == REQ_PROBE && st == 416 && p->range_unsatisfied && p->range_total == 0) {
		/* bytes=0-0 of an empty file */
		if (!hs->etag && !hs->last_modified)
			take_validators(hs, p);
		hs->size = 0;
		hs->size_known = 1;
		hs->ranges = 1;
		list_complete(r);
		return;
	}
	if (attempt_failed(r, rc))
		return;
	switch (r->kind) {
	case REQ_HEAD:
		take_validators(hs, p);
		if (p->content_length >= 0) {
			hs->size = (uint64_t)p->content_length;
			hs->size_known = 1;
		}
		hs->ranges = p->accept_ranges;
		if (hs->size_known && (hs->ranges >= 0 || hs->size == 0))
			list_complete(r);
		else if (hs->ranges == 0)
			list_next(r, REQ_COUNT);
		else
			list_next(r, REQ_PROBE);
		return;
	case REQ_PROBE:
		if (!hs->etag && !hs->last_modified)
			take_validators(hs, p);
		if (st == 206 && p->has_range && !p->range_unsatisfied) {
			hs->ranges = 1;
			if (p->range_total >= 0) {
				hs->size = (uint64_t)p->range_total;
				hs->size_known = 1;
			}
		} else {
			hs->ranges = 0;
			if (p->content_length >= 0) {
				hs->size = (uint64_t)p->content_length;
				hs->size_known = 1;
			} else if (st == 200) { /* the whole body went by */
				hs->size = r->count;
				hs->size_known = 1;
				hs->counted = 1;
			}
		}
		if (hs->size_known)
			list_complete(r);
		else
			list_next(r, REQ_COUNT);
		return;
	default:
		hs->size = r->count;
		hs->size_known = 1;
		hs->counted = 1;
		list_complete(r);
		return;
	}
}

/* Ranged reads. */

/* Judge a response at its first body byte (or at its end when none came). */
static int range_check(struct http_req *r)
{
	struct http_source *hs = r->hs;
	const struct http_resp *p = &r->resp;
	uint64_t first = r->off + r->got, last = r->off + r->len - 1;
	if (p->status < 200 || p->status >= 300) {
		r->discard = 1;
		return 0;
	}
	if (check_validators(r) < 0)
		return -1;
	if (p->status == 200) {
		if (first == 0 && r->len == hs->size &&
		    (p->content_length < 0 || (uint64_t)p->content_length == hs->size)) {
			r->whole = 1;
			return 0;
		}
		return refuse(r, SB_EHTTP,
			      "server ignored the range bytes=%" PRIu64 "-%" PRIu64 " (HTTP 200)",
			      first, last);
	}
	if (p->status != 206)
		return refuse(r, SB_EHTTP, "unexpected HTTP %ld %s", p->status,
			      http_resp_reason(p));
	if (!p->has_range || p->range_unsatisfied)
		return refuse(r, SB_EPROTO, "HTTP 206 without a Content-Range");
	if (p->range_total >= 0 && (uint64_t)p->range_total != hs->size)
		return refuse(r, SB_ECHANGED,
			      "source changed during transfer (size %" PRIu64 ", now %" PRId64 ")",
			      hs->size, p->range_total);
	if (p->range_first != first || p->range_last > last)
		return refuse(r, SB_EPROTO,
			      "asked for bytes %" PRIu64 "-%" PRIu64 ", got %" PRIu64 "-%" PRIu64,
			      first, last, p->range_first, p->range_last);
	return 0;
}

static size_t on_range_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->hs->loop);
	if (!r->checked) {
		r->checked = 1;
		if (range_check(r) < 0)
			return 0;
	}
	if (r->discard)
		return drain(r, n);
	if (n > r->len - r->got) {
		refuse(r, SB_EPROTO, "server sent more than the %zu bytes asked for", r->len);
		return 0;
	}
	memcpy(r->buf + r->got, data, n);
	r->got += n;
	r->count += n;
	r->hs->src->bytes_read += n;
	return n;
}

static void range_done(struct http_req *r, CURLcode rc)
{
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
		finish(r, 0);
		return;
	}
	/* A clean but short answer: ask for the rest straight away. */
	if (r->count > 0)
		start_attempt(r);
	else
		retry_or_fail(r, SB_EHTTP, "response ended %zu bytes short", r->len - r->got);
}

/* Sequential mode: one GET, its bytes handed to the reads in order. */

static size_t seq_spilled(const struct http_source *hs)
{
	return hs->seq.spill.len - hs->seq.spill_off;
}

static void seq_give(struct http_source *hs, const uint8_t **data, size_t *n)
{
	struct http_req *rd;
	while (*n && (rd = hs->seq.reads.head)) {
		size_t k = rd->len - rd->got < *n ? rd->len - rd->got : *n;
		memcpy(rd->buf + rd->got, *data, k);
		rd->got += k;
		*data += k;
		*n -= k;
		hs->src->bytes_read += k;
		if (rd->got == rd->len)
			finish(rd, 0);
	}
}

static void seq_feed(struct http_source *hs)
{
	const uint8_t *p = hs->seq.spill.ptr + hs->seq.spill_off;
	size_t n = seq_spilled(hs);
	seq_give(hs, &p, &n);
	hs->seq.spill_off = hs->seq.spill.len - n;
	if (n == 0) {
		buf_reset(&hs->seq.spill);
		hs->seq.spill_off = 0;
	} else if (hs->seq.spill_off > 0) {
		memmove(hs->seq.spill.ptr, p, n);
		hs->seq.spill.len = n;
		hs->seq.spill_off = 0;
	}
}

static void seq_reset(struct http_source *hs, uint64_t off)
{
	if (hs->seq.xfer)
		req_free(hs->seq.xfer);
	hs->seq.xfer = NULL;
	buf_reset(&hs->seq.spill);
	hs->seq.spill_off = 0;
	hs->seq.pos = off;
	hs->seq.next_off = off;
	hs->seq.paused = 0;
	hs->seq.error = 0;
	free(hs->seq.error_detail);
	hs->seq.error_detail = NULL;
}

/* The stream gave up: every waiting read fails the same way, and so do
 * later reads until the caller starts over at another offset. */
static void seq_fail(struct http_source *hs, struct http_req *x)
{
	struct http_req *rd;
	while ((rd = hs->seq.reads.head)) {
		free(rd->detail);
		rd->detail = x->detail ? xstrdup(x->detail) : NULL;
		finish(rd, x->status);
	}
	hs->seq.error = x->status;
	free(hs->seq.error_detail);
	hs->seq.error_detail = x->detail;
	x->detail = NULL;
	hs->seq.xfer = NULL;
	req_free(x);
}

static int stream_check(struct http_req *r)
{
	struct http_source *hs = r->hs;
	const struct http_resp *p = &r->resp;
	if (p->status < 200 || p->status >= 300) {
		r->discard = 1;
		return 0;
	}
	if (check_validators(r) < 0)
		return -1;
	if (p->status == 206) {
		if (!p->has_range || p->range_unsatisfied || p->range_first != r->off)
			return refuse(r, SB_EPROTO,
				      "asked for bytes %" PRIu64 "-, got another range", r->off);
		if (p->range_total >= 0 && (uint64_t)p->range_total != hs->size)
			return refuse(r, SB_ECHANGED,
				      "source changed during transfer (size %" PRIu64
				      ", now %" PRId64 ")",
				      hs->size, p->range_total);
		return 0;
	}
	if (p->status != 200)
		return refuse(r, SB_EHTTP, "unexpected HTTP %ld %s", p->status,
			      http_resp_reason(p));
	if (p->content_length >= 0 && (uint64_t)p->content_length != hs->size)
		return refuse(r, SB_ECHANGED,
			      "source changed during transfer (size %" PRIu64 ", now %" PRId64 ")",
			      hs->size, p->content_length);
	r->skip = r->off; /* a whole body: earlier attempts saw its start */
	return 0;
}

static size_t on_stream_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	struct http_source *hs = r->hs;
	size_t n = size * nmemb, total = n;
	r->last_io = uv_now(hs->loop);
	if (!r->checked) {
		r->checked = 1;
		if (stream_check(r) < 0)
			return 0;
	}
	if (r->discard)
		return drain(r, n);
	/* Back-pressure: curl keeps this chunk and offers it again after
	 * curl_easy_pause(CURLPAUSE_CONT). */
	if (!hs->seq.reads.head && r->skip < n && seq_spilled(hs) >= SEQ_SPILL_MAX) {
		hs->seq.paused = 1;
		return CURL_WRITEFUNC_PAUSE;
	}
	size_t k = r->skip < n ? (size_t)r->skip : n;
	r->skip -= k;
	n -= k;
	const uint8_t *p = (const uint8_t *)data + k;
	if (n > hs->size - hs->seq.pos) {
		refuse(r, SB_ECHANGED,
		       "source changed during transfer (more than %" PRIu64 " bytes)", hs->size);
		return 0;
	}
	hs->seq.pos += n;
	r->count += n;
	seq_give(hs, &p, &n);
	if (n)
		buf_append(&hs->seq.spill, p, n);
	return total;
}

static void stream_done(struct http_req *r, CURLcode rc)
{
	struct http_source *hs = r->hs;
	if (attempt_failed(r, rc))
		return;
	if (!r->checked) {
		r->checked = 1;
		if (stream_check(r) < 0) {
			finish(r, r->verdict);
			return;
		}
	}
	if (hs->seq.pos == hs->size) {
		hs->seq.xfer = NULL;
		req_free(r);
		return;
	}
	if (r->resp.status == 200 && r->resp.content_length < 0) {
		fail(r, SB_ECHANGED,
		     "source changed during transfer (%" PRIu64 " bytes, was %" PRIu64 ")",
		     hs->seq.pos, hs->size);
		return;
	}
	if (r->count > 0)
		start_attempt(r);
	else
		retry_or_fail(r, SB_EHTTP, "response ended at byte %" PRIu64 " of %" PRIu64,
			      hs->seq.pos, hs->size);
}

static int read_seq(struct http_source *hs, struct http_req *r)
{
	if (r->off != hs->seq.next_off) {
		if (hs->seq.reads.head) {
			source_set_error(hs->src,
					 "GET %s: reads of a sequential "
					 "source must come in order (at %" PRIu64 ", not %" PRIu64
					 ")",
					 hs->shown_url, hs->seq.next_off, r->off);
			req_free(r);
			return -EINVAL;
		}
		seq_reset(hs, r->off);
	}
	hs->seq.next_off = r->off + r->len;
	if (hs->seq.error) {
		r->detail = hs->seq.error_detail ? xstrdup(hs->seq.error_detail) : NULL;
		finish(r, hs->seq.error);
		return 0;
	}
	list_push(&hs->seq.reads, r);
	seq_feed(hs);
	if (r->state == ST_DONE)
		return 0;
	struct http_req *x = hs->seq.xfer;
	if (!x) {
		x = req_new(hs, REQ_STREAM);
		hs->seq.xfer = x;
		list_push(&hs->active, x);
		start_attempt(x);
	} else if (hs->seq.paused && x->easy && seq_spilled(hs) < SEQ_SPILL_MAX) {
		hs->seq.paused = 0;
		x->last_io = uv_now(hs->loop);
		curl_easy_pause(x->easy, CURLPAUSE_CONT);
	}
	return 0;
}

/* Transfers. */

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
	struct http_req *r = arg;
	curl_easy_cleanup(easy);
	r->easy = NULL;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	switch (r->kind) {
	case REQ_RANGE:
		range_done(r, rc);
		break;
	case REQ_STREAM:
		stream_done(r, rc);
		break;
	default:
		list_done(r, rc);
		break;
	}
}

static void start_attempt(struct http_req *r)
{
	struct http_source *hs = r->hs;
	struct source *src = hs->src;
	char range[RANGE_SPEC_MAX];
	CURL *e = curl_easy_init();
	if (!e) {
		fail(r, -ENOMEM, "cannot create a transfer");
		return;
	}
	http_easy_defaults(e, src->opt.connect_seconds, src->opt.stall_seconds);
	curl_easy_setopt(e, CURLOPT_URL, src->uri.url);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r);
	r->errbuf[0] = '\0';
	http_resp_reset(&r->resp);
	r->checked = r->discard = r->whole = r->verdict = 0;
	r->discarded = 0;
	r->count = 0;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	switch (r->kind) {
	case REQ_HEAD:
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_list_body);
		break;
	case REQ_PROBE:
		curl_easy_setopt(e, CURLOPT_RANGE, "0-0");
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_list_body);
		break;
	case REQ_COUNT:
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_list_body);
		break;
	case REQ_RANGE:
		snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, r->off + r->got,
			 r->off + r->len - 1);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
		add_if_range(r);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_range_body);
		break;
	case REQ_STREAM:
		r->off = hs->seq.pos;
		r->skip = 0;
		if (r->off > 0 && hs->ranges == 1) {
			snprintf(range, sizeof range, "%" PRIu64 "-", r->off);
			curl_easy_setopt(e, CURLOPT_RANGE, range);
			add_if_range(r);
		}
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_stream_body);
		break;
	case REQ_SEQ_READ:
		fatal("http source: a sequential read has no transfer");
	}
	if (r->hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	r->easy = e;
	r->state = ST_RUNNING;
	r->last_io = uv_now(hs->loop);
	if (r->kind == REQ_STREAM)
		hs->seq.paused = 0;
	int rc = http_multi_add(hs->multi, e, on_done, r);
	if (rc < 0) {
		curl_easy_cleanup(e);
		r->easy = NULL;
		fail(r, rc, "cannot start the transfer");
		return;
	}
	wake_arm(hs); /* the stall deadline */
}

/* Names. */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode; NULL when the result would hold a NUL byte. */
static char *pct_decode(const char *s)
{
	size_t n = strlen(s), j = 0;
	char *out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
			out[j++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[j++] = s[i];
		}
	}
	out[j] = '\0';
	if (j != strlen(out)) {
		free(out);
		return NULL;
	}
	return out;
}

static int url_file_name(struct http_source *hs, char **out)
{
	CURLU *u = curl_url();
	char *path = NULL;
	int rc = SB_EURI;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, hs->src->uri.url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
		source_set_error(hs->src, "malformed URL %s", hs->shown_url);
		goto out;
	}
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (!*base) {
		source_set_error(hs->src, "URL %s names no file (it ends with '/')", hs->shown_url);
		goto out;
	}
	char *name = pct_decode(base);
	if (!name || strchr(name, '/') || path_check_relative(name) < 0) {
		source_set_error(hs->src, "URL %s: \"%s\" cannot be used as a file name",
				 hs->shown_url, base);
		free(name);
		goto out;
	}
	*out = name;
	rc = 0;
out:
	curl_free(path);
	curl_url_cleanup(u);
	return rc;
}

static char *url_for_messages(const char *url)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;
	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		curl_url_set(u, CURLUPART_USER, NULL, 0);
		curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		curl_url_set(u, CURLUPART_QUERY, NULL, 0);
		curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
		if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
			out = xstrdup(s);
	}
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

/* Operations. */

static int http_list(struct source *src, source_done_cb cb, void *arg)
{
	struct http_source *hs = src->impl;
	char *name;
	for (struct http_req *r = hs->active.head; r; r = r->next)
		if (r->kind == REQ_HEAD || r->kind == REQ_PROBE || r->kind == REQ_COUNT)
			return -EBUSY;
	int rc = url_file_name(hs, &name);
	if (rc < 0)
		return rc;
	free(hs->name);
	hs->name = name;
	free(hs->etag);
	free(hs->last_modified);
	hs->etag = hs->last_modified = NULL;
	hs->size = 0;
	hs->size_known = hs->counted = hs->listed = 0;
	hs->ranges = -1;
	seq_reset(hs, 0);
	struct http_req *r = req_new(hs, REQ_HEAD);
	r->cb = cb;
	r->arg = arg;
	list_push(&hs->active, r);
	start_attempt(r);
	return 0;
}

static int http_read(struct source *src, size_t index, uint64_t off, size_t len, void *buf,
		     source_done_cb cb, void *arg)
{
	struct http_source *hs = src->impl;
	if (!hs->listed || index >= src->listing.nfiles) {
		source_set_error(src, "GET %s: read before a listing", hs->shown_url);
		return -EINVAL;
	}
	if (off > hs->size || len > hs->size - off) {
		source_set_error(src,
				 "GET %s: bytes %" PRIu64 "+%zu lie past the end (%" PRIu64 ")",
				 hs->shown_url, off, len, hs->size);
		return -EINVAL;
	}
	struct http_req *r = req_new(hs, src->sequential ? REQ_SEQ_READ : REQ_RANGE);
	r->off = off;
	r->len = len;
	r->buf = buf;
	r->cb = cb;
	r->arg = arg;
	if (len == 0) {
		finish(r, 0);
		return 0;
	}
	if (src->sequential)
		return read_seq(hs, r);
	list_push(&hs->active, r);
	start_attempt(r);
	return 0;
}

static void http_cancel(struct source *src)
{
	struct http_source *hs = src->impl;
	struct http_req *r, *next;
	for (r = hs->done.head; r; r = r->next) {
		r->status = SB_ECANCELED;
		free(r->detail);
		r->detail = NULL;
	}
	for (r = hs->active.head; r; r = next) {
		next = r->next;
		if (r->kind == REQ_STREAM)
			continue; /* seq_reset below */
		free(r->detail);
		r->detail = NULL;
		finish(r, SB_ECANCELED);
	}
	while ((r = hs->seq.reads.head)) {
		free(r->detail);
		r->detail = NULL;
		finish(r, SB_ECANCELED);
	}
	seq_reset(hs, 0);
}

static void wake_closed(uv_handle_t *h)
{
	free(h->data);
}

static void http_free(struct source *src)
{
	struct http_source *hs = src->impl;
	if (!hs)
		return;
	hs->closing = 1;
	while (hs->active.head)
		req_free(hs->active.head);
	while (hs->seq.reads.head)
		req_free(hs->seq.reads.head);
	while (hs->done.head)
		req_free(hs->done.head);
	hs->seq.xfer = NULL;
	buf_close(&hs->seq.spill);
	free(hs->seq.error_detail);
	free(hs->shown_url);
	free(hs->name);
	free(hs->etag);
	free(hs->last_modified);
	http_multi_free(hs->multi);
	uv_close((uv_handle_t *)&hs->wake, wake_closed);
	src->impl = NULL;
}

static const struct source_ops http_ops = {
    .name = "http",
    .list = http_list,
    .read = http_read,
    .pread = NULL,
    .cancel = http_cancel,
    .free = http_free,
};

int source_http_new(struct source *src)
{
	if (!src->uri.url)
		return SB_EURI;
	struct http_source *hs = xcalloc(1, sizeof *hs);
	hs->src = src;
	hs->loop = src->loop;
	hs->ranges = -1;
	hs->stall_ms = (uint64_t)src->opt.stall_seconds * 1000;
	hs->shown_url = url_for_messages(src->uri.url);
	if (!hs->shown_url) {
		free(hs);
		return SB_EURI;
	}
	int rc = http_multi_new(src->loop, &hs->multi);
	if (rc < 0) {
		free(hs->shown_url);
		free(hs);
		return rc;
	}
	uv_timer_init(src->loop, &hs->wake);
	hs->wake.data = hs;
	hs->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)hs) | 1;
	src->ops = &http_ops;
	src->impl = hs;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	return 0;
}
