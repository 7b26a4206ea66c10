/* Inside the s3:// source: what s3.c (read(), the transfers, signing,
 * setup) and s3_list.c (list(): ListObjectsV2 pages, then HeadObject for
 * the objects listed with a SHA-256 checksum) share. Loop thread only. */
#ifndef SYNCBIT_SOURCE_S3_INT_H
#define SYNCBIT_SOURCE_S3_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/source/http_req.h"
#include "common/source/s3_api.h"
#include "common/source/source.h"

#define LIST_PAGE_KEYS	     "1000"	/* the most ListObjectsV2 returns */
#define LIST_BODY_MAX	     (8u << 20) /* one page of 1000 long keys is ~1 MB */
#define LIST_IDLE_PAGES_MAX  100	/* truncated pages in a row without a new file */
#define QUERY_PARAMS_MAX     5
#define BUCKET_REGION_HEADER "x-amz-bucket-region"
#define CHECKSUM_HEADER	     "x-amz-checksum-sha256"
#define CHECKSUM_TYPE_HEADER "x-amz-checksum-type"
#define CHECKSUM_TEXT_MAX    96 /* base64 of 32 bytes, or a composite "...-N" */

enum req_kind { REQ_LIST, REQ_RANGE, REQ_SUM };
enum list_phase {
	PHASE_DIR,    /* the keys under "prefix/" */
	PHASE_SINGLE, /* nothing there: is "prefix" itself an object? */
};

struct s3_source;

/* base comes first: the client's lists hold &base. */
struct s3_req {
	struct http_req base;
	struct s3_source *s3;
	enum req_kind kind;
	char bucket_region[AWS_REGION_MAX]; /* x-amz-bucket-region of the answer */
	struct buf body;		    /* LIST: the page; any kind: an error document */
	char *what;			    /* "s3://bucket/key" before messages; NULL: a listing */
	size_t index;			    /* REQ_RANGE, REQ_SUM */
	/* REQ_SUM: the x-amz-checksum-sha256 and -type answered */
	char sum[CHECKSUM_TEXT_MAX], sum_type[CHECKSUM_TEXT_MAX];
	/* REQ_LIST */
	enum list_phase phase;
	char *token;   /* continuation token of the page asked for */
	unsigned idle; /* pages in a row that added no file */
	source_done_cb cb;
	void *arg;
};

struct s3_source {
	struct http_client http; /* first: its close callback frees the source */
	struct source *src;
	struct s3_config cfg;
	char *config_error; /* reported by list(), where the user sees it */
	char *shown;	    /* "s3://bucket/prefix" */
	char *dir_prefix;   /* keys of a directory source start with this */
	char *single_key;   /* set when the source is one object */
	int listed;
	struct source_listing building;
	size_t cap;
	/* HeadObject of the objects listed with a SHA-256 checksum, before the
	 * listing ends: their paths, how far they went, and the listing's
	 * request, which ends with the first failure when they are done. */
	char **sum_paths;
	size_t nsum, sum_next, sum_busy;
	struct s3_req *sum_list;
	int sum_rc;
	char *sum_detail;
};

static inline struct s3_req *s3_req_of(struct http_req *b)
{
	return (struct s3_req *)b;
}

/* Requests and keys (s3.c). */
struct s3_req *source_s3_req_new(struct s3_source *s3, enum req_kind kind);
void source_s3_req_free(struct s3_req *r);
/* The key of listing file index (appended to tmp when built). */
const char *source_s3_object_key(struct s3_source *s3, size_t index, struct buf *tmp);
/* Keep an error document's bytes (bounded) for its Code; the write
 * function's return. */
size_t source_s3_keep_error_body(struct s3_req *r, const char *data, size_t n);

/* list() (s3_list.c). */
int source_s3_list(struct source *src, source_done_cb cb, void *arg);
/* The ETag a listed file was seen with, or NULL. */
const char *source_s3_file_etag(const struct source_file *f);
/* Forget the HeadObject queue of a listing. */
void source_s3_sums_clear(struct s3_source *s3);
/* A REQ_LIST page's attempt ended well; its write function. */
void source_s3_list_done(struct s3_req *r);
size_t source_s3_list_body(char *data, size_t size, size_t nmemb, void *arg);
/* A REQ_SUM (HeadObject) attempt ended well; its delivery from the timer. */
void source_s3_sum_done(struct s3_req *r);
void source_s3_sum_delivered(struct s3_req *r);

#endif
