/* Publishing from a real cache filled by a real pull: files are hardlinks
 * of their cache objects, two files the source keeps apart stay apart (one
 * is a copy), the source's own hardlinks stay hardlinks; a version flips
 * whole (files it dropped are gone, no staging tree is left), and a version
 * that cannot be published leaves the target as it was: absent, or the
 * previous version untouched. */
#include "tests/unit/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "agent/cache.h"
#include "agent/publish.h"
#include "agent/pull.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

#define BS 4096u

struct fx {
	char *root, *src, *out; /* out: where the tests publish */
	struct cache *c;
	Manifest *m;
};

static void write_file(const char *dir, const char *rel, size_t size, unsigned seed)
{
	char *p = path_join(dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	uint8_t *b = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
		b[i] = (uint8_t)(i * 13 + seed * 101 + i / 509);
	assert_int_equal(write(fd, b, size), (ssize_t)size);
	close(fd);
	free(b);
	free(p);
}

/* Pull src into the cache only and load the version's manifest. */
static Manifest *pull_manifest(struct fx *f)
{
	struct pull_options o = {.source = f->src, .block_size = BS, .name = "ds"};
	struct pull_result r;
	source_options_default(&o.src);
	o.src.block_size = BS;
	if (pull_run(f->c, &o, &r) != 0)
		fail_msg("pull: %s", r.error ? r.error : "?");
	uint8_t *data;
	size_t len;
	Manifest *m;
	assert_int_equal(cache_manifest_get(f->c, &r.manifest_id, &data, &len), 1);
	assert_int_equal(manifest_decode(data, len, &m), 0);
	free(data);
	pull_result_close(&r);
	return m;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	f->root = testutil_mkdtemp();
	f->src = path_join(f->root, "src");
	f->out = path_join(f->root, "out");
	mkdir(f->src, 0755);
	write_file(f->src, "big", 3 * BS + 17, 1);
	write_file(f->src, "copy", 3 * BS + 17, 1); /* same bytes, a file of its own */
	write_file(f->src, "small", 100, 2);
	char *a = path_join(f->src, "small"), *b = path_join(f->src, "small.link");
	assert_int_equal(link(a, b), 0);
	free(a);
	free(b);
	char *sub = path_join(f->src, "dir");
	mkdir(sub, 0755);
	free(sub);
	write_file(f->src, "dir/sub", BS, 3);
	char *data = path_join(f->root, "data");
	assert_int_equal(cache_open(data, 0, &f->c), 0);
	free(data);
	f->m = pull_manifest(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	manifest_free(f->m);
	cache_free(f->c);
	free(f->src);
	free(f->out);
	testutil_rmtree(f->root);
	free(f);
	return 0;
}

static ino_t inode(const char *dir, const char *rel)
{
	char *p = path_join(dir, rel);
	struct stat st;
	int rc = lstat(p, &st);
	free(p);
	return rc == 0 ? st.st_ino : 0;
}

static const FileEntry *entry(const Manifest *m, const char *rel)
{
	for (size_t i = 0; i < m->n_files; i++)
		if (!strcmp(m->files[i]->path, rel))
			return m->files[i];
	fail_msg("no %s in the manifest", rel);
	return NULL;
}

static void object_of(struct fx *f, const Manifest *m, const char *rel, char *out, size_t len)
{
	const FileEntry *e = entry(m, rel);
	struct hash_id id;
	manifest_file_object_id(e->size, m->block_size, e->block_hashes.data,
				e->block_hashes.len / HASH_LEN, &id);
	cache_object_path(f->c, &id, out, len);
}

static int same_file(const char *a_dir, const char *a_rel, const char *b_dir, const char *b_rel)
{
	char *a = path_join(a_dir, a_rel), *b = path_join(b_dir, b_rel), cmd[4200];
	snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
	free(a);
	free(b);
	return system(cmd) == 0;
}

/* The names in dir, sorted and joined by spaces (static buffer). */
static const char *names(const char *dir)
{
	static char out[1024];
	struct dirent **list;
	int n = scandir(dir, &list, NULL, alphasort);
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (strcmp(list[i]->d_name, ".") && strcmp(list[i]->d_name, "..")) {
			if (out[0])
				strncat(out, " ", sizeof out - strlen(out) - 1);
			strncat(out, list[i]->d_name, sizeof out - strlen(out) - 1);
		}
		free(list[i]);
	}
	if (n >= 0)
		free(list);
	return n < 0 ? NULL : out;
}

static void test_tree_links_objects(void **state)
{
	struct fx *f = *state;
	struct publish_stats st;
	char *detail = NULL, obj[4096];
	assert_int_equal(publish_tree(f->c, f->m, f->out, &st, &detail), 0);
	assert_null(detail);
	object_of(f, f->m, "big", obj, sizeof obj);
	struct stat o;
	assert_int_equal(stat(obj, &o), 0);
	assert_int_equal(inode(f->out, "big"), o.st_ino);
	const char *files[] = {"big", "copy", "small", "small.link", "dir/sub"};
	for (size_t i = 0; i < sizeof files / sizeof *files; i++)
		if (!same_file(f->src, files[i], f->out, files[i]))
			fail_msg("%s differs from the source", files[i]);
	assert_string_equal(names(f->out), "big copy dir small small.link");
}

static void test_tree_keeps_apart_what_the_source_does(void **state)
{
	struct fx *f = *state;
	struct publish_stats st;
	char *detail = NULL;
	assert_int_equal(publish_tree(f->c, f->m, f->out, &st, &detail), 0);
	/* same content, two files in the source: not merged into one inode */
	assert_int_not_equal(inode(f->out, "big"), inode(f->out, "copy"));
	assert_int_equal(st.copied, 1);
	/* the source's hardlink pair is one inode here too */
	assert_int_equal(inode(f->out, "small"), inode(f->out, "small.link"));
	assert_int_equal(st.linked + st.copied, 5); /* five regular files */
}

static void test_tree_again_changes_nothing(void **state)
{
	struct fx *f = *state;
	struct publish_stats st;
	char *detail = NULL;
	assert_int_equal(publish_tree(f->c, f->m, f->out, &st, &detail), 0);
	ino_t big = inode(f->out, "big");
	write_file(f->out, "mine", 10, 4); /* not the source's: left alone */
	assert_int_equal(publish_tree(f->c, f->m, f->out, &st, &detail), 0);
	assert_int_equal(st.linked, 0);
	assert_int_equal(st.unchanged, 4); /* every hardlinked file */
	assert_int_equal(inode(f->out, "big"), big);
	assert_string_equal(names(f->out), "big copy dir mine small small.link");
}

/* No temp file of the publisher is left beside the files, on success or
 * failure. */
static void assert_no_temp(const char *dir)
{
	const char *n = names(dir);
	assert_non_null(n);
	if (strstr(n, ".syncbit-"))
		fail_msg("left in %s: %s", dir, n);
}

static void test_version_flips_whole(void **state)
{
	struct fx *f = *state;
	char *detail = NULL;
	assert_int_equal(publish_version(f->c, f->m, f->out, "ds", &detail), 0);
	char *ds = path_join(f->out, "ds");
	assert_string_equal(names(ds), "big copy dir small small.link");
	/* The next version changes small, drops dir/sub and big, adds new. */
	write_file(f->src, "small", 200, 5);
	write_file(f->src, "new", 10, 6);
	char *p = path_join(f->src, "big");
	unlink(p);
	free(p);
	p = path_join(f->src, "dir/sub");
	unlink(p);
	free(p);
	Manifest *m2 = pull_manifest(f);
	assert_int_equal(publish_version(f->c, m2, f->out, "ds", &detail), 0);
	assert_null(detail);
	assert_string_equal(names(ds), "copy dir new small small.link");
	assert_string_equal(names(f->out), "ds"); /* no staging tree, no old tree */
	assert_true(same_file(f->src, "small", ds, "small"));
	assert_true(same_file(f->src, "new", ds, "new"));
	free(ds);
	manifest_free(m2);
}

static void test_version_all_or_nothing(void **state)
{
	struct fx *f = *state;
	char *detail = NULL, obj[4096];
	object_of(f, f->m, "small", obj, sizeof obj);
	assert_int_equal(unlink(obj), 0); /* the last file cannot be placed */
	int rc = publish_version(f->c, f->m, f->out, "ds", &detail);
	assert_true(rc < 0);
	assert_non_null(detail);
	assert_non_null(strstr(detail, "small"));
	free(detail);
	assert_string_equal(names(f->out), ""); /* no ds, no staging tree */
}

static void test_failed_version_keeps_previous(void **state)
{
	struct fx *f = *state;
	char *detail = NULL, obj[4096];
	assert_int_equal(publish_version(f->c, f->m, f->out, "ds", &detail), 0);
	char *ds = path_join(f->out, "ds");
	ino_t big = inode(ds, "big");
	write_file(f->src, "small", 300, 7);
	write_file(f->src, "new", 10, 8);
	Manifest *m2 = pull_manifest(f);
	object_of(f, m2, "small", obj, sizeof obj);
	assert_int_equal(unlink(obj), 0);
	assert_true(publish_version(f->c, m2, f->out, "ds", &detail) < 0);
	assert_non_null(detail);
	free(detail);
	/* the first version, all of it, as it was */
	assert_string_equal(names(ds), "big copy dir small small.link");
	assert_int_equal(inode(ds, "big"), big);
	char *first = path_join(f->root, "first");
	mkdir(first, 0755);
	write_file(first, "small", 100, 2);
	assert_true(same_file(first, "small", ds, "small"));
	assert_string_equal(names(f->out), "ds");
	assert_no_temp(ds);
	free(first);
	free(ds);
	manifest_free(m2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    T(test_tree_links_objects),		T(test_tree_keeps_apart_what_the_source_does),
	    T(test_tree_again_changes_nothing), T(test_version_flips_whole),
	    T(test_version_all_or_nothing),	T(test_failed_version_keeps_previous),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
