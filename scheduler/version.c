#include "scheduler/version.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "scheduler/assign.h"

static const uint8_t zero_hash[HASH_LEN];

/* Build the block index and the known bitmap from the manifest's hashes. */
static int index_version(struct sched_version *v)
{
	const Manifest *m = v->m;
	uint64_t total = 0;
	v->index = xcalloc(m->n_files + 1, sizeof *v->index);
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *e = m->files[i];
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR)
			continue;
		v->files++;
		v->bytes += e->size;
		if (e->hardlink_to) {
			v->has_links = 1;
			continue;
		}
		uint64_t nb = manifest_nblocks(e->size, m->block_size);
		if (nb == 0)
			continue;
		if (total + nb > UINT32_MAX)
			return SB_ETOOBIG;
		v->index[v->nindex++] = (struct version_file){i, (uint32_t)total, (uint32_t)nb};
		total += nb;
	}
	v->nblocks = (uint32_t)total;
	v->known = xcalloc(total / 8 + 1, 1);
	for (uint32_t b = 0; b < v->nblocks; b++) {
		if (memcmp(version_block_hash(v, b), zero_hash, HASH_LEN) != 0) {
			assign_set_bit(v->known, b);
			v->nknown++;
		}
	}
	return 0;
}

int version_from_manifest(const uint8_t *data, size_t len, struct sched_version **out)
{
	struct sched_version *v = xcalloc(1, sizeof *v);
	int rc = manifest_decode(data, len, &v->m);
	*out = NULL;
	if (rc == 0)
		rc = index_version(v);
	if (rc < 0) {
		version_free(v);
		return rc;
	}
	version_listing_id(v->m, &v->id);
	version_settle(v);
	*out = v;
	return 0;
}

void version_free(struct sched_version *v)
{
	if (!v)
		return;
	manifest_free(v->m);
	free(v->index);
	free(v->known);
	free(v);
}

void version_listing_id(const Manifest *m, struct hash_id *out)
{
	Manifest copy = *m;
	FileEntry *entries = xcalloc(m->n_files + 1, sizeof *entries);
	FileEntry **ptrs = xcalloc(m->n_files + 1, sizeof *ptrs);
	for (size_t i = 0; i < m->n_files; i++) {
		entries[i] = *m->files[i];
		entries[i].block_hashes.data = NULL;
		entries[i].block_hashes.len = 0;
		ptrs[i] = &entries[i];
	}
	copy.files = ptrs;
	struct buf b = BUF_INIT;
	manifest_encode(&copy, &b, out);
	buf_close(&b);
	free(ptrs);
	free(entries);
}

void version_encode(const struct sched_version *v, struct buf *out)
{
	manifest_encode(v->m, out, NULL);
}

static void free_built(Manifest *m)
{
	for (size_t i = 0; i < m->n_files; i++) {
		free(m->files[i]->block_hashes.data);
		free(m->files[i]);
	}
	free(m->files);
}

static void build_entry(const struct source_file *f, uint32_t block_size, FileEntry *e)
{
	syncbit__file_entry__init(e);
	e->path = f->path;
	e->type = (Syncbit__FileType)f->type;
	e->mode = f->mode;
	e->mtime_ns = f->mtime_ns;
	e->source_digest = f->digest ? f->digest : (char *)"";
	if (f->type == SRC_SYMLINK)
		e->link_target = f->link_target;
	if (f->type == SRC_REGULAR) {
		uint64_t nb = manifest_nblocks(f->size, block_size);
		e->size = f->size;
		e->hardlink_to = f->hardlink_to;
		if (f->has_content_sha256) {
			e->content_sha256.data = (uint8_t *)f->content_sha256;
			e->content_sha256.len = HASH_LEN;
		}
		if (nb) {
			e->block_hashes.len = nb * HASH_LEN;
			e->block_hashes.data = xcalloc(nb, HASH_LEN);
		}
	}
}

/* A one-line reason for the first entry the manifest cannot hold. */
static char *explain(const struct source_listing *l)
{
	for (size_t i = 0; i < l->nfiles; i++) {
		const struct source_file *f = &l->files[i];
		if (path_check_relative(f->path) < 0)
			return xasprintf("entry '%s' escapes the dataset directory", f->path);
		if (f->type == SRC_SYMLINK && path_check_symlink(f->path, f->link_target) < 0)
			return xasprintf("symlink %s -> %s escapes the dataset directory", f->path,
					 f->link_target ? f->link_target : "");
	}
	return xstrdup("the listing does not form a valid manifest");
}

