/* The fetch engine: one dataset version into the cache. Its blocks come
 * from the cache (identical blocks of other files and versions), from peers
 * (agent/peer.c asks and hands the bytes here) or from the origin for the
 * blocks its plan names: on a daemon the share the scheduler gives this
 * node, for a standalone pull (agent/pull.c) the whole source. Every block
 * is hashed on the pool and checked against the manifest when its hash is
 * known, written, made durable and indexed before it is announced, and the
 * complete version is published: at TARGET/NAME in one rename, or by the
 * caller's complete hook. Loop thread only. */
#ifndef SYNCBIT_FETCH_H
#define SYNCBIT_FETCH_H

#include <signal.h>
#include <stdint.h>
#include <uv.h>

#include "agent/cache.h"
#include "common/buf.h"
#include "common/hash.h"
#include "common/manifest.h"
#include "common/progress.h"
#include "common/source/source.h"

/* A block known by hash and missing here waits this long for a peer to
 * offer it before this node reads it from the origin itself. */
#define FETCH_NO_PEER_MS 8000
/* Bytes of a block streamed from its reader wait this long for the
 * block's hash (the read failed if it has not come: they go). */
#define FETCH_HELD_MS 10000
/* Files of at most this many bytes in this node's origin share are read
 * before the others. */
#define FETCH_SMALL_FIRST (64u << 10)
/* A repair whose origin cannot be read tries it again after this, twice
 * as long after each failure, at most _MAX (fetch_options.repair). */
#define FETCH_ORIGIN_RETRY_MS	  10000
#define FETCH_ORIGIN_RETRY_MAX_MS 300000

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
	/* Of bytes_from_origin: blocks whose hash was unknown, read to learn
	 * it, that the cache already held (another file, dataset or version). */
	uint64_t bytes_origin_held;
	uint32_t refetch_bad_peer, refetch_no_peer;
	uint32_t bad_blocks; /* blocks from peers that failed verification */
};

struct fetch;

/* What an origin read the fetch streams did (fetch_hooks.reading). */
enum fetch_reading {
	FETCH_READING_START, /* began: nothing in yet */
	FETCH_READING_MORE,  /* more of its bytes are in, in order */
	FETCH_READING_END,   /* over: all of them are in when ok, else it failed */
};

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
	/* Without a target root: every block is durable and m (hardlinks
	 * filled, valid, its id id) is complete; record and publish it. 0, or
	 * a negative error with *detail (malloc'd) that fails the fetch. */
	int (*complete)(void *arg, struct fetch *f, const Manifest *m, const struct hash_id *id,
			char **detail);
	/* File m->files[index] was fetched and is durable as an object (not
	 * called for files held already when the fetch began). May be NULL. */
	void (*file_done)(void *arg, struct fetch *f, size_t index);
	/* The fetch is over (done ran) and nothing runs any more: every block
	 * written is durable and indexed, or dropped with its partial. */
	void (*idle)(void *arg, struct fetch *f);
	/* An origin read of block b whose hash is unknown, of a format 2
	 * version and more than one piece (so peers may take it as it
	 * arrives), from a source that tells progress: what, and the first
	 * got bytes of buf (the read's buffer, valid during the call only),
	 * the block's bytes in order from its start. With END, ok says
	 * whether the read succeeded (got is then the block's length): the
	 * block is then verified and stored as any other. May be NULL. */
	void (*reading)(void *arg, struct fetch *f, uint32_t b, enum fetch_reading what,
			const uint8_t *buf, uint32_t got, int ok);
};

/* Which block a peer is asked for next (agent/fetch_order.c decides it, for
 * peers and for this node's origin share alike). */
enum fetch_order {
	FETCH_ORDER_AUTO = 0, /* by the source: FILES for oci://, RAREST otherwise */
	/* Rarest first from a random start across the whole version (the
	 * files a consumer waits for first): blocks spread fastest when
	 * only the whole version matters. */
	FETCH_ORDER_RAREST,
	/* Files complete one after another (documents, then the consumer's
	 * order, then the manifest's; waited-for files first): the earliest
	 * such file among the blocks a peer has, rarest first within it. */
	FETCH_ORDER_FILES,
};

/* When written blocks are made durable. Either way a block is indexed (and
 * announced) only once an fsync covers it, and a file becomes an object
 * only once its data and its directory entry are durable. */
enum fetch_sync {
	/* A file's written blocks are synced as soon as no sync runs for it,
	 * and each complete file is sealed with its own fsyncs and index
	 * commit: blocks reach peers with the least delay (the daemon). */
	FETCH_SYNC_EAGER = 0,
	/* A file's blocks are synced 16 at a time, at least every second, and
	 * whenever none of its blocks is in flight; the last ones are covered
	 * by the file's seal; sealed files are made durable together by one
	 * syncfs and indexed in one transaction, 64 at a time: few syncs and
	 * commits for a tree of small files (a standalone pull). */
	FETCH_SYNC_BATCHED,
};

