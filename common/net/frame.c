#include "common/net/frame.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/net/pbuf_budget.h"

/* A body buffer larger than this is released once its frame is done. */
#define READER_KEEP_MAX (64u << 10)

enum reader_stage { READ_HEADER, READ_BODY, READ_TAG, READ_PAYLOAD, READ_DONE, READ_FAILED };

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

void frame_reader_init(struct frame_reader *r, uint32_t body_max, uint32_t payload_max)
{
	memset(r, 0, sizeof *r);
	r->body_max = body_max;
	r->payload_max = payload_max;
	r->stage = READ_HEADER;
}

void frame_reader_close(struct frame_reader *r)
{
	buf_close(&r->body);
	free(r->payload);
	r->payload = NULL;
}

static int reader_done(struct frame_reader *r, const uint8_t *body, struct frame *f)
{
	f->type = r->h.type;
	f->hdr = r->hdr;
	f->tag = r->tag_len ? r->tag : NULL;
	f->body = body;
	f->body_len = r->h.body_len;
	f->payload = r->payload;
	f->payload_len = r->h.payload_len;
	r->payload = NULL;
	r->payload_got = 0;
	r->stage = READ_DONE;
	return 1;
}

/* The body is complete (at body): read the tag, deliver, or go on to the
 * payload. */
static int reader_body_done(struct frame_reader *r, const uint8_t *body, struct frame *f)
{
	if (r->tag_len && r->stage != READ_TAG) {
		r->tag_got = 0;
		r->stage = READ_TAG;
		return 0;
	}
	if (r->h.payload_len == 0)
		return reader_done(r, body, f);
	r->payload = xmalloc(r->h.payload_len);
	r->payload_got = 0;
	r->stage = READ_PAYLOAD;
	return 0;
}

static const struct frame_handler *row_of(const struct frame_handler *t, size_t n, uint32_t type)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].type == type)
			return &t[i];
	return NULL;
}

int frame_reader_limits(const struct frame_reader *r, uint32_t type, uint32_t *body_max,
			uint32_t *payload_max)
{
	*body_max = r->body_max;
	*payload_max = r->payload_max;
	if (!r->table)
		return 0;
	const struct frame_handler *row = row_of(r->table, r->table_len, type);
	if (!row)
		return SB_EPROTO;
	if (row->body_max < *body_max)
		*body_max = row->body_max;
	if (row->payload_max < *payload_max)
		*payload_max = row->payload_max;
	return 0;
}

/* The header is in: decode it and check it against the limits of its
 * type, before anything of the frame is allocated. */
static int reader_header(struct frame_reader *r)
{
	uint32_t body_max, payload_max;
	struct frame_header *h = &r->h;
	frame_header_decode(r->hdr, UINT32_MAX, UINT32_MAX, h);
	int rc = frame_reader_limits(r, h->type, &body_max, &payload_max);
	if (rc < 0)
		return rc;
	return h->body_len > body_max || h->payload_len > payload_max ? SB_ETOOBIG : 0;
}

/* One stage of the frame: takes bytes from p[0..n), returns how many. */
static size_t reader_step(struct frame_reader *r, const uint8_t *p, size_t n, int *rc,
			  struct frame *f)
{
	size_t k;

	switch (r->stage) {
	case READ_HEADER:
		k = FRAME_HEADER_LEN - r->hdr_got;
		k = k < n ? k : n;
		memcpy(r->hdr + r->hdr_got, p, k);
		r->hdr_got += k;
		if (r->hdr_got < FRAME_HEADER_LEN)
			return k;
		r->hdr_got = 0;
		if ((*rc = reader_header(r)) < 0) {
			r->stage = READ_FAILED;
			r->error = *rc;
		} else if (r->h.body_len) {
			r->stage = READ_BODY;
		} else {
			*rc = reader_body_done(r, r->body.ptr, f);
		}
		return k;
	case READ_BODY:
		k = r->h.body_len - r->body.len;
		if (r->body.len == 0 && n >= k && !r->tag_len) { /* the whole body is here */
			*rc = reader_body_done(r, p, f);
			if (*rc == 0)
				buf_append(&r->body, p, k); /* kept until the payload is read */
			return k;
		}
		k = k < n ? k : n;
		if (r->body.len == 0)
			buf_reserve(&r->body, r->h.body_len);
		buf_append(&r->body, p, k);
		if (r->body.len == r->h.body_len)
			*rc = reader_body_done(r, r->body.ptr, f);
		return k;
	case READ_TAG:
		k = r->tag_len - r->tag_got;
		k = k < n ? k : n;
		memcpy(r->tag + r->tag_got, p, k);
		r->tag_got += k;
		if (r->tag_got < r->tag_len)
			return k;
		*rc = r->check(r->check_arg, r->hdr, r->body.ptr, r->h.body_len, r->tag);
		if (*rc < 0) {
			r->stage = READ_FAILED;
			r->error = *rc;
		} else {
			*rc = reader_body_done(r, r->body.ptr, f);
		}
		return k;
	default: /* READ_PAYLOAD */
		k = r->h.payload_len - r->payload_got;
		k = k < n ? k : n;
		memcpy(r->payload + r->payload_got, p, k);
		r->payload_got += k;
		if (r->payload_got == r->h.payload_len)
			*rc = reader_done(r, r->body.ptr, f);
		return k;
	}
}

int frame_reader_feed(struct frame_reader *r, const uint8_t *p, size_t n, size_t *used,
		      struct frame *f)
{
	size_t off = 0;
	int rc = 0;

	*used = 0;
	if (r->stage == READ_FAILED)
		return r->error;
	if (r->stage == READ_DONE) { /* the last frame's body is no longer needed */
		r->body.len = 0;
		if (r->body.cap > READER_KEEP_MAX)
			buf_close(&r->body);
		r->stage = READ_HEADER;
	}
	while (off < n && rc == 0)
		off += reader_step(r, p + off, n - off, &rc, f);
	*used = off;
	return rc;
}

size_t frame_reader_payload_room(const struct frame_reader *r, uint8_t **p)
{
	if (r->stage != READ_PAYLOAD)
		return 0;
	*p = r->payload + r->payload_got;
	return r->h.payload_len - r->payload_got;
}

int frame_reader_payload_filled(struct frame_reader *r, size_t n, struct frame *f)
{
	if (r->stage != READ_PAYLOAD)
		return 0;
	r->payload_got += n;
	if (r->payload_got < r->h.payload_len)
		return 0;
	return reader_done(r, r->body.ptr, f);
}

int frame_reader_partial(const struct frame_reader *r)
{
	return r->hdr_got || r->stage == READ_BODY || r->stage == READ_TAG ||
	       r->stage == READ_PAYLOAD;
}

int frame_dispatch(const struct frame_handler *t, size_t n, void *ctx, uint32_t type,
		   const uint8_t *body, size_t len, uint8_t *payload, size_t plen)
{
	const struct frame_handler *row = row_of(t, n, type);
	if (!row || len > row->body_max || plen > row->payload_max) {
		free(payload);
		return row ? SB_ETOOBIG : SB_EPROTO;
	}
	struct pbuf_budget b;
	ProtobufCAllocator a;
	ProtobufCMessage *m = NULL;
	int rc = pbuf_budget_unpack(type, body, len, &b, &a, &m);
	if (rc < 0) {
		free(payload);
		return rc;
	}
	rc = row->fn(ctx, m, body, len, payload, plen);
	if (m)
		protobuf_c_message_free_unpacked(m, &a);
	return rc;
}
