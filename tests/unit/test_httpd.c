/* The HTTP server on loopback: routes, methods, limits and shutdown. A
 * client thread makes blocking requests while the test's loop serves them. */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/net/httpd.h"

#define WAIT_MS	   10000
#define FLOOD	   300 /* idle connections, more than the old cap of 256 */
#define FLOOD_SRCS 40  /* from 127.0.0.1 .. 127.0.0.40 */

static void hello(void *arg, const char *path, const char *query, struct httpd_response *r)
{
	int *calls = arg;
	(*calls)++;
	buf_printf(&r->body, "path=%s query=%s\n", path, query);
}

static void teapot(void *arg, const char *path, const char *query, struct httpd_response *r)
{
	r->status = 503;
	r->content_type = "application/json";
	buf_append_str(&r->body, "{\"ok\":false}");
}

struct client {
	int port;
	const char *request;
	size_t request_len;
	int hold_open; /* connect, send nothing, wait for the server to close */
	struct buf reply;
	uv_async_t done;
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		size_t off = 0;
		while (!c->hold_open && off < c->request_len) {
			ssize_t w = send(fd, c->request + off, c->request_len - off, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		char b[4096];
		ssize_t n;
		while ((n = recv(fd, b, sizeof b, 0)) > 0)
			buf_append(&c->reply, b, (size_t)n);
	}
	if (fd >= 0)
		close(fd);
	uv_async_send(&c->done);
	return NULL;
}

static void client_done(uv_async_t *a)
{
	uv_stop(a->loop);
}

static void give_up(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* Send request to the server on port and return its whole reply (heap). */
static char *exchange(uv_loop_t *loop, int port, const char *request, size_t len, int hold)
{
	struct client c = {.port = port, .request = request, .request_len = len, .hold_open = hold};
	uv_timer_t t;
	pthread_t th;
	uv_async_init(loop, &c.done, client_done);
	uv_timer_init(loop, &t);
	uv_timer_start(&t, give_up, WAIT_MS * 2, 0);
	assert_int_equal(pthread_create(&th, NULL, client_main, &c), 0);
	uv_run(loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	uv_close((uv_handle_t *)&c.done, NULL);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return buf_steal(&c.reply);
}

static char *get(uv_loop_t *loop, int port, const char *request)
{
	return exchange(loop, port, request, strlen(request), 0);
}

struct fixture {
	uv_loop_t loop;
	struct httpd *h;
	int port;
	int calls;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	uv_loop_init(&f->loop);
	struct httpd_route routes[] = {
	    {"/hello", hello, &f->calls},
	    {"/teapot", teapot, NULL},
	};
	if (httpd_start(&f->loop, "127.0.0.1:0", routes, 2, &f->h) != 0)
		return -1;
	f->port = httpd_port(f->h);
	*state = f;
	return f->port > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	httpd_stop(f->h);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&f->loop);
	free(f);
	return rc == 0 ? 0 : -1;
}

static void test_get_route(void **state)
{
	struct fixture *f = *state;
	char *r = get(&f->loop, f->port, "GET /hello?x=1&y HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(r, "Content-Length: 24\r\n"));
	assert_non_null(strstr(r, "Connection: close\r\n"));
	assert_non_null(strstr(r, "\r\n\r\npath=/hello query=x=1&y\n"));
	assert_int_equal(f->calls, 1);
	free(r);
	r = get(&f->loop, f->port, "GET /teapot HTTP/1.0\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 503 "));
	assert_non_null(strstr(r, "Content-Type: application/json\r\n"));
	assert_non_null(strstr(r, "\r\n\r\n{\"ok\":false}"));
	free(r);
}

static void test_head_has_no_body(void **state)
{
	struct fixture *f = *state;
	char *r = get(&f->loop, f->port, "HEAD /hello HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(r, "Content-Length: 19\r\n"));
	assert_true(strlen(strstr(r, "\r\n\r\n")) == 4);
	free(r);
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	char *r = get(&f->loop, f->port, "GET /nope HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 404 "));
	free(r);
	r = get(&f->loop, f->port, "POST /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
	assert_non_null(strstr(r, "HTTP/1.1 405 "));
	assert_non_null(strstr(r, "Allow: GET, HEAD\r\n"));
	free(r);
	r = get(&f->loop, f->port, "\x01\x02garbage\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 400 "));
	free(r);
	assert_int_equal(f->calls, 0);
}

static void test_oversized_request(void **state)
{
	struct fixture *f = *state;
	struct buf req = BUF_INIT;
	buf_append_str(&req, "GET /hello HTTP/1.1\r\n");
	for (int i = 0; i < 400; i++)
		buf_printf(&req, "X-Filler-%d: %060d\r\n", i, i);
	buf_append_str(&req, "\r\n");
	char *r = exchange(&f->loop, f->port, (char *)req.ptr, req.len, 0);
	assert_non_null(strstr(r, "HTTP/1.1 431 "));
	free(r);
	buf_reset(&req);
	buf_append_str(&req, "GET /");
	for (int i = 0; i < 5000; i++)
		buf_append_str(&req, "a");
	buf_append_str(&req, " HTTP/1.1\r\n\r\n");
	r = exchange(&f->loop, f->port, (char *)req.ptr, req.len, 0);
	assert_non_null(strstr(r, "HTTP/1.1 431 "));
	free(r);
	buf_close(&req);
	assert_int_equal(f->calls, 0);
}

static void test_many_requests(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < 50; i++) {
		char *r = get(&f->loop, f->port, "GET /hello HTTP/1.1\r\n\r\n");
		assert_non_null(strstr(r, "200 OK"));
		free(r);
	}
	assert_int_equal(f->calls, 50);
}

static void stop_soon(uv_timer_t *t)
{
	httpd_stop(t->data);
	uv_close((uv_handle_t *)t, NULL);
}

/* A client that connects and sends nothing is dropped by httpd_stop, and
 * the server's memory is released (the sanitizer build checks). */
static void test_stop_with_open_connection(void **state)
{
	struct fixture *f = *state;
	uv_timer_t t;
	uv_timer_init(&f->loop, &t);
	t.data = f->h;
	uv_timer_start(&t, stop_soon, 200, 0);
	char *r = exchange(&f->loop, f->port, "", 0, 1);
	assert_string_equal(r ? r : "", "");
	free(r);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	f->h = NULL;
}

/* ---- idle and slow clients ---- */

static void run_for(uv_loop_t *loop, unsigned ms)
{
	uv_timer_t t;
	uv_timer_init(loop, &t);
	uv_timer_start(&t, give_up, ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* A connection from src (any of 127/8 is loopback) that sends nothing;
 * the connect does not wait for the server. */
static int idle_socket(int port, const char *src)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in from = {.sin_family = AF_INET};
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	assert_true(fd >= 0);
	inet_pton(AF_INET, src, &from.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof from), 0);
	if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0)
		assert_int_equal(errno, EINPROGRESS);
	return fd;
}

