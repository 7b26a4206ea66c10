#include "scheduler/cluster.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "scheduler/cluster_int.h"
#include "scheduler/ds_filter.h"

#include <xxhash.h>

struct pending_hash {
	struct hash_id version;
	uint32_t block;
	uint8_t hash[HASH_LEN];
};

int64_t cluster_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cluster_check_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > CLUSTER_NAME_MAX || name[0] == '.')
		return SB_EPROTO;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return SB_EPROTO;
	return 0;
}

static void labels_free(struct assign_label *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].value);
	}
	free(l);
}

static struct assign_label *labels_from_wire(Syncbit__Label *const *in, size_t n)
{
	struct assign_label *l = xcalloc(n + 1, sizeof *l);
	for (size_t i = 0; i < n; i++) {
		l[i].key = xstrdup(in[i]->key ? in[i]->key : "");
		l[i].value = xstrdup(in[i]->value ? in[i]->value : "");
	}
	return l;
}

static struct assign_label *labels_copy(const struct assign_label *in, size_t n)
{
	struct assign_label *l = xcalloc(n + 1, sizeof *l);
	for (size_t i = 0; i < n; i++) {
		l[i].key = xstrdup(in[i].key);
		l[i].value = xstrdup(in[i].value);
	}
	return l;
}

/* Wire labels pointing into l; free the two arrays, not the strings. */
static Syncbit__Label **labels_to_wire(const struct assign_label *l, size_t n,
				       Syncbit__Label **store)
{
	Syncbit__Label *v = xcalloc(n + 1, sizeof *v);
	Syncbit__Label **p = xcalloc(n + 1, sizeof *p);
	for (size_t i = 0; i < n; i++) {
		syncbit__label__init(&v[i]);
		v[i].key = l[i].key;
		v[i].value = l[i].value;
		p[i] = &v[i];
	}
	*store = v;
	return p;
}

/* ---- lookups --------------------------------------------------------------- */

