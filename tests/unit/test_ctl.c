/* The daemon's control socket: what a request line asks (ctl_request_parse),
 * and the socket's answers to lines it cannot serve: a malformed line and an
 * unknown command get one error line each and the connection stays open; a
 * line longer than CTL_LINE_MAX closes it. The socket runs its own loop on
 * a thread here; the test is the CLI on the other end, with a blocking
 * socket. No daemon: these requests never reach it. */
#include "tests/unit/testutil.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>

#include "agent/ctl.h"
#include "common/log.h"
#include "common/path.h"

static void test_parse_commands(void **state)
{
	char *name = (char *)"unset";
	assert_int_equal(ctl_request_parse("{\"op\": \"status\"}", &name), CTL_OP_STATUS);
	assert_null(name);
	assert_int_equal(ctl_request_parse("{\"op\": \"ready\", \"name\": \"llama\"}", &name),
			 CTL_OP_READY);
	assert_string_equal(name, "llama");
	free(name);
	assert_int_equal(ctl_request_parse("{\"name\": \"ds\", \"op\": \"pull\"}", &name),
			 CTL_OP_PULL);
	assert_string_equal(name, "ds");
	free(name);
	assert_int_equal(ctl_request_parse("{\"op\": \"rm\", \"name\": \"pull-1\", \"path\": "
					   "\"/x/pull-1\", \"purge\": true}",
					   &name),
			 CTL_OP_RM);
	assert_string_equal(name, "pull-1");
	free(name);
}

static void test_parse_malformed(void **state)
{
	static const char *const lines[] = {
	    "",
	    "status",
	    "{\"op\": \"status\"",	     /* cut short */
	    "[\"status\"]",		     /* not an object */
	    "{\"op\": 1}",		     /* op not a string */
	    "{\"name\": \"ds\"}",	     /* no op */
	    "{\"op\": \"status\"} trailing", /* more than one value */
	};
	for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
		char *name = (char *)"unset";
		if (ctl_request_parse(lines[i], &name) != CTL_OP_MALFORMED)
			fail_msg("'%s' was not malformed", lines[i]);
		assert_null(name);
	}
}

static void test_parse_unknown(void **state)
{
	static const char *const lines[] = {
	    "{\"op\": \"frobnicate\"}",
	    "{\"op\": \"STATUS\"}",
	    "{\"op\": \"ready\"}",	       /* without its name */
	    "{\"op\": \"pull\", \"name\": 7}", /* name not a string */
	    "{\"op\": \"rm\"}",
	    "{\"op\": \"rm\", \"name\": \"\"}", /* rm of nothing */
	};
	for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
		char *name = (char *)"unset";
		if (ctl_request_parse(lines[i], &name) != CTL_OP_UNKNOWN)
			fail_msg("'%s' was not an unknown request", lines[i]);
		assert_null(name);
	}
}

/* ---- the socket ---- */

struct server {
	uv_loop_t loop;
	uv_async_t stop;
	struct ctl *ctl;
	pthread_t thread;
	char *dir, *path;
	int fd; /* the client */
};

static void on_stop(uv_async_t *a)
{
	struct server *s = a->data;
	ctl_free(s->ctl);
	uv_close((uv_handle_t *)a, NULL);
}

static void *run_loop(void *arg)
{
	struct server *s = arg;
	uv_run(&s->loop, UV_RUN_DEFAULT);
	return NULL;
}

static int setup(void **state)
{
	struct server *s = calloc(1, sizeof *s);
	char *detail = NULL;
	s->dir = testutil_mkdtemp();
	s->path = path_join(s->dir, "agent.sock");
	assert_int_equal(uv_loop_init(&s->loop), 0);
	assert_int_equal(ctl_new(&s->loop, NULL, s->path, NULL, &s->ctl, &detail), 0);
	uv_async_init(&s->loop, &s->stop, on_stop);
	s->stop.data = s;
	assert_int_equal(pthread_create(&s->thread, NULL, run_loop, s), 0);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s", s->path);
	assert_int_equal(connect(s->fd, (struct sockaddr *)&a, sizeof a), 0);
	struct timeval tv = {.tv_sec = 10}; /* a missing answer fails, not hangs */
	setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	*state = s;
	return 0;
}

static int teardown(void **state)
{
	struct server *s = *state;
	if (s->fd >= 0)
		close(s->fd);
	uv_async_send(&s->stop);
	pthread_join(s->thread, NULL);
	assert_int_equal(uv_loop_close(&s->loop), 0);
	free(s->path);
	testutil_rmtree(s->dir);
	free(s);
	return 0;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* the server closed: the caller looks at what it read */
		p += w;
		n -= (size_t)w;
	}
}

/* The next line from the socket (without '\n'), or NULL at end of stream. */
static char *read_line(int fd)
{
	static char line[4096];
	size_t n = 0;
	while (n < sizeof line - 1) {
		ssize_t r = read(fd, line + n, 1);
		if (r < 0)
			fail_msg("no answer from the control socket: %s", strerror(errno));
		if (r == 0)
			return NULL;
		if (line[n] == '\n') {
			line[n] = '\0';
			return line;
		}
		n++;
	}
	fail_msg("answer too long");
	return NULL;
}

static void test_socket_malformed_line(void **state)
{
	struct server *s = *state;
	send_all(s->fd, "hello there\n", 12);
	char *l = read_line(s->fd);
	assert_non_null(l);
	assert_string_equal(l, "{\"error\":\"malformed request\"}");
	/* still open: the next line is answered too */
	send_all(s->fd, "{oops\n", 6);
	l = read_line(s->fd);
	assert_non_null(l);
	assert_string_equal(l, "{\"error\":\"malformed request\"}");
}

static void test_socket_unknown_command(void **state)
{
	struct server *s = *state;
	/* two requests in one write, the second in two pieces: one answer each */
	const char *a = "{\"op\": \"frobnicate\"}\n{\"op\": \"rea", *b = "dy\"}\n";
	send_all(s->fd, a, strlen(a));
	char *l = read_line(s->fd);
	assert_non_null(l);
	assert_string_equal(l, "{\"error\":\"unknown request\"}");
	send_all(s->fd, b, strlen(b));
	l = read_line(s->fd);
	assert_non_null(l);
	assert_string_equal(l, "{\"error\":\"unknown request\"}");
}

static void test_socket_oversized_line(void **state)
{
	struct server *s = *state;
	size_t n = CTL_LINE_MAX + 4096;
	char *big = malloc(n);
	memset(big, 'x', n);
	send_all(s->fd, big, n); /* no newline: never a request */
	free(big);
	char *l = read_line(s->fd);
	if (l)
		fail_msg("an oversized line was answered: %s", l);
}

static void test_socket_line_at_limit_is_read(void **state)
{
	struct server *s = *state;
	/* A line just under the limit, split over many writes, is one request. */
	size_t n = CTL_LINE_MAX - 1;
	char *big = malloc(n + 2);
	snprintf(big, n + 2, "%-*s\n", (int)n, "{\"op\": \"nope\"}"); /* spaces up to n */
	send_all(s->fd, big, n + 1);
	free(big);
	char *l = read_line(s->fd);
	assert_non_null(l);
	assert_string_equal(l, "{\"error\":\"unknown request\"}");
}

int main(void)
{
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_commands),
	    cmocka_unit_test(test_parse_malformed),
	    cmocka_unit_test(test_parse_unknown),
	    cmocka_unit_test_setup_teardown(test_socket_malformed_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_socket_unknown_command, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_socket_oversized_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_socket_line_at_limit_is_read, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
