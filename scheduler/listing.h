/* Listing a dataset's source on the scheduler: the source is listed once
 * here (common/source/source.h) and the listing becomes a version
 * (scheduler/version.h) that the agents are sent. Several listings may run
 * at once. Loop thread only. */
#ifndef SYNCBIT_LISTING_H
#define SYNCBIT_LISTING_H

#include <stdint.h>

#include "scheduler/sched.h"
#include "scheduler/version.h"

/* Called once: status 0 with v (now the callee's), or a negative error with
 * detail (one line, valid during the call). SB_ECANCELED when the
 * scheduler stops first. */
typedef void (*listing_done_cb)(struct sched *s, int status, const char *detail,
				struct sched_version *v, void *arg);

/* List source (a SOURCE argument), keep the paths filter takes (a copy is
 * kept; NULL or empty: every path) and build a version cut into block_size
 * blocks, named under manifest format format (sched_format_of). 0 with cb to follow, or a negative
 * error with *detail (heap, one line) and no callback: a malformed URI or a scheme not built in.
 * When canonical is not NULL it receives the source's canonical form (heap). */
struct filter;
int listing_start(struct sched *s, const char *source, uint32_t block_size, uint32_t format,
		  const struct filter *filter, listing_done_cb cb, void *arg, char **canonical,
		  char **detail);

/* Cancel every listing in flight (at shutdown); their callbacks run with
 * SB_ECANCELED. */
void listing_cancel_all(struct sched *s);

#endif
