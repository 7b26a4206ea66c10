/* Dialing: resolve host:port, then try each address in turn. */
#include "common/net/conn.h"
#include "common/net/conn_int.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

static void dial_next(struct conn *c);

static void on_retry_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	c->handles--;
	if (c->state == ST_CLOSING) {
		conn_maybe_finish(c);
		return;
	}
	conn_tcp_open(c);
	dial_next(c);
}

/* One address failed: try the next on a fresh socket, or give up. */
static void dial_failed(struct conn *c, int err)
{
	c->dial_err = err;
	if (!c->ai_next) {
		conn_fail(c, err, "cannot connect to %s: %s", c->peer_addr, uv_strerror(err));
		return;
	}
	c->tcp_open = 0;
	uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct conn *c = req->data;

	if (c->state == ST_CLOSING)
		return;
	if (status < 0)
		dial_failed(c, status);
	else
		conn_begin(c);
}

static void dial_next(struct conn *c)
{
	struct addrinfo *ai = c->ai_next;

	c->ai_next = ai->ai_next;
	c->connect.data = c;
	int rc = 0;
	if (c->bind_ip[0]) {
		struct sockaddr_storage local;
		rc = uv_ip4_addr(c->bind_ip, 0, (struct sockaddr_in *)&local);
		if (rc < 0)
			rc = uv_ip6_addr(c->bind_ip, 0, (struct sockaddr_in6 *)&local);
		if (rc == 0)
			rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&local, 0);
	}
	if (rc == 0)
		rc = uv_tcp_connect(&c->connect, &c->tcp, ai->ai_addr, on_connected);
	if (rc < 0)
		dial_failed(c, rc);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct conn *c = req->data;

	c->gai_pending = 0;
	if (c->state == ST_CLOSING) {
		uv_freeaddrinfo(res);
		conn_maybe_finish(c);
		return;
	}
	if (status < 0 || !res) {
		uv_freeaddrinfo(res);
		conn_fail(c, SB_ENOTFOUND, "cannot resolve %s: %s", c->peer_addr,
			  uv_strerror(status));
		return;
	}
	c->ai = c->ai_next = res;
	c->state = ST_CONNECTING;
	dial_next(c);
}

int conn_dial(uv_loop_t *loop, const char *addr, const struct conn_config *cfg,
	      const struct conn_callbacks *cb, void *data, struct conn **out)
{
	char host[256], port[8];
	struct addrinfo hints;
	struct conn *c;

	int rc = conn_addr_split(addr, host, sizeof host, port, sizeof port);
	if (rc || !host[0] || strcmp(port, "0") == 0)
		return -EINVAL;
	if ((rc = conn_new(loop, cfg, cb, data, 1, &c)) != 0)
		return rc;
	snprintf(c->peer_addr, sizeof c->peer_addr, "%s", addr);
	conn_tcp_open(c);
	c->state = ST_RESOLVING;
	uv_timer_start(&c->timer, conn_on_timer, c->dial_ms, 0);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	c->gai.data = c;
	rc = uv_getaddrinfo(loop, &c->gai, on_resolved, host, port, &hints);
	if (rc < 0)
		conn_fail(c, rc, "cannot resolve %s: %s", addr, uv_strerror(rc));
	else
		c->gai_pending = 1;
	*out = c;
	return 0;
}
