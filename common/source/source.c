#include "common/source/source.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/source/filter.h"
#include "common/log.h"
#include "common/source/http_req.h"
#include "common/manifest.h"
#include "common/metrics.h"
#include "common/progress.h"
#include "common/source/hub.h"

#define SIZE_TEXT_MAX 32 /* "1023.9 EiB" and room */

void source_options_default(struct source_options *opt)
{
	memset(opt, 0, sizeof *opt);
	opt->jobs = 8;
	opt->retries = 5;
	opt->stall_seconds = 30;
	opt->connect_seconds = 15;
	opt->block_size = 4u << 20;
	opt->unsized_seconds = SOURCE_MAX_UNSIZED_S;
	opt->limits = (struct source_limits){SOURCE_MAX_FILE_BYTES, SOURCE_MAX_DATASET_BYTES,
					     SOURCE_MAX_FILES};
}

/* A limit left at 0 is the default; none passes what a manifest holds. */
static void limits_fill(struct source_limits *l)
{
	if (!l->file_bytes)
		l->file_bytes = SOURCE_MAX_FILE_BYTES;
	if (!l->dataset_bytes)
		l->dataset_bytes = SOURCE_MAX_DATASET_BYTES;
	if (!l->files)
		l->files = SOURCE_MAX_FILES;
	else if (l->files > MANIFEST_MAX_FILES)
		l->files = MANIFEST_MAX_FILES;
}

static int uri_copy(const struct source_uri *in, struct source_uri *out)
{
	/* Re-parse the raw form: cheap, and gives an independent copy. */
	return uri_parse(in->raw, out);
}

int source_new(uv_loop_t *loop, const struct source_uri *uri, const struct source_options *opt,
	       struct source **out)
{
	struct source *src = xcalloc(1, sizeof *src);
	int rc;
	src->loop = loop;
	src->opt = *opt;
	src->max_parallel = opt->jobs > 0 ? opt->jobs : 1;
	limits_fill(&src->opt.limits);
	if ((rc = uri_copy(uri, &src->uri)) < 0) {
		free(src);
		return rc;
	}
	switch (uri->kind) {
	case URI_FILE:
		rc = source_file_new(src);
		break;
	case URI_HTTP:
		rc = source_http_new(src);
		break;
	case URI_OCI:
		rc = source_oci_new(src);
		break;
	case URI_HF:
		rc = source_hf_new(src);
		break;
	case URI_MS:
		rc = source_ms_new(src);
		break;
	case URI_S3:
		rc = source_s3_new(src);
		break;
	default:
		rc = SB_ESCHEME;
		break;
	}
	if (rc < 0) {
		uri_close(&src->uri);
		free(src->error_detail);
		free(src);
		return rc;
	}
	*out = src;
	return 0;
}

void source_free(struct source *src)
{
	if (!src)
		return;
	if (src->ops && src->ops->free)
		src->ops->free(src);
	source_listing_close(&src->listing);
	uri_close(&src->uri);
	free(src->error_detail);
	free(src);
}

static void took(void *arg, const uint8_t *buf, size_t got)
{
	struct source *src = arg;
	if (src->read_progress)
		src->read_progress(src->read_progress_arg, buf, got);
}

void source_http_options(struct source *src, struct http_client_options *o)
{
	o->retries = src->opt.retries;
	o->connect_seconds = src->opt.connect_seconds;
	o->stall_seconds = src->opt.stall_seconds;
	o->bytes_read = &src->bytes_read;
	o->counters = source_counters(src->uri.kind);
	o->took = took;
	o->took_arg = src;
}

#define SOURCE_KINDS (URI_OCI + 1)

static struct http_counters kind_counters[SOURCE_KINDS];

struct http_counters *source_counters(enum uri_kind kind)
{
	return &kind_counters[(unsigned)kind < SOURCE_KINDS ? kind : URI_FILE];
}

void source_metrics(struct buf *out)
{
	metrics_family(out, "syncbit_source_request_errors_total", METRICS_COUNTER,
		       "Requests to sources (origins) that failed for good, after their retries, "
		       "by kind of source.");
	for (int k = 0; k < SOURCE_KINDS; k++)
		metrics_sample(out, "syncbit_source_request_errors_total",
			       METRICS_LABELS("kind", uri_kind_name((enum uri_kind)k)),
			       __atomic_load_n(&kind_counters[k].errors, __ATOMIC_RELAXED));
	metrics_family(
	    out, "syncbit_source_request_retries_total", METRICS_COUNTER,
	    "Request attempts to sources made again after a failure, by kind of source.");
	for (int k = 0; k < SOURCE_KINDS; k++)
		metrics_sample(out, "syncbit_source_request_retries_total",
			       METRICS_LABELS("kind", uri_kind_name((enum uri_kind)k)),
			       __atomic_load_n(&kind_counters[k].retries, __ATOMIC_RELAXED));
}

void source_req_deliver(struct source *src, struct http_req *r, source_done_cb cb, void *arg)
{
	int status = r->status;
	if (status < 0 && r->detail)
		source_set_error(src, "%s", r->detail);
	r->c->ops->free(r);
	cb(src, status, arg);
}

