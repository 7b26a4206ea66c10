/* Admission of connections in the handshake: limits per address and
 * overall, the busy deadline, the descriptor reserve, and what each
 * refusal is counted as. */
#include "tests/unit/conn_peers.h"

/* ---- admission of connections in the handshake ---- */

/* A listener whose connections only count what happens to them. */
struct gate {
	struct env e;
	int accepted, closed, last_status;
	char last_error[256];
};

static void gate_on_close(struct conn *c, int status)
{
	struct gate *g = conn_data(c);
	g->closed++;
	g->last_status = status;
	snprintf(g->last_error, sizeof g->last_error, "%s", conn_error(c));
}

static const struct conn_callbacks gate_callbacks = {NULL, NULL, NULL, gate_on_close};

static void gate_on_accept(struct conn_listener *l, struct conn *c)
{
	struct gate *g = conn_data(c);
	g->accepted++;
}

static void gate_listen(struct gate *g, unsigned per_addr, unsigned max)
{
	g->e.scfg.preauth_per_addr = per_addr;
	g->e.scfg.preauth_max = max;
	assert_int_equal(conn_listen(&g->e.loop, "127.0.0.1:0", &g->e.scfg, &gate_callbacks, g,
				     gate_on_accept, &g->e.l),
			 0);
	g->e.port = conn_listener_port(g->e.l);
	snprintf(g->e.addr, sizeof g->e.addr, "127.0.0.1:%d", g->e.port);
}

static uint64_t gate_count(struct gate *g, enum admit_reason why)
{
	return admit_count(conn_listener_admit(g->e.l), why);
}

/* Connections the listener took a decision on: admitted, or closed at accept. */
static int gate_seen(struct gate *g)
{
	return g->accepted + (int)(gate_count(g, ADMIT_PER_ADDRESS) + gate_count(g, ADMIT_OVERALL) +
				   gate_count(g, ADMIT_FD_RESERVE));
}

static void gate_run_until_seen(struct gate *g, int n)
{
	while (gate_seen(g) < n && !g->e.timed_out)
		uv_run(&g->e.loop, UV_RUN_ONCE);
	if (g->e.timed_out)
		fail_msg("timed out: %d connections seen, want %d", gate_seen(g), n);
}

static void gate_connect(struct gate *g, struct raw_client *r, const char *src)
{
	int n = gate_seen(g);
	memset(r, 0, sizeof *r);
	raw_client_start_from(&g->e, r, g->e.port, src);
	gate_run_until_seen(g, n + 1);
}

