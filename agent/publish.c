#include "agent/publish.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "common/path.h"

#define TMP_PREFIX ".syncbit-tmp."

struct publisher {
	struct cache *c;
	const Manifest *m;
	const char *target;
	int root_fd;
	unsigned counter;
	struct hash_id *objects; /* per entry; zero for non-regular */
	size_t *group;		 /* per entry: the first entry with the same object */
	uint8_t *linked;	 /* per group: its object is hardlinked at some entry */
	struct cache_updates *updates;
	struct publish_stats *st;
	char **detail;
};

int publish_copy_fd(int src_fd, int dst_fd, uint64_t size)
{
	if (ioctl(dst_fd, FICLONE, src_fd) == 0)
		return 0;
	uint64_t done = 0;
	while (done < size) {
		loff_t in = (loff_t)done, out = (loff_t)done;
		ssize_t n = copy_file_range(src_fd, &in, dst_fd, &out, size - done, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 &&
		    (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
			/* Fall back to a plain read/write loop. */
			char *b = xmalloc(1 << 20);
			int rc = 0;
			while (done < size) {
				size_t want = size - done < (1 << 20) ? size - done : (1 << 20);
				ssize_t r = pread(src_fd, b, want, (off_t)done);
				if (r <= 0) {
					rc = r < 0 ? -errno : SB_ETRUNCATED;
					break;
				}
				if ((rc = io_pwrite_full(dst_fd, b, (size_t)r, done)) < 0)
					break;
				done += (uint64_t)r;
			}
			free(b);
			return rc;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return SB_ETRUNCATED;
		done += (uint64_t)n;
	}
	return 0;
}

static int fail(struct publisher *p, int rc, const char *rel, const char *what)
{
	if (p->detail && !*p->detail && sb_no_space(rc))
		*p->detail = xasprintf("no space left on %s%s (%s %s: %s)", p->target,
				       rc == -EDQUOT ? " within the disk quota" : "", what, rel,
				       sb_strerror(rc));
	else if (p->detail && !*p->detail)
		*p->detail = xasprintf("%s/%s: %s: %s", p->target, rel, what, sb_strerror(rc));
	return rc;
}

static void tmp_name(struct publisher *p, char *out, size_t len)
{
	snprintf(out, len, TMP_PREFIX "%d.%u", (int)getpid(), p->counter++);
}

/* Remove what stands at base when it is not of the wanted kind, so a
 * directory can replace a file or a file a symlink, as rsync would. */
static int clear_for(int dir_fd, const char *base, mode_t want)
{
	struct stat st;
	if (fstatat(dir_fd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((st.st_mode & S_IFMT) == want)
		return 1;
	if (S_ISDIR(st.st_mode))
		return -EISDIR; /* never delete a consumer's directory tree */
	if (want == S_IFDIR && unlinkat(dir_fd, base, 0) < 0)
		return -errno;
	return 0;
}

static int copy_object(struct publisher *p, const char *obj, int dir_fd, const char *tmp,
		       const FileEntry *f)
{
	int in = open(obj, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int out = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			 f->mode & MANIFEST_MODE_MASK);
	if (out < 0) {
		int rc = -errno;
		close(in);
		return rc;
	}
	int rc = publish_copy_fd(in, out, f->size);
	struct timespec ts[2] = {
	    {.tv_nsec = UTIME_OMIT},
	    {.tv_sec = f->mtime_ns / 1000000000ll, .tv_nsec = f->mtime_ns % 1000000000ll},
	};
	if (rc == 0 && (fchmod(out, f->mode & MANIFEST_MODE_MASK) < 0 || futimens(out, ts) < 0 ||
			fsync(out) < 0))
		rc = -errno;
	close(in);
	close(out);
	if (rc < 0)
		unlinkat(dir_fd, tmp, 0);
	return rc;
}

static int put_regular(struct publisher *p, size_t i, int dir_fd, const char *base)
{
	const FileEntry *f = p->m->files[i];
	char obj[4096];
	const char *from = obj;
	char *primary = NULL;
	struct stat want, have;
	int rc;

	if (f->hardlink_to) {
		primary = path_join(p->target, p->m->files[f->hardlink_to - 1]->path);
		from = primary;
	} else {
		cache_object_path(p->c, &p->objects[i], obj, sizeof obj);
	}
	if (stat(from, &want) < 0) {
		rc = fail(p, -errno, f->path, "object missing");
		goto out;
	}
	if (!f->hardlink_to &&
	    want.st_mtim.tv_sec * 1000000000ll + want.st_mtim.tv_nsec != f->mtime_ns) {
		if ((rc = cache_object_restamp(p->c, &p->objects[i], f->mtime_ns, p->updates)) <
		    0) {
			rc = fail(p, rc, f->path, "set mtime");
			goto out;
		}
	}
	if (fstatat(dir_fd, base, &have, AT_SYMLINK_NOFOLLOW) == 0 && have.st_dev == want.st_dev &&
	    have.st_ino == want.st_ino) {
		p->st->unchanged++;
		if (!f->hardlink_to)
			p->linked[p->group[i]] = 1;
		rc = 0;
		goto out;
	}
	if ((rc = clear_for(dir_fd, base, S_IFREG)) < 0) {
		rc = fail(p, rc, f->path, "cannot replace");
		goto out;
	}
	/* Link unless that would merge two files the source keeps apart
	 * (same content, not hardlinked) or give the file another mode. */
	int shared = !f->hardlink_to && p->linked[p->group[i]];
	int link_ok = !shared && (want.st_mode & 07777) == (f->mode & MANIFEST_MODE_MASK);
	char tmp[64];
	tmp_name(p, tmp, sizeof tmp);
	rc = -1;
	if (link_ok && linkat(AT_FDCWD, from, dir_fd, tmp, 0) == 0) {
		p->st->linked++;
		if (!f->hardlink_to)
			p->linked[p->group[i]] = 1;
		rc = 0;
	} else {
		if (link_ok && errno != EXDEV && errno != EMLINK && errno != EPERM) {
			rc = fail(p, -errno, f->path, "link");
			goto out;
		}
		if ((rc = copy_object(p, from, dir_fd, tmp, f)) < 0) {
			rc = fail(p, rc, f->path, "copy");
			goto out;
		}
		p->st->copied++;
	}
	if (renameat(dir_fd, tmp, dir_fd, base) < 0) {
		rc = fail(p, -errno, f->path, "rename");
		unlinkat(dir_fd, tmp, 0);
	}
out:
	free(primary);
	return rc;
}

static int put_symlink(struct publisher *p, const FileEntry *f, int dir_fd, const char *base)
{
	char cur[PATH_REL_MAX];
	ssize_t n = readlinkat(dir_fd, base, cur, sizeof cur - 1);
	if (n >= 0) {
		cur[n] = '\0';
		if (!strcmp(cur, f->link_target)) {
			p->st->unchanged++;
			return 0;
		}
	}
	int rc = clear_for(dir_fd, base, S_IFLNK);
	if (rc < 0)
		return fail(p, rc, f->path, "cannot replace");
	char tmp[64];
	tmp_name(p, tmp, sizeof tmp);
	if (symlinkat(f->link_target, dir_fd, tmp) < 0)
		return fail(p, -errno, f->path, "symlink");
	if (renameat(dir_fd, tmp, dir_fd, base) < 0) {
		rc = fail(p, -errno, f->path, "rename");
		unlinkat(dir_fd, tmp, 0);
		return rc;
	}
	p->st->linked++;
	return 0;
}

static int put_directory(struct publisher *p, const FileEntry *f, int dir_fd, const char *base)
{
	int rc = clear_for(dir_fd, base, S_IFDIR);
	if (rc < 0)
		return fail(p, rc, f->path, "cannot replace");
	/* Owner-writable while filling; the final mode is set at the end. */
	if (rc == 0 && mkdirat(dir_fd, base, (f->mode & MANIFEST_MODE_MASK) | 0700) < 0 &&
	    errno != EEXIST)
		return fail(p, -errno, f->path, "mkdir");
	return 0;
}

/* Apply directory modes and mtimes deepest first, once files are in. */
static int finish_directories(struct publisher *p)
{
	for (size_t i = p->m->n_files; i-- > 0;) {
		const FileEntry *f = p->m->files[i];
		if (f->type != SYNCBIT__FILE_TYPE__FILE_DIRECTORY)
			continue;
		const char *base;
		int dfd = path_open_parent(p->root_fd, f->path, 0755, &base);
		if (dfd < 0)
			return fail(p, dfd, f->path, "open parent");
		struct timespec ts[2] = {
		    {.tv_nsec = UTIME_OMIT},
		    {.tv_sec = f->mtime_ns / 1000000000ll, .tv_nsec = f->mtime_ns % 1000000000ll},
		};
		int rc = 0;
		int fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0 || fchmod(fd, f->mode & MANIFEST_MODE_MASK) < 0 ||
		    futimens(fd, ts) < 0)
			rc = fail(p, -errno, f->path, "finish directory");
		if (fd >= 0)
			close(fd);
		close(dfd);
		if (rc < 0)
			return rc;
	}
	return fsync(p->root_fd) < 0 ? fail(p, -errno, ".", "fsync") : 0;
}

static int by_object(const void *a, const void *b, void *arg)
{
	const struct hash_id *ids = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int d = memcmp(&ids[i], &ids[j], HASH_LEN);
	return d ? d : (i > j) - (i < j);
}

void publish_share_groups(const struct hash_id *ids, size_t n, size_t *group)
{
	size_t *order = xcalloc(n + 1, sizeof *order);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof *order, by_object, (void *)ids);
	for (size_t k = 0; k < n; k++)
		group[order[k]] = k > 0 && !memcmp(&ids[order[k]], &ids[order[k - 1]], HASH_LEN)
				      ? group[order[k - 1]]
				      : order[k];
	free(order);
}

/* Publish p->m into p->target, noting index updates in p->updates. */
static int publish_into(struct publisher *p)
{
	const Manifest *m = p->m;
	int rc = path_mkdirs(p->target, 0755);
	memset(p->st, 0, sizeof *p->st);
	if (p->detail)
		*p->detail = NULL;
	if (rc < 0)
		return fail(p, rc, ".", "create target");
	p->root_fd = open(p->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->root_fd < 0)
		return fail(p, -errno, ".", "open target");
	p->objects = xcalloc(m->n_files + 1, sizeof *p->objects);
	p->group = xcalloc(m->n_files + 1, sizeof *p->group);
	p->linked = xcalloc(m->n_files + 1, 1);
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *f = m->files[i];
		if (f->type == SYNCBIT__FILE_TYPE__FILE_REGULAR)
			manifest_file_object_id(f->size, m->block_size, f->block_hashes.data,
						f->block_hashes.len / HASH_LEN, &p->objects[i]);
	}
	publish_share_groups(p->objects, m->n_files, p->group);
	for (size_t i = 0; i < m->n_files && rc == 0; i++) {
		const FileEntry *f = m->files[i];
		const char *base;
		int dfd = path_open_parent(p->root_fd, f->path, 0755, &base);
		if (dfd < 0) {
			rc = fail(p, dfd, f->path, "open parent directory");
			break;
		}
		switch (f->type) {
		case SYNCBIT__FILE_TYPE__FILE_REGULAR:
			rc = put_regular(p, i, dfd, base);
			break;
		case SYNCBIT__FILE_TYPE__FILE_SYMLINK:
			rc = put_symlink(p, f, dfd, base);
			break;
		case SYNCBIT__FILE_TYPE__FILE_DIRECTORY:
			rc = put_directory(p, f, dfd, base);
			break;
		default:
			rc = fail(p, SB_EPROTO, f->path, "unknown type");
		}
		close(dfd);
	}
	if (rc == 0)
		rc = finish_directories(p);
	if (rc == 0) {
		size_t n = 0;
		for (size_t i = 0; i < m->n_files; i++)
			if (m->files[i]->type == SYNCBIT__FILE_TYPE__FILE_REGULAR)
				p->objects[n++] = p->objects[i];
		cache_updates_touch(p->updates, p->objects, n);
	}
	free(p->objects);
	free(p->group);
	free(p->linked);
	close(p->root_fd);
	return rc;
}

int publish_tree(struct cache *c, const Manifest *m, const char *target, struct publish_stats *st,
		 struct cache_updates *updates, char **detail)
{
	struct cache_updates now = {0};
	struct publisher p = {.c = c,
			      .m = m,
			      .target = target,
			      .st = st,
			      .updates = updates ? updates : &now,
			      .detail = detail};
	int rc = publish_into(&p);
	if (!updates) {
		int urc = cache_updates_apply(c, &now);
		if (urc < 0)
			log_warn("%s: cannot record the published objects in the cache index: %s",
				 target, sb_strerror(urc));
		cache_updates_close(&now);
	}
	return rc;
}

int publish_version(struct cache *c, const Manifest *m, const char *root, const char *name,
		    struct cache_updates *updates, char **detail)
{
	struct publish_stats st;
	struct stat sb;
	char *dst = path_join(root, name);
	char *staging = xasprintf("%s/.syncbit-%s.next", root, name);
	int rc = path_mkdirs(root, 0755);
	if (detail)
		*detail = NULL;
	if (rc < 0) {
		if (detail)
			*detail = xasprintf("%s: cannot create: %s", root, sb_strerror(rc));
		goto out;
	}
	/* A staging tree left by a crash is stale: start it afresh. */
	if ((rc = path_remove_tree(staging)) < 0 ||
	    (rc = publish_tree(c, m, staging, &st, updates, detail)) < 0 ||
	    (rc = path_fsync_dir(staging)) < 0) {
		if (detail && !*detail)
			*detail = xasprintf("%s: cannot stage the new version: %s", staging,
					    sb_strerror(rc));
		goto out;
	}
	if (lstat(dst, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
		rc = -ENOTDIR;
		if (detail)
			*detail = xasprintf("%s: exists and is not a directory", dst);
		goto out;
	}
	if (lstat(dst, &sb) == 0) {
		rc = renameat2(AT_FDCWD, staging, AT_FDCWD, dst, RENAME_EXCHANGE) < 0 ? -errno : 0;
		if (rc == 0)
			rc = path_remove_tree(staging); /* now the old version */
	} else {
		rc = rename(staging, dst) < 0 ? -errno : 0;
	}
	if (rc == 0)
		rc = path_fsync_dir(root);
	if (rc < 0 && detail && !*detail)
		*detail =
		    xasprintf("%s: cannot switch to the new version: %s", dst, sb_strerror(rc));
out:
	if (rc < 0)
		path_remove_tree(staging);
	free(dst);
	free(staging);
	return rc;
}
