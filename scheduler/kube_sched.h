/* The scheduler's Kubernetes side: node labels syncbit.io/<KEY>=ready on
 * exactly the nodes where a dataset is complete (and an optional taint
 * syncbit.io/syncing:NoSchedule while a node's datasets are incomplete),
 * and Dataset custom resources (datasets.syncbit.io) reconciled like
 * `dataset add|rm`, with their status written back. Labels this scheduler
 * set are listed in the node annotation syncbit.io/managed-labels, so it
 * removes only its own. Loop thread only. */
#ifndef SYNCBIT_KUBE_SCHED_H
#define SYNCBIT_KUBE_SCHED_H

#include <jansson.h>

#include "common/kube.h"

#define KUBE_LABEL_PREFIX   "syncbit.io/"
#define KUBE_MANAGED_ANNOT  "syncbit.io/managed-labels"
#define KUBE_TAINT_KEY	    "syncbit.io/syncing"
#define KUBE_CRD_GROUP	    "syncbit.io"
#define KUBE_CRD_VERSION    "v1alpha1"
#define KUBE_CRD_PATH	    "/apis/syncbit.io/v1alpha1/datasets"
#define KUBE_CRD_FILE	    "crd-datasets.json" /* in DATA: datasets the CRs made */
#define KUBE_SCHED_TICK_MS  1000
#define KUBE_SCHED_RETRY_MS 5000

struct sched;
struct kube_sched;

/* Start following nodes and Dataset objects of cfg's API server. taint:
 * --taint-until-ready; token_secret: the name of a Secret in the
 * configuration's namespace to create with the join token when it does
 * not exist (the agents mount it), or NULL. */
int kube_sched_new(struct sched *s, const struct kube_config *cfg, int taint,
		   const char *token_secret, struct kube_sched **out);
/* Stop; memory goes once the loop ran again. NULL is a no-op. */
void kube_sched_free(struct kube_sched *ks);
json_t *kube_sched_status_json(const struct kube_sched *ks);

#endif
