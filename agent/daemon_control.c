/* The agent's link to the scheduler: dialling and registering, the
 * control messages it receives (one dispatch table), and heartbeats. Loop
 * thread only. */
#include "agent/daemon_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent/adhoc.h"
#include "agent/cache.h"
#include "agent/ctl.h"
#include "agent/mirror.h"
#include "agent/peer.h"
#include "common/net/conn.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/log.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/version.h"
#include "common/net/runs.h"
#include "common/net/wire.h"

/* Body limits of the scheduler's messages (the control table below). */
#define CONTROL_BODY_MAX       (256u << 20) /* an Assign carries a whole manifest */
#define CONTROL_REGISTERED_MAX 1024
#define CONTROL_UNASSIGN_MAX   1024
#define CONTROL_HASHES_MAX     (64u << 20) /* a version's block hashes */
#define CONTROL_PEERS_MAX      (16u << 20)
#define CONTROL_ORIGIN_MAX     (64u << 20) /* an origin plan */
#define CONTROL_ERROR_MAX      4096
#define CONTROL_PULL_REPLY_MAX 8192

/* Heartbeats go out on their own timer, due every heartbeat_ms from the
 * registration whatever else the loop does (the heartbeats a change sends
 * at once move nothing). A tick the loop ran late brings the next one
 * closer, so one busy spell never stretches two gaps: the scheduler takes
 * a node as gone after two intervals and a slack (common/net/wire.h). A
 * heartbeat is built from counters in memory, with no I/O but a statvfs. */
static void heartbeat_tick(uv_timer_t *t)
{
	struct daemon *d = t->data;
	uint64_t now = uv_now(&d->loop), late = now - d->heartbeat_due;
	if (now > d->heartbeat_due && late > d->heartbeat_ms / 2 &&
	    (!d->late_logged_ms || now - d->late_logged_ms >= LOG_LIMIT_MS)) {
		log_with(LOG_WARN, LOG_KV({"scheduler", d->sched_addr}),
			 "heartbeat %llu ms late: this agent's event loop was busy (the scheduler "
			 "takes a node as gone after %llu ms without one)",
			 (unsigned long long)late,
			 (unsigned long long)wire_silence_ms(d->heartbeat_ms));
		d->late_logged_ms = now;
	}
	send_heartbeat(d);
	while (d->heartbeat_due <= now)
		d->heartbeat_due += d->heartbeat_ms;
	uv_timer_start(&d->heartbeat, heartbeat_tick, d->heartbeat_due - now, 0);
}

static int h_registered(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
			uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Registered *m = (Syncbit__Registered *)msg;
	if (m->heartbeat_ms >= 100 && m->heartbeat_ms <= 60000)
		d->heartbeat_ms = m->heartbeat_ms;
	d->hb_deltas = m->heartbeat_deltas;
	d->hb_runs = m->heartbeat_deltas && m->heartbeat_runs;
	daemon_hb_sent_clear(d); /* this scheduler has seen no map yet */
	d->sched_ready = 1;
	uplink_up(&d->link, uv_now(&d->loop));
	d->backoff_ms = DAEMON_RECONNECT_MIN_MS;
	if (!d->restore_deadline_ms)
		d->restore_deadline_ms = uv_now(&d->loop) + DAEMON_RESTORE_MS;
	d->sched_misses = 0;
	log_with(LOG_INFO, LOG_KV({"scheduler", d->sched_addr}),
		 "registered with the scheduler at %s as %s", d->sched_addr, d->o->node);
	/* The scheduler's rule for silence, on this side too: a scheduler
	 * that acknowledges nothing for as long is gone (a cut link, its
	 * machine down), and the next one of --scheduler is dialled. */
	conn_set_user_timeout(d->sched, (unsigned)wire_silence_ms(d->heartbeat_ms));
	d->heartbeat_due = uv_now(&d->loop);
	uv_timer_start(&d->heartbeat, heartbeat_tick, 0, 0);
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

static int h_assign(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		    size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Assign *a = (Syncbit__Assign *)msg;
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
	s->repairing = 0; /* the new version replaces the one in place */
	keep_assign(s, body, len);
	update_peers(d);
	start_fetch(d, s);
	adhoc_notify(d->adhoc, s->name);
	mirror_dataset_changed(d->mirror, s->name);
out:
	return rc;
}

void daemon_unassign(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->nsets; i++) {
		struct dset *s = d->sets[i];
		if (strcmp(s->name, name))
			continue;
		if (s->pulled)
			log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
				 "dataset %s: no longer assigned here; unpinning it", s->name);
		else
			log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
				 "dataset %s: no longer assigned here; removing %s/%s", s->name,
				 d->o->target, s->name);
		remove_set(d, i);
		ctl_notify(d->ctl, name);
		adhoc_notify(d->adhoc, name);
		break;
	}
}

