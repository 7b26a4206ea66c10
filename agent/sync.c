#include "agent/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/path.h"

/* The longest sleep between looks at the clock and the stop flag: a
 * signal that lands just before a sleep waits at most this long. */
#define SLEEP_SLICE_NS 1000000000ll
#define LOCK_KEY_HEX   16

static int stopped(const struct sync_options *o)
{
	return o->stop && *o->stop;
}

char *sync_lock_path(const char *data_dir, const char *target)
{
	struct hash_id h;
	char hex[HASH_HEX_LEN + 1];
	hash_sha256(target, strlen(target), &h);
	hash_to_hex(&h, hex);
	return xasprintf("%s/locks/sync-%.*s.lock", data_dir, LOCK_KEY_HEX, hex);
}

static void sleep_ns(long long ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000ll, .tv_nsec = ns % 1000000000ll};
	nanosleep(&ts, NULL); /* a signal cuts it short: the caller looks again */
}

/* The pid the holder wrote, for the message; 0 if unknown. */
static long lock_holder(int fd)
{
	char b[32];
	ssize_t n = pread(fd, b, sizeof b - 1, 0);
	if (n <= 0)
		return 0;
	b[n] = '\0';
	return strtol(b, NULL, 10);
}

int sync_lock(const char *path, int wait, volatile sig_atomic_t *stop, int *fd)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		path_mkdirs(dir, 0755);
	}
	free(dir);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (*fd < 0)
		return -errno;
	int said = 0;
	while (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;
		if (err != EWOULDBLOCK && err != EINTR) {
			close(*fd);
			*fd = -1;
			return -err;
		}
		if (err == EWOULDBLOCK && !wait) {
			close(*fd);
			*fd = -1;
			return 0;
		}
		if (stop && *stop) {
			close(*fd);
			*fd = -1;
			return SB_ECANCELED;
		}
		if (!said++)
			log_warn("%s: another sync (pid %ld) is running; waiting for it", path,
				 lock_holder(*fd));
		sleep_ns(SYNC_LOCK_POLL_MS * 1000000ll);
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(*fd, 0) < 0 || pwrite(*fd, pid, (size_t)n, 0) != n)
		log_debug("%s: cannot record the pid", path);
	return 1;
}

void sync_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* releases the flock */
}

static void report(const struct sync_options *o, const struct sync_report *r)
{
	if (o->report)
		o->report(r, o->arg);
}

static enum sync_status item_status(const struct sync_options *o, int rc)
{
	return rc == SB_ECANCELED && stopped(o) ? SYNC_STOPPED : rc < 0 ? SYNC_FAILED : SYNC_OK;
}

/* Copy one item's images to the registry its target names. */
static int run_oci_item(struct cache *c, const struct sync_options *o, unsigned run,
			const struct sync_item *it)
{
	struct pull_options po = o->pull;
	struct sync_oci_options so = o->oci;
	struct pull_result pr;
	struct sync_oci_result r;
	po.source = it->source;
	po.target = NULL;
	po.layout = NULL;
	po.stop = o->stop;
	so.dest = it->target;
	int rc = sync_oci_run(c, &po, &so, &pr, &r);
	struct sync_report rep = {
	    .run = run,
	    .status = item_status(o, rc),
	    .item = it,
	    .result = pr.source ? &pr : NULL,
	    .oci = &r,
	    .error = r.error,
	};
	report(o, &rep);
	pull_result_close(&pr);
	sync_oci_result_close(&r);
	return rc;
}

/* Pull one item, then load it into Triton when asked. */
static int run_item(struct cache *c, const struct sync_options *o, unsigned run,
		    const struct sync_item *it)
{
	struct pull_options po = o->pull;
	struct layout l = o->layout;
	struct pull_result r;
	char *error = NULL, *name = NULL;
	l.path = NULL;
	if (it->repo && !o->layout.repo) {
		l.repo = it->repo;
		l.dataset = it->dataset;
	}
	if (o->list && l.kind == LAYOUT_TRITON && !o->layout.model)
		l.model = it->name;
	po.source = it->source;
	po.target = it->target;
	po.layout = &l;
	po.stop = o->stop;
	int rc = layout_check(&l, it->source, &error);
	if (rc == 0) {
		log_with(LOG_INFO, LOG_KV({"source", it->source}),
			 "sync run %u: fetching %s into %s", run, it->source, it->target);
		if (!po.name)
			po.name = name = layout_dataset_name(&l, it->source, it->target);
		rc = pull_run(c, &po, &r);
		if (rc < 0)
			error = xstrdup(r.error ? r.error : sb_strerror(rc));
		else if (o->triton_url && l.kind == LAYOUT_TRITON)
			rc = layout_triton_load(o->triton_url, l.model, &error);
	} else {
		memset(&r, 0, sizeof r);
	}
	struct sync_report rep = {
	    .run = run,
	    .status = item_status(o, rc),
	    .item = it,
	    .result = &r,
	    .layout = &l,
	    .error = error,
	};
	report(o, &rep);
	pull_result_close(&r);
	layout_close(&l);
	free(error);
	free(name);
	return rc;
}

