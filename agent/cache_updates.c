/* Index updates that blocking work gathers on a pool thread and the loop
 * thread applies: new object mtimes and LFRU accesses. */
#include "agent/cache.h"
#include "agent/cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/log.h"

int cache_object_restamp(struct cache *c, const struct hash_id *id, int64_t mtime_ns,
			 struct cache_updates *u)
{
	char path[4096];
	struct stat st;
	struct timespec ts[2] = {
	    {.tv_nsec = UTIME_OMIT},
	    {.tv_sec = mtime_ns / 1000000000ll, .tv_nsec = mtime_ns % 1000000000ll},
	};
	cache_object_path(c, id, path, sizeof path);
	if (utimensat(AT_FDCWD, path, ts, 0) < 0 || stat(path, &st) < 0)
		return -errno;
	if (u->nstamps == u->stamps_cap) {
		u->stamps_cap = u->stamps_cap ? 2 * u->stamps_cap : 8;
		u->stamps = xrealloc(u->stamps, u->stamps_cap * sizeof *u->stamps);
	}
	struct cache_stamp *s = &u->stamps[u->nstamps++];
	s->id = *id;
	s->mtime_ns = st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
	s->ino = st.st_ino;
	return 0;
}

void cache_updates_touch(struct cache_updates *u, const struct hash_id *ids, size_t n)
{
	if (n == 0) /* an empty version: nothing to touch (and no array yet) */
		return;
	if (u->ntouched + n > u->touched_cap) {
		u->touched_cap =
		    u->ntouched + n > 2 * u->touched_cap ? u->ntouched + n : 2 * u->touched_cap;
		u->touched = xrealloc(u->touched, u->touched_cap * sizeof *u->touched);
	}
	memcpy(u->touched + u->ntouched, ids, n * sizeof *ids);
	u->ntouched += n;
}

static int stamp(struct cache *c, MDB_txn *txn, const struct cache_stamp *s)
{
	struct object_rec rec;
	int rc = cache_object_rec(txn, c, &s->id, &rec, NULL);
	if (rc == MDB_NOTFOUND || (rc == 0 && rec.ino != s->ino))
		return 0;
	if (rc)
		return rc;
	rec.mtime_ns = s->mtime_ns;
	return cache_object_put_header(txn, c, &s->id, &rec);
}

static int touch(struct cache *c, MDB_txn *txn, const struct hash_id *id, double now)
{
	struct object_rec rec;
	int rc = cache_object_rec(txn, c, id, &rec, NULL);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (rec.pins == 0 && (rc = cache_lfru_del(txn, c, &rec, id)))
		return rc;
	double dt = now - rec.t_last;
	if (dt < 0)
		dt = 0;
	rec.crf = 1.0 + exp2(-LFRU_LAMBDA * dt) * rec.crf;
	rec.t_last = now;
	rec.tier = TIER_MAIN;
	if ((rc = cache_object_put_header(txn, c, id, &rec)))
		return rc;
	return rec.pins == 0 ? cache_lfru_put(txn, c, &rec, id) : 0;
}

struct apply_arg {
	const struct cache_stamp *stamps;
	size_t nstamps;
	const struct hash_id *touched;
	size_t ntouched;
	double now;
};

static int txn_apply(struct cache *c, MDB_txn *txn, void *arg)
{
	const struct apply_arg *a = arg;
	int rc = 0;
	for (size_t i = 0; i < a->nstamps && !rc; i++)
		rc = stamp(c, txn, &a->stamps[i]);
	for (size_t i = 0; i < a->ntouched && !rc; i++)
		rc = touch(c, txn, &a->touched[i], a->now);
	return rc;
}

int cache_updates_apply(struct cache *c, struct cache_updates *u)
{
	if (!u->nstamps && !u->ntouched)
		return 0;
	struct apply_arg a = {u->stamps, u->nstamps, u->touched, u->ntouched, cache_now(c)};
	int rc = cache_write_txn(c, txn_apply, &a);
	u->nstamps = u->ntouched = 0;
	return rc;
}

void cache_updates_close(struct cache_updates *u)
{
	free(u->stamps);
	free(u->touched);
	memset(u, 0, sizeof *u);
}

int cache_object_set_mtime(struct cache *c, const struct hash_id *id, int64_t mtime_ns)
{
	struct cache_updates u = {0};
	int rc = cache_object_restamp(c, id, mtime_ns, &u);
	if (rc == 0)
		rc = cache_updates_apply(c, &u);
	cache_updates_close(&u);
	return rc;
}

int cache_object_touch(struct cache *c, const struct hash_id *ids, size_t n)
{
	struct apply_arg a = {.touched = ids, .ntouched = n, .now = cache_now(c)};
	return cache_write_txn(c, txn_apply, &a);
}