static int h_unassign(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		      uint8_t *pl, size_t plen)
{
	Syncbit__Unassign *m = (Syncbit__Unassign *)msg;
	if (m->dataset)
		daemon_unassign(ctx, m->dataset);
	return 0;
}

static int h_hashes(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		    size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Hashes *m = (Syncbit__Hashes *)msg;
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
	return rc;
}

static int h_peers(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		   size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Peers *m = (Syncbit__Peers *)msg;
	/* The list is the version's, and that of every version in also. */
	for (size_t k = 0; k <= m->n_also; k++) {
		const ProtobufCBinaryData *id = k ? &m->also[k - 1] : &m->version_id;
		for (size_t i = 0; id->len == HASH_LEN && i < d->nsets; i++) {
			struct dset *s = d->sets[i];
			if (s->cur && !memcmp(fetch_version_id(s->cur), id->data, HASH_LEN))
				set_peer_list(s, m->peers, m->n_peers);
		}
	}
	update_peers(d);
	return 0;
}

static int h_origin(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		    size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__Origin *m = (Syncbit__Origin *)msg;
	struct dset *s = find_version(d, m->version_id.data, m->version_id.len);
	if (s) {
		if (m->reason && m->reason[0])
			log_with(LOG_INFO, LOG_KV({"dataset", s->name}),
				 "dataset %s: origin plan: %s", s->name, m->reason);
		set_origin(s->cur, m->blocks, m->n_blocks);
	}
	return 0;
}

static int h_error(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		   size_t plen)
{
	struct daemon *d = ctx;
	Syncbit__ErrorMsg *m = (Syncbit__ErrorMsg *)msg;
	uplink_refused(&d->link, m->message);
	return 0;
}

static int h_pull_reply(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
			uint8_t *pl, size_t plen)
{
	struct daemon *d = ctx;
	return adhoc_reply(d->adhoc, (const Syncbit__PullReply *)msg);
}

static const struct frame_handler control_table[] = {
    {SYNCBIT__MSG_TYPE__MSG_REGISTERED, CONTROL_REGISTERED_MAX, FRAME_NO_PAYLOAD, h_registered},
    {SYNCBIT__MSG_TYPE__MSG_ASSIGN, CONTROL_BODY_MAX, FRAME_NO_PAYLOAD, h_assign},
    {SYNCBIT__MSG_TYPE__MSG_UNASSIGN, CONTROL_UNASSIGN_MAX, FRAME_NO_PAYLOAD, h_unassign},
    {SYNCBIT__MSG_TYPE__MSG_HASHES, CONTROL_HASHES_MAX, FRAME_NO_PAYLOAD, h_hashes},
    {SYNCBIT__MSG_TYPE__MSG_PEERS, CONTROL_PEERS_MAX, FRAME_NO_PAYLOAD, h_peers},
    {SYNCBIT__MSG_TYPE__MSG_ORIGIN, CONTROL_ORIGIN_MAX, FRAME_NO_PAYLOAD, h_origin},
    {SYNCBIT__MSG_TYPE__MSG_ERROR, CONTROL_ERROR_MAX, FRAME_NO_PAYLOAD, h_error},
    {SYNCBIT__MSG_TYPE__MSG_PULL_REPLY, CONTROL_PULL_REPLY_MAX, FRAME_NO_PAYLOAD, h_pull_reply},
};

