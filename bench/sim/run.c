/* The events of the model: transfers ending, requests reaching senders,
 * hashes batches, plans, joins, deaths, heartbeats, the agents' peer timer,
 * and the run from setup to the last node done. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sim/index.h"
#include "bench/sim/sim.h"
#include "bench/sim/swarm.h"
#include "common/buf.h"

void sim_config_default(struct sim_config *c)
{
	memset(c, 0, sizeof *c);
	c->nodes = 1000;
	c->size = 1ull << 40;
	c->block = 64u << 20;
	c->link_lo = 10e9;
	c->link_hi = 100e9;
	c->origin = 100e9;
	c->efficiency = 0.95;
	c->rack_size = 40;
	c->oversub = 3;
	c->late = 50;
	c->late_until = 0.5;
	c->die = 20;
	c->die_from = 0.1;
	c->die_until = 0.9;
	c->heartbeat_s = 1.0;
	c->latency_s = 0.0001;
	c->seed = 1;
}

/* ---- setup ------------------------------------------------------------------- */

/* A node link from the usual Ethernet speeds within lo..hi (either bound
 * when none is). */
static double pick_link(struct sim *s)
{
	static const double steps[] = {1e9, 10e9, 25e9, 40e9, 50e9, 100e9, 200e9, 400e9};
	double in[sizeof steps / sizeof *steps];
	size_t n = 0;
	for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
		if (steps[i] >= s->cfg.link_lo && steps[i] <= s->cfg.link_hi)
			in[n++] = steps[i];
	if (!n)
		return sim_uniform(s) < 0.5 ? s->cfg.link_lo : s->cfg.link_hi;
	return in[sim_rand(s) % n];
}

static void node_alloc(struct sim *s, struct sim_node *n, uint32_t i)
{
	snprintf(n->name, sizeof n->name, "n%05u", i);
	n->st = xcalloc(s->nb, 1);
	n->avail = xcalloc(s->nb, 1);
	n->asks = xcalloc(s->nb, 1);
	n->have = xcalloc(s->words, sizeof *n->have);
	n->link = pick_link(s);
	n->up = net_link_add(s, n->link);
	n->down = net_link_add(s, n->link);
	n->rack = s->cfg.rack_size ? i / s->cfg.rack_size : 0;
	n->origin_conn = conn_new(s, SIM_ORIGIN, i);
	n->done_at = -1;
}

/* k distinct node indices not marked in taken (marked now), at random. */
static void pick_nodes(struct sim *s, uint8_t *taken, uint32_t k, uint32_t *out)
{
	uint32_t free_n = 0;
	for (uint32_t i = 0; i < s->nnodes; i++)
		free_n += !taken[i];
	for (uint32_t j = 0; j < k && free_n; j++, free_n--) {
		uint32_t r = (uint32_t)(sim_rand(s) % free_n), i = 0;
		for (;; i++)
			if (!taken[i] && r-- == 0)
				break;
		taken[i] = 1;
		out[j] = i;
	}
}

