/* Pull: bring one source's current version into the cache and publish it.
 * Lists the source and runs the fetch engine (agent/fetch.h) on it with the
 * whole source as the origin plan: every file whose change token matches
 * the last version and every block already durable (a crash resumes) is
 * reused, the rest is fetched in parallel into partial objects (hashing and
 * writing on the libuv pool); then the manifest is recorded and published.
 * Runs its own loop; call from one thread. */
#ifndef SYNCBIT_PULL_H
#define SYNCBIT_PULL_H

#include <signal.h>
#include <stdint.h>

#include "agent/cache.h"
#include "agent/layout.h"
#include "common/source/source.h"
#include "common/hash.h"

struct pull_options {
	const char *source; /* SOURCE argument */
	const char *target; /* absolute --to DIR, or NULL to fill the cache only */
	const char *name;   /* dataset name; NULL derives one */
	uint32_t block_size;
	int progress; /* draw progress on stderr */
	int verbose;  /* with progress: a line on stderr for each file stored */
	struct source_options src;
	/* How the target is laid out (agent/layout.h; its counters and path
	 * are filled); NULL publishes the tree as is. */
	struct layout *layout;
	/* Set (by a signal handler) to stop at the next consistent point: the
	 * files being fetched are finished and stored, no new one is started
	 * and nothing is published; the pull then fails with SB_ECANCELED. */
	volatile sig_atomic_t *stop;
};

struct pull_result {
	char *source;		    /* canonical */
	char *name;		    /* the dataset name used */
	uint64_t files;		    /* regular files */
	uint64_t bytes;		    /* their total size */
	uint64_t bytes_from_source; /* new blocks read from the source */
	uint64_t bytes_from_peers;
	uint64_t bytes_reused; /* blocks the cache already held */
	uint64_t bytes_read;   /* everything read from the source */
	uint64_t linked, copied, unchanged;
	double seconds;
	struct hash_id manifest_id;
	char *error; /* one line: what failed and where */
};

/* 0, or a negative error with r->error set. Free r with pull_result_close. */
int pull_run(struct cache *c, const struct pull_options *o, struct pull_result *r);
void pull_result_close(struct pull_result *r);

#endif
