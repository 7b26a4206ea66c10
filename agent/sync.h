/* Sync: the rsync + cron sidecar as one process. Each run pulls every item
 * (a source into a target directory) with pull_run, or copies images to a
 * registry when the target is oci:// (agent/sync_oci.h); runs happen at start,
 * when a cron schedule fires (agent/cron.h), or once. One run at a time
 * across processes (flock on a lock file); a failed run is reported and the
 * schedule goes on; a stop request lets the files in flight finish and
 * ends cleanly. List files name many items (sync_list.c). Blocking, one
 * thread; results go to a report callback (modules never print). */
#ifndef SYNCBIT_SYNC_H
#define SYNCBIT_SYNC_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/cache.h"
#include "agent/cron.h"
#include "agent/layout.h"
#include "agent/pull.h"
#include "agent/sync_oci.h"
#include "common/buf.h"

/* A list file is read whole; one larger is refused. */
#define SYNC_LIST_MAX_BYTES (16u << 20)
/* How often a waiting process tries the lock again. */
#define SYNC_LOCK_POLL_MS 200

struct sync_item {
	char *source; /* as pull takes it: a path or a source URI */
	char *target; /* the directory it is published into */
	char *name;   /* last component of the repo or path (Triton model name) */
	char *repo;   /* "org/name" for hub items, else NULL */
	int dataset;
	unsigned line; /* 1-based line (plain) or item number (JSON); 0 if none */
};

struct sync_list {
	struct sync_item *items;
	size_t n;
};

enum sync_platform { SYNC_HUGGINGFACE, SYNC_MODELSCOPE };

struct sync_list_options {
	enum sync_platform platform; /* of bare repo ids in a plain list */
	int datasets;		     /* bare repo ids name datasets */
	int flat;		     /* every item's target is dst itself (hf-cache, triton) */
};

/* Parse a list: a JSON array of {"platform": "huggingface"|"modelscope",
 * "organization", "model_name" | "dataset_name"[, "revision"]}, or plain
 * text with one item a line ('#' comments and blank lines skipped): a repo
 * id "org/name[@rev]" of o->platform, a source URI (hf://, ms://, s3://,
 * file://, http(s)://) or an absolute path. Hub items go to dst/org/name,
 * others to dst/<basename> (dst itself with o->flat). 0, or SB_ECONFIG with
 * *error (heap, one line, "line N: why" / "item N: why"). A repeated target
 * keeps its first line. */
int sync_list_parse(const char *text, size_t len, const char *dst,
		    const struct sync_list_options *o, struct sync_list *out, char **error);
/* Read and parse the file at path; errors are prefixed with the path. */
int sync_list_load(const char *path, const char *dst, const struct sync_list_options *o,
		   struct sync_list *out, char **error);
void sync_list_close(struct sync_list *l);

enum sync_status { SYNC_OK, SYNC_FAILED, SYNC_SKIPPED, SYNC_STOPPED };

/* One line's worth: an item's pull in run `run`, or a run skipped or
 * failed as a whole (item NULL). */
struct sync_report {
	unsigned run;
	enum sync_status status;
	const struct sync_item *item;
	const struct pull_result *result;  /* NULL unless the pull ran */
	const struct layout *layout;	   /* counters and path after the pull */
	const struct sync_oci_result *oci; /* an oci:// target's images, or NULL */
	const char *error;		   /* one line, or NULL */
};

struct sync_options {
	/* Either one item (source into target) or a list file re-read at
	 * every run, its items under target. */
	const char *source;
	const char *target;
	const char *list;
	struct sync_list_options list_options;
	const struct cron *schedules;
	size_t nschedules;
	int run_on_start; /* also when a schedule is @reboot */
	int once;	  /* one run, waiting for the lock, then return */
	const char *lock_path;
	struct pull_options pull;    /* template; source, target, name, layout set per item */
	struct layout layout;	     /* template; prune = --delete */
	const char *triton_url;	     /* load each model after its pull */
	struct sync_oci_options oci; /* an oci:// target; dest set per item */
	volatile sig_atomic_t *stop;
	void (*report)(const struct sync_report *r, void *arg);
	void *arg;
};

/* Run until *stop (or, with once, after one run). The cache in data_dir
 * is open only during runs, so other processes may use it in between.
 * Returns 0, or with once the run's status: the first item's error,
 * SB_ECANCELED when stopped. */
int sync_run(const char *data_dir, uint64_t cache_size, const struct sync_options *o);

/* The lock file for syncs into target: DATA/locks/sync-<hash>.lock. Heap. */
char *sync_lock_path(const char *data_dir, const char *target);
/* Take the lock at path. 1 with *fd held, 0 when another process holds it
 * and !wait, SB_ECANCELED when *stop was set while waiting, or -errno. */
int sync_lock(const char *path, int wait, volatile sig_atomic_t *stop, int *fd);
void sync_unlock(int fd);

#endif
