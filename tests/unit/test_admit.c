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

/* The soft descriptor limit just above fd: a connection on fd is short of
 * descriptors. 0 restores the limit saved at the first call. */
static void fd_limit_at(int fd)
{
	static struct rlimit saved;
	static int have;
	struct rlimit rl;

	if (!have) {
		assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
		have = 1;
	}
	rl = saved;
	if (fd)
		rl.rlim_cur = (rlim_t)fd + 2;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

#define PAIRS 14

/* Socket pairs stand for connections: [0] the server's end, [1] the
 * peer's. A byte written at the peer's end is a client that spoke. */
static void pairs_open(int sv[PAIRS][2])
{
	for (int i = 0; i < PAIRS; i++)
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
}

static void pairs_close(int sv[PAIRS][2])
{
	for (int i = 0; i < PAIRS; i++) {
		close(sv[i][0]);
		if (sv[i][1] >= 0)
			close(sv[i][1]);
	}
}

static void speak(int sv[PAIRS][2], int i)
{
	assert_int_equal(write(sv[i][1], "G", 1), 1);
}

/* Which pending connection makes room for a new one while all are young: the
 * newest silent one (a silent peer sent nothing, nothing waits in its
 * socket; admit_heard: bytes were read), never one that spoke; with none
 * silent the new one is refused, at a cap and short of descriptors. */
static void test_silent_make_room(void **state)
{
	uv_loop_t loop;
	struct admit a;
	struct admit_slot s[PAIRS];
	int sv[PAIRS][2];
	const char *A = "10.0.0.1";

	pairs_open(sv);
	admit_start(&loop, &a); /* 4 per address, 8 in all */
	for (int i = 0; i < 4; i++)
		assert_int_equal(enter(&a, &s[i], A, sv[i][0]), 0);
	speak(sv, 0);	    /* spoke, not read yet */
	admit_heard(&s[2]); /* spoke, read */
	close(sv[3][1]);    /* gone without a byte: silent too */
	sv[3][1] = -1;
	/* Per address: the newest silent one goes, also when it is the one
	 * admitted just before (a burst); s1, silent since before, stays. */
	assert_int_equal(enter(&a, &s[4], A, sv[4][0]), 0);
	expect_evicted(&s[3], 1);
	assert_int_equal(enter(&a, &s[5], A, sv[5][0]), 0);
	expect_evicted(&s[4], 2);
	speak(sv, 5);
	assert_int_equal(enter(&a, &s[6], A, sv[6][0]), 0);
	expect_evicted(&s[1], 3);
	/* All four from A spoke (s0, s2, s5, s6) and none waited: refused. */
	speak(sv, 6);
	assert_int_equal(enter(&a, &s[7], A, sv[7][0]), -EBUSY);
	assert_int_equal(admit_count(&a, ADMIT_PER_ADDRESS), 1);
	/* Overall: four silent ones from other addresses fill the cap. */
	for (int i = 7; i < 11; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "10.0.1.%d", i);
		assert_int_equal(enter(&a, &s[i], ip, sv[i][0]), 0);
	}
	assert_int_equal(admit_pending(&a), 8);
	assert_int_equal(enter(&a, &s[11], "10.0.2.1", sv[11][0]), 0);
	expect_evicted(&s[10], 4);
	assert_int_equal(admit_count(&a, ADMIT_OVERALL), 0);
	/* Short of descriptors: a silent one gives its own. */
	fd_limit_at(sv[12][0]);
	assert_int_equal(enter(&a, &s[12], "10.0.2.2", sv[12][0]), 0);
	fd_limit_at(0);
	expect_evicted(&s[11], 5);
	assert_int_equal(admit_pending(&a), 8);
	/* None silent: refused short of descriptors and at the cap. */
	admit_heard(&s[7]);
	admit_heard(&s[8]);
	speak(sv, 9);
	admit_heard(&s[12]);
	fd_limit_at(sv[13][0]);
	assert_int_equal(enter(&a, &s[13], "10.0.2.3", sv[13][0]), -EMFILE);
	fd_limit_at(0);
	assert_int_equal(admit_count(&a, ADMIT_FD_RESERVE), 1);
	assert_int_equal(enter(&a, &s[13], "10.0.2.3", sv[13][0]), -EBUSY);
	assert_int_equal(admit_count(&a, ADMIT_OVERALL), 1);
	assert_int_equal(admit_count(&a, ADMIT_EVICTED), 5);
	admit_stop(&loop, &a);
	pairs_close(sv);
}

/* Once pending connections waited ADMIT_EVICT_AGE_MS: the oldest silent one
 * of those goes first (before the newest silent one), then the oldest,
 * spoken or not; short of descriptors, only a silent one. */
static void test_aged_make_room(void **state)
{
	uv_loop_t loop;
	struct admit a;
	struct admit_slot s[PAIRS];
	int sv[PAIRS][2];
	char ip[32];

	pairs_open(sv);
	admit_start(&loop, &a); /* 8 in all */
	speak(sv, 0);
	assert_int_equal(enter(&a, &s[0], "10.0.0.1", sv[0][0]), 0); /* spoke */
	assert_int_equal(enter(&a, &s[1], "10.0.0.2", sv[1][0]), 0); /* silent */
	struct timespec nap = {0, (ADMIT_EVICT_AGE_MS + 20) * 1000000L};
	nanosleep(&nap, NULL);
	uv_update_time(&loop);
	for (int i = 2; i < 8; i++) { /* young and silent */
		snprintf(ip, sizeof ip, "10.0.1.%d", i);
		assert_int_equal(enter(&a, &s[i], ip, sv[i][0]), 0);
	}
	assert_int_equal(enter(&a, &s[8], "10.0.2.1", sv[8][0]), 0);
	expect_evicted(&s[1], 1);
	assert_int_equal(enter(&a, &s[9], "10.0.2.2", sv[9][0]), 0);
	expect_evicted(&s[8], 2);
	/* None silent: short of descriptors the new one is refused, at the
	 * cap the oldest (s0, spoke) makes room. */
	for (int i = 2; i < 8; i++)
		admit_heard(&s[i]);
	speak(sv, 9);
	fd_limit_at(sv[10][0]);
	assert_int_equal(enter(&a, &s[10], "10.0.2.3", sv[10][0]), -EMFILE);
	fd_limit_at(0);
	assert_int_equal(enter(&a, &s[10], "10.0.2.3", sv[10][0]), 0);
	expect_evicted(&s[0], 3);
	assert_int_equal(admit_count(&a, ADMIT_EVICTED), 3);
	assert_int_equal(admit_count(&a, ADMIT_FD_RESERVE), 1);
	assert_int_equal(admit_count(&a, ADMIT_OVERALL), 0);
	admit_stop(&loop, &a);
	pairs_close(sv);
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
	    cmocka_unit_test(test_silent_make_room), cmocka_unit_test(test_aged_make_room),
	    cmocka_unit_test(test_log_rate_limited), cmocka_unit_test(test_raise_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
