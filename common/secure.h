/* The cluster's secret and what it protects: the join token, the mutual
 * handshake that proves both ends know it (crypto_kx ephemeral keys, MACs
 * keyed by the token over the transcript), and the AEAD that seals records
 * afterwards (AES-256-GCM where both CPUs have it, else
 * XChaCha20-Poly1305). Pure functions on buffers, no I/O beyond the token
 * file; common/conn.c drives them. Thread-compatible. */
#ifndef SYNCBIT_SECURE_H
#define SYNCBIT_SECURE_H

#include <stddef.h>
#include <stdint.h>
#include <sodium.h>

#include "common/buf.h"

#define SECURE_TOKEN_BYTES 32

struct secure_token {
	uint8_t key[SECURE_TOKEN_BYTES];
};

/* Read a token file (64 hex digits, optional trailing newline). Refuses a
 * file readable by group or others. 0, or a negative error with *detail
 * (heap, one line) saying why. */
int secure_token_load(const char *path, struct secure_token *tok, char **detail);

/* Create path with a fresh random token, mode 0600, atomically (a temp
 * file created with O_EXCL, fsync'd, then linked into place so a token
 * another process created meanwhile wins); if it exists, load it instead.
 * 0 or a negative error with *detail as above. */
int secure_token_init(const char *path, struct secure_token *tok, char **detail);

/* ---- handshake ----
 * Three frames, in the clear: the initiator's Hello (A), the responder's
 * Hello (B, carrying mac_r), the initiator's Auth (mac_i). With
 *   K = BLAKE2b keyed by the token over "syncbit-auth-v1"
 *   T = BLAKE2b(len(A) || A || len(B0) || B0), A as sent, B0 = B's fields
 *       re-encoded without the mac
 *   mac_r = BLAKE2b_K("syncbit resp" || T), mac_i = BLAKE2b_K("syncbit init" || T)
 * both ends prove the token over both fresh ephemeral keys and nonces, so a
 * replayed or reflected message fails. Session keys are the crypto_kx keys
 * of the ephemeral pair, each mixed with K and T, so both the DH secret and
 * the token are needed to read the traffic. Encryption is on when either
 * side asks for it; the cipher is AES-256-GCM when both sides have it, else
 * XChaCha20-Poly1305. T covers both choices, so neither can be downgraded.
 * Without encryption (both sides --no-encrypt) the handshake still proves
 * the token, but the frames after it are neither hidden nor authenticated:
 * that mode is for trusted fabrics only. Block payloads are checked against
 * their hashes either way; control messages are not. */

#define SECURE_VERSION	   1
#define SECURE_HELLO_MAX   1024 /* largest Hello or Auth body accepted */
#define SECURE_NODE_MAX	   255	/* node names: printable ASCII, at most this long */
#define SECURE_PK_BYTES	   crypto_kx_PUBLICKEYBYTES
#define SECURE_NONCE_BYTES 32
#define SECURE_MAC_BYTES   32
#define SECURE_KEY_BYTES   32

enum secure_cipher {
	SECURE_PLAIN,		 /* both sides chose --no-encrypt: authenticated, not sealed */
	SECURE_AES256GCM,	 /* crypto_aead_aes256gcm */
	SECURE_XCHACHA20POLY1305 /* crypto_aead_xchacha20poly1305_ietf */
};

enum secure_hs_state {
	SECURE_HS_START,     /* initiator before its Hello; responder waiting for one */
	SECURE_HS_HELLO,     /* initiator: Hello sent, waiting for the responder's */
	SECURE_HS_WAIT_AUTH, /* responder: Hello sent, waiting for Auth */
	SECURE_HS_DONE,
	SECURE_HS_FAILED
};

/* Keys and counters of an established session. The record counter of each
 * direction is the AEAD nonce; every SECURE_REKEY_RECORDS records the key
 * of that direction is replaced by a hash of itself, so no key seals more
 * than SECURE_REKEY_RECORDS * SECURE_RECORD_MAX bytes. */
struct secure_dir {
	uint8_t key[SECURE_KEY_BYTES];
	uint64_t seq; /* records sealed or opened so far */
	void *aes;    /* OpenSSL EVP_CIPHER_CTX with the key set (AES-256-GCM only) */
};

struct secure_session {
	enum secure_cipher cipher;
	struct secure_dir rx, tx;
};

