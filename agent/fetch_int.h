/* Internal to the fetch engine (agent/fetch.c: setup, peers' blocks,
 * completion; agent/fetch_write.c: verifying, writing and making blocks
 * durable, and reading the origin). Loop thread only, except the pool work
 * functions named so. */
#ifndef SYNCBIT_FETCH_INT_H
#define SYNCBIT_FETCH_INT_H

#include "agent/fetch.h"
#include "common/buf.h"

enum job_kind { JOB_ORIGIN, JOB_PEER, JOB_LOCAL };

struct ffile {
	size_t index;	/* into m->files */
	uint32_t first; /* first block in the version */
	uint32_t nblocks;
	uint32_t have;	    /* blocks durable */
	uint32_t written;   /* blocks written (durable or not) */
	uint32_t inflight;  /* blocks being read or stored */
	struct hash_id key; /* its partial's: the source state it holds */
	/* Opened when the first block is stored, or at the start when the
	 * index holds blocks of it (a resume): one descriptor per file that
	 * is being assembled, not per file of the version. */
	struct cache_partial *part;
	struct buf pend;    /* uint32 blocks written, awaiting sync */
	struct buf syncing; /* being synced */
	uint64_t last_sync_ms;
	int started; /* an origin read of it began (a stop finishes it) */
	int sync_busy, sealing, done;
	int sealed; /* FETCH_SYNC_BATCHED: awaiting the group commit */
	int rc;
	uv_work_t work;
	struct fetch *f;
};

struct job {
	struct fetch *f;
	enum job_kind kind;
	uint32_t b;
	uint8_t *buf; /* block bytes */
	int owned;    /* buf freed after the job (peer payloads, local copies) */
	size_t len;
	int expect;	  /* the block's hash is known and must match */
	int verified;	  /* it matched already (pieces checked on arrival) */
	struct hash_id h; /* computed */
	int rc;
	int held; /* hash unknown, and the cache already held the block */
	char *peer;
	uv_work_t work;
	size_t slot; /* origin slot, for JOB_ORIGIN */
	/* An origin block from an asynchronous source is read as parts, in
	 * parallel: the first block of a node's share lands after one block
	 * time, not after (reads in flight) block times. */
	uint32_t parts, parts_issued, parts_done; /* in flight: issued - done */
	int part_rc;
	uint64_t seq; /* started after every job with a lower one */
	/* JOB_ORIGIN: uv_hrtime() when asked, and when the bytes were all
	 * read (0: not yet), for the block fetch latency. */
	uint64_t asked_ns, arrived_ns;
	/* JOB_ORIGIN told to hooks.reading: the bytes in of each part (parts
	 * entries of nslots + 1), and how many in order were told. */
	int streamed;
	size_t *part_got;
	uint32_t told;
};

/* Bytes of a block whose hash is unknown, streamed from its reader, that
 * wait for the hash (fetch_block_received). */
struct held {
	uint32_t b;
	uint8_t *buf;
	char *peer;
	uint64_t since_ms;
	struct held *next;
};

struct fetch {
	uv_loop_t *loop;
	struct cache *c;
	char *name, *target_root;
	uint8_t vid[HASH_LEN];
	Manifest *m;
	struct source_options so;
	struct fetch_options o; /* strings owned: name, target_root, shown */
	struct fetch_hooks hooks;

	struct ffile *files;
	size_t nfiles;
	uint32_t nblocks;
	uint32_t *bfile;      /* block -> index into files */
	uint8_t *state;	      /* enum fetch_block_state */
	uint8_t *bits;	      /* durable */
	uint8_t *from_origin; /* read from the source by this node */
	uint8_t *planned;     /* in this node's origin plan */
	uint8_t *tainted;     /* a peer sent bad bytes for it */
	uint16_t *avail;
	uint8_t *asks;
	uint64_t *lonely_ms; /* when a needed block was first seen with no holder */
	struct buf origin_q; /* uint32 blocks to read from the origin */
	size_t origin_head;

	struct source *src;
	int src_borrowed;  /* o.src: not freed here */
	int src_state;	   /* 0 none, 1 listing, 2 ready */
	size_t *src_index; /* manifest file index -> listing index */
	struct job *slots; /* origin blocks being read: nslots + 1 */
	size_t nslots;	   /* origin reads in flight at most */
	size_t slots_busy; /* origin blocks being read or stored */
	size_t reads_busy; /* origin reads (parts) in flight */
	uint64_t next_seq;

	/* Bytes of peer blocks handed to the pool and not yet stored, or
	 * held for their hash. */
	uint64_t peer_storing;
	struct held *held;

	/* FETCH_SYNC_BATCHED: sealed files awaiting the group commit, and
	 * those being committed. */
	struct ffile **ready, **flushing;
	size_t nready, nflushing;
	int flush_busy, flush_rc;
	uv_work_t flush_work;

	uv_timer_t timer;
	int pending; /* pool works and source reads in flight */
	int dead, timer_closed;
	int rc;
	char *error;
	int complete, publishing, published;
	int dropped;   /* unfinished partials dropped after the failure */
	int idle_told; /* hooks.idle ran */
	/* o.repair: the origin failed; not read again before origin_after_ms */
	uint64_t origin_after_ms;
	unsigned origin_backoff_ms;
	char *waiting; /* fetch_waiting() */
	struct fetch_stats st;
	uint64_t arrived_ms; /* fetch_arrived_ms() */

