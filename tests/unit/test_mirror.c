/* The registry mirror's pure parts: repository names, tags and digests
 * against the distribution spec's grammar, registry folding and the ns
 * parameter (common/source/oci_name.c), request paths, Range headers
 * (common/net/httpd.c), containerd's hosts.toml (agent/containerd_hosts.c), and
 * the registries on-demand pulls may read (agent/mirror_pull.c). */
#include "testutil.h"

#include <sys/stat.h>

#include "agent/containerd_hosts.h"
#include "agent/mirror.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/net/httpd.h"
#include "common/source/oci_name.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_repo_names(void **state)
{
	static const char *const good[] = {
	    "a",     "library/ubuntu", "team/app",    "a.b_c__d-e---f",
	    "0/1/2", "x-y/z.w",	       "nested/a/b/c"};
	static const char *const bad[] = {"",	    "A",    "team/App", "/a",	 "a/",	    "a//b",
					  "a/../b", "a..b", "a___b",	"-a",	 "a-",	    "a_",
					  "a b",    "a:b",  "a/.",	"a%2fb", "a/b/../c"};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		assert_int_equal(oci_name_repo_valid(good[i]), 1);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(oci_name_repo_valid(bad[i]), 0);
	char longname[300];
	memset(longname, 'a', sizeof longname);
	longname[255] = '\0';
	assert_int_equal(oci_name_repo_valid(longname), 1);
	longname[255] = 'a';
	longname[256] = '\0';
	assert_int_equal(oci_name_repo_valid(longname), 0);
}

static void test_tags_and_digests(void **state)
{
	assert_int_equal(oci_name_tag_valid("v1"), 1);
	assert_int_equal(oci_name_tag_valid("_x.Y-z"), 1);
	assert_int_equal(oci_name_tag_valid(".v1"), 0);
	assert_int_equal(oci_name_tag_valid("-v1"), 0);
	assert_int_equal(oci_name_tag_valid("v:1"), 0);
	assert_int_equal(oci_name_tag_valid(""), 0);
	char tag[200];
	memset(tag, 'a', sizeof tag);
	tag[128] = '\0';
	assert_int_equal(oci_name_tag_valid(tag), 1);
	tag[128] = 'a';
	tag[129] = '\0';
	assert_int_equal(oci_name_tag_valid(tag), 0);

	assert_int_equal(oci_name_digest_valid("sha256:" HEX64), 1);
	assert_int_equal(oci_name_digest_valid("sha256:" HEX64 "0"), 0);
	assert_int_equal(oci_name_digest_valid("sha256:0123"), 0);
	assert_int_equal(oci_name_digest_valid("sha512:" HEX64), 0);
	assert_int_equal(
	    oci_name_digest_valid(
		"sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"),
	    0);
	assert_int_equal(
	    oci_name_digest_valid(
		"sha256:../../../../../../etc/passwd0123456789abcdef0123456789abcdef01"),
	    0);
}

static void test_registries(void **state)
{
	char out[OCI_NAME_HOST_MAX + 1], repo[OCI_NAME_REPO_MAX + 1];
	static const char *const same[][2] = {
	    {"docker.io", "docker.io"},
	    {"index.docker.io", "docker.io"},
	    {"Registry-1.Docker.IO", "docker.io"},
	    {"127.0.0.1:5000", "127.0.0.1:5000"},
	    {"[::1]:5000", "[::1]:5000"},
	    {"Quay.io", "quay.io"},
	    {"registry.example:443", "registry.example:443"},
	};
	for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
		assert_int_equal(oci_name_registry(same[i][0], out, sizeof out), 0);
		assert_string_equal(out, same[i][1]);
	}
	static const char *const bad[] = {
	    "",	     "a/b",  "a:0",    "a:65536", "a:",	     "-a.io",	"a..io",
	    "a.io.", "[::1", "[zz]:1", "a b",	  "a:5000x", "a:05000", ".."};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(oci_name_registry(bad[i], out, sizeof out), SB_EURI);

	assert_int_equal(oci_name_repo("docker.io", "nginx", repo, sizeof repo), 0);
	assert_string_equal(repo, "library/nginx");
	assert_int_equal(oci_name_repo("docker.io", "bitnami/nginx", repo, sizeof repo), 0);
	assert_string_equal(repo, "bitnami/nginx");
	assert_int_equal(oci_name_repo("quay.io", "nginx", repo, sizeof repo), 0);
	assert_string_equal(repo, "nginx");
	assert_int_equal(oci_name_repo("quay.io", "Nginx", repo, sizeof repo), SB_EURI);
}