static int sched_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		       uint8_t *payload, size_t plen)
{
	struct daemon *d = conn_data(c);
	return frame_dispatch(control_table, sizeof control_table / sizeof *control_table, d, type,
			      body, len, payload, plen);
}

uint64_t disk_free(const char *dir)
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
	m.peers_shared = 1;
	wire_send(c, SYNCBIT__MSG_TYPE__MSG_REGISTER, &m.base, NULL, 0, NULL, NULL);
	free(labels);
	free(m.labels);
}

/* How many addresses --scheduler lists. */
static unsigned sched_count(const char *list)
{
	unsigned n = 1;
	for (const char *p = list; *p; p++)
		n += *p == ',';
	return n;
}

/* The at-th address of the list into d->sched_addr. */
static void sched_pick(struct daemon *d)
{
	const char *p = d->o->scheduler;
	for (unsigned i = 0; i < d->sched_at && strchr(p, ','); i++)
		p = strchr(p, ',') + 1;
	size_t n = strcspn(p, ",");
	if (n >= sizeof d->sched_addr)
		n = sizeof d->sched_addr - 1;
	memcpy(d->sched_addr, p, n);
	d->sched_addr[n] = 0;
}

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
	/* Schedulers of one cluster (--scheduler A,B,C): a standby refuses
	 * and a leader that is gone does not answer; the next one is dialled
	 * at once, and the backoff grows once every one of them failed. */
	unsigned n = sched_count(d->o->scheduler);
	if (n > 1) {
		d->sched_at = (d->sched_at + 1) % n;
		if (++d->sched_misses % n) {
			uv_timer_start(&d->reconnect, dial_scheduler, DAEMON_RECONNECT_MIN_MS / 5,
				       0);
			return;
		}
	}
	uv_timer_start(&d->reconnect, dial_scheduler, d->backoff_ms, 0);
	d->backoff_ms = d->backoff_ms * 2 > DAEMON_RECONNECT_MAX_MS ? DAEMON_RECONNECT_MAX_MS
								    : d->backoff_ms * 2;
}

static const struct conn_callbacks sched_cbs = {
    .on_ready = sched_ready, .on_frame = sched_frame, .on_close = sched_close};

void dial_scheduler(uv_timer_t *t)
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
				  .payload_max = 1,
				  .table = control_table,
				  .table_len = sizeof control_table / sizeof *control_table};
	sched_pick(d);
	d->link.addr = d->sched_addr;
	int rc = conn_dial(&d->loop, d->sched_addr, &cfg, &sched_cbs, d, &d->sched);
	if (rc < 0) {
		uplink_closed(&d->link, uv_now(&d->loop), rc,
			      rc == SB_EURI || rc == -EINVAL ? "expected HOST:PORT" : NULL);
		d->sched_at = (d->sched_at + 1) % sched_count(d->o->scheduler);
		uv_timer_start(&d->reconnect, dial_scheduler, DAEMON_RECONNECT_MAX_MS, 0);
	}
}

void daemon_hb_sent_clear(struct daemon *d)
{
	for (size_t i = 0; i < d->nhb_sent; i++)
		free(d->hb_sent[i].bits);
	free(d->hb_sent);
	d->hb_sent = NULL;
	d->nhb_sent = 0;
}

/* 1 when every one of n bits is set. */
static int all_set(const uint8_t *bits, uint32_t n)
{
	for (uint32_t i = 0; i < n / 8; i++)
		if (bits[i] != 0xff)
			return 0;
	for (uint32_t b = n / 8 * 8; b < n; b++)
		if (!(bits[b / 8] & (1u << (b % 8))))
			return 0;
	return 1;
}

/* This connection's record of version vid's map (found or made). */
static struct hb_sent *hb_entry(struct daemon *d, const uint8_t *vid)
{
	struct hb_sent *e = NULL;
	for (size_t i = 0; i < d->nhb_sent && !e; i++)
		if (!memcmp(d->hb_sent[i].vid, vid, HASH_LEN))
			e = &d->hb_sent[i];
	if (!e) {
		d->hb_sent = xrealloc(d->hb_sent, (d->nhb_sent + 1) * sizeof *d->hb_sent);
		e = &d->hb_sent[d->nhb_sent++];
		memset(e, 0, sizeof *e);
		memcpy(e->vid, vid, HASH_LEN);
	}
	e->seen = 1;
	return e;
}

