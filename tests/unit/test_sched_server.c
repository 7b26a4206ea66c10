/* The scheduler's control and admin protocols on loopback: fake agents
 * register, get assignments and origin plans, report hashes, leave; a CLI
 * asks for documents. Everything runs on the scheduler's own loop. */
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

static void on_ready(struct conn *c, int status)
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

static int on_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct agent *a = conn_data(c);
	free(payload);
	switch (type) {
	case SYNCBIT__MSG_TYPE__MSG_REGISTERED:
		a->n_registered++;
		break;
	case SYNCBIT__MSG_TYPE__MSG_ASSIGN:
		KEEP(assign, assign, type);
		a->n_assign++;
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

static void on_close(struct conn *c, int status)
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
static void node_key(const char *name, uint8_t salt, struct secure_keypair *kp)
{
	crypto_generichash(kp->priv, sizeof kp->priv, (const uint8_t *)name, strlen(name), &salt,
			   1);
	noise_public_key(kp->priv, kp->pub);
}

/* Dial as node `name` (the CLI for "cli": an admin connection with a fresh
 * key); salt picks another key for the name. ready tells whether the
 * handshake must succeed. */
static struct agent *agent_dial_key(const char *name, uint8_t salt)
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

static struct agent *agent_dial(const char *name)
{
	return agent_dial_key(name, 0);
}

static void beat(uv_timer_t *t)
{
	struct agent *a = t->data;
	Syncbit__Heartbeat hb = SYNCBIT__HEARTBEAT__INIT;
	if (a->c && !a->silent && a->n_registered)
		wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &hb.base, NULL, 0, NULL, NULL);
}

static void agent_register(struct agent *a, const char *zone)
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
	assert_int_equal(
	    wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_REGISTER, &m.base, NULL, 0, NULL, NULL), 0);
	WAIT_FOR(a->n_registered == 1);
}

static void agent_unlink(struct agent *a)
{
	for (struct agent **p = &fx.agents; *p; p = &(*p)->next)
		if (*p == a) {
			*p = a->next;
			break;
		}
}

static void agent_free(struct agent *a)
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

static uint32_t range_blocks(Syncbit__BlockRange **r, size_t n, uint32_t *first)
{
	uint32_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += r[i]->count;
	if (first)
		*first = n ? r[0]->first : UINT32_MAX;
	return total;
}

static void add_file(struct source_listing *l, const char *path, uint64_t size)
{
	l->files = xrealloc(l->files, (l->nfiles + 1) * sizeof *l->files);
	struct source_file *f = &l->files[l->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	f->size = size;
	f->mode = 0644;
	f->digest = xstrdup(path);
}

static void tick(uv_timer_t *t)
{
}

static int setup(void **state)
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
	if (version_from_listing(&l, "file:///x", BS, &v, &detail) < 0)
		return -1;
	source_listing_close(&l);
	fx.version = v->id;
	sched_apply_version(&fx.s, "models", "file:///x", NULL, 0, BS, v);
	return 0;
}

static int teardown(void **state)
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
static void ingest_blocks(struct agent *a, const uint32_t *blocks, size_t n, uint8_t salt)
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

static void ingest(struct agent *a, uint32_t block, uint8_t salt)
{
	ingest_blocks(a, &block, 1, salt);
}

