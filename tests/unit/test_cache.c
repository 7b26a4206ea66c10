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

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	f->dir = testutil_mkdtemp();
	if (!f->dir || cache_open(f->dir, 0, &f->c) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	cache_free(f->c);
	testutil_rmtree(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ---- */

/* Deterministic file content: equal seeds and sizes give equal bytes. */
static uint8_t *content(uint8_t seed, uint64_t size)
{
	uint8_t *d = malloc(size ? size : 1);
	for (uint64_t i = 0; i < size; i++)
		d[i] = (uint8_t)(seed * 31 + i * 7 + i / BS);
	return d;
}

static struct hash_id block_hash(const uint8_t *data, uint64_t size, uint64_t idx)
{
	struct hash_id h;
	hash_sha256(data + idx * BS, manifest_block_len(size, BS, idx), &h);
	return h;
}

static struct hash_id key_of(const char *name)
{
	struct hash_id k;
	hash_sha256(name, strlen(name), &k);
	return k;
}

/* pwrite the listed blocks, sync and commit them. */
static void put_blocks(struct cache_partial *p, const uint8_t *data, uint64_t size,
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

static void put_all_blocks(struct cache_partial *p, const uint8_t *data, uint64_t size)
{
	uint64_t nb = manifest_nblocks(size, BS);
	uint64_t *idx = calloc(nb ? nb : 1, sizeof *idx);
	for (uint64_t i = 0; i < nb; i++)
		idx[i] = i;
	put_blocks(p, data, size, idx, nb);
	free(idx);
}

static struct hash_id object_id_of(uint8_t seed, uint64_t size)
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
static struct hash_id make_object(struct cache *c, const char *keyname, uint8_t seed, uint64_t size)
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
static void make_manifest(const struct spec *s, size_t n, struct buf *out, struct hash_id *id)
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

static int set_dataset(struct cache *c, const char *name, const struct spec *s, size_t n)
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

static struct cache_stats stats(struct cache *c)
{
	struct cache_stats st;
	assert_int_equal(cache_stats(c, &st), 0);
	return st;
}

/* Indexed and unchanged on disk. */
static int present(struct cache *c, const struct hash_id *id)
{
	int rc = cache_object_check(c, id);
	assert_true(rc == 0 || rc == 1);
	return rc;
}

static int file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static size_t count_objects_on_disk(const char *dir)
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

static void assert_file_content(const char *path, const uint8_t *want, uint64_t size)
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

/* ---- (a) partial -> object ---- */

static void test_partial_to_object(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	uint64_t size = 3 * BS + 100;
	uint8_t *d = content(7, size);
	struct hash_id key = key_of("src/a.bin"), id;
	struct cache_partial *p;
	struct cache_block_loc loc;

	assert_int_equal(cache_partial_open(c, &key, size, BS, &p), 0);
	assert_int_equal(cache_partial_nblocks(p), 4);
	for (uint64_t i = 0; i < 5; i++)
		assert_int_equal(cache_partial_have(p, i, NULL), 0);

	/* Two commits, out of order. */
	uint64_t first[] = {3, 1}, second[] = {0, 2};
	put_blocks(p, d, size, first, 2);
	struct hash_id h3 = block_hash(d, size, 3), got;
	assert_int_equal(cache_partial_have(p, 3, &got), 1);
	assert_memory_equal(&got, &h3, sizeof got);
	assert_int_equal(cache_partial_have(p, 0, NULL), 0);
	/* Committed blocks are findable in the partial already. */
	assert_int_equal(cache_block_find(c, &h3, &loc), 1);
	char ppath[4200];
	snprintf(ppath, sizeof ppath, "%s/partial/", f->dir);
	assert_memory_equal(loc.path, ppath, strlen(ppath));
	assert_int_equal(loc.offset, 3 * BS);
	assert_int_equal(loc.len, 100);
	assert_int_equal(cache_partial_commit(p, (uint64_t[]){4}, &h3, 1), SB_EPROTO);
	put_blocks(p, d, size, second, 2);

	assert_int_equal(cache_partial_finish(p, 0640, MTIME_NS, &id), 0);
	struct hash_id want = object_id_of(7, size);
	assert_memory_equal(&id, &want, sizeof id);

	char opath[4200];
	cache_object_path(c, &id, opath, sizeof opath);
	assert_file_content(opath, d, size);
	struct stat st;
	assert_int_equal(stat(opath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec, MTIME_NS);
	assert_false(file_exists(loc.path)); /* the partial became the object */

	for (uint64_t i = 0; i < 4; i++) {
		struct hash_id h = block_hash(d, size, i);
		assert_int_equal(cache_block_find(c, &h, &loc), 1);
		assert_string_equal(loc.path, opath);
		assert_int_equal(loc.offset, i * BS);
		assert_int_equal(loc.len, manifest_block_len(size, BS, i));
	}
	struct cache_stats s = stats(c);
	assert_int_equal(s.used, size);
	assert_int_equal(s.objects, 1);
	assert_int_equal(s.pinned, 0);
	assert_int_equal(present(c, &id), 1);
	free(d);
}

static void test_partial_edges(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	struct cache_partial *p;
	struct hash_id key = key_of("empty"), id;
	struct cache_block_loc loc;

	/* An empty file is an object with no blocks. */
	assert_int_equal(cache_partial_open(c, &key, 0, BS, &p), 0);
	assert_int_equal(cache_partial_nblocks(p), 0);
	assert_int_equal(cache_partial_finish(p, 0600, MTIME_NS, &id), 0);
	struct hash_id want = object_id_of(0, 0);
	assert_memory_equal(&id, &want, sizeof id);
	char opath[4200];
	cache_object_path(c, &id, opath, sizeof opath);
	assert_file_content(opath, NULL, 0);
	assert_int_equal(present(c, &id), 1);

	/* Finishing with a block missing fails, and the partial stays
	 * resumable. */
	uint64_t size = 2 * BS;
	uint8_t *d = content(9, size);
	key = key_of("missing");
	assert_int_equal(cache_partial_open(c, &key, size, BS, &p), 0);
	put_blocks(p, d, size, (uint64_t[]){0}, 1);
	assert_int_equal(cache_partial_finish(p, 0644, MTIME_NS, &id), SB_EPROTO);
	assert_int_equal(cache_partial_open(c, &key, size, BS, &p), 0);
	assert_int_equal(cache_partial_have(p, 0, NULL), 1);
	assert_int_equal(cache_partial_have(p, 1, NULL), 0);

	/* Discarding drops the file and the block locations. */
	struct hash_id h0 = block_hash(d, size, 0);
	assert_int_equal(cache_block_find(c, &h0, &loc), 1);
	char ppath[4200];
	snprintf(ppath, sizeof ppath, "%s", loc.path);
	cache_partial_discard(p);
	assert_int_equal(cache_block_find(c, &h0, &loc), 0);
	assert_false(file_exists(ppath));
	assert_int_equal(cache_partial_open(c, &key, size, BS, &p), 0);
	assert_int_equal(cache_partial_have(p, 0, NULL), 0);
	cache_partial_discard(p);
	cache_partial_discard(NULL);
	cache_partial_close(NULL);
	free(d);
}

/* ---- (b) persistence ---- */

static void test_resume_after_reopen(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 4 * BS - 1;
	uint8_t *d = content(11, size);
	struct hash_id key = key_of("resume"), id, got;
	struct cache_partial *p;
	struct spec ds[] = {{"x", 12, 5000}};

	struct hash_id xid = make_object(f->c, "x", 12, 5000);
	assert_int_equal(set_dataset(f->c, "ds", ds, 1), 0);
	struct cache_dataset before;
	assert_int_equal(cache_dataset_get(f->c, "ds", &before), 1);

	assert_int_equal(cache_partial_open(f->c, &key, size, BS, &p), 0);
	put_blocks(p, d, size, (uint64_t[]){0, 2}, 2);
	/* Written but never committed: must not count after a restart. */
	assert_int_equal(pwrite(cache_partial_fd(p), d + BS, BS, BS), BS);
	cache_partial_close(p);
	cache_free(f->c);
	f->c = NULL;

	assert_int_equal(cache_open(f->dir, 0, &f->c), 0);
	assert_int_equal(cache_partial_open(f->c, &key, size, BS, &p), 0);
	for (uint64_t i = 0; i < 4; i++) {
		int have = cache_partial_have(p, i, &got);
		assert_int_equal(have, i == 0 || i == 2);
		if (have) {
			struct hash_id h = block_hash(d, size, i);
			assert_memory_equal(&got, &h, sizeof h);
		}
	}
	put_blocks(p, d, size, (uint64_t[]){1, 3}, 2);
	assert_int_equal(cache_partial_finish(p, 0644, MTIME_NS, &id), 0);
	char opath[4200];
	cache_object_path(f->c, &id, opath, sizeof opath);
	assert_file_content(opath, d, size);

	/* Datasets, manifests and pins survived. */
	struct cache_dataset after;
	assert_int_equal(cache_dataset_get(f->c, "ds", &after), 1);
	assert_string_equal(after.name, "ds");
	assert_string_equal(after.source, before.source);
	assert_string_equal(after.target, "/srv/ds");
	assert_memory_equal(&after.manifest_id, &before.manifest_id, HASH_LEN);
	assert_int_equal(after.updated_unix, before.updated_unix);
	uint8_t *mdata;
	size_t mlen;
	assert_int_equal(cache_manifest_get(f->c, &after.manifest_id, &mdata, &mlen), 1);
	struct hash_id mid;
	hash_sha256(mdata, mlen, &mid);
	assert_memory_equal(&mid, &after.manifest_id, HASH_LEN);
	free(mdata);
	cache_dataset_close(&after);
	assert_int_equal(cache_dataset_find_target(f->c, "/srv/ds", &after), 1);
	assert_string_equal(after.name, "ds");
	cache_dataset_close(&after);
	cache_dataset_close(&before);
	assert_int_equal(cache_dataset_find_target(f->c, "/srv/none", &after), 0);
	assert_int_equal(cache_dataset_get(f->c, "none", &after), 0);
	assert_int_equal(stats(f->c).pinned, 5000);
	assert_int_equal(stats(f->c).used, 5000 + size);
	assert_int_equal(present(f->c, &xid), 1);
	free(d);
}

/* A partial reopened with another size or block size, or whose file went
 * away, starts over: none of its old blocks may still be found. */
static void test_resume_changed(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 4 * BS;
	uint8_t *d = content(13, size);
	struct hash_id key = key_of("changed");
	struct cache_partial *p;
	struct cache_block_loc loc;

	assert_int_equal(cache_partial_open(f->c, &key, size, BS, &p), 0);
	put_all_blocks(p, d, size);
	cache_partial_close(p);

	assert_int_equal(cache_partial_open(f->c, &key, size, 2 * BS, &p), 0);
	assert_int_equal(cache_partial_nblocks(p), 2);
	assert_int_equal(cache_partial_have(p, 0, NULL), 0);
	assert_int_equal(cache_partial_have(p, 1, NULL), 0);
	for (uint64_t i = 0; i < 4; i++) {
		struct hash_id h = block_hash(d, size, i);
		if (cache_block_find(f->c, &h, &loc) != 0)
			fail_msg("block %d still located at %s+%llu", (int)i, loc.path,
				 (unsigned long long)loc.offset);
	}
	cache_partial_close(p);

	/* The file vanished while the cache was closed. */
	assert_int_equal(cache_partial_open(f->c, &key, size, BS, &p), 0);
	put_blocks(p, d, size, (uint64_t[]){0}, 1);
	char path[4200];
	struct hash_id h0 = block_hash(d, size, 0);
	assert_int_equal(cache_block_find(f->c, &h0, &loc), 1);
	snprintf(path, sizeof path, "%s", loc.path);
	cache_partial_close(p);
	cache_free(f->c);
	f->c = NULL;
	assert_int_equal(unlink(path), 0);
	assert_int_equal(cache_open(f->dir, 0, &f->c), 0);
	assert_int_equal(cache_partial_open(f->c, &key, size, BS, &p), 0);
	assert_int_equal(cache_partial_have(p, 0, NULL), 0);
	assert_int_equal(cache_block_find(f->c, &h0, &loc), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, size);
	cache_partial_discard(p);
	free(d);
}

/* ---- (c) dedup ---- */

static void test_dedup(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 2 * BS + 1;
	struct hash_id a = make_object(f->c, "src1/file", 21, size);
	struct hash_id b = make_object(f->c, "src2/copy", 21, size);
	assert_memory_equal(&a, &b, sizeof a);
	struct cache_stats s = stats(f->c);
	assert_int_equal(s.objects, 1);
	assert_int_equal(s.used, size);
	assert_int_equal(count_objects_on_disk(f->dir), 1);

	/* No partial file is left, and each block has one location: the
	 * object. */
	char ppath[4200];
	struct hash_id k2 = key_of("src2/copy");
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(&k2, hex);
	snprintf(ppath, sizeof ppath, "%s/partial/%s", f->dir, hex);
	assert_false(file_exists(ppath));
	uint8_t *d = content(21, size);
	char opath[4200];
	cache_object_path(f->c, &a, opath, sizeof opath);
	for (uint64_t i = 0; i < 3; i++) {
		struct hash_id h = block_hash(d, size, i);
		struct cache_block_loc loc;
		assert_int_equal(cache_block_find(f->c, &h, &loc), 1);
		assert_string_equal(loc.path, opath);
	}
	/* After evicting it, nothing points at it any more. */
	uint64_t n, bytes;
	assert_int_equal(cache_evict(f->c, 0, &n, &bytes), 0);
	assert_int_equal(n, 1);
	assert_int_equal(bytes, size);
	for (uint64_t i = 0; i < 3; i++) {
		struct hash_id h = block_hash(d, size, i);
		struct cache_block_loc loc;
		assert_int_equal(cache_block_find(f->c, &h, &loc), 0);
	}
	free(d);
}

/* ---- (d) pins ---- */

static void test_pins(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	struct hash_id a = make_object(c, "a", 31, 1000);
	struct hash_id b = make_object(c, "b", 32, 2000);
	struct hash_id x = make_object(c, "x", 33, 4000);
	uint64_t n, bytes;

	struct spec v1[] = {{"a", 31, 1000}, {"b", 32, 2000}, {"b2", 32, 2000}};
	struct spec v2[] = {{"b", 32, 2000}, {"c", 33, 4000}};
	assert_int_equal(set_dataset(c, "ds", v1, 3), 0);
	assert_int_equal(stats(c).pinned, 3000);
	/* Setting the same version again changes nothing. */
	assert_int_equal(set_dataset(c, "ds", v1, 3), 0);
	assert_int_equal(stats(c).pinned, 3000);

	struct cache_dataset d1;
	assert_int_equal(cache_dataset_get(c, "ds", &d1), 1);
	assert_int_equal(set_dataset(c, "ds", v2, 2), 0);
	assert_int_equal(stats(c).pinned, 6000);
	/* The old manifest went with its last user. */
	uint8_t *m;
	size_t ml;
	assert_int_equal(cache_manifest_get(c, &d1.manifest_id, &m, &ml), 0);
	cache_dataset_close(&d1);

	/* Only a, no longer referenced, can go, even with target 0. */
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 1);
	assert_int_equal(bytes, 1000);
	assert_int_equal(present(c, &a), 0);
	assert_int_equal(present(c, &b), 1);
	assert_int_equal(present(c, &x), 1);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 0);
	struct cache_stats s = stats(c);
	assert_int_equal(s.used, 6000);
	assert_int_equal(s.pinned, 6000);

	/* A second dataset sharing b keeps it pinned when the first goes. */
	struct spec w[] = {{"same-b", 32, 2000}};
	assert_int_equal(set_dataset(c, "other", w, 1), 0);
	assert_int_equal(stats(c).pinned, 6000);
	assert_int_equal(cache_dataset_remove(c, "ds"), 0);
	assert_int_equal(cache_dataset_remove(c, "ds"), SB_ENOTFOUND);
	assert_int_equal(stats(c).pinned, 2000);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 1);
	assert_int_equal(present(c, &x), 0);
	assert_int_equal(present(c, &b), 1);
	assert_int_equal(cache_dataset_remove(c, "other"), 0);
	assert_int_equal(stats(c).pinned, 0);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 1);
	s = stats(c);
	assert_int_equal(s.used, 0);
	assert_int_equal(s.objects, 0);

	/* A manifest naming an object the cache does not hold is refused and
	 * changes nothing. */
	assert_int_equal(set_dataset(c, "ghost", v2, 2), SB_ENOTFOUND);
	assert_int_equal(cache_dataset_get(c, "ghost", &d1), 0);
	/* So is one that does not decode. */
	struct hash_id zero = {{0}};
	assert_int_equal(cache_dataset_set(c, "bad", "s", "/t", &zero, "\x0f", 1), SB_EPROTO);
}

