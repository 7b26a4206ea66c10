/* Frames: the unit of every Syncbit protocol. A fixed header {u32 body
 * length, u32 type, u32 payload length}, all big-endian, then the packed
 * protobuf body of that type (proto/wire.proto), then payload-length raw
 * bytes (block data). Lengths are checked against the caller's limits before
 * anything is allocated. Pure functions; thread-safe. */
#ifndef SYNCBIT_FRAME_H
#define SYNCBIT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_LEN 12

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

/* One row of a protocol's dispatch table. fn owns payload (malloc'd, NULL
 * when payload_len is 0) and returns 0 or a negative error that closes the
 * connection. */
struct frame_handler {
	uint32_t type;
	uint32_t body_max;
	int (*fn)(void *ctx, const uint8_t *body, size_t len, uint8_t *payload, size_t payload_len);
};

/* Find type in table t[0..n) and call its handler. SB_EPROTO for a type not
 * in the table, SB_ETOOBIG for a body over the row's body_max; on those
 * errors payload is freed here, otherwise it belongs to the handler.
 * Returns what the handler returned. */
int frame_dispatch(const struct frame_handler *t, size_t n, void *ctx, uint32_t type,
		   const uint8_t *body, size_t len, uint8_t *payload, size_t plen);

#endif
