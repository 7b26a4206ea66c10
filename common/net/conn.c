#include "common/net/conn.h"
#include "common/net/conn_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/log.h"

/* ---- addresses ---- */

/* "host:port" or "[v6]:port" into host and port; host may be empty. */
int conn_addr_split(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *h = addr, *hend, *p;

	if (addr[0] == '[') {
		h = addr + 1;
		hend = strchr(h, ']');
		if (!hend || hend[1] != ':')
			return -EINVAL;
		p = hend + 2;
	} else {
		hend = strrchr(addr, ':');
		if (!hend || memchr(addr, ':', (size_t)(hend - addr)))
			return -EINVAL;
		p = hend + 1;
	}
	size_t hlen = (size_t)(hend - h), plen = strlen(p);
	if (hlen >= hcap || plen == 0 || plen >= pcap || plen > 5)
		return -EINVAL;
	for (size_t i = 0; i < plen; i++)
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
	if (strtoul(p, NULL, 10) > 65535)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, p, plen + 1);
	return 0;
}

void conn_addr_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		uv_ip6_name(a, ip, sizeof ip);
		snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		uv_ip4_name(a, ip, sizeof ip);
		snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
	}
}

/* ---- lifecycle ---- */

static uv_once_t sigpipe_once = UV_ONCE_INIT;

/* A peer that resets the connection must fail a write with EPIPE, not kill
 * the process: libuv writes with plain write(2). A handler the program set
 * itself is left alone. */
static void sigpipe_ignore(void)
{
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
}

/* Every handle is closed and no request is pending: report and free. */
static void conn_finish(struct conn *c)
{
	int status = c->status;
	int err = status < 0 ? status : SB_ECANCELED;

	if (!c->ready_reported && c->cb.on_ready)
		c->cb.on_ready(c, err);
	conn_queue_fail(c, err);
	if (c->ai)
		uv_freeaddrinfo(c->ai);
	if (c->hs) {
		handshake_close(c->hs);
		free(c->hs);
	}
	secure_session_close(&c->sess);
	free(c->rbuf);
	frame_reader_close(&c->fr);
	buf_close(&c->rec);
	buf_close(&c->plain);
	buf_close(&c->wbuf);
	buf_close(&c->stage);
	if (c->cb.on_close)
		c->cb.on_close(c, status);
	free(c);
}

