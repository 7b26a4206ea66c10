/* Dataset versions as the scheduler holds them: the manifest of one source
 * listing, named by its listing id (the SHA-256 of the manifest encoded with
 * every block_hashes field empty), whose block hashes fill in as nodes read
 * blocks from the origin. Unknown hashes are 32 zero bytes, so the manifest
 * is always well-formed. Blocks are numbered across the regular files that
 * are not hardlinks, in manifest order. Not thread-safe: one owner. */
#ifndef SYNCBIT_SCHED_VERSION_H
#define SYNCBIT_SCHED_VERSION_H

#include <stddef.h>
#include <stdint.h>

#include "common/hash.h"
#include "common/manifest.h"
#include "common/source/source.h"

struct version_file {
	size_t file;	  /* index in the manifest */
	uint32_t first;	  /* first block of the file in the version */
	uint32_t nblocks; /* blocks of the file */
};

struct sched_version {
	struct hash_id id; /* listing id */
	Manifest *m;	   /* owned (manifest_free); unknown hashes are zero */
	uint32_t nblocks;
	uint32_t nknown;
	uint8_t *known;		    /* bitmap of blocks whose hash is known, LSB first */
	struct version_file *index; /* regular non-hardlink files with blocks, ascending */
	size_t nindex;
	uint64_t files; /* regular files, hardlinks included */
	uint64_t bytes; /* their sizes */
	int has_links;	/* some regular file is a hardlink */
	int complete;	/* every hash known; manifest_id is set */
	struct hash_id manifest_id;
};

/* Build a version from a source listing (files sorted by path, as the
 * sources give them). All hashes are unknown. 0; SB_ECONFINE or SB_EPROTO
 * with *detail (heap, one line) naming the entry that cannot be held;
 * SB_ETOOBIG with *detail when it has more files or blocks than a manifest
 * holds (checked before anything per block is allocated). */
int version_from_listing(const struct source_listing *l, const char *canonical, uint32_t block_size,
			 uint32_t format, struct sched_version **out, char **detail);
/* Decode a stored or received manifest (hashes may be partly known). 0, or
 * the errors of manifest_decode. */
int version_from_manifest(const uint8_t *data, size_t len, struct sched_version **out);
void version_free(struct sched_version *v);

/* The listing id of m: SHA-256 of m encoded without block hashes. */
void version_listing_id(const Manifest *m, struct hash_id *out);
/* Encode the manifest as it stands (unknown hashes zero), appended to out. */
void version_encode(const struct sched_version *v, struct buf *out);

/* Record the hash of block b. 1 when it is new, 0 when the same hash was
 * known, SB_ECORRUPT when another hash is known (the first one stays),
 * SB_EPROTO when b is out of range or hash is all zeros. Call
 * version_settle() after a batch. */
int version_set_hash(struct sched_version *v, uint32_t b, const uint8_t *hash);
/* After hashes were set: copy them into hardlink entries and, when every
 * hash is known, compute manifest_id and set complete. 1 when this call
 * completed the version, else 0. */
int version_settle(struct sched_version *v);
/* The 32-byte hash of block b (zeros when unknown), NULL when out of range. */
const uint8_t *version_block_hash(const struct sched_version *v, uint32_t b);
/* Index entry of the file holding block b, NULL when out of range. */
const struct version_file *version_block_file(const struct sched_version *v, uint32_t b);
/* Bytes of block b (0 when out of range). */
uint32_t version_block_len(const struct sched_version *v, uint32_t b);

/* Take every hash prev knows for files whose path, size and source digest
 * are unchanged (and non-empty digest), when the block sizes match. Returns
 * the number of hashes taken; version_settle() has run. */
uint32_t version_carry_over(struct sched_version *v, const struct sched_version *prev);

#endif
