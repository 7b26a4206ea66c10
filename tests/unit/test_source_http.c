/* The http(s) source against real servers on 127.0.0.1: nginx for the plain
 * cases and tests/fixtures/faulty_http.py for injected faults. Both run as
 * children in their own process groups and die with this process. */
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

#define MIB	(1024u * 1024u)
#define FIXTURE "tests/fixtures/faulty_http.py"
#define WAIT_MS 20000

struct file {
	const char *name;
	size_t size;
	uint8_t *data;
};

static struct file files[] = {
    {"empty.bin", 0, NULL},
    {"one.bin", 1, NULL},
    {"mib-1.bin", MIB - 1, NULL},
    {"mib.bin", MIB, NULL},
    {"mib+1.bin", MIB + 1, NULL},
    {"four.bin", 4 * MIB, NULL},
    {"big.bin", 20 * MIB + 12345, NULL},
    {"a b.bin", 1000, NULL},
};
#define NFILES (sizeof files / sizeof files[0])

static struct {
	char *dir;
	pid_t nginx, faulty;
	int nginx_port, faulty_port;
} fx;

static struct file *file_named(const char *name)
{
	for (size_t i = 0; i < NFILES; i++)
		if (!strcmp(files[i].name, name))
			return &files[i];
	fail_msg("no test file %s", name);
	return NULL;
}

/* Children. */

