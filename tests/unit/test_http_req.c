/* common/source/http_req.c and the decisions it takes from common/http_multi.c:
 * backoff and Retry-After, which statuses and transport errors are retried,
 * status to error mapping, retries until they are used up (and progress
 * forgiving failures), the checks of a ranged answer, and callbacks that
 * run from the loop only. No network: requests are driven by hand. */
#include "testutil.h"

#include <curl/curl.h>
#include <time.h>
#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/source/http_req.h"

/* ---- decisions ---- */

static long retry_after_of(const char *line)
{
	struct http_resp r;
	http_resp_reset(&r);
	const char *st = "HTTP/1.1 429 Too Many Requests\r\n";
	http_resp_header(&r, st, strlen(st));
	http_resp_header(&r, line, strlen(line));
	return r.retry_after;
}

static void test_retry_after(void **state)
{
	(void)state;
	assert_int_equal(retry_after_of("Retry-After: 7\r\n"), 7);
	assert_int_equal(retry_after_of("retry-after: 0\r\n"), 0);
	/* Capped, so one answer cannot park a transfer for hours. */
	assert_int_equal(retry_after_of("Retry-After: 86400\r\n"), HTTP_RETRY_AFTER_MAX_S);
	assert_int_equal(retry_after_of("Retry-After: soon\r\n"), -1);
	assert_int_equal(retry_after_of("X-Other: 5\r\n"), -1);
	/* An HTTP date: in the past means now, the future is capped. */
	assert_int_equal(retry_after_of("Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n"), 0);
	char line[128];
	time_t soon = time(NULL) + 20;
	strftime(line, sizeof line, "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", gmtime(&soon));
	long s = retry_after_of(line);
	assert_true(s >= 18 && s <= 20);
	/* A new status line forgets the old answer's value. */
	struct http_resp r;
	http_resp_reset(&r);
	const char *lines[] = {"HTTP/1.1 503 x\r\n", "Retry-After: 4\r\n", "HTTP/1.1 200 OK\r\n"};
	for (size_t i = 0; i < 3; i++)
		http_resp_header(&r, lines[i], strlen(lines[i]));
	assert_int_equal(r.retry_after, -1);
}

/* Found by tests/fuzz/fuzz_http_resp: what a header line holds inside it
 * goes into messages and, for an ETag, into If-Match. */
static void test_header_control_bytes(void **state)
{
	(void)state;
	struct http_resp r;
	http_resp_reset(&r);
	const char *lines[] = {"HTTP/1.1 503 Slow\rDown\r\n", "ETag: \"a\tb\"\r\n",
			       "Last-Modified: Wed,\x7f"
			       "21 Oct 2015\r\n"};
	for (size_t i = 0; i < 3; i++)
		http_resp_header(&r, lines[i], strlen(lines[i]));
	assert_int_equal(r.status, 503);
	assert_string_equal(r.reason, "Slow?Down");
	assert_string_equal(r.etag, "\"a?b\"");
	assert_string_equal(r.last_modified, "Wed,?21 Oct 2015");
}

static void test_backoff(void **state)
{
	(void)state;
	uint64_t rng = 12345;
	for (unsigned n = 1; n <= 12; n++) {
		uint64_t d = HTTP_RETRY_BASE_MS;
		for (unsigned i = 1; i < n && d < HTTP_RETRY_CAP_MS; i++)
			d *= 2;
		if (d > HTTP_RETRY_CAP_MS)
			d = HTTP_RETRY_CAP_MS;
		for (int k = 0; k < 50; k++) {
			uint64_t ms = http_backoff_ms(n, -1, &rng);
			assert_true(ms >= d / 2 && ms <= d);
		}
	}
	/* Retry-After replaces the backoff, within its cap. */
	assert_int_equal(http_backoff_ms(1, 3, &rng), 3000);
	assert_int_equal(http_backoff_ms(9, 0, &rng), 0);
	assert_int_equal(http_backoff_ms(1, 1000, &rng), HTTP_RETRY_AFTER_MAX_S * 1000);
}

