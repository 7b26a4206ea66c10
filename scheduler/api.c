#include "scheduler/api.h"

#include <stdlib.h>
#include <string.h>

#include "common/net/conn.h"
#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/net/httpd.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/source/source.h"
#include "common/uri.h"
#include "common/version.h"
#include "scheduler/ha.h"
#include "scheduler/web.h"
#include "scheduler/ds_filter.h"

/* Sums of what the assigned nodes reported of a dataset's current version. */
struct totals {
	uint64_t assigned, connected, complete;
	uint64_t connected_complete; /* connected nodes that published it */
	uint64_t from_origin, from_peers, reused, served;
};

static json_t *hex_or_null(const struct hash_id *h)
{
	char hex[HASH_HEX_LEN + 1];
	if (!h)
		return json_null();
	hash_to_hex(h, hex);
	return json_string(hex);
}

static json_t *labels_json(const struct assign_label *l, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, l[i].key, json_string(l[i].value));
	return o;
}

static const struct cluster_report *report_of(const struct cluster_node *n,
					      const struct cluster_dataset *d)
{
	return d->current ? cluster_node_report_of(n, &d->current->v->id) : NULL;
}

static void add_report(struct totals *t, const struct cluster_node *n,
		       const struct cluster_report *r)
{
	t->complete += r->published;
	t->connected_complete += r->published && n->conn;
	t->from_origin += r->bytes_from_origin;
	t->from_peers += r->bytes_from_peers;
	t->reused += r->bytes_reused;
	t->served += r->bytes_served;
}

static void sum(struct sched *s, const struct cluster_dataset *d, struct totals *t)
{
	memset(t, 0, sizeof *t);
	for (size_t i = 0; i < s->cluster.nnodes; i++) {
		const struct cluster_node *n = s->cluster.nodes[i];
		if (!cluster_assigned(d, n))
			continue;
		t->assigned++;
		t->connected += n->conn != NULL;
		const struct cluster_report *r = report_of(n, d);
		if (r)
			add_report(t, n, r);
	}
}

/* A dataset by the first 8 bytes of its current version's id. */
struct by_version {
	uint64_t key;
	size_t ds;
};

static int by_version_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct by_version *)a)->key, y = ((const struct by_version *)b)->key;
	return x < y ? -1 : x > y;
}

/* Every dataset's totals, indexed like s->cluster.datasets, in one pass
 * over the nodes and their reports: a scrape at 10,000 nodes x 100
 * datasets is not a report search per node and dataset. Free it. */
static struct totals *sum_all(struct sched *s)
{
	const struct cluster *c = &s->cluster;
	size_t nd = c->ndatasets, nv = 0;
	struct totals *t = xcalloc(nd + 1, sizeof *t);
	struct by_version *bv = xcalloc(nd + 1, sizeof *bv);
	uint8_t *mine = xcalloc(nd + 1, 1);
	for (size_t j = 0; j < nd; j++)
		if (c->datasets[j]->current)
			bv[nv++] =
			    (struct by_version){hash_key64(c->datasets[j]->current->v->id.b), j};
	qsort(bv, nv, sizeof *bv, by_version_cmp);
	for (size_t i = 0; i < c->nnodes; i++) {
		const struct cluster_node *n = c->nodes[i];
		for (size_t j = 0; j < nd; j++) {
			mine[j] = (uint8_t)cluster_assigned(c->datasets[j], n);
			t[j].assigned += mine[j];
			t[j].connected += mine[j] && n->conn;
		}
		for (size_t k = 0; k < n->nreports; k++) {
			const struct cluster_report *r = &n->reports[k];
			uint64_t key = hash_key64(r->version.b);
			size_t lo = 0, hi = nv;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (bv[mid].key < key)
					lo = mid + 1;
				else
					hi = mid;
			}
			for (; lo < nv && bv[lo].key == key; lo++) {
				const struct cluster_dataset *d = c->datasets[bv[lo].ds];
				if (mine[bv[lo].ds] &&
				    !memcmp(d->current->v->id.b, r->version.b, HASH_LEN))
					add_report(&t[bv[lo].ds], n, r);
			}
		}
	}
	free(bv);
	free(mine);
	return t;
}

/* A source URL or a message naming one, for a document the unauthenticated
 * API serves: credentials redacted. NULL or "" gives null. */
static json_t *shown(const char *text)
{
	if (!text || !text[0])
		return json_null();
	char *r = uri_redact(text);
	json_t *j = json_string(r);
	free(r);
	return j;
}

