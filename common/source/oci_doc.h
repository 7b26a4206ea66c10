/* OCI distribution documents: image manifests and indexes (OCI and Docker
 * schema 2 media types), platform choice, the registry's WWW-Authenticate
 * challenge, token answers, tag lists and their Link pagination, and the
 * files of an OCI image layout (oci-layout, index.json). Pure functions on
 * bytes from the wire, every length bounded; thread-safe. */
#ifndef SYNCBIT_SOURCE_OCI_DOC_H
#define SYNCBIT_SOURCE_OCI_DOC_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define OCI_MT_INDEX	   "application/vnd.oci.image.index.v1+json"
#define OCI_MT_MANIFEST	   "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MT_DOCKER_V2   "application/vnd.docker.distribution.manifest.v2+json"
/* What a client offers in Accept when it asks for a manifest. */
#define OCI_ACCEPT OCI_MT_INDEX ", " OCI_MT_MANIFEST ", " OCI_MT_DOCKER_LIST ", " OCI_MT_DOCKER_V2

#define OCI_DIGEST_MAX	   72 /* "sha256:" + 64 hex + NUL, rounded */
#define OCI_MEDIA_TYPE_MAX 256
#define OCI_PLATFORM_PART  32
#define OCI_DOC_MAX	   (4u << 20) /* registries refuse larger manifests */
#define OCI_LAYERS_MAX	   4096
#define OCI_BLOB_SIZE_MAX  (1ull << 42)
#define OCI_REF_NAME	   "org.opencontainers.image.ref.name"
#define OCI_LAYOUT_FILE	   "{\"imageLayoutVersion\":\"1.0.0\"}"
#define OCI_TOKEN_MAX	   (64u << 10)
#define OCI_CHALLENGE_MAX  1024
#define OCI_AUTH_MAX	   1024 /* user:password */
#define OCI_PLATFORMS_MAX  16	/* platforms one source may name */
/* index.json annotation of an entry taken from a document the registry
 * serves under another digest (an image index, a Docker schema 2 manifest
 * retyped): that document's digest, its bytes kept in blobs/sha256/. */
#define OCI_REGISTRY_DIGEST "io.syncbit.registry.digest"

struct oci_platform {
	char os[OCI_PLATFORM_PART];
	char arch[OCI_PLATFORM_PART];
	char variant[OCI_PLATFORM_PART]; /* "" when not given */
};

struct oci_descriptor {
	char media_type[OCI_MEDIA_TYPE_MAX];
	char digest[OCI_DIGEST_MAX]; /* "sha256:<64 lower-case hex>" */
	uint64_t size;
	int has_platform;
	struct oci_platform platform; /* index entries */
};

struct oci_manifest {
	int is_index;
	char media_type[OCI_MEDIA_TYPE_MAX];
	struct oci_descriptor config; /* image manifests */
	struct oci_descriptor *layers;
	size_t nlayers;
	struct oci_descriptor *manifests; /* indexes */
	size_t nmanifests;
};

/* Parse a manifest or index. content_type is the response's Content-Type
 * (may be NULL); the document's own mediaType wins when present. Docker
 * schema 1 and digests other than sha256 are refused. 0, or SB_EPROTO with
 * *why (heap) saying what is wrong. Free out with oci_manifest_close. */
int oci_manifest_parse(const void *body, size_t len, const char *content_type,
		       struct oci_manifest *out, char **why);
void oci_manifest_close(struct oci_manifest *m);

/* A Docker schema 2 image manifest rewritten with the OCI media types of
 * its manifest, config and layers (the blobs stay as they are), as OCI
 * image layout readers expect; heap bytes in *out, *outlen. 0, or
 * SB_EPROTO when body is not such a manifest. */
int oci_manifest_to_oci(const void *body, size_t len, char **out, size_t *outlen);

/* "os/arch[/variant]" into p; arch aliases (x86_64, aarch64) normalized.
 * 0 or SB_EURI. */
