/* One simulated agent: its control connection, what the scheduler tells it,
 * its heartbeats, and the progress it makes without moving a byte: blocks
 * of its origin share "read" at --origin-rate and announced with Ingested,
 * blocks whose hashes are known "received from peers" at --peer-rate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sched-scale/sim.h"
#include "common/net/runs.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/manifest.h"
#include "common/net/wire.h"
#include "proto/wire.pb-c.h"

#define BIT(p, b)	((p)[(b) / 8] >> ((b) % 8) & 1)
#define SETBIT(p, b)	((p)[(b) / 8] |= (uint8_t)(1u << ((b) % 8)))
#define REDIAL_MS	1000
#define BODY_MAX	(256u << 20)
#define GVER_BLOCKS_MAX (1u << 24)

static void fake_hash(const struct gver *g, uint32_t b, uint8_t out[32])
{
	memcpy(out, g->id, 32);
	memcpy(out, &b, sizeof b);
	out[31] |= 1;
}

struct nver *node_ver(struct snode *n, const struct gver *g)
{
	for (size_t i = 0; i < n->nvers; i++)
		if (n->vers[i].g == g)
			return &n->vers[i];
	return NULL;
}

static struct nver *ver_of_dataset(struct snode *n, const char *dataset)
{
	for (size_t i = 0; i < n->nvers; i++)
		if (!strcmp(n->vers[i].dataset, dataset))
			return &n->vers[i];
	return NULL;
}

static void ver_drop(struct snode *n, struct nver *v)
{
	free(v->dataset);
	free(v->have);
	free(v->sent);
	free(v->plan);
	*v = n->vers[--n->nvers];
}

uint32_t node_unread(const struct nver *v)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < v->nplan; i++)
		k += !BIT(v->have, v->plan[i]);
	return k;
}

static void set_plan(struct nver *v, Syncbit__BlockRange *const *r, size_t n)
{
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += r[i]->count;
	free(v->plan);
	v->plan = xcalloc(total + 1, sizeof *v->plan);
	v->nplan = 0;
	for (size_t i = 0; i < n; i++)
		for (uint32_t k = 0; k < r[i]->count; k++)
			if (r[i]->first + k < v->g->nblocks)
				v->plan[v->nplan++] = r[i]->first + k;
}

static void node_send(struct snode *n, uint32_t type, const ProtobufCMessage *m)
{
	if (n->conn && !n->frozen && wire_send(n->conn, type, m, NULL, 0, NULL, NULL) == 0)
		sim->msgs_out++;
}

/* ---- heartbeats ------------------------------------------------------------ */

/* A map that changed, as the agent tells it (agent/daemon_control.c): the
 * blocks added to the one last told, or in full, as runs when shorter. */
static void map_told(struct snode *n, struct nver *v, Syncbit__VersionState *vs)
{
	uint32_t nb = v->g->nblocks, *runs;
	size_t len = (nb + 7) / 8, count;
	if (n->runs && v->sent && v->sent_nhave >= 0 && v->skipped + 1 < 30) {
		count = runs_encode(v->have, v->sent, nb, &runs);
		if (runs_wire_bytes(runs, count) < len) {
			vs->have = NULL;
			vs->have_added = runs;
			vs->n_have_added = count;
			memcpy(v->sent, v->have, len);
			v->sent_nhave = v->nhave;
			v->skipped++;
			return;
		}
		free(runs);
	}
	v->sent_nhave = v->nhave;
	v->skipped = 0;
	if (!n->runs)
		return;
	if (!v->sent)
		v->sent = xmalloc(len + 1);
	memcpy(v->sent, v->have, len);
	count = runs_encode(v->have, NULL, nb, &runs);
	if (runs_wire_bytes(runs, count) < len) {
		vs->have = NULL;
		vs->have_runs = runs;
		vs->n_have_runs = count;
	} else {
		free(runs);
	}
}