static json_t *dataset_json(struct sched *s, const struct cluster_dataset *d)
{
	const struct sched_version *v = d->current ? d->current->v : NULL;
	struct totals t;
	json_t *nodes = json_array();
	sum(s, d, &t);
	for (size_t i = 0; i < s->cluster.nnodes; i++)
		if (cluster_assigned(d, s->cluster.nodes[i]))
			json_array_append_new(nodes, json_string(s->cluster.nodes[i]->name));
	return json_pack("{s:s, s:o, s:o, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:I, "
			 "s:o, s:o}",
			 "name", d->name, "source", shown(d->source), "selector",
			 labels_json(d->selector, d->nselector), "block_size",
			 (json_int_t)d->block_size, "version", hex_or_null(v ? &v->id : NULL),
			 "manifest", hex_or_null(v && v->complete ? &v->manifest_id : NULL),
			 "files", (json_int_t)(v ? v->files : 0), "bytes",
			 (json_int_t)(v ? v->bytes : 0), "blocks", (json_int_t)(v ? v->nblocks : 0),
			 "blocks_known", (json_int_t)(v ? v->nknown : 0), "complete",
			 v && v->complete, "nodes_assigned", (json_int_t)t.assigned,
			 "nodes_connected", (json_int_t)t.connected, "nodes_complete",
			 (json_int_t)t.complete, "nodes", nodes, "error", shown(d->error));
}

json_t *api_dataset(struct sched *s, const struct cluster_dataset *d)
{
	json_t *o = dataset_json(s, d), *by = json_array();
	/* Made by pulls through agents (`syncbit pull SOURCE`): it goes to the
	 * nodes that pulled it, whatever its selector. */
	for (size_t i = 0; i < d->npulled_by; i++)
		json_array_append_new(by, json_string(d->pulled_by[i]));
	json_object_set_new(o, "filter", ds_filter_json(&d->filter));
	json_object_set_new(o, "pulled", json_boolean(d->pulled));
	json_object_set_new(o, "pulled_by", by);
	return o;
}

json_t *api_datasets(struct sched *s)
{
	json_t *a = json_array();
	for (size_t i = 0; i < s->cluster.ndatasets; i++)
		json_array_append_new(a, api_dataset(s, s->cluster.datasets[i]));
	return json_pack("{s:o}", "datasets", a);
}

static json_t *seconds_since(struct sched *s, const struct cluster_node *n)
{
	if (n->conn)
		return jsonfmt_seconds((double)(uv_now(&s->loop) - n->last_heard) / 1000.0);
	if (n->last_seen_ms <= 0)
		return json_null();
	int64_t d = cluster_wall_ms() - n->last_seen_ms;
	return jsonfmt_seconds(d > 0 ? (double)d / 1000.0 : 0.0);
}

json_t *api_nodes(struct sched *s)
{
	json_t *a = json_array();
	for (size_t i = 0; i < s->cluster.nnodes; i++) {
		const struct cluster_node *n = s->cluster.nodes[i];
		json_t *ds = json_array();
		for (size_t j = 0; j < s->cluster.ndatasets; j++)
			if (cluster_assigned(s->cluster.datasets[j], n))
				json_array_append_new(ds,
						      json_string(s->cluster.datasets[j]->name));
		char key[2 * SECURE_KEY_BYTES + 1] = "";
		if (n->has_key)
			sodium_bin2hex(key, sizeof key, n->key, sizeof n->key);
		json_array_append_new(
		    a, json_pack("{s:s, s:s, s:o, s:I, s:I, s:s, s:b, s:o, s:o, s:I, s:s}", "name",
				 n->name, "addr", n->addr, "labels",
				 labels_json(n->labels, n->nlabels), "disk_free",
				 (json_int_t)n->disk_free, "cache_size", (json_int_t)n->cache_size,
				 "agent_version", n->agent_version, "connected", n->conn != NULL,
				 "seconds_since_heartbeat", seconds_since(s, n), "datasets", ds,
				 "hashes_refused", (json_int_t)n->hashes_refused, "key", key));
	}
	return json_pack("{s:o}", "nodes", a);
}

