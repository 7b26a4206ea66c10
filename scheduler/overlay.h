/* Which holders of a version each holder is told of (Peers, Assign). Up to
 * OVERLAY_FULL_MAX + 1 holders, every one of the others. Beyond that, a
 * sparse graph, so a join does not send every holder a list of every
 * holder (O(n^2) bytes): each holder sits on a ring at the hash of its
 * name and links to the successors of its position + 2^k (k = 0..63) and
 * to its predecessor, and every link goes both ways (peers accept only
 * nodes they were told of). About 2 log2(n) peers each, at most log2(n)
 * hops between any two, and a join or leave changes the lists of few
 * others. Pure; loop thread only by its callers. */
#ifndef SYNCBIT_OVERLAY_H
#define SYNCBIT_OVERLAY_H

#include <stddef.h>
#include <stdint.h>

#include "scheduler/cluster.h"

#define OVERLAY_FULL_MAX 64 /* holders beyond the first that everyone knows */

struct overlay {
	size_t n;
	uint64_t key;	 /* overlay_key() of the members it was built for */
	uint32_t *start; /* NULL: everyone knows everyone; else n + 1 offsets into adj */
	uint32_t *adj;	 /* member indices, ascending per member */
};

/* A hash of the members' names and addresses, in order (to reuse a built
 * overlay and what is worked out from it). */
uint64_t overlay_key(struct cluster_node *const *m, size_t n);
void overlay_build(struct overlay *o, struct cluster_node *const *m, size_t n);
/* The peers of member self: *out = their indices, count returned; *out
 * NULL means every member but self. */
size_t overlay_peers(const struct overlay *o, size_t self, const uint32_t **out);
void overlay_close(struct overlay *o);

#endif
