#include "agent/fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/publish.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/uri.h"

#define ORIGIN_JOBS_DEFAULT 8
#define ORIGIN_JOBS_MAX	    64
#define TICK_MS		    1000

enum job_kind { JOB_ORIGIN, JOB_PEER, JOB_LOCAL };

struct ffile {
	size_t index;	/* into m->files */
	uint32_t first; /* first block in the version */
	uint32_t nblocks;
	uint32_t have; /* blocks durable */
	struct cache_partial *part;
	struct buf pend;    /* uint32 blocks written, awaiting sync */
	struct buf syncing; /* being synced */
	int sync_busy, sealing, done;
	int rc;
	uv_work_t work;
	struct fetch *f;
};

struct job {
	struct fetch *f;
	enum job_kind kind;
	uint32_t b;
	uint8_t *buf; /* block bytes */
	int owned;    /* buf freed after the job (peer payloads, local copies) */
	size_t len;
	int expect;	  /* the block's hash is known and must match */
	struct hash_id h; /* computed */
	int rc;
	char *peer;
	uv_work_t work;
	size_t slot; /* origin slot, for JOB_ORIGIN */
};

struct fetch {
	uv_loop_t *loop;
	struct cache *c;
	char *name, *target_root;
	uint8_t vid[HASH_LEN];
	Manifest *m;
	struct source_options so;
	struct fetch_hooks hooks;

	struct ffile *files;
	size_t nfiles;
	uint32_t nblocks;
	uint32_t *bfile;      /* block -> index into files */
	uint8_t *state;	      /* enum fetch_block_state */
	uint8_t *bits;	      /* durable */
	uint8_t *from_origin; /* read from the source by this node */
	uint8_t *planned;     /* in this node's origin plan */
	uint8_t *tainted;     /* a peer sent bad bytes for it */
	uint16_t *avail;
	uint8_t *asks;
	uint64_t *lonely_ms; /* when a needed block was first seen with no holder */
	struct buf origin_q; /* uint32 blocks to read from the origin */
	size_t origin_head;

	struct source *src;
	int src_state;	   /* 0 none, 1 listing, 2 ready */
	size_t *src_index; /* manifest file index -> listing index */
	struct job *slots;
	size_t nslots, slots_busy;

	uv_timer_t timer;
	int pending; /* pool works and source reads in flight */
	int dead, timer_closed;
	int rc;
	char *error;
	int complete, publishing, published;
	struct fetch_stats st;
};

