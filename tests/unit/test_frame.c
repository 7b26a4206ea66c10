#include "tests/unit/testutil.h"

#include "common/buf.h"
#include "common/err.h"
#include "common/net/frame.h"

static void test_header_roundtrip(void **state)
{
	const struct frame_header cases[] = {
	    {0, 0, 0},
	    {1, 13, 4u << 20},
	    {0x01020304, 0x05060708, 0x090a0b0c},
	    {UINT32_MAX, UINT32_MAX, UINT32_MAX},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint8_t wire[FRAME_HEADER_LEN];
		struct frame_header h;

		frame_header_encode(&cases[i], wire);
		assert_int_equal(frame_header_decode(wire, UINT32_MAX, UINT32_MAX, &h), 0);
		assert_int_equal(h.body_len, cases[i].body_len);
		assert_int_equal(h.type, cases[i].type);
		assert_int_equal(h.payload_len, cases[i].payload_len);
	}
}

static void test_header_big_endian(void **state)
{
	const struct frame_header h = {0x01020304, 0x0a0b0c0d, 0x11121314};
	const uint8_t want[FRAME_HEADER_LEN] = {1, 2, 3, 4, 10, 11, 12, 13, 17, 18, 19, 20};
	uint8_t wire[FRAME_HEADER_LEN];

	frame_header_encode(&h, wire);
	assert_memory_equal(wire, want, sizeof want);
}

static void test_header_limits(void **state)
{
	uint8_t wire[FRAME_HEADER_LEN];
	struct frame_header h = {1024, 1, 4096}, out;

	frame_header_encode(&h, wire);
	assert_int_equal(frame_header_decode(wire, 1024, 4096, &out), 0);
	assert_int_equal(frame_header_decode(wire, 1023, 4096, &out), SB_ETOOBIG);
	/* the refused header is still reported, for the error message */
	assert_int_equal(out.body_len, 1024);
	assert_int_equal(frame_header_decode(wire, 1024, 4095, &out), SB_ETOOBIG);
	assert_int_equal(out.payload_len, 4096);
	assert_int_equal(frame_header_decode(wire, 0, 0, &out), SB_ETOOBIG);
}

struct seen {
	int calls;
	uint32_t which;
	const ProtobufCMessage *msg;
	size_t len, plen;
};

static int handle_a(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct seen *s = ctx;
	s->calls++;
	s->which = 'a';
	s->msg = msg;
	s->len = len;
	s->plen = plen;
	free(payload);
	return 0;
}

static int handle_b(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct seen *s = ctx;
	s->calls++;
	s->which = 'b';
	free(payload);
	return SB_ECORRUPT;
}

static const struct frame_handler table[] = {
    {10, 16, 100, handle_a},
    {11, 0, 0, handle_b},
};

/* The same handlers on types that carry no protobuf message (the
 * dispatcher hands them msg NULL): what is checked here is the table. */
static const struct frame_handler untyped[] = {
    {1000, 16, 100, handle_a},
    {1001, 0, 0, handle_b},
};

static void test_dispatch(void **state)
{
	struct seen s = {0};
	const uint8_t body[32] = {0};

	assert_int_equal(frame_dispatch(untyped, 2, &s, 1000, body, 16, malloc(100), 100), 0);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.which, 'a');
	assert_int_equal(s.len, 16);
	assert_int_equal(s.plen, 100);
	assert_null(s.msg);
	assert_int_equal(frame_dispatch(untyped, 2, &s, 1000, body, 0, NULL, 0), 0);
	assert_int_equal(s.calls, 2);
	/* the handler's own error comes back */
	assert_int_equal(frame_dispatch(untyped, 2, &s, 1001, body, 0, NULL, 0), SB_ECORRUPT);
	assert_int_equal(s.which, 'b');
}

static void test_dispatch_refused(void **state)
{
	struct seen s = {0};
	const uint8_t body[32] = {0};

	/* the payload is freed on refusal (the sanitizer build checks the leak) */
	assert_int_equal(frame_dispatch(untyped, 2, &s, 1002, body, 0, malloc(10), 10), SB_EPROTO);
	assert_int_equal(frame_dispatch(untyped, 2, &s, 0, body, 0, NULL, 0), SB_EPROTO);
	assert_int_equal(frame_dispatch(untyped, 2, &s, 1000, body, 17, malloc(10), 10),
			 SB_ETOOBIG);
	assert_int_equal(frame_dispatch(untyped, 2, &s, 1001, body, 1, NULL, 0), SB_ETOOBIG);
	/* a payload over the row's limit, or on a type that carries none */
	assert_int_equal(frame_dispatch(untyped, 2, &s, 1000, body, 16, malloc(101), 101),
			 SB_ETOOBIG);
	assert_int_equal(frame_dispatch(untyped, 2, &s, 1001, body, 0, malloc(1), 1), SB_ETOOBIG);
	assert_int_equal(frame_dispatch(untyped, 0, &s, 1000, body, 1, malloc(1), 1), SB_EPROTO);
	assert_int_equal(s.calls, 0);
}

