/* The agent's datasets: an assignment becomes a fetch (agent/fetch.c), its
 * hooks announce blocks to peers and the scheduler, a failed fetch starts
 * again, a finished one is published and the cache evicts what went out of
 * use; a dataset no longer assigned is unpinned and removed. Loop thread
 * only. */
#include "agent/daemon_int.h"

#include <stdlib.h>
#include <string.h>

#include "agent/adhoc.h"
#include "agent/cache.h"
#include "agent/ctl.h"
#include "agent/mirror.h"
#include "agent/peer.h"
#include "agent/watch.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/net/secure.h"
#include "common/net/wire.h"

struct dset *find_set(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->nsets; i++)
		if (!strcmp(d->sets[i]->name, name))
			return d->sets[i];
	return NULL;
}

/* The dataset whose assigned version is vid. */
struct dset *find_version(struct daemon *d, const uint8_t *vid, size_t len)
{
	if (len != HASH_LEN)
		return NULL;
	for (size_t i = 0; i < d->nsets; i++) {
		struct dset *s = d->sets[i];
		if (s->cur && !memcmp(fetch_version_id(s->cur), vid, HASH_LEN))
			return s;
	}
	return NULL;
}

void drop_fetch(struct daemon *d, struct fetch **f)
{
	if (!*f)
		return;
	peers_remove_fetch(d->peers, *f);
	fetch_free(*f);
	*f = NULL;
}

static void free_peer_list(struct dset *s)
{
	for (size_t i = 0; i < s->npeers; i++) {
		free(s->peer_nodes[i]);
		free(s->peer_addrs[i]);
	}
	free(s->peer_nodes);
	free(s->peer_addrs);
	free(s->peer_keys);
	s->peer_nodes = s->peer_addrs = NULL;
	s->peer_keys = NULL;
	s->npeers = 0;
}

void free_set(struct daemon *d, struct dset *s)
{
	drop_fetch(d, &s->cur);
	drop_fetch(d, &s->prev);
	free_peer_list(s);
	free(s->assign);
	free(s->unknown);
	free(s->error);
	free(s->pub_source);
	free(s->name);
	free(s);
}

/* Every peer any assigned version names, once. */
void update_peers(struct daemon *d)
{
	struct buf nodes = BUF_INIT, addrs = BUF_INIT, keys = BUF_INIT;
	size_t n = 0;
	for (size_t i = 0; i < d->nsets; i++)
		for (size_t k = 0; k < d->sets[i]->npeers; k++) {
			const char *node = d->sets[i]->peer_nodes[k];
			int dup = 0;
			for (size_t j = 0; j < n && !dup; j++)
				dup = !strcmp(((char **)nodes.ptr)[j], node);
			if (dup)
				continue;
			buf_append(&nodes, &node, sizeof node);
			buf_append(&addrs, &d->sets[i]->peer_addrs[k], sizeof(char *));
			buf_append(&keys, d->sets[i]->peer_keys[k], SECURE_KEY_BYTES);
			n++;
		}
	peers_set(d->peers, (const char *const *)nodes.ptr, (const char *const *)addrs.ptr,
		  keys.ptr, n);
	buf_close(&nodes);
	buf_close(&addrs);
	buf_close(&keys);
}

void set_peer_list(struct dset *s, Syncbit__PeerInfo **peers, size_t n)
{
	free_peer_list(s);
	s->peer_nodes = xcalloc(n + 1, sizeof(char *));
	s->peer_addrs = xcalloc(n + 1, sizeof(char *));
	s->peer_keys = xcalloc(n + 1, SECURE_KEY_BYTES);
	for (size_t i = 0; i < n; i++) {
		if (!peers[i]->node || !peers[i]->addr || !peers[i]->node[0])
			continue;
		if (peers[i]->key.len == SECURE_KEY_BYTES)
			memcpy(s->peer_keys[s->npeers], peers[i]->key.data, SECURE_KEY_BYTES);
		s->peer_nodes[s->npeers] = xstrdup(peers[i]->node);
		s->peer_addrs[s->npeers++] = xstrdup(peers[i]->addr);
	}
}

void set_origin(struct fetch *f, Syncbit__BlockRange **r, size_t n)
{
	uint32_t *first = xcalloc(n + 1, sizeof *first), *count = xcalloc(n + 1, sizeof *count);
	for (size_t i = 0; i < n; i++) {
		first[i] = r[i]->first;
		count[i] = r[i]->count;
	}
	fetch_set_origin(f, first, count, n);
	free(first);
	free(count);
}