static json_t *node_status(struct sched *s, const struct cluster_dataset *d,
			   const struct cluster_node *n)
{
	const struct cluster_report *r = report_of(n, d);
	const struct assign_plan *p = d->current ? cluster_plan_of(d->current, n->name) : NULL;
	struct cluster_report none = {.nbits = d->current ? d->current->v->nblocks : 0};
	if (!r)
		r = &none;
	return json_pack(
	    "{s:s, s:b, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:{s:I, s:I}, s:I, s:o}", "node",
	    n->name, "connected", n->conn != NULL, "blocks_have", (json_int_t)r->have,
	    "blocks_total", (json_int_t)(d->current ? d->current->v->nblocks : 0), "published",
	    r->published, "bytes_from_origin", (json_int_t)r->bytes_from_origin, "bytes_from_peers",
	    (json_int_t)r->bytes_from_peers, "bytes_reused", (json_int_t)r->bytes_reused,
	    "bytes_served", (json_int_t)r->bytes_served, "refetch", "bad_peer",
	    (json_int_t)r->refetch_bad_peer, "no_peer", (json_int_t)r->refetch_no_peer,
	    "origin_blocks", (json_int_t)(p ? p->nblocks : 0), "error", shown(r->error));
}

/* "complete": every connected node the dataset goes to published it (a
 * node that is gone does not hold the others up).
 * {"name","version","blocks","blocks_known","bytes","complete",
 *  "nodes_assigned","nodes_complete","plan":{"stripe","reason"},
 *  "nodes":[node status...],"totals":{...}} */
/* t: its totals (sum_all). */
static json_t *dataset_status(struct sched *s, const struct cluster_dataset *d,
			      const struct totals *t)
{
	const struct cluster_version *cv = d->current;
	json_t *nodes = json_array();
	for (size_t i = 0; i < s->cluster.nnodes; i++)
		if (cluster_assigned(d, s->cluster.nodes[i]))
			json_array_append_new(nodes, node_status(s, d, s->cluster.nodes[i]));
	uint64_t bytes = cv ? cv->v->bytes : 0, delivered = t->from_origin + t->from_peers;
	double copies = bytes ? (double)t->from_origin / (double)bytes : 0.0;
	return json_pack(
	    "{s:s, s:o, s:I, s:I, s:I, s:b, s:I, s:I, s:{s:I, s:s}, s:o, "
	    "s:{s:I, s:I, s:I, s:I, s:I, s:o}}",
	    "name", d->name, "version", hex_or_null(cv ? &cv->v->id : NULL), "blocks",
	    (json_int_t)(cv ? cv->v->nblocks : 0), "blocks_known",
	    (json_int_t)(cv ? cv->v->nknown : 0), "bytes", (json_int_t)bytes, "complete",
	    t->connected > 0 && t->connected_complete == t->connected, "nodes_assigned",
	    (json_int_t)t->assigned, "nodes_complete", (json_int_t)t->complete, "plan", "stripe",
	    (json_int_t)(cv ? cv->stripe : 1), "reason", cv ? cv->reason : "", "nodes", nodes,
	    "totals", "bytes_from_origin", (json_int_t)t->from_origin, "bytes_from_peers",
	    (json_int_t)t->from_peers, "bytes_reused", (json_int_t)t->reused, "bytes_served",
	    (json_int_t)t->served, "bytes_delivered", (json_int_t)delivered, "origin_copies",
	    jsonfmt_real3(copies));
}

json_t *api_status(struct sched *s, const char *only)
{
	json_t *a = json_array();
	uint64_t origin = 0, delivered = 0, connected = 0;
	struct totals *all = sum_all(s);
	for (size_t i = 0; i < s->cluster.ndatasets; i++) {
		const struct cluster_dataset *d = s->cluster.datasets[i];
		const struct totals *t = &all[i];
		if (only && only[0] && strcmp(only, d->name) != 0)
			continue;
		json_t *ds = dataset_status(s, d, t);
		json_object_set_new(ds, "error", shown(d->error)); /* listing the source */
		json_array_append_new(a, ds);
		origin += t->from_origin;
		delivered += t->from_origin + t->from_peers;
	}
	free(all);
	for (size_t i = 0; i < s->cluster.nnodes; i++)
		connected += s->cluster.nodes[i]->conn != NULL;
	const char *leader = !s->ha ? s->o->listen : s->ha->leader_addr;
	return json_pack("{s:o, s:{s:I, s:I}, s:I, s:I, s:s, s:s, s:o, s:b}", "datasets", a,
			 "nodes", "total", (json_int_t)s->cluster.nnodes, "connected",
			 (json_int_t)connected, "origin_bytes", (json_int_t)origin,
			 "bytes_delivered", (json_int_t)delivered, "scheduler_version",
			 SYNCBIT_VERSION, "role", ha_role(s->ha), "leader",
			 leader ? json_string(leader) : json_null(), "etcd_unreachable",
			 s->ha && s->ha->unreachable);
}

/* ---- metrics --------------------------------------------------------------- */

