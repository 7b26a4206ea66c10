#include "common/manifest.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/source/source.h"

/* Decoded structures may use this many bytes per encoded byte (plus a fixed
 * floor): protobuf-c allocates per field, and an empty repeated message costs
 * far more in memory than on the wire. */
#define DECODE_BUDGET_FACTOR 16
#define DECODE_BUDGET_FLOOR  (1u << 20)

/* Not (size + block_size - 1) / block_size: near 2^64 that sum wraps, and a
 * manifest could then claim an enormous file with no block hashes. */
static int cmp_entry_path(const void *key, const void *elem)
{
	return strcmp(key, (*(FileEntry *const *)elem)->path);
}

const FileEntry *manifest_find_regular(const Manifest *m, const char *path)
{
	FileEntry **e = bsearch(path, m->files, m->n_files, sizeof *m->files, cmp_entry_path);
	return e && (*e)->type == SYNCBIT__FILE_TYPE__FILE_REGULAR ? *e : NULL;
}

uint64_t manifest_nblocks(uint64_t size, uint32_t block_size)
{
	return size / block_size + (size % block_size != 0);
}

uint32_t manifest_block_len(uint64_t size, uint32_t block_size, uint64_t idx)
{
	/* Checked by index first: idx * block_size may wrap. */
	if (idx >= manifest_nblocks(size, block_size))
		return 0;
	uint64_t off = idx * block_size;
	uint64_t left = size - off;
	return left < block_size ? (uint32_t)left : block_size;
}

int manifest_check_block_size(uint64_t bs)
{
	if (bs < BLOCK_SIZE_MIN || bs > BLOCK_SIZE_MAX || (bs & (bs - 1)))
		return SB_EPROTO;
	return 0;
}

void manifest_encode(const Manifest *m, struct buf *out, struct hash_id *id)
{
	size_t n = syncbit__manifest__get_packed_size(m);
	buf_reserve(out, n);
	size_t w = syncbit__manifest__pack(m, out->ptr + out->len);
	if (w != n)
		fatal("manifest pack size mismatch: %zu != %zu", w, n);
	if (id)
		hash_sha256(out->ptr + out->len, n, id);
	out->len += n;
}

struct budget {
	size_t left;
	int refused; /* an allocation did not fit: the reason unpack failed */
};

static void *budget_alloc(void *data, size_t size)
{
	struct budget *b = data;
	size_t need = size + sizeof(size_t);
	if (need < size || need > b->left) {
		b->refused = 1;
		return NULL;
	}
	size_t *p = malloc(need);
	if (!p)
		return NULL;
	b->left -= need;
	p[0] = need;
	return p + 1;
}

static void budget_free(void *data, void *ptr)
{
	struct budget *b = data;
	if (!ptr)
		return;
	size_t *p = (size_t *)ptr - 1;
	b->left += p[0];
	free(p);
}

void manifest_free(Manifest *m)
{
	if (!m)
		return;
	/* Free with the allocator it was decoded with: the budget header is in
	 * front of every block, so a throwaway budget releases it correctly. */
	struct budget b = {SIZE_MAX / 2, 0};
	ProtobufCAllocator a = {budget_alloc, budget_free, &b};
	syncbit__manifest__free_unpacked(m, &a);
}

int manifest_decode(const uint8_t *data, size_t len, Manifest **out)
{
	*out = NULL;
	if (len > MANIFEST_MAX_BYTES)
		return SB_ETOOBIG;
	struct budget b = {len * DECODE_BUDGET_FACTOR + DECODE_BUDGET_FLOOR, 0};
	ProtobufCAllocator a = {budget_alloc, budget_free, &b};
	Manifest *m = syncbit__manifest__unpack(&a, len, data);
	/* Not judged by how much budget is left: a refused request can be
	 * large (protobuf-c's scan slabs, a repeated field's array) while
	 * plenty remains for small ones. */
	if (!m)
		return b.refused ? SB_ETOOBIG : SB_EPROTO;
	int rc = manifest_validate(m);
	if (rc < 0) {
		syncbit__manifest__free_unpacked(m, &a);
		return rc;
	}
	*out = m;
	return 0;
}

