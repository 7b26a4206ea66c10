/* What heartbeats change is saved with every node's at the next flush, in
 * one transaction: not before (a scheduler killed in between lost it, and
 * the nodes report it again), and after it even without a clean stop. */
#include "testutil.h"

#include "common/buf.h"
#include "common/err.h"
#include "scheduler/cluster.h"
#include "scheduler/state.h"
#include "scheduler/version.h"

#define BS (64u << 10)
#define T0 100000 /* loop time of the first heartbeats */

static struct sched_version *one_file(void)
{
	struct source_listing l = {0};
	struct sched_version *v = NULL;
	char *detail = NULL;
	l.files = xcalloc(1, sizeof *l.files);
	l.nfiles = 1;
	l.files[0].path = xstrdup("w.bin");
	l.files[0].type = SRC_REGULAR;
	l.files[0].size = 3 * BS;
	l.files[0].mode = 0644;
	l.files[0].digest = xstrdup("wd");
	assert_int_equal(version_from_listing(&l, "file:///src", BS, MANIFEST_FORMAT, &v, &detail),
			 0);
	source_listing_close(&l);
	return v;
}

static struct cluster_node *node(struct cluster *c, const char *name)
{
	static const uint8_t key[SECURE_KEY_BYTES] = {0x5a};
	Syncbit__Register reg = SYNCBIT__REGISTER__INIT;
	reg.node = (char *)name;
	reg.peer_addr = "127.0.0.1:7000";
	return cluster_node_register(c, name, &reg, key, 1);
}

static void beat(struct cluster *c, struct cluster_node *n, const struct hash_id *id, uint8_t bits,
		 uint64_t now)
{
	Syncbit__Bitfield bf = SYNCBIT__BITFIELD__INIT;
	Syncbit__VersionState vs = SYNCBIT__VERSION_STATE__INIT, *vp = &vs;
	bf.nblocks = 3;
	bf.bits.data = &bits;
	bf.bits.len = 1;
	vs.dataset = "w";
	vs.version_id.data = (uint8_t *)id->b;
	vs.version_id.len = HASH_LEN;
	vs.have = &bf;
	cluster_node_heard(c, n, now);
	(void)cluster_node_report(c, n, &vp, 1, now);
}

/* Close without the final flush, as a killed scheduler would. */
static void crash(struct cluster *c)
{
	state_free(c->state);
	c->state = NULL;
	cluster_close(c);
}

static uint32_t have_after_reopen(const char *dir, const struct hash_id *id)
{
	struct cluster c;
	assert_int_equal(cluster_open(&c, dir), 0);
	const struct cluster_node *n = cluster_node_find(&c, "a");
	const struct cluster_report *r = n ? cluster_node_report_of(n, id) : NULL;
	uint32_t have = r ? r->have : UINT32_MAX;
	cluster_close(&c);
	return have;
}

/* A cluster in dir with dataset w of one version (*id). */
static void cluster_with_w(struct cluster *c, const char *dir, struct hash_id *id)
{
	assert_int_equal(cluster_open(c, dir), 0);
	struct cluster_version *cv = cluster_version_add(c, one_file());
	*id = cv->v->id;
	cluster_dataset_set(c, "w", "file:///src", NULL, 0, BS, cv);
}

static void test_saved_at_the_flush(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	struct hash_id id;
	cluster_with_w(&c, dir, &id);
	struct cluster_node *a = node(&c, "a");
	beat(&c, a, &id, 0x01, T0);
	assert_int_equal(c.nsave_due, 1);
	assert_true(a->reports[0].due);
	cluster_flush(&c);
	assert_int_equal(c.nsave_due, 0);
	assert_false(a->reports[0].due || a->reports[0].dirty);
	beat(&c, a, &id, 0x03, T0 + 10); /* counters within CLUSTER_REPORT_SAVE_MS: not due */
	assert_int_equal(c.nsave_due, 0);
	crash(&c);
	assert_int_equal(have_after_reopen(dir, &id), 1); /* the flushed map */

	assert_int_equal(cluster_open(&c, dir), 0);
	a = cluster_node_find(&c, "a");
	a->conn = &c; /* connected: its reports count */
	beat(&c, a, &id, 0x07, T0 + CLUSTER_REPORT_SAVE_MS + 100);
	assert_int_equal(c.nsave_due, 1);
	crash(&c); /* before the flush: the nodes report it again */
	assert_int_equal(have_after_reopen(dir, &id), 1);
	testutil_rmtree(dir);
}

/* A node removed while its saves wait leaves the list (under ASan, a
 * dangling entry would be read). */
static void test_removed_node_leaves_the_list(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	struct hash_id id;
	cluster_with_w(&c, dir, &id);
	beat(&c, node(&c, "a"), &id, 0x01, T0);
	beat(&c, node(&c, "b"), &id, 0x02, T0);
	assert_int_equal(c.nsave_due, 2);
	assert_int_equal(cluster_node_remove(&c, "a"), 0);
	/* (its removal's version check may flush the rest already) */
	for (size_t i = 0; i < c.nsave_due; i++)
		assert_string_equal(c.save_due[i]->name, "b");
	cluster_flush(&c);
	assert_false(cluster_node_find(&c, "b")->reports[0].due);
	assert_int_equal(c.nsave_due, 0);
	cluster_close(&c);
	testutil_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_saved_at_the_flush),
	    cmocka_unit_test(test_removed_node_leaves_the_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
