/* The hf-cache layout: the Hugging Face hub cache (hub-docs local-cache.md). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/layout.h"
#include "agent/layout_impl.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/uri.h"

#define SNAPSHOT_STAGING   ".syncbit-snapshot."
#define HF_COMMIT_HEX	   40
#define HF_DEFAULT_REF	   "main"
#define REPO_COMPONENT_MAX 96

/* repo, dataset flag and revision for hf-cache: given, or from the source. */
struct hf_repo {
	const char *repo;
	int dataset;
	const char *revision;
	struct source_uri uri;
	int have_uri;
};

/* Hub repo ids: one or two components of letters, digits, '-', '_', '.'. */
static int repo_id_ok(const char *repo)
{
	size_t len = 0, slashes = 0;
	for (const char *s = repo; *s; s++) {
		if (*s == '/') {
			if (len == 0)
				return 0;
			slashes++;
			len = 0;
			continue;
		}
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return 0;
		if (++len > REPO_COMPONENT_MAX)
			return 0;
	}
	return len > 0 && slashes <= 1 && !strstr(repo, "--") && !strstr(repo, "..") &&
	       repo[0] != '.';
}

static void hf_repo_init(struct hf_repo *r, const struct layout *l, const char *source)
{
	memset(r, 0, sizeof *r);
	r->repo = l->repo;
	r->dataset = l->dataset;
	r->revision = l->revision;
	if (source && uri_parse(source, &r->uri) == 0) {
		r->have_uri = 1;
		if (!r->repo && (r->uri.kind == URI_HF || r->uri.kind == URI_MS)) {
			r->repo = r->uri.repo;
			r->dataset = r->uri.is_dataset;
		}
		if (!r->revision && (r->uri.kind == URI_HF || r->uri.kind == URI_MS))
			r->revision = r->uri.revision;
	}
	if (!r->revision)
		r->revision = HF_DEFAULT_REF;
}

static void hf_repo_close(struct hf_repo *r)
{
	if (r->have_uri)
		uri_close(&r->uri);
}

char *layout_hf_folder(const char *repo, int dataset)
{
	struct buf b = BUF_INIT;
	buf_append_str(&b, dataset ? "datasets--" : "models--");
	for (const char *s = repo; *s; s++)
		buf_append_str(&b, *s == '/' ? "--" : (char[]){*s, 0});
	return buf_steal(&b);
}

/* ---- hf-cache ----------------------------------------------------------- */

/* The blob name of file i: the hex of its hub digest ("sha256:<64 hex>" for
 * LFS files, "git:<40 hex>" otherwise, which is the hub's etag), else its
 * cache object id. out holds HASH_HEX_LEN + 1 bytes. */
static void hf_blob_name(const Manifest *m, size_t i, char *out)
{
	const char *d = m->files[i]->source_digest ? m->files[i]->source_digest : "";
	const char *hex = NULL;
	size_t n = 0;
	if (!strncmp(d, "sha256:", 7))
		hex = d + 7, n = 64;
	else if (!strncmp(d, "git:", 4))
		hex = d + 4, n = HF_COMMIT_HEX;
	if (hex && layout_is_hex(hex, n)) {
		for (size_t k = 0; k < n; k++)
			out[k] = (char)tolower((unsigned char)hex[k]);
		out[n] = '\0';
		return;
	}
	struct hash_id id;
	layout_object_id(m, i, &id);
	hash_to_hex(&id, out);
}

/* The snapshot's commit: the listing version when it is one (an hf source
 * lists at a commit), else a commit given as the revision, else one made
 * from the manifest id so that each version gets its own snapshot. */
static void hf_commit(const Manifest *m, const char *revision, char *out)
{
	const char *v = m->source_version ? m->source_version : "";
	const char *from = layout_is_hex(v, HF_COMMIT_HEX)	    ? v
			   : layout_is_hex(revision, HF_COMMIT_HEX) ? revision
								    : NULL;
	if (from) {
		for (size_t k = 0; k < HF_COMMIT_HEX; k++)
			out[k] = (char)tolower((unsigned char)from[k]);
	} else {
		struct buf enc = BUF_INIT;
		struct hash_id id;
		char hex[HASH_HEX_LEN + 1];
		manifest_encode(m, &enc, &id);
		buf_close(&enc);
		hash_to_hex(&id, hex);
		memcpy(out, hex, HF_COMMIT_HEX);
	}
	out[HF_COMMIT_HEX] = '\0';
}

