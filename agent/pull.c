/* A standalone pull is a client of the fetch engine (agent/fetch.c): it
 * lists the source, makes the listing's manifest with every hash unknown,
 * carries over the hashes of files unchanged since the dataset's previous
 * version, and fetches it with the whole source as its origin plan and no
 * peers, syncing in batches. The engine reuses, reads, verifies, stores
 * and resumes; the pull records the version and publishes it into its
 * target (agent/publish.c or a layout). */
#include "agent/pull.h"

#include <stdlib.h>
#include <string.h>

#include "agent/fetch.h"
#include "agent/publish.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/progress.h"
#include "common/uri.h"

struct pull {
	uv_loop_t loop;
	struct cache *c;
	struct source *src;
	const struct pull_options *o;
	struct pull_result *r;
	struct fetch *f;
	int rc;
	int over; /* nothing runs any more: the loop may end */
	struct progress prog;
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
}

static void end(struct pull *p)
{
	p->over = 1;
	uv_stop(&p->loop);
}

static void evict(struct pull *p)
{
	struct cache_stats cs;
	uint64_t n, b;
	if (cache_stats(p->c, &cs) < 0 || !cs.capacity || cs.used <= cs.capacity)
		return;
	int rc = cache_evict(p->c, cs.capacity, &n, &b);
	if (rc == 0 && n)
		log_info("evicted %llu %s (%llu bytes) to stay under the cache size",
			 (unsigned long long)n, progress_noun(n, "object", "objects"),
			 (unsigned long long)b);
	else if (rc < 0)
		log_warn("eviction failed: %s", sb_strerror(rc));
}

/* Every block is durable: record the version (which pins it) and publish. */
static int hook_complete(void *arg, struct fetch *f, const Manifest *m, const struct hash_id *id,
			 char **detail)
{
	struct pull *p = arg;
	struct buf enc = BUF_INIT;
	manifest_encode(m, &enc, NULL);
	p->r->manifest_id = *id;
	int rc = cache_dataset_set(p->c, p->r->name, m->source, p->o->target ? p->o->target : "",
				   id, enc.ptr, enc.len);
	buf_close(&enc);
	if (rc < 0) {
		*detail =
		    xasprintf("%s: cannot record dataset: %s", cache_dir(p->c), sb_strerror(rc));
		return rc;
	}
	if (p->o->target) {
		struct publish_stats st;
		if (p->o->layout) {
			rc = layout_publish(p->c, m, p->o->layout, p->o->target, NULL, detail);
			st.linked = p->o->layout->linked;
			st.copied = p->o->layout->copied;
			st.unchanged = p->o->layout->unchanged;
		} else {
			rc = publish_tree(p->c, m, p->o->target, &st, NULL, detail);
		}
		if (rc < 0)
			return rc;
		p->r->linked = st.linked;
		p->r->copied = st.copied;
		p->r->unchanged = st.unchanged;
	}
	evict(p);
	return 0;
}

static void hook_done(void *arg, struct fetch *f, int status)
{
	struct pull *p = arg;
	if (status < 0)
		set_error(p, status, "%s", fetch_error(f) ? fetch_error(f) : sb_strerror(status));
}

static void hook_idle(void *arg, struct fetch *f)
{
	end(arg);
}

static Manifest *load_previous(struct pull *p)
{
	struct cache_dataset d;
	Manifest *prev = NULL;
	uint8_t *data;
	size_t len;
	if (cache_dataset_get(p->c, p->r->name, &d) != 1)
		return NULL;
	if (cache_manifest_get(p->c, &d.manifest_id, &data, &len) == 1) {
		if (manifest_decode(data, len, &prev) < 0)
			prev = NULL;
		free(data);
	}
	cache_dataset_close(&d);
	return prev;
}

/* Regular files and their bytes, hardlinks included (their data is their
 * target's: reused). */
static void count_files(struct pull *p)
{
	const struct source_listing *l = &p->src->listing;
	for (size_t i = 0; i < l->nfiles; i++) {
		const struct source_file *f = &l->files[i];
		if (f->type != SRC_REGULAR)
			continue;
		p->r->files++;
		p->r->bytes += f->size;
		if (f->hardlink_to)
			p->r->bytes_reused += f->size;
	}
}

/* A file is stored: count it; with --verbose, its path and size (above
 * the bar on a terminal). */
static void hook_file_done(void *arg, struct fetch *f, size_t index)
{
	struct pull *p = arg;
	const FileEntry *e = fetch_manifest(f)->files[index];
	progress_files_done(&p->prog, 1);
	if (p->o->verbose && p->o->progress) {
		char size[32];
		progress_note(&p->prog, "  %s  %s", e->path,
			      progress_fmt_bytes(e->size, size, sizeof size));
	}
}

