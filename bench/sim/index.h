/* Each node's needed blocks by how many of its peers hold them
 * (bench/sim/index.c). */
#ifndef SYNCBIT_BENCH_SIM_INDEX_H
#define SYNCBIT_BENCH_SIM_INDEX_H

#include "bench/sim/sim.h"

/* Needed block b of n, at level n->avail[b] (none at 0: nobody to ask). */
void index_add(struct sim_node *n, size_t words, uint32_t b);
void index_del(struct sim_node *n, uint32_t b);
void index_free(struct sim_node *n);
/* The block agent/pick.c's scan from start would choose among n's needed
 * blocks that has holds: the first from start at the lowest level; its
 * level in *avail. UINT32_MAX when none. */
uint32_t index_rarest(const struct sim_node *n, size_t words, const uint64_t *has, uint32_t start,
		      uint32_t *avail);

#endif