static void test_assign_plan_hashes_leave(void **state)
{
	struct agent *a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	assert_string_equal(a->assign->dataset, "models");
	assert_memory_equal(a->assign->version_id.data, fx.version.b, HASH_LEN);
	assert_int_equal(manifest_validate(a->assign->manifest), 0);
	assert_int_equal(a->assign->n_peers, 0);
	assert_int_equal(range_blocks(a->assign->origin, a->assign->n_origin, NULL), 6);

	/* b joins: stripes of one block, a takes even blocks, b odd ones. */
	struct agent *b = agent_dial("node-b");
	agent_register(b, "y");
	WAIT_FOR(b->n_assign == 1 && a->n_origin == 1 && a->n_peers == 1);
	assert_int_equal(b->assign->n_peers, 1);
	assert_string_equal(b->assign->peers[0]->node, "node-a");
	assert_string_equal(b->assign->peers[0]->addr, "node-a:7401");
	/* with the key node-a registered: b checks it in their handshake */
	struct secure_keypair ka;
	node_key("node-a", 0, &ka);
	assert_int_equal(b->assign->peers[0]->key.len, SECURE_KEY_BYTES);
	assert_memory_equal(b->assign->peers[0]->key.data, ka.pub, SECURE_KEY_BYTES);
	uint32_t first;
	assert_int_equal(range_blocks(b->assign->origin, b->assign->n_origin, &first), 3);
	assert_int_equal(first, 1);
	assert_int_equal(range_blocks(a->origin->blocks, a->origin->n_blocks, &first), 3);
	assert_int_equal(first, 0);
	assert_non_null(strstr(a->origin->reason, "node-b joined"));
	assert_string_equal(a->peers->peers[0]->node, "node-b");
	struct secure_keypair kb;
	node_key("node-b", 0, &kb);
	assert_memory_equal(a->peers->peers[0]->key.data, kb.pub, SECURE_KEY_BYTES);

	/* a reports block 0: both learn it; a conflicting hash is dropped. */
	ingest(a, 0, 1);
	WAIT_FOR(b->n_hashes == 1 && a->n_hashes == 1);
	assert_int_equal(b->hashes->n_blocks, 1);
	assert_int_equal(b->hashes->blocks[0]->block, 0);
	ingest(b, 0, 2);
	ingest(b, 1, 1);
	WAIT_FOR(a->n_hashes == 2);
	assert_int_equal(a->hashes->blocks[0]->block, 1);

	/* b leaves: its unknown blocks (3 and 5) go to a, and so does block
	 * 1, which only b read (a never reported it). */
	conn_close(b->c, 0);
	WAIT_FOR(a->n_origin == 2 && a->n_peers == 2);
	assert_int_equal(a->peers->n_peers, 0);
	assert_int_equal(range_blocks(a->origin->blocks, a->origin->n_blocks, NULL), 5);
	assert_non_null(strstr(a->origin->reason,
			       "node node-b left; its 2 blocks reassigned; "
			       "1 block only it held comes from the origin again"));
	agent_free(b);
	agent_free(a);
}

/* Found by tests/fuzz/fuzz_wire: protobuf-c takes a field number 0 spelled
 * in two bytes (0x80 0x00) as an unknown field, keeps it, and packs it
 * again in one byte, which it then refuses to unpack. A node's Ingested
 * carrying one must not reach the other nodes in the Hashes broadcast:
 * each would drop its connection. */
static void test_hashes_without_what_a_node_added(void **state)
{
	struct agent *a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	struct buf b = BUF_INIT, bh = BUF_INIT;
	uint8_t hash[HASH_LEN] = {7};
	buf_append(&bh, "\x08\x02\x12\x20", 4); /* block 2, hash */
	buf_append(&bh, hash, HASH_LEN);
	buf_append(&bh, "\x80\x00\x00", 3); /* field 0, varint 0 */
	buf_append(&b, "\x0a\x20", 2);
	buf_append(&b, fx.version.b, HASH_LEN);
	uint8_t hdr[2] = {0x12, (uint8_t)bh.len};
	buf_append(&b, hdr, 2);
	buf_append(&b, bh.ptr, bh.len);
	conn_send(a->c, SYNCBIT__MSG_TYPE__MSG_INGESTED, b.ptr, b.len, NULL, 0, NULL, NULL);
	WAIT_FOR(a->n_hashes == 1 || a->closed);
	assert_false(a->closed);
	assert_int_equal(a->hashes->n_blocks, 1);
	assert_int_equal(a->hashes->blocks[0]->block, 2);
	assert_memory_equal(a->hashes->blocks[0]->hash.data, hash, HASH_LEN);
	assert_int_equal(a->hashes->blocks[0]->base.n_unknown_fields, 0);
	buf_close(&bh);
	buf_close(&b);
	agent_free(a);
}

static void test_selector_and_unassign(void **state)
{
	struct assign_label sel[] = {{"zone", "x"}};
	struct cluster_dataset *d = cluster_dataset_find(&fx.s.cluster, "models");
	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b");
	cluster_dataset_set(&fx.s.cluster, "models", d->source, sel, 1, BS, d->current);
	agent_register(a, "x");
	agent_register(b, "y");
	WAIT_FOR(a->n_assign == 1);
	/* b does not match; nothing comes to it. */
	uv_run(&fx.s.loop, UV_RUN_NOWAIT);
	assert_int_equal(b->n_assign, 0);
	/* Removed: a is told to drop it. */
	assert_int_equal(cluster_dataset_remove(&fx.s.cluster, "models"), 0);
	server_sync(&fx.s);
	WAIT_FOR(a->n_unassign == 1);
	assert_string_equal(a->unassigned, "models");
	agent_free(a);
	agent_free(b);
}

