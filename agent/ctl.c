#include "agent/ctl.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/adhoc.h"
#include "agent/daemon.h"
#include "agent/fetch.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/net/httpd.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/source/source.h"
#include "common/uri.h"

struct client {
	uv_pipe_t pipe;
	struct ctl *ctl;
	struct buf in;
	char *waiting;		 /* dataset name a pull waits for */
	struct adhoc_pull *pull; /* a pull through the agent (agent/adhoc.h) */
	int closing;
	struct client *next;
};

struct ctl {
	uv_loop_t *loop;
	struct daemon *d;
	uv_pipe_t server;
	char *path;
	struct httpd *http;
	struct client *clients;
	int nclients;
	uv_timer_t progress;
	int handles; /* open handles: server, timer, clients; freed at 0 */
};

struct write_req {
	uv_write_t req;
	char *data;
};

static void write_done(uv_write_t *r, int status)
{
	struct write_req *w = (struct write_req *)r;
	free(w->data);
	free(w);
}

static void send_json(struct client *cl, json_t *o)
{
	char *s = jsonfmt_dumps(o);
	json_decref(o);
	if (!s || cl->closing) {
		free(s);
		return;
	}
	struct write_req *w = xcalloc(1, sizeof *w);
	w->data = xasprintf("%s\n", s);
	free(s);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)strlen(w->data));
	if (uv_write(&w->req, (uv_stream_t *)&cl->pipe, &b, 1, write_done) < 0) {
		free(w->data);
		free(w);
	}
}

/* One handle of c closed: free c after the last (ctl_free may have closed
 * the server and timer before a client's close callback ran). */
static void ctl_release(struct ctl *c)
{
	if (--c->handles == 0) {
		free(c->path);
		free(c);
	}
}

static void client_closed(uv_handle_t *h)
{
	struct client *cl = h->data;
	struct ctl *c = cl->ctl;
	for (struct client **p = &c->clients; *p; p = &(*p)->next)
		if (*p == cl) {
			*p = cl->next;
			break;
		}
	c->nclients--;
	if (cl->pull)
		adhoc_cancel(cl->pull);
	buf_close(&cl->in);
	free(cl->waiting);
	free(cl);
	ctl_release(c);
}

static void client_close(struct client *cl)
{
	if (cl->closing)
		return;
	cl->closing = 1;
	uv_close((uv_handle_t *)&cl->pipe, client_closed);
}

/* A message for the CLI: the URLs in it without their credentials. */
static json_t *text_json(const char *text)
{
	if (!text)
		return json_null();
	char *r = uri_redact(text);
	json_t *j = json_string(r);
	free(r);
	return j;
}

static json_t *progress_json(struct ctl *c, const char *name, int *finished)
{
	uint64_t bytes, have;
	int published;
	const char *error;
	*finished = 1;
	if (daemon_progress(c->d, name, &bytes, &have, &published, &error) < 0)
		return json_pack("{s:s, s:b, s:s}", "name", name, "ready", 0, "error",
				 "not assigned to this node");
	*finished = published;
	json_t *o = json_pack("{s:s, s:I, s:I, s:b}", "name", name, "bytes", (json_int_t)bytes,
			      "bytes_have", (json_int_t)have, "ready", published);
	json_object_set_new(o, "error", text_json(error));
	return o;
}

enum ctl_op ctl_request_parse(const char *line, char **name)
{
	json_error_t err;
	json_t *req = json_loads(line, 0, &err);
	const char *op = json_string_value(json_object_get(req, "op"));
	const char *n = json_string_value(json_object_get(req, "name"));
	const char *src = json_string_value(json_object_get(req, "source"));
	enum ctl_op r = !op				       ? CTL_OP_MALFORMED
			: !strcmp(op, "status")		       ? CTL_OP_STATUS
			: !strcmp(op, "ready") && n	       ? CTL_OP_READY
			: !strcmp(op, "pull") && n	       ? CTL_OP_PULL
			: !strcmp(op, "pull") && src && src[0] ? CTL_OP_PULL_SOURCE
			: !strcmp(op, "rm") && n && n[0]       ? CTL_OP_RM
							       : CTL_OP_UNKNOWN;
	*name = r == CTL_OP_READY || r == CTL_OP_PULL || r == CTL_OP_RM ? xstrdup(n)
		: r == CTL_OP_PULL_SOURCE				? xstrdup(src)
									: NULL;
	json_decref(req);
	return r;
}

