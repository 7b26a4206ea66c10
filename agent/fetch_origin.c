/* The fetch engine's origin: this node's share of the blocks read from the
 * source (opened and listed on the first read), in parts of a block in
 * parallel where the source allows, retried with backoff on a repair. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "agent/fetch_int.h"
#include "common/err.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/uri.h"

#define ORIGIN_JOBS_DEFAULT 8		 /* origin reads in flight when the source gives no hint */
#define ORIGIN_JOBS_MAX	    64		 /* ...and at most, from a hint */
#define ORIGIN_JOBS_ASKED   256		 /* ...and at most, when asked for */
#define ORIGIN_PART_MIN	    (256u << 10) /* smallest part of a block read in parallel */

/* ---- the origin ---- */

static size_t part_len_of(const struct job *j)
{
	return (j->len + j->parts - 1) / j->parts;
}

/* Tell hooks.reading the bytes of streamed job j now in, in order from
 * the block's start, when they complete another piece (or the block). */
static void tell_prefix(struct fetch *f, struct job *j)
{
	size_t part_len = part_len_of(j), got = 0;
	for (uint32_t k = 0; k < j->parts; k++) {
		size_t want = j->len - (size_t)k * part_len < part_len
				  ? j->len - (size_t)k * part_len
				  : part_len;
		got += j->part_got[k];
		if (j->part_got[k] < want)
			break;
	}
	uint32_t pieces =
	    got == j->len ? block_npieces((uint32_t)j->len) : (uint32_t)(got / PIECE_SIZE);
	if (pieces <= j->told)
		return;
	j->told = pieces;
	f->hooks.reading(f->hooks.arg, f, j->b, FETCH_READING_MORE, j->buf, (uint32_t)got, 1);
}

/* The source's read_progress: bytes of one part of a streamed block. */
static void origin_progress(void *arg, const uint8_t *buf, size_t got)
{
	struct fetch *f = arg;
	for (size_t i = 0; f->slots && i < f->nslots + 1; i++) {
		struct job *j = &f->slots[i];
		if (j->kind != JOB_ORIGIN || !j->streamed || buf < j->buf || buf >= j->buf + j->len)
			continue;
		size_t k = (size_t)(buf - j->buf) / part_len_of(j);
		if (k < j->parts && got > j->part_got[k]) {
			j->part_got[k] = got;
			tell_prefix(f, j);
		}
		return;
	}
}

/* One part of an origin block arrived (or failed). The block goes on to
 * be verified and stored once every part issued is back. */
static void origin_part_done(struct source *src, int status, void *arg)
{
	struct job *j = arg;
	struct fetch *f = j->f;
	j->parts_done++;
	f->reads_busy--;
	if (status >= 0)
		f->arrived_ms = uv_now(f->loop);
	if ((status < 0 || f->dead) && !j->part_rc)
		j->part_rc = status < 0 ? status : SB_ECANCELED; /* no more parts asked */
	if (j->parts_done == j->parts_issued && (j->part_rc || j->parts_done == j->parts)) {
		if (j->part_rc) {
			j->rc = j->part_rc;
			f->pending++; /* fetch_write_done drops it */
			fetch_write_done(&j->work, 0);
		} else {
			j->arrived_ns = uv_hrtime();
			if (j->streamed) { /* a source that tells no progress: all at once */
				for (uint32_t k = 0; k < j->parts; k++)
					j->part_got[k] = part_len_of(j);
				tell_prefix(f, j);
			}
			fetch_queue_work(f, &j->work, fetch_write_work, fetch_write_done);
		}
	} else {
		fetch_pump(f); /* a read slot is free */
	}
	fetch_unpend(f);
}

static void issue_part(struct fetch *f, struct job *j)
{
	const struct ffile *ff = &f->files[f->bfile[j->b]];
	size_t part_len = part_len_of(j);
	size_t off = (size_t)j->parts_issued++ * part_len;
	size_t len = j->len - off < part_len ? j->len - off : part_len;
	f->reads_busy++;
	f->pending++;
	int rc = f->src->ops->read(f->src, f->src_index[ff->index], fetch_block_off(f, j->b) + off,
				   len, j->buf + off, origin_part_done, j);
	if (rc < 0)
		origin_part_done(f->src, rc, j);
}

