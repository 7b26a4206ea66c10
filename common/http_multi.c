#include "common/http_multi.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buf.h"
#include "common/err.h"

#define HTTP_BUFFER_SIZE   (512L * 1024)
#define HTTP_MAX_REDIRECTS 10L

struct http_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	int events; /* what curl asked for last */
	struct http_multi *m;
	struct http_sock *prev, *next;
};

/* One running transfer; reached through CURLOPT_PRIVATE. */
struct http_xfer {
	CURL *easy;
	http_multi_done_cb cb;
	void *arg;
	struct http_xfer *prev, *next;
};

struct http_multi {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct http_sock *socks;
	struct http_xfer *xfers;
	int open_handles; /* uv handles whose close callback has not run */
	int depth;	  /* nesting of loop callbacks inside libcurl */
	int closing;
};

static uv_once_t curl_once = UV_ONCE_INIT;
static int curl_init_rc;

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : SB_EHTTP;
}

static void handle_closed(uv_handle_t *h)
{
	struct http_multi *m = h->data;
	if (h->type == UV_POLL)
		free(h); /* the poll is the first member of its http_sock */
	if (--m->open_handles == 0 && m->closing)
		free(m);
}

static void sock_close(struct http_sock *s)
{
	struct http_multi *m = s->m;
	if (s->prev)
		s->prev->next = s->next;
	else
		m->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	uv_close((uv_handle_t *)&s->poll, handle_closed);
}

static void xfer_unlink(struct http_multi *m, struct http_xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		m->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
}

static void shutdown_now(struct http_multi *m)
{
	while (m->xfers) {
		struct http_xfer *x = m->xfers;
		xfer_unlink(m, x);
		curl_multi_remove_handle(m->multi, x->easy);
		curl_easy_setopt(x->easy, CURLOPT_PRIVATE, NULL);
		free(x);
	}
	/* Cleanup may still report sockets through the callbacks; m stays whole
	 * until every handle below has closed. */
	CURLM *multi = m->multi;
	m->multi = NULL;
	curl_multi_cleanup(multi);
	while (m->socks)
		sock_close(m->socks);
	uv_close((uv_handle_t *)&m->timer, handle_closed);
}

static void check_done(struct http_multi *m)
{
	CURLMsg *msg;
	int pending;
	while (!m->closing && (msg = curl_multi_info_read(m->multi, &pending))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *easy = msg->easy_handle;
		CURLcode result = msg->data.result;
		struct http_xfer *x = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(m->multi, easy);
		if (!x)
			continue;
		http_multi_done_cb cb = x->cb;
		void *arg = x->arg;
		xfer_unlink(m, x);
		free(x);
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		cb(easy, result, arg);
	}
}

static void drive(struct http_multi *m, curl_socket_t fd, int flags)
{
	int running;
	m->depth++;
	curl_multi_socket_action(m->multi, fd, flags, &running);
	check_done(m);
	if (--m->depth == 0 && m->closing)
		shutdown_now(m);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct http_sock *s = (struct http_sock *)p;
	int flags = 0;
	/* On a socket error libuv stops the poll and passes no events. Let
	 * curl read and write so it meets the real error ("Connection reset by
	 * peer") rather than a bare "select/poll returned error". */
	if (status < 0)
		flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	drive(s->m, s->fd, flags);
	/* curl only reports changes; if it still wants this socket, the poll
	 * libuv stopped must be started again. s lives until its close
	 * callback, so it may be looked at after drive(). */
	if (status < 0 && !uv_is_closing((uv_handle_t *)p) && !uv_is_active((uv_handle_t *)p))
		uv_poll_start(p, s->events, on_poll);
}

