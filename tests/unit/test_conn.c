/* Connections over real loopback sockets, both ends in one loop: the
 * handshake modes, frames both ways, back-pressure and closing. */
#include "tests/unit/conn_peers.h"

/* ---- tests: handshake ---- */

static void check_pair(int enc_srv, int enc_cli, int no_aes, const char *want_cipher)
{
	struct env e;
	struct sent_count n = {0};

	env_init(&e, enc_srv, enc_cli);
	e.ccfg.no_aes_gcm = no_aes;
	ready_pair(&e);
	assert_int_equal(e.cli.encrypted, enc_srv || enc_cli);
	assert_int_equal(e.srv.encrypted, enc_srv || enc_cli);
	if (want_cipher) {
		assert_string_equal(e.cli.cipher, want_cipher);
		assert_string_equal(e.srv.cipher, want_cipher);
	}
	assert_string_equal(conn_peer_node(e.cli.c), "server");
	assert_string_equal(conn_peer_node(e.srv.c), "client");
	assert_memory_equal(e.cli.peer_key, e.skey.pub, SECURE_KEY_BYTES);
	assert_memory_equal(e.srv.peer_key, e.ckey.pub, SECURE_KEY_BYTES);
	assert_int_equal(e.srv.purpose, HANDSHAKE_PEER);
	assert_string_equal(conn_peer_addr(e.cli.c), e.addr);
	assert_non_null(strstr(conn_peer_addr(e.srv.c), "127.0.0.1:"));

	send_frame(e.cli.c, 0, 10, 5, &n);
	send_frame(e.srv.c, 0, 4, 0, &n);
	run_until(&e, &e.srv.frames, 1);
	run_until(&e, &e.cli.frames, 1);
	run_until(&e, &n.ok, 2);
	assert_int_equal(e.srv.bad + e.cli.bad, 0);

	/* a clean close on one side is a clean close on the other */
	conn_close(e.cli.c, 0);
	conn_close(e.cli.c, 0);
	run_until(&e, &e.srv.close_calls, 1);
	run_until(&e, &e.cli.close_calls, 1);
	assert_int_equal(e.srv.close_status, 0);
	assert_int_equal(e.cli.close_status, 0);
	assert_string_equal(e.srv.error, "");
	assert_string_equal(e.srv.close_cipher, e.srv.cipher); /* still known in on_close */
	assert_int_equal(e.cli.bytes_out, e.srv.bytes_in);
	assert_int_equal(e.srv.bytes_out, e.cli.bytes_in);
	assert_int_equal(e.cli.ready_calls, 1);
	env_close(&e);
}

static void test_handshake_modes(void **state)
{
	const char *aes = crypto_aead_aes256gcm_is_available() ? "aes256gcm" : "xchacha20poly1305";

	check_pair(1, 1, 0, aes);
	check_pair(0, 0, 0, "none");
	check_pair(1, 0, 0, aes); /* either side asking for encryption gets it */
	check_pair(0, 1, 0, aes);
	check_pair(1, 1, 1, "xchacha20poly1305");
}

static void test_ipv6(void **state)
{
	struct env e;

	env_init(&e, 1, 1);
	env_listen(&e, "[::1]:0");
	env_dial(&e, e.addr);
	run_until(&e, &e.srv.ready_calls, 1);
	run_until(&e, &e.cli.ready_calls, 1);
	assert_int_equal(e.cli.ready_status, 0);
	assert_non_null(strstr(conn_peer_addr(e.srv.c), "[::1]:"));
	env_close(&e);
}

static void test_wrong_token(void **state)
{
	struct env e;
	struct secure_token other;
	struct sent_count n = {0};

	for (int enc = 0; enc < 2; enc++) {
		env_init(&e, enc, enc);
		memset(other.key, 0x33, sizeof other.key);
		e.ccfg.token = &other;
		env_listen(&e, "127.0.0.1:0");
		env_dial(&e, e.addr);
		/* queued before the handshake: never delivered, failed at close */
		send_frame(e.cli.c, 0, 8, 100, &n);
		run_until(&e, &e.cli.close_calls, 1);
		run_until(&e, &e.srv.close_calls, 1);
		assert_int_equal(e.cli.close_status, SB_EAUTH);
		assert_int_equal(e.srv.close_status, SB_EAUTH);
		assert_int_equal(e.cli.ready_status, SB_EAUTH);
		assert_int_equal(e.srv.ready_status, SB_EAUTH);
		assert_non_null(strstr(e.cli.error, "join token"));
		assert_int_equal(e.srv.frames + e.cli.frames, 0);
		assert_int_equal(n.failed, enc + 1);
		assert_int_equal(n.last_status, SB_EAUTH);
		env_close(&e);
	}
}

