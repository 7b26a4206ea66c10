/* Block ids. A block is named by a SHA-256 that depends on its manifest's
 * format (proto/manifest.proto):
 *   format 1  the SHA-256 of the block's bytes;
 *   format 2  the block is cut into pieces of PIECE_SIZE bytes (the last
 *             one shorter); a block of one piece is named as in format 1,
 *             a longer one by the SHA-256 of its pieces' SHA-256s in order.
 * Under format 2 the piece hashes, checked once against the block id, let a
 * receiver verify every piece as it arrives. With one fixed piece size an id
 * and a length name at most one content under either format: a block of more
 * than one piece is longer than PIECE_SIZE, while the piece list hashed for
 * its id is at most 32 × BLOCK_SIZE_MAX / PIECE_SIZE (32 KiB) long, so no
 * format 1 block of that length can share the id. Thread-safe. */
#ifndef SYNCBIT_BLOCKID_H
#define SYNCBIT_BLOCKID_H

#include <stddef.h>
#include <stdint.h>

#include "common/hash.h"

#define MANIFEST_FORMAT_FLAT   1
#define MANIFEST_FORMAT_PIECES 2
#define PIECE_SIZE	       (256u << 10)

/* Pieces of a block of len bytes (at least 1). */
static inline uint32_t block_npieces(uint64_t len)
{
	return len <= PIECE_SIZE ? 1 : (uint32_t)((len + PIECE_SIZE - 1) / PIECE_SIZE);
}

/* The id of data (len bytes) as a block of a manifest of format format. */
void block_id(uint32_t format, const void *data, size_t len, struct hash_id *out);
/* Piece hashes of data: block_npieces(len) × HASH_LEN bytes into leaves. */
void block_piece_hashes(const void *data, size_t len, uint8_t *leaves);
/* The format 2 id of a block whose n piece hashes are leaves. */
void block_id_of_pieces(const uint8_t *leaves, uint32_t n, struct hash_id *out);
/* 1 when data is the block named id under either format (a check of a
 * cached block, which is filed by id alone), else 0. */
int block_id_matches(const void *data, size_t len, const struct hash_id *id);

/* A block's id over bytes given in any number of parts. */
struct block_hasher {
	uint32_t format;
	uint64_t len;	  /* bytes so far */
	uint32_t fill;	  /* of the current piece (format 2) */
	uint32_t npieces; /* finished */
	uint8_t *leaves;  /* finished pieces' hashes (format 2) */
	uint32_t cap;
	struct sha256_ctx ctx;
};

void block_hasher_init(struct block_hasher *bh, uint32_t format);
void block_hasher_update(struct block_hasher *bh, const void *data, size_t len);
/* The id; releases the hasher. */
void block_hasher_final(struct block_hasher *bh, struct hash_id *out);
/* Releases the hasher without an id. */
void block_hasher_close(struct block_hasher *bh);

#endif
