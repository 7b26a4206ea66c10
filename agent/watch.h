/* The corruption watcher. A published file is a hardlink of its cache
 * object, so a consumer writing into it in place, or a change made to the
 * disk behind the agent's back, changes what this node holds and serves.
 * The watcher keeps an inotify watch on every object of the datasets
 * published here, checks them all every WATCH_SCAN_MS against the index
 * (size, mtime, inode) and its own last view (ctime), and re-hashes what
 * changed or what a peer reports bad. A file that no longer matches its
 * manifest leaves the index at once (no peer gets it again) and its
 * dataset is damaged until it is published again. Loop thread only; stat
 * and hashing run on the pool, index writes on the loop. */
#ifndef SYNCBIT_WATCH_H
#define SYNCBIT_WATCH_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "agent/cache.h"
#include "common/hash.h"

#define WATCH_SCAN_MS	20000 /* every object's metadata checked this often */
#define WATCH_REPORT_MS 60000 /* after a wrong report about an object, others go unheard */

struct watch;

struct watch_hooks {
	void *arg;
	/* A file of dataset name no longer matches its manifest. Its object
	 * is out of the index already; the dataset needs fetching and
	 * publishing again (watch_dataset() then clears the damage). */
	void (*damaged)(void *arg, const char *name);
};

/* Start watching nothing yet. Without inotify (no kernel support, no
 * watches left) the periodic check alone remains, and says so once. */
int watch_new(uv_loop_t *loop, struct cache *c, const struct watch_hooks *hooks,
	      struct watch **out);
/* Stop; pool work in flight finishes first. watch_free(NULL) is a no-op. */
void watch_free(struct watch *w);
/* Dataset name is published from its current version in the cache index:
 * watch the objects of its files, and forget the damage it had. */
void watch_dataset(struct watch *w, const char *name);
/* Dataset name is gone from this node. */
void watch_forget(struct watch *w, const char *name);
/* A peer says block h from this node did not match h: check it again. */
void watch_block_reported(struct watch *w, const struct hash_id *h);
/* Why dataset name is damaged (one line naming the file, owned by w), or
 * NULL when nothing was found wrong with it. */
const char *watch_damage(const struct watch *w, const char *name);
/* 1 when dataset name's file of object id was found changed and the
 * dataset is not published again since (it must not be served). */
int watch_file_damaged(const struct watch *w, const char *name, const struct hash_id *id);
/* Add to dataset name's status object o "damage": watch_damage()'s line or
 * null, and while damaged "state": "repairing". */
void watch_status(const struct watch *w, const char *name, json_t *o);
/* Check every object now (tests; the timer does it every WATCH_SCAN_MS). */
void watch_scan(struct watch *w);

#endif
