/* Each node's needed blocks by how many of its peers hold them, so the
 * agent's choice (agent/pick.c: the rarest needed block the peer has, ties
 * to the first from a random start) is found without scanning every block:
 * the levels are visited from the rarest, and within one the first block
 * from the start that the peer has wins, which is the block the agent's full
 * scan keeps. swarm_selftest checks the two against each other. */
#include <stdlib.h>
#include <string.h>

#include "agent/pick.h"
#include "bench/sim/index.h"
#include "common/buf.h"

static size_t sum_words(size_t words)
{
	return (words + 63) / 64;
}

static struct sim_level *level(struct sim_node *n, size_t words, uint32_t a)
{
	if (a >= n->nlv) {
		n->lv = xrealloc(n->lv, (a + 1) * sizeof *n->lv);
		memset(&n->lv[n->nlv], 0, (a + 1 - n->nlv) * sizeof *n->lv);
		n->nlv = a + 1;
	}
	struct sim_level *l = &n->lv[a];
	if (!l->bits) {
		l->bits = xcalloc(words, sizeof *l->bits);
		l->sum = xcalloc(sum_words(words), sizeof *l->sum);
	}
	return l;
}

void index_add(struct sim_node *n, size_t words, uint32_t b)
{
	uint32_t a = n->avail[b];
	if (!a)
		return; /* nobody to ask */
	struct sim_level *l = level(n, words, a);
	size_t w = b / 64;
	l->bits[w] |= 1ull << (b % 64);
	l->sum[w / 64] |= 1ull << (w % 64);
}

void index_del(struct sim_node *n, uint32_t b)
{
	uint32_t a = n->avail[b];
	if (!a || a >= n->nlv || !n->lv[a].bits)
		return;
	struct sim_level *l = &n->lv[a];
	size_t w = b / 64;
	l->bits[w] &= ~(1ull << (b % 64));
	if (!l->bits[w])
		l->sum[w / 64] &= ~(1ull << (w % 64));
}

void index_free(struct sim_node *n)
{
	for (uint32_t a = 0; a < n->nlv; a++) {
		free(n->lv[a].bits);
		free(n->lv[a].sum);
	}
	free(n->lv);
	n->lv = NULL;
	n->nlv = 0;
}

/* The first block in words [from, to) of level l that has also has, or
 * UINT32_MAX; mask clears the bits of word `from` below the start. */
static uint32_t scan(const struct sim_level *l, const uint64_t *has, size_t from, size_t to,
		     uint64_t mask)
{
	size_t w = from;
	while (w < to) {
		uint64_t sw = l->sum[w / 64] >> (w % 64);
		if (!sw) {
			w = (w / 64 + 1) * 64;
			continue;
		}
		w += (size_t)__builtin_ctzll(sw);
		if (w >= to)
			break;
		uint64_t x = l->bits[w] & has[w];
		if (w == from)
			x &= mask;
		if (x)
			return (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x));
		w++;
	}
	return UINT32_MAX;
}

uint32_t index_rarest(const struct sim_node *n, size_t words, const uint64_t *has, uint32_t start,
		      uint32_t *avail)
{
	size_t w0 = start / 64;
	uint64_t high = ~0ull << (start % 64);
	for (uint32_t a = 1; a < n->nlv; a++) {
		const struct sim_level *l = &n->lv[a];
		if (!l->bits)
			continue;
		uint32_t b = scan(l, has, w0, words, high); /* from the start on */
		if (b == UINT32_MAX)			    /* then from block 0 */
			b = scan(l, has, 0, w0, ~0ull);
		if (b == UINT32_MAX && (l->bits[w0] & has[w0] & ~high))
			b = (uint32_t)(w0 * 64 +
				       (size_t)__builtin_ctzll(l->bits[w0] & has[w0] & ~high));
		if (b != UINT32_MAX) {
			*avail = a;
			return b;
		}
	}
	return UINT32_MAX;
}