static int load_items(const struct sync_options *o, unsigned run, struct sync_list *list)
{
	if (!o->list) {
		list->items = xcalloc(1, sizeof *list->items);
		list->n = 1;
		list->items[0].source = xstrdup(o->source);
		list->items[0].target = xstrdup(o->target);
		const char *base = strrchr(o->target, '/');
		list->items[0].name = xstrdup(base && base[1] ? base + 1 : o->target);
		return 0;
	}
	char *error = NULL;
	int rc = sync_list_load(o->list, o->target, &o->list_options, list, &error);
	if (rc < 0) {
		struct sync_report rep = {.run = run, .status = SYNC_FAILED, .error = error};
		report(o, &rep);
	}
	free(error);
	return rc;
}

struct sync_cache {
	const char *dir;
	uint64_t size;
};

/* One run: take the lock (or skip), open the cache, pull every item,
 * report each. */
static int run_once(const struct sync_cache *sc, const struct sync_options *o, unsigned run,
		    int wait)
{
	int fd = -1;
	int rc = sync_lock(o->lock_path, wait, o->stop, &fd);
	if (rc <= 0) {
		char *error = rc == 0 ? xasprintf("another sync holds %s", o->lock_path)
			      : rc == SB_ECANCELED
				  ? xstrdup("stopped while waiting for the lock")
				  : xasprintf("%s: cannot lock: %s", o->lock_path, sb_strerror(rc));
		struct sync_report rep = {
		    .run = run,
		    .status = rc == 0		   ? SYNC_SKIPPED
			      : rc == SB_ECANCELED ? SYNC_STOPPED
						   : SYNC_FAILED,
		    .error = error,
		};
		report(o, &rep);
		free(error);
		return rc;
	}
	struct sync_list list = {0};
	struct cache *c = NULL;
	int status = load_items(o, run, &list);
	if (status == 0 && list.n && (status = cache_open(sc->dir, sc->size, &c)) < 0) {
		char *error = xasprintf("cache %s: %s", sc->dir, sb_strerror(status));
		struct sync_report rep = {
		    .run = run, .status = stopped(o) ? SYNC_STOPPED : SYNC_FAILED, .error = error};
		report(o, &rep);
		free(error);
	}
	for (size_t i = 0; c && i < list.n && !stopped(o); i++) {
		if (sync_oci_is_dest(list.items[i].target))
			rc = run_oci_item(c, o, run, &list.items[i]);
		else
			rc = run_item(c, o, run, &list.items[i]);
		if (rc < 0 && status == 0)
			status = rc;
	}
	cache_free(c);
	sync_list_close(&list);
	sync_unlock(fd);
	return stopped(o) ? SB_ECANCELED : status;
}

/* Sleep until the wall clock reaches t; 0, or -1 when stopped first. The
 * clock is read again after every slice, so a clock step is followed. */
static int sleep_until(const struct sync_options *o, time_t t)
{
	for (;;) {
		if (stopped(o))
			return -1;
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		long long left = ((long long)t - now.tv_sec) * 1000000000ll - now.tv_nsec;
		if (left <= 0)
			return 0;
		sleep_ns(left < SLEEP_SLICE_NS ? left : SLEEP_SLICE_NS);
	}
}

int sync_run(const char *data_dir, uint64_t cache_size, const struct sync_options *o)
{
	const struct sync_cache sc = {.dir = data_dir, .size = cache_size};
	unsigned run = 0;
	int at_start = o->run_on_start;
	for (size_t i = 0; i < o->nschedules; i++)
		at_start |= o->schedules[i].reboot;
	if (o->once)
		return run_once(&sc, o, ++run, 1);
	if (at_start)
		run_once(&sc, o, ++run, 0);
	while (!stopped(o)) {
		time_t next;
		if (cron_next_of(o->schedules, o->nschedules, time(NULL), &next) < 0) {
			log_info("sync: no further run is scheduled; waiting for a signal");
			while (!stopped(o))
				sleep_ns(SLEEP_SLICE_NS);
			break;
		}
		char when[64];
		struct tm tm;
		strftime(when, sizeof when, "%Y-%m-%d %H:%M %Z", localtime_r(&next, &tm));
		log_info("sync: next run at %s", when);
		if (sleep_until(o, next) < 0)
			break;
		run_once(&sc, o, ++run, 0);
	}
	return 0;
}