/* An object dropped because it changed on disk and then fetched again
 * starts unpinned; setting the same version again (a repairing pull) must
 * pin it once more, or eviction would take a current dataset's file. */
static void test_pins_after_refetch(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	struct hash_id a = make_object(c, "a", 34, 3000);
	struct spec v[] = {{"a", 34, 3000}, {"b", 35, 100}};
	make_object(c, "b", 35, 100);
	assert_int_equal(set_dataset(c, "ds", v, 2), 0);
	assert_int_equal(stats(c).pinned, 3100);

	char pa[4200];
	cache_object_path(c, &a, pa, sizeof pa);
	assert_int_equal(truncate(pa, 10), 0);
	assert_int_equal(present(c, &a), 0);
	assert_int_equal(stats(c).pinned, 100);

	make_object(c, "a-again", 34, 3000);
	assert_int_equal(set_dataset(c, "ds", v, 2), 0);
	assert_int_equal(stats(c).pinned, 3100);
	uint64_t n, bytes;
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 0);
	assert_int_equal(present(c, &a), 1);
	/* Counted once: removing the dataset unpins it completely. */
	assert_int_equal(cache_dataset_remove(c, "ds"), 0);
	assert_int_equal(stats(c).pinned, 0);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 2);
}

/* ---- (e) LFRU ---- */

