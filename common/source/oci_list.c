/* list() of the oci:// source (oci.c says what it presents): the tags
 * matching ?tag-regex= (paged), each reference's manifest checked against
 * its digest, an index resolved to the manifests of the platforms asked
 * for (each checked against the index's digest for it), then the layout:
 * oci-layout, index.json and blobs/sha256/ in listing order. */
#include "common/source/oci_int.h"

#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/progress.h"
#include "common/source/filter.h"

/* list(): tags, manifests, then the layout. */

static void fetch_doc(struct oci_source *os, char *url, oci_client_done_cb cb)
{
	oci_client_get_doc(os->reg, url, OCI_DOC_MAX, cb, os);
}

static void list_done(struct oci_client_req *r)
{
	struct oci_source *os = r->arg;
	struct source *src = os->src;
	source_done_cb cb = os->list_cb;
	void *arg = os->list_arg;
	int status = r->status;
	if (status < 0)
		source_set_error(src, "%s", r->detail ? r->detail : sb_strerror(status));
	oci_client_req_free(r);
	cb(src, status, arg);
}

static void list_finish(struct oci_source *os, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void list_finish(struct oci_source *os, int status, const char *fmt, ...)
{
	char *detail = NULL;
	if (fmt) {
		struct buf b = BUF_INIT;
		va_list ap;
		va_start(ap, fmt);
		buf_vprintf(&b, fmt, ap);
		va_end(ap);
		detail = buf_steal(&b);
	}
	os->listing = 0;
	oci_client_defer(os->reg, status, detail, list_done, os);
}

/* A request of list() failed: list() fails with its detail. */
static void list_fail_req(struct oci_client_req *r, const char *what)
{
	struct oci_source *os = r->arg;
	list_finish(os, r->status, "%s: %s: %s", os->shown, what,
		    r->detail ? r->detail : sb_strerror(r->status));
}

static void next_ref(struct oci_source *os);
static void build_listing(struct oci_source *os);

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void tags_done(struct oci_source *os, size_t total)
{
	size_t n = 0;
	for (size_t i = 0; i < os->nrefs; i++) {
		if (regexec(&os->re, os->refs[i], 0, NULL, 0) == 0)
			os->refs[n++] = os->refs[i];
		else
			free(os->refs[i]);
	}
	os->nrefs = n;
	if (n == 0) {
		list_finish(os, SB_ENOTFOUND, "%s: none of its %zu tags matches /%s/", os->shown,
			    total, os->src->uri.tag_regex);
		return;
	}
	qsort(os->refs, n, sizeof *os->refs, cmp_str);
	log_info("%s: %zu of %zu %s /%s/", os->shown, n, total,
		 total == 1 ? "tag matches"
		 : n == 1   ? "tags matches"
			    : "tags match",
		 os->src->uri.tag_regex);
	next_ref(os);
}

static void on_tags(struct oci_client_req *r)
{
	struct oci_source *os = r->arg;
	if (!os->listing) {
		oci_client_req_free(r);
		return;
	}
	if (r->status < 0) {
		list_fail_req(r, "cannot list tags");
		oci_client_req_free(r);
		return;
	}
	int rc = oci_tags_parse(r->body.ptr, r->body.len, &os->refs, &os->nrefs, TAGS_MAX);
	if (rc < 0) {
		list_finish(os, rc, "%s: malformed tag list from %s", os->shown, r->url);
		oci_client_req_free(r);
		return;
	}
	char *next = r->link[0] ? oci_link_next(r->link) : NULL;
	oci_client_req_free(r);
	if (!next) {
		tags_done(os, os->nrefs);
		return;
	}
	char *url = next[0] == '/' ? xasprintf("%s%s", os->base, next) : NULL;
	if (!url && !strncmp(next, os->base, strlen(os->base)) && next[strlen(os->base)] == '/')
		url = xstrdup(next);
	if (!url) {
		list_finish(os, SB_EPROTO, "%s: tag list continues at another host (%s)", os->shown,
			    next);
		free(next);
		return;
	}
	free(next);
	fetch_doc(os, url, on_tags);
}

static void on_manifest(struct oci_client_req *r);

static void fetch_manifest(struct oci_source *os, const char *ref, const char *expect)
{
	free(os->expect);
	os->expect = expect ? xstrdup(expect) : NULL;
	fetch_doc(os, xasprintf("%s/v2/%s/manifests/%s", os->base, os->repo, ref), on_manifest);
}

static void next_ref(struct oci_source *os)
{
	free(os->pending);
	os->pending = NULL;
	os->npending = os->next_pending = 0;
	os->top[0] = '\0';
	if (os->next_ref >= os->nrefs) {
		build_listing(os);
		return;
	}
	const char *ref = os->refs[os->next_ref];
	fetch_manifest(os, ref, oci_digest_valid(ref) ? ref : NULL);
}

/* The tag this reference publishes under, or NULL for a bare digest. */
static const char *ref_tag(struct oci_source *os)
{
	const char *ref = os->refs[os->next_ref];
	if (!oci_digest_valid(ref))
		return ref;
	return os->src->uri.revision; /* repo:tag@digest keeps its tag */
}

static int manifest_verified(struct oci_client_req *r, char *digest)
{
	struct oci_source *os = r->arg;
	oci_digest_of(r->body.ptr, r->body.len, digest);
	const char *want = os->expect;
	if (!want && oci_digest_valid(r->docker_digest))
		want = r->docker_digest;
	if (want && strcmp(want, digest) != 0) {
		list_finish(os, SB_ECORRUPT, "%s: manifest %s has digest %s, not %s", os->shown,
			    r->url, digest, want);
		return 0;
	}
	return 1;
}

static int is_index_type(const char *mt)
{
	return !strcmp(mt, OCI_MT_INDEX) || !strcmp(mt, OCI_MT_DOCKER_LIST);
}

/* Entry i of idx goes on the list to fetch (once). */
static void take_entry(struct oci_source *os, const struct oci_manifest *idx, size_t i)
{
	for (size_t k = 0; k < os->npending; k++)
		if (!strcmp(os->pending[k].digest, idx->manifests[i].digest))
			return;
	os->pending[os->npending++] = idx->manifests[i];
}

/* The index's platforms, comma-separated, into have. */
static void index_platforms(const struct oci_manifest *idx, char *have, size_t cap)
{
	have[0] = '\0';
	for (size_t k = 0; k < idx->nmanifests && strlen(have) + 40 < cap; k++) {
		char p[3 * OCI_PLATFORM_PART];
		if (!idx->manifests[k].has_platform)
			continue;
		oci_platform_format(&idx->manifests[k].platform, p, sizeof p);
		snprintf(have + strlen(have), cap - strlen(have), "%s%s", have[0] ? ", " : "", p);
	}
}

/* The entries of idx the source takes into os->pending: 1, or 0 when the
 * listing went on or ended (a platform missing). */
static int choose_platforms(struct oci_source *os, const struct oci_manifest *idx)
{
	char want[3 * OCI_PLATFORM_PART], have[256];
	const char *missing = NULL;
	os->pending = xcalloc(idx->nmanifests + 1, sizeof *os->pending);
	os->npending = os->next_pending = 0;
	for (size_t i = 0; os->want.all && i < idx->nmanifests; i++)
		take_entry(os, idx, i);
	for (size_t k = 0; !os->want.all && k < os->want.n && !missing; k++) {
		int i = oci_index_choose(idx, &os->want.p[k]);
		if (i < 0) {
			oci_platform_format(&os->want.p[k], want, sizeof want);
			missing = want;
		} else {
			take_entry(os, idx, (size_t)i);
		}
	}
	for (size_t k = 0; k < os->npending && !missing; k++)
		if (is_index_type(os->pending[k].media_type)) {
			list_finish(os, SB_EPROTO, "%s: an index inside an index is not supported",
				    os->shown);
			return 0;
		}
	if (!missing && os->npending > 0)
		return 1;
	index_platforms(idx, have, sizeof have);
	if (!missing)
		missing = "any";
	if (os->has_re) {
		log_warn("%s:%s has no %s image (it has %s); tag skipped", os->shown,
			 os->refs[os->next_ref], missing, have[0] ? have : "none");
		os->next_ref++;
		next_ref(os);
		return 0;
	}
	list_finish(os, SB_ENOTFOUND,
		    "%s: no %s image in the index (it has %s); choose one "
		    "with --platform",
		    os->shown, missing, have[0] ? have : "none");
	return 0;
}

/* The index a reference named: kept as served, its chosen entries next. */
static void take_index(struct oci_source *os, struct oci_client_req *r, const char *digest,
		       const struct oci_manifest *idx)
{
	if (os->npending > 0) {
		list_finish(os, SB_EPROTO, "%s: an index inside an index is not supported",
			    os->shown);
		return;
	}
	if (!choose_platforms(os, idx))
		return;
	os->named += 1 + os->npending;
	if (os->named > MANIFEST_MAX_FILES) {
		list_finish(os, SB_ETOOBIG, "%s: its images name more than %u blobs", os->shown,
			    MANIFEST_MAX_FILES);
		return;
	}
	snprintf(os->top, sizeof os->top, "%s", digest);
	os->indexes = xrealloc(os->indexes, (os->nindexes + 1) * sizeof *os->indexes);
	os->indexes[os->nindexes++] = r->body;
	memset(&r->body, 0, sizeof r->body);
	fetch_manifest(os, os->pending[0].digest, os->pending[0].digest);
}

/* An image manifest: the reference's, or an entry of its index. */
static void take_image(struct oci_source *os, struct oci_client_req *r, const char *digest,
		       struct oci_manifest *m)
{
	os->images = xrealloc(os->images, (os->nimages + 1) * sizeof *os->images);
	struct image *im = &os->images[os->nimages++];
	memset(im, 0, sizeof *im);
	const char *tag = ref_tag(os);
	im->tag = tag ? xstrdup(tag) : NULL;
	snprintf(im->digest, sizeof im->digest, "%s", digest);
	snprintf(im->layout_digest, sizeof im->layout_digest, "%s", digest);
	snprintf(im->top, sizeof im->top, "%s", os->top[0] ? os->top : digest);
	if (os->npending > 0) {
		im->has_platform = os->pending[os->next_pending].has_platform;
		im->platform = os->pending[os->next_pending].platform;
	}
	im->layout_type = OCI_MT_MANIFEST;
	im->m = *m;
	char *oci;
	size_t len;
	if (os->src->opt.oci.as_served) {
		im->layout_type = OCI_MT_DOCKER_V2;
		if (strcmp(m->media_type, OCI_MT_DOCKER_V2))
			im->layout_type = OCI_MT_MANIFEST;
		im->manifest = r->body;
		memset(&r->body, 0, sizeof r->body);
	} else if (!strcmp(m->media_type, OCI_MT_DOCKER_V2) &&
		   oci_manifest_to_oci(r->body.ptr, r->body.len, &oci, &len) == 0) {
		/* OCI layout readers take only OCI media types; the registry's
		 * bytes stay beside, for the digest it serves them under. */
		buf_append(&im->manifest, oci, len);
		oci_digest_of(oci, len, im->layout_digest);
		free(oci);
		im->original = r->body;
		memset(&r->body, 0, sizeof r->body);
	} else {
		im->manifest = r->body;
		memset(&r->body, 0, sizeof r->body);
	}
	if (os->npending > 0 && ++os->next_pending < os->npending) {
		const char *d = os->pending[os->next_pending].digest;
		fetch_manifest(os, d, d);
		return;
	}
	os->next_ref++;
	next_ref(os);
}

static void on_manifest(struct oci_client_req *r)
{
	struct oci_source *os = r->arg;
	char digest[OCI_DIGEST_MAX], *why = NULL;
	struct oci_manifest m;
	if (!os->listing)
		goto out;
	if (r->status < 0) {
		const char *ref =
		    os->npending ? os->pending[os->next_pending].digest : os->refs[os->next_ref];
		if (r->status == SB_ENOTFOUND)
			list_finish(os, r->status, "%s: %s %s not found: %s", os->shown,
				    oci_digest_valid(ref) ? "manifest" : "tag", ref,
				    r->detail ? r->detail : "");
		else
			list_fail_req(r, "cannot get the manifest");
		goto out;
	}
	if (!manifest_verified(r, digest))
		goto out;
	int rc = oci_manifest_parse(r->body.ptr, r->body.len, r->content_type, &m, &why);
	if (rc < 0) {
		list_finish(os, rc, "%s: manifest %s: %s", os->shown, digest, why);
		free(why);
		goto out;
	}
	if (m.is_index) {
		take_index(os, r, digest, &m);
		oci_manifest_close(&m);
		goto out;
	}
	/* Layers shared between tags fold into one file later, and the
	 * listing's count is checked then (source_list); this bounds what is
	 * held until then. */
	os->named += 2 + m.nlayers;
	if (os->named > MANIFEST_MAX_FILES) {
		list_finish(os, SB_ETOOBIG, "%s: its images name more than %u blobs", os->shown,
			    MANIFEST_MAX_FILES);
		oci_manifest_close(&m);
		goto out;
	}
	take_image(os, r, digest, &m);
out:
	oci_client_req_free(r);
}

/* The layout. */

static struct ofile *add_file(struct ofile **files, size_t *n, const char *digest)
{
	*files = xrealloc(*files, (*n + 1) * sizeof **files);
	struct ofile *f = &(*files)[(*n)++];
	memset(f, 0, sizeof *f);
	snprintf(f->digest, sizeof f->digest, "%s", digest);
	f->path = xasprintf(BLOBS_DIR "%s", digest + strlen("sha256:"));
	return f;
}

static void add_mem(struct ofile **files, size_t *n, const char *path, const void *data, size_t len)
{
	char digest[OCI_DIGEST_MAX];
	oci_digest_of(data, len, digest);
	struct ofile *f = add_file(files, n, digest);
	if (path) {
		free(f->path);
		f->path = xstrdup(path);
	}
	f->data = xmalloc(len + 1);
	memcpy(f->data, data, len);
	f->len = len;
	f->size = len;
}

static void add_blob(struct ofile **files, size_t *n, const struct oci_descriptor *d)
{
	struct ofile *f = add_file(files, n, d->digest);
	f->remote = 1;
	f->size = d->size;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct ofile *)a)->path, ((const struct ofile *)b)->path);
}