int swarm_init(struct sim *s)
{
	const struct sim_config *c = &s->cfg;
	if (!c->nodes || !c->size || !c->block || c->late + c->die > c->nodes ||
	    c->late >= c->nodes || c->efficiency <= 0 || c->efficiency > 1 || c->origin <= 0 ||
	    c->link_lo <= 0 || c->link_hi < c->link_lo) {
		fprintf(stderr, "sim: bad configuration\n");
		return -1;
	}
	s->rng = c->seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
	if (!s->rng)
		s->rng = 1;
	s->nb = (uint32_t)((c->size + c->block - 1) / c->block);
	s->words = (s->nb + 63) / 64;
	s->rack_in = s->rack_out = s->cpu_link = UINT32_MAX;
	s->origin_up = net_link_add(s, c->origin);
	s->nnodes = c->nodes;
	s->nodes = xcalloc(s->nnodes, sizeof *s->nodes);
	double slowest = c->origin, rack0 = 0;
	for (uint32_t i = 0; i < s->nnodes; i++) {
		node_alloc(s, &s->nodes[i], i);
		if (s->nodes[i].link < slowest)
			slowest = s->nodes[i].link;
		if (s->nodes[i].rack == 0)
			rack0 += s->nodes[i].link;
	}
	if (c->rack_size && c->rack_size < c->nodes && c->oversub > 0) {
		s->rack_out = net_link_add(s, rack0 / c->oversub);
		s->rack_in = net_link_add(s, rack0 / c->oversub);
	}
	if (c->cpu > 0)
		s->cpu_link = net_link_add(s, c->cpu * 8.0 / c->efficiency);
	s->floor_s = (double)c->size * 8.0 / slowest;
	if (plan_open(s) < 0)
		return -1;
	uint8_t *taken = xcalloc(s->nnodes, 1);
	uint32_t *late = xcalloc(c->late + 1, sizeof *late),
		 *die = xcalloc(c->die + 1, sizeof *die);
	pick_nodes(s, taken, c->late, late);
	pick_nodes(s, taken, c->die, die);
	for (uint32_t i = 0; i < c->late; i++) {
		s->nodes[late[i]].join_at = sim_uniform(s) * c->late_until * s->floor_s;
		heap_push(&s->heap, s->nodes[late[i]].join_at, EV_JOIN, late[i], 0);
		s->pending_joins++;
	}
	for (uint32_t i = 0; i < c->die; i++) {
		double f = c->die_from + sim_uniform(s) * (c->die_until - c->die_from);
		s->nodes[die[i]].die_at = f * s->floor_s;
		heap_push(&s->heap, s->nodes[die[i]].die_at, EV_DIE, die[i], 0);
	}
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct sim_node *n = &s->nodes[i];
		if (n->join_at > 0)
			continue;
		n->alive = n->joined = 1;
		s->alive++;
		plan_node_up(s, n);
		heap_push(&s->heap, c->heartbeat_s * sim_uniform(s), EV_BEAT, i, 0);
		heap_push(&s->heap, SIM_TICK_S * sim_uniform(s), EV_TICK, i, 0);
	}
	/* `syncbit dataset add` with the nodes connected: the first plan */
	s->plan_due = 1;
	heap_push(&s->heap, 0, EV_PLAN, 0, 0);
	free(taken);
	free(late);
	free(die);
	return 0;
}

void swarm_free(struct sim *s)
{
	plan_close(s);
	for (uint32_t i = 0; i < s->nnodes; i++) {
		struct sim_node *n = &s->nodes[i];
		free(n->st);
		free(n->avail);
		free(n->asks);
		free(n->have);
		free(n->peers);
		free(n->out);
		free(n->share);
		index_free(n);
	}
	for (uint32_t i = 0; i < s->nlinks; i++)
		free(s->links[i].flows);
	for (size_t i = 0; i < s->ngone; i++)
		free(s->gone[i]);
	free(s->gone);
	free(s->links);
	free(s->nodes);
	free(s->conns);
	free(s->heap.e);
}

/* ---- blocks arriving ------------------------------------------------------------- */

/* Requests for b at n's other peers are canceled (agent/peer.c); one
 * already on the wire arrives anyway. */
static void cancel_elsewhere(struct sim *s, struct sim_node *n, uint32_t b)
{
	for (uint32_t i = 0; i < n->npeers; i++) {
		struct sim_conn *c = &s->conns[n->peers[i]];
		uint32_t kept = 0;
		for (uint32_t k = 0; k < c->qn; k++) {
			uint32_t j = (c->qh + k) % SIM_QUEUE_MAX;
			if (c->q[j] == b && !(k == 0 && c->active)) {
				if (n->asks[b])
					n->asks[b]--;
				continue;
			}
			uint32_t to = (c->qh + kept++) % SIM_QUEUE_MAX;
			c->q[to] = c->q[j];
			c->sent[to] = c->sent[j];
		}
		c->qn = kept;
	}
}

static void plan_soon(struct sim *s)
{
	if (!s->plan_due) {
		s->plan_due = 1;
		heap_push(&s->heap, s->now + SIM_PLAN_S, EV_PLAN, 0, 0);
	}
}

static void got_block(struct sim *s, struct sim_node *n, uint32_t b, int from_origin)
{
	set_state(s, n, b, B_HAVE);
	n->have[b / 64] |= 1ull << (b % 64);
	n->nhave++;
	cancel_elsewhere(s, n, b);
	for (uint32_t i = 0; i < n->nout; i++) { /* Have */
		const struct sim_conn *c = &s->conns[n->out[i]];
		avail_add(s, &s->nodes[c->dst], b, 1);
		fill(s, n->out[i]);
	}
	if (from_origin)
		plan_ingested(s, n, b);
	if (n->nhave == s->nb && !n->done) {
		n->done = 1;
		n->done_at = s->now;
		s->finished++;
	}
}

