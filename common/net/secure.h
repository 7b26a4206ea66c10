/* The cluster's secrets and the sessions they protect: the join token, the
 * static key files that identify nodes and the scheduler, and what follows
 * the handshake (common/net/handshake.h): AEAD records (AES-256-GCM where both
 * CPUs have it, else XChaCha20-Poly1305) or, with --no-encrypt on both
 * sides, frames in the clear with a MAC each. Pure functions on buffers, no
 * I/O beyond the key files. Thread-compatible. */
#ifndef SYNCBIT_NET_SECURE_H
#define SYNCBIT_NET_SECURE_H

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

/* ---- static keys ----
 * A node's identity is an X25519 key pair it makes on first start
 * (DATA/node.key; the scheduler's is DATA/scheduler.key): the file holds the
 * private key as 64 hex digits, mode 0600, created like the token file. The
 * private key is never logged; secure_key_fingerprint() names the public
 * one. */

#define SECURE_KEY_BYTES	 32
#define SECURE_NODE_MAX		 255 /* node names: printable ASCII, at most this long */
#define SECURE_FINGERPRINT_BYTES 8
#define SECURE_FINGERPRINT_LEN	 (2 * SECURE_FINGERPRINT_BYTES + 1)

struct secure_keypair {
	uint8_t priv[SECURE_KEY_BYTES];
	uint8_t pub[SECURE_KEY_BYTES];
};

/* Load the key file at path, or create it with a fresh key when it does
 * not exist. *created (may be NULL) says which. Refuses a file readable by
 * group or others. 0 or a negative error with *detail (heap, one line). */
int secure_keypair_init(const char *path, struct secure_keypair *kp, int *created, char **detail);
/* A fresh key pair that lives in memory only (the CLI's, tests'). */
void secure_keypair_new(struct secure_keypair *kp);
/* Wipe the private key. */
void secure_keypair_close(struct secure_keypair *kp);
/* The first SECURE_FINGERPRINT_BYTES of a public key in hex, for logs. */
void secure_key_fingerprint(const uint8_t pub[SECURE_KEY_BYTES], char out[SECURE_FINGERPRINT_LEN]);

/* 1 when node is a valid node name (printable ASCII, at most
 * SECURE_NODE_MAX bytes; empty is allowed), else 0. */
int secure_node_valid(const char *node);

/* ---- sessions ---- */

enum secure_cipher {
	SECURE_PLAIN,		 /* both sides chose --no-encrypt: MACed frames, not sealed */
	SECURE_AES256GCM,	 /* AES-256-GCM (OpenSSL) */
	SECURE_XCHACHA20POLY1305 /* crypto_aead_xchacha20poly1305_ietf */
};

/* Keys and counters of an established session, one per direction. The
 * record (or frame) counter of each direction is the AEAD nonce (or goes
 * into the MAC); every SECURE_REKEY_RECORDS records the key of an
 * encrypting direction is replaced by a hash of itself, so no key seals
 * more than SECURE_REKEY_RECORDS * SECURE_RECORD_MAX bytes. */
struct secure_dir {
	uint8_t key[SECURE_KEY_BYTES];
	uint64_t seq; /* records or frames sealed, opened or MACed so far */
	void *aes;    /* OpenSSL EVP_CIPHER_CTX with the key set (AES-256-GCM only) */
};

struct secure_session {
	enum secure_cipher cipher;
	struct secure_dir rx, tx;
};

/* Set up s from the handshake's two keys (common/net/handshake.h: Split()):
 * AEAD keys, or for SECURE_PLAIN the frame MAC keys derived from them. */
void secure_session_init(struct secure_session *s, enum secure_cipher c,
			 const uint8_t tx[SECURE_KEY_BYTES], const uint8_t rx[SECURE_KEY_BYTES]);

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

/* ---- frame MACs (SECURE_PLAIN sessions) ----
 * With --no-encrypt every frame's header and body travel in the clear
 * followed by a tag: BLAKE2b-128 keyed by the direction's MAC key over the
 * frame counter (64-bit little-endian), the header and the body. A block
 * payload after it is not covered (it goes by sendfile; the receiver checks
 * it against the block's hash); its length, in the header, is. */

#define SECURE_MAC_BYTES 16

/* The tag of the next frame sent: hdr (hdr_len bytes) then body. 0, or
 * SB_EPROTO when the counter is exhausted. */
int secure_mac(struct secure_session *s, const uint8_t *hdr, size_t hdr_len, const uint8_t *body,
	       size_t len, uint8_t tag[SECURE_MAC_BYTES]);
/* Check the next frame received. 0; SB_EAUTH when the tag does not verify
 * (altered, replayed, reordered or dropped frames); SB_EPROTO when the
 * counter is exhausted. */
int secure_mac_check(struct secure_session *s, const uint8_t *hdr, size_t hdr_len,
		     const uint8_t *body, size_t len, const uint8_t tag[SECURE_MAC_BYTES]);

/* Wipe the session keys. */
void secure_session_close(struct secure_session *s);

#endif
