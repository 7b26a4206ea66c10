#include "agent/layout.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/layout_impl.h"
#include "agent/publish.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "common/source/filter.h"
#include "common/path.h"

#define TMP_PREFIX ".syncbit-tmp."

static const char *const kind_names[] = {"plain", "hf-cache", "triton"};

int layout_parse_kind(const char *s, enum layout_kind *out)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, kind_names[i])) {
			*out = (enum layout_kind)i;
			return 0;
		}
	return SB_ECONFIG;
}

const char *layout_kind_name(enum layout_kind k)
{
	return k <= LAYOUT_TRITON ? kind_names[k] : "?";
}

int layout_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return s[n] == '\0';
}

int layout_check(const struct layout *l, const char *source, char **error)
{
	*error = NULL;
	if (l->kind == LAYOUT_HF_CACHE)
		return layout_hf_check(l, source, error);
	if (l->kind == LAYOUT_TRITON)
		return layout_triton_check(l, error);
	return 0;
}

char *layout_dataset_name(const struct layout *l, const char *source, const char *target)
{
	if (l->kind == LAYOUT_TRITON)
		return xasprintf("pull:%s/%s/%s", target, l->model,
				 l->version ? l->version : LAYOUT_TRITON_VERSION);
	if (l->kind == LAYOUT_HF_CACHE)
		return layout_hf_dataset_name(l, source, target);
	return NULL;
}

void layout_close(struct layout *l)
{
	free(l->path);
	l->path = NULL;
}

int layout_fail(char **detail, int rc, const char *where, const char *what)
{
	if (detail && !*detail)
		*detail = xasprintf("%s: %s: %s", where, what, sb_strerror(rc));
	return rc;
}

/* ---- pruning ---------------------------------------------------------- */

int layout_cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int layout_clear_dir(int fd, int (*keep)(const char *name, const void *arg), const void *arg,
		     uint64_t *removed)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    !(keep && keep(e->d_name, arg)))
			rc = layout_remove_at(dirfd(d), e->d_name, removed);
	closedir(d);
	return rc;
}

/* Remove name under dir_fd; a directory goes with everything in it. Never
 * follows a symlink: they are unlinked like files. */
int layout_remove_at(int dir_fd, const char *name, uint64_t *removed)
{
	struct stat st;
	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int rc = fd < 0 ? -errno : layout_clear_dir(fd, NULL, NULL, removed);
		if (rc < 0)
			return rc;
		if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0)
			return -errno;
	} else if (unlinkat(dir_fd, name, 0) < 0) {
		return errno == ENOENT ? 0 : -errno;
	}
	(*removed)++;
	return 0;
}

struct pruner {
	const char **paths; /* sorted */
	const FileEntry **entries;
	size_t n;
	uint64_t removed;
	char **detail;
	const char *target;
	const struct filter *keep;
};

static const FileEntry *pruner_find(const struct pruner *p, const char *rel)
{
	const char **hit = bsearch(&rel, p->paths, p->n, sizeof *p->paths, layout_cmp_str);
	return hit ? p->entries[hit - p->paths] : NULL;
}

/* 1 when some path of the manifest lies under the directory rel: sources
 * that list files only (hub, S3, HTTP) imply their directories. */
static int pruner_implies_dir(const struct pruner *p, const char *rel)
{
	size_t n = strlen(rel), lo = 0, hi = p->n;
	while (lo < hi) { /* first path >= rel + "/" */
		size_t mid = lo + (hi - lo) / 2;
		int c = strncmp(p->paths[mid], rel, n);
		if (c < 0 || (c == 0 && (unsigned char)p->paths[mid][n] < '/'))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->n && !strncmp(p->paths[lo], rel, n) && p->paths[lo][n] == '/';
}

static int prune_dir(struct pruner *p, int dir_fd, struct buf *rel)
{
	int fd = dup(dir_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return layout_fail(p->detail, -errno, p->target, "read directory");
	}
	size_t base_len = rel->len;
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		rel->len = base_len;
		if (base_len)
			buf_append_str(rel, "/");
		buf_append_str(rel, e->d_name);
		const FileEntry *f = pruner_find(p, buf_cstr(rel));
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		int is_dir = S_ISDIR(st.st_mode);
		if (!f && filter_excludes(p->keep, buf_cstr(rel), is_dir))
			continue; /* filtered out: not the sync's to delete */
		if (!f && !(is_dir && pruner_implies_dir(p, buf_cstr(rel)))) {
			rc = layout_remove_at(dirfd(d), e->d_name, &p->removed);
			if (rc < 0)
				rc = layout_fail(p->detail, rc, buf_cstr(rel), "remove");
		} else if (is_dir && (!f || f->type == SYNCBIT__FILE_TYPE__FILE_DIRECTORY)) {
			int sub = openat(dirfd(d), e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				continue;
			rc = prune_dir(p, sub, rel);
			close(sub);
		}
	}
	rel->len = base_len;
	closedir(d);
	return rc;
}

int layout_prune(const Manifest *m, const char *target, const struct filter *keep,
		 uint64_t *removed, char **detail)
{
	struct pruner p = {.n = m->n_files, .detail = detail, .target = target, .keep = keep};
	*removed = 0;
	if (!strcmp(target, "/"))
		return layout_fail(detail, -EPERM, target, "refusing to prune");
	int root = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root < 0)
		return errno == ENOENT ? 0 : layout_fail(detail, -errno, target, "open");
	p.paths = xcalloc(m->n_files + 1, sizeof *p.paths);
	p.entries = xcalloc(m->n_files + 1, sizeof *p.entries);
	/* Sort an index so lookups do not depend on the manifest's order. */
	for (size_t i = 0; i < m->n_files; i++)
		p.paths[i] = m->files[i]->path;
	qsort(p.paths, p.n, sizeof *p.paths, layout_cmp_str);
	for (size_t i = 0; i < m->n_files; i++) {
		const char *key = m->files[i]->path;
		const char **hit = bsearch(&key, p.paths, p.n, sizeof *p.paths, layout_cmp_str);
		p.entries[hit - p.paths] = m->files[i];
	}
	struct buf rel = BUF_INIT;
	buf_append_str(&rel, "");
	int rc = prune_dir(&p, root, &rel);
	if (rc == 0 && p.removed && fsync(root) < 0)
		rc = layout_fail(detail, -errno, target, "fsync");
	buf_close(&rel);
	close(root);
	free(p.paths);
	free(p.entries);
	*removed = p.removed;
	return rc;
}

