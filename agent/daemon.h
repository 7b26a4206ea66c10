/* The agent daemon: registers this node with the scheduler, heartbeats,
 * turns assignments into fetches (agent/fetch.c) that take blocks from
 * peers (agent/peer.c) and the origin, publishes each dataset at
 * TARGET/NAME, drops what is no longer assigned, and answers the CLI on a
 * unix socket (agent/ctl.c) and probes over HTTP. One libuv loop; runs until
 * SIGTERM or SIGINT. */
#ifndef SYNCBIT_DAEMON_H
#define SYNCBIT_DAEMON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/hash.h"
#include "common/source/source.h"

#define DAEMON_RECONNECT_MIN_MS 500
#define DAEMON_RECONNECT_MAX_MS 10000
#define DAEMON_RETRY_MS		10000 /* a failed fetch starts again after this */
#define DAEMON_RESTORE_MS	30000 /* after registering: restored datasets not assigned by then go */
#define DAEMON_HEARTBEAT_MS	1000  /* until the scheduler says otherwise */
#define DAEMON_INGESTED_BATCH	4096  /* block hashes per Ingested message */
#define DAEMON_LABELS_WAIT_MS	30000 /* for the Node's labels before registering without */
#define DAEMON_LABELS_FILE	"node-labels.json" /* the Node's labels last seen, in DATA */
#define DAEMON_KEY_FILE		"node.key"	   /* this node's static key, in DATA */

struct daemon_label {
	char *key, *value;
};

struct daemon_options {
	const char *scheduler; /* host:port */
	const char *listen;    /* host:port for peers */
	const char *advertise; /* host:port peers dial; NULL = listen */
	const char *data;      /* cache and index */
	const char *target;    /* datasets appear at target/NAME */
	const char *node;
	const char *token_file;
	const char *socket;	      /* unix socket for the CLI */
	const char *http;	      /* host:port for /readyz, /metrics; NULL = none */
	const char *registry_mirror;  /* host:port for the registry mirror; NULL = none */
	uint64_t mirror_wait_ms;      /* for files of images being fetched; 0 = 404 at once */
	int mirror_pull;	      /* pull images no dataset holds through the cluster */
	const char *mirror_pull_from; /* registries it may pull from; NULL = any */
	const char *mirror_platform;  /* for those pulls; NULL = this node's */
	uint64_t mirror_pull_wait_ms; /* for their manifest, then 404 */
	const char *kubeconfig;	      /* NULL: $KUBECONFIG, else in-cluster, else none */
	struct daemon_label *labels;
	size_t nlabels;
	int encrypt;
	uint64_t cache_size;	     /* 0 = unlimited */
	uint64_t scheduler_grace_ms; /* /healthz fails after the scheduler is away this long */
	struct source_options src;
};

struct daemon;

/* Run until stopped. 0 on a clean stop; a negative error with *detail (one
 * line, heap) when it cannot start. */
int daemon_run(const struct daemon_options *o, char **detail);

/* For agent/ctl.c (loop thread). */
json_t *daemon_status_json(struct daemon *d);
/* 1 when the agent is healthy; 0 with a line in why when it has not been
 * registered with its scheduler for longer than the grace period. */
int daemon_health(struct daemon *d, struct buf *why);
/* 1 when dataset name is published here (complete, verified), 0 if not,
 * with *why (static or owned by d) saying what is missing. */
int daemon_ready(struct daemon *d, const char *name, const char **why);
/* The labels of this node's Kubernetes Node (a JSON object of strings,
 * borrowed; NULL: none), under the --labels, which win. The agent
 * registers with the union, again when it changes. */
void daemon_set_node_labels(struct daemon *d, json_t *labels);
/* Name of the i-th dataset of this node, or NULL past the last. */
const char *daemon_dataset_name(struct daemon *d, size_t i);
/* Progress of a dataset: 0 and the counts, or SB_ENOTFOUND. */
int daemon_progress(struct daemon *d, const char *name, uint64_t *bytes, uint64_t *have,
		    int *published, const char **error);
/* Send a control message to the scheduler: 0, or -ENOTCONN while the
 * agent is not registered with it (agent/adhoc.c). */
int daemon_send_control(struct daemon *d, uint32_t type, const ProtobufCMessage *m);
/* The fetch of dataset name's assigned version, or NULL (borrowed until
 * the loop runs again). */
struct fetch;
const struct fetch *daemon_fetch(struct daemon *d, const char *name);
/* The pulls through this agent (agent/adhoc.h), for agent/ctl.c. */
struct adhoc *daemon_adhoc(struct daemon *d);
/* The agent's cache (loop thread), for agent/adhoc.c. */
struct cache *daemon_cache(struct daemon *d);
/* How dataset name is held here: 1 pulled through agents (a `pull-…`
 * dataset, the nodes that pulled it hold it), 0 assigned by its selector,
 * SB_ENOTFOUND not held. */
int daemon_pulled(struct daemon *d, const char *name);
/* Drop dataset name as an Unassign does (no-op when not held): unpin it,
 * stop its fetch, answer whoever waits on it. */
void daemon_unassign(struct daemon *d, const char *name);
/* Prometheus text for the peer port's refused handshakes (and the
 * registry mirror's counters). */
void daemon_listener_metrics(struct daemon *d, struct buf *out);

/* A dataset as it is published on this node. */
struct daemon_published {
	const char *name;
	const char *source; /* the published version's canonical source URI */
	struct hash_id id;  /* its manifest id (cache_manifest_get) */
};
/* The i-th dataset of this node, for agent/mirror.c: 1 with *out filled
 * (strings borrowed until the loop runs again) when it is published here
 * at TARGET/NAME (complete and verified; the version in place while a
 * newer one is fetched, or while files of it that changed on disk are
 * repaired), 0 when it is not (a pulled dataset never is), -1 past the
 * last. */
int daemon_published(struct daemon *d, size_t i, struct daemon_published *out);
/* The i-th dataset of this node, for agent/mirror_early.c: 1 with *name
 * and *f (borrowed until the loop runs again) while its assigned version
 * is being fetched into TARGET/NAME and is not in place yet (also while a
 * damaged version is fetched again), or, for a dataset pulled through the
 * agent (kept in the cache only), while it is assigned; 0 when not, -1
 * past the last. */
int daemon_fetching(struct daemon *d, size_t i, const char **name, const struct fetch **f);
/* A consumer's word on the order of the files of dataset name's version vid
 * being fetched here (files: indices into its manifest's files): the order
 * it reads them in (fetch_order_files), or, with wanted, files it waits
 * for now (fetch_want_file). 0, or -1 when that version is not fetched. */
int daemon_fetch_order(struct daemon *d, const char *name, const uint8_t *vid, const size_t *files,
		       size_t n, int wanted);
/* 1 when dataset name's file of cache object id changed on disk and is not
 * put back yet (never serve it), else 0. */
int daemon_file_damaged(struct daemon *d, const char *name, const struct hash_id *id);

#endif
