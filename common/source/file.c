/* Local and NFS sources: a directory tree or a single file. Listing walks the
 * tree on the thread pool; reads are blocking preads made from the pull
 * engine's pool work. Change tokens are size, mtime, ctime and inode, the
 * quick check rsync uses, plus ctime so an in-place edit that restores the
 * mtime is still seen. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/source/source.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/source/http_req.h"
#include "common/io.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

/* Bounds that keep a hostile or runaway tree from exhausting memory (the
 * number of entries is the source's --max-files). */
#define FILE_SOURCE_MAX_DEPTH 256

struct inode_key {
	dev_t dev;
	ino_t ino;
	size_t index;
};

struct file_source {
	char *root;	    /* the source path as given (a file or a directory) */
	int single;	    /* root is a regular file */
	uint64_t max_files; /* entries the walk may add */
	uv_work_t work;
	source_done_cb cb;
	void *cb_arg;
	int status;
	struct buf inodes; /* struct inode_key for files with nlink > 1 */
	struct buf files;  /* struct source_file being built */
	struct buf err;
	int root_fd; /* a directory root, opened by the listing; -1 before */
};

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000ll + t->tv_nsec;
}

static char *change_token(const struct stat *st)
{
	return xasprintf("st:%llu:%lld:%lld:%llu", (unsigned long long)st->st_size,
			 (long long)ts_ns(&st->st_mtim), (long long)ts_ns(&st->st_ctim),
			 (unsigned long long)st->st_ino);
}

static size_t nfiles(const struct file_source *fs)
{
	return fs->files.len / sizeof(struct source_file);
}

/* Syncbit publishes files owned by its own user, so setuid, setgid and
 * sticky bits are never carried over: a set-id file in a source must not
 * become a root-owned set-id file on every node. */
static uint32_t source_mode(mode_t mode)
{
	return (uint32_t)(mode & MANIFEST_MODE_MASK);
}

/* 1 + index of the first listed file with st's inode, or 0 when st is the
 * first (then remembered). */
static uint32_t hardlink_of(struct file_source *fs, const struct stat *st)
{
	struct inode_key *k = (struct inode_key *)fs->inodes.ptr;
	size_t n = fs->inodes.len / sizeof *k;
	for (size_t i = 0; i < n; i++)
		if (k[i].dev == st->st_dev && k[i].ino == st->st_ino)
			return (uint32_t)(k[i].index + 1);
	struct inode_key nk = {st->st_dev, st->st_ino, nfiles(fs)};
	buf_append(&fs->inodes, &nk, sizeof nk);
	return 0;
}

static void add_file(struct file_source *fs, struct source_file *f)
{
	buf_append(&fs->files, f, sizeof *f);
}

static int walk(struct file_source *fs, int dir_fd, const char *rel, int depth);

/* Records what a failed call on the entry rel said, and returns -errno. */
static int entry_error(struct file_source *fs, const char *rel, int err)
{
	buf_printf(&fs->err, "%s/%s: %s", fs->root, rel, strerror(err));
	return -err;
}

/* Enters the directory name (rel from the root) below dir_fd, never through
 * a symlink, and only if it is still the directory st described. */
static int enter_dir(struct file_source *fs, int dir_fd, const char *name, const char *rel,
		     const struct stat *st, int depth)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return entry_error(fs, rel, errno);
	struct stat now;
	int rc = fstat(fd, &now) < 0 ? entry_error(fs, rel, errno) : 0;
	if (rc == 0 && (now.st_ino != st->st_ino || now.st_dev != st->st_dev)) {
		buf_printf(&fs->err, "%s/%s: replaced while it was listed", fs->root, rel);
		rc = SB_ECHANGED;
	}
	if (rc == 0)
		rc = walk(fs, fd, rel, depth + 1);
	close(fd);
	return rc;
}

