#include "common/net/conn_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "proto/wire.pb-c.h"

/* A handshake frame, written on its own before the queue opens. */
struct raw_write {
	uv_write_t req;
	struct conn *c;
	size_t len;
	int close_with; /* < 0: close with this status once written (a refusal) */
	uint8_t data[];
};

static const char *verify_peer(void *arg, const char *node, const uint8_t *key)
{
	struct conn *c = arg;
	return c->verify ? c->verify(c, node, key) : NULL;
}

/* The handshake's state: for an accepted connection only once it is
 * admitted. Nothing costs a DH or a key generation here (a dial without a
 * static key of its own makes one). */
int conn_hs_init(struct conn *c, const struct conn_config *cfg, struct handshake_replay *replay)
{
	struct secure_keypair fresh;
	struct handshake_config hc = {
	    .token = cfg->token,
	    .key = cfg->key,
	    .node = cfg->node,
	    .encrypt = cfg->encrypt,
	    .aes_gcm = crypto_aead_aes256gcm_is_available() && !cfg->no_aes_gcm,
	    .purpose = cfg->purpose,
	    .purposes = cfg->purposes ? cfg->purposes : HANDSHAKE_PURPOSE_BIT(cfg->purpose),
	    .replay = replay,
	    .verify = verify_peer,
	    .verify_arg = c,
	};
	if (!hc.key) {
		secure_keypair_new(&fresh);
		hc.key = &fresh;
	}
	c->hs = xmalloc(sizeof *c->hs);
	c->verify = cfg->verify;
	int rc = handshake_init(c->hs, &hc, c->initiator);
	if (hc.key == &fresh)
		secure_keypair_close(&fresh);
	if (rc) {
		free(c->hs);
		c->hs = NULL;
	}
	return rc;
}

/* A plain session's frame, before its payload is read. */
static int mac_check(void *arg, const uint8_t *hdr, const uint8_t *body, size_t len,
		     const uint8_t *tag)
{
	struct conn *c = arg;
	return secure_mac_check(&c->sess, hdr, FRAME_HEADER_LEN, body, len, tag);
}

static void on_raw_written(uv_write_t *req, int status)
{
	struct raw_write *w = req->data;
	struct conn *c = w->c;
	int close_with = w->close_with;

	if (status == 0)
		c->bytes_out += w->len;
	free(w);
	if (status < 0)
		conn_fail(c, status, "write to %s: %s", c->peer_addr, uv_strerror(status));
	else if (close_with < 0)
		conn_close(c, close_with);
}

/* Bytes of the handshake, ahead of the queue (libuv keeps writes in
 * order); close_with < 0 closes the connection once they are written. */
static void raw_send(struct conn *c, const uint8_t *p, size_t n, int close_with)
{
	struct raw_write *w = xmalloc(sizeof *w + n);

	memcpy(w->data, p, n);
	w->c = c;
	w->len = n;
	w->close_with = close_with;
	w->req.data = w;
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_raw_written);
	if (rc < 0) {
		free(w);
		conn_fail(c, rc, "write to %s: %s", c->peer_addr, uv_strerror(rc));
	}
}

static void frame_make(uint32_t type, const struct buf *body, struct buf *out)
{
	struct frame_header h = {(uint32_t)body->len, type, 0};
	buf_reserve(out, FRAME_HEADER_LEN + body->len);
	frame_header_encode(&h, out->ptr + out->len);
	out->len += FRAME_HEADER_LEN;
	buf_append(out, body->ptr, body->len);
}

static void raw_write(struct conn *c, uint32_t type, const struct buf *body, int close_with)
{
	struct buf f = BUF_INIT;
	frame_make(type, body, &f);
	raw_send(c, f.ptr, f.len, close_with);
	buf_close(&f);
}

/* The session's first frame, the responder's confirmation (an empty body)
 * or refusal (an ErrorMsg), sealed or MACed like any frame after it. */
static void confirm_send(struct conn *c, const struct buf *body, int close_with)
{
	struct buf f = BUF_INIT, w = BUF_INIT;
	uint8_t tag[SECURE_MAC_BYTES];
	int rc;

	frame_make(SYNCBIT__MSG_TYPE__MSG_AUTH, body, &f);
	if (c->encrypted) {
		buf_reserve(&w, f.len + SECURE_RECORD_OVERHEAD);
		rc = secure_seal(&c->sess, f.ptr, f.len, w.ptr);
		w.len = f.len + SECURE_RECORD_OVERHEAD;
	} else {
		rc = secure_mac(&c->sess, f.ptr, FRAME_HEADER_LEN, f.ptr + FRAME_HEADER_LEN,
				body->len, tag);
		buf_append(&w, f.ptr, f.len);
		buf_append(&w, tag, sizeof tag);
	}
	if (rc)
		conn_fail(c, rc, "cannot confirm the handshake: %s", sb_strerror(rc));
	else
		raw_send(c, w.ptr, w.len, close_with);
	buf_close(&f);
	buf_close(&w);
}

/* From here on frames travel in the session: records, or MACed frames. */
static void session_start(struct conn *c)
{
	c->cipher = c->sess.cipher;
	c->encrypted = c->cipher != SECURE_PLAIN;
	c->mac = !c->encrypted;
	if (c->mac) {
		c->fr.tag_len = SECURE_MAC_BYTES;
		c->fr.check = mac_check;
		c->fr.check_arg = c;
	}
}