/* Feed every known (non-zero) block hash of m to f, in block order. When
 * unknown is not NULL, set in it (LSB first, fetch_nblocks(f) bits) the
 * blocks m shows unknown. */
static void add_manifest_hashes(struct fetch *f, const Manifest *m, uint8_t *unknown)
{
	struct buf blocks = BUF_INIT, hashes = BUF_INIT;
	static const uint8_t zero[HASH_LEN];
	uint32_t b = 0, nb = fetch_nblocks(f);
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *e = m->files[i];
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || e->hardlink_to)
			continue;
		for (size_t k = 0; k < e->block_hashes.len / HASH_LEN; k++, b++) {
			const uint8_t *h = e->block_hashes.data + k * HASH_LEN;
			if (memcmp(h, zero, HASH_LEN)) {
				buf_append(&blocks, &b, sizeof b);
				buf_append(&hashes, h, HASH_LEN);
			} else if (unknown && b < nb) {
				unknown[b / 8] |= (uint8_t)(1u << (b % 8));
			}
		}
	}
	if (blocks.len)
		fetch_add_hashes(f, (const uint32_t *)blocks.ptr, hashes.ptr,
				 blocks.len / sizeof b);
	buf_close(&blocks);
	buf_close(&hashes);
}

/* Send the hashes of blocks[0..n) of f, durable here, as Ingested messages
 * of at most DAEMON_INGESTED_BATCH blocks. */
static void send_ingested(struct daemon *d, struct fetch *f, const uint32_t *blocks, size_t n)
{
	size_t cap = n < DAEMON_INGESTED_BATCH ? n : DAEMON_INGESTED_BATCH;
	Syncbit__BlockHash *bh = xcalloc(cap + 1, sizeof *bh), **bp = xcalloc(cap + 1, sizeof *bp);
	Syncbit__Ingested m = SYNCBIT__INGESTED__INIT;
	m.version_id.data = (uint8_t *)fetch_version_id(f);
	m.version_id.len = HASH_LEN;
	m.blocks = bp;
	for (size_t done = 0; done < n && d->sched_ready; done += m.n_blocks) {
		m.n_blocks = n - done < cap ? n - done : cap;
		for (size_t i = 0; i < m.n_blocks; i++) {
			syncbit__block_hash__init(&bh[i]);
			bh[i].block = blocks[done + i];
			bh[i].hash.data = (uint8_t *)fetch_block_hash(f, blocks[done + i])->b;
			bh[i].hash.len = HASH_LEN;
			bp[i] = &bh[i];
		}
		wire_send(d->sched, SYNCBIT__MSG_TYPE__MSG_INGESTED, &m.base, NULL, 0, NULL, NULL);
	}
	free(bh);
	free(bp);
}

/* 1 when the scheduler lacks the hash of block b of f, as far as this node
 * can tell. */
int sched_lacks(const struct dset *s, const struct fetch *f, uint32_t b)
{
	return f == s->cur && s->unknown && b < fetch_nblocks(f) &&
	       (s->unknown[b / 8] >> (b % 8)) & 1;
}

/* Send the scheduler the hashes it lacks of blocks durable here. Reports
 * made while it was away were dropped, and a scheduler that stopped lost
 * those it had not saved yet; a block whose hash only this node can tell
 * would otherwise be waited for forever, by the nodes that do not hold it
 * and by an origin share that names it here (this node reads nothing it
 * holds). */
static void report_held(struct daemon *d, struct dset *s)
{
	struct buf blocks = BUF_INIT;
	uint32_t nb = fetch_nblocks(s->cur);
	for (uint32_t b = 0; b < nb; b++)
		if (fetch_block_state(s->cur, b) == FETCH_HAVE && sched_lacks(s, s->cur, b))
			buf_append(&blocks, &b, sizeof b);
	size_t n = blocks.len / sizeof(uint32_t);
	if (n && d->sched_ready) {
		log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
			 "dataset %s: the scheduler lacks the hashes of %zu %s held here; "
			 "sending them",
			 s->name, n, progress_noun(n, "block", "blocks"));
		send_ingested(d, s->cur, (const uint32_t *)blocks.ptr, n);
	}
	buf_close(&blocks);
}

/* Take the hashes and origin share of an Assign of s->cur's version, and
 * report what this node holds that the Assign shows unknown. */
void take_assign(struct daemon *d, struct dset *s, const Syncbit__Assign *a)
{
	free(s->unknown);
	s->unknown = xcalloc(fetch_nblocks(s->cur) / 8 + 1, 1);
	add_manifest_hashes(s->cur, a->manifest, s->unknown);
	set_origin(s->cur, a->origin, a->n_origin);
	report_held(d, s);
}

