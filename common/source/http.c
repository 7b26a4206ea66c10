/* The http(s):// single-file source. list() learns size and validators with
 * HEAD (or a one-byte ranged GET when HEAD is refused); read() is one ranged
 * GET per call, all of them running in parallel through one HTTP client
 * (common/source/http_req.c) on the loop. A server that gives no size or no ranges
 * is read as one sequential stream instead (http_stream.c). Every response is checked
 * against the listing's validators, so a file that changes mid-transfer
 * fails with SB_ECHANGED rather than mixing two versions. Callbacks run from
 * the client's timer, never from inside libcurl or from the call that
 * started the operation. */
#include "common/source/http_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/source/http_req.h"
#include "common/log.h"
#include "common/path.h"
#include "common/progress.h"

struct hs_req *source_http_req_new(struct http_source *hs, enum req_kind kind)
{
	struct hs_req *r = xcalloc(1, sizeof *r);
	http_req_init(&r->base, &hs->http);
	r->hs = hs;
	r->kind = kind;
	return r;
}

void source_http_req_free(struct hs_req *r)
{
	http_req_close(&r->base);
	free(r);
}

/* The client's hooks. */

static void describe(const struct http_req *b, struct buf *out)
{
	const struct hs_req *r = (const struct hs_req *)b;
	buf_printf(out, "%s %s: ", r->kind == REQ_HEAD ? "HEAD" : "GET", r->hs->shown_url);
}

/* A failed stream fails its waiting reads at once. */
static int finishing(struct http_req *b)
{
	struct hs_req *r = hs_req_of(b);
	if (r->kind != REQ_STREAM)
		return 0;
	source_http_seq_fail(r->hs, r);
	return 1;
}

static void deliver(struct http_req *b)
{
	struct hs_req *r = hs_req_of(b);
	source_req_deliver(r->hs->src, b, r->cb, r->arg);
}

static void free_hook(struct http_req *b)
{
	source_http_req_free(hs_req_of(b));
}

static void status_failed(struct http_req *b)
{
	struct http_source *hs = hs_req_of(b)->hs;
	const struct http_resp *p = &b->resp;
	if (p->status == 416 && p->range_unsatisfied && p->range_total >= 0 && hs->listed &&
	    (uint64_t)p->range_total != hs->size) {
		http_req_fail(b, SB_ECHANGED,
			      "source changed during transfer (size %" PRIu64 ", now %" PRId64 ")",
			      hs->size, p->range_total);
		return;
	}
	http_req_status_failed(b, http_resp_reason(p), 0);
}

/* Validators: every response must describe the version that was listed. */
int source_http_check_validators(struct hs_req *r)
{
	struct http_source *hs = r->hs;
	const struct http_resp *p = &r->base.resp;
	char a[HTTP_ETAG_MAX], b[HTTP_ETAG_MAX];
	if (hs->etag && p->etag[0]) {
		http_etag_opaque(hs->etag, a, sizeof a);
		http_etag_opaque(p->etag, b, sizeof b);
		if (strcmp(a, b) != 0)
			return http_req_refuse(&r->base, SB_ECHANGED,
					       "source changed during transfer (ETag %s, now %s)",
					       hs->etag, p->etag);
	} else if (!hs->etag && hs->last_modified && p->last_modified[0] &&
		   strcmp(hs->last_modified, p->last_modified) != 0) {
		return http_req_refuse(&r->base, SB_ECHANGED,
				       "source changed during transfer (Last-Modified %s, now %s)",
				       hs->last_modified, p->last_modified);
	}
	return 0;
}

/* If-Range turns a change of the file into a 200 instead of bytes of the
 * new version spliced into the old. A weak ETag may not be used there. */
static void add_if_range(struct hs_req *r)
{
	struct http_source *hs = r->hs;
	if (hs->etag && !http_etag_is_weak(hs->etag))
		http_req_add_header(&r->base, "If-Range: %s", hs->etag);
	else if (!hs->etag && hs->last_modified)
		http_req_add_header(&r->base, "If-Range: %s", hs->last_modified);
}

/* list() */

