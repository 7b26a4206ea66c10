/* Shared by the cache's unit tests (test_cache*.c): a cache in a temp
 * directory per test, deterministic file contents, and helpers that make
 * partials, objects, manifests and datasets from them. */
#ifndef SYNCBIT_CACHE_FIXTURE_H
#define SYNCBIT_CACHE_FIXTURE_H

#include "tests/unit/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "agent/cache.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/manifest.h"

#define BS	 4096u
#define MTIME_NS 1600000000123456789ll

struct fixture {
	char *dir;
	struct cache *c;
};

static inline int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	f->dir = testutil_mkdtemp();
	if (!f->dir || cache_open(f->dir, 0, &f->c) != 0) {
		testutil_rmtree(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static inline int teardown(void **state)
{
	struct fixture *f = *state;
	cache_free(f->c);
	testutil_rmtree(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ---- */

/* Deterministic file content: equal seeds and sizes give equal bytes. */
static inline uint8_t *content(uint8_t seed, uint64_t size)
{
	uint8_t *d = malloc(size ? size : 1);
	for (uint64_t i = 0; i < size; i++)
		d[i] = (uint8_t)(seed * 31 + i * 7 + i / BS);
	return d;
}

static inline struct hash_id block_hash(const uint8_t *data, uint64_t size, uint64_t idx)
{
	struct hash_id h;
	hash_sha256(data + idx * BS, manifest_block_len(size, BS, idx), &h);
	return h;
}

static inline struct hash_id key_of(const char *name)
{
	struct hash_id k;
	hash_sha256(name, strlen(name), &k);
	return k;
}

/* pwrite the listed blocks, sync and commit them. */
static inline void put_blocks(struct cache_partial *p, const uint8_t *data, uint64_t size,
			      const uint64_t *idx, size_t n)
{
	struct hash_id *h = calloc(n ? n : 1, sizeof *h);
	for (size_t i = 0; i < n; i++) {
		uint32_t len = manifest_block_len(size, BS, idx[i]);
		assert_int_equal(
		    pwrite(cache_partial_fd(p), data + idx[i] * BS, len, (off_t)(idx[i] * BS)),
		    len);
		h[i] = block_hash(data, size, idx[i]);
	}
	assert_int_equal(cache_partial_sync(p), 0);
	assert_int_equal(cache_partial_commit(p, idx, h, n), 0);
	free(h);
}

static inline void put_all_blocks(struct cache_partial *p, const uint8_t *data, uint64_t size)
{
	uint64_t nb = manifest_nblocks(size, BS);
	uint64_t *idx = calloc(nb ? nb : 1, sizeof *idx);
	for (uint64_t i = 0; i < nb; i++)
		idx[i] = i;
	put_blocks(p, data, size, idx, nb);
	free(idx);
}

static inline struct hash_id object_id_of(uint8_t seed, uint64_t size)
{
	uint8_t *d = content(seed, size);
	uint64_t nb = manifest_nblocks(size, BS);
	uint8_t *hs = malloc(nb * HASH_LEN + 1);
	for (uint64_t i = 0; i < nb; i++) {
		struct hash_id h = block_hash(d, size, i);
		memcpy(hs + i * HASH_LEN, h.b, HASH_LEN);
	}
	struct hash_id id;
	manifest_file_object_id(size, BS, hs, nb, &id);
	free(hs);
	free(d);
	return id;
}

/* A whole object through a partial named keyname. */
static inline struct hash_id make_object(struct cache *c, const char *keyname, uint8_t seed,
					 uint64_t size)
{
	struct hash_id key = key_of(keyname), id;
	struct cache_partial *p;
	uint8_t *d = content(seed, size);
	assert_int_equal(cache_partial_open(c, &key, size, BS, &p), 0);
	put_all_blocks(p, d, size);
	assert_int_equal(cache_partial_finish(p, 0644, MTIME_NS, &id), 0);
	free(d);
	struct hash_id want = object_id_of(seed, size);
	assert_memory_equal(&id, &want, sizeof id);
	return id;
}

struct spec {
	const char *path;
	uint8_t seed;
	uint64_t size;
};

/* The encoded manifest of regular files with the given contents. */
static inline void make_manifest(const struct spec *s, size_t n, struct buf *out,
				 struct hash_id *id)
{
	Manifest m;
	FileEntry *e = calloc(n ? n : 1, sizeof *e);
	FileEntry **ptrs = calloc(n ? n : 1, sizeof *ptrs);
	syncbit__manifest__init(&m);
	m.format = MANIFEST_FORMAT;
	m.block_size = BS;
	m.source = (char *)"file:///srv/ds";
	m.n_files = n;
	m.files = ptrs;
	for (size_t i = 0; i < n; i++) {
		syncbit__file_entry__init(&e[i]);
		e[i].path = (char *)s[i].path;
		e[i].size = s[i].size;
		e[i].mode = 0644;
		uint8_t *d = content(s[i].seed, s[i].size);
		uint64_t nb = manifest_nblocks(s[i].size, BS);
		e[i].block_hashes.len = nb * HASH_LEN;
		e[i].block_hashes.data = malloc(nb * HASH_LEN + 1);
		for (uint64_t k = 0; k < nb; k++) {
			struct hash_id h = block_hash(d, s[i].size, k);
			memcpy(e[i].block_hashes.data + k * HASH_LEN, h.b, HASH_LEN);
		}
		free(d);
		ptrs[i] = &e[i];
	}
	assert_int_equal(manifest_validate(&m), 0);
	buf_reset(out);
	manifest_encode(&m, out, id);
	for (size_t i = 0; i < n; i++)
		free(e[i].block_hashes.data);
	free(e);
	free(ptrs);
}

static inline int set_dataset(struct cache *c, const char *name, const struct spec *s, size_t n)
{
	struct buf b = BUF_INIT;
	struct hash_id id;
	make_manifest(s, n, &b, &id);
	char target[64];
	snprintf(target, sizeof target, "/srv/%s", name);
	int rc = cache_dataset_set(c, name, "file:///srv/ds", target, &id, b.ptr, b.len);
	buf_close(&b);
	return rc;
}

static inline struct cache_stats stats(struct cache *c)
{
	struct cache_stats st;
	assert_int_equal(cache_stats(c, &st), 0);
	return st;
}

/* Indexed and unchanged on disk. */
static inline int present(struct cache *c, const struct hash_id *id)
{
	int rc = cache_object_check(c, id);
	assert_true(rc == 0 || rc == 1);
	return rc;
}

static inline int file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static inline size_t count_objects_on_disk(const char *dir)
{
	char objs[4200];
	size_t n = 0;
	snprintf(objs, sizeof objs, "%s/objects", dir);
	DIR *top = opendir(objs);
	struct dirent *e;
	while (top && (e = readdir(top))) {
		if (e->d_name[0] == '.')
			continue;
		char sub[4600];
		snprintf(sub, sizeof sub, "%s/%s", objs, e->d_name);
		DIR *d = opendir(sub);
		struct dirent *g;
		while (d && (g = readdir(d)))
			if (g->d_name[0] != '.')
				n++;
		if (d)
			closedir(d);
	}
	if (top)
		closedir(top);
	return n;
}

static inline void assert_file_content(const char *path, const uint8_t *want, uint64_t size)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, size);
	uint8_t *got = malloc(size + 1);
	assert_int_equal(read(fd, got, size + 1), size);
	close(fd);
	if (size)
		assert_memory_equal(got, want, size);
	free(got);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

#endif
