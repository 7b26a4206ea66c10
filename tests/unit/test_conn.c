/* Connections over real loopback sockets, both ends in one loop. Raw
 * libuv sockets stand in for broken or hostile peers, and a relay between
 * the two ends records, replays or alters the initiator's bytes. */
#include "tests/unit/testutil.h"

#include <errno.h>
#include <sys/resource.h>
#include <uv.h>

#include "common/buf.h"
#include "common/net/conn.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "proto/wire.pb-c.h"

#define GUARD_MS     5000
#define T_DATA	     SYNCBIT__MSG_TYPE__MSG_BLOCK
#define BIG	     (4u << 20)
#define PATTERN_LEN  (BIG + 256)
#define SHORT_MS     100
#define FRAMES_SMALL 1000

static uint8_t *pattern; /* frame k carries bytes from pattern + k % 256 */

struct side {
	struct conn *c;
	int ready_calls, ready_status;
	uint8_t peer_key[SECURE_KEY_BYTES];
	int purpose;
	int close_calls, close_status;
	char error[256];
	char cipher[32], close_cipher[32];
	int encrypted;
	int frames, bad;
	uint32_t next_seq;
	uint64_t payload_bytes;
	uint64_t bytes_in, bytes_out;
	int drains;
	int fail_frames_with;
};

struct env {
	uv_loop_t loop;
	uv_timer_t guard;
	int timed_out;
	struct secure_token tok;
	struct secure_keypair skey, ckey;
	struct conn_config scfg, ccfg;
	struct conn_listener *l;
	int port;
	char addr[64];
	struct side srv, cli;
	int accepted;
};

/* ---- the application side ---- */

static void on_ready(struct conn *c, int status)
{
	struct side *s = conn_data(c);
	s->ready_calls++;
	s->ready_status = status;
	if (status == 0) {
		s->encrypted = conn_encrypted(c);
		snprintf(s->cipher, sizeof s->cipher, "%s", conn_cipher(c));
		memcpy(s->peer_key, conn_peer_key(c), SECURE_KEY_BYTES);
		s->purpose = conn_purpose(c);
	}
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Body: u32 sequence number, then pattern bytes; payload: pattern bytes. */
static int on_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct side *s = conn_data(c);

	if (type != T_DATA || len < 4 || (plen == 0) != (payload == NULL))
		s->bad++;
	else {
		uint32_t seq = get_be32(body);
		const uint8_t *want = pattern + seq % 256;
		if (seq != s->next_seq || memcmp(body + 4, want, len - 4) != 0 ||
		    (plen && memcmp(payload, want, plen) != 0))
			s->bad++;
		s->next_seq = seq + 1;
	}
	s->frames++;
	s->payload_bytes += plen;
	free(payload);
	return s->fail_frames_with;
}

static void on_drain(struct conn *c)
{
	struct side *s = conn_data(c);
	s->drains++;
}

static void on_close(struct conn *c, int status)
{
	struct side *s = conn_data(c);
	s->close_calls++;
	s->close_status = status;
	snprintf(s->error, sizeof s->error, "%s", conn_error(c));
	snprintf(s->close_cipher, sizeof s->close_cipher, "%s", conn_cipher(c));
	s->bytes_in = conn_bytes_in(c);
	s->bytes_out = conn_bytes_out(c);
	s->c = NULL;
}

static const struct conn_callbacks callbacks = {on_ready, on_frame, on_drain, on_close};

static void on_accept(struct conn_listener *l, struct conn *c)
{
	struct env *e = conn_data(c);
	e->accepted++;
	e->srv.c = c;
	conn_set_data(c, &e->srv);
}

/* ---- the loop ---- */

static void on_guard(uv_timer_t *t)
{
	struct env *e = t->data;
	e->timed_out = 1;
}

static void env_init(struct env *e, int enc_srv, int enc_cli)
{
	memset(e, 0, sizeof *e);
	assert_int_equal(uv_loop_init(&e->loop), 0);
	uv_timer_init(&e->loop, &e->guard);
	e->guard.data = e;
	uv_timer_start(&e->guard, on_guard, GUARD_MS, 0);
	memset(e->tok.key, 0x5a, sizeof e->tok.key);
	e->scfg.token = e->ccfg.token = &e->tok;
	secure_keypair_new(&e->skey);
	secure_keypair_new(&e->ckey);
	e->scfg.key = &e->skey;
	e->ccfg.key = &e->ckey;
	e->scfg.purpose = e->ccfg.purpose = HANDSHAKE_PEER;
	e->scfg.node = "server";
	e->ccfg.node = "client";
	e->scfg.encrypt = enc_srv;
	e->ccfg.encrypt = enc_cli;
}

