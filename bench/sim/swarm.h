/* Internal to the nodes' side of the model: bench/sim/swarm.c (block
 * states, requests, origin reads, connections) and bench/sim/run.c
 * (the events). */
#ifndef SYNCBIT_BENCH_SIM_SWARM_H
#define SYNCBIT_BENCH_SIM_SWARM_H

#include "bench/sim/sim.h"

int bit(const uint64_t *m, uint32_t b);
uint32_t block_len(const struct sim *s, uint32_t b);
/* 1 when n has had the hash of b from the scheduler. */
int knows(const struct sim *s, const struct sim_node *n, uint32_t b);
void set_state(struct sim *s, struct sim_node *n, uint32_t b, enum blk_state to);
/* b is neither held, asked nor read at n: needed, or unknown. */
void release(struct sim *s, struct sim_node *n, uint32_t b);
void avail_add(struct sim *s, struct sim_node *n, uint32_t b, int delta);
int queued(const struct sim_conn *c, uint32_t b);
void meas_catch_up(struct sim *s, struct sim_conn *c);
void start_soon(struct sim *s, uint32_t id);
void fill(struct sim *s, uint32_t id);
void fill_all(struct sim *s, struct sim_node *n);
void origin_next(struct sim *s, struct sim_node *n);
uint32_t conn_new(struct sim *s, uint32_t src, uint32_t dst);
void conn_close(struct sim *s, uint32_t id);

#endif