static size_t on_list_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hs_req *r = arg;
	size_t n = size * nmemb;
	r->base.last_io = uv_now(r->hs->http.loop);
	if (!r->base.checked) {
		r->base.checked = 1;
		long st = r->base.resp.status;
		if (st < 200 || st >= 300) {
			r->base.discard = 1;
		} else if (r->kind == REQ_PROBE && st == 200 && r->base.resp.content_length >= 0) {
			r->whole = 1; /* the headers told us everything */
			return 0;
		}
	}
	if (r->base.discard)
		return http_req_drain(&r->base, n);
	r->base.count += n;
	/* Counting a body without a length: no end is promised, and one that
	 * trickles in never stalls. */
	struct http_source *hs = r->hs;
	uint64_t now = uv_now(hs->http.loop), secs = hs->src->opt.unsized_seconds
							 ? hs->src->opt.unsized_seconds
							 : SOURCE_MAX_UNSIZED_S;
	if (!hs->count_start)
		hs->count_start = now;
	if (now - hs->count_start > secs * 1000) {
		http_req_refuse(&r->base, SB_ETOOBIG,
				"the body has no length and has not ended after %llu s "
				"(--max-unsized-seconds); %llu bytes so far",
				(unsigned long long)secs, (unsigned long long)r->base.count);
		return 0;
	}
	if (r->base.count > r->hs->src->opt.limits.file_bytes) {
		char max[32];
		progress_fmt_bytes(r->hs->src->opt.limits.file_bytes, max, sizeof max);
		http_req_refuse(&r->base, SB_ETOOBIG,
				"the body goes on past %s, the limit per file (--max-file-size)",
				max);
		return 0;
	}
	return n;
}

static void take_validators(struct http_source *hs, const struct http_resp *p)
{
	free(hs->etag);
	free(hs->last_modified);
	hs->etag = p->etag[0] ? xstrdup(p->etag) : NULL;
	hs->last_modified = p->last_modified[0] ? xstrdup(p->last_modified) : NULL;
}

static void list_complete(struct hs_req *r)
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
	http_req_finish(&r->base, 0);
}

static void list_next(struct hs_req *r, enum req_kind kind)
{
	r->kind = kind;
	r->base.failures = 0;
	http_req_start(&r->base);
}

static void list_done(struct hs_req *r, CURLcode rc)
{
	struct http_source *hs = r->hs;
	const struct http_resp *p = &r->base.resp;
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
	if (http_req_attempt_failed(&r->base, rc))
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
				hs->size = r->base.count;
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
		hs->size = r->base.count;
		hs->size_known = 1;
		hs->counted = 1;
		list_complete(r);
		return;
	}
}

/* Ranged reads. */

/* Judge a response at its first body byte (or at its end when none came). */
static int range_check(struct http_req *b)
{
	struct hs_req *r = hs_req_of(b);
	struct http_source *hs = r->hs;
	const struct http_resp *p = &r->base.resp;
	if (p->status < 200 || p->status >= 300) {
		r->base.discard = 1;
		return 0;
	}
	if (source_http_check_validators(r) < 0)
		return -1;
	int rc = http_req_check_range(&r->base, hs->size);
	if (rc == HTTP_RANGE_RESIZED)
		return http_req_refuse(&r->base, SB_ECHANGED,
				       "source changed during transfer (size %" PRIu64
				       ", now %" PRId64 ")",
				       hs->size, p->range_total);
	return rc;
}

static void range_done(struct hs_req *r, CURLcode rc)
{
	if (!http_req_attempt_failed(&r->base, rc))
		http_req_range_end(&r->base);
}

/* Transfers. */

static void done(struct http_req *b, CURLcode rc)
{
	struct hs_req *r = hs_req_of(b);
	switch (r->kind) {
	case REQ_RANGE:
		range_done(r, rc);
		break;
	case REQ_STREAM:
		source_http_stream_done(r, rc);
		break;
	default:
		list_done(r, rc);
		break;
	}
}