static void test_ns(void **state)
{
	char ns[OCI_NAME_HOST_MAX + 1];
	assert_int_equal(oci_name_query_ns("", ns, sizeof ns), 0);
	assert_int_equal(oci_name_query_ns("x=1&y", ns, sizeof ns), 0);
	assert_int_equal(oci_name_query_ns("ns=docker.io", ns, sizeof ns), 1);
	assert_string_equal(ns, "docker.io");
	assert_int_equal(oci_name_query_ns("a=b&ns=registry-1.docker.io&c", ns, sizeof ns), 1);
	assert_string_equal(ns, "docker.io");
	/* containerd escapes the port's colon */
	assert_int_equal(oci_name_query_ns("ns=127.0.0.1%3A5000", ns, sizeof ns), 1);
	assert_string_equal(ns, "127.0.0.1:5000");
	assert_int_equal(oci_name_query_ns("ns=a%2Fb", ns, sizeof ns), SB_EURI);
	assert_int_equal(oci_name_query_ns("ns=a%0", ns, sizeof ns), SB_EURI);
	assert_int_equal(oci_name_query_ns("ns=a%00b", ns, sizeof ns), SB_EURI);
	assert_int_equal(oci_name_query_ns("ns=", ns, sizeof ns), 0);
	assert_int_equal(oci_name_query_ns("nsx=a", ns, sizeof ns), 0);
}

static void test_paths(void **state)
{
	struct oci_name_path p;
	assert_int_equal(oci_name_parse_path("/v2/", &p), 0);
	assert_int_equal(p.route, OCI_ROUTE_BASE);
	assert_int_equal(oci_name_parse_path("/v2/library/nginx/manifests/1.25", &p), 0);
	assert_int_equal(p.route, OCI_ROUTE_MANIFEST);
	assert_string_equal(p.name, "library/nginx");
	assert_string_equal(p.ref, "1.25");
	assert_int_equal(p.by_digest, 0);
	assert_int_equal(oci_name_parse_path("/v2/a/b/c/manifests/sha256:" HEX64, &p), 0);
	assert_string_equal(p.name, "a/b/c");
	assert_int_equal(p.by_digest, 1);
	assert_int_equal(oci_name_parse_path("/v2/app/blobs/sha256:" HEX64, &p), 0);
	assert_int_equal(p.route, OCI_ROUTE_BLOB);
	assert_string_equal(p.name, "app");
	assert_int_equal(oci_name_parse_path("/v2/team/app/tags/list", &p), 0);
	assert_int_equal(p.route, OCI_ROUTE_TAGS);
	/* a name that is itself "manifests" is a name */
	assert_int_equal(oci_name_parse_path("/v2/manifests/manifests/v1", &p), 0);
	assert_string_equal(p.name, "manifests");

	assert_int_equal(oci_name_parse_path("/v1/app/manifests/v1", &p), SB_ENOTFOUND);
	assert_int_equal(oci_name_parse_path("/v2/app/blobs/uploads/", &p), SB_ENOTFOUND);
	assert_int_equal(oci_name_parse_path("/v2/app/referrers/sha256:" HEX64, &p), SB_ENOTFOUND);
	assert_int_equal(oci_name_parse_path("/v2/manifests/v1", &p), SB_ENOTFOUND);
	assert_int_equal(oci_name_parse_path("/v2/app/blobs/v1", &p), SB_EURI); /* a tag */
	assert_int_equal(oci_name_parse_path("/v2/app/blobs/sha256:ABC", &p), SB_EURI);
	assert_int_equal(oci_name_parse_path("/v2/App/manifests/v1", &p), SB_EURI);
	assert_int_equal(oci_name_parse_path("/v2/a/../b/manifests/v1", &p), SB_EURI);
	assert_int_equal(oci_name_parse_path("/v2//manifests/v1", &p), SB_EURI);
	assert_int_equal(oci_name_parse_path("/v2/app/manifests/..", &p), SB_EURI);
	assert_int_equal(oci_name_parse_path("/v2/app/manifests/", &p), SB_EURI);
	assert_int_equal(oci_name_parse_path("/v2/app/blobs/sha256:../../x", &p), SB_ENOTFOUND);
}