/* ---- tests: frames ---- */

static void exchange(int enc)
{
	struct env e;
	struct sent_count nc = {0}, ns = {0};
	uint64_t pc = 0, ps = 0;

	env_init(&e, enc, enc);
	ready_pair(&e);
	int frames_c = send_mix(e.cli.c, &nc, &pc);
	int frames_s = send_mix(e.srv.c, &ns, &ps);
	run_until(&e, &e.srv.frames, frames_c);
	run_until(&e, &e.cli.frames, frames_s);
	run_until(&e, &nc.ok, frames_c);
	run_until(&e, &ns.ok, frames_s);
	assert_int_equal(e.srv.bad, 0);
	assert_int_equal(e.cli.bad, 0);
	assert_int_equal(e.srv.payload_bytes, pc);
	assert_int_equal(e.cli.payload_bytes, ps);
	assert_int_equal(conn_queued(e.cli.c), 0);
	assert_int_equal(conn_queued(e.srv.c), 0);
	assert_int_equal(conn_bytes_out(e.cli.c), conn_bytes_in(e.srv.c));
	assert_int_equal(conn_bytes_out(e.srv.c), conn_bytes_in(e.cli.c));
	assert_true(conn_bytes_in(e.srv.c) > pc);
	env_close(&e);
}

static void test_frames_plain(void **state)
{
	exchange(0);
}

static void test_frames_encrypted(void **state)
{
	exchange(1);
}

/* Queue past CONN_HIGH_WATER: on_drain comes once, below half of it. */
static void backpressure(int enc)
{
	struct env e;
	struct sent_count n = {0};
	const int count = (int)(CONN_HIGH_WATER / BIG) + 1;

	env_init(&e, enc, enc);
	ready_pair(&e);
	for (int i = 0; i < count; i++)
		send_frame(e.cli.c, (uint32_t)i, 4, BIG, &n);
	assert_true(conn_queued(e.cli.c) > CONN_HIGH_WATER);
	assert_int_equal(e.cli.drains, 0);
	run_until(&e, &e.cli.drains, 1);
	assert_true(conn_queued(e.cli.c) < CONN_HIGH_WATER / 2);
	run_until(&e, &e.srv.frames, count);
	run_until(&e, &n.ok, count);
	assert_int_equal(e.cli.drains, 1);
	assert_int_equal(e.srv.bad, 0);
	assert_int_equal(conn_queued(e.cli.c), 0);
	env_close(&e);
}

static void test_backpressure_plain(void **state)
{
	backpressure(0);
}

static void test_backpressure_encrypted(void **state)
{
	backpressure(1);
}

/* File payloads by sendfile on a plain connection, between ordinary
 * frames: in order and byte for byte; refused on an encrypted one. */
static void test_send_file(void **state)
{
	char path[] = "/tmp/syncbit-test-conn-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	uint8_t junk[1000];
	memset(junk, 0xee, sizeof junk);
	assert_int_equal(write(fd, junk, sizeof junk), sizeof junk);
	assert_int_equal(write(fd, pattern, PATTERN_LEN), PATTERN_LEN);

	struct env e;
	struct sent_count n = {0};
	env_init(&e, 0, 0);
	ready_pair(&e);
	const int count = 12;
	uint64_t want = 0;
	for (int i = 0; i < count; i++) {
		uint32_t seq = (uint32_t)i;
		size_t plen = i % 3 == 0 ? 0 : i % 3 == 1 ? 70000 : BIG;
		if (i % 2) {
			send_frame(e.cli.c, seq, 4, plen, &n);
		} else {
			uint8_t body[4] = {0, 0, 0, (uint8_t)seq};
			assert_int_equal(conn_send_file(e.cli.c, T_DATA, body, 4, fd,
							1000 + seq % 256, plen, on_sent, &n),
					 0);
		}
		want += plen;
	}
	run_until(&e, &e.srv.frames, count);
	run_until(&e, &n.ok, count);
	assert_int_equal(e.srv.bad, 0);
	assert_int_equal(e.srv.payload_bytes, want);
	assert_int_equal(conn_queued(e.cli.c), 0);
	/* A file payload still queued when the connection closes fails. */
	uint8_t body[4] = {0, 0, 0, 99};
	assert_int_equal(conn_send_file(e.cli.c, T_DATA, body, 4, fd, 1000, BIG, on_sent, &n), 0);
	env_close(&e);
	assert_int_equal(n.ok + n.failed, count + 1);

	env_init(&e, 1, 1);
	ready_pair(&e);
	assert_int_equal(conn_send_file(e.cli.c, T_DATA, body, 4, fd, 0, 10, on_sent, &n), -EINVAL);
	env_close(&e);
	close(fd);
}

