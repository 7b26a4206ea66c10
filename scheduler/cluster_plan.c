/* Origin plans of the cluster model (scheduler/cluster.h): each version's
 * shares of the blocks to read from the origin, how they even out as they
 * are read, and the readers, the blocks each node's shares ever held, which
 * are the blocks whose hashes the scheduler takes from that node. Loop
 * thread only. */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "scheduler/cluster.h"
#include "scheduler/cluster_int.h"

/* ---- readers --------------------------------------------------------------- */

void cluster_readers_clear(struct cluster_version *cv)
{
	for (size_t i = 0; i < cv->nreaders; i++) {
		free(cv->readers[i].node);
		free(cv->readers[i].bits);
	}
	free(cv->readers);
	cv->readers = NULL;
	cv->nreaders = 0;
}

/* Readers are kept sorted by node name: the index of node's, or where it
 * would go (*found 0). Thousands of nodes look theirs up per report. */
static size_t reader_index(const struct cluster_version *cv, const char *node, int *found)
{
	size_t lo = 0, hi = cv->nreaders;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(cv->readers[mid].node, node);
		if (cmp == 0) {
			*found = 1;
			return mid;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

static struct cluster_reader *reader_find(const struct cluster_version *cv, const char *node)
{
	int found;
	size_t i = reader_index(cv, node, &found);
	return found ? &cv->readers[i] : NULL;
}

static struct cluster_reader *reader_get(struct cluster_version *cv, const char *node)
{
	int found;
	size_t i = reader_index(cv, node, &found);
	if (found)
		return &cv->readers[i];
	cv->readers = xrealloc(cv->readers, (cv->nreaders + 1) * sizeof *cv->readers);
	memmove(&cv->readers[i + 1], &cv->readers[i], (cv->nreaders - i) * sizeof *cv->readers);
	cv->nreaders++;
	struct cluster_reader *r = &cv->readers[i];
	r->node = xstrdup(node);
	r->bits = xcalloc(cv->v->nblocks / 8 + 1, 1);
	r->dirty = 0;
	return r;
}

/* Add node's share p to the blocks it may report. */
static void reader_note(struct cluster_version *cv, const char *node, const struct assign_plan *p)
{
	struct cluster_reader *r = p->nblocks ? reader_get(cv, node) : NULL;
	for (size_t i = 0; r && i < p->nranges; i++) {
		for (uint32_t k = 0; k < p->ranges[i].count; k++) {
			uint32_t b = p->ranges[i].first + k;
			if (b < cv->v->nblocks && !assign_bit(r->bits, b)) {
				assign_set_bit(r->bits, b);
				r->dirty = 1;
			}
		}
	}
}

int cluster_may_report(const struct cluster_version *cv, const char *node, uint32_t b)
{
	const struct cluster_reader *r = reader_find(cv, node);
	return r && b < cv->v->nblocks && assign_bit(r->bits, b);
}

void cluster_readers_save(struct cluster *c)
{
	for (size_t i = 0; i < c->nversions; i++) {
		struct cluster_version *cv = c->versions[i];
		for (size_t k = 0; k < cv->nreaders; k++) {
			struct cluster_reader *r = &cv->readers[k];
			if (!r->dirty)
				continue;
			state_put_readers(c->state, &cv->v->id, r->node, r->bits,
					  cv->v->nblocks / 8 + 1);
			r->dirty = 0;
		}
	}
}

int cluster_readers_dirty(const struct cluster *c)
{
	for (size_t i = 0; i < c->nversions; i++)
		for (size_t k = 0; k < c->versions[i]->nreaders; k++)
			if (c->versions[i]->readers[k].dirty)
				return 1;
	return 0;
}

int cluster_readers_load(void *arg, const struct hash_id *id, const char *node, const uint8_t *bits,
			 size_t len)
{
	struct cluster_version *cv = cluster_version_find(arg, id->b, HASH_LEN);
	if (!cv || len != cv->v->nblocks / 8 + 1)
		return 0;
	struct cluster_reader *r = reader_get(cv, node);
	memcpy(r->bits, bits, len);
	return 0;
}

/* ---- plans ----------------------------------------------------------------- */

void cluster_plans_restore(struct cluster *c)
{
	for (size_t i = 0; i < c->nversions; i++) {
		struct cluster_version *cv = c->versions[i];
		uint32_t nb = cv->v->nblocks;
		if (cv->nplans || !cv->nreaders || cv->v->nknown >= nb)
			continue;
		cv->plans = xcalloc(cv->nreaders, sizeof *cv->plans);
		cv->plan_nodes = xcalloc(cv->nreaders, sizeof *cv->plan_nodes);
		uint32_t *blocks = xcalloc(nb + 1, sizeof *blocks);
		for (size_t k = 0; k < cv->nreaders; k++) {
			uint32_t n = 0;
			for (uint32_t b = 0; b < nb; b++)
				if (assign_bit(cv->readers[k].bits, b) &&
				    !assign_bit(cv->v->known, b))
					blocks[n++] = b;
			assign_plan_add(&cv->plans[k], blocks, n);
			cv->plan_nodes[k] = xstrdup(cv->readers[k].node);
		}
		cv->nplans = cv->nreaders;
		free(blocks);
	}
}

void cluster_plan_clear(struct cluster_version *cv)
{
	for (size_t i = 0; i < cv->nplans; i++) {
		free(cv->plan_nodes[i]);
		assign_plan_close(&cv->plans[i]);
	}
	free(cv->plan_nodes);
	free(cv->plans);
	cv->plan_nodes = NULL;
	cv->plans = NULL;
	cv->nplans = 0;
}

/* Clear in skip the known blocks that nodes in gone[] reported holding and
 * no member reports: nobody could serve them. Returns their count. */
static uint32_t unskip_orphans(struct cluster *c, const struct cluster_version *cv,
			       struct cluster_node **m, size_t n, char *const *gone, size_t ngone,
			       uint8_t *skip)
{
	uint32_t nb = cv->v->nblocks, count = 0;
	size_t bytes = nb / 8 + 1;
	if (!ngone)
		return 0;
	uint8_t *held = xcalloc(bytes, 1);
	for (size_t i = 0; i < n; i++) {
		const struct cluster_report *r = cluster_node_report_of(m[i], &cv->v->id);
		for (size_t k = 0; r && r->nbits == nb && k < (nb + 7) / 8; k++)
			held[k] |= r->bits ? r->bits[k] : 0xff; /* no map: every block */
	}
	for (size_t g = 0; g < ngone; g++) {
		const struct cluster_node *node = cluster_node_find(c, gone[g]);
		const struct cluster_report *r =
		    node ? cluster_node_report_of(node, &cv->v->id) : NULL;
		if (r && r->nbits != nb)
			r = NULL;
		if (!node || (!r && !cv->ingested_by))
			continue;
		for (uint32_t b = 0; b < nb; b++) {
			int had = (r && cluster_report_has(r, b)) ||
				  (cv->ingested_by && cv->ingested_by[b] == node->id);
			if (had && assign_bit(skip, b) && !assign_bit(held, b)) {
				skip[b / 8] &= (uint8_t) ~(1u << (b % 8));
				count++;
			}
		}
	}
	free(held);
	return count;
}

/* The first keep (at most ASSIGN_KEEP_HEAD) blocks of share p that skip does not mark
 * (unread, not known): the reads its node may have in flight. They go to
 * out[0..*n), ascending, and are marked in skip so that a new plan's
 * stripes leave them to that node. */
static void keep_head(const struct assign_plan *p, uint32_t keep, uint8_t *skip, uint32_t *out,
		      uint32_t *n)
{
	*n = 0;
	for (size_t r = 0; p && r < p->nranges && *n < keep; r++)
		for (uint32_t k = 0; k < p->ranges[r].count && *n < keep; k++) {
			uint32_t b = p->ranges[r].first + k;
			if (!assign_bit(skip, b)) {
				assign_set_bit(skip, b);
				out[(*n)++] = b;
			}
		}
}

int cluster_node_failing(const struct cluster_node *n, const struct cluster_version *cv)
{
	if (!n->nfailing)
		return 0;
	const struct cluster_report *r = cluster_node_report_of(n, &cv->v->id);
	return r && r->error && r->error[0];
}

int cluster_node_unplanned(const struct cluster_node *n, const struct cluster_version *cv)
{
	return n->late || cluster_node_failing(n, cv);
}

uint32_t cluster_plan(struct cluster *c, struct cluster_version *cv, char *const *gone,
		      size_t ngone)
{
	size_t n, k = 0;
	struct cluster_node **m = cluster_members(c, cv, &n);
	uint8_t *skip = xmalloc(cv->v->nblocks / 8 + 1);
	memcpy(skip, cv->v->known, cv->v->nblocks / 8 + 1);
	/* what failing nodes hold still counts: they serve it to peers */
	uint32_t orphans = unskip_orphans(c, cv, m, n, gone, ngone, skip);
	/* A failing node (its cache cannot store) or a late one (no
	 * heartbeat for 1.5 intervals) gets no share: otherwise the blocks
	 * left with it would wait for its disk or its return, and every other
	 * node with them. If every member is one, they keep their shares. */
	for (size_t i = 0; i < n; i++)
		if (!cluster_node_unplanned(m[i], cv))
			m[k++] = m[i];
	if (k)
		n = k;
	uint32_t *head = xcalloc(n * ASSIGN_KEEP_HEAD + 1, sizeof *head);
	uint32_t *nhead = xcalloc(n + 1, sizeof *nhead);
	for (size_t i = 0; i < n; i++)
		keep_head(cluster_plan_of(cv, m[i]->name),
			  c->keep_head < ASSIGN_KEEP_HEAD ? c->keep_head : ASSIGN_KEEP_HEAD, skip,
			  &head[i * ASSIGN_KEEP_HEAD], &nhead[i]);
	cluster_plan_clear(cv);
	cv->stripe = 1;
	if (n && (cv->v->nknown < cv->v->nblocks || orphans)) {
		cv->plans = xcalloc(n, sizeof *cv->plans);
		cv->plan_nodes = xcalloc(n, sizeof *cv->plan_nodes);
		cv->stripe = assign_origin_plan(skip, cv->v->nblocks, n, cv->plans);
		for (size_t i = 0; i < n; i++) {
			assign_plan_add(&cv->plans[i], &head[i * ASSIGN_KEEP_HEAD], nhead[i]);
			cv->plan_nodes[i] = xstrdup(m[i]->name);
			reader_note(cv, m[i]->name, &cv->plans[i]);
		}
		cv->nplans = n;
	}
	free(head);
	free(nhead);
	free(skip);
	free(m);
	return orphans;
}

/* The index of node's share, or nplans. Shares are made in the order of
 * cluster_members (the cluster's nodes, sorted by name) or of the readers
 * (sorted too), so plan_nodes is sorted. */
static size_t plan_index(const struct cluster_version *cv, const char *node)
{
	size_t lo = 0, hi = cv->nplans;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(cv->plan_nodes[mid], node);
		if (cmp == 0)
			return mid;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return cv->nplans;
}

const struct assign_plan *cluster_plan_of(const struct cluster_version *cv, const char *node)
{
	size_t i = plan_index(cv, node);
	return i < cv->nplans ? &cv->plans[i] : NULL;
}

uint32_t cluster_rebalance(struct cluster_version *cv, const char *node, const char **donor)
{
	/* Runs on every ingest: the node's own share first, cheaply. */
	size_t me = plan_index(cv, node), best = cv->nplans;
	if (me == cv->nplans || assign_plan_any_unknown(&cv->plans[me], cv->v->known))
		return 0;
	uint32_t most = 0;
	for (size_t i = 0; i < cv->nplans; i++) {
		uint32_t left = i == me ? 0 : assign_plan_unknown(&cv->plans[i], cv->v->known);
		if (left > most) {
			most = left;
			best = i;
		}
	}
	if (best == cv->nplans || most <= 2)
		return 0;
	*donor = cv->plan_nodes[best];
	uint32_t moved =
	    assign_plan_move(&cv->plans[best], &cv->plans[me], cv->v->known, (most - 2 + 1) / 2);
	reader_note(cv, node, &cv->plans[me]);
	return moved;
}
