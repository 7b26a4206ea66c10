/* Inside the hub sources: what hub.c (the source operations and the
 * listing), hub_http.c (the transfers) and hub_check.c (the
 * whole-file digest check) share. Not for the kinds, which use
 * hub.h. Loop thread only, except the digest jobs on the pool.
 *
 * Every request (an API call, a ranged read, the listing itself) is a
 * struct hub_req on one list at a time: the HTTP client's active (running,
 * or waiting to retry), a file's held list (its bytes are in but wait for
 * the bytes before them to be hashed), a file's batch (being hashed) or the
 * client's done (callbacks still to run, from its timer). */
#ifndef SYNCBIT_SOURCE_HUB_INT_H
#define SYNCBIT_SOURCE_HUB_INT_H

#include <curl/curl.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/source/http_req.h"
#include "common/source/hub.h"

#define HUB_DIGEST_MAX 32 /* bytes of the longest digest checked */

enum hub_req_kind { REQ_LIST, REQ_API, REQ_RANGE };

/* Headers that only some hops of a redirect chain carry. */
struct hub_hdrs {
	int responses; /* final (non-1xx) status lines seen */
	char error_code[HUB_ERROR_CODE_MAX];
	char error_message[HUB_MESSAGE_MAX];
	char next[HUB_URL_MAX];
	int next_overflow; /* a Link longer than next: a listing must not end there */
	char repo_commit[64];
	char linked_etag[HTTP_ETAG_MAX];
	char first_etag[HTTP_ETAG_MAX]; /* ETag of the hub's own (first) answer */
};

/* base comes first: the lists hold &base. REQ_RANGE reads base.off,
 * base.len into base.buf. */
struct hub_req {
	struct http_req base;
	struct hub_impl *hi;
	enum hub_req_kind kind;
	struct hub_hdrs hx;
	/* REQ_API */
	char *url;
	struct buf body;
	hub_json_cb jcb;
	/* REQ_RANGE */
	size_t index;
	int canceled; /* while hashing: deliver SB_ECANCELED */
	/* REQ_LIST and REQ_RANGE */
	source_done_cb cb;
	void *arg;
};

/* What the listing says of a file beyond struct source_file. */
struct hub_file {
	char *url;
	char *etag; /* opaque; answers carrying another one are refused */
	enum hub_check check;
	uint8_t want[HUB_DIGEST_MAX];
};

struct hub_pending_file {
	struct source_file f;
	struct hub_file x;
};

struct hub_check_state; /* hub_check.c */

struct hub_impl {
	struct hub pub;
	struct http_client http;
	int works; /* digest jobs on the pool: the memory stays until they end */
	int wake_open;
	struct hub_req *listing; /* the REQ_LIST in progress */
	int listed;
	struct hub_file *files;		 /* parallel to src->listing.files */
	struct hub_check_state **checks; /* per file, made at its first read */
	size_t nfiles;
	struct hub_pending_file *pend; /* the listing being built */
	size_t npend, cappend;
	hub_answer_fn answer; /* tests: API calls answered from memory */
	void *answer_arg;
};

/* Requests (hub_http.c). */
static inline struct hub_req *hub_req_of(struct http_req *b)
{
	return (struct hub_req *)b;
}
/* The hub's HTTP client on src's loop. 0 or SB_EHTTP. */
int hub_http_init(struct hub_impl *hi, struct source *src);
/* Free the requests on active and done and close the client; hi goes once
 * its timer closed and no digest job runs. */
void hub_http_close(struct hub_impl *hi);
struct hub_req *hub_req_new(struct hub_impl *hi, enum hub_req_kind kind);
void hub_req_free(struct hub_req *r);
/* r ends with status; its callback runs from the client's timer. With
 * detail (copied) when it fails. */
void hub_req_finish(struct hub_req *r, int status, const char *detail);

/* Digest checks (hub_check.c). */
size_t hub_check_len(enum hub_check c);
const char *hub_check_name(enum hub_check c);
/* 1 when an empty file has the digest x lists. */
int hub_check_empty(const struct hub_file *x);
/* A read of [off, off+len) of file index was asked for. */
void hub_check_asked(struct hub_impl *hi, size_t index, uint64_t off, size_t len);
/* All of r's bytes are in: finish it now or once the bytes before it are
 * hashed; the read that completes the file fails on a wrong digest. */
void hub_check_landed(struct hub_req *r);
/* A read of file index failed: reads behind it must not wait for it. */
void hub_check_failed(struct hub_impl *hi, size_t index);
/* Finish every held read with SB_ECANCELED; reads being hashed get it
 * when their job ends. */
void hub_check_cancel(struct hub_impl *hi);
/* 1 while a read waits for or is in a digest job. */
int hub_check_busy(const struct hub_impl *hi);
/* Release the check of every file (their held reads are dropped). */
void hub_check_close(struct hub_impl *hi);

#endif