static int add_entry(struct file_source *fs, int dir_fd, const char *name, const char *rel,
		     int depth)
{
	struct stat st;
	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_error(fs, rel, errno);
	if (nfiles(fs) >= fs->max_files) {
		buf_printf(&fs->err,
			   "%s: more entries than the limit of %llu per dataset (--max-files)",
			   fs->root, (unsigned long long)fs->max_files);
		return SB_ETOOBIG;
	}
	struct source_file f = {0};
	f.mode = source_mode(st.st_mode);
	f.mtime_ns = ts_ns(&st.st_mtim);
	if (S_ISREG(st.st_mode)) {
		f.type = SRC_REGULAR;
		f.size = (uint64_t)st.st_size;
		f.digest = change_token(&st);
		f.inode = (uint64_t)st.st_ino;
		if (st.st_nlink > 1)
			f.hardlink_to = hardlink_of(fs, &st);
	} else if (S_ISDIR(st.st_mode)) {
		f.type = SRC_DIRECTORY;
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_REL_MAX];
		ssize_t n = readlinkat(dir_fd, name, target, sizeof target - 1);
		if (n < 0)
			return entry_error(fs, rel, errno);
		target[n] = '\0';
		if (path_check_symlink(rel, target) < 0) {
			buf_printf(&fs->err, "%s/%s: symlink to '%s' escapes the source tree",
				   fs->root, rel, target);
			return SB_ECONFINE;
		}
		f.type = SRC_SYMLINK;
		f.link_target = xstrdup(target);
		f.digest = xasprintf("link:%s", target);
	} else {
		log_warn("%s/%s: skipping special file", fs->root, rel);
		return 0;
	}
	f.path = xstrdup(rel);
	add_file(fs, &f);
	return f.type == SRC_DIRECTORY ? enter_dir(fs, dir_fd, name, rel, &st, depth) : 0;
}

/* Lists the directory open at dir_fd (rel from the root; NULL for the root
 * itself). Every lookup is relative to an fd this walk opened without
 * following a symlink, so a directory swapped for a link mid-listing is
 * never entered. */
static int walk(struct file_source *fs, int dir_fd, const char *rel, int depth)
{
	if (depth > FILE_SOURCE_MAX_DEPTH) {
		buf_printf(&fs->err, "%s/%s: deeper than %d levels", fs->root, rel,
			   FILE_SOURCE_MAX_DEPTH);
		return SB_ETOOBIG;
	}
	int fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		int rc = -errno;
		if (fd >= 0)
			close(fd);
		buf_printf(&fs->err, "%s%s%s: %s", fs->root, rel ? "/" : "", rel ? rel : "",
			   strerror(-rc));
		return rc;
	}
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char *child = rel ? path_join(rel, e->d_name) : xstrdup(e->d_name);
		if (path_check_relative(child) < 0) {
			rc = SB_ECONFINE;
			buf_printf(&fs->err, "%s/%s: unusable name", fs->root, child);
		} else {
			rc = add_entry(fs, dirfd(d), e->d_name, child, depth);
		}
		free(child);
	}
	closedir(d);
	return rc;
}

static void list_work(uv_work_t *w)
{
	struct source *src = w->data;
	struct file_source *fs = src->impl;
	struct stat st;
	if (stat(fs->root, &st) < 0) {
		fs->status = -errno;
		buf_printf(&fs->err, "%s: %s", fs->root, strerror(errno));
		return;
	}
	if (S_ISREG(st.st_mode)) {
		const char *slash = strrchr(fs->root, '/');
		struct source_file f = {0};
		fs->single = 1;
		f.type = SRC_REGULAR;
		f.path = xstrdup(slash ? slash + 1 : fs->root);
		f.size = (uint64_t)st.st_size;
		f.mode = source_mode(st.st_mode);
		f.mtime_ns = ts_ns(&st.st_mtim);
		f.digest = change_token(&st);
		f.inode = (uint64_t)st.st_ino;
		add_file(fs, &f);
		fs->status = 0;
	} else if (S_ISDIR(st.st_mode)) {
		fs->root_fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fs->root_fd < 0) {
			fs->status = -errno;
			buf_printf(&fs->err, "%s: %s", fs->root, strerror(errno));
			return;
		}
		fs->status = walk(fs, fs->root_fd, NULL, 0);
	} else {
		fs->status = SB_ESCHEME;
		buf_printf(&fs->err, "%s: not a regular file or directory", fs->root);
	}
}

