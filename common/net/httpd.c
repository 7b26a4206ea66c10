#include "common/net/httpd.h"
#include "common/net/httpd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

#define HTTPD_DEFAULT_TYPE "text/plain; charset=utf-8"
#define HTTPD_POLL_MS	   100

struct httpd {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	struct httpd_route *routes;
	size_t nroutes;
	struct prefix_route *prefixes;
	size_t nprefixes;
	struct hconn *conns; /* open connections */
	size_t nconns;
	size_t nalive; /* connections not yet freed, closing ones included */
	int stopping;
	int listener_closed;
	struct admit admit; /* connections without a whole request */
	int admit_closed;
};

struct prefix_route {
	const char *prefix;
	httpd_async_handler fn;
	void *arg;
};

struct hconn {
	struct httpd *h;
	struct httpd_request req;
	struct hconn *next, **prev;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t write;
	uv_shutdown_t shutdown;
	struct hreq q;
	struct buf out;
	int responded;
	int handles; /* open libuv handles ... */
	int refs;    /* ... and an async handler or sendfile job: freed when both are 0 */
	int async;   /* an asynchronous handler has the request */
	struct admit_slot slot; /* until the request is in */
	unsigned header_ms;
	/* A file body: sent after the head, one chunk per pool job. */
	int fd;
	uint64_t file_off, file_left;
	int sf_stop; /* the connection closes: a job in flight gives up (atomic) */
	char rbuf[4096];
};

/* One chunk of a file body, on the pool. */
struct hsend {
	uv_work_t work;
	struct hconn *c;
	int sock; /* a dup of the socket: the loop may close its own meanwhile */
	int fd;
	uint64_t off;
	size_t len, done;
	int rc;
};

static void maybe_free_server(struct httpd *h)
{
	if (!h->stopping || !h->listener_closed || !h->admit_closed || h->nalive)
		return;
	free(h->routes);
	free(h->prefixes);
	free(h);
}

static void conn_free(struct hconn *c)
{
	struct httpd *h = c->h;
	if (c->fd >= 0)
		close(c->fd);
	buf_close(&c->q.url);
	buf_close(&c->out);
	free(c->req.path);
	free(c->req.query);
	free(c);
	h->nalive--;
	maybe_free_server(h);
}

static void conn_handle_closed(uv_handle_t *handle)
{
	struct hconn *c = handle->data;
	if (--c->handles == 0 && c->refs == 0)
		conn_free(c);
}

static void conn_unref(struct hconn *c)
{
	if (--c->refs == 0 && c->handles == 0)
		conn_free(c);
}

static void hconn_close(struct hconn *c)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	admit_leave(&c->slot, ADMIT_NONE, NULL);
	__atomic_store_n(&c->sf_stop, 1, __ATOMIC_RELAXED);
	*c->prev = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->h->nconns--;
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static const char *status_text(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 206:
		return "Partial Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 416:
		return "Range Not Satisfiable";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return status >= 500 ? "Error" : "Status";
	}
}

static void timer_cb(uv_timer_t *t);

static void shutdown_done(uv_shutdown_t *req, int status)
{
	hconn_close(req->data);
}

static void finish(struct hconn *c)
{
	if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, shutdown_done) < 0)
		hconn_close(c);
}

/* Pool: up to HTTPD_SENDFILE_CHUNK bytes into the socket, waiting for room
 * as needed, giving up after HTTPD_TIMEOUT_MS without progress. */
