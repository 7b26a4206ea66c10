/* The oci:// source's documents (common/source/oci_doc.c) and its URI options: manifests
 * and indexes of both media-type families, platform choice, auth challenges,
 * token answers, tag pages and Link pagination, the generated index.json,
 * the plain-HTTP host rules, and ?platform= / ?tag-regex=. */
#include "tests/unit/testutil.h"

#include <jansson.h>

#include "common/err.h"
#include "common/source/oci_doc.h"
#include "common/uri.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static int parse(const char *json, const char *ctype, struct oci_manifest *m)
{
	char *why = NULL;
	int rc = oci_manifest_parse(json, strlen(json), ctype, m, &why);
	if (rc < 0)
		assert_non_null(why);
	free(why);
	return rc;
}

static void test_oci_manifest(void **state)
{
	struct oci_manifest m;
	const char *doc = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\","
			  "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
			  "\"digest\":\"" D1 "\",\"size\":7},"
			  "\"layers\":[{\"mediaType\":\"x\",\"digest\":\"" D2 "\",\"size\":10},"
			  "{\"mediaType\":\"x\",\"digest\":\"" D3 "\",\"size\":0}]}";
	assert_int_equal(parse(doc, NULL, &m), 0);
	assert_false(m.is_index);
	assert_string_equal(m.media_type, OCI_MT_MANIFEST);
	assert_string_equal(m.config.digest, D1);
	assert_int_equal(m.config.size, 7);
	assert_int_equal(m.nlayers, 2);
	assert_string_equal(m.layers[1].digest, D3);
	oci_manifest_close(&m);
}

static void test_docker_manifest_from_header(void **state)
{
	struct oci_manifest m;
	/* No mediaType in the body: the Content-Type (with parameters) says. */
	const char *doc = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},"
			  "\"layers\":[]}";
	assert_int_equal(parse(doc, OCI_MT_DOCKER_V2 "; charset=utf-8", &m), 0);
	assert_string_equal(m.media_type, OCI_MT_DOCKER_V2);
	assert_int_equal(m.nlayers, 0);
	oci_manifest_close(&m);
}

static void test_index_and_platforms(void **state)
{
	struct oci_manifest m;
	struct oci_platform p;
	const char *doc =
	    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_DOCKER_LIST "\",\"manifests\":["
	    "{\"mediaType\":\"" OCI_MT_DOCKER_V2 "\",\"digest\":\"" D1 "\",\"size\":5,"
	    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}},"
	    "{\"mediaType\":\"" OCI_MT_DOCKER_V2 "\",\"digest\":\"" D2 "\",\"size\":5,"
	    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
	    "{\"mediaType\":\"" OCI_MT_DOCKER_V2 "\",\"digest\":\"" D3 "\",\"size\":5,"
	    "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}},"
	    "{\"mediaType\":\"" OCI_MT_DOCKER_V2 "\",\"digest\":\"" D3 "\",\"size\":5,"
	    "\"platform\":{\"os\":\"linux\",\"architecture\":\"x86_64\"}}]}";
	assert_int_equal(parse(doc, NULL, &m), 0);
	assert_true(m.is_index);
	assert_int_equal(m.nmanifests, 4);
	assert_int_equal(oci_platform_parse("linux/amd64", &p), 0);
	assert_int_equal(oci_index_choose(&m, &p), 3); /* x86_64 is amd64 */
	assert_int_equal(oci_platform_parse("linux/aarch64", &p), 0);
	assert_string_equal(p.arch, "arm64");
	assert_int_equal(oci_index_choose(&m, &p), 1);
	assert_int_equal(oci_platform_parse("linux/arm/v7", &p), 0);
	assert_int_equal(oci_index_choose(&m, &p), 0);
	assert_int_equal(oci_platform_parse("linux/arm/v6", &p), 0);
	assert_int_equal(oci_index_choose(&m, &p), -1);
	assert_int_equal(oci_platform_parse("unknown/unknown", &p), 0);
	assert_int_equal(oci_index_choose(&m, &p), -1); /* attestations never */
	assert_int_equal(oci_platform_parse("windows/amd64", &p), 0);
	assert_int_equal(oci_index_choose(&m, &p), -1);
	oci_manifest_close(&m);

	char s[128];
	assert_int_equal(oci_platform_parse("linux/arm64/v8", &p), 0);
	oci_platform_format(&p, s, sizeof s);
	assert_string_equal(s, "linux/arm64/v8");
	assert_int_equal(oci_platform_parse("linux", &p), SB_EURI);
	assert_int_equal(oci_platform_parse("linux/", &p), SB_EURI);
	assert_int_equal(oci_platform_parse("a/b/c/d", &p), SB_EURI);
	assert_int_equal(oci_platform_parse("linux/am d64", &p), SB_EURI);
}

