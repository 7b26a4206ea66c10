#include "agent/kube_agent.h"

#include <stdlib.h>
#include <string.h>

#include "agent/daemon.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"

#define GATE_MESSAGE_MAX 1024

/* One syncbit.io/ readiness gate of a pod, as the pod's status shows it. */
struct gate {
	char *type;   /* syncbit.io/KEY */
	char *status; /* "True", "False", "Unknown"; NULL: no condition yet */
	char *reason;
	char *message;
	char *since;	  /* lastTransitionTime */
	uint64_t sent_ms; /* when this agent last patched it */
};

struct pod {
	char *ns, *name, *uid;
	struct gate *gates;
	size_t ngates;
	struct kube_call *patching;
	uint64_t retry_at_ms;
	struct kube_agent *ka;
};

struct kube_agent {
	uv_loop_t *loop;
	struct daemon *d;
	struct kube *k;
	char *node, *source;
	struct kube_watch *node_watch, *pod_watch;
	int node_synced; /* the node's labels were read at least once */
	int node_seen;	 /* the current list showed the node */
	struct pod **pods;
	size_t npods;
	char **was_ready; /* datasets that were ready here, for the "Removed" reason */
	size_t nwas_ready;
	uv_timer_t tick;
	uint64_t patches, patch_errors;
	char *last_error;
};

/* ---- pods ---- */

static void pod_reconcile(struct kube_agent *ka, struct pod *p, uint64_t now);

static void gates_close(struct pod *p)
{
	for (size_t i = 0; i < p->ngates; i++) {
		free(p->gates[i].type);
		free(p->gates[i].status);
		free(p->gates[i].reason);
		free(p->gates[i].message);
		free(p->gates[i].since);
	}
	free(p->gates);
	p->gates = NULL;
	p->ngates = 0;
}

