#include "common/hash.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>
#include <xxhash.h>

#include "common/err.h"
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

static int hexval(char c)
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
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
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
