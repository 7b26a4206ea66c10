#include "agent/fetch_int.h"

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

#define TICK_MS 1000

void fetch_fail(struct fetch *f, int rc, const char *fmt, ...)
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
	if (!f->o.quiet)
		log_limited_with(LOG_ERROR, LOG_KV({"dataset", f->name}, {"error", f->error}),
				 "dataset %s: failed: %s", f->name, f->error);
	if (f->src && f->src->ops->cancel)
		f->src->ops->cancel(f->src);
	if (f->hooks.done)
		f->hooks.done(f->hooks.arg, f, rc);
}

void fetch_unpend(struct fetch *f)
{
	f->pending--;
	if (f->dead)
		fetch_release(f);
	else if (!f->pending)
		fetch_quiet(f);
}

void fetch_queue_work(struct fetch *f, uv_work_t *w, uv_work_cb fn, uv_after_work_cb after)
{
	f->pending++;
	int rc = uv_queue_work(f->loop, w, fn, after);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

uint32_t fetch_missing(const struct fetch *f)
{
	uint32_t n = 0;
	for (uint32_t b = 0; b < f->nblocks; b++)
		n += f->state[b] <= FETCH_ORIGIN;
	return n;
}

size_t fetch_files_missing(const struct fetch *f)
{
	size_t n = 0;
	for (size_t i = 0; i < f->nfiles; i++)
		n += !f->files[i].done;
	return n;
}

size_t fetch_file_slot(const struct fetch *f, size_t index)
{
	size_t lo = 0, hi = f->nfiles; /* files[] follows the manifest's order */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->files[mid].index == index)
			return mid;
		if (f->files[mid].index < index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return f->nfiles;
}

int fetch_file_done(const struct fetch *f, size_t index)
{
	size_t fi = fetch_file_slot(f, index);
	return fi < f->nfiles && f->files[fi].done;
}

uint64_t fetch_arrived_ms(const struct fetch *f)
{
	return f->arrived_ms;
}

/* Once a second: blocks that no connected peer holds for a while are read
 * from the origin here (their holders left, or never came). */
static void tick(uv_timer_t *t)
{
	struct fetch *f = t->data;
	if (f->rc < 0 || f->complete)
		return;
	uint64_t now = uv_now(f->loop);
	int queued = 0, origin_ok = now >= f->origin_after_ms; /* a repair's backoff */
	fetch_held_sweep(f, now);
	for (uint32_t b = 0; b < f->nblocks; b++) {
		if (f->state[b] != FETCH_NEED || f->avail[b])
			continue;
		if (f->tainted[b]) {
			if (!origin_ok)
				continue;
			f->state[b] = FETCH_ORIGIN;
			f->st.refetch_bad_peer++;
			buf_append(&f->origin_q, &b, sizeof b);
			queued++;
		} else if (!f->lonely_ms[b]) {
			f->lonely_ms[b] = now;
		} else if (origin_ok && now - f->lonely_ms[b] >= FETCH_NO_PEER_MS) {
			f->state[b] = FETCH_ORIGIN;
			f->st.refetch_no_peer++;
			buf_append(&f->origin_q, &b, sizeof b);
			queued++;
		}
	}
	if (queued) {
		log_with(LOG_INFO, LOG_KV({"dataset", f->name}),
			 "dataset %s: no peer holds %d %s; reading %s from the origin", f->name,
			 queued, queued == 1 ? "block" : "blocks", queued == 1 ? "it" : "them");
		fetch_pump(f);
	}
}

/* ---- completing ---- */

struct publish_job {
	struct fetch *f;
	uv_work_t work;
	int rc;
	char *detail;
	struct cache_updates updates; /* for the loop thread to apply */
	struct publish_stats st;      /* a repair's */
};

static void publish_work(uv_work_t *w)
{
	struct publish_job *pj = w->data;
	struct fetch *f = pj->f;
	char *dir;
	/* A pulled dataset stays in the cache: each pull publishes it. A
	 * repair leaves the intact files of the tree in place. */
	if (f->target_root && f->o.repair) {
		dir = path_join(f->target_root, f->name);
		pj->rc = publish_tree(f->c, f->m, dir, &pj->st, &pj->updates, &pj->detail);
		free(dir);
	} else if (f->target_root) {
		pj->rc =
		    publish_version(f->c, f->m, f->target_root, f->name, &pj->updates, &pj->detail);
	}
}

static void publish_done(uv_work_t *w, int status)
{
	struct publish_job *pj = w->data;
	struct fetch *f = pj->f;
	int rc = status < 0 ? status : pj->rc;
	/* Also after a failure: mtimes already given on disk must be known,
	 * or the next check would take those objects for changed ones. */
	int urc = cache_updates_apply(f->c, &pj->updates);
	if (urc < 0)
		log_warn("dataset %s: cannot record the published objects in the cache index: %s",
			 f->name, sb_strerror(urc));
	cache_updates_close(&pj->updates);
	f->publishing = 0;
	if (!f->dead) {
		if (rc < 0) {
			fetch_fail(f, rc, "%s", pj->detail ? pj->detail : sb_strerror(rc));
		} else {
			f->published = 1;
			if (f->target_root && f->o.repair)
				log_with(LOG_INFO, LOG_KV({"dataset", f->name}),
					 "dataset %s: repaired %s/%s: %llu %s put back, %llu in "
					 "place",
					 f->name, f->target_root, f->name,
					 (unsigned long long)(pj->st.linked + pj->st.copied),
					 pj->st.linked + pj->st.copied == 1 ? "file" : "files",
					 (unsigned long long)pj->st.unchanged);
			else if (f->target_root)
				log_with(LOG_INFO, LOG_KV({"dataset", f->name}),
					 "dataset %s: published %s/%s", f->name, f->target_root,
					 f->name);
			else
				log_with(LOG_INFO, LOG_KV({"dataset", f->name}),
					 "dataset %s: complete in the cache", f->name);
			if (f->hooks.done)
				f->hooks.done(f->hooks.arg, f, 0);
		}
	}
	free(pj->detail);
	free(pj);
	fetch_unpend(f);
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
		fetch_fail(f, rc, "dataset %s: the completed manifest is invalid: %s", f->name,
			   sb_strerror(rc));
		return;
	}
	manifest_encode(f->m, &enc, &id);
	if (!f->target_root && f->hooks.complete) { /* the caller records and publishes */
		buf_close(&enc);
		char *detail = NULL;
		rc = f->hooks.complete(f->hooks.arg, f, f->m, &id, &detail);
		if (rc < 0) {
			fetch_fail(f, rc, "%s", detail ? detail : sb_strerror(rc));
		} else {
			f->published = 1;
			if (f->hooks.done)
				f->hooks.done(f->hooks.arg, f, 0);
		}
		free(detail);
		return;
	}
	/* No target and no complete hook: recorded in the cache only (a
	 * dataset pulled through the agent, published by its pulls). */
	char *target = f->target_root ? path_join(f->target_root, f->name) : xstrdup("");
	rc = cache_dataset_set(f->c, f->name, f->m->source, target, &id, enc.ptr, enc.len);
	free(target);
	buf_close(&enc);
	if (rc < 0) {
		fetch_fail(f, rc, "cannot record dataset %s in %s: %s", f->name, cache_dir(f->c),
			   sb_strerror(rc));
		return;
	}
	struct publish_job *pj = xcalloc(1, sizeof *pj);
	pj->f = f;
	pj->work.data = pj;
	f->publishing = 1;
	fetch_queue_work(f, &pj->work, publish_work, publish_done);
}

