#include "agent/cache.h"
#include "agent/cache_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

#define CACHE_MAP_SIZE (64ull << 30)
#define CACHE_MAX_DBS  8

int cache_mdb_err(int rc)
{
	if (rc == 0)
		return 0;
	if (rc > 0 && rc < 4096)
		return -rc;
	log_error("cache index: %s", mdb_strerror(rc));
	return SB_ECACHE;
}

double cache_now(const struct cache *c)
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

/* LMDB reports a short page write as EIO: on a cache whose filesystem has
 * less than CACHE_FULL_BYTES left that is the disk filling up, and said so
 * (the caller then drops what is unfinished to make room). */
#define CACHE_FULL_BYTES (1u << 20)

static int commit_err(const struct cache *c, int rc)
{
	struct statvfs st;
	if (rc == EIO && statvfs(c->dir, &st) == 0 &&
	    (uint64_t)st.f_bavail * st.f_frsize < CACHE_FULL_BYTES)
		return ENOSPC;
	return rc;
}

/* Runs fn inside a write transaction, growing the map and retrying when the
 * index is full. fn returns 0, a negative code, or an MDB error (> 0). */

int cache_write_txn(struct cache *c, txn_fn fn, void *arg)
{
	/* Two writers would serialise on LMDB's lock, and a pool thread
	 * waiting for it stalls the pool; the rule is one thread. */
	if (!pthread_equal(pthread_self(), c->writer))
		fatal("cache %s: index write from a thread other than the one that opened it",
		      c->dir);
	for (int attempt = 0; attempt < 4; attempt++) {
		MDB_txn *txn;
		int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
		if (rc)
			return cache_mdb_err(rc);
		rc = fn(c, txn, arg);
		if (rc == 0)
			rc = commit_err(c, mdb_txn_commit(txn));
		else
			mdb_txn_abort(txn);
		if (rc != MDB_MAP_FULL)
			return rc > 0 ? cache_mdb_err(rc) : rc;
		MDB_envinfo info;
		mdb_env_info(c->env, &info);
		size_t grow = info.me_mapsize * 2;
		log_warn("cache index full; growing map to %zu MiB", grow >> 20);
		if ((rc = mdb_env_set_mapsize(c->env, grow)))
			return cache_mdb_err(rc);
	}
	return SB_ECACHE;
}

int cache_meta_get(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t *v)
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

int cache_meta_put(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t v)
{
	MDB_val key = {strlen(k), (void *)k}, val = {8, &v};
	return mdb_put(txn, dbi, &key, &val, 0);
}

static int open_dbs(struct cache *c)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
	if (rc)
		return cache_mdb_err(rc);
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
		rc = mdb_dbi_open(txn, t[i].name, t[i].flags | MDB_CREATE, t[i].dbi);
		if (rc) {
			mdb_txn_abort(txn);
			return cache_mdb_err(rc);
		}
	}
	return cache_mdb_err(mdb_txn_commit(txn));
}

/* The holder's pid, as it wrote it in the lock file; 0 when unknown. */
static int lock_holder(int fd)
{
	char b[24];
	ssize_t n = pread(fd, b, sizeof b - 1, 0);
	if (n <= 0)
		return 0;
	b[n] = '\0';
	char *end;
	unsigned long long pid = strtoull(b, &end, 10);
	return end != b && (*end == '\n' || *end == '\0') && pid > 0 && pid < INT32_MAX ? (int)pid
											: 0;
}

/* Tell whoever finds the directory locked which process holds it. */
static void lock_note_pid(int fd)
{
	char b[24];
	int n = snprintf(b, sizeof b, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, b, (size_t)n, 0) != n)
		log_debug("cannot note this process in the data directory's lock: %s",
			  strerror(errno));
}

static int take_lock(struct cache *c, int wait, int *holder)
{
	char *p = path_join(c->dir, "lock");
	c->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(p);
	if (c->lock_fd < 0)
		return -errno;
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return -errno;
		if (!wait) {
			if (holder)
				*holder = lock_holder(c->lock_fd);
			return -EBUSY;
		}
		log_warn("%s: another syncbit process uses this data directory; waiting", c->dir);
		if (flock(c->lock_fd, LOCK_EX) < 0)
			return -errno;
	}
	lock_note_pid(c->lock_fd);
	return 0;
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

