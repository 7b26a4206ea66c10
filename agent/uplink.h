/* The agent's link to its scheduler as an operator sees it: connected or
 * not, since when, and why not (the last failure: unreachable, refused
 * the handshake, refused the registration). Failures are logged here,
 * once per distinct failure per minute; /healthz fails once the link has
 * been down longer than a grace period. Loop thread only. */
#ifndef SYNCBIT_UPLINK_H
#define SYNCBIT_UPLINK_H

#include <jansson.h>
#include <stdint.h>

#include "common/buf.h"

#define UPLINK_ERROR_MAX 512

struct uplink {
	const char *addr;	      /* the scheduler's host:port (borrowed) */
	int up;			      /* registered */
	uint64_t since_ms;	      /* when it last went up or down (loop time) */
	char error[UPLINK_ERROR_MAX]; /* why it is down; "" when up or never tried */
	int explained; /* error is the scheduler's own refusal, for the close after it */
};

void uplink_init(struct uplink *u, const char *addr, uint64_t now_ms);
/* Registered with the scheduler. */
void uplink_up(struct uplink *u, uint64_t now_ms);
/* A connection attempt or an established connection ended with status
 * (a negative error; 0: closed cleanly) and detail (conn_error(), may be
 * "" or NULL). Logged: warn for a lost connection, error when refused. */
void uplink_closed(struct uplink *u, uint64_t now_ms, int status, const char *detail);
/* The scheduler sent an error (it refused the registration). */
void uplink_refused(struct uplink *u, const char *message);
/* 1 when the link is up or has been down less than grace_ms; otherwise 0
 * with a line in why saying for how long and why. */
int uplink_healthy(const struct uplink *u, uint64_t now_ms, uint64_t grace_ms, struct buf *why);
/* {"addr", "connected", "seconds", "error"} for status. */
json_t *uplink_json(const struct uplink *u, uint64_t now_ms);

#endif