void conn_maybe_finish(struct conn *c)
{
	if (c->handles == 0 && !c->gai_pending)
		conn_finish(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->handles--;
	conn_maybe_finish(c);
}

/* How a connection that was in the handshake on a listener ended, for the
 * admission's counters: a client that left is not counted. */
static enum admit_reason preauth_reason(int status)
{
	switch (status) {
	case 0:
	case UV_EOF:
	case -ECONNRESET:
	case -ECONNABORTED:
	case -EPIPE:
	case SB_ECANCELED:
		return ADMIT_NONE;
	case -ETIMEDOUT:
		return ADMIT_TIMEOUT;
	default:
		return ADMIT_BAD_HANDSHAKE;
	}
}

void conn_close(struct conn *c, int status)
{
	if (!c || c->state == ST_CLOSING)
		return;
	c->state = ST_CLOSING;
	c->status = status;
	admit_leave(&c->slot, preauth_reason(status), c->error);
	__atomic_store_n(&c->sf_stop, 1, __ATOMIC_RELAXED);
	if (c->gai_pending)
		uv_cancel((uv_req_t *)&c->gai);
	if (c->tcp_open) {
		c->tcp_open = 0;
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	}
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void conn_fail(struct conn *c, int rc, const char *fmt, ...)
{
	va_list ap;

	if (c->state == ST_CLOSING)
		return;
	if (!c->error[0]) {
		va_start(ap, fmt);
		vsnprintf(c->error, sizeof c->error, fmt, ap);
		va_end(ap);
	}
	log_debug("conn %s: %s", c->peer_addr, c->error);
	conn_close(c, rc);
}

int conn_new(uv_loop_t *loop, const struct conn_config *cfg, const struct conn_callbacks *cb,
	     void *data, int initiator, struct conn **out)
{
	if (!cfg || !cfg->token || !cb)
		return -EINVAL;
	uv_once(&sigpipe_once, sigpipe_ignore);
	struct conn *c = xcalloc(1, sizeof *c);
	c->initiator = initiator;
	int rc = initiator ? conn_hs_init(c, cfg, NULL) : 0;
	if (rc) {
		free(c);
		return rc;
	}
	c->loop = loop;
	c->cb = *cb;
	c->data = data;
	c->state = ST_CONNECTING;
	c->body_max = cfg->body_max ? cfg->body_max : CONN_BODY_MAX;
	c->payload_max = cfg->payload_max ? cfg->payload_max : CONN_PAYLOAD_MAX;
	c->table = cfg->table;
	c->table_len = cfg->table ? cfg->table_len : 0;
	c->dial_ms = cfg->dial_ms ? cfg->dial_ms : CONN_DIAL_MS;
	c->handshake_ms = cfg->handshake_ms ? cfg->handshake_ms : CONN_HANDSHAKE_MS;
	c->idle_ms = cfg->idle_ms;
	if (cfg->bind_ip)
		snprintf(c->bind_ip, sizeof c->bind_ip, "%s", cfg->bind_ip);
	frame_reader_init(&c->fr, HANDSHAKE_HELLO_MAX, 0); /* handshake frames until ready */
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	*out = c;
	return 0;
}

void conn_tcp_open(struct conn *c)
{
	uv_tcp_init(c->loop, &c->tcp);
	c->tcp.data = c;
	c->tcp_open = 1;
	c->handles++;
}

/* ---- timers ---- */

void conn_on_timer(uv_timer_t *t)
{
	struct conn *c = t->data;

	switch (c->state) {
	case ST_RESOLVING:
	case ST_CONNECTING:
		conn_fail(c, -ETIMEDOUT, "no connection to %s within %u ms", c->peer_addr,
			  c->dial_ms);
		break;
	case ST_HANDSHAKE:
		conn_fail(c, -ETIMEDOUT, "handshake with %s did not finish within %u ms",
			  c->peer_addr, c->handshake_ms);
		break;
	case ST_READY: {
		uint64_t quiet = uv_now(c->loop) - c->last_in;
		if (quiet >= c->idle_ms)
			conn_fail(c, -ETIMEDOUT, "nothing received from %s for %u ms", c->peer_addr,
				  c->idle_ms);
		else
			uv_timer_start(&c->timer, conn_on_timer, c->idle_ms - quiet, 0);
		break;
	}
	case ST_CLOSING:
		break;
	}
}
/* ---- the socket is up ---- */

void conn_begin(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;

	c->state = ST_HANDSHAKE;
	c->last_in = uv_now(c->loop);
	uv_tcp_nodelay(&c->tcp, 1);
	/* A peer that vanished (link cut, host gone) is noticed once sent data
	 * stays unacknowledged this long, instead of after minutes of
	 * retransmissions; keepalives cover an idle socket. */
	uv_os_fd_t fd;
	unsigned user_timeout = CONN_USER_TIMEOUT_MS;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
	uv_tcp_keepalive(&c->tcp, 1, CONN_KEEPALIVE_S);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		conn_addr_name(&ss, c->peer_addr, sizeof c->peer_addr);
	uv_timer_start(&c->timer, conn_on_timer, c->handshake_ms, 0);
	int rc = conn_read_start(c);
	if (rc < 0) {
		conn_fail(c, rc, "read from %s: %s", c->peer_addr, uv_strerror(rc));
		return;
	}
	if (c->initiator)
		conn_hs_start(c);
}

/* ---- accessors ---- */

void conn_set_user_timeout(struct conn *c, unsigned ms)
{
	uv_os_fd_t fd;
	if (c->state != ST_CLOSING && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

void conn_set_data(struct conn *c, void *data)
{
	c->data = data;
}

void *conn_data(const struct conn *c)
{
	return c->data;
}

const char *conn_peer_node(const struct conn *c)
{
	return c->peer_node;
}

const uint8_t *conn_peer_key(const struct conn *c)
{
	return c->peer_key;
}

enum handshake_purpose conn_purpose(const struct conn *c)
{
	return c->purpose;
}

const char *conn_peer_addr(const struct conn *c)
{
	return c->peer_addr;
}

/* Splits "host:port" / "[v6]:port" at the port's colon: the host's length
 * (brackets kept) and where the port starts; NULL when there is no port. */
static const char *addr_port(const char *addr, size_t *host_len)
{
	const char *colon = strrchr(addr, ':');
	if (!colon || (addr[0] == '[' && colon[-1] != ']'))
		return NULL;
	*host_len = (size_t)(colon - addr);
	return colon + 1;
}

int conn_addr_unspecified(const char *addr)
{
	size_t n = 0;
	if (!addr || !addr_port(addr, &n))
		return 1;
	static const char *const any[] = {"", "0.0.0.0", "::", "[::]", "*"};
	for (size_t i = 0; i < sizeof any / sizeof any[0]; i++)
		if (strlen(any[i]) == n && !strncmp(addr, any[i], n))
			return 1;
	return 0;
}

char *conn_addr_resolve(const char *advertised, const char *seen)
{
	size_t hn = 0, sn = 0;
	const char *port = advertised ? addr_port(advertised, &hn) : NULL;
	if (!port || !conn_addr_unspecified(advertised) || !seen || !addr_port(seen, &sn))
		return xstrdup(advertised ? advertised : "");
	return xasprintf("%.*s:%s", (int)sn, seen, port);
}

int conn_encrypted(const struct conn *c)
{
	return c->encrypted;
}

const char *conn_cipher(const struct conn *c)
{
	return secure_cipher_name(c->cipher);
}

const char *conn_error(const struct conn *c)
{
	return c->error;
}

uint64_t conn_bytes_in(const struct conn *c)
{
	return c->bytes_in;
}

uint64_t conn_bytes_out(const struct conn *c)
{
	return c->bytes_out;
}