static void sendfile_run(uv_work_t *w)
{
	struct hsend *sw = w->data;
	off_t off = (off_t)sw->off;
	unsigned idle_ms = 0;
	while (sw->done < sw->len && !__atomic_load_n(&sw->c->sf_stop, __ATOMIC_RELAXED)) {
		ssize_t k = sendfile(sw->sock, sw->fd, &off, sw->len - sw->done);
		if (k > 0) {
			sw->done += (size_t)k;
			idle_ms = 0;
		} else if (k == 0) {
			sw->rc = SB_ETRUNCATED; /* the file is shorter than it was */
			return;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd pfd = {.fd = sw->sock, .events = POLLOUT};
			int n = poll(&pfd, 1, HTTPD_POLL_MS);
			if (n < 0 && errno != EINTR) {
				sw->rc = -errno;
				return;
			}
			if (n == 0 && (idle_ms += HTTPD_POLL_MS) >= HTTPD_TIMEOUT_MS) {
				sw->rc = -ETIMEDOUT;
				return;
			}
		} else if (errno != EINTR) {
			sw->rc = -errno;
			return;
		}
	}
	if (sw->done < sw->len && !sw->rc)
		sw->rc = SB_ECANCELED;
}

static void send_file_chunk(struct hconn *c);

static void sendfile_done(uv_work_t *w, int status)
{
	struct hsend *sw = w->data;
	struct hconn *c = sw->c;
	int rc = status < 0 ? status : sw->rc;
	close(sw->sock);
	c->file_off += sw->done;
	c->file_left -= sw->done;
	free(sw);
	if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
		if (rc < 0)
			hconn_close(c);
		else if (c->file_left)
			send_file_chunk(c);
		else
			finish(c);
	}
	conn_unref(c);
}

static void send_file_chunk(struct hconn *c)
{
	uv_os_fd_t sock;
	int rc = uv_fileno((uv_handle_t *)&c->tcp, &sock);
	int dup_sock = rc < 0 ? -1 : fcntl(sock, F_DUPFD_CLOEXEC, 0);
	if (dup_sock < 0) {
		hconn_close(c);
		return;
	}
	struct hsend *sw = xcalloc(1, sizeof *sw);
	sw->c = c;
	sw->sock = dup_sock;
	sw->fd = c->fd;
	sw->off = c->file_off;
	sw->len = c->file_left < HTTPD_SENDFILE_CHUNK ? (size_t)c->file_left : HTTPD_SENDFILE_CHUNK;
	sw->work.data = sw;
	if (uv_queue_work(c->h->loop, &sw->work, sendfile_run, sendfile_done) < 0) {
		close(dup_sock);
		free(sw);
		hconn_close(c);
		return;
	}
	c->refs++;
	uv_timer_stop(&c->timer); /* the job gives up on its own after a stall */
}

static void write_done(uv_write_t *req, int status)
{
	struct hconn *c = req->data;
	if (status < 0)
		hconn_close(c);
	else if (c->file_left)
		send_file_chunk(c);
	else
		finish(c);
}

/* Queue the response and close once it is written; takes resp's file. */
static void respond(struct hconn *c, struct httpd_response *resp, int head_only)
{
	if (c->responded)
		return;
	c->responded = 1;
	admit_leave(&c->slot, ADMIT_NONE, NULL);
	uv_read_stop((uv_stream_t *)&c->tcp);
	uint64_t blen = resp->fd >= 0 ? resp->file_len : resp->body.len;
	buf_printf(&c->out,
		   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %llu\r\n"
		   "Cache-Control: no-store\r\nConnection: close\r\n%s",
		   resp->status, status_text(resp->status),
		   resp->content_type ? resp->content_type : HTTPD_DEFAULT_TYPE,
		   (unsigned long long)blen, resp->status == 405 ? "Allow: GET, HEAD\r\n" : "");
	buf_append(&c->out, resp->headers.ptr, resp->headers.len);
	buf_append_str(&c->out, "\r\n");
	if (resp->fd >= 0) {
		c->fd = resp->fd;
		resp->fd = -1;
		c->file_off = resp->file_off;
		c->file_left = head_only ? 0 : resp->file_len;
	} else if (blen && !head_only) {
		buf_append(&c->out, resp->body.ptr, resp->body.len);
	}
	uv_buf_t b = uv_buf_init((char *)c->out.ptr, (unsigned)c->out.len);
	c->write.data = c;
	c->shutdown.data = c;
	uv_timer_start(&c->timer, timer_cb, HTTPD_TIMEOUT_MS, 0); /* bounds the write too */
	if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, write_done) < 0)
		hconn_close(c);
}

