/* The fetch engine's data path: blocks verified and written on the pool,
 * made durable (fdatasync) and indexed before they are announced, files
 * sealed into cache objects (agent/fetch_origin.c reads the origin). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/fetch_int.h"
#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/uri.h"

/* FETCH_SYNC_BATCHED: written blocks per fdatasync and index commit, which
 * bounds the work a crash can lose while keeping syncs rare on fast
 * transfers; at least this often on slow ones; sealed files per syncfs and
 * index commit. */
#define SYNC_BATCH	 16
#define SYNC_INTERVAL_MS 1000
#define FINISH_BATCH	 64

/* ---- making blocks durable ---- */

/* The cache's disk (or quota) is full: one line naming the cache. */
static void fail_no_space(struct fetch *f, int rc, const char *path)
{
	fetch_fail(f, rc, "no space left on the cache %s%s (storing %s: %s)", cache_dir(f->c),
		   rc == -EDQUOT ? " within the disk quota" : "", path, sb_strerror(rc));
}

static void seal_work(uv_work_t *w)
{
	struct ffile *ff = w->data;
	const FileEntry *e = ff->f->m->files[ff->index];
	/* Blocks were checked one by one against hashes that nodes computed
	 * from their share of the origin, which one lying node could have
	 * made up; where the source names the whole file's digest (LFS
	 * sha256, OCI blob, git blob id, S3 full-object SHA-256), the
	 * assembled file must match it too. */
	int rc = manifest_check_content_fd(e, cache_partial_fd(ff->part));
	ff->rc = rc < 0 ? rc
			: cache_partial_seal(ff->part, e->mode, e->mtime_ns,
					     ff->f->o.sync == FETCH_SYNC_EAGER);
}

void fetch_mark_have(struct fetch *f, struct ffile *ff, uint32_t b, const struct hash_id *h)
{
	if (f->state[b] == FETCH_HAVE)
		return;
	f->state[b] = FETCH_HAVE;
	f->bits[b / 8] |= (uint8_t)(1u << (b % 8));
	ff->have++;
	f->st.blocks_have++;
	f->st.bytes_have += fetch_len(f, b);
	/* After a failure blocks are only kept for the next attempt, which
	 * finds them in the partial. */
	if (f->hooks.durable && f->rc == 0)
		f->hooks.durable(f->hooks.arg, f, b, h, f->from_origin[b]);
}

static void flush_work(uv_work_t *w)
{
	struct fetch *f = w->data;
	f->flush_rc = cache_sync_objects(f->c);
}

static void flush_done(uv_work_t *w, int status)
{
	struct fetch *f = w->data;
	int rc = status < 0 ? status : f->flush_rc;
	size_t n = f->nflushing;
	struct cache_partial **parts = xcalloc(n + 1, sizeof *parts);
	for (size_t i = 0; i < n; i++) {
		parts[i] = f->flushing[i]->part;
		f->flushing[i]->part = NULL;
	}
	if (rc == 0 && !f->dead) {
		rc = cache_partials_finish(parts, n);
	} else {
		for (size_t i = 0; i < n; i++)
			cache_partial_close(parts[i]);
	}
	free(parts);
	f->nflushing = 0;
	f->flush_busy = 0;
	if (!f->dead) {
		for (size_t i = 0; i < n && rc == 0; i++) {
			struct ffile *ff = f->flushing[i];
			for (uint32_t b = ff->first; b < ff->first + ff->nblocks; b++)
				fetch_mark_have(f, ff, b,
						(const struct hash_id *)fetch_hash_ptr(f, b));
			ff->done = 1;
			if (f->hooks.file_done)
				f->hooks.file_done(f->hooks.arg, f, ff->index);
		}
		if (rc < 0)
			fetch_fail(f, rc, "cannot store files in %s: %s", cache_dir(f->c),
				   sb_strerror(rc));
		fetch_maybe_finish(f);
	}
	fetch_unpend(f);
}

/* Sealed files become durable with one filesystem sync, then are indexed
 * in one transaction: per-file fsyncs and commits would dominate a tree of
 * small files. */
void fetch_flush_ready(struct fetch *f)
{
	if (!f->nready || f->flush_busy || f->dead)
		return;
	struct ffile **t = f->flushing;
	f->flushing = f->ready;
	f->nflushing = f->nready;
	f->ready = t;
	f->nready = 0;
	f->flush_busy = 1;
	f->flush_work.data = f;
	fetch_queue_work(f, &f->flush_work, flush_work, flush_done);
}

