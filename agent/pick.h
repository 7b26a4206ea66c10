/* Which block to ask a peer for, as a pure decision over what the caller
 * shows it: rarest first among the needed blocks the peer has, ties to the
 * first in scan order (the scan starts at a random block), then in the
 * endgame a block in flight elsewhere whose requests are all overdue; and
 * how many requests a peer's pipeline holds. The agent's requests
 * (agent/peer_request.c) and the distribution model (bench/sim) decide
 * through these same functions, except where a fetch orders its blocks
 * otherwise (oci:// layers, files a consumer waits for: agent/fetch_order.c).
 * Pure; thread-safe. */
#ifndef SYNCBIT_PICK_H
#define SYNCBIT_PICK_H

#include <stddef.h>
#include <stdint.h>

/* Requests in flight per peer: PEER_PIPELINE_MIN plus enough to keep
 * PEER_PIPELINE_SECONDS of the peer's measured rate in flight, which covers
 * bandwidth x delay for round trips up to that long; at most _MAX. */
#define PEER_PIPELINE_MIN     2
#define PEER_PIPELINE_MAX     32
#define PEER_PIPELINE_SECONDS 0.5
/* No new requests while this many bytes from peers wait to be verified and
 * written (all fetches): when the pool or the disk is slower than the
 * links, received blocks would otherwise pile up in memory. */
#define PEER_STORING_MAX (64u << 20)
/* Blocks streamed by their readers (hash unknown, kept in memory until it
 * comes) are asked for only while the ones under way total less. */
#define PEER_STREAMED_MAX     (128u << 20)
#define PEER_ENDGAME_ASKS     2	      /* peers asked at once for one block in the endgame */
#define PEER_ENDGAME_AFTER_MS 1000    /* ...once its requests are overdue by this */
#define PICK_RATE_FLOOR	      65536.0 /* bytes/s assumed of a peer not measured yet */

/* A block as the scan sees it. */
enum pick_kind {
	PICK_HELD,    /* held, or being stored: not asked */
	PICK_WAITING, /* hash unknown, or read from the origin here */
	PICK_NEED,    /* hash known, asked of nobody */
	PICK_ASKED,   /* asked of some peer */
};

/* One scan's running choice (pick_begin, pick_consider per block, pick_end). */
struct pick {
	uint32_t best, best_avail;
	uint32_t waiting; /* blocks PICK_WAITING or PICK_NEED seen */
	uint32_t n_endgame;
	uint32_t endgame[PEER_PIPELINE_MAX];
};

void pick_begin(struct pick *p);
/* Block b of kind k; peer_has: the peer's bitfield has it; avail: how many
 * connected peers have it; asks: requests for it in flight; asked_here(ctx,
 * b) is called only for a PICK_ASKED block the peer has with room in the
 * endgame list, 1 when this peer was asked for it already. Returns 1 when
 * no block later in the scan can change the choice (a needed block only
 * this peer has: nothing is rarer), so the caller may stop. */
int pick_consider(struct pick *p, uint32_t b, enum pick_kind k, int peer_has, uint32_t avail,
		  uint32_t asks, int (*asked_here)(const void *ctx, uint32_t b), const void *ctx);
/* The choice: the rarest needed block; else, once no block is waiting or
 * needed any more, the first endgame block for which overdue(ctx, b) says 1.
 * 1 with *b set, or 0. */
int pick_end(const struct pick *p, int (*overdue)(const void *ctx, uint32_t b), const void *ctx,
	     uint32_t *b);

/* 1 when a request sent at sent_ms to a peer that delivers rate bytes/s and
 * has nreqs requests in flight is overdue at now: older than twice what the
 * peer needs for everything asked of it (block_len bytes each), plus
 * PEER_ENDGAME_AFTER_MS. */
int pick_request_overdue(uint64_t now, uint64_t sent_ms, uint32_t block_len, size_t nreqs,
			 double rate);

/* Requests to keep in flight to a peer that delivers rate bytes/s in blocks
 * of block_len bytes. */
size_t pick_depth(double rate, uint32_t block_len);

#endif
