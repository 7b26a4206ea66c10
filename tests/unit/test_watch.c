#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "agent/cache.h"
#include "agent/watch.h"
#include "common/buf.h"
#include "common/hash.h"
#include "common/manifest.h"

#define BS	 4096u
#define SIZE	 (3 * BS + 100)
#define MTIME_NS 1600000000123456789ll
#define WAIT_MS	 20000 /* generous: the machine may be loaded */

struct fixture {
	char *dir;
	struct cache *c;
	uv_loop_t loop;
	struct watch *w;
	int damaged;
	char last[64];
	struct hash_id id;
	uint8_t data[SIZE];
	char path[4096];
};

static void on_damaged(void *arg, const char *name)
{
	struct fixture *f = arg;
	f->damaged++;
	snprintf(f->last, sizeof f->last, "%s", name);
}

static struct hash_id block_hash(const uint8_t *d, uint64_t idx)
{
	struct hash_id h;
	hash_sha256(d + idx * BS, manifest_block_len(SIZE, BS, idx), &h);
	return h;
}

/* The object of f->data, and dataset "ds" whose file f.bin it is. */
static void publish(struct fixture *f)
{
	struct hash_id key, hashes[4];
	struct cache_partial *p;
	uint64_t idx[4], nb = manifest_nblocks(SIZE, BS);
	hash_sha256("f.bin", 5, &key);
	assert_int_equal(cache_partial_open(f->c, &key, SIZE, BS, &p), 0);
	for (uint64_t i = 0; i < nb; i++) {
		uint32_t len = manifest_block_len(SIZE, BS, i);
		assert_int_equal(
		    pwrite(cache_partial_fd(p), f->data + i * BS, len, (off_t)(i * BS)), len);
		idx[i] = i;
		hashes[i] = block_hash(f->data, i);
	}
	assert_int_equal(cache_partial_sync(p), 0);
	assert_int_equal(cache_partial_commit(p, idx, hashes, nb), 0);
	assert_int_equal(cache_partial_finish(p, 0644, MTIME_NS, &f->id), 0);
	cache_object_path(f->c, &f->id, f->path, sizeof f->path);

	Manifest m = SYNCBIT__MANIFEST__INIT;
	FileEntry e = SYNCBIT__FILE_ENTRY__INIT, *ep = &e;
	m.format = MANIFEST_FORMAT;
	m.block_size = BS;
	m.source = "file:///srv/ds";
	m.files = &ep;
	m.n_files = 1;
	e.path = "f.bin";
	e.size = SIZE;
	e.mode = 0644;
	e.mtime_ns = MTIME_NS;
	e.block_hashes.data = (uint8_t *)hashes;
	e.block_hashes.len = nb * HASH_LEN;
	struct buf b = BUF_INIT;
	struct hash_id mid;
	manifest_encode(&m, &b, &mid);
	assert_int_equal(
	    cache_dataset_set(f->c, "ds", "file:///srv/ds", "/srv/ds", &mid, b.ptr, b.len), 0);
	buf_close(&b);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	f->dir = testutil_mkdtemp();
	if (!f->dir || cache_open(f->dir, 0, &f->c) != 0) {
		testutil_rmtree(f->dir);
		free(f);
		return -1;
	}
	for (size_t i = 0; i < SIZE; i++)
		f->data[i] = (uint8_t)(i * 7 + i / 300);
	uv_loop_init(&f->loop);
	publish(f);
	*state = f;
	return 0;
}

static void start(struct fixture *f)
{
	struct watch_hooks h = {.arg = f, .damaged = on_damaged};
	assert_int_equal(watch_new(&f->loop, f->c, &h, &f->w), 0);
	watch_dataset(f->w, "ds");
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	watch_free(f->w);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	cache_free(f->c);
	testutil_rmtree(f->dir);
	free(f);
	return 0;
}

/* Run the loop until *flag is non-zero or WAIT_MS passed. */
static int run_until(struct fixture *f, const int *flag)
{
	for (int i = 0; i < WAIT_MS / 5 && !*flag; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	return *flag;
}

static void set_mtime(const char *path, int64_t ns)
{
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT},
				 {.tv_sec = ns / 1000000000ll, .tv_nsec = ns % 1000000000ll}};
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void poke(const char *path, off_t off)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "!", 1, off), 1);
	close(fd);
}