static void respond_text(struct hconn *c, int status, const char *text)
{
	struct httpd_response resp;
	httpd_response_init(&resp);
	resp.status = status;
	buf_printf(&resp.body, "%s\n", text);
	respond(c, &resp, 0);
	httpd_response_close(&resp);
}

static const struct prefix_route *find_prefix(const struct httpd *h, const char *path)
{
	for (size_t i = 0; i < h->nprefixes; i++)
		if (!strncmp(h->prefixes[i].prefix, path, strlen(h->prefixes[i].prefix)))
			return &h->prefixes[i];
	return NULL;
}

void httpd_route_prefix(struct httpd *h, const char *prefix, httpd_async_handler fn, void *arg)
{
	h->prefixes = xrealloc(h->prefixes, (h->nprefixes + 1) * sizeof *h->prefixes);
	h->prefixes[h->nprefixes++] = (struct prefix_route){prefix, fn, arg};
}

static void route(struct hconn *c)
{
	const char *why;
	if (c->req.path || c->responded)
		return; /* routed already */
	int status = httpd_hreq_target(&c->q, &c->req, &why);
	if (status) {
		respond_text(c, status, why);
		return;
	}
	const struct httpd_route *r = NULL;
	for (size_t i = 0; i < c->h->nroutes && !r; i++)
		if (!strcmp(c->h->routes[i].path, c->req.path))
			r = &c->h->routes[i];
	const struct prefix_route *pr = r ? NULL : find_prefix(c->h, c->req.path);
	if (pr) {
		/* The handler answers when it can; meanwhile the request is in. */
		admit_leave(&c->slot, ADMIT_NONE, NULL);
		uv_read_stop((uv_stream_t *)&c->tcp);
		uv_timer_start(&c->timer, timer_cb, HTTPD_TIMEOUT_MS, 0);
		c->async = 1;
		c->refs++;
		pr->fn(pr->arg, &c->req);
		return;
	}
	if (!r) {
		respond_text(c, 404, "not found");
		return;
	}
	struct httpd_response resp;
	httpd_response_init(&resp);
	r->fn(r->arg, c->req.path, c->req.query, &resp);
	respond(c, &resp, c->req.head);
	httpd_response_close(&resp);
}

static struct hconn *request_conn(const struct httpd_request *req)
{
	return (struct hconn *)((char *)req - offsetof(struct hconn, req));
}

int httpd_request_head(const struct httpd_request *req)
{
	return req->head;
}

const char *httpd_request_path(const struct httpd_request *req)
{
	return req->path;
}

const char *httpd_request_query(const struct httpd_request *req)
{
	return req->query;
}

const char *httpd_request_range(const struct httpd_request *req)
{
	const struct hconn *c = request_conn(req);
	return c->q.range_len && !c->q.range_bad ? c->q.range : NULL;
}

const char *httpd_request_authorization(const struct httpd_request *req)
{
	const struct hconn *c = request_conn(req);
	return c->q.auth_len && !c->q.auth_bad ? c->q.auth : NULL;
}

void httpd_respond(struct httpd_request *req, struct httpd_response *resp)
{
	struct hconn *c = request_conn(req);
	if (!c->async)
		fatal("httpd: a request answered twice");
	c->async = 0;
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		respond(c, resp, req->head); /* no-op when the 503 went first */
	httpd_response_close(resp);
	conn_unref(c);
}

