/* Shared by the scheduler server tests (test_sched_*.c): a scheduler on
 * loopback with its own loop, fake agents that dial it, register, keep
 * the last message of each kind and report hashes, and a restart on the
 * same data. */
#ifndef SYNCBIT_SCHED_FIXTURE_H
#define SYNCBIT_SCHED_FIXTURE_H

#include "testutil.h"

#include <jansson.h>

#include "common/buf.h"
#include "common/net/conn.h"
#include "common/err.h"
#include "common/log.h"
#include "common/net/noise.h"
#include "common/net/wire.h"
#include "scheduler/api.h"
#include "scheduler/listing.h"
#include "scheduler/sched.h"
#include "scheduler/server.h"

#define BS	(64u << 10)
#define WAIT_MS 5000

struct agent {
	const char *name;
	struct conn *c;
	int ready, closed, close_status;
	int n_registered, n_assign, n_unassign, n_peers, n_origin, n_hashes, n_reply;
	int heartbeat_deltas; /* the last Registered offered them */
	int heartbeat_runs;   /* ... and maps as runs */
	int peers_shared;     /* registers with Register.peers_shared */
	int origin_newer;     /* the last share told came in an Origin, not an Assign */
	Syncbit__Assign *assign;
	Syncbit__Origin *origin;
	Syncbit__Peers *peers;
	Syncbit__Hashes *hashes;
	Syncbit__AdminReply *reply;
	char unassigned[64];
	int error_code; /* the last ErrorMsg */
	char error[256];
	uv_timer_t beat; /* empty heartbeats unless silent */
	int silent;
	uint64_t last_beat; /* loop time of the last heartbeat sent */
	struct agent *next; /* in fx.agents until freed */
};

static struct {
	char *dir;
	struct sched_options o;
	struct sched s;
	uv_timer_t tick;
	char addr[64];
	struct hash_id version;
	struct agent *agents; /* left over when a test fails half-way */
} fx;

#define WAIT_FOR(cond)                                             \
	do {                                                       \
		uint64_t deadline_ = uv_now(&fx.s.loop) + WAIT_MS; \
		while (!(cond) && uv_now(&fx.s.loop) < deadline_)  \
			uv_run(&fx.s.loop, UV_RUN_ONCE);           \
		assert_true(cond);                                 \
	} while (0)

/* WAIT_FOR with a deadline of its own. */
#define WAIT_FOR_MS(cond, ms)                                     \
	do {                                                      \
		uint64_t deadline_ = uv_now(&fx.s.loop) + (ms);   \
		while (!(cond) && uv_now(&fx.s.loop) < deadline_) \
			uv_run(&fx.s.loop, UV_RUN_ONCE);          \
		assert_true(cond);                                \
	} while (0)

/* Run the loop for ms (a 10 ms tick keeps it turning). */
static inline void run_for(uint64_t ms);

static inline void on_ready(struct conn *c, int status)
{
	struct agent *a = conn_data(c);
	a->ready = status == 0;
}

#define KEEP(field, type, msgtype)                                     \
	do {                                                           \
		syncbit__##type##__free_unpacked(a->field, NULL);      \
		a->field = syncbit__##type##__unpack(NULL, len, body); \
		assert_non_null(a->field);                             \
	} while (0)

static inline int on_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
			   uint8_t *payload, size_t plen)
{
	struct agent *a = conn_data(c);
	free(payload);
	switch (type) {
	case SYNCBIT__MSG_TYPE__MSG_REGISTERED: {
		Syncbit__Registered *r = syncbit__registered__unpack(NULL, len, body);
		assert_non_null(r);
		a->heartbeat_deltas = r->heartbeat_deltas;
		a->heartbeat_runs = r->heartbeat_runs;
		syncbit__registered__free_unpacked(r, NULL);
		a->n_registered++;
		break;
	}
	case SYNCBIT__MSG_TYPE__MSG_ASSIGN:
		KEEP(assign, assign, type);
		a->n_assign++;
		a->origin_newer = 0;
		break;
	case SYNCBIT__MSG_TYPE__MSG_UNASSIGN: {
		Syncbit__Unassign *m = syncbit__unassign__unpack(NULL, len, body);
		snprintf(a->unassigned, sizeof a->unassigned, "%s", m->dataset);
		syncbit__unassign__free_unpacked(m, NULL);
		a->n_unassign++;
		break;
	}
	case SYNCBIT__MSG_TYPE__MSG_PEERS:
		KEEP(peers, peers, type);
		a->n_peers++;
		break;
	case SYNCBIT__MSG_TYPE__MSG_ORIGIN:
		KEEP(origin, origin, type);
		a->n_origin++;
		a->origin_newer = 1;
		break;
	case SYNCBIT__MSG_TYPE__MSG_HASHES:
		KEEP(hashes, hashes, type);
		a->n_hashes++;
		break;
	case SYNCBIT__MSG_TYPE__MSG_ADMIN_REPLY:
		KEEP(reply, admin_reply, type);
		a->n_reply++;
		break;
	case SYNCBIT__MSG_TYPE__MSG_ERROR: {
		Syncbit__ErrorMsg *m = syncbit__error_msg__unpack(NULL, len, body);
		a->error_code = m->code;
		snprintf(a->error, sizeof a->error, "%s", m->message);
		syncbit__error_msg__free_unpacked(m, NULL);
		break;
	}
	default:
		break;
	}
	return 0;
}