static void fail(struct fetch *f, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pump(struct fetch *f);
static void maybe_finish(struct fetch *f);
static void store_done(uv_work_t *w, int status);

static void fail(struct fetch *f, int rc, const char *fmt, ...)
{
	if (f->rc < 0 || f->dead)
		return;
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	f->rc = rc;
	free(f->error);
	f->error = buf_steal(&b);
	log_error("dataset %s: %s", f->name, f->error);
	if (f->src && f->src->ops->cancel)
		f->src->ops->cancel(f->src);
	if (f->hooks.done)
		f->hooks.done(f->hooks.arg, f, rc);
}

static uint8_t *hash_ptr(const struct fetch *f, uint32_t b)
{
	const struct ffile *ff = &f->files[f->bfile[b]];
	return f->m->files[ff->index]->block_hashes.data + (size_t)(b - ff->first) * HASH_LEN;
}

static int known(const struct fetch *f, uint32_t b)
{
	return !hash_is_zero((const struct hash_id *)hash_ptr(f, b));
}

static uint64_t block_off(const struct fetch *f, uint32_t b)
{
	return (uint64_t)(b - f->files[f->bfile[b]].first) * f->m->block_size;
}

uint32_t fetch_block_len(const struct fetch *f, uint32_t b)
{
	const struct ffile *ff = &f->files[f->bfile[b]];
	return manifest_block_len(f->m->files[ff->index]->size, f->m->block_size, b - ff->first);
}

static void release(struct fetch *f);

static void unpend(struct fetch *f)
{
	f->pending--;
	if (f->dead)
		release(f);
}

static void queue_work(struct fetch *f, uv_work_t *w, uv_work_cb fn, uv_after_work_cb after)
{
	f->pending++;
	int rc = uv_queue_work(f->loop, w, fn, after);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

/* ---- making blocks durable ---- */

static void seal_work(uv_work_t *w)
{
	struct ffile *ff = w->data;
	const FileEntry *e = ff->f->m->files[ff->index];
	ff->rc = cache_partial_seal(ff->part, e->mode, e->mtime_ns, 1);
}

static void seal_done(uv_work_t *w, int status)
{
	struct ffile *ff = w->data;
	struct fetch *f = ff->f;
	int rc = status < 0 ? status : ff->rc;
	ff->sealing = 0;
	if (!f->dead) {
		struct cache_partial *p = ff->part;
		ff->part = NULL;
		if (rc == 0)
			rc = cache_partials_finish(&p, 1);
		else
			cache_partial_close(p);
		if (rc < 0)
			fail(f, rc, "%s: cannot store in %s: %s", f->m->files[ff->index]->path,
			     cache_dir(f->c), sb_strerror(rc));
		else
			ff->done = 1;
		maybe_finish(f);
	}
	unpend(f);
}

static void check_file(struct ffile *ff);

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
		unpend(f);
		return;
	}
	uint64_t *idx = xcalloc(n + 1, sizeof *idx);
	struct hash_id *hs = xcalloc(n + 1, sizeof *hs);
	for (size_t i = 0; i < n; i++) {
		idx[i] = bl[i] - ff->first;
		memcpy(hs[i].b, hash_ptr(f, bl[i]), HASH_LEN);
	}
	if (rc == 0)
		rc = cache_partial_commit(ff->part, idx, hs, n);
	if (rc < 0) {
		fail(f, rc, "%s: cannot make blocks durable: %s", f->m->files[ff->index]->path,
		     sb_strerror(rc));
	} else {
		for (size_t i = 0; i < n; i++) {
			uint32_t b = bl[i];
			f->state[b] = FETCH_HAVE;
			f->bits[b / 8] |= (uint8_t)(1u << (b % 8));
			ff->have++;
			f->st.blocks_have++;
			f->st.bytes_have += fetch_block_len(f, b);
			if (f->hooks.durable)
				f->hooks.durable(f->hooks.arg, f, b, &hs[i], f->from_origin[b]);
		}
	}
	free(idx);
	free(hs);
	buf_reset(&ff->syncing);
	check_file(ff);
	unpend(f);
}

/* Sync whatever was written as soon as no sync runs for the file: blocks
 * reach peers with the least delay, and syncs batch under load. */
static void check_file(struct ffile *ff)
{
	struct fetch *f = ff->f;
	if (f->dead || f->rc < 0 || ff->done || ff->sealing || ff->sync_busy)
		return;
	if (ff->pend.len) {
		struct buf t = ff->syncing;
		ff->syncing = ff->pend;
		ff->pend = t;
		buf_reset(&ff->pend);
		ff->sync_busy = 1;
		ff->work.data = ff;
		queue_work(f, &ff->work, sync_work, sync_done);
		return;
	}
	if (ff->have == ff->nblocks && ff->part) {
		ff->sealing = 1;
		ff->work.data = ff;
		queue_work(f, &ff->work, seal_work, seal_done);
	}
}

/* ---- verifying and writing blocks (pool) ---- */

