/* Connections against hostile peers: oversized and unlisted frames,
 * tampered and replayed records, refused identities and broken
 * handshakes, sent by raw sockets or altered by a relay. */
#include "tests/unit/conn_peers.h"

/* ---- tests: hostile peers ---- */

static void test_oversized(void **state)
{
	for (int enc = 0; enc < 2; enc++) {
		for (int what = 0; what < 2; what++) {
			struct env e;
			struct sent_count n = {0};

			env_init(&e, enc, enc);
			e.scfg.body_max = 1024;
			e.scfg.payload_max = 1u << 20;
			ready_pair(&e);
			send_frame(e.cli.c, 0, 300, 1000, &n); /* within the limits */
			if (what == 0) {
				static uint8_t body[2048];
				assert_int_equal(conn_send(e.cli.c, T_DATA, body, sizeof body, NULL,
							   0, NULL, NULL),
						 0);
			} else {
				send_frame(e.cli.c, 1, 4, BIG, &n);
			}
			run_until(&e, &e.srv.close_calls, 1);
			assert_int_equal(e.srv.close_status, SB_ETOOBIG);
			assert_int_equal(e.srv.frames, 1);
			assert_non_null(strstr(e.srv.error, "limits are 1024 and 1048576"));
			/* refused at the header, not after reading the payload */
			assert_true(e.srv.bytes_in < (1u << 20));
			run_until(&e, &e.cli.close_calls, 1);
			env_close(&e);
		}
	}
}

/* The protocol's dispatch table limits each type at its header: a payload
 * over the row's (far under the connection's own limits), or a type the
 * table lacks, closes the connection before the frame is read. */
static const struct frame_handler data_row[] = {{T_DATA, 64, 1000, NULL}};

static void test_table_limits(void **state)
{
	for (int enc = 0; enc < 2; enc++) {
		for (int what = 0; what < 3; what++) {
			struct env e;
			struct sent_count n = {0};

			env_init(&e, enc, enc);
			e.scfg.table = data_row;
			e.scfg.table_len = 1;
			ready_pair(&e);
			send_frame(e.cli.c, 0, 60, 1000, &n); /* within the row */
			if (what == 0) {
				send_frame(e.cli.c, 1, 4, BIG, &n);
			} else if (what == 1) {
				static uint8_t body[65];
				assert_int_equal(conn_send(e.cli.c, T_DATA, body, sizeof body, NULL,
							   0, NULL, NULL),
						 0);
			} else {
				assert_int_equal(
				    conn_send(e.cli.c, T_DATA + 1, "x", 1, NULL, 0, NULL, NULL), 0);
			}
			run_until(&e, &e.srv.close_calls, 1);
			assert_int_equal(e.srv.close_status, what < 2 ? SB_ETOOBIG : SB_EPROTO);
			assert_int_equal(e.srv.frames, 1);
			assert_int_equal(e.srv.bad, 0);
			assert_non_null(strstr(e.srv.error, what < 2
								? "limits are 64 and 1000"
								: "which this protocol lacks"));
			/* refused at the header: the 4 MiB payload was not read */
			assert_true(e.srv.bytes_in < (1u << 20));
			run_until(&e, &e.cli.close_calls, 1);
			env_close(&e);
		}
	}
}

static void test_tampered_record(void **state)
{
	struct env e;
	struct relay r;
	struct sent_count n = {0};

	env_init(&e, 1, 1);
	dial_via_relay(&e, &r);
	run_until(&e, &e.srv.ready_calls, 1);
	assert_int_equal(e.srv.ready_status, 0);
	/* everything so far was the handshake: alter the first record */
	r.tamper_at = r.forwarded + SECURE_RECORD_HEADER + 3;
	send_frame(e.cli.c, 0, 40, 0, &n);
	run_until(&e, &e.srv.close_calls, 1);
	assert_int_equal(e.srv.close_status, SB_EAUTH);
	assert_int_equal(e.srv.frames, 0);
	assert_non_null(strstr(e.srv.error, "failed authentication"));
	relay_stop(&r);
	run_until(&e, &e.cli.close_calls, 1);
	buf_close(&r.captured);
	env_close(&e);
}

/* Inside a payload a record's header is read alone and its ciphertext
 * straight into the record buffer: there too a length over the limit is
 * refused at the header, before the record is read, and altered ciphertext
 * fails authentication. The second record of a 4 MiB payload is altered
 * (the frame's header and body go first in a record of their own). */