static void env_listen(struct env *e, const char *addr)
{
	assert_int_equal(conn_listen(&e->loop, addr, &e->scfg, &callbacks, e, on_accept, &e->l), 0);
	e->port = conn_listener_port(e->l);
	assert_true(e->port > 0);
	if (addr[0] == '[')
		snprintf(e->addr, sizeof e->addr, "[::1]:%d", e->port);
	else
		snprintf(e->addr, sizeof e->addr, "127.0.0.1:%d", e->port);
}

static void env_dial(struct env *e, const char *addr)
{
	assert_int_equal(conn_dial(&e->loop, addr, &e->ccfg, &callbacks, &e->cli, &e->cli.c), 0);
}

static void run_until(struct env *e, const int *v, int want)
{
	while (*v < want && !e->timed_out)
		uv_run(&e->loop, UV_RUN_ONCE);
	if (e->timed_out)
		fail_msg("timed out waiting (have %d, want %d)", *v, want);
}

static void env_close(struct env *e)
{
	if (e->cli.c)
		conn_close(e->cli.c, 0);
	if (e->srv.c)
		conn_close(e->srv.c, 0);
	if (e->l)
		conn_listener_close(e->l);
	uv_close((uv_handle_t *)&e->guard, NULL);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&e->loop), 0);
	assert_true(e->cli.close_calls <= 1 && e->srv.close_calls <= 1);
}

static void ready_pair(struct env *e)
{
	env_listen(e, "127.0.0.1:0");
	env_dial(e, e->addr);
	run_until(e, &e->cli.ready_calls, 1);
	run_until(e, &e->srv.ready_calls, 1);
	assert_int_equal(e->cli.ready_status, 0);
	assert_int_equal(e->srv.ready_status, 0);
}

/* ---- sending ---- */

struct sent_count {
	int ok, failed, last_status;
};

static void on_sent(void *arg, int status)
{
	struct sent_count *n = arg;
	if (status == 0)
		n->ok++;
	else
		n->failed++;
	n->last_status = status;
}

static void send_frame(struct conn *c, uint32_t seq, size_t body_len, size_t plen,
		       struct sent_count *n)
{
	uint8_t body[4 + 300];
	assert_true(body_len >= 4 && body_len <= sizeof body);
	body[0] = (uint8_t)(seq >> 24);
	body[1] = (uint8_t)(seq >> 16);
	body[2] = (uint8_t)(seq >> 8);
	body[3] = (uint8_t)seq;
	memcpy(body + 4, pattern + seq % 256, body_len - 4);
	assert_int_equal(conn_send(c, T_DATA, body, body_len, plen ? pattern + seq % 256 : NULL,
				   plen, on_sent, n),
			 0);
}

/* A mix: many small frames, some with small payloads, a 4 MiB payload, an
 * empty-body frame with a payload... */
static int send_mix(struct conn *c, struct sent_count *n, uint64_t *payload_bytes)
{
	uint32_t seq = 0;
	for (int i = 0; i < FRAMES_SMALL; i++) {
		size_t plen = i % 7 == 0 ? (size_t)i * 13 : 0;
		send_frame(c, seq++, 4 + (size_t)(i % 300), plen, n);
		*payload_bytes += plen;
	}
	send_frame(c, seq++, 4, BIG, n);
	send_frame(c, seq++, 100, 1, n);
	send_frame(c, seq++, 4, BIG - 1, n);
	*payload_bytes += 2 * (uint64_t)BIG;
	for (int i = 0; i < 10; i++)
		send_frame(c, seq++, 4, 0, n);
	return (int)seq;
}

/* ---- raw peers ---- */

struct raw_write {
	uv_write_t req;
	uv_buf_t b;
	char data[];
};

static void raw_written(uv_write_t *req, int status)
{
	free(req->data);
}

static void raw_send(uv_stream_t *s, const void *p, size_t n)
{
	struct raw_write *w = malloc(sizeof *w + n);
	memcpy(w->data, p, n);
	w->req.data = w;
	w->b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, s, &w->b, 1, raw_written) != 0)
		free(w);
}

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char scratch[64 << 10];
	b->base = scratch;
	b->len = sizeof scratch;
}