/* ---- fetch hooks ---- */

static void hook_durable(void *arg, struct fetch *f, uint32_t b, const struct hash_id *h,
			 int from_origin)
{
	struct dset *s = arg;
	struct daemon *d = s->d;
	peers_have(d->peers, f, b);
	/* While the scheduler is away the report is dropped: the Assign that
	 * follows registration shows the hash unknown, and report_held()
	 * sends it then. */
	if (d->sched_ready && (from_origin || sched_lacks(s, f, b)))
		send_ingested(d, f, &b, 1);
}

static void hook_wake(void *arg, struct fetch *f)
{
	struct dset *s = arg;
	peers_wake(s->d->peers);
}

static void hook_reading(void *arg, struct fetch *f, uint32_t b, enum fetch_reading what,
			 const uint8_t *buf, uint32_t got, int ok)
{
	struct dset *s = arg;
	peers_reading(s->d->peers, f, b, what, buf, got, ok);
}

static void hook_bad_peer(void *arg, struct fetch *f, const char *peer, uint32_t b)
{
	struct dset *s = arg;
	char why[64];
	snprintf(why, sizeof why, "block %u failed verification", b);
	peers_drop(s->d->peers, peer, why, f, b);
}

/* A file became a cache object: the registry mirror may serve it now. */
static void hook_file_done(void *arg, struct fetch *f, size_t index)
{
	struct dset *s = arg;
	mirror_dataset_changed(s->d->mirror, s->name);
}

/* Unpinned objects go, least valuable first, once the cache is over its
 * size: datasets no longer assigned and older versions. */
static void evict(struct daemon *d)
{
	struct cache_stats cs;
	uint64_t n, bytes;
	if (!d->o->cache_size || cache_stats(d->cache, &cs) < 0 || cs.used <= cs.capacity)
		return;
	int rc = cache_evict(d->cache, cs.capacity, &n, &bytes);
	if (rc < 0)
		log_with(LOG_WARN, LOG_KV({"error", sb_strerror(rc)}), "eviction failed: %s",
			 sb_strerror(rc));
	else if (n)
		log_info("evicted %llu %s (%llu bytes) to stay under the cache size",
			 (unsigned long long)n, progress_noun(n, "object", "objects"),
			 (unsigned long long)bytes);
}

/* Remember which version is now at TARGET/NAME. */
static void set_published(struct dset *s, const Manifest *m)
{
	struct buf enc = BUF_INIT;
	manifest_encode(m, &enc, &s->pub_id);
	buf_close(&enc);
	free(s->pub_source);
	s->pub_source = xstrdup(m->source ? m->source : "");
}

static void hook_done(void *arg, struct fetch *f, int status)
{
	struct dset *s = arg;
	struct daemon *d = s->d;
	free(s->error);
	s->error = NULL;
	if (status < 0) {
		s->error = xstrdup(fetch_error(f) ? fetch_error(f) : sb_strerror(status));
		s->retry_at_ms = uv_now(&d->loop) + DAEMON_RETRY_MS;
	} else {
		drop_fetch(d, &s->prev); /* the new version is in place */
		s->restored = 0;
		s->repairing = 0;
		set_published(s, fetch_manifest(f));
		watch_dataset(d->watch, s->name);
		evict(d);
	}
	ctl_notify(d->ctl, s->name);
	adhoc_notify(d->adhoc, s->name);
	mirror_dataset_changed(d->mirror, s->name);
	if (d->sched_ready)
		send_heartbeat(d);
}

static void log_fetching(struct dset *s)
{
	struct fetch_stats st;
	char need[32], total[32];
	fetch_stats(s->cur, &st);
	if (fetch_published(s->cur))
		return;
	log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
		 "dataset %s: %s %s of %s (%llu of %llu %s held here)", s->name,
		 s->repairing ? "repairing: fetching" : "fetching",
		 progress_fmt_bytes(st.bytes - st.bytes_have, need, sizeof need),
		 progress_fmt_bytes(st.bytes, total, sizeof total),
		 (unsigned long long)st.blocks_have, (unsigned long long)st.blocks,
		 progress_noun(st.blocks, "block", "blocks"));
}