/* ---- reader ---- */

struct stream {
	struct buf b;
	int frames;
};

static void stream_add(struct stream *s, uint32_t type, size_t body_len, size_t plen)
{
	struct frame_header h = {(uint32_t)body_len, type, (uint32_t)plen};
	uint8_t hdr[FRAME_HEADER_LEN];

	frame_header_encode(&h, hdr);
	buf_append(&s->b, hdr, sizeof hdr);
	for (size_t i = 0; i < body_len + plen; i++) {
		uint8_t v = (uint8_t)(type + i);
		buf_append(&s->b, &v, 1);
	}
	s->frames++;
}

static void check_frame(const struct frame *f)
{
	for (size_t i = 0; i < f->body_len; i++)
		if (f->body[i] != (uint8_t)(f->type + i))
			fail_msg("frame %u: body byte %zu", f->type, i);
	for (size_t i = 0; i < f->payload_len; i++)
		if (f->payload[i] != (uint8_t)(f->type + f->body_len + i))
			fail_msg("frame %u: payload byte %zu", f->type, i);
	assert_true((f->payload == NULL) == (f->payload_len == 0));
}

/* Feed the stream in chunks of `chunk` bytes (0: all at once); with
 * direct, payload bytes go straight into the reader's room. */
static int read_stream(const struct buf *b, size_t chunk, int direct, uint32_t *last_type)
{
	struct frame_reader r;
	size_t off = 0;
	int frames = 0;

	frame_reader_init(&r, 1000, 100000);
	while (off < b->len) {
		size_t n = b->len - off, used;
		struct frame f;
		uint8_t *room;
		size_t want = frame_reader_payload_room(&r, &room);
		if (chunk && n > chunk)
			n = chunk;
		if (direct && want) {
			n = n < want ? n : want;
			memcpy(room, b->ptr + off, n);
			off += n;
			if (frame_reader_payload_filled(&r, n, &f)) {
				check_frame(&f);
				*last_type = f.type;
				free(f.payload);
				frames++;
			}
			continue;
		}
		int rc = frame_reader_feed(&r, b->ptr + off, n, &used, &f);
		assert_true(used <= n);
		off += used;
		if (rc < 0) {
			frame_reader_close(&r);
			return rc;
		}
		if (rc == 1) {
			check_frame(&f);
			*last_type = f.type;
			free(f.payload);
			frames++;
		} else {
			assert_int_equal(used, n);
		}
	}
	assert_false(frame_reader_partial(&r));
	frame_reader_close(&r);
	return frames;
}

static void test_reader(void **state)
{
	struct stream s = {BUF_INIT, 0};
	const size_t chunks[] = {0, 1, 2, 5, 11, 12, 13, 100, 4096};
	uint32_t last = 0;

	stream_add(&s, 1, 0, 0);
	stream_add(&s, 2, 10, 0);
	stream_add(&s, 3, 0, 10);
	stream_add(&s, 4, 1000, 100000);
	for (uint32_t t = 5; t < 60; t++)
		stream_add(&s, t, t * 7 % 300, t % 3 ? 0 : t * 11);
	for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
		for (int direct = 0; direct < 2; direct++) {
			assert_int_equal(read_stream(&s.b, chunks[i], direct, &last), s.frames);
			assert_int_equal(last, 59);
		}
	}
	buf_close(&s.b);
}

/* Frames with a tag after the body: the tag is the type repeated; the
 * check refuses another and counts what it saw. */
static int tag_checks;