static void start_fetch(struct pull *p, const Manifest *m)
{
	static const struct fetch_hooks hooks0 = {.done = hook_done,
						  .complete = hook_complete,
						  .file_done = hook_file_done,
						  .idle = hook_idle};
	struct fetch_hooks hooks = hooks0;
	struct fetch_options fo = {
	    .name = p->r->name,
	    .so = &p->o->src,
	    .src = p->src,
	    .shown = p->src->uri.raw,
	    .origin_jobs = p->o->src.jobs < 1 ? 1 : p->o->src.jobs,
	    .whole_blocks = 1,
	    .sync = FETCH_SYNC_BATCHED,
	    .progress = &p->prog,
	    .quiet = 1, /* the caller reports the error */
	    .stop = p->o->stop,
	};
	hooks.arg = p;
	int rc = fetch_open(&p->loop, p->c, m, &fo, &hooks, &p->f);
	if (rc < 0) {
		set_error(p, rc, "%s: listing does not form a valid manifest: %s", p->src->uri.raw,
			  sb_strerror(rc));
		end(p);
		return;
	}
	if (fetch_status(p->f) < 0) { /* the cache could not open a partial */
		set_error(p, fetch_status(p->f), "%s", fetch_error(p->f));
		end(p);
		return;
	}
	struct fetch_stats st;
	fetch_stats(p->f, &st);
	progress_set_total(&p->prog, st.bytes - st.bytes_have);
	progress_set_files(&p->prog, fetch_files_missing(p->f));
	uint32_t first = 0, count = fetch_nblocks(p->f);
	fetch_set_origin(p->f, &first, &count, 1);
}

static void listed(struct source *src, int status, void *arg)
{
	struct pull *p = arg;
	if (status < 0) {
		if (src->error_detail)
			set_error(p, status, "%s", src->error_detail);
		else
			set_error(p, status, "%s: %s", src->uri.raw, sb_strerror(status));
		end(p);
		return;
	}
	if (p->o->stop && *p->o->stop) {
		set_error(p, SB_ECANCELED, "%s: stopped before any file was fetched", src->uri.raw);
		end(p);
		return;
	}
	Manifest *m;
	char *detail = NULL;
	/* A dataset pulled before keeps its format: its blocks keep their ids. */
	Manifest *prev = load_previous(p);
	int rc = manifest_from_listing(&src->listing, src->uri.canonical, p->o->block_size,
				       prev ? prev->format : MANIFEST_FORMAT, &m, &detail);
	if (rc < 0) {
		set_error(p, rc, "%s: %s", src->uri.raw, detail);
		free(detail);
		manifest_free(prev);
		end(p);
		return;
	}
	count_files(p);
	manifest_carry_over(m, prev);
	manifest_free(prev);
	start_fetch(p, m);
	manifest_free(m);
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
	uint64_t start_ns = progress_now_ns();
	memset(r, 0, sizeof *r);
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
	progress_init(&p.prog, "pull", 0, o->progress);
	rc = source_list(p.src, listed, &p);
	if (rc < 0 && p.src->error_detail)
		set_error(&p, rc, "%s", p.src->error_detail);
	else if (rc < 0)
		set_error(&p, rc, "%s: %s", o->source, sb_strerror(rc));
	else
		uv_run(&p.loop, UV_RUN_DEFAULT);
	if (!p.over && p.rc == 0)
		set_error(&p, SB_ECANCELED, "%s: transfer ended before every file was stored",
			  o->source);
	progress_close(&p.prog);
	if (p.f) {
		struct fetch_stats st;
		fetch_stats(p.f, &st);
		r->bytes_from_source = st.bytes_from_origin - st.bytes_origin_held;
		r->bytes_from_peers = st.bytes_from_peers;
		r->bytes_reused += st.bytes_reused + st.bytes_origin_held;
		fetch_free(p.f); /* idle: nothing of it runs; freed as its timer closes */
	}
	r->bytes_read = p.src->bytes_read;
	source_free(p.src);
	uv_walk(&p.loop, close_walk, NULL);
	uv_run(&p.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&p.loop) != 0)
		log_warn("pull: event loop still had handles at exit");
	r->seconds = (double)(progress_now_ns() - start_ns) / 1e9;
	return p.rc;
}

void pull_result_close(struct pull_result *r)
{
	free(r->source);
	free(r->name);
	free(r->error);
	memset(r, 0, sizeof *r);
}
