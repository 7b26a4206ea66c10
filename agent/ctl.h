/* The daemon's local interfaces: a unix socket where the CLI asks for
 * status, readiness and waits for a dataset (one JSON object a line each
 * way), and optional HTTP probes (/healthz, /readyz, /metrics) for
 * Kubernetes. Loop thread only. */
#ifndef SYNCBIT_CTL_H
#define SYNCBIT_CTL_H

#include <stdint.h>
#include <uv.h>

#define CTL_LINE_MAX	(64u << 10) /* longest request line */
#define CTL_PROGRESS_MS 500	    /* progress lines while a client waits */
#define CTL_CLIENTS_MAX 64

struct daemon;
struct ctl;

/* Listen on the unix socket path (replacing a stale socket file) and, when
 * http is not NULL, on http. 0 or a negative error with *detail. */
int ctl_new(uv_loop_t *loop, struct daemon *d, const char *path, const char *http, struct ctl **out,
	    char **detail);
/* Close the socket and every client; freed asynchronously. */
void ctl_free(struct ctl *c);
/* Dataset name changed state: answer clients waiting on it. */
void ctl_notify(struct ctl *c, const char *name);

/* What one request line (its '\n' dropped) asks: {"op": "status"},
 * {"op": "ready" | "pull" | "rm", "name": NAME}, or {"op": "pull", "source":
 * SOURCE, "target": DIR|null, "block_size": N} (a pull through the agent,
 * agent/adhoc.h). *name (heap) is set to NAME for READY and PULL, to
 * SOURCE for PULL_SOURCE, to NAME for RM, else NULL. Pure; the socket answers by it. */
enum ctl_op {
	CTL_OP_MALFORMED, /* not a JSON object with a string "op" */
	CTL_OP_STATUS,
	CTL_OP_READY,
	CTL_OP_PULL,
	CTL_OP_PULL_SOURCE,
	CTL_OP_RM,	/* {"op": "rm", "name": NAME|DIR, "path": ABS|null, "purge": bool} */
	CTL_OP_UNKNOWN, /* another op, or one without its name */
};
enum ctl_op ctl_request_parse(const char *line, char **name);
/* The target and block size of a PULL_SOURCE line: 0, or SB_EPROTO when
 * the target is not null or an absolute path under PATH_MAX, or the block
 * size is not a number. *target (heap) is NULL for none. Pure. */
int ctl_pull_parse(const char *line, char **target, uint32_t *block_size);

#endif