void source_set_error(struct source *src, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	/* It quotes what servers said (an error page's message, a path they
	 * listed): their line breaks must not break the user's one line, and
	 * are escaped as every log and error line escapes them. */
	free(src->error_detail);
	src->error_detail = xmalloc(4 * b.len + 1);
	log_escape(src->error_detail, 4 * b.len + 1, b.len ? (const char *)b.ptr : "", b.len);
	buf_close(&b);
}

void source_listing_close(struct source_listing *l)
{
	for (size_t i = 0; i < l->nfiles; i++) {
		free(l->files[i].path);
		free(l->files[i].link_target);
		free(l->files[i].digest);
	}
	free(l->files);
	free(l->version);
	memset(l, 0, sizeof *l);
}

struct sort_item {
	struct source_file f;
	size_t old_index;
};

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const struct sort_item *)a)->f.path, ((const struct sort_item *)b)->f.path);
}

void source_listing_sort(struct source_listing *l)
{
	size_t n = l->nfiles;
	if (n < 2)
		return;
	struct sort_item *items = xcalloc(n, sizeof *items);
	size_t *new_index = xcalloc(n, sizeof *new_index);
	for (size_t i = 0; i < n; i++) {
		items[i].f = l->files[i];
		items[i].old_index = i;
	}
	qsort(items, n, sizeof *items, cmp_item);
	for (size_t i = 0; i < n; i++)
		new_index[items[i].old_index] = i;
	/* Re-point hardlinks. Producers point every member of a group at the
	 * group's first member; after sorting, the member that comes first in
	 * the new order becomes the one the others point at. */
	size_t *primary = xcalloc(n, sizeof *primary); /* by old group root */
	for (size_t i = 0; i < n; i++)
		primary[i] = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		struct source_file *f = &items[i].f;
		size_t root = f->hardlink_to ? f->hardlink_to - 1 : items[i].old_index;
		if (primary[root] == SIZE_MAX || i < primary[root])
			primary[root] = i;
	}
	for (size_t i = 0; i < n; i++) {
		struct source_file *f = &items[i].f;
		size_t root = f->hardlink_to ? f->hardlink_to - 1 : items[i].old_index;
		size_t p = primary[root];
		f->hardlink_to = p == i ? 0 : (uint32_t)(p + 1);
	}
	free(primary);
	for (size_t i = 0; i < n; i++)
		l->files[i] = items[i].f;
	free(items);
	free(new_index);
}

size_t source_listing_filter(struct source_listing *l, const struct filter *f)
{
	size_t n = l->nfiles, j = 0;
	if (!f || !f->n || !n)
		return 0;
	size_t *map = xcalloc(n, sizeof *map), *heir = xcalloc(n, sizeof *heir);
	for (size_t i = 0; i < n; i++)
		heir[i] = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		struct source_file *x = &l->files[i];
		if (filter_excludes(f, x->path, x->type == SRC_DIRECTORY)) {
			free(x->path);
			free(x->link_target);
			free(x->digest);
			map[i] = SIZE_MAX;
			continue;
		}
		/* A group's root comes before its members. */
		size_t root = x->hardlink_to ? x->hardlink_to - 1 : i;
		if (root == i || map[root] != SIZE_MAX) {
			x->hardlink_to = root == i ? 0 : (uint32_t)(map[root] + 1);
		} else if (heir[root] == SIZE_MAX) {
			heir[root] = j;
			x->hardlink_to = 0;
		} else {
			x->hardlink_to = (uint32_t)(heir[root] + 1);
		}
		map[i] = j;
		l->files[j++] = *x;
	}
	free(map);
	free(heir);
	l->nfiles = j;
	return n - j;
}

/* ---- limits ---------------------------------------------------------------- */

