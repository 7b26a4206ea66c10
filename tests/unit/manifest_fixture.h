/* Manifests built in memory for the manifest tests (test_manifest.c,
 * test_manifest_validate.c). */
#ifndef SYNCBIT_TEST_MANIFEST_FIXTURE_H
#define SYNCBIT_TEST_MANIFEST_FIXTURE_H

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

static inline void mb_init(struct mbuild *b, uint32_t block_size)
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
static inline void mb_set_hashes(struct mbuild *b, FileEntry *f, uint8_t seed)
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
static inline void mb_reset(struct mbuild *b, uint32_t block_size)
{
	for (size_t i = 0; i < MB_MAX; i++)
		free(b->hashes[i]);
	mb_init(b, block_size);
}

static inline FileEntry *mb_add(struct mbuild *b, const char *path, int type, uint64_t size,
				uint8_t seed)
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

static inline FileEntry *mb_link(struct mbuild *b, const char *path, const char *target)
{
	FileEntry *f = mb_add(b, path, SYNCBIT__FILE_TYPE__FILE_SYMLINK, 0, 0);
	f->link_target = (char *)target;
	f->mode = 0777;
	return f;
}

/* A hardlink to entry `to` (0-based): same size and hashes. */
static inline FileEntry *mb_hardlink(struct mbuild *b, const char *path, size_t to)
{
	FileEntry *t = &b->e[to];
	FileEntry *f = mb_add(b, path, SYNCBIT__FILE_TYPE__FILE_REGULAR, 0, 0);
	f->size = t->size;
	f->hardlink_to = (uint32_t)to + 1;
	f->block_hashes = t->block_hashes;
	return f;
}

static inline void mb_close(struct mbuild *b)
{
	for (size_t i = 0; i < MB_MAX; i++)
		free(b->hashes[i]);
}

/* Every kind of entry: directories, files of several sizes (empty, one
 * block, exact multiple, many blocks with a short tail), hardlinks (to a
 * multi-block and to an empty file) and symlinks. */
static inline void mb_sample(struct mbuild *b)
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

static inline void encode(const Manifest *m, struct buf *out, struct hash_id *id)
{
	buf_reset(out);
	manifest_encode(m, out, id);
}

/* Encode m, decode it back and return the decode result. */
static inline int reencode_decode(const Manifest *m)
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

static inline void assert_entries_equal(const FileEntry *a, const FileEntry *b)
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

#endif
