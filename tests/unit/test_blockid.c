/* Block ids under manifest formats 1 and 2 (common/blockid.h): the format 2
 * tree against vectors computed apart (Python's hashlib over the same bytes),
 * the incremental hasher against the one-shot id for any cut of the bytes,
 * and the check of a cached block, which knows its id but not its format. */
#include "tests/unit/testutil.h"

#include "common/blockid.h"
#include "common/hash.h"

#define LEN (3 * PIECE_SIZE + 5)

static uint8_t *pattern(size_t len)
{
	uint8_t *d = malloc(len + 1);
	assert_non_null(d);
	for (size_t i = 0; i < len; i++)
		d[i] = (uint8_t)(i % 251);
	return d;
}

static void assert_hex(const struct hash_id *h, const char *hex)
{
	char got[HASH_HEX_LEN + 1];
	hash_to_hex(h, got);
	assert_string_equal(got, hex);
}

static void test_vectors(void **state)
{
	uint8_t *d = pattern(LEN);
	struct hash_id h;
	/* hashlib.sha256(d).hexdigest() */
	block_id(MANIFEST_FORMAT_FLAT, d, LEN, &h);
	assert_hex(&h, "749cb960a158665d5f18ce21b881fed711828f8eede1e4b36acba99a3ce9945a");
	/* sha256 of the four pieces' sha256 digests, concatenated */
	block_id(MANIFEST_FORMAT_PIECES, d, LEN, &h);
	assert_hex(&h, "e0fadf291de5031771a366d382bec89950be5576a486fb8b2f68ee3e348c1171");
	/* one piece: named as in format 1 under both formats */
	block_id(MANIFEST_FORMAT_PIECES, d, PIECE_SIZE, &h);
	assert_hex(&h, "31a1f9dea0169551092d05e8bf4a446228c8c3eb4c9b713c66adcb7fd53c89be");
	block_id(MANIFEST_FORMAT_FLAT, d, PIECE_SIZE, &h);
	assert_hex(&h, "31a1f9dea0169551092d05e8bf4a446228c8c3eb4c9b713c66adcb7fd53c89be");
	assert_int_equal(block_npieces(0), 1);
	assert_int_equal(block_npieces(PIECE_SIZE), 1);
	assert_int_equal(block_npieces(PIECE_SIZE + 1), 2);
	assert_int_equal(block_npieces(LEN), 4);
	free(d);
}

/* The pieces' hashes name the block, and a change in one piece changes
 * that piece's hash alone: a receiver finds the bad piece. */
static void test_pieces(void **state)
{
	uint8_t *d = pattern(LEN);
	uint8_t leaves[4 * HASH_LEN], bad[4 * HASH_LEN];
	struct hash_id a, b;
	block_piece_hashes(d, LEN, leaves);
	block_id_of_pieces(leaves, 4, &a);
	block_id(MANIFEST_FORMAT_PIECES, d, LEN, &b);
	assert_memory_equal(a.b, b.b, HASH_LEN);
	hash_sha256(d + 3 * PIECE_SIZE, 5, &a);
	assert_memory_equal(a.b, leaves + 3 * HASH_LEN, HASH_LEN);
	d[2 * PIECE_SIZE + 7] ^= 1;
	block_piece_hashes(d, LEN, bad);
	assert_memory_equal(bad, leaves, 2 * HASH_LEN);
	assert_memory_not_equal(bad + 2 * HASH_LEN, leaves + 2 * HASH_LEN, HASH_LEN);
	assert_memory_equal(bad + 3 * HASH_LEN, leaves + 3 * HASH_LEN, HASH_LEN);
	free(d);
}

static void test_hasher_cuts(void **state)
{
	static const size_t lens[] = {
	    0, 1, PIECE_SIZE - 1, PIECE_SIZE, PIECE_SIZE + 1, 2 * PIECE_SIZE, LEN};
	static const size_t cuts[] = {1, 4096, 65537, PIECE_SIZE, PIECE_SIZE + 3, 1u << 30};
	uint8_t *d = pattern(LEN);
	for (uint32_t fmt = MANIFEST_FORMAT_FLAT; fmt <= MANIFEST_FORMAT_PIECES; fmt++)
		for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
			struct hash_id want;
			block_id(fmt, d, lens[i], &want);
			for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
				if (cuts[k] == 1 && lens[i] > 4096)
					continue; /* byte at a time: short blocks only */
				struct block_hasher bh;
				struct hash_id got;
				block_hasher_init(&bh, fmt);
				for (size_t off = 0; off < lens[i]; off += cuts[k])
					block_hasher_update(&bh, d + off,
							    lens[i] - off < cuts[k] ? lens[i] - off
										    : cuts[k]);
				block_hasher_final(&bh, &got);
				if (memcmp(got.b, want.b, HASH_LEN))
					fail_msg("format %u, %zu bytes in parts of %zu", fmt,
						 lens[i], cuts[k]);
			}
		}
	struct block_hasher bh; /* closed unfinished: nothing leaks */
	block_hasher_init(&bh, MANIFEST_FORMAT_PIECES);
	block_hasher_update(&bh, d, LEN);
	block_hasher_close(&bh);
	free(d);
}

static void test_matches(void **state)
{
	uint8_t *d = pattern(LEN);
	struct hash_id flat, tree, other;
	block_id(MANIFEST_FORMAT_FLAT, d, LEN, &flat);
	block_id(MANIFEST_FORMAT_PIECES, d, LEN, &tree);
	assert_true(block_id_matches(d, LEN, &flat));
	assert_true(block_id_matches(d, LEN, &tree));
	d[5] ^= 1;
	assert_false(block_id_matches(d, LEN, &flat));
	assert_false(block_id_matches(d, LEN, &tree));
	d[5] ^= 1;
	/* The piece list hashed for the tree id is itself a short block whose
	 * flat id is that same id: a check of it by length tells them apart. */
	uint8_t leaves[4 * HASH_LEN];
	block_piece_hashes(d, LEN, leaves);
	assert_true(block_id_matches(leaves, sizeof leaves, &tree));
	assert_false(block_id_matches(d, sizeof leaves, &tree));
	block_id(MANIFEST_FORMAT_FLAT, d, 100, &other);
	assert_true(block_id_matches(d, 100, &other));
	assert_false(block_id_matches(d, 101, &other));
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),
	    cmocka_unit_test(test_pieces),
	    cmocka_unit_test(test_hasher_cuts),
	    cmocka_unit_test(test_matches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
