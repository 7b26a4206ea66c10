/* What a registry-to-registry sync pushes, read from the cache: the OCI
 * layout the source was listed as (index.json, the manifests, the blobs),
 * and which repositories of the destination's registry hold which blobs. */
#include "agent/sync_oci_int.h"

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"

#define BLOBS_DIR  "blobs/sha256/"
#define INDEX_FILE "index.json"

struct load {
	struct cache *c;
	Manifest *m;
	struct sync_oci_plan *plan;
	char *why;
};

static int fail(struct load *l, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct load *l, int rc, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(l->why);
	l->why = buf_steal(&b);
	return rc;
}

static void blob_path(const char *digest, char *out, size_t cap)
{
	snprintf(out, cap, BLOBS_DIR "%.64s", digest + strlen("sha256:"));
}

/* The listing's entry for rel, its cache object (still as stored) into
 * path, *rc 0; NULL, with *rc the error, when the cache does not hold it. */
static const FileEntry *object_path(struct load *l, const char *rel, char *path, size_t cap,
				    int *rc)
{
	const FileEntry *e = manifest_find_regular(l->m, rel);
	struct hash_id id;
	if (!e) {
		*rc = fail(l, SB_ENOTFOUND, "%s is not in the cached listing", rel);
		return NULL;
	}
	manifest_file_object_id(e->size, l->m->block_size, e->block_hashes.data,
				e->block_hashes.len / HASH_LEN, &id);
	if (cache_object_check(l->c, &id) != 1) {
		*rc = fail(l, SB_ENOTFOUND, "%s is no longer in the cache (run again)", rel);
		return NULL;
	}
	cache_object_path(l->c, &id, path, cap);
	*rc = 0;
	return e;
}

/* A small file of the layout, whole. */
static int read_doc(struct load *l, const char *rel, struct buf *out)
{
	char path[PATH_MAX];
	int rc;
	const FileEntry *e = object_path(l, rel, path, sizeof path, &rc);
	if (!e)
		return rc;
	if (e->size > OCI_DOC_MAX)
		return fail(l, SB_ETOOBIG, "%s: %llu bytes, more than a manifest may have", rel,
			    (unsigned long long)e->size);
	rc = buf_read_file(path, OCI_DOC_MAX, out);
	if (rc < 0)
		return fail(l, rc, "%s: %s", path, sb_strerror(rc));
	if (out->len != e->size)
		return fail(l, SB_ECORRUPT, "%s: %zu bytes, the listing says %llu", path, out->len,
			    (unsigned long long)e->size);
	return 0;
}

static size_t add_blob(struct load *l, const struct oci_descriptor *d, int *rc)
{
	struct sync_oci_plan *p = l->plan;
	char rel[sizeof BLOBS_DIR + OCI_DIGEST_MAX], path[PATH_MAX];
	for (size_t i = 0; i < p->nblobs; i++)
		if (!strcmp(p->blobs[i].digest, d->digest))
			return i;
	blob_path(d->digest, rel, sizeof rel);
	const FileEntry *e = object_path(l, rel, path, sizeof path, rc);
	if (!e)
		return 0;
	if (e->size != d->size) {
		*rc = fail(l, SB_ECORRUPT, "%s: %llu bytes in the cache, the manifest says %llu",
			   d->digest, (unsigned long long)e->size, (unsigned long long)d->size);
		return 0;
	}
	p->blobs = xrealloc(p->blobs, (p->nblobs + 1) * sizeof *p->blobs);
	struct sync_oci_blob *b = &p->blobs[p->nblobs];
	memset(b, 0, sizeof *b);
	snprintf(b->digest, sizeof b->digest, "%s", d->digest);
	b->size = d->size;
	b->path = xstrdup(path);
	p->bytes += d->size;
	return p->nblobs++;
}

/* A document of the layout, whole, checked against its digest and parsed
 * (media_type: the hint index.json gives, or ""). Free om and doc->bytes. */