static void setup(struct http_req *b, CURL *e)
{
	struct hs_req *r = hs_req_of(b);
	struct http_source *hs = r->hs;
	char range[RANGE_SPEC_MAX];
	curl_easy_setopt(e, CURLOPT_URL, hs->src->uri.url);
	r->whole = 0;
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
		http_req_set_range(b, e);
		add_if_range(r);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_req_range_body);
		break;
	case REQ_STREAM:
		b->off = hs->seq.pos;
		r->skip = 0;
		if (b->off > 0 && hs->ranges == 1) {
			snprintf(range, sizeof range, "%" PRIu64 "-", b->off);
			curl_easy_setopt(e, CURLOPT_RANGE, range);
			add_if_range(r);
		}
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, source_http_stream_body);
		break;
	case REQ_SEQ_READ:
		fatal("http source: a sequential read has no transfer");
	}
}

static const struct http_req_ops req_ops = {
    .setup = setup,
    .done = done,
    .deliver = deliver,
    .describe = describe,
    .free = free_hook,
    .status_failed = status_failed,
    .finishing = finishing,
    .range_check = range_check,
};

/* Names. */

/* Percent-decode; NULL when the result would hold a NUL byte. */
static char *pct_decode(const char *s)
{
	size_t n = strlen(s), j = 0;
	char *out = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && (hi = hash_hexval(s[i + 1])) >= 0 &&
		    (lo = hash_hexval(s[i + 2])) >= 0) {
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

/* Operations. */

static int http_list(struct source *src, source_done_cb cb, void *arg)
{
	struct http_source *hs = src->impl;
	char *name;
	for (struct http_req *b = hs->http.active.head; b; b = b->next) {
		enum req_kind k = hs_req_of(b)->kind;
		if (k == REQ_HEAD || k == REQ_PROBE || k == REQ_COUNT)
			return -EBUSY;
	}
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
	hs->count_start = 0;
	hs->ranges = -1;
	source_http_seq_reset(hs, 0);
	struct hs_req *r = source_http_req_new(hs, REQ_HEAD);
	r->cb = cb;
	r->arg = arg;
	http_req_start(&r->base);
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
	struct hs_req *r = source_http_req_new(hs, src->sequential ? REQ_SEQ_READ : REQ_RANGE);
	r->base.off = off;
	r->base.len = len;
	r->base.buf = buf;
	r->cb = cb;
	r->arg = arg;
	if (len == 0) {
		http_req_finish(&r->base, 0);
		return 0;
	}
	if (src->sequential)
		return source_http_read_seq(hs, r);
	http_req_start(&r->base);
	return 0;
}

static void http_cancel(struct source *src)
{
	struct http_source *hs = src->impl;
	struct http_req *r, *next;
	for (r = hs->http.done.head; r; r = r->next)
		http_req_cancel(r);
	for (r = hs->http.active.head; r; r = next) {
		next = r->next;
		if (hs_req_of(r)->kind != REQ_STREAM) /* seq_reset below */
			http_req_cancel(r);
	}
	while ((r = hs->seq.reads.head))
		http_req_cancel(r);
	source_http_seq_reset(hs, 0);
}

static void source_closed(struct http_client *c)
{
	free(c); /* the first member of its http_source */
}

static void http_free(struct source *src)
{
	struct http_source *hs = src->impl;
	if (!hs)
		return;
	struct http_req *r, *next;
	for (r = hs->seq.reads.head; r; r = next) {
		next = r->next;
		source_http_req_free(hs_req_of(r));
	}
	hs->seq.xfer = NULL; /* on active: freed with the client's requests */
	buf_close(&hs->seq.spill);
	free(hs->seq.error_detail);
	free(hs->shown_url);
	free(hs->name);
	free(hs->etag);
	free(hs->last_modified);
	http_client_close(&hs->http, source_closed);
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
	hs->ranges = -1;
	hs->shown_url = http_url_for_messages(src->uri.url);
	if (!hs->shown_url) {
		free(hs);
		return SB_EURI;
	}
	struct http_client_options o;
	source_http_options(src, &o);
	int rc = http_client_init(&hs->http, src->loop, &req_ops, &o);
	if (rc < 0) {
		free(hs->shown_url);
		free(hs);
		return rc;
	}
	src->ops = &http_ops;
	src->impl = hs;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	return 0;
}