static void test_bad_documents(void **state)
{
	struct oci_manifest m;
	static const char *const bad[] = {
	    "",
	    "[]",
	    "{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}",
	    "{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}",
	    "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha512:ab\",\"size\":1},\"layers\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":-1},\"layers\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\"},\"layers\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1}}",
	    "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":[1]}",
	    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":{}}",
	    "{\"schemaVersion\":2,\"schemaVersion\":2,\"manifests\":[]}",
	    "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:" /* upper-case hex */
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"size\":1},"
	    "\"layers\":[]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&m, 0x5a, sizeof m);
		if (parse(bad[i], NULL, &m) == 0)
			fail_msg("accepted: %s", bad[i]);
		assert_null(m.layers);
		assert_null(m.manifests);
	}
	/* Oversized input is refused before it is parsed. */
	size_t big = OCI_DOC_MAX + 1;
	char *huge = calloc(1, big + 1);
	memset(huge, ' ', big);
	char *why = NULL;
	assert_int_equal(oci_manifest_parse(huge, big, NULL, &m, &why), SB_ETOOBIG);
	free(why);
	free(huge);
}

static void test_digests(void **state)
{
	char d[OCI_DIGEST_MAX];
	oci_digest_of("", 0, d);
	assert_string_equal(
	    d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_true(oci_digest_valid(d));
	assert_false(oci_digest_valid("sha256:e3b0"));
	assert_false(
	    oci_digest_valid("md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"));
	assert_false(oci_digest_valid(NULL));
}

static void test_challenge(void **state)
{
	struct oci_challenge c;
	assert_int_equal(
	    oci_challenge_parse("Bearer realm=\"https://auth.example.io/token\",service=\"reg\","
				"scope=\"repository:a/b:pull,push\"",
				&c),
	    0);
	assert_true(c.bearer);
	assert_string_equal(c.realm, "https://auth.example.io/token");
	assert_string_equal(c.service, "reg");
	assert_string_equal(c.scope, "repository:a/b:pull,push");
	assert_int_equal(oci_challenge_parse("bearer  realm=http://x/t , Service=\"s\\\"q\"", &c),
			 0);
	assert_string_equal(c.realm, "http://x/t");
	assert_string_equal(c.service, "s\"q");
	assert_int_equal(oci_challenge_parse("Basic realm=\"registry\"", &c), 0);
	assert_false(c.bearer);
	assert_int_equal(oci_challenge_parse("Bearer service=\"x\"", &c), SB_EPROTO);
	assert_int_equal(oci_challenge_parse("Negotiate abc", &c), SB_EPROTO);
	assert_int_equal(oci_challenge_parse("Bearer realm=\"unterminated", &c), SB_EPROTO);
}

static void test_token(void **state)
{
	char *t;
	long exp;
	const char *a = "{\"token\":\"abc.def\",\"expires_in\":300}";
	assert_int_equal(oci_token_parse(a, strlen(a), &t, &exp), 0);
	assert_string_equal(t, "abc.def");
	assert_int_equal(exp, 300);
	free(t);
	const char *b = "{\"access_token\":\"zz\"}";
	assert_int_equal(oci_token_parse(b, strlen(b), &t, &exp), 0);
	assert_string_equal(t, "zz");
	assert_int_equal(exp, 60);
	free(t);
	const char *c = "{\"token\":\"a\\r\\nX-Evil: 1\"}"; /* no header injection */
	assert_int_equal(oci_token_parse(c, strlen(c), &t, &exp), SB_EPROTO);
	assert_null(t);
	assert_int_equal(oci_token_parse("{}", 2, &t, &exp), SB_EPROTO);
	assert_int_equal(oci_token_parse("nope", 4, &t, &exp), SB_EPROTO);
}

static void test_tags_and_links(void **state)
{
	char **tags = NULL;
	size_t n = 0;
	const char *p1 = "{\"name\":\"a/b\",\"tags\":[\"v1\",\"cann-8.0\"]}";
	const char *p2 = "{\"name\":\"a/b\",\"tags\":null}";
	assert_int_equal(oci_tags_parse(p1, strlen(p1), &tags, &n, 100), 0);
	assert_int_equal(oci_tags_parse(p2, strlen(p2), &tags, &n, 100), 0);
	assert_int_equal(n, 2);
	assert_string_equal(tags[1], "cann-8.0");
	assert_int_equal(oci_tags_parse(p1, strlen(p1), &tags, &n, 3), SB_ETOOBIG);
	assert_int_equal(oci_tags_parse("{\"tags\":[1]}", 12, &tags, &n, 100), SB_EPROTO);
	for (size_t i = 0; i < n; i++)
		free(tags[i]);
	free(tags);

	char *next = oci_link_next("</v2/a/b/tags/list?last=v1&n=2>; rel=\"next\"");
	assert_string_equal(next, "/v2/a/b/tags/list?last=v1&n=2");
	free(next);
	next = oci_link_next("<https://r/x?p=1>; rel=\"prev\", <https://r/x?p=3>; rel=\"next\"");
	assert_string_equal(next, "https://r/x?p=3");
	free(next);
	assert_null(oci_link_next("<https://r/x>; rel=\"prev\""));
	assert_null(oci_link_next("garbage"));
}

static void test_layout_index(void **state)
{
	struct oci_platform arm;
	assert_int_equal(oci_platform_parse("linux/arm64/v8", &arm), 0);
	struct oci_layout_ref refs[3] = {
	    {OCI_MT_MANIFEST, D1, 100, "cann-8.0", NULL, NULL},
	    {OCI_MT_DOCKER_V2, D2, 200, NULL, NULL, NULL},
	    {OCI_MT_MANIFEST, D3, 300, "multi", &arm, D1},
	};
	char *s = oci_layout_index(refs, 3);
	json_error_t err;
	json_t *root = json_loads(s, 0, &err);
	assert_non_null(root);
	assert_int_equal(json_integer_value(json_object_get(root, "schemaVersion")), 2);
	json_t *ms = json_object_get(root, "manifests");
	assert_int_equal(json_array_size(ms), 3);
	json_t *m0 = json_array_get(ms, 0);
	assert_string_equal(json_string_value(json_object_get(m0, "digest")), D1);
	assert_int_equal(json_integer_value(json_object_get(m0, "size")), 100);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(m0, "annotations"), OCI_REF_NAME)),
	    "cann-8.0");
	assert_null(json_object_get(json_array_get(ms, 1), "annotations"));
	assert_null(json_object_get(m0, "platform"));
	/* An entry taken from an index: its platform, and the index's digest. */
	json_t *m2 = json_array_get(ms, 2), *a2 = json_object_get(m2, "annotations");
	assert_string_equal(json_string_value(json_object_get(a2, OCI_REGISTRY_DIGEST)), D1);
	assert_string_equal(json_string_value(json_object_get(a2, OCI_REF_NAME)), "multi");
	json_t *p2 = json_object_get(m2, "platform");
	assert_string_equal(json_string_value(json_object_get(p2, "os")), "linux");
	assert_string_equal(json_string_value(json_object_get(p2, "architecture")), "arm64");
	assert_string_equal(json_string_value(json_object_get(p2, "variant")), "v8");
	assert_null(json_object_get(json_object_get(m0, "annotations"), OCI_REGISTRY_DIGEST));
	json_decref(root);
	/* The generated index.json is itself a valid index. */
	struct oci_manifest m;
	assert_int_equal(parse(s, NULL, &m), 0);
	assert_true(m.is_index);
	assert_true(m.manifests[2].has_platform);
	assert_string_equal(m.manifests[2].platform.variant, "v8");
	oci_manifest_close(&m);
	free(s);
}

