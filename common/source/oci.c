/* The oci:// source: one image of a registry repository (by tag or digest),
 * or every tag matching ?tag-regex=, presented as an OCI image layout:
 * oci-layout, index.json (one entry per tag, named by
 * org.opencontainers.image.ref.name) and blobs/sha256/<hex> for each image
 * manifest, config and layer. The small generated files are served from
 * memory; config and layer blobs are read with ranged GETs, in parallel,
 * through one curl multi on the loop. An image index resolves to the
 * manifest of one platform (linux/amd64 unless ?platform= says otherwise).
 * A Docker schema 2 manifest is kept with OCI media types (its blobs as they
 * are), since layout readers take only those, unless oci.as_served asks for
 * the registry's bytes; the listing's version stays the registry's manifest
 * digest.
 *
 * Every manifest is checked against its digest before use, and every blob
 * read from start to end in this run is hashed in order on the thread pool
 * and checked against its digest; a read completes only once its bytes are
 * hashed, so the read that ends a blob with the wrong digest fails with
 * SB_ECORRUPT. A blob read with gaps (a resumed pull, or an agent that gets
 * the other blocks from peers) cannot be hashed here and is not checked.
 *
 * Requests, auth and retries are common/source/oci_client.c's; credentials come from
 * --registry-user or REGISTRY_AUTH. Registries on a loopback address, or
 * named by --insecure-registry, are spoken to over plain HTTP; any other
 * over HTTPS. Callbacks run from the registry's timer or a pool job's
 * completion, never from the call that started the operation. */
#include "common/source/source.h"

#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/source/filter.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/manifest.h"
#include "common/source/oci_doc.h"
#include "common/source/oci_name.h"
#include "common/source/oci_client.h"
#include "common/source/oci_auth.h"

#define DEFAULT_PLATFORM "linux/amd64"
#define TAGS_PAGE	 1000
#define TAGS_MAX	 100000
#define DOCKER_HUB	 "docker.io"
#define DOCKER_HUB_API	 "registry-1.docker.io"
#define BLOBS_DIR	 "blobs/sha256/"

struct oci_source;

/* One read(). */
struct oci_read {
	struct oci_read *next; /* a file's held reads, by offset */
	struct oci_source *os;
	size_t file;
	uint64_t off;
	size_t len;
	uint8_t *buf;
	int verify, canceled, status;
	char *detail;
	source_done_cb cb;
	void *arg;
};

struct ofile {
	char *path;
	int remote;
	uint8_t *data; /* generated files */
	size_t len;
	char digest[OCI_DIGEST_MAX];
	uint64_t size;
	/* Verification of remote blobs. */
	struct sha256_ctx ctx;
	int ctx_open, unverified, verified, hashing;
	uint64_t hashed, issued;
	struct oci_read *held; /* fetched, waiting for the bytes before them */
	uv_work_t work;
	struct oci_read *job;
	struct oci_source *os;
};

struct image {
	char *tag;		     /* ref.name, or NULL */
	char digest[OCI_DIGEST_MAX]; /* the registry's manifest */
	/* The manifest as the layout holds it: the registry's bytes, or a
	 * Docker schema 2 manifest retyped to OCI. */
	char layout_digest[OCI_DIGEST_MAX];
	const char *layout_type;
	struct buf manifest;
	struct oci_manifest m;
};

struct oci_source {
	struct source *src;
	uv_loop_t *loop;
	struct oci_client *reg;
	char *base;  /* scheme://host[:port] */
	char *repo;  /* as the registry names it (library/ added on Docker Hub) */
	char *shown; /* registry/repo for messages */
	struct oci_platform want;
	regex_t re;
	int has_re;
	char *userpwd;
	/* Why the source cannot be listed (a malformed auth file, filters),
	 * said by list(), or NULL. */
	char *setup_error;
	int reads; /* read() calls not yet called back */
	/* list() */
	int listing;
	source_done_cb list_cb;
	void *list_arg;
	char **refs;
	size_t nrefs, next_ref;
	char *expect; /* digest the manifest being fetched must have, or NULL */
	struct image *images;
	size_t nimages;
	uint64_t named; /* manifests and blobs the images name, before folding */
	/* The listing's files, in listing order. */
	struct ofile *files;
	size_t nfiles;
};

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