static int read_manifest(struct load *l, const char *digest, const char *media_type,
			 struct sync_oci_doc *doc, struct oci_manifest *om)
{
	char rel[sizeof BLOBS_DIR + OCI_DIGEST_MAX], got[OCI_DIGEST_MAX], *why = NULL;
	int rc;
	memset(doc, 0, sizeof *doc);
	memset(om, 0, sizeof *om);
	snprintf(doc->digest, sizeof doc->digest, "%s", digest);
	blob_path(digest, rel, sizeof rel);
	if ((rc = read_doc(l, rel, &doc->bytes)) < 0)
		goto fail;
	oci_digest_of(doc->bytes.ptr, doc->bytes.len, got);
	if (strcmp(got, digest)) {
		rc = fail(l, SB_ECORRUPT, "manifest %s has digest %s in the cache", digest, got);
		goto fail;
	}
	if ((rc = oci_manifest_parse(doc->bytes.ptr, doc->bytes.len, media_type, om, &why)) < 0) {
		rc = fail(l, rc, "manifest %s: %s", digest, why ? why : "malformed");
		free(why);
		goto fail;
	}
	snprintf(doc->media_type, sizeof doc->media_type, "%s", om->media_type);
	return 0;
fail:
	buf_close(&doc->bytes);
	return rc;
}

/* The config and layers of image manifest om into im's blobs (once). */
static int add_blobs(struct load *l, struct sync_oci_image *im, const struct oci_manifest *om)
{
	int rc = 0;
	im->blobs = xrealloc(im->blobs, (im->nblobs + om->nlayers + 1) * sizeof *im->blobs);
	for (size_t i = 0; rc == 0 && i <= om->nlayers; i++) {
		size_t k = add_blob(l, i ? &om->layers[i - 1] : &om->config, &rc), j = 0;
		while (j < im->nblobs && im->blobs[j] != k)
			j++;
		if (rc == 0 && j == im->nblobs) /* a blob named twice is pushed once */
			im->blobs[im->nblobs++] = k;
	}
	return rc;
}

static void image_close(struct sync_oci_image *im)
{
	free(im->tag);
	free(im->blobs);
	buf_close(&im->bytes);
	for (size_t i = 0; i < im->nchildren; i++)
		buf_close(&im->children[i].bytes);
	free(im->children);
	memset(im, 0, sizeof *im);
}

/* The manifest an index.json entry names, and its blobs. */
static int add_image(struct load *l, const struct oci_descriptor *d, const char *tag)
{
	struct sync_oci_image im = {0};
	struct sync_oci_doc doc;
	struct oci_manifest om;
	int rc = read_manifest(l, d->digest, d->media_type, &doc, &om);
	if (rc < 0)
		return rc;
	im.bytes = doc.bytes;
	snprintf(im.digest, sizeof im.digest, "%s", doc.digest);
	snprintf(im.media_type, sizeof im.media_type, "%s", doc.media_type);
	im.tag = tag ? xstrdup(tag) : NULL;
	if (om.is_index)
		rc = fail(l, SB_EPROTO, "manifest %s is an index", d->digest);
	else
		rc = add_blobs(l, &im, &om);
	oci_manifest_close(&om);
	if (rc < 0) {
		image_close(&im);
		return rc;
	}
	struct sync_oci_plan *p = l->plan;
	p->images = xrealloc(p->images, (p->nimages + 1) * sizeof *p->images);
	p->images[p->nimages++] = im;
	return 0;
}

/* --all: the entry d was taken from index `top`: the index is the image
 * (one per tag), the entry's manifest one of its children. */
