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

#include "common/source.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
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

static void add_file(struct file_source *fs, struct source_file *f)
{
	buf_append(&fs->files, f, sizeof *f);
}

static size_t nfiles(const struct file_source *fs)
{
	return fs->files.len / sizeof(struct source_file);
}

static int walk(struct file_source *fs, const char *rel, int depth);

static int add_entry(struct file_source *fs, const char *rel, int depth)
{
	char *abs = path_join(fs->root, rel);
	struct stat st;
	int rc = 0;
	if (lstat(abs, &st) < 0) {
		rc = -errno;
		buf_printf(&fs->err, "%s: %s", abs, strerror(errno));
		goto out;
	}
	if (nfiles(fs) >= fs->max_files) {
		rc = SB_ETOOBIG;
		buf_printf(&fs->err,
			   "%s: more entries than the limit of %llu per dataset (--max-files)",
			   fs->root, (unsigned long long)fs->max_files);
		goto out;
	}
	struct source_file f = {0};
	f.mode = st.st_mode & 07777;
	f.mtime_ns = ts_ns(&st.st_mtim);
	if (S_ISREG(st.st_mode)) {
		f.type = SRC_REGULAR;
		f.size = (uint64_t)st.st_size;
		f.digest = change_token(&st);
		if (st.st_nlink > 1) {
			struct inode_key *k = (struct inode_key *)fs->inodes.ptr;
			size_t n = fs->inodes.len / sizeof *k;
			for (size_t i = 0; i < n; i++)
				if (k[i].dev == st.st_dev && k[i].ino == st.st_ino) {
					f.hardlink_to = (uint32_t)(k[i].index + 1);
					break;
				}
			if (!f.hardlink_to) {
				struct inode_key nk = {st.st_dev, st.st_ino, nfiles(fs)};
				buf_append(&fs->inodes, &nk, sizeof nk);
			}
		}
	} else if (S_ISDIR(st.st_mode)) {
		f.type = SRC_DIRECTORY;
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_REL_MAX];
		ssize_t n = readlink(abs, target, sizeof target - 1);
		if (n < 0) {
			rc = -errno;
			buf_printf(&fs->err, "%s: %s", abs, strerror(errno));
			goto out;
		}
		target[n] = '\0';
		if (path_check_symlink(rel, target) < 0) {
			rc = SB_ECONFINE;
			buf_printf(&fs->err, "%s: symlink to '%s' escapes the source tree", abs,
				   target);
			goto out;
		}
		f.type = SRC_SYMLINK;
		f.link_target = xstrdup(target);
		f.digest = xasprintf("link:%s", target);
	} else {
		log_warn("%s: skipping special file", abs);
		goto out;
	}
	f.path = xstrdup(rel);
	add_file(fs, &f);
	if (f.type == SRC_DIRECTORY)
		rc = walk(fs, rel, depth + 1);
out:
	free(abs);
	return rc;
}

static int walk(struct file_source *fs, const char *rel, int depth)
{
	if (depth > FILE_SOURCE_MAX_DEPTH) {
		buf_printf(&fs->err, "%s/%s: deeper than %d levels", fs->root, rel,
			   FILE_SOURCE_MAX_DEPTH);
		return SB_ETOOBIG;
	}
	char *abs = rel ? path_join(fs->root, rel) : xstrdup(fs->root);
	DIR *d = opendir(abs);
	if (!d) {
		int rc = -errno;
		buf_printf(&fs->err, "%s: %s", abs, strerror(errno));
		free(abs);
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
			buf_printf(&fs->err, "%s/%s: unusable name", abs, e->d_name);
		} else {
			rc = add_entry(fs, child, depth);
		}
		free(child);
	}
	closedir(d);
	free(abs);
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
		f.mode = st.st_mode & 07777;
		f.mtime_ns = ts_ns(&st.st_mtim);
		f.digest = change_token(&st);
		add_file(fs, &f);
		fs->status = 0;
	} else if (S_ISDIR(st.st_mode)) {
		fs->status = walk(fs, NULL, 0);
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

static int file_pread(struct source *src, size_t index, uint64_t off, size_t len, void *buf)
{
	struct file_source *fs = src->impl;
	if (index >= src->listing.nfiles)
		return SB_EPROTO;
	const struct source_file *f = &src->listing.files[index];
	char *abs = fs->single ? xstrdup(fs->root) : path_join(fs->root, f->path);
	int fd = open(abs, O_RDONLY | O_CLOEXEC | (fs->single ? 0 : O_NOFOLLOW));
	free(abs);
	if (fd < 0)
		return -errno;
	size_t done = 0;
	int rc = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0) {
			rc = SB_ECHANGED; /* the file shrank under us */
			break;
		}
		done += (size_t)n;
	}
	close(fd);
	if (rc == 0)
		__atomic_add_fetch(&src->bytes_read, len, __ATOMIC_RELAXED);
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
	fs->max_files = src->opt.limits.files;
	src->impl = fs;
	src->ops = &file_ops;
	return 0;
}
