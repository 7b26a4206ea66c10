#include "tests/unit/testutil.h"

#include "common/err.h"
#include "common/uri.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void check_null_or(const char *got, const char *want, const char *what, const char *input)
{
	if (!want && !got)
		return;
	if (!want || !got || strcmp(want, got) != 0)
		fail_msg("%s: %s is '%s', want '%s'", input, what, got ? got : "(null)",
			 want ? want : "(null)");
}

static void assert_empty(const struct source_uri *u, const char *input)
{
	const char *const fields[] = {u->raw,	 u->canonical, u->path,	    u->url,
				      u->bucket, u->prefix,    u->repo,	    u->revision,
				      u->digest, u->registry,  u->platform, u->tag_regex};

	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		if (fields[i])
			fail_msg("%s: output not cleared after an error (field %zu)", input, i);
	if (u->kind != 0 || u->is_dataset)
		fail_msg("%s: output not cleared after an error", input);
}

static void expect_error(const char *s, int want)
{
	struct source_uri u;
	int rc;

	memset(&u, 0x5a, sizeof u);
	rc = uri_parse(s, &u);
	if (rc != want)
		fail_msg("'%s': got %d (%s), want %s", s, rc, rc ? sb_errname(rc) : "ok",
			 sb_errname(want));
	assert_empty(&u, s);
}

/* ---- local files ---- */

struct file_case {
	const char *in;
	const char *path;
	const char *canonical;
};