static void test_silent_node_is_dropped(void **state)
{
	struct agent *a = agent_dial("node-a");
	a->silent = 1;
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	/* No heartbeats: gone after 3 x 200 ms. */
	WAIT_FOR(a->closed);
	assert_null(cluster_node_find(&fx.s.cluster, "node-a")->conn);
	agent_free(a);
}

static void test_heartbeat_and_admin(void **state)
{
	struct agent *a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	Syncbit__Heartbeat hb = SYNCBIT__HEARTBEAT__INIT;
	Syncbit__VersionState vs = SYNCBIT__VERSION_STATE__INIT, *vp = &vs;
	Syncbit__Bitfield bf = SYNCBIT__BITFIELD__INIT;
	uint8_t bits[1] = {0x07};
	bf.nblocks = 6;
	bf.bits.data = bits;
	bf.bits.len = 1;
	vs.dataset = "models";
	vs.version_id.data = fx.version.b;
	vs.version_id.len = HASH_LEN;
	vs.have = &bf;
	vs.bytes_from_origin = 3 * BS;
	hb.versions = &vp;
	hb.n_versions = 1;
	assert_int_equal(
	    wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &hb.base, NULL, 0, NULL, NULL), 0);

	struct agent *cli = agent_dial("cli");
	Syncbit__Admin m = SYNCBIT__ADMIN__INIT;
	m.op = SYNCBIT__ADMIN_OP__ADMIN_STATUS;
	assert_int_equal(
	    wire_send(cli->c, SYNCBIT__MSG_TYPE__MSG_ADMIN, &m.base, NULL, 0, NULL, NULL), 0);
	WAIT_FOR(cli->n_reply == 1);
	assert_int_equal(cli->reply->code, 0);
	json_t *doc = json_loads(cli->reply->json, 0, NULL);
	assert_non_null(doc);
	json_t *n0 = json_array_get(
	    json_object_get(json_array_get(json_object_get(doc, "datasets"), 0), "nodes"), 0);
	assert_string_equal(json_string_value(json_object_get(n0, "node")), "node-a");
	assert_int_equal(json_integer_value(json_object_get(n0, "blocks_have")), 3);
	assert_int_equal(json_integer_value(json_object_get(n0, "bytes_from_origin")), 3 * BS);
	json_decref(doc);

	/* Bad requests get an error reply; a malformed message closes. */
	m.op = SYNCBIT__ADMIN_OP__ADMIN_DATASET_ADD;
	m.name = ".hidden";
	m.source = "/tmp";
	wire_send(cli->c, SYNCBIT__MSG_TYPE__MSG_ADMIN, &m.base, NULL, 0, NULL, NULL);
	WAIT_FOR(cli->n_reply == 2);
	assert_int_equal(cli->reply->code, SB_EPROTO);
	assert_non_null(strstr(cli->reply->message, "dataset name '.hidden'"));
	conn_send(cli->c, SYNCBIT__MSG_TYPE__MSG_INGESTED, "x", 1, NULL, 0, NULL, NULL);
	WAIT_FOR(cli->closed);
	agent_free(cli);
	agent_free(a);
}

static void restart(void);

static void admin_node_rm(const char *name)
{
	struct agent *cli = agent_dial("cli");
	Syncbit__Admin m = SYNCBIT__ADMIN__INIT;
	m.op = SYNCBIT__ADMIN_OP__ADMIN_NODE_RM;
	m.name = (char *)name;
	wire_send(cli->c, SYNCBIT__MSG_TYPE__MSG_ADMIN, &m.base, NULL, 0, NULL, NULL);
	WAIT_FOR(cli->n_reply == 1);
	assert_int_equal(cli->reply->code, 0);
	agent_free(cli);
}

/* The first registration of a name pins its key; another key under that
 * name is refused (with the message the agent logs) until `node rm`. */
