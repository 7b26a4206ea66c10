/* Requests to peers: which block to ask a peer for (the fetch's order,
 * agent/fetch_order.c, where it differs from rarest first; otherwise, and
 * for the endgame, the rules of agent/pick.h), and keeping each peer's
 * pipeline as deep as its rate needs.
 * Loop thread only. */
#include "agent/peer_int.h"

#include <stdlib.h>

#include "common/log.h"
#include "common/net/wire.h"

/* What pick_consider and pick_end ask about a block of one fetch. */
struct pick_ctx {
	const struct peer *pe;
	const struct fetch *f;
	uint64_t now;
};

static int requested_here(const void *arg, uint32_t b)
{
	const struct pick_ctx *x = arg;
	for (size_t i = 0; i < x->pe->nreqs; i++)
		if (x->pe->reqs[i].f == x->f && x->pe->reqs[i].b == b)
			return 1;
	return 0;
}

/* 1 when every request for block b now in flight is overdue
 * (pick_request_overdue): a block on its way at a peer's normal pace is
 * not asked twice. */
static int overdue(const void *arg, uint32_t b)
{
	const struct pick_ctx *x = arg;
	int found = 0;
	for (const struct peer *o = x->pe->p->list; o; o = o->next)
		for (size_t i = 0; i < o->nreqs; i++) {
			if (o->reqs[i].f != x->f || o->reqs[i].b != b)
				continue;
			if (!pick_request_overdue(x->now, o->reqs[i].sent_ms,
						  fetch_block_len(x->f, b), o->nreqs, o->rate))
				return 0;
			found = 1;
		}
	return found;
}

static enum pick_kind kind_of(enum fetch_block_state s)
{
	switch (s) {
	case FETCH_UNKNOWN:
	case FETCH_ORIGIN:
		return PICK_WAITING;
	case FETCH_NEED:
		return PICK_NEED;
	case FETCH_PEER:
		return PICK_ASKED;
	default:
		return PICK_HELD;
	}
}

/* Per version this peer shares, from a random start so nodes spread over
 * different blocks: when the fetch's order is more than rarest first
 * (oci://, or files a consumer waits for: fetch_order_matters), the needed
 * block it has that the order puts first (fetch_order_pick); otherwise,
 * and for the endgame once it has none, the scan of agent/pick.h. */
int peer_pick(struct peer *pe, struct fetch **fo, uint32_t *bo)
{
	uint64_t now = uv_now(pe->p->loop);
	for (size_t i = 0; i < pe->nvers; i++) {
		struct pver *v = &pe->vers[i];
		struct fetch *f = v->f; /* one that failed (disk full) asks nothing */
		if (!f || fetch_complete(f) || fetch_error(f) || v->nblocks != fetch_nblocks(f) ||
		    !v->nblocks)
			continue;
		struct pick_ctx x = {pe, f, now};
		struct pick p;
		uint32_t n = v->nblocks, start = (uint32_t)random() % n;
		if (fetch_order_matters(f) && fetch_order_pick(f, v->bits, start, bo)) {
			*fo = f;
			return 1;
		}
		pick_begin(&p);
		for (uint32_t k = 0; k < n; k++) {
			uint32_t b = (start + k) % n;
			if (pick_consider(&p, b, kind_of(fetch_block_state(f, b)),
					  peer_offers(v, b), fetch_avail(f, b),
					  fetch_block_asks(f, b), requested_here, &x))
				break;
		}
		if (pick_end(&p, overdue, &x, bo)) {
			*fo = f;
			return 1;
		}
	}
	return 0;
}

/* 1 when a connected peer other than pe fetches f and lacks block b: this
 * node may pass b on, so it takes b as pieces (each verified as it arrives,
 * passed on at once). Otherwise the block comes whole: hashed on the pool,
 * sent by sendfile on plain links, with nothing to hash at the sender. */
static int may_pass_on(const struct peer *pe, const struct fetch *f, uint32_t b)
{
	for (const struct peer *o = pe->p->list; o; o = o->next) {
		if (o == pe || !o->ready || o->closed)
			continue;
		for (size_t i = 0; i < o->nvers; i++)
			if (o->vers[i].f == f && o->vers[i].nblocks == fetch_nblocks(f) &&
			    !peer_offers(&o->vers[i], b))
				return 1;
	}
	return 0;
}

/* Bytes of the blocks streamed by their readers that are under way. */
static uint64_t streamed_bytes(const struct peers *p)
{
	uint64_t n = 0;
	for (const struct peer *o = p->list; o; o = o->next)
		for (size_t i = 0; i < o->nreqs; i++)
			if (o->reqs[i].streamed)
				n += fetch_block_len(o->reqs[i].f, o->reqs[i].b);
	return n;
}

void peer_fill(struct peer *pe)
{
	struct fetch *f;
	uint32_t b;
	if (!pe->ready || pe->closed)
		return;
	uint64_t storing = 0;
	for (size_t i = 0; i < pe->p->nfetches; i++)
		storing += fetch_peer_storing(pe->p->fetches[i]);
	if (storing >= PEER_STORING_MAX)
		return; /* fetch_write_done wakes the peers */
	size_t depth = pick_depth(pe->rate, pe->block_len ? pe->block_len : BLOCK_SIZE_DEFAULT);
	uint64_t streaming = streamed_bytes(pe->p);
	while (pe->nreqs < depth) {
		/* First what peers read from the origin now: its bytes come as
		 * they arrive there, checked once the hash is known. */
		int streamed = streaming < PEER_STREAMED_MAX && peer_pick_streamed(pe, &f, &b);
		if (!streamed && !peer_pick(pe, &f, &b))
			break;
		struct req *r = &pe->reqs[pe->nreqs];
		Syncbit__Request m = SYNCBIT__REQUEST__INIT;
		r->id = ++pe->p->next_req_id;
		r->f = f;
		r->b = b;
		r->sent_ms = uv_now(pe->p->loop);
		/* the slot may hold a stale copy of a moved request */
		r->lv = NULL;
		r->pbuf = NULL;
		r->pgot = 0;
		r->streamed = streamed;
		m.request_id = r->id;
		m.version_id.data = (uint8_t *)fetch_version_id(f);
		m.version_id.len = HASH_LEN;
		m.block = b;
		if (!streamed) {
			m.block_hash.data = (uint8_t *)fetch_block_hash(f, b)->b;
			m.block_hash.len = HASH_LEN;
		}
		m.pieces =
		    streamed || (fetch_manifest(f)->format == MANIFEST_FORMAT_PIECES &&
				 block_npieces(fetch_block_len(f, b)) > 1 && may_pass_on(pe, f, b));
		if (wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_REQUEST, &m.base, NULL, 0, NULL, NULL) <
		    0)
			return;
		pe->nreqs++;
		if (streamed)
			streaming += fetch_block_len(f, b);
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
