/* Schedulers sharing one etcd (`syncbit scheduler --etcd URL`): the same
 * identity for all (the join token and the scheduler's key, written to
 * etcd by the first and taken from there by the others), one leader
 * elected with a lease, and the durable state in etcd behind fenced
 * writes (scheduler/state_etcd.c).
 *
 * Election: a lease of --etcd-lease seconds, then a transaction that
 * creates /syncbit/CLUSTER/leader with it only when the key is absent;
 * the value is the leader's --listen address. The leader renews the
 * lease three times a TTL; the others read the key four times a second
 * and campaign as soon as it is gone. A leader that cannot reach etcd
 * keeps serving the nodes what it knows but refuses changes; one that
 * finds another leader once etcd answers again stops (its supervisor
 * starts it again, as a standby). Loop thread only. */
#ifndef SYNCBIT_HA_H
#define SYNCBIT_HA_H

#include <stdint.h>
#include <uv.h>

#include "common/etcd.h"
#include "scheduler/state.h"

#define HA_LEASE_S 5   /* default --etcd-lease */
#define HA_POLL_MS 250 /* a standby reads the leader key this often */
#define HA_DEPOSED 75  /* the exit status of a leader that found another one */

struct sched;

struct ha {
	struct sched *s;
	struct etcd *e;
	char *prefix;		  /* /syncbit/CLUSTER/ */
	char *state_prefix;	  /* /syncbit/CLUSTER/state/ */
	struct state_fence fence; /* key: /syncbit/CLUSTER/leader */
	unsigned ttl_s;
	int64_t lease;	   /* held while leading, or 0 */
	int leader;	   /* this scheduler leads */
	char *leader_addr; /* who leads as last read, or NULL */
	uint64_t renewed;  /* loop time the lease was last renewed */
	uint64_t kept;	   /* loop time of the last renewal attempt */
	int unreachable;   /* etcd did not answer the last attempt */
	uv_timer_t tick;
	int started;
};

/* Connect to etcd (s->o's --etcd options) and make the identity files in
 * DATA the cluster's: those etcd has replace the local ones, else the
 * local ones (created when missing) go to etcd. 0, or a negative error
 * with *detail. */
int ha_open(struct sched *s, struct ha **out, char **detail);
/* Campaign now and keep at it. */
void ha_start(struct ha *h);
/* Stop; a leader gives its lease back, so a standby leads at once. */
void ha_stop(struct ha *h);
void ha_free(struct ha *h);

/* "leader" or "standby". */
const char *ha_role(const struct ha *h);
/* 0 when changes may be made now; else SB_ESTANDBY with *why (heap)
 * naming the leader, or SB_EDENIED for a leader cut off from etcd. */
int ha_check_change(const struct ha *h, char **why);

#endif