static void test_node_key_pinned(void **state)
{
	struct agent *a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	agent_free(a);
	WAIT_FOR(!cluster_node_find(&fx.s.cluster, "node-a")->conn);

	/* another install of node-a: refused, and it is told why */
	struct agent *b = agent_dial_key("node-a", 1);
	Syncbit__Register m = SYNCBIT__REGISTER__INIT;
	m.node = "node-a";
	wire_send(b->c, SYNCBIT__MSG_TYPE__MSG_REGISTER, &m.base, NULL, 0, NULL, NULL);
	WAIT_FOR(b->closed);
	assert_int_equal(b->n_registered, 0);
	assert_int_equal(b->error_code, SB_EDENIED);
	assert_string_equal(b->error, "node name node-a is registered with another key; "
				      "`syncbit node rm node-a` on the scheduler if this node "
				      "was reinstalled");
	agent_free(b);

	/* the first key still works, even after a restart of the scheduler */
	restart();
	a = agent_dial("node-a");
	agent_register(a, "x");
	agent_free(a);
	WAIT_FOR(!cluster_node_find(&fx.s.cluster, "node-a")->conn);

	/* node rm forgets it: the new install registers and is pinned */
	admin_node_rm("node-a");
	b = agent_dial_key("node-a", 1);
	agent_register(b, "x");
	agent_free(b);
	a = agent_dial("node-a");
	wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_REGISTER, &m.base, NULL, 0, NULL, NULL);
	WAIT_FOR(a->closed);
	assert_int_equal(a->error_code, SB_EDENIED);
	agent_free(a);
}

/* A connection's purpose decides what it may say: nodes register, the CLI
 * asks; neither can do the other's. */
static void test_purposes(void **state)
{
	struct agent *cli = agent_dial("cli");
	Syncbit__Register r = SYNCBIT__REGISTER__INIT;
	wire_send(cli->c, SYNCBIT__MSG_TYPE__MSG_REGISTER, &r.base, NULL, 0, NULL, NULL);
	WAIT_FOR(cli->closed);
	assert_null(cluster_node_find(&fx.s.cluster, "cli"));
	agent_free(cli);

	struct agent *a = agent_dial("node-a");
	Syncbit__Admin m = SYNCBIT__ADMIN__INIT;
	m.op = SYNCBIT__ADMIN_OP__ADMIN_STATUS;
	wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_ADMIN, &m.base, NULL, 0, NULL, NULL);
	WAIT_FOR(a->closed);
	assert_int_equal(a->n_reply, 0);
	agent_free(a);
}

/* Stop the scheduler (its agents gone) and start it on the same data. */
static void restart(void)
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
static void test_restart_keeps_versions(void **state)
{
	struct agent *a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	ingest(a, 0, 1);
	WAIT_FOR(a->n_hashes == 1);
	agent_free(a);
	restart();
	a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	assert_memory_equal(a->assign->version_id.data, fx.version.b, HASH_LEN);
	const Syncbit__FileEntry *f = a->assign->manifest->files[0];
	uint8_t want[HASH_LEN] = {1, 1};
	assert_memory_equal(f->block_hashes.data, want, HASH_LEN);
	assert_int_equal(range_blocks(a->assign->origin, a->assign->n_origin, NULL), 5);
	agent_free(a);
}

/* 1 when block b's hash in the Assign a holds is known (non-zero). */
static int assigned_known(const struct agent *a, uint32_t b)
{
	static const uint8_t zero[HASH_LEN];
	const Syncbit__Manifest *m = a->assign->manifest;
	for (size_t i = 0; i < m->n_files; i++) {
		uint32_t n = (uint32_t)(m->files[i]->block_hashes.len / HASH_LEN);
		if (b < n)
			return memcmp(m->files[i]->block_hashes.data + b * HASH_LEN, zero,
				      HASH_LEN) != 0;
		b -= n;
	}
	return 0;
}

/* A scheduler killed before it saved a hash it had broadcast learns it again
 * from the node holding the block, which reports every block the Assign shows
 * unknown: the hash is taken (once), broadcast, and saved; one it knew is
 * taken silently and a conflicting one is refused, as before the restart. */