static void test_status_mapping(void **state)
{
	(void)state;
	assert_int_equal(http_status_error(200), 0);
	assert_int_equal(http_status_error(206), 0);
	assert_int_equal(http_status_error(404), SB_ENOTFOUND);
	assert_int_equal(http_status_error(410), SB_ENOTFOUND);
	assert_int_equal(http_status_error(401), SB_EDENIED);
	assert_int_equal(http_status_error(403), SB_EDENIED);
	assert_int_equal(http_status_error(416), SB_EHTTP4XX);
	assert_int_equal(http_status_error(429), SB_EHTTP4XX);
	assert_int_equal(http_status_error(503), SB_EHTTP5XX);
	assert_int_equal(http_status_error(302), SB_EHTTP);
	assert_true(http_status_retryable(408));
	assert_true(http_status_retryable(429));
	assert_true(http_status_retryable(500));
	assert_true(http_status_retryable(599));
	assert_false(http_status_retryable(404));
	assert_false(http_status_retryable(403));
	assert_false(http_status_retryable(416));
	assert_true(http_curl_retryable(CURLE_COULDNT_CONNECT));
	assert_true(http_curl_retryable(CURLE_OPERATION_TIMEDOUT));
	assert_true(http_curl_retryable(CURLE_RECV_ERROR));
	assert_true(http_curl_retryable(CURLE_PARTIAL_FILE));
	assert_false(http_curl_retryable(CURLE_WRITE_ERROR));
	assert_false(http_curl_retryable(CURLE_URL_MALFORMAT));
	assert_false(http_curl_retryable(CURLE_PEER_FAILED_VERIFICATION));
}

static void test_url_for_messages(void **state)
{
	(void)state;
	char *u = http_url_for_messages("https://user:secret@example.com/a/b.bin?sig=xyz#frag");
	assert_non_null(u);
	assert_string_equal(u, "https://example.com/a/b.bin");
	free(u);
	assert_null(http_url_for_messages("not a url"));
}

/* ---- requests, driven by hand ---- */

struct fake_req {
	struct http_req base;
	int delivered, status;
	char *detail;
};

static int delivered_total;

static void fake_setup(struct http_req *r, CURL *e)
{
	(void)r;
	(void)e;
}

static void fake_done(struct http_req *r, CURLcode rc)
{
	(void)r;
	(void)rc;
}

static void fake_deliver(struct http_req *b)
{
	struct fake_req *r = (struct fake_req *)b;
	r->delivered++;
	r->status = b->status;
	r->detail = b->detail;
	b->detail = NULL;
	delivered_total++;
}

static void fake_describe(const struct http_req *r, struct buf *b)
{
	(void)r;
	buf_printf(b, "GET http://fake/: ");
}

static void fake_free(struct http_req *b)
{
	http_req_close(b);
}

static const struct http_req_ops fake_ops = {
    .setup = fake_setup,
    .done = fake_done,
    .deliver = fake_deliver,
    .describe = fake_describe,
    .free = fake_free,
};

struct fixture {
	uv_loop_t loop;
	struct http_client c;
	uint64_t bytes;
};

static int closed_count;

static void on_closed(struct http_client *c)
{
	(void)c;
	closed_count++;
}