static int tag_check(void *arg, const uint8_t *hdr, const uint8_t *body, size_t len,
		     const uint8_t *tag)
{
	struct frame_header h;
	tag_checks++;
	frame_header_decode(hdr, UINT32_MAX, UINT32_MAX, &h);
	assert_int_equal(h.body_len, len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(body[i], (uint8_t)(h.type + i));
	for (size_t i = 0; i < FRAME_TAG_MAX; i++)
		if (tag[i] != (uint8_t)h.type)
			return SB_EAUTH;
	return 0;
}

static void tagged_add(struct buf *b, uint32_t type, size_t body_len, size_t plen, int bad)
{
	struct frame_header h = {(uint32_t)body_len, type, (uint32_t)plen};
	uint8_t hdr[FRAME_HEADER_LEN], tag[FRAME_TAG_MAX];
	frame_header_encode(&h, hdr);
	buf_append(b, hdr, sizeof hdr);
	for (size_t i = 0; i < body_len; i++) {
		uint8_t v = (uint8_t)(type + i);
		buf_append(b, &v, 1);
	}
	memset(tag, (int)type, sizeof tag);
	tag[3] ^= (uint8_t)bad;
	buf_append(b, tag, sizeof tag);
	for (size_t i = 0; i < plen; i++) {
		uint8_t v = (uint8_t)(type + body_len + i);
		buf_append(b, &v, 1);
	}
}

static void test_reader_tags(void **state)
{
	const size_t chunks[] = {1, 7, 13, 29, 4096};
	for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
		for (int bad = 0; bad < 2; bad++) {
			struct buf b = BUF_INIT;
			struct frame_reader r;
			int frames = 0, rc = 0;
			tagged_add(&b, 1, 0, 0, 0);
			tagged_add(&b, 2, 10, 0, 0);
			tagged_add(&b, 3, 0, 300, 0);
			tagged_add(&b, 4, 20, 50000, bad);
			tagged_add(&b, 5, 5, 5, 0);
			frame_reader_init(&r, 1000, 100000);
			r.tag_len = FRAME_TAG_MAX;
			r.check = tag_check;
			tag_checks = 0;
			for (size_t off = 0; off < b.len && rc >= 0;) {
				size_t n = b.len - off < chunks[c] ? b.len - off : chunks[c], used;
				struct frame f;
				rc = frame_reader_feed(&r, b.ptr + off, n, &used, &f);
				off += used;
				if (rc == 1) {
					check_frame(&f);
					assert_non_null(f.tag);
					free(f.payload);
					frames++;
				}
			}
			if (bad) {
				/* refused at its tag, before its payload was allocated */
				assert_int_equal(rc, SB_EAUTH);
				assert_int_equal(frames, 3);
				uint8_t *room;
				assert_int_equal(frame_reader_payload_room(&r, &room), 0);
				size_t used;
				struct frame f;
				assert_int_equal(frame_reader_feed(&r, b.ptr, 1, &used, &f),
						 SB_EAUTH);
			} else {
				assert_int_equal(frames, 5);
				assert_int_equal(tag_checks, 5);
				assert_false(frame_reader_partial(&r));
			}
			frame_reader_close(&r);
			buf_close(&b);
		}
	}
}

static void test_reader_limits(void **state)
{
	uint32_t last = 0;

	for (int what = 0; what < 2; what++) {
		struct stream s = {BUF_INIT, 0};
		stream_add(&s, 1, 10, 10);
		if (what)
			stream_add(&s, 2, 1001, 0);
		else
			stream_add(&s, 2, 0, 100001);
		stream_add(&s, 3, 0, 0);
		assert_int_equal(read_stream(&s.b, 0, 0, &last), SB_ETOOBIG);
		assert_int_equal(last, 1);
		buf_close(&s.b);
	}

	/* refused from the header alone, and for good */
	struct frame_reader r;
	struct frame f;
	size_t used;
	uint8_t hdr[FRAME_HEADER_LEN];
	struct frame_header h = {UINT32_MAX, 9, UINT32_MAX};
	frame_header_encode(&h, hdr);
	frame_reader_init(&r, 1000, 1000);
	assert_int_equal(frame_reader_feed(&r, hdr, sizeof hdr, &used, &f), SB_ETOOBIG);
	assert_int_equal(r.h.type, 9);
	assert_int_equal(r.h.body_len, UINT32_MAX);
	assert_int_equal(frame_reader_feed(&r, hdr, 1, &used, &f), SB_ETOOBIG);

	/* a truncated stream leaves a partial frame, freed by close */
	frame_reader_init(&r, 1000, 1000);
	h.body_len = 4;
	h.payload_len = 1000;
	frame_header_encode(&h, hdr);
	assert_int_equal(frame_reader_feed(&r, hdr, 5, &used, &f), 0);
	assert_true(frame_reader_partial(&r));
	assert_int_equal(frame_reader_feed(&r, hdr + 5, 7, &used, &f), 0);
	assert_int_equal(frame_reader_feed(&r, hdr, 4, &used, &f), 0);
	assert_true(frame_reader_partial(&r));
	assert_int_equal(frame_reader_feed(&r, hdr, 10, &used, &f), 0);
	frame_reader_close(&r);
}

