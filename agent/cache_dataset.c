/* Datasets and their manifests; pins keep a current version's objects
 * from eviction. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/cache_int.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

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
static int manifest_objects(const void *data, size_t len, struct hash_id **ids, size_t *n)
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
		manifest_file_object_id(f->size, m->block_size, f->block_hashes.data,
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

static int adjust_pin(MDB_txn *txn, struct cache *c, const struct hash_id *id, int delta)
{
	struct object_rec rec;
	int rc = cache_object_rec(txn, c, id, &rec, NULL);
	if (rc)
		return rc;
	if (delta < 0 && rec.pins == 0)
		return 0;
	uint32_t before = rec.pins;
	if (before == 0 && (rc = cache_lfru_del(txn, c, &rec, id)))
		return rc;
	rec.pins = delta > 0 ? rec.pins + 1 : rec.pins - 1;
	if (rec.pins == 0 && (rc = cache_lfru_put(txn, c, &rec, id)))
		return rc;
	if ((rc = cache_object_put_header(txn, c, id, &rec)))
		return rc;
	if ((before == 0) != (rec.pins == 0)) {
		uint64_t pinned;
		if ((rc = cache_meta_get(txn, c->meta, "pinned", &pinned)))
			return rc;
		pinned =
		    rec.pins ? pinned + rec.size : (pinned >= rec.size ? pinned - rec.size : 0);
		rc = cache_meta_put(txn, c->meta, "pinned", pinned);
	}
	return rc;
}

static int decode_dataset(const char *name, const MDB_val *val, struct cache_dataset *out)
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
static int manifest_in_use(MDB_txn *txn, struct cache *c, const struct hash_id *id,
			   const char *except)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int used = 0;
	if (mdb_cursor_open(txn, c->datasets, &cur))
		return 1;
	int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size == strlen(except) && memcmp(k.mv_data, except, k.mv_size) == 0)
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
static int repin_refetched(MDB_txn *txn, struct cache *c, const struct hash_id *id)
{
	struct object_rec rec;
	int rc = cache_object_rec(txn, c, id, &rec, NULL);
	if (rc)
		return rc;
	return rec.pins ? 0 : adjust_pin(txn, c, id, +1);
}

/* Move dataset `name` from its old manifest (if any) to new_ids, adjusting
 * pins and dropping the old manifest when nothing else uses it. */
static int repin(MDB_txn *txn, struct cache *c, const char *name,
		 const struct hash_id *new_manifest, const struct hash_id *new_ids, size_t n_new)
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
	if (!rc && had_old && (!new_manifest || memcmp(&old_manifest, new_manifest, HASH_LEN)) &&
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
		rc = cache_object_rec(txn, c, &ids[i], &rec, NULL);
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

int cache_dataset_set(struct cache *c, const char *name, const char *source, const char *target,
		      const struct hash_id *manifest_id, const void *manifest, size_t manifest_len)
{
	struct dataset_arg a = {
	    name, source, target, manifest_id, manifest, manifest_len, (uint64_t)time(NULL)};
	return cache_write_txn(c, txn_dataset_set, &a);
}

int cache_dataset_get(struct cache *c, const char *name, struct cache_dataset *out)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	MDB_val key = {strlen(name), (void *)name}, val;
	rc = mdb_get(txn, c->datasets, &key, &val);
	if (rc == 0)
		rc = decode_dataset(name, &val, out) == 0 ? 1 : SB_ECACHE;
	else
		rc = rc == MDB_NOTFOUND ? 0 : cache_mdb_err(rc);
	mdb_txn_abort(txn);
	return rc;
}

int cache_dataset_find_target(struct cache *c, const char *target, struct cache_dataset *out)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int found = 0;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	if ((rc = mdb_cursor_open(txn, c->datasets, &cur))) {
		mdb_txn_abort(txn);
		return cache_mdb_err(rc);
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
	return cache_write_txn(c, txn_dataset_remove, (void *)name);
}

void cache_dataset_close(struct cache_dataset *d)
{
	free(d->name);
	free(d->source);
	free(d->target);
	memset(d, 0, sizeof *d);
}

int cache_manifest_get(struct cache *c, const struct hash_id *id, uint8_t **data, size_t *len)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	MDB_val key = {HASH_LEN, (void *)id->b}, val;
	rc = mdb_get(txn, c->manifests, &key, &val);
	if (rc == 0) {
		*data = xmalloc(val.mv_size);
		memcpy(*data, val.mv_data, val.mv_size);
		*len = val.mv_size;
		rc = 1;
	} else {
		rc = rc == MDB_NOTFOUND ? 0 : cache_mdb_err(rc);
	}
	mdb_txn_abort(txn);
	return rc;
}