static int hf_blobs(struct cache *c, const Manifest *m, int blobs_fd, struct layout *l,
		    struct cache_updates *updates, char **detail)
{
	struct hash_id *ids = xcalloc(m->n_files + 1, sizeof *ids);
	size_t nids = 0;
	int rc = 0;
	for (size_t i = 0; i < m->n_files && rc == 0; i++) {
		const FileEntry *f = m->files[i];
		if (f->type != SYNCBIT__FILE_TYPE__FILE_REGULAR)
			continue;
		char hex[HASH_HEX_LEN + 1], obj[PATH_REL_MAX];
		struct stat st;
		layout_object_id(m, i, &ids[nids]);
		hf_blob_name(m, i, hex);
		cache_object_path(c, &ids[nids++], obj, sizeof obj);
		/* Content-addressed: a blob of the right size is this content. */
		if (fstatat(blobs_fd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_size == f->size) {
			l->unchanged++;
			continue;
		}
		rc = layout_put_object(blobs_fd, hex, obj, f);
		if (rc < 0)
			rc = layout_fail(detail, rc, f->path, "cannot store blob");
		else if (rc == 1)
			l->linked++, rc = 0;
		else
			l->copied++, rc = 0;
	}
	if (rc == 0)
		cache_updates_touch(updates, ids, nids);
	free(ids);
	return rc;
}

/* Symlinks to the blobs (relative, as the hub's tools make them), the
 * source's own symlinks and its directories. */
static int hf_fill_snapshot(const Manifest *m, int snap_fd, char **detail)
{
	struct buf target = BUF_INIT;
	int rc = 0;
	for (size_t i = 0; i < m->n_files && rc == 0; i++) {
		const FileEntry *f = m->files[i];
		const char *base;
		int dfd = path_open_parent(snap_fd, f->path, 0755, &base);
		if (dfd < 0)
			return layout_fail(detail, dfd, f->path, "open parent directory");
		if (f->type == SYNCBIT__FILE_TYPE__FILE_DIRECTORY) {
			if (mkdirat(dfd, base, 0755) < 0 && errno != EEXIST)
				rc = layout_fail(detail, -errno, f->path, "mkdir");
		} else if (f->type == SYNCBIT__FILE_TYPE__FILE_SYMLINK) {
			rc = layout_put_symlink(dfd, base, f->link_target);
		} else {
			char hex[HASH_HEX_LEN + 1];
			hf_blob_name(m, i, hex);
			buf_reset(&target);
			buf_append_str(&target, "../../");
			for (const char *s = f->path; *s; s++)
				if (*s == '/')
					buf_append_str(&target, "../");
			buf_printf(&target, "blobs/%s", hex);
			rc = layout_put_symlink(dfd, base, buf_cstr(&target));
		}
		if (rc < 0)
			rc = layout_fail(detail, rc, f->path, "cannot link into the snapshot");
		else
			rc = 0;
		close(dfd);
	}
	buf_close(&target);
	return rc;
}

/* snapshots/COMMIT: a new one is built beside and renamed in whole; an
 * existing one (same commit, so same content) is repaired in place. */
static int hf_snapshot(const Manifest *m, int repo_fd, const char *repo_dir, const char *commit,
		       char **detail)
{
	char staging[96];
	uint64_t removed;
	snprintf(staging, sizeof staging, SNAPSHOT_STAGING "%s", commit);
	int snaps = layout_open_dir(repo_fd, "snapshots", 1);
	if (snaps < 0)
		return layout_fail(detail, snaps, repo_dir, "snapshots");
	int rc = layout_remove_at(repo_fd, staging, &removed);
	int fd = rc < 0 ? rc : layout_open_dir(snaps, commit, 0);
	if (fd == -ENOENT) {
		fd = layout_open_dir(repo_fd, staging, 1);
		rc = fd < 0 ? fd : hf_fill_snapshot(m, fd, detail);
		if (rc == 0 && fsync(fd) < 0)
			rc = -errno;
		if (fd >= 0)
			close(fd);
		if (rc == 0 && renameat(repo_fd, staging, snaps, commit) < 0)
			rc = -errno;
		if (rc < 0)
			layout_remove_at(repo_fd, staging, &removed);
	} else if (fd >= 0) {
		rc = hf_fill_snapshot(m, fd, detail);
		close(fd);
		if (rc == 0) {
			char *path = xasprintf("%s/snapshots/%s", repo_dir, commit);
			rc = layout_prune(m, path, NULL, &removed, detail);
			free(path);
		}
	} else {
		rc = fd;
	}
	if (rc == 0 && fsync(snaps) < 0)
		rc = -errno;
	close(snaps);
	return rc < 0 ? layout_fail(detail, rc, repo_dir, "snapshot") : 0;
}

/* refs/REVISION holds the commit, without a newline (the hub's tools read
 * the file whole). A revision that is a commit has no ref. */
static int hf_ref(int repo_fd, const char *revision, const char *commit, char **detail)
{
	if (layout_is_hex(revision, HF_COMMIT_HEX))
		return 0;
	int refs = layout_open_dir(repo_fd, "refs", 1);
	if (refs < 0)
		return layout_fail(detail, refs, "refs", "open");
	const char *base;
	int dfd = path_open_parent(refs, revision, 0755, &base);
	int rc = dfd < 0 ? dfd : layout_put_file(dfd, base, commit);
	if (rc >= 0 && fsync(dfd) < 0)
		rc = -errno;
	if (dfd >= 0)
		close(dfd);
	close(refs);
	return rc < 0 ? layout_fail(detail, rc, revision, "cannot write ref") : 0;
}

/* Names collected while walking a repo folder; sorted before lookups. */
struct name_set {
	char **v;
	size_t n, cap;
};

static void set_add(struct name_set *s, const char *name)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->v = xrealloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = xstrdup(name);
}

