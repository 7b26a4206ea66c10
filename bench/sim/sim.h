/* A discrete-event model of one dataset distributed over many nodes: the
 * scheduler's real origin plans (scheduler/cluster_plan.c, assign.c,
 * overlay.c, driven in memory over a temporary LMDB state) and the agent's
 * real block choice (agent/pick.c), over links whose bandwidth is shared
 * equally among the transfers crossing them. bench/README.md says what is
 * modelled and what is not. One thread. */
#ifndef SYNCBIT_BENCH_SIM_H
#define SYNCBIT_BENCH_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "scheduler/cluster.h"
#include "scheduler/overlay.h"

#define SIM_QUEUE_MAX 32   /* requests queued on one connection: PEER_PIPELINE_MAX */
#define SIM_MAX_LINKS 4	   /* links a transfer crosses: up, the rack uplink, down, the CPUs */
#define SIM_TICK_S    0.5  /* the agent's rate measurement period (peer.c TICK_MS) */
#define SIM_HASHES_S  0.1  /* learnt hashes go out at most this late (SERVER_HASHES_MS) */
#define SIM_FLUSH_S   0.1  /* ... and are saved (CLUSTER_FLUSH_MS) */
#define SIM_PLAN_S    0.02 /* a join or leave is acted on this late (SERVER_RECONCILE_MIN_MS) */

/* ---- configuration --------------------------------------------------------- */

struct sim_config {
	uint32_t nodes;
	uint64_t size;	    /* bytes of the one file */
	uint32_t block;	    /* block size */
	double link_lo;	    /* node links, bits/s, drawn from link_lo..link_hi */
	double link_hi;	    /* (a few fixed steps between them) */
	double origin;	    /* the origin's uplink, bits/s */
	double efficiency;  /* payload share of a link's rate (headers) */
	uint32_t rack_size; /* nodes per rack; 0: no racks */
	double oversub;	    /* rack 0's uplink: its nodes' links summed / oversub (0: none) */
	uint32_t late;	    /* nodes that join late */
	double late_until;  /* ... at uniform times in (0, late_until x S/B) */
	uint32_t die;	    /* nodes that die */
	double die_from, die_until; /* ... at uniform times in that range x S/B */
	double cpu;	    /* payload bytes/s all hosts' CPUs move together (0: no limit) */
	double heartbeat_s; /* the agents' heartbeat period */
	double latency_s;   /* one way, between any two hosts */
	uint64_t seed;
	int timeline; /* rows of the timeline */
	int verbose;
};

/* ---- events and links (net.c) ---------------------------------------------- */

enum sim_event_kind {
	EV_FLOW,    /* a transfer's end (a: connection, b: its generation) */
	EV_START,   /* a request reached the sender: its transfer starts (a: connection) */
	EV_HASHES,  /* the scheduler's hashes timer */
	EV_DELIVER, /* hashes batch a reaches the members */
	EV_PLAN,    /* the scheduler re-plans after joins and deaths */
	EV_JOIN,    /* node a joins */
	EV_DIE,	    /* node a dies */
	EV_BEAT,    /* node a's heartbeat */
	EV_TICK,    /* node a's peer timer (rates, stalled pipelines) */
	EV_SAMPLE,  /* a row of the timeline */
};

struct sim_event {
	double t;
	uint64_t seq;
	uint32_t kind, a, b;
};

struct sim_heap {
	struct sim_event *e;
	size_t n, cap;
	uint64_t seq;
};

void heap_push(struct sim_heap *h, double t, uint32_t kind, uint32_t a, uint32_t b);
int heap_pop(struct sim_heap *h, struct sim_event *out);

struct sim_link {
	double cap;	 /* payload bytes/s */
	uint32_t *flows; /* connection ids with a transfer on this link */
	uint32_t nflows, capflows;
};

/* ---- nodes and connections (swarm.c) ---------------------------------------- */

enum blk_state { B_UNKNOWN, B_ORIGIN, B_NEED, B_ASKED, B_HAVE };

/* Data from src to dst (src == SIM_ORIGIN: the origin's reads for dst). */
struct sim_conn {
	uint32_t src, dst;
	int open;
	uint32_t q[SIM_QUEUE_MAX]; /* blocks asked, in order; q[qh] is on the wire */
	double sent[SIM_QUEUE_MAX];
	uint32_t qh, qn;
	/* the transfer of q[qh] */
	int active;
	uint32_t links[SIM_MAX_LINKS], nlinks;
	uint32_t slot[SIM_MAX_LINKS]; /* index in each link's flows */
	double rate, left, since;     /* bytes/s, bytes left, time left was computed */
	uint32_t gen;
	/* the receiver's measure of it (agent/peer.c) */
	double meas, window, tick;
	uint32_t starting; /* an EV_START is pending */
};

#define SIM_ORIGIN UINT32_MAX

struct sim_level {
	uint64_t *bits; /* needed blocks with this many holders among the peers */
	uint64_t *sum;	/* a bit per non-zero word of bits */
};