static int open_cache(const char *data_dir, uint64_t capacity, int wait, int *holder,
		      struct cache **out)
{
	struct cache *c = xcalloc(1, sizeof *c);
	int rc;
	c->dir = xstrdup(data_dir);
	c->capacity = capacity;
	c->lock_fd = -1;
	c->writer = pthread_self();
	pthread_mutex_init(&c->seal_lock, NULL);
	*out = NULL;
	char *idx = path_join(data_dir, "index");
	char *objs = path_join(data_dir, "objects");
	char *part = path_join(data_dir, "partial");
	if ((rc = path_mkdirs(idx, 0700)) < 0 || (rc = path_mkdirs(objs, 0755)) < 0 ||
	    (rc = path_mkdirs(part, 0700)) < 0)
		goto fail;
	if ((rc = take_lock(c, wait, holder)) < 0)
		goto fail;
	if ((rc = make_fanout(objs)) < 0)
		goto fail;
	if ((rc = cache_mdb_err(mdb_env_create(&c->env))) < 0)
		goto fail;
	mdb_env_set_maxdbs(c->env, CACHE_MAX_DBS);
	mdb_env_set_mapsize(c->env, CACHE_MAP_SIZE);
	rc = mdb_env_open(c->env, idx, MDB_NOTLS | MDB_NOMETASYNC, 0600);
	if (rc) {
		rc = cache_mdb_err(rc);
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

int cache_open(const char *data_dir, uint64_t capacity, struct cache **out)
{
	return open_cache(data_dir, capacity, 1, NULL, out);
}

int cache_open_nowait(const char *data_dir, uint64_t capacity, struct cache **out, int *holder)
{
	*holder = 0;
	return open_cache(data_dir, capacity, 0, holder, out);
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
	pthread_mutex_destroy(&c->seal_lock);
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

void cache_object_path(const struct cache *c, const struct hash_id *id, char *out, size_t len)
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(id, hex);
	snprintf(out, len, "%s/objects/%.2s/%s", c->dir, hex, hex);
}

void cache_partial_path(const struct cache *c, const struct hash_id *key, char *out, size_t len)
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(key, hex);
	snprintf(out, len, "%s/partial/%s", c->dir, hex);
}

static void loc_path(const struct cache *c, const struct block_val *v, char *out, size_t len)
{
	struct hash_id id;
	memcpy(id.b, v->id, HASH_LEN);
	if (v->kind == LOC_OBJECT)
		cache_object_path(c, &id, out, len);
	else
		cache_partial_path(c, &id, out, len);
}

int cache_block_find(struct cache *c, const struct hash_id *h, struct cache_block_loc *loc)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	MDB_val key = {HASH_LEN, (void *)h->b}, val;
	rc = mdb_get(txn, c->blocks, &key, &val);
	if (rc == 0 && val.mv_size == sizeof(struct block_val)) {
		struct block_val v;
		memcpy(&v, val.mv_data, sizeof v);
		loc_path(c, &v, loc->path, sizeof loc->path);
		loc->offset = cache_get_be64(v.offset_be);
		loc->len = cache_get_be32(v.len_be);
		rc = 1;
	} else if (rc == MDB_NOTFOUND) {
		rc = 0;
	} else {
		rc = cache_mdb_err(rc ? rc : MDB_CORRUPTED);
	}
	mdb_txn_abort(txn);
	return rc;
}

/* ---- objects ---- */

int cache_object_rec(MDB_txn *txn, struct cache *c, const struct hash_id *id,
		     struct object_rec *rec, const uint8_t **hashes)
{
	MDB_val key = {HASH_LEN, (void *)id->b}, val;
	int rc = mdb_get(txn, c->objects, &key, &val);
	if (rc)
		return rc;
	if (val.mv_size < sizeof *rec)
		return MDB_CORRUPTED;
	memcpy(rec, val.mv_data, sizeof *rec);
	/* Divide, not multiply: a corrupt count must not wrap into a match. */
	if ((val.mv_size - sizeof *rec) % HASH_LEN ||
	    rec->nblocks != (val.mv_size - sizeof *rec) / HASH_LEN)
		return MDB_CORRUPTED;
	if (hashes)
		*hashes = (const uint8_t *)val.mv_data + sizeof *rec;
	return 0;
}

