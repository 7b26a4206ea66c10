/* Only the thread that opened the cache writes its index: a write from
 * another thread aborts, and publishing on a pool thread leaves its index
 * updates (new object mtimes, LFRU accesses) for the loop thread. */
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <uv.h>

#include "agent/cache.h"
#include "agent/publish.h"
#include "agent/pull.h"
#include "common/manifest.h"
#include "common/path.h"

#define BS	  (64u << 10)
#define NEW_MTIME 1700000000123456789ll

struct fx {
	char *root, *src;
	struct cache *c;
	Manifest *m;
};

static void write_file(const char *dir, const char *rel, const char *data, size_t len)
{
	char *p = path_join(dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	free(p);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	f->root = testutil_mkdtemp();
	f->src = path_join(f->root, "src");
	assert_int_equal(path_mkdirs(f->src, 0755), 0);
	write_file(f->src, "a.bin", "same content\n", 13);
	write_file(f->src, "b.bin", "same content\n", 13);
	write_file(f->src, "c.txt", "other\n", 6);
	/* a.bin and b.bin share one object, which has one mtime: give them
	 * the same, or a clock tick between the writes would restamp it. */
	char *a = path_join(f->src, "a.bin"), *b = path_join(f->src, "b.bin");
	struct stat st;
	assert_int_equal(stat(a, &st), 0);
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	assert_int_equal(utimensat(AT_FDCWD, b, ts, 0), 0);
	free(a);
	free(b);
	char *data = path_join(f->root, "data");
	assert_int_equal(cache_open(data, 0, &f->c), 0);
	free(data);
	struct pull_options o = {.source = f->src, .block_size = BS, .name = "unit"};
	struct pull_result r;
	source_options_default(&o.src);
	o.src.block_size = BS;
	if (pull_run(f->c, &o, &r) != 0)
		fail_msg("pull: %s", r.error ? r.error : "?");
	uint8_t *bytes;
	size_t len;
	assert_int_equal(cache_manifest_get(f->c, &r.manifest_id, &bytes, &len), 1);
	assert_int_equal(manifest_decode(bytes, len, &f->m), 0);
	free(bytes);
	pull_result_close(&r);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	manifest_free(f->m);
	cache_free(f->c);
	free(f->src);
	testutil_rmtree(f->root);
	free(f);
	return 0;
}

static const FileEntry *entry(const Manifest *m, const char *path, struct hash_id *id)
{
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *e = m->files[i];
		if (strcmp(e->path, path))
			continue;
		manifest_file_object_id(e->size, m->block_size, e->block_hashes.data,
					e->block_hashes.len / HASH_LEN, id);
		return e;
	}
	fail_msg("no entry %s", path);
	return NULL;
}

static int64_t mtime_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
}

/* ---- a write from another thread ---- */

struct thread_call {
	struct cache *c;
	struct hash_id id;
	int rc;
};

static void *touch_there(void *arg)
{
	struct thread_call *t = arg;
	t->rc = cache_object_touch(t->c, &t->id, 1);
	return NULL;
}

static void *find_there(void *arg)
{
	struct thread_call *t = arg;
	struct cache_block_loc loc;
	t->rc = cache_block_find(t->c, &t->id, &loc);
	return NULL;
}

static void test_write_off_thread_aborts(void **state)
{
	struct fx *f = *state;
	struct thread_call t = {.c = f->c};
	const FileEntry *e = entry(f->m, "c.txt", &t.id);
	pthread_t th;

	/* Reads are thread-safe. */
	memcpy(t.id.b, e->block_hashes.data, HASH_LEN);
	assert_int_equal(pthread_create(&th, NULL, find_there, &t), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t.rc, 1);

	/* A write is not: the process aborts before the transaction opens. */
	entry(f->m, "c.txt", &t.id);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		if (pthread_create(&th, NULL, touch_there, &t) == 0)
			pthread_join(th, NULL);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGABRT);

	/* On the opening thread the same call is fine. */
	assert_int_equal(cache_object_touch(f->c, &t.id, 1), 0);
}

/* ---- restamps gathered, then applied ---- */