/* Start (or start again) the fetch of the assignment kept in s. */
void start_fetch(struct daemon *d, struct dset *s)
{
	Syncbit__Assign *a = syncbit__assign__unpack(NULL, s->assign_len, s->assign);
	if (!a)
		return;
	struct fetch_hooks hooks = {.arg = s,
				    .durable = hook_durable,
				    .wake = hook_wake,
				    .bad_peer = hook_bad_peer,
				    .done = hook_done,
				    .file_done = hook_file_done,
				    .reading = hook_reading};
	struct fetch *f = NULL;
	int rc = fetch_new(&d->loop, d->cache, s->name, s->pulled ? NULL : d->o->target,
			   a->version_id.data, a->manifest, &d->o->src, &hooks, &f);
	free(s->error);
	s->error = NULL;
	if (rc < 0) {
		s->error = xasprintf("unusable manifest: %s", sb_strerror(rc));
		s->retry_at_ms = uv_now(&d->loop) + DAEMON_RETRY_MS;
	} else if (fetch_error(f)) {
		s->error = xstrdup(fetch_error(f));
		s->retry_at_ms = uv_now(&d->loop) + DAEMON_RETRY_MS;
		fetch_free(f);
	} else {
		s->cur = f;
		s->retry_at_ms = 0;
		peers_add_fetch(d->peers, f);
		take_assign(d, s, a); /* and report blocks resumed from before a restart */
		log_fetching(s);
	}
	if (s->error)
		log_limited_with(LOG_ERROR, LOG_KV({"dataset", s->name}, {"error", s->error}),
				 "dataset %s: failed: %s", s->name, s->error);
	syncbit__assign__free_unpacked(a, NULL);
}

/* The hashes f knows, as (blocks, hashes) for fetch_add_hashes: a fetch
 * started again from the last Assign gets those learnt after it. */
static size_t known_hashes(const struct fetch *f, struct buf *blocks, struct buf *hashes)
{
	static const uint8_t zero[HASH_LEN];
	for (uint32_t b = 0; b < fetch_nblocks(f); b++) {
		const struct hash_id *h = fetch_block_hash(f, b);
		if (!memcmp(h->b, zero, HASH_LEN))
			continue;
		buf_append(blocks, &b, sizeof b);
		buf_append(hashes, h->b, HASH_LEN);
	}
	return blocks->len / sizeof(uint32_t);
}

/* The version in place at TARGET/NAME as the cache recorded it (every
 * block hash known), or NULL. */
static Manifest *published_manifest(struct daemon *d, struct dset *s)
{
	struct cache_dataset ds;
	uint8_t *data = NULL;
	size_t len = 0;
	Manifest *m = NULL;
	if (cache_dataset_get(d->cache, s->name, &ds) != 1)
		return NULL;
	if (memcmp(&ds.manifest_id, &s->pub_id, sizeof s->pub_id) ||
	    cache_manifest_get(d->cache, &ds.manifest_id, &data, &len) != 1 ||
	    manifest_decode(data, len, &m) < 0)
		m = NULL;
	free(data);
	cache_dataset_close(&ds);
	return m;
}

/* Files of s's version in place changed on disk (their objects left the
 * index): fetch only those again, for the same version, from the manifest
 * the cache holds, and put them back into the tree one by one. Blocks come
 * from peers (a Bitfield asks theirs); the origin only for blocks no peer
 * holds, and a source that cannot be read meanwhile leaves them waiting
 * for one (fetch_options.repair). The scheduler's old origin share is not
 * taken up: it named blocks this node read once, not what it lacks. */
static int start_repair(struct daemon *d, struct dset *s)
{
	uint8_t vid[HASH_LEN];
	Manifest *m = published_manifest(d, s);
	if (!m)
		return SB_ENOTFOUND;
	memcpy(vid, fetch_version_id(s->cur), HASH_LEN);
	struct fetch_hooks hooks = {.arg = s,
				    .durable = hook_durable,
				    .wake = hook_wake,
				    .bad_peer = hook_bad_peer,
				    .done = hook_done};
	struct fetch_options o = {.name = s->name,
				  .target_root = s->pulled ? NULL : d->o->target,
				  .version_id = vid,
				  .so = &d->o->src,
				  .repair = 1};
	struct fetch *f = NULL;
	drop_fetch(d, &s->cur);
	s->repairing = 1;
	int rc = fetch_open(&d->loop, d->cache, m, &o, &hooks, &f);
	manifest_free(m);
	free(s->error);
	s->error = NULL;
	if (rc == 0 && fetch_error(f)) {
		s->error = xstrdup(fetch_error(f));
		s->cur = f; /* its version is tried again */
	} else if (rc < 0) {
		s->error = xasprintf("cannot repair: %s", sb_strerror(rc));
	} else {
		s->cur = f;
		s->retry_at_ms = 0;
		peers_add_fetch(d->peers, f);
		log_fetching(s);
		return 0;
	}
	s->retry_at_ms = uv_now(&d->loop) + DAEMON_RETRY_MS;
	log_limited_with(LOG_ERROR, LOG_KV({"dataset", s->name}, {"error", s->error}),
			 "dataset %s: failed: %s", s->name, s->error);
	return 0;
}

