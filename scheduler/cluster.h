/* The cluster as the scheduler sees it: nodes and what they reported,
 * datasets with their selectors and current versions, and each version's
 * origin plan. Every change is written through to the LMDB state
 * (scheduler/state.h) and read back at start. No I/O besides LMDB: the
 * protocol side (scheduler/server.c) decides what to send. Loop thread only. */
#ifndef SYNCBIT_CLUSTER_H
#define SYNCBIT_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/net/secure.h"
#include "common/source/filter.h"
#include "proto/wire.pb-c.h"
#include "scheduler/assign.h"
#include "scheduler/state.h"
#include "scheduler/version.h"

#define CLUSTER_NAME_MAX       128  /* dataset and node names */
#define CLUSTER_REPORT_SAVE_MS 5000 /* a report's counters are saved at most this often */
#define CLUSTER_SEEN_SAVE_MS   30000
#define CLUSTER_REASON_MAX     256
#define CLUSTER_FLUSH_MS       100 /* learnt hashes reach LMDB within this long */

/* What a node last reported of one version. */
struct cluster_report {
	struct hash_id version;
	char *dataset;
	/* Durable blocks, LSB first, nbits bits; NULL when there are none to
	 * tell (nbits 0) or every one is held (have == nbits): read them with
	 * cluster_report_has(). */
	uint8_t *bits;
	uint32_t nbits;
	uint32_t have; /* set bits */
	int published;
	uint64_t bytes_from_origin, bytes_from_peers, bytes_reused, bytes_served;
	uint32_t refetch_bad_peer, refetch_no_peer;
	char *error;	   /* NULL: none */
	uint64_t saved_ms; /* loop time of the last save */
	int dirty;	   /* changed since the last save */
	int due;	   /* to be saved at the next cluster_flush() */
};

/* 1 when r says block b is held. */
int cluster_report_has(const struct cluster_report *r, uint32_t b);

struct cluster_node {
	char *name;
	uint32_t id; /* small number for this run, 1 and up (not saved) */
	char *addr;  /* where peers dial it */
	/* XXH64 of the name (its place on the peer ring, scheduler/overlay.h)
	 * and of name and address (what a peer list names): cluster_node_hash. */
	uint64_t name_hash, ident;
	char *agent_version;
	struct assign_label *labels;
	size_t nlabels;
	uint64_t disk_free, cache_size;
	/* Its static key, pinned at its first registration (saved): another
	 * key under this name is refused until `node rm` forgets it. */
	uint8_t key[SECURE_KEY_BYTES];
	int has_key;
	uint64_t key_refused_logged; /* loop time of the last line about another key */
	int64_t last_seen_ms;	     /* wall clock of the last message (saved) */
	uint64_t last_heard;	     /* loop time of the last message */
	/* Nothing came from it for wire_late_ms (set by the protocol side,
	 * cleared when it is heard or registers): no origin share. */
	int late;
	uint64_t seen_saved; /* loop time last_seen_ms was last saved */
	/* In cluster.save_due, and whether its record is to be saved then. */
	int save_listed, seen_due;
	void *conn; /* its control connection; NULL when not connected */
	struct cluster_report *reports;
	size_t nreports;
	size_t nfailing; /* reports with an error (a plan asks per member) */
	/* Block hashes refused because the blocks were never in its origin
	 * share (this run), and what the log has not told yet. */
	uint64_t hashes_refused, refused_unlogged;
	uint64_t refused_logged; /* loop time of the last line about them */
};

/* The blocks one node's origin share of a version held at some time: the
 * blocks whose hashes the scheduler takes from it (saved). A share that
 * moved on (rebalance, re-plan, restart) still covers the reads the node
 * had started. */
struct cluster_reader {
	char *node;
	uint8_t *bits; /* nblocks bits, LSB first */
	int dirty;     /* changed since it was saved */
};

struct cluster_version {
	struct sched_version *v;
	int refs; /* datasets whose current version this is */
	/* The origin plan: a share per member, by node name. */
	char **plan_nodes;
	struct assign_plan *plans;
	size_t nplans;
	uint32_t stripe;
	char reason[CLUSTER_REASON_MAX];
	/* The holders last told (names and addresses, one per line; owned by
	 * the protocol side), and whether they changed since. */
	char *holders;
	uint64_t holders_sig; /* a hash of them, and of which fail */
	int changed;
	uint32_t *ingested_by; /* per block, the id of the node whose hash came first */
	struct cluster_reader *readers;
	size_t nreaders;
	/* Hashes learnt and not yet sent to the holders (owned by the protocol
	 * side, scheduler/server.c: one Hashes per SERVER_HASHES_MS). */
	struct buf fresh;
	/* The members of one reconcile round and the key of their peer graph
	 * (owned by the protocol side, scheduler/server_reconcile.c: worked out
	 * once a round, not once per node told). */
	struct cluster_node **members;
	size_t nmembers;
	uint64_t members_round, members_key;
};

