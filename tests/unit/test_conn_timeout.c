/* Connections whose peer stays silent or answers garbage: the initiator
 * refuses, the handshake and idle timeouts fire, and dial errors are
 * reported. */
#include "tests/unit/conn_peers.h"

/* A raw server that accepts and answers nothing, or garbage. */
struct mute_server {
	uv_tcp_t server, peer;
	int accepted;
	const uint8_t *answer;
	size_t answer_len;
};

static void mute_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct mute_server *m = s->data;
	if (n > 0 && m->answer_len) {
		raw_send(s, m->answer, m->answer_len);
		m->answer_len = 0;
	}
	if (n < 0)
		uv_read_stop(s);
}

static void mute_accept(uv_stream_t *server, int status)
{
	struct mute_server *m = server->data;
	uv_tcp_init(server->loop, &m->peer);
	m->peer.data = m;
	assert_int_equal(uv_accept(server, (uv_stream_t *)&m->peer), 0);
	uv_read_start((uv_stream_t *)&m->peer, raw_alloc, mute_read);
	m->accepted = 1;
}

static int mute_start(struct env *e, struct mute_server *m)
{
	struct sockaddr_in sa;
	struct sockaddr_storage ss;
	int len = sizeof ss;

	uv_tcp_init(&e->loop, &m->server);
	m->server.data = m;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_bind(&m->server, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&m->server, 8, mute_accept), 0);
	uv_tcp_getsockname(&m->server, (struct sockaddr *)&ss, &len);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void mute_stop(struct mute_server *m)
{
	if (m->accepted)
		uv_close((uv_handle_t *)&m->peer, NULL);
	uv_close((uv_handle_t *)&m->server, NULL);
}

static void test_initiator_refuses(void **state)
{
	uint8_t buf[256];

	for (int what = 0; what < 2; what++) {
		struct env e;
		struct mute_server m = {0};
		char addr[64];

		env_init(&e, 1, 1);
		e.ccfg.handshake_ms = 2000;
		if (what == 1) { /* an older Syncbit's hello */
			m.answer = buf;
			m.answer_len = hello(buf, 1);
		} else { /* an oversized frame */
			m.answer = buf;
			m.answer_len = frame(buf, SYNCBIT__MSG_TYPE__MSG_HELLO, NULL, 0, 0);
			buf[0] = 0x7f;
		}
		snprintf(addr, sizeof addr, "127.0.0.1:%d", mute_start(&e, &m));
		env_dial(&e, addr);
		run_until(&e, &e.cli.close_calls, 1);
		assert_int_equal(e.cli.close_status, what ? SB_EPROTO : SB_ETOOBIG);
		assert_int_equal(e.cli.ready_status, e.cli.close_status);
		mute_stop(&m);
		env_close(&e);
	}
}

static void mute_accept_none(uv_stream_t *server, int status)
{
}