static void test_lfru_key(void **state)
{
	assert_true(fabs(cache_lfru_key(1, 0)) < 1e-12);
	assert_true(fabs(cache_lfru_key(2, 0) - 1) < 1e-12);
	assert_true(fabs(cache_lfru_key(8, 3600) - 4) < 1e-12);
	assert_true(fabs(cache_lfru_key(1, 1800) - 0.5) < 1e-12);
	assert_true(fabs(cache_lfru_key(1024, 7200) - 12) < 1e-12);
	/* An hour of recency is worth a doubling of frequency. */
	assert_true(fabs(cache_lfru_key(4, 0) - cache_lfru_key(2, 3600)) < 1e-12);
	assert_true(cache_lfru_key(3, 100) > cache_lfru_key(2, 100));
	assert_true(cache_lfru_key(2, 101) > cache_lfru_key(2, 100));
}

static void touch_n(struct cache *c, const struct hash_id *id, double from, int n)
{
	for (int i = 0; i < n; i++) {
		cache_set_clock(c, from + i);
		assert_int_equal(cache_object_touch(c, id, 1), 0);
	}
}

static void test_lfru_order(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	const double t0 = 1e6, t1 = t0 + 100000; /* ~28 h later */
	struct hash_id id[7];
	const char *what[7] = {
	    "probation, old",
	    "probation, recent",
	    "main, 10 touches long ago",
	    "main, 1 touch recently",
	    "main, 1 touch 10 minutes later",
	    "main, 5 touches recently",
	    "main, 20 touches recently",
	};

	cache_set_clock(c, t0);
	id[0] = make_object(c, "o0", 40, BS);
	id[2] = make_object(c, "o2", 42, BS);
	touch_n(c, &id[2], t0 + 1, 10);
	cache_set_clock(c, t1);
	id[1] = make_object(c, "o1", 41, BS);
	id[3] = make_object(c, "o3", 43, BS);
	id[4] = make_object(c, "o4", 44, BS);
	id[5] = make_object(c, "o5", 45, BS);
	id[6] = make_object(c, "o6", 46, BS);
	touch_n(c, &id[3], t1 + 1, 1);
	touch_n(c, &id[5], t1 + 1, 5);
	touch_n(c, &id[6], t1 + 2, 20);
	touch_n(c, &id[4], t1 + 600, 1);
	/* Touching an unknown object is not an error. */
	struct hash_id none = key_of("none");
	assert_int_equal(cache_object_touch(c, &none, 1), 0);
	cache_set_clock(c, t1 + 700);

	for (int k = 0; k < 7; k++) {
		uint64_t used = stats(c).used, n, bytes;
		assert_int_equal(used, (7 - k) * (uint64_t)BS);
		assert_int_equal(cache_evict(c, used - BS, &n, &bytes), 0);
		assert_int_equal(n, 1);
		assert_int_equal(bytes, BS);
		for (int j = 0; j < 7; j++)
			if (present(c, &id[j]) != (j > k))
				fail_msg("evicting #%d (%s): #%d (%s) is %s", k, what[k], j,
					 what[j], j > k ? "gone" : "still there");
	}
	cache_set_clock(c, 0);
}

