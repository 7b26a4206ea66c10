/* Inside the registry mirror (agent/mirror.c): the catalog of one
 * published version of an oci:// dataset (agent/mirror_catalog.c), built
 * on the pool from the dataset's manifest in the cache and the OCI layout
 * at TARGET/NAME, and the checks of a blob file before it is served. */
#ifndef SYNCBIT_MIRROR_INT_H
#define SYNCBIT_MIRROR_INT_H

#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/hash.h"
#include "common/source/oci_doc.h"
#include "common/source/oci_name.h"

#define MIRROR_DOCS_MAX	   (64u << 20) /* manifest bytes kept in memory per catalog */
#define MIRROR_TAGS_MAX	   100000
#define MIRROR_BLOBS_MAX   (1u << 20)
#define MIRROR_RETRY_MS	   5000 /* a catalog that failed to load is tried again */
#define MIRROR_BLOBS_DIR   "blobs/sha256/"
#define MIRROR_INDEX_FILE  "index.json"
#define MIRROR_API_VERSION "Docker-Distribution-API-Version: registry/2.0\r\n"
#define MIRROR_BLOB_TYPE   "application/octet-stream"
#define MIRROR_ERROR_TYPE  "application/json"

/* A manifest or index held, its verified bytes in memory. */
struct mirror_doc {
	char digest[OCI_DIGEST_MAX];
	char media_type[OCI_MEDIA_TYPE_MAX];
	struct buf bytes;
};

/* A file's state as stat(2) saw it. */
struct mirror_stat {
	dev_t dev;
	ino_t ino;
	uint64_t size;
	int64_t mtime_ns, ctime_ns;
};

/* A config or layer held: where and how the verified version left it. */
struct mirror_blob {
	char digest[OCI_DIGEST_MAX];
	uint64_t size;	       /* the size the manifests declare, and the file's */
	int64_t mtime_ns;      /* the published file's, as the daemon set it */
	struct hash_id object; /* its cache object (daemon_file_damaged) */
	/* A file whose mtime moved is hashed in full once per state: */
	int hashing;
	int judged; /* 1: ok below is the verdict for state */
	int ok;
	struct mirror_stat state;
};

struct mirror_tag {
	char tag[OCI_NAME_TAG_MAX + 1];
	char digest[OCI_DIGEST_MAX];
};

enum mirror_cat_state { MIRROR_CAT_LOADING, MIRROR_CAT_READY, MIRROR_CAT_FAILED };

/* One published version of an oci:// dataset. */
struct mirror_cat {
	struct mirror_cat *next;
	char *name;			      /* the dataset */
	struct hash_id id;		      /* its manifest id */
	char *dir;			      /* TARGET/NAME */
	char registry[OCI_NAME_HOST_MAX + 1]; /* folded (common/source/oci_name.h) */
	char repo[OCI_NAME_REPO_MAX + 1];
	enum mirror_cat_state state;
	uint64_t failed_at_ms;
	int refs; /* the mirror's list, and jobs in flight */
	int listed;
	char *error;
	struct mirror_tag *tags; /* by tag */
	size_t ntags;
	struct mirror_doc *docs; /* by digest */
	size_t ndocs;
	struct mirror_blob *blobs; /* by digest */
	size_t nblobs;
};

/* Pool: fill cat's tags, docs and blobs from the manifest bytes (the
 * cache's encoding of the published version) and the layout in cat->dir.
 * Every document read is checked against the manifest's block hashes and
 * its digest; a blob is listed only when the manifest holds its file at
 * the size the image manifests declare. 0, or a negative error with
 * cat->error set. */
int mirror_cat_load(struct mirror_cat *cat, const uint8_t *manifest, size_t len);
/* Free what a catalog holds (not cat itself). */
void mirror_cat_close(struct mirror_cat *cat);

/* Lookups on a READY catalog, or NULL. */
const struct mirror_tag *mirror_cat_tag(const struct mirror_cat *cat, const char *tag);
const struct mirror_doc *mirror_cat_doc(const struct mirror_cat *cat, const char *digest);
struct mirror_blob *mirror_cat_blob(struct mirror_cat *cat, const char *digest);

/* Pool: open blob b of cat read-only below cat->dir (no symlink followed)
 * and stat it. The fd (caller closes), or a negative error. */
int mirror_blob_open(const struct mirror_cat *cat, const char *digest, struct mirror_stat *st);

#endif