static void test_ranges(void **state)
{
	uint64_t off, len;
	assert_int_equal(httpd_parse_range(NULL, 100, &off, &len), 0);
	assert_int_equal(httpd_parse_range("bytes=0-9", 100, &off, &len), 1);
	assert_true(off == 0 && len == 10);
	assert_int_equal(httpd_parse_range("bytes=90-", 100, &off, &len), 1);
	assert_true(off == 90 && len == 10);
	assert_int_equal(httpd_parse_range("bytes=90-1000", 100, &off, &len), 1);
	assert_true(off == 90 && len == 10);
	assert_int_equal(httpd_parse_range("bytes=-30", 100, &off, &len), 1);
	assert_true(off == 70 && len == 30);
	assert_int_equal(httpd_parse_range("bytes=-300", 100, &off, &len), 1);
	assert_true(off == 0 && len == 100);
	assert_int_equal(httpd_parse_range("bytes=100-", 100, &off, &len), -1);
	assert_int_equal(httpd_parse_range("bytes=0-", 0, &off, &len), -1);
	assert_int_equal(httpd_parse_range("bytes=-0", 100, &off, &len), -1);
	/* ignored: the whole body */
	assert_int_equal(httpd_parse_range("bytes=0-1,5-6", 100, &off, &len), 0);
	assert_int_equal(httpd_parse_range("items=0-1", 100, &off, &len), 0);
	assert_int_equal(httpd_parse_range("bytes=9-1", 100, &off, &len), 0);
	assert_int_equal(httpd_parse_range("bytes=-", 100, &off, &len), 0);
	assert_int_equal(httpd_parse_range("bytes=a-b", 100, &off, &len), 0);
	assert_int_equal(httpd_parse_range("bytes=99999999999999999999999-", 100, &off, &len), 0);
}

static char *read_text(const char *path)
{
	struct buf b = BUF_INIT;
	if (buf_read_file(path, 1 << 16, &b) < 0)
		return NULL;
	return buf_steal(&b);
}

