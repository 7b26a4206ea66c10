#include "agent/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

#define CACHE_MAP_SIZE (64ull << 30)
#define CACHE_MAX_DBS 8
/* LFRU decay: a reference loses half its weight per hour. */
#define LFRU_LAMBDA (1.0 / 3600.0)
#define LOC_OBJECT 0
#define LOC_PARTIAL 1
#define TIER_PROBATION 0
#define TIER_MAIN 1

struct cache {
	char *dir;
	MDB_env *env;
	MDB_dbi blocks, objects, lfru, partials, pblocks, manifests, datasets,
		meta;
	uint64_t capacity;
	double clock;
	int lock_fd;
	struct cache_partial *open_partials; /* not swept as orphans */
};

struct cache_partial {
	struct cache *c;
	struct hash_id key;
	uint64_t size;
	uint32_t block_size;
	uint64_t nblocks;
	struct hash_id *have; /* zero hash = missing */
	int fd;
	int indexed; /* the index has a record of this partial */
	struct cache_partial *next_open, **prev_open;
	int sealed, exists;
	uint32_t mode;
	struct hash_id object;
	uint8_t *hashes;
	struct stat st;
	char path[4096];
};

/* Location value in the blocks table (a dupsort set per hash). */
struct block_val {
	uint8_t kind;
	uint8_t id[HASH_LEN];
	uint8_t offset_be[8];
	uint8_t len_be[4];
} __attribute__((packed));

struct object_rec {
	uint64_t size;
	uint32_t block_size;
	uint32_t pins;
	uint64_t nblocks;
	uint32_t tier;
	uint32_t mode;
	double crf;
	double t_last;
	int64_t mtime_ns;
	uint64_t ino;
	/* followed by nblocks * HASH_LEN bytes of block hashes */
};

struct partial_rec {
	uint64_t size;
	uint32_t block_size;
	uint32_t reserved;
};

struct lfru_key {
	uint8_t tier;
	uint8_t key_be[8];
	uint8_t id[HASH_LEN];
} __attribute__((packed));

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static int mdb_err(int rc)
{
	if (rc == 0)
		return 0;
	if (rc > 0 && rc < 4096)
		return -rc;
	log_error("cache index: %s", mdb_strerror(rc));
	return SB_ECACHE;
}

static double now_seconds(const struct cache *c)
{
	if (c->clock > 0)
		return c->clock;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void cache_set_clock(struct cache *c, double now)
{
	c->clock = now;
}

double cache_lfru_key(double crf, double t)
{
	return LFRU_LAMBDA * t + log2(crf);
}

/* Doubles >= 0 sort like their bit patterns; LFRU keys are never negative
 * because crf >= 1 and t >= 0. */
static uint64_t sortable_double(double d)
{
	uint64_t u;
	if (d < 0)
		d = 0;
	memcpy(&u, &d, sizeof u);
	return u;
}

/* Runs fn inside a write transaction, growing the map and retrying when the
 * index is full. fn returns 0, a negative code, or an MDB error (> 0). */
typedef int (*txn_fn)(struct cache *c, MDB_txn *txn, void *arg);

static int write_txn(struct cache *c, txn_fn fn, void *arg)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		MDB_txn *txn;
		int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
		if (rc)
			return mdb_err(rc);
		rc = fn(c, txn, arg);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc != MDB_MAP_FULL)
			return rc > 0 ? mdb_err(rc) : rc;
		MDB_envinfo info;
		mdb_env_info(c->env, &info);
		size_t grow = info.me_mapsize * 2;
		log_warn("cache index full; growing map to %zu MiB", grow >> 20);
		if ((rc = mdb_env_set_mapsize(c->env, grow)))
			return mdb_err(rc);
	}
	return SB_ECACHE;
}

static int meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t *v)
{
	MDB_val key = {strlen(k), (void *)k}, val;
	int rc = mdb_get(txn, dbi, &key, &val);
	*v = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	if (val.mv_size == 8)
		memcpy(v, val.mv_data, 8);
	return 0;
}

static int meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t v)
{
	MDB_val key = {strlen(k), (void *)k}, val = {8, &v};
	return mdb_put(txn, dbi, &key, &val, 0);
}

static int open_dbs(struct cache *c)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
	if (rc)
		return mdb_err(rc);
	struct {
		const char *name;
		MDB_dbi *dbi;
		unsigned flags;
	} t[] = {
		{"blocks", &c->blocks, MDB_DUPSORT},
		{"objects", &c->objects, 0},
		{"lfru", &c->lfru, 0},
		{"partials", &c->partials, 0},
		{"pblocks", &c->pblocks, 0},
		{"manifests", &c->manifests, 0},
		{"datasets", &c->datasets, 0},
		{"meta", &c->meta, 0},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		rc = mdb_dbi_open(txn, t[i].name, t[i].flags | MDB_CREATE,
				  t[i].dbi);
		if (rc) {
			mdb_txn_abort(txn);
			return mdb_err(rc);
		}
	}
	return mdb_err(mdb_txn_commit(txn));
}

static int take_lock(struct cache *c)
{
	char *p = path_join(c->dir, "lock");
	c->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(p);
	if (c->lock_fd < 0)
		return -errno;
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno != EWOULDBLOCK)
		return -errno;
	log_info("%s: another syncbit process uses this data directory; waiting",
		 c->dir);
	return flock(c->lock_fd, LOCK_EX) == 0 ? 0 : -errno;
}

/* objects/00..ff exist from the start, so storing an object never walks
 * and creates its directory. */
static int make_fanout(const char *objs)
{
	char last[4200];
	struct stat st;
	snprintf(last, sizeof last, "%s/ff", objs);
	if (stat(last, &st) == 0)
		return 0;
	for (int i = 0; i < 256; i++) {
		char d[4200];
		snprintf(d, sizeof d, "%s/%02x", objs, i);
		if (mkdir(d, 0755) < 0 && errno != EEXIST)
			return -errno;
	}
	return path_fsync_dir(objs);
}

