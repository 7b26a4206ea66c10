#include "tests/unit/testutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>

#include "common/err.h"
#include "common/log.h"

/* stderr goes to a temp file between capture_start and capture_end. */
struct capture {
	FILE *file;
	int saved;
};

static void capture_start(struct capture *c)
{
	fflush(stderr);
	c->file = tmpfile();
	assert_non_null(c->file);
	c->saved = dup(STDERR_FILENO);
	assert_true(c->saved >= 0);
	assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Returns everything written, heap string. */
static char *capture_end(struct capture *c)
{
	long n;
	char *out;

	assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
	close(c->saved);
	fseek(c->file, 0, SEEK_END);
	n = ftell(c->file);
	rewind(c->file);
	out = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(out, 1, (size_t)n, c->file), (size_t)n);
	fclose(c->file);
	return out;
}

/* "2024-05-01T12:34:56.789Z", 24 characters. */
static int is_timestamp(const char *s)
{
	const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ";

	for (size_t i = 0; pat[i]; i++) {
		if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pat[i])
			return 0;
	}
	return 1;
}

static int teardown(void **state)
{
	log_setup(LOG_WARN, LOG_FORMAT_TEXT);
	log_set_component(NULL);
	log_set_field("node", NULL);
	return 0;
}

static void test_text_line_and_level_filter(void **state)
{
	struct capture c;
	char *out;

	log_setup(LOG_WARN, LOG_FORMAT_TEXT);
	capture_start(&c);
	log_debug("hidden %d", 1);
	log_info("hidden %d", 2);
	log_warn("disk %s is %d%% full", "/data", 93);
	log_error("gone");
	out = capture_end(&c);
	assert_null(strstr(out, "hidden"));
	/* Not a TTY: each line carries a timestamp. */
	assert_true(is_timestamp(out));
	assert_int_equal(strncmp(out + 24, " syncbit: warn: disk /data is 93% full\n", 39), 0);
	assert_true(is_timestamp(out + 63));
	assert_string_equal(out + 87, " syncbit: error: gone\n");
	free(out);
}

static void test_text_lines_exact(void **state)
{
	struct capture c;
	char *out, *second;

	log_setup(LOG_INFO, LOG_FORMAT_TEXT);
	capture_start(&c);
	log_info("one");
	log_error("two");
	out = capture_end(&c);
	second = strchr(out, '\n');
	assert_non_null(second);
	second++;
	assert_true(is_timestamp(out));
	assert_memory_equal(out + 24, " syncbit: info: one\n", 20);
	assert_true(is_timestamp(second));
	assert_string_equal(second + 24, " syncbit: error: two\n");
	free(out);
}

