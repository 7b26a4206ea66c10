/* Datasets by name and versions by id (cluster.ix): every heartbeat names
 * each version a node holds and its dataset. */
#include "scheduler/cluster.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "scheduler/cluster_int.h"

#include <xxhash.h>

static uint64_t name_key(const char *name)
{
	return XXH64(name, strlen(name), 0);
}

static void ix_put(uint32_t *t, size_t mask, uint64_t key, size_t i)
{
	size_t h = key & mask;
	while (t[h])
		h = (h + 1) & mask;
	t[h] = (uint32_t)i + 1;
}

void cluster_index_lists(struct cluster *c)
{
	size_t n = c->ndatasets > c->nversions ? c->ndatasets : c->nversions, cap = 16;
	while (cap < 2 * n + 2)
		cap *= 2;
	free(c->ix);
	c->ix = xcalloc(2 * cap, sizeof *c->ix);
	c->ixcap = cap;
	for (size_t i = 0; i < c->ndatasets; i++)
		ix_put(c->ix, cap - 1, name_key(c->datasets[i]->name), i);
	for (size_t i = 0; i < c->nversions; i++)
		ix_put(c->ix + cap, cap - 1, hash_key64(c->versions[i]->v->id.b), i);
}

struct cluster_dataset *cluster_dataset_find(const struct cluster *c, const char *name)
{
	if (!c->ix)
		return NULL; /* nothing defined yet */
	size_t mask = c->ixcap - 1;
	for (size_t h = name_key(name) & mask; c->ix[h]; h = (h + 1) & mask) {
		struct cluster_dataset *d = c->datasets[c->ix[h] - 1];
		if (!strcmp(d->name, name))
			return d;
	}
	return NULL;
}

struct cluster_version *cluster_version_find(const struct cluster *c, const uint8_t *id, size_t len)
{
	if (len != HASH_LEN || !c->ix)
		return NULL;
	size_t mask = c->ixcap - 1;
	const uint32_t *t = c->ix + c->ixcap;
	for (size_t h = hash_key64(id) & mask; t[h]; h = (h + 1) & mask) {
		struct cluster_version *cv = c->versions[t[h] - 1];
		if (!memcmp(cv->v->id.b, id, HASH_LEN))
			return cv;
	}
	return NULL;
}