static int write_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int read_local(struct job *j)
{
	struct cache_block_loc loc;
	int rc = cache_block_find(j->f->c, (const struct hash_id *)hash_ptr(j->f, j->b), &loc);
	if (rc != 1)
		return rc < 0 ? rc : SB_ENOTFOUND;
	if (loc.len != j->len)
		return SB_ECORRUPT;
	int fd = open(loc.path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t done = 0;
	while (done < j->len) {
		ssize_t n = pread(fd, j->buf + done, j->len - done, (off_t)(loc.offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : SB_ETRUNCATED;
			break;
		}
		done += (size_t)n;
	}
	close(fd);
	return done == j->len ? 0 : rc;
}

static void store_work(uv_work_t *w)
{
	struct job *j = w->data;
	struct fetch *f = j->f;
	const struct ffile *ff = &f->files[f->bfile[j->b]];
	if (j->kind == JOB_ORIGIN && f->src->ops->pread) {
		j->rc = f->src->ops->pread(f->src, f->src_index[ff->index], block_off(f, j->b),
					   j->len, j->buf);
		if (j->rc < 0)
			return;
	} else if (j->kind == JOB_LOCAL) {
		if ((j->rc = read_local(j)) < 0)
			return;
	}
	hash_sha256(j->buf, j->len, &j->h);
	if (j->expect && memcmp(j->h.b, hash_ptr(f, j->b), HASH_LEN) != 0) {
		j->rc = SB_ECORRUPT;
		return;
	}
	j->rc = write_all(cache_partial_fd(ff->part), j->buf, j->len, block_off(f, j->b));
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
		j->kind = -1;
	} else {
		free(j);
	}
}

static void back_to_need(struct fetch *f, uint32_t b)
{
	f->state[b] = known(f, b) ? FETCH_NEED : FETCH_UNKNOWN;
	f->lonely_ms[b] = 0;
}

static void store_done(uv_work_t *w, int status)
{
	struct job *j = w->data;
	struct fetch *f = j->f;
	int rc = status < 0 ? status : j->rc;
	uint32_t b = j->b;
	if (f->dead) {
		job_release(j);
		unpend(f);
		return;
	}
	struct ffile *ff = &f->files[f->bfile[b]];
	if (rc == 0) {
		if (!j->expect)
			memcpy(hash_ptr(f, b), j->h.b, HASH_LEN);
		f->state[b] = FETCH_WRITTEN;
		f->from_origin[b] = j->kind == JOB_ORIGIN;
		if (j->kind == JOB_ORIGIN)
			f->st.bytes_from_origin += j->len;
		else if (j->kind == JOB_PEER)
			f->st.bytes_from_peers += j->len;
		else
			f->st.bytes_reused += j->len;
		buf_append(&ff->pend, &b, sizeof b);
		check_file(ff);
	} else if (j->kind == JOB_PEER && rc == SB_ECORRUPT) {
		f->st.bad_blocks++;
		log_warn("dataset %s: block %u from %s does not match its hash; asking elsewhere",
			 f->name, b, j->peer);
		back_to_need(f, b);
		f->tainted[b] = 1; /* once no other peer holds it: the origin, at once */
		if (f->hooks.bad_peer)
			f->hooks.bad_peer(f->hooks.arg, f, j->peer, b);
	} else if (j->kind == JOB_LOCAL) {
		back_to_need(f, b); /* the cached copy went away or is damaged */
	} else if (j->kind == JOB_ORIGIN && rc == SB_ECORRUPT) {
		fail(f, SB_ECHANGED,
		     "%s: block %u of %s differs from the version being distributed", f->m->source,
		     b, f->m->files[ff->index]->path);
	} else if (rc != SB_ECANCELED) {
		back_to_need(f, b);
		if (j->kind == JOB_ORIGIN)
			fail(f, rc, "%s: %s: %s", f->m->source, f->m->files[ff->index]->path,
			     f->src->error_detail ? f->src->error_detail : sb_strerror(rc));
		else
			fail(f, rc, "%s: cannot store block %u: %s", f->m->files[ff->index]->path,
			     b, sb_strerror(rc));
	}
	job_release(j);
	if (f->hooks.wake && rc < 0)
		f->hooks.wake(f->hooks.arg, f);
	pump(f);
	unpend(f);
}

/* ---- the origin ---- */

static void origin_read_done(struct source *src, int status, void *arg)
{
	struct job *j = arg;
	struct fetch *f = j->f;
	if (status < 0 || f->dead) {
		j->rc = status < 0 ? status : SB_ECANCELED;
		f->pending++; /* store_done drops it */
		store_done(&j->work, 0);
		unpend(f);
		return;
	}
	queue_work(f, &j->work, store_work, store_done);
	unpend(f);
}

static void start_origin_job(struct fetch *f, uint32_t b)
{
	struct job *j = NULL;
	for (size_t i = 0; i < f->nslots; i++)
		if ((int)f->slots[i].kind == -1) {
			j = &f->slots[i];
			break;
		}
	if (!j)
		return;
	j->kind = JOB_ORIGIN;
	j->b = b;
	j->len = fetch_block_len(f, b);
	j->expect = known(f, b);
	j->rc = 0;
	j->owned = 0;
	j->peer = NULL;
	if (!j->buf)
		j->buf = xmalloc(f->m->block_size);
	j->work.data = j;
	f->slots_busy++;
	f->state[b] = FETCH_ORIGIN;
	if (f->src->ops->pread) {
		queue_work(f, &j->work, store_work, store_done);
		return;
	}
	const struct ffile *ff = &f->files[f->bfile[b]];
	f->pending++;
	int rc = f->src->ops->read(f->src, f->src_index[ff->index], block_off(f, b), j->len, j->buf,
				   origin_read_done, j);
	if (rc < 0) {
		j->rc = rc;
		store_done(&j->work, 0);
	}
}

/* The listing this node read must describe the version being distributed:
 * same files, sizes and change tokens. */
static int match_listing(struct fetch *f)
{
	const struct source_listing *l = &f->src->listing;
	f->src_index = xcalloc(f->m->n_files + 1, sizeof *f->src_index);
	size_t j = 0;
	for (size_t i = 0; i < f->m->n_files; i++) {
		const FileEntry *e = f->m->files[i];
		while (j < l->nfiles && strcmp(l->files[j].path, e->path) < 0)
			j++;
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR)
			continue;
		if (j >= l->nfiles || strcmp(l->files[j].path, e->path) != 0) {
			fail(f, SB_ECHANGED, "%s: %s is gone from the source", f->m->source,
			     e->path);
			return SB_ECHANGED;
		}
		const struct source_file *s = &l->files[j];
		if (s->size != e->size || strcmp(s->digest ? s->digest : "", e->source_digest)) {
			fail(f, SB_ECHANGED,
			     "%s: %s changed since the scheduler listed it; waiting for the "
			     "next version",
			     f->m->source, e->path);
			return SB_ECHANGED;
		}
		f->src_index[i] = j;
	}
	return 0;
}