static size_t count(const char *s, const char *needle)
{
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* A repeated failure is one line a minute, then says how often it was
 * held back; another failure is its own line. */
static void test_limited_lines(void **state)
{
	struct capture c;
	char *out;

	log_setup(LOG_INFO, LOG_FORMAT_TEXT);
	log_limit_set_clock(1000);
	capture_start(&c);
	for (int i = 0; i < 5; i++)
		log_limited(LOG_WARN, "peer %s unreachable", "a");
	log_limited(LOG_WARN, "peer %s unreachable", "b");
	log_limited(LOG_DEBUG, "below the level %d", 1);
	log_limit_set_clock(1000 + LOG_LIMIT_MS - 1);
	log_limited(LOG_WARN, "peer %s unreachable", "a");
	log_limit_set_clock(1000 + LOG_LIMIT_MS);
	log_limited(LOG_WARN, "peer %s unreachable", "a");
	log_limited(LOG_WARN, "peer %s unreachable", "a");
	out = capture_end(&c);
	log_limit_set_clock(0);
	assert_int_equal(count(out, "\n"), 3);
	assert_int_equal(count(out, "warn: peer a unreachable\n"), 1);
	assert_int_equal(count(out, "warn: peer b unreachable\n"), 1);
	assert_int_equal(
	    count(out, "warn: peer a unreachable (repeated 5 times since it was last logged)\n"),
	    1);
	assert_null(strstr(out, "below the level"));
	free(out);
}

static void test_text_escapes_controls(void **state)
{
	struct capture c;
	char *out;

	log_setup(LOG_WARN, LOG_FORMAT_TEXT);
	capture_start(&c);
	log_warn("a\nb\x1b[2Jc\td\x7f\re\x01");
	out = capture_end(&c);
	assert_string_equal(out + 24, " syncbit: warn: a\\nb\\x1b[2Jc\\td\\x7f\\re\\x01\n");
	free(out);
}

/* The helper the CLI's error lines use: the same escapes, cut before an
 * escape that does not fit, UTF-8 kept. */
static void test_escape_helper(void **state)
{
	char out[64];
	const char in[] = "x\ny\r\tz\x1b[31m\x7f\xc3\xa9";
	assert_int_equal(log_escape(out, sizeof out, in, sizeof in - 1), 23);
	assert_string_equal(out, "x\\ny\\r\\tz\\x1b[31m\\x7f\xc3\xa9");
	assert_int_equal(log_escape(out, 4, "ab\n", 3), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(log_escape(out, 6, "ab\x1b", 3), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(log_escape(out, 7, "ab\x1b", 3), 6);
	assert_string_equal(out, "ab\\x1b");
}

/* Source URLs in messages lose their credentials, in both formats. */
static void test_urls_redacted(void **state)
{
	struct capture c;
	char *out;

	log_setup(LOG_WARN, LOG_FORMAT_TEXT);
	capture_start(&c);
	log_warn("GET https://u:pw@h/m.bin?X-Amz-Signature=c0ffee&x=1: HTTP 403");
	log_setup(LOG_WARN, LOG_FORMAT_JSON);
	log_warn("source %s", "https://h/m.bin?sig=c0ffee");
	out = capture_end(&c);
	assert_null(strstr(out, "c0ffee"));
	assert_null(strstr(out, "pw"));
	assert_non_null(
	    strstr(out, "GET https://REDACTED@h/m.bin?X-Amz-Signature=REDACTED&x=1: HTTP 403\n"));
	assert_non_null(strstr(out, "\"msg\":\"source https://h/m.bin?sig=REDACTED\"}"));
	free(out);
}

static json_t *parse_line(const char *line)
{
	json_error_t err;
	json_t *j = json_loads(line, 0, &err);

	if (!j)
		fail_msg("not JSON (%s): %s", err.text, line);
	return j;
}

static void test_json_escaping(void **state)
{
	struct capture c;
	char *out;
	json_t *j;

	log_setup(LOG_INFO, LOG_FORMAT_JSON);
	capture_start(&c);
	log_warn("q\"b\\n\nt\tc\x01r\rd\x7f-\xc3\xa9\xe2\x82\xac");
	out = capture_end(&c);
	assert_non_null(strstr(out, "\"msg\":\"q\\\"b\\\\n\\nt\\tc\\u0001r\\rd\\u007f-"
				    "\xc3\xa9\xe2\x82\xac\"}\n"));
	assert_int_equal(strncmp(out, "{\"ts\":\"", 7), 0);
	assert_true(is_timestamp(out + 7));
	assert_int_equal(strncmp(out + 31, "\",\"level\":\"warn\",", 17), 0);
	j = parse_line(out);
	assert_string_equal(json_string_value(json_object_get(j, "msg")),
			    "q\"b\\n\nt\tc\x01r\rd\x7f-\xc3\xa9\xe2\x82\xac");
	assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(j, "component")), "syncbit");
	assert_string_equal(json_string_value(json_object_get(j, "module")), "test_log");
	assert_int_equal(json_object_size(j), 5);
	json_decref(j);
	free(out);
}

static void test_json_invalid_utf8_replaced(void **state)
{
	struct capture c;
	char *out;
	json_t *j;

	log_setup(LOG_INFO, LOG_FORMAT_JSON);
	capture_start(&c);
	/* stray byte, truncated 3-byte sequence, overlong '/', surrogate,
	 * beyond U+10FFFF, then a valid 4-byte emoji */
	log_info("a\xff"
		 "b\xe2\x82"
		 "c\xc0\xaf"
		 "d\xed\xa0\x80"
		 "e\xf4\x90\x80\x80"
		 "f\xf0\x9f\x98\x80");
	out = capture_end(&c);
	j = parse_line(out);
	assert_string_equal(json_string_value(json_object_get(j, "msg")),
			    "a\xef\xbf\xbd"
			    "b\xef\xbf\xbd\xef\xbf\xbd"
			    "c\xef\xbf\xbd\xef\xbf\xbd"
			    "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
			    "e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
			    "f\xf0\x9f\x98\x80");
	assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
	json_decref(j);
	free(out);
}

static void test_long_message_truncated(void **state)
{
	struct capture c;
	char *big = malloc(20001), *out;
	json_t *j;
	size_t len;

	memset(big, '"', 20000);
	big[20000] = '\0';
	log_setup(LOG_INFO, LOG_FORMAT_JSON);
	capture_start(&c);
	log_error("%s", big);
	out = capture_end(&c);
	len = strlen(out);
	assert_int_equal(strchr(out, '\n') - out, (long)len - 1);
	j = parse_line(out);
	const char *msg = json_string_value(json_object_get(j, "msg"));
	assert_non_null(msg);
	assert_true(strlen(msg) < 20000);
	assert_true(strlen(msg) > 1000);
	assert_string_equal(msg + strlen(msg) - 3, "...");
	json_decref(j);

	log_setup(LOG_INFO, LOG_FORMAT_TEXT);
	capture_start(&c);
	log_error("%s", big);
	free(out);
	out = capture_end(&c);
	len = strlen(out);
	assert_int_equal(strchr(out, '\n') - out, (long)len - 1);
	assert_string_equal(out + len - 4, "...\n");
	free(out);
	free(big);
}

static void test_errno_preserved(void **state)
{
	struct capture c;

	log_setup(LOG_DEBUG, LOG_FORMAT_TEXT);
	capture_start(&c);
	errno = ENOSPC;
	log_warn("x");
	assert_int_equal(errno, ENOSPC);
	free(capture_end(&c));
}

static void test_parse_level_and_format(void **state)
{
	enum log_level l = LOG_ERROR;
	enum log_format f = LOG_FORMAT_TEXT;

	assert_int_equal(log_parse_level("debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_parse_level("info", &l), 0);
	assert_int_equal(l, LOG_INFO);
	assert_int_equal(log_parse_level("warn", &l), 0);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_parse_level("error", &l), 0);
	assert_int_equal(l, LOG_ERROR);
	assert_int_equal(log_parse_level("warning", &l), 0);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_parse_level("verbose", &l), SB_ECONFIG);
	assert_int_equal(log_parse_level("", &l), SB_ECONFIG);
	assert_int_equal(log_parse_level("DEBUGX", &l), SB_ECONFIG);
	assert_int_equal(l, LOG_WARN);

	assert_int_equal(log_parse_format("json", &f), 0);
	assert_int_equal(f, LOG_FORMAT_JSON);
	assert_int_equal(log_parse_format("text", &f), 0);
	assert_int_equal(f, LOG_FORMAT_TEXT);
	assert_int_equal(log_parse_format("xml", &f), SB_ECONFIG);
	assert_int_equal(f, LOG_FORMAT_TEXT);

	log_setup(LOG_ERROR, LOG_FORMAT_JSON);
	assert_int_equal(log_get_level(), LOG_ERROR);
	log_setup(LOG_DEBUG, LOG_FORMAT_TEXT);
	assert_int_equal(log_get_level(), LOG_DEBUG);
}

/* On a terminal at the default level a line is short; debug adds time. */
static void test_tty_timestamp_only_for_debug(void **state)
{
	int master, slave, saved;
	char buf[512];
	ssize_t n;

	assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
	saved = dup(STDERR_FILENO);
	dup2(slave, STDERR_FILENO);
	log_setup(LOG_WARN, LOG_FORMAT_TEXT);
	log_warn("plain");
	log_setup(LOG_DEBUG, LOG_FORMAT_TEXT);
	log_debug("detailed");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(slave);
	/* A pty may hand the lines over in more than one read. */
	n = 0;
	for (int tries = 0; tries < 200 && !memmem(buf, (size_t)n, "detailed\r\n", 10); tries++) {
		struct pollfd pfd = {.fd = master, .events = POLLIN};
		if (poll(&pfd, 1, 10) > 0) {
			ssize_t k = read(master, buf + n, sizeof buf - 1 - (size_t)n);
			if (k <= 0)
				break;
			n += k;
		}
	}
	assert_true(n > 0);
	buf[n] = '\0';
	/* the terminal turns "\n" into "\r\n" */
	assert_int_equal(strncmp(buf, "syncbit: warn: plain\r\n", 22), 0);
	assert_true(is_timestamp(buf + 22));
	assert_string_equal(buf + 46, " syncbit: debug: detailed\r\n");
	close(master);
}

static void test_fatal_logs_and_aborts(void **state)
{
	char path[] = "/tmp/syncbit-log-XXXXXX";
	int fd = mkstemp(path), status;
	char buf[256] = {0};
	pid_t pid;

	assert_true(fd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, STDERR_FILENO);
		/* fatal ignores the level: it is always shown */
		log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
		fatal("invariant %s broken", "x");
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	assert_true(pread(fd, buf, sizeof buf - 1, 0) > 0);
	assert_non_null(strstr(buf, " syncbit: fatal: invariant x broken\n"));
	close(fd);
	unlink(path);
}

/* Fields: the call site's, then the process's it did not set; values
 * redacted and escaped; reserved or repeated keys and NULL values left
 * out; the message last. Text lines show none of them. */
static void test_json_fields(void **state)
{
	struct capture c;
	char *out, *second;
	json_t *j;

	log_setup(LOG_INFO, LOG_FORMAT_JSON);
	log_set_component("daemon");
	log_set_field("node", "n1");
	capture_start(&c);
	log_with(LOG_WARN,
		 LOG_KV({"dataset", "d\"1\n"}, {"peer", NULL}, {"msg", "x"}, {"dataset", "again"},
			{"source", "https://u:pw@h/f?X-Amz-Signature=c0ffee"}),
		 "dataset %s: two\nlines", "d1");
	log_with(LOG_INFO, LOG_KV({"node", "n2"}), "about node n2");
	out = capture_end(&c);
	second = strchr(out, '\n');
	assert_non_null(second);
	*second++ = '\0';
	assert_null(strstr(out, "c0ffee"));
	assert_null(strstr(out, "pw@"));
	j = parse_line(out);
	assert_string_equal(json_string_value(json_object_get(j, "component")), "daemon");
	assert_string_equal(json_string_value(json_object_get(j, "module")), "test_log");
	assert_string_equal(json_string_value(json_object_get(j, "dataset")), "d\"1\n");
	assert_string_equal(json_string_value(json_object_get(j, "node")), "n1");
	assert_string_equal(json_string_value(json_object_get(j, "source")),
			    "https://REDACTED@h/f?X-Amz-Signature=REDACTED");
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "dataset d1: two\nlines");
	assert_null(json_object_get(j, "peer"));
	/* ts level component module dataset source node msg */
	assert_int_equal(json_object_size(j), 8);
	assert_non_null(strstr(out, "\"msg\":\"dataset d1: two\\nlines\"}"));
	json_decref(j);
	j = parse_line(second);
	assert_string_equal(json_string_value(json_object_get(j, "node")), "n2");
	assert_int_equal(json_object_size(j), 6);
	json_decref(j);
	free(out);

	log_setup(LOG_INFO, LOG_FORMAT_TEXT);
	capture_start(&c);
	log_with(LOG_WARN, LOG_KV({"dataset", "d1"}), "dataset %s: lost", "d1");
	out = capture_end(&c);
	assert_non_null(strstr(out, "syncbit: warn: dataset d1: lost\n"));
	assert_null(strstr(out, "{"));
	free(out);
}