int version_from_listing(const struct source_listing *l, const char *canonical, uint32_t block_size,
			 struct sched_version **out, char **detail)
{
	Manifest m;
	*out = NULL;
	*detail = NULL;
	/* Before the hashes are allocated: they grow with the sizes claimed. */
	int rc = source_listing_check(l, NULL, block_size, NULL, detail);
	if (rc < 0)
		return rc;
	syncbit__manifest__init(&m);
	m.format = MANIFEST_FORMAT;
	m.source = (char *)canonical;
	m.block_size = block_size;
	m.source_version = l->version ? l->version : (char *)"";
	m.n_files = l->nfiles;
	m.files = xcalloc(l->nfiles + 1, sizeof *m.files);
	for (size_t i = 0; i < l->nfiles; i++) {
		m.files[i] = xmalloc(sizeof *m.files[i]);
		build_entry(&l->files[i], block_size, m.files[i]);
	}
	rc = manifest_validate(&m);
	if (rc < 0) {
		*detail = explain(l);
		free_built(&m);
		return rc;
	}
	/* Encode and decode: the version then owns one allocation tree. */
	struct buf enc = BUF_INIT;
	manifest_encode(&m, &enc, NULL);
	free_built(&m);
	rc = version_from_manifest(enc.ptr, enc.len, out);
	buf_close(&enc);
	if (rc == SB_ETOOBIG)
		*detail =
		    xasprintf("its manifest would be larger than %u bytes", MANIFEST_MAX_BYTES);
	else if (rc < 0)
		*detail =
		    xasprintf("the listing does not form a valid manifest: %s", sb_strerror(rc));
	return rc;
}

const struct version_file *version_block_file(const struct sched_version *v, uint32_t b)
{
	if (b >= v->nblocks)
		return NULL;
	size_t lo = 0, hi = v->nindex;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->index[mid].first <= b)
			lo = mid;
		else
			hi = mid;
	}
	return &v->index[lo];
}

const uint8_t *version_block_hash(const struct sched_version *v, uint32_t b)
{
	const struct version_file *f = version_block_file(v, b);
	if (!f)
		return NULL;
	return v->m->files[f->file]->block_hashes.data + (size_t)(b - f->first) * HASH_LEN;
}

uint32_t version_block_len(const struct sched_version *v, uint32_t b)
{
	const struct version_file *f = version_block_file(v, b);
	if (!f)
		return 0;
	return manifest_block_len(v->m->files[f->file]->size, v->m->block_size, b - f->first);
}

int version_set_hash(struct sched_version *v, uint32_t b, const uint8_t *hash)
{
	uint8_t *h = (uint8_t *)version_block_hash(v, b);
	if (!h || !memcmp(hash, zero_hash, HASH_LEN))
		return SB_EPROTO;
	if (assign_bit(v->known, b))
		return memcmp(h, hash, HASH_LEN) ? SB_ECORRUPT : 0;
	memcpy(h, hash, HASH_LEN);
	assign_set_bit(v->known, b);
	v->nknown++;
	return 1;
}

int version_settle(struct sched_version *v)
{
	if (v->has_links) {
		for (size_t i = 0; i < v->m->n_files; i++) {
			FileEntry *e = v->m->files[i];
			if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || !e->hardlink_to ||
			    !e->block_hashes.len)
				continue;
			const FileEntry *t = v->m->files[e->hardlink_to - 1];
			memcpy(e->block_hashes.data, t->block_hashes.data, e->block_hashes.len);
		}
	}
	if (v->complete || v->nknown < v->nblocks)
		return 0;
	struct buf b = BUF_INIT;
	manifest_encode(v->m, &b, &v->manifest_id);
	buf_close(&b);
	v->complete = 1;
	return 1;
}

static int same_content(const FileEntry *a, const FileEntry *b)
{
	return a->type == SYNCBIT__FILE_TYPE__FILE_REGULAR &&
	       b->type == SYNCBIT__FILE_TYPE__FILE_REGULAR && a->size == b->size &&
	       a->source_digest && b->source_digest && a->source_digest[0] &&
	       !strcmp(a->source_digest, b->source_digest);
}

uint32_t version_carry_over(struct sched_version *v, const struct sched_version *prev)
{
	uint32_t taken = 0;
	if (!prev || prev->m->block_size != v->m->block_size)
		return 0;
	const Manifest *pm = prev->m;
	size_t j = 0;
	for (size_t k = 0; k < v->nindex; k++) {
		const struct version_file *vf = &v->index[k];
		const FileEntry *e = v->m->files[vf->file];
		while (j < pm->n_files && strcmp(pm->files[j]->path, e->path) < 0)
			j++;
		if (j >= pm->n_files)
			break;
		const FileEntry *pe = pm->files[j];
		if (strcmp(pe->path, e->path) != 0 || !same_content(e, pe))
			continue;
		for (uint32_t i = 0; i < vf->nblocks; i++) {
			const uint8_t *h = pe->block_hashes.data + (size_t)i * HASH_LEN;
			if (memcmp(h, zero_hash, HASH_LEN) != 0 &&
			    version_set_hash(v, vf->first + i, h) == 1)
				taken++;
		}
	}
	version_settle(v);
	return taken;
}
