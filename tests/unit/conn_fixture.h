/* Shared by the connection tests (test_conn*.c): two ends of a
 * connection over real loopback sockets in one loop, the application
 * callbacks that record what each end sees, and frame senders. */
#ifndef SYNCBIT_CONN_FIXTURE_H
#define SYNCBIT_CONN_FIXTURE_H

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

static inline void on_ready(struct conn *c, int status)
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

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Body: u32 sequence number, then pattern bytes; payload: pattern bytes. */
static inline int on_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
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

static inline void on_drain(struct conn *c)
{
	struct side *s = conn_data(c);
	s->drains++;
}

static inline void on_close(struct conn *c, int status)
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

static inline void on_accept(struct conn_listener *l, struct conn *c)
{
	struct env *e = conn_data(c);
	e->accepted++;
	e->srv.c = c;
	conn_set_data(c, &e->srv);
}

/* ---- the loop ---- */

static inline void on_guard(uv_timer_t *t)
{
	struct env *e = t->data;
	e->timed_out = 1;
}

static inline void env_init(struct env *e, int enc_srv, int enc_cli)
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

static inline void env_listen(struct env *e, const char *addr)
{
	assert_int_equal(conn_listen(&e->loop, addr, &e->scfg, &callbacks, e, on_accept, &e->l), 0);
	e->port = conn_listener_port(e->l);
	assert_true(e->port > 0);
	if (addr[0] == '[')
		snprintf(e->addr, sizeof e->addr, "[::1]:%d", e->port);
	else
		snprintf(e->addr, sizeof e->addr, "127.0.0.1:%d", e->port);
}

static inline void env_dial(struct env *e, const char *addr)
{
	assert_int_equal(conn_dial(&e->loop, addr, &e->ccfg, &callbacks, &e->cli, &e->cli.c), 0);
}

static inline void run_until(struct env *e, const int *v, int want)
{
	while (*v < want && !e->timed_out)
		uv_run(&e->loop, UV_RUN_ONCE);
	if (e->timed_out)
		fail_msg("timed out waiting (have %d, want %d)", *v, want);
}

static inline void env_close(struct env *e)
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

static inline void ready_pair(struct env *e)
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

static inline void on_sent(void *arg, int status)
{
	struct sent_count *n = arg;
	if (status == 0)
		n->ok++;
	else
		n->failed++;
	n->last_status = status;
}

static inline void send_frame(struct conn *c, uint32_t seq, size_t body_len, size_t plen,
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
static inline int send_mix(struct conn *c, struct sent_count *n, uint64_t *payload_bytes)
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

static inline int setup(void **state)
{
	if (sodium_init() < 0)
		return -1;
	pattern = malloc(PATTERN_LEN);
	for (size_t i = 0; i < PATTERN_LEN; i++)
		pattern[i] = (uint8_t)(i * 2654435761u >> 13);
	return 0;
}

static inline int teardown(void **state)
{
	free(pattern);
	return 0;
}

#endif
