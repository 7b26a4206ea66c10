#include "agent/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "agent/adhoc.h"
#include "agent/cache.h"
#include "agent/ctl.h"
#include "agent/fetch.h"
#include "agent/kube_agent.h"
#include "agent/mirror.h"
#include "agent/peer.h"
#include "agent/uplink.h"
#include "agent/watch.h"
#include "common/admit.h"
#include "common/buf.h"
#include "common/conn.h"
#include "common/err.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/uri.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/secure.h"
#include "common/version.h"
#include "common/wire.h"

/* Body limits of the scheduler's messages (the control table below). */
#define CONTROL_BODY_MAX       (256u << 20) /* an Assign carries a whole manifest */
#define CONTROL_REGISTERED_MAX 1024
#define CONTROL_UNASSIGN_MAX   1024
#define CONTROL_HASHES_MAX     (64u << 20) /* a version's block hashes */
#define CONTROL_PEERS_MAX      (16u << 20)
#define CONTROL_ORIGIN_MAX     (64u << 20) /* an origin plan */
#define CONTROL_ERROR_MAX      4096
#define CONTROL_PULL_REPLY_MAX 8192

struct dset {
	char *name;
	struct fetch *cur;  /* the assigned version */
	struct fetch *prev; /* the published version while cur is fetched */
	uint8_t *assign;    /* packed Assign of cur, to start again after a failure */
	size_t assign_len;
	char **peer_nodes, **peer_addrs;
	uint8_t (*peer_keys)[SECURE_KEY_BYTES]; /* zeros: the scheduler sent none */
	size_t npeers;
	uint64_t retry_at_ms;
	char *error;
	/* Blocks of cur whose hash the scheduler's last Assign showed unknown
	 * and no Hashes named since (LSB first): what it lacks as far as this
	 * node can tell, whoever delivered the blocks here. */
	uint8_t *unknown;
	int restored; /* published before this daemon started; not yet re-assigned */
	int pulled;   /* made for pulls through agents: kept in the cache only */
	/* The version published at TARGET/NAME, for the registry mirror. */
	struct hash_id pub_id;
	char *pub_source; /* NULL: none yet */
	struct daemon *d;
};

struct daemon {
	const struct daemon_options *o;
	uv_loop_t loop;
	struct cache *cache;
	struct secure_token token;
	struct secure_keypair key; /* DATA/DAEMON_KEY_FILE: this node's identity */
	struct peers *peers;
	struct ctl *ctl;
	struct adhoc *adhoc; /* pulls through this agent */
	struct mirror *mirror;
	struct watch *watch; /* published files changed on disk */
	struct conn *sched;
	int sched_ready;
	struct uplink link; /* for status, logs and /healthz */
	unsigned backoff_ms;
	uv_timer_t reconnect, heartbeat, retry;
	unsigned heartbeat_ms;
	uint64_t seq;
	struct dset **sets;
	size_t nsets;
	uv_signal_t sigterm, sigint;
	uint64_t restore_deadline_ms; /* restored datasets not assigned by then go */
	int stopping;
	char *advertise;
	struct kube_agent *kube;
	json_t *node_labels;	     /* the Kubernetes Node's, or NULL */
	uint64_t labels_deadline_ms; /* registering waits for them until then */
};

static const struct conn_callbacks sched_cbs;

/* ---- datasets ---- */

static struct dset *find_set(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->nsets; i++)
		if (!strcmp(d->sets[i]->name, name))
			return d->sets[i];
	return NULL;
}

/* The dataset whose assigned version is vid. */
static struct dset *find_version(struct daemon *d, const uint8_t *vid, size_t len)
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

static void drop_fetch(struct daemon *d, struct fetch **f)
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

static void free_set(struct daemon *d, struct dset *s)
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
static void update_peers(struct daemon *d)
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

static void set_peer_list(struct dset *s, Syncbit__PeerInfo **peers, size_t n)
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

static void set_origin(struct fetch *f, Syncbit__BlockRange **r, size_t n)
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

static void send_heartbeat(struct daemon *d);

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
static int sched_lacks(const struct dset *s, const struct fetch *f, uint32_t b)
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
static void take_assign(struct daemon *d, struct dset *s, const Syncbit__Assign *a)
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

static void hook_bad_peer(void *arg, struct fetch *f, const char *peer, uint32_t b)
{
	struct dset *s = arg;
	char why[64];
	snprintf(why, sizeof why, "block %u failed verification", b);
	peers_drop(s->d->peers, peer, why, f, b);
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
		set_published(s, fetch_manifest(f));
		watch_dataset(d->watch, s->name);
		evict(d);
	}
	ctl_notify(d->ctl, s->name);
	adhoc_notify(d->adhoc, s->name);
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
		 "dataset %s: fetching %s of %s (%llu of %llu %s held here)", s->name,
		 progress_fmt_bytes(st.bytes - st.bytes_have, need, sizeof need),
		 progress_fmt_bytes(st.bytes, total, sizeof total),
		 (unsigned long long)st.blocks_have, (unsigned long long)st.blocks,
		 progress_noun(st.blocks, "block", "blocks"));
}