static void test_platform_lists(void **state)
{
	struct oci_platforms ps;
	assert_int_equal(oci_platforms_parse("all", &ps), 0);
	assert_true(ps.all);
	assert_int_equal(ps.n, 0);
	assert_int_equal(oci_platforms_parse("linux/amd64", &ps), 0);
	assert_false(ps.all);
	assert_int_equal(ps.n, 1);
	assert_int_equal(oci_platforms_parse("linux/amd64,linux/arm64/v8,linux/x86_64/v2", &ps), 0);
	assert_int_equal(ps.n, 3);
	assert_string_equal(ps.p[1].arch, "arm64");
	assert_string_equal(ps.p[1].variant, "v8");
	assert_string_equal(ps.p[2].arch, "amd64"); /* the alias, normalized */
	static const char *const bad[] = {
	    "",				/* nothing */
	    ",",			/* empty items */
	    "linux/amd64,",		/* a trailing comma */
	    ",linux/amd64",		/* a leading one */
	    "linux/amd64,linux/amd64",	/* twice */
	    "linux/amd64,linux/x86_64", /* twice, by its alias */
	    "all,linux/amd64",		/* all is alone */
	    "linux",			/* no arch */
	    "linux/amd64 ,linux/arm64", /* a space */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (oci_platforms_parse(bad[i], &ps) != SB_EURI)
			fail_msg("accepted: \"%s\"", bad[i]);
	/* At most OCI_PLATFORMS_MAX. */
	struct buf b = BUF_INIT;
	for (int i = 0; i <= OCI_PLATFORMS_MAX; i++)
		buf_printf(&b, "%slinux/a%d", i ? "," : "", i);
	assert_int_equal(oci_platforms_parse((const char *)b.ptr, &ps), SB_EURI);
	b.len = 0;
	for (int i = 0; i < OCI_PLATFORMS_MAX; i++)
		buf_printf(&b, "%slinux/a%d", i ? "," : "", i);
	buf_append(&b, "", 1);
	assert_int_equal(oci_platforms_parse((const char *)b.ptr, &ps), 0);
	assert_int_equal(ps.n, OCI_PLATFORMS_MAX);
	buf_close(&b);
}

static void test_error_summary(void **state)
{
	char out[256];
	const char *b = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
			"unknown\",\"detail\":{}}]}";
	oci_error_summary(b, strlen(b), out, sizeof out);
	assert_string_equal(out, " (MANIFEST_UNKNOWN: manifest unknown)");
	oci_error_summary("<html>", 6, out, sizeof out);
	assert_string_equal(out, "");
	oci_error_summary(NULL, 0, out, sizeof out);
	assert_string_equal(out, "");
}

static void test_hosts(void **state)
{
	assert_true(oci_host_is_loopback("localhost:5000"));
	assert_true(oci_host_is_loopback("127.0.0.1"));
	assert_true(oci_host_is_loopback("127.8.9.10:80"));
	assert_true(oci_host_is_loopback("[::1]:5000"));
	assert_false(oci_host_is_loopback("128.0.0.1"));
	assert_false(oci_host_is_loopback("10.0.0.1:5000"));
	assert_false(oci_host_is_loopback("localhost.example.com"));
	assert_false(oci_host_is_loopback("[::2]:5000"));
	assert_true(oci_host_listed("reg.lan:5000", "a.io, reg.lan:5000"));
	assert_true(oci_host_listed("reg.lan:5000", "reg.lan"));
	assert_true(oci_host_listed("REG.lan", "reg.lan"));
	assert_false(oci_host_listed("reg.lan:5001", "reg.lan:5000"));
	assert_false(oci_host_listed("reg.lan", NULL));
	assert_false(oci_host_listed("eg.lan", "reg.lan"));
}

static void test_uri_options(void **state)
{
	struct source_uri u;
	char *s = oci_source_with("oci://r.io/a/b", "linux/arm64/v8", "^cann(-|_)8\\.[0-9]+$");
	assert_int_equal(uri_parse(s, &u), 0);
	assert_string_equal(u.platform, "linux/arm64/v8");
	assert_string_equal(u.tag_regex, "^cann(-|_)8\\.[0-9]+$");
	assert_null(u.revision);
	assert_string_equal(u.repo, "a/b");
	/* The canonical form round-trips to the same options. */
	struct source_uri v;
	assert_int_equal(uri_parse(u.canonical, &v), 0);
	assert_string_equal(v.canonical, u.canonical);
	assert_string_equal(v.tag_regex, u.tag_regex);
	uri_close(&v);
	uri_close(&u);
	free(s);

	assert_int_equal(uri_parse("oci://r.io/a:v1?platform=linux/arm64", &u), 0);
	assert_string_equal(u.canonical, "oci://r.io/a:v1?platform=linux/arm64");
	assert_string_equal(u.revision, "v1");
	uri_close(&u);
	assert_int_equal(uri_parse("oci://r.io/a:v1?platform=linux/arm64,linux/amd64", &u), 0);
	assert_string_equal(u.platform, "linux/arm64,linux/amd64");
	uri_close(&u);
	assert_int_equal(uri_parse("oci://r.io/a:v1?platform=all", &u), 0);
	assert_string_equal(u.canonical, "oci://r.io/a:v1?platform=all");
	uri_close(&u);
	assert_int_equal(uri_parse("oci://r.io/a", &u), 0);
	assert_string_equal(u.canonical, "oci://r.io/a:latest");
	assert_null(u.platform);
	uri_close(&u);

	static const char *const bad[] = {
	    "oci://r.io/a:v1?tag-regex=x",	       /* a tag and a regex */
	    ("oci://r.io/a@" D1 "?tag-regex=x"),       /* a digest and a regex */
	    "oci://r.io/a?platform=linux",	       /* no arch */
	    "oci://r.io/a?platform=Linux/amd64",       /* not lower-case */
	    "oci://r.io/a?platform=a/b&platform=a/b",  /* twice */
	    "oci://r.io/a?colour=red",		       /* unknown key */
	    "oci://r.io/a?tag-regex=",		       /* empty */
	    "oci://r.io/a?tag-regex=%0a",	       /* control byte */
	    "oci://r.io/a?platform",		       /* no value */
	    "oci://r.io/a?platform=linux/amd64,",      /* an empty item */
	    "oci://r.io/a?platform=linux/amd64,arm64", /* an item with no os */
	    "oci://r.io/a?platform=ALL",	       /* not lower-case */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (uri_parse(bad[i], &u) != SB_EURI)
			fail_msg("accepted: %s", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_oci_manifest),
	    cmocka_unit_test(test_docker_manifest_from_header),
	    cmocka_unit_test(test_index_and_platforms),
	    cmocka_unit_test(test_bad_documents),
	    cmocka_unit_test(test_digests),
	    cmocka_unit_test(test_challenge),
	    cmocka_unit_test(test_token),
	    cmocka_unit_test(test_tags_and_links),
	    cmocka_unit_test(test_layout_index),
	    cmocka_unit_test(test_platform_lists),
	    cmocka_unit_test(test_error_summary),
	    cmocka_unit_test(test_hosts),
	    cmocka_unit_test(test_uri_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