/* ---- (f) changed on disk ---- */

static void test_object_check(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	struct hash_id a = make_object(c, "a", 51, 3 * BS);
	struct hash_id b = make_object(c, "b", 52, 3 * BS);
	struct hash_id e = make_object(c, "e", 53, 3 * BS);
	char pa[4200], pb[4200], pe[4200];
	cache_object_path(c, &a, pa, sizeof pa);
	cache_object_path(c, &b, pb, sizeof pb);
	cache_object_path(c, &e, pe, sizeof pe);
	struct spec ds[] = {{"a", 51, 3 * BS}};
	assert_int_equal(set_dataset(c, "ds", ds, 1), 0);
	assert_int_equal(present(c, &a), 1);

	/* Same size, new mtime (something wrote into it). */
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 12345}};
	assert_int_equal(utimensat(AT_FDCWD, pa, ts, 0), 0);
	assert_int_equal(cache_object_check(c, &a), 0);
	assert_false(file_exists(pa));
	assert_int_equal(stats(c).pinned, 0);

	/* Size changed, mtime restored. */
	struct stat st;
	assert_int_equal(stat(pb, &st), 0);
	assert_int_equal(truncate(pb, BS), 0);
	struct timespec keep[2] = {st.st_atim, st.st_mtim};
	assert_int_equal(utimensat(AT_FDCWD, pb, keep, 0), 0);
	assert_int_equal(cache_object_check(c, &b), 0);
	assert_false(file_exists(pb));

	/* Gone. */
	assert_int_equal(unlink(pe), 0);
	assert_int_equal(cache_object_check(c, &e), 0);

	struct cache_stats s = stats(c);
	assert_int_equal(s.objects, 0);
	assert_int_equal(s.used, 0);
	uint8_t *d = content(52, 3 * BS);
	struct hash_id h = block_hash(d, 3 * BS, 1);
	struct cache_block_loc loc;
	assert_int_equal(cache_block_find(c, &h, &loc), 0);
	free(d);
	/* Unknown ids are simply absent. */
	struct hash_id none = key_of("none");
	assert_int_equal(cache_object_check(c, &none), 0);

	/* Fetched again, it is an object again. */
	struct hash_id a2 = make_object(c, "a-again", 51, 3 * BS);
	assert_memory_equal(&a, &a2, sizeof a);
	assert_int_equal(present(c, &a), 1);
	assert_int_equal(cache_object_remove(c, &a), 0);
	assert_false(file_exists(pa));
	assert_int_equal(present(c, &a), 0);
}

