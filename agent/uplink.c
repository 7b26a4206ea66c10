#include "agent/uplink.h"

#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/log.h"

void uplink_init(struct uplink *u, const char *addr, uint64_t now_ms)
{
	memset(u, 0, sizeof *u);
	u->addr = addr;
	u->since_ms = now_ms;
}

void uplink_up(struct uplink *u, uint64_t now_ms)
{
	u->up = 1;
	u->since_ms = now_ms;
	u->error[0] = '\0';
}

/* What an operator should read for a failure of status. */
static void describe(struct uplink *u, int status, const char *detail)
{
	if (status == SB_EAUTH)
		snprintf(u->error, sizeof u->error, "refused the handshake (wrong join token?)");
	else if (detail && detail[0])
		snprintf(u->error, sizeof u->error, "%s", detail);
	else if (status)
		snprintf(u->error, sizeof u->error, "%s", sb_strerror(status));
	else
		snprintf(u->error, sizeof u->error, "closed the connection");
}

void uplink_closed(struct uplink *u, uint64_t now_ms, int status, const char *detail)
{
	int was_up = u->up;
	/* A refusal the scheduler explained (uplink_refused) says more than
	 * the connection it closed. */
	int explained = u->explained;
	u->explained = 0;
	if (was_up)
		u->since_ms = now_ms;
	u->up = 0;
	if (!explained)
		describe(u, status, detail);
	if (status == SB_EAUTH)
		log_limited_with(LOG_ERROR, LOG_KV({"scheduler", u->addr}),
				 "scheduler %s refused the handshake (wrong join token?)", u->addr);
	else if (was_up)
		log_with(LOG_WARN, LOG_KV({"scheduler", u->addr}, {"error", u->error}),
			 "scheduler %s: connection lost: %s; reconnecting", u->addr, u->error);
	else if (!explained)
		log_limited_with(LOG_WARN, LOG_KV({"scheduler", u->addr}, {"error", u->error}),
				 "scheduler %s unreachable: %s; retrying", u->addr, u->error);
}

void uplink_refused(struct uplink *u, const char *message)
{
	snprintf(u->error, sizeof u->error, "refused: %s", message && *message ? message : "error");
	u->explained = 1;
	log_limited_with(LOG_ERROR, LOG_KV({"scheduler", u->addr}, {"error", u->error}),
			 "scheduler %s %s", u->addr, u->error);
}

int uplink_healthy(const struct uplink *u, uint64_t now_ms, uint64_t grace_ms, struct buf *why)
{
	uint64_t down = now_ms - u->since_ms;
	if (u->up || down < grace_ms)
		return 1;
	buf_printf(why, "scheduler %s: not connected for %llu s (grace %llu s): %s\n", u->addr,
		   (unsigned long long)(down / 1000), (unsigned long long)(grace_ms / 1000),
		   u->error[0] ? u->error : "not registered yet");
	return 0;
}

json_t *uplink_json(const struct uplink *u, uint64_t now_ms)
{
	json_t *o = json_pack("{s:s, s:b, s:o}", "addr", u->addr, "connected", u->up,
			      u->up ? "seconds_connected" : "seconds_disconnected",
			      jsonfmt_seconds((double)(now_ms - u->since_ms) / 1000.0));
	json_object_set_new(o, "error", u->error[0] ? json_string(u->error) : json_null());
	return o;
}
