#include "common/frame.h"

#include <stdlib.h>

#include "common/err.h"

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void frame_header_encode(const struct frame_header *h, uint8_t *out)
{
	put_be32(out, h->body_len);
	put_be32(out + 4, h->type);
	put_be32(out + 8, h->payload_len);
}

int frame_header_decode(const uint8_t *in, uint32_t body_max, uint32_t payload_max,
			struct frame_header *out)
{
	out->body_len = get_be32(in);
	out->type = get_be32(in + 4);
	out->payload_len = get_be32(in + 8);
	if (out->body_len > body_max || out->payload_len > payload_max)
		return SB_ETOOBIG;
	return 0;
}

int frame_dispatch(const struct frame_handler *t, size_t n, void *ctx, uint32_t type,
		   const uint8_t *body, size_t len, uint8_t *payload, size_t plen)
{
	for (size_t i = 0; i < n; i++) {
		if (t[i].type != type)
			continue;
		if (len > t[i].body_max) {
			free(payload);
			return SB_ETOOBIG;
		}
		return t[i].fn(ctx, body, len, payload, plen);
	}
	free(payload);
	return SB_EPROTO;
}