void fetch_maybe_finish(struct fetch *f)
{
	if (f->complete || f->rc < 0 || f->dead)
		return;
	for (size_t i = 0; i < f->nfiles; i++)
		if (!f->files[i].done)
			return;
	f->complete = 1;
	complete(f);
}

/* After a failure for lack of space, the partials of unfinished files only
 * hold space that the index needs to record the finished ones (and the
 * next attempt needs); after a corrupt download, their blocks must not be
 * resumed into a file nobody can check any more. Both go. */
static void drop_unfinished(struct fetch *f)
{
	f->dropped = 1;
	for (size_t i = 0; i < f->nfiles; i++) {
		struct ffile *ff = &f->files[i];
		if (ff->part && !ff->sealed && !ff->done) {
			cache_partial_discard(ff->part);
			ff->part = NULL;
		}
	}
}

void fetch_quiet(struct fetch *f)
{
	if (f->dead || f->pending)
		return;
	if (f->rc < 0 && !f->dropped && (sb_no_space(f->rc) || f->rc == SB_ECORRUPT))
		drop_unfinished(f);
	if (f->nready) { /* sealed files are committed, also after a failure */
		fetch_flush_ready(f);
		return;
	}
	if (f->rc == 0 && !f->complete && fetch_stopping(f))
		fetch_fail(
		    f, SB_ECANCELED,
		    "%s: stopped before every file was fetched; the target keeps its previous "
		    "version",
		    fetch_shown(f));
	if (f->dead || f->idle_told || (f->rc == 0 && !f->published))
		return;
	f->idle_told = 1;
	if (f->hooks.idle)
		f->hooks.idle(f->hooks.arg, f);
}