struct secure_handshake {
	int initiator;
	enum secure_hs_state state;
	int encrypt; /* ours; may be changed before the first message */
	int aes_gcm; /* ours: this CPU has AES-256-GCM; may be cleared to refuse it */
	char node[SECURE_NODE_MAX + 1];
	uint8_t auth_key[SECURE_KEY_BYTES]; /* K */
	uint8_t pk[SECURE_PK_BYTES], sk[crypto_kx_SECRETKEYBYTES];
	uint8_t nonce[SECURE_NONCE_BYTES];
	uint8_t first[SECURE_HELLO_MAX]; /* A: the initiator's Hello as sent */
	size_t first_len;
	uint8_t transcript[SECURE_KEY_BYTES]; /* T, once both hellos are known */
	uint8_t peer_pk[SECURE_PK_BYTES];
	char peer_node[SECURE_NODE_MAX + 1];
	int peer_encrypt, peer_aes_gcm;
	char error[160]; /* why the last step failed, one line */
};

/* Prepare one side of a handshake: fresh ephemeral keys and nonce. node may
 * be NULL (""). 0, or -EINVAL for a node name that is too long or not
 * printable. */
int secure_handshake_init(struct secure_handshake *hs, const struct secure_token *tok,
			  int initiator, const char *node, int encrypt);

/* Initiator: append its Hello body (A) to out. 0 or SB_EPROTO (wrong state). */
int secure_handshake_hello(struct secure_handshake *hs, struct buf *out);

/* Responder: read the initiator's Hello from in and append the responder's
 * Hello (with its mac) to out. 0; SB_ETOOBIG, SB_EPROTO for a malformed or
 * unsupported Hello (hs->error says which). */
int secure_handshake_respond(struct secure_handshake *hs, const uint8_t *in, size_t len,
			     struct buf *out);

/* Initiator: read the responder's Hello, verify its mac, append the Auth
 * body to out and set up *s. 0; SB_EAUTH when the mac is wrong (the peer
 * does not hold our token); SB_ETOOBIG, SB_EPROTO as above. */
int secure_handshake_finish(struct secure_handshake *hs, const uint8_t *in, size_t len,
			    struct buf *out, struct secure_session *s);

/* Responder: verify the initiator's Auth and set up *s. 0, SB_EAUTH,
 * SB_ETOOBIG or SB_EPROTO. */
int secure_handshake_verify(struct secure_handshake *hs, const uint8_t *in, size_t len,
			    struct secure_session *s);

/* Wipe the handshake's secrets. Safe to call twice. */
void secure_handshake_close(struct secure_handshake *hs);

/* 1 when node is a valid node name (printable ASCII, at most
 * SECURE_NODE_MAX bytes; empty is allowed), else 0. */
int secure_node_valid(const char *node);

/* Name of a cipher: "aes256gcm", "xchacha20poly1305", "none". */
const char *secure_cipher_name(enum secure_cipher c);

/* ---- records ----
 * After the handshake an encrypted stream is a sequence of records: a u32
 * big-endian ciphertext length, then the AEAD ciphertext (plaintext plus a
 * tag) of at most SECURE_RECORD_MAX plaintext bytes. The length header is
 * the associated data; the nonce is the direction's record counter
 * (64-bit little-endian, zero-padded to the cipher's nonce size). */

#define SECURE_RECORD_MAX      (256u << 10)
#define SECURE_RECORD_HEADER   4
#define SECURE_TAG_BYTES       16
#define SECURE_RECORD_OVERHEAD (SECURE_RECORD_HEADER + SECURE_TAG_BYTES)
#define SECURE_REKEY_RECORDS   (1u << 16)

/* Seal len (<= SECURE_RECORD_MAX) bytes of in into out, which receives
 * len + SECURE_RECORD_OVERHEAD bytes (header first). in and out must not
 * overlap. 0, or SB_EPROTO when the counter is exhausted (the connection
 * must close). */
int secure_seal(struct secure_session *s, const uint8_t *in, size_t len, uint8_t *out);

/* Read a record header: *ct_len = ciphertext length (tag included). 0;
 * SB_ETOOBIG over SECURE_RECORD_MAX + tag; SB_EPROTO shorter than a tag. */
int secure_record_len(const uint8_t hdr[SECURE_RECORD_HEADER], size_t *ct_len);

/* Open the record with header hdr and ciphertext ct (ct_len bytes) into out
 * (ct_len - SECURE_TAG_BYTES bytes; must not overlap ct). 0, SB_EAUTH when
 * the tag does not verify (tampered, replayed, reordered or cut), SB_EPROTO
 * when the counter is exhausted. */
int secure_open(struct secure_session *s, const uint8_t hdr[SECURE_RECORD_HEADER],
		const uint8_t *ct, size_t ct_len, uint8_t *out);

/* Wipe the session keys. */
void secure_session_close(struct secure_session *s);

#endif
