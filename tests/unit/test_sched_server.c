/* The scheduler's control and admin protocols on loopback: fake agents
 * register, get assignments and origin plans, report hashes, leave; a CLI
 * asks for documents. Everything runs on the scheduler's own loop. */
#include "sched_fixture.h"

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
	server_reconcile(&fx.s);
	WAIT_FOR(a->n_unassign == 1);
	assert_string_equal(a->unassigned, "models");
	agent_free(a);
	agent_free(b);
}

/* A node silent for 2 heartbeats and the slack (200 ms heartbeats: 650
 * ms) is gone, not before; one whose heartbeats come late, up to almost two
 * intervals apart, stays. */
static void test_silent_node_is_dropped(void **state)
{
	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b");
	uint64_t silence = wire_silence_ms(fx.o.heartbeat_ms);
	assert_int_equal(silence, 2 * 200 + 250);
	agent_register(a, "x");
	agent_register(b, "x");
	uv_timer_start(&b->beat, beat, 350, 350); /* 1.75 intervals apart */
	WAIT_FOR(a->n_assign == 1 && b->n_assign == 1 && a->last_beat);
	a->silent = 1;
	uint64_t quiet_from = a->last_beat;
	WAIT_FOR_MS(a->closed, silence + WAIT_MS);
	assert_true(uv_now(&fx.s.loop) - quiet_from >= silence);
	assert_null(cluster_node_find(&fx.s.cluster, "node-a")->conn);
	run_for(1500);
	assert_false(b->closed);
	assert_non_null(cluster_node_find(&fx.s.cluster, "node-b")->conn);
	agent_free(a);
	agent_free(b);
}

/* A node silent for 1.5 heartbeats (200 ms: 300 ms) is late: its origin
 * share goes to the others before it is taken as gone (650 ms), its
 * connection stays, and it takes a share again once it is heard. */
static void test_late_node_share_moves(void **state)
{
	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b");
	agent_register(a, "x");
	agent_register(b, "x");
	WAIT_FOR(told_blocks(a) == 3 && told_blocks(b) == 3 && a->last_beat);
	a->silent = 1;
	uint64_t quiet_from = a->last_beat;
	WAIT_FOR(told_blocks(b) == 6);
	uint64_t took = uv_now(&fx.s.loop) - quiet_from;
	assert_true(took >= wire_late_ms(fx.o.heartbeat_ms));
	assert_true(took < wire_silence_ms(fx.o.heartbeat_ms));
	assert_false(a->closed);
	assert_true(cluster_node_find(&fx.s.cluster, "node-a")->late);
	assert_non_null(strstr(b->origin->reason, "node node-a is late"));
	assert_non_null(strstr(b->origin->reason, "its 3 blocks reassigned"));
	assert_int_equal(told_blocks(a), 0); /* told too, should it read it */
	a->silent = 0;
	/* b keeps the read it has under way (keep_head 1) */
	WAIT_FOR(told_blocks(a) > 0 && told_blocks(a) + told_blocks(b) == 6);
	assert_non_null(strstr(b->origin->reason, "1 late node heard again"));
	assert_false(cluster_node_find(&fx.s.cluster, "node-a")->late);
	assert_false(a->closed);
	agent_free(a);
	agent_free(b);
}