struct cluster_dataset {
	char *name;
	char *source; /* canonical source URI */
	struct assign_label *selector;
	size_t nselector;
	uint32_t block_size;
	struct filter filter; /* which paths of the source it takes (saved) */
	struct cluster_version *current;
	uint64_t generation; /* bumped by every change of definition */
	int listing;	     /* a refresh listing is in flight */
	char *error;	     /* why the last refresh failed, or NULL */
	/* Made for pulls through agents (scheduler/pull.c): it goes to the
	 * nodes in pulled_by, whatever the selector (saved). */
	int pulled;
	char **pulled_by;
	size_t npulled_by;
	uint64_t pulled_at_ms; /* loop time of the last pull of it (not saved) */
	/* What the nodes reported moving, summed over every version since the
	 * scheduler started: counters that a new version does not reset. */
	uint64_t total_from_origin, total_from_peers, total_reused, total_served;
};

/* How a heartbeat told a version's map (VersionState). */
enum cluster_map_form {
	MAP_BITS,
	MAP_RUNS,
	MAP_ADDED,
	MAP_SAME,
	MAP_ALL,
	MAP_NONE,
	CLUSTER_MAP_FORMS
};
extern const char *const cluster_map_form_names[CLUSTER_MAP_FORMS];

struct cluster {
	struct state *state;
	struct cluster_node **nodes;
	size_t nnodes;
	struct cluster_dataset **datasets;
	size_t ndatasets;
	struct cluster_version **versions;
	size_t nversions;
	/* Datasets by name, then versions by id: two open-addressing tables
	 * of ixcap slots (index + 1, or 0), remade when either list changes. */
	uint32_t *ix;
	size_t ixcap;
	/* Nodes with reports or a record to save at the next flush: the saves
	 * of every heartbeat in one transaction per CLUSTER_FLUSH_MS. */
	struct cluster_node **save_due;
	size_t nsave_due;
	/* Version maps heartbeats carried, by form (syncbit_heartbeat_maps_total). */
	uint64_t maps[CLUSTER_MAP_FORMS];
	struct buf pending; /* learnt hashes not yet saved: struct pending_hash */
	uint32_t next_node_id;
	/* Unread blocks a node keeps of its share when the plan is made again
	 * (ASSIGN_KEEP_HEAD; at most that). */
	uint32_t keep_head;
};

/* Open the state in dir and load it. Nodes start disconnected. */
int cluster_open(struct cluster *c, const char *dir);
/* The same over a state already open (taken, freed by cluster_close). */
int cluster_open_state(struct cluster *c, struct state *st);
void cluster_close(struct cluster *c);

/* Wall-clock milliseconds, for last_seen_ms. */
int64_t cluster_wall_ms(void);

/* 0 if name is a usable dataset or node name: 1..CLUSTER_NAME_MAX bytes of
 * [A-Za-z0-9._-], not starting with '.'. SB_EPROTO otherwise. */
int cluster_check_name(const char *name);

struct cluster_node *cluster_node_find(const struct cluster *c, const char *name);
/* Set n's name_hash and ident from its name and address. */
void cluster_node_hash(struct cluster_node *n);
struct cluster_dataset *cluster_dataset_find(const struct cluster *c, const char *name);
struct cluster_version *cluster_version_find(const struct cluster *c, const uint8_t *id,
					     size_t len);

/* 0 when node `name` may register with static key `key`: a name not
 * known, known without a key (state from before keys) or with this one.
 * SB_EDENIED when it is registered with another key. */
int cluster_node_key_check(const struct cluster *c, const char *name,
			   const uint8_t key[SECURE_KEY_BYTES]);
/* Create or update a node from its registration, pinning key when it has
 * none yet (saved). Check the key first. */
struct cluster_node *cluster_node_register(struct cluster *c, const char *name,
					   const Syncbit__Register *reg,
					   const uint8_t key[SECURE_KEY_BYTES], uint64_t now);
/* Any message from a connected node: liveness and the saved last-seen time. */
void cluster_node_heard(struct cluster *c, struct cluster_node *n, uint64_t now);
/* Replace the node's reports with a heartbeat's (reports of unknown
 * versions are dropped); save what changed. Versions that lost their last
 * reference are forgotten. 1 when a version's report turned failing (an
 * error) or stopped failing: its origin plan is to be made again. */
int cluster_node_report(struct cluster *c, struct cluster_node *n, Syncbit__VersionState *const *vs,
			size_t nvs, uint64_t now);
/* 1 when node n's report of cv carries an error (its cache cannot store,
 * its disk is full): it reads no origin share until it reports without. */
int cluster_node_failing(const struct cluster_node *n, const struct cluster_version *cv);
/* 1 when n gets no share of cv's origin plan: it is failing or late. */
int cluster_node_unplanned(const struct cluster_node *n, const struct cluster_version *cv);
/* Save every unsaved report and the last-seen time of n (at disconnect). */
void cluster_node_flush(struct cluster *c, struct cluster_node *n);
const struct cluster_report *cluster_node_report_of(const struct cluster_node *n,
						    const struct hash_id *version);

