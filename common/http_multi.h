/* libcurl multi driven by the libuv loop (curl_multi_socket_action with one
 * uv_poll_t per socket curl opens and one uv_timer_t for its timeouts), and
 * the response-header helpers every HTTP-based source shares. Loop thread
 * only. Completion callbacks run from the loop, never from inside
 * http_multi_add() or http_multi_remove(). */
#ifndef SYNCBIT_HTTP_MULTI_H
#define SYNCBIT_HTTP_MULTI_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_USER_AGENT	       "syncbit/0.1"
#define HTTP_ETAG_MAX	       512
#define HTTP_DATE_MAX	       64
#define HTTP_REASON_MAX	       64
#define HTTP_RETRY_BASE_MS     200
#define HTTP_RETRY_CAP_MS      10000
#define HTTP_RETRY_AFTER_MAX_S 60

struct http_multi;

/* The transfer ended: easy is already detached from the multi and belongs to
 * the caller again (reuse it, re-add it or curl_easy_cleanup it). */
typedef void (*http_multi_done_cb)(CURL *easy, CURLcode result, void *arg);

/* A multi handle on loop. 0, or SB_EHTTP when libcurl cannot start. */
int http_multi_new(uv_loop_t *loop, struct http_multi **out);
/* Detach what is still running (no callbacks; the caller keeps owning and
 * cleans up those easy handles), then close the uv handles. Memory goes in
 * their close callbacks, so the loop must run once more. Safe to call from a
 * completion callback. NULL is a no-op. */
void http_multi_free(struct http_multi *m);
/* Start a transfer; cb runs once, from the loop, when it ends. The multi
 * owns CURLOPT_PRIVATE of easy while it runs. 0 or SB_EHTTP. */
int http_multi_add(struct http_multi *m, CURL *easy, http_multi_done_cb cb, void *arg);
/* Stop a running transfer; its callback will not run. No-op when easy is
 * not attached. */
void http_multi_remove(struct http_multi *m, CURL *easy);

/* What one response's header block said. Reset at each status line, so after
 * redirects and 1xx responses only the final response remains. */
struct http_resp {
	long status;
	char reason[HTTP_REASON_MAX];
	int64_t content_length; /* -1: absent */
	int has_range;		/* a Content-Range header parsed */
	int range_unsatisfied;	/* "bytes * /total" form (416) */
	uint64_t range_first, range_last;
	int64_t range_total;	  /* -1: "*" or absent */
	int accept_ranges;	  /* 1 "bytes", 0 "none", -1 absent */
	char etag[HTTP_ETAG_MAX]; /* as sent (quotes, W/), "" when absent */
	char last_modified[HTTP_DATE_MAX];
	long retry_after; /* seconds, -1 absent */
	int complete;	  /* the blank line ending the block arrived */
};

/* One header field line as CURLOPT_HEADERFUNCTION delivers it
 * ("Name: value\r\n"): pointers into the line, the value without the
 * blanks around it or the line end; neither is terminated. */
struct http_header {
	const char *name, *value;
	size_t name_len, value_len;
};

/* Split line[0..n) into h. 1 for a header field; 0 for a status line, the
 * blank line that ends a header block, or a line without a colon. */
int http_header_split(const char *line, size_t n, struct http_header *h);
/* 1 when h is the field name (any case). */
int http_header_is(const struct http_header *h, const char *name);
/* h's value into out[cap] (terminated, cut at cap - 1 bytes); 1 when it
 * fit whole, 0 when it was cut. */
int http_header_value(const struct http_header *h, char *out, size_t cap);

void http_resp_reset(struct http_resp *r);
/* Feed one header line as CURLOPT_HEADERFUNCTION delivers it (with CRLF). */
void http_resp_header(struct http_resp *r, const char *line, size_t n);
/* The reason phrase sent, or a standard one for the status. */
const char *http_resp_reason(const struct http_resp *r);

/* The opaque part of an entity tag: W/ and quotes stripped, into out. */
void http_etag_opaque(const char *etag, char *out, size_t cap);
/* 1 when an entity tag is weak (W/ prefix). */
int http_etag_is_weak(const char *etag);

/* SB_E* code for a final status: 0 for 2xx, SB_ENOTFOUND for 404/410,
 * SB_EDENIED for 401/403, SB_EHTTP4XX / SB_EHTTP5XX otherwise. */
int http_status_error(long status);
/* 408, 429 and 5xx are worth another attempt. */
int http_status_retryable(long status);
/* Transport failures worth another attempt (resets, timeouts, DNS). */
int http_curl_retryable(CURLcode rc);
/* Delay before retry number n (1 = first retry): HTTP_RETRY_BASE_MS doubling
 * up to HTTP_RETRY_CAP_MS, jittered into [d/2, d]; a Retry-After in seconds
 * (>= 0) replaces it, capped at HTTP_RETRY_AFTER_MAX_S. rng is the caller's
 * xorshift state (non-zero). */
uint64_t http_backoff_ms(unsigned n, long retry_after, uint64_t *rng);

/* Options every HTTP source sets: user agent, redirects (http/https only, at
 * most 10, credentials never forwarded to another host), timeouts and the
 * stall rule, large receive buffer. */
void http_easy_defaults(CURL *easy, unsigned connect_seconds, unsigned stall_seconds);

#endif