/* 1 when every bit of a is set in b. */
static int subset(const uint8_t *a, const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] & ~b[i])
			return 0;
	return 1;
}

/* How v tells its map bf: the map this connection last told (have_same),
 * the blocks added to it (have_added), or in full, as runs when shorter
 * (have_runs) or as bits; e records what the scheduler holds after it. In
 * full again after DAEMON_HB_FULL_EVERY heartbeats, or when a block went. */
static void hb_map(struct daemon *d, Syncbit__VersionState *v, const Syncbit__Bitfield *bf)
{
	const uint8_t *bits = bf->bits.data;
	uint32_t n = bf->nblocks;
	size_t len = (n + 7) / 8;
	struct hb_sent *e = hb_entry(d, v->version_id.data);
	uint32_t *runs;
	size_t count;
	int told = e->bits && e->nblocks == n && e->skipped + 1 < DAEMON_HB_FULL_EVERY;
	if (told && !memcmp(e->bits, bits, len)) {
		e->skipped++;
		v->have = NULL;
		v->have_same = 1;
		return;
	}
	if (told && d->hb_runs && subset(e->bits, bits, len)) {
		count = runs_encode(bits, e->bits, n, &runs);
		if (runs_wire_bytes(runs, count) < len) {
			memcpy(e->bits, bits, len);
			e->skipped++;
			v->have = NULL;
			v->have_added = runs;
			v->n_have_added = count;
			return;
		}
		free(runs);
	}
	free(e->bits);
	e->bits = xmalloc(len + 1);
	memcpy(e->bits, bits, len);
	e->nblocks = n;
	e->skipped = 0;
	if (!d->hb_runs)
		return;
	count = runs_encode(bits, NULL, n, &runs);
	if (runs_wire_bytes(runs, count) < len) {
		v->have = NULL; /* none held: no runs, no map */
		v->have_runs = runs;
		v->n_have_runs = count;
	} else {
		free(runs);
	}
}

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
	if (d->hb_deltas && bf->nblocks && all_set(bf->bits.data, bf->nblocks)) {
		v->have = NULL;
		v->have_all = 1;
	} else if (d->hb_deltas) {
		hb_map(d, v, bf);
	}
	v->published = fetch_published(f);
	v->bytes_from_origin = st.bytes_from_origin;
	v->bytes_from_peers = st.bytes_from_peers;
	v->bytes_reused = st.bytes_reused;
	v->bytes_served = peers_served(d->peers, fetch_version_id(f));
	v->origin_refetch_bad_peer = st.refetch_bad_peer;
	v->origin_refetch_no_peer = st.refetch_no_peer;
	v->error = f == s->cur && s->error ? s->error : (char *)"";
}

void send_heartbeat(struct daemon *d)
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
	/* Maps of versions no longer reported are forgotten. */
	size_t keep = 0;
	for (size_t i = 0; i < d->nhb_sent; i++) {
		if (d->hb_sent[i].seen) {
			d->hb_sent[i].seen = 0;
			d->hb_sent[keep++] = d->hb_sent[i];
		} else {
			free(d->hb_sent[i].bits);
		}
	}
	d->nhb_sent = keep;
	Syncbit__Heartbeat m = SYNCBIT__HEARTBEAT__INIT;
	m.seq = ++d->seq;
	m.disk_free = disk_free(d->o->data);
	m.versions = vp;
	m.n_versions = n;
	wire_send(d->sched, SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &m.base, NULL, 0, NULL, NULL);
	for (size_t i = 0; i < n; i++) {
		free(vs[i].have_runs);
		free(vs[i].have_added);
	}
	free(vs);
	free(vp);
	free(bf);
}

int daemon_send_control(struct daemon *d, uint32_t type, const ProtobufCMessage *m)
{
	if (!d->sched_ready)
		return -ENOTCONN;
	return wire_send(d->sched, type, m, NULL, 0, NULL, NULL);
}