static void choose_platform(struct oci_source *os, struct oci_manifest *idx)
{
	char want[3 * OCI_PLATFORM_PART], have[256] = "";
	int i = oci_index_choose(idx, &os->want);
	if (i >= 0) {
		if (!strcmp(idx->manifests[i].media_type, OCI_MT_INDEX) ||
		    !strcmp(idx->manifests[i].media_type, OCI_MT_DOCKER_LIST)) {
			list_finish(os, SB_EPROTO, "%s: an index inside an index is not supported",
				    os->shown);
			return;
		}
		fetch_manifest(os, idx->manifests[i].digest, idx->manifests[i].digest);
		return;
	}
	oci_platform_format(&os->want, want, sizeof want);
	for (size_t k = 0; k < idx->nmanifests && strlen(have) < sizeof have - 40; k++) {
		char p[3 * OCI_PLATFORM_PART];
		if (!idx->manifests[k].has_platform)
			continue;
		oci_platform_format(&idx->manifests[k].platform, p, sizeof p);
		snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s",
			 have[0] ? ", " : "", p);
	}
	if (os->has_re) {
		log_warn("%s:%s has no %s image (it has %s); tag skipped", os->shown,
			 os->refs[os->next_ref], want, have[0] ? have : "none");
		os->next_ref++;
		next_ref(os);
		return;
	}
	list_finish(os, SB_ENOTFOUND,
		    "%s: no %s image in the index (it has %s); choose one "
		    "with --platform",
		    os->shown, want, have[0] ? have : "none");
}

