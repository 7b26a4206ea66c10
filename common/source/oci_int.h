/* Inside the oci:// source: what oci.c (reads, their verification,
 * setup) and oci_list.c (list(): tags, manifests, indexes and the layout
 * made of them) share. Loop thread only, except the hashing jobs of
 * oci.c on the pool. */
#ifndef SYNCBIT_SOURCE_OCI_INT_H
#define SYNCBIT_SOURCE_OCI_INT_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/hash.h"
#include "common/source/oci_client.h"
#include "common/source/oci_doc.h"
#include "common/source/source.h"

#define DEFAULT_PLATFORM "linux/amd64"
#define TAGS_PAGE	 1000
#define TAGS_MAX	 100000
#define DOCKER_HUB	 "docker.io"
#define DOCKER_HUB_API	 "registry-1.docker.io"
#define BLOBS_DIR	 "blobs/sha256/"

struct oci_source;

/* One read(). */
struct oci_read {
	struct oci_read *next; /* a file's held reads, by offset */
	struct oci_source *os;
	size_t file;
	uint64_t off;
	size_t len;
	uint8_t *buf;
	int verify, canceled, status;
	char *detail;
	source_done_cb cb;
	void *arg;
};

struct ofile {
	char *path;
	int remote;
	uint8_t *data; /* generated files */
	size_t len;
	char digest[OCI_DIGEST_MAX];
	uint64_t size;
	/* Verification of remote blobs. */
	struct sha256_ctx ctx;
	int ctx_open, unverified, verified, hashing;
	uint64_t hashed, issued;
	struct oci_read *held; /* fetched, waiting for the bytes before them */
	uv_work_t work;
	struct oci_read *job;
	struct oci_source *os;
};

struct image {
	char *tag;		     /* ref.name, or NULL */
	char digest[OCI_DIGEST_MAX]; /* the registry's manifest */
	/* The manifest as the layout holds it: the registry's bytes, or a
	 * Docker schema 2 manifest retyped to OCI. */
	char layout_digest[OCI_DIGEST_MAX];
	const char *layout_type;
	struct buf manifest;
	struct buf original; /* the registry's bytes of a retyped manifest */
	struct oci_manifest m;
	int has_platform; /* taken from an index: its entry's platform */
	struct oci_platform platform;
	/* The registry's document for the reference: the index it was
	 * taken from, or the manifest itself (digest). */
	char top[OCI_DIGEST_MAX];
};

struct oci_source {
	struct source *src;
	uv_loop_t *loop;
	struct oci_client *reg;
	char *base;  /* scheme://host[:port] */
	char *repo;  /* as the registry names it (library/ added on Docker Hub) */
	char *shown; /* registry/repo for messages */
	struct oci_platforms want;
	regex_t re;
	int has_re;
	char *userpwd;
	/* Why the source cannot be listed (a malformed auth file, filters),
	 * said by list(), or NULL. */
	char *setup_error;
	int reads; /* read() calls not yet called back */
	/* list() */
	int listing;
	source_done_cb list_cb;
	void *list_arg;
	char **refs;
	size_t nrefs, next_ref;
	char *expect; /* digest the manifest being fetched must have, or NULL */
	/* The reference being fetched: the index it named (its digest), and
	 * the entries chosen from it still to fetch. */
	char top[OCI_DIGEST_MAX];
	struct oci_descriptor *pending;
	size_t npending, next_pending;
	struct buf *indexes; /* the registry's image indexes, as served */
	size_t nindexes;
	struct image *images;
	size_t nimages;
	uint64_t named; /* manifests and blobs the images name, before folding */
	/* The listing's files, in listing order. */
	struct ofile *files;
	size_t nfiles;
};

/* The operations list() and free() (oci_list.c). */
int source_oci_list(struct source *src, source_done_cb cb, void *arg);
/* Forget the listing, its images and references. */
void source_oci_listing_reset(struct oci_source *os);

#endif