void httpd_request_extend(struct httpd_request *req, uint64_t ms)
{
	struct hconn *c = request_conn(req);
	if (c->async && !c->responded && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_timer_start(&c->timer, timer_cb, ms, 0);
}

void httpd_response_init(struct httpd_response *resp)
{
	memset(resp, 0, sizeof *resp);
	resp->status = 200;
	resp->fd = -1;
}

void httpd_response_close(struct httpd_response *resp)
{
	buf_close(&resp->body);
	buf_close(&resp->headers);
	if (resp->fd >= 0)
		close(resp->fd);
	httpd_response_init(resp);
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
	struct hconn *c = handle->data;
	/* Each read is parsed before the next one is asked for. */
	b->base = c->rbuf;
	b->len = sizeof c->rbuf;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct hconn *c = s->data;
	if (n == 0)
		return;
	if (n < 0) {
		hconn_close(c);
		return;
	}
	const char *why;
	admit_heard(&c->slot);
	int r = httpd_hreq_feed(&c->q, b->base, (size_t)n, &why);
	if (r == 1)
		route(c);
	else if (r > 1)
		respond_text(c, r, why);
}

static void timer_cb(uv_timer_t *t)
{
	struct hconn *c = t->data;
	char why[64];
	if (c->responded) {
		hconn_close(c);
		return;
	}
	if (c->async) { /* the handler is late: the client hears now */
		respond_text(c, 503, "no answer in time");
		return;
	}
	snprintf(why, sizeof why, "no whole request within %u ms", c->header_ms);
	admit_leave(&c->slot, ADMIT_TIMEOUT, why);
	respond_text(c, 408, "request timeout");
}

/* Admission (common/net/admit.h): 0 with the header deadline set, or a
 * negative error when the connection must be closed now. */
static int admit_accepted(struct httpd *h, struct hconn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	uv_os_fd_t fd;

	int rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
	if (rc == 0)
		rc = uv_fileno((uv_handle_t *)&c->tcp, &fd);
	if (rc == 0 && h->nconns >= HTTPD_CONN_MAX) {
		admit_note(&h->admit, ADMIT_OVERALL, NULL, "too many connections are open");
		rc = -EBUSY;
	}
	if (rc == 0)
		rc = admit_enter(&h->admit, &c->slot, (struct sockaddr *)&ss, fd, &c->header_ms);
	return rc;
}

static void accept_one(struct httpd *h)
{
	struct hconn *c = xcalloc(1, sizeof *c);
	c->h = h;
	c->fd = -1;
	uv_tcp_init(h->loop, &c->tcp);
	c->tcp.data = c;
	c->handles = 1;
	h->nalive++;
	if (uv_accept((uv_stream_t *)&h->tcp, (uv_stream_t *)&c->tcp) < 0 ||
	    admit_accepted(h, c) < 0) {
		uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
		return;
	}
	uv_timer_init(h->loop, &c->timer);
	c->timer.data = c;
	c->handles = 2;
	c->next = h->conns;
	c->prev = &h->conns;
	if (h->conns)
		h->conns->prev = &c->next;
	h->conns = c;
	h->nconns++;
	httpd_hreq_init(&c->q);
	uv_timer_start(&c->timer, timer_cb, c->header_ms, 0);
	if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0)
		hconn_close(c);
}

static void connection_cb(uv_stream_t *server, int status)
{
	struct httpd *h = server->data;
	if (admit_connection(&h->admit, status))
		accept_one(h);
}

static void accept_resume(struct admit *a)
{
	accept_one(a->cfg.data);
}

static void evict(struct admit_slot *s)
{
	hconn_close((struct hconn *)((char *)s - offsetof(struct hconn, slot)));
}

static void admit_closed(struct admit *a)
{
	struct httpd *h = a->cfg.data;
	h->admit_closed = 1;
	maybe_free_server(h);
}

