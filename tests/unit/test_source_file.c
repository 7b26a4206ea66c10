/* The local/NFS source: what a listing keeps of modes, and that a read never
 * leaves the source tree, even when a directory or a file is swapped after
 * the listing (a symlink to a secret, a rename over the listed file). */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/err.h"
#include "common/path.h"
#include "common/source/source.h"
#include "common/uri.h"

static void put(const char *dir, const char *rel, const char *text, mode_t mode)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(p, mode), 0);
}

static void sub(const char *dir, const char *rel)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void on_listed(struct source *src, int status, void *arg)
{
	int *out = arg;
	*out = status;
}

/* A listed file source for path, or NULL when listing failed (*rc says). */
static struct source *listed(uv_loop_t *loop, const char *path, int *rc)
{
	struct source_uri u;
	struct source_options o;
	struct source *s = NULL;
	assert_int_equal(uri_parse(path, &u), 0);
	source_options_default(&o);
	assert_int_equal(source_new(loop, &u, &o, &s), 0);
	uri_close(&u);
	*rc = 1;
	assert_int_equal(s->ops->list(s, on_listed, rc), 0);
	while (*rc == 1)
		uv_run(loop, UV_RUN_ONCE);
	return s;
}

static const struct source_file *find(const struct source *s, const char *path, size_t *index)
{
	for (size_t i = 0; i < s->listing.nfiles; i++)
		if (!strcmp(s->listing.files[i].path, path)) {
			*index = i;
			return &s->listing.files[i];
		}
	fail_msg("%s is not listed", path);
	return NULL;
}

static void test_modes_lose_set_id_bits(void **state)
{
	char *dir = testutil_mkdtemp();
	uv_loop_t loop;
	int rc;
	size_t i;
	assert_int_equal(uv_loop_init(&loop), 0);
	put(dir, "suid", "x", 06755);
	put(dir, "plain", "y", 0640);
	sub(dir, "sticky");
	char p[1024];
	snprintf(p, sizeof p, "%s/sticky", dir);
	assert_int_equal(chmod(p, 01777 | 02000), 0);
	struct source *s = listed(&loop, dir, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(find(s, "suid", &i)->mode, 0755);
	assert_int_equal(find(s, "plain", &i)->mode, 0640);
	assert_int_equal(find(s, "sticky", &i)->mode, 0777);
	source_free(s);
	/* a single-file source too */
	snprintf(p, sizeof p, "%s/suid", dir);
	s = listed(&loop, p, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(s->listing.files[0].mode, 0755);
	source_free(s);
	assert_int_equal(uv_loop_close(&loop), 0);
	testutil_rmtree(dir);
}

/* Lists dir (a/secret, b), then lets swap() change the tree and reads
 * a/secret: the read must fail as a change and never return "SECRET". */
static void read_after_swap(void (*swap)(const char *dir, const char *outside))
{
	char *dir = testutil_mkdtemp(), *outside = testutil_mkdtemp();
	uv_loop_t loop;
	int rc;
	size_t i;
	assert_int_equal(uv_loop_init(&loop), 0);
	sub(dir, "a");
	put(dir, "a/secret", "public", 0644);
	put(dir, "b", "bbbbbb", 0644);
	put(outside, "secret", "SECRET", 0600);
	struct source *s = listed(&loop, dir, &rc);
	assert_int_equal(rc, 0);
	const struct source_file *f = find(s, "a/secret", &i);
	char got[7] = {0};
	assert_int_equal(s->ops->pread(s, i, 0, 6, got), 0);
	assert_string_equal(got, "public");
	swap(dir, outside);
	memset(got, 0, sizeof got);
	rc = s->ops->pread(s, i, 0, f->size, got);
	assert_int_equal(rc, SB_ECHANGED);
	assert_string_not_equal(got, "SECRET");
	find(s, "b", &i); /* the rest of the tree still reads */
	assert_int_equal(s->ops->pread(s, i, 0, 6, got), 0);
	source_free(s);
	assert_int_equal(uv_loop_close(&loop), 0);
	testutil_rmtree(dir);
	testutil_rmtree(outside);
}

static void swap_dir_for_link(const char *dir, const char *outside)
{
	char a[1024], old[1024];
	snprintf(a, sizeof a, "%s/a", dir);
	snprintf(old, sizeof old, "%s/a.old", dir);
	assert_int_equal(rename(a, old), 0);
	assert_int_equal(symlink(outside, a), 0);
}

static void swap_file_for_link(const char *dir, const char *outside)
{
	char f[1024], target[1024];
	snprintf(f, sizeof f, "%s/a/secret", dir);
	snprintf(target, sizeof target, "%s/secret", outside);
	assert_int_equal(unlink(f), 0);
	assert_int_equal(symlink(target, f), 0);
}

/* Same name, same size, another inode: a rename over the listed file. */
static void swap_file_for_another(const char *dir, const char *outside)
{
	char tmp[1024], f[1024];
	put(dir, "a/.new", "SECRET", 0644);
	snprintf(tmp, sizeof tmp, "%s/a/.new", dir);
	snprintf(f, sizeof f, "%s/a/secret", dir);
	assert_int_equal(rename(tmp, f), 0);
}

static void test_swapped_dir(void **state)
{
	read_after_swap(swap_dir_for_link);
}

static void test_swapped_file_link(void **state)
{
	read_after_swap(swap_file_for_link);
}

static void test_swapped_inode(void **state)
{
	read_after_swap(swap_file_for_another);
}

/* path_open_beneath and its walk fallback refuse every way out. */
static void check_beneath(int (*open_fn)(int, const char *, int))
{
	char *dir = testutil_mkdtemp(), *outside = testutil_mkdtemp();
	char p[1024];
	sub(dir, "d");
	put(dir, "d/f", "ok", 0644);
	put(outside, "s", "SECRET", 0644);
	snprintf(p, sizeof p, "%s/link", dir);
	assert_int_equal(symlink(outside, p), 0);
	snprintf(p, sizeof p, "%s/d/flink", dir);
	assert_int_equal(symlink("f", p), 0); /* even one that stays inside */
	int root = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(root >= 0);
	int fd = open_fn(root, "d/f", O_RDONLY);
	assert_true(fd >= 0);
	close(fd);
	assert_true(open_fn(root, "link/s", O_RDONLY) < 0);
	assert_true(open_fn(root, "d/flink", O_RDONLY) < 0);
	assert_int_equal(open_fn(root, "../x", O_RDONLY), SB_ECONFINE);
	assert_int_equal(open_fn(root, "/etc/passwd", O_RDONLY), SB_ECONFINE);
	assert_int_equal(open_fn(root, "d/f", O_RDWR | O_CREAT), -EINVAL);
	assert_int_equal(open_fn(root, "d/missing", O_RDONLY), -ENOENT);
	close(root);
	testutil_rmtree(dir);
	testutil_rmtree(outside);
}

static void test_open_beneath(void **state)
{
	check_beneath(path_open_beneath);
}

static void test_open_beneath_walk(void **state)
{
	check_beneath(path_open_beneath_walk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_modes_lose_set_id_bits), cmocka_unit_test(test_swapped_dir),
	    cmocka_unit_test(test_swapped_file_link),	   cmocka_unit_test(test_swapped_inode),
	    cmocka_unit_test(test_open_beneath),	   cmocka_unit_test(test_open_beneath_walk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
