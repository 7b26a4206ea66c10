#include "common/source.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/http_req.h"
#include "common/source_hub.h"

void source_options_default(struct source_options *opt)
{
	memset(opt, 0, sizeof *opt);
	opt->jobs = 8;
	opt->retries = 5;
	opt->stall_seconds = 30;
	opt->connect_seconds = 15;
	opt->block_size = 4u << 20;
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

void source_http_options(struct source *src, struct http_client_options *o)
{
	o->retries = src->opt.retries;
	o->connect_seconds = src->opt.connect_seconds;
	o->stall_seconds = src->opt.stall_seconds;
	o->bytes_read = &src->bytes_read;
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
	free(src->error_detail);
	src->error_detail = buf_steal(&b);
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
