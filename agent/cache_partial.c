/* Partials: files being assembled block by block, resumable after a crash,
 * sealed into objects when complete. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cache_int.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

/* ---- partials ---- */

static int load_partial(struct cache_partial *p, int *fresh, int *had_rec)
{
	struct cache *c = p->c;
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
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
		cache_put_be64(k + HASH_LEN, 0);
		MDB_val ck = {sizeof k, k}, cv;
		mdb_cursor_open(txn, c->pblocks, &cur);
		rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
		while (rc == 0 && ck.mv_size == sizeof k &&
		       memcmp(ck.mv_data, p->key.b, HASH_LEN) == 0) {
			uint64_t idx = cache_get_be64((uint8_t *)ck.mv_data + HASH_LEN);
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
	cache_put_be64(k + HASH_LEN, 0);
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
	while (rc == 0 && ck.mv_size == sizeof k && memcmp(ck.mv_data, p->key.b, HASH_LEN) == 0 &&
	       cv.mv_size == HASH_LEN) {
		buf_append(&found, (uint8_t *)ck.mv_data + HASH_LEN, 8);
		buf_append(&found, cv.mv_data, HASH_LEN);
		rc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	rc = rc == MDB_NOTFOUND ? 0 : rc;
	for (size_t off = 0; !rc && off < found.len; off += 8 + HASH_LEN) {
		uint64_t idx = cache_get_be64(found.ptr + off);
		struct block_val v;
		cache_block_val_make(&v, LOC_PARTIAL, &p->key, idx * old.block_size,
				     manifest_block_len(old.size, old.block_size, idx));
		rc = cache_block_loc_del(txn, c, found.ptr + off + 8, &v);
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

int cache_partial_open(struct cache *c, const struct hash_id *key, uint64_t size,
		       uint32_t block_size, struct cache_partial **out)
{
	struct cache_partial *p = xcalloc(1, sizeof *p);
	int rc, fresh = 1, had_rec = 0;
	p->c = c;
	p->key = *key;
	p->size = size;
	p->block_size = block_size;
	p->nblocks = manifest_nblocks(size, block_size);
	p->have = xcalloc(p->nblocks ? p->nblocks : 1, sizeof *p->have);
	p->fd = -1;
	cache_partial_path(c, key, p->path, sizeof p->path);
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
		if (had_rec && (rc = cache_write_txn(c, txn_partial_reset, p)) < 0)
			goto fail;
	} else {
		p->indexed = 1;
	}
	/* A fresh partial starts empty, whatever an earlier attempt left. */
	p->fd = open(p->path, O_RDWR | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0600);
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

int cache_partial_indexed(struct cache *c, const struct hash_id *key)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	MDB_val k = {HASH_LEN, (void *)key->b}, v;
	rc = mdb_get(txn, c->partials, &k, &v);
	mdb_txn_abort(txn);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? cache_mdb_err(rc) : 1;
}

int cache_partial_fd(const struct cache_partial *p)
{
	return p->fd;
}

uint64_t cache_partial_nblocks(const struct cache_partial *p)
{
	return p->nblocks;
}

int cache_partial_have(const struct cache_partial *p, uint64_t idx, struct hash_id *h)
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
		cache_put_be64(k + HASH_LEN, idx);
		MDB_val key = {sizeof k, k}, val = {HASH_LEN, (void *)a->hashes[i].b};
		int rc = mdb_put(txn, c->pblocks, &key, &val, 0);
		if (rc)
			return rc;
		struct block_val v;
		cache_block_val_make(&v, LOC_PARTIAL, &p->key, idx * p->block_size,
				     manifest_block_len(p->size, p->block_size, idx));
		if ((rc = cache_block_loc_put(txn, c, a->hashes[i].b, &v)))
			return rc;
	}
	return 0;
}

int cache_partial_commit(struct cache_partial *p, const uint64_t *idx, const struct hash_id *hashes,
			 size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (idx[i] >= p->nblocks)
			return SB_EPROTO;
	struct commit_arg a = {p, idx, hashes, n};
	int rc = cache_write_txn(p->c, txn_commit, &a);
	if (rc < 0)
		return rc;
	p->indexed = 1;
	for (size_t i = 0; i < n; i++)
		p->have[idx[i]] = hashes[i];
	return 0;
}

static int txn_drop_partial(struct cache *c, MDB_txn *txn, struct cache_partial *p)
{
	if (!p->indexed)
		return 0;
	for (uint64_t i = 0; i < p->nblocks; i++) {
		if (hash_is_zero(&p->have[i]))
			continue;
		struct block_val v;
		cache_block_val_make(&v, LOC_PARTIAL, &p->key, i * p->block_size,
				     manifest_block_len(p->size, p->block_size, i));
		int rc = cache_block_loc_del(txn, c, p->have[i].b, &v);
		if (rc)
			return rc;
		uint8_t k[HASH_LEN + 8];
		memcpy(k, p->key.b, HASH_LEN);
		cache_put_be64(k + HASH_LEN, i);
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
	struct object_rec old;
	int replacing = cache_object_rec(txn, c, &p->object, &old, NULL) == 0;
	/* Another partial sharing the claim indexed this very file first. */
	if (replacing && p->claim && old.ino == p->claim->ino)
		return 0;
	struct object_rec rec = {
	    .size = p->size,
	    .block_size = p->block_size,
	    .nblocks = p->nblocks,
	    .tier = TIER_PROBATION,
	    .mode = p->mode,
	    .crf = 1.0,
	    .t_last = cache_now(c),
	    .mtime_ns = p->st.st_mtim.tv_sec * 1000000000ll + p->st.st_mtim.tv_nsec,
	    .ino = p->st.st_ino,
	};
	if (replacing) {
		rec.pins = old.pins;
		if (old.pins == 0 && (rc = cache_lfru_del(txn, c, &old, &p->object)))
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
		cache_block_val_make(&bv, LOC_OBJECT, &p->object, i * p->block_size,
				     manifest_block_len(p->size, p->block_size, i));
		if ((rc = cache_block_loc_put(txn, c, p->hashes + i * HASH_LEN, &bv)))
			return rc;
	}
	if (rec.pins == 0 && (rc = cache_lfru_put(txn, c, &rec, &p->object)))
		return rc;
	if (replacing)
		return 0;
	uint64_t used;
	if ((rc = cache_meta_get(txn, c->meta, "used", &used)))
		return rc;
	return cache_meta_put(txn, c->meta, "used", used + p->size);
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

void cache_partial_set_have(struct cache_partial *p, uint64_t idx, const struct hash_id *h)
{
	if (idx < p->nblocks)
		p->have[idx] = *h;
}

const struct hash_id *cache_partial_object_id(const struct cache_partial *p)
{
	return p->sealed ? &p->object : NULL;
}

struct cache_claim *cache_claim_find(const struct cache *c, const struct hash_id *id)
{
	struct cache_claim *k = c->claims;
	while (k && memcmp(k->id.b, id->b, HASH_LEN) != 0)
		k = k->next;
	return k;
}

/* Give the sealed file the object's name (seal_lock held, no claim on it).
 * A second name, not a rename: the partial stays readable under the path
 * the index gives for its blocks (peers are served from it) until
 * cache_partials_finish repoints the index and unlinks it. A name already
 * there that no live seal gave is a stray from a seal that never reached
 * the index, or a file that changed under its record: it is replaced in
 * one rename, so the name never points at nothing or at a partial file. */
static int name_object(struct cache_partial *p, const char *obj)
{
	if (link(p->path, obj) == 0)
		return 0;
	int rc = -errno;
	if (rc == -ENOENT) {
		char *dir = xstrdup(obj);
		*strrchr(dir, '/') = '\0';
		rc = path_mkdirs(dir, 0755);
		free(dir);
		if (rc == 0 && link(p->path, obj) < 0)
			rc = -errno;
	}
	if (rc != -EEXIST)
		return rc;
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.new", obj);
	if (unlink(tmp) < 0 && errno != ENOENT) /* a crash's leftover */
		return -errno;
	if (link(p->path, tmp) < 0)
		return -errno;
	if (rename(tmp, obj) < 0) {
		rc = -errno;
		unlink(tmp);
		return rc;
	}
	return 0;
}

/* Under seal_lock: share the file of a live claim on the object, find the
 * object indexed and intact, or name it and claim the name. Equal files
 * sealed on several pool threads at once thus name the object once. */
static int claim_object(struct cache_partial *p, const char *obj, int *shared)
{
	struct cache *c = p->c;
	int rc = 0;
	*shared = 0;
	pthread_mutex_lock(&c->seal_lock);
	struct cache_claim *k = cache_claim_find(c, &p->object);
	if (k) {
		/* The claim keeps its name in place (nothing replaces a
		 * claimed name), so this is the file it names. */
		if (stat(obj, &p->st) < 0) {
			rc = -errno;
		} else if ((uint64_t)p->st.st_ino != k->ino) {
			rc = SB_EPROTO;
		} else {
			k->refs++;
			p->claim = k;
			p->mode = p->st.st_mode & MANIFEST_MODE_MASK; /* the file's */
			*shared = 1;
		}
	} else if (cache_object_intact(c, &p->object)) {
		/* Checked under the lock: a claim goes only after the index
		 * commit that makes its object intact. */
		p->exists = 1;
	} else if ((rc = name_object(p, obj)) == 0) {
		k = xcalloc(1, sizeof *k);
		k->id = p->object;
		k->ino = (uint64_t)p->st.st_ino;
		k->refs = 1;
		k->next = c->claims;
		c->claims = k;
		p->claim = k;
	}
	pthread_mutex_unlock(&c->seal_lock);
	return rc;
}

static void release_claim(struct cache_partial *p)
{
	struct cache *c = p->c;
	if (!p->claim)
		return;
	pthread_mutex_lock(&c->seal_lock);
	if (--p->claim->refs == 0) {
		struct cache_claim **k = &c->claims;
		while (*k != p->claim)
			k = &(*k)->next;
		*k = p->claim->next;
		free(p->claim);
	}
	pthread_mutex_unlock(&c->seal_lock);
	p->claim = NULL;
}

/* A shared file was made durable by the seal that named it only if that
 * one was durable: sync it here too. */
static int sync_shared(const char *obj)
{
	int fd = open(obj, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int cache_partial_seal(struct cache_partial *p, uint32_t mode, int64_t mtime_ns, int durable)
{
	struct cache *c = p->c;
	p->mode = mode & MANIFEST_MODE_MASK; /* never set-id or sticky */
	free(p->hashes);
	p->hashes = xmalloc(p->nblocks * HASH_LEN + 1);
	for (uint64_t i = 0; i < p->nblocks; i++) {
		if (hash_is_zero(&p->have[i]))
			return SB_EPROTO;
		memcpy(p->hashes + i * HASH_LEN, p->have[i].b, HASH_LEN);
	}
	manifest_file_object_id(p->size, p->block_size, p->hashes, p->nblocks, &p->object);
	release_claim(p);
	p->exists = cache_object_intact(c, &p->object);
	if (p->exists) {
		p->sealed = 1;
		return 0;
	}
	char obj[4096];
	struct timespec ts[2] = {
	    {.tv_nsec = UTIME_OMIT},
	    {.tv_sec = mtime_ns / 1000000000ll, .tv_nsec = mtime_ns % 1000000000ll},
	};
	cache_object_path(c, &p->object, obj, sizeof obj);
	if (fchmod(p->fd, p->mode) < 0 || futimens(p->fd, ts) < 0 ||
	    (durable && fsync(p->fd) < 0) || fstat(p->fd, &p->st) < 0)
		return -errno;
	int shared;
	int rc = claim_object(p, obj, &shared);
	if (rc == 0 && durable && !p->exists) {
		char *dir = xstrdup(obj);
		*strrchr(dir, '/') = '\0';
		if (shared)
			rc = sync_shared(obj);
		if (rc == 0)
			rc = path_fsync_dir(dir);
		free(dir);
	}
	if (rc < 0)
		return rc;
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
	int rc = cache_write_txn(ps[0]->c, txn_finish_many, &a);
	for (size_t i = 0; i < n; i++) {
		if (rc == 0) /* the index names the object now */
			unlink(ps[i]->path);
		cache_partial_close(ps[i]);
	}
	return rc;
}

int cache_partial_finish(struct cache_partial *p, uint32_t mode, int64_t mtime_ns,
			 struct hash_id *object_id)
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
	release_claim(p);
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
	int rc = cache_write_txn(p->c, txn_discard, p);
	if (rc < 0)
		log_warn("%s: cannot drop partial records: %s", p->path, sb_strerror(rc));
	unlink(p->path);
	cache_partial_close(p);
}
