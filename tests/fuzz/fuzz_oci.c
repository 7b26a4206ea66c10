/* libFuzzer target for what a registry answers, read by common/source/oci_doc.c: the
 * first byte picks the decoder (manifest or index, the Docker-to-OCI
 * rewrite, WWW-Authenticate, a token answer, a tag page, a Link header, an
 * error body), the rest is its input. Whatever the bytes: no crash, leak or
 * out-of-bounds access; a manifest either parses with valid digests and
 * bounded lists or fails with a reason; a rewritten manifest parses again
 * as OCI; a token never holds a control byte.
 *
 * Built with -DFUZZ_SEED_MAIN instead, this file is a small program that
 * writes a seed corpus into the directory argv[1]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/source/oci_doc.h"

enum { DEC_MANIFEST, DEC_TO_OCI, DEC_CHALLENGE, DEC_TOKEN, DEC_TAGS, DEC_LINK, DEC_ERROR, DEC_N };

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_oci: %s\n", what);
		abort();
	}
}

static void manifest(const uint8_t *d, size_t n)
{
	struct oci_manifest m;
	char *why = NULL;
	int rc = oci_manifest_parse(d, n, "application/vnd.oci.image.manifest.v1+json", &m, &why);
	if (rc < 0) {
		check(why != NULL && !m.layers && !m.manifests, "failure without a reason");
		free(why);
		return;
	}
	check(m.nlayers <= OCI_LAYERS_MAX && m.nmanifests <= OCI_LAYERS_MAX, "list too long");
	if (!m.is_index)
		check(oci_digest_valid(m.config.digest), "config digest invalid");
	for (size_t i = 0; i < m.nlayers; i++)
		check(oci_digest_valid(m.layers[i].digest), "layer digest invalid");
	for (size_t i = 0; i < m.nmanifests; i++)
		check(oci_digest_valid(m.manifests[i].digest), "entry digest invalid");
	struct oci_platform want;
	oci_platform_parse("linux/amd64", &want);
	int k = oci_index_choose(&m, &want);
	check(k >= -1 && k < (int)m.nmanifests, "choice out of range");
	oci_manifest_close(&m);
}

static void to_oci(const uint8_t *d, size_t n)
{
	char *out, *why = NULL;
	size_t len;
	if (oci_manifest_to_oci(d, n, &out, &len) < 0)
		return;
	struct oci_manifest m;
	if (oci_manifest_parse(out, len, NULL, &m, &why) == 0) {
		check(!strcmp(m.media_type, OCI_MT_MANIFEST), "rewrite is not OCI");
		oci_manifest_close(&m);
	}
	free(why);
	free(out);
}

static char *cstr(const uint8_t *d, size_t n)
{
	char *s = malloc(n + 1);
	memcpy(s, d, n);
	s[n] = '\0';
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int which = data[0] % DEC_N;
	const uint8_t *d = data + 1;
	size_t n = size - 1;
	char *s = cstr(d, n), *t = NULL, out[256];
	long exp;
	char **tags = NULL;
	size_t ntags = 0;
	struct oci_challenge c;
	switch (which) {
	case DEC_MANIFEST:
		manifest(d, n);
		break;
	case DEC_TO_OCI:
		to_oci(d, n);
		break;
	case DEC_CHALLENGE:
		if (oci_challenge_parse(s, &c) == 0 && c.bearer)
			check(c.realm[0] != '\0', "Bearer without a realm");
		break;
	case DEC_TOKEN:
		if (oci_token_parse(d, n, &t, &exp) == 0) {
			for (const char *p = t; *p; p++)
				check((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f,
				      "control byte in a token");
			check(exp > 0, "expiry not positive");
		}
		free(t);
		break;
	case DEC_TAGS:
		oci_tags_parse(d, n, &tags, &ntags, 1000);
		check(ntags <= 1000, "more tags than allowed");
		for (size_t i = 0; i < ntags; i++)
			free(tags[i]);
		free(tags);
		break;
	case DEC_LINK:
		free(oci_link_next(s));
		break;
	case DEC_ERROR:
		oci_error_summary(d, n, out, sizeof out);
		check(strlen(out) < sizeof out, "summary overflows");
		break;
	}
	free(s);
	return 0;
}

#ifdef FUZZ_SEED_MAIN
static void seed(const char *dir, const char *name, int which, const char *text)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputc(which, f);
	fputs(text, f);
	fclose(f);
}

#define D "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	seed(argv[1], "manifest", DEC_MANIFEST,
	     "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D "\",\"size\":1},"
	     "\"layers\":[{\"mediaType\":\"x\",\"digest\":\"" D "\",\"size\":2}]}");
	seed(argv[1], "index", DEC_MANIFEST,
	     "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[{\"digest\":"
	     "\"" D "\",\"size\":3,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}");
	seed(argv[1], "docker", DEC_TO_OCI,
	     "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_DOCKER_V2
	     "\",\"config\":{\"mediaType\":"
	     "\"application/vnd.docker.container.image.v1+json\",\"digest\":\"" D "\",\"size\":1},"
	     "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
	     "\"digest\":\"" D "\",\"size\":2}]}");
	seed(argv[1], "challenge", DEC_CHALLENGE,
	     "Bearer realm=\"https://a/token\",service=\"r\",scope=\"repository:a/b:pull\"");
	seed(argv[1], "token", DEC_TOKEN, "{\"token\":\"abc\",\"expires_in\":300}");
	seed(argv[1], "tags", DEC_TAGS, "{\"name\":\"a/b\",\"tags\":[\"v1\",\"cann-8.0\"]}");
	seed(argv[1], "link", DEC_LINK, "</v2/a/b/tags/list?last=v1&n=2>; rel=\"next\"");
	seed(argv[1], "error", DEC_ERROR,
	     "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}");
	return 0;
}
#endif
