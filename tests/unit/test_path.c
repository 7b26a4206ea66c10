#include "tests/unit/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/path.h"

/* ---- path_check_relative ---- */

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void test_relative_good(void **state)
{
	static const char *const good[] = {
	    "a",	"a/b/c",       "a.b",
	    "..a",	"a..",	       "...",
	    ".hidden",	"a/.b/c..",    "dir with space/file",
	    "a\\..\\b", "caf\xc3\xa9",
	};
	char *name255 = repeat('n', 255);
	char *long_path = repeat('p', PATH_REL_MAX - 1);

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		if (path_check_relative(good[i]) != 0)
			fail_msg("'%s' rejected", good[i]);
	assert_int_equal(path_check_relative(name255), 0);
	/* long, but every component within limits */
	for (size_t i = 100; i < PATH_REL_MAX - 1; i += 101)
		long_path[i] = '/';
	assert_int_equal(path_check_relative(long_path), 0);
	free(name255);
	free(long_path);
}

static void test_relative_bad(void **state)
{
	static const char *const bad[] = {
	    "",	   "/",	    "/a", "//a", "a//b", "a/",	 "a/b/",   "./a",
	    "a/.", "a/./b", ".",  "..",	 "../a", "a/..", "a/../b", "a/b/../../..",
	};
	char *name256 = repeat('n', 256);
	char *too_long = repeat('p', PATH_REL_MAX);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (path_check_relative(bad[i]) != SB_ECONFINE)
			fail_msg("'%s' accepted", bad[i]);
	assert_int_equal(path_check_relative(NULL), SB_ECONFINE);
	assert_int_equal(path_check_relative(name256), SB_ECONFINE);
	for (size_t i = 100; i < PATH_REL_MAX; i += 101)
		too_long[i] = '/';
	assert_int_equal(path_check_relative(too_long), SB_ECONFINE);
	free(name256);
	free(too_long);
}

/* ---- path_check_symlink ---- */

struct link_case {
	const char *link;
	const char *target;
};

static void test_symlink_confined(void **state)
{
	static const struct link_case ok[] = {
	    {"a/l", "b"},
	    {"l", "x/y/z"},
	    {"a/b/l", "../c"},
	    {"a/b/l", "../../c"},
	    {"a/b/l", "../../"},
	    {"a/l", ".."},
	    {"a/l", "./x"},
	    {"a/l", "x//y/"},
	    {"a/b/c/l", "./../.././x"},
	    {"snapshots/main/config.json", "../../blobs/sha256-abc"},
	};

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (path_check_symlink(ok[i].link, ok[i].target) != 0)
			fail_msg("%s -> %s rejected", ok[i].link, ok[i].target);
}

static void test_symlink_escapes(void **state)
{
	static const struct link_case bad[] = {
	    {"a/b", "../../x"},
	    {"l", ".."},
	    {"l", "../x"},
	    {"a/b/c/l", "../../../../etc"},
	    {"a/l", "/etc/passwd"},
	    {"a/l", "/"},
	    {"a/l", ""},
	    /* ".." after a name could pass through another link */
	    {"a/l", "x/../y"},
	    {"a/l", "x/../../y"},
	    {"x", "a/b/s/../../.."},
	    {"a/l", "../a/../a"},
	    /* the link's own path must be confined */
	    {"../l", "x"},
	    {"/l", "x"},
	    {"a//l", "x"},
	    {"", "x"},
	};
	char *long_target = repeat('t', PATH_REL_MAX);
	char *long_name = repeat('t', 256);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (path_check_symlink(bad[i].link, bad[i].target) != SB_ECONFINE)
			fail_msg("%s -> %s accepted", bad[i].link, bad[i].target);
	assert_int_equal(path_check_symlink("a/l", NULL), SB_ECONFINE);
	assert_int_equal(path_check_symlink(NULL, "x"), SB_ECONFINE);
	assert_int_equal(path_check_symlink("a/l", long_name), SB_ECONFINE);
	for (size_t i = 100; i < PATH_REL_MAX; i += 101)
		long_target[i] = '/';
	assert_int_equal(path_check_symlink("a/l", long_target), SB_ECONFINE);
	free(long_target);
	free(long_name);
}

/* ---- normalize and join ---- */

