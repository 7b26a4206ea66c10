/* The http(s) source against real servers on 127.0.0.1
 * (source_http_servers.h): sizes, edges and names, errors that are final,
 * validators, cancelling and freeing from a callback. */
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

static void test_nginx_sizes(void **state)
{
	for (size_t i = 0; i < NFILES; i++) {
		struct file *f = &files[i];
		if (strchr(f->name, ' '))
			continue;
		uv_loop_t loop;
		struct source *s = src_open(&loop, url_of(fx.nginx_port, f->name), 2, 5);
		assert_int_equal(do_list(&loop, s), 0);
		assert_int_equal(s->listing.nfiles, 1);
		struct source_file *sf = &s->listing.files[0];
		assert_string_equal(sf->path, f->name);
		assert_int_equal(sf->type, SRC_REGULAR);
		assert_int_equal(sf->size, f->size);
		assert_int_equal(sf->mode, 0644);
		char path[PATH_MAX];
		struct stat st;
		snprintf(path, sizeof path, "%s/www/%s", fx.dir, f->name);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(sf->mtime_ns, (int64_t)st.st_mtime * 1000000000);
		assert_true(!strncmp(sf->digest, "etag:", 5));
		assert_null(strchr(sf->digest, '"'));
		assert_string_equal(s->listing.version, sf->digest);
		assert_int_equal(s->sequential, 0);
		assert_int_equal(s->max_parallel, 8);
		size_t block = f->size > 8 * MIB ? 4 * MIB : 256 * 1024;
		assert_int_equal(read_all(&loop, s, f, block, 8), 0);
		assert_int_equal(s->bytes_read, f->size);
		src_close(&loop, s);
	}
}

static void test_nginx_edges(void **state)
{
	uv_loop_t loop;
	struct wait w = {0};
	struct file *f = file_named("mib+1.bin");
	struct source *s = src_open(&loop, url_of(fx.nginx_port, "mib+1.bin"), 2, 5);
	assert_int_equal(do_list(&loop, s), 0);
	/* One read of the whole file, one of the last byte, one of nothing. */
	uint8_t *whole = malloc(f->size), last = 0;
	w.in_call = 1;
	assert_int_equal(s->ops->read(s, 0, 0, f->size, whole, on_done, &w), 0);
	assert_int_equal(s->ops->read(s, 0, f->size - 1, 1, &last, on_done, &w), 0);
	assert_int_equal(s->ops->read(s, 0, f->size, 0, &last, on_done, &w), 0);
	w.in_call = 0;
	assert_int_equal(w.n, 0);
	run_until(&loop, &w.n, 3, WAIT_MS);
	assert_int_equal(w.inline_calls, 0);
	assert_int_equal(w.status, 0);
	assert_memory_equal(whole, f->data, f->size);
	assert_int_equal(last, f->data[f->size - 1]);
	/* Past the end: refused at once, no callback. */
	assert_int_equal(s->ops->read(s, 0, f->size, 1, &last, on_done, &w), -EINVAL);
	assert_int_equal(s->ops->read(s, 1, 0, 1, &last, on_done, &w), -EINVAL);
	free(whole);
	src_close(&loop, s);
}