static int set_has(const struct name_set *s, const char *name)
{
	return s->n && bsearch(&name, s->v, s->n, sizeof *s->v, layout_cmp_str) != NULL;
}

/* Sorted for set_has. An empty set has no array to sort (qsort's base
 * must not be NULL, even for no elements). */
static void set_sort(struct name_set *s)
{
	if (s->n)
		qsort(s->v, s->n, sizeof *s->v, layout_cmp_str);
}

static void set_close(struct name_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

/* Visit every entry below dir_fd (never through a symlink): refs files
 * give commits, snapshot symlinks give blob names. */
static void collect(int dir_fd, int refs, struct name_set *out)
{
	int fd = dup(dir_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		char buf[PATH_REL_MAX];
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = layout_open_dir(dirfd(d), e->d_name, 0);
			if (sub >= 0) {
				collect(sub, refs, out);
				close(sub);
			}
		} else if (refs && S_ISREG(st.st_mode)) {
			int f = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			ssize_t n = f >= 0 ? read(f, buf, HF_COMMIT_HEX + 1) : -1;
			if (f >= 0)
				close(f);
			if (n == HF_COMMIT_HEX &&
			    (buf[n] = '\0', layout_is_hex(buf, HF_COMMIT_HEX)))
				set_add(out, buf);
		} else if (!refs && S_ISLNK(st.st_mode)) {
			ssize_t n = readlinkat(dirfd(d), e->d_name, buf, sizeof buf - 1);
			const char *b = n > 0 ? (buf[n] = '\0', strstr(buf, "blobs/")) : NULL;
			if (b)
				set_add(out, b + strlen("blobs/"));
		}
	}
	closedir(d);
}

static int in_set(const char *name, const void *set)
{
	return set_has(set, name);
}

