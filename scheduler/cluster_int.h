/* Internal to the cluster model: scheduler/cluster.c (nodes, datasets,
 * versions, state), scheduler/cluster_plan.c (origin plans and the
 * readers that hashes are taken from) and scheduler/cluster_pull.c (the
 * nodes of pulled datasets). Loop thread only. */
#ifndef SYNCBIT_CLUSTER_INT_H
#define SYNCBIT_CLUSTER_INT_H

#include "scheduler/cluster.h"

/* Save d's definition (scheduler/cluster_pull.c changes pulled ones). */
void cluster_dataset_save(struct cluster *c, const struct cluster_dataset *d);
/* Add node to d's pulled_by (not saved). */
void cluster_pulled_add(struct cluster_dataset *d, const char *node);
/* Forget d's pulled_by, not saved (d is being freed). */
void cluster_pulled_clear(struct cluster_dataset *d);

/* Forget cv's plan / its readers (the version is going away, or replanned). */
void cluster_plan_clear(struct cluster_version *cv);
void cluster_readers_clear(struct cluster_version *cv);
/* Write every changed reader record in the open state transaction. */
void cluster_readers_save(struct cluster *c);
/* 1 when some version has reader records not saved yet. */
int cluster_readers_dirty(const struct cluster *c);
/* The state loader's callback for reader records (arg: the cluster). */
int cluster_readers_load(void *arg, const struct hash_id *id, const char *node, const uint8_t *bits,
			 size_t len);

#endif