static void heartbeat(uv_timer_t *t)
{
	struct snode *n = t->data;
	if (!n->registered || n->frozen)
		return;
	Syncbit__VersionState *vs = xcalloc(n->nvers + 1, sizeof *vs);
	Syncbit__VersionState **vp = xcalloc(n->nvers + 1, sizeof *vp);
	Syncbit__Bitfield *bf = xcalloc(n->nvers + 1, sizeof *bf);
	for (size_t i = 0; i < n->nvers; i++) {
		struct nver *v = &n->vers[i];
		syncbit__version_state__init(&vs[i]);
		syncbit__bitfield__init(&bf[i]);
		bf[i].version_id.data = v->g->id;
		bf[i].version_id.len = 32;
		bf[i].nblocks = v->g->nblocks;
		bf[i].bits.data = v->have;
		bf[i].bits.len = (v->g->nblocks + 7) / 8;
		vs[i].dataset = v->dataset;
		vs[i].version_id = bf[i].version_id;
		vs[i].have = &bf[i];
		if (n->deltas && v->nhave == v->g->nblocks) {
			vs[i].have = NULL;
			vs[i].have_all = 1;
		} else if (n->deltas && v->sent_nhave == v->nhave && v->skipped + 1 < 30) {
			vs[i].have = NULL; /* bits only ever get set: same count, same map */
			vs[i].have_same = 1;
			v->skipped++;
		} else {
			map_told(n, v, &vs[i]);
		}
		vs[i].published = v->nhave == v->g->nblocks;
		vs[i].bytes_from_origin = v->from_origin << 12;
		vs[i].bytes_from_peers = v->from_peers << 12;
		vs[i].error = (char *)"";
		vp[i] = &vs[i];
	}
	Syncbit__Heartbeat m = SYNCBIT__HEARTBEAT__INIT;
	m.seq = ++n->seq;
	m.disk_free = 1ull << 40;
	m.versions = vp;
	m.n_versions = n->nvers;
	sim->bytes_hb += syncbit__heartbeat__get_packed_size(&m);
	node_send(n, SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &m.base);
	n->last_hb_ms = sim_wall_ms();
	for (size_t i = 0; i < n->nvers; i++) {
		free(vs[i].have_runs);
		free(vs[i].have_added);
	}
	free(vs);
	free(vp);
	free(bf);
}

/* ---- progress -------------------------------------------------------------- */

/* Read up to *credit blocks of v's share; announce them in one Ingested. */
static void read_origin(struct snode *n, struct nver *v)
{
	if (v->g->held || v->origin_credit < 1)
		return;
	Syncbit__BlockHash *bh = xcalloc(v->nplan + 1, sizeof *bh);
	Syncbit__BlockHash **bp = xcalloc(v->nplan + 1, sizeof *bp);
	uint8_t(*hashes)[32] = xcalloc(v->nplan + 1, 32);
	size_t k = 0;
	for (uint32_t i = 0; i < v->nplan && v->origin_credit >= 1; i++) {
		uint32_t b = v->plan[i];
		if (BIT(v->have, b))
			continue;
		SETBIT(v->have, b);
		v->nhave++;
		v->from_origin++;
		v->origin_credit -= 1;
		syncbit__block_hash__init(&bh[k]);
		bh[k].block = b;
		fake_hash(v->g, b, hashes[k]);
		bh[k].hash.data = hashes[k];
		bh[k].hash.len = 32;
		bp[k] = &bh[k];
		k++;
	}
	if (k) {
		Syncbit__Ingested m = SYNCBIT__INGESTED__INIT;
		m.version_id.data = v->g->id;
		m.version_id.len = 32;
		m.blocks = bp;
		m.n_blocks = k;
		node_send(n, SYNCBIT__MSG_TYPE__MSG_INGESTED, &m.base);
	}
	if (node_unread(v) == 0)
		v->origin_credit = 0;
	free(bh);
	free(bp);
	free(hashes);
}

