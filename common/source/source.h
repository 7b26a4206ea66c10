/* Sources: list a dataset's files and read byte ranges of them. One file per
 * kind (file.c, http.c, ...) behind struct source_ops, as a
 * protocol handler table. Loop thread only, except ops->pread which the pull
 * engine calls from the libuv thread pool. Callbacks run on the loop thread
 * and never from inside the call that started the operation. */
#ifndef SYNCBIT_SOURCE_H
#define SYNCBIT_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/uri.h"

struct filter;

enum source_file_type { SRC_REGULAR = 0, SRC_DIRECTORY = 1, SRC_SYMLINK = 2 };

#define SOURCE_SHA256_LEN 32

struct source_file {
	char *path; /* relative, confined; a single-file source uses its basename */
	enum source_file_type type;
	uint64_t size;
	uint32_t mode; /* permission bits */
	int64_t mtime_ns;
	char *link_target;    /* SRC_SYMLINK */
	uint32_t hardlink_to; /* 1 + index of an earlier regular file; 0 = none */
	char *digest;	      /* change token: ETag, sha256, or size/mtime/inode token */
	uint64_t inode;	      /* local files: the inode listed, checked again on open */
	/* The content's SHA-256 as the source publishes it apart from the
	 * change token (S3 full-object checksums); digest "sha256:..." says
	 * it for the hub and OCI kinds already. */
	uint8_t content_sha256[SOURCE_SHA256_LEN];
	int has_content_sha256;
};

struct source_listing {
	struct source_file *files; /* sorted by path */
	size_t nfiles;
	char *version; /* a token for the whole listing (commit, ETag); may be NULL */
};

/* The default bounds of one dataset (README "Limits"): what a listing may
 * claim before anything proportional to it is allocated. Block counts are
 * bounded by MANIFEST_MAX_BLOCKS (common/manifest.h), which follows from
 * the size a manifest may have on the wire and on disk. */
#define SOURCE_MAX_FILE_BYTES	 (4ull << 40)  /* one regular file: 4 TiB */
#define SOURCE_MAX_DATASET_BYTES (64ull << 40) /* all regular files: 64 TiB */
#define SOURCE_MAX_FILES	 (1u << 20)    /* entries of every type */
#define SOURCE_MAX_UNSIZED_S	 1800	       /* reading a body without a length */

struct source_limits {
	uint64_t file_bytes;	/* --max-file-size; 0: SOURCE_MAX_FILE_BYTES */
	uint64_t dataset_bytes; /* --max-dataset-size (a hardlink counts once); 0: default */
	uint64_t files;		/* --max-files, at most MANIFEST_MAX_FILES; 0: default */
};

/* What only s3:// reads. */
struct source_s3_options {
	const char *endpoint; /* endpoint URL, or NULL for the environment */
	const char *region;   /* or NULL */
	int path_style;	      /* 0 automatic, 1 path-style, 2 virtual-hosted */
};

/* What only oci:// reads. */
struct source_oci_options {
	const char *insecure_registries; /* hosts also allowed over plain HTTP */
	const char *auth;		 /* "user:password", or NULL for $REGISTRY_AUTH */
	/* --authfile, read before the other auth files when auth and
	 * $REGISTRY_AUTH give none (common/source/oci_auth.h) */
	const char *authfile;
	/* keep each manifest as the registry serves it (a Docker schema 2
	 * manifest is not retyped to OCI), for a copy to another registry
	 * that must keep its digest. */
	int as_served;
};

struct source_options {
	int jobs;		  /* parallel transfers (default 8) */
	int retries;		  /* attempts after the first (default 5) */
	unsigned stall_seconds;	  /* no byte for this long = a stall (default 30) */
	unsigned connect_seconds; /* connect timeout (default 15) */
	/* --max-unsized-seconds: an HTTP body without a length that is still
	 * coming after this long is refused (default SOURCE_MAX_UNSIZED_S); a
	 * trickle never counts as a stall */
	unsigned unsized_seconds;
	uint64_t block_size;
	struct source_s3_options s3;   /* s3:// only */
	struct source_oci_options oci; /* oci:// only */

	struct source_limits limits; /* what list() accepts (source_list) */
	/* --include/--exclude: source_list drops the entries it excludes
	 * before the limits are checked (common/source/filter.h); NULL keeps all.
	 * Not for oci:// (an image layout's files are not the user's tree). */
	const struct filter *filter;
};

struct source;
typedef void (*source_done_cb)(struct source *src, int status, void *arg);