struct fetch_options {
	const char *name; /* the dataset's name */
	/* Publish at target_root/name in one rename; NULL: hooks.complete
	 * records and publishes the complete version. */
	const char *target_root;
	const uint8_t *version_id; /* HASH_LEN bytes; NULL: zero */
	const struct source_options *so;
	/* The source, already listed, to read the origin from (borrowed: it
	 * must outlive the fetch); NULL: opened and listed on the first
	 * origin read. Its listing must describe the manifest's files. */
	struct source *src;
	const char *shown; /* how errors name the source; NULL: the manifest's */
	int origin_jobs;   /* origin reads in flight; 0: the source's hint */
	int whole_blocks;  /* one read per origin block, never split in parts */
	enum fetch_sync sync;
	struct progress *progress; /* bytes stored are added to it; may be NULL */
	int quiet;		   /* failures go to the hooks only, not to the log */
	/* Set (by a signal handler) to stop at the next consistent point: the
	 * files whose blocks are being read are finished and stored, no other
	 * is started, and the fetch fails with SB_ECANCELED, publishing
	 * nothing. */
	volatile sig_atomic_t *stop;
	/* A repair of the version in place at target_root/name, whose
	 * manifest has every block hash: files are put back into that tree
	 * one by one (those in place stay, each other appears by one rename)
	 * instead of flipping the whole version; and a source that cannot
	 * be listed or read does not fail the fetch: the blocks it was to
	 * give wait for a peer again and the origin is tried again after a
	 * backoff (FETCH_ORIGIN_RETRY_MS), fetch_waiting() saying why. */
	int repair;
	enum fetch_order order; /* which block is asked for next */
};

/* Start fetching manifest m (copied; unknown hashes are zero) as o says.
 * Nothing is read from the origin before fetch_set_origin. */
int fetch_open(uv_loop_t *loop, struct cache *c, const Manifest *m, const struct fetch_options *o,
	       const struct fetch_hooks *hooks, struct fetch **out);
/* fetch_open of version version_id as dataset name, published under
 * target_root/name (NULL: recorded in the cache only, fetch_published()
 * once it is), synced eagerly (the daemon's fetch). */
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
/* 0 while it runs and once published, else the failure (negative). */
int fetch_status(const struct fetch *f);
/* A repair whose origin failed: why its blocks wait for a peer (one line,
 * owned by f), or NULL. */
const char *fetch_waiting(const struct fetch *f);
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
 * belongs to the fetch, which verifies and stores it (verified: it was
 * checked piece by piece on arrival, against piece hashes checked against
 * the block's hash, and is stored without hashing it again). Bytes for a
 * block already held or being stored are dropped. Bytes of a block whose
 * hash is unknown (streamed by its reader as they came from the origin)
 * are kept, unverified and unwritten, until the hash comes
 * (fetch_add_hashes: then verified and stored, a mismatch blamed on peer)
 * or for FETCH_HELD_MS; they count in fetch_peer_storing meanwhile. */
void fetch_block_received(struct fetch *f, uint32_t b, uint8_t *payload, size_t len,
			  const char *peer, int verified);
/* 1 while bytes of block b wait here for its hash. */
int fetch_block_held(const struct fetch *f, uint32_t b);
/* Bytes of block b from peer failed their check (what: "block", or "a
 * piece of block" while it arrives; the block is asked elsewhere):
 * counted, logged, and the peer reported to hooks.bad_peer. */
void fetch_block_bad(struct fetch *f, uint32_t b, const char *peer, const char *what);
/* Bytes of blocks from peers that are waiting to be verified and written,
 * or being so: what peers hold back new requests on (peer_fill). When one
 * is done the fetch's wake hook runs. */
uint64_t fetch_peer_storing(const struct fetch *f);
/* Blocks still missing that are not being stored (for endgame). */
uint32_t fetch_missing(const struct fetch *f);
/* ---- the order blocks are fetched in (agent/fetch_order.c) ---- */

/* The policy o (FETCH_ORDER_AUTO: by m's source) comes to for manifest m. */
enum fetch_order fetch_order_of(const Manifest *m, enum fetch_order o);
enum fetch_order fetch_order(const struct fetch *f);
/* A consumer reads files (indices into the manifest's files) in this
 * order: they are fetched in it, after the small files and before the
 * files never named. A file named before keeps its place. */
void fetch_order_files(struct fetch *f, const size_t *files, size_t n);
/* A consumer waits for m->files[index] now: its blocks go first on this
 * node, from its origin share and from peers, whatever the policy. */
void fetch_want_file(struct fetch *f, size_t index);
int fetch_file_wanted(const struct fetch *f, size_t index);
/* The needed block (FETCH_NEED) to ask a peer holding the blocks of bitfield
 * has (LSB first) for next, by the fetch's policy; ties go to the first
 * found from block start on. 1 with *out, or 0 when the peer has none. */
int fetch_order_pick(const struct fetch *f, const uint8_t *has, uint32_t start, uint32_t *out);
/* 1 when fetch_order_pick may choose otherwise than plain rarest first
 * (agent/pick.h): FETCH_ORDER_FILES, or a file a consumer waited for. */
int fetch_order_matters(const struct fetch *f);
/* uv_now() when bytes of the version last reached this node (a part of an
 * origin block, a block from a peer or a copy from the cache), 0: none. */
uint64_t fetch_arrived_ms(const struct fetch *f);

/* Files of the version not yet durable as objects here. */
size_t fetch_files_missing(const struct fetch *f);
/* 1 when regular file m->files[index] of the fetch's manifest is durable
 * here as a cache object (every block verified, sealed and indexed; its
 * block hashes in the manifest all known), else 0. */
int fetch_file_done(const struct fetch *f, size_t index);

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