static struct fixture *fixture_new(int retries)
{
	struct fixture *f = calloc(1, sizeof *f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	struct http_client_options o = {
	    .retries = retries, .connect_seconds = 5, .stall_seconds = 0, .bytes_read = &f->bytes};
	assert_int_equal(http_client_init(&f->c, &f->loop, &fake_ops, &o), 0);
	return f;
}

static void fixture_free(struct fixture *f)
{
	closed_count = 0;
	http_client_close(&f->c, on_closed);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(closed_count, 1);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
}

static void test_retry_until_given_up(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(2);
	struct fake_req r = {0};
	http_req_init(&r.base, &f->c);
	http_req_push(&f->c.active, &r.base);
	r.base.resp.retry_after = 0; /* no waiting in a test */
	http_req_retry(&r.base, SB_EHTTP5XX, "HTTP %d %s", 503, "Service Unavailable");
	assert_int_equal(r.base.state, HTTP_REQ_WAITING);
	http_req_retry(&r.base, SB_EHTTP5XX, "HTTP %d %s", 503, "Service Unavailable");
	assert_int_equal(r.base.state, HTTP_REQ_WAITING);
	assert_int_equal(r.base.failures, 2);
	http_req_retry(&r.base, SB_EHTTP5XX, "HTTP %d %s", 503, "Service Unavailable");
	assert_int_equal(r.base.state, HTTP_REQ_DONE);
	/* The callback runs from the loop, not from the call. */
	assert_int_equal(r.delivered, 0);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(r.delivered, 1);
	assert_int_equal(r.status, SB_EHTTP5XX);
	assert_string_equal(
	    r.detail, "GET http://fake/: HTTP 503 Service Unavailable (gave up after 3 attempts)");
	free(r.detail);
	http_req_close(&r.base);
	fixture_free(f);
}

static void test_progress_forgives(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(1);
	struct fake_req r = {0};
	http_req_init(&r.base, &f->c);
	http_req_push(&f->c.active, &r.base);
	r.base.resp.retry_after = 0;
	r.base.progress_reset = 100;
	for (int i = 0; i < 5; i++) {
		r.base.count = 100; /* each attempt got somewhere */
		http_req_retry(&r.base, SB_EHTTP, "cut");
		assert_int_equal(r.base.state, HTTP_REQ_WAITING);
		assert_int_equal(r.base.failures, 1);
	}
	r.base.count = 99; /* not enough */
	http_req_retry(&r.base, SB_EHTTP, "cut");
	assert_int_equal(r.base.state, HTTP_REQ_DONE);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(r.status, SB_EHTTP);
	free(r.detail);
	http_req_close(&r.base);
	fixture_free(f);
}

static void test_no_retries_and_cancel(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(0);
	struct fake_req a = {0}, b = {0};
	http_req_init(&a.base, &f->c);
	http_req_init(&b.base, &f->c);
	http_req_push(&f->c.active, &a.base);
	http_req_push(&f->c.active, &b.base);
	http_req_retry(&a.base, SB_ESTALL, "no data for %u s", 30u);
	assert_int_equal(a.base.state, HTTP_REQ_DONE);
	/* Canceled before its callback ran, and one still running. */
	http_req_cancel(&a.base);
	http_req_cancel(&b.base);
	delivered_total = 0;
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(delivered_total, 2);
	assert_int_equal(a.status, SB_ECANCELED);
	assert_null(a.detail);
	assert_int_equal(b.status, SB_ECANCELED);
	http_req_close(&a.base);
	http_req_close(&b.base);
	fixture_free(f);
}

static void test_status_failed(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(3);
	struct fake_req r = {0};
	http_req_init(&r.base, &f->c);
	http_req_push(&f->c.active, &r.base);
	/* A 404 is final at once; a refusal wins over the status. */
	r.base.resp.status = 404;
	assert_int_equal(http_req_attempt_failed(&r.base, CURLE_OK), 1);
	assert_int_equal(r.base.state, HTTP_REQ_DONE);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(r.status, SB_ENOTFOUND);
	assert_string_equal(r.detail, "GET http://fake/: HTTP 404 Not Found");
	free(r.detail);
	r.detail = NULL;
	/* A 2xx with a clean transfer is not a failure. */
	r.base.resp.status = 206;
	r.base.state = HTTP_REQ_RUNNING;
	assert_int_equal(http_req_attempt_failed(&r.base, CURLE_OK), 0);
	/* A transport error worth retrying waits; a forced retry of a 403. */
	assert_int_equal(http_req_attempt_failed(&r.base, CURLE_RECV_ERROR), 1);
	assert_int_equal(r.base.state, HTTP_REQ_WAITING);
	r.base.resp.status = 403;
	r.base.resp.retry_after = 0;
	http_req_status_failed(&r.base, "Forbidden", 1);
	assert_int_equal(r.base.state, HTTP_REQ_WAITING);
	/* A refusal from the write callback ends it with its own code. */
	assert_int_equal(http_req_refuse(&r.base, SB_ECHANGED, "changed"), -1);
	assert_int_equal(http_req_attempt_failed(&r.base, CURLE_WRITE_ERROR), 1);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(r.status, SB_ECHANGED);
	assert_string_equal(r.detail, "GET http://fake/: changed");
	free(r.detail);
	http_req_close(&r.base);
	fixture_free(f);
}

static void range_answer(struct http_req *r, const char *status_line, const char *range)
{
	http_resp_reset(&r->resp);
	http_resp_header(&r->resp, status_line, strlen(status_line));
	if (range)
		http_resp_header(&r->resp, range, strlen(range));
	r->verdict = 0;
}

static void test_range_checks(void **state)
{
	(void)state;
	struct fixture *f = fixture_new(0);
	struct fake_req r = {0};
	uint8_t buf[16];
	http_req_init(&r.base, &f->c);
	r.base.off = 100;
	r.base.len = 10;
	r.base.buf = buf;
	range_answer(&r.base, "HTTP/1.1 206 Partial Content\r\n",
		     "Content-Range: bytes 100-109/1000\r\n");
	assert_int_equal(http_req_check_range(&r.base, 1000), 0);
	range_answer(&r.base, "HTTP/1.1 206 Partial Content\r\n",
		     "Content-Range: bytes 100-109/2000\r\n");
	assert_int_equal(http_req_check_range(&r.base, 1000), HTTP_RANGE_RESIZED);
	range_answer(&r.base, "HTTP/1.1 206 Partial Content\r\n",
		     "Content-Range: bytes 0-9/1000\r\n");
	assert_int_equal(http_req_check_range(&r.base, 1000), -1);
	assert_int_equal(r.base.verdict, SB_EPROTO);
	assert_string_equal(r.base.detail, "GET http://fake/: asked for bytes 100-109, got 0-9");
	range_answer(&r.base, "HTTP/1.1 206 Partial Content\r\n", NULL);
	assert_int_equal(http_req_check_range(&r.base, 1000), -1);
	assert_string_equal(r.base.detail, "GET http://fake/: HTTP 206 without a Content-Range");
	range_answer(&r.base, "HTTP/1.1 200 OK\r\n", NULL);
	assert_int_equal(http_req_check_range(&r.base, 1000), -1);
	assert_int_equal(r.base.verdict, SB_EHTTP);
	assert_string_equal(r.base.detail,
			    "GET http://fake/: server ignored the range bytes=100-109 (HTTP 200)");
	/* A 200 is fine when the range asked for is the whole file. */
	r.base.off = 0;
	range_answer(&r.base, "HTTP/1.1 200 OK\r\n", "Content-Length: 10\r\n");
	assert_int_equal(http_req_check_range(&r.base, 10), 0);
	/* Bytes land in the buffer; more than asked for is refused. */
	assert_int_equal(http_req_take(&r.base, "0123456", 7), 7);
	assert_int_equal(r.base.got, 7);
	assert_int_equal(f->bytes, 7);
	assert_int_equal(http_req_take(&r.base, "789x", 4), 0);
	assert_int_equal(r.base.verdict, SB_EPROTO);
	assert_int_equal(http_req_take(&r.base, "789", 3), 3);
	assert_memory_equal(buf, "0123456789", 10);
	/* An error page is drained up to its limit, then hung up on. */
	assert_int_equal(http_req_drain(&r.base, HTTP_ERROR_BODY_MAX), HTTP_ERROR_BODY_MAX);
	assert_int_equal(http_req_drain(&r.base, 1), 0);
	http_req_close(&r.base);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_retry_after),	      cmocka_unit_test(test_header_control_bytes),
	    cmocka_unit_test(test_backoff),	      cmocka_unit_test(test_status_mapping),
	    cmocka_unit_test(test_url_for_messages),  cmocka_unit_test(test_retry_until_given_up),
	    cmocka_unit_test(test_progress_forgives), cmocka_unit_test(test_no_retries_and_cancel),
	    cmocka_unit_test(test_status_failed),     cmocka_unit_test(test_range_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
