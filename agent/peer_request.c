/* Requests to peers: which block to ask a peer for (the fetch's order,
 * agent/fetch_order.c; the endgame), and keeping each peer's pipeline as
 * deep as its rate needs. Loop thread only. */
#include "agent/peer_int.h"

#include <stdlib.h>

#include "common/log.h"
#include "common/net/wire.h"

static int requested_here(const struct peer *pe, const struct fetch *f, uint32_t b)
{
	for (size_t i = 0; i < pe->nreqs; i++)
		if (pe->reqs[i].f == f && pe->reqs[i].b == b)
			return 1;
	return 0;
}

/* 1 when every request for block b of f now in flight is overdue: older
 * than twice what its peer needs, at the rate it delivers, for everything
 * asked of it, and at least PEER_ENDGAME_AFTER_MS. A block on its way at a
 * peer's normal pace is not asked twice. */
static int overdue(const struct peers *p, const struct fetch *f, uint32_t b, uint64_t now)
{
	int found = 0;
	for (const struct peer *o = p->list; o; o = o->next)
		for (size_t i = 0; i < o->nreqs; i++) {
			if (o->reqs[i].f != f || o->reqs[i].b != b)
				continue;
			double rate = o->rate > 65536.0 ? o->rate : 65536.0;
			double need_ms =
			    2000.0 * (double)fetch_block_len(f, b) * (double)o->nreqs / rate;
			if ((double)(now - o->reqs[i].sent_ms) < PEER_ENDGAME_AFTER_MS + need_ms)
				return 0;
			found = 1;
		}
	return found;
}

/* The next block to ask this peer for, by the fetch's policy among the
 * needed blocks it has (agent/fetch_order.c), from a random start so that
 * nodes spread over different blocks where the policy leaves a choice. In
 * the endgame (every missing block known and in flight somewhere) a block
 * whose requests are overdue is asked here too: a stalled peer does not
 * hold up the end, and blocks on their way anyway are not fetched twice. */
int peer_pick(struct peer *pe, struct fetch **fo, uint32_t *bo)
{
	uint64_t now = uv_now(pe->p->loop);
	for (size_t i = 0; i < pe->nvers; i++) {
		struct pver *v = &pe->vers[i];
		struct fetch *f = v->f; /* one that failed (disk full) asks nothing */
		if (!f || fetch_complete(f) || fetch_error(f) || v->nblocks != fetch_nblocks(f) ||
		    !v->nblocks)
			continue;
		uint32_t n = v->nblocks, start = (uint32_t)random() % n, best;
		if (fetch_order_pick(f, v->bits, start, &best)) {
			*fo = f;
			*bo = best;
			return 1;
		}
		uint32_t waiting = 0, n_endgame = 0;
		uint32_t endgame[PEER_PIPELINE_MAX];
		for (uint32_t k = 0; k < n && !waiting; k++) {
			uint32_t b = (start + k) % n;
			enum fetch_block_state s = fetch_block_state(f, b);
			if (s == FETCH_UNKNOWN || s == FETCH_ORIGIN || s == FETCH_NEED)
				waiting++;
			else if (s == FETCH_PEER && peer_bit(v->bits, b) &&
				 n_endgame < PEER_PIPELINE_MAX &&
				 fetch_block_asks(f, b) < PEER_ENDGAME_ASKS &&
				 !requested_here(pe, f, b))
				endgame[n_endgame++] = b;
		}
		for (uint32_t k = 0; !waiting && k < n_endgame; k++) {
			if (overdue(pe->p, f, endgame[k], now)) {
				*fo = f;
				*bo = endgame[k];
				return 1;
			}
		}
	}
	return 0;
}

void peer_fill(struct peer *pe)
{
	struct fetch *f;
	uint32_t b;
	if (!pe->ready || pe->closed)
		return;
	double extra =
	    pe->rate * PEER_PIPELINE_SECONDS / (pe->block_len ? pe->block_len : BLOCK_SIZE_DEFAULT);
	size_t depth = PEER_PIPELINE_MIN + (size_t)(extra + 0.999);
	if (depth > PEER_PIPELINE_MAX)
		depth = PEER_PIPELINE_MAX;
	while (pe->nreqs < depth && peer_pick(pe, &f, &b)) {
		struct req *r = &pe->reqs[pe->nreqs];
		Syncbit__Request m = SYNCBIT__REQUEST__INIT;
		r->id = ++pe->p->next_req_id;
		r->f = f;
		r->b = b;
		r->sent_ms = uv_now(pe->p->loop);
		m.request_id = r->id;
		m.version_id.data = (uint8_t *)fetch_version_id(f);
		m.version_id.len = HASH_LEN;
		m.block = b;
		m.block_hash.data = (uint8_t *)fetch_block_hash(f, b)->b;
		m.block_hash.len = HASH_LEN;
		if (wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_REQUEST, &m.base, NULL, 0, NULL, NULL) <
		    0)
			return;
		pe->nreqs++;
		fetch_block_asked(f, b);
		log_with(LOG_DEBUG, LOG_KV({"peer", pe->node}, {"dataset", fetch_name(f)}),
			 "peer %s: asked block %u of %s (%zu in flight)", pe->node, b,
			 fetch_name(f), pe->nreqs);
	}
}

void peers_wake(struct peers *p)
{
	for (struct peer *pe = p->list; pe; pe = pe->next)
		peer_fill(pe);
}
