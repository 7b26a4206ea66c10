/* The block cache. File objects under DATA/objects/ab/<id> hold a file's
 * blocks at their natural offsets, so a published file is a hardlink to its
 * object (1x disk); files being assembled live in DATA/partial/<key>. An LMDB
 * index (DATA/index) maps block hash -> locations, object -> size, pins and
 * LFRU state, and holds manifests and datasets. Identical files are stored
 * once; identical blocks are fetched once. The index is written only on the
 * thread that opened the cache (the loop thread; a write from any other
 * thread aborts); the lookup functions marked thread-safe may run on pool
 * threads, and blocking work there gathers its index updates in a struct
 * cache_updates that the loop thread applies. */
#ifndef SYNCBIT_CACHE_H
#define SYNCBIT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/hash.h"

struct cache;
struct cache_partial;

struct cache_stats {
	uint64_t used;	 /* bytes held in objects */
	uint64_t pinned; /* of which pinned by a dataset's current version */
	uint64_t objects;
	uint64_t capacity; /* 0 = unlimited */
	uint64_t evicted;  /* bytes evicted since the cache was opened */
};

struct cache_dataset {
	char *name;
	struct hash_id manifest_id;
	char *source; /* canonical source URI */
	char *target; /* directory it is published in */
	uint64_t updated_unix;
};

struct cache_block_loc {
	char path[4096]; /* object or partial file holding the block */
	uint64_t offset;
	uint32_t len;
};

/* Open (creating) the cache in data_dir. capacity 0 = unlimited. */
int cache_open(const char *data_dir, uint64_t capacity, struct cache **out);
/* cache_open without waiting for another process that holds the data
 * directory: -EBUSY at once, with that process's pid in *holder (0 when
 * it cannot be told). */
int cache_open_nowait(const char *data_dir, uint64_t capacity, struct cache **out, int *holder);
void cache_free(struct cache *c);
const char *cache_dir(const struct cache *c);
void cache_set_capacity(struct cache *c, uint64_t capacity);
int cache_stats(struct cache *c, struct cache_stats *out);

/* Thread-safe. 1 and fills loc when some file holds the block, 0 if none,
 * negative on error. */
int cache_block_find(struct cache *c, const struct hash_id *h, struct cache_block_loc *loc);

/* Objects (complete files). */
void cache_object_path(const struct cache *c, const struct hash_id *id, char *out, size_t len);
/* 1 if the object is indexed and its file still looks as stored (size,
 * mtime, inode), 0 if absent. A changed file is dropped from the index
 * (and 0 returned): something wrote into it, so it must be fetched again. */
int cache_object_check(struct cache *c, const struct hash_id *id);
/* Read-only, thread-safe: 1 if the object is indexed and its file still
 * looks as stored (size, mtime, inode), else 0. Changes nothing. */
int cache_object_intact(struct cache *c, const struct hash_id *id);
/* Drop an object from the index and unlink its file (used on corruption). */
int cache_object_remove(struct cache *c, const struct hash_id *id);
/* Give an object a new mtime (a source re-published equal content with
 * another date). Objects are shared by hardlinks, so the newest wins. */
int cache_object_set_mtime(struct cache *c, const struct hash_id *id, int64_t mtime_ns);
/* Record an access for LFRU (publishing, serving). */
int cache_object_touch(struct cache *c, const struct hash_id *ids, size_t n);

/* Index updates gathered by blocking work on a pool thread (publishing),
 * applied by the loop thread with cache_updates_apply. Zero-initialise. */
struct cache_stamp {
	struct hash_id id;
	int64_t mtime_ns;
	uint64_t ino;
};
struct cache_updates {
	struct cache_stamp *stamps; /* objects given a new mtime on disk */
	size_t nstamps, stamps_cap;
	struct hash_id *touched; /* objects accessed (LFRU) */
	size_t ntouched, touched_cap;
};
/* Thread-safe (no index access): give the object's file a new mtime and
 * note it in u; the index learns it when u is applied. */
int cache_object_restamp(struct cache *c, const struct hash_id *id, int64_t mtime_ns,
			 struct cache_updates *u);
/* Note accesses of n objects in u. */
void cache_updates_touch(struct cache_updates *u, const struct hash_id *ids, size_t n);
/* Loop thread: apply u in one transaction and empty it. A stamp for an
 * object no longer indexed, or indexed with another file (evicted and
 * stored again meanwhile), is skipped. */
int cache_updates_apply(struct cache *c, struct cache_updates *u);
void cache_updates_close(struct cache_updates *u);

/* Partials: a file being assembled, resumable after a crash. key names the
 * source state (source, path, change token, block size). */
int cache_partial_open(struct cache *c, const struct hash_id *key, uint64_t size,
		       uint32_t block_size, struct cache_partial **out);