static void test_tampered_payload_record(void **state)
{
	const size_t head_rec = SECURE_RECORD_OVERHEAD + FRAME_HEADER_LEN + 4;
	const size_t full_rec = SECURE_RECORD_OVERHEAD + SECURE_RECORD_MAX;
	for (int what = 0; what < 2; what++) {
		struct env e;
		struct relay r;
		struct sent_count n = {0};

		env_init(&e, 1, 1);
		dial_via_relay(&e, &r);
		run_until(&e, &e.srv.ready_calls, 1);
		assert_int_equal(e.srv.ready_status, 0);
		size_t second = r.forwarded + head_rec + full_rec;
		/* the length's top byte (0x00 -> 0x10), or a byte of ciphertext */
		r.tamper_at = what == 0 ? second : second + SECURE_RECORD_HEADER + 1000;
		send_frame(e.cli.c, 0, 4, BIG, &n);
		run_until(&e, &e.srv.close_calls, 1);
		assert_int_equal(e.srv.close_status, what == 0 ? SB_ETOOBIG : SB_EAUTH);
		assert_int_equal(e.srv.frames, 0);
		assert_non_null(strstr(e.srv.error, what == 0 ? "sent a record of 268697616 bytes"
							      : "failed authentication"));
		if (what == 0) /* refused at the header, not after reading the record */
			assert_true(e.srv.bytes_in < second + 2 * SECURE_RECORD_HEADER + 4096);
		relay_stop(&r);
		run_until(&e, &e.cli.close_calls, 1);
		buf_close(&r.captured);
		env_close(&e);
	}
}

/* --no-encrypt: a frame's header, body or tag altered on the way is
 * refused; a payload is not covered (blocks are checked against their
 * hashes by the application), but its length is. */
static void test_tampered_plain(void **state)
{
	for (int what = 0; what < 4; what++) {
		struct env e;
		struct relay r;
		struct sent_count n = {0};
		const size_t body = 40, tag = SECURE_MAC_BYTES;
		/* body, type in the header, tag, payload */
		const size_t at[] = {FRAME_HEADER_LEN + 3, 7, FRAME_HEADER_LEN + body + 5,
				     FRAME_HEADER_LEN + body + tag + 7};

		env_init(&e, 0, 0);
		dial_via_relay(&e, &r);
		run_until(&e, &e.srv.ready_calls, 1);
		run_until(&e, &e.cli.ready_calls, 1);
		assert_string_equal(e.srv.cipher, "none");
		r.tamper_at = r.forwarded + at[what];
		send_frame(e.cli.c, 0, body, 100, &n);
		send_frame(e.cli.c, 1, body, 0, &n);
		if (what < 3) {
			run_until(&e, &e.srv.close_calls, 1);
			assert_int_equal(e.srv.close_status, SB_EAUTH);
			assert_int_equal(e.srv.frames, 0);
			assert_non_null(strstr(e.srv.error, "failed authentication"));
		} else {
			run_until(&e, &e.srv.frames, 2);
			assert_int_equal(e.srv.bad, 1); /* the payload, as altered */
			assert_int_equal(e.srv.close_calls, 0);
		}
		relay_stop(&r);
		run_until(&e, &e.cli.close_calls, 1);
		buf_close(&r.captured);
		env_close(&e);
	}
}

static const char *refuse_all(struct conn *c, const char *node, const uint8_t *key)
{
	return "its key is not the one registered";
}

/* Who is on the other end: a refusal on either side fails the handshake
 * with SB_EDENIED, and the initiator hears the responder's reason. */
static void test_identity_refused(void **state)
{
	for (int side = 0; side < 2; side++) {
		for (int enc = 0; enc < 2; enc++) {
			struct env e;
			struct sent_count n = {0};
			env_init(&e, enc, enc);
			if (side)
				e.scfg.verify = refuse_all;
			else
				e.ccfg.verify = refuse_all;
			env_listen(&e, "127.0.0.1:0");
			env_dial(&e, e.addr);
			send_frame(e.cli.c, 0, 8, 0, &n);
			run_until(&e, &e.cli.close_calls, 1);
			run_until(&e, &e.srv.close_calls, 1);
			assert_int_equal(e.cli.close_status, SB_EDENIED);
			assert_non_null(strstr(e.cli.error, "its key is not the one registered"));
			if (side) {
				assert_non_null(strstr(e.cli.error, "refused: "));
				assert_int_equal(e.srv.close_status, SB_EDENIED);
			} else {
				assert_int_equal(e.srv.close_status, -ECONNRESET);
			}
			assert_int_equal(e.srv.frames + e.cli.frames, 0);
			assert_int_equal(n.failed, 1);
			env_close(&e);
		}
	}
}

