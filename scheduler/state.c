#include "scheduler/state.h"

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

#define STATE_FORMAT 1
#define NAME_MAX_LEN 1024 /* longest node or dataset name kept as a key */

enum table { T_NODES, T_DATASETS, T_VERSIONS, T_HASHES, T_HAVE, T_META, T_READERS, T_COUNT };

static const char *const table_names[T_COUNT] = {"nodes", "datasets", "versions", "hashes",
						 "have",  "meta",     "readers"};

struct state {
	char *dir;
	MDB_env *env;
	MDB_dbi dbi[T_COUNT];
	MDB_txn *txn; /* the open write transaction */
	int group;    /* opened by state_begin() */
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
static void grow_if_needed(struct state *st)
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

static int begin_txn(struct state *st)
{
	grow_if_needed(st);
	return mdb_err(mdb_txn_begin(st->env, NULL, 0, &st->txn));
}

static int end_txn(struct state *st, int rc)
{
	if (rc == 0)
		rc = mdb_err(mdb_txn_commit(st->txn));
	else
		mdb_txn_abort(st->txn);
	st->txn = NULL;
	return rc;
}

int state_begin(struct state *st)
{
	if (st->txn)
		fatal("scheduler state: nested transaction");
	st->failed = 0;
	int rc = begin_txn(st);
	st->group = rc == 0;
	return rc;
}

int state_commit(struct state *st)
{
	if (!st->group)
		return st->failed;
	st->group = 0;
	return end_txn(st, st->failed);
}

/* Run one write: inside the group, or in a transaction of its own. */
static int write_op(struct state *st, int del, enum table t, const void *k, size_t kl,
		    const void *v, size_t vl)
{
	int rc;
	if (st->group && st->failed)
		return st->failed;
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

static int del_prefix(struct state *st, enum table t, const void *prefix, size_t plen)
{
	int rc, own = !st->group;
	if (st->group && st->failed)
		return st->failed;
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

static int take_lock(struct state *st)
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

static int open_tables(struct state *st)
{
	int rc = mdb_txn_begin(st->env, NULL, 0, &st->txn);
	if (rc)
		return mdb_err(rc);
	for (int i = 0; i < T_COUNT && rc == 0; i++)
		rc = mdb_dbi_open(st->txn, table_names[i], MDB_CREATE, &st->dbi[i]);
	if (rc == 0) {
		uint32_t fmt = STATE_FORMAT;
		MDB_val key = {6, "format"}, val = {sizeof fmt, &fmt};
		rc = mdb_put(st->txn, st->dbi[T_META], &key, &val, 0);
	}
	return end_txn(st, mdb_err(rc));
}

int state_open(const char *dir, struct state **out)
{
	struct state *st = xcalloc(1, sizeof *st);
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
	*out = st;
	return 0;
fail:
	state_free(st);
	return rc;
}

void state_free(struct state *st)
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

/* ---- records ------------------------------------------------------------ */

static void hash_key(uint8_t *key, const struct hash_id *id, uint32_t block)
{
	memcpy(key, id->b, HASH_LEN);
	for (int i = 0; i < 4; i++)
		key[HASH_LEN + i] = (uint8_t)(block >> (24 - 8 * i));
}

/* Key of a report: version id, then the node name. */
static size_t have_key(struct buf *k, const struct hash_id *id, const char *node)
{
	buf_append(k, id->b, HASH_LEN);
	buf_append_str(k, node);
	return k->len;
}

static void append_packed(struct buf *b, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	buf_reserve(b, n);
	b->len += protobuf_c_message_pack(m, b->ptr + b->len);
}

int state_put_node(struct state *st, const char *name, int64_t last_seen_ms,
		   const Syncbit__Register *reg)
{
	struct buf v = BUF_INIT;
	uint64_t t = (uint64_t)last_seen_ms;
	buf_append(&v, &t, sizeof t);
	append_packed(&v, &reg->base);
	int rc = write_op(st, 0, T_NODES, name, strlen(name), v.ptr, v.len);
	buf_close(&v);
	return rc;
}

int state_put_dataset(struct state *st, const char *name, const struct hash_id *version,
		      const Syncbit__Admin *def)
{
	struct buf v = BUF_INIT;
	buf_append(&v, version->b, HASH_LEN);
	append_packed(&v, &def->base);
	int rc = write_op(st, 0, T_DATASETS, name, strlen(name), v.ptr, v.len);
	buf_close(&v);
	return rc;
}

int state_del_node(struct state *st, const char *name)
{
	return write_op(st, 1, T_NODES, name, strlen(name), NULL, 0);
}

int state_del_dataset(struct state *st, const char *name)
{
	return write_op(st, 1, T_DATASETS, name, strlen(name), NULL, 0);
}

int state_put_version(struct state *st, const struct hash_id *id, const uint8_t *manifest,
		      size_t len)
{
	return write_op(st, 0, T_VERSIONS, id->b, HASH_LEN, manifest, len);
}

int state_del_version(struct state *st, const struct hash_id *id)
{
	int rc = write_op(st, 1, T_VERSIONS, id->b, HASH_LEN, NULL, 0);
	if (rc == 0)
		rc = del_prefix(st, T_HASHES, id->b, HASH_LEN);
	if (rc == 0)
		rc = del_prefix(st, T_HAVE, id->b, HASH_LEN);
	if (rc == 0)
		rc = del_prefix(st, T_READERS, id->b, HASH_LEN);
	return rc;
}

int state_put_hash(struct state *st, const struct hash_id *id, uint32_t block, const uint8_t *hash)
{
	uint8_t key[HASH_LEN + 4];
	hash_key(key, id, block);
	return write_op(st, 0, T_HASHES, key, sizeof key, hash, HASH_LEN);
}

int state_put_have(struct state *st, const struct hash_id *id, const char *node,
		   const Syncbit__VersionState *vs)
{
	struct buf k = BUF_INIT, v = BUF_INIT;
	have_key(&k, id, node);
	append_packed(&v, &vs->base);
	int rc = write_op(st, 0, T_HAVE, k.ptr, k.len, v.ptr, v.len);
	buf_close(&k);
	buf_close(&v);
	return rc;
}

int state_del_have(struct state *st, const struct hash_id *id, const char *node)
{
	struct buf k = BUF_INIT;
	have_key(&k, id, node);
	int rc = write_op(st, 1, T_HAVE, k.ptr, k.len, NULL, 0);
	buf_close(&k);
	return rc;
}

int state_put_readers(struct state *st, const struct hash_id *id, const char *node,
		      const uint8_t *bits, size_t len)
{
	struct buf k = BUF_INIT;
	have_key(&k, id, node);
	int rc = write_op(st, 0, T_READERS, k.ptr, k.len, bits, len);
	buf_close(&k);
	return rc;
}

/* ---- loading ------------------------------------------------------------ */

static char *key_string(const MDB_val *k, size_t skip)
{
	if (k->mv_size <= skip || k->mv_size - skip > NAME_MAX_LEN)
		return NULL;
	char *s = xstrndup((const char *)k->mv_data + skip, k->mv_size - skip);
	return strlen(s) == k->mv_size - skip ? s : (free(s), NULL);
}

static int load_record(const struct state_loader *l, enum table t, const MDB_val *k,
		       const MDB_val *v)
{
	const uint8_t *kd = k->mv_data, *vd = v->mv_data;
	struct hash_id id;
	int rc = SB_EPROTO;
	char *name = NULL;
	if (t == T_VERSIONS && k->mv_size == HASH_LEN) {
		memcpy(id.b, kd, HASH_LEN);
		rc = l->version ? l->version(l->arg, &id, vd, v->mv_size) : 0;
	} else if (t == T_HASHES && k->mv_size == HASH_LEN + 4 && v->mv_size == HASH_LEN) {
		memcpy(id.b, kd, HASH_LEN);
		uint32_t b = (uint32_t)kd[HASH_LEN] << 24 | (uint32_t)kd[HASH_LEN + 1] << 16 |
			     (uint32_t)kd[HASH_LEN + 2] << 8 | kd[HASH_LEN + 3];
		rc = l->hash ? l->hash(l->arg, &id, b, vd) : 0;
	} else if (t == T_DATASETS && v->mv_size >= HASH_LEN && (name = key_string(k, 0))) {
		memcpy(id.b, vd, HASH_LEN);
		Syncbit__Admin *a =
		    syncbit__admin__unpack(NULL, v->mv_size - HASH_LEN, vd + HASH_LEN);
		if (a)
			rc = l->dataset ? l->dataset(l->arg, name, &id, a) : 0;
		syncbit__admin__free_unpacked(a, NULL);
	} else if (t == T_NODES && v->mv_size >= 8 && (name = key_string(k, 0))) {
		uint64_t seen;
		memcpy(&seen, vd, 8);
		Syncbit__Register *r = syncbit__register__unpack(NULL, v->mv_size - 8, vd + 8);
		if (r)
			rc = l->node ? l->node(l->arg, name, (int64_t)seen, r) : 0;
		syncbit__register__free_unpacked(r, NULL);
	} else if (t == T_READERS && (name = key_string(k, HASH_LEN))) {
		memcpy(id.b, kd, HASH_LEN);
		rc = l->readers ? l->readers(l->arg, &id, name, vd, v->mv_size) : 0;
	} else if (t == T_HAVE && (name = key_string(k, HASH_LEN))) {
		memcpy(id.b, kd, HASH_LEN);
		Syncbit__VersionState *vs = syncbit__version_state__unpack(NULL, v->mv_size, vd);
		if (vs)
			rc = l->have ? l->have(l->arg, &id, name, vs) : 0;
		syncbit__version_state__free_unpacked(vs, NULL);
	}
	free(name);
	if (rc == SB_EPROTO) {
		log_warn("scheduler state: skipping an unreadable %s record", table_names[t]);
		rc = 0;
	}
	return rc;
}

static int load_table(struct state *st, enum table t, const struct state_loader *l)
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
		if ((rc = load_record(l, t, &k, &v)) < 0)
			break;
		r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc < 0)
		return rc;
	return r == MDB_NOTFOUND ? 0 : mdb_err(r);
}

int state_load(struct state *st, const struct state_loader *l)
{
	static const enum table order[] = {T_VERSIONS, T_HASHES, T_DATASETS,
					   T_NODES,    T_HAVE,	 T_READERS};
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		int rc = load_table(st, order[i], l);
		if (rc < 0)
			return rc;
	}
	return 0;
}
