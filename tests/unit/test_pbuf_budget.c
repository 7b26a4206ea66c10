#include "tests/unit/testutil.h"

#include "common/buf.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/hash.h"
#include "common/manifest.h"
#include "common/net/pbuf_budget.h"
#include "proto/wire.pb-c.h"

/* Unpack body as type under its budget with the low-level interface:
 * returns whether it unpacked, with the budget's peak and the bytes still
 * live after the message (if any) was freed again. */
static int unpack_measured(uint32_t type, const uint8_t *body, size_t len, struct pbuf_budget *b)
{
	ProtobufCAllocator a;
	pbuf_budget_init(b, pbuf_budget_limit(type, len), &a);
	ProtobufCMessage *m =
	    protobuf_c_message_unpack(pbuf_budget_descriptor(type), &a, len, body);
	if (m)
		protobuf_c_message_free_unpacked(m, &a);
	assert_int_equal(b->live, 0); /* nothing left behind, either way */
	return m != NULL;
}

static void pack(const ProtobufCMessage *m, struct buf *out)
{
	buf_reserve(out, protobuf_c_message_get_packed_size(m));
	out->len = protobuf_c_message_pack(m, out->ptr);
}

/* Every message type of the protocols has a descriptor, so no dispatch
 * table row goes unbudgeted. */
static void test_every_type(void **state)
{
	const ProtobufCEnumDescriptor *e = &syncbit__msg_type__descriptor;
	for (unsigned i = 0; i < e->n_values; i++) {
		uint32_t t = (uint32_t)e->values[i].value;
		if (t == SYNCBIT__MSG_TYPE__MSG_NONE || t == SYNCBIT__MSG_TYPE__MSG_AUTH)
			assert_null(pbuf_budget_descriptor(t));
		else if (!pbuf_budget_descriptor(t))
			fail_msg("message type %s has no budget", e->values[i].name);
	}
	assert_null(pbuf_budget_descriptor(9999));
	/* a type without a message passes: the handler refuses it */
	assert_int_equal(pbuf_budget_check(9999, (const uint8_t *)"\x12\x00", 2), 0);
}

static void test_limits(void **state)
{
	/* flat messages get the small factor, nested ones the large */
	assert_int_equal(pbuf_budget_limit(SYNCBIT__MSG_TYPE__MSG_BITFIELD, 1000),
			 1000 * PBUF_BUDGET_FACTOR_FLAT + PBUF_BUDGET_FLOOR);
	assert_int_equal(pbuf_budget_limit(SYNCBIT__MSG_TYPE__MSG_REQUEST, 0), PBUF_BUDGET_FLOOR);
	assert_int_equal(pbuf_budget_limit(SYNCBIT__MSG_TYPE__MSG_HASHES, 1000),
			 1000 * PBUF_BUDGET_FACTOR + PBUF_BUDGET_FLOOR);
	assert_int_equal(pbuf_budget_limit(SYNCBIT__MSG_TYPE__MSG_HAVE, 1000),
			 1000 * PBUF_BUDGET_FACTOR + PBUF_BUDGET_FLOOR);
	assert_int_equal(pbuf_budget_limit(SYNCBIT__MSG_TYPE__MSG_ASSIGN, SIZE_MAX), SIZE_MAX);
}

/* Hashes of n blocks as the scheduler sends them. */
static void honest_hashes(size_t n, struct buf *out)
{
	Syncbit__BlockHash *bh = NULL, **bp = NULL; /* none for no blocks, as when decoded */
	if (n) {
		bh = calloc(n, sizeof *bh);
		bp = calloc(n, sizeof *bp);
	}
	uint8_t vid[HASH_LEN] = {1}, hash[HASH_LEN] = {2};
	Syncbit__Hashes m = SYNCBIT__HASHES__INIT;
	m.version_id.data = vid;
	m.version_id.len = HASH_LEN;
	for (size_t i = 0; i < n; i++) {
		syncbit__block_hash__init(&bh[i]);
		bh[i].block = (uint32_t)i;
		bh[i].hash.data = hash;
		bh[i].hash.len = HASH_LEN;
		bp[i] = &bh[i];
	}
	m.blocks = bp;
	m.n_blocks = n;
	pack(&m.base, out);
	free(bh);
	free(bp);
}

