/* The Noise Protocol Framework (revision 34), as much of it as Syncbit
 * uses: the interactive patterns XX and XXpsk3 with Curve25519, ChaChaPoly
 * and BLAKE2b, all from libsodium. CipherState, SymmetricState and
 * HandshakeState follow the specification's sections 5.1 to 5.3 and 9;
 * tests/unit/test_noise.c replays the published test vectors through them.
 * Pure functions on buffers; thread-compatible. */
#ifndef SYNCBIT_NET_NOISE_H
#define SYNCBIT_NET_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define NOISE_DH_LEN   32
#define NOISE_KEY_LEN  32
#define NOISE_HASH_LEN 64 /* BLAKE2b */
#define NOISE_TAG_LEN  16
#define NOISE_MSG_MAX  65535 /* the specification's limit on any message */

enum noise_pattern {
	NOISE_XX,     /* -> e; <- e, ee, s, es; -> s, se */
	NOISE_XXPSK3, /* XX with psk at the end of the third message */
};

/* A CipherState: k and the nonce n (ChaChaPoly: 32 zero bits, then n
 * little-endian). */
struct noise_cipher {
	uint8_t k[NOISE_KEY_LEN];
	uint64_t n;
	int has_key;
};

struct noise_symmetric {
	struct noise_cipher cs;
	uint8_t ck[NOISE_HASH_LEN];
	uint8_t h[NOISE_HASH_LEN];
};

struct noise_handshake {
	struct noise_symmetric ss;
	enum noise_pattern pattern;
	int initiator;
	unsigned next; /* the message pattern to write or read next */
	uint8_t s[NOISE_DH_LEN], s_pub[NOISE_DH_LEN];
	uint8_t e[NOISE_DH_LEN], e_pub[NOISE_DH_LEN];
	uint8_t rs[NOISE_DH_LEN], re[NOISE_DH_LEN];
	uint8_t psk[NOISE_KEY_LEN];
	int has_s, has_e, has_rs, has_re;
};

/* "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b" and the like. */
const char *noise_protocol_name(enum noise_pattern p);

/* A fresh X25519 key pair; pub from a private key. */
void noise_keypair(uint8_t priv[NOISE_DH_LEN], uint8_t pub[NOISE_DH_LEN]);
void noise_public_key(const uint8_t priv[NOISE_DH_LEN], uint8_t pub[NOISE_DH_LEN]);

/* Initialize(): the protocol name, then MixHash(prologue). s and s_pub are
 * our static key pair (both XX roles need one), psk the pre-shared key
 * (XXpsk3 only, else NULL). 0 or -EINVAL. */
int noise_handshake_init(struct noise_handshake *hs, enum noise_pattern p, int initiator,
			 const void *prologue, size_t prologue_len, const uint8_t s[NOISE_DH_LEN],
			 const uint8_t s_pub[NOISE_DH_LEN], const uint8_t *psk);
/* The ephemeral key the next "e" token uses instead of a fresh one: for a
 * caller that needs the public key before the message is written, and for
 * replaying test vectors. */
void noise_handshake_set_ephemeral(struct noise_handshake *hs, const uint8_t e[NOISE_DH_LEN]);

/* 1 when the next message is ours to write, 0 when it is the peer's or the
 * handshake is over. */
int noise_handshake_writes(const struct noise_handshake *hs);
/* 1 once every message was written or read. */
int noise_handshake_done(const struct noise_handshake *hs);

/* WriteMessage(): append the next message with payload to out. 0; SB_EPROTO
 * out of turn or when a DH output is zero (a low-order key); SB_ETOOBIG over
 * NOISE_MSG_MAX. */
int noise_handshake_write(struct noise_handshake *hs, const uint8_t *payload, size_t len,
			  struct buf *out);
/* ReadMessage(): read the peer's next message, append its payload to
 * payload. 0; SB_EAUTH when a ciphertext does not decrypt (tampered, or a
 * different psk or prologue); SB_EPROTO out of turn, truncated or a zero DH
 * output; SB_ETOOBIG over NOISE_MSG_MAX. The handshake is unusable after an
 * error. */
int noise_handshake_read(struct noise_handshake *hs, const uint8_t *msg, size_t len,
			 struct buf *payload);

/* Split(): the initiator's sending cipher c1 and the responder's c2. 0, or
 * SB_EPROTO before the handshake is done. */
int noise_handshake_split(struct noise_handshake *hs, struct noise_cipher *c1,
			  struct noise_cipher *c2);
/* The peer's static public key (NULL before it is known) and h. */
const uint8_t *noise_handshake_remote_static(const struct noise_handshake *hs);
const uint8_t *noise_handshake_hash(const struct noise_handshake *hs);
/* Wipe every key. */
void noise_handshake_close(struct noise_handshake *hs);

/* EncryptWithAd(): out receives len + NOISE_TAG_LEN bytes (len when the
 * cipher has no key). 0, or SB_EPROTO when the nonces are used up. */
int noise_cipher_encrypt(struct noise_cipher *c, const uint8_t *ad, size_t ad_len,
			 const uint8_t *in, size_t len, uint8_t *out);
/* DecryptWithAd(): out receives len - NOISE_TAG_LEN bytes. 0, SB_EAUTH
 * (the nonce does not advance), or SB_EPROTO (shorter than a tag, nonces
 * used up). */
int noise_cipher_decrypt(struct noise_cipher *c, const uint8_t *ad, size_t ad_len,
			 const uint8_t *in, size_t len, uint8_t *out);

#endif