enum dataset_value {
	DV_BLOCKS,
	DV_BLOCKS_KNOWN,
	DV_SIZE,
	DV_NODES_ASSIGNED,
	DV_NODES_COMPLETE,
	DV_FROM_ORIGIN,
	DV_FROM_PEERS,
	DV_REUSED,
	DV_SERVED,
};

/* t: d's totals (sum_all). */
static uint64_t dataset_value(const struct cluster_dataset *d, const struct totals *t,
			      enum dataset_value which)
{
	const struct sched_version *v = d->current ? d->current->v : NULL;
	switch (which) {
	case DV_BLOCKS:
		return v ? v->nblocks : 0;
	case DV_BLOCKS_KNOWN:
		return v ? v->nknown : 0;
	case DV_SIZE:
		return v ? v->bytes : 0;
	case DV_NODES_ASSIGNED:
		return t->assigned;
	case DV_NODES_COMPLETE:
		return t->complete;
	case DV_FROM_ORIGIN:
		return d->total_from_origin;
	case DV_FROM_PEERS:
		return d->total_from_peers;
	case DV_REUSED:
		return d->total_reused;
	case DV_SERVED:
		return d->total_served;
	}
	return 0;
}

/* Per-dataset families, one sample per dataset. */
static const struct {
	const char *name, *help;
	enum metrics_type type;
	enum dataset_value value;
} dataset_metrics[] = {
    {"syncbit_dataset_blocks", "Blocks in the dataset's current version.", METRICS_GAUGE,
     DV_BLOCKS},
    {"syncbit_dataset_blocks_known", "Blocks of the current version whose hash is known.",
     METRICS_GAUGE, DV_BLOCKS_KNOWN},
    {"syncbit_dataset_size_bytes", "Bytes of the dataset's current version.", METRICS_GAUGE,
     DV_SIZE},
    {"syncbit_dataset_nodes_assigned", "Nodes the dataset's selector matches.", METRICS_GAUGE,
     DV_NODES_ASSIGNED},
    {"syncbit_dataset_nodes_complete", "Nodes that published the current version.", METRICS_GAUGE,
     DV_NODES_COMPLETE},
    {"syncbit_cluster_origin_bytes_total",
     "Bytes the nodes read from the dataset's source, every version, as they reported it since "
     "the scheduler started.",
     METRICS_COUNTER, DV_FROM_ORIGIN},
    {"syncbit_cluster_peer_bytes_total",
     "Bytes the nodes received from one another for the dataset, every version, since the "
     "scheduler started.",
     METRICS_COUNTER, DV_FROM_PEERS},
    {"syncbit_cluster_reused_bytes_total",
     "Bytes the nodes found in their caches for the dataset instead of fetching them, since "
     "the scheduler started.",
     METRICS_COUNTER, DV_REUSED},
    {"syncbit_cluster_served_bytes_total",
     "Bytes the nodes sent to peers for the dataset, every version, since the scheduler "
     "started.",
     METRICS_COUNTER, DV_SERVED},
};

