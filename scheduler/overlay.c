#include "scheduler/overlay.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/buf.h"

struct ring_pos {
	uint64_t h;
	uint32_t member;
};

static int cmp_pos(const void *a, const void *b)
{
	const struct ring_pos *x = a, *y = b;
	return x->h < y->h	       ? -1
	       : x->h > y->h	       ? 1
	       : x->member < y->member ? -1
				       : x->member > y->member;
}

static int cmp_edge(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Index in pos[0..n) of the first position at or after h, wrapping. */
static size_t successor(const struct ring_pos *pos, size_t n, uint64_t h)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (pos[mid].h < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == n ? 0 : lo;
}

uint64_t overlay_key(struct cluster_node *const *m, size_t n)
{
	uint64_t k = n;
	for (size_t i = 0; i < n; i++)
		k = XXH64(&m[i]->ident, sizeof m[i]->ident, k);
	return k;
}

void overlay_build(struct overlay *o, struct cluster_node *const *m, size_t n)
{
	memset(o, 0, sizeof *o);
	o->n = n;
	o->key = overlay_key(m, n);
	if (n <= OVERLAY_FULL_MAX + 1)
		return; /* everyone knows everyone */
	struct ring_pos *pos = xcalloc(n, sizeof *pos);
	for (size_t i = 0; i < n; i++) {
		pos[i].h = m[i]->name_hash;
		pos[i].member = (uint32_t)i;
	}
	qsort(pos, n, sizeof *pos, cmp_pos);
	/* Each member's fingers: the successors of its position plus 2^k for
	 * every k, and its ring neighbours; each edge both ways. */
	size_t cap = n * 2 * 66, ne = 0;
	uint64_t *edges = xmalloc(cap * sizeof *edges);
	for (size_t p = 0; p < n; p++) {
		uint32_t a = pos[p].member;
		uint32_t prev = UINT32_MAX;
		for (int k = 0; k < 64; k++) {
			size_t q = successor(pos, n, pos[p].h + (1ull << k));
			uint32_t b = pos[q].member;
			if (q == p || b == prev)
				continue;
			prev = b;
			edges[ne++] = (uint64_t)a << 32 | b;
			edges[ne++] = (uint64_t)b << 32 | a;
		}
		uint32_t before = pos[(p + n - 1) % n].member;
		edges[ne++] = (uint64_t)a << 32 | before;
		edges[ne++] = (uint64_t)before << 32 | a;
	}
	qsort(edges, ne, sizeof *edges, cmp_edge);
	o->start = xcalloc(n + 1, sizeof *o->start);
	o->adj = xmalloc((ne + 1) * sizeof *o->adj);
	size_t k = 0;
	for (size_t i = 0; i < ne; i++) {
		if (i && edges[i] == edges[i - 1])
			continue;
		o->adj[k++] = (uint32_t)edges[i];
		o->start[(edges[i] >> 32) + 1]++;
	}
	for (size_t i = 0; i < n; i++)
		o->start[i + 1] += o->start[i];
	free(edges);
	free(pos);
}

size_t overlay_peers(const struct overlay *o, size_t self, const uint32_t **out)
{
	if (!o->start) {
		*out = NULL;
		return o->n ? o->n - 1 : 0;
	}
	*out = &o->adj[o->start[self]];
	return o->start[self + 1] - o->start[self];
}

void overlay_close(struct overlay *o)
{
	free(o->start);
	free(o->adj);
	memset(o, 0, sizeof *o);
}
