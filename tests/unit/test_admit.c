/* Admission bookkeeping without a listener: the pause after EMFILE instead
 * of a busy loop, eviction when nothing else frees a descriptor, which
 * pending connection makes room at a cap (socket pairs stand for the
 * connections: the peer's end sends or not), the rate-limited log lines and
 * the descriptor reserve. */
#include "tests/unit/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/net/admit.h"
#include "common/log.h"

#define GUARD_MS 5000

struct rec {
	int resumed, evicted;
	uint64_t resumed_at;
	struct admit_slot *last_evicted;
};

static struct rec rec;

static void on_resume(struct admit *a)
{
	rec.resumed++;
	rec.resumed_at = uv_now(a->loop);
}

static void on_evict(struct admit_slot *s)
{
	rec.evicted++;
	rec.last_evicted = s;
}

static void on_guard(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

/* Run the loop until *v reaches want; the admission's timers do not keep
 * the loop alive, a guard timer does. */
static void run_until(uv_loop_t *loop, const int *v, int want)
{
	uv_timer_t guard;
	int expired = 0;
	uv_timer_init(loop, &guard);
	guard.data = &expired;
	uv_timer_start(&guard, on_guard, GUARD_MS, 0);
	while (*v < want && !expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	if (*v < want)
		fail_msg("timed out (have %d, want %d)", *v, want);
}

static void admit_start(uv_loop_t *loop, struct admit *a)
{
	struct admit_config cfg = {.per_addr_max = 4,
				   .total_max = 8,
				   .deadline_ms = 1000,
				   .busy_deadline_ms = 100,
				   .evict = on_evict,
				   .resume = on_resume};
	memset(&rec, 0, sizeof rec);
	assert_int_equal(uv_loop_init(loop), 0);
	admit_init(a, loop, "test port 1", &cfg);
}

static void admit_stop(uv_loop_t *loop, struct admit *a)
{
	admit_close(a, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static struct sockaddr_in addr4(const char *ip)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	inet_pton(AF_INET, ip, &sa.sin_addr);
	return sa;
}

/* EMFILE: a descriptor is freed (the spare, then the oldest pending
 * connection), the next accepted connection waits ADMIT_PAUSE_MS, then
 * accepting goes on. */
static void test_emfile_pauses(void **state)
{
	uv_loop_t loop;
	struct admit a;
	struct admit_slot s;
	struct sockaddr_in sa = addr4("10.0.0.1");
	unsigned deadline;

	admit_start(&loop, &a);
	assert_int_equal(admit_enter(&a, &s, (struct sockaddr *)&sa, 3, &deadline), 0);
	assert_int_equal(deadline, 1000);
	uint64_t t0 = uv_now(&loop);
	assert_int_equal(admit_connection(&a, UV_EMFILE), 0); /* the spare goes */
	assert_int_equal(rec.evicted, 0);
	assert_int_equal(admit_connection(&a, UV_ENFILE), 0); /* then the oldest */
	assert_int_equal(rec.evicted, 1);
	assert_int_equal(admit_pending(&a), 0);
	assert_int_equal(admit_count(&a, ADMIT_FD_EXHAUSTED), 2);
	assert_int_equal(admit_count(&a, ADMIT_EVICTED), 1);
	assert_int_equal(admit_connection(&a, 0), 0); /* held back */
	assert_int_equal(rec.resumed, 0);
	run_until(&loop, &rec.resumed, 1);
	assert_true(rec.resumed_at - t0 >= ADMIT_PAUSE_MS - 5);
	assert_int_equal(admit_connection(&a, 0), 1); /* accepting again */
	assert_int_equal(admit_connection(&a, UV_ECONNABORTED), 0);
	assert_int_equal(rec.resumed, 1);
	admit_stop(&loop, &a);
}

/* Caps, the busy deadline and the reserve, by the numbers. */
static void test_caps(void **state)
{
	uv_loop_t loop;
	struct admit a;
	struct admit_slot s[10];
	struct sockaddr_in one = addr4("10.0.0.1"), other = {0};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	unsigned deadline;

	/* Not a socket: the kernel cannot tell whether a peer sent anything,
	 * so no connection here is silent; only the age lets one make room. */
	int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(nul >= 0);
	admit_start(&loop, &a);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(admit_enter(&a, &s[i], (struct sockaddr *)&one, nul, &deadline),
				 0);
		assert_int_equal(deadline, 1000);
	}
	/* An IPv4-mapped IPv6 address is the same source. */
	inet_pton(AF_INET6, "::ffff:10.0.0.1", &v6.sin6_addr);
	assert_int_equal(admit_enter(&a, &s[2], (struct sockaddr *)&v6, nul, &deadline), 0);
	assert_int_equal(deadline, 100); /* three from one address: past half of 4 */
	assert_string_equal(s[2].addr, "10.0.0.1");
	assert_int_equal(admit_enter(&a, &s[3], (struct sockaddr *)&one, nul, &deadline), 0);
	assert_int_equal(admit_enter(&a, &s[4], (struct sockaddr *)&one, nul, &deadline), -EBUSY);
	assert_int_equal(admit_count(&a, ADMIT_PER_ADDRESS), 1);
	for (int i = 4; i < 8; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "10.0.1.%d", i);
		other = addr4(ip);
		assert_int_equal(admit_enter(&a, &s[i], (struct sockaddr *)&other, nul, &deadline),
				 0);
	}
	other = addr4("10.0.2.1");
	assert_int_equal(admit_enter(&a, &s[8], (struct sockaddr *)&other, nul, &deadline), -EBUSY);
	assert_int_equal(admit_count(&a, ADMIT_OVERALL), 1);
	admit_leave(&s[0], ADMIT_TIMEOUT, "slow");
	admit_leave(&s[0], ADMIT_TIMEOUT, "slow"); /* no longer pending: nothing */
	admit_leave(&s[1], ADMIT_NONE, NULL);
	assert_int_equal(admit_count(&a, ADMIT_TIMEOUT), 1);
	assert_int_equal(admit_pending(&a), 6);
	/* A socket numbered near the limit: short of descriptors. */
	unsigned limit = admit_fd_limit();
	assert_int_equal(
	    admit_enter(&a, &s[9], (struct sockaddr *)&other, (int)limit - 2, &deadline), -EMFILE);
	assert_int_equal(admit_count(&a, ADMIT_FD_RESERVE), 1);
	assert_int_equal(admit_fd_reserve(256), 32);
	assert_int_equal(admit_fd_reserve(64), ADMIT_FD_RESERVE_MIN);
	assert_int_equal(admit_fd_reserve(1u << 20), ADMIT_FD_RESERVE_MAX);
	assert_int_equal(rec.evicted, 0);
	admit_stop(&loop, &a);
	close(nul);
}

/* A connection from ip (a socket pair stands for it: fd its server end). */
static int enter(struct admit *a, struct admit_slot *s, const char *ip, int fd)
{
	struct sockaddr_in sa = addr4(ip);
	unsigned deadline;
	return admit_enter(a, s, (struct sockaddr *)&sa, fd, &deadline);
}

static void expect_evicted(const struct admit_slot *s, int n)
{
	assert_int_equal(rec.evicted, n);
	assert_ptr_equal(rec.last_evicted, s);
}

/* At a cap, or short of descriptors, the oldest pending connection whose
 * peer has sent nothing (nothing read, nothing waiting; a peer gone without
 * a byte too) makes room at once, however young. One whose peer spoke makes
 * room only once it waited ADMIT_EVICT_AGE_MS; till then the new connection
 * is refused at a cap, and short of descriptors it is refused in any case. */
static void test_silent_make_room(void **state)
{
	uv_loop_t loop;
	struct admit a;
	struct admit_slot s[13];
	int sv[13][2];
	const char *A = "10.0.0.1";
	int big = (int)admit_fd_limit() - 2; /* short of descriptors */

	for (int i = 0; i < 13; i++)
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
	admit_start(&loop, &a); /* 4 per address, 8 in all */
	for (int i = 0; i < 4; i++)
		assert_int_equal(enter(&a, &s[i], A, sv[i][0]), 0);
	assert_int_equal(write(sv[0][1], "G", 1), 1); /* s0 spoke, not read yet */
	admit_heard(&s[2]);			      /* s2 spoke, read */
	close(sv[3][1]);			      /* s3 went without a byte */
	sv[3][1] = -1;
	/* Per address: s1 is the oldest silent one (s0 is older but spoke). */
	assert_int_equal(enter(&a, &s[4], A, sv[4][0]), 0);
	expect_evicted(&s[1], 1);
	assert_int_equal(enter(&a, &s[5], A, sv[5][0]), 0);
	expect_evicted(&s[3], 2);
	assert_int_equal(admit_pending(&a), 4);
	/* All four from A spoke and none waited long enough: refused. */
	assert_int_equal(write(sv[4][1], "G", 1), 1);
	admit_heard(&s[5]);
	assert_int_equal(enter(&a, &s[6], A, sv[6][0]), -EBUSY);
	assert_int_equal(admit_count(&a, ADMIT_PER_ADDRESS), 1);
	assert_int_equal(rec.evicted, 2);
	/* Overall: four silent ones from other addresses fill the cap; the
	 * next takes the place of the oldest of them. */
	assert_int_equal(enter(&a, &s[6], "10.0.1.1", sv[6][0]), 0);
	assert_int_equal(enter(&a, &s[7], "10.0.1.2", sv[7][0]), 0);
	assert_int_equal(enter(&a, &s[8], "10.0.1.3", sv[8][0]), 0);
	assert_int_equal(enter(&a, &s[9], "10.0.1.4", sv[9][0]), 0);
	assert_int_equal(admit_pending(&a), 8);
	assert_int_equal(enter(&a, &s[10], "10.0.1.5", sv[10][0]), 0);
	expect_evicted(&s[6], 3);
	assert_int_equal(admit_count(&a, ADMIT_OVERALL), 0);
	/* Short of descriptors: a silent one gives its own. */
	assert_int_equal(enter(&a, &s[11], "10.0.1.6", big), 0);
	expect_evicted(&s[7], 4);
	assert_int_equal(admit_count(&a, ADMIT_FD_RESERVE), 0);
	assert_int_equal(admit_pending(&a), 8);
	/* Nobody silent any more: refused short of descriptors and at the cap. */
	admit_heard(&s[8]);
	assert_int_equal(write(sv[9][1], "G", 1), 1);
	admit_heard(&s[10]);
	assert_int_equal(enter(&a, &s[12], "10.0.1.7", big), -EMFILE);
	assert_int_equal(admit_count(&a, ADMIT_FD_RESERVE), 1);
	assert_int_equal(enter(&a, &s[12], "10.0.1.7", sv[12][0]), -EBUSY);
	assert_int_equal(admit_count(&a, ADMIT_OVERALL), 1);
	assert_int_equal(rec.evicted, 4);
	/* Once the oldest (s0) waited long enough it makes room, spoken or
	 * not; short of descriptors age does not count. */
	struct timespec nap = {0, (ADMIT_EVICT_AGE_MS + 20) * 1000000L};
	nanosleep(&nap, NULL);
	uv_update_time(&loop);
	assert_int_equal(enter(&a, &s[12], "10.0.1.7", big), -EMFILE);
	assert_int_equal(enter(&a, &s[12], "10.0.1.7", sv[12][0]), 0);
	expect_evicted(&s[0], 5);
	assert_int_equal(admit_count(&a, ADMIT_EVICTED), 5);
	admit_stop(&loop, &a);
	for (int i = 0; i < 13; i++) {
		close(sv[i][0]);
		if (sv[i][1] >= 0)
			close(sv[i][1]);
	}
}

/* stderr into a temp file between capture_start and capture_end. */
static int capture_start(FILE **f)
{
	fflush(stderr);
	*f = tmpfile();
	assert_non_null(*f);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(*f), STDERR_FILENO) >= 0);
	return saved;
}

