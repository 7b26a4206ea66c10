/* The storage under scheduler/state.c: tables of binary keys and values,
 * in LMDB (state_lmdb.c, the default) or in etcd (state_etcd.c, for
 * schedulers that share their state and elect a leader). state.c encodes
 * the records and calls these. Loop thread only. */
#ifndef SYNCBIT_STATE_INT_H
#define SYNCBIT_STATE_INT_H

#include <stddef.h>

#include "scheduler/state.h"

enum table { T_NODES, T_DATASETS, T_VERSIONS, T_HASHES, T_HAVE, T_META, T_READERS, T_COUNT };

extern const char *const state_table_names[T_COUNT];

typedef int (*state_scan_cb)(void *arg, enum table t, const void *k, size_t kl, const void *v,
			     size_t vl);

struct state_ops {
	int (*begin)(struct state *st);
	int (*commit)(struct state *st);
	/* Put (del = 0) or delete one record, in the open group or alone. */
	int (*write)(struct state *st, int del, enum table t, const void *k, size_t kl,
		     const void *v, size_t vl);
	/* Delete every record of t whose key starts with prefix. */
	int (*del_prefix)(struct state *st, enum table t, const void *prefix, size_t plen);
	/* Every record of t in key order; stops at the first cb < 0. */
	int (*scan)(struct state *st, enum table t, state_scan_cb cb, void *arg);
	void (*free)(struct state *st);
};

/* The first member of each backend's state. */
struct state {
	const struct state_ops *ops;
};

#endif