static void flow_end(struct sim *s, uint32_t id)
{
	struct sim_conn *c = &s->conns[id];
	uint32_t b = c->q[c->qh], len = block_len(s, b);
	struct sim_node *n = &s->nodes[c->dst];
	c->qh = (c->qh + 1) % SIM_QUEUE_MAX;
	c->qn--;
	if (c->src == SIM_ORIGIN) {
		s->origin_bytes += len;
		n->from_origin += len;
		s->origin_done = s->now;
		got_block(s, n, b, 1);
		if (!c->qn)
			origin_next(s, n);
	} else {
		s->peer_bytes += len;
		meas_catch_up(s, c);
		c->window += len;
		if (n->asks[b])
			n->asks[b]--;
		if (n->st[b] != B_HAVE) {
			n->from_peers += len;
			got_block(s, n, b, 0);
		} else {
			s->dup_bytes += len;
		}
	}
	/* the sender goes on with the next block asked, without a gap */
	if (c->qn && c->open)
		net_start(s, id);
	else
		net_stop(s, id);
	if (c->src != SIM_ORIGIN)
		fill(s, id);
}

/* ---- joins and deaths -------------------------------------------------------------- */

static void join(struct sim *s, struct sim_node *n, uint32_t i)
{
	s->pending_joins--;
	if (n->die_at > 0 && n->die_at <= s->now)
		return;
	n->alive = n->joined = 1;
	s->alive++;
	plan_node_up(s, n);
	heap_push(&s->heap, s->now + s->cfg.heartbeat_s, EV_BEAT, i, 0);
	heap_push(&s->heap, s->now + SIM_TICK_S, EV_TICK, i, 0);
	plan_soon(s);
}

/* The agent's process ends: its connections close at once (the peers and
 * the scheduler see them reset). */
static void die(struct sim *s, struct sim_node *n)
{
	if (!n->alive)
		return;
	n->alive = 0;
	s->alive--;
	s->finished -= (uint32_t)n->done;
	s->died++;
	conn_close(s, n->origin_conn);
	while (n->npeers)
		conn_close(s, n->peers[0]);
	while (n->nout) {
		uint32_t id = n->out[0], dst = s->conns[id].dst;
		conn_close(s, id);
		fill_all(s, &s->nodes[dst]);
	}
	plan_node_down(s, n);
	s->gone = xrealloc(s->gone, (s->ngone + 1) * sizeof *s->gone);
	s->gone[s->ngone++] = xstrdup(n->name);
	plan_soon(s);
}

/* ---- the run ------------------------------------------------------------------------ */

static int all_done(const struct sim *s)
{
	return !s->pending_joins && s->finished == s->alive;
}

/* Payload the origin has sent, the blocks on their way included. */
static double origin_moved(const struct sim *s)
{
	double b = (double)s->origin_bytes;
	for (uint32_t i = 0; i < s->nnodes; i++) {
		const struct sim_conn *c = &s->conns[s->nodes[i].origin_conn];
		if (c->active && c->qn)
			b += block_len(s, c->q[c->qh]) - net_left(s, c);
	}
	return b;
}

static void sample(struct sim *s, FILE *out, double period)
{
	double have = 0, lo = 1, moved = origin_moved(s);
	uint32_t alive = 0, done = 0;
	for (uint32_t i = 0; i < s->nnodes; i++) {
		const struct sim_node *n = &s->nodes[i];
		if (!n->alive)
			continue;
		double h = (double)n->nhave / s->nb;
		alive++;
		done += n->done;
		have += h;
		lo = h < lo ? h : lo;
	}
	double origin = (moved - s->sample_origin) / period / s->links[s->origin_up].cap;
	fprintf(out,
		"%7.3f  %6.1f s  origin %3.0f %%  done %5u/%-5u  have min %5.1f %% mean %5.1f %%\n",
		s->now / s->floor_s, s->now, 100.0 * origin, done, alive, 100.0 * lo,
		alive ? 100.0 * have / alive : 0.0);
	s->sample_origin = moved;
}