/* The oldest origin block with parts still to ask for. */
static struct job *next_part(struct fetch *f)
{
	struct job *best = NULL;
	for (size_t i = 0; i < f->nslots + 1; i++) {
		struct job *j = &f->slots[i];
		if (j->kind == JOB_ORIGIN && !j->part_rc && j->parts_issued < j->parts &&
		    (!best || j->seq < best->seq))
			best = j;
	}
	return best;
}

/* 1 when an origin read of block b is under way. */
static int origin_reading(const struct fetch *f, uint32_t b)
{
	for (size_t i = 0; i < f->nslots + 1; i++)
		if (f->slots[i].kind == JOB_ORIGIN && f->slots[i].b == b)
			return 1;
	return 0;
}

static struct job *start_origin_job(struct fetch *f, uint32_t b)
{
	struct job *j = NULL;
	for (size_t i = 0; i < f->nslots + 1; i++)
		if ((int)f->slots[i].kind == -1) {
			j = &f->slots[i];
			break;
		}
	if (!j)
		return NULL;
	j->kind = JOB_ORIGIN;
	j->b = b;
	j->len = fetch_len(f, b);
	j->expect = fetch_known(f, b);
	j->rc = 0;
	j->held = 0;
	j->owned = 0;
	j->peer = NULL;
	j->seq = f->next_seq++;
	j->parts_issued = j->parts_done = 0;
	j->part_rc = 0;
	j->parts = 1;
	j->asked_ns = uv_hrtime();
	j->arrived_ns = 0;
	if (!f->src->ops->pread && !f->o.whole_blocks) {
		size_t most = j->len / ORIGIN_PART_MIN;
		j->parts = (uint32_t)(most < 1 ? 1 : most < f->nslots ? most : f->nslots);
	}
	if (!j->buf)
		j->buf = xmalloc(f->m->block_size);
	j->streamed = f->hooks.reading && !f->src->ops->pread && !j->expect &&
		      f->m->format == MANIFEST_FORMAT_PIECES && block_npieces((uint32_t)j->len) > 1;
	j->told = 0;
	j->work.data = j;
	f->slots_busy++;
	f->state[b] = FETCH_ORIGIN;
	f->files[f->bfile[b]].started = 1;
	f->files[f->bfile[b]].inflight++;
	if (f->src->ops->pread) { /* one blocking read on the pool */
		j->parts_issued = 1;
		f->reads_busy++;
		fetch_queue_work(f, &j->work, fetch_write_work, fetch_write_done);
	}
	if (j->streamed) {
		if (!j->part_got)
			j->part_got = xcalloc(f->nslots + 1, sizeof *j->part_got);
		memset(j->part_got, 0, (f->nslots + 1) * sizeof *j->part_got);
		f->hooks.reading(f->hooks.arg, f, b, FETCH_READING_START, j->buf, 0, 1);
	}
	return j;
}

/* The listing this node read must describe the version being distributed:
 * same files, sizes and change tokens. */
static int match_listing(struct fetch *f)
{
	const struct source_listing *l = &f->src->listing;
	free(f->src_index); /* a repair lists again after a failure */
	f->src_index = xcalloc(f->m->n_files + 1, sizeof *f->src_index);
	size_t j = 0;
	for (size_t i = 0; i < f->m->n_files; i++) {
		const FileEntry *e = f->m->files[i];
		while (j < l->nfiles && strcmp(l->files[j].path, e->path) < 0)
			j++;
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR)
			continue;
		if (j >= l->nfiles || strcmp(l->files[j].path, e->path) != 0) {
			fetch_origin_fail(f, SB_ECHANGED, "%s: %s is gone from the source",
					  f->m->source, e->path);
			return SB_ECHANGED;
		}
		const struct source_file *s = &l->files[j];
		if (s->size != e->size || strcmp(s->digest ? s->digest : "", e->source_digest)) {
			fetch_origin_fail(
			    f, SB_ECHANGED,
			    "%s: %s changed since the scheduler listed it; waiting for the "
			    "next version",
			    f->m->source, e->path);
			return SB_ECHANGED;
		}
		f->src_index[i] = j;
	}
	return 0;
}