static int add_child(struct load *l, const struct oci_descriptor *d, const char *tag,
		     const char *top)
{
	struct sync_oci_plan *p = l->plan;
	struct sync_oci_image *im = NULL;
	struct sync_oci_doc doc;
	struct oci_manifest om;
	int rc;
	for (size_t i = 0; i < p->nimages && !im; i++)
		if (!strcmp(p->images[i].digest, top) && p->images[i].nchildren &&
		    !strcmp(p->images[i].tag ? p->images[i].tag : "", tag ? tag : ""))
			im = &p->images[i];
	if (!im) {
		if ((rc = read_manifest(l, top, "", &doc, &om)) < 0)
			return rc;
		int is_index = om.is_index;
		oci_manifest_close(&om);
		if (!is_index) {
			buf_close(&doc.bytes);
			return add_image(l, d, tag); /* a retyped manifest: not ours */
		}
		p->images = xrealloc(p->images, (p->nimages + 1) * sizeof *p->images);
		im = &p->images[p->nimages++];
		memset(im, 0, sizeof *im);
		im->tag = tag ? xstrdup(tag) : NULL;
		snprintf(im->digest, sizeof im->digest, "%s", doc.digest);
		snprintf(im->media_type, sizeof im->media_type, "%s", doc.media_type);
		im->bytes = doc.bytes;
	}
	if ((rc = read_manifest(l, d->digest, d->media_type, &doc, &om)) < 0)
		return rc;
	if (om.is_index) {
		oci_manifest_close(&om);
		buf_close(&doc.bytes);
		return fail(l, SB_EPROTO, "manifest %s is an index", d->digest);
	}
	rc = add_blobs(l, im, &om);
	oci_manifest_close(&om);
	im->children = xrealloc(im->children, (im->nchildren + 1) * sizeof *im->children);
	im->children[im->nchildren++] = doc;
	return rc;
}

/* --all: every manifest an index lists is held, or the destination would
 * refuse the index. */
static int indexes_whole(struct load *l)
{
	struct sync_oci_plan *p = l->plan;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < p->nimages; i++) {
		struct sync_oci_image *im = &p->images[i];
		struct oci_manifest om;
		char *why = NULL;
		if (!im->nchildren)
			continue;
		if (oci_manifest_parse(im->bytes.ptr, im->bytes.len, im->media_type, &om, &why) <
		    0) {
			free(why);
			return fail(l, SB_EPROTO, "index %s does not parse", im->digest);
		}
		for (size_t k = 0; rc == 0 && k < om.nmanifests; k++) {
			size_t j = 0;
			while (j < im->nchildren &&
			       strcmp(im->children[j].digest, om.manifests[k].digest))
				j++;
			if (j == im->nchildren)
				rc = fail(l, SB_ENOTFOUND,
					  "index %s lists %s, which the cached images lack (listed "
					  "for some platforms only?)",
					  im->digest, om.manifests[k].digest);
		}
		oci_manifest_close(&om);
	}
	return rc;
}

static int load_index(struct load *l, int all)
{
	struct buf idx = BUF_INIT;
	json_error_t jerr;
	int rc = read_doc(l, INDEX_FILE, &idx);
	json_t *root = rc == 0 ? json_loadb((const char *)idx.ptr, idx.len, 0, &jerr) : NULL;
	buf_close(&idx);
	if (rc < 0)
		return rc;
	json_t *list = json_object_get(root, "manifests");
	if (!json_is_array(list)) {
		json_decref(root);
		return fail(l, SB_EPROTO, "the cached %s lists no manifests", INDEX_FILE);
	}
	size_t i;
	json_t *ent;
	json_array_foreach(list, i, ent)
	{
		struct oci_descriptor d = {0};
		json_t *ann = json_object_get(ent, "annotations");
		const char *mt = json_string_value(json_object_get(ent, "mediaType"));
		const char *dg = json_string_value(json_object_get(ent, "digest"));
		const char *tag = json_string_value(json_object_get(ann, OCI_REF_NAME));
		const char *top = json_string_value(json_object_get(ann, OCI_REGISTRY_DIGEST));
		if (!dg || !oci_digest_valid(dg)) {
			rc = fail(l, SB_EPROTO, "the cached %s has an entry without a digest",
				  INDEX_FILE);
			break;
		}
		snprintf(d.media_type, sizeof d.media_type, "%s", mt ? mt : "");
		snprintf(d.digest, sizeof d.digest, "%s", dg);
		if (all && top && oci_digest_valid(top))
			rc = add_child(l, &d, tag, top);
		else
			rc = add_image(l, &d, tag);
		if (rc < 0)
			break;
	}
	json_decref(root);
	return rc == 0 && all ? indexes_whole(l) : rc;
}