/* Blocks whose hashes are known, from peers, up to the credit. */
static void from_peers(struct nver *v)
{
	const struct gver *g = v->g;
	if (v->peer_credit < 1)
		return;
	for (uint32_t b = 0; b < g->nblocks && v->peer_credit >= 1; b++) {
		if (BIT(v->have, b) || !BIT(g->known, b))
			continue;
		SETBIT(v->have, b);
		v->nhave++;
		v->from_peers++;
		v->peer_credit -= 1;
	}
	if (v->peer_credit > sim->o.peer_rate)
		v->peer_credit = sim->o.peer_rate; /* no burst after an idle spell */
}

static void tick(uv_timer_t *t)
{
	struct snode *n = t->data;
	int busy = 0;
	if (!n->registered || n->frozen)
		return;
	for (size_t i = 0; i < n->nvers; i++) {
		struct nver *v = &n->vers[i];
		if (v->nhave == v->g->nblocks)
			continue;
		v->origin_credit += sim->o.origin_rate * SIM_TICK_MS / 1000.0;
		v->peer_credit += sim->o.peer_rate * SIM_TICK_MS / 1000.0;
		read_origin(n, v);
		from_peers(v);
		if (v->nhave == v->g->nblocks)
			sim_on_complete(n, v);
		else
			busy = 1;
	}
	if (!busy)
		uv_timer_stop(&n->tick);
}

static void wake(struct snode *n)
{
	if (!uv_is_active((uv_handle_t *)&n->tick))
		uv_timer_start(&n->tick, tick, SIM_TICK_MS, SIM_TICK_MS);
}

/* ---- what the scheduler says ----------------------------------------------- */

static int h_registered(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
			uint8_t *pl, size_t plen)
{
	struct snode *n = ctx;
	Syncbit__Registered *m = (Syncbit__Registered *)msg;
	n->heartbeat_ms = m->heartbeat_ms >= 100 ? m->heartbeat_ms : 1000;
	n->registered = 1;
	n->deltas = m->heartbeat_deltas && !getenv("SIM_FULL_MAPS");
	n->runs = n->deltas && m->heartbeat_runs && !getenv("SIM_NO_RUNS");
	for (size_t i = 0; i < n->nvers; i++)
		n->vers[i].sent_nhave = -1; /* a new connection: full maps first */
	/* Spread the heartbeats over the period, as independent agents are. */
	uv_timer_start(&n->hb, heartbeat, (uint64_t)rand() % n->heartbeat_ms, n->heartbeat_ms);
	sim_on_registered(n);
	return 0;
}

static uint32_t manifest_blocks(const Syncbit__Manifest *m)
{
	uint64_t total = 0;
	for (size_t i = 0; m && i < m->n_files; i++) {
		const Syncbit__FileEntry *e = m->files[i];
		if (e->type == SYNCBIT__FILE_TYPE__FILE_REGULAR && !e->hardlink_to && m->block_size)
			total += manifest_nblocks(e->size, m->block_size);
	}
	return total > GVER_BLOCKS_MAX ? 0 : (uint32_t)total;
}

/* The hashes an Assign's manifest carries are known. */
static void learn_manifest(struct gver *g, const Syncbit__Manifest *m)
{
	static const uint8_t zero[32];
	uint32_t b = 0;
	for (size_t i = 0; i < m->n_files && g->nknown < g->nblocks; i++) {
		const Syncbit__FileEntry *e = m->files[i];
		if (e->type != SYNCBIT__FILE_TYPE__FILE_REGULAR || e->hardlink_to)
			continue;
		for (size_t k = 0; k + 32 <= e->block_hashes.len && b < g->nblocks; k += 32, b++)
			if (!BIT(g->known, b) && memcmp(e->block_hashes.data + k, zero, 32)) {
				SETBIT(g->known, b);
				g->nknown++;
			}
	}
}