	/* The order blocks are asked for in (agent/fetch_order.c), per file
	 * of files[]: its key (lower first), its place in the consumer's
	 * order (1 + rank; 0: not named), whether a consumer waits for it. */
	enum fetch_order order;
	uint64_t *fkey;
	uint32_t *frank;
	uint8_t *fwant;
	uint32_t nranked, nwanted;
};

/* A needed block that some cached file already holds is copied from it. */
void fetch_try_local(struct fetch *f, uint32_t b);
/* Bytes held for a hash that has not come within FETCH_HELD_MS go
 * (agent/fetch_peers.c); all of them go with the fetch. */
void fetch_held_sweep(struct fetch *f, uint64_t now);
void fetch_held_free(struct fetch *f);

/* Record the first failure (one line, printf-style), stop the source and
 * tell the hooks. */
void fetch_fail(struct fetch *f, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An origin that cannot be opened, listed or read: fetch_fail, or for a
 * repair the blocks queued for it wait for a peer again, and it is tried
 * again after the backoff (printf-style line for fetch_waiting). */
void fetch_origin_fail(struct fetch *f, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A block's geometry: where its hash lives (inside the manifest copy; zero
 * = unknown), its offset within its file and its length. */
static inline uint8_t *fetch_hash_ptr(const struct fetch *f, uint32_t b)
{
	const struct ffile *ff = &f->files[f->bfile[b]];
	return f->m->files[ff->index]->block_hashes.data + (size_t)(b - ff->first) * HASH_LEN;
}

static inline int fetch_known(const struct fetch *f, uint32_t b)
{
	return !hash_is_zero((const struct hash_id *)fetch_hash_ptr(f, b));
}

static inline uint64_t fetch_block_off(const struct fetch *f, uint32_t b)
{
	return (uint64_t)(b - f->files[f->bfile[b]].first) * f->m->block_size;
}

/* fetch_block_len (fetch.h) without the call. */
static inline uint32_t fetch_len(const struct fetch *f, uint32_t b)
{
	const struct ffile *ff = &f->files[f->bfile[b]];
	return manifest_block_len(f->m->files[ff->index]->size, f->m->block_size, b - ff->first);
}

/* The source as errors name it. */
static inline const char *fetch_shown(const struct fetch *f)
{
	return f->o.shown ? f->o.shown : f->m->source;
}

static inline int fetch_stopping(const struct fetch *f)
{
	return f->o.stop && *f->o.stop;
}

/* agent/fetch_order.c: the keys of the files (after setup_blocks), and
 * their memory; the origin queue from origin_head on reordered by key,
 * then block, each block once. */
void fetch_order_setup(struct fetch *f);
void fetch_order_free(struct fetch *f);
void fetch_order_queue(struct fetch *f);
/* The entry of files[] for manifest file index, or nfiles. */
size_t fetch_file_slot(const struct fetch *f, size_t index);

/* Open ff's partial if it is not open yet: 0, or the failure (reported). */
int fetch_open_part(struct fetch *f, struct ffile *ff);
/* Block b of ff is durable and indexed with hash h. */
void fetch_mark_have(struct fetch *f, struct ffile *ff, uint32_t b, const struct hash_id *h);
/* Nothing runs: commit sealed files, end a stopped fetch, tell hooks.idle. */
void fetch_quiet(struct fetch *f);
/* Pool work accounting: a fetch is freed once stopped and nothing runs. */
void fetch_queue_work(struct fetch *f, uv_work_t *w, uv_work_cb fn, uv_after_work_cb after);
void fetch_unpend(struct fetch *f);
void fetch_release(struct fetch *f);
/* The source is listed: match its listing to the manifest, size the
 * origin slots and start reading. */
void fetch_source_ready(struct fetch *f);
/* Start origin reads while slots are free. */
void fetch_pump(struct fetch *f);
/* Sync what a file has written, or seal it once every block is durable
 * (FETCH_SYNC_EAGER) or written (FETCH_SYNC_BATCHED). */
void fetch_check_file(struct ffile *ff);
/* FETCH_SYNC_BATCHED: make the sealed files durable and index them. */
void fetch_flush_ready(struct fetch *f);
/* Every file done: record the manifest and publish. */
void fetch_maybe_finish(struct fetch *f);
/* Block b goes back to waiting for a peer (or for its hash). */
void fetch_back_to_need(struct fetch *f, uint32_t b);
/* Verify and write block b from buf (NULL: copy it from the cache);
 * verified: buf was checked against the block's hash already (its pieces,
 * as they arrived), so it is written without hashing it again. */
void fetch_start_store(struct fetch *f, enum job_kind kind, uint32_t b, uint8_t *buf,
		       const char *peer, int verified);
/* A block verified and written on the pool (fetch_write.c), then its
 * result on the loop. */
void fetch_write_work(uv_work_t *w);
void fetch_write_done(uv_work_t *w, int status);

#endif
