#include "common/hash.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/err.h"
#include "common/io.h"
#include "common/log.h"

void hash_sha256(const void *data, size_t len, struct hash_id *out)
{
	SHA256(data, len, out->b);
}

void sha256_init(struct sha256_ctx *c)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	if (!m || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1)
		fatal("cannot initialize SHA-256");
	c->evp = m;
}

void sha256_update(struct sha256_ctx *c, const void *data, size_t len)
{
	if (EVP_DigestUpdate(c->evp, data, len) != 1)
		fatal("SHA-256 update failed");
}

void sha256_final(struct sha256_ctx *c, struct hash_id *out)
{
	unsigned n = 0;
	if (EVP_DigestFinal_ex(c->evp, out->b, &n) != 1 || n != HASH_LEN)
		fatal("SHA-256 final failed");
	sha256_close(c);
}

void sha256_close(struct sha256_ctx *c)
{
	EVP_MD_CTX_free(c->evp);
	c->evp = NULL;
}

void hash_to_hex(const struct hash_id *h, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < HASH_LEN; i++) {
		out[2 * i] = digits[h->b[i] >> 4];
		out[2 * i + 1] = digits[h->b[i] & 15];
	}
	out[HASH_HEX_LEN] = '\0';
}

int hash_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hash_from_hex(const char *hex, struct hash_id *out)
{
	if (strlen(hex) != HASH_HEX_LEN)
		return SB_EPROTO;
	for (int i = 0; i < HASH_LEN; i++) {
		int hi = hash_hexval(hex[2 * i]), lo = hash_hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return SB_EPROTO;
		out->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int hash_is_zero(const struct hash_id *h)
{
	static const struct hash_id zero;
	return memcmp(h, &zero, sizeof zero) == 0;
}

uint64_t hash_xxh64(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

#define DIGEST_CHUNK (1u << 20)

static int hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
	if (strlen(hex) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char ch = hex[2 * i + (size_t)k];
			int d = ch >= '0' && ch <= '9'	 ? ch - '0'
				: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
				: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
							 : -1;
			if (d < 0)
				return -1;
			v = v << 4 | (unsigned)d;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

int hash_check_digest_fd(int fd, uint64_t size, const char *digest)
{
	const EVP_MD *md;
	uint8_t want[EVP_MAX_MD_SIZE], got[EVP_MAX_MD_SIZE];
	size_t n;
	if (digest && !strncmp(digest, "sha256:", 7)) {
		md = EVP_sha256();
		n = 32;
		digest += 7;
	} else if (digest && !strncmp(digest, "git:", 4)) {
		md = EVP_sha1();
		n = 20;
		digest += 4;
	} else {
		return 1;
	}
	if (hex_to_bytes(digest, want, n) < 0)
		return 1;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	uint8_t *buf = malloc(DIGEST_CHUNK);
	if (!m || !buf || EVP_DigestInit_ex(m, md, NULL) != 1)
		fatal("out of memory starting a digest");
	if (n == 20) { /* git hashes a header before the content */
		char hdr[64];
		int len = snprintf(hdr, sizeof hdr, "blob %llu", (unsigned long long)size);
		EVP_DigestUpdate(m, hdr, (size_t)len + 1);
	}
	int rc = 0;
	uint64_t off = 0;
	while (off < size && rc == 0) {
		size_t want_n = size - off < DIGEST_CHUNK ? (size_t)(size - off) : DIGEST_CHUNK;
		rc = io_pread_full(fd, buf, want_n, off);
		if (rc == 0 && EVP_DigestUpdate(m, buf, want_n) != 1)
			rc = SB_ECORRUPT;
		off += want_n;
	}
	unsigned outlen = 0;
	if (rc == 0 && (EVP_DigestFinal_ex(m, got, &outlen) != 1 || outlen != n))
		rc = SB_ECORRUPT;
	if (rc == 0 && memcmp(got, want, n) != 0)
		rc = SB_ECORRUPT;
	EVP_MD_CTX_free(m);
	free(buf);
	return rc;
}

int hash_check_content_fd(int fd, uint64_t size, const char *digest, const uint8_t *sha256)
{
	if (!sha256)
		return hash_check_digest_fd(fd, size, digest);
	char want[7 + HASH_HEX_LEN + 1] = "sha256:";
	hash_to_hex((const struct hash_id *)sha256, want + 7);
	return hash_check_digest_fd(fd, size, want);
}
