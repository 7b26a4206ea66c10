/* libFuzzer target for what the registry mirror (agent/mirror.c) reads of
 * a request: its path split by oci_name_parse_path into a route, a
 * repository name and a tag or digest, the ns= query parameter containerd
 * adds (oci_name_query_ns), and the Range header of a blob GET
 * (httpd_parse_range), in the order the mirror's request handler takes
 * them. The input is the path, then '?' and the query, then a newline and
 * the Range value; the first 8 bytes are the size of the blob. Whatever the
 * bytes: no crash or out-of-bounds access; a route comes with a valid name
 * and a reference of its kind, a namespace is a folded registry host, and
 * a range lies inside the blob. */
#include "tests/fuzz/fuzz_util.h"

#include "common/err.h"
#include "common/httpd.h"
#include "common/source/oci_doc.h"
#include "common/source/oci_name.h"

static void route(const char *path, const char *query)
{
	struct oci_name_path p;
	int rc = oci_name_parse_path(path, &p);
	fuzz_check(rc == 0 || rc == SB_ENOTFOUND || rc == SB_EURI, "unexpected error code");
	if (rc < 0)
		return;
	if (p.route == OCI_ROUTE_BASE) {
		fuzz_check(!strcmp(path, "/v2/"), "base route for another path");
		return;
	}
	fuzz_check(oci_name_repo_valid(p.name), "route with an invalid name");
	switch (p.route) {
	case OCI_ROUTE_BLOB:
		fuzz_check(p.by_digest && oci_digest_valid(p.ref), "blob without a digest");
		break;
	case OCI_ROUTE_MANIFEST:
		fuzz_check(p.by_digest ? oci_digest_valid(p.ref) : oci_name_tag_valid(p.ref),
			   "manifest reference invalid");
		break;
	case OCI_ROUTE_TAGS:
		fuzz_check(!p.ref[0], "tags route with a reference");
		break;
	default:
		fuzz_check(0, "unknown route");
	}
	char ns[OCI_NAME_HOST_MAX + 1], again[OCI_NAME_HOST_MAX + 1], repo[OCI_NAME_REPO_MAX + 1];
	rc = oci_name_query_ns(query, ns, sizeof ns);
	fuzz_check(rc == 0 || rc == 1 || rc == SB_EURI, "ns: unexpected result");
	if (rc == 1) {
		fuzz_check(oci_name_registry(ns, again, sizeof again) == 0 && !strcmp(ns, again),
			   "namespace not a folded registry host");
		if (oci_name_repo(ns, p.name, repo, sizeof repo) == 0)
			fuzz_check(oci_name_repo_valid(repo), "namespaced name invalid");
	}
}

static void range(const char *hdr, uint64_t size)
{
	uint64_t off = 0, len = 0;
	int r = httpd_parse_range(hdr, size, &off, &len);
	fuzz_check(r >= -1 && r <= 1, "unexpected result");
	if (r == 1)
		fuzz_check(len > 0 && off < size && len <= size - off, "range outside the blob");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	uint64_t blob = 0;
	for (int i = 0; i < 8; i++)
		blob = blob << 8 | data[i];
	char *s = fuzz_cstr(data + 8, size - 8);
	char *hdr = strchr(s, '\n');
	if (hdr)
		*hdr++ = '\0';
	char *query = strchr(s, '?');
	if (query)
		*query++ = '\0';
	route(s, query ? query : "");
	range(hdr, blob);
	free(s);
	return 0;
}
