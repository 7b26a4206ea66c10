#include "agent/pull.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/publish.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/uri.h"

/* Blocks written per fdatasync + index commit: bounds the work a crash can
 * lose while keeping syncs rare on fast transfers. */
#define SYNC_BATCH 16
/* ...and at least this often on slow transfers, so a crash loses little. */
#define SYNC_INTERVAL_NS 1000000000ull
#define JOBS_MAX	 256
/* Sealed files indexed per transaction: one index commit (and fsync) for
 * many small files. */
#define FINISH_BATCH 64

struct pull;

struct pfile {
	size_t index; /* into the listing */
	struct cache_partial *part;
	uint8_t *hashes; /* nblocks * HASH_LEN, filled as blocks land */
	uint64_t nblocks;
	uint64_t next;			/* next block to consider dispatching */
	uint64_t need;			/* blocks to fetch */
	uint64_t committed;		/* fetched blocks made durable and indexed */
	uint64_t inflight;		/* dispatched, not yet written */
	struct buf pend_idx, pend_hash; /* written, awaiting sync */
	struct buf sync_idx, sync_hash; /* being synced */
	int syncing;
	uint64_t last_sync_ns;
	int opened;
	int done;
	int reused; /* unchanged since the last version */
	uv_work_t sync_work;
	int sync_rc;
	int sealing, sealed;
	uv_work_t seal_work;
	int seal_rc;
	struct pull *p;
};

struct slot {
	struct pull *p;
	uv_work_t work;
	uint8_t *buf;
	struct pfile *pf;
	uint64_t idx;
	uint32_t len;
	struct hash_id h;
	int rc;
	int existed;
	int busy;
};

struct pull {
	uv_loop_t loop;
	struct cache *c;
	struct source *src;
	const struct pull_options *o;
	struct pull_result *r;
	Manifest *prev;
	struct pfile *files;
	size_t nfiles;
	size_t cursor; /* first file that may still have blocks to dispatch */
	struct slot *slots;
	int nslots;
	int inflight;	      /* slots busy */
	int syncs;	      /* sync and seal works running */
	struct pfile **ready; /* sealed, awaiting the group index commit */
	size_t nready;
	struct pfile **flushing; /* being synced and indexed */
	size_t nflushing;
	int flush_busy, flush_rc;
	uv_work_t flush_req;
	int rc;
	int listed;
	int finished;
	struct progress prog;
	uint64_t start_ns;
};

static void set_error(struct pull *p, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct pull *p, int rc, const char *fmt, ...)
{
	if (p->rc < 0)
		return;
	p->rc = rc;
	if (!p->r->error) {
		struct buf b = BUF_INIT;
		va_list ap;
		va_start(ap, fmt);
		buf_vprintf(&b, fmt, ap);
		va_end(ap);
		p->r->error = buf_steal(&b);
	}
	if (p->src->ops->cancel)
		p->src->ops->cancel(p->src);
}

static const struct source_file *sfile(struct pull *p, struct pfile *pf)
{
	return &p->src->listing.files[pf->index];
}

/* The partial's key names the exact source state being fetched, so a crash
 * resumes only into bytes of the same version. */
static void partial_key(struct pull *p, const struct source_file *f, struct hash_id *out)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s%c%s%c%s%c%llu%c%u", p->src->uri.canonical, 0, f->path, 0,
		   f->digest ? f->digest : "", 0, (unsigned long long)f->size, 0, p->o->block_size);
	hash_sha256(b.ptr, b.len, out);
	buf_close(&b);
}

