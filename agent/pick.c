/* The block-choice rules (agent/pick.h). Pure. */
#include "agent/pick.h"

void pick_begin(struct pick *p)
{
	p->best = UINT32_MAX;
	p->best_avail = UINT32_MAX;
	p->waiting = 0;
	p->n_endgame = 0;
}

int pick_consider(struct pick *p, uint32_t b, enum pick_kind k, int peer_has, uint32_t avail,
		  uint32_t asks, int (*asked_here)(const void *ctx, uint32_t b), const void *ctx)
{
	if (k == PICK_WAITING || k == PICK_NEED)
		p->waiting++;
	if (!peer_has)
		return 0;
	if (k == PICK_NEED && avail < p->best_avail) {
		p->best = b;
		p->best_avail = avail;
		/* the peer has it, so avail >= 1: nothing later is rarer */
		return avail <= 1;
	}
	if (k == PICK_ASKED && p->n_endgame < PEER_PIPELINE_MAX && asks < PEER_ENDGAME_ASKS &&
	    !asked_here(ctx, b))
		p->endgame[p->n_endgame++] = b;
	return 0;
}

int pick_end(const struct pick *p, int (*overdue)(const void *ctx, uint32_t b), const void *ctx,
	     uint32_t *b)
{
	if (p->best != UINT32_MAX) {
		*b = p->best;
		return 1;
	}
	for (uint32_t k = 0; !p->waiting && k < p->n_endgame; k++) {
		if (overdue(ctx, p->endgame[k])) {
			*b = p->endgame[k];
			return 1;
		}
	}
	return 0;
}

int pick_request_overdue(uint64_t now, uint64_t sent_ms, uint32_t block_len, size_t nreqs,
			 double rate)
{
	double r = rate > PICK_RATE_FLOOR ? rate : PICK_RATE_FLOOR;
	double need_ms = 2000.0 * (double)block_len * (double)nreqs / r;
	return (double)(now - sent_ms) >= PEER_ENDGAME_AFTER_MS + need_ms;
}

size_t pick_depth(double rate, uint32_t block_len)
{
	double extra = rate * PEER_PIPELINE_SECONDS / block_len;
	size_t depth = PEER_PIPELINE_MIN + (size_t)(extra + 0.999);
	return depth > PEER_PIPELINE_MAX ? PEER_PIPELINE_MAX : depth;
}
