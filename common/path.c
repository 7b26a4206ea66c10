#include "common/path.h"

#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"

#define PATH_NAME_MAX 255

/* Steps *p over the next '/'-separated component, which may be empty. */
static int next_component(const char **p, const char **comp, size_t *len)
{
	const char *s = *p, *slash;

	if (!s)
		return 0;
	slash = strchr(s, '/');
	*comp = s;
	*len = slash ? (size_t)(slash - s) : strlen(s);
	*p = slash ? slash + 1 : NULL;
	return 1;
}

static int is_dot(const char *c, size_t n)
{
	return n == 1 && c[0] == '.';
}

static int is_dotdot(const char *c, size_t n)
{
	return n == 2 && c[0] == '.' && c[1] == '.';
}

int path_check_relative(const char *rel)
{
	const char *p = rel, *c;
	size_t n;

	if (!rel || !*rel || rel[0] == '/' || strnlen(rel, PATH_REL_MAX) >= PATH_REL_MAX)
		return SB_ECONFINE;
	while (next_component(&p, &c, &n))
		if (n == 0 || n > PATH_NAME_MAX || is_dot(c, n) || is_dotdot(c, n))
			return SB_ECONFINE;
	return 0;
}

/*
 * A lexical check cannot see symlinks the target passes through: with
 * "a/b/s" -> "..", the target "a/b/s/../../.." looks confined yet resolves
 * above the root. So ".." is allowed only as leading components, which climb
 * from the link's own directory, a real directory (path_open_parent never
 * follows links). Whatever follows only descends, and every link it meets is
 * confined by this same rule.
 */
int path_check_symlink(const char *link_rel, const char *target)
{
	const char *p, *c;
	size_t n;
	long depth = -1;
	int descended = 0;

	if (path_check_relative(link_rel) < 0)
		return SB_ECONFINE;
	if (!target || !*target || target[0] == '/' ||
	    strnlen(target, PATH_REL_MAX) >= PATH_REL_MAX)
		return SB_ECONFINE;
	for (p = link_rel; next_component(&p, &c, &n);)
		depth++;
	for (p = target; next_component(&p, &c, &n);) {
		if (n == 0 || is_dot(c, n))
			continue;
		if (n > PATH_NAME_MAX)
			return SB_ECONFINE;
		if (is_dotdot(c, n)) {
			if (descended || --depth < 0)
				return SB_ECONFINE;
		} else {
			descended = 1;
		}
	}
	return 0;
}

char *path_normalize_abs(const char *abs)
{
	struct buf b = BUF_INIT;
	const char *p, *c;
	size_t n;

	if (!abs || abs[0] != '/')
		return NULL;
	for (p = abs + 1; next_component(&p, &c, &n);) {
		if (n == 0 || is_dot(c, n))
			continue;
		if (is_dotdot(c, n)) {
			/* "/.." is "/", as the kernel resolves it. */
			while (b.len > 0 && b.ptr[b.len - 1] != '/')
				b.len--;
			if (b.len > 0)
				b.len--;
			continue;
		}
		buf_append(&b, "/", 1);
		buf_append(&b, c, n);
	}
	if (b.len == 0)
		buf_append(&b, "/", 1);
	return buf_steal(&b);
}

char *path_join(const char *dir, const char *rel)
{
	size_t dlen = strlen(dir);

	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	while (*rel == '/')
		rel++;
	if (dlen == 0)
		return xstrdup(rel);
	if (!*rel)
		return xstrndup(dir, dlen);
	if (dir[dlen - 1] == '/')
		return xasprintf("%.*s%s", (int)dlen, dir, rel);
	return xasprintf("%.*s/%s", (int)dlen, dir, rel);
}

#define DIR_OPEN_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

/* Opens directory name under dirfd, creating it when missing. */
static int open_or_make_dir(int dirfd, const char *name, unsigned mode)
{
	int fd = openat(dirfd, name, DIR_OPEN_FLAGS);

	if (fd >= 0 || errno != ENOENT)
		return fd >= 0 ? fd : -errno;
	/* EEXIST: another writer made it first; opening it is what we want. */
	if (mkdirat(dirfd, name, (mode_t)mode) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(dirfd, name, DIR_OPEN_FLAGS);
	return fd >= 0 ? fd : -errno;
}

int path_open_parent(int root_fd, const char *rel, unsigned mode, const char **basename_out)
{
	char name[PATH_NAME_MAX + 1];
	const char *p = rel, *c = rel;
	size_t n;
	int fd, next;

	if (path_check_relative(rel) < 0)
		return SB_ECONFINE;
	fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	for (;;) {
		next_component(&p, &c, &n);
		if (!p)
			break; /* c is the basename */
		memcpy(name, c, n);
		name[n] = '\0';
		next = open_or_make_dir(fd, name, mode);
		close(fd);
		if (next < 0)
			return next;
		fd = next;
	}
	if (basename_out)
		*basename_out = c;
	return fd;
}

int path_open_beneath_walk(int root_fd, const char *rel, int flags)
{
	char name[PATH_NAME_MAX + 1];
	const char *p = rel, *c = rel;
	size_t n = 0;
	int fd, next;

	if (path_check_relative(rel) < 0)
		return SB_ECONFINE;
	if (flags & O_CREAT)
		return -EINVAL;
	fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	for (;;) {
		next_component(&p, &c, &n);
		memcpy(name, c, n);
		name[n] = '\0';
		if (!p) /* the last component */
			next = openat(fd, name, flags | O_NOFOLLOW | O_CLOEXEC);
		else
			next = openat(fd, name, DIR_OPEN_FLAGS);
		if (next < 0)
			next = -errno;
		close(fd);
		if (next < 0 || !p)
			return next;
		fd = next;
	}
}

int path_open_beneath(int root_fd, const char *rel, int flags)
{
#ifdef SYS_openat2
	static int no_openat2; /* set once on ENOSYS; any thread may read it */
	if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
		struct open_how how = {
		    .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
		    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
		};
		if (path_check_relative(rel) < 0)
			return SB_ECONFINE;
		if (flags & O_CREAT)
			return -EINVAL;
		long fd = syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS && errno != EPERM) /* EPERM: a seccomp filter */
			return -errno;
		__atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
	}
#endif
	return path_open_beneath_walk(root_fd, rel, flags);
}

static int mkdir_one(const char *path, unsigned mode)
{
	struct stat st;

	if (mkdir(path, (mode_t)mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int path_mkdirs(const char *path, unsigned mode)
{
	char *copy;
	int rc = 0;

	if (!path || !*path)
		return -EINVAL;
	copy = xstrdup(path);
	for (char *s = copy + 1; *s; s++) {
		if (*s != '/' || s[-1] == '/')
			continue;
		*s = '\0';
		rc = mkdir_one(copy, mode);
		*s = '/';
		if (rc < 0)
			goto out;
	}
	rc = mkdir_one(copy, mode);
out:
	free(copy);
	return rc;
}

int path_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	/* Some filesystems cannot sync a directory and say EINVAL; there is
	 * nothing more durable to be had from them. */
	if (fsync(fd) < 0 && errno != EINVAL)
		rc = -errno;
	close(fd);
	return rc;
}

static int remove_entry(const char *fpath, const struct stat *sb, int flag, struct FTW *ftw)
{
	int rc = flag == FTW_DP ? rmdir(fpath) : unlink(fpath);
	return rc < 0 && errno != ENOENT ? -errno : 0;
}

int path_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return rc < 0 ? -errno : rc;
}