static void test_restart_takes_reported_hashes(void **state)
{
	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b");
	agent_register(a, "x");
	agent_register(b, "y");
	WAIT_FOR(a->n_assign == 1 && b->n_assign == 1);
	ingest(a, 0, 1);
	WAIT_FOR(b->n_hashes == 1);
	cluster_flush(&fx.s.cluster);
	uv_timer_stop(&fx.s.flush);
	ingest(a, 1, 1);
	WAIT_FOR(b->n_hashes == 2);
	buf_reset(&fx.s.cluster.pending); /* killed before the next LMDB commit */
	agent_free(a);
	agent_free(b);
	restart();

	a = agent_dial("node-a");
	b = agent_dial("node-b");
	agent_register(a, "x");
	agent_register(b, "y");
	WAIT_FOR(a->n_assign == 1 && b->n_assign == 1);
	assert_true(assigned_known(a, 0));
	assert_false(assigned_known(a, 1));
	/* Every block but 0 is planned again, block 1 included. */
	uint32_t planned = range_blocks(b->assign->origin, b->assign->n_origin, NULL);
	WAIT_FOR(a->n_origin >= 1);
	planned += range_blocks(a->origin->blocks, a->origin->n_blocks, NULL);
	assert_int_equal(planned, 5);

	uint32_t held[] = {0, 1};
	ingest_blocks(a, held, 2, 1);
	WAIT_FOR(b->n_hashes == 1 && a->n_hashes == 1);
	assert_int_equal(b->hashes->n_blocks, 1); /* block 0 was known: not again */
	assert_int_equal(b->hashes->blocks[0]->block, 1);
	assert_int_equal(b->hashes->blocks[0]->hash.data[0], 2);
	ingest(b, 1, 2); /* another hash for block 1: refused */
	ingest(b, 3, 1);
	WAIT_FOR(a->n_hashes == 2);
	assert_int_equal(a->hashes->n_blocks, 1);
	assert_int_equal(a->hashes->blocks[0]->block, 3);
	struct cluster_version *cv = cluster_version_find(&fx.s.cluster, fx.version.b, HASH_LEN);
	assert_int_equal(cv->v->nknown, 3);
	WAIT_FOR(fx.s.cluster.pending.len == 0); /* saved within CLUSTER_FLUSH_MS */
	agent_free(a);
	agent_free(b);

	restart();
	a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	assert_true(assigned_known(a, 0) && assigned_known(a, 1) && assigned_known(a, 3));
	assert_int_equal(range_blocks(a->assign->origin, a->assign->n_origin, NULL), 3);
	agent_free(a);
}

/* 1 when block b is in the ranges r[0..n). */
static int in_ranges(Syncbit__BlockRange **r, size_t n, uint32_t b)
{
	for (size_t i = 0; i < n; i++)
		if (b >= r[i]->first && b - r[i]->first < r[i]->count)
			return 1;
	return 0;
}

static const struct cluster_node *node_named(const char *name)
{
	return cluster_node_find(&fx.s.cluster, name);
}

/* A node that joins does not take the blocks the first node is reading:
 * each share keeps its first ASSIGN_KEEP_HEAD unread blocks through a new
 * plan. With 6 blocks, all of them are a's reads in flight, so b gets no
 * share and takes every block from a. When a leaves, b reads them all. */
static void test_join_keeps_reads_in_flight(void **state)
{
	fx.s.cluster.keep_head = ASSIGN_KEEP_HEAD;
	struct agent *a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	assert_int_equal(range_blocks(a->assign->origin, a->assign->n_origin, NULL), 6);
	struct agent *b = agent_dial("node-b");
	agent_register(b, "y");
	WAIT_FOR(b->n_assign == 1 && a->n_peers == 1);
	assert_int_equal(range_blocks(b->assign->origin, b->assign->n_origin, NULL), 0);
	struct cluster_version *cv = cluster_version_find(&fx.s.cluster, fx.version.b, HASH_LEN);
	const struct assign_plan *pa = cluster_plan_of(cv, "node-a");
	assert_non_null(pa);
	assert_int_equal(pa->nblocks, 6);
	ingest(a, 0, 1);
	WAIT_FOR(b->n_hashes == 1);
	int before = b->n_origin;
	conn_close(a->c, 0);
	WAIT_FOR(b->n_origin > before);
	/* all 6: block 0 too, which only a held */
	assert_int_equal(range_blocks(b->origin->blocks, b->origin->n_blocks, NULL), 6);
	agent_free(a);
	agent_free(b);
}

/* A hash is taken only from a node whose origin share holds the block: one
 * for a block planned to another node is refused and counted, the block
 * stays unknown and planned to its reader, whose hash is then taken. The
 * hash a node reports of a block it holds that is known already is not a
 * refusal. */
