#include "tests/unit/testutil.h"

#include <sys/resource.h>
#include <sys/wait.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/manifest.h"

#define BS     4096u
#define MB_MAX 32

/* ---- building manifests in memory ---- */

/* A manifest whose entries and block hashes the test owns; strings point at
 * literals, so only the hash buffers are freed. */
struct mbuild {
	Manifest m;
	FileEntry *ptrs[MB_MAX];
	FileEntry e[MB_MAX];
	uint8_t *hashes[MB_MAX];
};

static void mb_init(struct mbuild *b, uint32_t block_size)
{
	memset(b, 0, sizeof *b);
	syncbit__manifest__init(&b->m);
	b->m.format = MANIFEST_FORMAT;
	b->m.block_size = block_size;
	b->m.source = (char *)"file:///srv/data";
	b->m.source_version = (char *)"v1";
	b->m.files = b->ptrs;
}

/* Fill a regular file's block hashes with bytes derived from seed, so two
 * files with the same seed and size have the same content. */
static void mb_set_hashes(struct mbuild *b, FileEntry *f, uint8_t seed)
{
	size_t i = (size_t)(f - b->e);
	uint64_t nb = manifest_nblocks(f->size, b->m.block_size);
	free(b->hashes[i]);
	b->hashes[i] = nb ? malloc(nb * HASH_LEN) : NULL;
	for (uint64_t k = 0; k < nb * HASH_LEN; k++)
		b->hashes[i][k] = (uint8_t)(seed + k * 7 + k / HASH_LEN);
	f->block_hashes.data = b->hashes[i];
	f->block_hashes.len = nb * HASH_LEN;
}

/* Start over with another block size, releasing what b held. */
static void mb_reset(struct mbuild *b, uint32_t block_size)
{
	for (size_t i = 0; i < MB_MAX; i++)
		free(b->hashes[i]);
	mb_init(b, block_size);
}

static FileEntry *mb_add(struct mbuild *b, const char *path, int type, uint64_t size, uint8_t seed)
{
	assert_true(b->m.n_files < MB_MAX);
	FileEntry *f = &b->e[b->m.n_files];
	syncbit__file_entry__init(f);
	f->path = (char *)path;
	f->type = type;
	f->mode = type == SYNCBIT__FILE_TYPE__FILE_DIRECTORY ? 0755 : 0644;
	f->mtime_ns = 1700000000123456789ll;
	if (type == SYNCBIT__FILE_TYPE__FILE_REGULAR) {
		f->size = size;
		f->source_digest = (char *)"etag-1";
		mb_set_hashes(b, f, seed);
	}
	b->ptrs[b->m.n_files++] = f;
	return f;
}

static FileEntry *mb_link(struct mbuild *b, const char *path, const char *target)
{
	FileEntry *f = mb_add(b, path, SYNCBIT__FILE_TYPE__FILE_SYMLINK, 0, 0);
	f->link_target = (char *)target;
	f->mode = 0777;
	return f;
}

/* A hardlink to entry `to` (0-based): same size and hashes. */
static FileEntry *mb_hardlink(struct mbuild *b, const char *path, size_t to)
{
	FileEntry *t = &b->e[to];
	FileEntry *f = mb_add(b, path, SYNCBIT__FILE_TYPE__FILE_REGULAR, 0, 0);
	f->size = t->size;
	f->hardlink_to = (uint32_t)to + 1;
	f->block_hashes = t->block_hashes;
	return f;
}

static void mb_close(struct mbuild *b)
{
	for (size_t i = 0; i < MB_MAX; i++)
		free(b->hashes[i]);
}

/* Every kind of entry: directories, files of several sizes (empty, one
 * block, exact multiple, many blocks with a short tail), hardlinks (to a
 * multi-block and to an empty file) and symlinks. */
static void mb_sample(struct mbuild *b)
{
	mb_init(b, BS);
	mb_add(b, "a", SYNCBIT__FILE_TYPE__FILE_DIRECTORY, 0, 0);
	mb_add(b, "a/big.bin", SYNCBIT__FILE_TYPE__FILE_REGULAR, 300 * BS + 17, 1);
	mb_add(b, "a/empty", SYNCBIT__FILE_TYPE__FILE_REGULAR, 0, 0);
	mb_add(b, "a/exact", SYNCBIT__FILE_TYPE__FILE_REGULAR, 3 * BS, 2);
	mb_hardlink(b, "a/hard-big", 1);
	mb_hardlink(b, "a/hard-empty", 2);
	mb_link(b, "a/link", "big.bin");
	mb_link(b, "a/up", "../b/one");
	mb_add(b, "b", SYNCBIT__FILE_TYPE__FILE_DIRECTORY, 0, 0);
	mb_add(b, "b/one", SYNCBIT__FILE_TYPE__FILE_REGULAR, 1, 3);
	mb_add(b, "b/sub", SYNCBIT__FILE_TYPE__FILE_DIRECTORY, 0, 0);
	mb_add(b, "c", SYNCBIT__FILE_TYPE__FILE_REGULAR, BS - 1, 4);
}

static void encode(const Manifest *m, struct buf *out, struct hash_id *id)
{
	buf_reset(out);
	manifest_encode(m, out, id);
}

/* Encode m, decode it back and return the decode result. */
static int reencode_decode(const Manifest *m)
{
	struct buf b = BUF_INIT;
	Manifest *d = NULL;
	encode(m, &b, NULL);
	int rc = manifest_decode(b.ptr, b.len, &d);
	if (rc == 0)
		assert_non_null(d);
	else
		assert_null(d);
	manifest_free(d);
	buf_close(&b);
	return rc;
}

static void assert_entries_equal(const FileEntry *a, const FileEntry *b)
{
	assert_string_equal(a->path, b->path);
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->mtime_ns, b->mtime_ns);
	assert_string_equal(a->link_target, b->link_target);
	assert_int_equal(a->hardlink_to, b->hardlink_to);
	assert_string_equal(a->source_digest, b->source_digest);
	assert_int_equal(a->block_hashes.len, b->block_hashes.len);
	if (a->block_hashes.len)
		assert_memory_equal(a->block_hashes.data, b->block_hashes.data,
				    a->block_hashes.len);
}

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

	CHANGED(b.m.format = 2);
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
	REJECT(SB_EPROTO, b->m.format = 2);
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
	next.hashes[4] = calloc(1, next.e[1].block_hashes.len);
	next.e[4].block_hashes.data = next.hashes[4];
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
	mb_close(&prev);
	mb_close(&next);
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