/* Start (or start again) the fetch of the assignment kept in s. */
static void start_fetch(struct daemon *d, struct dset *s)
{
	Syncbit__Assign *a = syncbit__assign__unpack(NULL, s->assign_len, s->assign);
	if (!a)
		return;
	struct fetch_hooks hooks = {.arg = s,
				    .durable = hook_durable,
				    .wake = hook_wake,
				    .bad_peer = hook_bad_peer,
				    .done = hook_done};
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

static void remove_set(struct daemon *d, size_t i);

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

/* Start s's fetch again from its last Assign, with the hashes the failed
 * fetch had learnt since. */
static void restart_fetch(struct daemon *d, struct dset *s)
{
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

static void retry_tick(uv_timer_t *t)
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

/* A published file changed on disk (agent/watch.c): fetch what went and
 * publish afresh. A dataset restored from before a restart waits for its
 * Assign to do so. */
static void hook_damaged(void *arg, const char *name)
{
	struct daemon *d = arg;
	struct dset *s = find_set(d, name);
	if (s && s->assign)
		restart_fetch(d, s);
	ctl_notify(d->ctl, name);
}

static void hook_bad_block(void *arg, const struct hash_id *h)
{
	watch_block_reported(arg, h);
}

/* ---- control protocol ---- */

static void heartbeat_tick(uv_timer_t *t)
{
	send_heartbeat(t->data);
}

static int h_registered(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Registered *m = syncbit__registered__unpack(NULL, len, body);
	if (!m)
		return SB_EPROTO;
	if (m->heartbeat_ms >= 100 && m->heartbeat_ms <= 60000)
		d->heartbeat_ms = m->heartbeat_ms;
	syncbit__registered__free_unpacked(m, NULL);
	d->sched_ready = 1;
	uplink_up(&d->link, uv_now(&d->loop));
	d->backoff_ms = DAEMON_RECONNECT_MIN_MS;
	if (!d->restore_deadline_ms)
		d->restore_deadline_ms = uv_now(&d->loop) + DAEMON_RESTORE_MS;
	log_with(LOG_INFO, LOG_KV({"scheduler", d->o->scheduler}),
		 "registered with the scheduler at %s as %s", d->o->scheduler, d->o->node);
	uv_timer_start(&d->heartbeat, heartbeat_tick, 0, d->heartbeat_ms);
	return 0;
}

/* The latest Assign of s's version, packed: a fetch that failed starts
 * again from it. */
static void keep_assign(struct dset *s, const uint8_t *body, size_t len)
{
	free(s->assign);
	s->assign = xmalloc(len ? len : 1);
	memcpy(s->assign, body, len);
	s->assign_len = len;
}

static int h_assign(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Assign *a = syncbit__assign__unpack(NULL, len, body);
	if (!a)
		return SB_EPROTO;
	int rc = 0;
	if (!a->dataset || !a->manifest || a->version_id.len != HASH_LEN ||
	    path_check_relative(a->dataset) < 0 || strchr(a->dataset, '/') ||
	    a->dataset[0] == '.') {
		rc = SB_EPROTO;
		goto out;
	}
	struct dset *s = find_set(d, a->dataset);
	if (!s) {
		s = xcalloc(1, sizeof *s);
		s->d = d;
		s->name = xstrdup(a->dataset);
		d->sets = xrealloc(d->sets, (d->nsets + 1) * sizeof *d->sets);
		d->sets[d->nsets++] = s;
	}
	set_peer_list(s, a->peers, a->n_peers);
	s->pulled = a->pulled;
	if (s->cur && !memcmp(fetch_version_id(s->cur), a->version_id.data, HASH_LEN)) {
		/* The same version again (a reconnect): hashes sent while this
		 * node was away are in the manifest, and there is a new plan;
		 * the scheduler hears what this node holds that it lacks. A
		 * retry after a failure starts from this Assign, not the first. */
		take_assign(d, s, a);
		keep_assign(s, body, len);
		update_peers(d);
		goto out;
	}
	log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
		 "dataset %s: assigned version %02x%02x%02x%02x (%zu %s)", s->name,
		 a->version_id.data[0], a->version_id.data[1], a->version_id.data[2],
		 a->version_id.data[3], a->manifest->n_files,
		 progress_noun(a->manifest->n_files, "file", "files"));
	if (s->cur && fetch_published(s->cur)) {
		drop_fetch(d, &s->prev);
		s->prev = s->cur; /* stays at TARGET/NAME until the new one is complete */
		s->cur = NULL;
	} else {
		drop_fetch(d, &s->cur);
	}
	keep_assign(s, body, len);
	update_peers(d);
	start_fetch(d, s);
	adhoc_notify(d->adhoc, s->name);
out:
	syncbit__assign__free_unpacked(a, NULL);
	return rc;
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
static void remove_set(struct daemon *d, size_t i)
{
	struct dset *s = d->sets[i];
	int rc = cache_dataset_remove(d->cache, s->name);
	if (rc < 0)
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

static int h_unassign(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Unassign *m = syncbit__unassign__unpack(NULL, len, body);
	if (!m)
		return SB_EPROTO;
	for (size_t i = 0; m->dataset && i < d->nsets; i++) {
		struct dset *s = d->sets[i];
		if (strcmp(s->name, m->dataset))
			continue;
		if (s->pulled)
			log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
				 "dataset %s: no longer assigned here; unpinning it", s->name);
		else
			log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
				 "dataset %s: no longer assigned here; removing %s/%s", s->name,
				 d->o->target, s->name);
		remove_set(d, i);
		ctl_notify(d->ctl, m->dataset);
		adhoc_notify(d->adhoc, m->dataset);
		break;
	}
	syncbit__unassign__free_unpacked(m, NULL);
	return 0;
}

static int h_hashes(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Hashes *m = syncbit__hashes__unpack(NULL, len, body);
	if (!m)
		return SB_EPROTO;
	struct dset *s = find_version(d, m->version_id.data, m->version_id.len);
	int rc = 0;
	if (s) {
		uint32_t *blocks = xcalloc(m->n_blocks + 1, sizeof *blocks);
		uint8_t *hashes = xcalloc(m->n_blocks + 1, HASH_LEN);
		size_t n = 0;
		for (size_t i = 0; i < m->n_blocks; i++) {
			if (m->blocks[i]->hash.len != HASH_LEN) {
				rc = SB_EPROTO;
				break;
			}
			blocks[n] = m->blocks[i]->block;
			memcpy(hashes + n++ * HASH_LEN, m->blocks[i]->hash.data, HASH_LEN);
		}
		for (size_t i = 0; rc == 0 && i < n; i++)
			if (sched_lacks(s, s->cur, blocks[i])) /* it has it now */
				s->unknown[blocks[i] / 8] &= (uint8_t) ~(1u << (blocks[i] % 8));
		if (rc == 0)
			fetch_add_hashes(s->cur, blocks, hashes, n);
		free(blocks);
		free(hashes);
	}
	syncbit__hashes__free_unpacked(m, NULL);
	return rc;
}

static int h_peers(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Peers *m = syncbit__peers__unpack(NULL, len, body);
	if (!m)
		return SB_EPROTO;
	for (size_t i = 0; i < d->nsets; i++) {
		struct dset *s = d->sets[i];
		if (s->cur && m->version_id.len == HASH_LEN &&
		    !memcmp(fetch_version_id(s->cur), m->version_id.data, HASH_LEN))
			set_peer_list(s, m->peers, m->n_peers);
	}
	update_peers(d);
	syncbit__peers__free_unpacked(m, NULL);
	return 0;
}

static int h_origin(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Origin *m = syncbit__origin__unpack(NULL, len, body);
	if (!m)
		return SB_EPROTO;
	struct dset *s = find_version(d, m->version_id.data, m->version_id.len);
	if (s) {
		if (m->reason && m->reason[0])
			log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
				 "dataset %s: origin plan: %s", s->name, m->reason);
		set_origin(s->cur, m->blocks, m->n_blocks);
	}
	syncbit__origin__free_unpacked(m, NULL);
	return 0;
}