static int held(struct fixture *f, uint64_t idx)
{
	struct hash_id h = block_hash(f->data, idx);
	struct cache_block_loc loc;
	return cache_block_find(f->c, &h, &loc);
}

/* A write in place: seen by inotify, hashed, out of the index. */
static void test_write_in_place(void **state)
{
	struct fixture *f = *state;
	start(f);
	watch_scan(f->w); /* its watch is in place once a check ran */
	for (int i = 0; i < 40; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	assert_int_equal(held(f, 1), 1);
	poke(f->path, BS + 10);
	assert_true(run_until(f, &f->damaged));
	assert_string_equal(f->last, "ds");
	const char *why = watch_damage(f->w, "ds");
	assert_non_null(why);
	assert_non_null(strstr(why, "/srv/ds/f.bin changed on disk (block 1 does not match"));
	assert_int_equal(held(f, 1), 0); /* no longer served */
	assert_int_equal(held(f, 0), 0);
	assert_null(watch_damage(f->w, "other"));
}

/* Only the time changed: the content is hashed, found intact, and the
 * index takes the file back as it was. */
static void test_touch_only(void **state)
{
	struct fixture *f = *state;
	start(f);
	set_mtime(f->path, MTIME_NS + 5000000000ll);
	assert_int_equal(cache_object_intact(f->c, &f->id), 0);
	watch_scan(f->w);
	int intact = 0;
	for (int i = 0; i < WAIT_MS / 5 && !intact; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(5000);
		intact = cache_object_intact(f->c, &f->id);
	}
	assert_true(intact);
	assert_int_equal(f->damaged, 0);
	assert_null(watch_damage(f->w, "ds"));
	assert_int_equal(held(f, 2), 1);
}

/* Changed while nothing watched (the agent was down): the first check
 * finds the file unlike the index. */
static void test_changed_while_down(void **state)
{
	struct fixture *f = *state;
	poke(f->path, 3 * BS + 5);
	start(f);
	assert_true(run_until(f, &f->damaged));
	assert_non_null(strstr(watch_damage(f->w, "ds"), "block 3 does not match"));
}

/* Grown or shrunk: found by its size. */
static void test_truncated(void **state)
{
	struct fixture *f = *state;
	start(f);
	assert_int_equal(truncate(f->path, BS), 0);
	watch_scan(f->w);
	assert_true(run_until(f, &f->damaged));
	assert_non_null(strstr(watch_damage(f->w, "ds"), "4096 bytes, not 12388"));
}

/* Changed with its metadata put back while unwatched: no check sees it,
 * a peer's report of the bad block does. */
static void test_hidden_change_reported(void **state)
{
	struct fixture *f = *state;
	poke(f->path, 2 * BS + 1);
	set_mtime(f->path, MTIME_NS);
	assert_int_equal(cache_object_intact(f->c, &f->id), 1);
	start(f);
	struct hash_id good = block_hash(f->data, 0), bad = block_hash(f->data, 2);
	watch_block_reported(f->w, &good); /* that copy matches: nothing */
	watch_block_reported(f->w, &bad);
	assert_true(run_until(f, &f->damaged));
	assert_int_equal(f->damaged, 1);
	assert_non_null(strstr(watch_damage(f->w, "ds"), "block 2 does not match its hash, as a "
							 "peer said"));
	assert_int_equal(held(f, 0), 0);
}

/* Published again: the damage goes, and the new copy is watched. */
static void test_republished(void **state)
{
	struct fixture *f = *state;
	start(f);
	assert_int_equal(truncate(f->path, 10), 0);
	watch_scan(f->w);
	assert_true(run_until(f, &f->damaged));
	publish(f);
	watch_dataset(f->w, "ds");
	assert_null(watch_damage(f->w, "ds"));
	assert_int_equal(held(f, 1), 1);
	for (int i = 0; i < 40; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
	f->damaged = 0;
	poke(f->path, 7);
	watch_scan(f->w);
	assert_true(run_until(f, &f->damaged));
	assert_non_null(strstr(watch_damage(f->w, "ds"), "block 0 does not match"));
	/* forgotten: nothing to say about it */
	watch_forget(f->w, "ds");
	assert_null(watch_damage(f->w, "ds"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_write_in_place, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_touch_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_changed_while_down, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hidden_change_reported, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_republished, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