static inline void on_close(struct conn *c, int status)
{
	struct agent *a = conn_data(c);
	a->closed = 1;
	a->close_status = status;
	a->c = NULL;
}

static const struct conn_callbacks cbs = {
    .on_ready = on_ready, .on_frame = on_frame, .on_close = on_close};

static void beat(uv_timer_t *t);

/* A node's static key: the same for a name every time it dials, unless
 * salted (another install of that node). */
static inline void node_key(const char *name, uint8_t salt, struct secure_keypair *kp)
{
	crypto_generichash(kp->priv, sizeof kp->priv, (const uint8_t *)name, strlen(name), &salt,
			   1);
	noise_public_key(kp->priv, kp->pub);
}

/* Dial as node `name` (the CLI for "cli": an admin connection with a fresh
 * key); salt picks another key for the name. ready tells whether the
 * handshake must succeed. */
static inline struct agent *agent_dial_key(const char *name, uint8_t salt)
{
	struct agent *a = calloc(1, sizeof *a);
	struct secure_keypair kp;
	int cli = !strcmp(name, "cli");
	node_key(name, salt, &kp);
	struct conn_config cfg = {.token = &fx.s.token,
				  .key = cli ? NULL : &kp,
				  .purpose = cli ? HANDSHAKE_ADMIN : HANDSHAKE_CONTROL,
				  .node = name,
				  .encrypt = 0};
	a->name = name;
	a->next = fx.agents;
	fx.agents = a;
	assert_int_equal(conn_dial(&fx.s.loop, fx.addr, &cfg, &cbs, a, &a->c), 0);
	uv_timer_init(&fx.s.loop, &a->beat);
	a->beat.data = a;
	uv_timer_start(&a->beat, beat, 50, 50);
	WAIT_FOR(a->ready || a->closed);
	assert_true(a->ready);
	return a;
}

static inline struct agent *agent_dial(const char *name)
{
	return agent_dial_key(name, 0);
}

static inline void beat(uv_timer_t *t)
{
	struct agent *a = t->data;
	Syncbit__Heartbeat hb = SYNCBIT__HEARTBEAT__INIT;
	if (a->c && !a->silent && a->n_registered) {
		wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &hb.base, NULL, 0, NULL, NULL);
		a->last_beat = uv_now(&fx.s.loop);
	}
}

static inline void agent_register(struct agent *a, const char *zone)
{
	Syncbit__Register m = SYNCBIT__REGISTER__INIT;
	Syncbit__Label l = SYNCBIT__LABEL__INIT, *lp = &l;
	char addr[64];
	snprintf(addr, sizeof addr, "%s:7401", a->name);
	l.key = "zone";
	l.value = (char *)zone;
	m.node = (char *)a->name;
	m.peer_addr = addr;
	m.labels = &lp;
	m.n_labels = 1;
	m.peers_shared = a->peers_shared;
	assert_int_equal(
	    wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_REGISTER, &m.base, NULL, 0, NULL, NULL), 0);
	WAIT_FOR(a->n_registered == 1);
}

static inline void agent_unlink(struct agent *a)
{
	for (struct agent **p = &fx.agents; *p; p = &(*p)->next)
		if (*p == a) {
			*p = a->next;
			break;
		}
}

static inline void agent_free(struct agent *a)
{
	agent_unlink(a);
	if (a->c)
		conn_close(a->c, 0);
	WAIT_FOR(a->closed);
	uv_close((uv_handle_t *)&a->beat, NULL);
	uv_run(&fx.s.loop, UV_RUN_NOWAIT);
	syncbit__assign__free_unpacked(a->assign, NULL);
	syncbit__origin__free_unpacked(a->origin, NULL);
	syncbit__peers__free_unpacked(a->peers, NULL);
	syncbit__hashes__free_unpacked(a->hashes, NULL);
	syncbit__admin_reply__free_unpacked(a->reply, NULL);
	free(a);
}

static inline uint32_t range_blocks(Syncbit__BlockRange **r, size_t n, uint32_t *first)
{
	uint32_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += r[i]->count;
	if (first)
		*first = n ? r[0]->first : UINT32_MAX;
	return total;
}

/* The blocks of a's origin share as it was last told (its Assign, or an
 * Origin after it). */
static inline uint32_t told_blocks(const struct agent *a)
{
	if (a->origin_newer)
		return range_blocks(a->origin->blocks, a->origin->n_blocks, NULL);
	return a->assign ? range_blocks(a->assign->origin, a->assign->n_origin, NULL) : 0;
}

