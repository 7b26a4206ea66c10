/* Raw libuv sockets that stand in for broken or hostile peers, a relay
 * between the two ends of a connection that records, replays or alters
 * the initiator's bytes, and hand-made frames and Hellos for them to send
 * (test_conn*.c). */
#ifndef SYNCBIT_CONN_PEERS_H
#define SYNCBIT_CONN_PEERS_H

#include "tests/unit/conn_fixture.h"

/* ---- raw peers ---- */

struct raw_write {
	uv_write_t req;
	uv_buf_t b;
	char data[];
};

static inline void raw_written(uv_write_t *req, int status)
{
	free(req->data);
}

static inline void raw_send(uv_stream_t *s, const void *p, size_t n)
{
	struct raw_write *w = malloc(sizeof *w + n);
	memcpy(w->data, p, n);
	w->req.data = w;
	w->b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, s, &w->b, 1, raw_written) != 0)
		free(w);
}

static inline void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
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

static inline void raw_client_closed(uv_handle_t *h)
{
	struct raw_client *r = h->data;
	r->closed = 1;
}

static inline void raw_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct raw_client *r = s->data;
	if (n > 0)
		r->got += (size_t)n;
	else if (n < 0) {
		r->eof = 1;
		uv_read_stop(s);
	}
}

static inline void raw_client_connected(uv_connect_t *req, int status)
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
static inline void raw_client_start_from(struct env *e, struct raw_client *r, int port,
					 const char *src)
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

static inline void raw_client_start(struct env *e, struct raw_client *r, int port)
{
	raw_client_start_from(e, r, port, NULL);
}

static inline void raw_client_close(struct raw_client *r)
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

static inline void relay_close(struct relay *r)
{
	if (r->closing)
		return;
	r->closing = 1;
	uv_close((uv_handle_t *)&r->down, NULL);
	uv_close((uv_handle_t *)&r->up, NULL);
}

static inline void relay_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
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

static inline void relay_connected(uv_connect_t *req, int status)
{
	struct relay *r = req->data;
	assert_int_equal(status, 0);
	uv_read_start((uv_stream_t *)&r->down, raw_alloc, relay_read);
	uv_read_start((uv_stream_t *)&r->up, raw_alloc, relay_read);
}

static inline void relay_accept(uv_stream_t *server, int status)
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

static inline void relay_start(struct env *e, struct relay *r)
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
static inline void dial_via_relay(struct env *e, struct relay *r)
{
	char addr[64];

	env_listen(e, "127.0.0.1:0");
	relay_start(e, r);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", r->port);
	env_dial(e, addr);
}

static inline void relay_stop(struct relay *r)
{
	relay_close(r);
	uv_close((uv_handle_t *)&r->server, NULL);
}

static inline size_t frame(uint8_t *out, uint32_t type, const void *body, uint32_t len,
			   uint32_t plen)
{
	struct frame_header h = {len, type, plen};
	frame_header_encode(&h, out);
	if (len)
		memcpy(out + FRAME_HEADER_LEN, body, len);
	return FRAME_HEADER_LEN + len;
}

/* A Hello of version 1 (as an older Syncbit sends it) or of another
 * version, with nothing a v2 side can use. */
static inline size_t hello(uint8_t *out, uint32_t version)
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
static inline size_t hello_v2(uint8_t *out, uint8_t tok)
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

#endif
