/* The scheduler's state in LMDB (DATA/sched): one named database per
 * table, one write transaction at a time, the directory locked against a
 * second scheduler. */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "scheduler/state_int.h"

#define STATE_FORMAT 1
struct lmdb_state {
	struct state base;
	char *dir;
	MDB_env *env;
	MDB_dbi dbi[T_COUNT];
	MDB_txn *txn; /* the open write transaction */
	int group;    /* opened by state_begin(); its transaction at its first write */
	int failed;   /* first error inside the group */
	int lock_fd;
};

static int mdb_err(int rc)
{
	if (rc == 0)
		return 0;
	if (rc > 0 && rc < 4096)
		return -rc;
	log_error("scheduler state: %s", mdb_strerror(rc));
	return SB_ECACHE;
}

/* Double the map while more than half of it is used, before a write. */
static void grow_if_needed(struct lmdb_state *st)
{
	MDB_envinfo info;
	MDB_stat stat;
	if (mdb_env_info(st->env, &info) || mdb_env_stat(st->env, &stat))
		return;
	if ((info.me_last_pgno + 1) * (size_t)stat.ms_psize <= info.me_mapsize / 2)
		return;
	size_t grow = info.me_mapsize * 2;
	log_info("scheduler state: growing map to %zu MiB", grow >> 20);
	int rc = mdb_env_set_mapsize(st->env, grow);
	if (rc)
		log_warn("scheduler state: cannot grow map: %s", mdb_strerror(rc));
}

static int begin_txn(struct lmdb_state *st)
{
	grow_if_needed(st);
	return mdb_err(mdb_txn_begin(st->env, NULL, 0, &st->txn));
}

static int end_txn(struct lmdb_state *st, int rc)
{
	if (rc == 0)
		rc = mdb_err(mdb_txn_commit(st->txn));
	else
		mdb_txn_abort(st->txn);
	st->txn = NULL;
	return rc;
}

/* A group costs nothing until it writes: most heartbeats save nothing. */
static int lm_begin(struct lmdb_state *st)
{
	if (st->txn || st->group)
		fatal("scheduler state: nested transaction");
	st->failed = 0;
	st->group = 1;
	return 0;
}

static int lm_commit(struct lmdb_state *st)
{
	if (!st->group)
		return st->failed;
	st->group = 0;
	return st->txn ? end_txn(st, st->failed) : st->failed;
}

/* The group's transaction, opened at its first write. */
static int group_txn(struct lmdb_state *st)
{
	int rc;
	if (st->failed)
		return st->failed;
	if (!st->txn && (rc = begin_txn(st)) < 0)
		st->failed = rc;
	return st->failed;
}

/* Run one write: inside the group, or in a transaction of its own. */
static int write_op(struct lmdb_state *st, int del, enum table t, const void *k, size_t kl,
		    const void *v, size_t vl)
{
	int rc;
	if (st->group && (rc = group_txn(st)) < 0)
		return rc;
	if (!st->group && (rc = begin_txn(st)) < 0)
		return rc;
	MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
	rc = del ? mdb_del(st->txn, st->dbi[t], &key, NULL)
		 : mdb_put(st->txn, st->dbi[t], &key, &val, 0);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	rc = mdb_err(rc);
	if (st->group) {
		if (rc < 0)
			st->failed = rc;
		return rc;
	}
	return end_txn(st, rc);
}

static int del_prefix(struct lmdb_state *st, enum table t, const void *prefix, size_t plen)
{
	int rc, own = !st->group;
	if (!own && (rc = group_txn(st)) < 0)
		return rc;
	if (own && (rc = begin_txn(st)) < 0)
		return rc;
	MDB_cursor *cur;
	rc = mdb_cursor_open(st->txn, st->dbi[t], &cur);
	if (rc == 0) {
		MDB_val key = {plen, (void *)prefix}, val;
		/* After a delete, MDB_NEXT yields the record that followed. */
		int r = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
		while (r == 0 && key.mv_size >= plen && !memcmp(key.mv_data, prefix, plen)) {
			if ((r = mdb_cursor_del(cur, 0)) != 0)
				break;
			r = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
		}
		rc = r == MDB_NOTFOUND ? 0 : r;
		mdb_cursor_close(cur);
	}
	rc = mdb_err(rc);
	if (!own) {
		if (rc < 0)
			st->failed = rc;
		return rc;
	}
	return end_txn(st, rc);
}