static void test_honest_fits(void **state)
{
	struct buf body = BUF_INIT;
	struct pbuf_budget b;
	size_t sizes[] = {0, 1, 100, 50000};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		body.len = 0;
		honest_hashes(sizes[i], &body);
		assert_int_equal(
		    pbuf_budget_check(SYNCBIT__MSG_TYPE__MSG_HASHES, body.ptr, body.len), 0);
		assert_true(unpack_measured(SYNCBIT__MSG_TYPE__MSG_HASHES, body.ptr, body.len, &b));
		/* an honest body needs less than a third of its budget */
		assert_true(b.peak * 3 < b.limit);
	}
	/* a packed Have of small block numbers: 1 byte on the wire, 4 in memory */
	uint32_t blocks[100000];
	for (size_t i = 0; i < 100000; i++)
		blocks[i] = (uint32_t)(i % 100);
	Syncbit__Have h = SYNCBIT__HAVE__INIT;
	h.blocks = blocks;
	h.n_blocks = 100000;
	body.len = 0;
	pack(&h.base, &body);
	assert_true(unpack_measured(SYNCBIT__MSG_TYPE__MSG_HAVE, body.ptr, body.len, &b));
	assert_true(b.peak * 3 < b.limit);
	/* a bitfield of 2^23 blocks: its bits are copied once */
	static uint8_t bits[1u << 20];
	Syncbit__Bitfield bf = SYNCBIT__BITFIELD__INIT;
	bf.nblocks = 1u << 23;
	bf.bits.data = bits;
	bf.bits.len = sizeof bits;
	body.len = 0;
	pack(&bf.base, &body);
	assert_true(unpack_measured(SYNCBIT__MSG_TYPE__MSG_BITFIELD, body.ptr, body.len, &b));
	assert_true(b.peak * 3 < b.limit);
	buf_close(&body);
}

/* An Assign with a manifest of many small files, each with a short path
 * and one block: the most struct per wire byte an honest scheduler sends. */
static void test_honest_assign(void **state)
{
	enum { N = 20000 };
	FileEntry *e = calloc(N, sizeof *e), **ep = calloc(N, sizeof *ep);
	char(*paths)[16] = calloc(N, 16);
	uint8_t hash[HASH_LEN] = {3};
	Manifest m = SYNCBIT__MANIFEST__INIT;
	m.format = MANIFEST_FORMAT;
	m.block_size = BLOCK_SIZE_DEFAULT;
	m.source = "file:///srv/data";
	for (size_t i = 0; i < N; i++) {
		syncbit__file_entry__init(&e[i]);
		snprintf(paths[i], 16, "d/%05zu", i);
		e[i].path = paths[i];
		e[i].type = SYNCBIT__FILE_TYPE__FILE_REGULAR;
		e[i].size = 100;
		e[i].mode = 0644;
		e[i].mtime_ns = 1700000000000000000ll;
		e[i].block_hashes.data = hash;
		e[i].block_hashes.len = HASH_LEN;
		ep[i] = &e[i];
	}
	m.files = ep;
	m.n_files = N;
	uint8_t vid[HASH_LEN] = {4};
	Syncbit__Assign a = SYNCBIT__ASSIGN__INIT;
	a.dataset = "models";
	a.version_id.data = vid;
	a.version_id.len = HASH_LEN;
	a.manifest = &m;
	struct buf body = BUF_INIT;
	pack(&a.base, &body);
	struct pbuf_budget b;
	assert_true(unpack_measured(SYNCBIT__MSG_TYPE__MSG_ASSIGN, body.ptr, body.len, &b));
	assert_true(b.peak * 3 < b.limit);
	assert_int_equal(pbuf_budget_check(SYNCBIT__MSG_TYPE__MSG_ASSIGN, body.ptr, body.len), 0);
	buf_close(&body);
	free(e);
	free(ep);
	free(paths);
}

/* n copies of the bytes p[0..k) */
static void repeat(struct buf *out, const char *p, size_t k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf_append(out, p, k);
}

