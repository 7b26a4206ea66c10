/* Publishing links a file to its cache object unless another file of the
 * version with the same content is linked already (the source keeps them
 * apart); which files share an object is found with one sort, so a
 * version of many files costs O(n log n), not a scan per file. */
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/cache.h"
#include "agent/publish.h"
#include "agent/pull.h"
#include "common/hash.h"
#include "common/manifest.h"
#include "common/path.h"

#define BS	  (64u << 10)
#define NFILES	  600
#define NSHARED	  300 /* files 0..NSHARED-1 hold one of NCONTENTS contents */
#define NCONTENTS 3

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A million ids, 65536 distinct: each points at its first occurrence. A
 * scan per entry would take hours here; the bound only catches that. */
static void test_groups_many(void **state)
{
	const size_t n = 1u << 20, distinct = 1u << 16;
	struct hash_id *ids = calloc(n, sizeof *ids);
	size_t *group = calloc(n, sizeof *group);
	for (size_t i = 0; i < n; i++) {
		uint32_t k = (uint32_t)(i % distinct);
		hash_sha256(&k, sizeof k, &ids[i]);
	}
	double t0 = now_s();
	publish_share_groups(ids, n, group);
	double took = now_s() - t0;
	for (size_t i = 0; i < n; i++)
		if (group[i] != i % distinct)
			fail_msg("group[%zu] = %zu, want %zu", i, group[i], i % distinct);
	assert_true(took < 60);
	free(ids);
	free(group);

	/* Edge cases: nothing, and all different. */
	publish_share_groups(NULL, 0, NULL);
	struct hash_id three[3];
	size_t g[3];
	for (uint32_t k = 0; k < 3; k++)
		hash_sha256(&k, sizeof k, &three[k]);
	publish_share_groups(three, 3, g);
	assert_int_equal(g[0], 0);
	assert_int_equal(g[1], 1);
	assert_int_equal(g[2], 2);
}

static void write_file(const char *dir, const char *rel, const char *data)
{
	char *p = path_join(dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
	free(p);
}

/* Many files, some with equal content: one of each content is linked to
 * the object, the others are copies, as with a scan per file. */
static void test_publish_many_files(void **state)
{
	char *root = testutil_mkdtemp();
	char *src = path_join(root, "src"), *dst = path_join(root, "dst");
	char *data = path_join(root, "data");
	assert_int_equal(path_mkdirs(src, 0755), 0);
	for (int i = 0; i < NFILES; i++) {
		char name[32], body[64];
		snprintf(name, sizeof name, "f%04d", i);
		if (i < NSHARED)
			snprintf(body, sizeof body, "shared content %d\n", i % NCONTENTS);
		else
			snprintf(body, sizeof body, "file %d of its own\n", i);
		write_file(src, name, body);
	}
	struct cache *c;
	assert_int_equal(cache_open(data, 0, &c), 0);
	/* The shared contents are cached first, one file each: pulling many
	 * equal files at once is not what this test is about. */
	char *seed = path_join(root, "seed");
	assert_int_equal(path_mkdirs(seed, 0755), 0);
	for (int k = 0; k < NCONTENTS; k++) {
		char name[32], body[64];
		snprintf(name, sizeof name, "s%d", k);
		snprintf(body, sizeof body, "shared content %d\n", k);
		write_file(seed, name, body);
	}
	struct pull_options o = {.source = seed, .block_size = BS, .name = "seed"};
	struct pull_result r;
	source_options_default(&o.src);
	o.src.block_size = BS;
	if (pull_run(c, &o, &r) != 0)
		fail_msg("pull: %s", r.error ? r.error : "?");
	pull_result_close(&r);
	free(seed);
	o.source = src;
	o.name = "many";
	if (pull_run(c, &o, &r) != 0)
		fail_msg("pull: %s", r.error ? r.error : "?");
	uint8_t *bytes;
	size_t len;
	Manifest *m;
	assert_int_equal(cache_manifest_get(c, &r.manifest_id, &bytes, &len), 1);
	assert_int_equal(manifest_decode(bytes, len, &m), 0);
	free(bytes);
	pull_result_close(&r);

	struct publish_stats st;
	char *detail = NULL;
	if (publish_tree(c, m, dst, &st, NULL, &detail) != 0)
		fail_msg("publish: %s", detail ? detail : "?");
	assert_int_equal(st.linked, NFILES - NSHARED + NCONTENTS);
	assert_int_equal(st.copied, NSHARED - NCONTENTS);
	assert_int_equal(st.unchanged, 0);

	/* Exactly one file per shared content is the object itself. */
	int linked[NCONTENTS] = {0};
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *e = m->files[i];
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || e->path[0] != 'f')
			continue;
		int k = (int)strtol(e->path + 1, NULL, 10); /* "f%04d" */
		if (k >= NSHARED)
			continue;
		struct hash_id id;
		char obj[4096];
		struct stat so, sp;
		manifest_file_object_id(e->size, m->block_size, e->block_hashes.data,
					e->block_hashes.len / HASH_LEN, &id);
		cache_object_path(c, &id, obj, sizeof obj);
		char *pub = path_join(dst, e->path);
		assert_int_equal(stat(obj, &so), 0);
		assert_int_equal(stat(pub, &sp), 0);
		linked[k % NCONTENTS] += so.st_ino == sp.st_ino;
		free(pub);
	}
	for (int k = 0; k < NCONTENTS; k++)
		assert_int_equal(linked[k], 1);

	/* Again: everything is in place, nothing is linked or copied. */
	if (publish_tree(c, m, dst, &st, NULL, &detail) != 0)
		fail_msg("publish again: %s", detail ? detail : "?");
	assert_int_equal(st.unchanged, NFILES - NSHARED + NCONTENTS);
	assert_int_equal(st.copied, NSHARED - NCONTENTS);

	manifest_free(m);
	cache_free(c);
	free(src);
	free(dst);
	free(data);
	testutil_rmtree(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_groups_many),
	    cmocka_unit_test(test_publish_many_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
