#include "tests/unit/manifest_fixture.h"

/* ---- block arithmetic ---- */

static void test_nblocks(void **state)
{
	assert_int_equal(manifest_nblocks(0, BS), 0);
	assert_int_equal(manifest_nblocks(1, BS), 1);
	assert_int_equal(manifest_nblocks(BS - 1, BS), 1);
	assert_int_equal(manifest_nblocks(BS, BS), 1);
	assert_int_equal(manifest_nblocks(BS + 1, BS), 2);
	assert_int_equal(manifest_nblocks(2 * BS, BS), 2);
	assert_int_equal(manifest_nblocks(2 * BS + 1, BS), 3);
	assert_int_equal(manifest_nblocks(1, BLOCK_SIZE_MAX), 1);
	/* Near 2^64 a rounding-up sum would wrap to almost nothing. */
	assert_int_equal(manifest_nblocks(UINT64_MAX, BS), (UINT64_MAX >> 12) + 1);
	assert_int_equal(manifest_nblocks(UINT64_MAX - BS + 1, BS), UINT64_MAX >> 12);
	assert_int_equal(manifest_nblocks(UINT64_MAX, BLOCK_SIZE_MAX), (UINT64_MAX >> 28) + 1);
}

static void test_block_len(void **state)
{
	assert_int_equal(manifest_block_len(0, BS, 0), 0);
	assert_int_equal(manifest_block_len(1, BS, 0), 1);
	assert_int_equal(manifest_block_len(1, BS, 1), 0);
	assert_int_equal(manifest_block_len(BS - 1, BS, 0), BS - 1);
	assert_int_equal(manifest_block_len(BS, BS, 0), BS);
	assert_int_equal(manifest_block_len(BS, BS, 1), 0);
	assert_int_equal(manifest_block_len(BS + 1, BS, 0), BS);
	assert_int_equal(manifest_block_len(BS + 1, BS, 1), 1);
	assert_int_equal(manifest_block_len(BS + 1, BS, 2), 0);
	assert_int_equal(manifest_block_len(3 * BS, BS, 2), BS);
	assert_int_equal(manifest_block_len(3 * BS, BS, 3), 0);
	assert_int_equal(manifest_block_len(3 * BS - 1, BS, 2), BS - 1);
	assert_int_equal(manifest_block_len(UINT64_MAX, BS, UINT64_MAX >> 12), BS - 1);
	assert_int_equal(manifest_block_len(UINT64_MAX, BS, 0), BS);
	/* An index whose offset wraps past 2^64 is still past the end. */
	assert_int_equal(manifest_block_len(10 * BS, BS, 1ull << 52), 0);
	assert_int_equal(manifest_block_len(10 * BS, BS, UINT64_MAX), 0);
	/* The lengths add up to the size. */
	uint64_t sizes[] = {0, 1, BS - 1, BS, BS + 1, 7 * BS, 7 * BS + 5};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		uint64_t sum = 0, nb = manifest_nblocks(sizes[i], BS);
		for (uint64_t k = 0; k < nb; k++) {
			uint32_t l = manifest_block_len(sizes[i], BS, k);
			assert_true(l > 0 && l <= BS);
			sum += l;
		}
		assert_int_equal(sum, sizes[i]);
	}
}

static void test_check_block_size(void **state)
{
	assert_int_equal(manifest_check_block_size(BLOCK_SIZE_MIN), 0);
	assert_int_equal(manifest_check_block_size(BLOCK_SIZE_DEFAULT), 0);
	assert_int_equal(manifest_check_block_size(BLOCK_SIZE_MAX), 0);
	assert_int_equal(manifest_check_block_size(8192), 0);
	uint64_t bad[] = {0,
			  1,
			  2048,
			  BLOCK_SIZE_MIN - 1,
			  BLOCK_SIZE_MIN + 1,
			  6144,
			  BLOCK_SIZE_MAX - 1,
			  BLOCK_SIZE_MAX + 1,
			  2ull * BLOCK_SIZE_MAX,
			  1ull << 40,
			  1ull << 63,
			  UINT64_MAX};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(manifest_check_block_size(bad[i]), SB_EPROTO);
}

/* ---- encoding ---- */