/* Index of the entry whose path is exactly the first n bytes of key, by
 * binary search over the sorted files before `limit`; -1 if none. */
static long find_path(const Manifest *m, size_t limit, const char *key, size_t n)
{
	size_t lo = 0, hi = limit;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *p = m->files[mid]->path;
		int c = strncmp(p, key, n);
		if (c == 0 && p[n] != '\0')
			c = 1;
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static int has_non_directory_parent(const Manifest *m, size_t i)
{
	const char *path = m->files[i]->path;
	for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
		long j = find_path(m, i, path, (size_t)(s - path));
		if (j >= 0 && m->files[j]->type != SYNCBIT__FILE_TYPE__FILE_DIRECTORY)
			return 1;
	}
	return 0;
}

int manifest_validate(const Manifest *m)
{
	uint64_t blocks = 0;
	if (m->format != MANIFEST_FORMAT_FLAT && m->format != MANIFEST_FORMAT_PIECES)
		return SB_EPROTO;
	if (manifest_check_block_size(m->block_size) < 0)
		return SB_EPROTO;
	if (m->n_files > MANIFEST_MAX_FILES)
		return SB_ETOOBIG;
	/* Format 1 defines every field, so unknown ones are crafted. protobuf-c
	 * keeps them and re-encodes them, and some it accepts only once: field
	 * number 0 written as a padded varint comes back as a short tag that
	 * it then refuses. */
	if (m->base.n_unknown_fields)
		return SB_EPROTO;
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *f = m->files[i];
		if (f->base.n_unknown_fields)
			return SB_EPROTO;
		if (!f->path || path_check_relative(f->path) < 0)
			return SB_ECONFINE;
		if (i > 0 && strcmp(m->files[i - 1]->path, f->path) >= 0)
			return SB_EPROTO; /* unsorted or duplicate */
		/* No entry may live below a symlink or a regular file: the
		 * publisher would otherwise follow the link. */
		if (has_non_directory_parent(m, i))
			return SB_ECONFINE;
		if (f->mode & ~07777u)
			return SB_EPROTO;
		switch (f->type) {
		case SYNCBIT__FILE_TYPE__FILE_REGULAR: {
			uint64_t nb = manifest_nblocks(f->size, m->block_size);
			if (f->content_sha256.len != 0 && f->content_sha256.len != HASH_LEN)
				return SB_EPROTO;
			if (f->block_hashes.len != nb * HASH_LEN)
				return SB_EPROTO;
			/* Consumers size per-block arrays from this sum. */
			if (!f->hardlink_to && (blocks += nb) > MANIFEST_MAX_BLOCKS)
				return SB_ETOOBIG;
			if (f->hardlink_to) {
				if (f->hardlink_to > i)
					return SB_EPROTO;
				const FileEntry *t = m->files[f->hardlink_to - 1];
				/* Empty files have NULL hashes, which memcmp
				 * must not see even with length 0. */
				if (t->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || t->hardlink_to ||
				    t->size != f->size ||
				    (f->block_hashes.len &&
				     memcmp(t->block_hashes.data, f->block_hashes.data,
					    f->block_hashes.len) != 0))
					return SB_EPROTO;
			}
			break;
		}
		case SYNCBIT__FILE_TYPE__FILE_DIRECTORY:
			if (f->size || f->block_hashes.len || f->hardlink_to ||
			    f->content_sha256.len)
				return SB_EPROTO;
			break;
		case SYNCBIT__FILE_TYPE__FILE_SYMLINK:
			if (!f->link_target || !f->link_target[0] || f->size ||
			    f->block_hashes.len || f->hardlink_to || f->content_sha256.len)
				return SB_EPROTO;
			if (path_check_symlink(f->path, f->link_target) < 0)
				return SB_ECONFINE;
			break;
		default:
			return SB_EPROTO;
		}
	}
	return 0;
}

