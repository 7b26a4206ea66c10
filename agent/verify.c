#include "agent/verify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

/* Index of the first block of the file at path that does not match, -1 if
 * all match, or a negative error below -1 is impossible: errors come back
 * through *err. */
static int64_t first_bad_block(const char *path, const FileEntry *f, const Manifest *m,
			       uint8_t *buf, int *err)
{
	uint32_t block_size = m->block_size;
	*err = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		*err = -errno;
		return 0;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != f->size) {
		close(fd);
		return 0;
	}
	uint64_t nb = manifest_nblocks(f->size, block_size);
	int64_t bad = -1;
	for (uint64_t i = 0; i < nb && bad < 0; i++) {
		uint32_t len = manifest_block_len(f->size, block_size, i);
		struct hash_id h;
		int rc = io_pread_full(fd, buf, len, i * block_size);
		if (rc == 0)
			block_id(m->format, buf, len, &h);
		if (rc != 0 || memcmp(h.b, f->block_hashes.data + i * HASH_LEN, HASH_LEN))
			bad = (int64_t)i;
	}
	close(fd);
	return bad;
}

static void problem(struct verify_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct verify_result *r, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	log_debug("verify: %s", buf_cstr(&b));
	r->problems = xrealloc(r->problems, (r->nproblems + 1) * sizeof *r->problems);
	r->problems[r->nproblems++] = buf_steal(&b);
}

/* The published copy of f at path: its first bad block or error, one
 * problem line when it is bad. 1 when bad. */
static int check_published(struct verify_result *r, const char *path, const FileEntry *f,
			   const Manifest *m, uint8_t *buf)
{
	int err;
	int64_t bad = first_bad_block(path, f, m, buf, &err);
	if (err)
		problem(r, "%s: %s", path, sb_strerror(err));
	else if (bad >= 0)
		problem(r, "%s: block %lld does not match its hash", path, (long long)bad);
	return err || bad >= 0;
}

int verify_dataset(struct cache *c, const struct cache_dataset *d, struct verify_result *r)
{
	uint8_t *data;
	size_t len;
	Manifest *m;
	memset(r, 0, sizeof *r);
	int rc = cache_manifest_get(c, &d->manifest_id, &data, &len);
	if (rc <= 0)
		return rc < 0 ? rc : SB_ENOTFOUND;
	rc = manifest_decode(data, len, &m);
	free(data);
	if (rc < 0)
		return rc;
	uint8_t *buf = xmalloc(m->block_size);
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *f = m->files[i];
		if (f->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || f->hardlink_to)
			continue;
		struct hash_id id;
		char obj[4096];
		manifest_file_object_id(f->size, m->block_size, f->block_hashes.data,
					f->block_hashes.len / HASH_LEN, &id);
		cache_object_path(c, &id, obj, sizeof obj);
		r->files++;
		r->bytes += f->size;
		int err, bad_here = 0;
		struct stat ost, tst;
		int have_obj = stat(obj, &ost) == 0;
		if (d->target[0]) {
			char *path = path_join(d->target, f->path);
			bad_here = check_published(r, path, f, m, buf);
			/* A hardlinked object shares the damage; a copy may not. */
			if (bad_here && have_obj && stat(path, &tst) == 0 &&
			    tst.st_ino == ost.st_ino && tst.st_dev == ost.st_dev)
				have_obj = 0, cache_object_remove(c, &id);
			free(path);
		}
		if (have_obj) {
			int64_t bad = first_bad_block(obj, f, m, buf, &err);
			if (err || bad >= 0) {
				/* one line per file: the published copy's, if it was bad */
				if (!bad_here)
					problem(r, "cache object for %s: %s", f->path,
						err ? sb_strerror(err)
						    : "content does not match its hashes");
				cache_object_remove(c, &id);
				bad_here = 1;
			}
		}
		r->bad_files += bad_here;
	}
	free(buf);
	manifest_free(m);
	return r->bad_files ? SB_ECORRUPT : 0;
}

void verify_result_close(struct verify_result *r)
{
	for (size_t i = 0; i < r->nproblems; i++)
		free(r->problems[i]);
	free(r->problems);
	memset(r, 0, sizeof *r);
}