/* log_print: the level filter does not apply; rate-limited lines keep
 * their fields. */
static void test_json_print_and_limited(void **state)
{
	struct capture c;
	char *out, *line, *save = NULL;
	int n = 0;

	log_setup(LOG_ERROR, LOG_FORMAT_JSON);
	log_set_component("pull");
	log_limit_set_clock(1);
	capture_start(&c);
	log_print(LOG_INFO, "progress", NULL, "pull: 1.0 MiB / 2.0 MiB (50%%)");
	log_setup(LOG_WARN, LOG_FORMAT_JSON);
	log_limited_with(LOG_WARN, LOG_KV({"peer", "n9"}), "peer %s: lost", "n9");
	log_limited_with(LOG_WARN, LOG_KV({"peer", "n9"}), "peer %s: lost", "n9");
	out = capture_end(&c);
	log_limit_set_clock(0);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		json_t *j = parse_line(line);
		assert_string_equal(json_string_value(json_object_get(j, "component")), "pull");
		if (n == 0) {
			assert_string_equal(json_string_value(json_object_get(j, "module")),
					    "progress");
			assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
		} else {
			assert_string_equal(json_string_value(json_object_get(j, "peer")), "n9");
		}
		json_decref(j);
	}
	assert_int_equal(n, 2); /* the repeat is held back */
	free(out);
}