int cache_open(const char *data_dir, uint64_t capacity, struct cache **out)
{
	struct cache *c = xcalloc(1, sizeof *c);
	int rc;
	c->dir = xstrdup(data_dir);
	c->capacity = capacity;
	c->lock_fd = -1;
	*out = NULL;
	char *idx = path_join(data_dir, "index");
	char *objs = path_join(data_dir, "objects");
	char *part = path_join(data_dir, "partial");
	if ((rc = path_mkdirs(idx, 0700)) < 0 ||
	    (rc = path_mkdirs(objs, 0755)) < 0 ||
	    (rc = path_mkdirs(part, 0700)) < 0)
		goto fail;
	if ((rc = take_lock(c)) < 0)
		goto fail;
	if ((rc = make_fanout(objs)) < 0)
		goto fail;
	if ((rc = mdb_err(mdb_env_create(&c->env))) < 0)
		goto fail;
	mdb_env_set_maxdbs(c->env, CACHE_MAX_DBS);
	mdb_env_set_mapsize(c->env, CACHE_MAP_SIZE);
	rc = mdb_env_open(c->env, idx, MDB_NOTLS | MDB_NOMETASYNC, 0600);
	if (rc) {
		rc = mdb_err(rc);
		goto fail;
	}
	int dead = 0;
	mdb_reader_check(c->env, &dead);
	if ((rc = open_dbs(c)) < 0)
		goto fail;
	free(idx);
	free(objs);
	free(part);
	*out = c;
	return 0;
fail:
	free(idx);
	free(objs);
	free(part);
	cache_free(c);
	return rc;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	if (c->env)
		mdb_env_close(c->env);
	/* Unlock explicitly: a forked child holds a duplicate of lock_fd
	 * (O_CLOEXEC only acts on exec), and the flock lasts until every
	 * duplicate is closed, so close() alone could keep the directory
	 * locked for as long as that child lives. */
	if (c->lock_fd >= 0) {
		flock(c->lock_fd, LOCK_UN);
		close(c->lock_fd);
	}
	free(c->dir);
	free(c);
}

const char *cache_dir(const struct cache *c)
{
	return c->dir;
}

void cache_set_capacity(struct cache *c, uint64_t capacity)
{
	c->capacity = capacity;
}

void cache_object_path(const struct cache *c, const struct hash_id *id,
		       char *out, size_t len)
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(id, hex);
	snprintf(out, len, "%s/objects/%.2s/%s", c->dir, hex, hex);
}

static void partial_path(const struct cache *c, const struct hash_id *key,
			 char *out, size_t len)
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(key, hex);
	snprintf(out, len, "%s/partial/%s", c->dir, hex);
}

static void loc_path(const struct cache *c, const struct block_val *v,
		     char *out, size_t len)
{
	struct hash_id id;
	memcpy(id.b, v->id, HASH_LEN);
	if (v->kind == LOC_OBJECT)
		cache_object_path(c, &id, out, len);
	else
		partial_path(c, &id, out, len);
}

int cache_block_find(struct cache *c, const struct hash_id *h,
		     struct cache_block_loc *loc)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	MDB_val key = {HASH_LEN, (void *)h->b}, val;
	rc = mdb_get(txn, c->blocks, &key, &val);
	if (rc == 0 && val.mv_size == sizeof(struct block_val)) {
		struct block_val v;
		memcpy(&v, val.mv_data, sizeof v);
		loc_path(c, &v, loc->path, sizeof loc->path);
		loc->offset = get_be64(v.offset_be);
		loc->len = get_be32(v.len_be);
		rc = 1;
	} else if (rc == MDB_NOTFOUND) {
		rc = 0;
	} else {
		rc = mdb_err(rc ? rc : MDB_CORRUPTED);
	}
	mdb_txn_abort(txn);
	return rc;
}

/* ---- objects ---- */

static int object_get(MDB_txn *txn, struct cache *c, const struct hash_id *id,
		      struct object_rec *rec, const uint8_t **hashes)
{
	MDB_val key = {HASH_LEN, (void *)id->b}, val;
	int rc = mdb_get(txn, c->objects, &key, &val);
	if (rc)
		return rc;
	if (val.mv_size < sizeof *rec)
		return MDB_CORRUPTED;
	memcpy(rec, val.mv_data, sizeof *rec);
	if (val.mv_size != sizeof *rec + rec->nblocks * HASH_LEN)
		return MDB_CORRUPTED;
	if (hashes)
		*hashes = (const uint8_t *)val.mv_data + sizeof *rec;
	return 0;
}

/* Rewrite the fixed part of an object record in place. */
static int object_put_header(MDB_txn *txn, struct cache *c,
			     const struct hash_id *id,
			     const struct object_rec *rec)
{
	MDB_val key = {HASH_LEN, (void *)id->b}, val;
	int rc = mdb_get(txn, c->objects, &key, &val);
	if (rc)
		return rc;
	size_t n = val.mv_size;
	uint8_t *tmp = xmalloc(n);
	memcpy(tmp, val.mv_data, n);
	memcpy(tmp, rec, sizeof *rec);
	MDB_val nv = {n, tmp};
	rc = mdb_put(txn, c->objects, &key, &nv, 0);
	free(tmp);
	return rc;
}

static void lfru_key_of(const struct object_rec *rec, const struct hash_id *id,
			struct lfru_key *k)
{
	k->tier = (uint8_t)rec->tier;
	put_be64(k->key_be, sortable_double(cache_lfru_key(rec->crf, rec->t_last)));
	memcpy(k->id, id->b, HASH_LEN);
}

