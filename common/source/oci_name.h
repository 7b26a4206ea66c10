/* Names of the OCI distribution API as a registry mirror meets them:
 * repository names, tags and digests checked against the distribution
 * spec's grammar, registry hosts folded as containerd names them (Docker
 * Hub's aliases are one registry, whose one-component repositories live
 * under library/), the `ns` query parameter containerd adds when it asks a
 * mirror, and the request paths of the read API. Pure functions on bounded
 * strings; thread-safe. */
#ifndef SYNCBIT_SOURCE_OCI_NAME_H
#define SYNCBIT_SOURCE_OCI_NAME_H

#include <stddef.h>

#define OCI_NAME_REPO_MAX 255 /* a repository name, slashes included */
#define OCI_NAME_TAG_MAX  128
#define OCI_NAME_HOST_MAX 255 /* host[:port] */
#define OCI_NAME_REF_MAX  136 /* a tag, or "sha256:" and 64 hex digits */
#define OCI_NAME_DOCKER	  "docker.io"

enum oci_name_route {
	OCI_ROUTE_BASE,	    /* /v2/ */
	OCI_ROUTE_MANIFEST, /* /v2/<name>/manifests/<tag|digest> */
	OCI_ROUTE_BLOB,	    /* /v2/<name>/blobs/<digest> */
	OCI_ROUTE_TAGS,	    /* /v2/<name>/tags/list */
};

struct oci_name_path {
	enum oci_name_route route;
	char name[OCI_NAME_REPO_MAX + 1];
	char ref[OCI_NAME_REF_MAX + 1]; /* MANIFEST, BLOB */
	int by_digest;			/* ref is a digest */
};

/* 1 when name matches the spec's repository grammar
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
 * and is at most OCI_NAME_REPO_MAX bytes. */
int oci_name_repo_valid(const char *name);
/* 1 when tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. */
int oci_name_tag_valid(const char *tag);
/* 1 for "sha256:" and 64 lower-case hex digits, the only digests served. */
int oci_name_digest_valid(const char *digest);

/* A registry host[:port] as the mirror compares it, into out (cap >
 * OCI_NAME_HOST_MAX): lower-cased, and docker.io, index.docker.io and
 * registry-1.docker.io all "docker.io". 0, or SB_EURI when host is not a
 * DNS name, IPv4 address or [IPv6] address with an optional port 1-65535. */
int oci_name_registry(const char *host, char *out, size_t cap);
/* The repository as registry (folded) serves it, into out (cap >
 * OCI_NAME_REPO_MAX): "library/" added to a one-component name on Docker
 * Hub. 0 or SB_EURI (not a valid name, or too long with library/). */
int oci_name_repo(const char *registry, const char *repo, char *out, size_t cap);

/* Split a request path (without the query) of the read API. 0 with out
 * filled; SB_ENOTFOUND for a path the API does not have (uploads, other
 * verbs); SB_EURI for a name, tag or digest the grammar refuses. */
int oci_name_parse_path(const char *path, struct oci_name_path *out);
/* The ns parameter of a query string ("a=b&ns=docker.io"), percent-decoded
 * and folded by oci_name_registry, into out (cap > OCI_NAME_HOST_MAX). 1
 * when present, 0 when absent, SB_EURI when malformed. */
int oci_name_query_ns(const char *query, char *out, size_t cap);

#endif