void api_metrics(struct sched *s, struct buf *out)
{
	uint64_t connected = 0;
	for (size_t i = 0; i < s->cluster.nnodes; i++)
		connected += s->cluster.nodes[i]->conn != NULL;
	metrics_build_info(out);
	metrics_family(out, "syncbit_nodes", METRICS_GAUGE,
		       "Nodes known to the scheduler, by state.");
	metrics_sample(out, "syncbit_nodes", METRICS_LABELS("state", "connected"), connected);
	metrics_sample(out, "syncbit_nodes", METRICS_LABELS("state", "disconnected"),
		       s->cluster.nnodes - connected);
	metrics_single(out, "syncbit_datasets", METRICS_GAUGE, "Datasets defined.",
		       s->cluster.ndatasets);
	metrics_family(out, "syncbit_heartbeat_maps_total", METRICS_COUNTER,
		       "Version maps the nodes' heartbeats carried, by form: bits, runs (the "
		       "map as runs of blocks), added (runs added to the last map), same, all "
		       "(every block), none.");
	for (int f = 0; f < CLUSTER_MAP_FORMS; f++)
		metrics_sample(out, "syncbit_heartbeat_maps_total",
			       METRICS_LABELS("form", cluster_map_form_names[f]),
			       s->cluster.maps[f]);
	metrics_single(out, "syncbit_assign_queued_bytes", METRICS_GAUGE,
		       "Bytes of assignments queued for nodes whose connections take them "
		       "(bounded by --assign-queue).",
		       s->assign_queued);
	metrics_single(out, "syncbit_assign_queued_peak_bytes", METRICS_GAUGE,
		       "The most syncbit_assign_queued_bytes has been since the start.",
		       s->assign_queued_peak);
	metrics_single(out, "syncbit_assign_waiting_nodes", METRICS_GAUGE,
		       "Nodes owed assignments that wait for room in the queue.", s->pace_nwaiting);
	metrics_single(out, "syncbit_assign_waits_total", METRICS_COUNTER,
		       "Times a node owed assignments had to wait for room in the queue.",
		       s->assign_waits);
	metrics_single(out, "syncbit_assign_stalled_nodes", METRICS_GAUGE,
		       "Nodes whose queued assignments have not moved for 0.5 s (not counted in "
		       "the queue's bound; each keeps at most its share and one message).",
		       s->assign_stalled);
	metrics_single(out, "syncbit_assign_stalled_bytes", METRICS_GAUGE,
		       "Bytes of assignments queued for stalled nodes (at most --assign-queue).",
		       s->assign_stalled_bytes);
	struct totals *all = sum_all(s);
	for (size_t k = 0; k < sizeof dataset_metrics / sizeof dataset_metrics[0]; k++) {
		metrics_family(out, dataset_metrics[k].name, dataset_metrics[k].type,
			       dataset_metrics[k].help);
		for (size_t i = 0; i < s->cluster.ndatasets; i++) {
			const struct cluster_dataset *d = s->cluster.datasets[i];
			metrics_sample(out, dataset_metrics[k].name,
				       METRICS_LABELS("dataset", d->name),
				       dataset_value(d, &all[i], dataset_metrics[k].value));
		}
	}
	free(all);
	source_metrics(out);
	if (s->listener)
		conn_listener_metrics(s->listener, out);
	if (s->http)
		httpd_metrics(s->http, out);
}

/* ---- HTTP ------------------------------------------------------------------ */

static void send_json(struct httpd_response *r, json_t *doc)
{
	char *text = jsonfmt_dumps(doc);
	r->content_type = "application/json";
	buf_append_str(&r->headers, "X-Content-Type-Options: nosniff\r\n");
	buf_append_str(&r->body, text);
	buf_append_str(&r->body, "\n");
	free(text);
	json_decref(doc);
}

static void get_healthz(void *arg, const char *path, const char *query, struct httpd_response *r)
{
	buf_append_str(&r->body, "ok\n");
}

/* /api/v1/...: with --http-token-file, only for "Authorization: Bearer
 * TOKEN" (the page on / asks for it). Answered at once. */
static void get_api(void *arg, struct httpd_request *req)
{
	struct sched *s = arg;
	const char *path = httpd_request_path(req);
	struct httpd_response r;
	httpd_response_init(&r);
	if (s->http_token && !web_authorized(s->http_token, httpd_request_authorization(req))) {
		web_unauthorized(&r);
	} else if (!strcmp(path, "/api/v1/datasets")) {
		send_json(&r, api_datasets(s));
	} else if (!strcmp(path, "/api/v1/nodes")) {
		send_json(&r, api_nodes(s));
	} else if (!strcmp(path, "/api/v1/status")) {
		send_json(&r, api_status(s, NULL));
	} else {
		r.status = 404;
		buf_append_str(&r.body, "not found\n");
	}
	httpd_respond(req, &r);
}

static void get_metrics(void *arg, const char *path, const char *query, struct httpd_response *r)
{
	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
	api_metrics(arg, &r->body);
}

int api_start(struct sched *s, char **detail)
{
	const struct httpd_route routes[] = {
	    {"/healthz", get_healthz, s}, {"/metrics", get_metrics, s}, {"/", web_get, NULL},
	    {"/app.js", web_get, NULL},	  {"/app.css", web_get, NULL},
	};
	const char *tf = s->o->http_token_file;
	int rc = tf && tf[0] ? web_token_load(tf, &s->http_token, detail) : 0;
	if (rc < 0)
		return rc;
	rc = httpd_start(&s->loop, s->o->http, routes, sizeof routes / sizeof routes[0], &s->http);
	if (rc < 0) {
		*detail = xasprintf("--http %s: %s", s->o->http,
				    rc == SB_EURI ? "expected HOST:PORT" : sb_strerror(rc));
		return rc;
	}
	httpd_route_prefix(s->http, "/api/", get_api, s);
	return 0;
}

void api_stop(struct sched *s)
{
	httpd_stop(s->http);
	s->http = NULL;
	if (s->http_token)
		sodium_memzero(s->http_token, strlen(s->http_token));
	free(s->http_token);
	s->http_token = NULL;
}