/* 1 when dataset d goes to node n: its selector matches n's labels, or,
 * for a pulled dataset, n asked for it. */
int cluster_assigned(const struct cluster_dataset *d, const struct cluster_node *n);
/* The connected nodes holding version cv through any dataset, sorted by
 * name. Heap array (free it), *n set. */
struct cluster_node **cluster_members(const struct cluster *c, const struct cluster_version *cv,
				      size_t *n);

/* Add a version (owned from now on) and save it; when a version with the
 * same id exists, v is freed and the existing one is returned. */
struct cluster_version *cluster_version_add(struct cluster *c, struct sched_version *v);
/* Create or redefine a dataset and point it at cv (saved). The previous
 * version stays while nodes report it. Its filter stays as it is (none for
 * a new dataset). */
struct cluster_dataset *cluster_dataset_set(struct cluster *c, const char *name, const char *source,
					    const struct assign_label *sel, size_t nsel,
					    uint32_t block_size, struct cluster_version *cv);
/* cluster_dataset_set with the filter too: a copy of filter, or when it is
 * NULL the dataset's own is kept. */
struct cluster_dataset *cluster_dataset_define(struct cluster *c, const char *name,
					       const char *source, const struct assign_label *sel,
					       size_t nsel, uint32_t block_size,
					       const struct filter *filter,
					       struct cluster_version *cv);
/* Make d a pulled dataset that goes to node too (saved; scheduler/
 * cluster_pull.c). A dataset defined by `dataset add` is never changed. */
void cluster_dataset_pulled_by(struct cluster *c, struct cluster_dataset *d, const char *node);
/* node no longer pulls d (saved); the number of nodes that still do. */
size_t cluster_dataset_unpulled_by(struct cluster *c, struct cluster_dataset *d, const char *node);
/* 1 when node is among the nodes that pulled d. */
int cluster_pulled_by(const struct cluster_dataset *d, const char *node);
/* A pulled dataset becomes an ordinary one (a `dataset add --replace` of its
 * name): its nodes come from its selector again (saved). */
void cluster_dataset_unpull(struct cluster *c, struct cluster_dataset *d);
/* Forget a dataset (saved). Returns 0 or SB_ENOTFOUND. */
int cluster_dataset_remove(struct cluster *c, const char *name);
/* Forget a node that is not connected: its record, its reports and its
 * key (the name may register again with another). SB_ENOTFOUND, or
 * SB_EDENIED while it is connected. */
int cluster_node_remove(struct cluster *c, const char *name);

/* Record hashes nodes read from the origin (saved by the next
 * cluster_flush(), so a stream of one-block messages costs one transaction
 * per flush, not one each). A hash is taken only from a node whose origin
 * share holds or held the block (cluster_may_report); any other report of
 * a hash not known yet is refused and counted in *refused (*example is
 * one such block), and the block stays unknown, planned to its reader.
 * Fills *fresh with the entries that were new (pointers into blocks) and
 * returns their count; conflicts are logged and skipped. *completed is set
 * when the version became complete. */
size_t cluster_ingest(struct cluster *c, struct cluster_version *cv,
		      Syncbit__BlockHash *const *blocks, size_t n, const char *from,
		      Syncbit__BlockHash **fresh, int *completed, size_t *refused,
		      uint32_t *example);
/* After a load: each version still being read gets back the shares its
 * readers held (what each node may be reading from the origin now), so
 * the next plan leaves their reads in flight to them. */
void cluster_plans_restore(struct cluster *c);
/* 1 when block b was in node's origin share of cv at some time. */
int cluster_may_report(const struct cluster_version *cv, const char *node, uint32_t b);

/* Re-plan cv's origin fetches among its members: the blocks whose hash is
 * unknown, and the known blocks that only nodes in gone[] (names of holders
 * that left) held as far as the scheduler knows (reported, or read from the
 * origin), which every member would otherwise read from the origin on its
 * own. Returns the number of those orphaned blocks.
 * The caller sets cv->reason. Members' shares: cluster_plan_of(). */
uint32_t cluster_plan(struct cluster *c, struct cluster_version *cv, char *const *gone,
		      size_t ngone);
/* Origin shares even out as they are read: when node's share of cv has no
 * unknown block left and another member's has more than two, the upper
 * half of what that one has left beyond its next two moves to node (the
 * reads it has in flight stay with it). Returns the blocks moved and names
 * the member they came from in *donor. */
uint32_t cluster_rebalance(struct cluster_version *cv, const char *node, const char **donor);
/* n's share of cv's plan (NULL when it has none). */
const struct assign_plan *cluster_plan_of(const struct cluster_version *cv, const char *node);

/* Save the hashes learnt and the readers changed since the last flush, in
 * one transaction. */
void cluster_flush(struct cluster *c);

/* Drop versions no dataset points at and no node reports. */
void cluster_gc(struct cluster *c);

#endif
