#include "scheduler/hold.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/net/wire.h"
#include "common/progress.h"
#include "scheduler/server.h"

void hold_clear(struct sched *s)
{
	for (size_t i = 0; i < s->nhold; i++)
		free(s->hold_nodes[i]);
	free(s->hold_nodes);
	s->hold_nodes = NULL;
	s->nhold = s->nhold_total = 0;
	s->plan_hold_until = s->plan_hold_since = 0;
}

static int held(const struct sched *s, const char *name)
{
	for (size_t i = 0; i < s->nhold; i++)
		if (!strcmp(s->hold_nodes[i], name))
			return 1;
	return 0;
}

void hold_start(struct sched *s)
{
	struct cluster *c = &s->cluster;
	int64_t newest = 0;
	int plans = 0;
	hold_clear(s);
	for (size_t i = 0; i < c->nnodes; i++)
		if (c->nodes[i]->last_seen_ms > newest)
			newest = c->nodes[i]->last_seen_ms;
	/* A node connected at the stop saved its last-seen time at most
	 * CLUSTER_SEEN_SAVE_MS and a heartbeat before it. */
	int64_t since =
	    newest - CLUSTER_SEEN_SAVE_MS - (int64_t)wire_silence_ms(s->o->heartbeat_ms);
	for (size_t i = 0; i < c->nversions; i++) {
		const struct cluster_version *cv = c->versions[i];
		if (!cv->nplans || cv->refs <= 0)
			continue;
		plans++;
		for (size_t k = 0; k < cv->nplans; k++) {
			const struct cluster_node *n = cluster_node_find(c, cv->plan_nodes[k]);
			if (!n || n->last_seen_ms < since || held(s, n->name))
				continue;
			s->hold_nodes =
			    xrealloc(s->hold_nodes, (s->nhold + 1) * sizeof *s->hold_nodes);
			s->hold_nodes[s->nhold++] = xstrdup(n->name);
		}
	}
	if (!s->nhold)
		return; /* nobody to wait for: the first plans are made as nodes come */
	uint64_t bound = HOLD_BEATS * (uint64_t)s->o->heartbeat_ms + HOLD_EXTRA_MS;
	s->nhold_total = s->nhold;
	s->plan_hold_since = uv_now(&s->loop);
	s->plan_hold_until = s->plan_hold_since + bound;
	log_info("origin plans of %d %s restored; they stand until the %zu %s that read them "
		 "%s back and %s reported (at most %llu ms)",
		 plans, progress_noun((uint64_t)plans, "version", "versions"), s->nhold,
		 progress_noun(s->nhold, "node", "nodes"), s->nhold == 1 ? "is" : "are",
		 s->nhold == 1 ? "has" : "have", (unsigned long long)bound);
}

static void hold_end(struct sched *s)
{
	hold_clear(s);
	server_reconcile_soon(s); /* the plans held since the start */
}

void hold_reported(struct sched *s, const char *name)
{
	for (size_t i = 0; i < s->nhold; i++) {
		if (strcmp(s->hold_nodes[i], name))
			continue;
		free(s->hold_nodes[i]);
		s->hold_nodes[i] = s->hold_nodes[--s->nhold];
		break;
	}
	if (s->nhold || !s->plan_hold_until)
		return;
	log_info("origin plans: all %zu %s that read them reported again %llu ms after the "
		 "start; planning again",
		 s->nhold_total, progress_noun(s->nhold_total, "node", "nodes"),
		 (unsigned long long)(uv_now(&s->loop) - s->plan_hold_since));
	hold_end(s);
}

void hold_tick(struct sched *s)
{
	if (!s->plan_hold_until || uv_now(&s->loop) < s->plan_hold_until)
		return;
	struct buf names = BUF_INIT;
	for (size_t i = 0; i < s->nhold; i++)
		buf_printf(&names, "%s%s", i ? ", " : "", s->hold_nodes[i]);
	log_with(LOG_WARN, LOG_KV({"nodes", buf_cstr(&names)}),
		 "origin plans: %zu of %zu %s that read them not back after %llu ms (%s); "
		 "planning without them",
		 s->nhold, s->nhold_total, progress_noun(s->nhold_total, "node", "nodes"),
		 (unsigned long long)(uv_now(&s->loop) - s->plan_hold_since), buf_cstr(&names));
	buf_close(&names);
	hold_end(s);
}