static void listed(struct source *src, int status, void *arg)
{
	struct fetch *f = arg;
	if (!f->dead) {
		if (status < 0)
			fail(f, status, "%s",
			     src->error_detail ? src->error_detail : sb_strerror(status));
		else if (match_listing(f) == 0) {
			f->src_state = 2;
			f->nslots = (size_t)(src->sequential	     ? 1
					     : src->max_parallel > 0 ? src->max_parallel
								     : ORIGIN_JOBS_DEFAULT);
			if (f->nslots > ORIGIN_JOBS_MAX)
				f->nslots = ORIGIN_JOBS_MAX;
			f->slots = xcalloc(f->nslots, sizeof *f->slots);
			for (size_t i = 0; i < f->nslots; i++) {
				f->slots[i].f = f;
				f->slots[i].kind = -1;
				f->slots[i].slot = i;
			}
			pump(f);
		}
	}
	unpend(f);
}

static void open_source(struct fetch *f)
{
	struct source_uri uri;
	int rc = uri_parse(f->m->source, &uri);
	if (rc == 0) {
		rc = source_new(f->loop, &uri, &f->so, &f->src);
		uri_close(&uri);
	}
	if (rc < 0) {
		fail(f, rc, "%s: %s", f->m->source, sb_strerror(rc));
		return;
	}
	f->src_state = 1;
	f->pending++;
	rc = f->src->ops->list(f->src, listed, f);
	if (rc < 0) {
		f->pending--;
		fail(f, rc, "%s: %s", f->m->source, sb_strerror(rc));
	}
}

static void pump(struct fetch *f)
{
	if (f->dead || f->rc < 0)
		return;
	size_t queued = f->origin_q.len / sizeof(uint32_t);
	if (f->origin_head >= queued)
		return;
	if (f->src_state == 0) {
		open_source(f);
		return;
	}
	if (f->src_state != 2)
		return;
	const uint32_t *q = (const uint32_t *)f->origin_q.ptr;
	while (f->origin_head < queued && f->slots_busy < f->nslots) {
		uint32_t b = q[f->origin_head++];
		if (f->state[b] == FETCH_ORIGIN)
			start_origin_job(f, b);
	}
	if (f->origin_head >= queued) {
		buf_reset(&f->origin_q);
		f->origin_head = 0;
	}
}

