/* Verify on a real pull into a real cache: a clean dataset passes; a
 * corrupted, a missing and a truncated file are each reported once, with
 * the cache object dropped when it shares the damage and kept when it does
 * not; a file the source does not have is left alone (as publishing leaves
 * it), not reported. */
#include "tests/unit/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "agent/cache.h"
#include "agent/pull.h"
#include "agent/verify.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

#define BS 4096u

struct fx {
	char *root, *src, *dst;
	struct cache *c;
	struct cache_dataset d;
	Manifest *m;
	struct verify_result r;
};

static void write_file(const char *dir, const char *rel, size_t size, unsigned seed)
{
	char *p = path_join(dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	uint8_t *b = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
		b[i] = (uint8_t)(i * 31 + seed * 7 + i / 251);
	assert_int_equal(write(fd, b, size), (ssize_t)size);
	close(fd);
	free(b);
	free(p);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	f->root = testutil_mkdtemp();
	f->src = path_join(f->root, "src");
	f->dst = path_join(f->root, "dst");
	mkdir(f->src, 0755);
	write_file(f->src, "a", 3 * BS + 10, 1);
	write_file(f->src, "b", BS + 1, 2);
	write_file(f->src, "c", 100, 3);
	char *data = path_join(f->root, "data");
	assert_int_equal(cache_open(data, 0, &f->c), 0);
	free(data);
	struct pull_options o = {
	    .source = f->src, .target = f->dst, .block_size = BS, .name = "ds"};
	struct pull_result r;
	source_options_default(&o.src);
	o.src.block_size = BS;
	if (pull_run(f->c, &o, &r) != 0)
		fail_msg("pull: %s", r.error ? r.error : "?");
	pull_result_close(&r);
	assert_int_equal(cache_dataset_get(f->c, "ds", &f->d), 1);
	uint8_t *buf;
	size_t len;
	assert_int_equal(cache_manifest_get(f->c, &f->d.manifest_id, &buf, &len), 1);
	assert_int_equal(manifest_decode(buf, len, &f->m), 0);
	free(buf);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	verify_result_close(&f->r);
	manifest_free(f->m);
	cache_dataset_close(&f->d);
	cache_free(f->c);
	free(f->src);
	free(f->dst);
	testutil_rmtree(f->root);
	free(f);
	return 0;
}

/* The cache object that holds the published file rel. */
static void object_of(struct fx *f, const char *rel, char *out, size_t len)
{
	for (size_t i = 0; i < f->m->n_files; i++) {
		const FileEntry *e = f->m->files[i];
		if (strcmp(e->path, rel))
			continue;
		struct hash_id id;
		manifest_file_object_id(e->size, f->m->block_size, e->block_hashes.data,
					e->block_hashes.len / HASH_LEN, &id);
		cache_object_path(f->c, &id, out, len);
		return;
	}
	fail_msg("no %s in the manifest", rel);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Flip one byte of the file at off, in place (the inode stays). */
static void corrupt_path(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t x;
	assert_int_equal(pread(fd, &x, 1, off), 1);
	x ^= 0x40;
	assert_int_equal(pwrite(fd, &x, 1, off), 1);
	close(fd);
}

static void corrupt(const char *dir, const char *rel, off_t off)
{
	char *p = path_join(dir, rel);
	corrupt_path(p, off);
	free(p);
}

/* How many problem lines name rel's published path. */
static int lines_for(struct fx *f, const char *rel)
{
	char *p = path_join(f->dst, rel);
	size_t n = strlen(p);
	int k = 0;
	for (size_t i = 0; i < f->r.nproblems; i++)
		if (!strncmp(f->r.problems[i], p, n) && f->r.problems[i][n] == ':')
			k++;
	free(p);
	return k;
}

static void test_clean_dataset_passes(void **state)
{
	struct fx *f = *state;
	assert_int_equal(verify_dataset(f->c, &f->d, &f->r), 0);
	assert_int_equal(f->r.files, 3);
	assert_int_equal(f->r.bytes, 3 * BS + 10 + BS + 1 + 100);
	assert_int_equal(f->r.bad_files, 0);
	assert_int_equal(f->r.nproblems, 0);
}

static void test_corrupt_file_reported_once(void **state)
{
	struct fx *f = *state;
	char obj[4096];
	object_of(f, "a", obj, sizeof obj);
	corrupt(f->dst, "a", BS + 5); /* block 1; the object is the same inode */
	assert_int_equal(verify_dataset(f->c, &f->d, &f->r), SB_ECORRUPT);
	assert_int_equal(f->r.bad_files, 1);
	assert_int_equal(f->r.nproblems, 1);
	assert_int_equal(lines_for(f, "a"), 1);
	assert_non_null(strstr(f->r.problems[0], "block 1 does not match its hash"));
	/* the object shared the damage: dropped, so a pull fetches it again */
	assert_false(exists(obj));
}

static void test_missing_file_reported_once(void **state)
{
	struct fx *f = *state;
	char obj[4096], *p = path_join(f->dst, "b");
	object_of(f, "b", obj, sizeof obj);
	assert_int_equal(unlink(p), 0);
	free(p);
	assert_int_equal(verify_dataset(f->c, &f->d, &f->r), SB_ECORRUPT);
	assert_int_equal(f->r.bad_files, 1);
	assert_int_equal(f->r.nproblems, 1);
	assert_int_equal(lines_for(f, "b"), 1);
	assert_non_null(strstr(f->r.problems[0], sb_strerror(-ENOENT)));
	assert_true(exists(obj)); /* intact: kept */
}

static void test_truncated_file_reported_once(void **state)
{
	struct fx *f = *state;
	char *p = path_join(f->dst, "c");
	assert_int_equal(truncate(p, 50), 0);
	free(p);
	assert_int_equal(verify_dataset(f->c, &f->d, &f->r), SB_ECORRUPT);
	assert_int_equal(f->r.bad_files, 1);
	assert_int_equal(f->r.nproblems, 1);
	assert_int_equal(lines_for(f, "c"), 1);
}

/* A damaged copy (its own inode) leaves the object alone; a damaged object
 * under a good copy is reported once, as the object's. */
static void test_copy_and_object_apart(void **state)
{
	struct fx *f = *state;
	char obj_a[4096], obj_b[4096];
	object_of(f, "a", obj_a, sizeof obj_a);
	object_of(f, "b", obj_b, sizeof obj_b);
	char *pa = path_join(f->dst, "a"), *pb = path_join(f->dst, "b");
	assert_int_equal(unlink(pa), 0);
	assert_int_equal(unlink(pb), 0);
	write_file(f->dst, "a", 3 * BS + 10, 1);
	write_file(f->dst, "b", BS + 1, 2);
	corrupt(f->dst, "a", 0);
	assert_int_equal(chmod(obj_b, 0644), 0);
	corrupt_path(obj_b, BS); /* block 1 of b's object */
	assert_int_equal(verify_dataset(f->c, &f->d, &f->r), SB_ECORRUPT);
	assert_int_equal(f->r.bad_files, 2);
	assert_int_equal(f->r.nproblems, 2);
	assert_int_equal(lines_for(f, "a"), 1);
	int obj_lines = 0;
	for (size_t i = 0; i < f->r.nproblems; i++)
		obj_lines += !strcmp(f->r.problems[i],
				     "cache object for b: content does not match its hashes");
	assert_int_equal(obj_lines, 1);
	assert_true(exists(obj_a));  /* the damage was the copy's */
	assert_false(exists(obj_b)); /* dropped */
	free(pa);
	free(pb);
}

static void test_every_bad_file_once(void **state)
{
	struct fx *f = *state;
	char *p = path_join(f->dst, "b");
	corrupt(f->dst, "a", 0);
	assert_int_equal(unlink(p), 0);
	free(p);
	corrupt(f->dst, "c", 99);
	assert_int_equal(verify_dataset(f->c, &f->d, &f->r), SB_ECORRUPT);
	assert_int_equal(f->r.files, 3);
	assert_int_equal(f->r.bad_files, 3);
	assert_int_equal(f->r.nproblems, 3);
	assert_int_equal(lines_for(f, "a"), 1);
	assert_int_equal(lines_for(f, "b"), 1);
	assert_int_equal(lines_for(f, "c"), 1);
}

static void test_extra_file_not_reported(void **state)
{
	struct fx *f = *state;
	write_file(f->dst, "extra", 10, 9);
	assert_int_equal(verify_dataset(f->c, &f->d, &f->r), 0);
	assert_int_equal(f->r.files, 3);
	assert_int_equal(f->r.nproblems, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    T(test_clean_dataset_passes),	T(test_corrupt_file_reported_once),
	    T(test_missing_file_reported_once), T(test_truncated_file_reported_once),
	    T(test_copy_and_object_apart),	T(test_every_bad_file_once),
	    T(test_extra_file_not_reported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