static inline void add_file(struct source_listing *l, const char *path, uint64_t size)
{
	l->files = xrealloc(l->files, (l->nfiles + 1) * sizeof *l->files);
	struct source_file *f = &l->files[l->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	f->size = size;
	f->mode = 0644;
	f->digest = xstrdup(path);
}

static inline void tick(uv_timer_t *t)
{
}

static inline void run_for(uint64_t ms)
{
	uint64_t end = uv_now(&fx.s.loop) + ms;
	while (uv_now(&fx.s.loop) < end)
		uv_run(&fx.s.loop, UV_RUN_ONCE);
}

static inline int setup(void **state)
{
	struct source_listing l = {0};
	struct sched_version *v;
	char *detail = NULL;
	fx.dir = testutil_mkdtemp();
	fx.o = (struct sched_options){
	    .listen = "127.0.0.1:0", .data = fx.dir, .heartbeat_ms = 200, .encrypt = 0};
	source_options_default(&fx.o.src);
	if (sched_init(&fx.s, &fx.o, &detail) < 0)
		return -1;
	snprintf(fx.addr, sizeof fx.addr, "127.0.0.1:%d", conn_listener_port(fx.s.listener));
	/* The tests below count on stripes of one block: a node keeps only the
	 * read it has under way when the plan is made again. */
	fx.s.cluster.keep_head = 1;
	uv_timer_init(&fx.s.loop, &fx.tick);
	uv_timer_start(&fx.tick, tick, 10, 10);
	/* 6 blocks: a.bin 0-2, b.bin 3, c.bin 4-5 */
	add_file(&l, "a.bin", 3 * BS);
	add_file(&l, "b.bin", 100);
	add_file(&l, "c.bin", 2 * BS);
	if (version_from_listing(&l, "file:///x", BS, MANIFEST_FORMAT, &v, &detail) < 0)
		return -1;
	source_listing_close(&l);
	fx.version = v->id;
	sched_apply_version(&fx.s, "models", "file:///x", NULL, 0, BS, v);
	return 0;
}

static inline int teardown(void **state)
{
	/* Agents a failed test left behind: stop them so the loop can end. */
	for (struct agent *a = fx.agents; a; a = a->next) {
		if (a->c)
			conn_close(a->c, 0);
		uv_close((uv_handle_t *)&a->beat, NULL);
	}
	fx.agents = NULL;
	uv_close((uv_handle_t *)&fx.tick, NULL);
	sched_stop(&fx.s);
	uv_run(&fx.s.loop, UV_RUN_DEFAULT);
	sched_close(&fx.s);
	testutil_rmtree(fx.dir);
	return 0;
}

/* One Ingested message of blocks[0..n), hash {block + 1, salt, 0...}. */
static inline void ingest_blocks(struct agent *a, const uint32_t *blocks, size_t n, uint8_t salt)
{
	Syncbit__Ingested m = SYNCBIT__INGESTED__INIT;
	Syncbit__BlockHash bh[8], *bp[8];
	uint8_t h[8][HASH_LEN] = {{0}};
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		syncbit__block_hash__init(&bh[i]);
		h[i][0] = (uint8_t)(blocks[i] + 1);
		h[i][1] = salt;
		bh[i].block = blocks[i];
		bh[i].hash.data = h[i];
		bh[i].hash.len = HASH_LEN;
		bp[i] = &bh[i];
	}
	m.version_id.data = fx.version.b;
	m.version_id.len = HASH_LEN;
	m.blocks = bp;
	m.n_blocks = n;
	assert_int_equal(
	    wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_INGESTED, &m.base, NULL, 0, NULL, NULL), 0);
}

static inline void ingest(struct agent *a, uint32_t block, uint8_t salt)
{
	ingest_blocks(a, &block, 1, salt);
}

/* Stop the scheduler (its agents gone) and start it on the same data. */
static inline void restart(void)
{
	char *detail = NULL;
	uv_close((uv_handle_t *)&fx.tick, NULL);
	sched_stop(&fx.s);
	uv_run(&fx.s.loop, UV_RUN_DEFAULT);
	sched_close(&fx.s);
	assert_int_equal(sched_init(&fx.s, &fx.o, &detail), 0);
	snprintf(fx.addr, sizeof fx.addr, "127.0.0.1:%d", conn_listener_port(fx.s.listener));
	/* The tests below count on stripes of one block: a node keeps only the
	 * read it has under way when the plan is made again. */
	fx.s.cluster.keep_head = 1;
	uv_timer_init(&fx.s.loop, &fx.tick);
	uv_timer_start(&fx.tick, tick, 10, 10);
}

/* After a restart the same version comes back with the hashes learnt. */

/* 1 when block b is in the ranges r[0..n). */
static inline int in_ranges(Syncbit__BlockRange **r, size_t n, uint32_t b)
{
	for (size_t i = 0; i < n; i++)
		if (b >= r[i]->first && b - r[i]->first < r[i]->count)
			return 1;
	return 0;
}

static inline const struct cluster_node *node_named(const char *name)
{
	return cluster_node_find(&fx.s.cluster, name);
}

/* A node that joins does not take the blocks the first node is reading:
 * each share keeps its first ASSIGN_KEEP_HEAD unread blocks through a new
 * plan. With 6 blocks, all of them are a's reads in flight, so b gets no
 * share and takes every block from a. When a leaves, b reads them all. */

#endif