static pid_t spawn(char *const argv[], int *out_fd)
{
	int p[2] = {-1, -1};
	if (out_fd && pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (out_fd) {
			dup2(p[1], 1);
			close(p[0]);
			close(p[1]);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid > 0)
		setpgid(pid, pid);
	if (out_fd) {
		close(p[1]);
		*out_fd = pid > 0 ? p[0] : -1;
		if (pid < 0)
			close(p[0]);
	}
	return pid;
}

static void reap(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(-*pid, SIGTERM);
	for (int i = 0; i < 300; i++) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			kill(-*pid, SIGKILL); /* anything the group left behind */
			*pid = 0;
			return;
		}
		usleep(10000);
	}
	kill(-*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

static void reap_all(void)
{
	reap(&fx.nginx);
	reap(&fx.faulty);
}

/* Killed from outside (a timeout, ^C): no teardown will run, so stop the
 * servers and remove the temp dir here, with async-signal-safe calls only. */
static char dir_for_signal[PATH_MAX];

static void on_fatal_signal(int sig)
{
	if (fx.nginx > 0)
		kill(-fx.nginx, SIGKILL);
	if (fx.faulty > 0)
		kill(-fx.faulty, SIGKILL);
	if (dir_for_signal[0]) {
		pid_t pid = fork();
		if (pid == 0) {
			execl("/bin/rm", "rm", "-rf", dir_for_signal, (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int s = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (s >= 0)
		close(s);
	return port;
}

static int port_open(int port, pid_t pid, int ms)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int waited = 0; waited < ms; waited += 20) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
		close(s);
		if (ok)
			return 0;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		usleep(20000);
	}
	return -1;
}

static int start_nginx(void)
{
	char conf[PATH_MAX], elog[PATH_MAX];
	snprintf(conf, sizeof conf, "%s/nginx.conf", fx.dir);
	snprintf(elog, sizeof elog, "%s/error.log", fx.dir);
	for (int tries = 0; tries < 5; tries++) {
		int port = free_port();
		FILE *f = fopen(conf, "w");
		if (!f || port < 0)
			return -1;
		fprintf(f,
			"worker_processes 1;\n"
			"master_process off;\n"
			"error_log %s/error.log warn;\n"
			"pid %s/nginx.pid;\n"
			"events { worker_connections 256; }\n"
			"http {\n"
			"  access_log %s/access.log;\n"
			"  client_body_temp_path %s/t-body;\n"
			"  proxy_temp_path %s/t-proxy;\n"
			"  fastcgi_temp_path %s/t-fastcgi;\n"
			"  uwsgi_temp_path %s/t-uwsgi;\n"
			"  scgi_temp_path %s/t-scgi;\n"
			"  default_type application/octet-stream;\n"
			"  sendfile on;\n"
			"  server {\n"
			"    listen 127.0.0.1:%d;\n"
			"    root %s/www;\n"
			"    location /private/ { deny all; }\n"
			"  }\n"
			"}\n",
			fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, port,
			fx.dir);
		fclose(f);
		char *argv[] = {"nginx", "-c", conf, "-p",	    fx.dir,
				"-e",	 elog, "-g", "daemon off;", NULL};
		fx.nginx = spawn(argv, NULL);
		if (fx.nginx > 0 && port_open(port, fx.nginx, 5000) == 0) {
			fx.nginx_port = port;
			return 0;
		}
		reap(&fx.nginx); /* most likely lost the port to someone else */
	}
	return -1;
}

static int start_faulty(void)
{
	char www[PATH_MAX], line[32] = {0};
	int fd;
	if (access(FIXTURE, R_OK) != 0) {
		fprintf(stderr, "%s not found: run from the repository root\n", FIXTURE);
		return -1;
	}
	snprintf(www, sizeof www, "%s/www", fx.dir);
	char *argv[] = {"python3", FIXTURE, "--dir", www, NULL};
	fx.faulty = spawn(argv, &fd);
	if (fx.faulty <= 0)
		return -1;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	size_t n = 0;
	while (n < sizeof line - 1 && !strchr(line, '\n')) {
		if (poll(&pfd, 1, 10000) <= 0)
			break;
		ssize_t k = read(fd, line + n, sizeof line - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	char *end;
	unsigned long port = strtoul(line, &end, 10);
	if (end == line || port == 0 || port > 65535)
		return -1;
	fx.faulty_port = (int)port;
	return port_open(fx.faulty_port, fx.faulty, 5000);
}

static int write_files(void)
{
	char path[PATH_MAX];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	snprintf(path, sizeof path, "%s/www", fx.dir);
	if (mkdir(path, 0755) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/www/dir", fx.dir);
	if (mkdir(path, 0755) < 0)
		return -1;
	for (size_t i = 0; i < NFILES; i++) {
		struct file *f = &files[i];
		f->data = malloc(f->size ? f->size : 1);
		for (size_t j = 0; j < f->size; j++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			f->data[j] = (uint8_t)(x >> 24);
		}
		snprintf(path, sizeof path, "%s/www/%s", fx.dir, f->name);
		FILE *out = fopen(path, "wb");
		if (!out || fwrite(f->data, 1, f->size, out) != f->size) {
			if (out)
				fclose(out);
			return -1;
		}
		fclose(out);
	}
	return 0;
}

static int group_teardown(void **state)
{
	reap_all();
	for (size_t i = 0; i < NFILES; i++) {
		free(files[i].data);
		files[i].data = NULL;
	}
	dir_for_signal[0] = '\0';
	testutil_rmtree(fx.dir);
	fx.dir = NULL;
	return 0;
}

static int group_setup(void **state)
{
	atexit(reap_all);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fx.dir = testutil_mkdtemp();
	if (fx.dir)
		snprintf(dir_for_signal, sizeof dir_for_signal, "%s", fx.dir);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
	/* nginx may drop to another user; it must be able to read the tree. */
	if (!fx.dir || chmod(fx.dir, 0755) < 0 || write_files() < 0 || start_nginx() < 0 ||
	    start_faulty() < 0) {
		fprintf(stderr, "test_source_http: cannot set up the servers\n");
		group_teardown(state);
		return -1;
	}
	return 0;
}

/* Loop helpers. */

struct wait {
	int n;
	int status;
	int inline_calls;
	int in_call;
};

static void on_done(struct source *src, int status, void *arg)
{
	struct wait *w = arg;
	uv_stop(src->loop); /* let run_until look at the count again */
	if (w->in_call)
		w->inline_calls++;
	w->n++;
	w->status = status;
}

static void on_watchdog(uv_timer_t *t)
{
	*(int *)t->data = 1;
	uv_stop(t->loop);
}

/* Run the loop until *count reaches want; fail after ms. */
static void run_until(uv_loop_t *loop, const int *count, int want, unsigned ms)
{
	uv_timer_t dog;
	int fired = 0;
	uv_timer_init(loop, &dog);
	dog.data = &fired;
	uv_timer_start(&dog, on_watchdog, ms, 0);
	while (*count < want && !fired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&dog, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_false(fired);
}

static void run_for(uv_loop_t *loop, unsigned ms)
{
	uv_timer_t dog;
	int fired = 0;
	uv_timer_init(loop, &dog);
	dog.data = &fired;
	uv_timer_start(&dog, on_watchdog, ms, 0);
	while (!fired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&dog, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static struct source *src_open(uv_loop_t *loop, const char *url, int retries, unsigned stall)
{
	struct source_uri u;
	struct source_options o;
	struct source *s = NULL;
	assert_int_equal(uv_loop_init(loop), 0);
	assert_int_equal(uri_parse(url, &u), 0);
	source_options_default(&o);
	o.retries = retries;
	o.stall_seconds = stall;
	o.connect_seconds = 2;
	assert_int_equal(source_new(loop, &u, &o, &s), 0);
	uri_close(&u);
	return s;
}

/* Free the source and check that every handle it had closes. */
static void src_close(uv_loop_t *loop, struct source *s)
{
	source_free(s);
	for (int i = 0; i < 200 && uv_loop_alive(loop); i++)
		uv_run(loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static char *url_of(int port, const char *path)
{
	static char u[512];
	snprintf(u, sizeof u, "http://127.0.0.1:%d/%s", port, path);
	return u;
}

/* List as the pull and the scheduler do: through source_list(), which
 * holds the listing to the source's limits. */
static int do_list(uv_loop_t *loop, struct source *s)
{
	struct wait w = {0};
	w.in_call = 1;
	int rc = source_list(s, on_done, &w);
	w.in_call = 0;
	if (rc < 0)
		return rc;
	assert_int_equal(w.n, 0);
	run_until(loop, &w.n, 1, WAIT_MS);
	assert_int_equal(w.inline_calls, 0);
	return w.status;
}

struct reader {
	struct source *src;
	uint8_t *out;
	uint64_t size, next;
	size_t block;
	int inflight, max_inflight, finished, status, inline_calls, in_call;
};

static void reader_cb(struct source *src, int status, void *arg);

static void reader_issue(struct reader *rd)
{
	uint64_t off = rd->next;
	size_t len = rd->size - off < rd->block ? (size_t)(rd->size - off) : rd->block;
	rd->next += len;
	rd->inflight++;
	if (rd->inflight > rd->max_inflight)
		rd->max_inflight = rd->inflight;
	rd->in_call = 1;
	int rc = rd->src->ops->read(rd->src, 0, off, len, rd->out + off, reader_cb, rd);
	rd->in_call = 0;
	if (rc < 0) {
		rd->inflight--;
		rd->status = rc;
		rd->finished = rd->inflight == 0;
	}
}

static void reader_cb(struct source *src, int status, void *arg)
{
	struct reader *rd = arg;
	uv_stop(src->loop);
	if (rd->in_call)
		rd->inline_calls++;
	rd->inflight--;
	if (status < 0 && rd->status == 0)
		rd->status = status;
	if (rd->status == 0 && rd->next < rd->size)
		reader_issue(rd);
	if (rd->inflight == 0)
		rd->finished = 1;
}

/* Read the whole listed file in blocks, parallel at once; 0 or the first
 * error. The bytes are compared with what the file holds. */
static int read_all(uv_loop_t *loop, struct source *s, const struct file *f, size_t block,
		    int parallel)
{
	struct reader rd = {.src = s, .size = f->size, .block = block};
	rd.out = malloc(f->size ? f->size : 1);
	memset(rd.out, 0xee, f->size);
	for (int i = 0; i < parallel && rd.next < rd.size && rd.status == 0; i++)
		reader_issue(&rd);
	if (rd.inflight)
		run_until(loop, &rd.finished, 1, WAIT_MS);
	assert_int_equal(rd.inline_calls, 0);
	if (rd.status == 0)
		assert_memory_equal(rd.out, f->data, f->size);
	free(rd.out);
	return rd.status;
}

/* /__stats of the fault server. */

static size_t stats_write(char *p, size_t sz, size_t n, void *arg)
{
	struct buf *b = arg;
	buf_append(b, p, sz * n);
	return sz * n;
}

static json_t *stats(const char *id)
{
	struct buf b = BUF_INIT;
	char u[256];
	snprintf(u, sizeof u, "http://127.0.0.1:%d/__stats?id=%s", fx.faulty_port, id);
	CURL *e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, u);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, stats_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&b);
	assert_int_equal(curl_easy_perform(e), CURLE_OK);
	curl_easy_cleanup(e);
	json_t *j = json_loads(buf_cstr(&b), 0, NULL);
	buf_close(&b);
	assert_non_null(j);
	return j;
}

/* The method's requests of id, in order; the caller json_decref()s. */
static json_t *requests(const char *id, const char *method)
{
	json_t *all = stats(id), *out = json_array(), *r;
	size_t i;
	json_array_foreach(json_object_get(all, "requests"), i,
			   r) if (!strcmp(json_string_value(json_object_get(r, "method")), method))
	    json_array_append(out, r);
	json_decref(all);
	return out;
}

static long req_status(json_t *reqs, size_t i)
{
	return (long)json_integer_value(json_object_get(json_array_get(reqs, i), "status"));
}

static const char *req_range(json_t *reqs, size_t i)
{
	const char *s = json_string_value(json_object_get(json_array_get(reqs, i), "range"));
	return s ? s : "";
}

static char *faulty_url(const char *mode, const char *file)
{
	static char u[512];
	snprintf(u, sizeof u, "http://127.0.0.1:%d/m/%s/%s", fx.faulty_port, mode, file);
	return u;
}

/* Tests. */

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
	    cmocka_unit_test(test_retry_5xx_and_429),
	    cmocka_unit_test(test_resume),
	    cmocka_unit_test(test_changed),
	    cmocka_unit_test(test_claimed_size),
	    cmocka_unit_test(test_gave_up),
	    cmocka_unit_test(test_sequential),
	    cmocka_unit_test(test_validators),
	    cmocka_unit_test(test_cancel),
	    cmocka_unit_test(test_free_in_callback),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
