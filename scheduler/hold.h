/* The origin plans restored at a start or an election (scheduler/sched.h,
 * plan_hold_until): they stand while the nodes that had shares in them come
 * back, and are made again once every one of those nodes has registered
 * and sent its first heartbeat (what it holds), or after HOLD_BEATS
 * heartbeats and HOLD_EXTRA_MS, whichever comes first. A restart with all
 * nodes back re-plans about one round trip after the last one is back.
 * Loop thread only. */
#ifndef SYNCBIT_HOLD_H
#define SYNCBIT_HOLD_H

#include "scheduler/sched.h"

#define HOLD_BEATS    3
#define HOLD_EXTRA_MS 3000

/* Begin holding the plans just restored: the nodes expected are those in
 * the plans of current versions that were seen within CLUSTER_SEEN_SAVE_MS
 * and a silence span of the last node seen (the others had left before the
 * stop). No hold when there is none. */
void hold_start(struct sched *s);
/* Node name sent its first heartbeat on a new connection. */
void hold_reported(struct sched *s, const char *name);
/* Ends the hold at its bound (the liveness timer calls it). */
void hold_tick(struct sched *s);
/* Forget the hold (at close). */
void hold_clear(struct sched *s);

#endif
