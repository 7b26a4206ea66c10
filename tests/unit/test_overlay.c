/* scheduler/overlay.c: which holders each holder is told of. Up to
 * OVERLAY_FULL_MAX + 1 holders everyone knows everyone; beyond, the sparse
 * overlay must be symmetric (peers accept only nodes they were told of),
 * connected, with few hops and about 2 log2(n) peers each. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "scheduler/overlay.h"

struct members {
	struct cluster_node *nodes;
	struct cluster_node **m;
	size_t n;
};

static void members_make(struct members *ms, size_t n, const char *prefix)
{
	ms->n = n;
	ms->nodes = calloc(n + 1, sizeof *ms->nodes);
	ms->m = calloc(n + 1, sizeof *ms->m);
	for (size_t i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof name, "%s-%05zu", prefix, i);
		ms->nodes[i].name = strdup(name);
		ms->nodes[i].addr = strdup("10.0.0.1:7001");
		cluster_node_hash(&ms->nodes[i]);
		ms->m[i] = &ms->nodes[i];
	}
}

static void members_free(struct members *ms)
{
	for (size_t i = 0; i < ms->n; i++) {
		free(ms->nodes[i].name);
		free(ms->nodes[i].addr);
	}
	free(ms->nodes);
	free(ms->m);
}

/* 1 when j is among i's peers. */
static int knows(const struct overlay *o, size_t n, size_t i, size_t j)
{
	const uint32_t *p;
	size_t k = overlay_peers(o, i, &p);
	if (!p)
		return i != j && j < n;
	for (size_t x = 0; x < k; x++)
		if (p[x] == j)
			return 1;
	return 0;
}

/* Hops from member 0 to the farthest member; SIZE_MAX if one is cut off. */
static size_t eccentricity(const struct overlay *o, size_t n)
{
	size_t *dist = malloc(n * sizeof *dist), *q = malloc(n * sizeof *q), h = 0, t = 0, most = 0;
	for (size_t i = 0; i < n; i++)
		dist[i] = SIZE_MAX;
	dist[0] = 0;
	q[t++] = 0;
	while (h < t) {
		size_t u = q[h++];
		const uint32_t *p;
		size_t k = overlay_peers(o, u, &p);
		for (size_t x = 0; x < (p ? k : n); x++) {
			size_t v = p ? p[x] : x;
			if (v == u || dist[v] != SIZE_MAX)
				continue;
			dist[v] = dist[u] + 1;
			if (dist[v] > most)
				most = dist[v];
			q[t++] = v;
		}
	}
	if (t < n)
		most = SIZE_MAX;
	free(dist);
	free(q);
	return most;
}

static void check_overlay(size_t n)
{
	struct members ms;
	struct overlay o;
	members_make(&ms, n, "gpu");
	overlay_build(&o, ms.m, n);
	size_t most = 0, sum = 0;
	for (size_t i = 0; i < n; i++) {
		const uint32_t *p;
		size_t k = overlay_peers(&o, i, &p);
		if (!p) {
			assert_true(n <= OVERLAY_FULL_MAX + 1);
			continue;
		}
		assert_true(n > OVERLAY_FULL_MAX + 1);
		if (k > most)
			most = k;
		sum += k;
		for (size_t x = 0; x < k; x++) {
			assert_true(p[x] < n);
			assert_true(p[x] != i);			/* never itself */
			assert_true(x == 0 || p[x] > p[x - 1]); /* ascending, no repeats */
			assert_true(knows(&o, n, p[x], i));	/* both ways */
		}
	}
	size_t ecc = eccentricity(&o, n);
	assert_true(ecc != SIZE_MAX); /* every holder is reachable */
	if (n > OVERLAY_FULL_MAX + 1) {
		double lg = log2((double)n);
		/* about 2 log2(n) each; a node after a wide gap on the ring is
		 * the finger of many, so the most is a few times that */
		assert_true((double)sum / (double)n <= 2 * lg + 2);
		assert_true(most <= (size_t)(8 * lg));
		assert_true(ecc <= (size_t)lg + 2);
	}
	overlay_close(&o);
	members_free(&ms);
}

static void test_small_everyone(void **state)
{
	check_overlay(1);
	check_overlay(2);
	check_overlay(OVERLAY_FULL_MAX + 1);
}

static void test_sparse(void **state)
{
	check_overlay(OVERLAY_FULL_MAX + 2);
	check_overlay(200);
	check_overlay(2000);
	check_overlay(10000);
}

/* The same members give the same key; another member set, or a member at
 * another address, another one. */
static void test_key(void **state)
{
	struct members a, b;
	members_make(&a, 100, "n");
	members_make(&b, 100, "n");
	assert_true(overlay_key(a.m, a.n) == overlay_key(b.m, b.n));
	free(b.nodes[7].name);
	b.nodes[7].name = strdup("other");
	cluster_node_hash(&b.nodes[7]);
	assert_true(overlay_key(a.m, a.n) != overlay_key(b.m, b.n));
	free(b.nodes[7].name);
	b.nodes[7].name = strdup(a.nodes[7].name);
	cluster_node_hash(&b.nodes[7]);
	assert_true(overlay_key(a.m, a.n) == overlay_key(b.m, b.n));
	free(b.nodes[7].addr);
	b.nodes[7].addr = strdup("10.0.0.2:7001");
	cluster_node_hash(&b.nodes[7]);
	assert_true(overlay_key(a.m, a.n) != overlay_key(b.m, b.n));
	members_free(&a);
	members_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small_everyone),
	    cmocka_unit_test(test_sparse),
	    cmocka_unit_test(test_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
