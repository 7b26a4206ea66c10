/* Reading a request: its line and header fields through http-parser,
 * its target, and Range headers. */
#include "common/net/httpd.h"
#include "common/net/httpd_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct hreq *q = p->data;
	if (q->in_value) {
		q->in_value = 0;
		q->field_len = 0;
	}
	size_t n = len < HTTPD_FIELD_MAX - q->field_len ? len : HTTPD_FIELD_MAX - q->field_len;
	memcpy(q->field + q->field_len, at, n);
	q->field_len += n;
	q->field[q->field_len] = '\0';
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct hreq *q = p->data;
	if (!q->in_value) {
		q->in_value = 1;
		q->value_is_range = !strcasecmp(q->field, "range");
		if (q->value_is_range && q->range_len) /* a second Range: ignore both */
			q->range_bad = 1;
		q->value_is_auth = !strcasecmp(q->field, "authorization");
		if (q->value_is_auth && q->auth_len) /* a second one: none */
			q->auth_bad = 1;
	}
	if (q->value_is_auth) {
		if (len > HTTPD_AUTH_MAX - q->auth_len) {
			q->auth_bad = 1;
			return 0;
		}
		memcpy(q->auth + q->auth_len, at, len);
		q->auth_len += len;
		q->auth[q->auth_len] = '\0';
		return 0;
	}
	if (!q->value_is_range)
		return 0;
	if (len > HTTPD_RANGE_MAX - q->range_len) {
		q->range_bad = 1;
		return 0;
	}
	memcpy(q->range + q->range_len, at, len);
	q->range_len += len;
	q->range[q->range_len] = '\0';
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct hreq *q = p->data;
	if (q->url.len + len > HTTPD_URL_MAX)
		return -1;
	buf_append(&q->url, at, len);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct hreq *q = p->data;
	q->headers_done = 1;
	/* The body, if any, is not wanted: stop here and answer. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

void httpd_hreq_init(struct hreq *q)
{
	memset(q, 0, sizeof *q);
	http_parser_init(&q->parser, HTTP_REQUEST);
	q->parser.data = q;
}

/* n more bytes of the request: 1 when its head is in, 0 when more is
 * needed, or the status to refuse it with (400, 431) and *why. */
int httpd_hreq_feed(struct hreq *q, const char *p, size_t n, const char **why)
{
	q->nread += n;
	http_parser_execute(&q->parser, &parser_settings, p, n);
	enum http_errno e = HTTP_PARSER_ERRNO(&q->parser);
	if (q->headers_done)
		return 1;
	if (e == HPE_HEADER_OVERFLOW || e == HPE_CB_url || q->nread > HTTPD_REQUEST_MAX) {
		*why = "request too large";
		return 431;
	}
	if (e != HPE_OK) {
		*why = http_errno_description(e);
		return 400;
	}
	return 0;
}

/* The method and target of a request whose head is in, into req (path and
 * query on the heap): 0, or the status to refuse it with (405, 400) and
 * *why. */
int httpd_hreq_target(struct hreq *q, struct httpd_request *req, const char **why)
{
	int method = q->parser.method;
	if (method != HTTP_GET && method != HTTP_HEAD) {
		*why = "method not allowed";
		return 405;
	}
	struct http_parser_url u;
	http_parser_url_init(&u);
	const char *url = buf_cstr(&q->url);
	if (http_parser_parse_url(url, q->url.len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
		*why = "bad request target";
		return 400;
	}
	req->head = method == HTTP_HEAD;
	req->path = xstrndup(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	req->query = u.field_set & (1 << UF_QUERY)
			 ? xstrndup(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len)
			 : xstrdup("");
	return 0;
}

int httpd_parse_request(const void *data, size_t len, size_t chunk, struct httpd_parsed *out)
{
	struct hreq q;
	struct httpd_request req = {0};
	const char *why;
	int status = -1;
	memset(out, 0, sizeof *out);
	httpd_hreq_init(&q);
	if (chunk == 0)
		chunk = len ? len : 1;
	for (size_t off = 0; off < len && status == -1;) {
		size_t n = len - off < chunk ? len - off : chunk;
		int r = httpd_hreq_feed(&q, (const char *)data + off, n, &why);
		off += n;
		if (r == 1)
			status = httpd_hreq_target(&q, &req, &why);
		else if (r > 1)
			status = r;
	}
	if (status == 0) {
		out->head = req.head;
		out->path = req.path;
		out->query = req.query;
		out->range = q.range_len && !q.range_bad ? xstrdup(q.range) : NULL;
		out->authorization = q.auth_len && !q.auth_bad ? xstrdup(q.auth) : NULL;
	}
	buf_close(&q.url);
	return status;
}

void httpd_parsed_close(struct httpd_parsed *p)
{
	free(p->path);
	free(p->query);
	free(p->range);
	free(p->authorization);
	memset(p, 0, sizeof *p);
}

/* Digits at *p into *v (no sign, no overflow); 1 when some were read. */
static int range_number(const char **p, uint64_t *v)
{
	const char *s = *p;
	*v = 0;
	while (*s >= '0' && *s <= '9') {
		if (*v > (UINT64_MAX - 9) / 10)
			return 0;
		*v = *v * 10 + (uint64_t)(*s++ - '0');
	}
	int got = s != *p;
	*p = s;
	return got;
}

int httpd_parse_range(const char *hdr, uint64_t size, uint64_t *off, uint64_t *len)
{
	uint64_t a = 0, b = 0;
	if (!hdr || strncasecmp(hdr, "bytes=", 6) != 0)
		return 0;
	const char *p = hdr + 6;
	while (*p == ' ')
		p++;
	int has_a = range_number(&p, &a);
	if (*p++ != '-')
		return 0;
	int has_b = range_number(&p, &b);
	while (*p == ' ')
		p++;
	if (*p || (!has_a && !has_b) || (has_a && has_b && b < a))
		return 0; /* several ranges, or malformed: the whole body */
	if (!has_a) {	  /* the last b bytes */
		if (b == 0 || size == 0)
			return -1;
		*off = b >= size ? 0 : size - b;
		*len = size - *off;
		return 1;
	}
	if (a >= size)
		return -1;
	*off = a;
	*len = (has_b && b < size - 1 ? b + 1 : size) - a;
	return 1;
}
