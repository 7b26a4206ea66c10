/* Pulls through agents: `syncbit pull SOURCE` on a node whose agent runs
 * reaches the scheduler as a PullRequest on that agent's control
 * connection. The source is listed here, as for `dataset add`, into the
 * dataset named after it (PULL_NAME_PREFIX and a hash of the canonical
 * source and block size), which goes to every node that asked for it: the
 * origin plan stripes its blocks over those nodes and they swap them as
 * peers, so each byte leaves the origin about once however many nodes pull
 * it. Such a dataset is removed once every connected node it goes to has
 * had it for --pull-linger and none asked for it meanwhile. Loop thread
 * only. */
#ifndef SYNCBIT_SCHED_PULL_H
#define SYNCBIT_SCHED_PULL_H

#include <stddef.h>
#include <stdint.h>

#include "scheduler/server.h"

#define PULL_NAME_PREFIX "pull-"
#define PULL_NAME_HEX	 16 /* hex digits of the hash in the name */

/* The dataset name of a pull of canonical source cut into block_size
 * blocks, into out (at least sizeof PULL_NAME_PREFIX + PULL_NAME_HEX). */
void pull_dataset_name(const char *canonical, uint32_t block_size, char *out, size_t len);
/* Handle one PullRequest from cl's registered node. A negative return
 * closes the connection (malformed message); refusals are PullReplies. */
int pull_handle(struct sched *s, struct sched_client *cl, const Syncbit__PullRequest *m);
/* Remove the pulled datasets that every connected node they go to has had
 * for --pull-linger, with no pull of them meanwhile (the liveness timer). */
void pull_expire(struct sched *s);

#endif
