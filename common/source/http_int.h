/* Inside the http(s):// source: what http.c (list(), ranged reads, the
 * transfers and operations) and http_stream.c (the sequential mode for a
 * server that gives no size or no ranges) share. Loop thread only. */
#ifndef SYNCBIT_SOURCE_HTTP_INT_H
#define SYNCBIT_SOURCE_HTTP_INT_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/source/http_req.h"
#include "common/source/source.h"

#define SEQ_SPILL_MAX	   (8u << 20) /* stream bytes held ahead of the reader */
#define SEQ_PROGRESS_RESET (1u << 20) /* stream progress that forgives failures */
#define RANGE_SPEC_MAX	   48

enum req_kind {
	REQ_HEAD,     /* list: HEAD */
	REQ_PROBE,    /* list: GET bytes=0-0, when HEAD is refused or unclear */
	REQ_COUNT,    /* list: GET of the whole body to learn its length */
	REQ_RANGE,    /* read: GET bytes=a-b into the caller's buffer */
	REQ_STREAM,   /* sequential mode: the one GET feeding REQ_SEQ_READs */
	REQ_SEQ_READ, /* sequential mode: a read waiting for stream bytes */
};

struct http_source;

/* base comes first: the client's lists hold &base. */
struct hs_req {
	struct http_req base; /* off: RANGE/SEQ_READ file offset; STREAM: attempt start;
			       count: PROBE/COUNT body bytes, others this attempt's */
	struct http_source *hs;
	enum req_kind kind;
	int whole;     /* a 200 carrying the whole file was accepted */
	uint64_t skip; /* STREAM: leading bytes of a 200 seen before */
	source_done_cb cb;
	void *arg;
};

struct http_source {
	struct http_client http; /* first: its close callback frees the source */
	struct source *src;
	char *shown_url; /* without credentials or query: safe in messages */
	char *name;
	/* What the listing learnt. */
	char *etag; /* as sent, or NULL */
	char *last_modified;
	uint64_t size;
	int size_known;
	int ranges; /* 1 ranged GETs work, 0 they do not, -1 not known yet */
	int counted;
	uint64_t count_start; /* loop time a body without a length began, 0: none yet */
	int listed;
	struct {
		struct hs_req *xfer;
		struct http_req_list reads;
		uint64_t pos;	   /* file offset of the next byte off the wire */
		uint64_t next_off; /* where the next read must start */
		struct buf spill;  /* bytes off the wire no read has asked for */
		size_t spill_off;
		int error; /* sticky once the stream gave up */
		char *error_detail;
	} seq;
};

static inline struct hs_req *hs_req_of(struct http_req *b)
{
	return (struct hs_req *)b;
}

/* Requests (http.c). */
struct hs_req *source_http_req_new(struct http_source *hs, enum req_kind kind);
void source_http_req_free(struct hs_req *r);
/* An answer against the listing's validators: 0, or -1 refused. */
int source_http_check_validators(struct hs_req *r);

/* Sequential mode (http_stream.c): one GET, its bytes handed to the reads
 * in order. */
/* Queue read r for the stream's bytes; -EINVAL when it is out of order
 * while others wait (r freed). */
int source_http_read_seq(struct http_source *hs, struct hs_req *r);
/* Drop the stream and what it spilled; the next read starts at off. */
void source_http_seq_reset(struct http_source *hs, uint64_t off);
/* The stream gave up (x, its transfer, is freed): the waiting reads and
 * later ones fail with x's status until a reset. */
void source_http_seq_fail(struct http_source *hs, struct hs_req *x);
/* The stream's write function (its data is the REQ_STREAM request). */
size_t source_http_stream_body(char *data, size_t size, size_t nmemb, void *arg);
/* The stream's attempt ended. */
void source_http_stream_done(struct hs_req *r, CURLcode rc);

#endif