void fetch_set_origin(struct fetch *f, const uint32_t *first, const uint32_t *count, size_t n)
{
	uint8_t *old = f->planned;
	f->planned = xcalloc(f->nblocks + 1, 1);
	for (size_t i = 0; i < n; i++)
		for (uint64_t b = first[i]; b < (uint64_t)first[i] + count[i] && b < f->nblocks;
		     b++)
			f->planned[b] = 1;
	/* Drop queued blocks the new plan does not name; keep reads running. */
	const uint32_t *q = (const uint32_t *)f->origin_q.ptr;
	size_t nq = f->origin_q.len / sizeof(uint32_t);
	for (size_t i = f->origin_head; i < nq; i++)
		if (!f->planned[q[i]] && f->state[q[i]] == FETCH_ORIGIN && old[q[i]])
			back_to_need(f, q[i]);
	free(old);
	for (uint32_t b = 0; b < f->nblocks; b++) {
		if (!f->planned[b] || (f->state[b] != FETCH_UNKNOWN && f->state[b] != FETCH_NEED))
			continue;
		f->state[b] = FETCH_ORIGIN;
		buf_append(&f->origin_q, &b, sizeof b);
	}
	pump(f);
}

/* ---- blocks from the cache and from peers ---- */

static void start_store(struct fetch *f, enum job_kind kind, uint32_t b, uint8_t *buf,
			const char *peer)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->f = f;
	j->kind = kind;
	j->b = b;
	j->len = fetch_block_len(f, b);
	j->buf = buf ? buf : xmalloc(j->len ? j->len : 1);
	j->owned = 1;
	j->expect = 1;
	j->peer = peer ? xstrdup(peer) : NULL;
	j->work.data = j;
	f->state[b] = kind == JOB_LOCAL ? FETCH_LOCAL : FETCH_STORING;
	queue_work(f, &j->work, store_work, store_done);
}

/* A needed block that some cached file already holds is copied from it. */
static void try_local(struct fetch *f, uint32_t b)
{
	struct cache_block_loc loc;
	if (f->state[b] != FETCH_NEED)
		return;
	if (cache_block_find(f->c, (const struct hash_id *)hash_ptr(f, b), &loc) == 1)
		start_store(f, JOB_LOCAL, b, NULL, NULL);
}

void fetch_add_hashes(struct fetch *f, const uint32_t *blocks, const uint8_t *hashes, size_t n)
{
	int woke = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t b = blocks[i];
		if (b >= f->nblocks || known(f, b))
			continue;
		memcpy(hash_ptr(f, b), hashes + i * HASH_LEN, HASH_LEN);
		if (f->state[b] == FETCH_UNKNOWN) {
			f->state[b] = FETCH_NEED;
			try_local(f, b);
			woke = 1;
		}
	}
	if (woke && f->hooks.wake)
		f->hooks.wake(f->hooks.arg, f);
}

void fetch_block_received(struct fetch *f, uint32_t b, uint8_t *payload, size_t len,
			  const char *peer)
{
	if (f->dead || f->rc < 0 || b >= f->nblocks || len != fetch_block_len(f, b) ||
	    (f->state[b] != FETCH_NEED && f->state[b] != FETCH_PEER) || !known(f, b)) {
		free(payload);
		return;
	}
	start_store(f, JOB_PEER, b, payload, peer);
}

void fetch_avail_add(struct fetch *f, uint32_t b, int delta)
{
	if (b >= f->nblocks)
		return;
	int v = (int)f->avail[b] + delta;
	f->avail[b] = (uint16_t)(v < 0 ? 0 : v > UINT16_MAX ? UINT16_MAX : v);
	if (f->avail[b])
		f->lonely_ms[b] = 0;
}

uint32_t fetch_avail(const struct fetch *f, uint32_t b)
{
	return b < f->nblocks ? f->avail[b] : 0;
}

void fetch_block_asked(struct fetch *f, uint32_t b)
{
	if (f->asks[b] < UINT8_MAX)
		f->asks[b]++;
	if (f->state[b] == FETCH_NEED)
		f->state[b] = FETCH_PEER;
}

void fetch_block_unasked(struct fetch *f, uint32_t b)
{
	if (f->asks[b])
		f->asks[b]--;
	if (!f->asks[b] && f->state[b] == FETCH_PEER)
		f->state[b] = FETCH_NEED;
}

uint32_t fetch_block_asks(const struct fetch *f, uint32_t b)
{
	return f->asks[b];
}

uint32_t fetch_missing(const struct fetch *f)
{
	uint32_t n = 0;
	for (uint32_t b = 0; b < f->nblocks; b++)
		n += f->state[b] <= FETCH_ORIGIN;
	return n;
}

