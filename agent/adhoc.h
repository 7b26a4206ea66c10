/* Pulls through the agent: `syncbit pull SOURCE [--to DIR]` on a node whose
 * agent runs is asked of the agent over its socket (agent/ctl.c). The agent
 * asks the scheduler (PullRequest), which lists the source into a dataset
 * named after it and assigns it to every node pulling it, with the origin
 * plan striped over them; the agent fetches it like any dataset (cache,
 * peers, its share of the origin) without publishing it at TARGET/NAME,
 * then publishes it into DIR for the CLI, and reports progress and the
 * result back.
 *
 * DIR is opened here without following any symlink and must be a
 * directory the client's user owns (SO_PEERCRED), unless that user is
 * root: the agent never writes where its client could not. The files are
 * published into that directory by its descriptor, so renaming or
 * swapping the path afterwards changes nothing; the directories created
 * in it are given to the client's user. Loop thread only. */
#ifndef SYNCBIT_ADHOC_H
#define SYNCBIT_ADHOC_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "agent/cache.h"
#include "proto/wire.pb-c.h"

struct daemon;
struct adhoc;
struct adhoc_pull;

/* What a client asks for. */
struct adhoc_request {
	const char *source;  /* a SOURCE argument */
	const char *target;  /* absolute DIR, or NULL: into the cache only */
	uint32_t block_size; /* 0: the default */
	uid_t uid;	     /* the client's, from SO_PEERCRED */
	gid_t gid;
};

/* Called with each message for the client (stolen): progress lines, then
 * one final line ({"result": …} or {"error": …}), after which p is gone. */
typedef void (*adhoc_cb)(void *arg, struct adhoc_pull *p, json_t *msg, int final);

struct adhoc *adhoc_new(uv_loop_t *loop, struct daemon *d, struct cache *c);
/* Drop every pull without calling back (the daemon stops). */
void adhoc_free(struct adhoc *a);

/* Start a pull for a client; its messages go to cb (never from inside this
 * call). Returns the pull; cancel it when the client goes away. */
struct adhoc_pull *adhoc_start(struct adhoc *a, const struct adhoc_request *rq, adhoc_cb cb,
			       void *arg);
/* `syncbit rm NAME|DIR [--purge]` while the agent runs (it holds the
 * cache): forget a pull on this node. name is a dataset name, path (or
 * NULL) the absolute path of the argument, which may be the directory a
 * standalone pull published into. A dataset pulled through agents leaves
 * this node through the scheduler (PullRequest.drop): the pending request
 * is returned and its one message goes to cb. Anything else is answered at
 * once in *now and NULL is returned: a standalone pull's record dropped
 * here, or an error (a dataset assigned by its selector is refused: that
 * is `dataset rm`). purge: also evict the objects nothing else pins. The
 * answer is {"result": {"name", "source", "target", "evicted_objects",
 * "evicted_bytes"}} or {"error": …}. */
struct adhoc_pull *adhoc_rm(struct adhoc *a, const char *name, const char *path, int purge,
			    adhoc_cb cb, void *arg, json_t **now);
/* The client went away: no more callbacks; the dataset stays assigned. */
void adhoc_cancel(struct adhoc_pull *p);
/* {"progress": true, "state", "bytes", "bytes_have"} for the client, or
 * NULL for an rm, which has no progress. */
json_t *adhoc_progress_json(const struct adhoc_pull *p);

/* From the daemon: a PullReply (unpacked by the dispatcher; 0); a dataset
 * changed state (assigned, complete, failed, removed); the scheduler's
 * connection is gone. */
int adhoc_reply(struct adhoc *a, const Syncbit__PullReply *m);
void adhoc_notify(struct adhoc *a, const char *dataset);
void adhoc_sched_lost(struct adhoc *a);

#endif