static int h_error(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__ErrorMsg *m = syncbit__error_msg__unpack(NULL, len, body);
	if (!m)
		return SB_EPROTO;
	uplink_refused(&d->link, m->message);
	syncbit__error_msg__free_unpacked(m, NULL);
	return 0;
}

static int h_pull_reply(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	return adhoc_reply(d->adhoc, body, len);
}

static const struct frame_handler control_table[] = {
    {SYNCBIT__MSG_TYPE__MSG_REGISTERED, CONTROL_REGISTERED_MAX, h_registered},
    {SYNCBIT__MSG_TYPE__MSG_ASSIGN, CONTROL_BODY_MAX, h_assign},
    {SYNCBIT__MSG_TYPE__MSG_UNASSIGN, CONTROL_UNASSIGN_MAX, h_unassign},
    {SYNCBIT__MSG_TYPE__MSG_HASHES, CONTROL_HASHES_MAX, h_hashes},
    {SYNCBIT__MSG_TYPE__MSG_PEERS, CONTROL_PEERS_MAX, h_peers},
    {SYNCBIT__MSG_TYPE__MSG_ORIGIN, CONTROL_ORIGIN_MAX, h_origin},
    {SYNCBIT__MSG_TYPE__MSG_ERROR, CONTROL_ERROR_MAX, h_error},
    {SYNCBIT__MSG_TYPE__MSG_PULL_REPLY, CONTROL_PULL_REPLY_MAX, h_pull_reply},
};