/* A connection for one purpose to a port that takes another. */
static void test_wrong_purpose(void **state)
{
	struct env e;
	env_init(&e, 1, 1);
	e.ccfg.purpose = HANDSHAKE_CONTROL;
	env_listen(&e, "127.0.0.1:0");
	env_dial(&e, e.addr);
	run_until(&e, &e.cli.close_calls, 1);
	run_until(&e, &e.srv.close_calls, 1);
	assert_int_equal(e.cli.close_status, SB_EPROTO);
	assert_non_null(strstr(e.cli.error, "this port does not take control connections"));
	assert_int_equal(e.srv.close_status, SB_EPROTO);
	env_close(&e);

	/* a listener for two purposes tells the application which it is */
	env_init(&e, 1, 1);
	e.ccfg.purpose = HANDSHAKE_ADMIN;
	e.scfg.purposes =
	    HANDSHAKE_PURPOSE_BIT(HANDSHAKE_CONTROL) | HANDSHAKE_PURPOSE_BIT(HANDSHAKE_ADMIN);
	ready_pair(&e);
	assert_int_equal(e.srv.purpose, HANDSHAKE_ADMIN);
	env_close(&e);
}

static void test_replay(void **state)
{
	struct env e;
	struct relay r;
	struct raw_client rc;
	struct sent_count n = {0};

	env_init(&e, 1, 1);
	dial_via_relay(&e, &r);
	run_until(&e, &e.cli.ready_calls, 1);
	send_frame(e.cli.c, 0, 40, 1000, &n);
	run_until(&e, &e.srv.frames, 1);
	conn_close(e.cli.c, 0);
	run_until(&e, &e.srv.close_calls, 1);
	relay_stop(&r);
	assert_int_equal(e.srv.bad, 0);

	/* the same bytes again: the listener saw that first message before */
	memset(&e.srv, 0, sizeof e.srv);
	memset(&rc, 0, sizeof rc);
	rc.data = r.captured.ptr;
	rc.len = r.captured.len;
	raw_client_start(&e, &rc, e.port);
	run_until(&e, &e.srv.close_calls, 1);
	assert_int_equal(e.srv.close_status, SB_EAUTH);
	assert_int_equal(e.srv.ready_status, SB_EAUTH);
	assert_non_null(strstr(e.srv.error, "seen before"));
	assert_int_equal(e.srv.frames, 0);
	raw_client_close(&rc);

	/* to a fresh listener: it answers, and the old last message fails */
	struct raw_client rc2;
	conn_listener_close(e.l);
	env_listen(&e, "127.0.0.1:0");
	memset(&e.srv, 0, sizeof e.srv);
	memset(&rc2, 0, sizeof rc2);
	rc2.data = r.captured.ptr;
	rc2.len = r.captured.len;
	raw_client_start(&e, &rc2, e.port);
	run_until(&e, &e.srv.close_calls, 1);
	assert_int_equal(e.srv.close_status, SB_EAUTH);
	assert_non_null(strstr(e.srv.error, "does not decrypt"));
	assert_int_equal(e.srv.frames, 0);
	raw_client_close(&rc2);
	buf_close(&r.captured);
	env_close(&e);
}

/* The peer vanishes in the middle of a transfer: the sender fails its
 * pending sends and closes once, and the process survives (no SIGPIPE). */
static void test_peer_gone(void **state)
{
	struct env e;
	struct relay r;
	struct sent_count n = {0};

	env_init(&e, 1, 1);
	dial_via_relay(&e, &r);
	run_until(&e, &e.cli.ready_calls, 1);
	for (int i = 0; i < 8; i++)
		send_frame(e.cli.c, (uint32_t)i, 4, BIG, &n);
	run_until(&e, &e.srv.frames, 1);
	relay_stop(&r);
	run_until(&e, &e.cli.close_calls, 1);
	assert_int_equal(n.ok + n.failed, 8);
	assert_true(n.failed >= 1);
	assert_int_equal(e.srv.bad, 0);
	buf_close(&r.captured);
	env_close(&e);
}

