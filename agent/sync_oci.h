/* Registry to registry: `syncbit sync oci://SRC/REPO oci://DST/REPO`. The
 * source's images (a tag, or every tag matching ?tag-regex=, each resolved
 * to one platform) are pulled into the cache as a pull without a target
 * does, manifests kept as the registry serves them; then each image goes
 * to the destination repository with common/source/oci_push.c: the blobs it
 * lacks (mounted from another repository of that registry the cache knows
 * holds them, else uploaded from the cache's files), then the image
 * manifest, byte for byte, under its tag; with `all`, an image index goes
 * whole: the blobs of every platform, each platform's manifest by digest,
 * then the index under its tag. A tag that already points at the
 * same manifest there costs one HEAD. Blocking: runs its own loop; call
 * from one thread. */
#ifndef SYNCBIT_SYNC_OCI_H
#define SYNCBIT_SYNC_OCI_H

#include <stddef.h>
#include <stdint.h>

#include "agent/cache.h"
#include "agent/pull.h"
#include "common/source/oci_doc.h"
#include "common/source/oci_name.h"

#define SYNC_OCI_PUSH_JOBS   4		 /* blobs pushed at once, at most */
#define SYNC_OCI_DEST_PREFIX "oci-dest:" /* datasets recording what a destination holds */
#define SYNC_OCI_SRC_PREFIX  "oci-sync:" /* the source's images in the cache */

/* A destination: oci://registry/repo[:tag]. */
struct sync_oci_dest {
	char registry[OCI_NAME_HOST_MAX + 1]; /* folded (common/source/oci_name.h) */
	char repo[OCI_NAME_REPO_MAX + 1];     /* as the registry names it */
	char tag[OCI_NAME_TAG_MAX + 1];	      /* "": each image keeps its tag */
	char *base;			      /* scheme://host[:port] of its API */
	char *canonical;		      /* oci://registry/repo */
};

/* Parse s. Plain HTTP for loopback hosts and those in insecure (a
 * comma-separated host[:port] list, or NULL). 0, or SB_EURI with *why
 * (heap, one line). Free d with sync_oci_dest_close. */
int sync_oci_dest_parse(const char *s, const char *insecure, struct sync_oci_dest *d, char **why);
void sync_oci_dest_close(struct sync_oci_dest *d);
/* 1 when s names a registry destination (oci://). */
int sync_oci_is_dest(const char *s);

struct sync_oci_options {
	const char *dest;      /* oci://registry/repo[:tag] */
	const char *dest_auth; /* user:password for it, or NULL: the source's credentials */
	uint64_t chunk;	       /* blobs larger go in PATCH chunks this large; 0: default */
	/* A tag whose source is an image index goes whole: every manifest
	 * it lists (by digest), then the index under the tag, each byte for
	 * byte. The source must be listed with ?platform=all. */
	int all;
};

/* What one image came to. */
struct sync_oci_tag {
	char *tag; /* the tag pushed, or NULL: by digest only */
	char digest[OCI_DIGEST_MAX];
	int copied; /* 0: the destination had it already */
	uint64_t uploaded, mounted, present;
	uint64_t bytes; /* blob bytes sent */
};

struct sync_oci_result {
	struct sync_oci_tag *tags; /* those done, in order */
	size_t ntags;
	uint64_t copied, up_to_date;
	uint64_t uploaded, mounted, present, bytes;
	char *dest;	/* oci://registry/repo, once parsed */
	double seconds; /* the pull and the push */
	char *error;	/* one line, when the run failed */
};

/* Pull po->source (po->target must be NULL) into c, then push to o->dest.
 * pr is the pull's result. 0, or a negative error with r->error set. Free
 * both with pull_result_close and sync_oci_result_close. */
int sync_oci_run(struct cache *c, const struct pull_options *po, const struct sync_oci_options *o,
		 struct pull_result *pr, struct sync_oci_result *r);
void sync_oci_result_close(struct sync_oci_result *r);

#endif
