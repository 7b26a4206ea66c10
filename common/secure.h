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

#define SECURE_TOKEN_BYTES 32

struct secure_token {
	uint8_t key[SECURE_TOKEN_BYTES];
};

/* Read a token file (64 hex digits, optional trailing newline). Refuses a
 * file readable by group or others. 0, or a negative error with *detail
 * (heap, one line) saying why. */
int secure_token_load(const char *path, struct secure_token *tok, char **detail);

/* Create path with a fresh random token, mode 0600, atomically (temp +
 * rename); if it exists, load it instead. 0 or a negative error. */
int secure_token_init(const char *path, struct secure_token *tok, char **detail);

/* (The handshake and record API follows; see secure.c.) */

#endif