int oci_platform_parse(const char *s, struct oci_platform *p);
/* "os/arch[/variant]" into out (cap >= 3 * OCI_PLATFORM_PART). */
void oci_platform_format(const struct oci_platform *p, char *out, size_t cap);
/* The platforms a source takes from an image index: "all", or
 * "os/arch[/variant]" items separated by commas (at most
 * OCI_PLATFORMS_MAX, none twice). */
struct oci_platforms {
	int all;
	size_t n;
	struct oci_platform p[OCI_PLATFORMS_MAX];
};
/* Parse s into out. 0 or SB_EURI. */
int oci_platforms_parse(const char *s, struct oci_platforms *out);

/* The index entry for want, or -1. os and arch must match; a variant asked
 * for must match, one not asked for matches any (the first listed wins,
 * arm64's "v8" preferred). Entries for os "unknown" (attestations) never
 * match. */
int oci_index_choose(const struct oci_manifest *idx, const struct oci_platform *want);

/* " (CODE: message)" from a registry's error body {"errors":[…]} into out,
 * or "" when it holds none. */
void oci_error_summary(const void *body, size_t len, char *out, size_t cap);

/* 1 when d is "sha256:" and 64 lower-case hex digits. */
int oci_digest_valid(const char *d);
/* "sha256:<hex>" of data into out (OCI_DIGEST_MAX). */
void oci_digest_of(const void *data, size_t len, char *out);

struct oci_challenge {
	int bearer; /* 1 Bearer, 0 Basic */
	char realm[OCI_CHALLENGE_MAX];
	char service[OCI_CHALLENGE_MAX];
	char scope[OCI_CHALLENGE_MAX];
};
/* Parse a WWW-Authenticate value. 0, or SB_EPROTO for another scheme or a
 * Bearer challenge without a realm. */
int oci_challenge_parse(const char *hdr, struct oci_challenge *c);

/* A token service's JSON answer: "token" (or "access_token") as a heap
 * string and expires_in in seconds (60 when absent). 0 or SB_EPROTO. */
int oci_token_parse(const void *body, size_t len, char **token, long *expires_in);

/* A tags/list page: appends its tags (heap strings) to *tags. 0 or
 * SB_EPROTO; SB_ETOOBIG past max tags in all. */
int oci_tags_parse(const void *body, size_t len, char ***tags, size_t *ntags, size_t max);
/* The target of rel="next" in a Link header (heap), or NULL. */
char *oci_link_next(const char *hdr);

/* One entry of a layout's index.json. */
struct oci_layout_ref {
	const char *media_type;
	const char *digest;
	uint64_t size;
	const char *tag;		     /* org.opencontainers.image.ref.name, or NULL */
	const struct oci_platform *platform; /* the index entry's, or NULL */
	const char *registry_digest;	     /* OCI_REGISTRY_DIGEST, or NULL */
};
/* The index.json of an OCI image layout naming refs (heap, NUL-ended). */
char *oci_layout_index(const struct oci_layout_ref *refs, size_t n);

/* 1 when host[:port] is a loopback address (localhost, 127.0.0.0/8, ::1),
 * which may be spoken to over plain HTTP as Docker allows. */
int oci_host_is_loopback(const char *hostport);
/* 1 when host[:port] is in a comma-separated list of host or host:port. */
int oci_host_listed(const char *hostport, const char *list);

/* Registry credentials as user:password (heap), from that form or Docker's
 * base64 of it (the "auth" of config.json); NULL when auth is neither. */
char *oci_credentials(const char *auth);

/* Append s percent-encoded for a URL query value (unreserved and '/' kept). */
void oci_append_escaped(struct buf *b, const char *s);
/* SOURCE with ?platform= and ?tag-regex= options added (heap), for the
 * command-line flags; either may be NULL. */
char *oci_source_with(const char *source, const char *platform, const char *tag_regex);

#endif
