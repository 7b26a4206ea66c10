/* Internal to the peer side (agent/peer.c: connections, bitfields,
 * requests; agent/peer_serve.c: serving blocks to peers). Loop thread only,
 * except serve work on the pool. */
#ifndef SYNCBIT_PEER_INT_H
#define SYNCBIT_PEER_INT_H

#include "agent/peer.h"
#include "common/conn.h"

#define BITFIELD_BLOCKS_MAX (1u << 26)
#define TICK_MS		    500
#define CTL_BODY_MAX	    (BITFIELD_BLOCKS_MAX / 8 + 1024)
/* The largest body of each other message (packed protobuf). */
#define HAVE_BODY_MAX	 (1u << 20)
#define REQUEST_BODY_MAX 256
#define BLOCK_BODY_MAX	 256
#define REJECT_BODY_MAX	 512
#define CANCEL_BODY_MAX	 64

struct peer;

struct pver {
	uint8_t vid[HASH_LEN];
	uint32_t nblocks;
	uint8_t *bits;
	struct fetch *f; /* the version as this node fetches or holds it */
};

struct req {
	uint64_t id;
	struct fetch *f;
	uint32_t b;
	uint64_t sent_ms;
};

struct serve {
	uint64_t id;
	struct hash_id h;
	uint8_t vid[HASH_LEN];
	struct peer *pe;
	uint8_t *buf;
	uint32_t len;
	int rc;
	int by_file; /* plain connection: the payload goes by sendfile */
	int fd;	     /* with by_file: the open cache file, from file_off */
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
	uv_timer_t tick;
	int serve_busy;
	int files_open;	    /* cache files queued for sendfile payloads */
	uint32_t block_cap; /* largest block of a version fetched so far: a Block's payload cap */
	uint64_t next_req_id;
	uint64_t last_keepalive_ms;
	uint64_t refused_logged_ms; /* the last line about a peer with the wrong key */
	struct peers_stats st;
	int closing, tick_closed;
};

/* Free a closed peer once no serve work refers to it (may free the set). */
void peer_release(struct peer *pe);
/* Start disk reads for queued requests while serve slots are free. */
void peer_pump_serve(struct peers *p);
/* Frame handlers of the serving side. */
int peer_h_request(void *ctx, const uint8_t *body, size_t len, uint8_t *payload, size_t plen);
int peer_h_cancel(void *ctx, const uint8_t *body, size_t len, uint8_t *payload, size_t plen);

#endif
