/* What the nodes report of each version they hold (blocks, bytes moved,
 * published, errors): kept per node, saved to the state, logged when a
 * node publishes or fails, and summed into each dataset's running byte
 * totals for /metrics. Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/net/runs.h"
#include "common/log.h"
#include "scheduler/cluster_int.h"

void cluster_report_close(struct cluster_report *r)
{
	free(r->dataset);
	free(r->bits);
	free(r->error);
	memset(r, 0, sizeof *r);
}

int cluster_report_has(const struct cluster_report *r, uint32_t b)
{
	if (b >= r->nbits)
		return 0;
	return r->bits ? assign_bit(r->bits, b) : r->have == r->nbits;
}

void cluster_report_save(struct cluster *c, const char *node, struct cluster_report *r,
			 uint64_t now)
{
	Syncbit__VersionState vs;
	Syncbit__Bitfield bf;
	syncbit__version_state__init(&vs);
	syncbit__bitfield__init(&bf);
	bf.version_id.data = r->version.b;
	bf.version_id.len = HASH_LEN;
	bf.nblocks = r->nbits;
	bf.bits.data = r->bits;
	bf.bits.len = r->bits ? (r->nbits + 7) / 8 : 0;
	vs.dataset = r->dataset;
	vs.version_id = bf.version_id;
	vs.have = &bf;
	vs.have_all = r->nbits && !r->bits; /* every block: no map (as a heartbeat) */
	vs.published = r->published;
	vs.bytes_from_origin = r->bytes_from_origin;
	vs.bytes_from_peers = r->bytes_from_peers;
	vs.bytes_reused = r->bytes_reused;
	vs.bytes_served = r->bytes_served;
	vs.origin_refetch_bad_peer = r->refetch_bad_peer;
	vs.origin_refetch_no_peer = r->refetch_no_peer;
	vs.error = r->error;
	if (state_put_have(c->state, &r->version, node, &vs) < 0)
		log_with(LOG_ERROR, LOG_KV({"node", node}), "node %s: cannot save its report",
			 node);
	r->saved_ms = now;
	r->due = 0;
	r->dirty = 0;
}

/* r's map as n bits (a heap copy; every block when it holds all, none when
 * it has no map of n blocks). */
static uint8_t *map_of(const struct cluster_report *r, uint32_t n)
{
	size_t nbytes = (n + 7) / 8;
	uint8_t *m = xcalloc(nbytes + 1, 1);
	if (r->nbits == n && r->bits)
		memcpy(m, r->bits, nbytes);
	else if (r->nbits == n && r->have == n)
		for (uint32_t b = 0; b < n; b++)
			m[b / 8] |= (uint8_t)(1u << (b % 8));
	return m;
}

/* Make r's map the nbits bits of map (nbits 0: no map). */
static void set_map(struct cluster_report *r, uint32_t nbits, const uint8_t *map)
{
	size_t nbytes = (nbits + 7) / 8;
	uint32_t have = 0;
	for (uint32_t b = 0; b < nbits; b++)
		have += (uint32_t)assign_bit(map, b);
	int all = nbits && have == nbits;
	if (nbits == r->nbits && have == r->have &&
	    (all ? !r->bits : r->bits && (!nbytes || !memcmp(r->bits, map, nbytes))))
		return;
	free(r->bits);
	r->bits = NULL;
	if (!all && nbytes) {
		r->bits = xcalloc(nbytes + 1, 1);
		memcpy(r->bits, map, nbytes);
		/* no bit past the last block */
		if (nbits % 8)
			r->bits[nbytes - 1] &= (uint8_t)((1u << (nbits % 8)) - 1);
	}
	r->nbits = nbits;
	r->have = have;
	r->dirty = 1;
}

/* r's block map from vs for a version of n blocks: a full map (bits, or
 * runs: common/net/runs.h), every block (have_all), the map r already holds
 * from this node's last full one (have_same; a node that says so of a map r
 * lacks counts as holding nothing until its next full map, which it sends
 * now and then), or that map with blocks added (have_added; onto no map: the
 * added blocks only). A map of every block is not kept (bits NULL): at
 * steady state, with every node complete, the scheduler holds no maps at
 * all. Runs that do not fit the version leave r as it was. */
