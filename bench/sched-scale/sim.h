/* sched-scale: N simulated agents on one libuv loop against a real
 * `syncbit scheduler` (bench/sched-scale.sh drives it). Each simulated node
 * has its own static key and runs the real control protocol through
 * libsyncbit's connections: handshake, Register, heartbeats with
 * bitfields, Ingested for the blocks of its origin share, and progress
 * from peers simulated without moving bytes. Commands on stdin, one event
 * line per answer on stdout (bench/sched-scale/main.c lists them). */
#ifndef SCHED_SCALE_SIM_H
#define SCHED_SCALE_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/net/conn.h"
#include "common/net/secure.h"

#define SIM_TICK_MS 250 /* progress of one node: origin reads and peer blocks */

/* A version some node was assigned: what every node knows of it. */
struct gver {
	uint8_t id[32];
	char *dataset;
	uint32_t nblocks;
	uint8_t *known; /* hashes known (learnt from Assign and Hashes) */
	uint32_t nknown;
	/* Frozen nodes' unread share blocks, not yet in a live node's plan. */
	uint8_t *orphan;
	uint32_t norphan;
	int64_t frozen_ms;    /* wall time of the freeze, 0 = none pending */
	int64_t frozen_hb_ms; /* the frozen nodes' latest heartbeat, wall time */
	uint32_t nfrozen;
	int held; /* nodes read nothing of it from the origin until released */
};

/* One version on one node. */
struct nver {
	struct gver *g;
	char *dataset;
	uint8_t *have; /* blocks held */
	uint32_t nhave;
	uint32_t *plan; /* origin share, blocks ascending */
	uint32_t nplan;
	uint64_t from_origin, from_peers;
	double origin_credit, peer_credit;
	/* Heartbeat deltas, as the agent: nhave when last sent in full (-1:
	 * never on this connection), and heartbeats since. */
	int64_t sent_nhave;
	unsigned skipped;
	uint8_t *sent; /* the map as last told (with runs: what have_added adds to) */
};

struct snode {
	uint32_t idx;
	char name[32];
	char bind_ip[16];
	struct secure_keypair key;
	struct conn *conn;
	int registered, frozen, leaving;
	int deaf;   /* reads nothing from its socket; sends as before */
	int deltas; /* the scheduler takes heartbeat deltas */
	int runs;   /* ... and maps as runs (SIM_NO_RUNS: not) */
	uint64_t seq;
	uint32_t heartbeat_ms;
	uv_timer_t hb, tick, redial;
	struct nver *vers;
	size_t nvers;
	int64_t last_hb_ms; /* wall time of the last heartbeat sent */
};

struct sim_options {
	const char *scheduler;
	const char *token_file;
	uint32_t nodes;
	uint32_t first;		/* index of the first node (names sim-NNNNN) */
	uint32_t bind_addrs;	/* local addresses 127.0.0.2 .. 127.0.0.(1+bind_addrs) */
	uint32_t dial_window;	/* dials not yet registered at once */
	double origin_rate;	/* blocks per second a node reads from the origin */
	double peer_rate;	/* blocks per second a node gets from peers */
	uint32_t churn_per_min; /* nodes that leave and join again per minute */
	uint32_t groups;	/* nodes are labelled group=g0 .. g(groups-1) */
	int encrypt;
};

struct sim {
	uv_loop_t *loop;
	struct sim_options o;
	struct secure_token token;
	struct snode *nodes;
	struct gver **vers;
	size_t nvers;
	uint32_t dialing, registered;
	uint32_t next_dial;
	uint64_t msgs_in, msgs_out, bytes_hb;
	uv_timer_t dialer, churn;
};

extern struct sim *sim;

int64_t sim_wall_ms(void);
/* The version of that id, created with nblocks when new. */
struct gver *sim_gver(const uint8_t id[32], uint32_t nblocks, const char *dataset);
/* Dial node i (again). */
void node_dial(struct snode *n);
/* Close its connection cleanly (a leave); it joins again after delay_ms. */
void node_leave(struct snode *n, uint32_t delay_ms);
/* Stop everything it sends and ignore what it receives, without closing. */
void node_freeze(struct snode *n);
/* Stop reading its socket while still sending heartbeats (deaf 1), or
 * read again (0). 1 when that changed it. */
int node_deafen(struct snode *n, int deaf);
/* Its version of dataset-version g, or NULL. */
struct nver *node_ver(struct snode *n, const struct gver *g);
/* Blocks of its origin share it has not read. */
uint32_t node_unread(const struct nver *v);

/* main.c: events of the nodes */
void sim_on_registered(struct snode *n);
void sim_on_assign(struct snode *n, struct nver *v);
void sim_on_complete(struct snode *n, struct nver *v);
/* A live node's new origin share of g: frozen nodes' blocks it covers. */
void sim_on_plan(struct snode *n, struct nver *v);

#endif