static void hs_done(struct conn *c)
{
	admit_leave(&c->slot, ADMIT_NONE, NULL);
	snprintf(c->peer_node, sizeof c->peer_node, "%s", c->hs->peer_node);
	memcpy(c->peer_key, c->hs->peer_key, sizeof c->peer_key);
	c->purpose = c->hs->purpose;
	handshake_close(c->hs);
	free(c->hs);
	c->hs = NULL;
	c->state = ST_READY;
	c->fr.body_max = c->body_max;
	c->fr.payload_max = c->payload_max;
	c->fr.table = c->table;
	c->fr.table_len = c->table_len;
	if (c->idle_ms)
		uv_timer_start(&c->timer, conn_on_timer, c->idle_ms, 0);
	else
		uv_timer_stop(&c->timer);
	log_debug("conn %s: ready, peer %s, %s, cipher %s", c->peer_addr, c->peer_node,
		  handshake_purpose_name(c->purpose), secure_cipher_name(c->sess.cipher));
	c->ready_reported = 1;
	if (c->cb.on_ready)
		c->cb.on_ready(c, 0);
	conn_writer_kick(c);
}

/* The handshake failed with a refusal for the peer: send it, read no more,
 * close once it is written. */
static void hs_refuse(struct conn *c, int rc, const struct buf *out, int in_session)
{
	snprintf(c->error, sizeof c->error, "handshake with %.80s: %.150s", c->peer_addr,
		 c->hs->error);
	log_debug("conn %s: %s", c->peer_addr, c->error);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->refused = 1;
	if (in_session)
		confirm_send(c, out, rc);
	else
		raw_write(c, SYNCBIT__MSG_TYPE__MSG_HELLO, out, rc);
}

/* Initiator: the responder's first frame in the session. */
static void hs_confirmed(struct conn *c, uint32_t type, const uint8_t *body, size_t len)
{
	char why[HANDSHAKE_ERROR_MAX];

	if (type != SYNCBIT__MSG_TYPE__MSG_AUTH) {
		conn_fail(c, SB_EPROTO, "%s sent frame type %u instead of confirming the handshake",
			  c->peer_addr, type);
		return;
	}
	if (len == 0) {
		hs_done(c);
		return;
	}
	Syncbit__ErrorMsg *m = syncbit__error_msg__unpack(NULL, len, body);
	int code = m && (m->code == SB_EDENIED || m->code == SB_EAUTH) ? m->code : SB_EPROTO;
	size_t n = 0;
	for (const char *p = m && m->message ? m->message : "?"; *p && n < sizeof why - 1; p++)
		why[n++] = *p >= 0x20 && *p <= 0x7e ? *p : '?';
	why[n] = '\0';
	syncbit__error_msg__free_unpacked(m, NULL);
	conn_fail(c, code, "handshake with %s: refused: %s", c->peer_addr, why);
}

/* Responder: message 3 came. Confirm through the session and go, or send
 * the refusal the same way. */
static int hs_accept(struct conn *c, const uint8_t *body, size_t len)
{
	struct buf out = BUF_INIT;
	int rc = handshake_accept(c->hs, body, len, &c->sess);

	if (rc != 0 && rc != SB_EDENIED)
		return rc;
	session_start(c);
	if (rc == 0) {
		confirm_send(c, &out, 0);
		if (c->state != ST_CLOSING)
			hs_done(c);
	} else {
		Syncbit__ErrorMsg m = SYNCBIT__ERROR_MSG__INIT;
		m.code = rc;
		m.message = c->hs->error;
		buf_reserve(&out, syncbit__error_msg__get_packed_size(&m));
		out.len = syncbit__error_msg__pack(&m, out.ptr);
		hs_refuse(c, rc, &out, 1);
	}
	buf_close(&out);
	return 0;
}

/* One frame of the handshake: Hello, Hello, Hello, then the responder's
 * confirmation in the session; nothing else. */
void conn_hs_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len)
{
	struct handshake *hs = c->hs;
	struct buf out = BUF_INIT;
	int rc = 0;

	if (hs->state == HANDSHAKE_CONFIRM) {
		hs_confirmed(c, type, body, len);
		return;
	}
	if (type != SYNCBIT__MSG_TYPE__MSG_HELLO) {
		conn_fail(c, SB_EPROTO, "%s sent frame type %u during the handshake, expected %u",
			  c->peer_addr, type, SYNCBIT__MSG_TYPE__MSG_HELLO);
		return;
	}
	if (c->initiator) {
		rc = handshake_finish(hs, body, len, &out, &c->sess);
		if (rc == 0) {
			raw_write(c, SYNCBIT__MSG_TYPE__MSG_HELLO, &out, 0);
			session_start(c);
		}
	} else if (hs->state == HANDSHAKE_START) {
		rc = handshake_respond(hs, body, len, &out);
		if (rc == 0)
			raw_write(c, SYNCBIT__MSG_TYPE__MSG_HELLO, &out, 0);
		else if (out.len) {
			hs_refuse(c, rc, &out, 0);
			rc = 0;
		}
	} else {
		rc = hs_accept(c, body, len);
	}
	if (rc)
		conn_fail(c, rc, "handshake with %s: %s", c->peer_addr, hs->error);
	buf_close(&out);
}

void conn_hs_start(struct conn *c)
{
	struct buf out = BUF_INIT;
	int rc = handshake_start(c->hs, &out);
	if (rc)
		conn_fail(c, rc, "handshake with %s: %s", c->peer_addr, c->hs->error);
	else
		raw_write(c, SYNCBIT__MSG_TYPE__MSG_HELLO, &out, 0);
	buf_close(&out);
}
