/* Internal to the cluster model: scheduler/cluster.c (nodes, datasets,
 * versions, state), scheduler/cluster_report.c (what nodes report),
 * scheduler/cluster_plan.c (origin plans and the readers that hashes are
 * taken from) and scheduler/cluster_pull.c (the nodes of pulled datasets).
 * Loop thread only. */
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

/* Release what a report holds and zero it. */
void cluster_report_close(struct cluster_report *r);
/* Order of a node's reports: by version id (cluster_node.reports is kept
 * sorted so that a lookup is a bisection, not a scan of every version). */
int cluster_report_cmp(const void *a, const void *b);
/* Write r of node in the open state transaction; r is clean after. */
/* Remake c->ix after a dataset or version came or went (cluster_index.c). */
void cluster_index_lists(struct cluster *c);
/* n has reports (due) or its record (seen_due) to save at the next flush. */
void cluster_node_save_later(struct cluster *c, struct cluster_node *n);
void cluster_report_save(struct cluster *c, const char *node, struct cluster_report *r,
			 uint64_t now);
/* Fill r from vs, bounded by the version's block count. Returns 1 when a
 * change worth saving at once happened (published, error). */
int cluster_report_fill(struct cluster_report *r, const struct cluster_version *cv,
			const Syncbit__VersionState *vs);

#endif