static void test_file_absolute(void **state)
{
	static const struct file_case cases[] = {
	    {"/data/models/", "/data/models", "file:///data/models"},
	    {"/", "/", "file:///"},
	    {"//", "/", "file:///"},
	    {"/a//b/./c/../d", "/a/b/d", "file:///a/b/d"},
	    {"/..", "/", "file:///"},
	    {"file:///data/x", "/data/x", "file:///data/x"},
	    {"file:///data/x/", "/data/x", "file:///data/x"},
	    {"file://localhost/srv", "/srv", "file:///srv"},
	    {"FILE:///a%20b/c%25", "/a b/c%", "file:///a%20b/c%25"},
	    {"/a b/c%", "/a b/c%", "file:///a%20b/c%25"},
	    {"/tmp/x?y#z", "/tmp/x?y#z", "file:///tmp/x%3Fy%23z"},
	    {"/caf\xc3\xa9", "/caf\xc3\xa9", "file:///caf%C3%A9"},
	    {"file:///a%2fb", "/a/b", "file:///a/b"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct source_uri u;

		if (uri_parse(cases[i].in, &u) != 0)
			fail_msg("'%s' rejected", cases[i].in);
		assert_int_equal(u.kind, URI_FILE);
		check_null_or(u.path, cases[i].path, "path", cases[i].in);
		check_null_or(u.canonical, cases[i].canonical, "canonical", cases[i].in);
		check_null_or(u.raw, cases[i].in, "raw", cases[i].in);
		assert_null(u.url);
		assert_null(u.repo);
		uri_close(&u);
	}
}

static void test_file_relative(void **state)
{
	char *dir = testutil_mkdtemp();
	char *old = getcwd(NULL, 0);
	char cwd[4096], want[4200];
	struct source_uri u;

	assert_int_equal(chdir(dir), 0);
	assert_non_null(getcwd(cwd, sizeof cwd));

	assert_int_equal(uri_parse("models/llama", &u), 0);
	snprintf(want, sizeof want, "%s/models/llama", cwd);
	assert_string_equal(u.path, want);
	snprintf(want, sizeof want, "file://%s/models/llama", cwd);
	assert_string_equal(u.canonical, want);
	uri_close(&u);

	assert_int_equal(uri_parse(".", &u), 0);
	assert_string_equal(u.path, cwd);
	uri_close(&u);

	assert_int_equal(uri_parse("./x/../y/", &u), 0);
	snprintf(want, sizeof want, "%s/y", cwd);
	assert_string_equal(u.path, want);
	uri_close(&u);

	/* a colon without "//" after an unknown word is just a file name */
	assert_int_equal(uri_parse("weights:v2", &u), 0);
	assert_int_equal(u.kind, URI_FILE);
	snprintf(want, sizeof want, "%s/weights:v2", cwd);
	assert_string_equal(u.path, want);
	uri_close(&u);

	assert_int_equal(chdir(old), 0);
	free(old);
	testutil_rmtree(dir);
}

static void test_file_bad(void **state)
{
	expect_error("", SB_EURI);
	expect_error("file://", SB_EURI);
	expect_error("file://host/x", SB_EURI);
	expect_error("file:relative", SB_EURI);
	expect_error("file:///a%zz", SB_EURI);
	expect_error("file:///a%2", SB_EURI);
	expect_error("file:///a%00b", SB_EURI);
	expect_error("file:///a?b", SB_EURI);
	expect_error("file:///a#b", SB_EURI);
	expect_error("file:///a\nb", SB_EURI);
}

/* ---- schemes ---- */

static void test_unknown_schemes(void **state)
{
	expect_error("ftp://host/file", SB_ESCHEME);
	expect_error("gs://bucket/x", SB_ESCHEME);
	expect_error("git+ssh://host/repo", SB_ESCHEME);
	expect_error("rsync://host/mod", SB_ESCHEME);
	/* a known scheme without "//" is a typo, not a local name */
	expect_error("s3:bucket/x", SB_EURI);
	expect_error("hf:org/repo", SB_EURI);
	expect_error("https:/host/x", SB_EURI);
}

static void test_kind_names(void **state)
{
	assert_string_equal(uri_kind_name(URI_FILE), "file");
	assert_string_equal(uri_kind_name(URI_HTTP), "http");
	assert_string_equal(uri_kind_name(URI_S3), "s3");
	assert_string_equal(uri_kind_name(URI_HF), "hf");
	assert_string_equal(uri_kind_name(URI_MS), "ms");
	assert_string_equal(uri_kind_name(URI_OCI), "oci");
	assert_string_equal(uri_kind_name((enum uri_kind)99), "unknown");
}

/* ---- http ---- */

struct http_case {
	const char *in;
	const char *url;
	const char *canonical;
};

static void test_http_good(void **state)
{
	static const struct http_case cases[] = {
	    {"http://Example.COM/Path/File?X=1#frag", "http://example.com/Path/File?X=1",
	     "http://example.com/Path/File?X=1"},
	    {"HTTPS://Host:443/a", "https://host:443/a", "https://host/a"},
	    {"http://host:80/a", "http://host:80/a", "http://host/a"},
	    {"https://host:80/a", "https://host:80/a", "https://host:80/a"},
	    {"http://host:8080", "http://host:8080", "http://host:8080/"},
	    {"http://host?q", "http://host?q", "http://host/?q"},
	    {"https://user:p%40ss@Host.io/x", "https://user:p%40ss@host.io/x", "https://host.io/x"},
	    {"http://[::1]:8080/x", "http://[::1]:8080/x", "http://[::1]:8080/x"},
	    {"http://10.0.0.1/models/m.bin", "http://10.0.0.1/models/m.bin",
	     "http://10.0.0.1/models/m.bin"},
	    {"http://nginx_1/a%20b", "http://nginx_1/a%20b", "http://nginx_1/a%20b"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct source_uri u;

		if (uri_parse(cases[i].in, &u) != 0)
			fail_msg("'%s' rejected", cases[i].in);
		assert_int_equal(u.kind, URI_HTTP);
		check_null_or(u.url, cases[i].url, "url", cases[i].in);
		check_null_or(u.canonical, cases[i].canonical, "canonical", cases[i].in);
		check_null_or(u.raw, cases[i].in, "raw", cases[i].in);
		assert_null(u.path);
		uri_close(&u);
	}
}

static void test_http_bad(void **state)
{
	static const char *const bad[] = {
	    "http://",
	    "http:///x",
	    "https://?q",
	    "http://@/x",
	    "http://host:0/",
	    "http://host:65536/",
	    "http://host:/x",
	    "http://host:80a/",
	    "http://host:123456/",
	    "http://ho st/",
	    "http://host/a b",
	    "http://[zz]/",
	    "http://[::1/",
	    "http://[]/",
	    "http://[::1]x/",
	    "http://host\x01/",
	    "http://h\xc3\xa9llo/",
	    "http://host/\x7f",
	    "http://a%2eb/",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(bad[i], SB_EURI);
}

/* ---- s3 ---- */

static void test_s3_good(void **state)
{
	struct source_uri u;
	char b63[80];

	assert_int_equal(uri_parse("s3://my-bucket/models/llama/", &u), 0);
	assert_int_equal(u.kind, URI_S3);
	assert_string_equal(u.bucket, "my-bucket");
	assert_string_equal(u.prefix, "models/llama/");
	assert_string_equal(u.canonical, "s3://my-bucket/models/llama/");
	uri_close(&u);

	assert_int_equal(uri_parse("S3://abc", &u), 0);
	assert_string_equal(u.bucket, "abc");
	assert_string_equal(u.prefix, "");
	assert_string_equal(u.canonical, "s3://abc");
	uri_close(&u);

	assert_int_equal(uri_parse("s3://a.b-c.d1/", &u), 0);
	assert_string_equal(u.prefix, "");
	assert_string_equal(u.canonical, "s3://a.b-c.d1");
	uri_close(&u);

	assert_int_equal(uri_parse("s3://b12/key with space/+x", &u), 0);
	assert_string_equal(u.prefix, "key with space/+x");
	uri_close(&u);

	/* the longest bucket name AWS allows */
	memcpy(b63, "s3://", 5);
	memset(b63 + 5, 'b', 63);
	b63[68] = '\0';
	assert_int_equal(uri_parse(b63, &u), 0);
	assert_int_equal(strlen(u.bucket), 63);
	uri_close(&u);
}

static void test_s3_bad(void **state)
{
	static const char *const bad[] = {
	    "s3://",
	    "s3:///x",
	    "s3://ab",
	    "s3://ab/x",
	    "s3://My-Bucket/x",
	    "s3://mybUcket/x",
	    "s3://-abc",
	    "s3://abc-",
	    "s3://.abc",
	    "s3://abc.",
	    "s3://a..b",
	    "s3://a_b",
	    "s3://192.168.5.4",
	    "s3://xn--abc",
	    "s3://sthree-abc",
	    "s3://amzn-s3-demo-x",
	    "s3://abc-s3alias",
	    "s3://abc--ol-s3",
	    "s3://abc.mrap",
	    "s3://abc--x-s3",
	    "s3://bucket/a\x01",
	    "s3://buck et/x",
	};
	char b64[80], longkey[1200];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(bad[i], SB_EURI);
	memcpy(b64, "s3://", 5);
	memset(b64 + 5, 'b', 64);
	b64[69] = '\0';
	expect_error(b64, SB_EURI);
	memcpy(longkey, "s3://abc/", 9);
	memset(longkey + 9, 'k', 1025);
	longkey[9 + 1025] = '\0';
	expect_error(longkey, SB_EURI);
	longkey[9 + 1024] = '\0';
	{
		struct source_uri u;

		assert_int_equal(uri_parse(longkey, &u), 0);
		uri_close(&u);
	}
}

/* ---- hf / ms ---- */

struct hub_case {
	const char *in;
	enum uri_kind kind;
	const char *repo;
	const char *rev;
	int dataset;
	const char *canonical;
};

static void test_hub_good(void **state)
{
	static const struct hub_case cases[] = {
	    {"hf://meta-llama/Llama-3.1-8B", URI_HF, "meta-llama/Llama-3.1-8B", NULL, 0,
	     "hf://meta-llama/Llama-3.1-8B"},
	    {"hf://org/repo@main", URI_HF, "org/repo", "main", 0, "hf://org/repo@main"},
	    {"HF://Org/Repo_1@refs/pr/1", URI_HF, "Org/Repo_1", "refs/pr/1", 0,
	     "hf://Org/Repo_1@refs/pr/1"},
	    {"hf://datasets/org/data.v2@v1.0", URI_HF, "org/data.v2", "v1.0", 1,
	     "hf://datasets/org/data.v2@v1.0"},
	    {"hf://datasets/HuggingFaceFW/fineweb", URI_HF, "HuggingFaceFW/fineweb", NULL, 1,
	     "hf://datasets/HuggingFaceFW/fineweb"},
	    {"hf://Qwen/Qwen2.5-7B@4a2b6c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b", URI_HF,
	     "Qwen/Qwen2.5-7B", "4a2b6c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b", 0,
	     "hf://Qwen/Qwen2.5-7B@4a2b6c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b"},
	    {"ms://qwen/Qwen2-7B@master", URI_MS, "qwen/Qwen2-7B", "master", 0,
	     "ms://qwen/Qwen2-7B@master"},
	    {"ms://datasets/modelscope/ds", URI_MS, "modelscope/ds", NULL, 1,
	     "ms://datasets/modelscope/ds"},
	    {"hf://a/.hidden", URI_HF, "a/.hidden", NULL, 0, "hf://a/.hidden"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct source_uri u;
		const struct hub_case *c = &cases[i];

		if (uri_parse(c->in, &u) != 0)
			fail_msg("'%s' rejected", c->in);
		assert_int_equal(u.kind, c->kind);
		check_null_or(u.repo, c->repo, "repo", c->in);
		check_null_or(u.revision, c->rev, "revision", c->in);
		check_null_or(u.canonical, c->canonical, "canonical", c->in);
		assert_int_equal(u.is_dataset, c->dataset);
		assert_null(u.digest);
		assert_null(u.registry);
		uri_close(&u);
	}
}

static void test_hub_bad(void **state)
{
	static const char *const bad[] = {
	    "hf://",
	    "hf://repo",
	    "hf://org/",
	    "hf:///repo",
	    "hf://org/repo/x",
	    "hf://org/re po",
	    "hf://org/repo@",
	    "hf://org/repo@../x",
	    "hf://org/repo@a/../b",
	    "hf://org/repo@/x",
	    "hf://org/repo@x/",
	    "hf://org/repo@a//b",
	    "hf://org/repo@a b",
	    "hf://org/repo@x@y",
	    "hf://datasets/org",
	    "hf://datasets/",
	    "hf://datasets",
	    "hf://../repo",
	    "hf://org/..",
	    "hf://./repo",
	    "hf://org/rep%6f",
	    "hf://org/repo?x",
	    "hf://spaces/org/app",
	    "ms://org",
	    "ms://org/repo@",
	    "ms://datasets/org/",
	    ("hf://org/"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), /* 97 */
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(bad[i], SB_EURI);
}

/* ---- oci ---- */

struct oci_case {
	const char *in;
	const char *registry;
	const char *repo;
	const char *tag;
	const char *digest;
	const char *canonical;
};

static void test_oci_good(void **state)
{
	static const struct oci_case cases[] = {
	    {"oci://registry.example.com/team/model:v1", "registry.example.com", "team/model", "v1",
	     NULL, "oci://registry.example.com/team/model:v1"},
	    {"oci://localhost:5000/a/b/c@sha256:" HEX64, "localhost:5000", "a/b/c", NULL,
	     "sha256:" HEX64, "oci://localhost:5000/a/b/c@sha256:" HEX64},
	    {"OCI://Registry.IO/repo", "registry.io", "repo", "latest", NULL,
	     "oci://registry.io/repo:latest"},
	    {"oci://r.io/repo:v1@sha256:" HEX64, "r.io", "repo", "v1", "sha256:" HEX64,
	     "oci://r.io/repo@sha256:" HEX64},
	    {"oci://r.io/a__b/c-d/e--f.g:_T.a-g", "r.io", "a__b/c-d/e--f.g", "_T.a-g", NULL,
	     "oci://r.io/a__b/c-d/e--f.g:_T.a-g"},
	    {"oci://[::1]:5000/x:1", "[::1]:5000", "x", "1", NULL, "oci://[::1]:5000/x:1"},
	    {"oci://ghcr.io/org/model:"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	     "ghcr.io", "org/model",
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	     NULL, NULL},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct source_uri u;
		const struct oci_case *c = &cases[i];

		if (uri_parse(c->in, &u) != 0)
			fail_msg("'%s' rejected", c->in);
		assert_int_equal(u.kind, URI_OCI);
		check_null_or(u.registry, c->registry, "registry", c->in);
		check_null_or(u.repo, c->repo, "repo", c->in);
		check_null_or(u.revision, c->tag, "tag", c->in);
		check_null_or(u.digest, c->digest, "digest", c->in);
		if (c->canonical)
			check_null_or(u.canonical, c->canonical, "canonical", c->in);
		uri_close(&u);
	}
}

static void test_oci_bad(void **state)
{
	static const char *const bad[] = {
	    "oci://",
	    "oci://repo",
	    "oci://r.io/",
	    "oci:///repo",
	    "oci://r.io/Repo:v1",
	    "oci://r.io/repo:",
	    "oci://r.io/repo:-tag",
	    "oci://r.io/repo:.tag",
	    "oci://r.io/repo:t/x",
	    "oci://r.io/repo@sha256:abc",
	    "oci://r.io/repo@sha256:" HEX64 "0",
	    "oci://r.io/"
	    "repo@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	    "oci://r.io/repo@md5:" HEX64,
	    "oci://r.io/repo@sha512:" HEX64,
	    "oci://r.io/repo@SHA256:" HEX64,
	    "oci://r.io/repo@",
	    "oci://r.io/a//b",
	    "oci://r.io/a/",
	    "oci://r.io//a",
	    "oci://r.io/a_-b",
	    "oci://r.io/a___b",
	    "oci://r.io/-a",
	    "oci://r.io/a.",
	    "oci://r.io/a..b",
	    "oci://r.io/a:b:c",
	    "oci://r.io:99999/x",
	    "oci://r io/x",
	    "oci://r.io/a b:v1",
	    "oci://r.io/repo:v1@sha256:" HEX64 "@x",
	    "oci://r.io/repo:"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	char longname[400];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(bad[i], SB_EURI);
	/* registry + '/' + name over 255 characters */
	memcpy(longname, "oci://r.io/", 11);
	memset(longname + 11, 'a', 251);
	longname[11 + 251] = '\0';
	expect_error(longname, SB_EURI);
	longname[11 + 250] = '\0';
	{
		struct source_uri u;

		assert_int_equal(uri_parse(longname, &u), 0);
		assert_int_equal(strlen(u.repo), 250);
		uri_close(&u);
	}
}

static void test_close_twice(void **state)
{
	struct source_uri u;

	assert_int_equal(uri_parse("oci://r.io/x:1", &u), 0);
	uri_close(&u);
	uri_close(&u);
	assert_null(u.canonical);
}

/* ---- redaction ---- */

static void expect_redacted(const char *in, const char *want)
{
	char *got = uri_redact(in);
	if (strcmp(got, want) != 0)
		fail_msg("redact '%s':\n got '%s'\nwant '%s'", in, got, want);
	free(got);
}

static void test_redact(void **state)
{
	/* A presigned S3 URL: signature, credential and session token go;
	 * the rest stays. */
	expect_redacted("https://b.s3.amazonaws.com/k/model.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256"
			"&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request"
			"&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
			"&X-Amz-Security-Token=FwoGZX&X-Amz-Signature=deadbeef",
			"https://b.s3.amazonaws.com/k/model.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256"
			"&X-Amz-Credential=REDACTED&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600"
			"&X-Amz-SignedHeaders=host&X-Amz-Security-Token=REDACTED"
			"&X-Amz-Signature=REDACTED");
	/* Other signed URLs and tokens, any case; userinfo; a fragment. */
	expect_redacted("http://u:pw@h:8080/a?sig=abc&sv=2020&se=x", "http://REDACTED@h:8080/a?sig="
								     "REDACTED&sv=2020&se=x");
	expect_redacted("https://h/f?Signature=x&Expires=9&Key-Pair-Id=K",
			"https://h/f?Signature=REDACTED&Expires=9&Key-Pair-Id=K");
	expect_redacted("https://h/f#access_token=t&state=s",
			"https://h/f#access_token=REDACTED&state=s");
	expect_redacted("https://h/f?TOKEN=t&token", "https://h/f?TOKEN=REDACTED&token");
	/* Inside messages: several URLs, prose around them kept. */
	expect_redacted("pull https://h/x?sig=1: GET https://h/x?sig=1 (HTTP 403).",
			"pull https://h/x?sig=REDACTED: GET https://h/x?sig=REDACTED (HTTP 403).");
	expect_redacted("\"s3://b/p/\" and 'oci://r/x@sha256:ab' stay",
			"\"s3://b/p/\" and 'oci://r/x@sha256:ab' stay");
	expect_redacted("hf://org/repo@main, no secret", "hf://org/repo@main, no secret");
	expect_redacted("no url: here://", "no url: here://");
	expect_redacted("", "");
	/* Into a buffer: cut when full, never past it; a secret never shows. */
	char out[24];
	size_t n = uri_redact_text(out, sizeof out, "x https://h/?sig=secretsecret&a=b", 33);
	assert_int_equal(n, sizeof out - 1);
	assert_string_equal(out, "x https://h/?sig=REDACT");
	assert_null(strstr(out, "secret"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_file_absolute), cmocka_unit_test(test_file_relative),
	    cmocka_unit_test(test_file_bad),	  cmocka_unit_test(test_unknown_schemes),
	    cmocka_unit_test(test_kind_names),	  cmocka_unit_test(test_http_good),
	    cmocka_unit_test(test_http_bad),	  cmocka_unit_test(test_s3_good),
	    cmocka_unit_test(test_s3_bad),	  cmocka_unit_test(test_hub_good),
	    cmocka_unit_test(test_hub_bad),	  cmocka_unit_test(test_oci_good),
	    cmocka_unit_test(test_oci_bad),	  cmocka_unit_test(test_close_twice),
	    cmocka_unit_test(test_redact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