/* 1 when the scheduler has node-a's report of the version with have blocks. */
static int heard(uint32_t have)
{
	const struct cluster_node *n = cluster_node_find(&fx.s.cluster, "node-a");
	const struct cluster_report *r = n ? cluster_node_report_of(n, &fx.version) : NULL;
	return r && r->have == have;
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
	/* The CLI's request comes on another connection: it may be read
	 * first. Wait until the scheduler has the heartbeat. */
	WAIT_FOR(heard(3));

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

/* A heartbeat of node-a with vs, its state of the version. */
static void send_version_state(struct agent *a, Syncbit__VersionState *vs)
{
	Syncbit__Heartbeat hb = SYNCBIT__HEARTBEAT__INIT;
	vs->dataset = "models";
	vs->version_id.data = fx.version.b;
	vs->version_id.len = HASH_LEN;
	hb.versions = &vs;
	hb.n_versions = 1;
	assert_int_equal(
	    wire_send(a->c, SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &hb.base, NULL, 0, NULL, NULL), 0);
}

/* Send node-a's state of the version: a full map of bits (6 blocks), or
 * have_same / have_all without one. */
static void send_state(struct agent *a, uint8_t bits, int same, int all)
{
	Syncbit__VersionState vs = SYNCBIT__VERSION_STATE__INIT;
	Syncbit__Bitfield bf = SYNCBIT__BITFIELD__INIT;
	bf.nblocks = 6;
	bf.bits.data = &bits;
	bf.bits.len = 1;
	vs.have = same || all ? NULL : &bf;
	vs.have_same = same;
	vs.have_all = all;
	send_version_state(a, &vs);
}

/* node-a's map of the version as runs: in full, or added to the last one. */
static void send_runs(struct agent *a, uint32_t *runs, size_t count, int added)
{
	Syncbit__VersionState vs = SYNCBIT__VERSION_STATE__INIT;
	if (added) {
		vs.have_added = runs;
		vs.n_have_added = count;
	} else {
		vs.have_runs = runs;
		vs.n_have_runs = count;
	}
	send_version_state(a, &vs);
}

static int has_blocks(const char *want)
{
	const struct cluster_report *r =
	    cluster_node_report_of(cluster_node_find(&fx.s.cluster, "node-a"), &fx.version);
	for (uint32_t b = 0; r && b < 6; b++)
		if (cluster_report_has(r, b) != (want[b] == '1'))
			return 0;
	return r != NULL;
}

/* Maps as runs (common/net/runs.h): a full one replaces the map, blocks
 * added go onto it (onto none after a map-less report), and runs that pass
 * the version's end change nothing. */
static void test_heartbeat_runs(void **state)
{
	struct agent *a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	assert_int_equal(a->heartbeat_runs, 1);
	uint32_t added_first[] = {4, 1}; /* block 4, before any map */
	send_runs(a, added_first, 2, 1);
	WAIT_FOR(has_blocks("000010"));
	uint32_t two[] = {1, 2}; /* blocks 1 and 2 */
	send_runs(a, two, 2, 0);
	WAIT_FOR(has_blocks("011000"));
	uint32_t more[] = {0, 1, 4, 1}; /* blocks 0 and 5 */
	send_runs(a, more, 4, 1);
	WAIT_FOR(has_blocks("111001"));
	uint32_t past[] = {4, 3}; /* 4, 5, 6: the version has 6 blocks */
	send_runs(a, past, 2, 1);
	uint32_t three[] = {3, 1};
	send_runs(a, three, 2, 1);
	WAIT_FOR(has_blocks("111101")); /* not block 4 */
	uint32_t rest[] = {4, 1};
	send_runs(a, rest, 2, 1);
	WAIT_FOR(heard(6));
	const struct cluster_report *r =
	    cluster_node_report_of(cluster_node_find(&fx.s.cluster, "node-a"), &fx.version);
	assert_null(r->bits); /* every block: no map kept */
	agent_free(a);
}

/* Heartbeat deltas: the scheduler offers them; a map left out as the same
 * keeps the last full one, have_all sets every block, a new full map
 * replaces it; have_same before any full map counts as nothing held. */
static void test_heartbeat_deltas(void **state)
{
	struct agent *a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	assert_int_equal(a->heartbeat_deltas, 1);
	send_state(a, 0, 1, 0); /* the same as a map never sent */
	send_state(a, 0x01, 0, 0);
	WAIT_FOR(heard(1));
	send_state(a, 0x07, 0, 0);
	WAIT_FOR(heard(3));
	send_state(a, 0, 1, 0);
	send_state(a, 0x0f, 0, 0);
	WAIT_FOR(heard(4));
	for (int i = 0; i < 3; i++)
		send_state(a, 0, 1, 0);
	send_state(a, 0, 0, 1);
	WAIT_FOR(heard(6));
	const struct cluster_report *r =
	    cluster_node_report_of(cluster_node_find(&fx.s.cluster, "node-a"), &fx.version);
	assert_int_equal(r->nbits, 6);
	assert_int_equal(r->have, 6);
	assert_null(r->bits); /* every block: no map kept */
	for (uint32_t b = 0; b < 6; b++)
		assert_true(cluster_report_has(r, b));
	assert_false(cluster_report_has(r, 6));
	send_state(a, 0, 1, 0); /* still all */
	send_state(a, 0x01, 0, 0);
	WAIT_FOR(heard(1));
	r = cluster_node_report_of(cluster_node_find(&fx.s.cluster, "node-a"), &fx.version);
	assert_non_null(r->bits);
	assert_true(cluster_report_has(r, 0));
	assert_false(cluster_report_has(r, 1));
	send_state(a, 0x3f, 0, 0); /* a full map of every block: not kept either */
	WAIT_FOR(heard(6));
	r = cluster_node_report_of(cluster_node_find(&fx.s.cluster, "node-a"), &fx.version);
	assert_null(r->bits);
	assert_true(cluster_report_has(r, 5));
	send_state(a, 0xff, 0, 0); /* bits past the last block do not count */
	send_state(a, 0x3e, 0, 0);
	WAIT_FOR(heard(5));
	r = cluster_node_report_of(cluster_node_find(&fx.s.cluster, "node-a"), &fx.version);
	assert_false(cluster_report_has(r, 0));
	assert_true(cluster_report_has(r, 5));
	agent_free(a);
}

/* An agent that takes Peers.also gets one Peers for every version whose
 * list is the same; an older one gets a Peers per version. */
static void test_peers_shared(void **state)
{
	struct source_listing l = {0};
	struct sched_version *v;
	char *detail = NULL;
	add_file(&l, "tool.bin", 2 * BS);
	assert_int_equal(version_from_listing(&l, "file:///y", BS, MANIFEST_FORMAT, &v, &detail),
			 0);
	source_listing_close(&l);
	struct hash_id tools = v->id;
	sched_apply_version(&fx.s, "tools", "file:///y", NULL, 0, BS, v);

	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b"),
		     *c = agent_dial("node-c");
	a->peers_shared = 1;
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 2);
	agent_register(b, "x");
	WAIT_FOR(b->n_assign == 2 && a->n_peers >= 1);
	run_for(300);
	assert_int_equal(a->n_peers, 1); /* one list for both versions */
	assert_int_equal(a->peers->n_also, 1);
	const uint8_t *ids[2] = {a->peers->version_id.data, a->peers->also[0].data};
	assert_true(
	    (!memcmp(ids[0], fx.version.b, HASH_LEN) && !memcmp(ids[1], tools.b, HASH_LEN)) ||
	    (!memcmp(ids[0], tools.b, HASH_LEN) && !memcmp(ids[1], fx.version.b, HASH_LEN)));
	assert_int_equal(a->peers->n_peers, 1);
	assert_string_equal(a->peers->peers[0]->node, "node-b");

	agent_register(c, "x"); /* an older agent: b is one too */
	WAIT_FOR(c->n_assign == 2 && a->n_peers == 2 && b->n_peers == 2);
	run_for(300);
	assert_int_equal(a->n_peers, 2);
	assert_int_equal(a->peers->n_also, 1);
	assert_int_equal(a->peers->n_peers, 2);
	assert_int_equal(b->n_peers, 2); /* one per version */
	assert_int_equal(b->peers->n_also, 0);
	assert_int_equal(b->peers->n_peers, 2);
	agent_free(c);
	agent_free(b);
	agent_free(a);
}