#define THREADS		 8
#define LINES_PER_THREAD 500

#define PADDING "padding-padding-padding-padding-padding-padding"

static void *log_many(void *arg)
{
	long id = (long)arg;

	for (int i = 0; i < LINES_PER_THREAD; i++)
		log_warn("thread %ld line %d %s", id, i, PADDING);
	return NULL;
}

/* Lines from many threads never interleave: one write(2) per line. */
static void test_threads_do_not_interleave(void **state)
{
	pthread_t t[THREADS];
	struct capture c;
	char *out, *line, *save = NULL;
	int count = 0;

	log_setup(LOG_WARN, LOG_FORMAT_JSON);
	capture_start(&c);
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, log_many, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	out = capture_end(&c);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = parse_line(line);
		const char *msg = json_string_value(json_object_get(j, "msg"));
		int end = 0;

		assert_non_null(msg);
		sscanf(msg, "thread %*u line %*u " PADDING "%n", &end); /* the whole message */
		assert_int_equal(end, strlen(msg));
		json_decref(j);
		count++;
	}
	assert_int_equal(count, THREADS * LINES_PER_THREAD);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_text_line_and_level_filter, teardown),
	    cmocka_unit_test_teardown(test_text_lines_exact, teardown),
	    cmocka_unit_test_teardown(test_limited_lines, teardown),
	    cmocka_unit_test_teardown(test_text_escapes_controls, teardown),
	    cmocka_unit_test(test_escape_helper),
	    cmocka_unit_test_teardown(test_urls_redacted, teardown),
	    cmocka_unit_test_teardown(test_json_escaping, teardown),
	    cmocka_unit_test_teardown(test_json_fields, teardown),
	    cmocka_unit_test_teardown(test_json_print_and_limited, teardown),
	    cmocka_unit_test_teardown(test_json_invalid_utf8_replaced, teardown),
	    cmocka_unit_test_teardown(test_long_message_truncated, teardown),
	    cmocka_unit_test_teardown(test_errno_preserved, teardown),
	    cmocka_unit_test_teardown(test_parse_level_and_format, teardown),
	    cmocka_unit_test_teardown(test_tty_timestamp_only_for_debug, teardown),
	    cmocka_unit_test_teardown(test_fatal_logs_and_aborts, teardown),
	    cmocka_unit_test_teardown(test_threads_do_not_interleave, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
