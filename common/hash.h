/* Hashing: SHA-256 (OpenSSL, SHA-NI where the CPU has it) for block and
 * manifest ids, which an adversary may choose; XXH3 for local-only keys.
 * Thread-safe. */
#ifndef SYNCBIT_HASH_H
#define SYNCBIT_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HASH_LEN     32
#define HASH_HEX_LEN (2 * HASH_LEN)

struct hash_id {
	uint8_t b[HASH_LEN];
};

struct sha256_ctx {
	void *evp; /* EVP_MD_CTX */
};

void hash_sha256(const void *data, size_t len, struct hash_id *out);
void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, size_t len);
/* Writes the digest and releases the context. */
void sha256_final(struct sha256_ctx *c, struct hash_id *out);
/* Releases a context without producing a digest. */
void sha256_close(struct sha256_ctx *c);

/* Lower-case hex; out must hold HASH_HEX_LEN + 1 bytes. */
void hash_to_hex(const struct hash_id *h, char *out);
/* The value of one hex digit (either case), or -1 when c is none. */
int hash_hexval(int c);
/* 0, or SB_EPROTO if hex is not 64 hex digits. */
int hash_from_hex(const char *hex, struct hash_id *out);
int hash_is_zero(const struct hash_id *h);
uint64_t hash_xxh64(const void *data, size_t len);

/* Check size bytes of fd from offset 0 against a source's whole-file
 * digest: "sha256:<64 hex>" (Hugging Face LFS, OCI blobs) or "git:<40 hex>"
 * (a git blob id: SHA-1 of "blob <size>\0" and the content). 0 when it
 * matches, SB_ECORRUPT when not, 1 when the digest is of another kind and
 * says nothing about the bytes, -errno on a read error. Blocking (pool). */
int hash_check_digest_fd(int fd, uint64_t size, const char *digest);
/* The same check against whatever the source says of a whole file: sha256
 * (HASH_LEN bytes: the content's SHA-256, e.g. an S3 full-object checksum)
 * when not NULL, else digest. Returns as hash_check_digest_fd. */
int hash_check_content_fd(int fd, uint64_t size, const char *digest, const uint8_t *sha256);

/* The first 8 bytes of a digest as a number: a table key for ids that are
 * already uniform (block hashes, version ids). */
static inline uint64_t hash_key64(const uint8_t *id)
{
	uint64_t k;
	memcpy(&k, id, sizeof k);
	return k;
}

#endif