struct source_ops {
	const char *name;
	/* Fill src->listing, then cb(status). */
	int (*list)(struct source *src, source_done_cb cb, void *arg);
	/* Read exactly len bytes at off of listing file `index` into buf, then
	 * cb(status). buf belongs to the caller and must live until cb. NULL when
	 * the kind offers pread instead. */
	int (*read)(struct source *src, size_t index, uint64_t off, size_t len, void *buf,
		    source_done_cb cb, void *arg);
	/* Blocking, thread-safe read of exactly len bytes (pool threads only);
	 * 0 or negative error. NULL when the kind is asynchronous. */
	int (*pread)(struct source *src, size_t index, uint64_t off, size_t len, void *buf);
	/* Stop everything in flight; pending callbacks run with SB_ECANCELED. */
	void (*cancel)(struct source *src);
	/* Release; only once no operation is in flight. */
	void (*free)(struct source *src);
};

struct source {
	const struct source_ops *ops;
	uv_loop_t *loop;
	struct source_uri uri;
	struct source_options opt;
	struct source_listing listing;
	int max_parallel;    /* reads worth running at once */
	int sequential;	     /* reads must come in order, one at a time */
	uint64_t bytes_read; /* bytes taken from the source so far */
	char *error_detail;  /* one line for the user on failure, or NULL */
	/* Set by the caller: called on the loop as a read's bytes arrive, with
	 * the buf the read was given and how many of its bytes are in, from
	 * its start (never fewer than the last call said). Only the HTTP kinds
	 * (http, s3, hf, ms) tell; others only call a read's cb. */
	void (*read_progress)(void *arg, const uint8_t *buf, size_t got);
	void *read_progress_arg;
	void *impl;
	source_done_cb list_cb; /* source_list(): the caller's callback */
};

/* Create a source for uri (copied). SB_ESCHEME for kinds not built in. */
int source_new(uv_loop_t *loop, const struct source_uri *uri, const struct source_options *opt,
	       struct source **out);
void source_free(struct source *src);
/* Fill defaults into an options struct. */
void source_options_default(struct source_options *opt);
/* ops->list, then the listing checked against opt.limits and the blocks a
 * manifest holds at opt.block_size: a listing past them fails with
 * SB_ETOOBIG and error_detail naming the source, the limit and what it
 * claims (the listing is then not to be used). Returns as ops->list. */
int source_list(struct source *src, source_done_cb cb, void *arg);
/* The check source_list makes, on any listing: 0, or SB_ETOOBIG with
 * *detail (heap, one line, after "shown: " unless shown is NULL); SB_EPROTO
 * for a block size manifests do not take. lim NULL checks only what a
 * manifest can hold (MANIFEST_MAX_FILES, MANIFEST_MAX_BLOCKS). Pure. */
int source_listing_check(const struct source_listing *l, const struct source_limits *lim,
			 uint64_t block_size, const char *shown, char **detail);
/* Record a one-line user-facing detail (printf-style) for the last error;
 * control bytes, line breaks among them, become '?'. */
void source_set_error(struct source *src, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Used by the HTTP kinds: the client options (retries, timeouts, the
 * bytes_read counter, the kind's request counters) that src's options ask
 * for. */
struct http_client_options;
void source_http_options(struct source *src, struct http_client_options *o);
/* The deliver hook's common end for a request carrying one of src's
 * operations: its failure's line becomes src's error detail, the request
 * is freed (its client's free hook), then cb runs with its status. */
struct http_req;
void source_req_deliver(struct source *src, struct http_req *r, source_done_cb cb, void *arg);

/* The process-wide request counters of a kind of source (failed requests,
 * retried attempts), for /metrics; never NULL. Bumped atomically. */
struct http_counters;
struct http_counters *source_counters(enum uri_kind kind);
/* Prometheus families syncbit_source_request_errors_total and
 * syncbit_source_request_retries_total, labelled by kind only (never a
 * URL). */
void source_metrics(struct buf *out);

/* Used by the kinds: listing helpers. */
void source_listing_close(struct source_listing *l);
/* Sort files by path (byte order) and fix hardlink_to indices. */
void source_listing_sort(struct source_listing *l);
/* Drop the entries f excludes (keeping the order; a hardlink whose first
 * member went points at the first one left). Returns how many went. */
size_t source_listing_filter(struct source_listing *l, const struct filter *f);

/* Kind constructors (source_<kind>.c). */
int source_file_new(struct source *src);
int source_http_new(struct source *src);
int source_oci_new(struct source *src);
int source_s3_new(struct source *src);

#endif