int httpd_parse_addr(const char *addr, struct sockaddr_storage *out)
{
	const char *colon = strrchr(addr, ':');
	char host[256];
	memset(out, 0, sizeof *out);
	if (!colon || !colon[1])
		return SB_EURI;
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port > 65535)
		return SB_EURI;
	size_t hlen = (size_t)(colon - addr);
	if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
		if (hlen - 2 >= sizeof host)
			return SB_EURI;
		memcpy(host, addr + 1, hlen - 2);
		host[hlen - 2] = '\0';
		return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) ? SB_EURI : 0;
	}
	if (hlen >= sizeof host)
		return SB_EURI;
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (!strcmp(host, "") || !strcmp(host, "*"))
		snprintf(host, sizeof host, "0.0.0.0");
	else if (!strcmp(host, "localhost"))
		snprintf(host, sizeof host, "127.0.0.1");
	return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) ? SB_EURI : 0;
}

static void listener_closed(uv_handle_t *handle)
{
	struct httpd *h = handle->data;
	h->listener_closed = 1;
	maybe_free_server(h);
}

int httpd_start(uv_loop_t *loop, const char *addr, const struct httpd_route *routes, size_t nroutes,
		struct httpd **out)
{
	struct sockaddr_storage sa;
	int rc = httpd_parse_addr(addr, &sa);
	*out = NULL;
	if (rc < 0)
		return rc;
	struct httpd *h = xcalloc(1, sizeof *h);
	h->loop = loop;
	h->routes = xcalloc(nroutes + 1, sizeof *routes);
	if (nroutes)
		memcpy(h->routes, routes, nroutes * sizeof *routes);
	h->nroutes = nroutes;
	h->admit_closed = 1; /* until admit_init */
	uv_tcp_init(loop, &h->tcp);
	h->tcp.data = h;
	if ((rc = uv_tcp_bind(&h->tcp, (struct sockaddr *)&sa, 0)) < 0 ||
	    (rc = admit_listen(&h->tcp, connection_cb)) < 0) {
		h->stopping = 1;
		uv_close((uv_handle_t *)&h->tcp, listener_closed);
		return rc;
	}
	struct admit_config ac = {.probes = 1, .evict = evict, .resume = accept_resume, .data = h};
	char what[ADMIT_WHAT_MAX];
	snprintf(what, sizeof what, "http port %d", httpd_port(h));
	admit_init(&h->admit, loop, what, &ac);
	h->admit_closed = 0;
	httpd_set_limits(h, NULL);
	*out = h;
	return 0;
}

void httpd_set_limits(struct httpd *h, const struct httpd_limits *lim)
{
	static const struct httpd_limits none;
	struct admit_config *ac = &h->admit.cfg;
	if (!lim)
		lim = &none;
	ac->per_addr_max = lim->per_addr ? lim->per_addr : HTTPD_PENDING_PER_ADDR;
	ac->total_max = lim->pending ? lim->pending : HTTPD_PENDING_MAX;
	ac->deadline_ms = lim->header_ms ? lim->header_ms : HTTPD_HEADER_MS;
	ac->busy_deadline_ms = lim->header_busy_ms ? lim->header_busy_ms : HTTPD_HEADER_BUSY_MS;
}

const struct admit *httpd_admit(const struct httpd *h)
{
	return &h->admit;
}

void httpd_metrics(const struct httpd *h, struct buf *out)
{
	admit_metrics(&h->admit, out, "syncbit_http_connections",
		      "HTTP connections closed before a whole request arrived, by reason.");
}

int httpd_port(const struct httpd *h)
{
	struct sockaddr_storage sa;
	int len = sizeof sa;
	if (uv_tcp_getsockname(&h->tcp, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	if (sa.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
	return ntohs(((struct sockaddr_in *)&sa)->sin_port);
}

void httpd_stop(struct httpd *h)
{
	if (!h || h->stopping)
		return;
	h->stopping = 1;
	while (h->conns)
		hconn_close(h->conns);
	uv_close((uv_handle_t *)&h->tcp, listener_closed);
	admit_close(&h->admit, admit_closed);
}