static void test_pull_from(void **state)
{
	char *why = NULL;
	/* No list, or an empty one: every registry. */
	assert_int_equal(mirror_pull_allows(NULL, "quay.io"), 1);
	assert_int_equal(mirror_pull_allows("", "127.0.0.1:5000"), 1);
	/* host:port is that port only; a host alone, all of its ports. */
	assert_int_equal(mirror_pull_allows("reg.example:5000", "reg.example:5000"), 1);
	assert_int_equal(mirror_pull_allows("reg.example:5000", "reg.example:5001"), 0);
	assert_int_equal(mirror_pull_allows("reg.example:5000", "reg.example"), 0);
	assert_int_equal(mirror_pull_allows("reg.example", "reg.example:5001"), 1);
	assert_int_equal(mirror_pull_allows("reg.example", "reg.example"), 1);
	assert_int_equal(mirror_pull_allows("reg.example", "other.example"), 0);
	assert_int_equal(mirror_pull_allows("reg.example", "reg.example.evil"), 0);
	/* Folded as ns is: case, and Docker Hub's aliases. */
	assert_int_equal(mirror_pull_allows("Quay.IO", "quay.io"), 1);
	assert_int_equal(mirror_pull_allows("registry-1.docker.io", "docker.io"), 1);
	assert_int_equal(mirror_pull_allows("index.docker.io", "docker.io"), 1);
	/* Several, comma- or space-separated; IPv6 in brackets. */
	assert_int_equal(mirror_pull_allows("quay.io, ghcr.io,127.0.0.1", "ghcr.io"), 1);
	assert_int_equal(mirror_pull_allows("quay.io, ghcr.io,127.0.0.1", "127.0.0.1:41000"), 1);
	assert_int_equal(mirror_pull_allows("quay.io, ghcr.io", "docker.io"), 0);
	assert_int_equal(mirror_pull_allows("[::1]", "[::1]:5000"), 1);
	assert_int_equal(mirror_pull_allows("[::1]:5000", "[::1]:5001"), 0);
	/* What the flag refuses. */
	assert_int_equal(mirror_pull_check_from("quay.io,127.0.0.1:5000,[::1]", &why), 0);
	assert_null(why);
	assert_int_equal(mirror_pull_check_from("quay.io,reg/x", &why), SB_EURI);
	assert_non_null(strstr(why, "reg/x"));
	free(why);
	why = NULL;
	assert_int_equal(mirror_pull_check_from("host:99999", &why), SB_EURI);
	free(why);
}

static void test_hosts_render(void **state)
{
	const char *mirrors[] = {"http://10.0.0.5:5001", "https://m.example/"};
	struct containerd_hosts h = {.mirrors = mirrors, .nmirrors = 2, .skip_verify = 1};
	struct buf b = BUF_INIT;
	assert_int_equal(containerd_hosts_render(&h, "docker.io", &b), 0);
	const char *s = buf_cstr(&b);
	assert_non_null(strstr(s, "server = \"https://registry-1.docker.io\"\n"));
	assert_non_null(strstr(s, "[host.\"http://10.0.0.5:5001\"]\n  capabilities = [\"pull\", "
				  "\"resolve\"]\n\n"));
	assert_non_null(strstr(s, "[host.\"https://m.example\"]\n  capabilities = [\"pull\", "
				  "\"resolve\"]\n  skip_verify = true\n"));
	/* the plain-HTTP mirror carries no TLS setting (the table above ends
	 * after its capabilities) */
	buf_reset(&b);
	h.insecure = "reg.internal:5000";
	assert_int_equal(containerd_hosts_render(&h, "reg.internal:5000", &b), 0);
	assert_non_null(strstr(buf_cstr(&b), "server = \"http://reg.internal:5000\"\n"));
	buf_reset(&b);
	assert_int_equal(containerd_hosts_render(&h, "127.0.0.1:5000", &b), 0);
	assert_non_null(strstr(buf_cstr(&b), "server = \"http://127.0.0.1:5000\"\n"));
	buf_reset(&b);
	assert_int_equal(containerd_hosts_render(&h, "quay.io", &b), 0);
	assert_non_null(strstr(buf_cstr(&b), "server = \"https://quay.io\"\n"));
	buf_reset(&b);
	assert_int_equal(containerd_hosts_render(&h, "_default", &b), 0);
	assert_null(strstr(buf_cstr(&b), "server ="));
	assert_int_equal(containerd_hosts_render(&h, "a/b", &b), SB_EURI);
	assert_int_equal(containerd_hosts_render(&h, "..", &b), SB_EURI);
	const char *badm[] = {"ftp://x"};
	struct containerd_hosts hb = {.mirrors = badm, .nmirrors = 1};
	assert_int_equal(containerd_hosts_render(&hb, "docker.io", &b), SB_EURI);
	buf_close(&b);

	static const char *const urls_bad[] = {"http://",      "http://a/b",	"http://a:0",
					       "http://a b",   "https://\"x\"", "http://a:1/x/",
					       "10.0.0.5:5001"};
	for (size_t i = 0; i < sizeof urls_bad / sizeof *urls_bad; i++)
		assert_int_equal(containerd_hosts_mirror_valid(urls_bad[i]), 0);
	assert_int_equal(containerd_hosts_mirror_valid("http://[::1]:5001"), 1);
}