static void test_ingest_only_from_share(void **state)
{
	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	agent_register(b, "y");
	WAIT_FOR(b->n_assign == 1 && a->n_origin == 1);
	assert_true(in_ranges(a->origin->blocks, a->origin->n_blocks, 2));
	assert_false(in_ranges(b->assign->origin, b->assign->n_origin, 2));

	ingest(b, 2, 9); /* a's block, a made-up hash */
	ingest(b, 1, 1); /* its own */
	WAIT_FOR(a->n_hashes == 1);
	assert_int_equal(a->hashes->n_blocks, 1);
	assert_int_equal(a->hashes->blocks[0]->block, 1);
	struct cluster_version *cv = cluster_version_find(&fx.s.cluster, fx.version.b, HASH_LEN);
	assert_int_equal(cv->v->nknown, 1);
	assert_false(assign_bit(cv->v->known, 2));
	assert_int_equal(node_named("node-b")->hashes_refused, 1);
	assert_int_equal(node_named("node-a")->hashes_refused, 0);
	/* Still a's to read, as the scheduler plans it. */
	const struct assign_plan *pa = cluster_plan_of(cv, "node-a");
	int planned = 0;
	for (size_t i = 0; pa && i < pa->nranges; i++)
		planned |=
		    2 >= pa->ranges[i].first && 2 - pa->ranges[i].first < pa->ranges[i].count;
	assert_true(planned);

	ingest(a, 2, 1); /* its reader */
	WAIT_FOR(b->n_hashes == 2);
	assert_int_equal(b->hashes->blocks[0]->block, 2);
	assert_int_equal(b->hashes->blocks[0]->hash.data[1], 1);
	ingest(b, 2, 1); /* held now, reported again: the same hash, no refusal */
	ingest(b, 3, 1);
	WAIT_FOR(a->n_hashes == 3);
	assert_int_equal(node_named("node-b")->hashes_refused, 1);

	/* The API shows the count. */
	json_t *doc = api_nodes(&fx.s);
	json_t *nb = json_array_get(json_object_get(doc, "nodes"), 1);
	assert_string_equal(json_string_value(json_object_get(nb, "name")), "node-b");
	assert_int_equal(json_integer_value(json_object_get(nb, "hashes_refused")), 1);
	json_decref(doc);
	agent_free(a);
	agent_free(b);
}

/* A block that moved to another share may still come from the node that
 * had it (its read was under way), and so after a restart of the
 * scheduler, whose new plan gives the node other blocks: the shares a node
 * had are saved. A node that never had the block is refused. */
static void test_ingest_from_past_share(void **state)
{
	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	agent_register(b, "y");
	WAIT_FOR(b->n_assign == 1 && a->n_origin == 1);
	/* a reads its share; b has 3 unknown blocks left: block 5 moves to a. */
	uint32_t mine[] = {0, 2, 4};
	ingest_blocks(a, mine, 3, 1);
	WAIT_FOR(a->n_origin == 2 && b->n_origin == 1);
	assert_true(in_ranges(a->origin->blocks, a->origin->n_blocks, 5));
	assert_false(in_ranges(b->origin->blocks, b->origin->n_blocks, 5));
	ingest(b, 5, 1); /* b's read of it was under way */
	WAIT_FOR(a->n_hashes == 2);
	assert_int_equal(a->hashes->blocks[0]->block, 5);
	WAIT_FOR(fx.s.cluster.pending.len == 0);
	agent_free(a);
	agent_free(b);

	/* After a restart b registers first and reads both unknown blocks
	 * (1 and 3); a, which had block 3 in its first share, reports it. */
	restart();
	b = agent_dial("node-b");
	agent_register(b, "y");
	WAIT_FOR(b->n_assign == 1);
	a = agent_dial("node-a");
	agent_register(a, "x");
	struct agent *c = agent_dial("node-c");
	agent_register(c, "z");
	WAIT_FOR(a->n_assign == 1 && c->n_assign == 1);
	assert_false(in_ranges(a->assign->origin, a->assign->n_origin, 3));
	ingest(c, 1, 1); /* never c's */
	ingest(a, 3, 1);
	WAIT_FOR(b->n_hashes == 1);
	assert_int_equal(b->hashes->n_blocks, 1);
	assert_int_equal(b->hashes->blocks[0]->block, 3);
	assert_int_equal(node_named("node-c")->hashes_refused, 1);
	struct cluster_version *cv = cluster_version_find(&fx.s.cluster, fx.version.b, HASH_LEN);
	assert_false(assign_bit(cv->v->known, 1));
	agent_free(a);
	agent_free(b);
	agent_free(c);
}

int main(void)
{
	log_setup(LOG_ERROR + 1, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_assign_plan_hashes_leave, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_join_keeps_reads_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hashes_without_what_a_node_added, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_selector_and_unassign, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_silent_node_is_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeat_and_admin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_keeps_versions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_takes_reported_hashes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ingest_only_from_share, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ingest_from_past_share, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_node_key_pinned, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_purposes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
