#include "common/net/noise.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

#define BLOCK_LEN     128 /* BLAKE2b's, for HMAC */
#define NONCE_LEN     crypto_aead_chacha20poly1305_ietf_NPUBBYTES
#define TOKENS_MAX    4
#define MESSAGES_MAX  3
#define NONCE_MAXIMUM UINT64_MAX /* reserved by the specification */

enum token { T_END, T_E, T_S, T_EE, T_ES, T_SE, T_SS, T_PSK };

struct pattern {
	const char *name;
	int psk;
	unsigned nmessages;
	enum token msgs[MESSAGES_MAX][TOKENS_MAX + 1];
};

static const struct pattern patterns[] = {
    [NOISE_XX] = {"Noise_XX_25519_ChaChaPoly_BLAKE2b",
		  0,
		  3,
		  {{T_E}, {T_E, T_EE, T_S, T_ES}, {T_S, T_SE}}},
    [NOISE_XXPSK3] = {"Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b",
		      1,
		      3,
		      {{T_E}, {T_E, T_EE, T_S, T_ES}, {T_S, T_SE, T_PSK}}},
};

static void sodium_ready(void)
{
	if (sodium_init() < 0)
		fatal("libsodium failed to initialise");
}

const char *noise_protocol_name(enum noise_pattern p)
{
	return patterns[p].name;
}

void noise_public_key(const uint8_t priv[NOISE_DH_LEN], uint8_t pub[NOISE_DH_LEN])
{
	sodium_ready();
	if (crypto_scalarmult_base(pub, priv) != 0)
		fatal("X25519 public key failed");
}

void noise_keypair(uint8_t priv[NOISE_DH_LEN], uint8_t pub[NOISE_DH_LEN])
{
	sodium_ready();
	randombytes_buf(priv, NOISE_DH_LEN);
	noise_public_key(priv, pub);
}

/* ---- hash functions (section 4.3) ---- */

/* HMAC-BLAKE2b (RFC 2104) of d1 || d2; key is at most BLOCK_LEN bytes. */
static void hmac(const uint8_t *key, size_t klen, const uint8_t *d1, size_t n1, const uint8_t *d2,
		 size_t n2, uint8_t out[NOISE_HASH_LEN])
{
	uint8_t pad[BLOCK_LEN], inner[NOISE_HASH_LEN];
	crypto_generichash_blake2b_state st;

	memset(pad, 0, sizeof pad);
	memcpy(pad, key, klen);
	for (size_t i = 0; i < BLOCK_LEN; i++)
		pad[i] ^= 0x36;
	crypto_generichash_blake2b_init(&st, NULL, 0, NOISE_HASH_LEN);
	crypto_generichash_blake2b_update(&st, pad, BLOCK_LEN);
	crypto_generichash_blake2b_update(&st, d1, n1);
	crypto_generichash_blake2b_update(&st, d2, n2);
	crypto_generichash_blake2b_final(&st, inner, NOISE_HASH_LEN);
	for (size_t i = 0; i < BLOCK_LEN; i++)
		pad[i] ^= 0x36 ^ 0x5c;
	crypto_generichash_blake2b_init(&st, NULL, 0, NOISE_HASH_LEN);
	crypto_generichash_blake2b_update(&st, pad, BLOCK_LEN);
	crypto_generichash_blake2b_update(&st, inner, NOISE_HASH_LEN);
	crypto_generichash_blake2b_final(&st, out, NOISE_HASH_LEN);
	sodium_memzero(pad, sizeof pad);
	sodium_memzero(inner, sizeof inner);
	sodium_memzero(&st, sizeof st);
}

/* HKDF(chaining_key, input_key_material, n): n of out1..out3 (out3 may be
 * NULL for two outputs). */
static void hkdf(const uint8_t ck[NOISE_HASH_LEN], const uint8_t *ikm, size_t ikm_len,
		 uint8_t out1[NOISE_HASH_LEN], uint8_t out2[NOISE_HASH_LEN],
		 uint8_t out3[NOISE_HASH_LEN])
{
	uint8_t temp[NOISE_HASH_LEN], b;

	hmac(ck, NOISE_HASH_LEN, ikm, ikm_len, NULL, 0, temp);
	b = 1;
	hmac(temp, sizeof temp, &b, 1, NULL, 0, out1);
	b = 2;
	hmac(temp, sizeof temp, out1, NOISE_HASH_LEN, &b, 1, out2);
	if (out3) {
		b = 3;
		hmac(temp, sizeof temp, out2, NOISE_HASH_LEN, &b, 1, out3);
	}
	sodium_memzero(temp, sizeof temp);
}