static int h_assign(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		    size_t plen)
{
	struct snode *n = ctx;
	Syncbit__Assign *m = (Syncbit__Assign *)msg;
	uint32_t nb = manifest_blocks(m->manifest);
	if (m->version_id.len != 32 || !m->dataset || nb == 0)
		return SB_EPROTO;
	struct gver *g = sim_gver(m->version_id.data, nb, m->dataset);
	if (g->nknown < g->nblocks)
		learn_manifest(g, m->manifest);
	struct nver *v = ver_of_dataset(n, m->dataset);
	if (v && v->g != g) {
		ver_drop(n, v);
		v = NULL;
	}
	if (!v) {
		n->vers = xrealloc(n->vers, (n->nvers + 1) * sizeof *n->vers);
		v = &n->vers[n->nvers++];
		memset(v, 0, sizeof *v);
		v->sent_nhave = -1;
		v->g = g;
		v->dataset = xstrdup(m->dataset);
		v->have = xcalloc(g->nblocks / 8 + 1, 1);
	}
	set_plan(v, m->origin, m->n_origin);
	sim_on_assign(n, v);
	sim_on_plan(n, v);
	wake(n);
	return 0;
}

static int h_unassign(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		      uint8_t *pl, size_t plen)
{
	struct snode *n = ctx;
	Syncbit__Unassign *m = (Syncbit__Unassign *)msg;
	struct nver *v = m->dataset ? ver_of_dataset(n, m->dataset) : NULL;
	if (v)
		ver_drop(n, v);
	return 0;
}

static int h_hashes(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		    size_t plen)
{
	struct snode *n = ctx;
	Syncbit__Hashes *m = (Syncbit__Hashes *)msg;
	struct gver *g = m->version_id.len == 32 ? sim_gver(m->version_id.data, 0, NULL) : NULL;
	for (size_t i = 0; g && i < m->n_blocks; i++) {
		uint32_t b = m->blocks[i]->block;
		if (b < g->nblocks && !BIT(g->known, b)) {
			SETBIT(g->known, b);
			g->nknown++;
		}
	}
	wake(n);
	return 0;
}

static int h_peers(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		   size_t plen)
{
	return 0; /* a simulated node exchanges no blocks */
}

static int h_origin(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		    size_t plen)
{
	struct snode *n = ctx;
	Syncbit__Origin *m = (Syncbit__Origin *)msg;
	struct gver *g = m->version_id.len == 32 ? sim_gver(m->version_id.data, 0, NULL) : NULL;
	struct nver *v = g ? node_ver(n, g) : NULL;
	if (v) {
		set_plan(v, m->blocks, m->n_blocks);
		sim_on_plan(n, v);
		wake(n);
	}
	return 0;
}

static int h_error(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		   size_t plen)
{
	struct snode *n = ctx;
	Syncbit__ErrorMsg *m = (Syncbit__ErrorMsg *)msg;
	fprintf(stderr, "sched-scale: %s: scheduler says: %s\n", n->name,
		m->message ? m->message : "?");
	return 0;
}

static int h_pull_reply(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
			uint8_t *pl, size_t plen)
{
	return 0;
}

static const struct frame_handler table[] = {
    {SYNCBIT__MSG_TYPE__MSG_REGISTERED, 1024, FRAME_NO_PAYLOAD, h_registered},
    {SYNCBIT__MSG_TYPE__MSG_ASSIGN, BODY_MAX, FRAME_NO_PAYLOAD, h_assign},
    {SYNCBIT__MSG_TYPE__MSG_UNASSIGN, 1024, FRAME_NO_PAYLOAD, h_unassign},
    {SYNCBIT__MSG_TYPE__MSG_HASHES, 64u << 20, FRAME_NO_PAYLOAD, h_hashes},
    {SYNCBIT__MSG_TYPE__MSG_PEERS, 64u << 20, FRAME_NO_PAYLOAD, h_peers},
    {SYNCBIT__MSG_TYPE__MSG_ORIGIN, 64u << 20, FRAME_NO_PAYLOAD, h_origin},
    {SYNCBIT__MSG_TYPE__MSG_ERROR, 4096, FRAME_NO_PAYLOAD, h_error},
    {SYNCBIT__MSG_TYPE__MSG_PULL_REPLY, 8192, FRAME_NO_PAYLOAD, h_pull_reply},
};