static char *capture_end(FILE *f, int saved)
{
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	long n = ftell(f);
	char *out = calloc(1, (size_t)n + 1);
	rewind(f);
	assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return out;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A burst of refusals is one line at once and one summary, with counts
 * per reason and the address refused most. */
static void test_log_rate_limited(void **state)
{
	uv_loop_t loop;
	struct admit a;
	FILE *f;
	char ip[32];

	log_setup(LOG_WARN, LOG_FORMAT_TEXT);
	admit_start(&loop, &a);
	int saved = capture_start(&f);
	admit_note(&a, ADMIT_TIMEOUT, "10.0.0.1", "handshake did not finish within 100 ms");
	for (int i = 0; i < 30; i++) { /* more addresses than the table holds */
		snprintf(ip, sizeof ip, "10.0.1.%d", i);
		admit_note(&a, ADMIT_PER_ADDRESS, ip, NULL);
	}
	for (int i = 0; i < 40; i++)
		admit_note(&a, i % 2 ? ADMIT_OVERALL : ADMIT_TIMEOUT, "10.0.0.9", NULL);
	admit_close(&a, NULL); /* flushes the summary */
	char *out = capture_end(f, saved);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	if (count_lines(out) != 2 ||
	    !strstr(out, "test port 1: refused a connection from 10.0.0.1: handshake did not "
			 "finish within 100 ms; further refusals are summarised every 60 s\n") ||
	    !strstr(out, "test port 1: 70 more connections refused in ") ||
	    !strstr(out, "(per_address 30, overall 20, timeout 20); most from 10.0.0.9 (4"))
		fail_msg("log:\n%s", out);
	free(out);
	assert_int_equal(admit_count(&a, ADMIT_TIMEOUT), 21);
}

static void test_raise_limit(void **state)
{
	struct rlimit rl;
	unsigned limit;
	int rc = admit_fd_limit_raise(&limit);
	assert_true(rc == 0 || rc == -EPERM);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_int_equal(limit, admit_fd_limit());
	if (rc == 0 && rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= ADMIT_FD_LIMIT_MAX)
		assert_true(rl.rlim_cur == rl.rlim_max);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_emfile_pauses),    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_silent_make_room), cmocka_unit_test(test_log_rate_limited),
	    cmocka_unit_test(test_raise_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
