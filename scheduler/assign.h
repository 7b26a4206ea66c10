/* Who holds what: label selectors, which decide the nodes a dataset goes
 * to, and origin plans, which split the blocks whose hash nobody knows yet
 * among those nodes so each byte leaves the origin about once. Pure
 * functions; thread-safe. */
#ifndef SYNCBIT_ASSIGN_H
#define SYNCBIT_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

/* A plan keeps each node's range list under this many ranges by widening
 * the stripe. */
#define ASSIGN_RANGES_MAX 4096
#define ASSIGN_LABEL_MAX  128 /* bytes of a label key or value */
/* When a plan is made again (a node joined or left), each node that keeps
 * a share keeps the first this many unread blocks of it: the reads it has
 * in flight (the agent's default origin concurrency), which another node
 * would otherwise read a second time. */
#define ASSIGN_KEEP_HEAD 8

struct assign_label {
	char *key;
	char *value;
};

struct assign_range {
	uint32_t first;
	uint32_t count;
};

/* One node's share of an origin plan. */
struct assign_plan {
	struct assign_range *ranges; /* heap, ascending */
	size_t nranges;
	uint32_t nblocks; /* blocks in the ranges */
};

/* 1 when every selector label (key and value) is among labels; an empty
 * selector matches every node. */
int assign_selector_match(const struct assign_label *sel, size_t nsel,
			  const struct assign_label *labels, size_t nlabels);

/* 0 if key and value are usable labels: key 1..ASSIGN_LABEL_MAX bytes of
 * [A-Za-z0-9._/-], value 0..ASSIGN_LABEL_MAX bytes without control
 * characters, ',' or '='. SB_EPROTO otherwise. */
int assign_check_label(const char *key, const char *value);

/* Split the blocks of [0, nblocks) whose bit is clear in known (LSB first)
 * among n members: block b goes to member (b / stripe) % n. The stripe is
 * 1, widened (doubling) only while some member would get more than
 * ASSIGN_RANGES_MAX ranges. Fills plans[0..n) (each closed with
 * assign_plan_close) and returns the stripe. n == 0 plans nothing. */
uint32_t assign_origin_plan(const uint8_t *known, uint32_t nblocks, size_t n,
			    struct assign_plan *plans);
void assign_plan_close(struct assign_plan *p);

/* Merge the ascending blocks[0..n) (none of them in p) into p. */
void assign_plan_add(struct assign_plan *p, const uint32_t *blocks, uint32_t n);

/* Blocks of plan p whose bit is clear in known. */
uint32_t assign_plan_unknown(const struct assign_plan *p, const uint8_t *known);
/* 1 when plan p has a block whose bit is clear in known. Looks from the
 * end: a share is read in ascending order, so this answers at once until
 * the share is all read. */
int assign_plan_any_unknown(const struct assign_plan *p, const uint8_t *known);

/* Move the count highest blocks of from whose bit is clear in known to to
 * (both stay ascending). Returns how many moved. */
uint32_t assign_plan_move(struct assign_plan *from, struct assign_plan *to, const uint8_t *known,
			  uint32_t count);

/* Bit helpers for the LSB-first bitmaps of the wire protocol. */
static inline int assign_bit(const uint8_t *bits, uint32_t i)
{
	return (bits[i / 8] >> (i % 8)) & 1;
}

static inline void assign_set_bit(uint8_t *bits, uint32_t i)
{
	bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

#endif