/* A version of one file, path, of blocks blocks, from source. */
static struct sched_version *one_file_version(const char *source, const char *path, uint32_t blocks)
{
	struct source_listing l = {0};
	struct sched_version *v;
	char *detail = NULL;
	add_file(&l, path, (uint64_t)blocks * BS);
	assert_int_equal(version_from_listing(&l, source, BS, MANIFEST_FORMAT, &v, &detail), 0);
	source_listing_close(&l);
	return v;
}

/* A dataset keeps the manifest format of the version it holds, so a
 * refresh of an unchanged source keeps its listing id and block ids; a new
 * dataset gets the current format. */
static void test_format_kept(void **state)
{
	struct source_listing l = {0};
	struct sched_version *v;
	char *detail = NULL;
	add_file(&l, "old.bin", 2 * BS);
	assert_int_equal(
	    version_from_listing(&l, "file:///old", BS, MANIFEST_FORMAT_FLAT, &v, &detail), 0);
	source_listing_close(&l);
	assert_int_equal(v->m->format, MANIFEST_FORMAT_FLAT);
	sched_apply_version(&fx.s, "old", "file:///old", NULL, 0, BS, v);
	assert_int_equal(sched_format_of(&fx.s, "old"), MANIFEST_FORMAT_FLAT);
	assert_int_equal(sched_format_of(&fx.s, "models"), MANIFEST_FORMAT_PIECES);
	assert_int_equal(sched_format_of(&fx.s, "not-held"), MANIFEST_FORMAT_PIECES);
}

