/* manifest_validate: what a manifest from the wire or the disk must be. */
#include "tests/unit/manifest_fixture.h"

/* ---- validation ---- */

#define REJECT(want, stmt)                                                          \
	do {                                                                        \
		struct mbuild b_;                                                   \
		struct mbuild *b = &b_;                                             \
		mb_sample(b);                                                       \
		stmt;                                                               \
		int rc_ = reencode_decode(&b->m);                                   \
		if (rc_ != (want))                                                  \
			fail_msg("line %d: %s gave %s, wanted %s", __LINE__, #stmt, \
				 sb_errname(rc_), sb_errname(want));                \
		assert_int_equal(manifest_validate(&b->m), (want));                 \
		mb_close(b);                                                        \
	} while (0)

static void test_validate_sample_ok(void **state)
{
	REJECT(0, (void)b);
	/* Directory-only nesting and parents not listed are fine. */
	REJECT(0, b->e[11].path = (char *)"c/d/e");
	REJECT(0, b->e[10].path = (char *)"b/sub/x");
}

static void test_validate_paths(void **state)
{
	REJECT(SB_ECONFINE, b->e[11].path = (char *)"..");
	REJECT(SB_ECONFINE, b->e[11].path = (char *)"c/../../x");
	REJECT(SB_ECONFINE, b->e[11].path = (char *)"c/..");
	REJECT(SB_ECONFINE, b->e[0].path = (char *)"/a");
	REJECT(SB_ECONFINE, b->e[0].path = (char *)"");
	REJECT(SB_ECONFINE, b->e[11].path = (char *)"c//d");
	REJECT(SB_ECONFINE, b->e[11].path = (char *)"c/");
	REJECT(SB_ECONFINE, b->e[11].path = (char *)"./c");
}

static void test_validate_order(void **state)
{
	/* unsorted */
	REJECT(SB_EPROTO, b->e[11].path = (char *)"a0");
	REJECT(SB_EPROTO, {
		FileEntry *t = b->ptrs[9];
		b->ptrs[9] = b->ptrs[11];
		b->ptrs[11] = t;
	});
	/* duplicate */
	REJECT(SB_EPROTO, b->e[11].path = (char *)"b/sub");
	REJECT(SB_EPROTO, b->e[9].path = (char *)"b");
}

static void test_validate_below_non_directory(void **state)
{
	/* below a symlink */
	REJECT(SB_ECONFINE, {
		mb_reset(b, BS);
		mb_link(b, "a", "b");
		mb_add(b, "a/x", SYNCBIT__FILE_TYPE__FILE_REGULAR, 1, 1);
	});
	/* deeper below a symlink, with unrelated entries sorted in between */
	REJECT(SB_ECONFINE, {
		mb_reset(b, BS);
		mb_link(b, "a", "b");
		mb_add(b, "a b", SYNCBIT__FILE_TYPE__FILE_REGULAR, 1, 1);
		mb_add(b, "a-c", SYNCBIT__FILE_TYPE__FILE_DIRECTORY, 0, 0);
		mb_add(b, "a/y/z", SYNCBIT__FILE_TYPE__FILE_DIRECTORY, 0, 0);
	});
	/* below a regular file */
	REJECT(SB_ECONFINE, {
		mb_reset(b, BS);
		mb_add(b, "a", SYNCBIT__FILE_TYPE__FILE_REGULAR, 10, 1);
		mb_add(b, "a/x", SYNCBIT__FILE_TYPE__FILE_REGULAR, 1, 1);
	});
	/* below a symlink in a directory */
	REJECT(SB_ECONFINE, b->e[7].path = (char *)"a/link/x");
	/* below a hardlink */
	REJECT(SB_ECONFINE, b->e[6].path = (char *)"a/hard-empty/x");
	/* a sibling whose name only starts like the symlink is fine */
	REJECT(0, {
		mb_reset(b, BS);
		mb_link(b, "a", "b");
		mb_add(b, "ab/x", SYNCBIT__FILE_TYPE__FILE_REGULAR, 1, 1);
	});
}