static int sched_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		       uint8_t *payload, size_t plen)
{
	struct daemon *d = conn_data(c);
	return frame_dispatch(control_table, sizeof control_table / sizeof *control_table, d, type,
			      body, len, payload, plen);
}

static uint64_t disk_free(const char *dir)
{
	struct statvfs sv;
	return statvfs(dir, &sv) == 0 ? (uint64_t)sv.f_bavail * sv.f_frsize : 0;
}

/* The labels to register with: the Node's, then --labels over them. */
static Syncbit__Label **register_labels(struct daemon *d, size_t *n, Syncbit__Label **store)
{
	size_t cap = d->o->nlabels + json_object_size(d->node_labels) + 1, k = 0;
	Syncbit__Label *labels = xcalloc(cap, sizeof *labels);
	Syncbit__Label **lp = xcalloc(cap, sizeof *lp);
	const char *key;
	json_t *v;
	json_object_foreach(d->node_labels, key, v)
	{
		int overridden = 0;
		for (size_t i = 0; i < d->o->nlabels; i++)
			overridden |= !strcmp(d->o->labels[i].key, key);
		if (overridden || !json_is_string(v))
			continue;
		syncbit__label__init(&labels[k]);
		labels[k].key = (char *)key;
		labels[k].value = (char *)json_string_value(v);
		lp[k] = &labels[k];
		k++;
	}
	for (size_t i = 0; i < d->o->nlabels; i++) {
		syncbit__label__init(&labels[k]);
		labels[k].key = d->o->labels[i].key;
		labels[k].value = d->o->labels[i].value;
		lp[k] = &labels[k];
		k++;
	}
	*n = k;
	*store = labels;
	return lp;
}

static void sched_ready(struct conn *c, int status)
{
	struct daemon *d = conn_data(c);
	if (status < 0)
		return;
	Syncbit__Register m = SYNCBIT__REGISTER__INIT;
	Syncbit__Label *labels;
	m.labels = register_labels(d, &m.n_labels, &labels);
	m.node = (char *)d->o->node;
	m.peer_addr = d->advertise;
	m.disk_free = disk_free(d->o->data);
	m.cache_size = d->o->cache_size;
	m.agent_version = SYNCBIT_VERSION;
	wire_send(c, SYNCBIT__MSG_TYPE__MSG_REGISTER, &m.base, NULL, 0, NULL, NULL);
	free(labels);
	free(m.labels);
}

static void dial_scheduler(uv_timer_t *t);

static void sched_close(struct conn *c, int status)
{
	struct daemon *d = conn_data(c);
	if (!d->stopping)
		uplink_closed(&d->link, uv_now(&d->loop), status, conn_error(c));
	d->sched = NULL;
	d->sched_ready = 0;
	uv_timer_stop(&d->heartbeat);
	adhoc_sched_lost(d->adhoc);
	if (d->stopping)
		return;
	uv_timer_start(&d->reconnect, dial_scheduler, d->backoff_ms, 0);
	d->backoff_ms = d->backoff_ms * 2 > DAEMON_RECONNECT_MAX_MS ? DAEMON_RECONNECT_MAX_MS
								    : d->backoff_ms * 2;
}

static const struct conn_callbacks sched_cbs = {
    .on_ready = sched_ready, .on_frame = sched_frame, .on_close = sched_close};

static void dial_scheduler(uv_timer_t *t)
{
	struct daemon *d = t->data;
	if (d->labels_deadline_ms && uv_now(&d->loop) < d->labels_deadline_ms) {
		uv_timer_start(&d->reconnect, dial_scheduler, 200, 0);
		return; /* registering without the Node's labels could unassign */
	}
	if (d->labels_deadline_ms)
		log_warn("kubernetes: no labels of node %s after %u s; registering with --labels",
			 d->o->node, DAEMON_LABELS_WAIT_MS / 1000);
	d->labels_deadline_ms = 0;
	struct conn_config cfg = {.token = &d->token,
				  .key = &d->key,
				  .purpose = HANDSHAKE_CONTROL,
				  .node = d->o->node,
				  .encrypt = d->o->encrypt,
				  .body_max = CONTROL_BODY_MAX,
				  .payload_max = 1};
	int rc = conn_dial(&d->loop, d->o->scheduler, &cfg, &sched_cbs, d, &d->sched);
	if (rc < 0) {
		uplink_closed(&d->link, uv_now(&d->loop), rc,
			      rc == SB_EURI || rc == -EINVAL ? "expected HOST:PORT" : NULL);
		uv_timer_start(&d->reconnect, dial_scheduler, DAEMON_RECONNECT_MAX_MS, 0);
	}
}

/* ---- heartbeats and status ---- */

