/* Internal to the HTTP server: common/net/httpd.c (connections, routing,
 * responses, file bodies, admission) and common/net/httpd_request.c (reading a
 * request). Loop thread only. */
#ifndef SYNCBIT_NET_HTTPD_INT_H
#define SYNCBIT_NET_HTTPD_INT_H

#include <http_parser.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/net/httpd.h"

#define HTTPD_URL_MAX	4096
#define HTTPD_FIELD_MAX 32 /* header names compared against the ones kept */

struct httpd_request {
	int head;
	char *path, *query;
};

/* What the bytes of a request came to so far: the request line and the
 * header fields kept (Range, Authorization). */
struct hreq {
	http_parser parser;
	struct buf url;
	size_t nread;
	int headers_done; /* the request line and headers are in */
	/* Header fields kept: the one being parsed, Range, Authorization. */
	char field[HTTPD_FIELD_MAX + 1];
	size_t field_len;
	int in_value, value_is_range, value_is_auth;
	char range[HTTPD_RANGE_MAX + 1];
	size_t range_len;
	int range_bad; /* too long: ignored */
	char auth[HTTPD_AUTH_MAX + 1];
	size_t auth_len;
	int auth_bad; /* too long or repeated: none */
};

void httpd_hreq_init(struct hreq *q);
/* n more bytes of the request: 1 when its head is in, 0 when more is
 * needed, or the status to refuse it with (400, 431) and *why. */
int httpd_hreq_feed(struct hreq *q, const char *p, size_t n, const char **why);
/* The method and target of a request whose head is in, into req (path and
 * query on the heap): 0, or the status to refuse it with (405, 400) and
 * *why. */
int httpd_hreq_target(struct hreq *q, struct httpd_request *req, const char **why);

#endif
