/* Include/exclude rules (common/source/filter.c): the glob, rsync's anchoring,
 * directory and parent rules, listings with hardlinks, and registry
 * credentials from auth files (common/source/oci_auth.c). */
#include "tests/unit/testutil.h"

#include "common/err.h"
#include "common/source/filter.h"
#include "common/source/oci_auth.h"
#include "common/source/source.h"

static void test_glob(void **state)
{
	assert_true(filter_glob("*.bin", "a.bin"));
	assert_false(filter_glob("*.bin", "d/a.bin")); /* '*' stops at '/' */
	assert_true(filter_glob("**.bin", "d/e/a.bin"));
	assert_true(filter_glob("a/**/b", "a/x/y/b"));
	assert_false(filter_glob("a/**/b", "a/b")); /* '**' is not "zero dirs" here */
	assert_true(filter_glob("a?c", "abc"));
	assert_false(filter_glob("a?c", "a/c"));
	assert_true(filter_glob("[a-c]x", "bx"));
	assert_false(filter_glob("[!a-c]x", "bx"));
	assert_true(filter_glob("[]]", "]"));
	assert_true(filter_glob("\\*", "*"));
	assert_false(filter_glob("\\*", "a"));
	assert_true(filter_glob("*", ""));
	/* Many stars over a long name end quickly (the aborts). */
	assert_false(
	    filter_glob("*a*a*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static struct filter rules(const char *spec[])
{
	struct filter f = {0};
	char *err = NULL;
	for (size_t i = 0; spec[i]; i++) {
		assert_int_equal(filter_add(&f, spec[i][0] == '+', spec[i] + 2, &err), 0);
		assert_null(err);
	}
	return f;
}

static void test_rules(void **state)
{
	const char *a[] = {"+ */", "+ *.json", "- *", NULL};
	struct filter f = rules(a);
	assert_false(filter_excludes(&f, "config.json", 0));
	assert_false(filter_excludes(&f, "sub/deep/e.json", 0));
	assert_true(filter_excludes(&f, "sub/x.bin", 0));
	filter_close(&f);

	const char *b[] = {"+ *.json", "- *", NULL}; /* directories fall to '*' */
	f = rules(b);
	assert_false(filter_excludes(&f, "config.json", 0));
	assert_true(filter_excludes(&f, "sub/e.json", 0));
	filter_close(&f);

	const char *c[] = {"- /a*", "- deep/", "- x/y", NULL};
	f = rules(c);
	assert_true(filter_excludes(&f, "ab", 0));
	assert_false(filter_excludes(&f, "d/ab", 0));	 /* anchored */
	assert_true(filter_excludes(&f, "s/deep/e", 0)); /* a parent directory */
	assert_false(filter_excludes(&f, "s/deep", 0));	 /* a file named deep */
	assert_true(filter_excludes(&f, "q/x/y", 0));	 /* unanchored, at a '/' */
	assert_false(filter_excludes(&f, "qx/y", 0));
	filter_close(&f);

	const char *d[] = {"+ /sub/***", "- *", NULL};
	f = rules(d);
	assert_false(filter_excludes(&f, "sub", 1));
	assert_false(filter_excludes(&f, "sub/deep/e", 0));
	assert_true(filter_excludes(&f, "other", 0));
	assert_true(filter_excludes(&f, "sub", 0)); /* a file is not the directory */
	filter_close(&f);
	assert_false(filter_excludes(NULL, "x", 0));
}

static void test_bad_rules(void **state)
{
	struct filter f = {0};
	char *err = NULL;
	assert_int_equal(filter_add(&f, 1, "[ab", &err), SB_ECONFIG);
	assert_string_equal(err, "--include '[ab': a '[' is not closed");
	free(err);
	assert_int_equal(filter_add(&f, 0, "/", &err), SB_ECONFIG);
	assert_string_equal(err, "--exclude '/': matches nothing");
	free(err);
	assert_int_equal(filter_add(&f, 0, "a\nb", &err), SB_ECONFIG);
	free(err);
	for (int i = 0; i < FILTER_RULES_MAX; i++)
		assert_int_equal(filter_add(&f, 0, "x", &err), 0);
	assert_int_equal(filter_add(&f, 0, "x", &err), SB_ECONFIG);
	free(err);
	filter_close(&f);
}

/* A hardlink group whose first member is dropped keeps its other members
 * linked to the first one left. */
static void test_listing_hardlinks(void **state)
{
	struct source_listing l = {0};
	const char *paths[] = {"a.bin", "b.txt", "c.txt", "d.txt"};
	l.nfiles = 4;
	l.files = calloc(4, sizeof *l.files);
	for (int i = 0; i < 4; i++) {
		l.files[i].path = strdup(paths[i]);
		l.files[i].digest = strdup("t");
	}
	l.files[2].hardlink_to = 1; /* c -> a */
	l.files[3].hardlink_to = 1; /* d -> a */
	const char *spec[] = {"- *.bin", NULL};
	struct filter f = rules(spec);
	assert_int_equal(source_listing_filter(&l, &f), 1);
	assert_int_equal(l.nfiles, 3);
	assert_string_equal(l.files[0].path, "b.txt");
	assert_string_equal(l.files[1].path, "c.txt");
	assert_int_equal(l.files[1].hardlink_to, 0);
	assert_int_equal(l.files[2].hardlink_to, 2); /* d -> c */
	filter_close(&f);
	source_listing_close(&l);
}

static void auth_ok(const char *json, const char *reg, const char *repo, const char *want)
{
	char *u = NULL, *why = NULL;
	int rc = oci_auth_find(json, strlen(json), reg, repo, &u, &why);
	if (want) {
		assert_int_equal(rc, 1);
		assert_string_equal(u, want);
	} else {
		assert_int_equal(rc, 0);
		assert_null(u);
	}
	free(u);
	free(why);
}

static void test_auth_file(void **state)
{
	/* "alice:pw" "bob:pw" "carol:pw" */
	const char *j = "{\"auths\":{"
			"\"reg:5000\":{\"auth\":\"YWxpY2U6cHc=\"},"
			"\"reg:5000/team\":{\"auth\":\"Ym9iOnB3\"},"
			"\"https://index.docker.io/v1/\":{\"auth\":\"Y2Fyb2w6cHc=\"},"
			"\"quay.io/org/img\":{\"auth\":\"Ym9iOnB3\"},"
			"\"empty.io\":{\"auth\":\"\"}}}";
	auth_ok(j, "reg:5000", "other/app", "alice:pw");
	auth_ok(j, "reg:5000", "team/app", "bob:pw");	 /* the longer namespace */
	auth_ok(j, "reg:5000", "teamx/app", "alice:pw"); /* not along a '/' */
	auth_ok(j, "docker.io", "library/ubuntu", "carol:pw");
	auth_ok(j, "quay.io", "org/img", "bob:pw");
	auth_ok(j, "quay.io", "org/other", NULL);
	auth_ok(j, "reg", "x", NULL); /* not a prefix of a host */
	auth_ok(j, "empty.io", "x", NULL);
	/* The legacy ~/.dockercfg: the map alone. */
	auth_ok("{\"reg:1\":{\"auth\":\"YWxpY2U6cHc=\"}}", "reg:1", "a", "alice:pw");
	auth_ok("{\"credsStore\":\"desktop\"}", "reg:1", "a", NULL);

	char *u = NULL, *why = NULL;
	assert_int_equal(oci_auth_find("{\"auths\": [", 11, "r", "a", &u, &why), SB_ECONFIG);
	assert_non_null(strstr(why, "malformed JSON"));
	free(why);
	const char *bad = "{\"auths\":{\"r\":{\"auth\":\"!!!\"}}}";
	assert_int_equal(oci_auth_find(bad, strlen(bad), "r", "a", &u, &why), SB_ECONFIG);
	assert_null(u);
	free(why);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_glob),      cmocka_unit_test(test_rules),
	    cmocka_unit_test(test_bad_rules), cmocka_unit_test(test_listing_hardlinks),
	    cmocka_unit_test(test_auth_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
