/* The scheduler's persistent state in LMDB (DATA/sched): nodes, datasets,
 * versions with their known block hashes, and what each node reported of
 * each version. Records are protobuf messages of proto/wire.proto where one
 * fits. Writes go through one write transaction at a time, opened by
 * state_begin() or, for a single put, by the put itself. Loop thread only:
 * one thread writes. */
#ifndef SYNCBIT_STATE_H
#define SYNCBIT_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/hash.h"
#include "proto/wire.pb-c.h"

#define STATE_MAP_SIZE (1ull << 30) /* initial map; grows by doubling */

struct state;
struct etcd;

/* Open (creating) the environment in dir, mode 0700. 0 or a negative
 * error (SB_ECACHE for an unreadable index). */
int state_open(const char *dir, struct state **out);

/* Writes to etcd are fenced: each is a transaction that holds only while
 * the leader key (key) still has the creation revision of this
 * scheduler's election (create_rev); otherwise it fails with SB_EDENIED
 * and lost is set. */
struct state_fence {
	char *key;
	int64_t create_rev; /* 0: not the leader; every write fails */
	int lost;
};

/* The same records in etcd under prefix (".../state/"), except the
 * nodes' reports of versions, which agents send again. e and fence are
 * borrowed and outlive st. */
int state_open_etcd(struct etcd *e, const char *prefix, struct state_fence *fence,
		    struct state **out);
void state_free(struct state *st);

/* Group the following puts and deletes into one transaction. Nesting is
 * not supported. state_commit() returns the first error of the group (then
 * nothing of it was written) or 0. */
int state_begin(struct state *st);
int state_commit(struct state *st);

/* Records. Each is written in the open transaction, or in one of its own. */
int state_put_node(struct state *st, const char *name, int64_t last_seen_ms,
		   const Syncbit__Register *reg);
int state_del_node(struct state *st, const char *name);
int state_put_dataset(struct state *st, const char *name, const struct hash_id *version,
		      const Syncbit__Admin *def);
int state_del_dataset(struct state *st, const char *name);
/* The manifest of a version as first stored (hashes known then). */
int state_put_version(struct state *st, const struct hash_id *id, const uint8_t *manifest,
		      size_t len);
/* Forget a version with its hashes, readers and every node's report of it. */
int state_del_version(struct state *st, const struct hash_id *id);
int state_put_hash(struct state *st, const struct hash_id *id, uint32_t block, const uint8_t *hash);
int state_put_have(struct state *st, const struct hash_id *id, const char *node,
		   const Syncbit__VersionState *vs);
int state_del_have(struct state *st, const struct hash_id *id, const char *node);
/* The blocks node's origin share of a version ever held (a bitmap). */
int state_put_readers(struct state *st, const struct hash_id *id, const char *node,
		      const uint8_t *bits, size_t len);

/* Reading everything back at start, in this order: versions, hashes,
 * datasets, nodes, reports, readers. Messages passed to the callbacks are freed
 * after the call returns. A callback returning < 0 stops the load with
 * that error; undecodable records are logged and skipped. */
struct state_loader {
	void *arg;
	int (*version)(void *arg, const struct hash_id *id, const uint8_t *manifest, size_t len);
	int (*hash)(void *arg, const struct hash_id *id, uint32_t block, const uint8_t *hash);
	int (*dataset)(void *arg, const char *name, const struct hash_id *version,
		       const Syncbit__Admin *def);
	int (*node)(void *arg, const char *name, int64_t last_seen_ms,
		    const Syncbit__Register *reg);
	int (*have)(void *arg, const struct hash_id *id, const char *node,
		    const Syncbit__VersionState *vs);
	int (*readers)(void *arg, const struct hash_id *id, const char *node, const uint8_t *bits,
		       size_t len);
};
int state_load(struct state *st, const struct state_loader *l);

#endif
