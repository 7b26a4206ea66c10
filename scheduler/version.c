#include "scheduler/version.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
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

/* A version of manifest m (taken over), or NULL on an error. */
static int adopt(Manifest *m, struct sched_version **out)
{
	struct sched_version *v = xcalloc(1, sizeof *v);
	v->m = m;
	int rc = index_version(v);
	if (rc < 0) {
		version_free(v);
		return rc;
	}
	version_listing_id(v->m, &v->id);
	version_settle(v);
	*out = v;
	return 0;
}

int version_from_manifest(const uint8_t *data, size_t len, struct sched_version **out)
{
	Manifest *m;
	*out = NULL;
	int rc = manifest_decode(data, len, &m);
	return rc < 0 ? rc : adopt(m, out);
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

int version_from_listing(const struct source_listing *l, const char *canonical, uint32_t block_size,
			 uint32_t format, struct sched_version **out, char **detail)
{
	*out = NULL;
	*detail = NULL;
	/* Before the hashes are allocated: they grow with the sizes claimed. */
	int rc = source_listing_check(l, NULL, block_size, NULL, detail);
	if (rc < 0)
		return rc;
	Manifest *m;
	rc = manifest_from_listing(l, canonical, block_size, format, &m, detail);
	if (rc == 0 && (rc = adopt(m, out)) < 0)
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

uint32_t version_carry_over(struct sched_version *v, const struct sched_version *prev)
{
	if (!prev || !manifest_carry_over(v->m, prev->m))
		return 0;
	/* The known bitmap follows the hashes taken. */
	uint32_t taken = 0;
	for (uint32_t b = 0; b < v->nblocks; b++) {
		if (assign_bit(v->known, b) ||
		    !memcmp(version_block_hash(v, b), zero_hash, HASH_LEN))
			continue;
		assign_set_bit(v->known, b);
		v->nknown++;
		taken++;
	}
	version_settle(v);
	return taken;
}
