/* Internals shared by the cache's files: cache.c (environment, objects,
 * block locations, eviction), cache_partial.c (files being assembled) and
 * cache_dataset.c (datasets, manifests, pins). Same threading rule as
 * cache.h: index writes on one thread. Not for use outside agent/cache*.c. */
#ifndef SYNCBIT_CACHE_INT_H
#define SYNCBIT_CACHE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "agent/cache.h"

#define LOC_OBJECT     0
#define LOC_PARTIAL    1
#define TIER_PROBATION 0
#define TIER_MAIN      1
/* LFRU decay: a reference loses half its weight per hour. */
#define LFRU_LAMBDA (1.0 / 3600.0)

/* An object name that a seal gave and the index does not know yet. Seals
 * of equal content on other pool threads share its file instead of naming
 * the object again; it lives while any partial holding it is open, which
 * is past the index commit that makes the object findable. */
struct cache_claim {
	struct hash_id id;
	uint64_t ino; /* the file the name was given */
	int refs;     /* partials holding it */
	struct cache_claim *next;
};

struct cache {
	char *dir;
	MDB_env *env;
	MDB_dbi blocks, objects, lfru, partials, pblocks, manifests, datasets, meta;
	uint64_t capacity;
	uint64_t evicted; /* bytes cache_evict removed since cache_open */
	double clock;
	int lock_fd;
	pthread_t writer; /* the thread that opened it: the only one that writes the index */
	struct cache_partial *open_partials; /* not swept as orphans */
	pthread_mutex_t seal_lock;	     /* guards claims and naming objects */
	struct cache_claim *claims;
};

struct cache_partial {
	struct cache *c;
	struct hash_id key;
	uint64_t size;
	uint32_t block_size;
	uint64_t nblocks;
	struct hash_id *have; /* zero hash = missing */
	int fd;
	int indexed; /* the index has a record of this partial */
	struct cache_partial *next_open, **prev_open;
	int sealed, exists;
	struct cache_claim *claim; /* the unindexed object name it gave or shares */
	uint32_t mode;
	struct hash_id object;
	uint8_t *hashes;
	struct stat st;
	char path[4096];
};

/* Location value in the blocks table (a dupsort set per hash). */
struct block_val {
	uint8_t kind;
	uint8_t id[HASH_LEN];
	uint8_t offset_be[8];
	uint8_t len_be[4];
} __attribute__((packed));

struct object_rec {
	uint64_t size;
	uint32_t block_size;
	uint32_t pins;
	uint64_t nblocks;
	uint32_t tier;
	uint32_t mode;
	double crf;
	double t_last;
	int64_t mtime_ns;
	uint64_t ino;
	/* followed by nblocks * HASH_LEN bytes of block hashes */
};

struct partial_rec {
	uint64_t size;
	uint32_t block_size;
	uint32_t reserved;
};

struct lfru_key {
	uint8_t tier;
	uint8_t key_be[8];
	uint8_t id[HASH_LEN];
} __attribute__((packed));

static inline void cache_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t cache_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static inline void cache_put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static inline uint32_t cache_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A negative code for an MDB or errno result (logged when it is MDB's). */
int cache_mdb_err(int rc);
double cache_now(const struct cache *c);
/* Run fn in a write transaction, growing the map and retrying when full.
 * fn returns 0, a negative code, or an MDB error (> 0). */
typedef int (*txn_fn)(struct cache *c, MDB_txn *txn, void *arg);
int cache_write_txn(struct cache *c, txn_fn fn, void *arg);
int cache_meta_get(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t *v);
int cache_meta_put(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t v);
void cache_partial_path(const struct cache *c, const struct hash_id *key, char *out, size_t len);
/* The live claim on object name id, or NULL (caller holds seal_lock). */
struct cache_claim *cache_claim_find(const struct cache *c, const struct hash_id *id);
/* Object records: the fixed header, and *hashes pointing into the txn. */
int cache_object_rec(MDB_txn *txn, struct cache *c, const struct hash_id *id,
		     struct object_rec *rec, const uint8_t **hashes);
int cache_object_put_header(MDB_txn *txn, struct cache *c, const struct hash_id *id,
			    const struct object_rec *rec);
int cache_object_unindex(MDB_txn *txn, struct cache *c, const struct hash_id *id, uint64_t *freed);
/* Read-only check (any thread): indexed at all. */
int cache_object_indexed(struct cache *c, const struct hash_id *id);
int cache_lfru_del(MDB_txn *txn, struct cache *c, const struct object_rec *rec,
		   const struct hash_id *id);
int cache_lfru_put(MDB_txn *txn, struct cache *c, const struct object_rec *rec,
		   const struct hash_id *id);
void cache_block_val_make(struct block_val *v, int kind, const struct hash_id *id, uint64_t offset,
			  uint32_t len);
int cache_block_loc_del(MDB_txn *txn, struct cache *c, const uint8_t *hash,
			const struct block_val *v);
int cache_block_loc_put(MDB_txn *txn, struct cache *c, const uint8_t *hash,
			const struct block_val *v);

#endif
