/* libFuzzer target for what a registry answers to blob uploads, read by
 * common/source/oci_push.c: the Location of an upload session (resolved
 * against the URL it answered, after POST and after each PATCH), the
 * digest query added to it for the closing PUT, and the Range a PATCH
 * answer carries. The input is three lines: the upload URL the client
 * used, the Location, the Range. Whatever the bytes: no crash, leak or
 * out-of-bounds access; a session URL is an http(s) URL that resolves to
 * itself, keeps doing so with the digest added, and the Range read is the
 * number the header gives. */
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <inttypes.h>

#include "common/source/oci_push.h"

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void session(const char *base, const char *location)
{
	char *s = oci_push_resolve(base, location);
	if (!s)
		return;
	fuzz_check(!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8), "not http(s)");
	char *again = oci_push_resolve(s, s);
	fuzz_check(again && !strcmp(again, s), "a session URL does not resolve to itself");
	fuzz_check(oci_push_same_origin(s, s), "a URL is not of its own origin");
	fuzz_check(oci_push_same_origin(base, s) == oci_push_same_origin(s, base),
		   "same origin is not symmetric");
	char *put = oci_push_with_digest(s, DIGEST);
	fuzz_check(strstr(put, "digest=" DIGEST) != NULL, "digest not added");
	char *put2 = oci_push_resolve(s, put);
	fuzz_check(put2 != NULL, "the closing PUT's URL does not parse");
	fuzz_check(oci_push_same_origin(s, put2), "the digest moved the upload elsewhere");
	free(put2);
	free(put);
	/* A PATCH answer's Location, relative to the session. */
	char *next = oci_push_resolve(s, location);
	free(next);
	free(again);
	free(s);
}

static void range(const char *r)
{
	uint64_t last = 0;
	if (oci_push_range_last(r, &last) < 0)
		return;
	const char *p = !strncasecmp(r, "bytes=", 6) ? r + 6 : r;
	char want[48];
	snprintf(want, sizeof want, "0-%" PRIu64, last);
	/* p is r + 6 only when r starts with "bytes=": the analyzer does not
	 * see that through strncasecmp and reads past an empty r. */
	/* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
	fuzz_check(p[0] == '0', "a range not from 0 accepted");
	if (last < UINT64_MAX) { /* what the chunk that ends there was sent as */
		char out[48];
		oci_push_content_range(out, sizeof out, 0, last + 1);
		fuzz_check(!strcmp(out, want), "content range does not match");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *base = fuzz_part(&data, &size, "\n");
	char *location = fuzz_part(&data, &size, "\n");
	char *r = fuzz_part(&data, &size, "\n");
	if (base && location)
		session(base, location);
	if (r)
		range(r);
	free(base);
	free(location);
	free(r);
	return 0;
}