static void pod_free(struct pod *p)
{
	if (p->patching)
		kube_call_cancel(p->patching);
	gates_close(p);
	free(p->ns);
	free(p->name);
	free(p->uid);
	free(p);
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static struct pod *pod_find(struct kube_agent *ka, const char *ns, const char *name, size_t *index)
{
	for (size_t i = 0; i < ka->npods; i++)
		if (!strcmp(ka->pods[i]->ns, ns) && !strcmp(ka->pods[i]->name, name)) {
			if (index)
				*index = i;
			return ka->pods[i];
		}
	return NULL;
}

static void pod_remove(struct kube_agent *ka, size_t i)
{
	pod_free(ka->pods[i]);
	ka->pods[i] = ka->pods[--ka->npods];
}

/* A pod is worth gating while it can still become Ready. */
static int pod_active(json_t *obj)
{
	const char *phase = jstr(json_object_get(obj, "status"), "phase");
	if (json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp"))
		return 0;
	return !phase || (strcmp(phase, "Succeeded") && strcmp(phase, "Failed"));
}

/* The pod's syncbit.io/ gates with what its status says of each. */
static void pod_read_gates(struct pod *p, json_t *obj)
{
	json_t *spec = json_object_get(obj, "spec"), *g, *c;
	json_t *conds = json_object_get(json_object_get(obj, "status"), "conditions");
	size_t i, j;
	uint64_t *sent = xcalloc(p->ngates + 1, sizeof *sent);
	char **types = xcalloc(p->ngates + 1, sizeof *types);
	size_t old = p->ngates;
	for (i = 0; i < old; i++) { /* keep when this agent last sent each */
		sent[i] = p->gates[i].sent_ms;
		types[i] = xstrdup(p->gates[i].type);
	}
	gates_close(p);
	json_array_foreach(json_object_get(spec, "readinessGates"), i, g)
	{
		const char *type = jstr(g, "conditionType");
		if (!type || strncmp(type, KUBE_GATE_PREFIX, strlen(KUBE_GATE_PREFIX)) ||
		    !type[strlen(KUBE_GATE_PREFIX)])
			continue;
		p->gates = xrealloc(p->gates, (p->ngates + 1) * sizeof *p->gates);
		struct gate *gt = &p->gates[p->ngates++];
		memset(gt, 0, sizeof *gt);
		gt->type = xstrdup(type);
		for (j = 0; j < old; j++)
			if (!strcmp(types[j], type))
				gt->sent_ms = sent[j];
		json_array_foreach(conds, j, c)
		{
			if (!jstr(c, "type") || strcmp(jstr(c, "type"), type))
				continue;
			gt->status = dup_or_null(jstr(c, "status"));
			gt->reason = dup_or_null(jstr(c, "reason"));
			gt->message = dup_or_null(jstr(c, "message"));
			gt->since = dup_or_null(jstr(c, "lastTransitionTime"));
		}
	}
	for (i = 0; i < old; i++)
		free(types[i]);
	free(types);
	free(sent);
}

static void pod_update(struct kube_agent *ka, json_t *obj)
{
	json_t *meta = json_object_get(obj, "metadata");
	const char *ns = jstr(meta, "namespace"), *name = jstr(meta, "name");
	const char *uid = jstr(meta, "uid");
	if (!ns || !name)
		return;
	size_t i = 0;
	struct pod *p = pod_find(ka, ns, name, &i);
	if (p && p->uid && uid && strcmp(p->uid, uid)) {
		pod_remove(ka, i); /* a new pod under an old name */
		p = NULL;
	}
	if (!pod_active(obj)) {
		if (p)
			pod_remove(ka, i);
		return;
	}
	if (!p) {
		p = xcalloc(1, sizeof *p);
		p->ka = ka;
		p->ns = xstrdup(ns);
		p->name = xstrdup(name);
		p->uid = dup_or_null(uid);
		i = ka->npods;
		ka->pods = xrealloc(ka->pods, (ka->npods + 1) * sizeof *ka->pods);
		ka->pods[ka->npods++] = p;
	}
	pod_read_gates(p, obj);
	if (!p->ngates)
		pod_remove(ka, i);
	else
		pod_reconcile(ka, p, uv_now(ka->loop));
}

/* ---- what a gate should say ---- */

struct want {
	const char *status, *reason;
	char message[GATE_MESSAGE_MAX];
};

static int was_ready(struct kube_agent *ka, const char *name, int set)
{
	for (size_t i = 0; i < ka->nwas_ready; i++)
		if (!strcmp(ka->was_ready[i], name))
			return 1;
	if (set) {
		ka->was_ready = xrealloc(ka->was_ready, (ka->nwas_ready + 1) * sizeof(char *));
		ka->was_ready[ka->nwas_ready++] = xstrdup(name);
	}
	return 0;
}

/* The dataset a gate's key names: a dataset of this node whose key it is,
 * else the key itself (then unknown here). */
static const char *dataset_of(struct kube_agent *ka, const char *key)
{
	const char *n;
	for (size_t i = 0; (n = daemon_dataset_name(ka->d, i)); i++) {
		char *k = kube_dataset_key(n);
		int same = !strcmp(k, key);
		free(k);
		if (same)
			return n;
	}
	return key;
}

static void desired(struct kube_agent *ka, const char *type, struct want *w)
{
	const char *name = dataset_of(ka, type + strlen(KUBE_GATE_PREFIX));
	uint64_t bytes = 0, have = 0;
	int published = 0;
	const char *error = NULL;
	if (daemon_progress(ka->d, name, &bytes, &have, &published, &error) < 0) {
		w->status = "False";
		if (was_ready(ka, name, 0)) {
			w->reason = "Removed";
			snprintf(w->message, sizeof w->message,
				 "dataset %s was removed from this node or is no longer assigned "
				 "to it",
				 name);
		} else {
			w->reason = "NotAssigned";
			snprintf(w->message, sizeof w->message,
				 "dataset %s is not assigned to this node: unknown to the "
				 "scheduler, or the node's labels do not match its selector",
				 name);
		}
	} else if (published) {
		was_ready(ka, name, 1);
		w->status = "True";
		w->reason = "Ready";
		snprintf(w->message, sizeof w->message,
			 "dataset %s is complete and verified on this node", name);
	} else if (error) {
		w->status = "False";
		w->reason = "Failed";
		snprintf(w->message, sizeof w->message, "%s", error);
	} else {
		w->status = "False";
		w->reason = "Syncing";
		snprintf(w->message, sizeof w->message, "Syncing %d%%",
			 bytes ? (int)(have * 100 / bytes) : 0);
	}
}

/* ---- patches ---- */

static void patched(int status, long code, json_t *body, const char *detail, void *arg)
{
	struct pod *p = arg;
	struct kube_agent *ka = p->ka;
	p->patching = NULL;
	if (status == 0) {
		ka->patches++;
		pod_read_gates(p, body); /* what the server now holds */
		return;
	}
	ka->patch_errors++;
	p->retry_at_ms = uv_now(ka->loop) + KUBE_GATE_RETRY_MS;
	if (!ka->last_error || strcmp(ka->last_error, detail ? detail : ""))
		log_warn("kubernetes: readiness gates of pod %s/%s: %s", p->ns, p->name,
			 detail ? detail : sb_strerror(status));
	free(ka->last_error);
	ka->last_error = xstrdup(detail ? detail : sb_strerror(status));
	if (code == 404) /* the pod is gone; its DELETED event follows */
		p->retry_at_ms = UINT64_MAX;
}

/* Adds gate g's condition to conds when it must change; 1 if added. */
static int gate_change(struct kube_agent *ka, struct pod *p, struct gate *g, json_t *conds,
		       uint64_t now)
{
	struct want w;
	desired(ka, g->type, &w);
	int flips = !g->status || strcmp(g->status, w.status);
	int reason = !g->reason || strcmp(g->reason, w.reason);
	int message = !g->message || strcmp(g->message, w.message);
	if (!flips && !reason && !(message && now - g->sent_ms >= KUBE_GATE_MESSAGE_MS))
		return 0;
	char ts[32];
	kube_time_now(ts);
	json_array_append_new(conds,
			      json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", g->type, "status",
					w.status, "reason", w.reason, "message", w.message,
					"lastTransitionTime", flips || !g->since ? ts : g->since));
	g->sent_ms = now;
	if (flips)
		log_info("pod %s/%s: %s %s (%s)", p->ns, p->name, g->type, w.status, w.reason);
	return 1;
}

static void pod_reconcile(struct kube_agent *ka, struct pod *p, uint64_t now)
{
	if (p->patching || now < p->retry_at_ms)
		return;
	json_t *conds = json_array();
	int n = 0;
	for (size_t i = 0; i < p->ngates; i++)
		n += gate_change(ka, p, &p->gates[i], conds, now);
	if (!n) {
		json_decref(conds);
		return;
	}
	json_t *patch = json_pack("{s:{s:o}}", "status", "conditions", conds);
	char *body = json_dumps(patch, JSON_COMPACT);
	json_decref(patch);
	struct buf path = BUF_INIT;
	buf_printf(&path, "/api/v1/namespaces/%s/pods/%s/status", p->ns, p->name);
	p->patching = kube_call(ka->k, "PATCH", buf_cstr(&path),
				"application/strategic-merge-patch+json", body, patched, p);
	if (!p->patching)
		p->retry_at_ms = now + KUBE_GATE_RETRY_MS;
	buf_close(&path);
	free(body);
}

static void on_tick(uv_timer_t *t)
{
	struct kube_agent *ka = t->data;
	uint64_t now = uv_now(ka->loop);
	for (size_t i = 0; i < ka->npods; i++)
		pod_reconcile(ka, ka->pods[i], now);
}

/* ---- watches ---- */

static void pod_event(struct kube_watch *w, enum kube_event ev, json_t *obj, void *arg)
{
	struct kube_agent *ka = arg;
	size_t i;
	json_t *meta = json_object_get(obj, "metadata");
	if (ev == KUBE_RESET) {
		while (ka->npods)
			pod_remove(ka, ka->npods - 1);
	} else if (ev == KUBE_DELETED) {
		if (jstr(meta, "namespace") && jstr(meta, "name") &&
		    pod_find(ka, jstr(meta, "namespace"), jstr(meta, "name"), &i))
			pod_remove(ka, i);
	} else if (ev == KUBE_ADDED || ev == KUBE_MODIFIED) {
		pod_update(ka, obj);
	}
}

static void node_event(struct kube_watch *w, enum kube_event ev, json_t *obj, void *arg)
{
	struct kube_agent *ka = arg;
	if (ev == KUBE_RESET) {
		ka->node_seen = 0;
	} else if (ev == KUBE_ADDED || ev == KUBE_MODIFIED) {
		json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
		if (!ka->node_synced)
			log_info("kubernetes: node %s: %zu %s", ka->node, json_object_size(labels),
				 json_object_size(labels) == 1 ? "label" : "labels");
		ka->node_seen = ka->node_synced = 1;
		daemon_set_node_labels(ka->d, json_is_object(labels) ? labels : NULL);
	} else if (ev == KUBE_SYNCED && !ka->node_seen) {
		log_warn("kubernetes: node %s not found; registering with --labels only", ka->node);
		ka->node_synced = 1;
		daemon_set_node_labels(ka->d, NULL);
	} else if (ev == KUBE_DELETED) {
		log_warn("kubernetes: node %s was deleted", ka->node);
	}
}

static void watch_error(struct kube_watch *w, long code, const char *detail, void *arg)
{
	struct kube_agent *ka = arg;
	log_warn("kubernetes: %s", detail);
	free(ka->last_error);
	ka->last_error = xstrdup(detail);
}

static const struct kube_watch_ops pod_ops = {.event = pod_event, .error = watch_error};
static const struct kube_watch_ops node_ops = {.event = node_event, .error = watch_error};

int kube_agent_new(uv_loop_t *loop, struct daemon *d, const struct kube_config *cfg,
		   const char *node, struct kube_agent **out)
{
	struct kube_agent *ka = xcalloc(1, sizeof *ka);
	ka->loop = loop;
	ka->d = d;
	ka->node = xstrdup(node);
	ka->source = xstrdup(cfg->source ? cfg->source : "kubernetes");
	int rc = kube_new(loop, cfg, &ka->k);
	if (rc < 0) {
		free(ka->node);
		free(ka->source);
		free(ka);
		return rc;
	}
	uv_timer_init(loop, &ka->tick);
	ka->tick.data = ka;
	uv_timer_start(&ka->tick, on_tick, KUBE_GATE_TICK_MS, KUBE_GATE_TICK_MS);
	struct buf q = BUF_INIT;
	buf_append_str(&q, "fieldSelector=");
	char *sel = xasprintf("metadata.name=%s", node);
	kube_query_escape(&q, sel);
	free(sel);
	ka->node_watch = kube_watch_start(ka->k, "/api/v1/nodes", buf_cstr(&q), &node_ops, ka);
	buf_reset(&q);
	buf_append_str(&q, "fieldSelector=");
	sel = xasprintf("spec.nodeName=%s", node);
	kube_query_escape(&q, sel);
	free(sel);
	ka->pod_watch = kube_watch_start(ka->k, "/api/v1/pods", buf_cstr(&q), &pod_ops, ka);
	buf_close(&q);
	log_info("kubernetes: %s; following node %s and the readiness gates of its pods",
		 ka->source, node);
	*out = ka;
	return 0;
}

static void tick_closed(uv_handle_t *h)
{
	free(h->data);
}

void kube_agent_free(struct kube_agent *ka)
{
	if (!ka)
		return;
	while (ka->npods)
		pod_remove(ka, ka->npods - 1);
	free(ka->pods);
	kube_free(ka->k); /* stops the watches */
	for (size_t i = 0; i < ka->nwas_ready; i++)
		free(ka->was_ready[i]);
	free(ka->was_ready);
	free(ka->node);
	free(ka->source);
	free(ka->last_error);
	uv_close((uv_handle_t *)&ka->tick, tick_closed);
}

json_t *kube_agent_status_json(const struct kube_agent *ka)
{
	size_t gates = 0;
	for (size_t i = 0; i < ka->npods; i++)
		gates += ka->pods[i]->ngates;
	return json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:s?}", "api", ka->source, "node_synced",
			 ka->node_synced, "pods_gated", (json_int_t)ka->npods, "gates",
			 (json_int_t)gates, "patches", (json_int_t)ka->patches, "patch_errors",
			 (json_int_t)ka->patch_errors, "last_error", ka->last_error);
}