static void version_state(struct daemon *d, struct dset *s, struct fetch *f,
			  Syncbit__VersionState *v, Syncbit__Bitfield *bf)
{
	struct fetch_stats st;
	fetch_stats(f, &st);
	syncbit__version_state__init(v);
	syncbit__bitfield__init(bf);
	v->dataset = s->name;
	v->version_id.data = (uint8_t *)fetch_version_id(f);
	v->version_id.len = HASH_LEN;
	bf->version_id = v->version_id;
	bf->nblocks = fetch_nblocks(f);
	bf->bits.data = (uint8_t *)fetch_bits(f);
	bf->bits.len = (bf->nblocks + 7) / 8;
	v->have = bf;
	v->published = fetch_published(f);
	v->bytes_from_origin = st.bytes_from_origin;
	v->bytes_from_peers = st.bytes_from_peers;
	v->bytes_reused = st.bytes_reused;
	v->bytes_served = peers_served(d->peers, fetch_version_id(f));
	v->origin_refetch_bad_peer = st.refetch_bad_peer;
	v->origin_refetch_no_peer = st.refetch_no_peer;
	v->error = f == s->cur && s->error ? s->error : (char *)"";
}

static void send_heartbeat(struct daemon *d)
{
	if (!d->sched_ready)
		return;
	size_t cap = 2 * d->nsets + 1, n = 0;
	Syncbit__VersionState *vs = xcalloc(cap, sizeof *vs), **vp = xcalloc(cap, sizeof *vp);
	Syncbit__Bitfield *bf = xcalloc(cap, sizeof *bf);
	for (size_t i = 0; i < d->nsets; i++) {
		struct dset *s = d->sets[i];
		struct fetch *fs[2] = {s->cur, s->prev};
		for (int k = 0; k < 2; k++)
			if (fs[k]) {
				version_state(d, s, fs[k], &vs[n], &bf[n]);
				vp[n] = &vs[n];
				n++;
			}
	}
	Syncbit__Heartbeat m = SYNCBIT__HEARTBEAT__INIT;
	m.seq = ++d->seq;
	m.disk_free = disk_free(d->o->data);
	m.versions = vp;
	m.n_versions = n;
	wire_send(d->sched, SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &m.base, NULL, 0, NULL, NULL);
	free(vs);
	free(vp);
	free(bf);
}

/* An error line for status: the URLs in it without their credentials. */
static json_t *error_json(const char *err)
{
	if (!err)
		return json_null();
	char *r = uri_redact(err);
	json_t *j = json_string(r);
	free(r);
	return j;
}

static json_t *fetch_json(struct daemon *d, struct dset *s, struct fetch *f)
{
	struct fetch_stats st;
	char hex[HASH_HEX_LEN + 1];
	fetch_stats(f, &st);
	hash_to_hex((const struct hash_id *)fetch_version_id(f), hex);
	const char *state = fetch_published(f)				  ? "published"
			    : fetch_error(f) || (f == s->cur && s->error) ? "error"
			    : fetch_complete(f)				  ? "publishing"
									  : "fetching";
	json_t *o =
	    json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "version", hex,
		      "state", state, "target", "", "blocks", (json_int_t)st.blocks, "blocks_have",
		      (json_int_t)st.blocks_have, "bytes", (json_int_t)st.bytes, "bytes_have",
		      (json_int_t)st.bytes_have, "bytes_from_origin",
		      (json_int_t)st.bytes_from_origin, "bytes_from_peers",
		      (json_int_t)st.bytes_from_peers, "bytes_reused", (json_int_t)st.bytes_reused,
		      "bytes_served", (json_int_t)peers_served(d->peers, fetch_version_id(f)));
	char *target = path_join(d->o->target, s->name);
	json_object_set_new(o, "target", json_string(target));
	free(target);
	json_object_set_new(o, "origin_refetch",
			    json_pack("{s:i, s:i}", "bad_peer", (int)st.refetch_bad_peer, "no_peer",
				      (int)st.refetch_no_peer));
	json_object_set_new(o, "bad_blocks", json_integer(st.bad_blocks));
	const char *err = f == s->cur && s->error ? s->error : fetch_error(f);
	json_object_set_new(o, "error", error_json(err));
	return o;
}