int ctl_pull_parse(const char *line, char **target, uint32_t *block_size)
{
	json_t *req = json_loads(line, 0, NULL);
	json_t *t = json_object_get(req, "target"), *bs = json_object_get(req, "block_size");
	const char *dir = json_string_value(t);
	int bad_target =
	    t && !json_is_null(t) && (!dir || dir[0] != '/' || strlen(dir) >= PATH_MAX);
	int bad_size = bs && (!json_is_integer(bs) || json_integer_value(bs) < 0 ||
			      json_integer_value(bs) > UINT32_MAX);
	int rc = bad_target || bad_size ? SB_EPROTO : 0;
	*target = NULL;
	*block_size = 0;
	if (rc == 0) {
		*target = dir ? xstrdup(dir) : NULL;
		*block_size = bs ? (uint32_t)json_integer_value(bs) : 0;
	}
	json_decref(req);
	return rc;
}

static void pull_message(void *arg, struct adhoc_pull *p, json_t *msg, int final)
{
	struct client *cl = arg;
	if (final)
		cl->pull = NULL;
	send_json(cl, msg);
}

/* A pull through the agent, for the user the socket's peer runs as. */
static void start_pull(struct client *cl, const char *line, const char *source)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	uv_os_fd_t fd;
	struct adhoc_request rq = {.source = source};
	char *target = NULL;
	if (cl->pull) {
		send_json(cl, json_pack("{s:s}", "error", "one pull at a time per connection"));
	} else if (ctl_pull_parse(line, &target, &rq.block_size) < 0) {
		send_json(cl, json_pack("{s:s}", "error",
					"malformed pull: target must be an absolute path"));
	} else if (uv_fileno((uv_handle_t *)&cl->pipe, &fd) < 0 ||
		   getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		send_json(cl, json_pack("{s:s}", "error", "cannot tell who is asking"));
	} else {
		rq.target = target;
		rq.uid = cred.uid;
		rq.gid = cred.gid;
		cl->pull = adhoc_start(daemon_adhoc(cl->ctl->d), &rq, pull_message, cl);
	}
	free(target);
}

/* syncbit rm while the agent holds the cache (agent/adhoc.h). */
static void start_rm(struct client *cl, const char *line, const char *name)
{
	json_t *req = json_loads(line, 0, NULL), *now = NULL;
	json_t *jp = json_object_get(req, "path"), *jpurge = json_object_get(req, "purge");
	const char *path = json_string_value(jp);
	if (cl->pull) {
		send_json(cl, json_pack("{s:s}", "error", "one request at a time per connection"));
	} else if ((jp && !json_is_null(jp) &&
		    (!path || path[0] != '/' || strlen(path) >= PATH_MAX)) ||
		   (jpurge && !json_is_boolean(jpurge))) {
		send_json(cl, json_pack("{s:s}", "error",
					"malformed rm: path must be an absolute path, purge a "
					"boolean"));
	} else {
		cl->pull = adhoc_rm(daemon_adhoc(cl->ctl->d), name, path, json_is_true(jpurge),
				    pull_message, cl, &now);
		if (now)
			send_json(cl, now);
	}
	json_decref(req);
}