static void report_bits(struct cluster_report *r, uint32_t n, const Syncbit__VersionState *vs)
{
	if (vs->have_same && r->nbits == n)
		return;
	if (vs->have_all) {
		if (r->nbits == n && r->have == n && !r->bits)
			return;
		free(r->bits);
		r->bits = NULL;
		r->nbits = r->have = n;
		r->dirty = 1;
		return;
	}
	if (vs->n_have_runs || vs->n_have_added) {
		uint8_t *m = vs->n_have_added ? map_of(r, n) : xcalloc((n + 7) / 8 + 1, 1);
		const uint32_t *runs = vs->n_have_added ? vs->have_added : vs->have_runs;
		size_t count = vs->n_have_added ? vs->n_have_added : vs->n_have_runs;
		if (runs_apply(runs, count, m, n) == 0)
			set_map(r, n, m);
		free(m);
		return;
	}
	const Syncbit__Bitfield *bf = vs->have;
	uint32_t nbits = bf && bf->nblocks == n && bf->bits.len >= (n + 7) / 8 ? n : 0;
	set_map(r, nbits, nbits ? bf->bits.data : (const uint8_t *)"");
}

const char *const cluster_map_form_names[CLUSTER_MAP_FORMS] = {"bits", "runs", "added",
							       "same", "all",  "none"};

static enum cluster_map_form map_form(const Syncbit__VersionState *vs)
{
	if (vs->have_all)
		return MAP_ALL;
	if (vs->have_same)
		return MAP_SAME;
	if (vs->n_have_added)
		return MAP_ADDED;
	if (vs->n_have_runs)
		return MAP_RUNS;
	return vs->have ? MAP_BITS : MAP_NONE;
}

/* s, or NULL when it is empty. */
static char *dup_or_null(const char *s)
{
	return s && s[0] ? xstrdup(s) : NULL;
}

/* Fill r from vs, bounded by the version's block count. Returns 1 when a
 * change worth saving at once happened (published, error). */
int cluster_report_fill(struct cluster_report *r, const struct cluster_version *cv,
			const Syncbit__VersionState *vs)
{
	int major = r->published != (int)vs->published ||
		    strcmp(r->error ? r->error : "", vs->error ? vs->error : "") != 0;
	report_bits(r, cv->v->nblocks, vs);
	if (r->bytes_from_origin != vs->bytes_from_origin ||
	    r->bytes_from_peers != vs->bytes_from_peers || r->bytes_reused != vs->bytes_reused ||
	    r->bytes_served != vs->bytes_served)
		r->dirty = 1;
	/* The same strings heartbeat after heartbeat: kept, not copied again. */
	if (!r->dataset || strcmp(r->dataset, vs->dataset ? vs->dataset : "") != 0) {
		free(r->dataset);
		r->dataset = xstrdup(vs->dataset ? vs->dataset : "");
	}
	if (strcmp(r->error ? r->error : "", vs->error ? vs->error : "") != 0) {
		free(r->error);
		r->error = dup_or_null(vs->error);
	}
	r->published = vs->published;
	r->bytes_from_origin = vs->bytes_from_origin;
	r->bytes_from_peers = vs->bytes_from_peers;
	r->bytes_reused = vs->bytes_reused;
	r->bytes_served = vs->bytes_served;
	r->refetch_bad_peer = vs->origin_refetch_bad_peer;
	r->refetch_no_peer = vs->origin_refetch_no_peer;
	r->dirty |= major;
	return major;
}

/* A node's dataset changed state: published there, or failed there. */
static void report_log(const struct cluster_node *n, const struct cluster_report *r,
		       int was_published, const char *was_error)
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(&r->version, hex);
	if (r->published && !was_published)
		log_with(LOG_INFO, LOG_KV({"dataset", r->dataset}, {"node", n->name}),
			 "dataset %s: version %.12s published on node %s", r->dataset, hex,
			 n->name);
	if (r->error && r->error[0] && strcmp(r->error, was_error ? was_error : ""))
		log_with(LOG_WARN,
			 LOG_KV({"dataset", r->dataset}, {"node", n->name}, {"error", r->error}),
			 "dataset %s: node %s reports: %s", r->dataset, n->name, r->error);
}