static int lfru_del(MDB_txn *txn, struct cache *c, const struct object_rec *rec,
		    const struct hash_id *id)
{
	struct lfru_key k;
	lfru_key_of(rec, id, &k);
	MDB_val key = {sizeof k, &k};
	int rc = mdb_del(txn, c->lfru, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int lfru_put(MDB_txn *txn, struct cache *c, const struct object_rec *rec,
		    const struct hash_id *id)
{
	struct lfru_key k;
	lfru_key_of(rec, id, &k);
	MDB_val key = {sizeof k, &k}, val = {0, NULL};
	return mdb_put(txn, c->lfru, &key, &val, 0);
}

static int block_loc_del(MDB_txn *txn, struct cache *c, const uint8_t *hash,
			 const struct block_val *v)
{
	MDB_val key = {HASH_LEN, (void *)hash}, val = {sizeof *v, (void *)v};
	int rc = mdb_del(txn, c->blocks, &key, &val);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int block_loc_put(MDB_txn *txn, struct cache *c, const uint8_t *hash,
			 const struct block_val *v)
{
	MDB_val key = {HASH_LEN, (void *)hash}, val = {sizeof *v, (void *)v};
	int rc = mdb_put(txn, c->blocks, &key, &val, MDB_NODUPDATA);
	return rc == MDB_KEYEXIST ? 0 : rc;
}

static void block_val_make(struct block_val *v, int kind,
			   const struct hash_id *id, uint64_t offset,
			   uint32_t len)
{
	v->kind = (uint8_t)kind;
	memcpy(v->id, id->b, HASH_LEN);
	put_be64(v->offset_be, offset);
	put_be32(v->len_be, len);
}

/* Remove an object's records (not its file). */
static int object_unindex(MDB_txn *txn, struct cache *c,
			  const struct hash_id *id, uint64_t *freed)
{
	struct object_rec rec;
	const uint8_t *hashes;
	int rc = object_get(txn, c, id, &rec, &hashes);
	if (rc)
		return rc;
	/* Copy: deleting from the blocks table may move the pages hashes
	 * points into. */
	uint8_t *h = xmalloc(rec.nblocks * HASH_LEN + 1);
	memcpy(h, hashes, rec.nblocks * HASH_LEN);
	for (uint64_t i = 0; i < rec.nblocks && !rc; i++) {
		struct block_val v;
		block_val_make(&v, LOC_OBJECT, id, i * rec.block_size,
			       manifest_block_len(rec.size, rec.block_size, i));
		rc = block_loc_del(txn, c, h + i * HASH_LEN, &v);
	}
	free(h);
	if (!rc && rec.pins == 0)
		rc = lfru_del(txn, c, &rec, id);
	MDB_val key = {HASH_LEN, (void *)id->b};
	if (!rc)
		rc = mdb_del(txn, c->objects, &key, NULL);
	uint64_t used;
	if (!rc)
		rc = meta_get_u64(txn, c->meta, "used", &used);
	if (!rc)
		rc = meta_put_u64(txn, c->meta, "used",
				  used >= rec.size ? used - rec.size : 0);
	if (!rc && rec.pins) {
		uint64_t pinned;
		rc = meta_get_u64(txn, c->meta, "pinned", &pinned);
		if (!rc)
			rc = meta_put_u64(txn, c->meta, "pinned",
					  pinned >= rec.size ? pinned - rec.size : 0);
	}
	if (freed)
		*freed = rec.size;
	return rc;
}

static int txn_unindex(struct cache *c, MDB_txn *txn, void *arg)
{
	int rc = object_unindex(txn, c, arg, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int cache_object_remove(struct cache *c, const struct hash_id *id)
{
	int rc = write_txn(c, txn_unindex, (void *)id);
	char path[4096];
	cache_object_path(c, id, path, sizeof path);
	if (unlink(path) < 0 && errno != ENOENT && !rc)
		rc = -errno;
	return rc;
}

int cache_object_check(struct cache *c, const struct hash_id *id)
{
	MDB_txn *txn;
	struct object_rec rec;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	rc = object_get(txn, c, id, &rec, NULL);
	mdb_txn_abort(txn);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return mdb_err(rc);
	char path[4096];
	struct stat st;
	cache_object_path(c, id, path, sizeof path);
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == rec.size &&
	    st.st_ino == rec.ino &&
	    st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec == rec.mtime_ns)
		return 1;
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(id, hex);
	log_warn("cache object %s changed or vanished on disk; it will be fetched again",
		 hex);
	rc = cache_object_remove(c, id);
	return rc < 0 ? rc : 0;
}

struct mtime_arg {
	const struct hash_id *id;
	struct stat st;
};

static int txn_set_mtime(struct cache *c, MDB_txn *txn, void *arg)
{
	struct mtime_arg *a = arg;
	struct object_rec rec;
	int rc = object_get(txn, c, a->id, &rec, NULL);
	if (rc)
		return rc;
	rec.mtime_ns = a->st.st_mtim.tv_sec * 1000000000ll + a->st.st_mtim.tv_nsec;
	rec.ino = a->st.st_ino;
	return object_put_header(txn, c, a->id, &rec);
}

int cache_object_set_mtime(struct cache *c, const struct hash_id *id,
			   int64_t mtime_ns)
{
	char path[4096];
	struct mtime_arg a = {.id = id};
	struct timespec ts[2] = {
		{.tv_nsec = UTIME_OMIT},
		{.tv_sec = mtime_ns / 1000000000ll, .tv_nsec = mtime_ns % 1000000000ll},
	};
	cache_object_path(c, id, path, sizeof path);
	if (utimensat(AT_FDCWD, path, ts, 0) < 0 || stat(path, &a.st) < 0)
		return -errno;
	return write_txn(c, txn_set_mtime, &a);
}

struct touch_arg {
	const struct hash_id *ids;
	size_t n;
	double now;
};

static int txn_touch(struct cache *c, MDB_txn *txn, void *arg)
{
	struct touch_arg *a = arg;
	for (size_t i = 0; i < a->n; i++) {
		struct object_rec rec;
		int rc = object_get(txn, c, &a->ids[i], &rec, NULL);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc)
			return rc;
		if (rec.pins == 0 && (rc = lfru_del(txn, c, &rec, &a->ids[i])))
			return rc;
		double dt = a->now - rec.t_last;
		if (dt < 0)
			dt = 0;
		rec.crf = 1.0 + exp2(-LFRU_LAMBDA * dt) * rec.crf;
		rec.t_last = a->now;
		rec.tier = TIER_MAIN;
		if ((rc = object_put_header(txn, c, &a->ids[i], &rec)))
			return rc;
		if (rec.pins == 0 && (rc = lfru_put(txn, c, &rec, &a->ids[i])))
			return rc;
	}
	return 0;
}

int cache_object_touch(struct cache *c, const struct hash_id *ids, size_t n)
{
	struct touch_arg a = {ids, n, now_seconds(c)};
	return write_txn(c, txn_touch, &a);
}

/* ---- partials ---- */

static int load_partial(struct cache_partial *p, int *fresh, int *had_rec)
{
	struct cache *c = p->c;
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	MDB_val key = {HASH_LEN, p->key.b}, val;
	*fresh = 1;
	rc = mdb_get(txn, c->partials, &key, &val);
	*had_rec = rc == 0;
	if (rc == 0 && val.mv_size == sizeof(struct partial_rec)) {
		struct partial_rec pr;
		memcpy(&pr, val.mv_data, sizeof pr);
		if (pr.size == p->size && pr.block_size == p->block_size)
			*fresh = 0;
	}
	if (!*fresh) {
		MDB_cursor *cur;
		uint8_t k[HASH_LEN + 8];
		memcpy(k, p->key.b, HASH_LEN);
		put_be64(k + HASH_LEN, 0);
		MDB_val ck = {sizeof k, k}, cv;
		mdb_cursor_open(txn, c->pblocks, &cur);
		rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
		while (rc == 0 && ck.mv_size == sizeof k &&
		       memcmp(ck.mv_data, p->key.b, HASH_LEN) == 0) {
			uint64_t idx = get_be64((uint8_t *)ck.mv_data + HASH_LEN);
			if (idx < p->nblocks && cv.mv_size == HASH_LEN)
				memcpy(p->have[idx].b, cv.mv_data, HASH_LEN);
			rc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	return 0;
}

/* Drop block locations and records left by an older attempt at this
 * partial, then record it afresh. */
static int txn_partial_reset(struct cache *c, MDB_txn *txn, void *arg)
{
	struct cache_partial *p = arg;
	struct buf found = BUF_INIT; /* (idx, hash) pairs */
	MDB_cursor *cur;
	uint8_t k[HASH_LEN + 8];
	memcpy(k, p->key.b, HASH_LEN);
	put_be64(k + HASH_LEN, 0);
	MDB_val ck = {sizeof k, k}, cv;
	/* The old locations were recorded with the old attempt's size and
	 * block size (a reset is often caused by their change); computed
	 * with the new ones they would not match and would stay behind,
	 * pointing at wrong offsets of the recreated file. */
	struct partial_rec old = {p->size, p->block_size, 0};
	MDB_val pk = {HASH_LEN, p->key.b}, pv;
	if (mdb_get(txn, c->partials, &pk, &pv) == 0 && pv.mv_size == sizeof old)
		memcpy(&old, pv.mv_data, sizeof old);
	if (manifest_check_block_size(old.block_size) < 0)
		old.block_size = p->block_size;
	int rc = mdb_cursor_open(txn, c->pblocks, &cur);
	if (rc)
		return rc;
	rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
	while (rc == 0 && ck.mv_size == sizeof k &&
	       memcmp(ck.mv_data, p->key.b, HASH_LEN) == 0 &&
	       cv.mv_size == HASH_LEN) {
		buf_append(&found, (uint8_t *)ck.mv_data + HASH_LEN, 8);
		buf_append(&found, cv.mv_data, HASH_LEN);
		rc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	rc = rc == MDB_NOTFOUND ? 0 : rc;
	for (size_t off = 0; !rc && off < found.len; off += 8 + HASH_LEN) {
		uint64_t idx = get_be64(found.ptr + off);
		struct block_val v;
		block_val_make(&v, LOC_PARTIAL, &p->key, idx * old.block_size,
			       manifest_block_len(old.size, old.block_size, idx));
		rc = block_loc_del(txn, c, found.ptr + off + 8, &v);
		memcpy(k + HASH_LEN, found.ptr + off, 8);
		MDB_val dk = {sizeof k, k};
		if (!rc)
			rc = mdb_del(txn, c->pblocks, &dk, NULL);
	}
	buf_close(&found);
	if (rc)
		return rc;
	MDB_val key = {HASH_LEN, p->key.b};
	struct partial_rec pr = {p->size, p->block_size, 0};
	MDB_val val = {sizeof pr, &pr};
	rc = mdb_put(txn, c->partials, &key, &val, 0);
	if (rc == 0)
		p->indexed = 1;
	return rc;
}

int cache_partial_open(struct cache *c, const struct hash_id *key,
		       uint64_t size, uint32_t block_size,
		       struct cache_partial **out)
{
	struct cache_partial *p = xcalloc(1, sizeof *p);
	int rc, fresh, had_rec;
	p->c = c;
	p->key = *key;
	p->size = size;
	p->block_size = block_size;
	p->nblocks = manifest_nblocks(size, block_size);
	p->have = xcalloc(p->nblocks ? p->nblocks : 1, sizeof *p->have);
	p->fd = -1;
	partial_path(c, key, p->path, sizeof p->path);
	p->next_open = c->open_partials;
	if (p->next_open)
		p->next_open->prev_open = &p->next_open;
	p->prev_open = &c->open_partials;
	c->open_partials = p;
	*out = NULL;
	if ((rc = load_partial(p, &fresh, &had_rec)) < 0)
		goto fail;
	struct stat st;
	if (!fresh && (stat(p->path, &st) < 0 || (uint64_t)st.st_size != size)) {
		memset(p->have, 0, p->nblocks * sizeof *p->have);
		fresh = 1;
	}
	if (fresh) {
		/* A stale record (its file gone or of another size) is reset;
		 * a new partial gets its record with its first commit, so a
		 * small file costs no index transaction of its own. */
		if (had_rec && (rc = write_txn(c, txn_partial_reset, p)) < 0)
			goto fail;
	} else {
		p->indexed = 1;
	}
	/* A fresh partial starts empty, whatever an earlier attempt left. */
	p->fd = open(p->path, O_RDWR | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0),
		     0600);
	if (p->fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (fresh && ftruncate(p->fd, (off_t)size) < 0) {
		rc = -errno;
		goto fail;
	}
	*out = p;
	return 0;
fail:
	cache_partial_close(p);
	return rc;
}

int cache_partial_fd(const struct cache_partial *p)
{
	return p->fd;
}

uint64_t cache_partial_nblocks(const struct cache_partial *p)
{
	return p->nblocks;
}

int cache_partial_have(const struct cache_partial *p, uint64_t idx,
		       struct hash_id *h)
{
	if (idx >= p->nblocks || hash_is_zero(&p->have[idx]))
		return 0;
	if (h)
		*h = p->have[idx];
	return 1;
}

int cache_partial_sync(struct cache_partial *p)
{
	return fdatasync(p->fd) == 0 ? 0 : -errno;
}

struct commit_arg {
	struct cache_partial *p;
	const uint64_t *idx;
	const struct hash_id *hashes;
	size_t n;
};

static int txn_commit(struct cache *c, MDB_txn *txn, void *arg)
{
	struct commit_arg *a = arg;
	struct cache_partial *p = a->p;
	struct partial_rec pr = {p->size, p->block_size, 0};
	MDB_val pk = {HASH_LEN, p->key.b}, pv = {sizeof pr, &pr};
	int prc = mdb_put(txn, c->partials, &pk, &pv, 0);
	if (prc)
		return prc;
	for (size_t i = 0; i < a->n; i++) {
		uint64_t idx = a->idx[i];
		uint8_t k[HASH_LEN + 8];
		memcpy(k, p->key.b, HASH_LEN);
		put_be64(k + HASH_LEN, idx);
		MDB_val key = {sizeof k, k},
			val = {HASH_LEN, (void *)a->hashes[i].b};
		int rc = mdb_put(txn, c->pblocks, &key, &val, 0);
		if (rc)
			return rc;
		struct block_val v;
		block_val_make(&v, LOC_PARTIAL, &p->key, idx * p->block_size,
			       manifest_block_len(p->size, p->block_size, idx));
		if ((rc = block_loc_put(txn, c, a->hashes[i].b, &v)))
			return rc;
	}
	return 0;
}

int cache_partial_commit(struct cache_partial *p, const uint64_t *idx,
			 const struct hash_id *hashes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (idx[i] >= p->nblocks)
			return SB_EPROTO;
	struct commit_arg a = {p, idx, hashes, n};
	int rc = write_txn(p->c, txn_commit, &a);
	if (rc < 0)
		return rc;
	p->indexed = 1;
	for (size_t i = 0; i < n; i++)
		p->have[idx[i]] = hashes[i];
	return 0;
}

static int txn_drop_partial(struct cache *c, MDB_txn *txn,
			    struct cache_partial *p)
{
	if (!p->indexed)
		return 0;
	for (uint64_t i = 0; i < p->nblocks; i++) {
		if (hash_is_zero(&p->have[i]))
			continue;
		struct block_val v;
		block_val_make(&v, LOC_PARTIAL, &p->key, i * p->block_size,
			       manifest_block_len(p->size, p->block_size, i));
		int rc = block_loc_del(txn, c, p->have[i].b, &v);
		if (rc)
			return rc;
		uint8_t k[HASH_LEN + 8];
		memcpy(k, p->key.b, HASH_LEN);
		put_be64(k + HASH_LEN, i);
		MDB_val key = {sizeof k, k};
		rc = mdb_del(txn, c->pblocks, &key, NULL);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
	}
	MDB_val key = {HASH_LEN, p->key.b};
	int rc = mdb_del(txn, c->partials, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Index one sealed partial as an object. An object record that exists but
 * whose file was found changed is replaced in place, keeping its pins. */
static int finish_one(struct cache *c, MDB_txn *txn, struct cache_partial *p)
{
	int rc = txn_drop_partial(c, txn, p);
	if (rc || p->exists)
		return rc;
	struct object_rec rec = {
		.size = p->size,
		.block_size = p->block_size,
		.nblocks = p->nblocks,
		.tier = TIER_PROBATION,
		.mode = p->mode,
		.crf = 1.0,
		.t_last = now_seconds(c),
		.mtime_ns = p->st.st_mtim.tv_sec * 1000000000ll + p->st.st_mtim.tv_nsec,
		.ino = p->st.st_ino,
	};
	struct object_rec old;
	int replacing = object_get(txn, c, &p->object, &old, NULL) == 0;
	if (replacing) {
		rec.pins = old.pins;
		if (old.pins == 0 && (rc = lfru_del(txn, c, &old, &p->object)))
			return rc;
	}
	size_t n = sizeof rec + p->nblocks * HASH_LEN;
	uint8_t *val = xmalloc(n);
	memcpy(val, &rec, sizeof rec);
	memcpy(val + sizeof rec, p->hashes, p->nblocks * HASH_LEN);
	MDB_val key = {HASH_LEN, p->object.b}, v = {n, val};
	rc = mdb_put(txn, c->objects, &key, &v, 0);
	free(val);
	if (rc)
		return rc;
	for (uint64_t i = 0; i < p->nblocks; i++) {
		struct block_val bv;
		block_val_make(&bv, LOC_OBJECT, &p->object, i * p->block_size,
			       manifest_block_len(p->size, p->block_size, i));
		if ((rc = block_loc_put(txn, c, p->hashes + i * HASH_LEN, &bv)))
			return rc;
	}
	if (rec.pins == 0 && (rc = lfru_put(txn, c, &rec, &p->object)))
		return rc;
	if (replacing)
		return 0;
	uint64_t used;
	if ((rc = meta_get_u64(txn, c->meta, "used", &used)))
		return rc;
	return meta_put_u64(txn, c->meta, "used", used + p->size);
}

struct finish_many {
	struct cache_partial **ps;
	size_t n;
};

static int txn_finish_many(struct cache *c, MDB_txn *txn, void *arg)
{
	struct finish_many *a = arg;
	for (size_t i = 0; i < a->n; i++) {
		int rc = finish_one(c, txn, a->ps[i]);
		if (rc)
			return rc;
	}
	return 0;
}

void cache_partial_set_have(struct cache_partial *p, uint64_t idx,
			    const struct hash_id *h)
{
	if (idx < p->nblocks)
		p->have[idx] = *h;
}

const struct hash_id *cache_partial_object_id(const struct cache_partial *p)
{
	return p->sealed ? &p->object : NULL;
}

static int object_indexed(struct cache *c, const struct hash_id *id)
{
	MDB_txn *txn;
	struct object_rec rec;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	rc = object_get(txn, c, id, &rec, NULL);
	mdb_txn_abort(txn);
	return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
}

/* Is the object indexed with a file that still looks as stored? Read-only,
 * so it may run on a pool thread. */
static int object_intact(struct cache *c, const struct hash_id *id)
{
	MDB_txn *txn;
	struct object_rec rec;
	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
		return 0;
	int rc = object_get(txn, c, id, &rec, NULL);
	mdb_txn_abort(txn);
	if (rc)
		return 0;
	char path[4096];
	struct stat st;
	cache_object_path(c, id, path, sizeof path);
	return stat(path, &st) == 0 && (uint64_t)st.st_size == rec.size &&
	       st.st_ino == rec.ino &&
	       st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec == rec.mtime_ns;
}

int cache_partial_seal(struct cache_partial *p, uint32_t mode,
		       int64_t mtime_ns, int durable)
{
	struct cache *c = p->c;
	p->mode = mode & 07777;
	free(p->hashes);
	p->hashes = xmalloc(p->nblocks * HASH_LEN + 1);
	for (uint64_t i = 0; i < p->nblocks; i++) {
		if (hash_is_zero(&p->have[i]))
			return SB_EPROTO;
		memcpy(p->hashes + i * HASH_LEN, p->have[i].b, HASH_LEN);
	}
	manifest_file_object_id(p->size, p->block_size, p->hashes, p->nblocks,
				&p->object);
	p->exists = object_intact(c, &p->object);
	if (!p->exists) {
		char obj[4096];
		struct timespec ts[2] = {
			{.tv_nsec = UTIME_OMIT},
			{.tv_sec = mtime_ns / 1000000000ll,
			 .tv_nsec = mtime_ns % 1000000000ll},
		};
		cache_object_path(c, &p->object, obj, sizeof obj);
		if (fchmod(p->fd, p->mode) < 0 || futimens(p->fd, ts) < 0 ||
		    (durable && fsync(p->fd) < 0) || fstat(p->fd, &p->st) < 0)
			return -errno;
		char *dir = xstrdup(obj);
		*strrchr(dir, '/') = '\0';
		int rc = 0;
		if (rename(p->path, obj) < 0) {
			rc = -errno;
			if (rc == -ENOENT && (rc = path_mkdirs(dir, 0755)) == 0 &&
			    rename(p->path, obj) < 0)
				rc = -errno;
		}
		if (rc == 0 && durable)
			rc = path_fsync_dir(dir);
		free(dir);
		if (rc < 0)
			return rc;
	}
	p->sealed = 1;
	return 0;
}

int cache_sync_objects(struct cache *c)
{
	char *objs = path_join(c->dir, "objects");
	int fd = open(objs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(objs);
	if (fd < 0)
		return -errno;
	int rc = syncfs(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int cache_partials_finish(struct cache_partial **ps, size_t n)
{
	if (n == 0)
		return 0;
	struct finish_many a = {ps, n};
	for (size_t i = 0; i < n; i++)
		if (!ps[i]->sealed)
			return SB_EPROTO;
	int rc = write_txn(ps[0]->c, txn_finish_many, &a);
	for (size_t i = 0; i < n; i++) {
		if (rc == 0 && ps[i]->exists)
			unlink(ps[i]->path);
		cache_partial_close(ps[i]);
	}
	return rc;
}

int cache_partial_finish(struct cache_partial *p, uint32_t mode,
			 int64_t mtime_ns, struct hash_id *object_id)
{
	int rc = cache_partial_seal(p, mode, mtime_ns, 1);
	if (rc < 0) {
		cache_partial_close(p);
		return rc;
	}
	*object_id = p->object;
	return cache_partials_finish(&p, 1);
}

void cache_partial_close(struct cache_partial *p)
{
	if (!p)
		return;
	if (p->fd >= 0)
		close(p->fd);
	if (p->prev_open) {
		*p->prev_open = p->next_open;
		if (p->next_open)
			p->next_open->prev_open = p->prev_open;
	}
	free(p->have);
	free(p->hashes);
	free(p);
}

static int txn_discard(struct cache *c, MDB_txn *txn, void *arg)
{
	return txn_drop_partial(c, txn, arg);
}

void cache_partial_discard(struct cache_partial *p)
{
	if (!p)
		return;
	int rc = write_txn(p->c, txn_discard, p);
	if (rc < 0)
		log_warn("%s: cannot drop partial records: %s", p->path,
			 sb_strerror(rc));
	unlink(p->path);
	cache_partial_close(p);
}

/* ---- datasets and manifests ---- */

struct dataset_arg {
	const char *name, *source, *target;
	const struct hash_id *manifest_id;
	const void *manifest;
	size_t manifest_len;
	uint64_t now;
};

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(a, b, HASH_LEN);
}

/* Sorted unique object ids referenced by a manifest. */
static int manifest_objects(const void *data, size_t len, struct hash_id **ids,
			    size_t *n)
{
	Manifest *m;
	int rc = manifest_decode(data, len, &m);
	*ids = NULL;
	*n = 0;
	if (rc < 0)
		return rc;
	struct hash_id *v = xcalloc(m->n_files ? m->n_files : 1, sizeof *v);
	size_t k = 0;
	for (size_t i = 0; i < m->n_files; i++) {
		FileEntry *f = m->files[i];
		if (f->type != SYNCBIT__FILE_TYPE__FILE_REGULAR)
			continue;
		manifest_file_object_id(f->size, m->block_size,
					f->block_hashes.data,
					f->block_hashes.len / HASH_LEN, &v[k++]);
	}
	manifest_free(m);
	qsort(v, k, sizeof *v, cmp_hash);
	size_t u = 0;
	for (size_t i = 0; i < k; i++)
		if (u == 0 || memcmp(&v[u - 1], &v[i], HASH_LEN) != 0)
			v[u++] = v[i];
	*ids = v;
	*n = u;
	return 0;
}

static int contains(const struct hash_id *v, size_t n, const struct hash_id *x)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(&v[mid], x, HASH_LEN);
		if (c == 0)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int adjust_pin(MDB_txn *txn, struct cache *c, const struct hash_id *id,
		      int delta)
{
	struct object_rec rec;
	int rc = object_get(txn, c, id, &rec, NULL);
	if (rc)
		return rc;
	if (delta < 0 && rec.pins == 0)
		return 0;
	uint32_t before = rec.pins;
	if (before == 0 && (rc = lfru_del(txn, c, &rec, id)))
		return rc;
	rec.pins = delta > 0 ? rec.pins + 1 : rec.pins - 1;
	if (rec.pins == 0 && (rc = lfru_put(txn, c, &rec, id)))
		return rc;
	if ((rc = object_put_header(txn, c, id, &rec)))
		return rc;
	if ((before == 0) != (rec.pins == 0)) {
		uint64_t pinned;
		if ((rc = meta_get_u64(txn, c->meta, "pinned", &pinned)))
			return rc;
		pinned = rec.pins ? pinned + rec.size
				  : (pinned >= rec.size ? pinned - rec.size : 0);
		rc = meta_put_u64(txn, c->meta, "pinned", pinned);
	}
	return rc;
}

static int decode_dataset(const char *name, const MDB_val *val,
			  struct cache_dataset *out)
{
	const uint8_t *p = val->mv_data;
	size_t n = val->mv_size;
	if (n < HASH_LEN + 8 + 2 || p[n - 1] != '\0')
		return SB_ECACHE;
	memset(out, 0, sizeof *out);
	memcpy(out->manifest_id.b, p, HASH_LEN);
	memcpy(&out->updated_unix, p + HASH_LEN, 8);
	const char *s = (const char *)p + HASH_LEN + 8;
	size_t sl = strlen(s);
	if (HASH_LEN + 8 + sl + 1 >= n)
		return SB_ECACHE;
	out->name = xstrdup(name);
	out->source = xstrdup(s);
	out->target = xstrdup(s + sl + 1);
	return 0;
}

/* Does any dataset other than `except` use manifest id? */
static int manifest_in_use(MDB_txn *txn, struct cache *c,
			   const struct hash_id *id, const char *except)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int used = 0;
	if (mdb_cursor_open(txn, c->datasets, &cur))
		return 1;
	int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size == strlen(except) &&
		    memcmp(k.mv_data, except, k.mv_size) == 0)
			continue;
		if (v.mv_size >= HASH_LEN && memcmp(v.mv_data, id->b, HASH_LEN) == 0) {
			used = 1;
			break;
		}
	}
	mdb_cursor_close(cur);
	return used;
}

/* For an object both versions reference: pins == 0 means its record was
 * dropped (changed on disk, corrupt) and made anew since the dataset pinned
 * it, so the dataset's pin went with the old record. */
static int repin_refetched(MDB_txn *txn, struct cache *c,
			   const struct hash_id *id)
{
	struct object_rec rec;
	int rc = object_get(txn, c, id, &rec, NULL);
	if (rc)
		return rc;
	return rec.pins ? 0 : adjust_pin(txn, c, id, +1);
}

/* Move dataset `name` from its old manifest (if any) to new_ids, adjusting
 * pins and dropping the old manifest when nothing else uses it. */
static int repin(MDB_txn *txn, struct cache *c, const char *name,
		 const struct hash_id *new_manifest, const struct hash_id *new_ids,
		 size_t n_new)
{
	MDB_val key = {strlen(name), (void *)name}, val;
	int rc = mdb_get(txn, c->datasets, &key, &val);
	struct hash_id *old_ids = NULL;
	size_t n_old = 0;
	struct hash_id old_manifest;
	int had_old = 0;
	if (rc == 0 && val.mv_size >= HASH_LEN) {
		memcpy(old_manifest.b, val.mv_data, HASH_LEN);
		had_old = 1;
		MDB_val mk = {HASH_LEN, old_manifest.b}, mv;
		if (mdb_get(txn, c->manifests, &mk, &mv) == 0)
			manifest_objects(mv.mv_data, mv.mv_size, &old_ids, &n_old);
	} else if (rc != MDB_NOTFOUND) {
		return rc;
	}
	rc = 0;
	for (size_t i = 0; i < n_new && !rc; i++)
		if (!contains(old_ids, n_old, &new_ids[i]))
			rc = adjust_pin(txn, c, &new_ids[i], +1);
		else
			rc = repin_refetched(txn, c, &new_ids[i]);
	for (size_t i = 0; i < n_old && !rc; i++)
		if (!contains(new_ids, n_new, &old_ids[i])) {
			rc = adjust_pin(txn, c, &old_ids[i], -1);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
	free(old_ids);
	if (!rc && had_old &&
	    (!new_manifest || memcmp(&old_manifest, new_manifest, HASH_LEN)) &&
	    !manifest_in_use(txn, c, &old_manifest, name)) {
		MDB_val mk = {HASH_LEN, old_manifest.b};
		rc = mdb_del(txn, c->manifests, &mk, NULL);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	return rc;
}

static int txn_dataset_set(struct cache *c, MDB_txn *txn, void *arg)
{
	struct dataset_arg *a = arg;
	struct hash_id *ids;
	size_t n;
	int rc = manifest_objects(a->manifest, a->manifest_len, &ids, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		struct object_rec rec;
		rc = object_get(txn, c, &ids[i], &rec, NULL);
		if (rc == MDB_NOTFOUND)
			rc = SB_ENOTFOUND; /* caller published an unknown object */
	}
	if (!rc)
		rc = repin(txn, c, a->name, a->manifest_id, ids, n);
	free(ids);
	if (rc)
		return rc;
	MDB_val mk = {HASH_LEN, (void *)a->manifest_id->b},
		mv = {a->manifest_len, (void *)a->manifest};
	if ((rc = mdb_put(txn, c->manifests, &mk, &mv, 0)))
		return rc;
	struct buf b = BUF_INIT;
	buf_append(&b, a->manifest_id->b, HASH_LEN);
	buf_append(&b, &a->now, 8);
	buf_append(&b, a->source, strlen(a->source) + 1);
	buf_append(&b, a->target, strlen(a->target) + 1);
	MDB_val dk = {strlen(a->name), (void *)a->name}, dv = {b.len, b.ptr};
	rc = mdb_put(txn, c->datasets, &dk, &dv, 0);
	buf_close(&b);
	return rc;
}

int cache_dataset_set(struct cache *c, const char *name, const char *source,
		      const char *target, const struct hash_id *manifest_id,
		      const void *manifest, size_t manifest_len)
{
	struct dataset_arg a = {name, source, target, manifest_id, manifest,
				manifest_len, (uint64_t)time(NULL)};
	return write_txn(c, txn_dataset_set, &a);
}

int cache_dataset_get(struct cache *c, const char *name,
		      struct cache_dataset *out)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	MDB_val key = {strlen(name), (void *)name}, val;
	rc = mdb_get(txn, c->datasets, &key, &val);
	if (rc == 0)
		rc = decode_dataset(name, &val, out) == 0 ? 1 : SB_ECACHE;
	else
		rc = rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
	mdb_txn_abort(txn);
	return rc;
}

int cache_dataset_find_target(struct cache *c, const char *target,
			      struct cache_dataset *out)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int found = 0;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	if ((rc = mdb_cursor_open(txn, c->datasets, &cur))) {
		mdb_txn_abort(txn);
		return mdb_err(rc);
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0 && !found; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char *name = xstrndup(k.mv_data, k.mv_size);
		struct cache_dataset d;
		if (decode_dataset(name, &v, &d) == 0) {
			if (strcmp(d.target, target) == 0) {
				*out = d;
				found = 1;
			} else {
				cache_dataset_close(&d);
			}
		}
		free(name);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return found;
}

static int txn_dataset_remove(struct cache *c, MDB_txn *txn, void *arg)
{
	const char *name = arg;
	int rc = repin(txn, c, name, NULL, NULL, 0);
	if (rc)
		return rc;
	MDB_val key = {strlen(name), (void *)name};
	rc = mdb_del(txn, c->datasets, &key, NULL);
	return rc == MDB_NOTFOUND ? SB_ENOTFOUND : rc;
}

int cache_dataset_remove(struct cache *c, const char *name)
{
	return write_txn(c, txn_dataset_remove, (void *)name);
}

void cache_dataset_close(struct cache_dataset *d)
{
	free(d->name);
	free(d->source);
	free(d->target);
	memset(d, 0, sizeof *d);
}

int cache_manifest_get(struct cache *c, const struct hash_id *id,
		       uint8_t **data, size_t *len)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	MDB_val key = {HASH_LEN, (void *)id->b}, val;
	rc = mdb_get(txn, c->manifests, &key, &val);
	if (rc == 0) {
		*data = xmalloc(val.mv_size);
		memcpy(*data, val.mv_data, val.mv_size);
		*len = val.mv_size;
		rc = 1;
	} else {
		rc = rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
	}
	mdb_txn_abort(txn);
	return rc;
}

/* ---- eviction and statistics ---- */

int cache_stats(struct cache *c, struct cache_stats *out)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_err(rc);
	MDB_stat st;
	memset(out, 0, sizeof *out);
	rc = meta_get_u64(txn, c->meta, "used", &out->used);
	if (!rc)
		rc = meta_get_u64(txn, c->meta, "pinned", &out->pinned);
	if (!rc && !(rc = mdb_stat(txn, c->objects, &st)))
		out->objects = st.ms_entries;
	out->capacity = c->capacity;
	mdb_txn_abort(txn);
	return mdb_err(rc);
}

struct evict_arg {
	uint64_t target;
	uint64_t objects, bytes;
	struct buf victims; /* ids whose files to unlink after commit */
};

static int txn_evict(struct cache *c, MDB_txn *txn, void *arg)
{
	struct evict_arg *a = arg;
	uint64_t used;
	int rc = meta_get_u64(txn, c->meta, "used", &used);
	a->objects = a->bytes = 0;
	buf_reset(&a->victims);
	while (!rc && used > a->target) {
		MDB_cursor *cur;
		MDB_val k, v;
		if ((rc = mdb_cursor_open(txn, c->lfru, &cur)))
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		struct hash_id id;
		if (rc == 0 && k.mv_size == sizeof(struct lfru_key))
			memcpy(id.b, ((struct lfru_key *)k.mv_data)->id, HASH_LEN);
		else if (rc == 0)
			rc = MDB_CORRUPTED;
		if (rc == 0) /* a stale entry must not loop forever */
			rc = mdb_cursor_del(cur, 0);
		mdb_cursor_close(cur);
		if (rc == MDB_NOTFOUND) {
			rc = 0; /* everything left is pinned */
			break;
		}
		if (rc)
			break;
		uint64_t freed = 0;
		rc = object_unindex(txn, c, &id, &freed);
		if (rc == MDB_NOTFOUND) {
			rc = 0;
			continue;
		}
		used = used >= freed ? used - freed : 0;
		a->objects++;
		a->bytes += freed;
		buf_append(&a->victims, id.b, HASH_LEN);
	}
	return rc;
}

/* Remove object and partial files that the index does not know: left by a
 * crash between a rename and its index commit. Runs under the data
 * directory lock, so no other process is mid-write. */
static void sweep_orphans(struct cache *c)
{
	char *objs = path_join(c->dir, "objects");
	DIR *top = opendir(objs);
	struct dirent *e;
	while (top && (e = readdir(top))) {
		if (strlen(e->d_name) != 2)
			continue;
		char *sub = path_join(objs, e->d_name);
		DIR *d = opendir(sub);
		struct dirent *f;
		while (d && (f = readdir(d))) {
			struct hash_id id;
			if (hash_from_hex(f->d_name, &id) < 0 ||
			    object_indexed(c, &id) != 0)
				continue;
			char *p = path_join(sub, f->d_name);
			log_info("removing unindexed object %s", p);
			unlink(p);
			free(p);
		}
		if (d)
			closedir(d);
		free(sub);
	}
	if (top)
		closedir(top);
	free(objs);
	char *part = path_join(c->dir, "partial");
	DIR *pd = opendir(part);
	MDB_txn *txn = NULL;
	if (pd && mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn) == 0) {
		while ((e = readdir(pd))) {
			struct hash_id key;
			if (hash_from_hex(e->d_name, &key) < 0)
				continue;
			MDB_val k = {HASH_LEN, key.b}, v;
			int open_now = 0;
			for (struct cache_partial *o = c->open_partials; o; o = o->next_open)
				open_now |= !memcmp(&o->key, &key, HASH_LEN);
			if (!open_now &&
			    mdb_get(txn, c->partials, &k, &v) == MDB_NOTFOUND) {
				char *p = path_join(part, e->d_name);
				unlink(p);
				free(p);
			}
		}
		mdb_txn_abort(txn);
	}
	if (pd)
		closedir(pd);
	free(part);
}

int cache_evict(struct cache *c, uint64_t target, uint64_t *evicted_objects,
		uint64_t *evicted_bytes)
{
	struct evict_arg a = {.target = target};
	buf_init(&a.victims);
	int rc = write_txn(c, txn_evict, &a);
	if (rc == 0) {
		for (size_t off = 0; off < a.victims.len; off += HASH_LEN) {
			struct hash_id id;
			char path[4096];
			memcpy(id.b, a.victims.ptr + off, HASH_LEN);
			cache_object_path(c, &id, path, sizeof path);
			if (unlink(path) < 0 && errno != ENOENT)
				log_warn("%s: %s", path, strerror(errno));
		}
		sweep_orphans(c);
	}
	buf_close(&a.victims);
	if (evicted_objects)
		*evicted_objects = rc == 0 ? a.objects : 0;
	if (evicted_bytes)
		*evicted_bytes = rc == 0 ? a.bytes : 0;
	return rc;
}
