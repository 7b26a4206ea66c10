/* A tiny HTTP/1.1 server for health, API, metrics and registry endpoints:
 * GET (and HEAD) routes matched by exact path or by prefix, each answered
 * by a callback that fills a status, a content type, extra headers and a
 * body, at once or later (asynchronous routes); a body may be a range of a
 * file, sent by sendfile(2) on the pool. One request per connection
 * (the response carries "Connection: close"); requests are bounded in size
 * and time. Connections still without a whole request are capped per
 * source address and overall and must send it within a few seconds
 * (common/net/admit.h), so idle or slow clients cannot starve probes. Loop
 * thread only; callbacks run on the loop thread. */
#ifndef SYNCBIT_NET_HTTPD_H
#define SYNCBIT_NET_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/net/admit.h"
#include "common/buf.h"

#define HTTPD_REQUEST_MAX    (16u << 10) /* request line + headers */
#define HTTPD_TIMEOUT_MS     10000	 /* writing the response */
#define HTTPD_CONN_MAX	     256	 /* connections served at once */
#define HTTPD_SENDFILE_CHUNK (8u << 20)	 /* file bytes per pool job; the write timeout restarts */
#define HTTPD_RANGE_MAX	     256	 /* longest Range header kept */
#define HTTPD_AUTH_MAX	     512	 /* longest Authorization header kept */

/* Connections without a whole request yet, per source address and overall;
 * the request must be in within HTTPD_HEADER_MS, or HTTPD_HEADER_BUSY_MS
 * for one accepted past half a cap (common/net/admit.h). */
#define HTTPD_PENDING_PER_ADDR 8
#define HTTPD_PENDING_MAX      64
#define HTTPD_HEADER_MS	       3000
#define HTTPD_HEADER_BUSY_MS   1000

struct httpd;

struct httpd_response {
	int status;		  /* default 200 */
	const char *content_type; /* static string; default "text/plain; charset=utf-8" */
	struct buf body;	  /* empty on entry */
	struct buf headers;	  /* more header lines, each "Name: value\r\n"; empty on entry */
	/* >= 0: the body is file_len bytes of this file from file_off instead
	 * of body (HEAD sends none); the server closes it. -1 on entry. */
	int fd;
	uint64_t file_off, file_len;
};

/* One request of an asynchronous route, until it is answered. */
struct httpd_request;

/* Fill resp for a request of path (without the query) and query (after
 * '?', "" when none; not decoded). */
typedef void (*httpd_handler)(void *arg, const char *path, const char *query,
			      struct httpd_response *resp);

/* Limits on connections without a whole request; 0 = the default. */
struct httpd_limits {
	unsigned per_addr;	 /* HTTPD_PENDING_PER_ADDR */
	unsigned pending;	 /* HTTPD_PENDING_MAX */
	unsigned header_ms;	 /* HTTPD_HEADER_MS */
	unsigned header_busy_ms; /* HTTPD_HEADER_BUSY_MS */
};

/* Answer req later (or now) with httpd_respond, exactly once. */
typedef void (*httpd_async_handler)(void *arg, struct httpd_request *req);

struct httpd_route {
	const char *path; /* exact match, e.g. "/metrics" */
	httpd_handler fn;
	void *arg;
};

/* Listen on addr ("127.0.0.1:8080", "[::1]:0", "0.0.0.0:9000") and serve
 * routes (the array is copied; its strings and args must outlive the
 * server). Unknown paths get 404, other methods 405, malformed or oversized
 * requests 400/431. 0 with *out set, or a negative error (bad address,
 * bind failure). */
int httpd_start(uv_loop_t *loop, const char *addr, const struct httpd_route *routes, size_t nroutes,
		struct httpd **out);
/* Answer every path that starts with prefix (a static string) through fn,
 * asynchronously; exact routes are tried first. */
void httpd_route_prefix(struct httpd *h, const char *prefix, httpd_async_handler fn, void *arg);
/* The bound port (useful after listening on port 0). */
int httpd_port(const struct httpd *h);
/* Change the limits for connections accepted from now on. */
void httpd_set_limits(struct httpd *h, const struct httpd_limits *lim);
/* What was refused and why (common/net/admit.h). */
const struct admit *httpd_admit(const struct httpd *h);
/* Prometheus text: syncbit_http_connections_refused_total by reason and
 * syncbit_http_connections_pending. */
void httpd_metrics(const struct httpd *h, struct buf *out);
/* Stop listening, drop open connections and free the server
 * asynchronously. httpd_stop(NULL) is a no-op. */
void httpd_stop(struct httpd *h);

/* A response as handlers get it: 200, no body, no file. */
void httpd_response_init(struct httpd_response *resp);
/* Free what resp holds (buffers, file) and set it up again. */
void httpd_response_close(struct httpd_response *resp);

/* An asynchronous request: HEAD (1) or GET (0), its path (without the
 * query), its query ("" when none; not decoded) and its Range header (NULL
 * when none). Valid until httpd_respond. */
int httpd_request_head(const struct httpd_request *req);
const char *httpd_request_path(const struct httpd_request *req);
const char *httpd_request_query(const struct httpd_request *req);
const char *httpd_request_range(const struct httpd_request *req);
/* Its Authorization header, NULL when none, repeated or longer than
 * HTTPD_AUTH_MAX. */
const char *httpd_request_authorization(const struct httpd_request *req);
/* Answer req, taking what resp holds (resp is set up again). A request
 * not answered within HTTPD_TIMEOUT_MS gets 503 meanwhile, and a client
 * may leave before the answer: then the answer is only freed. Every
 * request must be answered, also after httpd_stop, for the server's memory
 * to go. Loop thread; may run from inside the handler. */
void httpd_respond(struct httpd_request *req, struct httpd_response *resp);

/* A Range header against a body of size bytes: 1 with *off and *len for
 * one satisfiable range ("bytes=a-b", "bytes=a-", "bytes=-n"); 0 when the
 * whole body is to be sent (no header, another unit, several ranges or a
 * malformed one, which RFC 9110 lets a server ignore); -1 when it cannot
 * be satisfied (416, "Content-Range: bytes *\/size"). */
int httpd_parse_range(const char *hdr, uint64_t size, uint64_t *off, uint64_t *len);

/* What the server makes of the bytes of a request, read chunk bytes at a
 * time as from a connection (0: all at once): 0 with out filled as a route
 * would see the request (strings on the heap, Range and Authorization
 * NULL when absent or ignored), the status it would refuse the request with before routing
 * (400, 405, 431), or -1 when the bytes end before the head of the request
 * does. For tests; free out with httpd_parsed_close. */
struct httpd_parsed {
	int head; /* HEAD (1) or GET (0) */
	char *path, *query, *range, *authorization;
};
int httpd_parse_request(const void *data, size_t len, size_t chunk, struct httpd_parsed *out);
void httpd_parsed_close(struct httpd_parsed *p);

/* Parse "host:port" or "[v6]:port" into a socket address; 0 or SB_EURI. */
int httpd_parse_addr(const char *addr, struct sockaddr_storage *out);

#endif