/* Every record of t, in key order, in a read transaction. */
static int lm_scan(struct lmdb_state *st, enum table t, state_scan_cb cb, void *arg)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	if ((rc = mdb_cursor_open(txn, st->dbi[t], &cur)) != 0) {
		mdb_txn_abort(txn);
		return mdb_err(rc);
	}
	int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (r == 0) {
		if ((rc = cb(arg, t, k.mv_data, k.mv_size, v.mv_data, v.mv_size)) < 0)
			break;
		r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc < 0)
		return rc;
	return r == MDB_NOTFOUND ? 0 : mdb_err(r);
}

static void lm_free(struct lmdb_state *st);

static int ops_begin(struct state *st)
{
	return lm_begin((struct lmdb_state *)st);
}

static int ops_commit(struct state *st)
{
	return lm_commit((struct lmdb_state *)st);
}

static int ops_write(struct state *st, int del, enum table t, const void *k, size_t kl,
		     const void *v, size_t vl)
{
	return write_op((struct lmdb_state *)st, del, t, k, kl, v, vl);
}

static int ops_del_prefix(struct state *st, enum table t, const void *prefix, size_t plen)
{
	return del_prefix((struct lmdb_state *)st, t, prefix, plen);
}

static int ops_scan(struct state *st, enum table t, state_scan_cb cb, void *arg)
{
	return lm_scan((struct lmdb_state *)st, t, cb, arg);
}

static void ops_free(struct state *st)
{
	lm_free((struct lmdb_state *)st);
}

static const struct state_ops lmdb_ops = {ops_begin,	  ops_commit, ops_write,
					  ops_del_prefix, ops_scan,   ops_free};

static int take_lock(struct lmdb_state *st)
{
	char *p = path_join(st->dir, "lock");
	st->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(p);
	if (st->lock_fd < 0)
		return -errno;
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
	log_error("%s: another scheduler uses this data directory", st->dir);
	return rc;
}

static int open_tables(struct lmdb_state *st)
{
	int rc = mdb_txn_begin(st->env, NULL, 0, &st->txn);
	if (rc)
		return mdb_err(rc);
	for (int i = 0; i < T_COUNT && rc == 0; i++)
		rc = mdb_dbi_open(st->txn, state_table_names[i], MDB_CREATE, &st->dbi[i]);
	if (rc == 0) {
		uint32_t fmt = STATE_FORMAT;
		MDB_val key = {6, "format"}, val = {sizeof fmt, &fmt};
		rc = mdb_put(st->txn, st->dbi[T_META], &key, &val, 0);
	}
	return end_txn(st, mdb_err(rc));
}

int state_open(const char *dir, struct state **out)
{
	struct lmdb_state *st = xcalloc(1, sizeof *st);
	st->base.ops = &lmdb_ops;
	int rc;
	st->dir = xstrdup(dir);
	st->lock_fd = -1;
	*out = NULL;
	if ((rc = path_mkdirs(dir, 0700)) < 0 || (rc = take_lock(st)) < 0 ||
	    (rc = mdb_err(mdb_env_create(&st->env))) < 0)
		goto fail;
	mdb_env_set_maxdbs(st->env, T_COUNT);
	mdb_env_set_mapsize(st->env, STATE_MAP_SIZE);
	if ((rc = mdb_err(mdb_env_open(st->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0600))) < 0 ||
	    (rc = open_tables(st)) < 0)
		goto fail;
	*out = &st->base;
	return 0;
fail:
	lm_free(st);
	return rc;
}

static void lm_free(struct lmdb_state *st)
{
	if (!st)
		return;
	if (st->txn)
		mdb_txn_abort(st->txn);
	if (st->env)
		mdb_env_close(st->env);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	free(st->dir);
	free(st);
}