/* ---- CipherState (section 5.1) ---- */

static void cipher_init(struct noise_cipher *c, const uint8_t *k)
{
	memset(c, 0, sizeof *c);
	if (k) {
		memcpy(c->k, k, NOISE_KEY_LEN);
		c->has_key = 1;
	}
}

static void nonce_of(uint64_t n, uint8_t nonce[NONCE_LEN])
{
	memset(nonce, 0, NONCE_LEN);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

int noise_cipher_encrypt(struct noise_cipher *c, const uint8_t *ad, size_t ad_len,
			 const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t nonce[NONCE_LEN];
	unsigned long long clen;

	if (!c->has_key) {
		memmove(out, in, len);
		return 0;
	}
	if (c->n == NONCE_MAXIMUM)
		return SB_EPROTO;
	nonce_of(c->n, nonce);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, in, len, ad, ad_len, NULL, nonce,
						  c->k);
	c->n++;
	return 0;
}

int noise_cipher_decrypt(struct noise_cipher *c, const uint8_t *ad, size_t ad_len,
			 const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t nonce[NONCE_LEN];
	unsigned long long mlen;

	if (!c->has_key) {
		memmove(out, in, len);
		return 0;
	}
	if (len < NOISE_TAG_LEN || c->n == NONCE_MAXIMUM)
		return SB_EPROTO;
	nonce_of(c->n, nonce);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &mlen, NULL, in, len, ad, ad_len, nonce,
						      c->k) != 0)
		return SB_EAUTH;
	c->n++;
	return 0;
}

/* ---- SymmetricState (section 5.2) ---- */

static void mix_hash(struct noise_symmetric *ss, const uint8_t *data, size_t len)
{
	crypto_generichash_blake2b_state st;

	crypto_generichash_blake2b_init(&st, NULL, 0, NOISE_HASH_LEN);
	crypto_generichash_blake2b_update(&st, ss->h, NOISE_HASH_LEN);
	crypto_generichash_blake2b_update(&st, data, len);
	crypto_generichash_blake2b_final(&st, ss->h, NOISE_HASH_LEN);
}

static void symmetric_init(struct noise_symmetric *ss, const char *name)
{
	size_t n = strlen(name);

	memset(ss, 0, sizeof *ss);
	if (n <= NOISE_HASH_LEN)
		memcpy(ss->h, name, n);
	else
		crypto_generichash_blake2b(ss->h, NOISE_HASH_LEN, (const uint8_t *)name, n, NULL,
					   0);
	memcpy(ss->ck, ss->h, NOISE_HASH_LEN);
	cipher_init(&ss->cs, NULL);
}

/* HASHLEN is 64: temp_k is truncated to its first 32 bytes. */
static void mix_key(struct noise_symmetric *ss, const uint8_t *ikm, size_t len)
{
	uint8_t temp_k[NOISE_HASH_LEN];

	hkdf(ss->ck, ikm, len, ss->ck, temp_k, NULL);
	cipher_init(&ss->cs, temp_k);
	sodium_memzero(temp_k, sizeof temp_k);
}

static void mix_key_and_hash(struct noise_symmetric *ss, const uint8_t *ikm, size_t len)
{
	uint8_t temp_h[NOISE_HASH_LEN], temp_k[NOISE_HASH_LEN];

	hkdf(ss->ck, ikm, len, ss->ck, temp_h, temp_k);
	mix_hash(ss, temp_h, sizeof temp_h);
	cipher_init(&ss->cs, temp_k);
	sodium_memzero(temp_h, sizeof temp_h);
	sodium_memzero(temp_k, sizeof temp_k);
}