/* Once a second: blocks that no connected peer holds for a while are read
 * from the origin here (their holders left, or never came). */
static void tick(uv_timer_t *t)
{
	struct fetch *f = t->data;
	if (f->rc < 0 || f->complete)
		return;
	uint64_t now = uv_now(f->loop);
	int queued = 0;
	for (uint32_t b = 0; b < f->nblocks; b++) {
		if (f->state[b] != FETCH_NEED || f->avail[b])
			continue;
		if (f->tainted[b]) {
			f->state[b] = FETCH_ORIGIN;
			f->st.refetch_bad_peer++;
			buf_append(&f->origin_q, &b, sizeof b);
			queued++;
		} else if (!f->lonely_ms[b]) {
			f->lonely_ms[b] = now;
		} else if (now - f->lonely_ms[b] >= FETCH_NO_PEER_MS) {
			f->state[b] = FETCH_ORIGIN;
			f->st.refetch_no_peer++;
			buf_append(&f->origin_q, &b, sizeof b);
			queued++;
		}
	}
	if (queued) {
		log_info("dataset %s: no peer holds %d blocks; reading them from the origin",
			 f->name, queued);
		pump(f);
	}
}

/* ---- completing ---- */

struct publish_job {
	struct fetch *f;
	uv_work_t work;
	int rc;
	char *detail;
};

static void publish_work(uv_work_t *w)
{
	struct publish_job *pj = w->data;
	struct fetch *f = pj->f;
	pj->rc = publish_version(f->c, f->m, f->target_root, f->name, &pj->detail);
}

static void publish_done(uv_work_t *w, int status)
{
	struct publish_job *pj = w->data;
	struct fetch *f = pj->f;
	int rc = status < 0 ? status : pj->rc;
	f->publishing = 0;
	if (!f->dead) {
		if (rc < 0) {
			fail(f, rc, "%s", pj->detail ? pj->detail : sb_strerror(rc));
		} else {
			f->published = 1;
			log_info("dataset %s: published %s/%s", f->name, f->target_root, f->name);
			if (f->hooks.done)
				f->hooks.done(f->hooks.arg, f, 0);
		}
	}
	free(pj->detail);
	free(pj);
	unpend(f);
}

static void complete(struct fetch *f)
{
	struct buf enc = BUF_INIT;
	struct hash_id id;
	for (size_t i = 0; i < f->m->n_files; i++) { /* hardlinks repeat their target */
		FileEntry *e = f->m->files[i];
		if (e->type == SYNCBIT__FILE_TYPE__FILE_REGULAR && e->hardlink_to &&
		    e->block_hashes.len)
			memcpy(e->block_hashes.data,
			       f->m->files[e->hardlink_to - 1]->block_hashes.data,
			       e->block_hashes.len);
	}
	int rc = manifest_validate(f->m);
	if (rc < 0) {
		fail(f, rc, "dataset %s: the completed manifest is invalid: %s", f->name,
		     sb_strerror(rc));
		return;
	}
	manifest_encode(f->m, &enc, &id);
	char *target = path_join(f->target_root, f->name);
	rc = cache_dataset_set(f->c, f->name, f->m->source, target, &id, enc.ptr, enc.len);
	free(target);
	buf_close(&enc);
	if (rc < 0) {
		fail(f, rc, "cannot record dataset %s in %s: %s", f->name, cache_dir(f->c),
		     sb_strerror(rc));
		return;
	}
	struct publish_job *pj = xcalloc(1, sizeof *pj);
	pj->f = f;
	pj->work.data = pj;
	f->publishing = 1;
	queue_work(f, &pj->work, publish_work, publish_done);
}

static void maybe_finish(struct fetch *f)
{
	if (f->complete || f->rc < 0 || f->dead)
		return;
	for (size_t i = 0; i < f->nfiles; i++)
		if (!f->files[i].done)
			return;
	f->complete = 1;
	complete(f);
}

/* ---- setting up ---- */

