/* The s3:// source against tests/fixtures/s3_fixture.py, which checks
 * every signature strictly: listing and reading, single objects and empty
 * prefixes, credentials, malformed pages and confinement, retries and
 * changes, limits. The fixture runs as a child in its own process group
 * and dies with this process. */
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/path.h"
#include "common/s3.h"
#include "common/sigv4.h"
#include "common/source.h"
#include "common/uri.h"
#include "s3_env.h"

#define FIXTURE "tests/fixtures/s3_fixture.py"
#define WAIT_MS 20000
/* The key of AWS's SigV4 test suite, which the fixture is started with. */
#define AKID   "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

/* ---- the source against the fixture ---- */

static struct {
	char *dir;
	pid_t pid;
	int port;
	char endpoint[64];
	uint8_t *big;
} fx;

#define BIG_SIZE (5u * 1024 * 1024 + 77)

static void reap(void)
{
	if (fx.pid <= 0)
		return;
	kill(-fx.pid, SIGTERM);
	for (int i = 0; i < 300 && waitpid(fx.pid, NULL, WNOHANG) != fx.pid; i++)
		usleep(10000);
	kill(-fx.pid, SIGKILL);
	waitpid(fx.pid, NULL, WNOHANG);
	fx.pid = 0;
}

static void on_signal(int sig)
{
	if (fx.pid > 0)
		kill(-fx.pid, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int write_file(const char *rel, const void *data, size_t n)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/root/%s", fx.dir, rel);
	*strrchr(path, '/') = '\0';
	if (path_mkdirs(path, 0755) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/root/%s", fx.dir, rel);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(data, 1, n, f);
	return fclose(f) == 0 && w == n ? 0 : -1;
}

static int start_fixture(void)
{
	char root[PATH_MAX], line[32] = {0};
	int p[2];
	if (access(FIXTURE, R_OK) != 0 || pipe(p) < 0)
		return -1;
	snprintf(root, sizeof root, "%s/root", fx.dir);
	fx.pid = fork();
	if (fx.pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execlp("python3", "python3", FIXTURE, "--root", root, "--access-key", AKID,
		       "--secret-key", SECRET, "--page", "2", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	if (fx.pid < 0) {
		close(p[0]);
		return -1;
	}
	setpgid(fx.pid, fx.pid);
	struct pollfd pfd = {.fd = p[0], .events = POLLIN};
	size_t n = 0;
	while (n < sizeof line - 1 && !strchr(line, '\n') && poll(&pfd, 1, 10000) > 0) {
		ssize_t k = read(p[0], line + n, sizeof line - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(p[0]);
	char *end;
	long port = strtol(line, &end, 10);
	fx.port = end != line && port > 0 && port < 65536 ? (int)port : -1;
	snprintf(fx.endpoint, sizeof fx.endpoint, "http://127.0.0.1:%d", fx.port);
	return fx.port > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	reap();
	free(fx.big);
	fx.big = NULL;
	testutil_rmtree(fx.dir);
	fx.dir = NULL;
	return 0;
}

static int group_setup(void **state)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	fx.dir = testutil_mkdtemp();
	fx.big = malloc(BIG_SIZE);
	if (!fx.dir || !fx.big) {
		group_teardown(state);
		return -1;
	}
	for (size_t i = 0; i < BIG_SIZE; i++)
		fx.big[i] = (uint8_t)(i * 2654435761u >> 13);
	if (write_file("bkt/m/big.bin", fx.big, BIG_SIZE) < 0 ||
	    write_file("bkt/m/empty", "", 0) < 0 ||
	    write_file("bkt/m/sub/a b+c.txt", "abc", 3) < 0 ||
	    write_file("bkt/m/sub/deep/x", "x", 1) < 0 || write_file("bkt/m-old/y", "y", 1) < 0 ||
	    write_file("bkt/one.bin", "one", 3) < 0 || write_file("bad/m/a", "a", 1) < 0 ||
	    write_file("slow/m/a", "a", 1) < 0 || write_file("moved/m/a", "a", 1) < 0 ||
	    write_file("moving/m/big.bin", fx.big, BIG_SIZE) < 0 ||
	    write_file("huge/m/a", "a", 1) < 0 || write_file("huge/m/b", "b", 1) < 0 ||
	    write_file("idle/m/a", "a", 1) < 0 || start_fixture() < 0) {
		fprintf(stderr, "test_source_s3: cannot set up the fixture\n");
		group_teardown(state); /* cmocka skips it when setup fails */
		return -1;
	}
	return 0;
}

static void fault(const char *spec)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "curl -sf -X POST '%s/__fault?%s' >/dev/null", fx.endpoint, spec);
	assert_int_equal(system(cmd), 0);
}

struct wait {
	int n, status;
};

static void on_done(struct source *src, int status, void *arg)
{
	struct wait *w = arg;
	w->n++;
	w->status = status;
	uv_stop(src->loop);
}

static void run_until(uv_loop_t *loop, struct wait *w, int n)
{
	uint64_t start = uv_now(loop);
	while (w->n < n && uv_now(loop) - start < WAIT_MS) {
		uv_run(loop, UV_RUN_ONCE);
		uv_update_time(loop);
	}
	assert_int_equal(w->n, n);
}

struct session {
	uv_loop_t loop;
	struct source *src;
};

static void open_source(struct session *s, const char *uri_s, const char *secret)
{
	struct source_uri uri;
	struct source_options o;
	clear_env();
	setenv("AWS_ACCESS_KEY_ID", AKID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
	source_options_default(&o);
	o.s3_endpoint = fx.endpoint;
	o.retries = 2;
	o.stall_seconds = 2;
	uv_loop_init(&s->loop);
	assert_int_equal(uri_parse(uri_s, &uri), 0);
	assert_int_equal(source_new(&s->loop, &uri, &o, &s->src), 0);
	uri_close(&uri);
	clear_env(); /* read once, when the source is made */
}

/* As the pull and the scheduler list: held to the source's limits. */
static int list(struct session *s)
{
	struct wait w = {0};
	assert_int_equal(source_list(s->src, on_done, &w), 0);
	run_until(&s->loop, &w, 1);
	return w.status;
}

static int read_at(struct session *s, size_t index, uint64_t off, size_t len, void *buf)
{
	struct wait w = {0};
	assert_int_equal(s->src->ops->read(s->src, index, off, len, buf, on_done, &w), 0);
	run_until(&s->loop, &w, 1);
	return w.status;
}

static void close_source(struct session *s)
{
	source_free(s->src);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&s->loop), 0);
}

static void test_source_list_and_read(void **state)
{
	struct session s;
	open_source(&s, "s3://bkt/m", SECRET);
	assert_int_equal(list(&s), 0);
	struct source_listing *l = &s.src->listing;
	/* "m" lists "m/", so m-old/ stays out; pages of 2 keys were joined. */
	assert_int_equal(l->nfiles, 4);
	assert_string_equal(l->files[0].path, "big.bin");
	assert_string_equal(l->files[1].path, "empty");
	assert_string_equal(l->files[2].path, "sub/a b+c.txt");
	assert_string_equal(l->files[3].path, "sub/deep/x");
	assert_int_equal(l->files[0].size, BIG_SIZE);
	assert_int_equal(l->files[1].size, 0);
	assert_true(l->files[0].mtime_ns > 0);
	assert_non_null(strstr(l->files[2].digest, "etag:"));
	uint8_t *buf = malloc(BIG_SIZE);
	assert_int_equal(read_at(&s, 0, 0, BIG_SIZE, buf), 0);
	assert_memory_equal(buf, fx.big, BIG_SIZE);
	assert_int_equal(read_at(&s, 0, 4096, 100, buf), 0);
	assert_memory_equal(buf, fx.big + 4096, 100);
	assert_int_equal(read_at(&s, 2, 1, 2, buf), 0);
	assert_memory_equal(buf, "bc", 2);
	assert_int_equal(read_at(&s, 1, 0, 0, buf), 0);
	assert_int_equal(s.src->ops->read(s.src, 2, 2, 5, buf, on_done, NULL), -EINVAL);
	free(buf);
	close_source(&s);
}

static void test_source_single_and_empty(void **state)
{
	struct session s;
	open_source(&s, "s3://bkt/one.bin", SECRET);
	assert_int_equal(list(&s), 0);
	assert_int_equal(s.src->listing.nfiles, 1);
	assert_string_equal(s.src->listing.files[0].path, "one.bin");
	char b[3];
	assert_int_equal(read_at(&s, 0, 0, 3, b), 0);
	assert_memory_equal(b, "one", 3);
	close_source(&s);
	open_source(&s, "s3://bkt/none/", SECRET);
	assert_int_equal(list(&s), SB_ENOTFOUND);
	assert_non_null(strstr(s.src->error_detail, "no objects under s3://bkt/none/"));
	close_source(&s);
	open_source(&s, "s3://nobucket/m/", SECRET);
	assert_int_equal(list(&s), SB_ENOTFOUND);
	assert_non_null(strstr(s.src->error_detail, "NoSuchBucket"));
	close_source(&s);
}

static void test_source_auth(void **state)
{
	struct session s;
	open_source(&s, "s3://bkt/m/", "wrong-secret");
	assert_int_equal(list(&s), SB_EAUTH);
	assert_non_null(strstr(s.src->error_detail, "SignatureDoesNotMatch"));
	assert_null(strchr(s.src->error_detail, '\n'));
	close_source(&s);
	/* S3's answer to a request in the wrong region: a 301 whose only
	 * hint is the x-amz-bucket-region header. */
	fault("bucket=moved&moved=eu-west-1");
	open_source(&s, "s3://moved/m/", SECRET);
	assert_int_equal(list(&s), SB_EHTTP4XX);
	assert_non_null(strstr(s.src->error_detail, "PermanentRedirect: the bucket is in region "
						    "eu-west-1, not us-east-1"));
	close_source(&s);
}

static void test_source_malformed_and_confined(void **state)
{
	struct session s;
	fault("bucket=bad&list=badxml");
	open_source(&s, "s3://bad/m/", SECRET);
	assert_int_equal(list(&s), SB_EPROTO);
	assert_non_null(strstr(s.src->error_detail, "malformed ListObjectsV2"));
	close_source(&s);
	fault("bucket=bad&list=dotdot");
	open_source(&s, "s3://bad/m/", SECRET);
	assert_int_equal(list(&s), SB_ECONFINE);
	assert_non_null(strstr(s.src->error_detail, "m/../evil"));
	close_source(&s);
}

static void test_source_retry_and_change(void **state)
{
	struct session s;
	fault("bucket=slow&r429=2&ra=1");
	open_source(&s, "s3://slow/m/", SECRET);
	uint64_t t0 = uv_hrtime();
	assert_int_equal(list(&s), 0);
	assert_true(uv_hrtime() - t0 >= 1900000000ull); /* two Retry-After: 1 */
	close_source(&s);
	fault("bucket=moving&etag_change=2");
	open_source(&s, "s3://moving/m/", SECRET);
	assert_int_equal(list(&s), 0);
	uint8_t *buf = malloc(BIG_SIZE);
	assert_int_equal(read_at(&s, 0, 0, 1000, buf), 0);
	assert_int_equal(read_at(&s, 0, 1000, 1000, buf), 0);
	assert_int_equal(read_at(&s, 0, 2000, 1000, buf), SB_ECHANGED);
	assert_non_null(strstr(s.src->error_detail, "changed after it was listed"));
	free(buf);
	close_source(&s);
}

/* A listing is bounded before anything is sized from it: sizes claimed in
 * <Size>, the number of keys, and pages that never end. */
static void test_source_limits(void **state)
{
	struct session s;
	fault("bucket=huge&size=4611686018427387904");
	open_source(&s, "s3://huge/m/", SECRET);
	assert_int_equal(list(&s), SB_ETOOBIG);
	assert_string_equal(s.src->error_detail,
			    "s3://huge/m/: a claims 4611686018427387904 bytes (4.0 EiB), over the "
			    "limit of 4.0 TiB per file (--max-file-size)");
	close_source(&s);
	fault("bucket=huge&size=3298534883328"); /* 3 TiB each: 6 TiB together */
	open_source(&s, "s3://huge/m/", SECRET);
	s.src->opt.limits.dataset_bytes = 5ull << 40;
	assert_int_equal(list(&s), SB_ETOOBIG);
	assert_non_null(strstr(s.src->error_detail, "2 files claim 6597069766656 bytes (6.0 TiB), "
						    "over the limit of 5.0 TiB per dataset"));
	close_source(&s);
	/* Pages of two keys: the third key is one too many. */
	open_source(&s, "s3://bkt/m/", SECRET);
	s.src->opt.limits.files = 2;
	assert_int_equal(list(&s), SB_ETOOBIG);
	assert_non_null(strstr(s.src->error_detail,
			       "more objects than the limit of 2 per dataset (--max-files)"));
	close_source(&s);
	fault("bucket=idle&list=idle");
	open_source(&s, "s3://idle/m/", SECRET);
	assert_int_equal(list(&s), SB_EPROTO);
	assert_non_null(strstr(s.src->error_detail, "100 truncated pages in a row"));
	close_source(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_source_list_and_read),
	    cmocka_unit_test(test_source_single_and_empty),
	    cmocka_unit_test(test_source_auth),
	    cmocka_unit_test(test_source_malformed_and_confined),
	    cmocka_unit_test(test_source_retry_and_change),
	    cmocka_unit_test(test_source_limits),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