json_t *daemon_status_json(struct daemon *d)
{
	struct peers_stats ps;
	peers_stats(d->peers, &ps);
	json_t *sets = json_array();
	for (size_t i = 0; i < d->nsets; i++) {
		struct dset *s = d->sets[i];
		json_t *o = s->cur ? fetch_json(d, s, s->cur) : json_object();
		json_object_set_new(o, "name", json_string(s->name));
		if (!s->cur)
			json_object_set_new(o, "state",
					    json_string(s->restored ? "published"
							: s->error  ? "error"
								    : "waiting"));
		json_object_set_new(o, "restored", json_boolean(s->restored));
		json_object_set_new(o, "pulled", json_boolean(s->pulled));
		if (s->pulled)
			json_object_set_new(o, "target", json_null());
		if (!s->cur && s->error)
			json_object_set_new(o, "error", error_json(s->error));
		if (s->prev)
			json_object_set_new(o, "previous", fetch_json(d, s, s->prev));
		json_object_set_new(o, "ready", json_boolean(daemon_ready(d, s->name, NULL)));
		watch_status(d->watch, s->name, o);
		json_array_append_new(sets, o);
	}
	json_t *st = json_pack(
	    "{s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:o}", "node", d->o->node, "scheduler",
	    uplink_json(&d->link, uv_now(&d->loop)), "peers", "connected",
	    (json_int_t)ps.connected_now, "bytes_served", (json_int_t)ps.bytes_served,
	    "blocks_served", (json_int_t)ps.blocks_served, "dropped_bad_data",
	    (json_int_t)ps.dropped_bad_data, "bytes_received", (json_int_t)ps.bytes_received,
	    "bytes_unneeded", (json_int_t)ps.bytes_unneeded, "datasets", sets);
	if (d->kube)
		json_object_set_new(st, "kubernetes", kube_agent_status_json(d->kube));
	struct cache_stats cs;
	if (cache_stats(d->cache, &cs) == 0)
		json_object_set_new(st, "cache",
				    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "used",
					      (json_int_t)cs.used, "pinned", (json_int_t)cs.pinned,
					      "objects", (json_int_t)cs.objects, "capacity",
					      (json_int_t)cs.capacity, "evicted",
					      (json_int_t)cs.evicted, "disk_free",
					      (json_int_t)disk_free(d->o->data)));
	return st;
}

int daemon_health(struct daemon *d, struct buf *why)
{
	if (!d->o->scheduler_grace_ms)
		return 1; /* --scheduler-grace 0: the scheduler does not count */
	return uplink_healthy(&d->link, uv_now(&d->loop), d->o->scheduler_grace_ms, why);
}

static char *labels_path(struct daemon *d)
{
	return xasprintf("%s/%s", d->o->data, DAEMON_LABELS_FILE);
}

void daemon_set_node_labels(struct daemon *d, json_t *labels)
{
	json_t *now = labels ? json_deep_copy(labels) : json_object();
	int first = d->labels_deadline_ms != 0;
	d->labels_deadline_ms = 0;
	if (d->node_labels && json_equal(d->node_labels, now)) {
		json_decref(now);
		return;
	}
	json_decref(d->node_labels);
	d->node_labels = now;
	char *path = labels_path(d), *tmp = xasprintf("%s.tmp", path);
	if (json_dump_file(now, tmp, JSON_COMPACT | JSON_SORT_KEYS) < 0 || rename(tmp, path) < 0)
		log_warn("%s: cannot record the node's labels", path);
	free(tmp);
	free(path);
	if (first || !d->sched_ready)
		return; /* the next registration carries them */
	log_info("node %s: its labels changed; registering again", d->o->node);
	conn_close(d->sched, 0);
}

/* With Kubernetes on, the labels last seen let the agent register at once
 * after a restart; without them it waits for the Node a while. */
static void load_node_labels(struct daemon *d)
{
	char *path = labels_path(d);
	json_t *l = json_load_file(path, 0, NULL);
	free(path);
	if (json_is_object(l)) {
		d->node_labels = l;
		return;
	}
	json_decref(l);
	d->labels_deadline_ms = uv_now(&d->loop) + DAEMON_LABELS_WAIT_MS;
}

const char *daemon_dataset_name(struct daemon *d, size_t i)
{
	return i < d->nsets ? d->sets[i]->name : NULL;
}

int daemon_ready(struct daemon *d, const char *name, const char **why)
{
	struct dset *s = find_set(d, name);
	const char *w = NULL;
	if (!s)
		w = "not assigned to this node";
	else if ((w = watch_damage(d->watch, name)))
		; /* a published file changed on disk: repairing */
	else if ((s->cur && fetch_published(s->cur)) || (s->prev && fetch_published(s->prev)) ||
		 s->restored)
		return 1;
	else if (s->error)
		w = s->error;
	else
		w = "still fetching";
	if (why)
		*why = w;
	return 0;
}

void daemon_listener_metrics(struct daemon *d, struct buf *out)
{
	if (d->peers)
		peers_listener_metrics(d->peers, out);
	mirror_metrics(d->mirror, out);
}

int daemon_published(struct daemon *d, size_t i, struct daemon_published *out)
{
	if (i >= d->nsets)
		return -1;
	struct dset *s = d->sets[i];
	if (!s->pub_source || !daemon_ready(d, s->name, NULL))
		return 0;
	out->name = s->name;
	out->source = s->pub_source;
	out->id = s->pub_id;
	return 1;
}

int daemon_send_control(struct daemon *d, uint32_t type, const ProtobufCMessage *m)
{
	if (!d->sched_ready)
		return -ENOTCONN;
	return wire_send(d->sched, type, m, NULL, 0, NULL, NULL);
}

struct adhoc *daemon_adhoc(struct daemon *d)
{
	return d->adhoc;
}

