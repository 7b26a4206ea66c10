/* What the model-hub sources (hf:// in hf.c, ms:// in ms.c)
 * share: JSON API calls and ranged file reads through one curl multi on the
 * loop, with retries and backoff (Retry-After honoured), stall and change
 * detection, and the whole-file digest check. A hub kind only says which
 * API calls list a repository and where each file's bytes are read.
 *
 * Digest check: when the reads of a file cover it from byte 0 in order (a
 * standalone pull), its SHA-256 or git blob id is computed on the libuv pool
 * as the bytes land, each read's callback waiting until the bytes before it
 * are hashed; the read that completes the file fails with SB_ECORRUPT when
 * the digest differs. Reads that skip bytes (a resumed pull, a node fetching
 * only some blocks) leave the file unchecked: per-block hashes cover it.
 *
 * Loop thread only. Callbacks run from a timer, never from inside the call
 * that started the operation. */
#ifndef SYNCBIT_SOURCE_HUB_H
#define SYNCBIT_SOURCE_HUB_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/source/source.h"

#define HUB_API_BODY_MAX   (64u << 20) /* one JSON answer */
#define HUB_PAGES_MAX	   100000      /* pages of one listing */
#define HUB_TOKEN_MAX	   4096
#define HUB_ERROR_CODE_MAX 64
#define HUB_MESSAGE_MAX	   240
#define HUB_URL_MAX	   8192

enum hub_check {
	HUB_CHECK_NONE,
	HUB_CHECK_SHA256,   /* SHA-256 of the content (LFS files, ModelScope's Sha256) */
	HUB_CHECK_GIT_BLOB, /* SHA-1 of "blob <size>\0" + content (git objects) */
};

/* What an API answer said, for messages. */
struct hub_reply {
	long status;			     /* final HTTP status; 0 without one */
	char error_code[HUB_ERROR_CODE_MAX]; /* X-Error-Code */
	char message[HUB_MESSAGE_MAX];	     /* X-Error-Message, or the body's */
	char *next_url;			     /* Link: <…>; rel="next", or NULL */
	const char *shown_url;		     /* the URL without its query */
};

struct hub;

/* An API call ended. status 0: doc is the parsed answer, owned by the hub
 * and released after the callback (json_incref to keep it). status < 0:
 * doc is NULL and reply says what the server answered, if anything. */
typedef void (*hub_json_cb)(struct hub *h, int status, json_t *doc, const struct hub_reply *reply,
			    void *arg);

struct hub_ops {
	const char *token_env; /* named in access-denied messages */
	/* Start listing; end with hub_list_done() or hub_list_fail(). */
	int (*list)(struct hub *h);
	/* Release the kind's state (h->kind). */
	void (*free)(struct hub *h);
};

struct hub {
	struct source *src;
	const struct hub_ops *ops;
	char *endpoint;	  /* scheme://host[:port][/path], no trailing '/' */
	char *auth;	  /* a request header carrying the token, or NULL */
	int has_token;	  /* a token was configured */
	const char *name; /* the source as the user wrote it, for messages */
	void *kind;	  /* the kind's state */
	void *impl;	  /* transfers, reads and digests (hub.c) */
};

/* Install a hub source on src: ops, endpoint (copied, trailing '/'
 * dropped) and an optional authentication header line (copied). */
int hub_init(struct source *src, const struct hub_ops *ops, const char *endpoint,
	     const char *auth_header, void *kind, struct hub **out);

/* GET url (absolute) with the hub's authentication and parse the answer as
 * JSON; 429, 5xx and transport errors are retried. 0, or a negative error
 * when the request cannot start (cb will not run). */
int hub_get_json(struct hub *h, const char *url, hub_json_cb cb, void *arg);

/* Add one file to the listing being built. path is repo-relative; url is
 * where its bytes are read; etag, when not NULL, is what the hub's answers
 * for it must carry (X-Linked-Etag, or ETag); want is the expected digest
 * (32 bytes for SHA-256, 20 for a git blob id) when check says so. */
void hub_add_file(struct hub *h, const char *path, uint64_t size, int64_t mtime_ns,
		  const char *digest, const char *url, const char *etag, enum hub_check check,
		  const uint8_t *want);
/* The listing is complete: sort it, check it (no duplicate paths, empty
 * files match their digest) and end list() with version (copied). */
void hub_list_done(struct hub *h, const char *version);
/* End list() with an error and a one-line message. */
void hub_list_fail(struct hub *h, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The message and code for a failed API call that no kind-specific rule
 * explains: access denied, not found, or the HTTP status and reason. */
void hub_list_fail_reply(struct hub *h, int status, const struct hub_reply *reply);

/* Helpers for the kinds. */
/* Append s percent-encoded: unreserved characters and those in safe stay;
 * with plus, a space becomes '+' (form encoding, Python's quote_plus). */
void hub_quote(struct buf *b, const char *s, const char *safe, int plus);
/* 1 when s is exactly n lower-case hex digits. */
int hub_is_hex(const char *s, size_t n);
/* Decode n lower-case hex digits into out. */
void hub_hex_decode(const char *s, size_t n, uint8_t *out);
/* 1 when url has the same scheme, host and port as the endpoint. */
int hub_same_origin(const struct hub *h, const char *url);
/* The first of the environment variables that is set and not empty. */
const char *hub_getenv(const char *const *names);
/* A token read from a small file (trailing whitespace dropped), or NULL. */
char *hub_read_token_file(const char *path);

/* For tests without a network: API calls of the hub source src answered
 * by fn instead, which fills head with the header block of the answer to
 * url as libcurl delivers it (status line first, each line ending in
 * CRLF; several blocks after redirects) and body with its body. The answer
 * goes through the header, body and JSON handling of one from the network,
 * without retries; ranged reads are not affected. 0, or -EINVAL when src
 * is not a hub source. */
typedef void (*hub_answer_fn)(void *arg, const char *url, struct buf *head, struct buf *body);
int hub_answer_from(struct source *src, hub_answer_fn fn, void *arg);

/* Kind constructors. */
int source_hf_new(struct source *src);
int source_ms_new(struct source *src);

#endif
