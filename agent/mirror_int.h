/* Inside the registry mirror (agent/mirror.c): its state and requests, the
 * catalog of one published version of an oci:// dataset
 * (agent/mirror_catalog.c), built on the pool from the dataset's manifest
 * in the cache and the OCI layout at TARGET/NAME, the checks of a blob file
 * before it is served, and what is served of datasets still being fetched
 * (agent/mirror_early.c) or pulled on demand (agent/mirror_pull.c). Loop
 * thread only, except the pool functions named so. */
#ifndef SYNCBIT_MIRROR_INT_H
#define SYNCBIT_MIRROR_INT_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "agent/mirror.h"
#include "common/buf.h"
#include "common/hash.h"
#include "common/source/oci_doc.h"
#include "common/source/oci_name.h"

#define MIRROR_DOCS_MAX		 (64u << 20) /* manifest bytes kept in memory per catalog */
#define MIRROR_TAGS_MAX		 100000
#define MIRROR_BLOBS_MAX	 (1u << 20)
#define MIRROR_RETRY_MS		 5000 /* a catalog that failed to load is tried again */
#define MIRROR_BLOBS_DIR	 "blobs/sha256/"
#define MIRROR_INDEX_FILE	 "index.json"
#define MIRROR_API_VERSION	 "Docker-Distribution-API-Version: registry/2.0\r\n"
#define MIRROR_BLOB_TYPE	 "application/octet-stream"
#define MIRROR_ERROR_TYPE	 "application/json"
#define MIRROR_EARLY_WAITERS_MAX 128  /* requests parked for files being fetched */
#define MIRROR_EARLY_TICK_MS	 1000 /* parked requests are looked at again this often */
#define MIRROR_EARLY_RETRY_MS	 1000 /* a document that could not be read is tried again */
/* However long its dataset keeps making progress, a request waits for a
 * file being fetched at most this long, then 404 (the --help of
 * --registry-mirror-wait and docs/IMAGES.md say so). */
#define MIRROR_EARLY_WAIT_MAX_MS (3600u * 1000u)

/* A file's state as stat(2) saw it. */
struct mirror_stat {
	dev_t dev;
	ino_t ino;
	uint64_t size;
	int64_t mtime_ns, ctime_ns;
};

#define MIRROR_RESULT_MAP(X)                                              \
	X(MANIFEST, "manifest", "manifests served")                       \
	X(BLOB, "blob", "blobs served")                                   \
	X(NOT_FOUND, "not_found", "404s: not held here")                  \
	X(REFUSED, "refused", "404s: a blob file that failed its checks") \
	X(UNAVAILABLE, "unavailable", "503s: stopping")

enum mirror_result {
#define MIRROR_ENUM_(name, label, help) MIRROR_##name,
	MIRROR_RESULT_MAP(MIRROR_ENUM_)
#undef MIRROR_ENUM_
	    MIRROR_RESULTS
};

struct mreq;
struct mirror_early;
struct mirror_pull;

struct mirror {
	uv_loop_t *loop;
	struct daemon *d;
	struct cache *cache;
	char *target;
	struct httpd *http;
	struct mirror_cat *cats;    /* published versions, by dataset name */
	struct mreq *waiting;	    /* requests waiting for a catalog to load */
	struct mirror_early *early; /* datasets being fetched */
	struct mirror_pull *pull;   /* on-demand pulls; NULL: off */
	uint64_t wait_ms;	    /* how long a request waits for a file being fetched */
	int jobs;		    /* pool jobs in flight */
	int stopping;
	uint64_t count[MIRROR_RESULTS];
	uint64_t blob_bytes;
};

/* A request, parsed. */
struct mreq {
	struct mreq *next;
	struct mirror *m;
	struct httpd_request *req;
	struct oci_name_path p;
	char ns[OCI_NAME_HOST_MAX + 1];
	int has_ns;
	uint64_t deadline_ms;	   /* parked for a file being fetched until then; 0: not yet */
	uint64_t parked_ms;	   /* when it was first parked for one */
	uint64_t pull_deadline_ms; /* waits for an on-demand pull until then; 0: not yet */
};

