/* Internal to the scheduler's server: server.c (clients, the control
 * protocol's handlers, connections) and server_reconcile.c (what each node is
 * told: assignments, peers, origin plans, and bringing every node in line
 * with the cluster model). Loop thread only. */
#ifndef SYNCBIT_SERVER_INT_H
#define SYNCBIT_SERVER_INT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net/conn.h"
#include "scheduler/server.h"

/* What a node was assigned on this connection. */
struct sent {
	char *dataset;
	uint64_t name_hash; /* XXH64 of dataset */
	struct hash_id version;
	uint64_t round; /* the reconcile round that sent it */
	uint64_t seen;	/* the last server_reconcile_node() pass that found its dataset */
	/* What the node was last told of the version's peers and its origin
	 * share (hashes of the lists): unchanged lists are not sent again. */
	uint64_t peers_sig, origin_sig;
};

struct sched_client {
	struct sched *s;
	struct conn *conn; /* NULL once closed */
	struct sched_client *next, **prev;
	int refs; /* the connection's, plus holds */
	struct cluster_node *node;
	int admin;
	int reported; /* a heartbeat came on this connection */
	uint64_t accepted;
	struct sent *sent;
	size_t nsent;
	/* sent found by dataset and by version (server_reconcile.c): two
	 * open-addressing tables of sent_ixcap slots, index + 1 or 0; stale
	 * after an entry went or changed version. */
	uint32_t *sent_ix;
	size_t sent_ixcap;
	int sent_ix_stale;
	char **told; /* datasets it reported that it was told to drop */
	size_t ntold;
	/* Assign pacing (scheduler/server_pace.c): bytes of Assigns handed to
	 * the connection and not yet taken by its socket; loop time the last
	 * of them was taken; 1 when they have not moved for
	 * SERVER_ASSIGN_STALL_MS (off the budget). */
	size_t assign_queued;
	uint64_t assign_moved;
	int assign_stalled;
	int pace_waiting; /* in the queue of nodes owed Assigns (holds a ref) */
	struct sched_client *pace_next;
	/* The agent takes one Peers for every version with the same list
	 * (Register.peers_shared); the versions whose new list waits for the
	 * end of the round, with the list's hash. */
	int peers_shared;
	struct peers_due *peers_due;
	size_t npeers_due;
};

struct peers_due {
	struct cluster_version *cv;
	uint64_t sig;
};

/* server.c */

/* The client of n's connection, or NULL. */
struct sched_client *server_client_of(const struct cluster_node *n);
/* Send m to cl (nothing once its connection is gone). */
void server_send_msg(struct sched_client *cl, uint32_t type, const ProtobufCMessage *m);

/* server_reconcile.c */

/* ASSIGN what is new to cl's node (as far as pacing leaves room; the node
 * is queued for the rest), UNASSIGN what left it. */
void server_reconcile_node(struct sched *s, struct sched_client *cl);
/* Before server_reconcile_node() outside server_reconcile(): member lists
 * are worked out afresh. */
void server_reconcile_open_pass(struct sched *s);

/* Forget what server_reconcile keeps between rounds (at stop). */
void server_reconcile_close(struct sched *s);
/* What cl was assigned of dataset on this connection, or NULL. */
struct sent *server_sent_find(struct sched_client *cl, const char *dataset);
void server_send_unassign(struct sched_client *cl, const char *dataset);
/* cl's node read its whole share and took `moved` unknown blocks over from
 * donor's: both hear their new shares. */
void server_send_share_moved(struct sched *s, struct cluster_version *cv, struct sched_client *cl,
			     const char *donor, uint32_t moved);

/* server_pace.c: Assigns paced by what the connections drain. */

#define SERVER_ASSIGN_QUEUE_DEFAULT \
	(128u << 20)			  /* all nodes' Assign bytes queued (--assign-queue) */
#define SERVER_ASSIGN_FANOUT   64	  /* one node's share: the budget over this ... */
#define SERVER_ASSIGN_NODE_MAX (1u << 20) /* ... or this, the smaller */
#define SERVER_ASSIGN_STALL_MS 500	  /* not moving this long: off the budget */
#define SERVER_PACE_MS	       20	  /* the queue of waiting nodes runs at most this often */

/* 1 when cl may be sent another Assign now. */
int server_pace_room(const struct sched *s, const struct sched_client *cl);
/* Send Assign m (packed size bytes) to cl, counted until its socket took it. */
int server_pace_send(struct sched *s, struct sched_client *cl, uint32_t type,
		     const ProtobufCMessage *m, size_t bytes);
/* cl is owed Assigns that found no room: server_reconcile_node() runs for
 * it again when there is. */
void server_pace_wait(struct sched *s, struct sched_client *cl);
/* Empty the queue (the scheduler stops). */
void server_pace_stop(struct sched *s);

#endif