/* ---- setting up ---- */

/* Blocks of ff already durable in its partial (an interrupted fetch or
 * pull of the same source state): reused. */
static void resume_blocks(struct fetch *f, struct ffile *ff)
{
	for (uint32_t i = 0; i < ff->nblocks; i++) {
		struct hash_id h;
		uint32_t b = ff->first + i;
		if (f->state[b] != FETCH_UNKNOWN && f->state[b] != FETCH_NEED)
			continue;
		if (!cache_partial_have(ff->part, i, &h))
			continue;
		if (fetch_known(f, b) && memcmp(h.b, fetch_hash_ptr(f, b), HASH_LEN) != 0)
			continue; /* an older cut of the file: fetch it again */
		if (!fetch_known(f, b)) {
			memcpy(fetch_hash_ptr(f, b), h.b, HASH_LEN);
			f->from_origin[b] = 1; /* the scheduler may not have heard of it */
		}
		f->state[b] = FETCH_HAVE;
		f->bits[b / 8] |= (uint8_t)(1u << (b % 8));
		ff->have++;
		ff->written++;
		f->st.blocks_have++;
		f->st.bytes_have += fetch_len(f, b);
		f->st.bytes_reused += fetch_len(f, b);
		fetch_metrics_bytes(f->name, FETCH_FROM_CACHE, fetch_len(f, b));
	}
}

int fetch_open_part(struct fetch *f, struct ffile *ff)
{
	if (ff->part)
		return 0;
	const FileEntry *e = f->m->files[ff->index];
	int rc = cache_partial_open(f->c, &ff->key, e->size, f->m->block_size, &ff->part);
	if (rc < 0)
		fetch_fail(f, rc, "%s: cannot open partial file in %s: %s", e->path,
			   cache_dir(f->c), sb_strerror(rc));
	return rc;
}

static int open_file(struct fetch *f, struct ffile *ff)
{
	const FileEntry *e = f->m->files[ff->index];
	/* Everything known and the object intact: nothing to fetch. */
	int all_known = 1;
	for (uint32_t k = 0; k < ff->nblocks && all_known; k++)
		all_known = fetch_known(f, ff->first + k);
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
				f->st.bytes_have += fetch_len(f, b);
			}
			f->st.bytes_reused += e->size;
			fetch_metrics_bytes(f->name, FETCH_FROM_CACHE, e->size);
			ff->have = ff->written = ff->nblocks;
			ff->done = 1;
			return 0;
		}
	}
	/* The partial is keyed by the exact source state, so a restart, a
	 * daemon or a standalone pull resumes only into bytes of the same
	 * version. */
	struct buf k = BUF_INIT;
	buf_printf(&k, "%s%c%s%c%s%c%llu%c%u", f->m->source, 0, e->path, 0, e->source_digest, 0,
		   (unsigned long long)e->size, 0, f->m->block_size);
	hash_sha256(k.ptr, k.len, &ff->key);
	buf_close(&k);
	int rc = cache_partial_indexed(f->c, &ff->key);
	if (rc <= 0)
		return rc; /* nothing to resume: opened when its first block lands */
	rc = cache_partial_open(f->c, &ff->key, e->size, f->m->block_size, &ff->part);
	if (rc < 0)
		return rc;
	resume_blocks(f, ff);
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
	fetch_order_setup(f);
	f->ready = xcalloc(f->nfiles + 1, sizeof *f->ready);
	f->flushing = xcalloc(f->nfiles + 1, sizeof *f->flushing);
	for (uint32_t b = 0; b < f->nblocks; b++)
		f->state[b] = fetch_known(f, b) ? FETCH_NEED : FETCH_UNKNOWN;
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
	struct fetch_options o = {
	    .name = name, .target_root = target_root, .version_id = version_id, .so = so};
	return fetch_open(loop, c, m, &o, hooks, out);
}

