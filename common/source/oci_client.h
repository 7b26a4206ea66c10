/* HTTP requests to one OCI distribution registry, run by a curl multi on the
 * loop: documents (manifests, tag pages), byte ranges of blobs, and the
 * calls the push side describes (HEAD, POST, PUT, PATCH with a body from
 * memory or streamed; common/source/oci_push.c). It owns
 * the auth: anonymous first, then on 401 the Bearer token flow (realm,
 * service, scope from the challenge; credentials sent to the token service
 * only) or Basic; a token is refreshed when it expires or is refused. It
 * retries 408, 429 (honouring Retry-After), 5xx, transport errors and
 * stalls with backoff, and follows redirects (curl sends neither the token
 * nor Basic credentials to another host). Loop thread only. Callbacks run
 * from the registry's timer, never from inside the call that started the
 * request. Requests run through common/source/http_req.c. */
#ifndef SYNCBIT_SOURCE_OCI_CLIENT_H
#define SYNCBIT_SOURCE_OCI_CLIENT_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/source/http_req.h"
#include "common/source/oci_doc.h"

#define OCI_CLIENT_HEADER_MAX 2048

struct oci_client_options {
	const char *repo;     /* for the default scope "repository:<repo>:pull" */
	const char *userpwd;  /* "user:password", or NULL */
	const char *insecure; /* hosts a token realm may use plain HTTP on */
	int retries;	      /* attempts after the first */
	unsigned connect_seconds;
	unsigned stall_seconds;		/* 0: no stall detection */
	uint64_t *bytes_read;		/* blob bytes received are added here, or NULL */
	struct http_counters *counters; /* failed requests and retries, or NULL */
	int push;			/* tokens ask for "repository:<repo>:pull,push" */
};

struct oci_client;
struct oci_client_req;
typedef void (*oci_client_done_cb)(struct oci_client_req *r);

enum oci_client_req_kind {
	OCI_CLIENT_DOC,	  /* a GET whose body is kept in body */
	OCI_CLIENT_TOKEN, /* the token service (internal) */
	OCI_CLIENT_RANGE, /* bytes off..off+len-1 of a blob into buf */
	OCI_CLIENT_DEFER, /* no transfer: only the deferred callback */
	OCI_CLIENT_CALL,  /* a request the caller describes (struct oci_client_call) */
};

/* A streamed request body, on curl's read contract. */
struct oci_client_body {
	/* Copy up to n bytes into buf: the count, 0 at the end,
	 * CURL_READFUNC_PAUSE when none is ready yet (oci_client_req_resume
	 * once some is), or CURL_READFUNC_ABORT after a failure. */
	size_t (*read)(void *arg, char *buf, size_t n);
	/* An attempt starts (again) from the first byte. */
	void (*rewind)(void *arg);
	void *arg;
	uint64_t len;
};

/* What a OCI_CLIENT_CALL sends. Its strings and bodies must live until the
 * callback has run. */
struct oci_client_call {
	const char *method;	   /* "HEAD", "POST", "PUT" or "PATCH" */
	const char *content_type;  /* of the body, or NULL */
	const char *accept;	   /* or NULL */
	const char *content_range; /* "first-last", or NULL */
	const void *data;	   /* an in-memory body of len bytes, or NULL */
	size_t len;
	const struct oci_client_body *body; /* a streamed body, or NULL */
	int once;			    /* no retries: the caller starts over */
	int anonymous;			    /* no credentials (a URL on another host) */
};

/* One request. The fields above the line are the caller's to read in its
 * callback; after the callback the request is the caller's, to free with
 * oci_client_req_free. */
struct oci_client_req {
	int status;   /* 0 or a negative error */
	char *detail; /* "GET URL: why" on failure, or NULL */
	long http_status;
	struct buf body; /* DOC: the body; others: an error body's start */
	char content_type[OCI_MEDIA_TYPE_MAX];
	char docker_digest[OCI_DIGEST_MAX];
	char link[OCI_CLIENT_HEADER_MAX];
	char *location; /* the Location header, or NULL */
	char range[64]; /* the Range header of an upload's answer, or "" */
	int64_t length; /* Content-Length, -1 when absent */
	char *url;
	void *arg;
	/* ---- private ---- */
	struct http_req base; /* RANGE: bytes base.off..base.off+base.len-1 */
	struct oci_client *reg;
	enum oci_client_req_kind kind;
	oci_client_done_cb cb;
	char www_auth[OCI_CLIENT_HEADER_MAX];
	unsigned auth_tries, token_gen;
	size_t body_max;
	uint64_t total; /* RANGE: the blob's size */
	uint64_t skip;
	struct oci_client_call call; /* CALL */
};

/* A registry client on loop; o's strings are copied. 0 or SB_EHTTP. */
int oci_client_new(uv_loop_t *loop, const struct oci_client_options *o, struct oci_client **out);
/* Drop every request without calling back, then close; the memory goes in
 * a close callback, so the loop must run once more. Safe from a callback.
 * NULL is a no-op. */
void oci_client_free(struct oci_client *reg);

/* GET url (heap, taken) with Accept for manifests; the body (at most max
 * bytes, else SB_ETOOBIG) lands in r->body. cb runs once. */
void oci_client_get_doc(struct oci_client *reg, char *url, size_t max, oci_client_done_cb cb,
			void *arg);
/* GET bytes off..off+len-1 of the blob at url (heap, taken), total bytes
 * long, into buf, which must live until cb. A blob of another size fails
 * with SB_ECORRUPT. */
void oci_client_get_range(struct oci_client *reg, char *url, uint64_t total, uint64_t off,
			  size_t len, void *buf, oci_client_done_cb cb, void *arg);
/* Send call to url (heap, taken). A 2xx answer's body is dropped; an
 * error's start is kept in r->body. cb runs once. Returns the request,
 * the caller's to resume until its callback. */
struct oci_client_req *oci_client_call(struct oci_client *reg, char *url,
				       const struct oci_client_call *call, oci_client_done_cb cb,
				       void *arg);
/* A streamed body whose read paused has bytes ready again. */
void oci_client_req_resume(struct oci_client_req *r);
/* Run cb from the loop with status and detail (heap, taken; may be NULL). */
void oci_client_defer(struct oci_client *reg, int status, char *detail, oci_client_done_cb cb,
		      void *arg);
/* Every request still running or waiting ends with SB_ECANCELED, and
 * callbacks not yet run report SB_ECANCELED. */
void oci_client_cancel(struct oci_client *reg);
/* 1 while any request is running, waiting or not yet called back. */
int oci_client_busy(const struct oci_client *reg);
void oci_client_req_free(struct oci_client_req *r);

#endif