/* A plain TCP client: sends its bytes once connected, reads and drops
 * what comes back, and can half-close or stay silent. */
struct raw_client {
	uv_tcp_t tcp;
	uv_connect_t connect;
	const uint8_t *data;
	size_t len;
	int shutdown_after; /* close our side once the bytes are out */
	uv_shutdown_t sd;
	size_t got;
	int connected, eof, closed;
};

static void raw_client_closed(uv_handle_t *h)
{
	struct raw_client *r = h->data;
	r->closed = 1;
}

static void raw_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct raw_client *r = s->data;
	if (n > 0)
		r->got += (size_t)n;
	else if (n < 0) {
		r->eof = 1;
		uv_read_stop(s);
	}
}

static void raw_client_connected(uv_connect_t *req, int status)
{
	struct raw_client *r = req->data;
	assert_int_equal(status, 0);
	r->connected = 1;
	if (r->len)
		raw_send((uv_stream_t *)&r->tcp, r->data, r->len);
	if (r->shutdown_after)
		uv_shutdown(&r->sd, (uv_stream_t *)&r->tcp, NULL);
	uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_client_read);
}

/* From source address src (any of 127/8 is loopback), or any when NULL. */
static void raw_client_start_from(struct env *e, struct raw_client *r, int port, const char *src)
{
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", port, &sa);
	uv_tcp_init(&e->loop, &r->tcp);
	r->tcp.data = r;
	if (src) {
		struct sockaddr_in from;
		uv_ip4_addr(src, 0, &from);
		assert_int_equal(uv_tcp_bind(&r->tcp, (struct sockaddr *)&from, 0), 0);
	}
	r->connect.data = r;
	assert_int_equal(
	    uv_tcp_connect(&r->connect, &r->tcp, (struct sockaddr *)&sa, raw_client_connected), 0);
}

static void raw_client_start(struct env *e, struct raw_client *r, int port)
{
	raw_client_start_from(e, r, port, NULL);
}

static void raw_client_close(struct raw_client *r)
{
	if (!uv_is_closing((uv_handle_t *)&r->tcp))
		uv_close((uv_handle_t *)&r->tcp, raw_client_closed);
}

/* The relay: accepts the initiator, dials the responder, forwards both
 * ways; the initiator's bytes are recorded and one of them can be flipped. */
struct relay {
	uv_tcp_t server, down, up;
	uv_connect_t connect;
	int port;
	struct buf captured;
	size_t forwarded; /* initiator bytes so far */
	size_t tamper_at; /* flip a bit of the initiator's byte at this offset */
	int closing;
	int target_port;
	uv_loop_t *loop;
};

static void relay_close(struct relay *r)
{
	if (r->closing)
		return;
	r->closing = 1;
	uv_close((uv_handle_t *)&r->down, NULL);
	uv_close((uv_handle_t *)&r->up, NULL);
}

static void relay_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct relay *r = s->data;
	if (n < 0) {
		relay_close(r);
		return;
	}
	if (s == (uv_stream_t *)&r->down) {
		for (ssize_t i = 0; i < n; i++)
			if (r->forwarded + (size_t)i == r->tamper_at)
				b->base[i] ^= 0x10;
		buf_append(&r->captured, b->base, (size_t)n);
		r->forwarded += (size_t)n;
		raw_send((uv_stream_t *)&r->up, b->base, (size_t)n);
	} else {
		raw_send((uv_stream_t *)&r->down, b->base, (size_t)n);
	}
}

static void relay_connected(uv_connect_t *req, int status)
{
	struct relay *r = req->data;
	assert_int_equal(status, 0);
	uv_read_start((uv_stream_t *)&r->down, raw_alloc, relay_read);
	uv_read_start((uv_stream_t *)&r->up, raw_alloc, relay_read);
}

static void relay_accept(uv_stream_t *server, int status)
{
	struct relay *r = server->data;
	struct sockaddr_in sa;

	uv_tcp_init(r->loop, &r->down);
	uv_tcp_init(r->loop, &r->up);
	r->down.data = r->up.data = r->connect.data = r;
	assert_int_equal(uv_accept(server, (uv_stream_t *)&r->down), 0);
	uv_ip4_addr("127.0.0.1", r->target_port, &sa);
	uv_tcp_connect(&r->connect, &r->up, (struct sockaddr *)&sa, relay_connected);
}