/* Nothing of a refused frame is allocated: only its header was stored. */
static void assert_nothing_held(const struct frame_reader *r)
{
	assert_null(r->body.ptr);
	assert_int_equal(r->body.cap, 0);
	assert_null(r->payload);
	assert_false(frame_reader_partial(r));
}

static int feed_header(struct frame_reader *r, uint32_t type, uint32_t body_len, uint32_t plen)
{
	struct frame_header h = {body_len, type, plen};
	uint8_t hdr[FRAME_HEADER_LEN];
	struct frame f;
	size_t used;
	frame_header_encode(&h, hdr);
	int rc = frame_reader_feed(r, hdr, sizeof hdr, &used, &f);
	assert_int_equal(used, sizeof hdr);
	return rc;
}

/* With the dispatch table, each type's row limits its frames at the
 * header: a body or payload over them, or a type not in the table, fails
 * the reader before anything is allocated, even where the reader's own
 * limits (here as large as they go) would let it through. */
static void test_reader_table_limits(void **state)
{
	struct frame_reader r;
	uint32_t bmax, pmax;
	struct {
		uint32_t type, body_len, plen;
		int rc;
	} refused[] = {
	    {10, 17, 0, SB_ETOOBIG},	     /* body over the row */
	    {10, 16, 101, SB_ETOOBIG},	     /* payload over the row */
	    {10, 0, 256u << 20, SB_ETOOBIG}, /* a 256 MiB payload */
	    {11, 0, 1, SB_ETOOBIG},	     /* a payload on a type that has none */
	    {12, 0, 0, SB_EPROTO},	     /* not in the table */
	    {12, UINT32_MAX, 0, SB_EPROTO},  /* ...whatever its lengths */
	    {0, 0, UINT32_MAX, SB_EPROTO},
	};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		frame_reader_init(&r, UINT32_MAX, UINT32_MAX);
		r.table = table;
		r.table_len = 2;
		assert_int_equal(
		    feed_header(&r, refused[i].type, refused[i].body_len, refused[i].plen),
		    refused[i].rc);
		assert_int_equal(r.h.type, refused[i].type);
		assert_nothing_held(&r);
		/* and for good */
		uint8_t more[FRAME_HEADER_LEN] = {0};
		struct frame f;
		size_t used;
		assert_int_equal(frame_reader_feed(&r, more, sizeof more, &used, &f),
				 refused[i].rc);
		assert_int_equal(used, 0);
		frame_reader_close(&r);
	}

	/* the row tightens the reader's limits, never loosens them */
	frame_reader_init(&r, 8, 50);
	r.table = table;
	r.table_len = 2;
	assert_int_equal(frame_reader_limits(&r, 10, &bmax, &pmax), 0);
	assert_int_equal(bmax, 8);
	assert_int_equal(pmax, 50);
	assert_int_equal(frame_reader_limits(&r, 11, &bmax, &pmax), 0);
	assert_int_equal(pmax, 0);
	assert_int_equal(frame_reader_limits(&r, 12, &bmax, &pmax), SB_EPROTO);
	assert_int_equal(feed_header(&r, 10, 9, 0), SB_ETOOBIG);
	assert_nothing_held(&r);
	frame_reader_close(&r);

	/* frames within their row pass */
	struct stream s = {BUF_INIT, 0};
	stream_add(&s, 10, 16, 100);
	stream_add(&s, 11, 0, 0);
	stream_add(&s, 10, 3, 0);
	frame_reader_init(&r, UINT32_MAX, UINT32_MAX);
	r.table = table;
	r.table_len = 2;
	size_t off = 0;
	int frames = 0;
	while (off < s.b.len) {
		struct frame f;
		size_t used;
		int rc = frame_reader_feed(&r, s.b.ptr + off, s.b.len - off, &used, &f);
		assert_true(rc >= 0);
		off += used;
		if (rc == 1) {
			check_frame(&f);
			free(f.payload);
			frames++;
		}
	}
	assert_int_equal(frames, 3);
	frame_reader_close(&r);
	buf_close(&s.b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_roundtrip),	cmocka_unit_test(test_header_big_endian),
	    cmocka_unit_test(test_header_limits),	cmocka_unit_test(test_dispatch),
	    cmocka_unit_test(test_dispatch_refused),	cmocka_unit_test(test_reader),
	    cmocka_unit_test(test_reader_limits),	cmocka_unit_test(test_reader_tags),
	    cmocka_unit_test(test_reader_table_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
