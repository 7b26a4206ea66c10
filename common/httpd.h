/* A tiny HTTP/1.1 server for health, API and metrics endpoints: GET (and
 * HEAD) routes matched by exact path, each answered by a callback that
 * fills a status, a content type and a body. One request per connection
 * (the response carries "Connection: close"); requests are bounded in size
 * and time. Loop thread only; callbacks run on the loop thread. */
#ifndef SYNCBIT_HTTPD_H
#define SYNCBIT_HTTPD_H

#include <stddef.h>
#include <uv.h>

#include "common/buf.h"

#define HTTPD_REQUEST_MAX (16u << 10) /* request line + headers */
#define HTTPD_TIMEOUT_MS  10000	      /* whole request-response exchange */
#define HTTPD_CONN_MAX	  256	      /* connections served at once */

struct httpd;

struct httpd_response {
	int status;		  /* default 200 */
	const char *content_type; /* static string; default "text/plain; charset=utf-8" */
	struct buf body;	  /* empty on entry */
};

/* Fill resp for a request of path (without the query) and query (after
 * '?', "" when none; not decoded). */
typedef void (*httpd_handler)(void *arg, const char *path, const char *query,
			      struct httpd_response *resp);

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
/* The bound port (useful after listening on port 0). */
int httpd_port(const struct httpd *h);
/* Stop listening, drop open connections and free the server
 * asynchronously. httpd_stop(NULL) is a no-op. */
void httpd_stop(struct httpd *h);

/* Parse "host:port" or "[v6]:port" into a socket address; 0 or SB_EURI. */
int httpd_parse_addr(const char *addr, struct sockaddr_storage *out);

#endif
