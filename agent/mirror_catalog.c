/* The catalog of a published oci:// dataset version for the registry
 * mirror. Built on the pool, read on the loop once READY. */
#include "agent/mirror_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/manifest.h"
#include "common/path.h"

/* What a load collects before it is sorted into the catalog. */
struct load {
	struct mirror_cat *cat;
	Manifest *m;
	int dirfd;
	size_t doc_bytes;
};

static int fail(struct load *l, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct load *l, int rc, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(l->cat->error);
	l->cat->error = buf_steal(&b);
	return rc;
}

/* 1 when data (the whole file) has the block hashes e records. */
static int blocks_match(const Manifest *m, const FileEntry *e, const uint8_t *data)
{
	uint64_t n = manifest_nblocks(e->size, m->block_size);
	if (e->block_hashes.len != n * HASH_LEN)
		return 0;
	for (uint64_t i = 0; i < n; i++) {
		struct hash_id h;
		block_id(m->format, data + i * m->block_size,
			 manifest_block_len(e->size, m->block_size, i), &h);
		if (memcmp(h.b, e->block_hashes.data + i * HASH_LEN, HASH_LEN))
			return 0;
	}
	return 1;
}

/* Read rel (at most OCI_DOC_MAX bytes) into out, checked against the
 * version's manifest: the same size and block hashes. */