static int open_file(struct fetch *f, struct ffile *ff)
{
	const FileEntry *e = f->m->files[ff->index];
	/* Everything known and the object intact: nothing to fetch. */
	int all_known = 1;
	for (uint32_t k = 0; k < ff->nblocks && all_known; k++)
		all_known = known(f, ff->first + k);
	if (all_known) {
		struct hash_id id;
		manifest_file_object_id(e->size, f->m->block_size, e->block_hashes.data,
					ff->nblocks, &id);
		if (cache_object_check(f->c, &id) == 1) {
			for (uint32_t k = 0; k < ff->nblocks; k++) {
				uint32_t b = ff->first + k;
				f->state[b] = FETCH_HAVE;
				f->bits[b / 8] |= (uint8_t)(1u << (b % 8));
				f->st.blocks_have++;
				f->st.bytes_have += fetch_block_len(f, b);
			}
			f->st.bytes_reused += e->size;
			ff->have = ff->nblocks;
			ff->done = 1;
			return 0;
		}
	}
	/* The partial is keyed like a standalone pull's, so either resumes
	 * the other's blocks. */
	struct buf k = BUF_INIT;
	struct hash_id key;
	buf_printf(&k, "%s%c%s%c%s%c%llu%c%u", f->m->source, 0, e->path, 0, e->source_digest, 0,
		   (unsigned long long)e->size, 0, f->m->block_size);
	hash_sha256(k.ptr, k.len, &key);
	buf_close(&k);
	int rc = cache_partial_open(f->c, &key, e->size, f->m->block_size, &ff->part);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < ff->nblocks; i++) {
		struct hash_id h;
		uint32_t b = ff->first + i;
		if (!cache_partial_have(ff->part, i, &h))
			continue;
		if (known(f, b) && memcmp(h.b, hash_ptr(f, b), HASH_LEN) != 0)
			continue; /* an older cut of the file: fetch it again */
		if (!known(f, b)) {
			memcpy(hash_ptr(f, b), h.b, HASH_LEN);
			f->from_origin[b] = 1; /* the scheduler may not have heard of it */
		}
		f->state[b] = FETCH_HAVE;
		f->bits[b / 8] |= (uint8_t)(1u << (b % 8));
		ff->have++;
		f->st.blocks_have++;
		f->st.bytes_have += fetch_block_len(f, b);
		f->st.bytes_reused += fetch_block_len(f, b);
	}
	return 0;
}

static int setup_blocks(struct fetch *f)
{
	uint64_t nb = 0;
	for (size_t i = 0; i < f->m->n_files; i++) {
		const FileEntry *e = f->m->files[i];
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || e->hardlink_to)
			continue;
		f->nfiles++;
		nb += manifest_nblocks(e->size, f->m->block_size);
	}
	if (nb > UINT32_MAX - 1)
		return SB_ETOOBIG;
	f->nblocks = (uint32_t)nb;
	f->files = xcalloc(f->nfiles + 1, sizeof *f->files);
	f->bfile = xcalloc(nb + 1, sizeof *f->bfile);
	f->state = xcalloc(nb + 1, 1);
	f->bits = xcalloc(nb / 8 + 1, 1);
	f->from_origin = xcalloc(nb + 1, 1);
	f->planned = xcalloc(nb + 1, 1);
	f->tainted = xcalloc(nb + 1, 1);
	f->avail = xcalloc(nb + 1, sizeof *f->avail);
	f->asks = xcalloc(nb + 1, 1);
	f->lonely_ms = xcalloc(nb + 1, sizeof *f->lonely_ms);
	uint32_t next = 0;
	size_t fi = 0;
	for (size_t i = 0; i < f->m->n_files; i++) {
		const FileEntry *e = f->m->files[i];
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || e->hardlink_to)
			continue;
		struct ffile *ff = &f->files[fi];
		ff->f = f;
		ff->index = i;
		ff->first = next;
		ff->nblocks = (uint32_t)manifest_nblocks(e->size, f->m->block_size);
		for (uint32_t k = 0; k < ff->nblocks; k++)
			f->bfile[next + k] = (uint32_t)fi;
		next += ff->nblocks;
		f->st.bytes += e->size;
		fi++;
	}
	f->st.blocks = nb;
	for (uint32_t b = 0; b < f->nblocks; b++)
		f->state[b] = known(f, b) ? FETCH_NEED : FETCH_UNKNOWN;
	return 0;
}

static Manifest *copy_manifest(const Manifest *m)
{
	struct buf enc = BUF_INIT;
	struct hash_id id;
	Manifest *out = NULL;
	manifest_encode(m, &enc, &id);
	if (manifest_decode(enc.ptr, enc.len, &out) < 0)
		out = NULL;
	buf_close(&enc);
	return out;
}