/* 1 when the index holds a record of the partial key (so opening it
 * resumes durable blocks), 0 if not, negative on error. Thread-safe. */
int cache_partial_indexed(struct cache *c, const struct hash_id *key);
/* The partial's fd for pwrite of blocks (thread-safe to write). */
int cache_partial_fd(const struct cache_partial *p);
uint64_t cache_partial_nblocks(const struct cache_partial *p);
/* 1 and *h filled if block idx is already durable in the partial. */
int cache_partial_have(const struct cache_partial *p, uint64_t idx, struct hash_id *h);
/* Make blocks durable (fdatasync; blocking: call from a pool thread). */
int cache_partial_sync(struct cache_partial *p);
/* Index blocks written and synced: idx[i] has hash hashes[i]. */
int cache_partial_commit(struct cache_partial *p, const uint64_t *idx, const struct hash_id *hashes,
			 size_t n);
/* All blocks committed: make it an object with the given mode and mtime.
 * Returns the object id. If an equal object exists the partial is dropped.
 * Frees p in every case. */
int cache_partial_finish(struct cache_partial *p, uint32_t mode, int64_t mtime_ns,
			 struct hash_id *object_id);
/* The split form of finishing, for many files at once: record the hash of
 * a block written and synced but not committed (memory only)... */
void cache_partial_set_have(struct cache_partial *p, uint64_t idx, const struct hash_id *h);
/* ...then, on a pool thread (blocking, no index writes), give the file its
 * mode and mtime and rename it into objects/ unless an intact equal object
 * exists; with durable, fsync the file and directory first. Without it the
 * caller must cache_sync_objects() before cache_partials_finish(), which
 * makes many small files durable with one filesystem sync... */
int cache_partial_seal(struct cache_partial *p, uint32_t mode, int64_t mtime_ns, int durable);
/* syncfs() of the object store (blocking; pool thread). */
int cache_sync_objects(struct cache *c);
/* The object id of a sealed partial, or NULL. */
const struct hash_id *cache_partial_object_id(const struct cache_partial *p);
/* ...and index sealed partials as objects in one transaction (loop thread).
 * Frees every partial in ps, whatever the result. */
int cache_partials_finish(struct cache_partial **ps, size_t n);
/* Close without finishing; it stays resumable. */
void cache_partial_close(struct cache_partial *p);
/* Close and delete its file and records. */
void cache_partial_discard(struct cache_partial *p);

/* Datasets and manifests. Setting a dataset's version stores the manifest,
 * pins the objects it references and unpins those of the previous version
 * that the new one does not reference. */
int cache_dataset_set(struct cache *c, const char *name, const char *source, const char *target,
		      const struct hash_id *manifest_id, const void *manifest, size_t manifest_len);
/* 1 and *out filled (free with cache_dataset_close) or 0 if unknown. */
int cache_dataset_get(struct cache *c, const char *name, struct cache_dataset *out);
/* Find the dataset published at target. Same return contract. */
int cache_dataset_find_target(struct cache *c, const char *target, struct cache_dataset *out);
/* Every dataset name (heap array of heap strings, caller frees). */
int cache_dataset_list(struct cache *c, char ***names, size_t *n);
/* Forget a dataset; its objects are unpinned. */
int cache_dataset_remove(struct cache *c, const char *name);
/* Forget a dataset and evict its objects that no other dataset pins
 * (files published from them stay). SB_ENOTFOUND when unknown. */
int cache_dataset_purge(struct cache *c, const char *name, uint64_t *objects, uint64_t *bytes);
/* 1 when d was published into a target that is gone or empty: a pin
 * nothing uses any more (a pull into the cache only is never stale). */
int cache_dataset_stale(const struct cache_dataset *d);
struct cache_dataset_usage {
	uint64_t objects; /* distinct objects of its version still in the cache */
	uint64_t bytes;	  /* their size */
};
int cache_dataset_usage(struct cache *c, const struct cache_dataset *d,
			struct cache_dataset_usage *out);
void cache_dataset_close(struct cache_dataset *d);
/* Manifest bytes by id: 1 and *data (malloc'd) or 0 if unknown. */
int cache_manifest_get(struct cache *c, const struct hash_id *id, uint8_t **data, size_t *len);

/* Evict unpinned objects in LFRU order until used <= target. Reports what
 * went. Also removes unindexed files left by a crash (orphans). */
int cache_evict(struct cache *c, uint64_t target, uint64_t *evicted_objects,
		uint64_t *evicted_bytes);

/* The LFRU ordering key of an object with CRF `crf` last touched at t
 * (seconds): lambda * t + log2(crf). Exposed for tests. */
double cache_lfru_key(double crf, double t);
/* Clock override for tests (seconds); 0 restores the real clock. */
void cache_set_clock(struct cache *c, double now);

#endif