struct sim_node {
	char name[32];
	int alive, joined, done;
	double join_at, die_at, done_at;
	uint32_t rack;
	uint32_t up, down; /* link ids */
	double link;	   /* bits/s */
	uint8_t *st;	   /* enum blk_state per block */
	uint8_t *avail, *asks;
	uint64_t *have; /* bitmap */
	uint32_t nhave, nasked;
	struct sim_level *lv;
	uint32_t nlv;
	uint32_t *peers; /* connection ids of the data coming in, one per peer */
	uint32_t npeers;
	uint32_t *out; /* connection ids of the data going out */
	uint32_t nout;
	uint32_t origin_conn;
	uint32_t *share; /* its origin share, ascending, from the scheduler's plan */
	uint32_t nshare, share_at;
	uint32_t last_batch; /* hashes batches it has had */
	uint64_t from_origin, from_peers;
	struct cluster_node *cn;
};

struct sim {
	struct sim_config cfg;
	uint32_t nb;  /* blocks */
	size_t words; /* bitmap words per block set */
	double now;
	struct sim_heap heap;
	struct sim_link *links;
	uint32_t nlinks;
	uint32_t origin_up;
	uint32_t rack_out, rack_in; /* rack 0's uplink, each way (UINT32_MAX: none) */
	uint32_t cpu_link;	    /* every transfer crosses it (UINT32_MAX: none) */
	uint32_t pending_joins;	    /* EV_JOIN still to come */
	struct sim_node *nodes;
	uint32_t nnodes;
	struct sim_conn *conns;
	uint32_t nconns, capconns;
	uint64_t rng;
	/* the scheduler */
	char *state_dir;
	struct cluster cluster;
	struct cluster_version *cv;
	uint32_t *known_batch; /* per block: the hashes batch it was sent in (0: not yet) */
	uint32_t batch;	       /* batches sent */
	uint32_t *batch_start; /* batch k's blocks: batch_blocks[batch_start[k-1]..[k]) */
	uint32_t *batch_blocks;
	uint32_t *fresh; /* learnt since the last batch */
	uint32_t nfresh;
	int hashes_timer; /* the hashes timer runs */
	int plan_due;	  /* an EV_PLAN is pending */
	char **gone;	  /* nodes that died since the last plan */
	size_t ngone;
	double flushed; /* time of the last cluster_flush */
	struct overlay ov;
	/* what it measured */
	uint64_t origin_bytes, peer_bytes, dup_bytes, events, replans, orphans, moved, refused;
	uint32_t finished, alive, died; /* finished: alive and done */
	double origin_done;
	double sample_origin; /* origin payload sent at the last sample */
	double floor_s;	      /* S / B */
};

/* net.c */
uint32_t net_link_add(struct sim *s, double bits);
/* Start the transfer of the head of c's queue over its links, or stop it. */
void net_start(struct sim *s, uint32_t c);
void net_stop(struct sim *s, uint32_t c);
/* Bytes of the current transfer on c left now. */
double net_left(const struct sim *s, const struct sim_conn *c);

/* What a run measured (sim_run). */
struct sim_result {
	double floor_s;		/* S / B, B the slowest node link's payload rate */
	double first_s, last_s; /* first and last surviving node done */
	double origin_done_s;	/* the origin's last byte */
	uint64_t origin_bytes;	/* payload the origin sent */
	uint64_t peer_bytes;	/* payload between nodes */
	uint64_t dup_bytes;	/* ... of blocks the receiver had already */
	uint32_t nodes, alive, finished, died, late;
	int complete; /* every surviving node holds every block */
	/* each node's time from its join to done over S / its own link:
	 * the worst, the worst of the nodes that joined at the start
	 * outside rack 0, and the mean */
	double own_max, own_max_plain, own_mean;
	uint32_t own_max_node;
	uint64_t events, replans, orphans, moved, refused;
	uint64_t digest; /* of every node's done time: equal runs, equal digests */
};

/* The defaults of the large model (bench/sim/README.md). */
void sim_config_default(struct sim_config *c);
/* Run the model once: 0 and *r filled, or -1 with a line on stderr. The
 * timeline (cfg->timeline rows) goes to out when it is not NULL. */
int sim_run(const struct sim_config *cfg, struct sim_result *r, FILE *out);

/* swarm.c */
int swarm_init(struct sim *s);
void swarm_free(struct sim *s);
uint64_t sim_rand(struct sim *s);
double sim_uniform(struct sim *s);
/* Node n has had the hashes of every batch up to k. */
void swarm_learn(struct sim *s, struct sim_node *n, uint32_t k);
/* 1 when the sim's index and a full scan with agent/pick.c choose the same
 * blocks over many random states (the index is exact). */
int swarm_selftest(uint64_t seed);

/* plan.c: the scheduler */
int plan_open(struct sim *s);
void plan_close(struct sim *s);
void plan_node_up(struct sim *s, struct sim_node *n);
void plan_node_down(struct sim *s, struct sim_node *n);
/* Make the plan again after joins or deaths (gone: names of nodes that
 * left), rebuild the peer overlay, and hand each member its share. */
void plan_again(struct sim *s, char **gone, size_t ngone);
/* Node n read block b from the origin: the scheduler learns its hash and
 * may move part of a larger share to n. */
void plan_ingested(struct sim *s, struct sim_node *n, uint32_t b);
/* Tell every member its share again (after a plan). */
void plan_hand_out(struct sim *s);
/* The hashes learnt since the last batch go out. */
void plan_send_hashes(struct sim *s);
void plan_heartbeat(struct sim *s, struct sim_node *n);

/* swarm.c, for plan.c */
void swarm_set_share(struct sim *s, struct sim_node *n, const struct assign_plan *p);
void swarm_set_peers(struct sim *s);

#endif