int fetch_new(uv_loop_t *loop, struct cache *c, const char *name, const char *target_root,
	      const uint8_t *version_id, const Manifest *m, const struct source_options *so,
	      const struct fetch_hooks *hooks, struct fetch **out)
{
	Manifest *copy = copy_manifest(m);
	if (!copy)
		return SB_EPROTO;
	struct fetch *f = xcalloc(1, sizeof *f);
	f->loop = loop;
	f->c = c;
	f->name = xstrdup(name);
	f->target_root = xstrdup(target_root);
	memcpy(f->vid, version_id, HASH_LEN);
	f->m = copy;
	f->so = *so;
	f->hooks = *hooks;
	int rc = setup_blocks(f);
	if (rc < 0) {
		f->dead = 1;
		f->timer_closed = 1;
		release(f);
		return rc;
	}
	for (size_t i = 0; i < f->nfiles && rc == 0; i++) {
		rc = open_file(f, &f->files[i]);
		if (rc < 0) {
			f->rc = rc;
			f->error = xasprintf("%s: cannot open partial file in %s: %s",
					     f->m->files[f->files[i].index]->path, cache_dir(c),
					     sb_strerror(rc));
		}
	}
	uv_timer_init(loop, &f->timer);
	f->timer.data = f;
	uv_timer_start(&f->timer, tick, TICK_MS, TICK_MS);
	*out = f;
	if (rc < 0)
		return 0; /* reported through fetch_error(); the caller retries */
	for (uint32_t b = 0; b < f->nblocks; b++)
		try_local(f, b);
	for (size_t i = 0; i < f->nfiles; i++)
		check_file(&f->files[i]);
	maybe_finish(f);
	return 0;
}

/* ---- teardown and accessors ---- */

static void release(struct fetch *f)
{
	if (f->pending || !f->timer_closed)
		return;
	if (f->src) {
		source_free(f->src);
		f->src = NULL;
	}
	for (size_t i = 0; i < f->nfiles; i++) {
		struct ffile *ff = &f->files[i];
		if (ff->part)
			cache_partial_close(ff->part);
		buf_close(&ff->pend);
		buf_close(&ff->syncing);
	}
	for (size_t i = 0; i < f->nslots; i++)
		free(f->slots[i].buf);
	free(f->slots);
	free(f->src_index);
	free(f->files);
	free(f->bfile);
	free(f->state);
	free(f->bits);
	free(f->from_origin);
	free(f->planned);
	free(f->tainted);
	free(f->avail);
	free(f->asks);
	free(f->lonely_ms);
	buf_close(&f->origin_q);
	manifest_free(f->m);
	free(f->name);
	free(f->target_root);
	free(f->error);
	free(f);
}

static void timer_closed(uv_handle_t *h)
{
	struct fetch *f = h->data;
	f->timer_closed = 1;
	release(f);
}

void fetch_free(struct fetch *f)
{
	if (!f || f->dead)
		return;
	f->dead = 1;
	if (f->src && f->src->ops->cancel)
		f->src->ops->cancel(f->src);
	uv_close((uv_handle_t *)&f->timer, timer_closed);
}

const char *fetch_name(const struct fetch *f)
{
	return f->name;
}

const uint8_t *fetch_version_id(const struct fetch *f)
{
	return f->vid;
}

uint32_t fetch_nblocks(const struct fetch *f)
{
	return f->nblocks;
}

enum fetch_block_state fetch_block_state(const struct fetch *f, uint32_t b)
{
	return b < f->nblocks ? (enum fetch_block_state)f->state[b] : FETCH_UNKNOWN;
}

const struct hash_id *fetch_block_hash(const struct fetch *f, uint32_t b)
{
	return (const struct hash_id *)hash_ptr(f, b);
}

const uint8_t *fetch_bits(const struct fetch *f)
{
	return f->bits;
}

int fetch_complete(const struct fetch *f)
{
	return f->complete;
}

int fetch_published(const struct fetch *f)
{
	return f->published;
}

const char *fetch_error(const struct fetch *f)
{
	return f->error;
}

void fetch_stats(const struct fetch *f, struct fetch_stats *out)
{
	*out = f->st;
}