static void relay_start(struct env *e, struct relay *r)
{
	struct sockaddr_in sa;
	struct sockaddr_storage ss;
	int len = sizeof ss;

	memset(r, 0, sizeof *r);
	r->loop = &e->loop;
	r->tamper_at = SIZE_MAX;
	r->target_port = e->port;
	uv_tcp_init(&e->loop, &r->server);
	r->server.data = r;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_bind(&r->server, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&r->server, 8, relay_accept), 0);
	uv_tcp_getsockname(&r->server, (struct sockaddr *)&ss, &len);
	r->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Listen, and dial through a relay. */
static void dial_via_relay(struct env *e, struct relay *r)
{
	char addr[64];

	env_listen(e, "127.0.0.1:0");
	relay_start(e, r);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", r->port);
	env_dial(e, addr);
}

static void relay_stop(struct relay *r)
{
	relay_close(r);
	uv_close((uv_handle_t *)&r->server, NULL);
}

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

static size_t frame(uint8_t *out, uint32_t type, const void *body, uint32_t len, uint32_t plen)
{
	struct frame_header h = {len, type, plen};
	frame_header_encode(&h, out);
	if (len)
		memcpy(out + FRAME_HEADER_LEN, body, len);
	return FRAME_HEADER_LEN + len;
}

/* A Hello of version 1 (as an older Syncbit sends it) or of another
 * version, with nothing a v2 side can use. */
static size_t hello(uint8_t *out, uint32_t version)
{
	uint8_t body[64];
	size_t n = 0;
	body[n++] = 0x08; /* field 1: version */
	body[n++] = (uint8_t)version;
	body[n++] = 0x12; /* field 2 (v1's ephemeral key): 32 bytes */
	body[n++] = 32;
	memset(body + n, 9, 32);
	n += 32;
	return frame(out, SYNCBIT__MSG_TYPE__MSG_HELLO, body, (uint32_t)n, 0);
}

/* A genuine first message for a peer connection, under token byte tok. */
static size_t hello_v2(uint8_t *out, uint8_t tok)
{
	struct secure_token t;
	struct secure_keypair k;
	struct handshake hs;
	struct buf b = BUF_INIT;
	memset(t.key, tok, sizeof t.key);
	secure_keypair_new(&k);
	struct handshake_config hc = {.token = &t, .key = &k, .purpose = HANDSHAKE_PEER};
	assert_int_equal(handshake_init(&hs, &hc, 1), 0);
	assert_int_equal(handshake_start(&hs, &b), 0);
	size_t n = frame(out, SYNCBIT__MSG_TYPE__MSG_HELLO, b.ptr, (uint32_t)b.len, 0);
	handshake_close(&hs);
	buf_close(&b);
	return n;
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

static void gate_sleep(struct gate *g, unsigned ms)
{
	uv_timer_t t;
	int done = 0;
	uv_timer_init(&g->e.loop, &t);
	t.data = &done;
	uv_timer_start(&t, on_nap, ms, 0);
	run_until(&g->e, &done, 1);
	uv_close((uv_handle_t *)&t, NULL);
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

static int setup(void **state)
{
	if (sodium_init() < 0)
		return -1;
	pattern = malloc(PATTERN_LEN);
	for (size_t i = 0; i < PATTERN_LEN; i++)
		pattern[i] = (uint8_t)(i * 2654435761u >> 13);
	return 0;
}

static int teardown(void **state)
{
	free(pattern);
	return 0;
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
	    cmocka_unit_test(test_oversized),
	    cmocka_unit_test(test_table_limits),
	    cmocka_unit_test(test_tampered_record),
	    cmocka_unit_test(test_tampered_plain),
	    cmocka_unit_test(test_identity_refused),
	    cmocka_unit_test(test_wrong_purpose),
	    cmocka_unit_test(test_replay),
	    cmocka_unit_test(test_peer_gone),
	    cmocka_unit_test(test_hostile_handshakes),
	    cmocka_unit_test(test_initiator_refuses),
	    cmocka_unit_test(test_timeouts),
	    cmocka_unit_test(test_dial_errors),
	    cmocka_unit_test(test_preauth_per_address),
	    cmocka_unit_test(test_preauth_overall),
	    cmocka_unit_test(test_preauth_busy_deadline),
	    cmocka_unit_test(test_preauth_fd_reserve),
	    cmocka_unit_test(test_preauth_outcomes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