/* ---- small atomic writes ---------------------------------------------- */

static unsigned tmp_counter;

/* Rename dir_fd/tmp to name when rc is 0; drop tmp otherwise. */
static int commit_tmp(int dir_fd, const char *tmp, const char *name, int rc)
{
	if (rc == 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(dir_fd, tmp, 0);
	return rc;
}

static void tmp_name(char *out, size_t len)
{
	snprintf(out, len, TMP_PREFIX "%d.%u", (int)getpid(), tmp_counter++);
}

/* Write data as dir_fd/name (mode 0644) by rename, unless it already holds
 * exactly that. 1 when written, 0 when unchanged, or -errno. */
int layout_put_file(int dir_fd, const char *name, const char *data)
{
	char cur[256];
	size_t len = strlen(data);
	int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, cur, sizeof cur);
		close(fd);
		if (n >= 0 && (size_t)n == len && !memcmp(cur, data, len))
			return 0;
	}
	char tmp[64];
	tmp_name(tmp, sizeof tmp);
	fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = io_pwrite_full(fd, data, len, 0);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	rc = commit_tmp(dir_fd, tmp, name, rc);
	return rc < 0 ? rc : 1;
}

/* A symlink dir_fd/name -> target by rename; 1 written, 0 unchanged. */
int layout_put_symlink(int dir_fd, const char *name, const char *target)
{
	char cur[PATH_REL_MAX];
	ssize_t n = readlinkat(dir_fd, name, cur, sizeof cur - 1);
	if (n >= 0) {
		cur[n] = '\0';
		if (!strcmp(cur, target))
			return 0;
	}
	struct stat st;
	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
		return -EISDIR;
	char tmp[64];
	tmp_name(tmp, sizeof tmp);
	if (symlinkat(target, dir_fd, tmp) < 0)
		return -errno;
	int rc = commit_tmp(dir_fd, tmp, name, 0);
	return rc < 0 ? rc : 1;
}

/* Make dir_fd/name the content of cache object obj: a hardlink, or a copy
 * across filesystems. 1 linked, 2 copied. */
int layout_put_object(int dir_fd, const char *name, const char *obj, const FileEntry *f)
{
	char tmp[64];
	tmp_name(tmp, sizeof tmp);
	if (linkat(AT_FDCWD, obj, dir_fd, tmp, 0) == 0) {
		int rc = commit_tmp(dir_fd, tmp, name, 0);
		return rc < 0 ? rc : 1;
	}
	if (errno != EXDEV && errno != EMLINK && errno != EPERM)
		return -errno;
	int in = open(obj, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int out = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			 f->mode & MANIFEST_MODE_MASK);
	int rc = out < 0 ? -errno : publish_copy_fd(in, out, f->size);
	if (rc == 0 && fsync(out) < 0)
		rc = -errno;
	close(in);
	if (out >= 0)
		close(out);
	rc = out < 0 ? rc : commit_tmp(dir_fd, tmp, name, rc);
	return rc < 0 ? rc : 2;
}

void layout_object_id(const Manifest *m, size_t i, struct hash_id *id)
{
	const FileEntry *f = m->files[i];
	if (f->hardlink_to && f->hardlink_to <= m->n_files && !f->block_hashes.len)
		f = m->files[f->hardlink_to - 1];
	manifest_file_object_id(f->size, m->block_size, f->block_hashes.data,
				f->block_hashes.len / HASH_LEN, id);
}

int layout_open_dir(int dir_fd, const char *name, int create)
{
	if (create && mkdirat(dir_fd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int publish_in(struct cache *c, const Manifest *m, struct layout *l, const char *target,
		      struct cache_updates *updates, char **detail)
{
	int rc;
	l->linked = l->copied = l->unchanged = l->removed = 0;
	free(l->path);
	l->path = NULL;
	if (detail)
		*detail = NULL;
	switch (l->kind) {
	case LAYOUT_HF_CACHE:
		return layout_hf_publish(c, m, l, target, updates, detail);
	case LAYOUT_TRITON:
		return layout_triton_publish(c, m, l, target, updates, detail);
	default:
		break;
	}
	struct publish_stats st;
	rc = publish_tree(c, m, target, &st, updates, detail);
	if (rc < 0)
		return rc;
	l->linked = st.linked;
	l->copied = st.copied;
	l->unchanged = st.unchanged;
	l->path = xstrdup(target);
	if (l->prune)
		rc = layout_prune(m, target, l->filter, &l->removed, detail);
	return rc;
}

int layout_publish(struct cache *c, const Manifest *m, struct layout *l, const char *target,
		   struct cache_updates *updates, char **detail)
{
	if (updates)
		return publish_in(c, m, l, target, updates, detail);
	struct cache_updates now = {0};
	int rc = publish_in(c, m, l, target, &now, detail);
	int urc = cache_updates_apply(c, &now);
	if (urc < 0)
		log_warn("%s: cannot record the published objects in the cache index: %s", target,
			 sb_strerror(urc));
	cache_updates_close(&now);
	return rc;
}
