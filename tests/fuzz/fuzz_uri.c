/* libFuzzer target for SOURCE arguments as uri_parse (common/uri.c) reads
 * them: from the command line, list files, the scheduler's `dataset add`
 * requests and kube resources. Whatever the bytes: no crash, leak or
 * out-of-bounds access; a URI accepted has the fields of its kind and a
 * canonical form that parses again to itself (it is an identity key); a
 * refusal is SB_EURI or SB_ESCHEME and leaves nothing to free. */
#include "tests/fuzz/fuzz_util.h"

#include "common/err.h"
#include "common/path.h"
#include "common/uri.h"

static void check_fields(const struct source_uri *u)
{
	fuzz_check(u->raw && u->canonical, "raw or canonical missing");
	switch (u->kind) {
	case URI_FILE:
		fuzz_check(u->path && u->path[0] == '/', "file path not absolute");
		break;
	case URI_HTTP:
		fuzz_check(u->url &&
			       (!strncmp(u->url, "http://", 7) || !strncmp(u->url, "https://", 8)),
			   "http URL");
		break;
	case URI_S3:
		fuzz_check(u->bucket && u->bucket[0] && u->prefix, "s3 bucket");
		break;
	case URI_HF:
	case URI_MS:
		fuzz_check(u->repo && path_check_relative(u->repo) == 0, "hub repo not confined");
		break;
	case URI_OCI:
		fuzz_check(u->registry && u->registry[0] && u->repo && u->repo[0], "oci name");
		fuzz_check(!(u->tag_regex && (u->digest || u->revision)),
			   "tag-regex with a tag or digest");
		break;
	default:
		fuzz_check(0, "unknown kind");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	struct source_uri u, again;
	int rc = uri_parse(s, &u);
	if (rc == 0) {
		check_fields(&u);
		fuzz_check(uri_kind_name(u.kind) != NULL, "kind name");
		int rc2 = uri_parse(u.canonical, &again);
		fuzz_check(rc2 == 0, "canonical form does not parse");
		fuzz_check(again.kind == u.kind, "canonical form is another kind");
		fuzz_check(!strcmp(again.canonical, u.canonical), "canonical form not stable");
		uri_close(&again);
		uri_close(&u);
		uri_close(&u); /* twice is harmless */
	} else {
		fuzz_check(rc == SB_EURI || rc == SB_ESCHEME || rc < 0, "unexpected error code");
		uri_close(&u);
	}
	free(s);
	return 0;
}