static void test_roundtrip(void **state)
{
	struct mbuild b;
	struct buf e1 = BUF_INIT, e2 = BUF_INIT;
	struct hash_id id1, id2, direct;
	Manifest *d;

	mb_sample(&b);
	assert_int_equal(manifest_validate(&b.m), 0);
	encode(&b.m, &e1, &id1);
	hash_sha256(e1.ptr, e1.len, &direct);
	assert_memory_equal(&id1, &direct, sizeof id1);

	assert_int_equal(manifest_decode(e1.ptr, e1.len, &d), 0);
	assert_int_equal(d->format, MANIFEST_FORMAT);
	assert_int_equal(d->block_size, BS);
	assert_string_equal(d->source, b.m.source);
	assert_string_equal(d->source_version, b.m.source_version);
	assert_int_equal(d->n_files, b.m.n_files);
	for (size_t i = 0; i < d->n_files; i++)
		assert_entries_equal(d->files[i], b.m.files[i]);
	assert_int_equal(d->files[1]->block_hashes.len, 301 * HASH_LEN);

	encode(d, &e2, &id2);
	assert_int_equal(e1.len, e2.len);
	assert_memory_equal(e1.ptr, e2.ptr, e1.len);
	assert_memory_equal(&id1, &id2, sizeof id1);
	manifest_free(d);

	/* Appending keeps what the buffer held. */
	buf_reset(&e2);
	buf_append(&e2, "xy", 2);
	manifest_encode(&b.m, &e2, &id2);
	assert_int_equal(e2.len, e1.len + 2);
	assert_memory_equal(e2.ptr + 2, e1.ptr, e1.len);
	assert_memory_equal(&id1, &id2, sizeof id1);

	buf_close(&e1);
	buf_close(&e2);
	mb_close(&b);
}

static void test_roundtrip_empty(void **state)
{
	struct mbuild b;
	struct buf e = BUF_INIT;
	struct hash_id id;
	Manifest *d;

	mb_init(&b, BLOCK_SIZE_MAX);
	b.m.source = (char *)"";
	b.m.source_version = (char *)"";
	encode(&b.m, &e, &id);
	assert_int_equal(manifest_decode(e.ptr, e.len, &d), 0);
	assert_int_equal(d->n_files, 0);
	assert_int_equal(d->block_size, BLOCK_SIZE_MAX);
	manifest_free(d);
	manifest_free(NULL);
	buf_close(&e);
	mb_close(&b);
}

