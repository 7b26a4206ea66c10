/* Hashes a node reports for blocks it read from the origin: taken only
 * from its own share, now or before a new plan (also across a restart);
 * made-up hashes for another node's blocks are refused and counted. */
#include "sched_fixture.h"

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

	/* After a restart b registers first; a is not back when the plans
	 * restored stop being held (their bound, brought forward here), so b
	 * reads both unknown blocks (1 and 3); a, which had block 3 in its
	 * first share, reports it. */
	restart();
	b = agent_dial("node-b");
	agent_register(b, "y");
	WAIT_FOR(b->n_assign == 1);
	assert_int_not_equal(fx.s.plan_hold_until, 0);
	fx.s.plan_hold_until = uv_now(&fx.s.loop);
	WAIT_FOR(fx.s.plan_hold_until == 0 && told_blocks(b) == 2);
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
	    cmocka_unit_test_setup_teardown(test_ingest_only_from_share, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ingest_from_past_share, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