/* Forty datasets and two more sharing one version: each node is assigned
 * every one, hears one Peers per version when another joins, and is told
 * to drop exactly the dataset that goes, also when its version stays for
 * the other. */
static void test_many_datasets(void **state)
{
	enum { MANY = 40 };
	char name[32], src[48];
	for (int i = 0; i < MANY; i++) {
		snprintf(name, sizeof name, "ds-%02d", i);
		snprintf(src, sizeof src, "file:///many/%d", i);
		sched_apply_version(&fx.s, name, src, NULL, 0, BS,
				    one_file_version(src, "w.bin", 1 + (uint32_t)i % 3));
	}
	sched_apply_version(&fx.s, "twin-a", "file:///twin", NULL, 0, BS,
			    one_file_version("file:///twin", "t.bin", 2));
	sched_apply_version(&fx.s, "twin-b", "file:///twin", NULL, 0, BS,
			    one_file_version("file:///twin", "t.bin", 2));
	struct cluster_dataset *ta = cluster_dataset_find(&fx.s.cluster, "twin-a");
	assert_ptr_equal(ta->current, cluster_dataset_find(&fx.s.cluster, "twin-b")->current);
	int total = MANY + 3;	 /* with "models" and the twins */
	int versions = MANY + 2; /* the twins share one */
	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == total);
	agent_register(b, "x");
	WAIT_FOR(b->n_assign == total && a->n_peers == versions);
	run_for(300);
	assert_int_equal(a->n_peers, versions);
	assert_int_equal(a->n_assign, total);
	assert_int_equal(a->n_unassign, 0);

	assert_int_equal(cluster_dataset_remove(&fx.s.cluster, "ds-17"), 0);
	server_reconcile(&fx.s);
	WAIT_FOR(a->n_unassign == 1 && b->n_unassign == 1);
	assert_string_equal(a->unassigned, "ds-17");
	assert_string_equal(b->unassigned, "ds-17");
	assert_int_equal(cluster_dataset_remove(&fx.s.cluster, "twin-a"), 0);
	server_reconcile(&fx.s);
	WAIT_FOR(a->n_unassign == 2);
	assert_string_equal(a->unassigned, "twin-a");
	run_for(300);
	assert_int_equal(a->n_unassign, 2);
	assert_int_equal(a->n_assign, total);

	/* A new version of one dataset comes as one Assign; a third node
	 * gives the first a Peers per version it still holds. */
	sched_apply_version(&fx.s, "ds-03", "file:///many/3", NULL, 0, BS,
			    one_file_version("file:///many/3", "w2.bin", 4));
	WAIT_FOR(a->n_assign == total + 1);
	assert_string_equal(a->assign->dataset, "ds-03");
	int peers = a->n_peers;
	struct agent *c = agent_dial("node-c");
	agent_register(c, "x");
	WAIT_FOR(c->n_assign == total - 2 && a->n_peers == peers + versions - 1);
	run_for(300);
	assert_int_equal(a->n_peers, peers + versions - 1);
	assert_int_equal(a->peers->n_peers, 2);
	assert_int_equal(a->n_unassign, 2);
	agent_free(c);
	agent_free(b);
	agent_free(a);
}

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

int main(void)
{
	log_setup(LOG_ERROR + 1, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_assign_plan_hashes_leave, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_peers_shared, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_format_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_datasets, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_join_keeps_reads_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hashes_without_what_a_node_added, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_selector_and_unassign, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_silent_node_is_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_late_node_share_moves, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeat_and_admin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeat_deltas, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeat_runs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
