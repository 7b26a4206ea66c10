/* The scheduler across restarts and node identities: a node's key is
 * pinned until an admin removes it, connection purposes are kept apart,
 * and versions and reported hashes survive a restart. */
#include "sched_fixture.h"

#include "scheduler/hold.h"

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
	/* Both nodes of the plan are back and reported: every block but 0 is
	 * planned again, block 1 included. */
	WAIT_FOR(fx.s.plan_hold_until == 0);
	WAIT_FOR(told_blocks(a) + told_blocks(b) == 5);

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

/* The origin plans restored at a start stand while the nodes that read
 * them come back (a node back early keeps the share it had), and are made
 * again as soon as the last of them has reported, long before the bound;
 * a node that does not come back holds them until the bound. */
static void test_restart_holds_plans(void **state)
{
	struct agent *a = agent_dial("node-a"), *b = agent_dial("node-b");
	uint64_t bound = HOLD_BEATS * (uint64_t)fx.o.heartbeat_ms + HOLD_EXTRA_MS;
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	agent_register(b, "y");
	WAIT_FOR(b->n_assign == 1 && a->n_origin == 1);
	assert_int_equal(told_blocks(a) + told_blocks(b), 6);
	agent_free(a);
	agent_free(b);

	restart();
	uint64_t t0 = uv_now(&fx.s.loop);
	assert_int_not_equal(fx.s.plan_hold_until, 0);
	assert_int_equal(fx.s.nhold, 2);
	a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	/* a's shares ever held (every block: it was alone first) stand, and
	 * several heartbeats of a change nothing while b is away */
	assert_int_equal(told_blocks(a), 6);
	run_for(300);
	assert_int_not_equal(fx.s.plan_hold_until, 0);
	assert_int_equal(a->n_origin, 0);
	b = agent_dial("node-b");
	agent_register(b, "y");
	WAIT_FOR(fx.s.plan_hold_until == 0);
	assert_true(uv_now(&fx.s.loop) - t0 < bound);
	WAIT_FOR(told_blocks(a) + told_blocks(b) == 6 && a->n_origin >= 1);
	agent_free(a);
	agent_free(b);

	/* b does not come back: a's share stands until the bound, then a
	 * reads every block */
	restart();
	t0 = uv_now(&fx.s.loop);
	a = agent_dial("node-a");
	agent_register(a, "x");
	WAIT_FOR(a->n_assign == 1);
	WAIT_FOR_MS(fx.s.plan_hold_until == 0, bound + WAIT_MS);
	assert_true(uv_now(&fx.s.loop) - t0 >= bound);
	WAIT_FOR(told_blocks(a) == 6);
	agent_free(a);
}

int main(void)
{
	log_setup(LOG_ERROR + 1, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_restart_keeps_versions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_takes_reported_hashes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_holds_plans, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_node_key_pinned, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_purposes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