static void test_restamp_then_apply(void **state)
{
	struct fx *f = *state;
	struct hash_id id, other;
	char path[4096];
	entry(f->m, "c.txt", &id);
	entry(f->m, "a.bin", &other);
	cache_object_path(f->c, &id, path, sizeof path);
	struct cache_updates u = {0};

	assert_int_equal(cache_object_restamp(f->c, &id, NEW_MTIME, &u), 0);
	assert_int_equal(u.nstamps, 1);
	assert_int_equal(mtime_of(path), NEW_MTIME);
	assert_int_equal(cache_updates_apply(f->c, &u), 0);
	assert_int_equal(u.nstamps, 0);
	assert_int_equal(cache_object_check(f->c, &id), 1);

	/* A stamp for another file than the indexed one (the object was
	 * evicted and stored again meanwhile) or for an object no longer
	 * indexed is skipped, and leaves the record as it was. */
	struct cache_stamp forged = {.id = other, .mtime_ns = NEW_MTIME + 1, .ino = 1};
	struct hash_id gone;
	memset(gone.b, 0x5a, HASH_LEN);
	struct cache_stamp unknown = {.id = gone, .mtime_ns = NEW_MTIME};
	cache_updates_close(&u);
	u.stamps = malloc(2 * sizeof *u.stamps);
	u.stamps[0] = forged;
	u.stamps[1] = unknown;
	u.nstamps = u.stamps_cap = 2;
	cache_updates_touch(&u, &gone, 1);
	assert_int_equal(u.ntouched, 1);
	assert_int_equal(cache_updates_apply(f->c, &u), 0);
	assert_int_equal(cache_object_check(f->c, &other), 1);
	cache_updates_close(&u);
	assert_null(u.stamps);

	/* Unapplied, the index keeps the old stamp, and the object is taken
	 * for one something wrote into: the loop must apply what it gets. */
	assert_int_equal(cache_object_restamp(f->c, &other, NEW_MTIME, &u), 0);
	assert_int_equal(cache_object_check(f->c, &other), 0);
	cache_updates_close(&u);
}

/* ---- publishing on the pool ---- */

struct pool_publish {
	struct fx *f;
	char *root;
	uv_work_t work;
	pthread_t loop_thread;
	struct cache_updates updates;
	int rc, applied;
	int ran_off_loop, done_on_loop;
	size_t nstamps, ntouched;
	char *detail;
};

static void publish_on_pool(uv_work_t *w)
{
	struct pool_publish *pp = w->data;
	pp->ran_off_loop = !pthread_equal(pthread_self(), pp->loop_thread);
	pp->rc = publish_version(pp->f->c, pp->f->m, pp->root, "ds", &pp->updates, &pp->detail);
}

static void published(uv_work_t *w, int status)
{
	struct pool_publish *pp = w->data;
	pp->done_on_loop = pthread_equal(pthread_self(), pp->loop_thread);
	pp->nstamps = pp->updates.nstamps;
	pp->ntouched = pp->updates.ntouched;
	pp->applied = cache_updates_apply(pp->f->c, &pp->updates);
	cache_updates_close(&pp->updates);
}

static void test_publish_on_pool(void **state)
{
	struct fx *f = *state;
	struct hash_id id;
	FileEntry *e = (FileEntry *)entry(f->m, "c.txt", &id);
	e->mtime_ns = NEW_MTIME; /* the source re-published it with another date */
	struct pool_publish pp = {.f = f, .root = path_join(f->root, "pub")};
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	pp.loop_thread = pthread_self();
	pp.work.data = &pp;
	assert_int_equal(uv_queue_work(&loop, &pp.work, publish_on_pool, published), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);

	if (pp.rc != 0)
		fail_msg("publish: %s", pp.detail ? pp.detail : "?");
	assert_true(pp.ran_off_loop);
	assert_true(pp.done_on_loop);
	assert_int_equal(pp.applied, 0);
	assert_int_equal(pp.nstamps, 1);  /* c.txt's object got the new mtime */
	assert_int_equal(pp.ntouched, 3); /* every regular file was accessed */

	char *pub = path_join(pp.root, "ds/c.txt");
	assert_int_equal(mtime_of(pub), NEW_MTIME);
	/* The index knows the new stamp: the object is not taken for one
	 * that something wrote into. */
	assert_int_equal(cache_object_check(f->c, &id), 1);
	free(pub);
	free(pp.root);
	free(pp.detail);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_write_off_thread_aborts),
	    T(test_restamp_then_apply),
	    T(test_publish_on_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