/* Changing any one field changes the id. */
static void test_id_changes(void **state)
{
	struct mbuild b;
	struct buf e = BUF_INIT;
	struct hash_id base, id;

	mb_sample(&b);
	encode(&b.m, &e, &base);

#define CHANGED(stmt)                                             \
	do {                                                      \
		mb_close(&b);                                     \
		mb_sample(&b);                                    \
		stmt;                                             \
		encode(&b.m, &e, &id);                            \
		if (memcmp(&id, &base, sizeof id) == 0)           \
			fail_msg("id unchanged after %s", #stmt); \
	} while (0)

	CHANGED(b.m.format = MANIFEST_FORMAT_FLAT);
	CHANGED(b.m.source = (char *)"file:///srv/other");
	CHANGED(b.m.block_size = 2 * BS);
	CHANGED(b.m.source_version = (char *)"v2");
	CHANGED(b.m.n_files--);
	CHANGED(b.e[11].path = (char *)"d");
	CHANGED(b.e[11].type = SYNCBIT__FILE_TYPE__FILE_DIRECTORY);
	CHANGED(b.e[11].size++);
	CHANGED(b.e[11].mode = 0600);
	CHANGED(b.e[11].mtime_ns++);
	CHANGED(b.e[6].link_target = (char *)"exact");
	CHANGED(b.e[4].hardlink_to = 0);
	CHANGED(b.e[11].source_digest = (char *)"etag-2");
	CHANGED(b.hashes[1][300 * HASH_LEN + 31] ^= 1);
	CHANGED(b.hashes[11][0] ^= 0x80);
#undef CHANGED

	buf_close(&e);
	mb_close(&b);
}

/* ---- decoding hostile bytes ---- */

static int is_decode_error(int rc)
{
	return rc == SB_EPROTO || rc == SB_ETOOBIG || rc == SB_ECONFINE;
}

static void test_truncated(void **state)
{
	struct mbuild b;
	struct buf e = BUF_INIT;
	size_t ok = 0;

	mb_sample(&b);
	encode(&b.m, &e, NULL);
	for (size_t n = 0; n < e.len; n++) {
		/* A copy of exactly n bytes, so ASan sees any read past it. */
		uint8_t *p = malloc(n ? n : 1);
		memcpy(p, e.ptr, n);
		Manifest *d = (Manifest *)1;
		int rc = manifest_decode(p, n, &d);
		if (rc == 0) {
			assert_int_equal(manifest_validate(d), 0);
			manifest_free(d);
			ok++;
		} else {
			if (!is_decode_error(rc))
				fail_msg("prefix %zu: %s", n, sb_strerror(rc));
			assert_null(d);
		}
		free(p);
	}
	/* Cutting between whole entries leaves a valid manifest. */
	assert_true(ok > 0);
	buf_close(&e);
	mb_close(&b);
}

static void test_oversized(void **state)
{
	uint8_t small[16] = {0x08, 0x01};
	Manifest *d = (Manifest *)1;

	/* The length is refused before a byte is read. */
	assert_int_equal(manifest_decode(small, (size_t)MANIFEST_MAX_BYTES + 1, &d), SB_ETOOBIG);
	assert_null(d);
	assert_int_equal(manifest_decode(small, SIZE_MAX, &d), SB_ETOOBIG);
	assert_null(d);
}

static void test_garbage(void **state)
{
	/* Invalid wire types, a length running past the end, an over-long
	 * varint, and a valid header followed by junk. */
	static const uint8_t bad[][12] = {
	    {0x0f},
	    {0x2a, 0x10, 0x0a},
	    {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f},
	    {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	    {0x08, 0x01, 0x18, 0x80, 0x20, 0xff},
	};
	static const size_t len[] = {1, 3, 6, 12, 6};
	for (size_t i = 0; i < sizeof len / sizeof len[0]; i++) {
		Manifest *d = (Manifest *)1;
		int rc = manifest_decode(bad[i], len[i], &d);
		if (!is_decode_error(rc))
			fail_msg("case %zu: %d", i, rc);
		assert_null(d);
	}
}

/* Unknown fields, at the top or in an entry, are refused: format 1 has
 * none, and a field number 0 in a padded varint would decode once, then
 * re-encode into bytes protobuf-c refuses. */
static void test_unknown_fields(void **state)
{
	static const uint8_t field15[] = {0x78, 0x01};
	static const uint8_t field0_padded[] = {0x85, 0x00, 0, 0, 0x2e, 0};
	static const uint8_t entry_field15[] = {0x2a, 0x05, 0x0a, 0x01, 'z', 0x78, 0x01};
	const struct {
		const uint8_t *p;
		size_t n;
	} extra[] = {{field15, sizeof field15},
		     {field0_padded, sizeof field0_padded},
		     {entry_field15, sizeof entry_field15}};
	struct mbuild b;
	struct buf e = BUF_INIT;

	mb_sample(&b);
	for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
		encode(&b.m, &e, NULL);
		buf_append(&e, extra[i].p, extra[i].n);
		Manifest *d = (Manifest *)1;
		assert_int_equal(manifest_decode(e.ptr, e.len, &d), SB_EPROTO);
		assert_null(d);
	}
	buf_close(&e);
	mb_close(&b);
}

/* Header: format 1, block size 4096. */
static void put_header(struct buf *b)
{
	static const uint8_t hdr[] = {0x08, 0x01, 0x18, 0x80, 0x20};
	buf_append(b, hdr, sizeof hdr);
}

static long maxrss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* Decode in a child and report whether it failed with want and how much
 * its resident set grew (KiB). */
static void decode_in_child(const struct buf *b, int want, long max_grow_kib)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		long before = maxrss_kib();
		Manifest *d = NULL;
		int rc = manifest_decode(b->ptr, b->len, &d);
		long grow = maxrss_kib() - before;
		if (rc != want) {
			fprintf(stderr, "decode: %s, wanted %s\n", sb_errname(rc),
				sb_errname(want));
			_exit(1);
		}
		if (max_grow_kib && grow > max_grow_kib) {
			fprintf(stderr, "decode grew by %ld KiB\n", grow);
			_exit(2);
		}
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* 1 MiB of empty FileEntry messages would unpack into tens of MiB of
 * structures; the allocation budget stops it. */
static void test_hostile_allocation(void **state)
{
	struct buf b = BUF_INIT;
	long limit = 20 << 10;
#ifdef UNDER_ASAN
	limit = 0; /* redzones and quarantine make RSS meaningless */
#endif

	put_header(&b);
	while (b.len < (1u << 20))
		buf_append(&b, "\x2a\x00", 2);
	decode_in_child(&b, SB_ETOOBIG, limit);
	/* Also in this process, so LSan sees that the refusal frees all. */
	Manifest *d = (Manifest *)1;
	assert_int_equal(manifest_decode(b.ptr, b.len, &d), SB_ETOOBIG);
	assert_null(d);

	/* Many entries and one large bytes field: what is refused is a large
	 * request while small ones would still fit. It is still a budget
	 * refusal, not a format error. */
	buf_reset(&b);
	put_header(&b);
	for (int i = 0; i < 160000; i++)
		buf_append(&b, "\x2a\x00", 2);
	uint8_t big_hdr[] = {0x2a, 0x84, 0x80, 0x40, 0x4a, 0x80, 0x80, 0x40};
	buf_append(&b, big_hdr, sizeof big_hdr);
	size_t before = b.len;
	buf_reserve(&b, 1u << 20);
	memset(b.ptr + before, 0xab, 1u << 20);
	b.len += 1u << 20;
	d = (Manifest *)1;
	assert_int_equal(manifest_decode(b.ptr, b.len, &d), SB_ETOOBIG);
	assert_null(d);
	buf_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nblocks),
	    cmocka_unit_test(test_block_len),
	    cmocka_unit_test(test_check_block_size),
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_roundtrip_empty),
	    cmocka_unit_test(test_id_changes),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_oversized),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_unknown_fields),
	    cmocka_unit_test(test_hostile_allocation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
