/* Assignments paced by what the connections drain.
 *
 * An Assign carries its dataset's whole manifest (tens of KiB for a
 * thousand blocks), so a node that joins a cluster of a hundred datasets is
 * owed megabytes, and a burst of joins (a scheduler restart: every node at
 * once) would queue all of it in this process before the first byte went
 * out. Instead the bytes of Assigns handed to connections and not yet taken
 * by their sockets are counted, per node and in all (the budget,
 * --assign-queue); a node that would go over waits in a queue, first in
 * first out, and gets the rest as written bytes make room. A node may have
 * a 1/SERVER_ASSIGN_FANOUT share of the budget (at most
 * SERVER_ASSIGN_NODE_MAX) queued at a time, so many nodes are served at
 * once and a socket that takes a message starts the next one. A node whose
 * queue has not moved for SERVER_ASSIGN_STALL_MS (alive, but not reading)
 * no longer counts against the budget, so stuck readers cannot starve the
 * others; its own queue stays within its share and one message, and all
 * such nodes hold at most another budget together. (A node
 * that reads nothing for 2 heartbeats and a slack is dropped by the
 * control connection's TCP_USER_TIMEOUT: Linux applies it to a shut
 * window.) Loop thread only. */
#include "scheduler/server.h"
#include "scheduler/server_int.h"

#include <stdlib.h>

#include "common/err.h"
#include "common/log.h"
#include "common/net/wire.h"

/* One Assign on its way: what its write gives back. */
struct paced {
	struct sched_client *cl;
	size_t bytes;
};

static uint64_t budget(const struct sched *s)
{
	return s->o->assign_queue_max ? s->o->assign_queue_max : SERVER_ASSIGN_QUEUE_DEFAULT;
}

/* One node's share: nodes that stop reading at once hold at most
 * 1/SERVER_ASSIGN_FANOUT of the budget each until they are taken as
 * stalled. */
static uint64_t node_max(const struct sched *s)
{
	uint64_t m = budget(s) / SERVER_ASSIGN_FANOUT;
	return m < SERVER_ASSIGN_NODE_MAX ? m : SERVER_ASSIGN_NODE_MAX;
}

int server_pace_room(const struct sched *s, const struct sched_client *cl)
{
	return cl->assign_queued < node_max(s) && s->assign_queued < budget(s);
}

static void pace_due(uv_timer_t *t);

/* Run the queue after at least SERVER_PACE_MS since the last run (one run
 * serves as many nodes as the budget has room for), or after delay_ms. */
static void pace_arm(struct sched *s, uint64_t delay_ms)
{
	if (s->stopping || !s->pace_head)
		return;
	uint64_t now = uv_now(&s->loop);
	uint64_t at = s->pace_ran + SERVER_PACE_MS;
	uint64_t soon = at > now ? at - now : 0;
	if (delay_ms < soon)
		delay_ms = soon;
	if (uv_is_active((uv_handle_t *)&s->pace) && uv_timer_get_due_in(&s->pace) <= delay_ms)
		return;
	uv_timer_start(&s->pace, pace_due, delay_ms, 0);
}

static void paced_done(void *arg, int status)
{
	struct paced *p = arg;
	struct sched_client *cl = p->cl;
	struct sched *s = cl->s;
	(void)status;
	cl->assign_queued -= p->bytes;
	if (!cl->assign_stalled) {
		s->assign_queued -= p->bytes;
	} else {
		s->assign_stalled_bytes -= p->bytes;
		if (cl->assign_queued == 0) {
			cl->assign_stalled = 0;
			s->assign_stalled--;
		}
	}
	cl->assign_moved = uv_now(&s->loop);
	free(p);
	pace_arm(s, 0);
	server_client_release(cl);
}