static void test_timeouts(void **state)
{
	struct env e;
	struct raw_client rc;
	struct mute_server m = {0};
	char addr[64];
	uint64_t t0;

	/* a client that connects and says nothing */
	env_init(&e, 1, 1);
	e.scfg.handshake_ms = SHORT_MS;
	env_listen(&e, "127.0.0.1:0");
	memset(&rc, 0, sizeof rc);
	t0 = uv_now(&e.loop);
	raw_client_start(&e, &rc, e.port);
	run_until(&e, &e.srv.close_calls, 1);
	assert_int_equal(e.srv.close_status, -ETIMEDOUT);
	assert_non_null(strstr(e.srv.error, "handshake"));
	assert_true(uv_now(&e.loop) - t0 >= SHORT_MS - 10);
	run_until(&e, &rc.eof, 1);
	raw_client_close(&rc);
	env_close(&e);

	/* a server that accepts and says nothing */
	env_init(&e, 1, 1);
	e.ccfg.handshake_ms = SHORT_MS;
	snprintf(addr, sizeof addr, "127.0.0.1:%d", mute_start(&e, &m));
	env_dial(&e, addr);
	run_until(&e, &e.cli.close_calls, 1);
	assert_int_equal(e.cli.close_status, -ETIMEDOUT);
	assert_int_equal(e.cli.ready_status, -ETIMEDOUT);
	mute_stop(&m);
	env_close(&e);

	/* a listener whose queue is full: the connection never completes */
	{
		uv_tcp_t full;
		struct sockaddr_in sa;
		struct sockaddr_storage ss;
		int len = sizeof ss;

		env_init(&e, 1, 1);
		e.ccfg.dial_ms = SHORT_MS;
		e.ccfg.handshake_ms = SHORT_MS;
		uv_tcp_init(&e.loop, &full);
		uv_ip4_addr("127.0.0.1", 0, &sa);
		assert_int_equal(uv_tcp_bind(&full, (struct sockaddr *)&sa, 0), 0);
		assert_int_equal(uv_listen((uv_stream_t *)&full, 0, mute_accept_none), 0);
		uv_tcp_getsockname(&full, (struct sockaddr *)&ss, &len);
		int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		/* one connection libuv takes and holds (nobody accepts it), one
		 * in the only place of the kernel's queue */
		struct raw_client held[2];
		memset(held, 0, sizeof held);
		for (int i = 0; i < 2; i++) {
			raw_client_start(&e, &held[i], port);
			run_until(&e, &held[i].connected, 1);
		}
		snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
		env_dial(&e, addr);
		run_until(&e, &e.cli.close_calls, 1);
		if (e.cli.close_status != -ETIMEDOUT || !strstr(e.cli.error, "no connection"))
			fail_msg("closed with %s: %s", sb_errname(e.cli.close_status), e.cli.error);
		raw_client_close(&held[0]);
		raw_client_close(&held[1]);
		uv_close((uv_handle_t *)&full, NULL);
		env_close(&e);
	}

	/* idle after the handshake */
	env_init(&e, 1, 1);
	e.scfg.idle_ms = SHORT_MS;
	ready_pair(&e);
	run_until(&e, &e.srv.close_calls, 1);
	assert_int_equal(e.srv.close_status, -ETIMEDOUT);
	assert_non_null(strstr(e.srv.error, "nothing received"));
	run_until(&e, &e.cli.close_calls, 1);
	env_close(&e);
}

static void test_dial_errors(void **state)
{
	static const char *const bad[] = {
	    "",		  "nohostport", "1.2.3.4", "[::1]", "::1:80",  "host:0",
	    "host:99999", "host:12a",	":80",	   "host:", "[::1]80", "host:123456",
	};
	struct env e;
	struct conn *c;
	int port;

	env_init(&e, 1, 1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (conn_dial(&e.loop, bad[i], &e.ccfg, &callbacks, &e.cli, &c) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	e.ccfg.node = "bad\nname";
	assert_int_equal(conn_dial(&e.loop, "127.0.0.1:1", &e.ccfg, &callbacks, &e.cli, &c),
			 -EINVAL);
	assert_int_equal(conn_listen(&e.loop, "127.0.0.1:0", &e.ccfg, &callbacks, &e, NULL, &e.l),
			 -EINVAL);
	e.ccfg.node = "client";
	assert_int_equal(conn_listen(&e.loop, "127.0.0.1", &e.scfg, &callbacks, &e, NULL, &e.l),
			 -EINVAL);

	/* a port nobody listens on */
	env_listen(&e, "127.0.0.1:0");
	port = e.port;
	conn_listener_close(e.l);
	e.l = NULL;
	uv_run(&e.loop, UV_RUN_NOWAIT);
	char addr[64];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
	env_dial(&e, addr);
	run_until(&e, &e.cli.close_calls, 1);
	assert_int_equal(e.cli.close_status, -ECONNREFUSED);
	assert_int_equal(e.cli.ready_status, -ECONNREFUSED);
	assert_non_null(strstr(e.cli.error, addr));

	/* the same port on localhost, by name */
	memset(&e.cli, 0, sizeof e.cli);
	snprintf(addr, sizeof addr, "localhost:%d", port);
	env_dial(&e, addr);
	run_until(&e, &e.cli.close_calls, 1);
	assert_int_equal(e.cli.close_status, -ECONNREFUSED);
	env_close(&e);
}

int main(void)
{
	/* Silent connections are the subject here: accepted at once, not
	 * deferred until their first bytes (common/net/admit.h). */
	admit_set_defer_accept(0);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_initiator_refuses),
	    cmocka_unit_test(test_timeouts),
	    cmocka_unit_test(test_dial_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