static void test_names(void **state)
{
	uv_loop_t loop;
	struct source *s = src_open(&loop, url_of(fx.nginx_port, "dir/"), 0, 5);
	assert_int_equal(s->ops->list(s, on_done, NULL), SB_EURI);
	assert_non_null(strstr(s->error_detail, "ends with '/'"));
	src_close(&loop, s);

	s = src_open(&loop, url_of(fx.nginx_port, "dir/%2e%2e"), 0, 5);
	assert_int_equal(s->ops->list(s, on_done, NULL), SB_EURI);
	src_close(&loop, s);

	s = src_open(&loop, url_of(fx.nginx_port, "x%2Fy.bin"), 0, 5);
	assert_int_equal(s->ops->list(s, on_done, NULL), SB_EURI);
	src_close(&loop, s);

	struct file *f = file_named("a b.bin");
	s = src_open(&loop, url_of(fx.nginx_port, "a%20b.bin?x=1"), 0, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_string_equal(s->listing.files[0].path, "a b.bin");
	assert_int_equal(read_all(&loop, s, f, 300, 4), 0);
	src_close(&loop, s);
}

static void test_not_found_denied(void **state)
{
	uv_loop_t loop;
	struct source *s = src_open(&loop, url_of(fx.nginx_port, "missing.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), SB_ENOTFOUND);
	assert_non_null(strstr(s->error_detail, "HTTP 404 Not Found"));
	assert_non_null(strstr(s->error_detail, "missing.bin"));
	src_close(&loop, s);

	s = src_open(&loop, url_of(fx.nginx_port, "private/x.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), SB_EDENIED);
	assert_non_null(strstr(s->error_detail, "HTTP 403"));
	src_close(&loop, s);

	s = src_open(&loop, faulty_url("status=403,id=s403", "mib.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), SB_EDENIED);
	src_close(&loop, s);

	/* Listed fine, then the GET is refused: no retry for a 404. */
	s = src_open(&loop, faulty_url("fail=9,code=404,id=g404", "mib.bin"), 3, 5);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(read_all(&loop, s, file_named("mib.bin"), MIB, 1), SB_ENOTFOUND);
	assert_non_null(strstr(s->error_detail, "GET "));
	assert_non_null(strstr(s->error_detail, "HTTP 404 Not Found"));
	json_t *gets = requests("g404", "GET");
	assert_int_equal(json_array_size(gets), 1);
	json_decref(gets);
	src_close(&loop, s);
}

static void test_validators(void **state)
{
	uv_loop_t loop;
	struct file *f = file_named("mib.bin");
	/* Weak ETag: quotes and W/ stripped from the digest; If-Range may not
	 * carry it, the ETag of each response is compared instead. */
	struct source *s = src_open(&loop, faulty_url("weak=1,id=wk", "mib.bin"), 1, 5);
	assert_int_equal(do_list(&loop, s), 0);
	const char *d = s->listing.files[0].digest;
	assert_true(!strncmp(d, "etag:", 5));
	assert_null(strchr(d, '"'));
	assert_null(strstr(d, "W/"));
	assert_int_equal(read_all(&loop, s, f, 256 * 1024, 4), 0);
	json_t *gets = requests("wk", "GET");
	assert_true(json_is_null(json_object_get(json_array_get(gets, 0), "if_range")));
	json_decref(gets);
	src_close(&loop, s);

	/* No ETag: Last-Modified and size make the digest and the If-Range. */
	s = src_open(&loop, faulty_url("noetag=1,id=ne", "mib.bin"), 1, 5);
	assert_int_equal(do_list(&loop, s), 0);
	d = s->listing.files[0].digest;
	assert_true(!strncmp(d, "lm:", 3));
	assert_non_null(strstr(d, " GMT:1048576"));
	assert_string_equal(s->listing.version, d);
	assert_int_equal(read_all(&loop, s, f, 256 * 1024, 4), 0);
	gets = requests("ne", "GET");
	const char *ifr = json_string_value(json_object_get(json_array_get(gets, 0), "if_range"));
	assert_non_null(ifr);
	assert_non_null(strstr(ifr, " GMT"));
	json_decref(gets);
	src_close(&loop, s);
}

static void test_cancel(void **state)
{
	uv_loop_t loop;
	struct wait w = {0};
	uint8_t *buf = malloc(4 * MIB);
	struct source *s =
	    src_open(&loop, faulty_url("stall=3,after=0,times=99,id=cx", "four.bin"), 3, 10);
	assert_int_equal(do_list(&loop, s), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(
		    s->ops->read(s, 0, (uint64_t)i * MIB, MIB, buf + i * MIB, on_done, &w), 0);
	run_for(&loop, 300);
	assert_int_equal(w.n, 0);
	w.in_call = 1;
	s->ops->cancel(s);
	w.in_call = 0;
	assert_int_equal(w.n, 0);
	run_until(&loop, &w.n, 4, WAIT_MS);
	assert_int_equal(w.inline_calls, 0);
	assert_int_equal(w.status, SB_ECANCELED);
	free(buf);
	src_close(&loop, s);
}

struct free_in_cb {
	struct source *src;
	int n;
};

static void free_in_cb(struct source *src, int status, void *arg)
{
	struct free_in_cb *c = arg;
	uv_stop(src->loop);
	assert_int_equal(status, 0);
	source_free(c->src);
	c->n++;
}

static void test_free_in_callback(void **state)
{
	uv_loop_t loop;
	uint8_t buf[4096];
	struct source *s = src_open(&loop, url_of(fx.nginx_port, "mib.bin"), 1, 5);
	assert_int_equal(do_list(&loop, s), 0);
	struct free_in_cb c = {.src = s};
	assert_int_equal(s->ops->read(s, 0, 0, sizeof buf, buf, free_in_cb, &c), 0);
	run_until(&loop, &c.n, 1, WAIT_MS);
	assert_memory_equal(buf, file_named("mib.bin")->data, sizeof buf);
	for (int i = 0; i < 200 && uv_loop_alive(&loop); i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (getenv("SB_TEST_DEBUG"))
		log_setup(LOG_DEBUG, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nginx_sizes),
	    cmocka_unit_test(test_nginx_edges),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_not_found_denied),
	    cmocka_unit_test(test_validators),
	    cmocka_unit_test(test_cancel),
	    cmocka_unit_test(test_free_in_callback),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
