#include "common/blockid.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

void block_piece_hashes(const void *data, size_t len, uint8_t *leaves)
{
	const uint8_t *p = data;
	uint32_t n = block_npieces(len);
	for (uint32_t i = 0; i < n; i++) {
		size_t off = (size_t)i * PIECE_SIZE;
		size_t plen = len - off < PIECE_SIZE ? len - off : PIECE_SIZE;
		hash_sha256(p + off, plen, (struct hash_id *)(leaves + (size_t)i * HASH_LEN));
	}
}

void block_id_of_pieces(const uint8_t *leaves, uint32_t n, struct hash_id *out)
{
	if (n == 1)
		memcpy(out->b, leaves, HASH_LEN);
	else
		hash_sha256(leaves, (size_t)n * HASH_LEN, out);
}

void block_id(uint32_t format, const void *data, size_t len, struct hash_id *out)
{
	if (format != MANIFEST_FORMAT_PIECES || len <= PIECE_SIZE) {
		hash_sha256(data, len, out);
		return;
	}
	uint32_t n = block_npieces(len);
	uint8_t *leaves = xmalloc((size_t)n * HASH_LEN);
	block_piece_hashes(data, len, leaves);
	block_id_of_pieces(leaves, n, out);
	free(leaves);
}

int block_id_matches(const void *data, size_t len, const struct hash_id *id)
{
	struct hash_id h;
	if (len > PIECE_SIZE) {
		block_id(MANIFEST_FORMAT_PIECES, data, len, &h);
		if (!memcmp(h.b, id->b, HASH_LEN))
			return 1;
	}
	hash_sha256(data, len, &h);
	return !memcmp(h.b, id->b, HASH_LEN);
}

void block_hasher_init(struct block_hasher *bh, uint32_t format)
{
	memset(bh, 0, sizeof *bh);
	bh->format = format;
	sha256_init(&bh->ctx);
}

static void end_piece(struct block_hasher *bh)
{
	if (bh->npieces == bh->cap) {
		bh->cap = bh->cap ? 2 * bh->cap : 16;
		bh->leaves = xrealloc(bh->leaves, (size_t)bh->cap * HASH_LEN);
	}
	sha256_final(&bh->ctx, (struct hash_id *)(bh->leaves + (size_t)bh->npieces * HASH_LEN));
	bh->npieces++;
	bh->fill = 0;
	sha256_init(&bh->ctx);
}

void block_hasher_update(struct block_hasher *bh, const void *data, size_t len)
{
	const uint8_t *p = data;
	bh->len += len;
	if (bh->format != MANIFEST_FORMAT_PIECES) {
		sha256_update(&bh->ctx, p, len);
		return;
	}
	while (len) {
		if (bh->fill == PIECE_SIZE) /* a piece ends only when more follows */
			end_piece(bh);
		size_t take = PIECE_SIZE - bh->fill < len ? PIECE_SIZE - bh->fill : len;
		sha256_update(&bh->ctx, p, take);
		bh->fill += (uint32_t)take;
		p += take;
		len -= take;
	}
}

void block_hasher_final(struct block_hasher *bh, struct hash_id *out)
{
	if (bh->format != MANIFEST_FORMAT_PIECES || bh->npieces == 0) {
		sha256_final(&bh->ctx, out); /* one piece: named as in format 1 */
	} else {
		end_piece(bh);
		sha256_close(&bh->ctx);
		block_id_of_pieces(bh->leaves, bh->npieces, out);
	}
	block_hasher_close(bh);
}

void block_hasher_close(struct block_hasher *bh)
{
	if (bh->ctx.evp)
		sha256_close(&bh->ctx);
	free(bh->leaves);
	bh->leaves = NULL;
	bh->cap = bh->npieces = 0;
}
