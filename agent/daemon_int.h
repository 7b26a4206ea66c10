/* Inside the agent daemon (agent/daemon*.c only): its state, each
 * dataset's, and the functions the daemon's files share. Loop thread
 * only. */
#ifndef SYNCBIT_DAEMON_INT_H
#define SYNCBIT_DAEMON_INT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "agent/daemon.h"
#include "agent/fetch.h"
#include "agent/uplink.h"
#include "common/net/secure.h"
#include "common/net/wire.h"

struct dset {
	char *name;
	struct fetch *cur;  /* the assigned version */
	struct fetch *prev; /* the published version while cur is fetched */
	uint8_t *assign;    /* packed Assign of cur, to start again after a failure */
	size_t assign_len;
	char **peer_nodes, **peer_addrs;
	uint8_t (*peer_keys)[SECURE_KEY_BYTES]; /* zeros: the scheduler sent none */
	size_t npeers;
	uint64_t retry_at_ms;
	char *error;
	/* Blocks of cur whose hash the scheduler's last Assign showed unknown
	 * and no Hashes named since (LSB first): what it lacks as far as this
	 * node can tell, whoever delivered the blocks here. */
	uint8_t *unknown;
	int restored;  /* published before this daemon started; not yet re-assigned */
	int pulled;    /* made for pulls through agents: kept in the cache only */
	int repairing; /* cur puts back what changed on disk of the version in place */
	/* The version published at TARGET/NAME, for the registry mirror. */
	struct hash_id pub_id;
	char *pub_source; /* NULL: none yet */
	struct daemon *d;
};

/* A block map sent in full to the scheduler (send_heartbeat). */
struct hb_sent {
	uint8_t vid[HASH_LEN];
	uint8_t *bits;
	uint32_t nblocks;
	unsigned skipped; /* heartbeats since it was last sent in full */
	int seen;	  /* in the heartbeat being built */
};
/* A full map is sent again after this many heartbeats that left it out. */
#define DAEMON_HB_FULL_EVERY 30

struct daemon {
	const struct daemon_options *o;
	uv_loop_t loop;
	struct cache *cache;
	struct secure_token token;
	struct secure_keypair key; /* DATA/DAEMON_KEY_FILE: this node's identity */
	struct peers *peers;
	struct ctl *ctl;
	struct adhoc *adhoc; /* pulls through this agent */
	struct mirror *mirror;
	struct watch *watch; /* published files changed on disk */
	struct conn *sched;
	int sched_ready;
	/* --scheduler A,B,C: the one dialled (sched_addr) is the sched_at-th;
	 * a refusal or a lost connection moves on to the next. */
	char sched_addr[256];
	unsigned sched_at, sched_misses;
	struct uplink link; /* for status, logs and /healthz */
	unsigned backoff_ms;
	uv_timer_t reconnect, heartbeat, retry;
	unsigned heartbeat_ms;
	uint64_t heartbeat_due;	 /* loop time the next heartbeat is due */
	uint64_t late_logged_ms; /* loop time of the last line about a late one */
	uint64_t seq;
	/* Heartbeat deltas (Registered.heartbeat_deltas): the block maps sent
	 * in full on this connection, by version; cleared at each Registered. */
	int hb_deltas;
	int hb_runs; /* the scheduler takes maps as runs (Registered.heartbeat_runs) */
	struct hb_sent *hb_sent;
	size_t nhb_sent;
	struct dset **sets;
	size_t nsets;
	uv_signal_t sigterm, sigint;
	uint64_t restore_deadline_ms; /* restored datasets not assigned by then go */
	int stopping;
	char *advertise;
	struct kube_agent *kube;
	json_t *node_labels;	     /* the Kubernetes Node's, or NULL */
	uint64_t labels_deadline_ms; /* registering waits for them until then */
};

/* ---- datasets (agent/daemon_dataset.c) ---- */

struct dset *find_set(struct daemon *d, const char *name);
/* The dataset whose assigned version is vid. */
struct dset *find_version(struct daemon *d, const uint8_t *vid, size_t len);
void drop_fetch(struct daemon *d, struct fetch **f);
void free_set(struct daemon *d, struct dset *s);
/* Every peer any assigned version names, once. */
void update_peers(struct daemon *d);
void set_peer_list(struct dset *s, Syncbit__PeerInfo **peers, size_t n);
void set_origin(struct fetch *f, Syncbit__BlockRange **r, size_t n);
/* 1 when the scheduler lacks the hash of block b of f, as far as this node
 * can tell. */
int sched_lacks(const struct dset *s, const struct fetch *f, uint32_t b);
/* Take the hashes and origin share of an Assign of s->cur's version, and
 * report what this node holds that the Assign shows unknown. */
void take_assign(struct daemon *d, struct dset *s, const Syncbit__Assign *a);
/* Start (or start again) the fetch of the assignment kept in s. */
void start_fetch(struct daemon *d, struct dset *s);
/* Drop d->sets[i]: unpin it and remove TARGET/NAME on the pool. */
void remove_set(struct daemon *d, size_t i);
void retry_tick(uv_timer_t *t);
/* A published file changed on disk (agent/watch.c hooks). */
void hook_damaged(void *arg, const char *name);
void hook_bad_block(void *arg, const struct hash_id *h);

/* ---- the scheduler (agent/daemon_control.c) ---- */

void send_heartbeat(struct daemon *d);
/* Forget the block maps sent in full (a new connection, or the end). */
void daemon_hb_sent_clear(struct daemon *d);
void dial_scheduler(uv_timer_t *t);
uint64_t disk_free(const char *dir);

#endif