static void on_timer(uv_timer_t *t)
{
	drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_multi *m = userp;
	struct http_sock *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s)
			sock_close(s);
		if (m->multi)
			curl_multi_assign(m->multi, fd, NULL);
		return 0;
	}
	if (!s) {
		if (m->closing)
			return -1;
		s = xcalloc(1, sizeof *s);
		if (uv_poll_init_socket(m->loop, &s->poll, fd) < 0) {
			free(s);
			return -1;
		}
		s->fd = fd;
		s->m = m;
		s->poll.data = m;
		s->next = m->socks;
		if (m->socks)
			m->socks->prev = s;
		m->socks = s;
		m->open_handles++;
		curl_multi_assign(m->multi, fd, s);
	}
	s->events = 0;
	if (what & CURL_POLL_IN)
		s->events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		s->events |= UV_WRITABLE;
	return uv_poll_start(&s->poll, s->events, on_poll) < 0 ? -1 : 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct http_multi *m = userp;
	if (uv_is_closing((uv_handle_t *)&m->timer))
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&m->timer);
	else
		uv_timer_start(&m->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

int http_multi_new(uv_loop_t *loop, struct http_multi **out)
{
	uv_once(&curl_once, curl_init_once);
	if (curl_init_rc < 0)
		return curl_init_rc;
	struct http_multi *m = xcalloc(1, sizeof *m);
	m->loop = loop;
	m->multi = curl_multi_init();
	if (!m->multi) {
		free(m);
		return SB_EHTTP;
	}
	uv_timer_init(loop, &m->timer);
	m->timer.data = m;
	m->open_handles = 1;
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	*out = m;
	return 0;
}

void http_multi_free(struct http_multi *m)
{
	if (!m || m->closing)
		return;
	m->closing = 1;
	if (m->depth == 0)
		shutdown_now(m);
}

int http_multi_add(struct http_multi *m, CURL *easy, http_multi_done_cb cb, void *arg)
{
	if (m->closing)
		return SB_ECANCELED;
	struct http_xfer *x = xcalloc(1, sizeof *x);
	x->easy = easy;
	x->cb = cb;
	x->arg = arg;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)x);
	/* libcurl answers by asking for a 0 ms timer: the transfer starts from
	 * the loop, not from here. */
	if (curl_multi_add_handle(m->multi, easy) != CURLM_OK) {
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		free(x);
		return SB_EHTTP;
	}
	x->next = m->xfers;
	if (m->xfers)
		m->xfers->prev = x;
	m->xfers = x;
	return 0;
}

void http_multi_remove(struct http_multi *m, CURL *easy)
{
	struct http_xfer *x = NULL;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
	if (!x || !m->multi)
		return;
	xfer_unlink(m, x);
	free(x);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
	curl_multi_remove_handle(m->multi, easy);
}

/* Response headers. */

void http_resp_reset(struct http_resp *r)
{
	memset(r, 0, sizeof *r);
	r->content_length = -1;
	r->range_total = -1;
	r->accept_ranges = -1;
	r->retry_after = -1;
}

/* Strict decimal: digits only, no sign, no overflow. */
static int parse_u64(const char *s, const char **end, uint64_t *out)
{
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *e;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno == ERANGE || v > INT64_MAX)
		return -ERANGE;
	*out = v;
	*end = e;
	return 0;
}

/* A value for messages and request headers: a control byte inside the
 * line (a lone CR, a tab in an ETag) becomes '?', so that neither splits a
 * line or a header it is copied into. */