int server_pace_send(struct sched *s, struct sched_client *cl, uint32_t type,
		     const ProtobufCMessage *m, size_t bytes)
{
	if (!cl->conn)
		return SB_ECANCELED;
	struct paced *p = xmalloc(sizeof *p);
	p->cl = cl;
	p->bytes = bytes;
	server_client_hold(cl);
	int rc = wire_send(cl->conn, type, m, NULL, 0, paced_done, p);
	if (rc < 0) {
		free(p);
		server_client_release(cl);
		return rc;
	}
	if (cl->assign_queued == 0)
		cl->assign_moved = uv_now(&s->loop);
	cl->assign_queued += bytes;
	if (cl->assign_stalled) {
		s->assign_stalled_bytes += bytes;
		return 0;
	}
	s->assign_queued += bytes;
	if (s->assign_queued > s->assign_queued_peak)
		s->assign_queued_peak = s->assign_queued;
	return 0;
}

void server_pace_wait(struct sched *s, struct sched_client *cl)
{
	if (cl->pace_waiting)
		return;
	cl->pace_waiting = 1;
	cl->pace_next = NULL;
	s->assign_waits++;
	server_client_hold(cl);
	*s->pace_tail = cl;
	s->pace_tail = &cl->pace_next;
	s->pace_nwaiting++;
	/* Drained bytes run the queue; the timer also catches nodes that
	 * stopped reading, whose bytes then leave the budget. */
	pace_arm(s, SERVER_ASSIGN_STALL_MS / 2);
}

/* Nodes whose Assigns have not moved for SERVER_ASSIGN_STALL_MS leave the
 * budget (their own share still holds), as long as all they hold together
 * stays within another budget: at worst twice the budget is queued. */
static void mark_stalled(struct sched *s, uint64_t now)
{
	for (struct sched_client *cl = s->clients; cl; cl = cl->next) {
		if (!cl->assign_queued || cl->assign_stalled ||
		    now - cl->assign_moved < SERVER_ASSIGN_STALL_MS ||
		    s->assign_stalled_bytes + cl->assign_queued > budget(s))
			continue;
		cl->assign_stalled = 1;
		s->assign_stalled++;
		s->assign_queued -= cl->assign_queued;
		s->assign_stalled_bytes += cl->assign_queued;
		log_with(LOG_INFO, LOG_KV({"node", cl->node ? cl->node->name : "?"}),
			 "node %s: %zu bytes of assignments not taken for %u ms; it waits apart "
			 "and the others go on",
			 cl->node ? cl->node->name : "?", cl->assign_queued,
			 SERVER_ASSIGN_STALL_MS);
	}
}

static void pace_due(uv_timer_t *t)
{
	struct sched *s = t->data;
	uint64_t now = uv_now(&s->loop);
	if (s->stopping)
		return;
	if (now - s->pace_scanned >= SERVER_ASSIGN_STALL_MS / 4) {
		s->pace_scanned = now;
		mark_stalled(s, now);
	}
	s->pace_ran = now;
	/* One pass over the nodes queued now (left of them): a node served
	 * goes out of the queue, and back to its tail, behind them, when it is
	 * owed more than there was room for. */
	size_t left = s->pace_nwaiting;
	struct sched_client **pp = &s->pace_head;
	int opened = 0;
	while (*pp && left-- > 0 && s->assign_queued < budget(s)) {
		struct sched_client *cl = *pp;
		if (cl->conn && cl->node && !server_pace_room(s, cl)) {
			pp = &cl->pace_next; /* its own queue is full: its turn stays */
			continue;
		}
		*pp = cl->pace_next;
		if (!*pp)
			s->pace_tail = pp;
		cl->pace_next = NULL;
		cl->pace_waiting = 0;
		s->pace_nwaiting--;
		if (cl->conn && cl->node) {
			if (!opened)
				server_reconcile_open_pass(s);
			opened = 1;
			server_reconcile_node(s, cl); /* owed more: back at the tail */
		}
		server_client_release(cl);
	}
	if (s->pace_head)
		pace_arm(s, SERVER_ASSIGN_STALL_MS / 2);
}

void server_pace_stop(struct sched *s)
{
	while (s->pace_head) {
		struct sched_client *cl = s->pace_head;
		s->pace_head = cl->pace_next;
		cl->pace_waiting = 0;
		server_client_release(cl);
	}
	s->pace_tail = &s->pace_head;
	s->pace_nwaiting = 0;
}