static void test_crafted_refused(void **state)
{
	struct buf body = BUF_INIT;
	struct pbuf_budget b;
	/* 200000 empty BlockHash submessages: 2 bytes each on the wire, a
	 * pointer and a struct each in memory */
	repeat(&body, "\x12\x00", 2, 200000);
	assert_int_equal(pbuf_budget_check(SYNCBIT__MSG_TYPE__MSG_HASHES, body.ptr, body.len),
			 SB_ETOOBIG);
	assert_false(unpack_measured(SYNCBIT__MSG_TYPE__MSG_HASHES, body.ptr, body.len, &b));
	assert_true(b.refused);
	/* the same in the other nested types */
	assert_int_equal(pbuf_budget_check(SYNCBIT__MSG_TYPE__MSG_INGESTED, body.ptr, body.len),
			 SB_ETOOBIG);
	body.len = 0;
	repeat(&body, "\x1a\x00", 2, 200000); /* Heartbeat: empty VersionStates */
	assert_int_equal(pbuf_budget_check(SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, body.ptr, body.len),
			 SB_ETOOBIG);
	/* a flat message that repeats one scalar field: protobuf-c keeps a
	 * scan record per occurrence before the last one wins */
	body.len = 0;
	repeat(&body, "\x10\x01", 2, 400000); /* Bitfield.nblocks = 1, 400000 times */
	assert_int_equal(pbuf_budget_check(SYNCBIT__MSG_TYPE__MSG_BITFIELD, body.ptr, body.len),
			 SB_ETOOBIG);
	assert_false(unpack_measured(SYNCBIT__MSG_TYPE__MSG_BITFIELD, body.ptr, body.len, &b));
	assert_true(b.refused);
	/* small ones fit under the floor, whatever their shape */
	body.len = 0;
	repeat(&body, "\x12\x00", 2, 100);
	assert_int_equal(pbuf_budget_check(SYNCBIT__MSG_TYPE__MSG_HASHES, body.ptr, body.len), 0);
	/* malformed is not over budget: the handler refuses it as before */
	assert_int_equal(
	    pbuf_budget_check(SYNCBIT__MSG_TYPE__MSG_HASHES, (const uint8_t *)"\x12\x05\x00", 3),
	    0);
	buf_close(&body);
}

static int handled;
static size_t handled_blocks;

static int handler(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		   uint8_t *payload, size_t plen)
{
	handled++;
	/* the body arrives unpacked as its type's message */
	assert_non_null(msg);
	assert_ptr_equal(msg->descriptor, &syncbit__hashes__descriptor);
	handled_blocks = ((Syncbit__Hashes *)msg)->n_blocks;
	free(payload);
	return 0;
}

/* The dispatcher refuses an over-budget or malformed body before its
 * handler runs, and hands an accepted one over unpacked. */
static void test_dispatch(void **state)
{
	static const struct frame_handler table[] = {
	    {SYNCBIT__MSG_TYPE__MSG_HASHES, 64u << 20, 0, handler},
	    {SYNCBIT__MSG_TYPE__MSG_BLOCK, 256, 0, handler},
	};
	struct buf body = BUF_INIT;
	repeat(&body, "\x12\x00", 2, 200000);
	assert_int_equal(frame_dispatch(table, 2, NULL, SYNCBIT__MSG_TYPE__MSG_HASHES, body.ptr,
					body.len, malloc(10), 10),
			 SB_ETOOBIG);
	assert_int_equal(handled, 0);
	body.len = 0;
	honest_hashes(1000, &body);
	assert_int_equal(frame_dispatch(table, 2, NULL, SYNCBIT__MSG_TYPE__MSG_HASHES, body.ptr,
					body.len, NULL, 0),
			 0);
	assert_int_equal(handled, 1);
	assert_int_equal(handled_blocks, 1000);
	/* a body that is not a Hashes (a field longer than the body) never
	 * reaches the handler */
	assert_int_equal(frame_dispatch(table, 2, NULL, SYNCBIT__MSG_TYPE__MSG_HASHES,
					(const uint8_t *)"\x12\x05\x00", 3, NULL, 0),
			 SB_EPROTO);
	assert_int_equal(handled, 1);
	buf_close(&body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_type),	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_honest_fits),	    cmocka_unit_test(test_honest_assign),
	    cmocka_unit_test(test_crafted_refused), cmocka_unit_test(test_dispatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
