/* Parsing of SOURCE arguments into a structured form. Pure functions;
 * thread-safe. Forms: /path, file:///path, http(s)://host/path,
 * s3://bucket/prefix, hf://org/repo[@rev], hf://datasets/org/repo[@rev],
 * ms://org/repo[@rev], oci://registry/repo:tag|@digest. */
#ifndef SYNCBIT_URI_H
#define SYNCBIT_URI_H

#include <stddef.h>

enum uri_kind { URI_FILE, URI_HTTP, URI_S3, URI_HF, URI_MS, URI_OCI };

struct source_uri {
	enum uri_kind kind;
	char *raw;	 /* the argument as given */
	char *canonical; /* normalized form used as an identity key */
	char *path;	 /* FILE: absolute path without trailing '/' (except "/") */
	char *url;	 /* HTTP: full URL */
	char *bucket;	 /* S3 */
	char *prefix;	 /* S3: key prefix (may be empty) */
	char *repo;	 /* HF/MS: "org/name"; OCI: "repo/path" */
	char *revision;	 /* HF/MS: after '@' or NULL; OCI: tag or NULL */
	char *digest;	 /* OCI: "sha256:..." or NULL */
	char *registry;	 /* OCI: host[:port] */
	char *platform;	 /* OCI: ?platform=os/arch[/variant], or NULL */
	char *tag_regex; /* OCI: ?tag-regex=ERE (decoded): every matching tag */
	int is_dataset;	 /* HF: hf://datasets/...; MS: ms://datasets/... */
};

/* Parse s into out (zeroed first). Returns 0, SB_EURI (malformed) or
 * SB_ESCHEME (unknown scheme), or -errno if the current directory cannot be
 * read. Relative FILE paths are made absolute against the current directory
 * and normalized lexically; file:// paths are percent-decoded. A known
 * scheme without "//" ("hf:org/repo") is SB_EURI, not a file name. Canonical
 * forms: file:///abs (percent-encoded); http(s) lower-cased scheme and host,
 * without credentials, fragment or default port, path at least "/";
 * s3://bucket[/prefix]; hf|ms://[datasets/]org/name[@rev];
 * oci://registry/repo:tag, or oci://registry/repo@digest when a digest is
 * given, then "?platform=P&tag-regex=R" for the options given (R
 * percent-encoded). OCI without tag, digest or tag-regex means tag "latest";
 * a tag-regex excludes a tag or digest. On error out holds nothing to
 * free. */
int uri_parse(const char *s, struct source_uri *out);
void uri_close(struct source_uri *u);
/* What a source of s's scheme looks like ("s3://BUCKET[/PREFIX]"), for the
 * message when uri_parse refuses s. Static string. */
const char *uri_form(const char *s);
const char *uri_kind_name(enum uri_kind k);

/* Credentials in URLs are printed as this: in the API, logs, status and
 * error messages. */
#define URI_REDACTED "REDACTED"
/* text (a source URL, or a message naming URLs) with the credentials of
 * every URL in it replaced by URI_REDACTED: userinfo, and the values of
 * query and fragment parameters that carry signatures, keys or tokens
 * (X-Amz-Signature, X-Amz-Credential, Signature, sig, token, access_token
 * ...). Everything else is kept. Heap string. */
char *uri_redact(const char *text);
/* The same into out (cap bytes, NUL-terminated, cut when full) without
 * allocating, for log lines. Returns the length written. */
size_t uri_redact_text(char *out, size_t cap, const char *text, size_t n);

#endif