/* Rewrite the fixed part of an object record in place. */
int cache_object_put_header(MDB_txn *txn, struct cache *c, const struct hash_id *id,
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

static void lfru_key_of(const struct object_rec *rec, const struct hash_id *id, struct lfru_key *k)
{
	k->tier = (uint8_t)rec->tier;
	cache_put_be64(k->key_be, sortable_double(cache_lfru_key(rec->crf, rec->t_last)));
	memcpy(k->id, id->b, HASH_LEN);
}

int cache_lfru_del(MDB_txn *txn, struct cache *c, const struct object_rec *rec,
		   const struct hash_id *id)
{
	struct lfru_key k;
	lfru_key_of(rec, id, &k);
	MDB_val key = {sizeof k, &k};
	int rc = mdb_del(txn, c->lfru, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int cache_lfru_put(MDB_txn *txn, struct cache *c, const struct object_rec *rec,
		   const struct hash_id *id)
{
	struct lfru_key k;
	lfru_key_of(rec, id, &k);
	MDB_val key = {sizeof k, &k}, val = {0, NULL};
	return mdb_put(txn, c->lfru, &key, &val, 0);
}

int cache_block_loc_del(MDB_txn *txn, struct cache *c, const uint8_t *hash,
			const struct block_val *v)
{
	MDB_val key = {HASH_LEN, (void *)hash}, val = {sizeof *v, (void *)v};
	int rc = mdb_del(txn, c->blocks, &key, &val);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int cache_block_loc_put(MDB_txn *txn, struct cache *c, const uint8_t *hash,
			const struct block_val *v)
{
	MDB_val key = {HASH_LEN, (void *)hash}, val = {sizeof *v, (void *)v};
	int rc = mdb_put(txn, c->blocks, &key, &val, MDB_NODUPDATA);
	return rc == MDB_KEYEXIST ? 0 : rc;
}

void cache_block_val_make(struct block_val *v, int kind, const struct hash_id *id, uint64_t offset,
			  uint32_t len)
{
	v->kind = (uint8_t)kind;
	memcpy(v->id, id->b, HASH_LEN);
	cache_put_be64(v->offset_be, offset);
	cache_put_be32(v->len_be, len);
}

/* Remove an object's records (not its file). */
int cache_object_unindex(MDB_txn *txn, struct cache *c, const struct hash_id *id, uint64_t *freed)
{
	struct object_rec rec;
	const uint8_t *hashes;
	int rc = cache_object_rec(txn, c, id, &rec, &hashes);
	if (rc)
		return rc;
	/* Copy: deleting from the blocks table may move the pages hashes
	 * points into. */
	uint8_t *h = xmalloc(rec.nblocks * HASH_LEN + 1);
	memcpy(h, hashes, rec.nblocks * HASH_LEN);
	for (uint64_t i = 0; i < rec.nblocks && !rc; i++) {
		struct block_val v;
		cache_block_val_make(&v, LOC_OBJECT, id, i * rec.block_size,
				     manifest_block_len(rec.size, rec.block_size, i));
		rc = cache_block_loc_del(txn, c, h + i * HASH_LEN, &v);
	}
	free(h);
	if (!rc && rec.pins == 0)
		rc = cache_lfru_del(txn, c, &rec, id);
	MDB_val key = {HASH_LEN, (void *)id->b};
	if (!rc)
		rc = mdb_del(txn, c->objects, &key, NULL);
	uint64_t used;
	if (!rc)
		rc = cache_meta_get(txn, c->meta, "used", &used);
	if (!rc)
		rc = cache_meta_put(txn, c->meta, "used", used >= rec.size ? used - rec.size : 0);
	if (!rc && rec.pins) {
		uint64_t pinned;
		rc = cache_meta_get(txn, c->meta, "pinned", &pinned);
		if (!rc)
			rc = cache_meta_put(txn, c->meta, "pinned",
					    pinned >= rec.size ? pinned - rec.size : 0);
	}
	if (freed)
		*freed = rec.size;
	return rc;
}

static int txn_unindex(struct cache *c, MDB_txn *txn, void *arg)
{
	int rc = cache_object_unindex(txn, c, arg, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int cache_object_remove(struct cache *c, const struct hash_id *id)
{
	int rc = cache_write_txn(c, txn_unindex, (void *)id);
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
		return cache_mdb_err(rc);
	rc = cache_object_rec(txn, c, id, &rec, NULL);
	mdb_txn_abort(txn);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return cache_mdb_err(rc);
	char path[4096];
	struct stat st;
	cache_object_path(c, id, path, sizeof path);
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == rec.size && st.st_ino == rec.ino &&
	    st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec == rec.mtime_ns)
		return 1;
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(id, hex);
	log_warn("cache object %s changed or vanished on disk; it will be fetched again", hex);
	rc = cache_object_remove(c, id);
	return rc < 0 ? rc : 0;
}

int cache_object_indexed(struct cache *c, const struct hash_id *id)
{
	MDB_txn *txn;
	struct object_rec rec;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	rc = cache_object_rec(txn, c, id, &rec, NULL);
	mdb_txn_abort(txn);
	return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : cache_mdb_err(rc);
}

/* Is the object indexed with a file that still looks as stored? Read-only,
 * so it may run on a pool thread. */
int cache_object_intact(struct cache *c, const struct hash_id *id)
{
	MDB_txn *txn;
	struct object_rec rec;
	if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
		return 0;
	int rc = cache_object_rec(txn, c, id, &rec, NULL);
	mdb_txn_abort(txn);
	if (rc)
		return 0;
	char path[4096];
	struct stat st;
	cache_object_path(c, id, path, sizeof path);
	return stat(path, &st) == 0 && (uint64_t)st.st_size == rec.size && st.st_ino == rec.ino &&
	       st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec == rec.mtime_ns;
}

/* ---- eviction and statistics ---- */

int cache_stats(struct cache *c, struct cache_stats *out)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	MDB_stat st;
	memset(out, 0, sizeof *out);
	rc = cache_meta_get(txn, c->meta, "used", &out->used);
	if (!rc)
		rc = cache_meta_get(txn, c->meta, "pinned", &out->pinned);
	if (!rc && !(rc = mdb_stat(txn, c->objects, &st)))
		out->objects = st.ms_entries;
	out->capacity = c->capacity;
	out->evicted = c->evicted;
	mdb_txn_abort(txn);
	return cache_mdb_err(rc);
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
	int rc = cache_meta_get(txn, c->meta, "used", &used);
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
		rc = cache_object_unindex(txn, c, &id, &freed);
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

static int claimed(struct cache *c, const struct hash_id *id)
{
	pthread_mutex_lock(&c->seal_lock);
	int rc = cache_claim_find(c, id) != NULL;
	pthread_mutex_unlock(&c->seal_lock);
	return rc;
}

/* Remove object and partial files that the index does not know: left by a
 * crash between a seal and its index commit. Runs under the data
 * directory lock, so no other process is mid-write. A claimed name is
 * being sealed in this process; an object name with a
 * second link belongs to a partial being sealed (the partial's own name
 * goes once the index names the object), or is also published: kept. */
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
			struct stat st;
			if (hash_from_hex(f->d_name, &id) < 0 || claimed(c, &id) ||
			    cache_object_indexed(c, &id) != 0 ||
			    fstatat(dirfd(d), f->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    st.st_nlink > 1)
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
			if (!open_now && mdb_get(txn, c->partials, &k, &v) == MDB_NOTFOUND) {
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
	int rc = cache_write_txn(c, txn_evict, &a);
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
		c->evicted += a.bytes;
	}
	buf_close(&a.victims);
	if (evicted_objects)
		*evicted_objects = rc == 0 ? a.objects : 0;
	if (evicted_bytes)
		*evicted_bytes = rc == 0 ? a.bytes : 0;
	return rc;
}