static void test_validate_symlinks(void **state)
{
	REJECT(SB_ECONFINE, b->e[6].link_target = (char *)"/etc/passwd");
	REJECT(SB_ECONFINE, b->e[6].link_target = (char *)"../../x");
	REJECT(SB_ECONFINE, b->e[6].link_target = (char *)"../../../..");
	REJECT(SB_ECONFINE, b->e[6].link_target = (char *)"x/../../y");
	REJECT(SB_ECONFINE, b->e[6].link_target = (char *)"x/../y");
	REJECT(SB_EPROTO, b->e[6].link_target = (char *)"");
	REJECT(0, b->e[6].link_target = (char *)"..");
	REJECT(0, b->e[6].link_target = (char *)"../c");
	REJECT(SB_ECONFINE, {
		mb_reset(b, BS);
		mb_link(b, "top", "..");
	});
	REJECT(SB_EPROTO, { b->e[6].block_hashes = b->e[11].block_hashes; });
	REJECT(SB_EPROTO, b->e[6].hardlink_to = 2);
	/* a size nothing backs, which a reader might trust */
	REJECT(SB_EPROTO, b->e[6].size = 1);
	REJECT(SB_EPROTO, b->e[6].size = UINT64_MAX);
}

static void test_validate_blocks(void **state)
{
	/* one hash short, one extra, not a multiple of 32 */
	REJECT(SB_EPROTO, b->e[1].block_hashes.len -= HASH_LEN);
	REJECT(SB_EPROTO, b->e[3].size += BS);
	REJECT(SB_EPROTO, b->e[3].size++);
	REJECT(0, b->e[3].size--);
	REJECT(0, b->e[11].size = 1);
	REJECT(SB_EPROTO, b->e[11].size = 0);
	REJECT(SB_EPROTO, b->e[11].size = BS + 1);
	REJECT(SB_EPROTO, b->e[11].block_hashes.len--);
	REJECT(SB_EPROTO, b->e[2].block_hashes = b->e[11].block_hashes);
	/* a size whose block count wraps must not match zero hashes */
	REJECT(SB_EPROTO, {
		b->e[2].size = UINT64_MAX;
		b->e[5].size = UINT64_MAX;
	});
	REJECT(SB_EPROTO, {
		b->e[2].size = UINT64_MAX - 100;
		b->e[5].size = UINT64_MAX - 100;
	});
	/* bad block sizes, with nothing else that could be wrong */
	uint32_t bad[] = {0,
			  1,
			  2048,
			  BS - 1,
			  BS + 1,
			  6144,
			  3u << 20,
			  BLOCK_SIZE_MAX + 1,
			  2 * BLOCK_SIZE_MAX,
			  UINT32_MAX};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		REJECT(SB_EPROTO, {
			mb_reset(b, bad[i]);
			mb_add(b, "e", SYNCBIT__FILE_TYPE__FILE_DIRECTORY, 0, 0);
		});
	REJECT(SB_EPROTO, b->m.block_size = 2 * BS);
}

/* Readers size per-block arrays from the block count, so it is bounded
 * as such, not only through the manifest's length. Validation alone: the
 * hashes are calloc'd and never written, so they cost no memory. */