static void on_nap(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

static void on_nap_closed(uv_handle_t *h)
{
	*(int *)h->data = 1;
}

static void gate_sleep(struct gate *g, unsigned ms)
{
	uv_timer_t t;
	int done = 0;
	uv_timer_init(&g->e.loop, &t);
	t.data = &done;
	uv_timer_start(&t, on_nap, ms, 0);
	run_until(&g->e, &done, 1);
	/* t lives on this stack: closed before the function returns. */
	done = 0;
	uv_close((uv_handle_t *)&t, on_nap_closed);
	run_until(&g->e, &done, 1);
}

static void gate_close(struct gate *g, struct raw_client *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		raw_client_close(&r[i]);
	env_close(&g->e);
}

/* Past the per-address cap a burst is closed at accept; a connection that
 * waited long enough makes room for a new one; other addresses are apart. */
static void test_preauth_per_address(void **state)
{
	struct gate g = {0};
	struct raw_client r[7];
	const struct admit *a;

	env_init(&g.e, 1, 1);
	g.e.scfg.handshake_ms = 5000;
	gate_listen(&g, 3, 8);
	a = conn_listener_admit(g.e.l);
	for (int i = 0; i < 5; i++) {
		memset(&r[i], 0, sizeof r[i]);
		raw_client_start_from(&g.e, &r[i], g.e.port, "127.0.0.1");
	}
	gate_run_until_seen(&g, 5);
	assert_int_equal(admit_pending(a), 3);
	assert_int_equal(gate_count(&g, ADMIT_PER_ADDRESS) + gate_count(&g, ADMIT_EVICTED), 2);
	assert_int_equal(g.accepted, 3 + (int)gate_count(&g, ADMIT_EVICTED));
	gate_connect(&g, &r[5], "127.0.0.2");
	assert_int_equal(admit_pending(a), 4);
	uint64_t evicted = gate_count(&g, ADMIT_EVICTED);
	gate_sleep(&g, ADMIT_EVICT_AGE_MS + 50);
	gate_connect(&g, &r[6], "127.0.0.1");
	assert_int_equal(gate_count(&g, ADMIT_EVICTED), evicted + 1);
	assert_int_equal(admit_pending(a), 4);
	run_until(&g.e, &g.closed, 1 + (int)evicted);
	assert_int_equal(g.last_status, -ECONNABORTED);
	assert_int_equal(gate_count(&g, ADMIT_TIMEOUT), 0);
	gate_close(&g, r, 7);
}

static void test_preauth_overall(void **state)
{
	struct gate g = {0};
	struct raw_client r[5];
	static const char *const src[] = {"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2",
					  "127.0.0.3"};

	env_init(&g.e, 1, 1);
	g.e.scfg.handshake_ms = 5000;
	gate_listen(&g, 16, 4);
	for (int i = 0; i < 5; i++) {
		memset(&r[i], 0, sizeof r[i]);
		raw_client_start_from(&g.e, &r[i], g.e.port, src[i]);
	}
	gate_run_until_seen(&g, 5);
	assert_int_equal(admit_pending(conn_listener_admit(g.e.l)), 4);
	assert_int_equal(gate_count(&g, ADMIT_OVERALL) + gate_count(&g, ADMIT_EVICTED), 1);
	assert_int_equal(gate_count(&g, ADMIT_PER_ADDRESS), 0);
	gate_close(&g, r, 5);
}

/* Once more than half the cap is in the handshake, a new connection gets
 * the short deadline; the ones before it keep theirs. */
static void test_preauth_busy_deadline(void **state)
{
	struct gate g = {0};
	struct raw_client r[3];

	env_init(&g.e, 1, 1);
	g.e.scfg.handshake_ms = 5000;
	g.e.scfg.handshake_busy_ms = SHORT_MS;
	gate_listen(&g, 16, 4);
	uint64_t t0 = uv_now(&g.e.loop);
	for (int i = 0; i < 3; i++)
		gate_connect(&g, &r[i], "127.0.0.1");
	run_until(&g.e, &g.closed, 1);
	assert_int_equal(g.last_status, -ETIMEDOUT);
	assert_non_null(strstr(g.last_error, "within 100 ms"));
	assert_true(uv_now(&g.e.loop) - t0 < 5000);
	run_until(&g.e, &r[2].eof, 1);
	assert_int_equal(r[0].eof + r[1].eof, 0);
	assert_int_equal(gate_count(&g, ADMIT_TIMEOUT), 1);
	assert_int_equal(admit_pending(conn_listener_admit(g.e.l)), 2);
	gate_close(&g, r, 3);
}

/* With fewer free descriptors than the reserve, a connection is closed at
 * accept. The soft limit is lowered to just above the open ones. */
static void test_preauth_fd_reserve(void **state)
{
	struct gate g = {0};
	struct raw_client r;
	struct rlimit saved, low;

	env_init(&g.e, 1, 1);
	gate_listen(&g, 16, 128);
	int lowest = dup(0); /* every descriptor below it is open */
	assert_true(lowest >= 0);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = (rlim_t)lowest + 8; /* the client's socket and ours fit, little more */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	memset(&r, 0, sizeof r);
	raw_client_start_from(&g.e, &r, g.e.port, "127.0.0.1");
	gate_run_until_seen(&g, 1);
	run_until(&g.e, &r.eof, 1);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_int_equal(gate_count(&g, ADMIT_FD_RESERVE), 1);
	assert_int_equal(g.accepted, 0);
	gate_close(&g, &r, 1);
}

/* A failed handshake is counted; one that succeeds or a client that just
 * leaves is not, and neither stays pending. */
static void test_preauth_outcomes(void **state)
{
	struct gate g = {0};
	struct raw_client r[2];
	static const uint8_t junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	env_init(&g.e, 1, 1);
	gate_listen(&g, 16, 128);
	memset(r, 0, sizeof r);
	r[0].data = junk;
	r[0].len = sizeof junk - 1;
	raw_client_start_from(&g.e, &r[0], g.e.port, "127.0.0.1");
	run_until(&g.e, &g.closed, 1);
	assert_int_equal(gate_count(&g, ADMIT_BAD_HANDSHAKE), 1);
	r[1].shutdown_after = 1;
	raw_client_start_from(&g.e, &r[1], g.e.port, "127.0.0.1");
	run_until(&g.e, &g.closed, 2);
	env_dial(&g.e, g.e.addr);
	run_until(&g.e, &g.e.cli.ready_calls, 1);
	assert_int_equal(g.e.cli.ready_status, 0);
	run_until(&g.e, &g.accepted, 3);
	for (int i = 0; i < 1000 && admit_pending(conn_listener_admit(g.e.l)); i++)
		uv_run(&g.e.loop, UV_RUN_ONCE);
	assert_int_equal(admit_pending(conn_listener_admit(g.e.l)), 0);
	for (int i = 0; i < ADMIT_REASONS; i++)
		if (i != ADMIT_BAD_HANDSHAKE && gate_count(&g, i))
			fail_msg("%s counted %llu times", admit_reason_label(i),
				 (unsigned long long)gate_count(&g, i));
	gate_close(&g, r, 2);
}

/* The listener's socket defers connections that sent nothing: a silent
 * client is not accepted within a second, one that speaks is at once, and
 * a connection that sent its first bytes is admitted as before. */
static void test_defer_accept(void **state)
{
	struct gate g = {0};
	struct raw_client r[2];
	static const uint8_t hello[] = "x";

	admit_set_defer_accept(1);
	env_init(&g.e, 1, 1);
	g.e.scfg.handshake_ms = 5000;
	gate_listen(&g, 4, 8);
	memset(r, 0, sizeof r);
	raw_client_start_from(&g.e, &r[0], g.e.port, "127.0.0.1");
	run_until(&g.e, &r[0].connected, 1);
	gate_sleep(&g, 1000);
	assert_int_equal(gate_seen(&g), 0);
	assert_int_equal(admit_pending(conn_listener_admit(g.e.l)), 0);
	r[1].data = hello;
	r[1].len = 1;
	raw_client_start_from(&g.e, &r[1], g.e.port, "127.0.0.1");
	gate_run_until_seen(&g, 1);
	assert_int_equal(g.accepted, 1);
	assert_int_equal(gate_count(&g, ADMIT_EVICTED), 0);
	/* Its connect callback may not have run yet: it must before the close. */
	run_until(&g.e, &r[1].connected, 1);
	gate_close(&g, r, 2);
	admit_set_defer_accept(0);
}

int main(void)
{
	/* The other cases are about connections that reach the listener
	 * silent (a client that went quiet after its first bytes, or one
	 * the kernel hands over once the deferral ends): accept them at once. */
	admit_set_defer_accept(0);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defer_accept),
	    cmocka_unit_test(test_preauth_per_address),
	    cmocka_unit_test(test_preauth_overall),
	    cmocka_unit_test(test_preauth_fd_reserve),
	    cmocka_unit_test(test_preauth_busy_deadline),
	    cmocka_unit_test(test_preauth_outcomes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
