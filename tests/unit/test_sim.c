/* The distribution model (bench/sim): a small swarm completes with every
 * node holding every block, the origin sends at least S, a seed replays a
 * run exactly, deaths and late joins are survived, and the model's block
 * index chooses what agent/pick.c's full scan chooses. */
#include "testutil.h"

#include "bench/sim/sim.h"

/* 16 nodes, 1 GiB in 4 MiB blocks, links 10-100 Gbit/s, one rack of 4
 * behind a 1:3 uplink, the origin at 10 Gbit/s. */
static void small(struct sim_config *c)
{
	sim_config_default(c);
	c->nodes = 16;
	c->size = 1ull << 30;
	c->block = 4u << 20;
	c->origin = 10e9;
	c->rack_size = 4;
	c->oversub = 3;
	c->late = 0;
	c->die = 0;
	c->seed = 7;
}

static void check_complete(const struct sim_config *c, const struct sim_result *r)
{
	assert_int_equal(r->complete, 1);
	assert_int_equal(r->finished, r->alive);
	assert_int_equal(r->alive, c->nodes - r->died);
	/* each byte leaves the origin at least once */
	assert_true(r->origin_bytes >= c->size);
	assert_true(r->last_s >= r->first_s);
	assert_true(r->first_s > 0);
	/* no node finishes before its own link could carry S */
	assert_true(r->last_s >= r->floor_s * 0.999);
	/* every surviving node got S: from the origin or from peers */
	assert_true(r->origin_bytes + r->peer_bytes - r->dup_bytes >=
		    (uint64_t)r->finished * c->size);
}

static void test_small_completes(void **state)
{
	struct sim_config c;
	struct sim_result r;
	small(&c);
	assert_int_equal(sim_run(&c, &r, NULL), 0);
	check_complete(&c, &r);
	assert_int_equal(r.finished, 16);
	/* the origin plans split the file: not every node reads it all */
	assert_true(r.origin_bytes < 2 * c.size);
	assert_true(r.peer_bytes > 10 * c.size);
}

static void test_seed_replays(void **state)
{
	struct sim_config c;
	struct sim_result a, b, other;
	small(&c);
	c.late = 3;
	c.die = 2;
	assert_int_equal(sim_run(&c, &a, NULL), 0);
	assert_int_equal(sim_run(&c, &b, NULL), 0);
	assert_true(a.digest == b.digest);
	assert_true(a.last_s == b.last_s);
	assert_true(a.origin_bytes == b.origin_bytes);
	assert_true(a.events == b.events);
	c.seed = 8;
	assert_int_equal(sim_run(&c, &other, NULL), 0);
	assert_true(other.digest != a.digest);
}

static void test_churn(void **state)
{
	struct sim_config c;
	struct sim_result r;
	small(&c);
	c.late = 4;
	c.die = 3;
	c.die_from = 0.05;
	c.die_until = 0.6;
	assert_int_equal(sim_run(&c, &r, NULL), 0);
	check_complete(&c, &r);
	assert_int_equal(r.died, 3);
	assert_int_equal(r.late, 4);
	assert_int_equal(r.finished, 13);
	assert_true(r.replans >= 2); /* the first plan and at least one after a change */
}

static void test_index_matches_pick(void **state)
{
	assert_int_equal(swarm_selftest(1), 1);
	assert_int_equal(swarm_selftest(2), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small_completes),
	    cmocka_unit_test(test_seed_replays),
	    cmocka_unit_test(test_churn),
	    cmocka_unit_test(test_index_matches_pick),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