/* EncryptAndHash onto out. */
static int encrypt_and_hash(struct noise_symmetric *ss, const uint8_t *in, size_t len,
			    struct buf *out)
{
	size_t n = len + (ss->cs.has_key ? NOISE_TAG_LEN : 0);

	buf_reserve(out, n);
	int rc = noise_cipher_encrypt(&ss->cs, ss->h, NOISE_HASH_LEN, in, len, out->ptr + out->len);
	if (rc)
		return rc;
	mix_hash(ss, out->ptr + out->len, n);
	out->len += n;
	return 0;
}

/* DecryptAndHash of in[0..len) into out (len - tag bytes). */
static int decrypt_and_hash(struct noise_symmetric *ss, const uint8_t *in, size_t len, uint8_t *out)
{
	int rc = noise_cipher_decrypt(&ss->cs, ss->h, NOISE_HASH_LEN, in, len, out);
	if (rc)
		return rc;
	mix_hash(ss, in, len);
	return 0;
}

/* ---- HandshakeState (section 5.3) ---- */

int noise_handshake_init(struct noise_handshake *hs, enum noise_pattern p, int initiator,
			 const void *prologue, size_t prologue_len, const uint8_t s[NOISE_DH_LEN],
			 const uint8_t s_pub[NOISE_DH_LEN], const uint8_t *psk)
{
	sodium_ready();
	memset(hs, 0, sizeof *hs);
	if ((unsigned)p >= sizeof patterns / sizeof patterns[0] || !s || !s_pub ||
	    (patterns[p].psk != (psk != NULL)))
		return -EINVAL;
	hs->pattern = p;
	hs->initiator = initiator != 0;
	symmetric_init(&hs->ss, patterns[p].name);
	mix_hash(&hs->ss, prologue, prologue_len);
	memcpy(hs->s, s, NOISE_DH_LEN);
	memcpy(hs->s_pub, s_pub, NOISE_DH_LEN);
	hs->has_s = 1;
	if (psk)
		memcpy(hs->psk, psk, NOISE_KEY_LEN);
	return 0;
}

void noise_handshake_set_ephemeral(struct noise_handshake *hs, const uint8_t e[NOISE_DH_LEN])
{
	memcpy(hs->e, e, NOISE_DH_LEN);
	noise_public_key(hs->e, hs->e_pub);
	hs->has_e = 1;
}

int noise_handshake_done(const struct noise_handshake *hs)
{
	return hs->next >= patterns[hs->pattern].nmessages;
}

int noise_handshake_writes(const struct noise_handshake *hs)
{
	/* The initiator writes the even messages. */
	return !noise_handshake_done(hs) && (hs->next % 2 == 0) == hs->initiator;
}

/* MixKey(DH(a, b)); SB_EPROTO when the output is all zeros. */
static int mix_dh(struct noise_handshake *hs, const uint8_t *priv, const uint8_t *pub)
{
	uint8_t out[NOISE_DH_LEN];

	int rc = crypto_scalarmult(out, priv, pub);
	if (rc == 0)
		mix_key(&hs->ss, out, sizeof out);
	sodium_memzero(out, sizeof out);
	return rc == 0 ? 0 : SB_EPROTO;
}

/* The DH tokens, alike for writing and reading. */
static int dh_token(struct noise_handshake *hs, enum token t)
{
	int i = hs->initiator;

	switch (t) {
	case T_EE:
		return mix_dh(hs, hs->e, hs->re);
	case T_ES:
		return i ? mix_dh(hs, hs->e, hs->rs) : mix_dh(hs, hs->s, hs->re);
	case T_SE:
		return i ? mix_dh(hs, hs->s, hs->re) : mix_dh(hs, hs->e, hs->rs);
	case T_SS:
		return mix_dh(hs, hs->s, hs->rs);
	case T_PSK:
		mix_key_and_hash(&hs->ss, hs->psk, NOISE_KEY_LEN);
		return 0;
	default:
		return SB_EPROTO;
	}
}

int noise_handshake_write(struct noise_handshake *hs, const uint8_t *payload, size_t len,
			  struct buf *out)
{
	const struct pattern *p = &patterns[hs->pattern];
	size_t start = out->len;
	int rc = 0;

