/* The nodes of datasets made for pulls through agents (scheduler/pull.c):
 * such a dataset goes to the nodes that asked for it, not by selector. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "scheduler/cluster_int.h"

int cluster_pulled_by(const struct cluster_dataset *d, const char *node)
{
	for (size_t i = 0; i < d->npulled_by; i++)
		if (!strcmp(d->pulled_by[i], node))
			return 1;
	return 0;
}

void cluster_pulled_add(struct cluster_dataset *d, const char *node)
{
	if (cluster_pulled_by(d, node))
		return;
	d->pulled_by = xrealloc(d->pulled_by, (d->npulled_by + 1) * sizeof *d->pulled_by);
	d->pulled_by[d->npulled_by++] = xstrdup(node);
}

void cluster_dataset_pulled_by(struct cluster *c, struct cluster_dataset *d, const char *node)
{
	if (d->pulled && cluster_pulled_by(d, node))
		return;
	d->pulled = 1;
	cluster_pulled_add(d, node);
	cluster_dataset_save(c, d);
}

size_t cluster_dataset_unpulled_by(struct cluster *c, struct cluster_dataset *d, const char *node)
{
	for (size_t i = 0; i < d->npulled_by; i++)
		if (!strcmp(d->pulled_by[i], node)) {
			free(d->pulled_by[i]);
			memmove(&d->pulled_by[i], &d->pulled_by[i + 1],
				(d->npulled_by - i - 1) * sizeof *d->pulled_by);
			d->npulled_by--;
			cluster_dataset_save(c, d);
			break;
		}
	return d->npulled_by;
}

void cluster_pulled_clear(struct cluster_dataset *d)
{
	for (size_t i = 0; i < d->npulled_by; i++)
		free(d->pulled_by[i]);
	free(d->pulled_by);
	d->pulled_by = NULL;
	d->npulled_by = 0;
	d->pulled = 0;
}

void cluster_dataset_unpull(struct cluster *c, struct cluster_dataset *d)
{
	cluster_pulled_clear(d);
	cluster_dataset_save(c, d);
}