static void seal_done(uv_work_t *w, int status)
{
	struct ffile *ff = w->data;
	struct fetch *f = ff->f;
	int rc = status < 0 ? status : ff->rc;
	ff->sealing = 0;
	if (!f->dead) {
		struct cache_partial *p = ff->part;
		int batched = f->o.sync == FETCH_SYNC_BATCHED;
		ff->part = rc == 0 && batched ? p : NULL;
		if (rc == 0 && !batched)
			rc = cache_partials_finish(&p, 1);
		else if (rc == SB_ECORRUPT)
			cache_partial_discard(p); /* fetched again from scratch next time */
		else if (rc < 0)
			cache_partial_close(p);
		const FileEntry *e = f->m->files[ff->index];
		char want[7 + HASH_HEX_LEN + 1] = "sha256:";
		if (e->content_sha256.len == HASH_LEN)
			hash_to_hex((const struct hash_id *)e->content_sha256.data, want + 7);
		if (rc == SB_ECORRUPT)
			fetch_fail(f, rc,
				   "%s: %s does not match the source's digest %s; not published, "
				   "its blocks are dropped",
				   fetch_shown(f), e->path,
				   e->content_sha256.len == HASH_LEN ? want : e->source_digest);
		else if (sb_no_space(rc))
			fail_no_space(f, rc, e->path);
		else if (rc < 0)
			fetch_fail(f, rc, "%s: cannot store in %s: %s",
				   f->m->files[ff->index]->path, cache_dir(f->c), sb_strerror(rc));
		else if (!batched) {
			ff->done = 1;
			if (f->hooks.file_done)
				f->hooks.file_done(f->hooks.arg, f, ff->index);
		} else {
			ff->sealed = 1;
			f->ready[f->nready++] = ff;
			if (f->nready >= FINISH_BATCH)
				fetch_flush_ready(f);
		}
		fetch_maybe_finish(f);
	}
	fetch_unpend(f);
}

static void sync_work(uv_work_t *w)
{
	struct ffile *ff = w->data;
	ff->rc = cache_partial_sync(ff->part);
}

static void sync_done(uv_work_t *w, int status)
{
	struct ffile *ff = w->data;
	struct fetch *f = ff->f;
	int rc = status < 0 ? status : ff->rc;
	size_t n = ff->syncing.len / sizeof(uint32_t);
	const uint32_t *bl = (const uint32_t *)ff->syncing.ptr;
	ff->sync_busy = 0;
	if (f->dead) {
		fetch_unpend(f);
		return;
	}
	uint64_t *idx = xcalloc(n + 1, sizeof *idx);
	struct hash_id *hs = xcalloc(n + 1, sizeof *hs);
	for (size_t i = 0; i < n; i++) {
		idx[i] = bl[i] - ff->first;
		memcpy(hs[i].b, fetch_hash_ptr(f, bl[i]), HASH_LEN);
	}
	if (rc == 0)
		rc = cache_partial_commit(ff->part, idx, hs, n);
	if (rc < 0) {
		/* An fsync error cannot be retried into success: the blocks
		 * stay unindexed and the next attempt fetches them again. */
		if (sb_no_space(rc))
			fail_no_space(f, rc, f->m->files[ff->index]->path);
		else
			fetch_fail(f, rc, "%s: cannot make blocks durable: %s",
				   f->m->files[ff->index]->path, sb_strerror(rc));
	} else {
		for (size_t i = 0; i < n; i++)
			fetch_mark_have(f, ff, bl[i], &hs[i]);
	}
	free(idx);
	free(hs);
	buf_reset(&ff->syncing);
	fetch_check_file(ff);
	fetch_unpend(f);
}

static void start_sync(struct fetch *f, struct ffile *ff)
{
	struct buf t = ff->syncing;
	ff->syncing = ff->pend;
	ff->pend = t;
	buf_reset(&ff->pend);
	ff->sync_busy = 1;
	ff->last_sync_ms = uv_now(f->loop);
	ff->work.data = ff;
	fetch_queue_work(f, &ff->work, sync_work, sync_done);
}

static void start_seal(struct fetch *f, struct ffile *ff)
{
	if (fetch_open_part(f, ff) < 0) /* an empty file, or all blocks copied */
		return;
	/* FETCH_SYNC_BATCHED: the blocks not synced yet are recorded in the
	 * partial; the seal's fsync (or the group's syncfs) covers them. */
	const uint32_t *bl = (const uint32_t *)ff->pend.ptr;
	for (size_t i = 0; i < ff->pend.len / sizeof(uint32_t); i++)
		cache_partial_set_have(ff->part, bl[i] - ff->first,
				       (const struct hash_id *)fetch_hash_ptr(f, bl[i]));
	buf_reset(&ff->pend);
	ff->sealing = 1;
	ff->work.data = ff;
	fetch_queue_work(f, &ff->work, seal_work, seal_done);
}

/* FETCH_SYNC_EAGER: sync whatever was written as soon as no sync runs for
 * the file (blocks reach peers with the least delay, and syncs batch under
 * load); seal once every block is durable. FETCH_SYNC_BATCHED: seal once
 * every block is written; sync in batches before. After a failure, what
 * was written is still made durable for the next attempt. */