static void list_done(uv_work_t *w, int status)
{
	struct source *src = w->data;
	struct file_source *fs = src->impl;
	int rc = status < 0 ? status : fs->status;
	if (rc < 0) {
		source_set_error(src, "%s", fs->err.len ? buf_cstr(&fs->err) : sb_strerror(rc));
		struct source_file *f = (struct source_file *)fs->files.ptr;
		for (size_t i = 0; i < nfiles(fs); i++) {
			free(f[i].path);
			free(f[i].link_target);
			free(f[i].digest);
		}
	} else {
		src->listing.nfiles = nfiles(fs);
		src->listing.files = (struct source_file *)buf_steal(&fs->files);
		source_listing_sort(&src->listing);
	}
	buf_close(&fs->files);
	buf_close(&fs->inodes);
	fs->cb(src, rc, fs->cb_arg);
}

static int file_list(struct source *src, source_done_cb cb, void *arg)
{
	struct file_source *fs = src->impl;
	fs->cb = cb;
	fs->cb_arg = arg;
	fs->work.data = src;
	return uv_queue_work(src->loop, &fs->work, list_work, list_done);
}

/* Opens listed file f: below the root's fd without following any symlink
 * (a directory swapped for a link to /etc mid-pull is refused), and only if
 * it is still the inode the listing saw. */
static int open_listed(struct file_source *fs, const struct source_file *f)
{
	int fd;
	if (fs->single)
		fd = open(fs->root, O_RDONLY | O_CLOEXEC);
	else if (fs->root_fd < 0)
		return -EBADF;
	else
		fd = path_open_beneath(fs->root_fd, f->path, O_RDONLY);
	if (fd < 0 && fs->single)
		fd = -errno;
	if (fd < 0)
		return fd == -ELOOP || fd == -EXDEV || fd == -ENOTDIR ? SB_ECHANGED : fd;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (f->inode && (uint64_t)st.st_ino != f->inode)) {
		close(fd);
		return SB_ECHANGED;
	}
	return fd;
}

static int file_pread(struct source *src, size_t index, uint64_t off, size_t len, void *buf)
{
	struct file_source *fs = src->impl;
	if (index >= src->listing.nfiles)
		return SB_EPROTO;
	int fd = open_listed(fs, &src->listing.files[index]);
	if (fd < 0) {
		__atomic_add_fetch(&source_counters(URI_FILE)->errors, 1, __ATOMIC_RELAXED);
		return fd;
	}
	int rc = io_pread_full(fd, buf, len, off);
	if (rc == SB_ETRUNCATED)
		rc = SB_ECHANGED; /* the file shrank under us */
	close(fd);
	if (rc == 0)
		__atomic_add_fetch(&src->bytes_read, len, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&source_counters(URI_FILE)->errors, 1, __ATOMIC_RELAXED);
	return rc;
}

static void file_cancel(struct source *src)
{
}

static void file_free(struct source *src)
{
	struct file_source *fs = src->impl;
	if (!fs)
		return;
	free(fs->root);
	if (fs->root_fd >= 0)
		close(fs->root_fd);
	buf_close(&fs->err);
	buf_close(&fs->files);
	buf_close(&fs->inodes);
	free(fs);
	src->impl = NULL;
}

static const struct source_ops file_ops = {
    .name = "file",
    .list = file_list,
    .pread = file_pread,
    .cancel = file_cancel,
    .free = file_free,
};

int source_file_new(struct source *src)
{
	struct file_source *fs = xcalloc(1, sizeof *fs);
	fs->root = xstrdup(src->uri.path);
	fs->root_fd = -1;
	fs->max_files = src->opt.limits.files;
	src->impl = fs;
	src->ops = &file_ops;
	return 0;
}
