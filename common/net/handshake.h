/* Syncbit's handshake: Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b (common/net/noise.h)
 * in Hello frames (proto/wire.proto). The psk is derived from the join
 * token; the prologue names the protocol version and what the connection
 * is for (its purpose), so a message cannot be replayed across purposes;
 * each side's static key is its identity (a node's DATA/node.key, the
 * scheduler's DATA/scheduler.key, a fresh one for the CLI), checked by the
 * caller's verify function. Message 1 carries a tag keyed by the token
 * over the prologue and the ephemeral key: a responder checks it, and that
 * the message is not one it saw before, before any DH, so a client without
 * the token costs it hashing only. Pure functions on buffers; common/net/conn.c
 * drives them, and sends the confirmation that ends the handshake.
 * Thread-compatible. */
#ifndef SYNCBIT_NET_HANDSHAKE_H
#define SYNCBIT_NET_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/net/noise.h"
#include "common/net/secure.h"

#define HANDSHAKE_VERSION    2
#define HANDSHAKE_HELLO_MAX  1024 /* largest Hello body accepted */
#define HANDSHAKE_TAG_BYTES  32
#define HANDSHAKE_REPLAY_MAX 4096 /* first messages a listener remembers */
#define HANDSHAKE_ERROR_MAX  200

/* What a connection is for; the values of proto's Purpose. */
enum handshake_purpose {
	HANDSHAKE_CONTROL = 1, /* agent -> scheduler */
	HANDSHAKE_PEER = 2,    /* agent -> agent */
	HANDSHAKE_ADMIN = 3,   /* CLI -> scheduler */
};
#define HANDSHAKE_PURPOSE_BIT(p) (1u << (p))

enum handshake_state {
	HANDSHAKE_START,   /* nothing sent or received */
	HANDSHAKE_SENT,	   /* initiator: message 1 sent */
	HANDSHAKE_REPLIED, /* responder: message 2 sent */
	HANDSHAKE_CONFIRM, /* initiator: message 3 sent; the responder's first frame proves it */
	HANDSHAKE_DONE,
	HANDSHAKE_FAILED
};

/* The first messages a listener accepted lately (their ephemeral keys'
 * first bytes), so that one recorded and sent again costs no DH either. */
struct handshake_replay {
	uint64_t seen[HANDSHAKE_REPLAY_MAX];
	size_t next, count;
};

struct handshake_config {
	const struct secure_token *token;
	const struct secure_keypair *key; /* our static key; copied */
	const char *node;		  /* our node name (may be NULL: "") */
	int encrypt;			  /* 1: want encryption */
	int aes_gcm;			  /* 1: this CPU has AES-256-GCM */
	enum handshake_purpose purpose;	  /* initiator: what for */
	unsigned purposes;		  /* responder: HANDSHAKE_PURPOSE_BIT()s taken */
	struct handshake_replay *replay;  /* responder: may be NULL */
	/* Who may be on the other end, once its node name and static key are
	 * known (the initiator: before it sends its own; the responder: before
	 * it confirms). NULL to accept, or why not (one line, valid until the
	 * handshake ends). verify may be NULL: anyone with the token. */
	const char *(*verify)(void *arg, const char *node, const uint8_t key[SECURE_KEY_BYTES]);
	void *verify_arg;
};

struct handshake {
	struct noise_handshake noise;
	int initiator;
	enum handshake_state state;
	enum handshake_purpose purpose; /* the responder's once message 1 named it */
	unsigned purposes;
	int encrypt, aes_gcm;
	char node[SECURE_NODE_MAX + 1];
	struct secure_keypair key;
	uint8_t psk[NOISE_KEY_LEN], tag_key[HANDSHAKE_TAG_BYTES];
	struct handshake_replay *replay;
	const char *(*verify)(void *arg, const char *node, const uint8_t key[SECURE_KEY_BYTES]);
	void *verify_arg;
	/* the other end, once known */
	char peer_node[SECURE_NODE_MAX + 1];
	uint8_t peer_key[SECURE_KEY_BYTES];
	int peer_encrypt, peer_aes_gcm;
	char error[HANDSHAKE_ERROR_MAX]; /* why the last step failed, one line */
};

/* Prepare one side. Nothing is computed yet. 0, or -EINVAL for a node
 * name that is too long or not printable, a missing token or key, or an
 * initiator without a purpose. */
int handshake_init(struct handshake *hs, const struct handshake_config *cfg, int initiator);

/* Initiator: append the body of its Hello (message 1) to out. 0 or
 * SB_EPROTO (out of order). */
int handshake_start(struct handshake *hs, struct buf *out);

/* Responder: read the initiator's Hello and append the responder's
 * (message 2) to out. On failure hs->error says why; when out is not empty
 * it holds a refusal for the initiator (send it, then close): SB_EPROTO
 * (another protocol version or purpose, malformed), SB_ETOOBIG, SB_EAUTH
 * (the tag does not prove the join token, or the message is a replay). */
int handshake_respond(struct handshake *hs, const uint8_t *in, size_t len, struct buf *out);

/* Initiator: read the responder's Hello, check who it is, append message
 * 3 to out and set up *s. The state is then HANDSHAKE_CONFIRM: nothing of
 * the application's goes out until the responder's first frame arrives
 * through *s. SB_EAUTH (the responder refused: another join token; or its
 * message does not decrypt), SB_EPROTO, SB_ETOOBIG, SB_EDENIED (verify
 * refused it). */
int handshake_finish(struct handshake *hs, const uint8_t *in, size_t len, struct buf *out,
		     struct secure_session *s);

/* Responder: read message 3, check who it is and set up *s; the caller
 * then sends its confirmation through *s before anything else. 0;
 * SB_EDENIED when verify refused the initiator: *s is set up all the same,
 * so the refusal (hs->error) reaches the initiator authenticated;
 * SB_EAUTH (it does not decrypt), SB_EPROTO or SB_ETOOBIG, with no
 * session. */
int handshake_accept(struct handshake *hs, const uint8_t *in, size_t len, struct secure_session *s);

/* Wipe the handshake's secrets. Safe to call twice. */
void handshake_close(struct handshake *hs);

/* "control", "peer", "admin". */
const char *handshake_purpose_name(enum handshake_purpose p);

#endif
