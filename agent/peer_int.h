/* Internal to the peer side (agent/peer.c: connections, bitfields,
 * requests; agent/peer_serve.c: serving blocks to peers). Loop thread only,
 * except serve work on the pool. */
#ifndef SYNCBIT_PEER_INT_H
#define SYNCBIT_PEER_INT_H

#include "agent/peer.h"
#include "common/net/conn.h"
#include "common/net/wire.h"

#define BITFIELD_BLOCKS_MAX (1u << 26)
#define TICK_MS		    500
#define CTL_BODY_MAX	    (BITFIELD_BLOCKS_MAX / 8 + 1024)
/* Body limits of the other peer messages (the dispatch table in peer.c);
 * a Block's data is its payload, not its body. */
#define PEER_HAVE_MAX	   (1u << 20)
#define PEER_REQUEST_MAX   256
#define PEER_BLOCK_MAX	   256
#define PEER_REJECT_MAX	   512
#define PEER_CANCEL_MAX	   64
#define PEER_BAD_BLOCK_MAX 256
/* A PieceHeader: the ids and every piece hash of the largest block. */
#define PEER_PIECE_MAX (64 + HASH_LEN * (BLOCK_SIZE_MAX / PIECE_SIZE))

struct peer;

/* Blocks a peer reads from the origin at once that this node keeps track
 * of (more are not asked for before they are held). */
#define PVER_READING_MAX 64

struct pver {
	uint8_t vid[HASH_LEN];
	uint32_t nblocks;
	uint8_t *bits;
	uint8_t *pbits;	 /* blocks it is receiving and passes on (Have.partial) */
	struct fetch *f; /* the version as this node fetches or holds it */
	/* Blocks it reads from the origin and streams (Have.reading). */
	uint32_t reading[PVER_READING_MAX];
	uint32_t nreading;
};

struct live;

struct req {
	uint64_t id;
	struct fetch *f;
	uint32_t b;
	uint64_t sent_ms;
	struct live *lv; /* arriving as pieces (agent/peer_pieces.c) */
	/* A block streamed by its reader, hash unknown: pieces unchecked in
	 * pbuf, pgot bytes of it so far. */
	int streamed;
	uint8_t *pbuf;
	uint32_t pgot;
};

struct stream;

/* A block this node receives as pieces from a peer: each piece is checked
 * against the piece hashes, themselves checked against the block id, and
 * is passed on at once to peers that ask for the block meanwhile. Kept
 * until the block is durable here (then it is served from the cache) or
 * its transfer fails. Unverified bytes are never kept, written or sent. */
struct live {
	struct peers *p;
	struct hash_id h;
	uint8_t vid[HASH_LEN];
	struct fetch *f; /* NULL: whole, read from the cache for one request */
	uint32_t b, len, npieces;
	uint32_t ready; /* pieces [0, ready) verified, in buf */
	uint8_t *buf;	/* len bytes; NULL: in file fd at file_off */
	int fd;
	uint64_t file_off;
	uint8_t *leaves; /* npieces piece hashes */
	int receiving;	 /* a request still brings pieces */
	int dead;	 /* failed or done: taken by no new stream */
	int announced;	 /* peers were told (Have.partial or .reading) */
	/* Read from the origin here, hash unknown: sent without piece hashes.
	 * buf is made when first asked for; until then src is the read's
	 * buffer, got bytes of it in (until the read ends). */
	int origin;
	const uint8_t *src;
	uint32_t got;
	uint64_t done_ms; /* when the last piece arrived */
	int sends;	  /* piece frames queued that point into buf */
	struct stream *streams;
	struct live *next;
};

struct serve {
	uint64_t id;
	struct hash_id h;
	uint8_t vid[HASH_LEN];
	struct peer *pe;
	uint8_t *buf;
	uint32_t len;
	int rc;
	int by_file;	 /* plain connection: the payload goes by sendfile */
	int pieces;	 /* asked as pieces: sent so when it has more than one */
	uint8_t *leaves; /* with pieces: its piece hashes, checked on the pool */
	int fd;		 /* with by_file: the open cache file, from file_off */
	uint64_t file_off;
	uv_work_t work;
	struct serve *next;
};

struct peer {
	struct peers *p;
	struct conn *c;
	char *node;
	int ready, closed;
	struct pver *vers;
	size_t nvers;
	struct req reqs[PEER_PIPELINE_MAX];
	uint64_t window_bytes; /* received since the last tick */
	double rate;	       /* bytes/s, smoothed */
	uint32_t block_len;    /* typical block size seen */
	size_t nreqs;
	struct serve *q_head, *q_tail;
	size_t qlen;
	int reading; /* serve jobs on the pool */
	struct peer *next;
};

struct known {
	char *node, *addr;
	uint8_t key[SECURE_KEY_BYTES]; /* as the scheduler registered it; zeros: none */
	uint64_t next_dial_ms;
};

struct ban {
	char *node;
	uint64_t until_ms;
};

struct served {
	uint8_t vid[HASH_LEN];
	uint64_t bytes;
};

