/* Receiving: socket reads, records (encrypted sessions) and frames. */
#include "common/net/conn.h"
#include "common/net/conn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/log.h"

/* Socket reads land in a READ_CHUNK buffer, unless a payload still misses
 * DIRECT_MIN bytes or more, or a record is that large: then they go
 * straight into it. */
#define READ_CHUNK   (64u << 10)
#define DIRECT_MIN   (64u << 10)
#define KEEP_BUF_MAX (16u << 10) /* larger scratch buffers are released when idle */

static void frame_deliver(struct conn *c, const struct frame *f)
{
	if (c->state == ST_HANDSHAKE) {
		free(f->payload);
		conn_hs_frame(c, f->type, f->body, f->body_len);
	} else if (!c->cb.on_frame) {
		free(f->payload);
	} else {
		int rc =
		    c->cb.on_frame(c, f->type, f->body, f->body_len, f->payload, f->payload_len);
		if (rc < 0)
			conn_fail(c, rc, "frame type %u from %s refused: %s", f->type, c->peer_addr,
				  sb_strerror(rc));
	}
}

/* Consume a plaintext stream; *used says how much. Stops early when the
 * handshake switches the stream to records. */
static void frames_feed(struct conn *c, const uint8_t *p, size_t n, size_t *used)
{
	int encrypted = c->encrypted;
	size_t off = 0;

	while (off < n && c->state != ST_CLOSING && c->encrypted == encrypted && !c->refused) {
		struct frame f;
		size_t k;
		int rc = frame_reader_feed(&c->fr, p + off, n - off, &k, &f);
		off += k;
		const struct frame_header *h = &c->fr.h;
		uint32_t body_max, payload_max;
		if (rc == SB_ETOOBIG) {
			frame_reader_limits(&c->fr, h->type, &body_max, &payload_max);
			conn_fail(c, rc,
				  "%s sent a frame (type %u) with a %u-byte body and a %u-byte "
				  "payload; the limits are %u and %u",
				  c->peer_addr, h->type, h->body_len, h->payload_len, body_max,
				  payload_max);
		} else if (rc == SB_EPROTO && c->state == ST_READY && c->fr.table) {
			conn_fail(c, rc, "%s sent a frame of type %u, which this protocol lacks",
				  c->peer_addr, h->type);
		} else if (rc < 0) {
			conn_fail(c, rc, "frame (type %u) from %s %s", h->type, c->peer_addr,
				  rc == SB_EAUTH ? "failed authentication" : sb_strerror(rc));
		} else if (rc == 1) {
			frame_deliver(c, &f);
		}
	}
	if (used)
		*used = off;
}

static void record_open(struct conn *c, const uint8_t *ct)
{
	size_t ct_len = c->rec_len, plen = ct_len - SECURE_TAG_BYTES;
	uint8_t *dst = NULL;
	size_t room = frame_reader_payload_room(&c->fr, &dst);
	int direct = plen > 0 && room >= plen; /* the record lies within the payload */

	c->rec_len = 0;
	c->rec_hdr_got = 0;
	c->rec.len = 0;
	if (!direct) {
		buf_reserve(&c->plain, plen + 1); /* never NULL, even for an empty record */
		dst = c->plain.ptr;
	}
	int rc = secure_open(&c->sess, c->rec_hdr, ct, ct_len, dst);
	if (rc) {
		conn_fail(c, rc, "record from %s: %s", c->peer_addr,
			  rc == SB_EAUTH ? "failed authentication" : sb_strerror(rc));
		return;
	}
	if (!direct) {
		frames_feed(c, dst, plen, NULL);
		return;
	}
	struct frame f;
	if (frame_reader_payload_filled(&c->fr, plen, &f))
		frame_deliver(c, &f);
}

/* A record's header is in: its length, checked. 0, or the connection
 * failed. */
static int record_header(struct conn *c)
{
	int rc = secure_record_len(c->rec_hdr, &c->rec_len);
	if (rc)
		conn_fail(c, rc, "%s sent a record of %zu bytes", c->peer_addr, c->rec_len);
	return rc;
}

static size_t record_step(struct conn *c, const uint8_t *p, size_t n)
{
	size_t k;

	if (c->rec_len == 0) {
		k = SECURE_RECORD_HEADER - c->rec_hdr_got;
		k = k < n ? k : n;
		memcpy(c->rec_hdr + c->rec_hdr_got, p, k);
		c->rec_hdr_got += k;
		if (c->rec_hdr_got < SECURE_RECORD_HEADER)
			return k;
		if (record_header(c))
			return n;
		if (n - k >= c->rec_len) { /* the whole record is here: no copy */
			size_t len = c->rec_len;
			record_open(c, p + k);
			return k + len;
		}
		buf_reserve(&c->rec, c->rec_len);
		return k;
	}
	k = c->rec_len - c->rec.len;
	k = k < n ? k : n;
	memcpy(c->rec.ptr + c->rec.len, p, k);
	c->rec.len += k;
	if (c->rec.len == c->rec_len)
		record_open(c, c->rec.ptr);
	return k;
}