/* One raw client sends bytes; the server must close with want. */
static void refused(const uint8_t *data, size_t len, int shutdown_after, int want,
		    const char *want_error)
{
	struct env e;
	struct raw_client rc;

	env_init(&e, 1, 1);
	e.scfg.handshake_ms = 2000;
	env_listen(&e, "127.0.0.1:0");
	memset(&rc, 0, sizeof rc);
	rc.data = data;
	rc.len = len;
	rc.shutdown_after = shutdown_after;
	raw_client_start(&e, &rc, e.port);
	run_until(&e, &e.srv.close_calls, 1);
	if (e.srv.close_status != want)
		fail_msg("closed with %s (%s), want %s", sb_errname(e.srv.close_status),
			 e.srv.error, sb_errname(want));
	if (want_error && !strstr(e.srv.error, want_error))
		fail_msg("error '%s' lacks '%s'", e.srv.error, want_error);
	assert_int_equal(e.srv.ready_status, want);
	assert_int_equal(e.srv.frames, 0);
	raw_client_close(&rc);
	env_close(&e);
}

static void test_hostile_handshakes(void **state)
{
	uint8_t buf[4096], junk[200];
	size_t n;

	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 37 + 11);

	/* a header far over the hello limit */
	n = frame(buf, SYNCBIT__MSG_TYPE__MSG_HELLO, NULL, 0, 0);
	buf[0] = buf[1] = buf[2] = buf[3] = 0xff;
	refused(buf, n, 0, SB_ETOOBIG, "limits are 1024 and 0");
	/* a payload during the handshake */
	n = frame(buf, SYNCBIT__MSG_TYPE__MSG_HELLO, NULL, 0, 10);
	refused(buf, n, 0, SB_ETOOBIG, NULL);
	/* garbage in a well-formed frame */
	n = frame(buf, SYNCBIT__MSG_TYPE__MSG_HELLO, junk, sizeof junk, 0);
	refused(buf, n, 0, SB_EPROTO, "malformed hello");
	/* an application frame first */
	n = frame(buf, T_DATA, junk, 10, 0);
	refused(buf, n, 0, SB_EPROTO, "during the handshake");
	/* an older Syncbit, and one from the future */
	n = hello(buf, 1);
	refused(buf, n, 0, SB_EPROTO, "peer speaks protocol v1; this side speaks v2");
	n = hello(buf, 3);
	refused(buf, n, 0, SB_EPROTO, "peer speaks protocol v3");
	/* a version 2 hello whose Noise message is junk */
	n = frame(buf, SYNCBIT__MSG_TYPE__MSG_HELLO, "\x08\x02\x40\x02\x4a\x05junk!", 11, 0);
	refused(buf, n, 0, SB_EPROTO, "malformed first message");
	/* a real first message under another join token */
	n = hello_v2(buf, 0x11);
	refused(buf, n, 0, SB_EAUTH, "join token");
	/* a hello cut short, then the end of the stream */
	n = hello_v2(buf, 0x5a);
	refused(buf, n - 5, 1, -ECONNRESET, "during the handshake");
	/* a valid first message, then an application frame */
	n = hello_v2(buf, 0x5a);
	n += frame(buf + n, T_DATA, junk, 10, 0);
	refused(buf, n, 0, SB_EPROTO, "expected 1");
	/* a valid first message, then silence and the end of the stream */
	n = hello_v2(buf, 0x5a);
	refused(buf, n, 1, -ECONNRESET, "instead of finishing the handshake");
	/* nothing at all */
	refused(buf, 0, 1, -ECONNRESET, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_oversized),	    cmocka_unit_test(test_table_limits),
	    cmocka_unit_test(test_tampered_record), cmocka_unit_test(test_tampered_payload_record),
	    cmocka_unit_test(test_tampered_plain),  cmocka_unit_test(test_identity_refused),
	    cmocka_unit_test(test_wrong_purpose),   cmocka_unit_test(test_replay),
	    cmocka_unit_test(test_peer_gone),	    cmocka_unit_test(test_hostile_handshakes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