static void test_hosts_write(void **state)
{
	char *dir = testutil_mkdtemp();
	char path[512], other[512];
	const char *mirrors[] = {"http://127.0.0.1:5001"};
	struct containerd_hosts h = {.mirrors = mirrors, .nmirrors = 1};
	struct buf b = BUF_INIT;
	char *detail = NULL;
	int changed = -1;
	/* another registry's directory is left alone */
	snprintf(other, sizeof other, "%s/ghcr.io", dir);
	assert_int_equal(mkdir(other, 0755), 0);
	snprintf(other, sizeof other, "%s/ghcr.io/hosts.toml", dir);
	FILE *f = fopen(other, "w");
	assert_non_null(f);
	fputs("server = \"https://ghcr.io\"\n", f);
	fclose(f);

	assert_int_equal(containerd_hosts_render(&h, "docker.io", &b), 0);
	assert_int_equal(containerd_hosts_write(dir, "docker.io", &b, &changed, &detail), 0);
	assert_int_equal(changed, 1);
	snprintf(path, sizeof path, "%s/docker.io/hosts.toml", dir);
	char *got = read_text(path);
	assert_non_null(got);
	assert_string_equal(got, buf_cstr(&b));
	free(got);
	struct stat st1, st2;
	assert_int_equal(stat(path, &st1), 0);
	assert_int_equal(st1.st_mode & 0777, 0644);
	/* idempotent: the same content is not written again */
	assert_int_equal(containerd_hosts_write(dir, "docker.io", &b, &changed, &detail), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(stat(path, &st2), 0);
	assert_true(st1.st_ino == st2.st_ino);
	/* new content replaces the file by rename */
	buf_append_str(&b, "# more\n");
	assert_int_equal(containerd_hosts_write(dir, "docker.io", &b, &changed, &detail), 0);
	assert_int_equal(changed, 1);
	assert_int_equal(stat(path, &st2), 0);
	assert_true(st1.st_ino != st2.st_ino);
	got = read_text(other);
	assert_string_equal(got, "server = \"https://ghcr.io\"\n");
	free(got);
	/* no temporary file is left */
	char cmd[600];
	snprintf(cmd, sizeof cmd, "test $(ls -A '%s/docker.io' | wc -l) = 1", dir);
	assert_int_equal(system(cmd), 0);
	/* the registry's directory is never a symlink followed */
	snprintf(cmd, sizeof cmd, "mkdir '%s/elsewhere' && ln -s elsewhere '%s/quay.io'", dir, dir);
	assert_int_equal(system(cmd), 0);
	assert_true(containerd_hosts_write(dir, "quay.io", &b, &changed, &detail) < 0);
	assert_non_null(detail);
	assert_non_null(strstr(detail, "quay.io"));
	free(detail);
	detail = NULL;
	assert_int_equal(containerd_hosts_write(dir, "../x", &b, &changed, &detail), SB_EURI);
	buf_close(&b);
	testutil_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_repo_names),	cmocka_unit_test(test_tags_and_digests),
	    cmocka_unit_test(test_registries),	cmocka_unit_test(test_ns),
	    cmocka_unit_test(test_paths),	cmocka_unit_test(test_ranges),
	    cmocka_unit_test(test_pull_from),	cmocka_unit_test(test_hosts_render),
	    cmocka_unit_test(test_hosts_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