int cache_dataset_list(struct cache *c, char ***names, size_t *n)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	*names = NULL;
	*n = 0;
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	if ((rc = mdb_cursor_open(txn, c->datasets, &cur))) {
		mdb_txn_abort(txn);
		return cache_mdb_err(rc);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		*names = xrealloc(*names, (*n + 1) * sizeof **names);
		(*names)[(*n)++] = xstrndup(k.mv_data, k.mv_size);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rc == MDB_NOTFOUND ? 0 : cache_mdb_err(rc);
}

/* ---- forgetting a dataset and what it holds ---- */

struct purge_arg {
	const char *name;
	uint64_t objects, bytes;
	struct buf victims; /* ids whose files to unlink after commit */
};

/* The sorted object ids of dataset name's manifest (none when it has no
 * manifest). SB_ENOTFOUND when there is no such dataset. */
static int dataset_objects(MDB_txn *txn, struct cache *c, const char *name, struct hash_id **ids,
			   size_t *n)
{
	MDB_val key = {strlen(name), (void *)name}, val, mv;
	*ids = NULL;
	*n = 0;
	int rc = mdb_get(txn, c->datasets, &key, &val);
	if (rc)
		return rc == MDB_NOTFOUND ? SB_ENOTFOUND : rc;
	if (val.mv_size < HASH_LEN)
		return 0;
	MDB_val mk = {HASH_LEN, val.mv_data};
	if (mdb_get(txn, c->manifests, &mk, &mv) == 0)
		return manifest_objects(mv.mv_data, mv.mv_size, ids, n);
	return 0;
}

static int txn_dataset_purge(struct cache *c, MDB_txn *txn, void *arg)
{
	struct purge_arg *a = arg;
	struct hash_id *ids;
	size_t n;
	a->objects = a->bytes = 0;
	buf_reset(&a->victims);
	int rc = dataset_objects(txn, c, a->name, &ids, &n);
	if (rc == 0)
		rc = txn_dataset_remove(c, txn, (void *)a->name);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct object_rec rec;
		uint64_t freed = 0;
		if (cache_object_rec(txn, c, &ids[i], &rec, NULL) != 0 || rec.pins)
			continue; /* gone already, or another dataset's too */
		if ((rc = cache_object_unindex(txn, c, &ids[i], &freed)) != 0)
			break;
		a->objects++;
		a->bytes += freed;
		buf_append(&a->victims, ids[i].b, HASH_LEN);
	}
	free(ids);
	return rc;
}

int cache_dataset_purge(struct cache *c, const char *name, uint64_t *objects, uint64_t *bytes)
{
	struct purge_arg a = {.name = name};
	buf_init(&a.victims);
	int rc = cache_write_txn(c, txn_dataset_purge, &a);
	for (size_t off = 0; rc == 0 && off < a.victims.len; off += HASH_LEN) {
		struct hash_id id;
		char path[4096];
		memcpy(id.b, a.victims.ptr + off, HASH_LEN);
		cache_object_path(c, &id, path, sizeof path);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("%s: %s", path, strerror(errno));
	}
	buf_close(&a.victims);
	*objects = rc == 0 ? a.objects : 0;
	*bytes = rc == 0 ? a.bytes : 0;
	return rc;
}

int cache_dataset_stale(const struct cache_dataset *d)
{
	if (!d->target || !d->target[0])
		return 0; /* pulled into the cache only: the pin is all there is */
	DIR *dir = opendir(d->target);
	if (!dir)
		return errno == ENOENT || errno == ENOTDIR;
	struct dirent *e;
	int empty = 1;
	while (empty && (e = readdir(dir)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(dir);
	return empty;
}

int cache_dataset_usage(struct cache *c, const struct cache_dataset *d,
			struct cache_dataset_usage *out)
{
	MDB_txn *txn;
	struct hash_id *ids;
	size_t n;
	memset(out, 0, sizeof *out);
	int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return cache_mdb_err(rc);
	rc = dataset_objects(txn, c, d->name, &ids, &n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct object_rec rec;
		if (cache_object_rec(txn, c, &ids[i], &rec, NULL) != 0)
			continue;
		out->objects++;
		out->bytes += rec.size;
	}
	free(ids);
	mdb_txn_abort(txn);
	return rc > 0 ? cache_mdb_err(rc) : rc;
}