static void ofile_close(struct ofile *f)
{
	if (f->ctx_open && !f->hashing)
		sha256_close(&f->ctx);
	free(f->path);
	free(f->data);
}

/* Sort by path and fold blobs named twice (layers shared between tags). */
static int fold_files(struct oci_source *os, struct ofile *files, size_t *n)
{
	size_t k = 0;
	qsort(files, *n, sizeof *files, cmp_file);
	for (size_t i = 0; i < *n; i++) {
		if (k && !strcmp(files[k - 1].path, files[i].path)) {
			if (files[k - 1].size != files[i].size) {
				source_set_error(
				    os->src,
				    "%s: blob %s is named with sizes %" PRIu64 " and %" PRIu64,
				    os->shown, files[i].digest, files[k - 1].size, files[i].size);
				return SB_EPROTO;
			}
			ofile_close(&files[i]);
			continue;
		}
		files[k++] = files[i];
	}
	*n = k;
	return 0;
}

static const char empty_digest[] =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static void build_listing(struct oci_source *os)
{
	struct oci_layout_ref *refs = xcalloc(os->nimages + 1, sizeof *refs);
	struct ofile *files = NULL;
	size_t n = 0;
	for (size_t i = 0; i < os->nimages; i++) {
		struct image *im = &os->images[i];
		refs[i] =
		    (struct oci_layout_ref){im->layout_type,
					    im->layout_digest,
					    im->manifest.len,
					    im->tag,
					    im->has_platform ? &im->platform : NULL,
					    strcmp(im->top, im->layout_digest) ? im->top : NULL};
		add_mem(&files, &n, NULL, im->manifest.ptr, im->manifest.len);
		if (im->original.len)
			add_mem(&files, &n, NULL, im->original.ptr, im->original.len);
		add_blob(&files, &n, &im->m.config);
		for (size_t j = 0; j < im->m.nlayers; j++)
			add_blob(&files, &n, &im->m.layers[j]);
	}
	for (size_t i = 0; i < os->nindexes; i++)
		add_mem(&files, &n, NULL, os->indexes[i].ptr, os->indexes[i].len);
	char *index = oci_layout_index(refs, os->nimages);
	free(refs);
	add_mem(&files, &n, "index.json", index, strlen(index));
	add_mem(&files, &n, "oci-layout", OCI_LAYOUT_FILE, strlen(OCI_LAYOUT_FILE));
	int rc = fold_files(os, files, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (files[i].remote && files[i].size == 0 &&
		    strcmp(files[i].digest, empty_digest)) {
			source_set_error(os->src, "%s: empty blob %s cannot have that digest",
					 os->shown, files[i].digest);
			rc = SB_ECORRUPT;
		}
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			ofile_close(&files[i]);
		free(files);
		free(index);
		list_finish(os, rc, "%s", os->src->error_detail);
		return;
	}
	struct source_listing *l = &os->src->listing;
	source_listing_close(l);
	l->files = xcalloc(n + 1, sizeof *l->files);
	l->nfiles = n;
	for (size_t i = 0; i < n; i++) {
		files[i].os = os;
		l->files[i].path = xstrdup(files[i].path);
		l->files[i].type = SRC_REGULAR;
		l->files[i].size = files[i].size;
		l->files[i].mode = 0644;
		l->files[i].digest = xstrdup(files[i].digest);
	}
	/* One document of the registry's (an image manifest, or the index
	 * its images came from): its digest, as a registry client would name
	 * it; several: the digest of the index.json that lists them. */
	size_t same = 0;
	while (same < os->nimages && !strcmp(os->images[same].top, os->images[0].top))
		same++;
	if (os->nimages > 0 && same == os->nimages) {
		l->version = xstrdup(os->images[0].top);
	} else {
		char d[OCI_DIGEST_MAX];
		oci_digest_of(index, strlen(index), d);
		l->version = xstrdup(d);
	}
	free(index);
	os->files = files;
	os->nfiles = n;
	list_finish(os, 0, NULL);
}

