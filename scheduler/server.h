/* The scheduler's side of the control protocol (agents: register,
 * heartbeat, ingested; assignments, hashes, peers and origin plans back)
 * and of the admin protocol (the CLI's dataset and node commands,
 * scheduler/admin.c). Every connection is authenticated with the join
 * token (common/net/conn.h); frames are dispatched through one table with a
 * body limit per type. Loop thread only. */
#ifndef SYNCBIT_SERVER_H
#define SYNCBIT_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.pb-c.h"
#include "scheduler/sched.h"

#define SERVER_REGISTER_MAX	(64u << 10)
#define SERVER_HEARTBEAT_MAX	(16u << 20)
#define SERVER_INGESTED_MAX	(16u << 20)
#define SERVER_ADMIN_MAX	(64u << 10)
#define SERVER_ASSIGN_MAX	(256u << 20) /* an Assign carries a whole manifest */
#define SERVER_REFUSED_LOG_MS	10000	     /* one line at most this often per node */
#define SERVER_HASHES_MS	100	     /* learnt hashes are sent out at most this late */
#define SERVER_RECONCILE_MIN_MS 20	     /* a join or leave is acted on at most this late ... */
#define SERVER_RECONCILE_MAX_MS 1000  /* ... or twice the last reconcile's time, up to this */
#define SERVER_KEY_LOG_MS	60000 /* ... about a registration with another key */

struct sched_client;

/* Listen on o->listen. 0, or a negative error with *detail (heap). */
int server_start(struct sched *s, char **detail);
/* Stop listening and close every connection. */
void server_stop(struct sched *s);
/* Drop nodes silent for longer than wire_silence_ms(heartbeat) (2
 * heartbeats and a slack) and connections that never said what they are.
 * Returns the milliseconds until the next one may be due (at most a
 * quarter heartbeat). */
uint64_t server_check_liveness(struct sched *s);
/* Bring every connected node in line with the cluster model: versions
 * whose holders changed are re-planned, nodes get ASSIGN for datasets
 * that are new to them or have a new version, UNASSIGN for datasets that
 * left them, and PEERS / ORIGIN when the holders of their versions
 * changed. Call after any change of datasets or nodes. */
void server_reconcile(struct sched *s);
/* The same at once while a reconcile takes under a millisecond, else a little
 * later (SERVER_RECONCILE_MIN_MS, or twice what the last reconcile took): a burst of
 * joins and leaves costs one reconcile, not one each. */
void server_reconcile_soon(struct sched *s);

/* For the admin protocol (scheduler/admin.c). */
/* Keep a client's memory past its connection (for replies that come
 * after an asynchronous step); release drops that hold. */
void server_client_hold(struct sched_client *cl);
void server_client_release(struct sched_client *cl);
/* Reply to an admin request: code 0 with json (stolen, may be NULL), or a
 * negative code with a one-line message. Does nothing once the client is
 * gone. */
void server_reply(struct sched_client *cl, int code, const char *message, json_t *json);

/* The node a control connection registered as, or NULL. */
struct cluster_node *server_client_node(const struct sched_client *cl);
/* Send a message on cl's connection (nothing once it is closed). */
void server_send(struct sched_client *cl, uint32_t type, const ProtobufCMessage *m);

/* scheduler/admin.c: handle one Admin message (unpacked by the dispatcher
 * under its budget). A negative return closes
 * the connection (malformed message). */
int admin_handle(struct sched *s, struct sched_client *cl, Syncbit__Admin *a);

#endif
