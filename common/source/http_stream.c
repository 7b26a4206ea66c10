/* The sequential mode of the http(s):// source (http.c): for a server
 * that gives no size or no ranges, one GET whose bytes are handed to the
 * reads in order; bytes ahead of the reader are spilled up to
 * SEQ_SPILL_MAX, and a read elsewhere, with none waiting, starts over. */
#include "common/source/http_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

static size_t seq_spilled(const struct http_source *hs)
{
	return hs->seq.spill.len - hs->seq.spill_off;
}

static void seq_give(struct http_source *hs, const uint8_t **data, size_t *n)
{
	struct hs_req *rd;
	while (*n && hs->seq.reads.head) {
		rd = hs_req_of(hs->seq.reads.head);
		size_t k = rd->base.len - rd->base.got < *n ? rd->base.len - rd->base.got : *n;
		memcpy(rd->base.buf + rd->base.got, *data, k);
		rd->base.got += k;
		*data += k;
		*n -= k;
		hs->src->bytes_read += k;
		if (rd->base.got == rd->base.len)
			http_req_finish(&rd->base, 0);
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

void source_http_seq_reset(struct http_source *hs, uint64_t off)
{
	if (hs->seq.xfer)
		source_http_req_free(hs->seq.xfer);
	hs->seq.xfer = NULL;
	buf_reset(&hs->seq.spill);
	hs->seq.spill_off = 0;
	hs->seq.pos = off;
	hs->seq.next_off = off;
	hs->seq.error = 0;
	free(hs->seq.error_detail);
	hs->seq.error_detail = NULL;
}

/* The stream gave up: every waiting read fails the same way, and so do
 * later reads until the caller starts over at another offset. */
void source_http_seq_fail(struct http_source *hs, struct hs_req *x)
{
	struct http_req *rd;
	while ((rd = hs->seq.reads.head)) {
		free(rd->detail);
		rd->detail = x->base.detail ? xstrdup(x->base.detail) : NULL;
		http_req_finish(rd, x->base.status);
	}
	hs->seq.error = x->base.status;
	free(hs->seq.error_detail);
	hs->seq.error_detail = x->base.detail;
	x->base.detail = NULL;
	hs->seq.xfer = NULL;
	source_http_req_free(x);
}

static int stream_check(struct hs_req *r)
{
	struct http_source *hs = r->hs;
	const struct http_resp *p = &r->base.resp;
	if (p->status < 200 || p->status >= 300) {
		r->base.discard = 1;
		return 0;
	}
	if (source_http_check_validators(r) < 0)
		return -1;
	if (p->status == 206) {
		if (!p->has_range || p->range_unsatisfied || p->range_first != r->base.off)
			return http_req_refuse(&r->base, SB_EPROTO,
					       "asked for bytes %" PRIu64 "-, got another range",
					       r->base.off);
		if (p->range_total >= 0 && (uint64_t)p->range_total != hs->size)
			return http_req_refuse(&r->base, SB_ECHANGED,
					       "source changed during transfer (size %" PRIu64
					       ", now %" PRId64 ")",
					       hs->size, p->range_total);
		return 0;
	}
	if (p->status != 200)
		return http_req_refuse(&r->base, SB_EHTTP, "unexpected HTTP %ld %s", p->status,
				       http_resp_reason(p));
	if (p->content_length >= 0 && (uint64_t)p->content_length != hs->size)
		return http_req_refuse(&r->base, SB_ECHANGED,
				       "source changed during transfer (size %" PRIu64
				       ", now %" PRId64 ")",
				       hs->size, p->content_length);
	r->skip = r->base.off; /* a whole body: earlier attempts saw its start */
	return 0;
}

size_t source_http_stream_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hs_req *r = arg;
	struct http_source *hs = r->hs;
	size_t n = size * nmemb, total = n;
	r->base.last_io = uv_now(hs->http.loop);
	if (!r->base.checked) {
		r->base.checked = 1;
		if (stream_check(r) < 0)
			return 0;
	}
	if (r->base.discard)
		return http_req_drain(&r->base, n);
	/* Back-pressure: curl keeps this chunk and offers it again after
	 * curl_easy_pause(CURLPAUSE_CONT). */
	if (!hs->seq.reads.head && r->skip < n && seq_spilled(hs) >= SEQ_SPILL_MAX) {
		r->base.paused = 1;
		return CURL_WRITEFUNC_PAUSE;
	}
	size_t k = r->skip < n ? (size_t)r->skip : n;
	r->skip -= k;
	n -= k;
	const uint8_t *p = (const uint8_t *)data + k;
	if (n > hs->size - hs->seq.pos) {
		http_req_refuse(&r->base, SB_ECHANGED,
				"source changed during transfer (more than %" PRIu64 " bytes)",
				hs->size);
		return 0;
	}
	hs->seq.pos += n;
	r->base.count += n;
	seq_give(hs, &p, &n);
	if (n)
		buf_append(&hs->seq.spill, p, n);
	return total;
}

void source_http_stream_done(struct hs_req *r, CURLcode rc)
{
	struct http_source *hs = r->hs;
	if (http_req_attempt_failed(&r->base, rc))
		return;
	if (!r->base.checked) {
		r->base.checked = 1;
		if (stream_check(r) < 0) {
			http_req_finish(&r->base, r->base.verdict);
			return;
		}
	}
	if (hs->seq.pos == hs->size) {
		hs->seq.xfer = NULL;
		source_http_req_free(r);
		return;
	}
	if (r->base.resp.status == 200 && r->base.resp.content_length < 0) {
		http_req_fail(&r->base, SB_ECHANGED,
			      "source changed during transfer (%" PRIu64 " bytes, was %" PRIu64 ")",
			      hs->seq.pos, hs->size);
		return;
	}
	if (r->base.count > 0)
		http_req_start(&r->base);
	else
		http_req_retry(&r->base, SB_EHTTP, "response ended at byte %" PRIu64 " of %" PRIu64,
			       hs->seq.pos, hs->size);
}

int source_http_read_seq(struct http_source *hs, struct hs_req *r)
{
	if (r->base.off != hs->seq.next_off) {
		if (hs->seq.reads.head) {
			source_set_error(hs->src,
					 "GET %s: reads of a sequential "
					 "source must come in order (at %" PRIu64 ", not %" PRIu64
					 ")",
					 hs->shown_url, hs->seq.next_off, r->base.off);
			source_http_req_free(r);
			return -EINVAL;
		}
		source_http_seq_reset(hs, r->base.off);
	}
	hs->seq.next_off = r->base.off + r->base.len;
	if (hs->seq.error) {
		r->base.detail = hs->seq.error_detail ? xstrdup(hs->seq.error_detail) : NULL;
		http_req_finish(&r->base, hs->seq.error);
		return 0;
	}
	http_req_push(&hs->seq.reads, &r->base);
	seq_feed(hs);
	if (r->base.state == HTTP_REQ_DONE)
		return 0;
	struct hs_req *x = hs->seq.xfer;
	if (!x) {
		x = source_http_req_new(hs, REQ_STREAM);
		x->base.progress_reset = SEQ_PROGRESS_RESET;
		hs->seq.xfer = x;
		http_req_start(&x->base);
	} else if (x->base.paused && x->base.easy && seq_spilled(hs) < SEQ_SPILL_MAX) {
		x->base.paused = 0;
		x->base.last_io = uv_now(hs->http.loop);
		curl_easy_pause(x->base.easy, CURLPAUSE_CONT);
	}
	return 0;
}