	if (!noise_handshake_writes(hs))
		return SB_EPROTO;
	if (len > NOISE_MSG_MAX)
		return SB_ETOOBIG;
	for (const enum token *t = p->msgs[hs->next]; *t != T_END && rc == 0; t++) {
		if (*t == T_E) {
			if (!hs->has_e)
				noise_keypair(hs->e, hs->e_pub);
			hs->has_e = 1;
			buf_append(out, hs->e_pub, NOISE_DH_LEN);
			mix_hash(&hs->ss, hs->e_pub, NOISE_DH_LEN);
			if (p->psk)
				mix_key(&hs->ss, hs->e_pub, NOISE_DH_LEN);
		} else if (*t == T_S) {
			rc = encrypt_and_hash(&hs->ss, hs->s_pub, NOISE_DH_LEN, out);
		} else {
			rc = dh_token(hs, *t);
		}
	}
	if (rc == 0)
		rc = encrypt_and_hash(&hs->ss, payload, len, out);
	if (rc == 0 && out->len - start > NOISE_MSG_MAX)
		rc = SB_ETOOBIG;
	if (rc) {
		out->len = start;
		return rc;
	}
	hs->next++;
	return 0;
}

int noise_handshake_read(struct noise_handshake *hs, const uint8_t *msg, size_t len,
			 struct buf *payload)
{
	const struct pattern *p = &patterns[hs->pattern];
	size_t off = 0;
	int rc = 0;

	if (noise_handshake_done(hs) || noise_handshake_writes(hs))
		return SB_EPROTO;
	if (len > NOISE_MSG_MAX)
		return SB_ETOOBIG;
	for (const enum token *t = p->msgs[hs->next]; *t != T_END && rc == 0; t++) {
		if (*t == T_E) {
			if (len - off < NOISE_DH_LEN)
				return SB_EPROTO;
			memcpy(hs->re, msg + off, NOISE_DH_LEN);
			hs->has_re = 1;
			off += NOISE_DH_LEN;
			mix_hash(&hs->ss, hs->re, NOISE_DH_LEN);
			if (p->psk)
				mix_key(&hs->ss, hs->re, NOISE_DH_LEN);
		} else if (*t == T_S) {
			size_t n = NOISE_DH_LEN + (hs->ss.cs.has_key ? NOISE_TAG_LEN : 0);
			if (len - off < n)
				return SB_EPROTO;
			rc = decrypt_and_hash(&hs->ss, msg + off, n, hs->rs);
			hs->has_rs = rc == 0;
			off += n;
		} else {
			rc = dh_token(hs, *t);
		}
	}
	if (rc)
		return rc;
	size_t n = len - off;
	if (hs->ss.cs.has_key && n < NOISE_TAG_LEN)
		return SB_EPROTO;
	size_t plen = n - (hs->ss.cs.has_key ? NOISE_TAG_LEN : 0);
	buf_reserve(payload, plen + 1);
	if ((rc = decrypt_and_hash(&hs->ss, msg + off, n, payload->ptr + payload->len)) != 0)
		return rc;
	payload->len += plen;
	hs->next++;
	return 0;
}

int noise_handshake_split(struct noise_handshake *hs, struct noise_cipher *c1,
			  struct noise_cipher *c2)
{
	uint8_t k1[NOISE_HASH_LEN], k2[NOISE_HASH_LEN];

	if (!noise_handshake_done(hs))
		return SB_EPROTO;
	hkdf(hs->ss.ck, NULL, 0, k1, k2, NULL);
	cipher_init(c1, k1);
	cipher_init(c2, k2);
	sodium_memzero(k1, sizeof k1);
	sodium_memzero(k2, sizeof k2);
	return 0;
}

const uint8_t *noise_handshake_remote_static(const struct noise_handshake *hs)
{
	return hs->has_rs ? hs->rs : NULL;
}

const uint8_t *noise_handshake_hash(const struct noise_handshake *hs)
{
	return hs->ss.h;
}

void noise_handshake_close(struct noise_handshake *hs)
{
	sodium_memzero(hs->s, sizeof hs->s);
	sodium_memzero(hs->e, sizeof hs->e);
	sodium_memzero(hs->psk, sizeof hs->psk);
	sodium_memzero(&hs->ss, sizeof hs->ss);
}
