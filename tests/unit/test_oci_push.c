/* common/source/oci_push.c's decisions on what a registry answers to an
 * upload (where the next request goes, what the Range of a PATCH answer
 * says, whether credentials may follow a Location), and the destinations
 * agent/sync_oci.c accepts. No network: the requests themselves run in
 * tests/integration/test_sync_oci.sh. */
#include "testutil.h"

#include "agent/sync_oci.h"
#include "common/err.h"
#include "common/source/oci_push.h"

static void expect_resolved(const char *base, const char *location, const char *want)
{
	char *got = oci_push_resolve(base, location);
	if (!want) {
		if (got)
			fail_msg("%s + %s: resolved to %s", base, location, got);
		return;
	}
	if (!got)
		fail_msg("%s + %s: not resolved", base, location);
	assert_string_equal(got, want);
	free(got);
}

/* A session URL resolves to itself: libcurl spells the host of
 * "https:/7%348" as 748 when it resolves it and as 0.0.2.236 when it reads
 * that again; the result is the settled spelling (found by fuzz_oci_push). */
static void test_location_settles(void **state)
{
	(void)state;
	char *s = oci_push_resolve("http://127.0.0.1:5000/v2/a/blobs/uploads/", "https:/7%348");
	assert_non_null(s);
	char *again = oci_push_resolve(s, s);
	assert_non_null(again);
	assert_string_equal(again, s);
	free(again);
	free(s);
}

static void test_location(void **state)
{
	(void)state;
	const char *post = "http://127.0.0.1:5000/v2/team/app/blobs/uploads/";
	/* distribution answers with an absolute URL carrying its state... */
	expect_resolved(post, "http://127.0.0.1:5000/v2/team/app/blobs/uploads/u1?_state=abc%3D",
			"http://127.0.0.1:5000/v2/team/app/blobs/uploads/u1?_state=abc%3D");
	/* ...others with a path, which keeps the registry's origin. */
	expect_resolved(post, "/v2/team/app/blobs/uploads/u2?_state=x",
			"http://127.0.0.1:5000/v2/team/app/blobs/uploads/u2?_state=x");
	/* A PATCH's Location replaces the session URL, query and all. */
	expect_resolved("http://r:5000/v2/a/blobs/uploads/u1?_state=one",
			"/v2/a/blobs/uploads/u1?_state=two",
			"http://r:5000/v2/a/blobs/uploads/u1?_state=two");
	expect_resolved("https://r.io/v2/a/blobs/uploads/", "https://upload.r.io/session/9",
			"https://upload.r.io/session/9");
	expect_resolved(post, "ftp://r/x", NULL);
	expect_resolved(post, "file:///etc/passwd", NULL);
}

static void test_origin(void **state)
{
	(void)state;
	assert_true(oci_push_same_origin("http://127.0.0.1:5000/v2/",
					 "http://127.0.0.1:5000/v2/a/blobs/uploads/u?x=1"));
	assert_true(oci_push_same_origin("https://R.io/v2/", "https://r.io:443/x"));
	/* Credentials go to neither another host, port nor scheme. */
	assert_false(oci_push_same_origin("https://r.io/v2/", "https://s3.r.io/x"));
	assert_false(oci_push_same_origin("http://r:5000/", "http://r:5001/"));
	assert_false(oci_push_same_origin("https://r.io/", "http://r.io/"));
	assert_false(oci_push_same_origin("https://r.io/", "not a url"));
}

static void test_digest_query(void **state)
{
	(void)state;
	const char *d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	char *u = oci_push_with_digest("http://r/v2/a/blobs/uploads/u", d);
	assert_string_equal(u, "http://r/v2/a/blobs/uploads/u?digest=sha256:"
			       "0000000000000000000000000000000000000000000000000000000000000000");
	free(u);
	u = oci_push_with_digest("http://r/v2/a/blobs/uploads/u?_state=s", d);
	assert_non_null(strstr(u, "?_state=s&digest=sha256:"));
	free(u);
	u = oci_push_with_digest("http://r/u?", d);
	assert_non_null(strstr(u, "/u?digest=sha256:"));
	free(u);
}

static void test_ranges(void **state)
{
	(void)state;
	char cr[PUSH_RANGE_MAX];
	uint64_t last = 0;
	/* Content-Range of a chunk: first-last, inclusive, no unit. */
	oci_push_content_range(cr, sizeof cr, 0, 262144);
	assert_string_equal(cr, "0-262143");
	oci_push_content_range(cr, sizeof cr, 262144, 1);
	assert_string_equal(cr, "262144-262144");
	oci_push_content_range(cr, sizeof cr, 1ull << 40, 1ull << 30);
	assert_string_equal(cr, "1099511627776-1100585369599");
	/* The Range of the answer: what the session holds. */
	assert_int_equal(oci_push_range_last("0-262143", &last), 0);
	assert_int_equal(last, 262143);
	assert_int_equal(oci_push_range_last("bytes=0-99", &last), 0);
	assert_int_equal(last, 99);
	const char *bad[] = {"", "-5", "0-", "5-9", "0-9x", "x", "0--1", "0-18446744073709551616"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (oci_push_range_last(bad[i], &last) == 0)
			fail_msg("accepted Range: %s", bad[i]);
}

static void test_dest(void **state)
{
	(void)state;
	struct sync_oci_dest d;
	char *why = NULL;
	assert_int_equal(sync_oci_dest_parse("oci://127.0.0.1:5000/team/app", NULL, &d, &why), 0);
	assert_string_equal(d.base, "http://127.0.0.1:5000");
	assert_string_equal(d.repo, "team/app");
	assert_string_equal(d.tag, "");
	assert_string_equal(d.canonical, "oci://127.0.0.1:5000/team/app");
	sync_oci_dest_close(&d);
	assert_int_equal(
	    sync_oci_dest_parse("OCI://Registry.Example:5000/app:v1.2", NULL, &d, &why), 0);
	assert_string_equal(d.base, "https://registry.example:5000");
	assert_string_equal(d.tag, "v1.2");
	sync_oci_dest_close(&d);
	assert_int_equal(
	    sync_oci_dest_parse("oci://mirror.lan:5000/app", "mirror.lan:5000", &d, &why), 0);
	assert_string_equal(d.base, "http://mirror.lan:5000");
	sync_oci_dest_close(&d);
	/* Docker Hub: its API host, and library/ for one-component names. */
	assert_int_equal(sync_oci_dest_parse("oci://docker.io/nginx", NULL, &d, &why), 0);
	assert_string_equal(d.base, "https://registry-1.docker.io");
	assert_string_equal(d.repo, "library/nginx");
	sync_oci_dest_close(&d);
	const char *bad[] = {
	    "/tmp/dir",
	    "oci://",
	    "oci://r.io",
	    "oci://r.io/",
	    "oci:///app",
	    "oci://r.io/App",
	    "oci://r.io/app@sha256:00",
	    "oci://r.io/app:bad/tag",
	    "oci://r.io/app:",
	    "oci://r.io/app?tag-regex=x",
	    "oci://bad host/app",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		if (sync_oci_dest_parse(bad[i], NULL, &d, &why) != SB_EURI)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(why);
		assert_null(strchr(why, '\n'));
		free(why);
	}
	assert_true(sync_oci_is_dest("oci://r/a"));
	assert_false(sync_oci_is_dest("/data/oci://"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_location_settles), cmocka_unit_test(test_location),
	    cmocka_unit_test(test_origin),	     cmocka_unit_test(test_digest_query),
	    cmocka_unit_test(test_ranges),	     cmocka_unit_test(test_dest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
