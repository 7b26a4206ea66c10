/* Manifests: a dataset version as protobuf (proto/manifest.proto). Encoding
 * is canonical (files sorted by path), so the id is the SHA-256 of the
 * encoding. Decoding bounds memory and validates every path and length, so
 * a manifest from the wire cannot make a file land outside its dataset.
 * Pure functions; thread-safe. */
#ifndef SYNCBIT_MANIFEST_H
#define SYNCBIT_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/blockid.h"
#include "common/hash.h"
#include "proto/manifest.pb-c.h"

/* The format new datasets get (formats: common/blockid.h). */
#define MANIFEST_FORMAT	   MANIFEST_FORMAT_PIECES
#define MANIFEST_MAX_BYTES (256u << 20)
#define MANIFEST_MAX_FILES (4u << 20)
#define BLOCK_SIZE_MIN	   (4u << 10)
#define BLOCK_SIZE_MAX	   (256u << 20)
#define BLOCK_SIZE_DEFAULT (4u << 20)

/* The permission bits Syncbit keeps from a source, caches and publishes:
 * never setuid, setgid or sticky. Published files belong to the agent's
 * user, not to the source's owner, so a set-id bit would become root's. */
#define MANIFEST_MODE_MASK 0777u

/* Blocks of one manifest (hardlinks not counted): their hashes take half
 * of MANIFEST_MAX_BYTES, the rest is for paths and the other fields.
 * 16 TiB at 4 MiB blocks, 64 TiB at 16 MiB. */
#define MANIFEST_MAX_BLOCKS (4u << 20)

typedef Syncbit__Manifest Manifest;
typedef Syncbit__FileEntry FileEntry;

/* Number of blocks of a file of `size` bytes. */
uint64_t manifest_nblocks(uint64_t size, uint32_t block_size);
/* The regular file at path in m (its files are sorted by path), or NULL. */
const FileEntry *manifest_find_regular(const Manifest *m, const char *path);
/* Length of block idx of a file of `size` bytes. */
uint32_t manifest_block_len(uint64_t size, uint32_t block_size, uint64_t idx);
/* 0 if block_size is a power of two within [BLOCK_SIZE_MIN, BLOCK_SIZE_MAX]. */
int manifest_check_block_size(uint64_t block_size);

/* Encode m into out (appended) and compute its id. */
void manifest_encode(const Manifest *m, struct buf *out, struct hash_id *id);
/* Decode and validate. Returns 0 with *out owned by the caller
 * (manifest_free), SB_ETOOBIG when len, the decoded size, the files or the
 * blocks pass the limits above,
 * SB_EPROTO for malformed bytes, SB_ECONFINE for a path that escapes. */
int manifest_decode(const uint8_t *data, size_t len, Manifest **out);
void manifest_free(Manifest *m);
/* Validate an in-memory manifest (as decode does). */
int manifest_validate(const Manifest *m);

/* Check the bytes of regular file f, read from fd, against what its source
 * says of the whole content: content_sha256, else a "sha256:" or "git:"
 * source_digest. 0 when they match, SB_ECORRUPT when not, 1 when the
 * source said nothing to check, -errno on a read error. Blocking (pool). */
int manifest_check_content_fd(const FileEntry *f, int fd);

struct source_listing;

/* The manifest of a listing with every block hash unknown (zero): what a
 * version is before any block was read. The entries follow the listing
 * (sorted by path); a hardlink gets its target's zero hashes. Returns 0 with
 * *out owned by the caller (manifest_free), or a negative error with
 * *detail (malloc'd) saying in one line why the listing cannot form one:
 * SB_ECONFINE for an entry that escapes the dataset, SB_ETOOBIG for a
 * manifest over MANIFEST_MAX_BYTES. Call source_listing_check first: the
 * hashes allocated grow with the sizes the listing claims. */
int manifest_from_listing(const struct source_listing *l, const char *canonical,
			  uint32_t block_size, uint32_t format, Manifest **out, char **detail);

/* "Same content, reuse it": the hashes of m's files unchanged since prev.
 * A regular file of m is unchanged when prev has a regular file at the same
 * path with the same size and the same non-empty change token
 * (source_digest), and both are cut at the same block size and named under
 * the same format (common/blockid.h). Each block hash
 * m does not know yet (zero) takes prev's when prev knows it; hardlinks
 * repeat their target's hashes, so m stays valid.
 * Returns the number of hashes taken. */
uint64_t manifest_carry_over(Manifest *m, const Manifest *prev);

/* The content id of a regular file: SHA-256 over size, block size and its
 * block hashes. Equal content cut the same way gives the same id. */
void manifest_file_object_id(uint64_t size, uint32_t block_size, const uint8_t *hashes,
			     size_t nhashes, struct hash_id *out);

#endif
