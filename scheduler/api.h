/* What the scheduler shows: JSON documents of datasets, nodes and transfer
 * status (the admin protocol's replies and the HTTP API carry the same
 * documents), Prometheus metrics, and the HTTP routes (--http): /healthz,
 * /api/v1/datasets, /api/v1/nodes, /api/v1/status (behind a bearer token
 * with --http-token-file), /metrics, and the page on / (scheduler/web.h).
 * Loop thread only. */
#ifndef SYNCBIT_API_H
#define SYNCBIT_API_H

#include <jansson.h>

#include "common/buf.h"
#include "scheduler/sched.h"

/* {"datasets":[dataset...]} */
json_t *api_datasets(struct sched *s);
/* One dataset: {"name","source","selector":{k:v},"block_size","version",
 * "manifest","files","bytes","blocks","blocks_known","complete",
 * "nodes_assigned","nodes_complete","nodes":[name...],"error"}. */
json_t *api_dataset(struct sched *s, const struct cluster_dataset *d);
/* {"nodes":[{"name","addr","labels":{k:v},"disk_free","cache_size",
 * "agent_version","connected","seconds_since_heartbeat","datasets":[...]}]} */
json_t *api_nodes(struct sched *s);
/* Transfer status of every dataset (or only the one named): see api.c. */
json_t *api_status(struct sched *s, const char *only);
/* Prometheus text exposition, appended to out. */
void api_metrics(struct sched *s, struct buf *out);

/* Serve the routes on o->http (reading o->http_token_file first, when
 * given). 0, or a negative error with *detail. */
int api_start(struct sched *s, char **detail);
void api_stop(struct sched *s);

#endif