static int read_verified(struct load *l, const char *rel, struct buf *out)
{
	const FileEntry *e = manifest_find_regular(l->m, rel);
	if (!e)
		return fail(l, SB_ENOTFOUND, "%s is not in the published version", rel);
	if (e->size > OCI_DOC_MAX)
		return fail(l, SB_ETOOBIG, "%s: %llu bytes, more than a document may have", rel,
			    (unsigned long long)e->size);
	int fd = path_open_beneath(l->dirfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(l, fd, "%s/%s: %s", l->cat->dir, rel, sb_strerror(fd));
	buf_reserve(out, (size_t)e->size + 1);
	size_t got = 0;
	ssize_t k = 0;
	while (got <= e->size && (k = read(fd, out->ptr + got, (size_t)e->size + 1 - got)) > 0)
		got += (size_t)k;
	int err = k < 0 ? -errno : 0;
	close(fd);
	if (err < 0)
		return fail(l, err, "%s/%s: %s", l->cat->dir, rel, sb_strerror(err));
	out->len = got;
	if (got != e->size || !blocks_match(l->m, e, out->ptr))
		return fail(l, SB_ECORRUPT, "%s/%s does not match the published version",
			    l->cat->dir, rel);
	return 0;
}

static int add_blob(struct load *l, const struct oci_descriptor *d)
{
	struct mirror_cat *cat = l->cat;
	char rel[sizeof MIRROR_BLOBS_DIR + OCI_DIGEST_MAX];
	if (!oci_name_digest_valid(d->digest))
		return 0;
	snprintf(rel, sizeof rel, MIRROR_BLOBS_DIR "%s", d->digest + strlen("sha256:"));
	const FileEntry *e = manifest_find_regular(l->m, rel);
	if (!e || e->size != d->size)
		return 0; /* not held, or not what the manifest names: never served */
	if (cat->nblobs >= MIRROR_BLOBS_MAX)
		return fail(l, SB_ETOOBIG, "more than %u blobs", MIRROR_BLOBS_MAX);
	cat->blobs = xrealloc(cat->blobs, (cat->nblobs + 1) * sizeof *cat->blobs);
	struct mirror_blob *b = &cat->blobs[cat->nblobs++];
	memset(b, 0, sizeof *b);
	snprintf(b->digest, sizeof b->digest, "%s", d->digest);
	b->size = e->size;
	b->mtime_ns = e->mtime_ns;
	manifest_file_object_id(e->size, l->m->block_size, e->block_hashes.data,
				e->block_hashes.len / HASH_LEN, &b->object);
	return 0;
}

static int add_doc(struct load *l, const struct oci_descriptor *d, int depth);

/* The document's own descriptors: an index's manifests (one level), an
 * image manifest's config and layers. */
static int add_children(struct load *l, const struct oci_manifest *om, int depth)
{
	int rc = 0;
	if (om->is_index) {
		for (size_t i = 0; rc == 0 && i < om->nmanifests && depth == 0; i++)
			rc = add_doc(l, &om->manifests[i], depth + 1);
		return rc;
	}
	rc = add_blob(l, &om->config);
	for (size_t i = 0; rc == 0 && i < om->nlayers; i++)
		rc = add_blob(l, &om->layers[i]);
	return rc;
}

static int add_doc(struct load *l, const struct oci_descriptor *d, int depth)
{
	struct mirror_cat *cat = l->cat;
	char rel[sizeof MIRROR_BLOBS_DIR + OCI_DIGEST_MAX], got[OCI_DIGEST_MAX], *why = NULL;
	if (!oci_name_digest_valid(d->digest) || mirror_cat_doc(cat, d->digest))
		return 0;
	snprintf(rel, sizeof rel, MIRROR_BLOBS_DIR "%s", d->digest + strlen("sha256:"));
	if (depth > 0 && !manifest_find_regular(l->m, rel))
		return 0; /* an index's other platforms are not held */
	struct buf bytes = BUF_INIT;
	int rc = read_verified(l, rel, &bytes);
	if (rc == 0) {
		oci_digest_of(bytes.ptr, bytes.len, got);
		if (strcmp(got, d->digest) || bytes.len != d->size)
			rc = fail(l, SB_ECORRUPT, "%s: %s holds %s", cat->dir, rel, got);
	}
	struct oci_manifest om;
	if (rc == 0 &&
	    (rc = oci_manifest_parse(bytes.ptr, bytes.len, d->media_type, &om, &why)) < 0)
		rc = fail(l, rc, "%s: %s: %s", cat->dir, rel, why ? why : "not a manifest");
	free(why);
	if (rc == 0 && (l->doc_bytes += bytes.len) > MIRROR_DOCS_MAX)
		rc = fail(l, SB_ETOOBIG, "more than %u bytes of manifests", MIRROR_DOCS_MAX);
	if (rc < 0) {
		buf_close(&bytes);
		return rc;
	}
	/* Sorted later; lookups during the load are linear. */
	cat->docs = xrealloc(cat->docs, (cat->ndocs + 1) * sizeof *cat->docs);
	struct mirror_doc *doc = &cat->docs[cat->ndocs++];
	snprintf(doc->digest, sizeof doc->digest, "%s", d->digest);
	snprintf(doc->media_type, sizeof doc->media_type, "%s", om.media_type);
	doc->bytes = bytes;
	rc = add_children(l, &om, depth);
	oci_manifest_close(&om);
	return rc;
}

static int add_tag(struct load *l, const char *tag, const char *digest)
{
	struct mirror_cat *cat = l->cat;
	if (!oci_name_tag_valid(tag))
		return 0;
	for (size_t i = 0; i < cat->ntags; i++)
		if (!strcmp(cat->tags[i].tag, tag))
			return 0; /* the first entry of a tag wins */
	if (cat->ntags >= MIRROR_TAGS_MAX)
		return fail(l, SB_ETOOBIG, "more than %u tags", MIRROR_TAGS_MAX);
	cat->tags = xrealloc(cat->tags, (cat->ntags + 1) * sizeof *cat->tags);
	struct mirror_tag *t = &cat->tags[cat->ntags++];
	snprintf(t->tag, sizeof t->tag, "%s", tag);
	snprintf(t->digest, sizeof t->digest, "%s", digest);
	return 0;
}

/* The registry's document an entry was taken from (OCI_REGISTRY_DIGEST:
 * an image index, a Docker manifest retyped), when the version holds it:
 * it answers for the entry's tag, so d names it after. */
static int add_registry_doc(struct load *l, json_t *ent, struct oci_descriptor *d)
{
	const char *top = json_string_value(
	    json_object_get(json_object_get(ent, "annotations"), OCI_REGISTRY_DIGEST));
	char rel[sizeof MIRROR_BLOBS_DIR + OCI_DIGEST_MAX];
	if (!top || !oci_name_digest_valid(top) || !mirror_cat_doc(l->cat, d->digest))
		return 0;
	snprintf(rel, sizeof rel, MIRROR_BLOBS_DIR "%s", top + strlen("sha256:"));
	const FileEntry *e = manifest_find_regular(l->m, rel);
	if (!e)
		return 0; /* not kept: the entry answers for its tag, as before */
	struct oci_descriptor r = {.size = e->size};
	snprintf(r.digest, sizeof r.digest, "%s", top);
	int rc = add_doc(l, &r, 0);
	if (rc == 0)
		*d = r;
	return rc;
}

/* index.json: every entry's document, and its tag. */
static int load_index(struct load *l)
{
	struct buf idx = BUF_INIT;
	int rc = read_verified(l, MIRROR_INDEX_FILE, &idx);
	json_error_t jerr;
	json_t *root = rc == 0 ? json_loadb((const char *)idx.ptr, idx.len, 0, &jerr) : NULL;
	buf_close(&idx);
	if (rc < 0)
		return rc;
	json_t *list = json_object_get(root, "manifests");
	if (!json_is_array(list)) {
		json_decref(root);
		return fail(l, SB_EPROTO, "%s/%s has no manifests", l->cat->dir, MIRROR_INDEX_FILE);
	}
	size_t i;
	json_t *ent;
	json_array_foreach(list, i, ent)
	{
		struct oci_descriptor d = {0};
		const char *mt = json_string_value(json_object_get(ent, "mediaType"));
		const char *dg = json_string_value(json_object_get(ent, "digest"));
		json_t *size = json_object_get(ent, "size");
		if (!dg || !json_is_integer(size) || json_integer_value(size) < 0)
			continue;
		snprintf(d.media_type, sizeof d.media_type, "%s", mt ? mt : "");
		snprintf(d.digest, sizeof d.digest, "%s", dg);
		d.size = (uint64_t)json_integer_value(size);
		if ((rc = add_doc(l, &d, 0)) < 0 || (rc = add_registry_doc(l, ent, &d)) < 0)
			break;
		const char *tag = json_string_value(
		    json_object_get(json_object_get(ent, "annotations"), OCI_REF_NAME));
		if (tag && mirror_cat_doc(l->cat, d.digest) && (rc = add_tag(l, tag, d.digest)) < 0)
			break;
	}
	json_decref(root);
	return rc;
}

static int cmp_doc(const void *a, const void *b)
{
	return strcmp(((const struct mirror_doc *)a)->digest,
		      ((const struct mirror_doc *)b)->digest);
}

static int cmp_blob(const void *a, const void *b)
{
	return strcmp(((const struct mirror_blob *)a)->digest,
		      ((const struct mirror_blob *)b)->digest);
}

static int cmp_tag(const void *a, const void *b)
{
	return strcmp(((const struct mirror_tag *)a)->tag, ((const struct mirror_tag *)b)->tag);
}

/* Sort for lookups and fold blobs named by several images. */
static void sort_catalog(struct mirror_cat *cat)
{
	qsort(cat->docs, cat->ndocs, sizeof *cat->docs, cmp_doc);
	qsort(cat->tags, cat->ntags, sizeof *cat->tags, cmp_tag);
	qsort(cat->blobs, cat->nblobs, sizeof *cat->blobs, cmp_blob);
	size_t k = 0;
	for (size_t i = 0; i < cat->nblobs; i++)
		if (!k || strcmp(cat->blobs[k - 1].digest, cat->blobs[i].digest))
			cat->blobs[k++] = cat->blobs[i];
	cat->nblobs = k;
}

int mirror_cat_load(struct mirror_cat *cat, const uint8_t *manifest, size_t len)
{
	struct load l = {.cat = cat, .dirfd = -1};
	int rc = manifest_decode(manifest, len, &l.m);
	if (rc < 0)
		return fail(&l, rc, "the published manifest: %s", sb_strerror(rc));
	l.dirfd = open(cat->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (l.dirfd < 0)
		rc = fail(&l, -errno, "%s: %s", cat->dir, sb_strerror(-errno));
	else
		rc = load_index(&l);
	if (l.dirfd >= 0)
		close(l.dirfd);
	manifest_free(l.m);
	if (rc == 0)
		sort_catalog(cat);
	return rc;
}

void mirror_cat_close(struct mirror_cat *cat)
{
	for (size_t i = 0; i < cat->ndocs; i++)
		buf_close(&cat->docs[i].bytes);
	free(cat->docs);
	free(cat->blobs);
	free(cat->tags);
	free(cat->error);
	cat->docs = NULL;
	cat->blobs = NULL;
	cat->tags = NULL;
	cat->error = NULL;
	cat->ndocs = cat->nblobs = cat->ntags = 0;
}

const struct mirror_tag *mirror_cat_tag(const struct mirror_cat *cat, const char *tag)
{
	struct mirror_tag key;
	snprintf(key.tag, sizeof key.tag, "%s", tag);
	return bsearch(&key, cat->tags, cat->ntags, sizeof key, cmp_tag);
}

const struct mirror_doc *mirror_cat_doc(const struct mirror_cat *cat, const char *digest)
{
	if (cat->state != MIRROR_CAT_READY) { /* loading: not sorted yet */
		for (size_t i = 0; i < cat->ndocs; i++)
			if (!strcmp(cat->docs[i].digest, digest))
				return &cat->docs[i];
		return NULL;
	}
	struct mirror_doc key = {0};
	snprintf(key.digest, sizeof key.digest, "%s", digest);
	return bsearch(&key, cat->docs, cat->ndocs, sizeof key, cmp_doc);
}

struct mirror_blob *mirror_cat_blob(struct mirror_cat *cat, const char *digest)
{
	struct mirror_blob key = {0};
	snprintf(key.digest, sizeof key.digest, "%s", digest);
	return bsearch(&key, cat->blobs, cat->nblobs, sizeof key, cmp_blob);
}

int mirror_blob_open(const struct mirror_cat *cat, const char *digest, struct mirror_stat *st)
{
	char rel[sizeof MIRROR_BLOBS_DIR + OCI_DIGEST_MAX];
	struct stat s;
	if (!oci_name_digest_valid(digest))
		return SB_EURI;
	snprintf(rel, sizeof rel, MIRROR_BLOBS_DIR "%s", digest + strlen("sha256:"));
	int dirfd = open(cat->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	int fd = path_open_beneath(dirfd, rel, O_RDONLY | O_CLOEXEC);
	close(dirfd);
	if (fd < 0)
		return fd;
	int rc = fstat(fd, &s) < 0 ? -errno : S_ISREG(s.st_mode) ? 0 : SB_ECORRUPT;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	st->dev = s.st_dev;
	st->ino = s.st_ino;
	st->size = (uint64_t)s.st_size;
	st->mtime_ns = (int64_t)s.st_mtim.tv_sec * 1000000000ll + s.st_mtim.tv_nsec;
	st->ctime_ns = (int64_t)s.st_ctim.tv_sec * 1000000000ll + s.st_ctim.tv_nsec;
	return fd;
}
