/* Frames: the unit of every Syncbit protocol. A fixed header {u32 body
 * length, u32 type, u32 payload length}, all big-endian, then the packed
 * protobuf body of that type (proto/wire.proto), then payload-length raw
 * bytes (block data). Lengths are checked against the caller's limits before
 * anything is allocated. Pure functions; thread-safe. */
#ifndef SYNCBIT_NET_FRAME_H
#define SYNCBIT_NET_FRAME_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define FRAME_HEADER_LEN 12
#define FRAME_TAG_MAX	 16 /* a MAC between body and payload (common/net/secure.h) */

struct frame_header {
	uint32_t body_len;
	uint32_t type; /* a Syncbit__MsgType value */
	uint32_t payload_len;
};

/* Write h into out[FRAME_HEADER_LEN]. */
void frame_header_encode(const struct frame_header *h, uint8_t *out);

/* Read a header from in[FRAME_HEADER_LEN]. 0, or SB_ETOOBIG when body_len
 * exceeds body_max or payload_len exceeds payload_max (*out is filled either
 * way, so the caller can say what was refused). */
int frame_header_decode(const uint8_t *in, uint32_t body_max, uint32_t payload_max,
			struct frame_header *out);

struct frame_handler;

/* Incremental reader of a frame stream: bytes go in as they arrive, whole
 * frames come out. Each header's lengths are checked against the limits
 * before its body or payload is allocated: the reader's body_max and
 * payload_max and, with a table set, the row of the frame's type (a type
 * not in the table is refused with SB_EPROTO). With tag_len set, every frame
 * has that many bytes of tag after its body, and check (which must be set
 * then) sees header, body and tag before the payload is allocated: a
 * negative return fails the reader with it. */
struct frame_reader {
	uint32_t body_max, payload_max;	   /* may change between frames */
	const struct frame_handler *table; /* NULL, or per-type limits (table_len rows) */
	size_t table_len;
	size_t tag_len; /* 0 or up to FRAME_TAG_MAX; may change between frames */
	int (*check)(void *arg, const uint8_t *hdr, const uint8_t *body, size_t len,
		     const uint8_t *tag);
	void *check_arg;
	int stage, error;
	uint8_t hdr[FRAME_HEADER_LEN];
	size_t hdr_got;
	uint8_t tag[FRAME_TAG_MAX];
	size_t tag_got;
	struct frame_header h; /* the frame being read (or refused) */
	struct buf body;
	uint8_t *payload;
	size_t payload_got;
};

/* A frame the reader completed. body stays valid until the next call on
 * the reader; payload (NULL when payload_len is 0) is malloc'd and belongs
 * to the caller. */
struct frame {
	uint32_t type;
	const uint8_t *hdr; /* the header as received */
	const uint8_t *tag; /* the reader's tag_len bytes of tag, or NULL */
	const uint8_t *body;
	size_t body_len;
	uint8_t *payload;
	size_t payload_len;
};

void frame_reader_init(struct frame_reader *r, uint32_t body_max, uint32_t payload_max);
/* Free what the reader holds (a partial body or payload). */
void frame_reader_close(struct frame_reader *r);

/* The limits a frame of type meets in r: the reader's, tightened by the
 * type's row when r has a table. 0, or SB_EPROTO for a type not in it. */
int frame_reader_limits(const struct frame_reader *r, uint32_t type, uint32_t *body_max,
			uint32_t *payload_max);

/* Read from p[0..n) up to the end of at most one frame; *used says how
 * many bytes were taken. 1 when a frame completed (in *f), 0 when all n
 * bytes were taken without completing one, SB_ETOOBIG when a header is over
 * the limits, SB_EPROTO when its type is not in the reader's table, or
 * check's error (r->h holds the header; the reader is then unusable; of the
 * frame only the header was stored). */
int frame_reader_feed(struct frame_reader *r, const uint8_t *p, size_t n, size_t *used,
		      struct frame *f);

/* For reading straight into the payload: where its missing bytes go and how
 * many there are (0 when the reader is not inside a payload). */
size_t frame_reader_payload_room(const struct frame_reader *r, uint8_t **p);
/* n bytes were written into that room: 1 when that completed the frame (in
 * *f), else 0. */
int frame_reader_payload_filled(struct frame_reader *r, size_t n, struct frame *f);
/* 1 when a frame has begun and not ended. */
int frame_reader_partial(const struct frame_reader *r);

/* One row of a protocol's dispatch table: a type, the largest body and
 * payload it may carry (payload_max 0: none), and its handler. A reader
 * given the table (frame_reader.table, conn_config.table) refuses a frame
 * over its row's limits at the header. fn gets the body unpacked once, as
 * its type's message (msg; NULL for a type without one), and the packed
 * body; msg is freed after fn returns, so fn keeps copies of what it needs.
 * fn owns payload (malloc'd, NULL when payload_len is 0) and returns 0 or a
 * negative error that closes the connection. */
/* payload_max of a message that carries no payload. */
#define FRAME_NO_PAYLOAD 0

struct frame_handler {
	uint32_t type;
	uint32_t body_max;
	uint32_t payload_max;
	int (*fn)(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		  uint8_t *payload, size_t payload_len);
};

/* Find type in table t[0..n), unpack the body as its message under the
 * type's allocation budget (common/net/pbuf_budget.h) and call the row's
 * handler with it. SB_EPROTO for a type not in the table or a body that is
 * not a valid message of its type, SB_ETOOBIG for a body or payload over
 * the row's limits or a body whose unpacking would allocate more than its
 * budget; on those errors the handler is not called and payload is freed
 * here, otherwise it belongs to the handler.
 * Returns what the handler returned. */
int frame_dispatch(const struct frame_handler *t, size_t n, void *ctx, uint32_t type,
		   const uint8_t *body, size_t len, uint8_t *payload, size_t plen);

#endif