/* Start s's fetch again from its last Assign, with the hashes the failed
 * fetch had learnt since; a repair starts again as a repair. */
static void restart_fetch(struct daemon *d, struct dset *s)
{
	if (s->repairing && s->cur && start_repair(d, s) == 0)
		return;
	s->repairing = 0;
	struct buf blocks = BUF_INIT, hashes = BUF_INIT;
	size_t n = s->cur ? known_hashes(s->cur, &blocks, &hashes) : 0;
	uint8_t vid[HASH_LEN] = {0};
	if (s->cur)
		memcpy(vid, fetch_version_id(s->cur), HASH_LEN);
	drop_fetch(d, &s->cur);
	start_fetch(d, s);
	if (n && s->cur && !memcmp(fetch_version_id(s->cur), vid, HASH_LEN))
		fetch_add_hashes(s->cur, (const uint32_t *)blocks.ptr, hashes.ptr, n);
	buf_close(&blocks);
	buf_close(&hashes);
}

void retry_tick(uv_timer_t *t)
{
	struct daemon *d = t->data;
	uint64_t now = uv_now(&d->loop);
	/* Datasets restored from before a restart that the scheduler did not
	 * assign again after registering are no longer this node's. */
	if (d->restore_deadline_ms && now >= d->restore_deadline_ms) {
		d->restore_deadline_ms = UINT64_MAX;
		for (size_t i = 0; i < d->nsets;) {
			struct dset *s = d->sets[i];
			if (!s->restored || s->cur || s->assign) {
				i++;
				continue;
			}
			log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
				 "dataset %s: not assigned since the restart; removing %s/%s",
				 s->name, d->o->target, s->name);
			remove_set(d, i);
		}
	}
	for (size_t i = 0; i < d->nsets; i++) {
		struct dset *s = d->sets[i];
		if (!s->retry_at_ms || now < s->retry_at_ms)
			continue;
		log_limited_with(LOG_INFO, LOG_KV({"dataset", s->name}, {"error", s->error}),
				 "dataset %s: starting again after: %s", s->name, s->error);
		restart_fetch(d, s);
	}
}

/* A published file changed on disk (agent/watch.c): the version in place
 * is repaired; a newer version being fetched starts again (it may count on
 * the object that went) and replaces it. A dataset restored from before a
 * restart waits for its Assign to do so. */
void hook_damaged(void *arg, const char *name)
{
	struct daemon *d = arg;
	struct dset *s = find_set(d, name);
	/* The intact files stay in place and served during a repair. */
	int repair = s && s->cur && s->pub_source && (fetch_published(s->cur) || s->repairing);
	if (!(repair && start_repair(d, s) == 0) && s && s->assign)
		restart_fetch(d, s);
	ctl_notify(d->ctl, name);
	if (d->sched_ready)
		send_heartbeat(d); /* the scheduler sees what this node lost */
}

void hook_bad_block(void *arg, const struct hash_id *h)
{
	watch_block_reported(arg, h);
}

struct unpublish {
	uv_work_t work;
	char *path;
};

static void unpublish_work(uv_work_t *w)
{
	struct unpublish *u = w->data;
	int rc = path_remove_tree(u->path);
	if (rc < 0)
		log_warn("cannot remove %s: %s", u->path, sb_strerror(rc));
}

static void unpublish_done(uv_work_t *w, int status)
{
	struct unpublish *u = w->data;
	free(u->path);
	free(u);
}

/* Drop d->sets[i]: unpin it (its blocks stay cached until LFRU needs the
 * room) and remove TARGET/NAME on the pool. */
void remove_set(struct daemon *d, size_t i)
{
	struct dset *s = d->sets[i];
	int rc = cache_dataset_remove(d->cache, s->name);
	if (rc < 0 && rc != SB_ENOTFOUND) /* gone already: `syncbit rm --purge` */
		log_with(LOG_WARN, LOG_KV({"dataset", s->name}, {"error", sb_strerror(rc)}),
			 "dataset %s: %s", s->name, sb_strerror(rc));
	if (!s->pulled) { /* a pulled dataset was published by its pulls only */
		struct unpublish *u = xcalloc(1, sizeof *u);
		u->path = path_join(d->o->target, s->name);
		u->work.data = u;
		uv_queue_work(&d->loop, &u->work, unpublish_work, unpublish_done);
	}
	watch_forget(d->watch, s->name);
	d->sets[i] = d->sets[--d->nsets];
	free_set(d, s);
	evict(d);
	update_peers(d);
}
