#include "tests/unit/cache_fixture.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_partial_to_object),
	    T(test_partial_edges),
	    T(test_resume_after_reopen),
	    T(test_resume_changed),
	    T(test_dedup),
	    T(test_object_check),
	    T(test_lock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