struct peers {
	uv_loop_t *loop;
	char *node;
	struct secure_token token;
	struct secure_keypair key;
	int encrypt;
	struct cache *cache;
	struct conn_listener *listener;
	struct peer *list;
	struct fetch **fetches;
	size_t nfetches;
	struct known *known;
	size_t nknown;
	struct served *served;
	size_t nserved;
	struct ban *bans;
	size_t nbans;
	struct live *lives;
	uv_timer_t tick;
	int serve_busy;
	int files_open;	    /* cache files queued for sendfile payloads */
	uint32_t block_cap; /* largest block of a version fetched so far: a Block's payload cap */
	uint64_t next_req_id;
	uint64_t last_keepalive_ms;
	uint64_t refused_logged_ms; /* the last line about a peer with the wrong key */
	struct peers_stats st;
	int closing, tick_closed;
	void (*on_bad_block)(void *arg, const struct hash_id *h);
	void *bad_block_arg;
};

/* The next block to ask pe for: the first among the needed blocks it has
 * in the fetch's order (agent/fetch_order.c), then in the endgame one
 * whose requests elsewhere are overdue. 1 with
 * *f and *b set, or 0. */
int peer_pick(struct peer *pe, struct fetch **f, uint32_t *b);
/* Ask pe for blocks until its pipeline is as deep as its rate needs
 * (agent/peer_request.c). */
void peer_fill(struct peer *pe);

static inline int peer_bit(const uint8_t *bits, uint32_t b)
{
	return bits[b / 8] >> (b % 8) & 1;
}
/* 1 while node is shunned for having sent bad data (peers_drop). */
int peer_banned(struct peers *p, const char *node);
/* Free a closed peer once no serve work refers to it (may free the set). */
void peer_release(struct peer *pe);
/* Start disk reads for queued requests while serve slots are free. */
void peer_pump_serve(struct peers *p);
/* Frame handlers of the serving side. */
int peer_h_request(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		   uint8_t *payload, size_t plen);
int peer_h_cancel(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		  uint8_t *payload, size_t plen);
int peer_h_bad_block(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		     uint8_t *payload, size_t plen);
/* Tell pe that block b of f failed verification here, then close: 1 when
 * the report is on its way (the connection closes once it is written). */
int peer_send_bad_block(struct peer *pe, struct fetch *f, uint32_t b);

/* The index of pe's request id, or -1. */
int peer_find_req(struct peer *pe, uint64_t id);
/* Forget pe's request i (Cancel sent when cancel). */
void peer_drop_req(struct peer *pe, size_t i, int cancel);
/* pe's request i brought all of its block (payload, malloc'd, now the
 * fetch's): handed to the fetch, duplicates elsewhere canceled. */
void peer_block_done(struct peer *pe, size_t i, uint8_t *payload, size_t plen, int verified);
/* Count n bytes served to a peer for version vid. */
void peer_add_served(struct peers *p, const uint8_t *vid, uint64_t n);

/* agent/peer_pieces.c: blocks passed on piece by piece. */
int peer_h_piece(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		 uint8_t *payload, size_t plen);
/* Request r of pe ends (answered, rejected, canceled or its peer gone):
 * a transfer it left unfinished fails for those it was passed on to. */
void peer_req_end(struct peer *pe, struct req *r);
/* Serve request id of pe from a block still arriving here, when there is
 * one under hash h: 1 when it is served so, 0 when not. */
int peer_stream_start(struct peer *pe, uint64_t id, const struct hash_id *h);
/* Serve request id of pe with a whole block of len bytes read from the
 * cache as pieces whose hashes are leaves (taken): from buf (taken), or
 * with buf NULL by sendfile from fd at off (taken: closed when sent). */
void peer_stream_whole(struct peer *pe, uint64_t id, const struct hash_id *h, const uint8_t *vid,
		       uint8_t *buf, uint32_t len, uint8_t *leaves, int fd, uint64_t off);
/* Forget request id of pe (Cancel): 1 when it was a stream. */
int peer_stream_cancel(struct peer *pe, uint64_t id);
/* pe is gone: its streams end. */
void peer_streams_drop(struct peer *pe);
/* Block b of f is durable here, or f is gone (b = UINT32_MAX: every
 * block): what arrives as pieces for it no longer needs keeping. */
void peer_lives_end(struct peers *p, struct fetch *f, uint32_t b);
/* The set is freed: every live block goes. */
void peer_lives_free(struct peers *p);
/* Blocks received whole whose storing failed: let them go (the tick). */
void peer_lives_sweep(struct peers *p);
/* Have.partial, Have.gone and Have.reading from pe for version v. 0 or
 * SB_EPROTO. */
int peer_have_partial(struct peer *pe, struct pver *v, const Syncbit__Have *m);
/* Block b of v is no longer read from the origin by that peer (or it is
 * held there whole now). */
void pver_unread(struct pver *v, uint32_t b);
/* A block pe streams from the origin, hash unknown, that this node lacks
 * and has not asked for: 1 with *f and *b set, or 0. */
int peer_pick_streamed(struct peer *pe, struct fetch **f, uint32_t *b);
/* Tell pe, just after a Bitfield of f, the blocks of f arriving here that
 * it may ask for before they are held (Have.partial and .reading). */
void peer_tell_lives(struct peer *pe, struct fetch *f);
/* Serve request id of pe, for block b of version vid with no hash, from a
 * block read from the origin here: 1 when it is served so, 0 when not. */
int peer_stream_origin(struct peer *pe, uint64_t id, const uint8_t *vid, uint32_t b);
/* 1 when pe holds block b of v whole or passes it on as pieces. */
static inline int peer_offers(const struct pver *v, uint32_t b)
{
	return (v->bits[b / 8] | (v->pbits ? v->pbits[b / 8] : 0)) >> (b % 8) & 1;
}

#endif
