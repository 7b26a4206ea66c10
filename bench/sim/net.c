/* The event heap, and links shared equally among the transfers crossing
 * them: a transfer moves at the smallest share of its links, recomputed
 * whenever a transfer starts or stops on one of them. */
#include <stdlib.h>

#include "bench/sim/sim.h"
#include "common/buf.h"

/* ---- the heap -------------------------------------------------------------- */

static int before(const struct sim_event *x, const struct sim_event *y)
{
	return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

void heap_push(struct sim_heap *h, double t, uint32_t kind, uint32_t a, uint32_t b)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 1024;
		h->e = xrealloc(h->e, h->cap * sizeof *h->e);
	}
	struct sim_event ev = {t, h->seq++, kind, a, b};
	size_t i = h->n++;
	while (i && before(&ev, &h->e[(i - 1) / 2])) {
		h->e[i] = h->e[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->e[i] = ev;
}

int heap_pop(struct sim_heap *h, struct sim_event *out)
{
	if (!h->n)
		return 0;
	*out = h->e[0];
	struct sim_event last = h->e[--h->n];
	size_t i = 0;
	for (;;) {
		size_t k = 2 * i + 1;
		if (k >= h->n)
			break;
		if (k + 1 < h->n && before(&h->e[k + 1], &h->e[k]))
			k++;
		if (!before(&h->e[k], &last))
			break;
		h->e[i] = h->e[k];
		i = k;
	}
	if (h->n)
		h->e[i] = last;
	return 1;
}

/* ---- links ----------------------------------------------------------------- */

uint32_t net_link_add(struct sim *s, double bits)
{
	s->links = xrealloc(s->links, (s->nlinks + 1) * sizeof *s->links);
	struct sim_link *l = &s->links[s->nlinks];
	l->cap = bits / 8.0 * s->cfg.efficiency;
	l->flows = NULL;
	l->nflows = l->capflows = 0;
	return s->nlinks++;
}

double net_left(const struct sim *s, const struct sim_conn *c)
{
	double left = c->left - c->rate * (s->now - c->since);
	return left > 0 ? left : 0;
}

/* Give c the rate its links allow now; when it changed, its end moves. */
static void rerate(struct sim *s, uint32_t id)
{
	struct sim_conn *c = &s->conns[id];
	double r = 0;
	for (uint32_t i = 0; i < c->nlinks; i++) {
		const struct sim_link *l = &s->links[c->links[i]];
		double share = l->cap / l->nflows;
		if (i == 0 || share < r)
			r = share;
	}
	if (r == c->rate)
		return;
	c->left = net_left(s, c);
	c->since = s->now;
	c->rate = r;
	c->gen++;
	heap_push(&s->heap, s->now + c->left / r, EV_FLOW, id, c->gen);
}

static void rerate_links(struct sim *s, const uint32_t *links, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct sim_link *l = &s->links[links[i]];
		for (uint32_t k = 0; k < l->nflows; k++)
			rerate(s, l->flows[k]);
	}
}

/* The links from src to dst: its uplink (or the origin's), rack 0's uplink
 * when the transfer enters or leaves rack 0 and that uplink is modelled,
 * the receiver's downlink, and the CPUs when they are modelled. */
static uint32_t route(const struct sim *s, const struct sim_conn *c, uint32_t *out)
{
	const struct sim_node *d = &s->nodes[c->dst];
	uint32_t n = 0;
	int src_in0, dst_in0 = s->rack_in != UINT32_MAX && d->rack == 0;
	if (c->src == SIM_ORIGIN) {
		out[n++] = s->origin_up;
		src_in0 = 0;
	} else {
		out[n++] = s->nodes[c->src].up;
		src_in0 = s->rack_in != UINT32_MAX && s->nodes[c->src].rack == 0;
	}
	if (src_in0 && !dst_in0)
		out[n++] = s->rack_out;
	if (dst_in0 && !src_in0)
		out[n++] = s->rack_in;
	out[n++] = d->down;
	if (s->cpu_link != UINT32_MAX)
		out[n++] = s->cpu_link;
	return n;
}

void net_start(struct sim *s, uint32_t id)
{
	struct sim_conn *c = &s->conns[id];
	uint32_t b = c->q[c->qh];
	uint64_t end = (uint64_t)(b + 1) * s->cfg.block;
	uint64_t len = end > s->cfg.size ? s->cfg.size - (uint64_t)b * s->cfg.block : s->cfg.block;
	c->left = (double)len;
	c->since = s->now;
	if (c->active) { /* the next block on the same links, at the same rate */
		c->gen++;
		heap_push(&s->heap, s->now + c->left / c->rate, EV_FLOW, id, c->gen);
		return;
	}
	c->active = 1;
	c->rate = -1;
	c->nlinks = route(s, c, c->links);
	for (uint32_t i = 0; i < c->nlinks; i++) {
		struct sim_link *l = &s->links[c->links[i]];
		if (l->nflows == l->capflows) {
			l->capflows = l->capflows ? l->capflows * 2 : 8;
			l->flows = xrealloc(l->flows, l->capflows * sizeof *l->flows);
		}
		c->slot[i] = l->nflows;
		l->flows[l->nflows++] = id;
	}
	rerate_links(s, c->links, c->nlinks);
}

void net_stop(struct sim *s, uint32_t id)
{
	struct sim_conn *c = &s->conns[id];
	if (!c->active)
		return;
	c->active = 0;
	c->gen++;
	c->rate = 0;
	for (uint32_t i = 0; i < c->nlinks; i++) {
		struct sim_link *l = &s->links[c->links[i]];
		uint32_t last = l->flows[--l->nflows];
		if (last != id) {
			l->flows[c->slot[i]] = last;
			struct sim_conn *o = &s->conns[last];
			for (uint32_t k = 0; k < o->nlinks; k++)
				if (o->links[k] == c->links[i])
					o->slot[k] = c->slot[i];
		}
	}
	rerate_links(s, c->links, c->nlinks);
}