static void input(struct conn *c, const uint8_t *p, size_t n)
{
	while (n > 0 && c->state != ST_CLOSING && !c->refused) {
		size_t k;
		if (c->encrypted)
			k = record_step(c, p, n);
		else
			frames_feed(c, p, n, &k);
		p += k;
		n -= k;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;
	uint8_t *room;
	size_t n;

	if (c->state == ST_READY && !c->encrypted &&
	    (n = frame_reader_payload_room(&c->fr, &room)) >= DIRECT_MIN) {
		b->base = (char *)room;
		b->len = n;
		return;
	}
	/* Inside a payload the next record is most likely the payload's own:
	 * its header alone first, so that all of its ciphertext can then go
	 * straight into the record buffer (a read into rbuf would take the
	 * first part of it along, to be copied). */
	if (c->state == ST_READY && c->encrypted && c->rec_len == 0 &&
	    frame_reader_payload_room(&c->fr, &room) >= DIRECT_MIN) {
		b->base = (char *)c->rec_hdr + c->rec_hdr_got;
		b->len = SECURE_RECORD_HEADER - c->rec_hdr_got;
		return;
	}
	/* A large record is read straight into its buffer to its very end, so
	 * the next read starts at the next record's header. */
	if (c->state == ST_READY && c->encrypted && c->rec_len >= DIRECT_MIN &&
	    c->rec.len < c->rec_len) {
		b->base = (char *)c->rec.ptr + c->rec.len;
		b->len = c->rec_len - c->rec.len;
		return;
	}
	if (!c->rbuf)
		c->rbuf = xmalloc(READ_CHUNK);
	b->base = (char *)c->rbuf;
	b->len = READ_CHUNK;
}

static int rx_partial(const struct conn *c)
{
	return frame_reader_partial(&c->fr) || c->rec_hdr_got || c->rec_len;
}

static void on_eof(struct conn *c, int err)
{
	enum handshake_state hs = c->state == ST_HANDSHAKE ? c->hs->state : HANDSHAKE_DONE;
	int gone = err == UV_EOF ? -ECONNRESET : err;

	if (hs == HANDSHAKE_CONFIRM)
		conn_fail(c, SB_EAUTH,
			  "%s closed the connection instead of confirming the handshake "
			  "(it refused this side)",
			  c->peer_addr);
	else if (hs == HANDSHAKE_SENT)
		conn_fail(c, gone,
			  "%s closed the connection before answering the handshake (a Syncbit "
			  "older than protocol v%d, or too busy?)",
			  c->peer_addr, HANDSHAKE_VERSION);
	else if (hs == HANDSHAKE_REPLIED)
		conn_fail(c, gone,
			  "%s closed the connection instead of finishing the handshake (it "
			  "refused this side?)",
			  c->peer_addr);
	else if (c->state == ST_HANDSHAKE)
		conn_fail(c, gone, "%s closed the connection during the handshake", c->peer_addr);
	else if (err != UV_EOF)
		conn_fail(c, err, "read from %s: %s", c->peer_addr, uv_strerror(err));
	else if (rx_partial(c))
		conn_fail(c, SB_ETRUNCATED, "%s closed the connection in the middle of a frame",
			  c->peer_addr);
	else
		conn_close(c, 0);
}

static void release_idle_buffers(struct conn *c)
{
	if (c->rec_len == 0 && c->rec.cap > KEEP_BUF_MAX)
		buf_close(&c->rec);
	if (c->plain.cap > KEEP_BUF_MAX)
		buf_close(&c->plain);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;

	if (c->state == ST_CLOSING || n == 0)
		return;
	if (n < 0) {
		on_eof(c, (int)n);
		return;
	}
	c->bytes_in += (uint64_t)n;
	c->last_in = uv_now(c->loop);
	admit_heard(&c->slot);
	if (b->base == (char *)c->rbuf) {
		input(c, (const uint8_t *)b->base, (size_t)n);
		/* input() consumed the bytes (partial frames and records are
		 * copied aside), so the buffer holds nothing still needed. A
		 * read that did not fill it found the socket drained: the
		 * buffer goes, and thousands of mostly quiet connections (a
		 * scheduler's agents) hold no READ_CHUNK each; a connection
		 * moving blocks fills its reads and keeps it. */
		if ((size_t)n < READ_CHUNK && c->state != ST_CLOSING) {
			free(c->rbuf);
			c->rbuf = NULL;
		}
	} else if (c->encrypted && c->rec_len == 0) { /* a record's header, alone */
		c->rec_hdr_got += (size_t)n;
		if (c->rec_hdr_got == SECURE_RECORD_HEADER && record_header(c) == 0)
			buf_reserve(&c->rec, c->rec_len);
	} else if (c->encrypted) { /* straight into the record */
		c->rec.len += (size_t)n;
		if (c->rec.len == c->rec_len)
			record_open(c, c->rec.ptr);
	} else { /* straight into the payload */
		struct frame f;
		if (frame_reader_payload_filled(&c->fr, (size_t)n, &f))
			frame_deliver(c, &f);
	}
	if (c->state != ST_CLOSING)
		release_idle_buffers(c);
}

int conn_read_start(struct conn *c)
{
	return uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int conn_read_pause(struct conn *c, int pause)
{
	if (c->state != ST_READY)
		return -EINVAL;
	if (pause)
		return uv_read_stop((uv_stream_t *)&c->tcp);
	return conn_read_start(c);
}