static void handle(struct sim *s, const struct sim_event *ev, FILE *out, double period)
{
	struct sim_node *n =
	    ev->kind == EV_JOIN || ev->kind == EV_DIE || ev->kind == EV_BEAT || ev->kind == EV_TICK
		? &s->nodes[ev->a]
		: NULL;
	switch ((enum sim_event_kind)ev->kind) {
	case EV_FLOW:
		if (s->conns[ev->a].active && s->conns[ev->a].gen == ev->b)
			flow_end(s, ev->a);
		break;
	case EV_START: {
		struct sim_conn *c = &s->conns[ev->a];
		c->starting = 0;
		if (c->open && c->qn && !c->active)
			net_start(s, ev->a);
		break;
	}
	case EV_HASHES:
		s->hashes_timer = s->nfresh > 0;
		plan_send_hashes(s);
		if (s->hashes_timer)
			heap_push(&s->heap, s->now + SIM_HASHES_S, EV_HASHES, 0, 0);
		break;
	case EV_DELIVER:
		for (uint32_t i = 0; i < s->nnodes; i++)
			if (s->nodes[i].alive && s->nodes[i].cn && s->nodes[i].cn->conn)
				swarm_learn(s, &s->nodes[i], ev->a);
		break;
	case EV_PLAN:
		s->plan_due = 0;
		plan_again(s, s->gone, s->ngone);
		for (size_t i = 0; i < s->ngone; i++)
			free(s->gone[i]);
		s->ngone = 0;
		break;
	case EV_JOIN:
		join(s, n, ev->a);
		break;
	case EV_DIE:
		die(s, n);
		break;
	case EV_BEAT:
		if (n->alive) {
			plan_heartbeat(s, n);
			heap_push(&s->heap, s->now + s->cfg.heartbeat_s, EV_BEAT, ev->a, 0);
		}
		break;
	case EV_TICK:
		if (n->alive && !n->done) {
			fill_all(s, n);
			heap_push(&s->heap, s->now + SIM_TICK_S, EV_TICK, ev->a, 0);
		}
		break;
	case EV_SAMPLE:
		sample(s, out, period);
		heap_push(&s->heap, s->now + period, EV_SAMPLE, 0, 0);
		break;
	}
}

static void result(const struct sim *s, struct sim_result *r)
{
	memset(r, 0, sizeof *r);
	r->floor_s = s->floor_s;
	r->first_s = -1;
	r->complete = 1;
	r->digest = 1469598103934665603ull;
	for (uint32_t i = 0; i < s->nnodes; i++) {
		const struct sim_node *n = &s->nodes[i];
		uint64_t t = (uint64_t)llround(n->done_at * 1e6);
		r->digest = (r->digest ^ t) * 1099511628211ull;
		r->late += n->join_at > 0;
		if (!n->alive)
			continue;
		r->alive++;
		uint32_t held = 0;
		for (size_t w = 0; w < s->words; w++)
			held += (uint32_t)__builtin_popcountll(n->have[w]);
		if (!n->done || held != s->nb || n->nhave != s->nb) {
			r->complete = 0;
			continue;
		}
		r->finished++;
		double own = (n->done_at - n->join_at) / ((double)s->cfg.size * 8.0 / n->link);
		r->own_mean += own;
		if (own > r->own_max) {
			r->own_max = own;
			r->own_max_node = i;
		}
		if (n->join_at <= 0 && (s->rack_in == UINT32_MAX || n->rack != 0) &&
		    own > r->own_max_plain)
			r->own_max_plain = own;
		if (r->first_s < 0 || n->done_at < r->first_s)
			r->first_s = n->done_at;
		if (n->done_at > r->last_s)
			r->last_s = n->done_at;
	}
	if (r->finished)
		r->own_mean /= r->finished;
	r->nodes = s->nnodes;
	r->died = s->died;
	r->origin_done_s = s->origin_done;
	r->origin_bytes = s->origin_bytes;
	r->peer_bytes = s->peer_bytes;
	r->dup_bytes = s->dup_bytes;
	r->events = s->events;
	r->replans = s->replans;
	r->orphans = s->orphans;
	r->moved = s->moved;
	r->refused = s->refused;
	r->digest ^= s->origin_bytes * 31 + s->peer_bytes;
}

int sim_run(const struct sim_config *cfg, struct sim_result *r, FILE *out)
{
	struct sim *s = xcalloc(1, sizeof *s);
	s->cfg = *cfg;
	int rc = swarm_init(s);
	double period = s->floor_s * 0.05, limit = s->floor_s * 50;
	if (rc == 0 && out && cfg->timeline)
		heap_push(&s->heap, period, EV_SAMPLE, 0, 0);
	struct sim_event ev;
	while (rc == 0 && !all_done(s) && heap_pop(&s->heap, &ev)) {
		if (ev.t > limit) {
			fprintf(stderr, "sim: not done after %.0f x S/B\n", limit / s->floor_s);
			break;
		}
		s->now = ev.t;
		s->events++;
		handle(s, &ev, out, period);
	}
	if (rc == 0) {
		if (out && cfg->timeline)
			sample(s, out,
			       s->now - (double)(uint64_t)(s->now / period) * period + 1e-9);
		result(s, r);
	}
	swarm_free(s);
	free(s);
	return rc;
}