static void handle(struct client *cl, const char *line)
{
	struct ctl *c = cl->ctl;
	char *name;
	switch (ctl_request_parse(line, &name)) {
	case CTL_OP_MALFORMED:
		send_json(cl, json_pack("{s:s}", "error", "malformed request"));
		break;
	case CTL_OP_STATUS:
		send_json(cl, daemon_status_json(c->d));
		break;
	case CTL_OP_READY: {
		const char *why = NULL;
		int ok = daemon_ready(c->d, name, &why);
		uint64_t bytes, have;
		int published;
		const char *error;
		int assigned = daemon_progress(c->d, name, &bytes, &have, &published, &error) == 0;
		json_t *o =
		    json_pack("{s:s, s:b, s:b}", "name", name, "ready", ok, "assigned", assigned);
		json_object_set_new(o, "reason", text_json(why));
		send_json(cl, o);
		break;
	}
	case CTL_OP_PULL: {
		int finished;
		json_t *o = progress_json(c, name, &finished);
		if (finished) {
			send_json(cl, o);
		} else {
			json_decref(o);
			free(cl->waiting);
			cl->waiting = xstrdup(name); /* answered by ctl_notify */
		}
		break;
	}
	case CTL_OP_PULL_SOURCE:
		start_pull(cl, line, name);
		break;
	case CTL_OP_RM:
		start_rm(cl, line, name);
		break;
	case CTL_OP_UNKNOWN:
		send_json(cl, json_pack("{s:s}", "error", "unknown request"));
		break;
	}
	free(name);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct client *cl = h->data;
	buf_reserve(&cl->in, 4096);
	*b = uv_buf_init((char *)cl->in.ptr + cl->in.len, (unsigned)(cl->in.cap - cl->in.len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct client *cl = s->data;
	if (n < 0) {
		client_close(cl);
		return;
	}
	cl->in.len += (size_t)n;
	char *nl;
	while (!cl->closing && (nl = memchr(cl->in.ptr, '\n', cl->in.len))) {
		*nl = '\0';
		handle(cl, (const char *)cl->in.ptr);
		size_t used = (size_t)(nl + 1 - (char *)cl->in.ptr);
		memmove(cl->in.ptr, nl + 1, cl->in.len - used);
		cl->in.len -= used;
	}
	if (cl->in.len > CTL_LINE_MAX)
		client_close(cl);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct ctl *c = server->data;
	if (status < 0)
		return;
	struct client *cl = xcalloc(1, sizeof *cl);
	cl->ctl = c;
	uv_pipe_init(c->loop, &cl->pipe, 0);
	cl->pipe.data = cl;
	c->handles++;
	cl->next = c->clients;
	c->clients = cl;
	c->nclients++;
	if (uv_accept(server, (uv_stream_t *)&cl->pipe) < 0 || c->nclients > CTL_CLIENTS_MAX) {
		client_close(cl);
		return;
	}
	uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, read_cb);
}

void ctl_notify(struct ctl *c, const char *name)
{
	if (!c)
		return;
	for (struct client *cl = c->clients; cl; cl = cl->next) {
		if (!cl->waiting || strcmp(cl->waiting, name))
			continue;
		int finished;
		json_t *o = progress_json(c, name, &finished);
		const char *error = json_string_value(json_object_get(o, "error"));
		if (finished || error) { /* a failure is final for this wait */
			send_json(cl, o);
			free(cl->waiting);
			cl->waiting = NULL;
		} else {
			json_decref(o);
		}
	}
}

static void progress_tick(uv_timer_t *t)
{
	struct ctl *c = t->data;
	for (struct client *cl = c->clients; cl; cl = cl->next) {
		json_t *pj = cl->pull ? adhoc_progress_json(cl->pull) : NULL;
		if (pj)
			send_json(cl, pj);
		if (!cl->waiting)
			continue;
		int finished;
		json_t *o = progress_json(c, cl->waiting, &finished);
		json_object_set_new(o, "progress", json_true());
		send_json(cl, o);
	}
}

/* ---- HTTP probes ---- */

/* Alive, and not cut off from the scheduler for longer than the grace
 * period (a wrong join token, an unreachable scheduler). */
static void http_healthz(void *arg, const char *path, const char *query, struct httpd_response *r)
{
	struct ctl *c = arg;
	if (daemon_health(c->d, &r->body)) {
		buf_append_str(&r->body, "ok\n");
		return;
	}
	r->status = 503;
}

static void http_readyz(void *arg, const char *path, const char *query, struct httpd_response *r)
{
	struct ctl *c = arg;
	json_t *st = daemon_status_json(c->d);
	json_t *sets = json_object_get(st, "datasets");
	int ok = 1;
	size_t i;
	json_t *s;
	const char *want = !strncmp(query, "name=", 5) ? query + 5 : NULL;
	json_array_foreach(sets, i, s)
	{
		const char *name = json_string_value(json_object_get(s, "name"));
		int ready = json_is_true(json_object_get(s, "ready"));
		if (want && strcmp(want, name))
			continue;
		const char *damage = json_string_value(json_object_get(s, "damage"));
		buf_printf(&r->body, "%s %s%s%s\n", name, ready ? "ready" : "not ready",
			   damage ? ": " : "", damage ? damage : "");
		ok &= ready;
	}
	if (want && !r->body.len) {
		buf_printf(&r->body, "%s not assigned\n", want);
		ok = 0;
	}
	r->status = ok ? 200 : 503;
	json_decref(st);
}

/* A number of the status document, 0 when absent. */
static uint64_t num(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 ? (uint64_t)v : 0;
}

/* Families with one sample per dataset, from its status object. */
static void dataset_metrics(json_t *sets, struct buf *out)
{
	static const struct {
		const char *name, *key, *help;
	} families[] = {
	    {"syncbit_dataset_size_bytes", "bytes",
	     "Bytes of the dataset version this node holds or fetches."},
	    {"syncbit_dataset_have_bytes", "bytes_have",
	     "Bytes of that version durable on this node."},
	    {"syncbit_dataset_ready", "ready",
	     "1 when the dataset is complete, verified and published on this node."},
	};
	size_t i;
	json_t *s;
	for (size_t k = 0; k < sizeof families / sizeof families[0]; k++) {
		metrics_family(out, families[k].name, METRICS_GAUGE, families[k].help);
		json_array_foreach(sets, i, s)
		{
			json_t *v = json_object_get(s, families[k].key);
			metrics_sample(
			    out, families[k].name,
			    METRICS_LABELS("dataset",
					   json_string_value(json_object_get(s, "name"))),
			    json_is_boolean(v) ? json_is_true(v) : num(s, families[k].key));
		}
	}
}

static void peer_metrics(json_t *peers, struct buf *out)
{
	static const struct {
		const char *name, *key, *help;
	} counters[] = {
	    {"syncbit_peer_served_bytes_total", "bytes_served", "Block bytes sent to peers."},
	    {"syncbit_peer_served_blocks_total", "blocks_served", "Blocks sent to peers."},
	    {"syncbit_peer_received_bytes_total", "bytes_received",
	     "Block bytes received from peers, needed or not."},
	    {"syncbit_peer_unneeded_bytes_total", "bytes_unneeded",
	     "Of those, bytes that came after the block was canceled or already here."},
	    {"syncbit_peer_passed_on_bytes_total", "bytes_passed_on",
	     "Of the bytes served, pieces passed on while their block was still arriving."},
	    {"syncbit_peer_streamed_bytes_total", "bytes_streamed",
	     "Of those, bytes of blocks read from the origin here, sent before their hash was "
	     "known."},
	    {"syncbit_peer_drops_total", "dropped_bad_data",
	     "Peers dropped for sending blocks that failed verification."},
	};
	metrics_single(out, "syncbit_peers_connected", METRICS_GAUGE,
		       "Peers this node has a connection with.", num(peers, "connected"));
	for (size_t k = 0; k < sizeof counters / sizeof counters[0]; k++)
		metrics_single(out, counters[k].name, METRICS_COUNTER, counters[k].help,
			       num(peers, counters[k].key));
}

static void cache_metrics(json_t *cache, struct buf *out)
{
	static const struct {
		const char *name, *key, *help;
		enum metrics_type type;
	} families[] = {
	    {"syncbit_cache_used_bytes", "used", "Bytes of the objects in the cache.",
	     METRICS_GAUGE},
	    {"syncbit_cache_pinned_bytes", "pinned",
	     "Of those, bytes a dataset's current version pins (never evicted).", METRICS_GAUGE},
	    {"syncbit_cache_capacity_bytes", "capacity",
	     "The cache size limit (--cache-size); 0: no limit.", METRICS_GAUGE},
	    {"syncbit_cache_objects", "objects", "Objects (whole files) in the cache.",
	     METRICS_GAUGE},
	    {"syncbit_cache_evicted_bytes_total", "evicted",
	     "Bytes evicted to stay under the cache size since the agent started.",
	     METRICS_COUNTER},
	    {"syncbit_disk_free_bytes", "disk_free",
	     "Bytes free for this node's use on the file system of the data directory.",
	     METRICS_GAUGE},
	};
	if (!cache)
		return; /* the index could not be read: no numbers rather than zeros */
	for (size_t k = 0; k < sizeof families / sizeof families[0]; k++)
		metrics_single(out, families[k].name, families[k].type, families[k].help,
			       num(cache, families[k].key));
}

static void http_metrics(void *arg, const char *path, const char *query, struct httpd_response *r)
{
	struct ctl *c = arg;
	json_t *st = daemon_status_json(c->d);
	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
	metrics_build_info(&r->body);
	dataset_metrics(json_object_get(st, "datasets"), &r->body);
	fetch_metrics_write(&r->body);
	peer_metrics(json_object_get(st, "peers"), &r->body);
	metrics_single(
	    &r->body, "syncbit_scheduler_connected", METRICS_GAUGE,
	    "1 while this node is registered with its scheduler.",
	    json_is_true(json_object_get(json_object_get(st, "scheduler"), "connected")));
	cache_metrics(json_object_get(st, "cache"), &r->body);
	json_decref(st);
	source_metrics(&r->body);
	daemon_listener_metrics(c->d, &r->body);
	httpd_metrics(c->http, &r->body);
}

int ctl_new(uv_loop_t *loop, struct daemon *d, const char *path, const char *http, struct ctl **out,
	    char **detail)
{
	struct ctl *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->d = d;
	c->path = xstrdup(path);
	uv_pipe_init(loop, &c->server, 0);
	c->server.data = c;
	c->handles = 2;
	uv_timer_init(loop, &c->progress);
	c->progress.data = c;
	*out = c;
	/* A socket file left by a daemon that died is in the way. */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	int rc = uv_pipe_bind(&c->server, path);
	if (rc == 0) {
		chmod(path, 0660);
		rc = uv_listen((uv_stream_t *)&c->server, 16, on_connection);
	}
	if (rc < 0) {
		*detail = xasprintf("cannot listen on %s: %s", path, uv_strerror(rc));
		return rc;
	}
	uv_timer_start(&c->progress, progress_tick, CTL_PROGRESS_MS, CTL_PROGRESS_MS);
	if (http) {
		const struct httpd_route routes[] = {
		    {"/healthz", http_healthz, c},
		    {"/readyz", http_readyz, c},
		    {"/metrics", http_metrics, c},
		};
		rc = httpd_start(loop, http, routes, sizeof routes / sizeof *routes, &c->http);
		if (rc < 0) {
			*detail = xasprintf("cannot serve HTTP on %s: %s", http, sb_strerror(rc));
			return rc;
		}
	}
	return 0;
}

static void handle_closed(uv_handle_t *h)
{
	ctl_release(h->data);
}

void ctl_free(struct ctl *c)
{
	if (!c)
		return;
	for (struct client *cl = c->clients; cl; cl = cl->next) {
		if (cl->pull)
			adhoc_cancel(cl->pull);
		cl->pull = NULL;
		client_close(cl);
	}
	httpd_stop(c->http);
	unlink(c->path);
	uv_close((uv_handle_t *)&c->server, handle_closed);
	uv_close((uv_handle_t *)&c->progress, handle_closed);
}
