/* A dataset's include/exclude rules in the scheduler's state: saved with
 * its definition and read back in order across a reopen, kept by a
 * redefinition that does not give them, dropped by an empty set; records
 * from before the rules load without any; a record whose rule does not
 * parse is skipped rather than served unfiltered. And the wire form's
 * bounds. */
#include "testutil.h"

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "scheduler/cluster.h"
#include "scheduler/ds_filter.h"
#include "scheduler/version.h"

#define BS (64u << 10)

/* A version of a one-file listing. */
static struct sched_version *one_file_version(void)
{
	struct source_listing l;
	struct sched_version *v = NULL;
	char *detail = NULL;
	memset(&l, 0, sizeof l);
	l.files = xcalloc(1, sizeof *l.files);
	l.nfiles = 1;
	l.files[0].path = xstrdup("a.bin");
	l.files[0].type = SRC_REGULAR;
	l.files[0].size = 10;
	l.files[0].mode = 0644;
	assert_int_equal(version_from_listing(&l, "file:///src", BS, MANIFEST_FORMAT, &v, &detail),
			 0);
	source_listing_close(&l);
	return v;
}

static void rules(struct filter *f, const char *const *spec)
{
	char *error = NULL;
	memset(f, 0, sizeof *f);
	for (; *spec; spec++)
		assert_int_equal(filter_add(f, (*spec)[0] == '+', *spec + 2, &error), 0);
}

static void test_filter_round_trip(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	struct filter f;
	static const char *const spec[] = {"- *.tmp", "+ */", "+ keep/**", "+ /top/", "- *", NULL};
	rules(&f, spec);
	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_version *cv = cluster_version_add(&c, one_file_version());
	cluster_dataset_define(&c, "models", "file:///src", NULL, 0, BS, &f, cv);
	cluster_dataset_set(&c, "plain", "file:///src", NULL, 0, BS, cv);
	cluster_close(&c);

	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_dataset *d = cluster_dataset_find(&c, "models");
	assert_non_null(d);
	assert_true(ds_filter_same(&d->filter, &f));
	assert_int_equal(d->filter.n, 5);
	assert_string_equal(d->filter.rules[3].given, "/top/");
	assert_true(d->filter.rules[3].anchored && d->filter.rules[3].dir_only);
	assert_true(filter_excludes(&d->filter, "x.tmp", 0));
	assert_false(filter_excludes(&d->filter, "keep/a/b.bin", 0));
	assert_true(filter_excludes(&d->filter, "other.bin", 0));
	char *text = ds_filter_text(&d->filter);
	assert_string_equal(text, "- *.tmp, + */, + keep/**, + /top/, - *");
	free(text);
	assert_int_equal(cluster_dataset_find(&c, "plain")->filter.n, 0);

	/* A redefinition without rules keeps them; an empty set drops them. */
	cluster_dataset_set(&c, "models", "file:///other", NULL, 0, BS, d->current);
	assert_true(ds_filter_same(&d->filter, &f));
	struct filter none = {0};
	cluster_dataset_define(&c, "models", "file:///other", NULL, 0, BS, &none, d->current);
	assert_int_equal(d->filter.n, 0);
	cluster_close(&c);
	assert_int_equal(cluster_open(&c, dir), 0);
	assert_int_equal(cluster_dataset_find(&c, "models")->filter.n, 0);
	assert_string_equal(cluster_dataset_find(&c, "models")->source, "file:///other");
	cluster_close(&c);
	filter_close(&f);
	testutil_rmtree(dir);
}

/* Records as a scheduler from before the rules wrote them, and one with a
 * rule that does not parse. */
static void test_filter_old_and_bad_records(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_version *cv = cluster_version_add(&c, one_file_version());
	struct hash_id id = cv->v->id;
	Syncbit__Admin def;
	syncbit__admin__init(&def);
	def.op = SYNCBIT__ADMIN_OP__ADMIN_DATASET_ADD;
	def.name = (char *)"old";
	def.source = (char *)"file:///src";
	def.block_size = BS;
	assert_int_equal(state_put_dataset(c.state, "old", &id, &def), 0);
	Syncbit__FilterRule bad = SYNCBIT__FILTER_RULE__INIT, *badp = &bad;
	bad.pattern = (char *)"a[";
	def.name = (char *)"broken";
	def.filter = &badp;
	def.n_filter = 1;
	assert_int_equal(state_put_dataset(c.state, "broken", &id, &def), 0);
	cluster_close(&c);

	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_dataset *d = cluster_dataset_find(&c, "old");
	assert_non_null(d);
	assert_int_equal(d->filter.n, 0);
	assert_memory_equal(d->current->v->id.b, id.b, HASH_LEN);
	assert_null(cluster_dataset_find(&c, "broken"));
	cluster_close(&c);
	testutil_rmtree(dir);
}

static void test_filter_wire(void **state)
{
	struct filter f, back;
	Syncbit__FilterRule *store;
	char *why = NULL;
	static const char *const spec[] = {"- *.tmp", "+ keep/**", NULL};
	rules(&f, spec);
	Syncbit__FilterRule **w = ds_filter_to_wire(&f, &store);
	assert_false(w[0]->include);
	assert_string_equal(w[1]->pattern, "keep/**");
	assert_int_equal(ds_filter_from_wire(w, f.n, &back, &why), 0);
	assert_true(ds_filter_same(&f, &back));
	json_t *j = ds_filter_json(&back);
	char *s = json_dumps(j, JSON_COMPACT);
	assert_string_equal(s, "[{\"rule\":\"exclude\",\"pattern\":\"*.tmp\"},"
			       "{\"rule\":\"include\",\"pattern\":\"keep/**\"}]");
	free(s);
	json_decref(j);
	filter_close(&back);

	/* More rules than a filter takes, an empty pattern, an unclosed class. */
	Syncbit__FilterRule r = SYNCBIT__FILTER_RULE__INIT;
	Syncbit__FilterRule **many = xcalloc(FILTER_RULES_MAX + 1, sizeof *many);
	r.pattern = (char *)"x";
	for (size_t i = 0; i <= FILTER_RULES_MAX; i++)
		many[i] = &r;
	assert_int_equal(ds_filter_from_wire(many, FILTER_RULES_MAX + 1, &back, &why), SB_EPROTO);
	assert_non_null(strstr(why, "at most 256"));
	assert_int_equal(back.n, 0);
	free(why);
	assert_int_equal(ds_filter_from_wire(many, FILTER_RULES_MAX, &back, &why), 0);
	filter_close(&back);
	r.pattern = (char *)"";
	assert_int_equal(ds_filter_from_wire(many, 1, &back, &why), SB_EPROTO);
	free(why);
	r.pattern = (char *)"[ab";
	assert_int_equal(ds_filter_from_wire(many, 1, &back, &why), SB_EPROTO);
	assert_non_null(strstr(why, "not closed"));
	free(why);
	free(many);
	free(w);
	free(store);
	filter_close(&f);
}

int main(void)
{
	log_setup(LOG_ERROR + 1, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_filter_round_trip),
	    cmocka_unit_test(test_filter_old_and_bad_records),
	    cmocka_unit_test(test_filter_wire),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