static void test_validate_block_count(void **state)
{
	struct mbuild b;
	uint8_t *h = calloc(MANIFEST_MAX_BLOCKS + 1, HASH_LEN);
	assert_non_null(h);
	mb_init(&b, BS);
	FileEntry *big = mb_add(&b, "a", SYNCBIT__FILE_TYPE__FILE_REGULAR, 0, 0);
	FileEntry *more = mb_add(&b, "b", SYNCBIT__FILE_TYPE__FILE_REGULAR, 0, 0);
	big->size = (uint64_t)(MANIFEST_MAX_BLOCKS - 1) * BS;
	big->block_hashes.data = h;
	big->block_hashes.len = (size_t)(MANIFEST_MAX_BLOCKS - 1) * HASH_LEN;
	more->size = BS;
	more->block_hashes.data = h;
	more->block_hashes.len = HASH_LEN;
	assert_int_equal(manifest_validate(&b.m), 0);
	more->size = BS + 1;
	more->block_hashes.len = 2 * HASH_LEN;
	assert_int_equal(manifest_validate(&b.m), SB_ETOOBIG);
	/* One file alone, and a hardlink, which brings no blocks of its own. */
	big->size = (uint64_t)MANIFEST_MAX_BLOCKS * BS + 1;
	big->block_hashes.len = (size_t)(MANIFEST_MAX_BLOCKS + 1) * HASH_LEN;
	b.m.n_files = 1;
	assert_int_equal(manifest_validate(&b.m), SB_ETOOBIG);
	big->size = (uint64_t)MANIFEST_MAX_BLOCKS * BS;
	big->block_hashes.len = (size_t)MANIFEST_MAX_BLOCKS * HASH_LEN;
	b.m.n_files = 2;
	more->size = big->size;
	more->block_hashes = big->block_hashes;
	more->hardlink_to = 1;
	assert_int_equal(manifest_validate(&b.m), 0);
	mb_close(&b);
	free(h);
}

static void test_validate_hardlinks(void **state)
{
	/* forward, self, out of range */
	REJECT(SB_EPROTO, {
		b->e[1].hardlink_to = 5;
		b->e[4].hardlink_to = 0;
	});
	REJECT(SB_EPROTO, b->e[4].hardlink_to = 5);
	REJECT(SB_EPROTO, b->e[4].hardlink_to = 100);
	REJECT(SB_EPROTO, b->e[4].hardlink_to = UINT32_MAX);
	/* at a directory, a symlink, another hardlink */
	REJECT(SB_EPROTO, { b->e[5].hardlink_to = 1; });
	REJECT(SB_EPROTO, b->e[9].hardlink_to = 7);
	REJECT(SB_EPROTO, {
		b->e[5].size = b->e[1].size;
		b->e[5].block_hashes = b->e[1].block_hashes;
		b->e[5].hardlink_to = 5; /* "a/hard-big", itself a link */
	});
	/* at different content: other hashes, other size */
	REJECT(SB_EPROTO, b->e[4].hardlink_to = 4);
	REJECT(SB_EPROTO, { mb_set_hashes(b, &b->e[4], 99); });
	REJECT(SB_EPROTO, {
		b->e[9].hardlink_to = 3; /* "b/one": 1 byte vs empty */
	});
	REJECT(SB_EPROTO, {
		b->e[4].size--;
		mb_set_hashes(b, &b->e[4], 1);
	});
	/* a valid link to the earlier file with the same content */
	REJECT(0, {
		b->e[11].size = b->e[9].size;
		mb_set_hashes(b, &b->e[11], 3);
		b->e[11].hardlink_to = 10;
	});
}

static void test_validate_fields(void **state)
{
	REJECT(SB_EPROTO, b->m.format = 0);
	REJECT(SB_EPROTO, b->m.format = 3);
	REJECT(0, b->m.format = MANIFEST_FORMAT_FLAT);
	REJECT(SB_EPROTO, b->e[11].mode = 010000);
	REJECT(0, b->e[11].mode = 07777);
	REJECT(SB_EPROTO, b->e[11].type = 3);
	REJECT(SB_EPROTO, b->e[11].type = -1);
	REJECT(SB_EPROTO, b->e[0].size = 1);
	REJECT(SB_EPROTO, b->e[0].block_hashes = b->e[11].block_hashes);
	REJECT(SB_EPROTO, b->e[8].hardlink_to = 1);
}

