/* The model's index (bench/sim/index.c) against the agent's full scan
 * (agent/pick.c over every block from the same start, as
 * agent/peer_request.c runs it): over random block states, holder counts
 * and peer bitfields, both must choose the same block. */
#include <stdlib.h>
#include <string.h>

#include "agent/pick.h"
#include "bench/sim/index.h"
#include "bench/sim/sim.h"
#include "bench/sim/swarm.h"
#include "common/buf.h"

static int never(const void *ctx, uint32_t b)
{
	return 0;
}

static enum pick_kind kind_of(uint8_t st)
{
	switch (st) {
	case B_UNKNOWN:
	case B_ORIGIN:
		return PICK_WAITING;
	case B_NEED:
		return PICK_NEED;
	case B_ASKED:
		return PICK_ASKED;
	default:
		return PICK_HELD;
	}
}

int swarm_selftest(uint64_t seed)
{
	struct sim s;
	memset(&s, 0, sizeof s);
	s.rng = seed * 0x9E3779B97F4A7C15ull + 1;
	int ok = 1;
	for (int round = 0; round < 200 && ok; round++) {
		uint32_t nb = 1 + (uint32_t)(sim_rand(&s) % 5000);
		s.nb = nb;
		s.words = (nb + 63) / 64;
		s.known_batch = xcalloc(nb, sizeof *s.known_batch);
		struct sim_node n;
		memset(&n, 0, sizeof n);
		n.st = xcalloc(nb, 1);
		n.avail = xcalloc(nb, 1);
		n.asks = xcalloc(nb, 1);
		uint64_t *has = xcalloc(s.words, sizeof *has);
		uint32_t p_has = 1 + (uint32_t)(sim_rand(&s) % 100);
		for (uint32_t b = 0; b < nb; b++) {
			n.avail[b] = (uint8_t)(sim_rand(&s) % 6);
			if (n.avail[b] && sim_rand(&s) % 100 < p_has)
				has[b / 64] |= 1ull << (b % 64);
			uint8_t st = (uint8_t)(sim_rand(&s) % 5);
			set_state(&s, &n, b, (enum blk_state)st);
		}
		/* holder counts change while blocks are needed */
		for (uint32_t k = 0; k < nb / 4; k++) {
			uint32_t b = (uint32_t)(sim_rand(&s) % nb);
			avail_add(&s, &n, b, sim_rand(&s) % 2 ? 1 : -1);
			if (!n.avail[b]) /* a peer that has it counts */
				has[b / 64] &= ~(1ull << (b % 64));
			if (sim_rand(&s) % 3 == 0)
				set_state(&s, &n, b, (enum blk_state)(sim_rand(&s) % 5));
		}
		for (int t = 0; t < 20 && ok; t++) {
			uint32_t start = (uint32_t)(sim_rand(&s) % nb), avail = 0,
				 want = UINT32_MAX;
			struct pick p;
			pick_begin(&p);
			for (uint32_t k = 0; k < nb; k++) {
				uint32_t b = (start + k) % nb;
				if (pick_consider(&p, b, kind_of(n.st[b]), bit(has, b), n.avail[b],
						  n.asks[b], never, NULL))
					break;
			}
			/* only the rarest-needed part: the endgame is not indexed */
			if (p.best != UINT32_MAX)
				want = p.best;
			uint32_t got = index_rarest(&n, s.words, has, start, &avail);
			if (got != want || (got != UINT32_MAX && avail != n.avail[got])) {
				fprintf(stderr,
					"selftest: %u blocks, start %u: scan chose %u, index %u\n",
					nb, start, want, got);
				ok = 0;
			}
		}
		index_free(&n);
		free(n.st);
		free(n.avail);
		free(n.asks);
		free(has);
		free(s.known_batch);
	}
	return ok;
}
