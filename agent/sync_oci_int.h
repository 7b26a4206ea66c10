/* Inside the registry-to-registry sync (agent/sync_oci.c): the plan of
 * what to push, read from the cache (agent/sync_oci_plan.c): each image's
 * manifest bytes and the blobs it names, with the cache file holding each
 * blob and, where the cache knows one, a repository of the destination's
 * registry to mount it from. */
#ifndef SYNCBIT_SYNC_OCI_INT_H
#define SYNCBIT_SYNC_OCI_INT_H

#include "agent/sync_oci.h"
#include "common/buf.h"
#include "common/source/oci_push.h"

enum sync_oci_blob_state { BLOB_WAITING, BLOB_RUNNING, BLOB_DONE };

struct sync_oci_blob {
	char digest[OCI_DIGEST_MAX];
	uint64_t size;
	char *path;		/* its object in the cache */
	const char *mount_from; /* a repository of the destination's registry, or NULL */
	enum sync_oci_blob_state state;
	struct push_blob op;
};

/* A manifest as the source registry served it. */
struct sync_oci_doc {
	char digest[OCI_DIGEST_MAX];
	char media_type[OCI_MEDIA_TYPE_MAX];
	struct buf bytes;
};

struct sync_oci_image {
	char *tag; /* or NULL: a source named by digest */
	char digest[OCI_DIGEST_MAX];
	char media_type[OCI_MEDIA_TYPE_MAX];
	struct buf bytes; /* the manifest (or index) as the source registry served it */
	size_t *blobs;	  /* indices into the plan's blobs: config, then layers */
	size_t nblobs;
	/* An index (--all): every manifest it lists, put by digest before it
	 * in this order; blobs are theirs. */
	struct sync_oci_doc *children;
	size_t nchildren;
};

struct sync_oci_plan {
	struct sync_oci_image *images;
	size_t nimages;
	struct sync_oci_blob *blobs;
	size_t nblobs;
	char **repos; /* mount sources named by blobs */
	size_t nrepos;
	uint64_t bytes; /* of the blobs */
};

/* The images of cache dataset `name` (an OCI layout the source listed):
 * index.json's entries, their manifests checked against their digests,
 * and every config and layer held in the cache at the size named. With
 * all, the entries taken from one image index (OCI_REGISTRY_DIGEST) are
 * one image: the index, whose every manifest must be held. 0, or a
 * negative error with *why (heap). */
int sync_oci_plan_load(struct cache *c, const char *name, int all, struct sync_oci_plan *plan,
		       char **why);
/* Mount sources: the source repository when it is on the destination's
 * registry (src_repo, or NULL), else repositories of that registry that a
 * sync pushed to earlier (SYNC_OCI_DEST_PREFIX datasets) holding the blob. */
void sync_oci_plan_mounts(struct cache *c, const struct sync_oci_dest *d, const char *src_repo,
			  struct sync_oci_plan *plan);
void sync_oci_plan_close(struct sync_oci_plan *plan);

#endif