/* "shown: what", or "what" when shown is NULL. */
static char *say(const char *shown, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *say(const char *shown, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	if (shown)
		buf_printf(&b, "%s: ", shown);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return buf_steal(&b);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

/* Blocks of the regular files that carry data (hardlinks share theirs). */
static uint64_t listing_blocks(const struct source_listing *l, uint64_t block_size)
{
	uint64_t n = 0;
	for (size_t i = 0; i < l->nfiles; i++) {
		const struct source_file *f = &l->files[i];
		if (f->type == SRC_REGULAR && !f->hardlink_to)
			n = add_sat(n, f->size / block_size + (f->size % block_size != 0));
	}
	return n;
}

/* The block size that brings the listing under MANIFEST_MAX_BLOCKS, or 0
 * when none does. */
static uint64_t block_size_needed(const struct source_listing *l, uint64_t block_size)
{
	for (uint64_t bs = block_size * 2; bs <= BLOCK_SIZE_MAX; bs *= 2)
		if (listing_blocks(l, bs) <= MANIFEST_MAX_BLOCKS)
			return bs;
	return 0;
}

/* A block size as --block-size takes it ("16MiB"). */
static const char *fmt_block_size(uint64_t bs, char *out, size_t len)
{
	if (bs >= (1u << 20))
		snprintf(out, len, "%lluMiB", (unsigned long long)(bs >> 20));
	else
		snprintf(out, len, "%lluKiB", (unsigned long long)(bs >> 10));
	return out;
}

static char *too_many_blocks(const struct source_listing *l, uint64_t block_size, uint64_t blocks,
			     const char *shown)
{
	char bs[SIZE_TEXT_MAX], need[SIZE_TEXT_MAX];
	uint64_t fit = block_size_needed(l, block_size);
	fmt_block_size(block_size, bs, sizeof bs);
	if (!fit)
		return say(shown,
			   "%llu blocks of %s, over the limit of %u blocks per dataset at any "
			   "block size",
			   (unsigned long long)blocks, bs, MANIFEST_MAX_BLOCKS);
	fmt_block_size(fit, need, sizeof need);
	return say(shown,
		   "%llu blocks of %s, over the limit of %u blocks per dataset (--block-size %s "
		   "or more fits)",
		   (unsigned long long)blocks, bs, MANIFEST_MAX_BLOCKS, need);
}

int source_listing_check(const struct source_listing *l, const struct source_limits *lim,
			 uint64_t block_size, const char *shown, char **detail)
{
	char got[SIZE_TEXT_MAX], max[SIZE_TEXT_MAX];
	uint64_t max_files = lim ? lim->files : MANIFEST_MAX_FILES;
	uint64_t total = 0, nregular = 0;
	*detail = NULL;
	if (l->nfiles > max_files) {
		*detail = say(shown, "%zu entries, over the limit of %llu per dataset%s", l->nfiles,
			      (unsigned long long)max_files, lim ? " (--max-files)" : "");
		return SB_ETOOBIG;
	}
	for (size_t i = 0; i < l->nfiles; i++) {
		const struct source_file *f = &l->files[i];
		if (f->type != SRC_REGULAR)
			continue;
		if (lim && f->size > lim->file_bytes) {
			*detail = say(shown,
				      "%s claims %llu bytes (%s), over the limit of %s per file "
				      "(--max-file-size)",
				      f->path, (unsigned long long)f->size,
				      progress_fmt_bytes(f->size, got, sizeof got),
				      progress_fmt_bytes(lim->file_bytes, max, sizeof max));
			return SB_ETOOBIG;
		}
		if (!f->hardlink_to) {
			total = add_sat(total, f->size);
			nregular++;
		}
	}
	if (lim && total > lim->dataset_bytes) {
		*detail =
		    say(shown,
			"%llu %s %llu bytes (%s), over the limit of %s per dataset "
			"(--max-dataset-size)",
			(unsigned long long)nregular, nregular == 1 ? "file claims" : "files claim",
			(unsigned long long)total, progress_fmt_bytes(total, got, sizeof got),
			progress_fmt_bytes(lim->dataset_bytes, max, sizeof max));
		return SB_ETOOBIG;
	}
	if (manifest_check_block_size(block_size) < 0) {
		*detail = say(shown, "block size %llu is not a power of two from %u to %u",
			      (unsigned long long)block_size, BLOCK_SIZE_MIN, BLOCK_SIZE_MAX);
		return SB_EPROTO;
	}
	uint64_t blocks = listing_blocks(l, block_size);
	if (blocks > MANIFEST_MAX_BLOCKS) {
		*detail = too_many_blocks(l, block_size, blocks, shown);
		return SB_ETOOBIG;
	}
	return 0;
}

static void listed_checked(struct source *src, int status, void *arg)
{
	source_done_cb cb = src->list_cb;
	src->list_cb = NULL;
	/* The HTTP kinds count their failed requests themselves. */
	if (status < 0 && status != SB_ECANCELED && src->uri.kind == URI_FILE)
		__atomic_add_fetch(&source_counters(URI_FILE)->errors, 1, __ATOMIC_RELAXED);
	if (status == 0) {
		size_t dropped = source_listing_filter(&src->listing, src->opt.filter);
		if (dropped)
			log_debug("%s: --include/--exclude left out %zu of %zu entries",
				  src->uri.kind == URI_HTTP ? src->uri.canonical : src->uri.raw,
				  dropped, dropped + src->listing.nfiles);
		/* An http:// URL may carry credentials or a signed query. */
		char *shown =
		    src->uri.kind == URI_HTTP ? http_url_for_messages(src->uri.url) : NULL;
		if (!shown)
			shown =
			    xstrdup(src->uri.kind == URI_HTTP ? src->uri.canonical : src->uri.raw);
		char *detail = NULL;
		status = source_listing_check(&src->listing, &src->opt.limits, src->opt.block_size,
					      shown, &detail);
		if (detail) {
			free(src->error_detail);
			src->error_detail = detail;
		}
		free(shown);
	}
	cb(src, status, arg);
}

int source_list(struct source *src, source_done_cb cb, void *arg)
{
	src->list_cb = cb;
	int rc = src->ops->list(src, listed_checked, arg);
	if (rc < 0)
		src->list_cb = NULL;
	return rc;
}
