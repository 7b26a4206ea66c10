/* list() of the s3:// source (s3.c says what it presents): ListObjectsV2
 * pages under the prefix (or the one object the prefix names) turned into
 * confined relative paths, then HeadObject for the SHA-256 of the objects
 * listed with a full-object SHA-256 checksum; the listing ends when the
 * last of those answered, or with the first failure. */
#include "common/source/s3_int.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/path.h"

const char *source_s3_file_etag(const struct source_file *f)
{
	return f->digest && !strncmp(f->digest, "etag:", 5) ? f->digest + 5 : NULL;
}

static int add_file(struct s3_req *r, const char *path, const struct s3_object *o)
{
	struct source_listing *l = &r->s3->building;
	uint64_t max = r->s3->src->opt.limits.files;
	if (l->nfiles >= max) {
		http_req_fail(&r->base, SB_ETOOBIG,
			      "more objects than the limit of %llu per dataset (--max-files)",
			      (unsigned long long)max);
		return -1;
	}
	if (l->nfiles == r->s3->cap) {
		r->s3->cap = r->s3->cap ? r->s3->cap * 2 : 256;
		l->files = xrealloc(l->files, r->s3->cap * sizeof *l->files);
	}
	struct source_file *f = &l->files[l->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	f->type = SRC_REGULAR;
	f->size = o->size;
	f->mode = 0644;
	f->mtime_ns = o->mtime_ns;
	f->digest = o->etag ? xasprintf("etag:%s", o->etag)
			    : xasprintf("s3:%" PRId64 ":%" PRIu64, o->mtime_ns, o->size);
	if (o->sha256 && o->composite) {
		log_debug("%s: %s has a composite SHA-256 checksum (of its parts): the whole "
			  "file cannot be checked against it",
			  r->s3->shown, path);
	} else if (o->sha256) {
		struct s3_source *s3 = r->s3;
		s3->sum_paths = xrealloc(s3->sum_paths, (s3->nsum + 1) * sizeof *s3->sum_paths);
		s3->sum_paths[s3->nsum++] = xstrdup(path);
	}
	return 0;
}

/* Keys of one page into the listing. 0, or -1 after failing r. */
static int take_page(struct s3_req *r, const struct s3_list_page *page)
{
	struct s3_source *s3 = r->s3;
	size_t plen = strlen(s3->dir_prefix);
	for (size_t i = 0; i < page->n; i++) {
		const struct s3_object *o = &page->objects[i];
		if (r->phase == PHASE_SINGLE) {
			if (strcmp(o->key, s3->src->uri.prefix) != 0)
				continue;
			const char *base = strrchr(o->key, '/');
			base = base ? base + 1 : o->key;
			if (path_check_relative(base) < 0) {
				http_req_fail(&r->base, SB_ECONFINE,
					      "key \"%s\" cannot be used as a file name", o->key);
				return -1;
			}
			s3->single_key = xstrdup(o->key);
			return add_file(r, base, o);
		}
		if (strncmp(o->key, s3->dir_prefix, plen) != 0) {
			http_req_fail(&r->base, SB_ECONFINE,
				      "key \"%s\" lies outside the prefix \"%s\"", o->key,
				      s3->dir_prefix);
			return -1;
		}
		const char *rel = o->key + plen;
		size_t n = strlen(rel);
		if (n == 0 || rel[n - 1] == '/')
			continue; /* a directory marker ("folder/") */
		if (path_check_relative(rel) < 0) {
			http_req_fail(&r->base, SB_ECONFINE,
				      "key \"%s\" escapes the dataset directory", o->key);
			return -1;
		}
		if (add_file(r, rel, o) < 0)
			return -1;
	}
	return 0;
}

/* HeadObject with the checksum mode on. */

void source_s3_sums_clear(struct s3_source *s3)
{
	for (size_t i = 0; i < s3->nsum; i++)
		free(s3->sum_paths[i]);
	free(s3->sum_paths);
	free(s3->sum_detail);
	s3->sum_paths = NULL;
	s3->sum_detail = NULL;
	s3->nsum = s3->sum_next = s3->sum_busy = 0;
	s3->sum_rc = 0;
}

static int path_cmp(const void *key, const void *file)
{
	return strcmp(key, ((const struct source_file *)file)->path);
}

/* Keep max_parallel HeadObject requests going; end the listing once all
 * are back. */
static void sum_pump(struct s3_source *s3)
{
	struct source_listing *l = &s3->src->listing;
	while (s3->sum_rc == 0 && s3->sum_next < s3->nsum &&
	       s3->sum_busy < (size_t)s3->src->max_parallel) {
		const char *path = s3->sum_paths[s3->sum_next++];
		const struct source_file *f =
		    bsearch(path, l->files, l->nfiles, sizeof *l->files, path_cmp);
		if (!f)
			continue;
		struct s3_req *h = source_s3_req_new(s3, REQ_SUM);
		struct buf key = BUF_INIT;
		h->index = (size_t)(f - l->files);
		h->what = xasprintf("HeadObject s3://%s/%s", s3->src->uri.bucket,
				    source_s3_object_key(s3, h->index, &key));
		buf_close(&key);
		s3->sum_busy++;
		http_req_start(&h->base);
	}
	if (s3->sum_busy || !s3->sum_list)
		return;
	struct s3_req *r = s3->sum_list;
	s3->sum_list = NULL;
	if (s3->sum_rc < 0) {
		free(r->what); /* the HeadObject's line says what failed */
		r->what = NULL;
		http_req_fail(&r->base, s3->sum_rc, "%s", s3->sum_detail ? s3->sum_detail : "");
	} else {
		s3->listed = 1;
		http_req_finish(&r->base, 0);
	}
	source_s3_sums_clear(s3);
}

/* A HeadObject answer: the object as listed, and its SHA-256 unless the
 * checksum is of its parts. */
void source_s3_sum_done(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	struct source_file *f = &s3->src->listing.files[r->index];
	const char *want = source_s3_file_etag(f);
	char got[HTTP_ETAG_MAX];
	size_t n = 0;
	http_etag_opaque(r->base.resp.etag, got, sizeof got);
	if (want && r->base.resp.etag[0] && strcmp(want, got) != 0) {
		http_req_fail(&r->base, SB_ECHANGED,
			      "the object changed after it was listed (ETag %s, now %s)", want,
			      got);
		return;
	}
	if (!strcmp(r->sum_type, "COMPOSITE") || strchr(r->sum, '-')) {
		log_debug("%s: %s has a composite SHA-256 checksum (of its parts): the whole "
			  "file cannot be checked against it",
			  s3->shown, f->path);
	} else if (!r->sum[0]) {
		log_debug("%s: %s: HeadObject names no SHA-256 checksum", s3->shown, f->path);
	} else if (sodium_base642bin(f->content_sha256, sizeof f->content_sha256, r->sum,
				     strlen(r->sum), NULL, &n, NULL,
				     sodium_base64_VARIANT_ORIGINAL) != 0 ||
		   n != sizeof f->content_sha256) {
		http_req_fail(&r->base, SB_EPROTO,
			      "x-amz-checksum-sha256 \"%.60s\" is not a SHA-256", r->sum);
		return;
	} else {
		f->has_content_sha256 = 1;
	}
	http_req_finish(&r->base, 0);
}

void source_s3_sum_delivered(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	if (r->base.status < 0 && s3->sum_rc == 0) {
		s3->sum_rc = r->base.status;
		s3->sum_detail = r->base.detail ? xstrdup(r->base.detail) : NULL;
	}
	source_s3_req_free(r);
	s3->sum_busy--;
	sum_pump(s3);
}

static void list_complete(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	struct source *src = s3->src;
	source_listing_close(&src->listing);
	src->listing = s3->building;
	memset(&s3->building, 0, sizeof s3->building);
	s3->cap = 0;
	source_listing_sort(&src->listing);
	for (size_t i = 1; i < src->listing.nfiles; i++)
		if (!strcmp(src->listing.files[i - 1].path, src->listing.files[i].path)) {
			http_req_fail(&r->base, SB_EPROTO, "key %s%s listed twice", s3->dir_prefix,
				      src->listing.files[i].path);
			return;
		}
	if (s3->nsum) {
		s3->sum_list = r;
		sum_pump(s3);
		return;
	}
	s3->listed = 1;
	http_req_finish(&r->base, 0);
}

void source_s3_list_done(struct s3_req *r)
{
	struct s3_source *s3 = r->s3;
	struct s3_list_page page;
	char err[S3_ERR_MAX];
	if (s3_list_parse((const char *)r->body.ptr, r->body.len, &page, err) < 0) {
		http_req_fail(&r->base, SB_EPROTO, "malformed ListObjectsV2 answer: %s", err);
		return;
	}
	size_t before = s3->building.nfiles;
	int rc = take_page(r, &page);
	int more = page.truncated && !s3->single_key && r->phase == PHASE_DIR;
	r->idle = s3->building.nfiles > before ? 0 : r->idle + 1;
	if (rc == 0 && more && r->token && !strcmp(r->token, page.next_token)) {
		http_req_fail(&r->base, SB_EPROTO,
			      "ListObjectsV2 returned the same continuation token twice");
		rc = -1;
	} else if (rc == 0 && more && r->idle >= LIST_IDLE_PAGES_MAX) {
		/* S3 may return short pages, even empty ones, but a server
		 * that never moves on would be listed forever. */
		http_req_fail(&r->base, SB_EPROTO,
			      "ListObjectsV2 returned %u truncated pages in a row without an "
			      "object",
			      r->idle);
		rc = -1;
	}
	if (rc < 0) {
		s3_list_page_close(&page);
		return;
	}
	if (more) {
		free(r->token);
		r->token = page.next_token;
		page.next_token = NULL;
	}
	s3_list_page_close(&page);
	r->base.failures = 0;
	if (more) {
		http_req_start(&r->base);
	} else if (s3->building.nfiles > 0) {
		list_complete(r);
	} else if (r->phase == PHASE_DIR && strcmp(s3->dir_prefix, s3->src->uri.prefix) != 0) {
		r->phase = PHASE_SINGLE;
		free(r->token);
		r->token = NULL;
		http_req_start(&r->base);
	} else {
		http_req_fail(&r->base, SB_ENOTFOUND, "no objects under %s", s3->shown);
	}
}

size_t source_s3_list_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb;
	r->base.last_io = uv_now(r->s3->http.loop);
	long st = r->base.resp.status;
	if (st < 200 || st >= 300)
		return source_s3_keep_error_body(r, data, n);
	if (r->body.len + n > LIST_BODY_MAX) {
		http_req_refuse(&r->base, SB_ETOOBIG, "ListObjectsV2 answer larger than %u bytes",
				LIST_BODY_MAX);
		return 0;
	}
	buf_append(&r->body, data, n);
	return n;
}

int source_s3_list(struct source *src, source_done_cb cb, void *arg)
{
	struct s3_source *s3 = src->impl;
	if (s3->sum_list)
		return -EBUSY;
	for (struct http_req *b = s3->http.active.head; b; b = b->next)
		if (s3_req_of(b)->kind == REQ_LIST)
			return -EBUSY;
	source_listing_close(&s3->building);
	s3->cap = 0;
	free(s3->single_key);
	s3->single_key = NULL;
	s3->listed = 0;
	source_s3_sums_clear(s3);
	struct s3_req *r = source_s3_req_new(s3, REQ_LIST);
	r->cb = cb;
	r->arg = arg;
	r->phase = PHASE_DIR;
	if (s3->config_error) {
		http_req_fail(&r->base, SB_ECONFIG, "%s", s3->config_error);
		return 0;
	}
	r->what = xasprintf("ListObjectsV2 %s://%s%s", s3->cfg.scheme, s3->cfg.host, s3->cfg.base);
	http_req_start(&r->base);
	return 0;
}