/* ---- the connection -------------------------------------------------------- */

static int on_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct snode *n = conn_data(c);
	free(payload);
	if (n->frozen)
		return 0; /* a hung node reads and forgets */
	sim->msgs_in++;
	return frame_dispatch(table, sizeof table / sizeof *table, n, type, body, len, NULL, 0);
}

static void on_ready(struct conn *c, int status)
{
	struct snode *n = conn_data(c);
	if (status < 0)
		return;
	Syncbit__Register r = SYNCBIT__REGISTER__INIT;
	Syncbit__Label l[2] = {SYNCBIT__LABEL__INIT, SYNCBIT__LABEL__INIT};
	Syncbit__Label *lp[2] = {&l[0], &l[1]};
	char addr[48], group[16];
	snprintf(addr, sizeof addr, "%s:%u", n->bind_ip, 20000 + n->idx % 40000);
	snprintf(group, sizeof group, "g%u", n->idx % (sim->o.groups ? sim->o.groups : 1));
	l[0].key = (char *)"sim";
	l[0].value = (char *)"1";
	l[1].key = (char *)"group";
	l[1].value = group;
	r.node = n->name;
	r.peer_addr = addr;
	r.labels = lp;
	r.n_labels = 2;
	r.disk_free = 1ull << 40;
	r.agent_version = (char *)"sched-scale";
	/* As the agent; SIM_PEERS_PER_VERSION measures an older one. */
	r.peers_shared = !getenv("SIM_PEERS_PER_VERSION");
	node_send(n, SYNCBIT__MSG_TYPE__MSG_REGISTER, &r.base);
}

static void redial(uv_timer_t *t)
{
	node_dial(t->data);
}

static void on_close(struct conn *c, int status)
{
	struct snode *n = conn_data(c);
	if (n->conn != c)
		return;
	n->conn = NULL;
	n->deaf = 0; /* a new connection reads */
	if (!n->registered)
		sim->dialing--;
	else
		sim->registered--;
	n->registered = 0;
	uv_timer_stop(&n->hb);
	uv_timer_stop(&n->tick);
	if (!n->frozen && !n->leaving)
		uv_timer_start(&n->redial, redial, REDIAL_MS + (uint64_t)rand() % REDIAL_MS, 0);
}

static const struct conn_callbacks callbacks = {
    .on_ready = on_ready, .on_frame = on_frame, .on_close = on_close};

void node_dial(struct snode *n)
{
	struct conn_config cfg = {.token = &sim->token,
				  .key = &n->key,
				  .purpose = HANDSHAKE_CONTROL,
				  .node = n->name,
				  .encrypt = sim->o.encrypt,
				  .body_max = BODY_MAX,
				  .payload_max = 1,
				  .table = table,
				  .table_len = sizeof table / sizeof *table,
				  .bind_ip = n->bind_ip};
	if (n->conn || n->frozen)
		return;
	n->leaving = 0;
	if (conn_dial(sim->loop, sim->o.scheduler, &cfg, &callbacks, n, &n->conn) < 0) {
		fprintf(stderr, "sched-scale: %s: cannot dial %s\n", n->name, sim->o.scheduler);
		n->conn = NULL;
		uv_timer_start(&n->redial, redial, REDIAL_MS, 0);
		return;
	}
	sim->dialing++;
}

void node_leave(struct snode *n, uint32_t delay_ms)
{
	if (!n->conn || n->frozen)
		return;
	n->leaving = 1;
	conn_close(n->conn, 0);
	uv_timer_start(&n->redial, redial, delay_ms, 0);
}

void node_freeze(struct snode *n)
{
	n->frozen = 1;
	uv_timer_stop(&n->hb);
	uv_timer_stop(&n->tick);
}

int node_deafen(struct snode *n, int deaf)
{
	if (!n->conn || !n->registered || n->frozen || n->deaf == deaf)
		return 0;
	if (conn_read_pause(n->conn, deaf) < 0)
		return 0;
	n->deaf = deaf;
	return 1;
}
