/* libFuzzer target for HTTP response headers as every HTTP-based source
 * reads them: http_resp_header (common/http_multi.c) fed the lines of a
 * header block one by one as libcurl delivers them (each with its line
 * end), with Content-Length, Content-Range, ETag, Last-Modified,
 * Accept-Ranges and Retry-After (seconds or an HTTP date); then the reason
 * phrase, the opaque part of the ETag and the backoff Retry-After leads to.
 * Whatever the bytes: no crash or out-of-bounds access, and after every
 * line the response says only what can be: a status of three digits at
 * most, a Content-Range whose first byte is not past its last nor the last
 * past the total, a Retry-After from 0 to HTTP_RETRY_AFTER_MAX_S, a backoff
 * within its caps. */
#include "tests/fuzz/fuzz_util.h"

#include "common/http_multi.h"

static void check(const struct http_resp *r)
{
	fuzz_check(r->status >= 0 && r->status <= 999, "status out of range");
	fuzz_check(r->content_length >= -1, "content length");
	fuzz_check(r->accept_ranges >= -1 && r->accept_ranges <= 1, "accept ranges");
	fuzz_check(r->retry_after >= -1 && r->retry_after <= HTTP_RETRY_AFTER_MAX_S,
		   "retry-after out of range");
	fuzz_check(r->range_total >= -1, "range total");
	if (r->has_range && !r->range_unsatisfied) {
		fuzz_check(r->range_first <= r->range_last, "range first past last");
		fuzz_check(r->range_total < 0 || r->range_last < (uint64_t)r->range_total,
			   "range last past the total");
	}
	fuzz_check(strnlen(r->reason, sizeof r->reason) < sizeof r->reason &&
		       strnlen(r->etag, sizeof r->etag) < sizeof r->etag &&
		       strnlen(r->last_modified, sizeof r->last_modified) < sizeof r->last_modified,
		   "a field not terminated");
	fuzz_check(!strpbrk(r->reason, "\r\n") && !strpbrk(r->etag, "\r\n"), "a line end kept");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_resp r;
	http_resp_reset(&r);
	check(&r);
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		http_resp_header(&r, p, n);
		check(&r);
		p += n;
	}
	const char *reason = http_resp_reason(&r);
	fuzz_check(reason && strlen(reason) < HTTP_REASON_MAX, "reason");

	char opaque[HTTP_ETAG_MAX];
	http_etag_opaque(r.etag, opaque, sizeof opaque);
	fuzz_check(strlen(opaque) <= strlen(r.etag), "opaque ETag longer than the ETag");
	if (!http_etag_is_weak(r.etag) && r.etag[0] != '"')
		fuzz_check(!strcmp(opaque, r.etag), "an unquoted strong ETag changed");

	uint64_t rng = 0x9e3779b97f4a7c15ull;
	for (unsigned n = 1; n < 40; n += 7) {
		uint64_t ms = http_backoff_ms(n, r.retry_after, &rng);
		if (r.retry_after >= 0)
			fuzz_check(ms == (uint64_t)r.retry_after * 1000,
				   "Retry-After not honoured");
		else
			fuzz_check(ms <= HTTP_RETRY_CAP_MS, "backoff past its cap");
	}
	fuzz_check(http_status_error(r.status) <= 0, "status error");
	return 0;
}