void source_oci_listing_reset(struct oci_source *os)
{
	for (size_t i = 0; i < os->nfiles; i++)
		ofile_close(&os->files[i]);
	free(os->files);
	os->files = NULL;
	os->nfiles = 0;
	for (size_t i = 0; i < os->nimages; i++) {
		free(os->images[i].tag);
		buf_close(&os->images[i].manifest);
		buf_close(&os->images[i].original);
		oci_manifest_close(&os->images[i].m);
	}
	for (size_t i = 0; i < os->nindexes; i++)
		buf_close(&os->indexes[i]);
	free(os->indexes);
	os->indexes = NULL;
	os->nindexes = 0;
	free(os->pending);
	os->pending = NULL;
	os->npending = os->next_pending = 0;
	os->top[0] = '\0';
	free(os->images);
	os->images = NULL;
	os->nimages = 0;
	os->named = 0;
	for (size_t i = 0; i < os->nrefs; i++)
		free(os->refs[i]);
	free(os->refs);
	os->refs = NULL;
	os->nrefs = os->next_ref = 0;
	free(os->expect);
	os->expect = NULL;
}

int source_oci_list(struct source *src, source_done_cb cb, void *arg)
{
	struct oci_source *os = src->impl;
	if (os->listing || os->reads)
		return -EBUSY;
	if (os->setup_error) {
		source_set_error(src, "%s", os->setup_error);
		return SB_ECONFIG;
	}
	source_oci_listing_reset(os);
	os->listing = 1;
	os->list_cb = cb;
	os->list_arg = arg;
	if (os->has_re) {
		fetch_doc(os, xasprintf("%s/v2/%s/tags/list?n=%d", os->base, os->repo, TAGS_PAGE),
			  on_tags);
		return 0;
	}
	os->refs = xcalloc(2, sizeof *os->refs);
	os->refs[0] = xstrdup(src->uri.digest ? src->uri.digest : src->uri.revision);
	os->nrefs = 1;
	next_ref(os);
	return 0;
}