static struct cluster_report *report_find(struct cluster_node *n, const struct hash_id *id,
					  size_t *index)
{
	struct cluster_report *r = (struct cluster_report *)cluster_node_report_of(n, id);
	if (r)
		*index = (size_t)(r - n->reports);
	return r;
}

/* A node's count since its last report: it only grows, unless the node
 * restarted the version's fetch, and then all of it is new. */
static uint64_t grown(uint64_t before, uint64_t now)
{
	return now >= before ? now - before : now;
}

/* Add what a report says moved since the node's previous one (before:
 * its origin, peer, reused and served bytes) to its dataset's running
 * totals. */
static void report_count(struct cluster *c, const uint64_t before[4],
			 const struct cluster_report *r)
{
	struct cluster_dataset *d = r->dataset ? cluster_dataset_find(c, r->dataset) : NULL;
	if (!d)
		return;
	d->total_from_origin += grown(before[0], r->bytes_from_origin);
	d->total_from_peers += grown(before[1], r->bytes_from_peers);
	d->total_reused += grown(before[2], r->bytes_reused);
	d->total_served += grown(before[3], r->bytes_served);
}

int cluster_node_report(struct cluster *c, struct cluster_node *n, Syncbit__VersionState *const *vs,
			size_t nvs, uint64_t now)
{
	struct cluster_report *next = xcalloc(nvs + 1, sizeof *next);
	uint8_t *moved = xcalloc(n->nreports + 1, 1);
	size_t nnext = 0, at;
	int dropped = 0, flipped = 0;
	state_begin(c->state);
	for (size_t i = 0; i < nvs; i++) {
		struct cluster_version *cv =
		    cluster_version_find(c, vs[i]->version_id.data, vs[i]->version_id.len);
		if (!cv)
			continue;
		/* A version twice in one heartbeat: the first counts. */
		struct cluster_report *old = report_find(n, &cv->v->id, &at);
		int dup = old && moved[at];
		for (size_t j = 0; !old && j < nnext && !dup; j++)
			dup = !memcmp(next[j].version.b, cv->v->id.b, HASH_LEN);
		if (dup)
			continue;
		struct cluster_report *r = &next[nnext++];
		if (old) {
			*r = *old;
			moved[at] = 1;
		} else {
			r->version = cv->v->id;
			r->dirty = 1;
		}
		int was_published = r->published;
		char *was_error = old && r->error ? xstrdup(r->error) : NULL;
		const uint64_t before[] = {r->bytes_from_origin, r->bytes_from_peers,
					   r->bytes_reused, r->bytes_served};
		c->maps[map_form(vs[i])]++;
		int major = cluster_report_fill(r, cv, vs[i]);
		report_count(c, before, r);
		report_log(n, r, was_published, was_error);
		if ((was_error && was_error[0]) != (r->error && r->error[0]))
			flipped = 1; /* failing now, or no longer */
		free(was_error);
		if (r->dirty && (major || now - r->saved_ms >= CLUSTER_REPORT_SAVE_MS)) {
			r->due = 1; /* with every node's, at the next flush */
			cluster_node_save_later(c, n);
		}
	}
	for (size_t i = 0; i < n->nreports; i++) {
		if (moved[i])
			continue;
		state_del_have(c->state, &n->reports[i].version, n->name);
		cluster_report_close(&n->reports[i]);
		dropped = 1;
	}
	if (state_commit(c->state) < 0)
		log_with(LOG_ERROR, LOG_KV({"node", n->name}), "node %s: cannot save its reports",
			 n->name);
	free(moved);
	free(n->reports);
	if (nnext > 1)
		qsort(next, nnext, sizeof *next, cluster_report_cmp);
	n->reports = next;
	n->nreports = nnext;
	n->nfailing = 0;
	for (size_t i = 0; i < nnext; i++)
		n->nfailing += next[i].error && next[i].error[0];
	if (dropped)
		cluster_gc(c);
	return flipped;
}