void fetch_source_ready(struct fetch *f)
{
	const struct source *src = f->src;
	if (match_listing(f) < 0)
		return;
	f->src_state = 2;
	if (f->slots)
		return; /* sized when a listing first matched */
	if (src->sequential)
		f->nslots = 1;
	else if (f->o.origin_jobs > 0)
		f->nslots = (size_t)(f->o.origin_jobs < ORIGIN_JOBS_ASKED ? f->o.origin_jobs
									  : ORIGIN_JOBS_ASKED);
	else
		f->nslots = (size_t)(src->max_parallel <= 0		   ? ORIGIN_JOBS_DEFAULT
				     : src->max_parallel < ORIGIN_JOBS_MAX ? src->max_parallel
									   : ORIGIN_JOBS_MAX);
	f->slots = xcalloc(f->nslots + 1, sizeof *f->slots);
	for (size_t i = 0; i < f->nslots + 1; i++) {
		f->slots[i].f = f;
		f->slots[i].kind = -1;
		f->slots[i].slot = i;
	}
	fetch_pump(f);
}

static void listed(struct source *src, int status, void *arg)
{
	struct fetch *f = arg;
	if (!f->dead) {
		if (status < 0)
			fetch_origin_fail(f, status, "%s",
					  src->error_detail ? src->error_detail
							    : sb_strerror(status));
		else
			fetch_source_ready(f);
	}
	fetch_unpend(f);
}

static void origin_unqueue(struct fetch *f);

static void open_source(struct fetch *f)
{
	struct source_uri uri;
	struct source_options so = f->so;
	int rc = uri_parse(f->m->source, &uri);
	/* The scheduler held the source to its limits; this listing only has
	 * to find the manifest's files in it, so it gets what a manifest can
	 * hold rather than this agent's defaults. */
	so.limits.files = MANIFEST_MAX_FILES;
	if (f->src) { /* a repair's, whose listing failed: its callback ran */
		source_free(f->src);
		f->src = NULL;
	}
	if (rc == 0) {
		rc = source_new(f->loop, &uri, &so, &f->src);
		uri_close(&uri);
	}
	if (rc == 0 && f->hooks.reading) {
		f->src->read_progress = origin_progress;
		f->src->read_progress_arg = f;
	}
	if (rc != 0) {
		fetch_origin_fail(f, rc, "%s: %s", f->m->source, sb_strerror(rc));
		return;
	}
	f->src_state = 1;
	f->pending++;
	rc = f->src->ops->list(f->src, listed, f);
	if (rc < 0) {
		f->pending--;
		fetch_origin_fail(f, rc, "%s: %s", f->m->source, sb_strerror(rc));
	}
}

void fetch_origin_fail(struct fetch *f, int rc, const char *fmt, ...)
{
	struct buf line = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&line, fmt, ap);
	va_end(ap);
	if (!f->o.repair) {
		fetch_fail(f, rc, "%s", buf_cstr(&line));
		buf_close(&line);
		return;
	}
	/* A source not listed yet is listed again. */
	uint32_t n = 0;
	origin_unqueue(f);
	if (f->src_state != 2 && !f->src_borrowed)
		f->src_state = 0;
	for (uint32_t b = 0; b < f->nblocks; b++)
		n += f->state[b] <= FETCH_PEER;
	unsigned ms = f->origin_backoff_ms ? f->origin_backoff_ms * 2 : FETCH_ORIGIN_RETRY_MS;
	f->origin_backoff_ms = ms < FETCH_ORIGIN_RETRY_MAX_MS ? ms : FETCH_ORIGIN_RETRY_MAX_MS;
	f->origin_after_ms = uv_now(f->loop) + f->origin_backoff_ms;
	free(f->waiting);
	f->waiting =
	    xasprintf("the origin cannot be read (%s): %u %s wait for a peer, the "
		      "origin is tried again in %u s",
		      buf_cstr(&line), n, n == 1 ? "block" : "blocks", f->origin_backoff_ms / 1000);
	log_limited_with(LOG_WARN, LOG_KV({"dataset", f->name}, {"error", buf_cstr(&line)}),
			 "dataset %s: repairing: %s", f->name, f->waiting);
	buf_close(&line);
}