void fetch_check_file(struct ffile *ff)
{
	struct fetch *f = ff->f;
	if (f->dead || ff->done || ff->sealing || ff->sealed || ff->sync_busy)
		return;
	if (f->o.sync == FETCH_SYNC_BATCHED) {
		size_t n = ff->pend.len / sizeof(uint32_t);
		if (f->rc == 0 && ff->written == ff->nblocks)
			start_seal(f, ff);
		else if (n && (f->rc < 0 || n >= SYNC_BATCH || !ff->inflight ||
			       uv_now(f->loop) - ff->last_sync_ms >= SYNC_INTERVAL_MS))
			start_sync(f, ff);
		return;
	}
	if (ff->pend.len)
		start_sync(f, ff);
	else if (f->rc == 0 && ff->have == ff->nblocks)
		start_seal(f, ff);
}

/* ---- verifying and writing blocks (pool) ---- */

static int read_local(struct job *j)
{
	struct cache_block_loc loc;
	int rc =
	    cache_block_find(j->f->c, (const struct hash_id *)fetch_hash_ptr(j->f, j->b), &loc);
	if (rc != 1)
		return rc < 0 ? rc : SB_ENOTFOUND;
	if (loc.len != j->len)
		return SB_ECORRUPT;
	int fd = open(loc.path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = io_pread_full(fd, j->buf, j->len, loc.offset);
	close(fd);
	return rc;
}

void fetch_write_work(uv_work_t *w)
{
	struct job *j = w->data;
	struct fetch *f = j->f;
	const struct ffile *ff = &f->files[f->bfile[j->b]];
	if (j->kind == JOB_ORIGIN && f->src->ops->pread) {
		j->rc = f->src->ops->pread(f->src, f->src_index[ff->index],
					   fetch_block_off(f, j->b), j->len, j->buf);
		if (j->rc < 0)
			return;
		j->arrived_ns = uv_hrtime();
	} else if (j->kind == JOB_LOCAL) {
		if ((j->rc = read_local(j)) < 0)
			return;
	}
	if (j->verified)
		memcpy(j->h.b, fetch_hash_ptr(f, j->b), HASH_LEN);
	else
		block_id(f->m->format, j->buf, j->len, &j->h);
	if (j->expect && memcmp(j->h.b, fetch_hash_ptr(f, j->b), HASH_LEN) != 0) {
		j->rc = SB_ECORRUPT;
		j->held = -1; /* not the source's own finding */
		return;
	}
	if (!j->expect) {
		struct cache_block_loc loc;
		j->held = cache_block_find(f->c, &j->h, &loc) == 1;
	}
	j->rc =
	    io_pwrite_full(cache_partial_fd(ff->part), j->buf, j->len, fetch_block_off(f, j->b));
}

static void job_release(struct job *j)
{
	struct fetch *f = j->f;
	if (j->owned)
		free(j->buf);
	free(j->peer);
	if (j->kind == JOB_ORIGIN) {
		j->buf = j->owned ? NULL : j->buf;
		f->slots_busy--;
		if (f->src->ops->pread)
			f->reads_busy--; /* read and stored in one pool work */
		j->kind = -1;
	} else {
		free(j);
	}
}

void fetch_back_to_need(struct fetch *f, uint32_t b)
{
	f->lonely_ms[b] = 0;
	if (f->planned[b] && f->rc == 0 && !f->dead) { /* this node's share: read it */
		f->state[b] = FETCH_ORIGIN;
		buf_append(&f->origin_q, &b, sizeof b);
		return;
	}
	f->state[b] = fetch_known(f, b) ? FETCH_NEED : FETCH_UNKNOWN;
}

void fetch_write_done(uv_work_t *w, int status)
{
	struct job *j = w->data;
	struct fetch *f = j->f;
	int rc = status < 0 ? status : j->rc;
	uint32_t b = j->b;
	int peer_job = j->kind == JOB_PEER;
	if (peer_job)
		f->peer_storing -= j->len;
	if (f->dead) {
		job_release(j);
		fetch_unpend(f);
		return;
	}
	if (j->kind == JOB_ORIGIN && j->streamed) {
		j->streamed = 0;
		f->hooks.reading(f->hooks.arg, f, b, FETCH_READING_END, j->buf,
				 rc == 0 ? (uint32_t)j->len : 0, rc == 0);
	}
	struct ffile *ff = &f->files[f->bfile[b]];
	const char *why = NULL; /* a repair's origin failed: told once the slot is free */
	ff->inflight--;
	if (rc == 0 && j->kind == JOB_ORIGIN && f->waiting) {
		free(f->waiting); /* the origin answers again */
		f->waiting = NULL;
		f->origin_backoff_ms = 0;
	}
	if (rc == 0 && f->state[b] >= FETCH_WRITTEN) {
		/* Another job stored it first. Counted twice, the file would
		 * seal before its last block is durable, or never. */
	} else if (rc == 0) {
		if (!j->expect)
			memcpy(fetch_hash_ptr(f, b), j->h.b, HASH_LEN);
		f->state[b] = FETCH_WRITTEN;
		f->arrived_ms = uv_now(f->loop);
		ff->written++;
		f->from_origin[b] = j->kind == JOB_ORIGIN;
		if (f->o.progress)
			progress_add(f->o.progress, j->len);
		if (j->kind == JOB_ORIGIN && j->held == 1)
			f->st.bytes_origin_held += j->len;
		if (j->kind == JOB_ORIGIN)
			f->st.bytes_from_origin += j->len;
		else if (j->kind == JOB_PEER)
			f->st.bytes_from_peers += j->len;
		else
			f->st.bytes_reused += j->len;
		fetch_metrics_bytes(f->name,
				    j->kind == JOB_ORIGIN ? FETCH_FROM_ORIGIN
				    : j->kind == JOB_PEER ? FETCH_FROM_PEER
							  : FETCH_FROM_CACHE,
				    j->len);
		if (j->kind == JOB_ORIGIN && j->arrived_ns)
			fetch_metrics_latency(FETCH_FROM_ORIGIN,
					      (double)(j->arrived_ns - j->asked_ns) / 1e9);
		buf_append(&ff->pend, &b, sizeof b);
		fetch_check_file(ff);
	} else if (j->kind == JOB_PEER && rc == SB_ECORRUPT) {
		fetch_back_to_need(f, b);
		fetch_block_bad(f, b, j->peer, "block");
	} else if (j->kind == JOB_LOCAL) {
		fetch_back_to_need(f, b); /* the cached copy went away or is damaged */
	} else if (j->kind == JOB_ORIGIN && f->o.repair && rc != SB_ECANCELED && !sb_no_space(rc)) {
		fetch_back_to_need(f, b);
		why = rc == SB_ECORRUPT || rc == SB_ECHANGED ? "differs from the version in place"
		      : f->src->error_detail		     ? f->src->error_detail
							     : sb_strerror(rc);
	} else if (j->kind == JOB_ORIGIN && rc == SB_ECORRUPT && j->held == -1) {
		fetch_fail(f, SB_ECHANGED,
			   "%s: block %u of %s differs from the version being fetched",
			   fetch_shown(f), b, f->m->files[ff->index]->path);
	} else if (j->kind == JOB_ORIGIN && rc == SB_ECHANGED) {
		fetch_fail(f, rc,
			   "%s: %s changed while it was read; fetch it again for a consistent "
			   "version",
			   fetch_shown(f), f->m->files[ff->index]->path);
	} else if (rc != SB_ECANCELED) {
		fetch_back_to_need(f, b);
		if (sb_no_space(rc))
			fail_no_space(f, rc, f->m->files[ff->index]->path);
		else if (j->kind == JOB_ORIGIN)
			fetch_fail(f, rc, "%s: %s: %s", fetch_shown(f),
				   f->m->files[ff->index]->path,
				   f->src->error_detail ? f->src->error_detail : sb_strerror(rc));
		else
			fetch_fail(f, rc, "%s: cannot store block %u: %s",
				   f->m->files[ff->index]->path, b, sb_strerror(rc));
	}
	job_release(j);
	if (why)
		fetch_origin_fail(f, rc, "%s: %s: %s", fetch_shown(f), f->m->files[ff->index]->path,
				  why);
	if (f->hooks.wake && (rc < 0 || peer_job)) /* peers may ask for more now */
		f->hooks.wake(f->hooks.arg, f);
	fetch_pump(f);
	fetch_unpend(f);
}

void fetch_start_store(struct fetch *f, enum job_kind kind, uint32_t b, uint8_t *buf,
		       const char *peer, int verified)
{
	struct ffile *ff = &f->files[f->bfile[b]];
	if (fetch_open_part(f, ff) < 0) {
		free(buf);
		return;
	}
	ff->inflight++;
	struct job *j = xcalloc(1, sizeof *j);
	j->f = f;
	j->kind = kind;
	j->b = b;
	j->len = fetch_len(f, b);
	j->buf = buf ? buf : xmalloc(j->len ? j->len : 1);
	j->owned = 1;
	j->expect = 1;
	j->verified = verified && buf;
	j->peer = peer ? xstrdup(peer) : NULL;
	if (kind == JOB_PEER)
		f->peer_storing += j->len;
	j->work.data = j;
	f->state[b] = kind == JOB_LOCAL ? FETCH_LOCAL : FETCH_STORING;
	fetch_queue_work(f, &j->work, fetch_write_work, fetch_write_done);
}
