/* The scheduler process (`syncbit scheduler`): one libuv loop that serves
 * the control protocol to agents and the admin protocol to the CLI
 * (scheduler/server.c), lists sources (scheduler/listing.c), keeps the
 * cluster model in LMDB (scheduler/cluster.c) and answers HTTP
 * (scheduler/api.c). Loop thread only; only the loop thread writes LMDB. */
#ifndef SYNCBIT_SCHED_H
#define SYNCBIT_SCHED_H

#include <stdint.h>
#include <uv.h>

#include "common/net/secure.h"
#include "common/source/source.h"
#include "scheduler/cluster.h"

#define SCHED_HEARTBEAT_MS   1000
#define SCHED_REFRESH_S	     300   /* default --refresh */
#define SCHED_CLIENT_IDLE_MS 30000 /* a connection that neither registers nor asks */
#define SCHED_TRIM_FLUSHES   50	   /* freed heap goes back to the system every 50 flushes (5 s) */
#define SCHED_KEY_FILE	     "scheduler.key" /* its static key, in --data */

struct sched_options {
	const char *listen; /* host:port for agents and the CLI */
	const char *data;   /* DATA: join-token and sched/ */
	const char *http;   /* host:port for the HTTP API, or NULL */
	/* The file of the token /api/ requires, or NULL: none. */
	const char *http_token_file;
	unsigned refresh_s; /* re-list sources this often; 0 = never */
	unsigned heartbeat_ms;
	uint64_t pull_linger_ms; /* pulled datasets stay this long after the last pull */
	/* Bytes of Assigns (manifests) queued for nodes at once; 0 = the
	 * default (scheduler/server_pace.c). */
	uint64_t assign_queue_max;
	int encrypt;
	const char *kubeconfig; /* NULL: $KUBECONFIG, else in-cluster, else none */
	int taint_until_ready;
	const char *token_secret;  /* Secret to create with the join token, or NULL */
	struct source_options src; /* for listing sources */
	/* With etcd (scheduler/ha.h): endpoints, or NULL for LMDB in DATA. */
	const char *etcd;
	const char *etcd_cacert, *etcd_cert, *etcd_key; /* PEM files, or NULL */
	const char *etcd_user, *etcd_password;		/* or NULL */
	const char *etcd_cluster;			/* keys under /syncbit/NAME/ */
	unsigned etcd_lease_s;				/* the leader's lease TTL */
};

struct sched_client;
struct listing;
struct kube_sched;
struct ha;

struct sched {
	const struct sched_options *o;
	uv_loop_t loop;
	struct cluster cluster;
	struct secure_token token;
	struct secure_keypair key; /* its static key, DATA/SCHED_KEY_FILE */
	struct conn_listener *listener;
	struct httpd *http;
	char *http_token; /* what /api/ requires, or NULL */
	uv_timer_t liveness, refresh, flush;
	/* The liveness timer's judgement waits for the poll of its loop
	 * iteration (check), which the idle handle makes a poll without
	 * waiting: heartbeats that arrived while the loop was busy count. */
	uv_idle_t liveness_poll;
	uv_check_t liveness_check;
	/* Joins and leaves bring the nodes in line once per burst (reconcile), and
	 * learnt hashes go out once per SERVER_HASHES_MS (hashes). */
	uv_timer_t reconcile, hashes;
	uint64_t reconcile_cost_ms; /* how long the last server_reconcile() took */
	/* Assign pacing (scheduler/server_pace.c): bytes queued on connections
	 * that move (and the most seen), nodes whose queue stopped moving and
	 * their bytes, times a node waited, and
	 * the nodes owed Assigns, first in first out; the timer that serves
	 * them, its last run and its last look for stalled nodes. */
	uint64_t assign_queued, assign_queued_peak, assign_waits, assign_stalled_bytes;
	size_t assign_stalled, pace_nwaiting;
	struct sched_client *pace_head, **pace_tail;
	uv_timer_t pace;
	uint64_t pace_ran, pace_scanned;
	uv_signal_t sigint, sigterm;
	struct sched_client *clients;
	struct listing *listings;
	struct kube_sched *kube; /* NULL without Kubernetes */
	struct ha *ha;		 /* NULL without etcd */
	/* After a start or taking the lead (scheduler/hold.c): the origin
	 * plans restored from the state stand until the nodes that had shares
	 * in them have come back and re-reported what they hold (a new plan
	 * before would send blocks they hold to the origin again), or until
	 * plan_hold_until; then one re-plan. */
	uint64_t plan_hold_until; /* loop time, or 0 */
	uint64_t plan_hold_since; /* loop time the hold began */
	char **hold_nodes;	  /* the nodes not back yet */
	size_t nhold, nhold_total;
	int stopping;
	int deposed; /* stopped because another scheduler leads */
};

/* Run until SIGINT or SIGTERM. 0 after a clean stop; a negative error with
 * *detail (one line, heap) when it cannot start. */
int sched_run(const struct sched_options *o, char **detail);

/* The same in steps, for a caller that drives s->loop itself: init opens
 * the state and starts serving (0, or a negative error with *detail and s
 * already closed); stop ends the serving (the loop then drains); close
 * releases s once uv_run returned. o must outlive s. */
int sched_init(struct sched *s, const struct sched_options *o, char **detail);
void sched_stop(struct sched *s);
void sched_close(struct sched *s);

/* With etcd: this scheduler was elected; load the state from etcd. 0 or
 * a negative error (it then gives the lead up). */
int sched_elected(struct sched *s);
/* With etcd: another scheduler leads; stop (sched_run then fails). */
void sched_deposed(struct sched *s);

/* The manifest format a new listing of dataset name gets: its current
 * version's (its blocks keep their ids), or MANIFEST_FORMAT for a dataset
 * not held yet. */
uint32_t sched_format_of(struct sched *s, const char *name);

/* Point dataset name at version v (owned from now on; hashes of the
 * current version carry over), creating or redefining the dataset, then
 * tell the nodes. A version with the same id that is already held (the
 * same listing under another name) is shared and v freed. Returns the
 * dataset. */
struct cluster_dataset *sched_apply_version(struct sched *s, const char *name, const char *source,
					    const struct assign_label *sel, size_t nsel,
					    uint32_t block_size, struct sched_version *v);
/* The same without telling the nodes: the caller changes more, then calls
 * server_reconcile(). */
struct cluster_dataset *sched_set_version(struct sched *s, const char *name, const char *source,
					  const struct assign_label *sel, size_t nsel,
					  uint32_t block_size, struct sched_version *v);
/* sched_apply_version that sets the dataset's include/exclude rules too
 * (a copy of filter; NULL keeps them). */
struct filter;
struct cluster_dataset *sched_apply_filtered(struct sched *s, const char *name, const char *source,
					     const struct assign_label *sel, size_t nsel,
					     uint32_t block_size, const struct filter *filter,
					     struct sched_version *v);

#endif