static const FileEntry *prev_entry(struct pull *p, const char *path)
{
	if (!p->prev)
		return NULL;
	size_t lo = 0, hi = p->prev->n_files;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(p->prev->files[mid]->path, path);
		if (c == 0)
			return p->prev->files[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Sealed files become durable with one filesystem sync, then are indexed
 * in one transaction: per-file fsyncs and commits would dominate a tree of
 * small files. */
static void flush_work(uv_work_t *w)
{
	struct pull *p = w->data;
	p->flush_rc = cache_sync_objects(p->c);
}

static void pump(struct pull *p);
static void maybe_done(struct pull *p);

/* --verbose: the file's path and size, above the bar on a terminal. */
static void file_line(struct pull *p, struct pfile *pf)
{
	char size[32];
	const struct source_file *f = sfile(p, pf);
	progress_note(&p->prog, "  %s  %s", f->path,
		      progress_fmt_bytes(f->size, size, sizeof size));
}

static void flush_done(uv_work_t *w, int status)
{
	struct pull *p = w->data;
	int rc = status < 0 ? status : p->flush_rc;
	struct cache_partial **parts = xcalloc(p->nflushing + 1, sizeof *parts);
	for (size_t i = 0; i < p->nflushing; i++) {
		parts[i] = p->flushing[i]->part;
		p->flushing[i]->part = NULL;
	}
	if (rc == 0) {
		rc = cache_partials_finish(parts, p->nflushing);
	} else {
		for (size_t i = 0; i < p->nflushing; i++)
			cache_partial_close(parts[i]);
	}
	free(parts);
	for (size_t i = 0; i < p->nflushing; i++) {
		p->flushing[i]->done = rc == 0;
		if (rc == 0 && p->o->verbose && p->o->progress)
			file_line(p, p->flushing[i]);
	}
	if (rc == 0)
		progress_files_done(&p->prog, p->nflushing);
	if (rc < 0)
		set_error(p, rc, "cannot store files in %s: %s", cache_dir(p->c), sb_strerror(rc));
	p->nflushing = 0;
	p->flush_busy = 0;
	p->syncs--;
	pump(p);
	maybe_done(p);
}

static void flush_ready(struct pull *p)
{
	if (!p->nready || p->flush_busy)
		return;
	struct pfile **t = p->flushing;
	p->flushing = p->ready;
	p->nflushing = p->nready;
	p->ready = t;
	p->nready = 0;
	p->flush_busy = 1;
	p->syncs++;
	p->flush_req.data = p;
	int rc = uv_queue_work(&p->loop, &p->flush_req, flush_work, flush_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

static void seal_work(uv_work_t *w)
{
	struct pfile *pf = w->data;
	const struct source_file *f = &pf->p->src->listing.files[pf->index];
	/* The whole file against the source's digest (LFS sha256, OCI blob,
	 * git blob id, S3 full-object SHA-256), also when it was assembled
	 * across a resume. */
	int rc = hash_check_content_fd(cache_partial_fd(pf->part), f->size, f->digest,
				       f->has_content_sha256 ? f->content_sha256 : NULL);
	pf->seal_rc = rc < 0 ? rc : cache_partial_seal(pf->part, f->mode, f->mtime_ns, 0);
}

static void seal_done(uv_work_t *w, int status)
{
	struct pfile *pf = w->data;
	struct pull *p = pf->p;
	int rc = status < 0 ? status : pf->seal_rc;
	pf->sealing = 0;
	p->syncs--;
	if (rc == SB_ECORRUPT) {
		const struct source_file *f = sfile(p, pf);
		char want[7 + HASH_HEX_LEN + 1] = "sha256:";
		if (f->has_content_sha256)
			hash_to_hex((const struct hash_id *)f->content_sha256, want + 7);
		set_error(p, rc, "%s: %s does not match the source's digest %s", p->src->uri.raw,
			  f->path, f->has_content_sha256 ? want : f->digest);
	} else if (rc < 0) {
		set_error(p, rc, "%s: cannot store in cache: %s", sfile(p, pf)->path,
			  sb_strerror(rc));
	} else {
		pf->sealed = 1;
		p->ready[p->nready++] = pf;
		if (p->nready >= FINISH_BATCH)
			flush_ready(p);
	}
	pump(p);
	maybe_done(p);
}

/* Every block is written: fold the unsynced ones into the partial's hash
 * list and seal the file on the pool (one fsync covers them). */
static void start_seal(struct pull *p, struct pfile *pf)
{
	size_t n = pf->pend_idx.len / sizeof(uint64_t);
	const uint64_t *idx = (const uint64_t *)pf->pend_idx.ptr;
	const struct hash_id *h = (const struct hash_id *)pf->pend_hash.ptr;
	for (size_t i = 0; i < n; i++)
		cache_partial_set_have(pf->part, idx[i], &h[i]);
	pf->committed += n;
	buf_reset(&pf->pend_idx);
	buf_reset(&pf->pend_hash);
	pf->sealing = 1;
	p->syncs++;
	pf->seal_work.data = pf;
	int rc = uv_queue_work(&p->loop, &pf->seal_work, seal_work, seal_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

static void sync_work(uv_work_t *w)
{
	struct pfile *pf = w->data;
	pf->sync_rc = cache_partial_sync(pf->part);
}

static void start_sync(struct pfile *pf);

static void check_file(struct pull *p, struct pfile *pf)
{
	if (pf->done || pf->syncing || pf->sealing || pf->sealed || !pf->opened)
		return;
	int all_written = pf->next >= pf->nblocks && pf->inflight == 0;
	if (p->rc == 0 && all_written) {
		start_seal(p, pf);
		return;
	}
	/* Keep what arrived durable for a resume, also after an error. */
	if (pf->pend_idx.len && (pf->pend_idx.len / sizeof(uint64_t) >= SYNC_BATCH ||
				 progress_now_ns() - pf->last_sync_ns >= SYNC_INTERVAL_NS ||
				 pf->inflight == 0 || p->rc < 0))
		start_sync(pf);
}

static void sync_done(uv_work_t *w, int status)
{
	struct pfile *pf = w->data;
	struct pull *p = pf->p;
	int rc = status < 0 ? status : pf->sync_rc;
	size_t n = pf->sync_idx.len / sizeof(uint64_t);
	pf->syncing = 0;
	p->syncs--;
	if (rc == 0)
		rc = cache_partial_commit(pf->part, (uint64_t *)pf->sync_idx.ptr,
					  (struct hash_id *)pf->sync_hash.ptr, n);
	if (rc < 0)
		/* An fsync error cannot be retried into success: the blocks
		 * stay unindexed and the next run fetches them again. */
		set_error(p, rc, "%s: cannot make blocks durable: %s", sfile(p, pf)->path,
			  sb_strerror(rc));
	else
		pf->committed += n;
	buf_reset(&pf->sync_idx);
	buf_reset(&pf->sync_hash);
	check_file(p, pf);
	pump(p);
	maybe_done(p);
}

static void start_sync(struct pfile *pf)
{
	struct pull *p = pf->p;
	struct buf t;
	t = pf->sync_idx, pf->sync_idx = pf->pend_idx, pf->pend_idx = t;
	t = pf->sync_hash, pf->sync_hash = pf->pend_hash, pf->pend_hash = t;
	buf_reset(&pf->pend_idx);
	buf_reset(&pf->pend_hash);
	pf->syncing = 1;
	pf->last_sync_ns = progress_now_ns();
	p->syncs++;
	pf->sync_work.data = pf;
	int rc = uv_queue_work(&p->loop, &pf->sync_work, sync_work, sync_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

/* Pool thread: hash the block, note whether the cache already has it, and
 * write it at its offset in the partial. */
static void store_block(struct slot *s)
{
	struct cache_block_loc loc;
	hash_sha256(s->buf, s->len, &s->h);
	s->existed = cache_block_find(s->p->c, &s->h, &loc) == 1;
	s->rc = path_pwrite_all(cache_partial_fd(s->pf->part), s->buf, s->len,
				s->idx * s->p->o->block_size);
}

static void work_read_store(uv_work_t *w)
{
	struct slot *s = w->data;
	struct pull *p = s->p;
	s->rc = p->src->ops->pread(p->src, s->pf->index, s->idx * p->o->block_size, s->len, s->buf);
	if (s->rc == 0)
		store_block(s);
}

static void work_store(uv_work_t *w)
{
	store_block(w->data);
}

static void block_done(uv_work_t *w, int status)
{
	struct slot *s = w->data;
	struct pull *p = s->p;
	struct pfile *pf = s->pf;
	int rc = status < 0 ? status : s->rc;
	s->busy = 0;
	p->inflight--;
	pf->inflight--;
	if (rc < 0) {
		const struct source_file *f = sfile(p, pf);
		if (rc == SB_ECHANGED)
			set_error(
			    p, rc,
			    "%s: %s changed while it was read; pull again for a consistent version",
			    p->src->uri.raw, f->path);
		else if (sb_no_space(rc))
			set_error(p, rc, "no space left on the cache %s%s (storing %s: %s)",
				  cache_dir(p->c), rc == -EDQUOT ? " within the disk quota" : "",
				  f->path, sb_strerror(rc));
		else
			set_error(p, rc, "%s: block %llu: %s", f->path, (unsigned long long)s->idx,
				  p->src->error_detail ? p->src->error_detail : sb_strerror(rc));
	} else {
		memcpy(pf->hashes + s->idx * HASH_LEN, s->h.b, HASH_LEN);
		buf_append(&pf->pend_idx, &s->idx, sizeof s->idx);
		buf_append(&pf->pend_hash, s->h.b, HASH_LEN);
		if (s->existed)
			p->r->bytes_reused += s->len;
		else
			p->r->bytes_from_source += s->len;
		progress_add(&p->prog, s->len);
	}
	check_file(p, pf);
	pump(p);
	maybe_done(p);
}

static void read_done(struct source *src, int status, void *arg)
{
	struct slot *s = arg;
	struct pull *p = s->p;
	if (status < 0) {
		s->rc = status;
		block_done(&s->work, 0);
		return;
	}
	int rc = uv_queue_work(&p->loop, &s->work, work_store, block_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

static int open_file(struct pull *p, struct pfile *pf)
{
	const struct source_file *f = sfile(p, pf);
	struct hash_id key;
	partial_key(p, f, &key);
	int rc = cache_partial_open(p->c, &key, f->size, p->o->block_size, &pf->part);
	if (rc < 0) {
		set_error(p, rc, "%s: cannot open partial file in %s: %s", f->path, cache_dir(p->c),
			  sb_strerror(rc));
		return rc;
	}
	pf->opened = 1;
	pf->last_sync_ns = progress_now_ns();
	pf->need = 0;
	for (uint64_t i = 0; i < pf->nblocks; i++) {
		struct hash_id h;
		if (cache_partial_have(pf->part, i, &h)) {
			memcpy(pf->hashes + i * HASH_LEN, h.b, HASH_LEN);
			p->r->bytes_reused += manifest_block_len(f->size, p->o->block_size, i);
		} else {
			pf->need++;
		}
	}
	return 0;
}

/* Next block of pf that is not yet durable, or nblocks. */
static uint64_t next_missing(struct pfile *pf)
{
	while (pf->next < pf->nblocks && cache_partial_have(pf->part, pf->next, NULL))
		pf->next++;
	return pf->next;
}

static struct slot *free_slot(struct pull *p)
{
	for (int i = 0; i < p->nslots; i++)
		if (!p->slots[i].busy)
			return &p->slots[i];
	return NULL;
}

static void dispatch(struct pull *p, struct pfile *pf, struct slot *s)
{
	const struct source_file *f = sfile(p, pf);
	s->pf = pf;
	s->idx = pf->next++;
	s->len = manifest_block_len(f->size, p->o->block_size, s->idx);
	s->rc = 0;
	s->existed = 0;
	s->busy = 1;
	s->work.data = s;
	p->inflight++;
	pf->inflight++;
	int rc;
	if (p->src->ops->pread) {
		rc = uv_queue_work(&p->loop, &s->work, work_read_store, block_done);
		if (rc < 0)
			fatal("uv_queue_work: %s", uv_strerror(rc));
		return;
	}
	rc = p->src->ops->read(p->src, pf->index, s->idx * p->o->block_size, s->len, s->buf,
			       read_done, s);
	if (rc < 0) {
		s->busy = 0;
		p->inflight--;
		pf->inflight--;
		set_error(p, rc, "%s: %s", f->path,
			  p->src->error_detail ? p->src->error_detail : sb_strerror(rc));
	}
}

static int stopping(const struct pull *p)
{
	return p->o->stop && *p->o->stop;
}

static void pump(struct pull *p)
{
	if (p->rc < 0)
		return;
	int limit = p->src->sequential ? 1 : p->nslots;
	while (p->inflight < limit && p->cursor < p->nfiles && p->rc == 0) {
		struct pfile *pf = &p->files[p->cursor];
		if (pf->done || pf->reused) {
			p->cursor++;
			continue;
		}
		if (!pf->opened) {
			if (stopping(p))
				break;
			if (open_file(p, pf) < 0)
				return;
			check_file(p, pf); /* empty or fully resumed */
		}
		if (next_missing(pf) >= pf->nblocks) {
			check_file(p, pf); /* everything was already durable */
			p->cursor++;
			continue;
		}
		struct slot *s = free_slot(p);
		if (!s)
			break;
		dispatch(p, pf, s);
	}
}

static int build_manifest(struct pull *p, struct buf *enc, Manifest **out)
{
	struct source_listing *l = &p->src->listing;
	Manifest *m = xcalloc(1, sizeof *m);
	syncbit__manifest__init(m);
	m->format = MANIFEST_FORMAT;
	m->source = p->src->uri.canonical;
	m->block_size = p->o->block_size;
	m->source_version = l->version ? l->version : (char *)"";
	m->n_files = l->nfiles;
	m->files = xcalloc(l->nfiles + 1, sizeof *m->files);
	for (size_t i = 0; i < l->nfiles; i++) {
		const struct source_file *f = &l->files[i];
		FileEntry *e = xcalloc(1, sizeof *e);
		syncbit__file_entry__init(e);
		e->path = f->path;
		e->type = (Syncbit__FileType)f->type;
		e->mode = f->mode;
		e->mtime_ns = f->mtime_ns;
		e->source_digest = f->digest ? f->digest : (char *)"";
		if (f->type == SRC_SYMLINK)
			e->link_target = f->link_target;
		if (f->type == SRC_REGULAR) {
			struct pfile *pf = &p->files[f->hardlink_to ? f->hardlink_to - 1 : i];
			e->size = f->size;
			e->hardlink_to = f->hardlink_to;
			if (f->has_content_sha256) {
				e->content_sha256.data = (uint8_t *)f->content_sha256;
				e->content_sha256.len = HASH_LEN;
			}
			e->block_hashes.data = pf->hashes;
			e->block_hashes.len = pf->nblocks * HASH_LEN;
		}
		m->files[i] = e;
	}
	int rc = manifest_validate(m);
	if (rc == 0)
		manifest_encode(m, enc, &p->r->manifest_id);
	*out = m;
	return rc;
}

static void free_built_manifest(Manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_files; i++)
		free(m->files[i]);
	free(m->files);
	free(m);
}

static void complete(struct pull *p)
{
	struct buf enc = BUF_INIT;
	Manifest *m = NULL;
	int rc = build_manifest(p, &enc, &m);
	if (rc < 0) {
		set_error(p, rc, "%s: listing does not form a valid manifest: %s", p->src->uri.raw,
			  sb_strerror(rc));
		goto out;
	}
	rc = cache_dataset_set(p->c, p->r->name, p->src->uri.canonical,
			       p->o->target ? p->o->target : "", &p->r->manifest_id, enc.ptr,
			       enc.len);
	if (rc < 0) {
		set_error(p, rc, "%s: cannot record dataset: %s", cache_dir(p->c), sb_strerror(rc));
		goto out;
	}
	if (p->o->target) {
		struct publish_stats st;
		char *detail = NULL;
		if (p->o->layout) {
			rc = layout_publish(p->c, m, p->o->layout, p->o->target, NULL, &detail);
			st.linked = p->o->layout->linked;
			st.copied = p->o->layout->copied;
			st.unchanged = p->o->layout->unchanged;
		} else {
			rc = publish_tree(p->c, m, p->o->target, &st, NULL, &detail);
		}
		if (rc < 0) {
			set_error(p, rc, "%s", detail ? detail : sb_strerror(rc));
			free(detail);
			goto out;
		}
		p->r->linked = st.linked;
		p->r->copied = st.copied;
		p->r->unchanged = st.unchanged;
	}
	struct cache_stats cs;
	if (cache_stats(p->c, &cs) == 0 && cs.capacity && cs.used > cs.capacity) {
		uint64_t n, b;
		int erc = cache_evict(p->c, cs.capacity, &n, &b); /* a failure only warns */
		if (erc == 0 && n)
			log_info("evicted %llu %s (%llu bytes) to stay under the cache size",
				 (unsigned long long)n, progress_noun(n, "object", "objects"),
				 (unsigned long long)b);
		else if (erc < 0)
			log_warn("eviction failed: %s", sb_strerror(erc));
	}
out:
	free_built_manifest(m);
	buf_close(&enc);
}

/* The disk is full: the partials of files not complete only hold space
 * that the index needs to record the complete ones (and the next attempt
 * needs), so they go first. Kept, they made that record fail too, and a
 * file already sealed into an object was left out of the index: read from
 * the source again by the next pull instead of reused. Nothing runs. */
static void free_space(struct pull *p)
{
	for (size_t i = 0; i < p->nfiles; i++) {
		struct pfile *pf = &p->files[i];
		if (pf->part && !pf->sealed) {
			cache_partial_discard(pf->part);
			pf->part = NULL;
		}
	}
}

static void maybe_done(struct pull *p)
{
	if (p->finished || !p->listed || p->inflight || p->syncs)
		return;
	if (sb_no_space(p->rc))
		free_space(p);
	if (p->nready) {
		flush_ready(p); /* maybe_done runs again when it is through */
		return;
	}
	if (p->rc == 0) {
		for (size_t i = 0; i < p->nfiles; i++) {
			struct pfile *pf = &p->files[i];
			if (!pf->done && !pf->reused && !sfile(p, pf)->hardlink_to &&
			    sfile(p, pf)->type == SRC_REGULAR) {
				if (!stopping(p))
					return;
				set_error(p, SB_ECANCELED,
					  "%s: stopped before every file was fetched; the target "
					  "keeps its previous version",
					  p->src->uri.raw);
				break;
			}
		}
		if (p->rc == 0)
			complete(p);
	}
	p->finished = 1;
	uv_stop(&p->loop);
}

static int check_listing(struct pull *p)
{
	struct source_listing *l = &p->src->listing;
	for (size_t i = 0; i < l->nfiles; i++) {
		const struct source_file *f = &l->files[i];
		if (path_check_relative(f->path) < 0) {
			set_error(p, SB_ECONFINE, "%s: entry '%s' escapes the dataset directory",
				  p->src->uri.raw, f->path);
			return SB_ECONFINE;
		}
		if (f->type == SRC_SYMLINK && path_check_symlink(f->path, f->link_target) < 0) {
			set_error(p, SB_ECONFINE,
				  "%s: symlink %s -> %s escapes the dataset directory",
				  p->src->uri.raw, f->path, f->link_target);
			return SB_ECONFINE;
		}
	}
	return 0;
}

static void listed(struct source *src, int status, void *arg)
{
	struct pull *p = arg;
	p->listed = 1;
	if (status < 0) {
		if (src->error_detail)
			set_error(p, status, "%s", src->error_detail);
		else
			set_error(p, status, "%s: %s", src->uri.raw, sb_strerror(status));
		maybe_done(p);
		return;
	}
	if (check_listing(p) < 0) {
		maybe_done(p);
		return;
	}
	if (stopping(p)) {
		set_error(p, SB_ECANCELED, "%s: stopped before any file was fetched", src->uri.raw);
		maybe_done(p);
		return;
	}
	struct source_listing *l = &src->listing;
	uint64_t to_fetch = 0, files_to_fetch = 0;
	p->nfiles = l->nfiles;
	p->files = xcalloc(l->nfiles + 1, sizeof *p->files);
	p->ready = xcalloc(l->nfiles + 1, sizeof *p->ready);
	p->flushing = xcalloc(l->nfiles + 1, sizeof *p->flushing);
	for (size_t i = 0; i < l->nfiles; i++) {
		const struct source_file *f = &l->files[i];
		struct pfile *pf = &p->files[i];
		pf->p = p;
		pf->index = i;
		if (f->type != SRC_REGULAR || f->hardlink_to) {
			pf->done = 1;
			if (f->type == SRC_REGULAR) { /* a hardlink: no data */
				p->r->files++;
				p->r->bytes += f->size;
				p->r->bytes_reused += f->size;
			}
			continue;
		}
		p->r->files++;
		p->r->bytes += f->size;
		pf->nblocks = manifest_nblocks(f->size, p->o->block_size);
		pf->hashes = xcalloc(pf->nblocks + 1, HASH_LEN);
		const FileEntry *e = prev_entry(p, f->path);
		if (e && e->type == SYNCBIT__FILE_TYPE__FILE_REGULAR && e->size == f->size &&
		    f->digest && e->source_digest && !strcmp(e->source_digest, f->digest) &&
		    p->prev->block_size == p->o->block_size) {
			struct hash_id id;
			manifest_file_object_id(e->size, p->prev->block_size, e->block_hashes.data,
						e->block_hashes.len / HASH_LEN, &id);
			if (cache_object_check(p->c, &id) == 1) {
				if (e->block_hashes.len) /* NULL for empty files */
					memcpy(pf->hashes, e->block_hashes.data,
					       e->block_hashes.len);
				pf->reused = 1;
				pf->done = 1;
				p->r->bytes_reused += f->size;
				continue;
			}
		}
		to_fetch += f->size;
		files_to_fetch++;
	}
	progress_set_total(&p->prog, to_fetch);
	progress_set_files(&p->prog, files_to_fetch);
	pump(p);
	maybe_done(p);
}

static void load_previous(struct pull *p)
{
	struct cache_dataset d;
	if (cache_dataset_get(p->c, p->r->name, &d) != 1)
		return;
	uint8_t *data;
	size_t len;
	if (cache_manifest_get(p->c, &d.manifest_id, &data, &len) == 1) {
		if (manifest_decode(data, len, &p->prev) < 0)
			p->prev = NULL;
		free(data);
	}
	cache_dataset_close(&d);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int pull_run(struct cache *c, const struct pull_options *o, struct pull_result *r)
{
	struct pull p = {.c = c, .o = o, .r = r};
	struct source_uri uri;
	int rc;
	memset(r, 0, sizeof *r);
	p.start_ns = progress_now_ns();
	if ((rc = uri_parse(o->source, &uri)) < 0) {
		r->error = xasprintf("%s: %s", o->source, sb_strerror(rc));
		return rc;
	}
	r->source = xstrdup(uri.canonical);
	r->name = o->name     ? xstrdup(o->name)
		  : o->target ? xasprintf("pull:%s", o->target)
			      : xasprintf("pull:%s", uri.canonical);
	uv_loop_init(&p.loop);
	struct source_options so = o->src;
	so.block_size = o->block_size; /* the listing's blocks are counted at it */
	rc = source_new(&p.loop, &uri, &so, &p.src);
	uri_close(&uri);
	if (rc < 0) {
		r->error = xasprintf("%s: %s", o->source, sb_strerror(rc));
		uv_loop_close(&p.loop);
		return rc;
	}
	load_previous(&p);
	p.nslots = o->src.jobs < 1 ? 1 : o->src.jobs > JOBS_MAX ? JOBS_MAX : o->src.jobs;
	p.slots = xcalloc((size_t)p.nslots, sizeof *p.slots);
	for (int i = 0; i < p.nslots; i++) {
		p.slots[i].p = &p;
		p.slots[i].buf = xmalloc(o->block_size);
	}
	progress_init(&p.prog, "pull", 0, o->progress);
	rc = source_list(p.src, listed, &p);
	if (rc < 0 && p.src->error_detail)
		set_error(&p, rc, "%s", p.src->error_detail);
	else if (rc < 0)
		set_error(&p, rc, "%s: %s", o->source, sb_strerror(rc));
	else
		uv_run(&p.loop, UV_RUN_DEFAULT);
	if (!p.finished && p.rc == 0)
		set_error(&p, SB_ECANCELED, "%s: transfer ended before every file was stored",
			  o->source);
	progress_close(&p.prog);
	r->bytes_read = p.src->bytes_read;
	source_free(p.src);
	uv_walk(&p.loop, close_walk, NULL);
	uv_run(&p.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&p.loop) != 0)
		log_warn("pull: event loop still had handles at exit");
	for (size_t i = 0; i < p.nfiles; i++) {
		struct pfile *pf = &p.files[i];
		/* Partials stay for a resume, except when the disk is full:
		 * then they only hold space that the next attempt needs; and
		 * when the source found a download corrupt, whose blocks must
		 * not be resumed into a file nobody can check any more. */
		if (sb_no_space(p.rc) || p.rc == SB_ECORRUPT)
			cache_partial_discard(pf->part);
		else
			cache_partial_close(pf->part);
		free(pf->hashes);
		buf_close(&pf->pend_idx);
		buf_close(&pf->pend_hash);
		buf_close(&pf->sync_idx);
		buf_close(&pf->sync_hash);
	}
	free(p.files);
	free(p.ready);
	free(p.flushing);
	for (int i = 0; i < p.nslots; i++)
		free(p.slots[i].buf);
	free(p.slots);
	manifest_free(p.prev);
	r->seconds = (double)(progress_now_ns() - p.start_ns) / 1e9;
	return p.rc;
}

void pull_result_close(struct pull_result *r)
{
	free(r->source);
	free(r->name);
	free(r->error);
	memset(r, 0, sizeof *r);
}