int sync_oci_plan_load(struct cache *c, const char *name, int all, struct sync_oci_plan *plan,
		       char **why)
{
	struct load l = {.c = c, .plan = plan};
	struct cache_dataset d;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;
	memset(plan, 0, sizeof *plan);
	*why = NULL;
	if (cache_dataset_get(c, name, &d) != 1) {
		rc = SB_ENOTFOUND;
	} else {
		rc = cache_manifest_get(c, &d.manifest_id, &data, &len) == 1 ? 0 : SB_ENOTFOUND;
		cache_dataset_close(&d);
	}
	if (rc == 0)
		rc = manifest_decode(data, len, &l.m);
	free(data);
	if (rc < 0)
		fail(&l, rc, "dataset %s: its manifest: %s", name, sb_strerror(rc));
	else
		rc = load_index(&l, all);
	manifest_free(l.m);
	if (rc < 0) {
		sync_oci_plan_close(plan);
		*why = l.why;
	} else {
		free(l.why);
	}
	return rc;
}

/* Mount sources. */

static const char *add_repo(struct sync_oci_plan *plan, const char *repo)
{
	for (size_t i = 0; i < plan->nrepos; i++)
		if (!strcmp(plan->repos[i], repo))
			return plan->repos[i];
	plan->repos = xrealloc(plan->repos, (plan->nrepos + 1) * sizeof *plan->repos);
	plan->repos[plan->nrepos] = xstrdup(repo);
	return plan->repos[plan->nrepos++];
}

/* The blobs another destination repository was sent, by its dataset. */
static void known_repo(struct cache *c, const char *name, const char *repo,
		       struct sync_oci_plan *plan)
{
	struct cache_dataset d;
	uint8_t *data = NULL;
	size_t len = 0;
	Manifest *m = NULL;
	if (cache_dataset_get(c, name, &d) != 1)
		return;
	int rc = cache_manifest_get(c, &d.manifest_id, &data, &len) == 1 ? 0 : SB_ENOTFOUND;
	cache_dataset_close(&d);
	if (rc == 0 && manifest_decode(data, len, &m) == 0) {
		for (size_t i = 0; i < plan->nblobs; i++) {
			struct sync_oci_blob *b = &plan->blobs[i];
			char rel[sizeof BLOBS_DIR + OCI_DIGEST_MAX];
			blob_path(b->digest, rel, sizeof rel);
			if (!b->mount_from && manifest_find_regular(m, rel))
				b->mount_from = add_repo(plan, repo);
		}
		manifest_free(m);
	}
	free(data);
}

void sync_oci_plan_mounts(struct cache *c, const struct sync_oci_dest *d, const char *src_repo,
			  struct sync_oci_plan *plan)
{
	if (src_repo && strcmp(src_repo, d->repo)) {
		const char *r = add_repo(plan, src_repo);
		for (size_t i = 0; i < plan->nblobs; i++)
			plan->blobs[i].mount_from = r;
		return;
	}
	char **names = NULL;
	size_t n = 0;
	char *prefix = xasprintf(SYNC_OCI_DEST_PREFIX "oci://%s/", d->registry);
	if (cache_dataset_list(c, &names, &n) < 0)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(names[i], prefix, strlen(prefix)))
			continue;
		const char *repo = names[i] + strlen(prefix);
		if (strcmp(repo, d->repo) && oci_name_repo_valid(repo))
			known_repo(c, names[i], repo, plan);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(prefix);
}

void sync_oci_plan_close(struct sync_oci_plan *plan)
{
	for (size_t i = 0; i < plan->nimages; i++)
		image_close(&plan->images[i]);
	for (size_t i = 0; i < plan->nblobs; i++) {
		free(plan->blobs[i].path);
		oci_push_blob_close(&plan->blobs[i].op);
	}
	for (size_t i = 0; i < plan->nrepos; i++)
		free(plan->repos[i]);
	free(plan->images);
	free(plan->blobs);
	free(plan->repos);
	memset(plan, 0, sizeof *plan);
}