int fetch_open(uv_loop_t *loop, struct cache *c, const Manifest *m, const struct fetch_options *o,
	       const struct fetch_hooks *hooks, struct fetch **out)
{
	Manifest *copy = copy_manifest(m);
	if (!copy)
		return SB_EPROTO;
	struct fetch *f = xcalloc(1, sizeof *f);
	f->loop = loop;
	f->c = c;
	f->o = *o;
	f->name = xstrdup(o->name);
	f->target_root = o->target_root ? xstrdup(o->target_root) : NULL;
	f->o.name = f->name;
	f->o.target_root = f->target_root;
	f->o.shown = o->shown ? xstrdup(o->shown) : NULL;
	if (o->version_id)
		memcpy(f->vid, o->version_id, HASH_LEN);
	f->m = copy;
	f->so = *o->so;
	f->o.so = &f->so;
	f->hooks = *hooks;
	int rc = setup_blocks(f);
	if (rc < 0) {
		f->dead = 1;
		f->timer_closed = 1;
		fetch_release(f);
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
	if (o->src) {
		f->src = o->src;
		f->src_borrowed = 1;
		fetch_source_ready(f);
	}
	for (uint32_t b = 0; b < f->nblocks; b++)
		fetch_try_local(f, b);
	for (size_t i = 0; i < f->nfiles; i++)
		fetch_check_file(&f->files[i]);
	fetch_maybe_finish(f);
	if (!f->pending)
		fetch_quiet(f);
	return 0;
}

/* ---- teardown and accessors ---- */

void fetch_release(struct fetch *f)
{
	if (f->pending || !f->timer_closed)
		return;
	if (f->src && !f->src_borrowed)
		source_free(f->src);
	f->src = NULL;
	for (size_t i = 0; i < f->nfiles; i++) {
		struct ffile *ff = &f->files[i];
		if (ff->part)
			cache_partial_close(ff->part);
		buf_close(&ff->pend);
		buf_close(&ff->syncing);
	}
	for (size_t i = 0; f->slots && i < f->nslots + 1; i++) {
		free(f->slots[i].buf);
		free(f->slots[i].part_got);
	}
	fetch_held_free(f);
	free(f->ready);
	free(f->flushing);
	free((char *)f->o.shown);
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
	fetch_order_free(f);
	buf_close(&f->origin_q);
	manifest_free(f->m);
	free(f->name);
	free(f->target_root);
	free(f->error);
	free(f->waiting);
	free(f);
}

static void timer_closed(uv_handle_t *h)
{
	struct fetch *f = h->data;
	f->timer_closed = 1;
	fetch_release(f);
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

const Manifest *fetch_manifest(const struct fetch *f)
{
	return f->m;
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
	return (const struct hash_id *)fetch_hash_ptr(f, b);
}

uint32_t fetch_block_len(const struct fetch *f, uint32_t b)
{
	return fetch_len(f, b);
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

int fetch_status(const struct fetch *f)
{
	return f->rc;
}

const char *fetch_waiting(const struct fetch *f)
{
	return f->waiting;
}

void fetch_stats(const struct fetch *f, struct fetch_stats *out)
{
	*out = f->st;
}
