/* libFuzzer target for the small OCI strings read from outside: platform
 * strings ("os/arch[/variant]", from ?platform= and index entries),
 * repository names, tags and digests (common/source/oci_name.c, as a registry
 * mirror and the sync of images meet them), registry hosts as containerd
 * names them, the host lists of --insecure-registries and registry
 * credentials ("user:password" or Docker's base64 of it, common/source/oci_doc.c). The
 * first input byte picks the decoder; the rest is its input. Whatever the
 * bytes: no crash, leak or out-of-bounds access, and what is accepted is
 * stable: a platform or host written out parses again to itself, a name
 * given a registry's prefix is still a valid name, the two digest checkers
 * agree. */
#include "tests/fuzz/fuzz_util.h"

#include "common/err.h"
#include "common/source/oci_doc.h"
#include "common/source/oci_name.h"

enum { DEC_PLATFORM, DEC_NAMES, DEC_REGISTRY, DEC_HOSTS, DEC_CREDENTIALS, DEC_N };

static void platform(const char *s)
{
	struct oci_platform p, q;
	char text[3 * OCI_PLATFORM_PART + 3], again[sizeof text];
	if (oci_platform_parse(s, &p) < 0)
		return;
	fuzz_check(p.os[0] && p.arch[0], "platform without os or arch");
	oci_platform_format(&p, text, sizeof text);
	fuzz_check(oci_platform_parse(text, &q) == 0, "a platform written out does not parse");
	oci_platform_format(&q, again, sizeof again);
	fuzz_check(!strcmp(text, again), "platform not stable");
}

static void names(const char *s)
{
	int d = oci_name_digest_valid(s);
	fuzz_check(d == oci_digest_valid(s), "the digest checkers disagree");
	if (d)
		fuzz_check(oci_name_tag_valid(s) == 0, "a digest is a tag");
	if (oci_name_tag_valid(s))
		fuzz_check(strlen(s) <= OCI_NAME_TAG_MAX && !strchr(s, '/') && !strchr(s, ':'),
			   "tag with a separator");
	if (!oci_name_repo_valid(s))
		return;
	fuzz_check(strlen(s) <= OCI_NAME_REPO_MAX && s[0] != '/' && !strstr(s, "//"),
		   "repository name malformed");
	char out[OCI_NAME_REPO_MAX + 1];
	if (oci_name_repo(OCI_NAME_DOCKER, s, out, sizeof out) == 0)
		fuzz_check(oci_name_repo_valid(out) && strchr(out, '/'),
			   "Docker Hub name without its namespace");
	fuzz_check(oci_name_repo("ghcr.io", s, out, sizeof out) == 0 && !strcmp(out, s),
		   "name changed on another registry");
}

static void registry(const char *s)
{
	char out[OCI_NAME_HOST_MAX + 1], again[OCI_NAME_HOST_MAX + 1];
	if (oci_name_registry(s, out, sizeof out) < 0)
		return;
	fuzz_check(out[0] && strlen(out) <= OCI_NAME_HOST_MAX, "registry host length");
	fuzz_check(oci_name_registry(out, again, sizeof again) == 0 && !strcmp(out, again),
		   "registry host not stable");
	for (const char *c = out; *c; c++)
		fuzz_check(!(*c >= 'A' && *c <= 'Z'), "registry host not folded");
	oci_host_is_loopback(out);
}

/* host, then a NUL or newline, then the list. */
static void hosts(const uint8_t *d, size_t n)
{
	char *s = fuzz_cstr(d, n);
	char *list = s + strcspn(s, "\n");
	if (*list)
		*list++ = '\0';
	oci_host_is_loopback(s);
	int listed = oci_host_listed(s, list);
	fuzz_check(listed == 0 || listed == 1, "listed");
	if (s[0] && !strpbrk(s, ", ") && strlen(s) < 1000)
		fuzz_check(oci_host_listed(s, s) == 1, "a host is not in a list of itself");
	free(s);
}

static void credentials(const char *s)
{
	char *c = oci_credentials(s);
	if (c) {
		fuzz_check(strchr(c, ':') != NULL, "credentials without ':'");
		fuzz_check(strlen(c) <= OCI_AUTH_MAX, "credentials too long");
	}
	free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *d = data + 1;
	size_t n = size - 1;
	char *s = fuzz_cstr(d, n);
	switch (data[0] % DEC_N) {
	case DEC_PLATFORM:
		platform(s);
		break;
	case DEC_NAMES:
		names(s);
		break;
	case DEC_REGISTRY:
		registry(s);
		break;
	case DEC_HOSTS:
		hosts(d, n);
		break;
	case DEC_CREDENTIALS:
		credentials(s);
		break;
	}
	free(s);
	return 0;
}
