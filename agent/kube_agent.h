/* The agent's Kubernetes side: the labels of its own Node (followed by a
 * watch and handed to the daemon, which registers with them), and the
 * readiness gates of the pods on its node: a pod whose spec.readinessGates
 * names conditionType syncbit.io/<DATASET> gets that condition True once
 * the dataset is complete and verified here, False with a reason otherwise.
 * Only pods on this node are watched and only their status is written.
 * Loop thread only. */
#ifndef SYNCBIT_KUBE_AGENT_H
#define SYNCBIT_KUBE_AGENT_H

#include <jansson.h>
#include <uv.h>

#include "common/kube.h"

#define KUBE_GATE_PREFIX     "syncbit.io/"
#define KUBE_GATE_TICK_MS    1000  /* gates are compared with the datasets this often */
#define KUBE_GATE_MESSAGE_MS 30000 /* a progress-only message change waits this long */
#define KUBE_GATE_RETRY_MS   5000  /* after a failed patch */

struct daemon;
struct kube_agent;

/* Start watching node `node` and its pods with the API server of cfg. */
int kube_agent_new(uv_loop_t *loop, struct daemon *d, const struct kube_config *cfg,
		   const char *node, struct kube_agent **out);
/* Stop every watch and patch; the memory goes once the loop ran again. */
void kube_agent_free(struct kube_agent *ka);
/* {"api": source, "node_synced", "pods_watched", "gates", "patches",
 *  "patch_errors", "last_error"} for status and /metrics. */
json_t *kube_agent_status_json(const struct kube_agent *ka);

#endif
