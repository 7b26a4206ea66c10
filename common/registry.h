/* HTTP requests to one OCI distribution registry, run by a curl multi on the
 * loop: documents (manifests, tag pages) and byte ranges of blobs. It owns
 * the auth: anonymous first, then on 401 the Bearer token flow (realm,
 * service, scope from the challenge; credentials sent to the token service
 * only) or Basic; a token is refreshed when it expires or is refused. It
 * retries 408, 429 (honouring Retry-After), 5xx, transport errors and
 * stalls with backoff, and follows redirects (curl sends neither the token
 * nor Basic credentials to another host). Loop thread only. Callbacks run
 * from the registry's timer, never from inside the call that started the
 * request. Requests run through common/http_req.c. */
#ifndef SYNCBIT_REGISTRY_H
#define SYNCBIT_REGISTRY_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/http_req.h"
#include "common/oci.h"

#define REGISTRY_HEADER_MAX 2048

struct registry_options {
	const char *repo;     /* for the default scope "repository:<repo>:pull" */
	const char *userpwd;  /* "user:password", or NULL */
	const char *insecure; /* hosts a token realm may use plain HTTP on */
	int retries;	      /* attempts after the first */
	unsigned connect_seconds;
	unsigned stall_seconds; /* 0: no stall detection */
	uint64_t *bytes_read;	/* blob bytes received are added here, or NULL */
};

struct registry;
struct registry_req;
typedef void (*registry_done_cb)(struct registry_req *r);

enum registry_req_kind {
	REGISTRY_DOC,	/* a GET whose body is kept in body */
	REGISTRY_TOKEN, /* the token service (internal) */
	REGISTRY_RANGE, /* bytes off..off+len-1 of a blob into buf */
	REGISTRY_DEFER, /* no transfer: only the deferred callback */
};

/* One request. The fields above the line are the caller's to read in its
 * callback; after the callback the request is the caller's, to free with
 * registry_req_free. */
struct registry_req {
	int status;   /* 0 or a negative error */
	char *detail; /* "GET URL: why" on failure, or NULL */
	long http_status;
	struct buf body; /* DOC: the body; others: an error body's start */
	char content_type[OCI_MEDIA_TYPE_MAX];
	char docker_digest[OCI_DIGEST_MAX];
	char link[REGISTRY_HEADER_MAX];
	char *url;
	void *arg;
	/* ---- private ---- */
	struct http_req base; /* RANGE: bytes base.off..base.off+base.len-1 */
	struct registry *reg;
	enum registry_req_kind kind;
	registry_done_cb cb;
	char www_auth[REGISTRY_HEADER_MAX];
	unsigned auth_tries, token_gen;
	size_t body_max;
	uint64_t total; /* RANGE: the blob's size */
	uint64_t skip;
};

/* A registry client on loop; o's strings are copied. 0 or SB_EHTTP. */
int registry_new(uv_loop_t *loop, const struct registry_options *o, struct registry **out);
/* Drop every request without calling back, then close; the memory goes in
 * a close callback, so the loop must run once more. Safe from a callback.
 * NULL is a no-op. */
void registry_free(struct registry *reg);

/* GET url (heap, taken) with Accept for manifests; the body (at most max
 * bytes, else SB_ETOOBIG) lands in r->body. cb runs once. */
void registry_get_doc(struct registry *reg, char *url, size_t max, registry_done_cb cb, void *arg);
/* GET bytes off..off+len-1 of the blob at url (heap, taken), total bytes
 * long, into buf, which must live until cb. A blob of another size fails
 * with SB_ECORRUPT. */
void registry_get_range(struct registry *reg, char *url, uint64_t total, uint64_t off, size_t len,
			void *buf, registry_done_cb cb, void *arg);
/* Run cb from the loop with status and detail (heap, taken; may be NULL). */
void registry_defer(struct registry *reg, int status, char *detail, registry_done_cb cb, void *arg);
/* Every request still running or waiting ends with SB_ECANCELED, and
 * callbacks not yet run report SB_ECANCELED. */
void registry_cancel(struct registry *reg);
/* 1 while any request is running, waiting or not yet called back. */
int registry_busy(const struct registry *reg);
void registry_req_free(struct registry_req *r);

#endif