/* ---- (g) eviction and orphans ---- */

static void test_evict_and_orphans(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	struct hash_id a = make_object(c, "a", 61, 2 * BS);
	struct hash_id b = make_object(c, "b", 62, BS + 3);
	char pa[4200], pb[4200];
	cache_object_path(c, &a, pa, sizeof pa);
	cache_object_path(c, &b, pb, sizeof pb);
	uint64_t n, bytes;

	/* Under the target: nothing goes. */
	assert_int_equal(cache_evict(c, 3 * BS + 3, &n, &bytes), 0);
	assert_int_equal(n, 0);
	assert_int_equal(bytes, 0);

	/* Files nobody indexed: an object (as after a crash between rename
	 * and commit), a partial without a record; and a live partial. */
	struct hash_id orphan = key_of("orphan");
	char po[4200], pp[4200], junk[4200];
	cache_object_path(c, &orphan, po, sizeof po);
	char *slash = strrchr(po, '/');
	*slash = '\0';
	mkdir(po, 0755);
	*slash = '/';
	int fd = open(po, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	char hex[HASH_HEX_LEN + 1];
	struct hash_id pkey = key_of("stray-partial");
	hash_to_hex(&pkey, hex);
	snprintf(pp, sizeof pp, "%s/partial/%s", f->dir, hex);
	fd = open(pp, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(junk, sizeof junk, "%s/partial/not-a-key", f->dir);
	fd = open(junk, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	struct cache_partial *live;
	struct hash_id lkey = key_of("live");
	assert_int_equal(cache_partial_open(c, &lkey, BS, BS, &live), 0);
	char pl[4200];
	hash_to_hex(&lkey, hex);
	snprintf(pl, sizeof pl, "%s/partial/%s", f->dir, hex);

	assert_int_equal(cache_evict(c, UINT64_MAX, &n, &bytes), 0);
	assert_int_equal(n, 0);
	assert_false(file_exists(po));
	assert_false(file_exists(pp));
	assert_true(file_exists(junk));
	assert_true(file_exists(pl));
	assert_true(file_exists(pa));
	assert_true(file_exists(pb));
	cache_partial_discard(live);

	/* Down to zero: files and every block location go. */
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 2);
	assert_int_equal(bytes, 3 * BS + 3);
	assert_false(file_exists(pa));
	assert_false(file_exists(pb));
	assert_int_equal(count_objects_on_disk(f->dir), 0);
	uint8_t *da = content(61, 2 * BS), *db = content(62, BS + 3);
	for (uint64_t i = 0; i < 2; i++) {
		struct cache_block_loc loc;
		struct hash_id h = block_hash(da, 2 * BS, i);
		assert_int_equal(cache_block_find(c, &h, &loc), 0);
		h = block_hash(db, BS + 3, i);
		assert_int_equal(cache_block_find(c, &h, &loc), 0);
	}
	free(da);
	free(db);
	struct cache_stats s = stats(c);
	assert_int_equal(s.used, 0);
	assert_int_equal(s.objects, 0);
	assert_int_equal(s.capacity, 0);
	cache_set_capacity(c, 1 << 20);
	assert_int_equal(stats(c).capacity, 1 << 20);
	assert_string_equal(cache_dir(c), f->dir);
}

/* ---- (h) one process per data directory ---- */

/* 1 if fd becomes readable within ms. */
static int readable_within(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int rc;
	do
		rc = poll(&p, 1, ms);
	while (rc < 0 && errno == EINTR);
	return rc > 0;
}

static void test_lock(void **state)
{
	struct fixture *f = *state;
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The child inherits the parent's descriptors, its lock among
		 * them; it must still wait for the parent's cache_free. */
		close(pipefd[0]);
		struct cache *c2;
		int rc = cache_open(f->dir, 0, &c2);
		char ok = rc == 0 ? 'y' : 'n';
		if (write(pipefd[1], &ok, 1) != 1)
			_exit(2);
		if (rc == 0)
			cache_free(c2);
		_exit(rc == 0 ? 0 : 1);
	}
	close(pipefd[1]);
	/* Still blocked while the parent holds the directory. */
	int early = readable_within(pipefd[0], 500);
	cache_free(f->c);
	f->c = NULL;
	int late = early || readable_within(pipefd[0], 10000);
	char ok = 0;
	if (late && read(pipefd[0], &ok, 1) != 1)
		ok = 0;
	close(pipefd[0]);
	if (!late)
		kill(pid, SIGKILL);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_false(early);
	assert_true(late);
	assert_int_equal(ok, 'y');
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* And the directory can be opened again here. */
	assert_int_equal(cache_open(f->dir, 0, &f->c), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* Between a seal (pool thread) and the index commit (loop thread) a peer
 * may look a block up: the location it gets must still open and read the
 * block, and an eviction sweep meanwhile must not take the new object. */
static void test_seal_window(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	uint64_t size = 2 * BS + 9;
	uint8_t *d = content(71, size);
	struct hash_id key = key_of("sealing"), h1 = block_hash(d, size, 1);
	struct cache_partial *p;
	struct cache_block_loc loc;
	assert_int_equal(cache_partial_open(c, &key, size, BS, &p), 0);
	put_all_blocks(p, d, size);
	assert_int_equal(cache_partial_seal(p, 0644, MTIME_NS, 1), 0);

	assert_int_equal(cache_block_find(c, &h1, &loc), 1);
	int fd = open(loc.path, O_RDONLY);
	assert_true(fd >= 0);
	uint8_t buf[BS];
	assert_int_equal(pread(fd, buf, loc.len, (off_t)loc.offset), loc.len);
	assert_memory_equal(buf, d + BS, BS);
	close(fd);

	uint64_t n, bytes;
	assert_int_equal(cache_evict(c, UINT64_MAX, &n, &bytes), 0);
	char opath[4200];
	cache_object_path(c, cache_partial_object_id(p), opath, sizeof opath);
	assert_true(file_exists(opath));
	char ppath[4200];
	snprintf(ppath, sizeof ppath, "%s", loc.path);

	assert_int_equal(cache_partials_finish(&p, 1), 0);
	assert_false(file_exists(ppath)); /* the partial's name went with the commit */
	assert_file_content(opath, d, size);
	assert_int_equal(cache_block_find(c, &h1, &loc), 1);
	assert_string_equal(loc.path, opath);
	struct stat st;
	assert_int_equal(stat(opath, &st), 0);
	assert_int_equal(st.st_nlink, 1);

	/* A stray object name from an earlier seal is replaced. */
	struct hash_id key2 = key_of("sealing-again");
	assert_int_equal(cache_partial_open(c, &key2, size, BS, &p), 0);
	put_all_blocks(p, d, size);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_false(file_exists(opath));
	fd = open(opath, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(cache_partial_seal(p, 0644, MTIME_NS, 1), 0);
	assert_int_equal(cache_partials_finish(&p, 1), 0);
	assert_file_content(opath, d, size);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_partial_to_object),
	    T(test_partial_edges),
	    T(test_resume_after_reopen),
	    T(test_resume_changed),
	    T(test_dedup),
	    T(test_pins),
	    T(test_pins_after_refetch),
	    cmocka_unit_test(test_lfru_key),
	    T(test_lfru_order),
	    T(test_object_check),
	    T(test_evict_and_orphans),
	    T(test_seal_window),
	    T(test_lock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