const struct fetch *daemon_fetch(struct daemon *d, const char *name)
{
	struct dset *s = find_set(d, name);
	return s ? s->cur : NULL;
}

int daemon_progress(struct daemon *d, const char *name, uint64_t *bytes, uint64_t *have,
		    int *published, const char **error)
{
	struct dset *s = find_set(d, name);
	if (!s)
		return SB_ENOTFOUND;
	*bytes = *have = 0;
	*published = daemon_ready(d, name, NULL);
	*error = s->error;
	if (s->cur) {
		struct fetch_stats st;
		fetch_stats(s->cur, &st);
		*bytes = st.bytes;
		*have = st.bytes_have;
	}
	return 0;
}

/* ---- life cycle ---- */

static void stop(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = 1;
	log_info("stopping");
	uv_timer_stop(&d->reconnect);
	uv_timer_stop(&d->heartbeat);
	uv_timer_stop(&d->retry);
	if (d->sched)
		conn_close(d->sched, 0);
	kube_agent_free(d->kube);
	d->kube = NULL;
	for (size_t i = 0; i < d->nsets; i++)
		free_set(d, d->sets[i]);
	d->nsets = 0;
	peers_free(d->peers);
	d->peers = NULL;
	ctl_free(d->ctl); /* cancels its clients' pulls */
	d->ctl = NULL;
	adhoc_free(d->adhoc);
	d->adhoc = NULL;
	mirror_free(d->mirror);
	d->mirror = NULL;
	watch_free(d->watch);
	d->watch = NULL;
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->reconnect, NULL);
	uv_close((uv_handle_t *)&d->heartbeat, NULL);
	uv_close((uv_handle_t *)&d->retry, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	stop(s->data);
}

/* Datasets published here before a restart stay ready (their files are in
 * place and were verified when they arrived) until the scheduler assigns
 * them again, so a restarted agent does not fail readiness probes while
 * the scheduler is away. */
