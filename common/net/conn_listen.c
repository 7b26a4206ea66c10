/* Listening: accept connections and admit them into the handshake
 * (common/net/admit.h). */
#include "common/net/conn.h"
#include "common/net/conn_int.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

struct conn_listener {
	uv_tcp_t tcp;
	uv_loop_t *loop;
	struct conn_config cfg; /* token, key and node point at our copies */
	struct secure_token token;
	struct secure_keypair key;
	struct handshake_replay *replay; /* first messages seen */
	char *node;
	struct conn_callbacks cb;
	void *data;
	void (*on_accept)(struct conn_listener *l, struct conn *c);
	int port;
	int closing;
	struct admit admit; /* connections in the handshake */
	int handles;	    /* the socket, and admit once listening */
};

/* Admission (common/net/admit.h): 0 with the handshake deadline set, or a
 * negative error when the connection must be closed now. */
static int admit_accepted(struct conn_listener *l, struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	uv_os_fd_t fd;
	unsigned deadline;

	int rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
	if (rc == 0)
		rc = uv_fileno((uv_handle_t *)&c->tcp, &fd);
	if (rc == 0)
		rc = admit_enter(&l->admit, &c->slot, (struct sockaddr *)&ss, fd, &deadline);
	if (rc == 0)
		c->handshake_ms = deadline;
	return rc;
}

static void accept_one(struct conn_listener *l)
{
	struct conn *c;

	if (conn_new(l->loop, &l->cfg, &l->cb, l->data, 0, &c) != 0)
		fatal("listener config no longer valid");
	conn_tcp_open(c);
	int rc = uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp);
	if (rc == 0)
		rc = admit_accepted(l, c);
	if (rc == 0 && conn_hs_init(c, &l->cfg, l->replay) != 0)
		fatal("listener config no longer valid");
	if (rc < 0) {
		log_debug("accept on port %d: %s", l->port, sb_strerror(rc));
		memset(&c->cb, 0, sizeof c->cb); /* never handed out: no callbacks */
		conn_close(c, rc);
		return;
	}
	if (l->on_accept)
		l->on_accept(l, c);
	if (c->state != ST_CLOSING)
		conn_begin(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct conn_listener *l = server->data;

	if (admit_connection(&l->admit, status))
		accept_one(l);
}

static void accept_resume(struct admit *a)
{
	accept_one(a->cfg.data);
}

static void evict_preauth(struct admit_slot *s)
{
	struct conn *c = (struct conn *)((char *)s - offsetof(struct conn, slot));

	conn_fail(c, -ECONNABORTED, "%s dropped in the handshake to make room", c->peer_addr);
}

static void listener_release(struct conn_listener *l)
{
	if (--l->handles > 0)
		return;
	sodium_memzero(&l->token, sizeof l->token);
	secure_keypair_close(&l->key);
	free(l->replay);
	free(l->node);
	free(l);
}

static void listener_closed(uv_handle_t *h)
{
	listener_release(h->data);
}

static void listener_admit_closed(struct admit *a)
{
	listener_release(a->cfg.data);
}

static void listener_admit_init(struct conn_listener *l, const struct conn_config *cfg)
{
	unsigned hs_ms = cfg->handshake_ms ? cfg->handshake_ms : CONN_HANDSHAKE_MS;
	struct admit_config ac = {
	    .per_addr_max = cfg->preauth_per_addr ? cfg->preauth_per_addr : CONN_PREAUTH_PER_ADDR,
	    .total_max = cfg->preauth_max ? cfg->preauth_max : CONN_PREAUTH_MAX,
	    .deadline_ms = hs_ms,
	    .busy_deadline_ms =
		cfg->handshake_busy_ms ? cfg->handshake_busy_ms : CONN_HANDSHAKE_BUSY_MS,
	    .evict = evict_preauth,
	    .resume = accept_resume,
	    .data = l,
	};
	char what[ADMIT_WHAT_MAX];
	snprintf(what, sizeof what, "%s port %d", cfg->name ? cfg->name : "listener", l->port);
	admit_init(&l->admit, l->loop, what, &ac);
	l->handles++;
}

/* The first address host resolves to, for a listener (resolving names
 * blocks briefly; listeners start once, before the loop runs). */
static int listen_addr(uv_loop_t *loop, const char *addr, struct sockaddr_storage *ss)
{
	char host[256], port[8];
	struct addrinfo hints;
	uv_getaddrinfo_t req;

	if (conn_addr_split(addr, host, sizeof host, port, sizeof port) != 0)
		return -EINVAL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = uv_getaddrinfo(loop, &req, NULL, host[0] ? host : NULL, port, &hints);
	if (rc < 0)
		return SB_ENOTFOUND;
	memcpy(ss, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
	uv_freeaddrinfo(req.addrinfo);
	return 0;
}

int conn_listen(uv_loop_t *loop, const char *addr, const struct conn_config *cfg,
		const struct conn_callbacks *cb, void *data,
		void (*on_accept)(struct conn_listener *l, struct conn *c),
		struct conn_listener **out)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;

	if (!cfg || !cfg->token || !cb || !secure_node_valid(cfg->node ? cfg->node : "") ||
	    (!cfg->purposes && !cfg->purpose))
		return -EINVAL;
	int rc = listen_addr(loop, addr, &ss);
	if (rc)
		return rc;
	struct conn_listener *l = xcalloc(1, sizeof *l);
	l->loop = loop;
	l->cfg = *cfg;
	l->token = *cfg->token;
	l->cfg.token = &l->token;
	if (cfg->key)
		l->key = *cfg->key;
	else
		secure_keypair_new(&l->key);
	l->cfg.key = &l->key;
	l->replay = xcalloc(1, sizeof *l->replay);
	l->node = xstrdup(cfg->node ? cfg->node : "");
	l->cfg.node = l->node;
	l->cb = *cb;
	l->data = data;
	l->on_accept = on_accept;
	uv_tcp_init(loop, &l->tcp);
	l->tcp.data = l;
	l->handles = 1;
	/* libuv sets SO_REUSEADDR on every TCP bind. */
	if ((rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0)) == 0 &&
	    (rc = admit_listen(&l->tcp, on_connection)) == 0)
		rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
	if (rc < 0) {
		uv_close((uv_handle_t *)&l->tcp, listener_closed);
		return rc;
	}
	l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	listener_admit_init(l, cfg);
	*out = l;
	return 0;
}

int conn_listener_port(const struct conn_listener *l)
{
	return l->port;
}

void conn_listener_close(struct conn_listener *l)
{
	if (!l || l->closing)
		return;
	l->closing = 1;
	uv_close((uv_handle_t *)&l->tcp, listener_closed);
	admit_close(&l->admit, listener_admit_closed);
}

const struct admit *conn_listener_admit(const struct conn_listener *l)
{
	return &l->admit;
}

void conn_listener_metrics(const struct conn_listener *l, struct buf *out)
{
	admit_metrics(&l->admit, out, "syncbit_handshakes",
		      "Connections closed before they proved the join token, by reason.");
}
