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
	struct hash_id version;
	uint64_t round; /* the reconcile round that sent it */
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
	char **told; /* datasets it reported that it was told to drop */
	size_t ntold;
};

/* server.c */

/* The client of n's connection, or NULL. */
struct sched_client *server_client_of(const struct cluster_node *n);
/* Send m to cl (nothing once its connection is gone). */
void server_send_msg(struct sched_client *cl, uint32_t type, const ProtobufCMessage *m);

/* server_reconcile.c */

/* Forget what server_reconcile keeps between rounds (at stop). */
void server_reconcile_close(struct sched *s);
/* What cl was assigned of dataset on this connection, or NULL. */
struct sent *server_sent_find(struct sched_client *cl, const char *dataset);
void server_send_unassign(struct sched_client *cl, const char *dataset);
/* cl's node read its whole share and took `moved` unknown blocks over from
 * donor's: both hear their new shares. */
void server_send_share_moved(struct sched *s, struct cluster_version *cv, struct sched_client *cl,
			     const char *donor, uint32_t moved);

#endif