static void restore_sets(struct daemon *d)
{
	char **names;
	size_t n;
	if (cache_dataset_list(d->cache, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct cache_dataset ds;
		char *want = path_join(d->o->target, names[i]);
		struct stat st;
		if (cache_dataset_get(d->cache, names[i], &ds) == 1) {
			if (!strcmp(ds.target, want) && stat(want, &st) == 0 &&
			    S_ISDIR(st.st_mode)) {
				struct dset *s = xcalloc(1, sizeof *s);
				s->d = d;
				s->name = xstrdup(names[i]);
				s->restored = 1;
				s->pub_id = ds.manifest_id;
				s->pub_source = xstrdup(ds.source ? ds.source : "");
				d->sets = xrealloc(d->sets, (d->nsets + 1) * sizeof *d->sets);
				d->sets[d->nsets++] = s;
				log_info(
				    "dataset %s: published before the restart; ready until the "
				    "scheduler says otherwise",
				    s->name);
				watch_dataset(d->watch, s->name);
			}
			cache_dataset_close(&ds);
		}
		free(want);
		free(names[i]);
	}
	free(names);
}

/* What peers dial: --advertise; else the listen address with the port the
 * kernel chose, its host taken from $POD_IP or $HOST_IP (the Downward API)
 * when it listens on every address. Left unspecified ("0.0.0.0:PORT"), the
 * scheduler fills in the address this agent connects from: an unspecified
 * host is never handed to peers. */
static char *advertised_addr(const struct daemon_options *o, int port)
{
	if (o->advertise)
		return xstrdup(o->advertise);
	const char *colon = strrchr(o->listen, ':');
	int len = colon ? (int)(colon - o->listen) : (int)strlen(o->listen);
	char *addr = xasprintf("%.*s:%d", len, o->listen, port);
	if (!conn_addr_unspecified(addr))
		return addr;
	const char *env[] = {"POD_IP", "HOST_IP"};
	for (size_t i = 0; i < 2; i++) {
		const char *ip = getenv(env[i]);
		if (ip && *ip) {
			free(addr);
			return strchr(ip, ':') ? xasprintf("[%s]:%d", ip, port)
					       : xasprintf("%s:%d", ip, port);
		}
	}
	return addr;
}

static int setup_kube(struct daemon *d, char **detail)
{
	struct kube_config kc;
	int rc = kube_config_load(d->o->kubeconfig, &kc, detail);
	if (rc <= 0)
		return rc;
	load_node_labels(d);
	rc = kube_agent_new(&d->loop, d, &kc, d->o->node, &d->kube);
	if (rc < 0)
		*detail = xasprintf("kubernetes: %s", sb_strerror(rc));
	kube_config_close(&kc);
	return rc;
}

/* This node's identity: DATA/DAEMON_KEY_FILE, made on first start. The
 * scheduler pins it to the node's name at its first registration. */
static int load_key(struct daemon *d, char **detail)
{
	char *path = path_join(d->o->data, DAEMON_KEY_FILE), *why = NULL;
	char fp[SECURE_FINGERPRINT_LEN];
	int created;
	int rc = secure_keypair_init(path, &d->key, &created, &why);
	if (rc < 0) {
		*detail = why ? why : xasprintf("%s: %s", path, sb_strerror(rc));
		why = NULL;
	} else {
		secure_key_fingerprint(d->key.pub, fp);
		log_info("node %s: %s key %s in %s", d->o->node, created ? "new" : "its", fp, path);
	}
	free(why);
	free(path);
	return rc;
}

static int setup(struct daemon *d, char **detail)
{
	char *det = NULL;
	int rc = secure_token_load(d->o->token_file, &d->token, &det);
	if (rc < 0) {
		*detail = det ? det : xasprintf("%s: %s", d->o->token_file, sb_strerror(rc));
		return rc;
	}
	if ((rc = path_mkdirs(d->o->target, 0755)) < 0) {
		*detail = xasprintf("target %s: %s", d->o->target, sb_strerror(rc));
		return rc;
	}
	if ((rc = cache_open(d->o->data, d->o->cache_size, &d->cache)) < 0) {
		*detail = xasprintf("cannot open the cache in %s: %s", d->o->data, sb_strerror(rc));
		return rc;
	}
	if ((rc = load_key(d, detail)) < 0)
		return rc;
	d->adhoc = adhoc_new(&d->loop, d, d->cache);
	struct watch_hooks wh = {.arg = d, .damaged = hook_damaged};
	watch_new(&d->loop, d->cache, &wh, &d->watch);
	restore_sets(d);
	struct peers_config pc = {.node = d->o->node,
				  .listen = d->o->listen,
				  .token = &d->token,
				  .key = &d->key,
				  .encrypt = d->o->encrypt,
				  .cache = d->cache};
	if ((rc = peers_new(&d->loop, &pc, &d->peers, detail)) < 0)
		return rc;
	peers_on_bad_block(d->peers, hook_bad_block, d->watch);
	d->advertise = advertised_addr(d->o, peers_port(d->peers));
	if ((rc = ctl_new(&d->loop, d, d->o->socket, d->o->http, &d->ctl, detail)) < 0)
		return rc;
	if (d->o->registry_mirror) {
		struct mirror_config mc = {.listen = d->o->registry_mirror,
					   .target = d->o->target,
					   .d = d,
					   .cache = d->cache};
		if ((rc = mirror_new(&d->loop, &mc, &d->mirror, detail)) < 0)
			return rc;
	}
	return setup_kube(d, detail);
}

/* One line with what an operator checks first. */
static void log_started(struct daemon *d)
{
	const struct daemon_options *o = d->o;
	struct buf labels = BUF_INIT;
	for (size_t i = 0; i < o->nlabels; i++)
		buf_printf(&labels, "%s%s=%s", i ? "," : "", o->labels[i].key, o->labels[i].value);
	log_info("syncbit %s (%s) daemon: node %s, labels %s, scheduler %s, peers on %s, http "
		 "%s, socket %s, data %s, target %s",
		 SYNCBIT_VERSION, syncbit_commit(), o->node, labels.len ? buf_cstr(&labels) : "-",
		 o->scheduler, d->advertise, o->http ? o->http : "off", o->socket, o->data,
		 o->target);
	buf_close(&labels);
}

int daemon_run(const struct daemon_options *o, char **detail)
{
	struct daemon d = {
	    .o = o, .heartbeat_ms = DAEMON_HEARTBEAT_MS, .backoff_ms = DAEMON_RECONNECT_MIN_MS};
	*detail = NULL;
	log_set_field("node", o->node); /* every JSON line says which agent */
	uv_loop_init(&d.loop);
	uplink_init(&d.link, o->scheduler, uv_now(&d.loop));
	uv_timer_init(&d.loop, &d.reconnect);
	uv_timer_init(&d.loop, &d.heartbeat);
	uv_timer_init(&d.loop, &d.retry);
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	d.reconnect.data = d.heartbeat.data = d.retry.data = &d;
	d.sigterm.data = d.sigint.data = &d;
	signal(SIGPIPE, SIG_IGN);
	admit_fd_limit_raise(NULL);
	int rc = setup(&d, detail);
	if (rc == 0) {
		uv_signal_start(&d.sigterm, on_signal, SIGTERM);
		uv_signal_start(&d.sigint, on_signal, SIGINT);
		uv_timer_start(&d.retry, retry_tick, 1000, 1000);
		dial_scheduler(&d.reconnect);
		log_started(&d);
	}
	if (rc < 0)
		stop(&d);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	free(d.sets);
	free(d.advertise);
	json_decref(d.node_labels);
	cache_free(d.cache);
	secure_keypair_close(&d.key);
	if (uv_loop_close(&d.loop) != 0)
		log_warn("daemon: event loop still had handles at exit");
	return rc;
}