static void copy_str(char *dst, size_t cap, const char *v)
{
	size_t n = strnlen(v, cap - 1); /* cut at cap - 1 bytes */
	memcpy(dst, v, n);
	dst[n] = '\0';
	for (char *c = dst; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

static void parse_content_range(struct http_resp *r, const char *v)
{
	uint64_t a, b, t;
	const char *p;
	if (strncasecmp(v, "bytes", 5) != 0)
		return;
	v += 5;
	while (*v == ' ')
		v++;
	if (*v == '*') {
		if (v[1] != '/' || parse_u64(v + 2, &p, &t) < 0 || *p)
			return;
		r->range_unsatisfied = 1;
		r->range_total = (int64_t)t;
		r->has_range = 1;
		return;
	}
	if (parse_u64(v, &p, &a) < 0 || *p != '-')
		return;
	if (parse_u64(p + 1, &p, &b) < 0 || *p != '/' || b < a)
		return;
	if (p[1] == '*' && !p[2]) {
		r->range_total = -1;
	} else {
		if (parse_u64(p + 1, &p, &t) < 0 || *p || b >= t)
			return;
		r->range_total = (int64_t)t;
	}
	r->range_first = a;
	r->range_last = b;
	r->has_range = 1;
}

static void parse_status_line(struct http_resp *r, const char *line)
{
	http_resp_reset(r);
	const char *p = strchr(line, ' ');
	uint64_t code;
	if (!p || parse_u64(p + 1, &p, &code) < 0 || code > 999)
		return;
	r->status = (long)code;
	while (*p == ' ')
		p++;
	copy_str(r->reason, sizeof r->reason, p);
}

int http_header_split(const char *line, size_t n, struct http_header *h)
{
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	const char *colon = n ? memchr(line, ':', n) : NULL;
	if (!colon || (n >= 5 && !memcmp(line, "HTTP/", 5)))
		return 0;
	const char *v = colon + 1, *e = line + n;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	h->name = line;
	h->name_len = (size_t)(colon - line);
	h->value = v;
	h->value_len = (size_t)(e - v);
	return 1;
}

int http_header_is(const struct http_header *h, const char *name)
{
	return strlen(name) == h->name_len && !strncasecmp(h->name, name, h->name_len);
}

int http_header_value(const struct http_header *h, char *out, size_t cap)
{
	size_t k = h->value_len < cap ? h->value_len : cap - 1;
	memcpy(out, h->value, k);
	out[k] = '\0';
	return k == h->value_len;
}

void http_resp_header(struct http_resp *r, const char *line, size_t n)
{
	char v[HTTP_ETAG_MAX + 64];
	struct http_header h;
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	if (n == 0) {
		r->complete = 1;
		return;
	}
	if (n >= 5 && !memcmp(line, "HTTP/", 5)) {
		if (n < sizeof v) {
			memcpy(v, line, n);
			v[n] = '\0';
			parse_status_line(r, v);
		}
		return;
	}
	if (!http_header_split(line, n, &h) || !http_header_value(&h, v, sizeof v))
		return; /* nothing we read is this long */
	uint64_t u;
	const char *end;
	if (http_header_is(&h, "content-length")) {
		if (parse_u64(v, &end, &u) == 0 && !*end)
			r->content_length = (int64_t)u;
	} else if (http_header_is(&h, "content-range")) {
		parse_content_range(r, v);
	} else if (http_header_is(&h, "accept-ranges")) {
		r->accept_ranges = strcasestr(v, "bytes") ? 1 : 0;
	} else if (http_header_is(&h, "etag")) {
		copy_str(r->etag, sizeof r->etag, v);
	} else if (http_header_is(&h, "last-modified")) {
		copy_str(r->last_modified, sizeof r->last_modified, v);
	} else if (http_header_is(&h, "retry-after")) {
		if (parse_u64(v, &end, &u) == 0 && !*end) {
			r->retry_after =
			    u > HTTP_RETRY_AFTER_MAX_S ? HTTP_RETRY_AFTER_MAX_S : (long)u;
		} else {
			time_t at = curl_getdate(v, NULL);
			time_t now = time(NULL);
			if (at != (time_t)-1)
				r->retry_after = at <= now ? 0
						 : at - now > HTTP_RETRY_AFTER_MAX_S
						     ? HTTP_RETRY_AFTER_MAX_S
						     : (long)(at - now);
		}
	}
}

static const struct {
	long status;
	const char *reason;
} reasons[] = {
    {200, "OK"},
    {206, "Partial Content"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {410, "Gone"},
    {412, "Precondition Failed"},
    {416, "Range Not Satisfiable"},
    {429, "Too Many Requests"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

const char *http_resp_reason(const struct http_resp *r)
{
	if (r->reason[0])
		return r->reason;
	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (reasons[i].status == r->status)
			return reasons[i].reason;
	return "";
}

int http_etag_is_weak(const char *etag)
{
	return etag[0] == 'W' && etag[1] == '/';
}

void http_etag_opaque(const char *etag, char *out, size_t cap)
{
	if (http_etag_is_weak(etag))
		etag += 2;
	size_t n = strlen(etag);
	if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
		etag++;
		n -= 2;
	}
	snprintf(out, cap, "%.*s", (int)n, etag);
}

int http_status_error(long status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 404:
	case 410:
		return SB_ENOTFOUND;
	case 401:
	case 403:
		return SB_EDENIED;
	}
	if (status >= 500)
		return SB_EHTTP5XX;
	if (status >= 400)
		return SB_EHTTP4XX;
	return SB_EHTTP;
}

int http_status_retryable(long status)
{
	return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

int http_curl_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_AGAIN:
		return 1;
	default:
		return 0;
	}
}

uint64_t http_backoff_ms(unsigned n, long retry_after, uint64_t *rng)
{
	if (retry_after >= 0)
		return (uint64_t)(retry_after > HTTP_RETRY_AFTER_MAX_S ? HTTP_RETRY_AFTER_MAX_S
								       : retry_after) *
		       1000;
	uint64_t d = HTTP_RETRY_BASE_MS;
	for (unsigned i = 1; i < n && d < HTTP_RETRY_CAP_MS; i++)
		d *= 2;
	if (d > HTTP_RETRY_CAP_MS)
		d = HTTP_RETRY_CAP_MS;
	/* Jitter keeps parallel transfers that failed together from retrying
	 * in lockstep against a server that is already struggling. */
	uint64_t x = *rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*rng = x;
	return d / 2 + x % (d / 2 + 1);
}

void http_easy_defaults(CURL *easy, unsigned connect_seconds, unsigned stall_seconds)
{
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(easy, CURLOPT_MAXREDIRS, HTTP_MAX_REDIRECTS);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* Several HTTP/1.1 connections carry parallel ranges better than
	 * streams multiplexed over one TCP connection. */
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, HTTP_BUFFER_SIZE);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, (long)connect_seconds);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, (long)stall_seconds);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
}
