/* The http(s) source against injected faults (faulty_http.py through
 * source_http_servers.h): retries of 5xx and 429, resuming a cut body, a
 * file changed or of another size than claimed, giving up, and servers
 * that ignore ranges. */
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <uv.h>

#include "common/source/source.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/uri.h"
#include "source_http_fixture.h"

static void test_retry_5xx_and_429(void **state)
{
	uv_loop_t loop;
	struct file *f = file_named("mib.bin");
	struct source *s = src_open(&loop, faulty_url("fail=2,code=503,id=r503", "mib.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, f, MIB, 1), 0);
	json_t *gets = requests("r503", "GET");
	assert_int_equal(json_array_size(gets), 3);
	assert_int_equal(req_status(gets, 0), 503);
	assert_int_equal(req_status(gets, 1), 503);
	assert_int_equal(req_status(gets, 2), 206);
	json_decref(gets);
	src_close(&loop, s);

	/* HEAD failing too: the listing retries as well. */
	s = src_open(&loop, faulty_url("fail=1,code=500,on=head,id=h500", "mib.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	json_t *heads = requests("h500", "HEAD");
	assert_int_equal(json_array_size(heads), 2);
	json_decref(heads);
	src_close(&loop, s);

	/* Retry-After is honoured rather than the short backoff. */
	s = src_open(&loop, faulty_url("r429=1,ra=1,id=r429", "mib.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	uint64_t t0 = uv_hrtime();
	assert_int_equal(read_all(&loop, s, f, MIB, 1), 0);
	assert_true(uv_hrtime() - t0 >= 900 * 1000000ull);
	gets = requests("r429", "GET");
	assert_int_equal(json_array_size(gets), 2);
	assert_int_equal(req_status(gets, 0), 429);
	json_decref(gets);
	src_close(&loop, s);
}

static void test_resume(void **state)
{
	uv_loop_t loop;
	struct file *f = file_named("four.bin");
	/* Reset after 300000 bytes of the first GET: the retry asks only for
	 * what is missing, and no byte is counted twice. */
	struct source *s = src_open(&loop, faulty_url("reset=300000,id=rst", "four.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, f, 2 * MIB, 1), 0);
	assert_int_equal(s->bytes_read, 2 * MIB + 2 * MIB);
	json_t *gets = requests("rst", "GET");
	assert_int_equal(json_array_size(gets), 3);
	assert_string_equal(req_range(gets, 0), "bytes=0-2097151");
	assert_string_equal(req_range(gets, 1), "bytes=300000-2097151");
	assert_string_equal(req_range(gets, 2), "bytes=2097152-4194303");
	json_decref(gets);
	src_close(&loop, s);

	/* A stall: no byte for stall_seconds ends the attempt, the retry
	 * continues where the bytes stopped. */
	s = src_open(&loop, faulty_url("stall=4,after=200000,id=stl", "mib.bin"), 3, 1);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, file_named("mib.bin"), MIB, 1), 0);
	gets = requests("stl", "GET");
	assert_int_equal(json_array_size(gets), 2);
	assert_string_equal(req_range(gets, 1), "bytes=200000-1048575");
	json_decref(gets);
	src_close(&loop, s);
}

static void test_changed(void **state)
{
	uv_loop_t loop;
	struct file *f = file_named("four.bin");
	/* The ETag changes after two GETs; If-Range makes the server answer 200
	 * with the new version, which must not be mixed in. */
	struct source *s = src_open(&loop, faulty_url("etag_change=2,id=et1", "four.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, f, MIB, 1), SB_ECHANGED);
	assert_non_null(strstr(s->error_detail, "changed"));
	json_t *gets = requests("et1", "GET");
	assert_int_equal(json_array_size(gets), 3);
	assert_non_null(json_object_get(json_array_get(gets, 0), "if_range"));
	assert_int_equal(req_status(gets, 2), 200);
	json_decref(gets);
	src_close(&loop, s);

	/* A server that ignores If-Range: the ETag of the 206 gives it away. */
	s = src_open(&loop, faulty_url("etag_change=0,ifrange=ignore,id=et2", "four.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, f, MIB, 4), SB_ECHANGED);
	src_close(&loop, s);
}

/* What a server claims about a size is held to the limits before anything
 * is sized from it: a HEAD, or a 206's Content-Range total, claiming 2^62
 * bytes, and a body without a length that goes on past the per-file limit
 * (it would otherwise be counted for as long as it lasts). */
static void test_claimed_size(void **state)
{
	uv_loop_t loop;
	const char *want = "mib.bin claims 4611686018427387904 bytes (4.0 EiB), over the "
			   "limit of 4.0 TiB per file (--max-file-size)";
	struct source *s =
	    src_open(&loop, faulty_url("claim=4611686018427387904,id=cl1", "mib.bin"), 0, 5);
	assert_int_equal(do_list(&loop, s), SB_ETOOBIG);
	assert_non_null(strstr(s->error_detail, want));
	assert_true(!strncmp(s->error_detail, "http://127.0.0.1:", 17));
	assert_null(strchr(s->error_detail, '?'));
	src_close(&loop, s);

	s = src_open(&loop, faulty_url("claim=4611686018427387904,nohead=1,id=cl2", "mib.bin"), 0,
		     5);
	assert_int_equal(do_list(&loop, s), SB_ETOOBIG);
	assert_non_null(strstr(s->error_detail, want));
	src_close(&loop, s);

	s = src_open(&loop, faulty_url("chunked=1,nohead=1,id=cl3", "mib.bin"), 0, 5);
	s->opt.limits.file_bytes = 100000;
	assert_int_equal(do_list(&loop, s), SB_ETOOBIG);
	assert_non_null(strstr(s->error_detail, "the body goes on past 97.7 KiB, the limit per "
						"file (--max-file-size)"));
	json_t *gets = requests("cl3", "GET");
	assert_int_equal(json_array_size(gets), 1); /* not retried */
	json_decref(gets);
	src_close(&loop, s);
}

static void test_gave_up(void **state)
{
	uv_loop_t loop;
	struct source *s = src_open(&loop, faulty_url("fail=99,code=503,id=gu", "mib.bin"), 2, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, file_named("mib.bin"), MIB, 1), SB_EHTTP5XX);
	assert_non_null(strstr(s->error_detail, "HTTP 503 Service Unavailable"));
	assert_non_null(strstr(s->error_detail, "3 attempts"));
	json_t *gets = requests("gu", "GET");
	assert_int_equal(json_array_size(gets), 3);
	json_decref(gets);
	src_close(&loop, s);

	s = src_open(&loop, faulty_url("stall=4,after=1000,times=9,id=gus", "mib.bin"), 1, 1);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, file_named("mib.bin"), MIB, 1), SB_ESTALL);
	assert_non_null(strstr(s->error_detail, "2 attempts"));
	src_close(&loop, s);

	int port = free_port();
	s = src_open(&loop, url_of(port, "mib.bin"), 1, 5);
	assert_int_equal(do_list(&loop, s), SB_EHTTP);
	assert_non_null(strstr(s->error_detail, "HEAD "));
	assert_non_null(strstr(s->error_detail, "2 attempts"));
	src_close(&loop, s);
}

static void test_sequential(void **state)
{
	uv_loop_t loop;
	struct file *f = file_named("mib+1.bin");
	/* No Range support: one GET, fed to the reads in order. */
	struct source *s = src_open(&loop, faulty_url("norange=1,id=nr", "mib+1.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(s->listing.files[0].size, f->size);
	assert_int_equal(s->sequential, 1);
	assert_int_equal(s->max_parallel, 1);
	assert_int_equal(read_all(&loop, s, f, 256 * 1024, 1), 0);
	assert_int_equal(s->bytes_read, f->size);
	/* HEAD said nothing of ranges: a probe, then the one stream. */
	json_t *gets = requests("nr", "GET");
	assert_int_equal(json_array_size(gets), 2);
	assert_string_equal(req_range(gets, 0), "bytes=0-0");
	assert_int_equal(req_status(gets, 0), 200);
	assert_string_equal(req_range(gets, 1), "");
	json_decref(gets);
	src_close(&loop, s);

	/* Chunked, no length anywhere: the size is learnt by counting. */
	s = src_open(&loop, faulty_url("chunked=1,id=ch", "mib+1.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(s->listing.files[0].size, f->size);
	assert_int_equal(s->sequential, 1);
	assert_int_equal(read_all(&loop, s, f, 100000, 1), 0);
	src_close(&loop, s);

	/* A reset without ranges: the retry starts over and skips what the
	 * reads already have. */
	f = file_named("big.bin");
	s = src_open(&loop, faulty_url("norange=1,reset=3000000,times=2,id=nrr", "big.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, f, 256 * 1024, 1), 0);
	assert_int_equal(s->bytes_read, f->size);
	gets = requests("nrr", "GET");
	assert_int_equal(json_array_size(gets), 3); /* probe, reset stream, retry */
	assert_int_equal(json_integer_value(json_object_get(json_array_get(gets, 1), "sent")),
			 3000000);
	json_decref(gets);
	src_close(&loop, s);

	/* HEAD refused: a one-byte ranged GET tells size and range support. */
	f = file_named("mib.bin");
	s = src_open(&loop, faulty_url("nohead=1,id=nh", "mib.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(s->listing.files[0].size, f->size);
	assert_int_equal(s->sequential, 0);
	assert_true(!strncmp(s->listing.files[0].digest, "etag:", 5));
	assert_int_equal(read_all(&loop, s, f, 256 * 1024, 4), 0);
	gets = requests("nh", "GET");
	assert_string_equal(req_range(gets, 0), "bytes=0-0");
	json_decref(gets);
	src_close(&loop, s);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (getenv("SB_TEST_DEBUG"))
		log_setup(LOG_DEBUG, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_retry_5xx_and_429),
	    cmocka_unit_test(test_changed),
	    cmocka_unit_test(test_resume),
	    cmocka_unit_test(test_claimed_size),
	    cmocka_unit_test(test_gave_up),
	    cmocka_unit_test(test_sequential),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