void manifest_file_object_id(uint64_t size, uint32_t block_size, const uint8_t *hashes,
			     size_t nhashes, struct hash_id *out)
{
	struct sha256_ctx c;
	uint8_t hdr[16] = "syncbit-obj1";
	uint8_t sz[12];
	for (int i = 0; i < 8; i++)
		sz[i] = (uint8_t)(size >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		sz[8 + i] = (uint8_t)(block_size >> (24 - 8 * i));
	sha256_init(&c);
	sha256_update(&c, hdr, sizeof hdr);
	sha256_update(&c, sz, sizeof sz);
	if (nhashes)
		sha256_update(&c, hashes, nhashes * HASH_LEN);
	sha256_final(&c, out);
}

int manifest_check_content_fd(const FileEntry *f, int fd)
{
	return hash_check_content_fd(fd, f->size, f->source_digest,
				     f->content_sha256.len == HASH_LEN ? f->content_sha256.data
								       : NULL);
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

int manifest_from_listing(const struct source_listing *l, const char *canonical,
			  uint32_t block_size, uint32_t format, Manifest **out, char **detail)
{
	Manifest m;
	*out = NULL;
	*detail = NULL;
	syncbit__manifest__init(&m);
	m.format = format;
	m.source = (char *)canonical;
	m.block_size = block_size;
	m.source_version = l->version ? l->version : (char *)"";
	m.n_files = l->nfiles;
	m.files = xcalloc(l->nfiles + 1, sizeof *m.files);
	for (size_t i = 0; i < l->nfiles; i++) {
		m.files[i] = xmalloc(sizeof *m.files[i]);
		build_entry(&l->files[i], block_size, m.files[i]);
	}
	int rc = manifest_validate(&m);
	if (rc < 0) {
		*detail = explain(l);
		free_built(&m);
		return rc;
	}
	/* Encode and decode: the manifest then owns one allocation tree,
	 * independent of the listing. */
	struct buf enc = BUF_INIT;
	manifest_encode(&m, &enc, NULL);
	free_built(&m);
	rc = manifest_decode(enc.ptr, enc.len, out);
	buf_close(&enc);
	if (rc == SB_ETOOBIG)
		*detail =
		    xasprintf("its manifest would be larger than %u bytes", MANIFEST_MAX_BYTES);
	else if (rc < 0)
		*detail =
		    xasprintf("the listing does not form a valid manifest: %s", sb_strerror(rc));
	return rc;
}

static int same_content(const FileEntry *a, const FileEntry *b)
{
	return a->type == SYNCBIT__FILE_TYPE__FILE_REGULAR &&
	       b->type == SYNCBIT__FILE_TYPE__FILE_REGULAR && a->size == b->size &&
	       a->source_digest && b->source_digest && a->source_digest[0] &&
	       !strcmp(a->source_digest, b->source_digest);
}

uint64_t manifest_carry_over(Manifest *m, const Manifest *prev)
{
	uint64_t taken = 0;
	if (!prev || prev->block_size != m->block_size || prev->format != m->format)
		return 0;
	size_t j = 0;
	for (size_t i = 0; i < m->n_files; i++) {
		FileEntry *e = m->files[i];
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || e->hardlink_to ||
		    !e->block_hashes.len)
			continue;
		while (j < prev->n_files && strcmp(prev->files[j]->path, e->path) < 0)
			j++;
		if (j >= prev->n_files)
			break;
		const FileEntry *pe = prev->files[j];
		if (strcmp(pe->path, e->path) != 0 || !same_content(e, pe) ||
		    pe->block_hashes.len != e->block_hashes.len)
			continue;
		for (size_t k = 0; k < e->block_hashes.len; k += HASH_LEN) {
			uint8_t *h = e->block_hashes.data + k;
			const uint8_t *ph = pe->block_hashes.data + k;
			if (hash_is_zero((const struct hash_id *)h) &&
			    !hash_is_zero((const struct hash_id *)ph)) {
				memcpy(h, ph, HASH_LEN);
				taken++;
			}
		}
	}
	for (size_t i = 0; taken && i < m->n_files; i++) { /* hardlinks repeat their target */
		FileEntry *e = m->files[i];
		if (e->type == SYNCBIT__FILE_TYPE__FILE_REGULAR && e->hardlink_to &&
		    e->block_hashes.len)
			memcpy(e->block_hashes.data,
			       m->files[e->hardlink_to - 1]->block_hashes.data,
			       e->block_hashes.len);
	}
	return taken;
}
