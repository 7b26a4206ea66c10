/* Sealing partials into objects: the window before the index commit, and
 * equal files sealed on several threads at once. */
#include "tests/unit/cache_fixture.h"

#include <pthread.h>

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

/* ---- equal files sealed at once ---- */

#define SEALERS 8
#define ROUNDS	16

struct sealer {
	pthread_barrier_t *start;
	struct cache_partial *p;
	int durable;
	int rc;
};

static void *seal_thread(void *arg)
{
	struct sealer *s = arg;
	pthread_barrier_wait(s->start);
	s->rc = cache_partial_seal(s->p, 0644, MTIME_NS, s->durable);
	return NULL;
}

/* SEALERS partials of equal content (seed, size), filled and committed. */
static void open_equal(struct cache *c, const char *name, uint8_t seed, uint64_t size,
		       struct cache_partial **ps)
{
	uint8_t *d = content(seed, size);
	for (int i = 0; i < SEALERS; i++) {
		char keyname[64];
		snprintf(keyname, sizeof keyname, "%s-%u-%d", name, seed, i);
		struct hash_id key = key_of(keyname);
		assert_int_equal(cache_partial_open(c, &key, size, BS, &ps[i]), 0);
		put_all_blocks(ps[i], d, size);
	}
	free(d);
}

/* Seal them all on SEALERS threads released at once; every seal succeeds
 * and names the same object. */
static void seal_at_once(struct cache_partial **ps, int durable, const struct hash_id *want)
{
	pthread_barrier_t start;
	pthread_t th[SEALERS];
	struct sealer s[SEALERS];
	assert_int_equal(pthread_barrier_init(&start, NULL, SEALERS), 0);
	for (int i = 0; i < SEALERS; i++) {
		s[i] = (struct sealer){.start = &start, .p = ps[i], .durable = durable};
		assert_int_equal(pthread_create(&th[i], NULL, seal_thread, &s[i]), 0);
	}
	for (int i = 0; i < SEALERS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < SEALERS; i++) {
		assert_int_equal(s[i].rc, 0);
		assert_non_null(cache_partial_object_id(ps[i]));
		assert_memory_equal(cache_partial_object_id(ps[i]), want, sizeof *want);
	}
}

/* The object is indexed once, intact, with its content, and no name but
 * the object's own (and published ones) points at its file. */
static void assert_one_object(struct fixture *f, const struct hash_id *id, uint8_t seed,
			      uint64_t size, uint64_t objects)
{
	char opath[4200];
	struct stat st;
	uint8_t *d = content(seed, size);
	cache_object_path(f->c, id, opath, sizeof opath);
	assert_int_equal(present(f->c, id), 1);
	assert_file_content(opath, d, size);
	assert_int_equal(stat(opath, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(stats(f->c).objects, objects);
	assert_int_equal(stats(f->c).used, objects * size);
	assert_int_equal(count_objects_on_disk(f->dir), objects);
	struct hash_id h = block_hash(d, size, 1);
	struct cache_block_loc loc;
	assert_int_equal(cache_block_find(f->c, &h, &loc), 1);
	assert_string_equal(loc.path, opath);
	free(d);
}

/* Many files of equal content sealed on pool threads at the same moment
 * (a tree of duplicates): each seal succeeds, the object is named once,
 * and one index transaction records it once. */
static void test_seal_equal_at_once(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 3 * BS + 17;
	for (int r = 0; r < ROUNDS; r++) {
		struct cache_partial *ps[SEALERS];
		uint8_t seed = (uint8_t)(100 + r);
		struct hash_id want = object_id_of(seed, size);
		open_equal(f->c, "batch", seed, size, ps);
		seal_at_once(ps, r % 2, &want);
		assert_int_equal(cache_partials_finish(ps, SEALERS), 0);
		assert_one_object(f, &want, seed, size, (uint64_t)r + 1);
	}
}

/* The same, with each file indexed in its own transaction, the ones that
 * shared the object's file before the one that named it; an orphan sweep
 * in between keeps the claimed name. */
static void test_seal_equal_finished_apart(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 2 * BS + 5;
	for (int r = 0; r < ROUNDS; r++) {
		struct cache_partial *ps[SEALERS];
		uint8_t seed = (uint8_t)(40 + r);
		struct hash_id want = object_id_of(seed, size);
		char opath[4200];
		struct stat ost, pst;
		open_equal(f->c, "apart", seed, size, ps);
		seal_at_once(ps, 1, &want);
		cache_object_path(f->c, &want, opath, sizeof opath);
		assert_int_equal(stat(opath, &ost), 0);
		int namer = -1;
		for (int i = 0; i < SEALERS; i++) {
			assert_int_equal(fstat(cache_partial_fd(ps[i]), &pst), 0);
			if (pst.st_ino == ost.st_ino)
				namer = i;
		}
		assert_true(namer >= 0);
		uint64_t n, bytes;
		assert_int_equal(cache_evict(f->c, UINT64_MAX, &n, &bytes), 0);
		assert_true(file_exists(opath));
		for (int i = 0; i < SEALERS; i++) {
			if (i == namer)
				continue;
			assert_int_equal(cache_partials_finish(&ps[i], 1), 0);
			assert_int_equal(present(f->c, &want), 1);
			assert_int_equal(stats(f->c).used, ((uint64_t)r + 1) * size);
		}
		assert_int_equal(cache_partials_finish(&ps[namer], 1), 0);
		assert_one_object(f, &want, seed, size, (uint64_t)r + 1);
	}
}

/* The file that named the object fails before its index commit (closed,
 * left resumable): the ones sharing its file still index the object. */
static void test_seal_namer_fails(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 4 * BS;
	struct cache_partial *ps[SEALERS];
	struct hash_id want = object_id_of(9, size);
	char opath[4200];
	struct stat ost, pst;
	open_equal(f->c, "fails", 9, size, ps);
	seal_at_once(ps, 0, &want);
	cache_object_path(f->c, &want, opath, sizeof opath);
	assert_int_equal(stat(opath, &ost), 0);
	int namer = -1;
	for (int i = 0; i < SEALERS; i++) {
		assert_int_equal(fstat(cache_partial_fd(ps[i]), &pst), 0);
		if (pst.st_ino == ost.st_ino)
			namer = i;
	}
	assert_true(namer >= 0);
	cache_partial_close(ps[namer]);
	ps[namer] = ps[SEALERS - 1];
	assert_int_equal(cache_partials_finish(ps, SEALERS - 1), 0);
	assert_int_equal(present(f->c, &want), 1);
	assert_int_equal(stat(opath, &pst), 0);
	assert_int_equal(pst.st_ino, ost.st_ino);
	assert_int_equal(stats(f->c).objects, 1);
	assert_int_equal(stats(f->c).used, size);

	/* Sealed again later, the content is found in the cache. */
	struct hash_id key = key_of("fails-again"), id;
	struct cache_partial *p;
	uint8_t *d = content(9, size);
	assert_int_equal(cache_partial_open(f->c, &key, size, BS, &p), 0);
	put_all_blocks(p, d, size);
	assert_int_equal(cache_partial_finish(p, 0644, MTIME_NS, &id), 0);
	assert_memory_equal(&id, &want, sizeof id);
	assert_int_equal(stat(opath, &pst), 0);
	assert_int_equal(pst.st_ino, ost.st_ino);
	assert_int_equal(stats(f->c).used, size);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_seal_window),
	    T(test_seal_equal_at_once),
	    T(test_seal_equal_finished_apart),
	    T(test_seal_namer_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
