#include "tests/unit/testutil.h"

#include "common/err.h"
#include "common/frame.h"

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
	size_t len, plen;
};

static int handle_a(void *ctx, const uint8_t *body, size_t len, uint8_t *payload, size_t plen)
{
	struct seen *s = ctx;
	s->calls++;
	s->which = 'a';
	s->len = len;
	s->plen = plen;
	free(payload);
	return 0;
}

static int handle_b(void *ctx, const uint8_t *body, size_t len, uint8_t *payload, size_t plen)
{
	struct seen *s = ctx;
	s->calls++;
	s->which = 'b';
	free(payload);
	return SB_ECORRUPT;
}

static const struct frame_handler table[] = {
    {10, 16, handle_a},
    {11, 0, handle_b},
};

static void test_dispatch(void **state)
{
	struct seen s = {0};
	const uint8_t body[32] = {0};

	assert_int_equal(frame_dispatch(table, 2, &s, 10, body, 16, malloc(100), 100), 0);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.which, 'a');
	assert_int_equal(s.len, 16);
	assert_int_equal(s.plen, 100);
	assert_int_equal(frame_dispatch(table, 2, &s, 10, body, 0, NULL, 0), 0);
	assert_int_equal(s.calls, 2);
	/* the handler's own error comes back */
	assert_int_equal(frame_dispatch(table, 2, &s, 11, body, 0, NULL, 0), SB_ECORRUPT);
	assert_int_equal(s.which, 'b');
}

static void test_dispatch_refused(void **state)
{
	struct seen s = {0};
	const uint8_t body[32] = {0};

	/* the payload is freed on refusal (the sanitizer build checks the leak) */
	assert_int_equal(frame_dispatch(table, 2, &s, 12, body, 0, malloc(10), 10), SB_EPROTO);
	assert_int_equal(frame_dispatch(table, 2, &s, 0, body, 0, NULL, 0), SB_EPROTO);
	assert_int_equal(frame_dispatch(table, 2, &s, 10, body, 17, malloc(10), 10), SB_ETOOBIG);
	assert_int_equal(frame_dispatch(table, 2, &s, 11, body, 1, NULL, 0), SB_ETOOBIG);
	assert_int_equal(frame_dispatch(table, 0, &s, 10, body, 1, malloc(1), 1), SB_EPROTO);
	assert_int_equal(s.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header_roundtrip), cmocka_unit_test(test_header_big_endian),
	    cmocka_unit_test(test_header_limits),    cmocka_unit_test(test_dispatch),
	    cmocka_unit_test(test_dispatch_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