/* What is queued for the origin waits for a peer again (a repair whose
 * origin failed lately); reads under way end by themselves. */
static void origin_unqueue(struct fetch *f)
{
	const uint32_t *q = (const uint32_t *)f->origin_q.ptr;
	for (size_t i = f->origin_head; i < f->origin_q.len / sizeof(uint32_t); i++)
		if (f->state[q[i]] == FETCH_ORIGIN && (!f->slots || !origin_reading(f, q[i]))) {
			f->state[q[i]] = fetch_known(f, q[i]) ? FETCH_NEED : FETCH_UNKNOWN;
			f->lonely_ms[q[i]] = 0;
		}
	buf_reset(&f->origin_q);
	f->origin_head = 0;
}

void fetch_pump(struct fetch *f)
{
	if (f->dead || f->rc < 0)
		return;
	if (uv_now(f->loop) < f->origin_after_ms)
		origin_unqueue(f); /* not before its backoff: peers only meanwhile */
	size_t queued = f->origin_q.len / sizeof(uint32_t);
	if (f->origin_head >= queued && !f->slots_busy)
		return;
	if (f->src_state == 0) {
		open_source(f);
		return;
	}
	if (f->src_state != 2)
		return;
	const uint32_t *q = (const uint32_t *)f->origin_q.ptr;
	while (f->reads_busy < f->nslots) {
		struct job *j = f->src->ops->pread ? NULL : next_part(f);
		if (j) {
			issue_part(f, j);
			continue;
		}
		if (f->origin_head >= queued || f->slots_busy >= f->nslots + 1)
			break;
		uint32_t b = q[f->origin_head];
		if (f->state[b] == FETCH_ORIGIN && !origin_reading(f, b)) {
			struct ffile *ff = &f->files[f->bfile[b]];
			if (fetch_stopping(f) && !ff->started)
				break; /* stopping: no new file */
			if (fetch_open_part(f, ff) < 0 || !start_origin_job(f, b))
				break;
		}
		f->origin_head++;
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
	/* Drop queued blocks the new plan does not name; keep reads running.
	 * They leave the queue too: one that a later plan names again is
	 * queued again, and must not be found there twice (two reads of one
	 * block at once). */
	uint32_t *q = (uint32_t *)f->origin_q.ptr;
	size_t nq = f->origin_q.len / sizeof(uint32_t), k = 0;
	for (size_t i = f->origin_head; i < nq; i++) {
		if (!f->planned[q[i]] && f->state[q[i]] == FETCH_ORIGIN && old[q[i]])
			fetch_back_to_need(f, q[i]);
		else
			q[k++] = q[i];
	}
	f->origin_q.len = k * sizeof(uint32_t);
	f->origin_head = 0;
	free(old);
	for (uint32_t b = 0; b < f->nblocks; b++)
		if (f->planned[b] && (f->state[b] == FETCH_UNKNOWN || f->state[b] == FETCH_NEED)) {
			f->state[b] = FETCH_ORIGIN;
			buf_append(&f->origin_q, &b, sizeof b);
		}
	/* Read in the fetch's order (agent/fetch_order.c): small files first
	 * (the documents that name the rest, which the registry mirror serves
	 * as soon as each is complete here), file after file. */
	fetch_order_queue(f);
	fetch_pump(f);
	fetch_quiet(f);
}
