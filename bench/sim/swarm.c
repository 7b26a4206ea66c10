/* The nodes: what each holds and needs, its requests to peers (the agent's
 * choice and pipeline depth, agent/pick.c), its origin reads in the order
 * of its share, Have and bitfields, hashes from the scheduler in batches,
 * joins and deaths. */
#include <stdlib.h>
#include <string.h>

#include "agent/pick.h"
#include "bench/sim/index.h"
#include "bench/sim/sim.h"
#include "bench/sim/swarm.h"
#include "common/buf.h"

int bit(const uint64_t *m, uint32_t b)
{
	return (int)(m[b / 64] >> (b % 64) & 1);
}

uint64_t sim_rand(struct sim *s)
{
	uint64_t x = s->rng; /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

double sim_uniform(struct sim *s)
{
	return (double)(sim_rand(s) >> 11) / 9007199254740992.0;
}

uint32_t block_len(const struct sim *s, uint32_t b)
{
	uint64_t off = (uint64_t)b * s->cfg.block;
	return s->cfg.size - off < s->cfg.block ? (uint32_t)(s->cfg.size - off) : s->cfg.block;
}

int knows(const struct sim *s, const struct sim_node *n, uint32_t b)
{
	return s->known_batch[b] && s->known_batch[b] <= n->last_batch;
}

/* ---- block states ------------------------------------------------------------ */

void set_state(struct sim *s, struct sim_node *n, uint32_t b, enum blk_state to)
{
	enum blk_state from = n->st[b];
	if (from == to)
		return;
	if (from == B_NEED)
		index_del(n, b);
	if (from == B_ASKED)
		n->nasked--;
	n->st[b] = (uint8_t)to;
	if (to == B_NEED)
		index_add(n, s->words, b);
	if (to == B_ASKED)
		n->nasked++;
}

/* Not held, not asked, not read here: needed once its hash is known. */
void release(struct sim *s, struct sim_node *n, uint32_t b)
{
	set_state(s, n, b, knows(s, n, b) ? B_NEED : B_UNKNOWN);
}

void avail_add(struct sim *s, struct sim_node *n, uint32_t b, int delta)
{
	int need = n->st[b] == B_NEED;
	if (need)
		index_del(n, b);
	int v = n->avail[b] + delta;
	n->avail[b] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
	if (need)
		index_add(n, s->words, b);
}

void swarm_learn(struct sim *s, struct sim_node *n, uint32_t k)
{
	uint32_t from = n->last_batch;
	if (k <= from)
		return;
	n->last_batch = k;
	for (uint32_t i = s->batch_start[from]; i < s->batch_start[k]; i++) {
		uint32_t b = s->batch_blocks[i];
		if (n->st[b] == B_UNKNOWN)
			set_state(s, n, b, B_NEED);
	}
	fill_all(s, n);
}

/* ---- requests ------------------------------------------------------------------ */

struct pick_arg {
	const struct sim *s;
	const struct sim_node *n;
	const struct sim_conn *c;
};

int queued(const struct sim_conn *c, uint32_t b)
{
	for (uint32_t i = 0; i < c->qn; i++)
		if (c->q[(c->qh + i) % SIM_QUEUE_MAX] == b)
			return 1;
	return 0;
}

static int asked_here(const void *arg, uint32_t b)
{
	return queued(((const struct pick_arg *)arg)->c, b);
}

static int overdue(const void *arg, uint32_t b)
{
	const struct pick_arg *x = arg;
	uint64_t now = (uint64_t)(x->s->now * 1000.0);
	int found = 0;
	for (uint32_t i = 0; i < x->n->npeers; i++) {
		const struct sim_conn *o = &x->s->conns[x->n->peers[i]];
		for (uint32_t k = 0; k < o->qn; k++) {
			uint32_t j = (o->qh + k) % SIM_QUEUE_MAX;
			if (o->q[j] != b)
				continue;
			if (!pick_request_overdue(now, (uint64_t)(o->sent[j] * 1000.0),
						  block_len(x->s, b), o->qn, o->meas))
				return 0;
			found = 1;
		}
	}
	return found;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The agent's choice for connection c (data from c->src to n). The needed
 * blocks come from the index in the order the agent's scan would keep
 * them; the endgame sees the blocks asked elsewhere in scan order. */
static int choose(struct sim *s, struct sim_node *n, const struct sim_conn *c, uint32_t *out)
{
	const struct sim_node *peer = &s->nodes[c->src];
	struct pick_arg x = {s, n, c};
	struct pick p;
	uint32_t start = (uint32_t)(sim_rand(s) % s->nb), avail;
	pick_begin(&p);
	/* what the full scan would count as waiting or needed */
	p.waiting = s->nb - n->nhave - n->nasked;
	uint32_t b = index_rarest(n, s->words, peer->have, start, &avail);
	if (b != UINT32_MAX)
		pick_consider(&p, b, PICK_NEED, 1, avail, n->asks[b], asked_here, &x);
	else if (!p.waiting && n->nasked) {
		uint64_t *asked = xcalloc(n->nasked + 1, sizeof *asked);
		uint32_t na = 0;
		for (uint32_t i = 0; i < n->npeers && na < n->nasked; i++) {
			const struct sim_conn *o = &s->conns[n->peers[i]];
			for (uint32_t k = 0; k < o->qn && na < n->nasked; k++) {
				uint32_t q = o->q[(o->qh + k) % SIM_QUEUE_MAX];
				uint64_t key = (uint64_t)((q + s->nb - start) % s->nb) << 32 | q;
				if (n->st[q] == B_ASKED && bit(peer->have, q))
					asked[na++] = key;
			}
		}
		qsort(asked, na, sizeof *asked, cmp_u64);
		for (uint32_t i = 0; i < na; i++) {
			uint32_t q = (uint32_t)asked[i];
			if (i && asked[i] == asked[i - 1])
				continue;
			pick_consider(&p, q, PICK_ASKED, 1, n->avail[q], n->asks[q], asked_here,
				      &x);
		}
		free(asked);
	}
	return pick_end(&p, overdue, &x, out);
}

void start_soon(struct sim *s, uint32_t id)
{
	struct sim_conn *c = &s->conns[id];
	if (c->active || c->starting || !c->qn)
		return;
	c->starting = 1;
	heap_push(&s->heap, s->now + s->cfg.latency_s, EV_START, id, 0);
}

/* The receiver's rate of c as agent/peer.c measures it: every SIM_TICK_S,
 * 0.7 of the last value plus 0.3 of the bytes of the blocks that arrived
 * in the period. */
void meas_catch_up(struct sim *s, struct sim_conn *c)
{
	for (int k = 0; s->now >= c->tick + SIM_TICK_S; k++) {
		if (k == 64) { /* idle for long: the rate has decayed to nothing */
			c->meas = 0;
			c->tick = s->now;
			break;
		}
		c->meas = 0.7 * c->meas + 0.3 * c->window / SIM_TICK_S;
		c->window = 0;
		c->tick += SIM_TICK_S;
	}
}

/* Ask c's peer for blocks until the pipeline is as deep as its rate needs. */
void fill(struct sim *s, uint32_t id)
{
	struct sim_conn *c = &s->conns[id];
	struct sim_node *n = &s->nodes[c->dst];
	if (!c->open || !n->alive || n->done)
		return;
	meas_catch_up(s, c);
	size_t depth = pick_depth(c->meas, s->cfg.block);
	uint32_t b;
	while (c->qn < depth && choose(s, n, c, &b)) {
		uint32_t j = (c->qh + c->qn++) % SIM_QUEUE_MAX;
		c->q[j] = b;
		c->sent[j] = s->now;
		if (n->asks[b] < 255)
			n->asks[b]++;
		set_state(s, n, b, B_ASKED);
	}
	start_soon(s, id);
}

void fill_all(struct sim *s, struct sim_node *n)
{
	for (uint32_t i = 0; i < n->npeers; i++)
		fill(s, n->peers[i]);
}

/* ---- the origin ---------------------------------------------------------------- */

/* Queue n's next origin read: the first block of its share still to read. */
void origin_next(struct sim *s, struct sim_node *n)
{
	struct sim_conn *c = &s->conns[n->origin_conn];
	if (!n->alive || c->qn)
		return;
	while (n->share_at < n->nshare && n->st[n->share[n->share_at]] != B_ORIGIN)
		n->share_at++;
	if (n->share_at == n->nshare)
		return;
	c->q[c->qh] = n->share[n->share_at++];
	c->sent[c->qh] = s->now;
	c->qn = 1;
	start_soon(s, n->origin_conn);
}

void swarm_set_share(struct sim *s, struct sim_node *n, const struct assign_plan *p)
{
	const struct sim_conn *c = &s->conns[n->origin_conn];
	uint32_t reading = c->qn ? c->q[c->qh] : UINT32_MAX;
	for (uint32_t i = 0; i < n->nshare; i++)
		if (n->st[n->share[i]] == B_ORIGIN && n->share[i] != reading)
			release(s, n, n->share[i]);
	n->nshare = n->share_at = 0;
	n->share = xrealloc(n->share, ((p ? p->nblocks : 0) + 1) * sizeof *n->share);
	for (size_t r = 0; p && r < p->nranges; r++)
		for (uint32_t k = 0; k < p->ranges[r].count; k++) {
			uint32_t b = p->ranges[r].first + k;
			n->share[n->nshare++] = b;
			if (n->st[b] == B_UNKNOWN || n->st[b] == B_NEED)
				set_state(s, n, b, B_ORIGIN);
		}
	origin_next(s, n);
}

/* ---- connections --------------------------------------------------------------- */

uint32_t conn_new(struct sim *s, uint32_t src, uint32_t dst)
{
	if (s->nconns == s->capconns) {
		s->capconns = s->capconns ? s->capconns * 2 : 1024;
		s->conns = xrealloc(s->conns, s->capconns * sizeof *s->conns);
	}
	struct sim_conn *c = &s->conns[s->nconns];
	memset(c, 0, sizeof *c);
	c->src = src;
	c->dst = dst;
	c->open = 1;
	c->tick = s->now;
	return s->nconns++;
}

static void ids_add(uint32_t **v, uint32_t *n, uint32_t id)
{
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = id;
}

static void ids_del(uint32_t *v, uint32_t *n, uint32_t id)
{
	for (uint32_t i = 0; i < *n; i++)
		if (v[i] == id) {
			v[i] = v[--*n];
			return;
		}
}

/* Every block src holds counts once more (or less) at dst. */
static void bitfield(struct sim *s, const struct sim_node *src, struct sim_node *dst, int delta)
{
	for (size_t w = 0; w < s->words; w++)
		for (uint64_t x = src->have[w]; x; x &= x - 1)
			avail_add(s, dst, (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x)), delta);
}

static void conn_open(struct sim *s, uint32_t a, uint32_t b)
{
	uint32_t ab = conn_new(s, a, b), ba = conn_new(s, b, a);
	ids_add(&s->nodes[b].peers, &s->nodes[b].npeers, ab);
	ids_add(&s->nodes[a].out, &s->nodes[a].nout, ab);
	ids_add(&s->nodes[a].peers, &s->nodes[a].npeers, ba);
	ids_add(&s->nodes[b].out, &s->nodes[b].nout, ba);
	bitfield(s, &s->nodes[a], &s->nodes[b], 1);
	bitfield(s, &s->nodes[b], &s->nodes[a], 1);
	fill(s, ab);
	fill(s, ba);
}

/* Data from c->src to c->dst stops: what was asked on it is needed again. */
void conn_close(struct sim *s, uint32_t id)
{
	struct sim_conn *c = &s->conns[id];
	struct sim_node *d = &s->nodes[c->dst];
	if (c->active && c->src == SIM_ORIGIN)
		s->origin_bytes += (uint64_t)(block_len(s, c->q[c->qh]) - net_left(s, c));
	net_stop(s, id);
	c->open = 0;
	if (c->src == SIM_ORIGIN) {
		if (c->qn && d->st[c->q[c->qh]] == B_ORIGIN)
			release(s, d, c->q[c->qh]);
		c->qn = 0;
		return;
	}
	struct sim_node *src = &s->nodes[c->src];
	ids_del(d->peers, &d->npeers, id);
	ids_del(src->out, &src->nout, id);
	bitfield(s, src, d, -1);
	for (uint32_t k = 0; k < c->qn; k++) {
		uint32_t b = c->q[(c->qh + k) % SIM_QUEUE_MAX];
		if (d->asks[b])
			d->asks[b]--;
		if (!d->asks[b] && d->st[b] == B_ASKED)
			release(s, d, b);
	}
	c->qn = 0;
}

static int has_peer(const struct sim *s, const struct sim_node *n, uint32_t other)
{
	for (uint32_t i = 0; i < n->npeers; i++)
		if (s->conns[n->peers[i]].src == other)
			return 1;
	return 0;
}

void swarm_set_peers(struct sim *s)
{
	size_t nm;
	struct cluster_node **m = cluster_members(&s->cluster, s->cv, &nm);
	uint32_t *of = xcalloc(nm + 1, sizeof *of); /* member index -> node */
	uint8_t *want = xcalloc(s->nnodes, 1);
	for (size_t i = 0; i < nm; i++)
		of[i] = (uint32_t)(strtoul(m[i]->name + 1, NULL, 10));
	for (size_t i = 0; i < nm; i++) {
		struct sim_node *n = &s->nodes[of[i]];
		const uint32_t *adj;
		size_t np = overlay_peers(&s->ov, i, &adj);
		memset(want, 0, s->nnodes);
		for (size_t k = 0; k < np; k++)
			want[of[adj ? adj[k] : (k < i ? k : k + 1)]] = 1;
		for (uint32_t k = 0; k < n->npeers;) { /* edges that went */
			uint32_t id = n->peers[k], other = s->conns[id].src;
			if (want[other]) {
				k++;
				continue;
			}
			uint32_t back = UINT32_MAX;
			for (uint32_t j = 0; j < n->nout; j++)
				if (s->conns[n->out[j]].dst == other)
					back = n->out[j];
			conn_close(s, id);
			if (back != UINT32_MAX)
				conn_close(s, back);
			fill_all(s, n);
			fill_all(s, &s->nodes[other]);
		}
	}
	for (size_t i = 0; i < nm; i++) { /* edges that came */
		struct sim_node *n = &s->nodes[of[i]];
		const uint32_t *adj;
		size_t np = overlay_peers(&s->ov, i, &adj);
		for (size_t k = 0; k < np; k++) {
			uint32_t o = of[adj ? adj[k] : (k < i ? k : k + 1)];
			if (!has_peer(s, n, o))
				conn_open(s, of[i], o);
		}
	}
	free(want);
	free(of);
	free(m);
}