static void test_close_with_pending(void **state)
{
	struct env e;
	struct sent_count n = {0};

	env_init(&e, 1, 1);
	ready_pair(&e);
	for (int i = 0; i < 4; i++)
		send_frame(e.cli.c, (uint32_t)i, 4, BIG, &n);
	conn_close(e.cli.c, 0);
	assert_int_equal(conn_send(e.cli.c, T_DATA, "x", 1, NULL, 0, on_sent, &n), -EPIPE);
	run_until(&e, &e.cli.close_calls, 1);
	assert_int_equal(n.ok + n.failed, 4);
	assert_true(n.failed >= 1);
	assert_int_equal(n.last_status, SB_ECANCELED);
	assert_int_equal(e.cli.close_status, 0);
	run_until(&e, &e.srv.close_calls, 1);
	env_close(&e);

	/* closed while dialing: on_ready reports it, on_close follows once */
	env_init(&e, 1, 1);
	env_listen(&e, "127.0.0.1:0");
	env_dial(&e, e.addr);
	send_frame(e.cli.c, 0, 4, 10, &n);
	conn_close(e.cli.c, SB_ECANCELED);
	run_until(&e, &e.cli.close_calls, 1);
	assert_int_equal(e.cli.ready_status, SB_ECANCELED);
	assert_int_equal(e.cli.close_status, SB_ECANCELED);
	env_close(&e);
}

static void test_frame_refused_by_app(void **state)
{
	struct env e;
	struct sent_count n = {0};

	env_init(&e, 1, 1);
	ready_pair(&e);
	e.srv.fail_frames_with = SB_ECORRUPT;
	send_frame(e.cli.c, 0, 4, 0, &n);
	send_frame(e.cli.c, 1, 4, 0, &n);
	run_until(&e, &e.srv.close_calls, 1);
	assert_int_equal(e.srv.close_status, SB_ECORRUPT);
	assert_int_equal(e.srv.frames, 1);
	run_until(&e, &e.cli.close_calls, 1);
	env_close(&e);
}

/* An agent listening on every address is dialled where it connected from;
 * anything else is kept as advertised. */
static void test_addr_resolve(void **state)
{
	static const struct {
		const char *adv, *seen, *want;
	} cases[] = {
	    {"0.0.0.0:7000", "10.1.2.3:51234", "10.1.2.3:7000"},
	    {":7000", "10.1.2.3:51234", "10.1.2.3:7000"},
	    {"[::]:7000", "[fd00::5]:40000", "[fd00::5]:7000"},
	    {"::"
	     ":7000",
	     "192.168.0.9:1", "192.168.0.9:7000"},
	    {"10.0.0.8:7000", "10.1.2.3:51234", "10.0.0.8:7000"},
	    {"node-a.example:7000", "10.1.2.3:5", "node-a.example:7000"},
	    {"[fd00::1]:7000", "10.1.2.3:5", "[fd00::1]:7000"},
	    {"0.0.0.0:7000", "?", "0.0.0.0:7000"}, /* nothing better known */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = conn_addr_resolve(cases[i].adv, cases[i].seen);
		assert_string_equal(got, cases[i].want);
		free(got);
	}
	assert_true(conn_addr_unspecified("0.0.0.0:1"));
	assert_true(conn_addr_unspecified("[::]:1"));
	assert_true(conn_addr_unspecified("nohost"));
	assert_false(conn_addr_unspecified("127.0.0.1:1"));
	assert_false(conn_addr_unspecified("[::1]:1"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_resolve),
	    cmocka_unit_test(test_handshake_modes),
	    cmocka_unit_test(test_ipv6),
	    cmocka_unit_test(test_wrong_token),
	    cmocka_unit_test(test_frames_plain),
	    cmocka_unit_test(test_frames_encrypted),
	    cmocka_unit_test(test_send_file),
	    cmocka_unit_test(test_backpressure_plain),
	    cmocka_unit_test(test_backpressure_encrypted),
	    cmocka_unit_test(test_close_with_pending),
	    cmocka_unit_test(test_frame_refused_by_app),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