static void test_normalize_abs(void **state)
{
	static const char *const cases[][2] = {
	    {"/", "/"},
	    {"//", "/"},
	    {"/a/b/", "/a/b"},
	    {"/a//b///c", "/a/b/c"},
	    {"/a/./b/.", "/a/b"},
	    {"/a/b/../c", "/a/c"},
	    {"/a/b/../../..", "/"},
	    {"/../x", "/x"},
	    {"/a/..b/c..", "/a/..b/c.."},
	    {"/.hidden/...", "/.hidden/..."},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *n = path_normalize_abs(cases[i][0]);

		assert_non_null(n);
		if (strcmp(n, cases[i][1]) != 0)
			fail_msg("'%s' -> '%s', want '%s'", cases[i][0], n, cases[i][1]);
		free(n);
	}
	assert_null(path_normalize_abs("relative/x"));
	assert_null(path_normalize_abs(""));
	assert_null(path_normalize_abs(NULL));
}

static void test_join(void **state)
{
	static const char *const cases[][3] = {
	    {"/a", "b", "/a/b"}, {"/a/", "b", "/a/b"}, {"/a//", "//b/c", "/a/b/c"},
	    {"/", "b", "/b"},	 {"//", "b", "/b"},    {"a", "b", "a/b"},
	    {"/a", "", "/a"},	 {"/a/", "", "/a"},    {"", "b", "b"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *j = path_join(cases[i][0], cases[i][1]);

		if (strcmp(j, cases[i][2]) != 0)
			fail_msg("join('%s', '%s') = '%s', want '%s'", cases[i][0], cases[i][1], j,
				 cases[i][2]);
		free(j);
	}
}

/* ---- path_open_parent ---- */

struct tree {
	char *root;
	char *outside;
	int root_fd;
};

static int tree_setup(void **state)
{
	struct tree *t = calloc(1, sizeof *t);

	t->root = testutil_mkdtemp();
	t->outside = testutil_mkdtemp();
	t->root_fd = open(t->root, O_RDONLY | O_DIRECTORY);
	assert_true(t->root_fd >= 0);
	*state = t;
	return 0;
}

static int tree_teardown(void **state)
{
	struct tree *t = *state;

	close(t->root_fd);
	testutil_rmtree(t->root);
	testutil_rmtree(t->outside);
	free(t);
	return 0;
}

static char *in(const char *dir, const char *rel)
{
	return path_join(dir, rel);
}

static int exists(const char *dir, const char *rel)
{
	char *p = in(dir, rel);
	struct stat st;
	int rc = lstat(p, &st) == 0;

	free(p);
	return rc;
}

static void assert_same_dir(int fd, const char *dir, const char *rel)
{
	struct stat a, b;
	char *p = in(dir, rel);

	assert_int_equal(fstat(fd, &a), 0);
	assert_int_equal(stat(p, &b), 0);
	assert_true(S_ISDIR(a.st_mode));
	assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	free(p);
}

static void test_open_parent_creates(void **state)
{
	struct tree *t = *state;
	const char *base = NULL;
	struct stat st;
	mode_t old = umask(022);
	int fd, f;
	char *p;

	fd = path_open_parent(t->root_fd, "a/b/c/file.bin", 0750, &base);
	umask(old);
	assert_true(fd >= 0);
	assert_string_equal(base, "file.bin");
	assert_same_dir(fd, t->root, "a/b/c");
	p = in(t->root, "a/b");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	free(p);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

	f = openat(fd, base, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(f >= 0);
	close(f);
	close(fd);
	assert_true(exists(t->root, "a/b/c/file.bin"));

	/* existing directories are reused */
	fd = path_open_parent(t->root_fd, "a/b/other", 0700, &base);
	assert_true(fd >= 0);
	assert_string_equal(base, "other");
	assert_same_dir(fd, t->root, "a/b");
	close(fd);
}

static void test_open_parent_top_level(void **state)
{
	struct tree *t = *state;
	const char *base = NULL;
	int fd = path_open_parent(t->root_fd, "top.txt", 0755, &base);

	assert_true(fd >= 0);
	assert_true(fd != t->root_fd);
	assert_string_equal(base, "top.txt");
	assert_same_dir(fd, t->root, "");
	close(fd);
	/* the caller's fd stays open */
	assert_int_equal(fcntl(t->root_fd, F_GETFD) >= 0, 1);
	fd = path_open_parent(t->root_fd, "x/y", 0755, NULL);
	assert_true(fd >= 0);
	close(fd);
}

static void assert_refused_symlink(int rc)
{
	if (rc != -ELOOP && rc != -ENOTDIR)
		fail_msg("got %d (%s), want -ELOOP or -ENOTDIR", rc, sb_errname(rc));
}

/* A directory component that is a symlink out of the root is never
 * followed, and nothing is created on the other side. */
static void test_open_parent_refuses_symlink_out(void **state)
{
	struct tree *t = *state;
	char *link = in(t->root, "data");

	assert_int_equal(symlink(t->outside, link), 0);
	assert_refused_symlink(path_open_parent(t->root_fd, "data/x", 0755, NULL));
	assert_refused_symlink(path_open_parent(t->root_fd, "data/sub/x", 0755, NULL));
	assert_false(exists(t->outside, "sub"));
	free(link);

	/* deeper in the tree too */
	link = in(t->root, "ok");
	assert_int_equal(mkdir(link, 0755), 0);
	free(link);
	link = in(t->root, "ok/up");
	assert_int_equal(symlink("../..", link), 0);
	assert_refused_symlink(path_open_parent(t->root_fd, "ok/up/escaped/f", 0755, NULL));
	assert_false(exists(t->root, "../escaped"));
	free(link);
}

static void test_open_parent_refuses_any_symlink(void **state)
{
	struct tree *t = *state;
	char *p = in(t->root, "real");
	int fd;

	assert_int_equal(mkdir(p, 0755), 0);
	free(p);
	/* even a link that stays inside the root */
	p = in(t->root, "alias");
	assert_int_equal(symlink("real", p), 0);
	free(p);
	assert_refused_symlink(path_open_parent(t->root_fd, "alias/f", 0755, NULL));
	/* a dangling link is not replaced by a new directory */
	p = in(t->root, "dangling");
	assert_int_equal(symlink("nowhere", p), 0);
	free(p);
	assert_refused_symlink(path_open_parent(t->root_fd, "dangling/f", 0755, NULL));
	assert_false(exists(t->root, "nowhere"));
	/* the basename may be a link: it is the caller's to handle */
	fd = path_open_parent(t->root_fd, "alias", 0755, NULL);
	assert_true(fd >= 0);
	close(fd);
}

static void test_open_parent_errors(void **state)
{
	struct tree *t = *state;
	char *p = in(t->root, "file");
	int fd = open(p, O_WRONLY | O_CREAT, 0644);

	assert_true(fd >= 0);
	close(fd);
	free(p);
	assert_int_equal(path_open_parent(t->root_fd, "file/x", 0755, NULL), -ENOTDIR);
	assert_int_equal(path_open_parent(t->root_fd, "../x", 0755, NULL), SB_ECONFINE);
	assert_int_equal(path_open_parent(t->root_fd, "a//x", 0755, NULL), SB_ECONFINE);
	assert_int_equal(path_open_parent(t->root_fd, "/etc/x", 0755, NULL), SB_ECONFINE);
	assert_int_equal(path_open_parent(t->root_fd, "a/../../x", 0755, NULL), SB_ECONFINE);
	assert_false(exists(t->root, "a"));
	assert_int_equal(path_open_parent(-1, "a/x", 0755, NULL), -EBADF);
}

/* ---- mkdirs and fsync ---- */

static void test_mkdirs(void **state)
{
	struct tree *t = *state;
	char *p = in(t->root, "m/n/o/");
	char *f;
	int fd;

	assert_int_equal(path_mkdirs(p, 0755), 0);
	assert_true(exists(t->root, "m/n/o"));
	assert_int_equal(path_mkdirs(p, 0755), 0);
	free(p);

	f = in(t->root, "m/plain");
	fd = open(f, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	p = in(t->root, "m/plain/sub");
	assert_int_equal(path_mkdirs(p, 0755), -ENOTDIR);
	free(p);
	assert_int_equal(path_mkdirs(f, 0755), -ENOTDIR);
	free(f);
	assert_int_equal(path_mkdirs("", 0755), -EINVAL);

	/* relative to the current directory */
	{
		char *old = getcwd(NULL, 0);

		assert_int_equal(chdir(t->root), 0);
		assert_int_equal(path_mkdirs("rel//x", 0755), 0);
		assert_int_equal(chdir(old), 0);
		free(old);
		assert_true(exists(t->root, "rel/x"));
	}
}

static void test_fsync_dir(void **state)
{
	struct tree *t = *state;
	char *p = in(t->root, "nope");
	int fd;

	assert_int_equal(path_fsync_dir(t->root), 0);
	assert_int_equal(path_fsync_dir(p), -ENOENT);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	close(fd);
	assert_int_equal(path_fsync_dir(p), -ENOTDIR);
	free(p);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tree_setup, tree_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_relative_good),
	    cmocka_unit_test(test_relative_bad),
	    cmocka_unit_test(test_symlink_confined),
	    cmocka_unit_test(test_symlink_escapes),
	    cmocka_unit_test(test_normalize_abs),
	    cmocka_unit_test(test_join),
	    T(test_open_parent_creates),
	    T(test_open_parent_top_level),
	    T(test_open_parent_refuses_symlink_out),
	    T(test_open_parent_refuses_any_symlink),
	    T(test_open_parent_errors),
	    T(test_mkdirs),
	    T(test_fsync_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