static void on_manifest(struct oci_client_req *r)
{
	struct oci_source *os = r->arg;
	char digest[OCI_DIGEST_MAX], *why = NULL;
	struct oci_manifest m;
	if (!os->listing)
		goto out;
	if (r->status < 0) {
		const char *ref = os->refs[os->next_ref];
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
		choose_platform(os, &m);
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
	os->images = xrealloc(os->images, (os->nimages + 1) * sizeof *os->images);
	struct image *im = &os->images[os->nimages++];
	memset(im, 0, sizeof *im);
	const char *tag = ref_tag(os);
	im->tag = tag ? xstrdup(tag) : NULL;
	snprintf(im->digest, sizeof im->digest, "%s", digest);
	snprintf(im->layout_digest, sizeof im->layout_digest, "%s", digest);
	im->layout_type = OCI_MT_MANIFEST;
	im->m = m;
	char *oci;
	size_t len;
	if (os->src->opt.oci.as_served) {
		im->layout_type = OCI_MT_DOCKER_V2;
		if (strcmp(m.media_type, OCI_MT_DOCKER_V2))
			im->layout_type = OCI_MT_MANIFEST;
		im->manifest = r->body;
		memset(&r->body, 0, sizeof r->body);
	} else if (!strcmp(m.media_type, OCI_MT_DOCKER_V2) &&
		   oci_manifest_to_oci(r->body.ptr, r->body.len, &oci, &len) == 0) {
		/* OCI layout readers take only OCI media types. */
		buf_append(&im->manifest, oci, len);
		oci_digest_of(oci, len, im->layout_digest);
		free(oci);
	} else {
		im->manifest = r->body;
		memset(&r->body, 0, sizeof r->body);
	}
	os->next_ref++;
	next_ref(os);
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
		refs[i] = (struct oci_layout_ref){im->layout_type, im->layout_digest,
						  im->manifest.len, im->tag};
		add_mem(&files, &n, NULL, im->manifest.ptr, im->manifest.len);
		add_blob(&files, &n, &im->m.config);
		for (size_t j = 0; j < im->m.nlayers; j++)
			add_blob(&files, &n, &im->m.layers[j]);
	}
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
	/* One image: its manifest digest, as a registry client would name it;
	 * several: the digest of the index.json that lists them. */
	if (os->nimages == 1) {
		l->version = xstrdup(os->images[0].digest);
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

/* Reads, and verification of blobs in order on the pool. */

static void read_deliver(struct oci_read *rd)
{
	struct oci_source *os = rd->os;
	struct source *src = os->src;
	source_done_cb cb = rd->cb;
	void *arg = rd->arg;
	int status = rd->canceled ? SB_ECANCELED : rd->status;
	if (status < 0 && status != SB_ECANCELED && rd->detail)
		source_set_error(src, "%s", rd->detail);
	free(rd->detail);
	free(rd);
	os->reads--;
	cb(src, status, arg);
}

static void read_deferred(struct oci_client_req *r)
{
	struct oci_read *rd = r->arg;
	if (r->status < 0 && !rd->status)
		rd->status = r->status;
	oci_client_req_free(r);
	read_deliver(rd);
}

/* Deliver rd from the loop: never from inside read() or cancel(). */
static void read_defer(struct oci_read *rd)
{
	oci_client_defer(rd->os->reg, 0, NULL, read_deferred, rd);
}

static void hash_work(uv_work_t *w)
{
	struct ofile *f = w->data;
	sha256_update(&f->ctx, f->job->buf, f->job->len);
}

static void pump_hash(struct ofile *f);

static void unverify(struct ofile *f, const char *why)
{
	if (f->unverified || f->verified)
		return;
	f->unverified = 1;
	log_info("%s: %s not checked against its digest in this run (%s)", f->os->shown, f->digest,
		 why);
	while (f->held) {
		struct oci_read *rd = f->held;
		f->held = rd->next;
		read_defer(rd);
	}
	if (f->ctx_open && !f->hashing) {
		sha256_close(&f->ctx);
		f->ctx_open = 0;
	}
}

static void hash_done(uv_work_t *w, int status)
{
	struct ofile *f = w->data;
	struct oci_read *rd = f->job;
	f->hashing = 0;
	f->job = NULL;
	f->hashed += rd->len;
	if (f->unverified) {
		sha256_close(&f->ctx);
		f->ctx_open = 0;
	} else if (f->hashed == f->size) {
		struct hash_id h;
		char got[OCI_DIGEST_MAX], hex[HASH_HEX_LEN + 1];
		sha256_final(&f->ctx, &h);
		f->ctx_open = 0;
		f->verified = 1;
		hash_to_hex(&h, hex);
		snprintf(got, sizeof got, "sha256:%s", hex);
		if (strcmp(got, f->digest) != 0) {
			rd->status = SB_ECORRUPT;
			rd->detail = xasprintf("%s: blob %s arrived with digest %s: corrupt in the "
					       "registry or on the way",
					       f->os->shown, f->digest, got);
		}
	}
	pump_hash(f);
	read_deliver(rd);
}

static void pump_hash(struct ofile *f)
{
	struct oci_read *rd = f->held;
	if (f->hashing || !rd || rd->off != f->hashed || f->unverified)
		return;
	if (!f->ctx_open) {
		sha256_init(&f->ctx);
		f->ctx_open = 1;
	}
	f->held = rd->next;
	f->hashing = 1;
	f->job = rd;
	f->work.data = f;
	int rc = uv_queue_work(f->os->loop, &f->work, hash_work, hash_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

/* A range arrived. Bytes to check wait for those before them, so the read
 * that ends a blob is the one that learns its digest. */
static void blob_fetched(struct oci_client_req *r)
{
	struct oci_read *rd = r->arg;
	struct ofile *f = &rd->os->files[rd->file];
	rd->status = r->status;
	rd->detail = r->detail;
	r->detail = NULL;
	oci_client_req_free(r);
	if (rd->status < 0 || !rd->verify || f->unverified || rd->canceled) {
		if (rd->verify && !f->unverified)
			unverify(f, rd->status < 0 ? "a read failed" : "canceled");
		read_deliver(rd);
		return;
	}
	struct oci_read **at = &f->held;
	while (*at && (*at)->off < rd->off)
		at = &(*at)->next;
	rd->next = *at;
	*at = rd;
	pump_hash(f);
}

/* Operations. */

static void reset_listing(struct oci_source *os)
{
	for (size_t i = 0; i < os->nfiles; i++)
		ofile_close(&os->files[i]);
	free(os->files);
	os->files = NULL;
	os->nfiles = 0;
	for (size_t i = 0; i < os->nimages; i++) {
		free(os->images[i].tag);
		buf_close(&os->images[i].manifest);
		oci_manifest_close(&os->images[i].m);
	}
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

static int oci_list(struct source *src, source_done_cb cb, void *arg)
{
	struct oci_source *os = src->impl;
	if (os->listing || os->reads)
		return -EBUSY;
	if (os->setup_error) {
		source_set_error(src, "%s", os->setup_error);
		return SB_ECONFIG;
	}
	reset_listing(os);
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

static int oci_read(struct source *src, size_t index, uint64_t off, size_t len, void *buf,
		    source_done_cb cb, void *arg)
{
	struct oci_source *os = src->impl;
	if (index >= os->nfiles) {
		source_set_error(src, "%s: read before a listing", os->shown);
		return -EINVAL;
	}
	struct ofile *f = &os->files[index];
	if (off > f->size || len > f->size - off) {
		source_set_error(src,
				 "%s: bytes %" PRIu64 "+%zu lie past the end of %s (%" PRIu64 ")",
				 os->shown, off, len, f->path, f->size);
		return -EINVAL;
	}
	struct oci_read *rd = xcalloc(1, sizeof *rd);
	rd->os = os;
	rd->file = index;
	rd->off = off;
	rd->len = len;
	rd->buf = buf;
	rd->cb = cb;
	rd->arg = arg;
	os->reads++;
	if (!f->remote || len == 0) {
		if (len)
			memcpy(buf, f->data + off, len);
		read_defer(rd);
		return 0;
	}
	if (!f->verified && !f->unverified) {
		if (off == f->issued) {
			rd->verify = 1;
			f->issued = off + len;
		} else {
			unverify(f, "its reads skip bytes");
		}
	}
	oci_client_get_range(os->reg, xasprintf("%s/v2/%s/blobs/%s", os->base, os->repo, f->digest),
			     f->size, off, len, buf, blob_fetched, rd);
	return 0;
}

static void oci_cancel(struct source *src)
{
	struct oci_source *os = src->impl;
	/* Reads in flight and list()'s request end with SB_ECANCELED through
	 * their callbacks; reads held for hashing are delivered canceled. */
	oci_client_cancel(os->reg);
	for (size_t i = 0; i < os->nfiles; i++) {
		struct ofile *f = &os->files[i];
		for (struct oci_read *rd = f->held; rd; rd = rd->next)
			rd->canceled = 1;
		if (f->job)
			f->job->canceled = 1;
		unverify(f, "canceled");
	}
}

/* What setup made; os itself too. */
static void release(struct oci_source *os)
{
	if (os->has_re)
		regfree(&os->re);
	free(os->base);
	free(os->repo);
	free(os->shown);
	free(os->userpwd);
	free(os->setup_error);
	free(os);
}

static void oci_free(struct source *src)
{
	struct oci_source *os = src->impl;
	if (!os)
		return;
	oci_client_free(os->reg);
	for (size_t i = 0; i < os->nfiles; i++)
		while (os->files[i].held) {
			struct oci_read *rd = os->files[i].held;
			os->files[i].held = rd->next;
			free(rd->detail);
			free(rd);
		}
	reset_listing(os);
	release(os);
	src->impl = NULL;
}

static const struct source_ops oci_ops = {
    .name = "oci",
    .list = oci_list,
    .read = oci_read,
    .pread = NULL,
    .cancel = oci_cancel,
    .free = oci_free,
};

/* Setup. */

static int setup_names(struct source *src, struct oci_source *os, const char *insecure)
{
	const struct source_uri *u = &src->uri;
	const char *host = u->registry;
	int plain = oci_host_is_loopback(host) || oci_host_listed(host, insecure);
	if (!strcmp(host, DOCKER_HUB) || !strcmp(host, "index." DOCKER_HUB))
		host = DOCKER_HUB_API;
	os->base = xasprintf("%s://%s", plain ? "http" : "https", host);
	if (!strcmp(host, DOCKER_HUB_API) && !strchr(u->repo, '/'))
		os->repo = xasprintf("library/%s", u->repo);
	else
		os->repo = xstrdup(u->repo);
	os->shown = xasprintf("%s/%s", u->registry, u->repo);
	const char *pf = u->platform ? u->platform : DEFAULT_PLATFORM;
	if (oci_platform_parse(pf, &os->want) < 0) {
		source_set_error(src, "%s: platform \"%s\" is not os/arch[/variant]", os->shown,
				 pf);
		return SB_EURI;
	}
	if (u->tag_regex) {
		int rc = regcomp(&os->re, u->tag_regex, REG_EXTENDED | REG_NOSUB);
		if (rc != 0) {
			char why[128];
			regerror(rc, &os->re, why, sizeof why);
			source_set_error(src, "%s: tag regex /%s/: %s", os->shown, u->tag_regex,
					 why);
			return SB_EURI;
		}
		os->has_re = 1;
	}
	return 0;
}

/* --registry-user (or its file), else $REGISTRY_AUTH, else the auth
 * files skopeo reads (common/source/oci_auth.h). */
static int setup_credentials(struct source *src, struct oci_source *os)
{
	const char *auth = src->opt.oci.auth;
	if (!auth || !*auth)
		auth = getenv("REGISTRY_AUTH");
	if (!auth || !*auth) {
		char reg[OCI_NAME_HOST_MAX + 1], *from = NULL;
		if (oci_name_registry(src->uri.registry, reg, sizeof reg) < 0)
			snprintf(reg, sizeof reg, "%s", src->uri.registry);
		int rc = oci_auth_lookup(reg, os->repo, src->opt.oci.authfile, &os->userpwd, &from);
		if (rc < 0)
			os->setup_error =
			    xasprintf("%s: registry credentials: %s", os->shown, from);
		else if (rc == 1)
			log_debug("%s: credentials from %s", os->shown, from);
		free(from);
		return 0;
	}
	os->userpwd = oci_credentials(auth);
	if (!os->userpwd)
		log_warn("%s: registry credentials are neither user:password nor its base64; "
			 "going without",
			 os->shown);
	return 0;
}

int source_oci_new(struct source *src)
{
	if (!src->uri.registry || !src->uri.repo)
		return SB_EURI;
	struct oci_source *os = xcalloc(1, sizeof *os);
	os->src = src;
	os->loop = src->loop;
	const char *insecure = src->opt.oci.insecure_registries;
	if (!insecure || !*insecure)
		insecure = getenv("SYNCBIT_INSECURE_REGISTRY");
	int rc = setup_names(src, os, insecure);
	if (rc == 0)
		rc = setup_credentials(src, os);
	if (rc == 0 && !os->setup_error && src->opt.filter && src->opt.filter->n)
		os->setup_error = xasprintf("%s: --include/--exclude do not apply to oci:// "
					    "sources: --tag-regex picks the tags",
					    os->shown);
	if (rc == 0) {
		struct oci_client_options ro = {
		    .repo = os->repo,
		    .userpwd = os->userpwd,
		    .insecure = insecure,
		    .retries = src->opt.retries,
		    .connect_seconds = src->opt.connect_seconds,
		    .stall_seconds = src->opt.stall_seconds,
		    .bytes_read = &src->bytes_read,
		    .counters = source_counters(URI_OCI),
		};
		rc = oci_client_new(src->loop, &ro, &os->reg);
	}
	if (rc < 0) {
		release(os);
		return rc;
	}
	src->ops = &oci_ops;
	src->impl = os;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	return 0;
}
