/* Fetching one dataset version on a daemon. Its blocks come from the cache
 * (identical blocks of other files and versions), from peers (agent/peer.c
 * asks and hands the bytes here) or from the origin for the blocks the
 * scheduler's plan gives this node. Every block is hashed on the pool and
 * checked against the manifest before it is written, made durable and
 * indexed before it is announced, and the complete version is published at
 * TARGET/NAME in one rename. Loop thread only. */
#ifndef SYNCBIT_FETCH_H
#define SYNCBIT_FETCH_H

#include <stdint.h>
#include <uv.h>

#include "agent/cache.h"
#include "common/buf.h"
#include "common/hash.h"
#include "common/manifest.h"
#include "common/source/source.h"

/* A block known by hash and missing here waits this long for a peer to
 * offer it before this node reads it from the origin itself. */
#define FETCH_NO_PEER_MS 8000

enum fetch_block_state {
	FETCH_UNKNOWN = 0, /* hash not known yet, another node reads it from the origin */
	FETCH_NEED,	   /* hash known, missing: ask a peer */
	FETCH_PEER,	   /* asked from at least one peer */
	FETCH_ORIGIN,	   /* queued for or being read from the origin */
	FETCH_LOCAL,	   /* being copied from another cached file */
	FETCH_STORING,	   /* being verified and written */
	FETCH_WRITTEN,	   /* written, waiting to be durable */
	FETCH_HAVE,	   /* durable and indexed: may be served */
};

struct fetch_stats {
	uint64_t blocks, blocks_have;
	uint64_t bytes, bytes_have;
	uint64_t bytes_from_origin, bytes_from_peers, bytes_reused;
	uint32_t refetch_bad_peer, refetch_no_peer;
	uint32_t bad_blocks; /* blocks from peers that failed verification */
};

struct fetch;

struct fetch_hooks {
	void *arg;
	/* Block b is durable and indexed here; from_origin when this node
	 * read it from the source (so the scheduler learns its hash). */
	void (*durable)(void *arg, struct fetch *f, uint32_t b, const struct hash_id *h,
			int from_origin);
	/* Blocks became wanted (hashes learned, a request failed): peers may
	 * have work. */
	void (*wake)(void *arg, struct fetch *f);
	/* A peer sent bytes that do not match the block's hash. */
	void (*bad_peer)(void *arg, struct fetch *f, const char *peer, uint32_t b);
	/* Published at TARGET/NAME, or recorded in the cache without a target
	 * root (status 0), or failed (fetch_error()). */
	void (*done)(void *arg, struct fetch *f, int status);
};

/* Start fetching manifest m (copied; unknown hashes are zero) of version
 * version_id as dataset name, published under target_root/name (NULL: kept
 * in the cache only, fetch_published() once it is recorded there). */
int fetch_new(uv_loop_t *loop, struct cache *c, const char *name, const char *target_root,
	      const uint8_t *version_id, const Manifest *m, const struct source_options *so,
	      const struct fetch_hooks *hooks, struct fetch **out);
/* Stop; in-flight work finishes in the background, then memory is freed.
 * No hook runs after this. fetch_free(NULL) is a no-op. */
void fetch_free(struct fetch *f);

/* Hashes that joined the version (from the scheduler). */
void fetch_add_hashes(struct fetch *f, const uint32_t *blocks, const uint8_t *hashes, size_t n);
/* The blocks this node reads from the origin (replaces the previous plan). */
void fetch_set_origin(struct fetch *f, const uint32_t *first, const uint32_t *count, size_t n);

const char *fetch_name(const struct fetch *f);
/* The version's manifest (complete once fetch_complete); the fetch's. */
const Manifest *fetch_manifest(const struct fetch *f);
const uint8_t *fetch_version_id(const struct fetch *f); /* HASH_LEN bytes */
uint32_t fetch_nblocks(const struct fetch *f);
enum fetch_block_state fetch_block_state(const struct fetch *f, uint32_t b);
const struct hash_id *fetch_block_hash(const struct fetch *f, uint32_t b);
uint32_t fetch_block_len(const struct fetch *f, uint32_t b);
/* Bitfield of the durable blocks (LSB first), (nblocks + 7) / 8 bytes. */
const uint8_t *fetch_bits(const struct fetch *f);
int fetch_complete(const struct fetch *f);  /* every block durable */
int fetch_published(const struct fetch *f); /* at TARGET/NAME */
const char *fetch_error(const struct fetch *f);
void fetch_stats(const struct fetch *f, struct fetch_stats *out);

/* Peer bookkeeping: how many connected peers hold block b changed by delta
 * (availability; rarest first and the origin fallback read it). */
void fetch_avail_add(struct fetch *f, uint32_t b, int delta);
uint32_t fetch_avail(const struct fetch *f, uint32_t b);
/* A request for b went out to a peer / ended without data. */
void fetch_block_asked(struct fetch *f, uint32_t b);
void fetch_block_unasked(struct fetch *f, uint32_t b);
uint32_t fetch_block_asks(const struct fetch *f, uint32_t b);
/* Bytes of block b arrived from peer: payload (malloc'd, len bytes) now
 * belongs to the fetch, which verifies and stores it. Bytes for a block
 * already held or being stored are dropped. */
void fetch_block_received(struct fetch *f, uint32_t b, uint8_t *payload, size_t len,
			  const char *peer);
/* Blocks still missing that are not being stored (for endgame). */
uint32_t fetch_missing(const struct fetch *f);

/* ---- what /metrics shows (agent/fetch_metrics.c); loop thread only ---- */

enum fetch_from { FETCH_FROM_ORIGIN, FETCH_FROM_PEER, FETCH_FROM_CACHE };

/* Block fetch latency buckets, in seconds: a 4 MiB block from a peer on a
 * fast link takes milliseconds, from a slow origin many seconds. */
#define FETCH_LATENCY_BUCKETS 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60

/* n bytes of dataset's blocks came from where (counted for the life of the
 * process, across versions). */
void fetch_metrics_bytes(const char *dataset, enum fetch_from from, uint64_t n);
/* A block asked from the origin or a peer arrived after seconds. */
void fetch_metrics_latency(enum fetch_from from, double seconds);
/* The families syncbit_dataset_{origin,peer,reused}_bytes_total and the
 * histogram syncbit_block_fetch_duration_seconds. */
void fetch_metrics_write(struct buf *out);
/* Forget every count (for tests). */
void fetch_metrics_reset(void);

#endif
