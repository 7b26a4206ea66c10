/* Internal to the fetch engine (agent/fetch.c: setup, peers' blocks,
 * completion; agent/fetch_store.c: verifying, writing and making blocks
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
	uint32_t have; /* blocks durable */
	struct cache_partial *part;
	struct buf pend;    /* uint32 blocks written, awaiting sync */
	struct buf syncing; /* being synced */
	int sync_busy, sealing, done;
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
	struct hash_id h; /* computed */
	int rc;
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
};

struct fetch {
	uv_loop_t *loop;
	struct cache *c;
	char *name, *target_root;
	uint8_t vid[HASH_LEN];
	Manifest *m;
	struct source_options so;
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
	int src_state;	   /* 0 none, 1 listing, 2 ready */
	size_t *src_index; /* manifest file index -> listing index */
	struct job *slots; /* origin blocks being read: nslots + 1 */
	size_t nslots;	   /* origin reads in flight at most */
	size_t slots_busy; /* origin blocks being read or stored */
	size_t reads_busy; /* origin reads (parts) in flight */
	uint64_t next_seq;

	uv_timer_t timer;
	int pending; /* pool works and source reads in flight */
	int dead, timer_closed;
	int rc;
	char *error;
	int complete, publishing, published;
	struct fetch_stats st;
};

/* Record the first failure (one line, printf-style), stop the source and
 * tell the hooks. */
void fetch_fail(struct fetch *f, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Where block b's hash lives (inside the manifest copy); zero = unknown. */
uint8_t *fetch_hash_ptr(const struct fetch *f, uint32_t b);
int fetch_known(const struct fetch *f, uint32_t b);
/* Offset of block b within its file. */
uint64_t fetch_block_off(const struct fetch *f, uint32_t b);
/* Pool work accounting: a fetch is freed once stopped and nothing runs. */
void fetch_queue_work(struct fetch *f, uv_work_t *w, uv_work_cb fn, uv_after_work_cb after);
void fetch_unpend(struct fetch *f);
void fetch_release(struct fetch *f);
/* Start origin reads while slots are free. */
void fetch_pump(struct fetch *f);
/* Sync what a file has written, or seal it once every block is durable. */
void fetch_check_file(struct ffile *ff);
/* Every file done: record the manifest and publish. */
void fetch_maybe_finish(struct fetch *f);
/* Block b goes back to waiting for a peer (or for its hash). */
void fetch_back_to_need(struct fetch *f, uint32_t b);
/* Verify and write block b from buf (NULL: copy it from the cache). */
void fetch_start_store(struct fetch *f, enum job_kind kind, uint32_t b, uint8_t *buf,
		       const char *peer);
void fetch_store_done(uv_work_t *w, int status);

#endif