/* A pool job: a catalog load, a blob opened, or a blob hashed. */
struct mjob {
	uv_work_t work;
	struct mirror *m;
	struct mirror_cat *cat;
	struct mreq *mr; /* open */
	char digest[OCI_DIGEST_MAX];
	uint8_t *manifest; /* load */
	size_t manifest_len;
	struct mirror_stat st;
	int fd, rc;
};

/* A manifest or index held, its verified bytes in memory. */
struct mirror_doc {
	char digest[OCI_DIGEST_MAX];
	char media_type[OCI_MEDIA_TYPE_MAX];
	struct buf bytes;
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
 * the size the image manifests declare. A tag answers with the registry's
 * document its entry names (OCI_REGISTRY_DIGEST) when the version holds
 * it. 0, or a negative error with cat->error set. */
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

/* ---- agent/mirror.c, for agent/mirror_early.c ---- */

/* Route a request: the published versions first, then (mirror_early_request)
 * the datasets being fetched. Answers or parks mr. */
void mirror_dispatch(struct mreq *mr);
/* Answers; each frees mr. */
void mirror_answer_error(struct mreq *mr, int status, const char *code, const char *message,
			 enum mirror_result r);
void mirror_not_found(struct mreq *mr); /* 404 with the route's OCI error code */
void mirror_stopping(struct mreq *mr);	/* 503 */
/* A manifest from memory: as a manifest, or through the blobs API. */
void mirror_answer_doc(struct mreq *mr, const struct mirror_doc *doc);
/* A blob file, checked (its digest and size in b): fd goes by sendfile. */
void mirror_answer_file(struct mreq *mr, const struct mirror_blob *b, int fd);
/* Pool jobs counted so that a stopping mirror waits for them; job_done
 * frees j (and drops its catalog reference). */
int mirror_queue_job(struct mirror *m, struct mjob *j, uv_work_cb work, uv_after_work_cb after);
void mirror_job_done(struct mjob *j);
/* Free a stopping mirror once no job is left (m->jobs). */
void mirror_release(struct mirror *m);

/* ---- agent/mirror_early.c ---- */

/* Follow the daemon's datasets being fetched (daemon_fetching). */
struct mirror_early *mirror_early_new(struct mirror *m);
/* Parked requests get 503; memory goes once the timer is closed (counted
 * in m->jobs). NULL is a no-op. */
void mirror_early_stop(struct mirror_early *e);
/* A request the published versions did not answer: a manifest or blob of a
 * dataset being fetched here, served once its file is a verified cache
 * object; parked until then (at most m->wait_ms) while the file is still
 * to come; otherwise a 404 at once (NAME_UNKNOWN when no dataset, being
 * fetched or published, has the repository: name_known 0). */
void mirror_early_request(struct mreq *mr, int name_known);
/* Files of dataset name became cache objects, or its fetch ended: parked
 * requests look again. */
void mirror_early_changed(struct mirror_early *e, const char *name);
/* syncbit_mirror_early_total{kind=...}, syncbit_mirror_waits_total and
 * syncbit_mirror_wait_expired_total. */
void mirror_early_metrics(const struct mirror_early *e, struct buf *out);

/* ---- agent/mirror_pull.c ---- */

/* On-demand pulls as cfg asks (*out NULL when cfg->pull is 0). 0, or a
 * negative error with *detail (heap) for a malformed registry list or
 * platform. */
int mirror_pull_new(struct mirror *m, const struct mirror_config *cfg, struct mirror_pull **out,
		    char **detail);
/* Parked requests get 503 and the pulls are let go (their datasets stay
 * assigned); memory goes once the timer is closed (counted in m->jobs).
 * NULL is a no-op. */
void mirror_pull_stop(struct mirror_pull *mp);
/* A manifest request no dataset here could answer: 1 when it was taken
 * (parked for a pull of its image, started or joined, or answered 404 with
 * why), 0 when on-demand pulls do not apply (off, no ns, a registry not
 * allowed, not a manifest) and the caller answers. */
int mirror_pull_request(struct mreq *mr);
/* Something changed (a dataset, a pull): parked requests look again soon.
 * NULL is a no-op. */
void mirror_pull_changed(struct mirror_pull *mp);
/* syncbit_mirror_pulls_total{result=...} and
 * syncbit_mirror_pull_wait_expired_total. NULL adds nothing. */
void mirror_pull_metrics(const struct mirror_pull *mp, struct buf *out);

#endif
