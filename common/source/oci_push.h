/* The push side of the OCI distribution API, for one repository: whether
 * the registry has a blob (HEAD), a cross-repository mount, uploads
 * (monolithic POST then PUT ?digest=, or PATCH chunks with Content-Range,
 * each following the Location of the answer before, then PUT ?digest=)
 * whose bodies stream from a file through the thread pool, and manifests
 * (HEAD for the digest a tag has, PUT checked against the
 * Docker-Content-Digest of the answer). Requests, auth and retries are
 * common/source/oci_client.c's, on a registry created with push set. Loop thread
 * only; callbacks run from the loop, never from the call that started the
 * operation. */
#ifndef SYNCBIT_SOURCE_OCI_PUSH_H
#define SYNCBIT_SOURCE_OCI_PUSH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/source/oci_doc.h"
#include "common/source/oci_client.h"

#define PUSH_CHUNK_DEFAULT (32ull << 20) /* larger blobs go in PATCH chunks */
#define PUSH_CHUNK_MIN	   (4u << 10)
#define PUSH_READ_BUF	   (256u << 10) /* one read from the file */
#define PUSH_BLOB_TYPE	   "application/octet-stream"
#define PUSH_RANGE_MAX	   48

struct oci_push_options {
	const char *base; /* scheme://host[:port] of the registry */
	const char *repo; /* as the registry names it */
	uint64_t chunk;	  /* blobs larger than this go in PATCH chunks this large */
	int restarts;	  /* an upload that fails part way starts over this often */
	/* Body bytes handed to the network (restarts send some again). */
	void (*sent)(void *arg, uint64_t n);
	void *sent_arg;
};

struct oci_push;

/* A pusher to o->repo on reg (the caller's: created with push set, freed
 * after this). o's strings are copied. */
struct oci_push *oci_push_new(uv_loop_t *loop, struct oci_client *reg,
			      const struct oci_push_options *o);
/* Only once no operation is in flight. NULL is a no-op. */
void oci_push_free(struct oci_push *p);
/* Every operation in flight ends with SB_ECANCELED. */
void oci_push_cancel(struct oci_push *p);

enum push_blob_how { PUSH_BLOB_PRESENT, PUSH_BLOB_MOUNTED, PUSH_BLOB_UPLOADED };

struct push_reader;
struct push_blob;
typedef void (*push_blob_cb)(struct push_blob *b);

/* One blob to bring to the repository. */
struct push_blob {
	/* The caller's, kept until the callback. */
	char digest[OCI_DIGEST_MAX];
	uint64_t size;
	const char *path;	/* the file holding its bytes */
	const char *mount_from; /* a repository of this registry that may hold it, or NULL */
	void *arg;
	/* The outcome. */
	int status;   /* 0 or a negative error */
	char *detail; /* one line on failure (heap, freed by oci_push_blob_close) */
	enum push_blob_how how;
	uint64_t sent; /* body bytes sent, restarts included */
	/* ---- private ---- */
	struct oci_push *p;
	push_blob_cb cb;
	char *session; /* the upload URL the next request goes to */
	uint64_t off;  /* bytes the session holds */
	uint64_t span; /* bytes the request in flight sends */
	int restarts;
	struct push_reader *reader;
	struct oci_client_body body;
	char range[PUSH_RANGE_MAX];
};

/* HEAD the blob; when missing, mount it from b->mount_from, else (or when
 * the registry answers the mount with an upload session) upload it. */
void oci_push_blob(struct oci_push *p, struct push_blob *b, push_blob_cb cb);
/* Release what the outcome holds (not b). */
void oci_push_blob_close(struct push_blob *b);

struct push_manifest;
typedef void (*push_manifest_cb)(struct push_manifest *m);

/* A manifest to look up or to put under ref (a tag, or its digest). */
struct push_manifest {
	const char *ref;
	const char *media_type;
	const void *data; /* its exact bytes, kept until the callback */
	size_t len;
	void *arg;
	/* The outcome. */
	int status;
	char *detail;
	char digest[OCI_DIGEST_MAX]; /* of data */
	char remote[OCI_DIGEST_MAX]; /* HEAD: the digest ref has there, "" if none */
	/* ---- private ---- */
	struct oci_push *p;
	push_manifest_cb cb;
};

/* HEAD ref: m->remote, or "" when the registry has no such manifest. */
void oci_push_manifest_head(struct oci_push *p, struct push_manifest *m, push_manifest_cb cb);
/* PUT the bytes under ref with their media type; SB_ECORRUPT when the
 * registry answers with another Docker-Content-Digest. */
void oci_push_manifest_put(struct oci_push *p, struct push_manifest *m, push_manifest_cb cb);
void oci_push_manifest_close(struct push_manifest *m);

/* Pure helpers, exposed for tests. */

/* location (absolute, or a path) resolved against base (heap), or NULL
 * when it does not parse or is not http(s). */
char *oci_push_resolve(const char *base, const char *location);
/* 1 when URLs a and b have the same scheme, host and port. */
int oci_push_same_origin(const char *a, const char *b);
/* url with "digest=D" added to its query (heap). */
char *oci_push_with_digest(const char *url, const char *digest);
/* The last byte of an upload's Range answer ("0-1023", "bytes=0-1023"):
 * 0 with *last set, -1 when malformed. */
int oci_push_range_last(const char *range, uint64_t *last);
/* "first-last" of a PATCH chunk into out (len > 0). */
void oci_push_content_range(char *out, size_t cap, uint64_t off, uint64_t len);

#endif