struct cluster_node *cluster_node_find(const struct cluster *c, const char *name)
{
	size_t lo = 0, hi = c->nnodes; /* nodes are sorted by name (node_new) */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(c->nodes[mid]->name, name);
		if (cmp == 0)
			return c->nodes[mid];
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int cluster_report_cmp(const void *a, const void *b)
{
	return memcmp(((const struct cluster_report *)a)->version.b,
		      ((const struct cluster_report *)b)->version.b, HASH_LEN);
}

const struct cluster_report *cluster_node_report_of(const struct cluster_node *n,
						    const struct hash_id *version)
{
	struct cluster_report key = {.version = *version};
	return n->nreports
		   ? bsearch(&key, n->reports, n->nreports, sizeof *n->reports, cluster_report_cmp)
		   : NULL;
}

int cluster_assigned(const struct cluster_dataset *d, const struct cluster_node *n)
{
	if (d->pulled)
		return cluster_pulled_by(d, n->name);
	return assign_selector_match(d->selector, d->nselector, n->labels, n->nlabels);
}

struct cluster_node **cluster_members(const struct cluster *c, const struct cluster_version *cv,
				      size_t *n)
{
	struct cluster_node **out = xcalloc(c->nnodes + 1, sizeof *out);
	/* The datasets of cv first (usually one): nodes x datasets, not
	 * nodes x every dataset. */
	struct cluster_dataset **ds = xcalloc(c->ndatasets + 1, sizeof *ds);
	size_t nds = 0;
	for (size_t j = 0; j < c->ndatasets; j++)
		if (c->datasets[j]->current == cv)
			ds[nds++] = c->datasets[j];
	*n = 0;
	for (size_t i = 0; nds && i < c->nnodes; i++) {
		struct cluster_node *node = c->nodes[i];
		if (!node->conn)
			continue;
		for (size_t j = 0; j < nds; j++) {
			if (cluster_assigned(ds[j], node)) {
				out[(*n)++] = node;
				break;
			}
		}
	}
	free(ds);
	return out;
}

/* ---- nodes ----------------------------------------------------------------- */

static void node_free(struct cluster_node *n)
{
	free(n->name);
	free(n->addr);
	free(n->agent_version);
	labels_free(n->labels, n->nlabels);
	for (size_t i = 0; i < n->nreports; i++)
		cluster_report_close(&n->reports[i]);
	free(n->reports);
	free(n);
}

static void node_save(struct cluster *c, struct cluster_node *n, uint64_t now)
{
	Syncbit__Register reg;
	Syncbit__Label *store;
	syncbit__register__init(&reg);
	reg.node = n->name;
	reg.peer_addr = n->addr;
	reg.labels = labels_to_wire(n->labels, n->nlabels, &store);
	reg.n_labels = n->nlabels;
	reg.disk_free = n->disk_free;
	reg.cache_size = n->cache_size;
	reg.agent_version = n->agent_version;
	if (n->has_key) {
		reg.static_key.data = n->key;
		reg.static_key.len = sizeof n->key;
	}
	if (state_put_node(c->state, n->name, n->last_seen_ms, &reg) < 0)
		log_with(LOG_ERROR, LOG_KV({"node", n->name}), "node %s: cannot save its record",
			 n->name);
	n->seen_saved = now;
	free(reg.labels);
	free(store);
}

void cluster_node_hash(struct cluster_node *n)
{
	n->name_hash = XXH64(n->name, strlen(n->name), 0);
	n->ident = XXH64(n->addr, strlen(n->addr), n->name_hash);
}

/* Insert keeping nodes sorted by name (members come out sorted). */
static struct cluster_node *node_new(struct cluster *c, const char *name)
{
	struct cluster_node *n = xcalloc(1, sizeof *n);
	n->name = xstrdup(name);
	n->id = ++c->next_node_id;
	n->addr = xstrdup("");
	n->agent_version = xstrdup("");
	n->labels = xcalloc(1, sizeof *n->labels);
	cluster_node_hash(n);
	c->nodes = xrealloc(c->nodes, (c->nnodes + 1) * sizeof *c->nodes);
	size_t i = c->nnodes;
	while (i > 0 && strcmp(c->nodes[i - 1]->name, name) > 0) {
		c->nodes[i] = c->nodes[i - 1];
		i--;
	}
	c->nodes[i] = n;
	c->nnodes++;
	return n;
}

static void node_update(struct cluster_node *n, const Syncbit__Register *reg)
{
	free(n->addr);
	free(n->agent_version);
	labels_free(n->labels, n->nlabels);
	n->addr = xstrdup(reg->peer_addr ? reg->peer_addr : "");
	n->agent_version = xstrdup(reg->agent_version ? reg->agent_version : "");
	n->labels = labels_from_wire(reg->labels, reg->n_labels);
	n->nlabels = reg->n_labels;
	n->disk_free = reg->disk_free;
	n->cache_size = reg->cache_size;
	n->late = 0;
	cluster_node_hash(n);
}

int cluster_node_key_check(const struct cluster *c, const char *name,
			   const uint8_t key[SECURE_KEY_BYTES])
{
	const struct cluster_node *n = cluster_node_find(c, name);
	if (!n || !n->has_key || sodium_memcmp(n->key, key, SECURE_KEY_BYTES) == 0)
		return 0;
	return SB_EDENIED;
}

struct cluster_node *cluster_node_register(struct cluster *c, const char *name,
					   const Syncbit__Register *reg,
					   const uint8_t key[SECURE_KEY_BYTES], uint64_t now)
{
	struct cluster_node *n = cluster_node_find(c, name);
	if (!n)
		n = node_new(c, name);
	if (!n->has_key) {
		memcpy(n->key, key, SECURE_KEY_BYTES);
		n->has_key = 1;
	}
	node_update(n, reg);
	n->last_heard = now;
	n->last_seen_ms = cluster_wall_ms();
	node_save(c, n, now);
	return n;
}

void cluster_node_heard(struct cluster *c, struct cluster_node *n, uint64_t now)
{
	n->last_heard = now;
	n->last_seen_ms = cluster_wall_ms();
	if (now - n->seen_saved >= CLUSTER_SEEN_SAVE_MS) {
		n->seen_due = 1;
		cluster_node_save_later(c, n);
	}
}

void cluster_node_save_later(struct cluster *c, struct cluster_node *n)
{
	if (n->save_listed)
		return;
	n->save_listed = 1;
	c->save_due = xrealloc(c->save_due, (c->nsave_due + 1) * sizeof *c->save_due);
	c->save_due[c->nsave_due++] = n;
}

/* Save what the listed nodes have due (inside the flush's group). */
static void save_due_nodes(struct cluster *c)
{
	for (size_t i = 0; i < c->nsave_due; i++) {
		struct cluster_node *n = c->save_due[i];
		for (size_t k = 0; k < n->nreports; k++)
			if (n->reports[k].due)
				cluster_report_save(c, n->name, &n->reports[k], n->last_heard);
		if (n->seen_due)
			node_save(c, n, n->last_heard);
		n->seen_due = n->save_listed = 0;
	}
	c->nsave_due = 0;
}

void cluster_node_flush(struct cluster *c, struct cluster_node *n)
{
	uint64_t now = n->last_heard;
	state_begin(c->state);
	for (size_t i = 0; i < n->nreports; i++)
		if (n->reports[i].dirty)
			cluster_report_save(c, n->name, &n->reports[i], now);
	node_save(c, n, now);
	if (state_commit(c->state) < 0)
		log_with(LOG_ERROR, LOG_KV({"node", n->name}), "node %s: cannot save its state",
			 n->name);
}

/* ---- versions and datasets ------------------------------------------------- */

static void version_entry_free(struct cluster_version *cv)
{
	cluster_plan_clear(cv);
	cluster_readers_clear(cv);
	free(cv->ingested_by);
	free(cv->holders);
	buf_close(&cv->fresh);
	free(cv->members);
	version_free(cv->v);
	free(cv);
}

static struct cluster_version *version_insert(struct cluster *c, struct sched_version *v)
{
	struct cluster_version *cv = xcalloc(1, sizeof *cv);
	cv->v = v;
	cv->stripe = 1;
	c->versions = xrealloc(c->versions, (c->nversions + 1) * sizeof *c->versions);
	c->versions[c->nversions++] = cv;
	cluster_index_lists(c);
	return cv;
}

struct cluster_version *cluster_version_add(struct cluster *c, struct sched_version *v)
{
	struct cluster_version *cv = cluster_version_find(c, v->id.b, HASH_LEN);
	if (cv) {
		version_free(v);
		return cv;
	}
	struct buf enc = BUF_INIT;
	version_encode(v, &enc);
	if (state_put_version(c->state, &v->id, enc.ptr, enc.len) < 0)
		log_with(LOG_ERROR, LOG_KV({"source", v->m->source}), "cannot save a version of %s",
			 v->m->source);
	buf_close(&enc);
	return version_insert(c, v);
}

void cluster_dataset_save(struct cluster *c, const struct cluster_dataset *d)
{
	Syncbit__Admin def;
	Syncbit__Label *store;
	struct hash_id none = {{0}};
	syncbit__admin__init(&def);
	def.op = SYNCBIT__ADMIN_OP__ADMIN_DATASET_ADD;
	def.name = d->name;
	def.source = d->source;
	def.selector = labels_to_wire(d->selector, d->nselector, &store);
	def.n_selector = d->nselector;
	def.block_size = d->block_size;
	def.pulled = d->pulled;
	def.pulled_by = d->pulled_by;
	def.n_pulled_by = d->npulled_by;
	Syncbit__FilterRule *rules;
	def.filter = ds_filter_to_wire(&d->filter, &rules);
	def.n_filter = d->filter.n;
	if (state_put_dataset(c->state, d->name, d->current ? &d->current->v->id : &none, &def) < 0)
		log_with(LOG_ERROR, LOG_KV({"dataset", d->name}),
			 "dataset %s: cannot save its record", d->name);
	free(def.selector);
	free(store);
	free(def.filter);
	free(rules);
}

static void dataset_free(struct cluster_dataset *d)
{
	free(d->error);
	free(d->name);
	free(d->source);
	labels_free(d->selector, d->nselector);
	filter_close(&d->filter);
	cluster_pulled_clear(d);
	free(d);
}

static struct cluster_dataset *dataset_new(struct cluster *c, const char *name)
{
	struct cluster_dataset *d = xcalloc(1, sizeof *d);
	d->name = xstrdup(name);
	d->source = xstrdup("");
	d->selector = xcalloc(1, sizeof *d->selector);
	c->datasets = xrealloc(c->datasets, (c->ndatasets + 1) * sizeof *c->datasets);
	c->datasets[c->ndatasets++] = d;
	cluster_index_lists(c);
	return d;
}

static void dataset_define(struct cluster_dataset *d, const char *source,
			   const struct assign_label *sel, size_t nsel, uint32_t block_size,
			   struct cluster_version *cv)
{
	if (d->current != cv) {
		if (d->current)
			d->current->refs--;
		if (cv)
			cv->refs++;
		d->current = cv;
	}
	if (d->source != source) {
		free(d->source);
		d->source = xstrdup(source);
	}
	if (d->selector != sel) {
		struct assign_label *copy = labels_copy(sel, nsel);
		labels_free(d->selector, d->nselector);
		d->selector = copy;
		d->nselector = nsel;
	}
	d->block_size = block_size;
	d->generation++;
}

struct cluster_dataset *cluster_dataset_define(struct cluster *c, const char *name,
					       const char *source, const struct assign_label *sel,
					       size_t nsel, uint32_t block_size,
					       const struct filter *filter,
					       struct cluster_version *cv)
{
	struct cluster_dataset *d = cluster_dataset_find(c, name);
	if (!d)
		d = dataset_new(c, name);
	dataset_define(d, source, sel, nsel, block_size, cv);
	if (filter && filter != &d->filter)
		ds_filter_copy(&d->filter, filter);
	cluster_dataset_save(c, d);
	cluster_gc(c);
	return d;
}

struct cluster_dataset *cluster_dataset_set(struct cluster *c, const char *name, const char *source,
					    const struct assign_label *sel, size_t nsel,
					    uint32_t block_size, struct cluster_version *cv)
{
	return cluster_dataset_define(c, name, source, sel, nsel, block_size, NULL, cv);
}

int cluster_node_remove(struct cluster *c, const char *name)
{
	for (size_t i = 0; i < c->nnodes; i++) {
		struct cluster_node *n = c->nodes[i];
		if (strcmp(n->name, name) != 0)
			continue;
		if (n->conn)
			return SB_EDENIED;
		for (size_t k = 0; k < n->nreports; k++)
			if (state_del_have(c->state, &n->reports[k].version, name) < 0)
				log_with(LOG_ERROR, LOG_KV({"node", name}),
					 "node %s: cannot remove its reports", name);
		if (state_del_node(c->state, name) < 0)
			log_with(LOG_ERROR, LOG_KV({"node", name}),
				 "node %s: cannot remove its record", name);
		for (size_t k = 0; n->save_listed && k < c->nsave_due; k++)
			if (c->save_due[k] == n)
				c->save_due[k--] = c->save_due[--c->nsave_due];
		node_free(n);
		memmove(&c->nodes[i], &c->nodes[i + 1], (c->nnodes - i - 1) * sizeof *c->nodes);
		c->nnodes--;
		cluster_gc(c); /* versions only it still reported */
		return 0;
	}
	return SB_ENOTFOUND;
}

int cluster_dataset_remove(struct cluster *c, const char *name)
{
	for (size_t i = 0; i < c->ndatasets; i++) {
		struct cluster_dataset *d = c->datasets[i];
		if (strcmp(d->name, name) != 0)
			continue;
		if (d->current)
			d->current->refs--;
		if (state_del_dataset(c->state, name) < 0)
			log_with(LOG_ERROR, LOG_KV({"dataset", name}),
				 "dataset %s: cannot remove its record", name);
		dataset_free(d);
		memmove(&c->datasets[i], &c->datasets[i + 1],
			(c->ndatasets - i - 1) * sizeof *c->datasets);
		c->ndatasets--;
		cluster_index_lists(c);
		cluster_gc(c);
		return 0;
	}
	return SB_ENOTFOUND;
}

static int reported(const struct cluster *c, const struct cluster_version *cv)
{
	for (size_t i = 0; i < c->nnodes; i++)
		if (cluster_node_report_of(c->nodes[i], &cv->v->id))
			return 1;
	return 0;
}

void cluster_gc(struct cluster *c)
{
	size_t k = 0;
	cluster_flush(c); /* no hash may be saved after its version is gone */
	for (size_t i = 0; i < c->nversions; i++) {
		struct cluster_version *cv = c->versions[i];
		if (cv->refs > 0 || reported(c, cv)) {
			c->versions[k++] = cv;
			continue;
		}
		char hex[HASH_HEX_LEN + 1];
		hash_to_hex(&cv->v->id, hex);
		log_with(LOG_INFO, LOG_KV({"source", cv->v->m->source}),
			 "version %.12s of %s is no longer held; forgetting it", hex,
			 cv->v->m->source);
		if (state_del_version(c->state, &cv->v->id) < 0)
			log_error("version %.12s: cannot remove its record", hex);
		version_entry_free(cv);
	}
	c->nversions = k;
	cluster_index_lists(c);
}

size_t cluster_ingest(struct cluster *c, struct cluster_version *cv,
		      Syncbit__BlockHash *const *blocks, size_t n, const char *from,
		      Syncbit__BlockHash **fresh, int *completed, size_t *refused,
		      uint32_t *example)
{
	size_t nfresh = 0;
	char hex[HASH_HEX_LEN + 1];
	const struct cluster_node *node = cluster_node_find(c, from);
	hash_to_hex(&cv->v->id, hex);
	*refused = 0;
	if (!cv->ingested_by)
		cv->ingested_by = xcalloc(cv->v->nblocks + 1, sizeof *cv->ingested_by);
	for (size_t i = 0; i < n; i++) {
		const Syncbit__BlockHash *bh = blocks[i];
		if (bh->hash.len == HASH_LEN && !cluster_may_report(cv, from, bh->block)) {
			/* Nodes holding a block report its hash when the scheduler
			 * seemed to lack it; the same hash again is harmless. */
			const uint8_t *known = version_block_hash(cv->v, bh->block);
			if (!known || memcmp(known, bh->hash.data, HASH_LEN) != 0) {
				if ((*refused)++ == 0)
					*example = bh->block;
			}
			continue;
		}
		int rc = bh->hash.len == HASH_LEN
			     ? version_set_hash(cv->v, bh->block, bh->hash.data)
			     : SB_EPROTO;
		if (rc == 1) {
			struct pending_hash p = {cv->v->id, bh->block, {0}};
			memcpy(p.hash, bh->hash.data, HASH_LEN);
			buf_append(&c->pending, &p, sizeof p);
			fresh[nfresh++] = blocks[i];
			cv->ingested_by[bh->block] = node ? node->id : 0;
		} else if (rc == SB_ECORRUPT) {
			log_with(LOG_ERROR, LOG_KV({"node", from}),
				 "version %.12s block %u: node %s reports a hash that differs "
				 "from the one known; ignored",
				 hex, bh->block, from);
		} else if (rc < 0) {
			log_with(LOG_WARN, LOG_KV({"node", from}),
				 "version %.12s: node %s reports block %u, which it does not have",
				 hex, from, bh->block);
		}
	}
	*completed = version_settle(cv->v);
	return nfresh;
}

void cluster_flush(struct cluster *c)
{
	const struct pending_hash *p = (const struct pending_hash *)c->pending.ptr;
	size_t n = c->pending.len / sizeof *p;
	if (n == 0 && !c->nsave_due && !cluster_readers_dirty(c))
		return;
	state_begin(c->state);
	for (size_t i = 0; i < n; i++)
		state_put_hash(c->state, &p[i].version, p[i].block, p[i].hash);
	cluster_readers_save(c);
	save_due_nodes(c);
	if (state_commit(c->state) < 0)
		log_error("cannot save %zu block hashes; they are asked for again after a restart",
			  n);
	buf_reset(&c->pending);
}

/* ---- loading --------------------------------------------------------------- */

static int load_version(void *arg, const struct hash_id *id, const uint8_t *data, size_t len)
{
	struct cluster *c = arg;
	struct sched_version *v;
	/* Never fatal: a version written by another build, or one past the
	 * limits of this one, would otherwise stop every start. Its dataset
	 * is listed again at the next refresh. */
	int rc = version_from_manifest(data, len, &v);
	if (rc < 0 || memcmp(v->id.b, id->b, HASH_LEN) != 0) {
		char hex[HASH_HEX_LEN + 1];
		hash_to_hex(id, hex);
		log_warn("scheduler state: version %.12s (%zu bytes) cannot be loaded (%s); "
			 "skipped",
			 hex, len, rc < 0 ? sb_strerror(rc) : "id mismatch");
		version_free(v);
		return 0;
	}
	version_insert(c, v);
	return 0;
}

static int load_hash(void *arg, const struct hash_id *id, uint32_t block, const uint8_t *hash)
{
	struct cluster_version *cv = cluster_version_find(arg, id->b, HASH_LEN);
	if (cv)
		version_set_hash(cv->v, block, hash);
	return 0;
}

static int load_dataset(void *arg, const char *name, const struct hash_id *version,
			const Syncbit__Admin *def)
{
	struct cluster *c = arg;
	if (manifest_check_block_size(def->block_size) < 0) {
		/* Every listing of it would divide by it. */
		log_with(LOG_WARN, LOG_KV({"dataset", name}),
			 "scheduler state: dataset %s has block size %u; skipped, add it again",
			 name, def->block_size);
		return 0;
	}
	struct filter filter;
	char *why = NULL;
	if (ds_filter_from_wire(def->filter, def->n_filter, &filter, &why) < 0) {
		/* Unfiltered, it would hand out what its rules leave out. */
		log_with(LOG_WARN, LOG_KV({"dataset", name}),
			 "scheduler state: dataset %s: %s; skipped, add it again", name, why);
		free(why);
		return 0;
	}
	struct cluster_version *cv = cluster_version_find(c, version->b, HASH_LEN);
	struct assign_label *sel = labels_from_wire(def->selector, def->n_selector);
	if (!cv)
		log_with(LOG_ERROR, LOG_KV({"dataset", name}),
			 "dataset %s: its version is missing; it is listed again at the next "
			 "refresh",
			 name);
	struct cluster_dataset *d = dataset_new(c, name);
	dataset_define(d, def->source ? def->source : "", sel, def->n_selector, def->block_size,
		       cv);
	labels_free(sel, def->n_selector);
	d->filter = filter;
	d->pulled = def->pulled;
	for (size_t i = 0; d->pulled && i < def->n_pulled_by; i++)
		if (cluster_check_name(def->pulled_by[i]) == 0)
			cluster_pulled_add(d, def->pulled_by[i]);
	return 0;
}

static int load_node(void *arg, const char *name, int64_t last_seen_ms,
		     const Syncbit__Register *reg)
{
	struct cluster *c = arg;
	struct cluster_node *n = cluster_node_find(c, name);
	if (!n)
		n = node_new(c, name);
	node_update(n, reg);
	n->last_seen_ms = last_seen_ms;
	n->has_key = reg->static_key.len == SECURE_KEY_BYTES;
	if (n->has_key)
		memcpy(n->key, reg->static_key.data, SECURE_KEY_BYTES);
	return 0;
}

static int load_have(void *arg, const struct hash_id *id, const char *node,
		     const Syncbit__VersionState *vs)
{
	struct cluster *c = arg;
	struct cluster_node *n = cluster_node_find(c, node);
	struct cluster_version *cv = cluster_version_find(c, id->b, HASH_LEN);
	if (!n || !cv)
		return 0;
	for (size_t i = 0; i < n->nreports; i++) /* sorted after the load */
		if (!memcmp(n->reports[i].version.b, id->b, HASH_LEN))
			return 0;
	n->reports = xrealloc(n->reports, (n->nreports + 1) * sizeof *n->reports);
	struct cluster_report *r = &n->reports[n->nreports++];
	memset(r, 0, sizeof *r);
	r->version = *id;
	cluster_report_fill(r, cv, vs);
	r->dirty = 0;
	n->nfailing += r->error && r->error[0];
	return 0;
}

int cluster_open(struct cluster *c, const char *dir)
{
	struct state *st;
	int rc = state_open(dir, &st);
	if (rc < 0) {
		memset(c, 0, sizeof *c);
		return rc;
	}
	return cluster_open_state(c, st);
}

int cluster_open_state(struct cluster *c, struct state *st)
{
	memset(c, 0, sizeof *c);
	c->keep_head = ASSIGN_KEEP_HEAD;
	c->state = st;
	int rc;
	struct state_loader l = {c,	    load_version, load_hash,	       load_dataset,
				 load_node, load_have,	  cluster_readers_load};
	if ((rc = state_load(c->state, &l)) < 0) {
		cluster_close(c);
		return rc;
	}
	for (size_t i = 0; i < c->nnodes; i++)
		if (c->nodes[i]->nreports > 1)
			qsort(c->nodes[i]->reports, c->nodes[i]->nreports,
			      sizeof *c->nodes[i]->reports, cluster_report_cmp);
	for (size_t i = 0; i < c->nversions; i++)
		version_settle(c->versions[i]->v);
	cluster_gc(c);
	cluster_plans_restore(c);
	return 0;
}

void cluster_close(struct cluster *c)
{
	if (c->state)
		cluster_flush(c);
	buf_close(&c->pending);
	for (size_t i = 0; i < c->nnodes; i++)
		node_free(c->nodes[i]);
	for (size_t i = 0; i < c->ndatasets; i++)
		dataset_free(c->datasets[i]);
	for (size_t i = 0; i < c->nversions; i++)
		version_entry_free(c->versions[i]);
	free(c->nodes);
	free(c->datasets);
	free(c->versions);
	free(c->ix);
	free(c->save_due);
	state_free(c->state);
	memset(c, 0, sizeof *c);
}