/* "Same content, reuse it": a file keeps its hashes across versions only
 * with the same path, size, non-empty change token and block size; hashes
 * it knows already stay; hardlinks follow their target. */
static void test_carry_over(void **state)
{
	struct mbuild prev, next;
	mb_sample(&prev);
	mb_sample(&next);
	/* The next version knows nothing yet; its hardlink has its own copy
	 * of the hashes, as in a decoded manifest. */
	for (size_t i = 0; i < next.m.n_files; i++)
		if (next.e[i].block_hashes.len && !next.e[i].hardlink_to)
			memset(next.e[i].block_hashes.data, 0, next.e[i].block_hashes.len);
	/* e[1], a/big.bin, has 301 hashes (the analyzer loses count in mb_sample) */
	/* NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI) */
	next.hashes[4] = calloc(1, next.e[1].block_hashes.len);
	next.e[4].block_hashes.data = next.hashes[4];
	/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): hashes[4] was NULL (empty hardlink) */
	next.e[11].source_digest = (char *)"etag-2"; /* c changed */
	next.e[3].source_digest = (char *)"";	     /* a/exact: no token */
	prev.e[3].source_digest = (char *)"";
	uint8_t *one = next.e[9].block_hashes.data; /* b/one: known already, kept */
	memset(one, 0xab, HASH_LEN);
	assert_int_equal(manifest_carry_over(&next.m, &prev.m), 301); /* a/big.bin */
	assert_memory_equal(next.e[1].block_hashes.data, prev.e[1].block_hashes.data,
			    prev.e[1].block_hashes.len);
	assert_memory_equal(next.e[4].block_hashes.data, prev.e[1].block_hashes.data,
			    prev.e[1].block_hashes.len);
	assert_true(hash_is_zero((const struct hash_id *)next.e[11].block_hashes.data));
	assert_true(hash_is_zero((const struct hash_id *)next.e[3].block_hashes.data));
	assert_int_equal(one[0], 0xab);
	assert_int_equal(manifest_validate(&next.m), 0);
	/* Cut at another block size, nothing carries over. */
	struct mbuild other;
	mb_init(&other, 2 * BS);
	mb_add(&other, "a/big.bin", SYNCBIT__FILE_TYPE__FILE_REGULAR, 300 * BS + 17, 0);
	memset(other.e[0].block_hashes.data, 0, other.e[0].block_hashes.len);
	assert_int_equal(manifest_carry_over(&other.m, &prev.m), 0);
	assert_int_equal(manifest_carry_over(&other.m, NULL), 0);
	mb_close(&other);
	/* Named under another format, the same bytes have other block ids. */
	mb_init(&other, BS);
	mb_add(&other, "a/big.bin", SYNCBIT__FILE_TYPE__FILE_REGULAR, 300 * BS + 17, 0);
	memset(other.e[0].block_hashes.data, 0, other.e[0].block_hashes.len);
	other.e[0].source_digest = prev.e[1].source_digest;
	other.m.format =
	    prev.m.format == MANIFEST_FORMAT_FLAT ? MANIFEST_FORMAT_PIECES : MANIFEST_FORMAT_FLAT;
	assert_int_equal(manifest_carry_over(&other.m, &prev.m), 0);
	other.m.format = prev.m.format; /* the same format: it does */
	assert_int_equal(manifest_carry_over(&other.m, &prev.m), 301);
	mb_close(&other);
	mb_close(&prev);
	mb_close(&next);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_validate_sample_ok),
	    cmocka_unit_test(test_validate_paths),
	    cmocka_unit_test(test_validate_order),
	    cmocka_unit_test(test_validate_below_non_directory),
	    cmocka_unit_test(test_validate_symlinks),
	    cmocka_unit_test(test_validate_blocks),
	    cmocka_unit_test(test_validate_block_count),
	    cmocka_unit_test(test_carry_over),
	    cmocka_unit_test(test_validate_hardlinks),
	    cmocka_unit_test(test_validate_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