static uint64_t refused(const struct fixture *f, enum admit_reason why)
{
	return admit_count(httpd_admit(f->h), why);
}

static void wait_pending(struct fixture *f, unsigned n)
{
	for (int i = 0; i < 500 && admit_pending(httpd_admit(f->h)) != n; i++)
		run_for(&f->loop, 10);
	assert_int_equal(admit_pending(httpd_admit(f->h)), n);
}

/* Hundreds of idle connections from many addresses: the server keeps at
 * most HTTPD_PENDING_MAX of them, each new one taking the place of an older
 * silent one (none is refused), and still answers a real request. */
static void test_idle_flood(void **state)
{
	struct fixture *f = *state;
	int fds[FLOOD];
	char src[32];
	for (int i = 0; i < FLOOD; i++) {
		snprintf(src, sizeof src, "127.0.0.%d", 1 + i % FLOOD_SRCS);
		fds[i] = idle_socket(f->port, src);
	}
	run_for(&f->loop, 2 * ADMIT_EVICT_AGE_MS);
	assert_true(admit_pending(httpd_admit(f->h)) <= HTTPD_PENDING_MAX);
	assert_true(refused(f, ADMIT_EVICTED) > 0);
	assert_int_equal(refused(f, ADMIT_OVERALL), 0);
	char *r = get(&f->loop, f->port, "GET /hello HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	free(r);
	for (int i = 0; i < FLOOD; i++)
		close(fds[i]);
}

/* Past the per-address cap a new connection takes the place of the oldest
 * one from that address that has sent nothing, however young: a request
 * from the address of an idle flood (a kubelet probe from the node's own
 * address) is answered at once, never refused. */
static void test_per_address(void **state)
{
	struct fixture *f = *state;
	struct httpd_limits lim = {.per_addr = 2, .header_ms = WAIT_MS};
	int fds[3];
	httpd_set_limits(f->h, &lim);
	fds[0] = idle_socket(f->port, "127.0.0.1");
	fds[1] = idle_socket(f->port, "127.0.0.1");
	wait_pending(f, 2);
	fds[2] = idle_socket(f->port, "127.0.0.1");
	for (int i = 0; i < 500 && !refused(f, ADMIT_PER_ADDRESS) && !refused(f, ADMIT_EVICTED);
	     i++)
		run_for(&f->loop, 10);
	assert_int_equal(refused(f, ADMIT_EVICTED), 1);
	assert_int_equal(admit_pending(httpd_admit(f->h)), 2);
	char *r = get(&f->loop, f->port, "GET /hello HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	free(r);
	assert_int_equal(refused(f, ADMIT_EVICTED), 2);
	assert_int_equal(refused(f, ADMIT_PER_ADDRESS), 0);
	assert_int_equal(admit_pending(httpd_admit(f->h)), 1); /* one idle left of two */
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

/* A request that trickles in (slowloris) gets 408 at its deadline, and a
 * shorter one once past half a cap. */
static void test_header_deadline(void **state)
{
	struct fixture *f = *state;
	struct httpd_limits lim = {.per_addr = 2, .header_ms = 300, .header_busy_ms = 50};
	const char *partial = "GET /hello HTTP/1.1\r\nX-Slow: 1\r\n";
	httpd_set_limits(f->h, &lim);
	uv_update_time(&f->loop);
	uint64_t t0 = uv_now(&f->loop);
	char *r = get(&f->loop, f->port, partial);
	uint64_t took = uv_now(&f->loop) - t0;
	assert_non_null(strstr(r, "HTTP/1.1 408 "));
	free(r);
	assert_true(took >= 250 && took < HTTPD_TIMEOUT_MS);
	assert_int_equal(refused(f, ADMIT_TIMEOUT), 1);
	/* One idle connection from the address already: the next is past half
	 * of a cap of 2 and gets the busy deadline. */
	lim.header_ms = WAIT_MS;
	httpd_set_limits(f->h, &lim);
	int idle = idle_socket(f->port, "127.0.0.1");
	wait_pending(f, 1);
	uv_update_time(&f->loop);
	t0 = uv_now(&f->loop);
	r = get(&f->loop, f->port, partial);
	took = uv_now(&f->loop) - t0;
	assert_non_null(strstr(r, "HTTP/1.1 408 "));
	free(r);
	assert_true(took < WAIT_MS / 2);
	assert_int_equal(refused(f, ADMIT_TIMEOUT), 2);
	assert_int_equal(admit_pending(httpd_admit(f->h)), 1); /* the idle one stays */
	close(idle);
	assert_int_equal(f->calls, 0);
}

/* Probes may use most of the descriptor reserve that the join-token
 * listeners keep back: with a few descriptors left, /hello still answers. */
static void test_probe_fd_reserve(void **state)
{
	struct fixture *f = *state;
	struct rlimit saved, low;
	char *r = get(&f->loop, f->port, "GET /hello HTTP/1.1\r\n\r\n"); /* loop set up */
	free(r);
	int lowest = dup(0);
	assert_true(lowest >= 0);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	/* Our accepted socket leaves 6: fewer than the reserve (16), more than
	 * the probes' quarter of it. */
	low.rlim_cur = (rlim_t)lowest + 8;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	r = get(&f->loop, f->port, "GET /hello HTTP/1.1\r\n\r\n");
	low.rlim_cur = (rlim_t)lowest + 4; /* now 2 left: refused */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	char *r2 = get(&f->loop, f->port, "GET /hello HTTP/1.1\r\n\r\n");
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	assert_string_equal(r2 ? r2 : "", "");
	assert_int_equal(refused(f, ADMIT_FD_RESERVE), 1);
	free(r);
	free(r2);
}

static void test_metrics(void **state)
{
	struct fixture *f = *state;
	struct buf out = BUF_INIT;
	httpd_metrics(f->h, &out);
	const char *m = buf_cstr(&out);
	assert_non_null(
	    strstr(m, "# TYPE syncbit_http_connections_refused_total counter\n"
		      "syncbit_http_connections_refused_total{reason=\"per_address\"} 0\n"));
	assert_non_null(strstr(m, "# HELP syncbit_http_connections_refused_total "));
	assert_non_null(
	    strstr(m, "syncbit_http_connections_refused_total{reason=\"timeout\"} 0\n"));
	assert_non_null(strstr(m, "# TYPE syncbit_http_connections_pending gauge\n"));
	buf_close(&out);
}

static void test_bad_addresses(void **state)
{
	uv_loop_t loop;
	struct httpd *h = NULL;
	struct sockaddr_storage sa;
	uv_loop_init(&loop);
	assert_int_equal(httpd_start(&loop, "nonsense", NULL, 0, &h), SB_EURI);
	assert_int_equal(httpd_start(&loop, "127.0.0.1:99999", NULL, 0, &h), SB_EURI);
	assert_int_equal(httpd_start(&loop, "300.1.1.1:80", NULL, 0, &h), SB_EURI);
	assert_null(h);
	assert_int_equal(httpd_parse_addr("[::1]:8080", &sa), 0);
	assert_int_equal(sa.ss_family, AF_INET6);
	assert_int_equal(httpd_parse_addr(":8080", &sa), 0);
	assert_int_equal(httpd_parse_addr("localhost:1", &sa), 0);
	assert_int_equal(httpd_parse_addr("[::1:80", &sa), SB_EURI);
	/* A port that is taken. */
	struct httpd *a = NULL, *b = NULL;
	assert_int_equal(httpd_start(&loop, "127.0.0.1:0", NULL, 0, &a), 0);
	char addr[64];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", httpd_port(a));
	assert_true(httpd_start(&loop, addr, NULL, 0, &b) < 0);
	assert_null(b);
	httpd_stop(a);
	httpd_stop(NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* The bytes of a request as the server reads them, without a socket: one
 * byte a read, or all at once, come to the same. */
static void test_parse_request(void **state)
{
	const char *get = "GET /v2/a/blobs/x?ns=docker.io HTTP/1.1\r\nHost: h\r\n"
			  "Range: bytes=0-9\r\nAuthorization: Bearer abc\r\n\r\n";
	struct httpd_parsed p;
	for (size_t chunk = 0; chunk < 3; chunk++) {
		assert_int_equal(httpd_parse_request(get, strlen(get), chunk, &p), 0);
		assert_int_equal(p.head, 0);
		assert_string_equal(p.path, "/v2/a/blobs/x");
		assert_string_equal(p.query, "ns=docker.io");
		assert_string_equal(p.range, "bytes=0-9");
		assert_string_equal(p.authorization, "Bearer abc");
		httpd_parsed_close(&p);
	}
	const char *head = "HEAD /healthz HTTP/1.1\r\nRange: a\r\nRange: b\r\n\r\n";
	assert_int_equal(httpd_parse_request(head, strlen(head), 0, &p), 0);
	assert_int_equal(p.head, 1);
	assert_string_equal(p.query, "");
	assert_null(p.range); /* two ranges: both ignored */
	httpd_parsed_close(&p);
	const char *two =
	    "GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n";
	assert_int_equal(httpd_parse_request(two, strlen(two), 1, &p), 0);
	assert_null(p.authorization); /* two: neither is taken */
	httpd_parsed_close(&p);
	char big[HTTPD_AUTH_MAX + 64];
	snprintf(big, sizeof big, "GET / HTTP/1.1\r\nAuthorization: Bearer %0*d\r\n\r\n",
		 HTTPD_AUTH_MAX, 0);
	assert_int_equal(httpd_parse_request(big, strlen(big), 0, &p), 0);
	assert_null(p.authorization); /* too long: none */
	httpd_parsed_close(&p);
	const char *post = "POST / HTTP/1.1\r\n\r\n", *bad = "GET x HTTP/1.1\r\n\r\n";
	assert_int_equal(httpd_parse_request(post, strlen(post), 0, &p), 405);
	assert_int_equal(httpd_parse_request(bad, strlen(bad), 0, &p), 400);
	assert_int_equal(httpd_parse_request("GET / HTTP/1.1\r\n", 16, 0, &p), -1);
	assert_int_equal(httpd_parse_request("\x01", 1, 0, &p), 400);
	assert_null(p.path);
}

int main(void)
{
	/* Silent connections are the subject here: accepted at once, not
	 * deferred until their first bytes (common/net/admit.h). */
	admit_set_defer_accept(0);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_get_route, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head_has_no_body, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_with_open_connection, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idle_flood, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_per_address, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_header_deadline, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_probe_fd_reserve, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
	    cmocka_unit_test(test_bad_addresses),
	    cmocka_unit_test(test_parse_request),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
