/* libFuzzer target for the requests the small HTTP server (common/net/httpd.c)
 * reads on its health, metrics, API and registry mirror ports, through
 * httpd_parse_request: the first input byte is the size of the reads the
 * bytes arrive in (0: all at once), the rest what a client sends. Whatever
 * the bytes: no crash, leak or out-of-bounds access; the same bytes give
 * the same verdict however they are cut into reads; a request routed is a
 * GET or HEAD with a path starting with '/' (or '*'), a bounded query and a Range
 * kept only when it fits; anything else is refused with 400, 405 or 431,
 * or waits for more. */
#include "tests/fuzz/fuzz_util.h"

#include "common/net/httpd.h"

static int parse(const uint8_t *d, size_t n, size_t chunk, struct httpd_parsed *p)
{
	int rc = httpd_parse_request(d, n, chunk, p);
	fuzz_check(rc == 0 || rc == -1 || rc == 400 || rc == 405 || rc == 431, "unexpected status");
	if (rc == 0) {
		/* http_parser takes "*..." as a path (the asterisk form): no
		 * route starts with it, so it meets 404. */
		fuzz_check(p->path && (p->path[0] == '/' || p->path[0] == '*'),
			   "path does not start with '/'");
		fuzz_check(p->query && !strchr(p->path, '?'), "query left in the path");
		fuzz_check(p->head == 0 || p->head == 1, "method");
		fuzz_check(!p->range || strlen(p->range) <= HTTPD_RANGE_MAX, "range too long");
		fuzz_check(strlen(p->path) + strlen(p->query) <= HTTPD_REQUEST_MAX,
			   "target too long");
	} else {
		fuzz_check(!p->path && !p->query && !p->range, "request left on failure");
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct httpd_parsed a, b;
	int ra = parse(data + 1, size - 1, data[0], &a);
	int rb = parse(data + 1, size - 1, 0, &b);
	/* A refusal may come at another byte when the reads differ (too
	 * large is judged on the bytes read so far): compare only what was
	 * routed. */
	if (ra == 0 || rb == 0) {
		fuzz_check(ra == rb, "the reads change the verdict");
		fuzz_check(a.head == b.head && !strcmp(a.path, b.path) &&
			       !strcmp(a.query, b.query) && !a.range == !b.range &&
			       (!a.range || !strcmp(a.range, b.range)),
			   "the reads change the request");
	}
	httpd_parsed_close(&a);
	httpd_parsed_close(&b);
	return 0;
}
