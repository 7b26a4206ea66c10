/* The peer side of a daemon: connections to the other agents, the
 * bitfields and haves they announce, the requests this node makes (in the
 * fetch's order, agent/fetch_order.c, from a random start; several in
 * flight per peer, endgame for the last blocks) and the blocks it serves
 * (a bounded number of disk reads at once, shared round-robin between
 * peers; nothing is read for a peer whose socket is backed up). Loop
 * thread only. */
#ifndef SYNCBIT_PEER_H
#define SYNCBIT_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent/cache.h"
#include "agent/fetch.h"
#include "agent/pick.h"
#include "common/net/secure.h"

/* PEER_PIPELINE_*, PEER_ENDGAME_*: agent/pick.h */
#define PEER_SERVE_SLOTS    16	  /* disk reads for peers at once, all peers */
#define PEER_SENDFILE_MAX   256	  /* cache files queued for sendfile, all peers (then reads) */
#define PEER_SERVE_QUEUE    256	  /* requests queued per peer before "busy" */
#define PEER_REQUEST_MS	    30000 /* a request unanswered this long goes elsewhere */
#define PEER_REDIAL_MS	    2000
#define PEER_KEEPALIVE_MS   5000  /* an empty Have this often */
#define PEER_IDLE_MS	    20000 /* nothing heard this long: the peer is gone */
#define PEER_BAN_MS	    60000 /* a peer that sent bad data is shunned this long */
#define PEER_REFUSED_LOG_MS 10000 /* a line about a peer with the wrong key this often */

struct peers;

struct peers_config {
	const char *node;   /* our name */
	const char *listen; /* host:port to accept peers on */
	const struct secure_token *token;
	const struct secure_keypair *key; /* this node's identity; copied */
	int encrypt;
	struct cache *cache;
};

struct peers_stats {
	uint64_t bytes_served, blocks_served;
	uint64_t connected;	/* connections made, ever */
	uint64_t connected_now; /* peers connected at the moment */
	uint64_t dropped_bad_data;
	uint64_t bytes_received;    /* block payloads from peers */
	uint64_t bytes_unneeded;    /* of those: canceled meanwhile or already here */
	uint64_t bitfields_ignored; /* of versions this node neither fetches nor holds */
	/* Of bytes_served: pieces passed on while their block was still
	 * arriving here (agent/peer_pieces.c). */
	uint64_t bytes_passed_on;
	/* Of those: bytes of blocks this node was reading from the origin,
	 * sent before anyone knew their hash (Have.reading). */
	uint64_t bytes_streamed;
};

/* Listen and get ready. 0 or a negative error (*detail: one line). */
int peers_new(uv_loop_t *loop, const struct peers_config *cfg, struct peers **out, char **detail);
/* Close every connection; freed once they are gone. */
void peers_free(struct peers *p);
int peers_port(const struct peers *p);
/* Prometheus text for the peer port's refused handshakes (common/net/conn.h). */
void peers_listener_metrics(const struct peers *p, struct buf *out);

/* Versions this node fetches or holds: announced to every peer (adding
 * one asks each peer for its bitfield of it). Peers' bitfields are kept
 * only for these versions; a Bitfield of any other is ignored. */
void peers_add_fetch(struct peers *p, struct fetch *f);
void peers_remove_fetch(struct peers *p, struct fetch *f);
/* Block b of f became durable here: tell the peers. */
void peers_have(struct peers *p, struct fetch *f, uint32_t b);
/* fetch_hooks.reading: this node reads block b of f from the origin; its
 * peers are told (Have.reading) and those that ask get its bytes as they
 * come, unverified (agent/peer_pieces.c). */
void peers_reading(struct peers *p, struct fetch *f, uint32_t b, enum fetch_reading what,
		   const uint8_t *buf, uint32_t got, int ok);
/* Blocks became wanted: hand out requests. */
void peers_wake(struct peers *p);
/* node sent data that failed verification: drop the connection. With f,
 * it is first told which block (block b of f) so it checks its copy. */
void peers_drop(struct peers *p, const char *node, const char *why, struct fetch *f, uint32_t b);
/* A peer says a block it had from this node did not match its hash h:
 * fn(arg, h) runs (agent/watch.c checks the copy here). */
void peers_on_bad_block(struct peers *p, void (*fn)(void *arg, const struct hash_id *h), void *arg);
/* The peers the scheduler names (all versions together), with the static
 * keys it registered for them (n * SECURE_KEY_BYTES; zeros: none): a peer
 * connects, or answers, only as a named node with its key. Connections to
 * nodes no longer named are kept while they are useful; this node dials
 * the named ones whose name sorts after its own, the others dial it. */
void peers_set(struct peers *p, const char *const *nodes, const char *const *addrs,
	       const uint8_t *keys, size_t n);
void peers_stats(const struct peers *p, struct peers_stats *out);
/* Bytes this node served of version vid. */
uint64_t peers_served(const struct peers *p, const uint8_t *vid);

#endif