/* Remove the entries of dir_fd/name that keep does not hold. */
static int prune_names(int dir_fd, const char *name, const struct name_set *keep, uint64_t *removed)
{
	int fd = layout_open_dir(dir_fd, name, 0);
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	int rc = layout_clear_dir(dup(fd), in_set, keep, removed);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* --delete in hf-cache: snapshots that no ref names (other than the one
 * just published) go, then the blobs no remaining snapshot links to. */
static int hf_prune(int repo_fd, const char *repo_dir, const char *commit, uint64_t *removed,
		    char **detail)
{
	struct name_set keep = {0}, used = {0};
	set_add(&keep, commit);
	int refs = layout_open_dir(repo_fd, "refs", 0);
	if (refs >= 0) {
		collect(refs, 1, &keep);
		close(refs);
	}
	set_sort(&keep);
	int rc = prune_names(repo_fd, "snapshots", &keep, removed);
	int snaps = rc < 0 ? -1 : layout_open_dir(repo_fd, "snapshots", 0);
	if (snaps >= 0) {
		collect(snaps, 0, &used);
		close(snaps);
		set_sort(&used);
		rc = prune_names(repo_fd, "blobs", &used, removed);
	}
	set_close(&keep);
	set_close(&used);
	return rc < 0 ? layout_fail(detail, rc, repo_dir, "cannot remove old snapshots") : 0;
}

int layout_hf_publish(struct cache *c, const Manifest *m, struct layout *l, const char *target,
		      struct cache_updates *updates, char **detail)
{
	struct hf_repo r;
	char commit[HF_COMMIT_HEX + 1];
	hf_repo_init(&r, l, m->source);
	if (!r.repo || !repo_id_ok(r.repo) || path_check_relative(r.revision) < 0) {
		hf_repo_close(&r);
		return layout_fail(detail, SB_ECONFIG, m->source, "no usable repo id for hf-cache");
	}
	hf_commit(m, r.revision, commit);
	char *folder = layout_hf_folder(r.repo, r.dataset);
	char *repo_dir = path_join(target, folder);
	int repo_fd = -1, blobs = -1;
	int rc = path_mkdirs(repo_dir, 0755);
	if (rc == 0)
		repo_fd = rc = layout_open_dir(AT_FDCWD, repo_dir, 0);
	if (rc >= 0)
		blobs = rc = layout_open_dir(repo_fd, "blobs", 1);
	if (rc < 0) {
		rc = layout_fail(detail, rc, repo_dir, "cannot create");
		goto out;
	}
	if ((rc = hf_blobs(c, m, blobs, l, updates, detail)) < 0)
		goto out;
	if (fsync(blobs) < 0) {
		rc = layout_fail(detail, -errno, repo_dir, "fsync blobs");
		goto out;
	}
	/* Blobs, then the snapshot, then the ref: a reader that resolves the
	 * ref finds a complete snapshot. */
	if ((rc = hf_snapshot(m, repo_fd, repo_dir, commit, detail)) < 0 ||
	    (rc = hf_ref(repo_fd, r.revision, commit, detail)) < 0)
		goto out;
	if (l->prune && (rc = hf_prune(repo_fd, repo_dir, commit, &l->removed, detail)) < 0)
		goto out;
	rc = fsync(repo_fd) < 0 ? layout_fail(detail, -errno, repo_dir, "fsync") : 0;
	l->path = xasprintf("%s/snapshots/%s", repo_dir, commit);
out:
	if (blobs >= 0)
		close(blobs);
	if (repo_fd >= 0)
		close(repo_fd);
	free(repo_dir);
	free(folder);
	hf_repo_close(&r);
	return rc;
}

int layout_hf_check(const struct layout *l, const char *source, char **error)
{
	struct hf_repo r;
	hf_repo_init(&r, l, source);
	if (!r.repo)
		*error = xasprintf("--layout hf-cache: %s is not an hf:// or ms:// source; "
				   "name the repo with --repo ORG/NAME",
				   source);
	else if (!repo_id_ok(r.repo))
		*error = xasprintf("--repo: '%s' is not a repo id (ORG/NAME)", r.repo);
	else if (path_check_relative(r.revision) < 0)
		*error = xasprintf("revision '%s' cannot name a ref file", r.revision);
	hf_repo_close(&r);
	return *error ? SB_ECONFIG : 0;
}

char *layout_hf_dataset_name(const struct layout *l, const char *source, const char *target)
{
	struct hf_repo r;
	hf_repo_init(&r, l, source);
	char *folder = layout_hf_folder(r.repo ? r.repo : "unknown", r.dataset);
	char *name = xasprintf("pull:%s/%s", target, folder);
	free(folder);
	hf_repo_close(&r);
	return name;
}
