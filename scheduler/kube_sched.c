#include "scheduler/kube_sched.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/manifest.h"
#include "common/uri.h"
#include "scheduler/listing.h"
#include "scheduler/sched.h"
#include "scheduler/server.h"

/* A Dataset object and what was done about it. */
struct cr {
	char *name;
	json_t *obj;	      /* as last seen */
	json_int_t applied;   /* metadata.generation applied; 0: none yet */
	int listing;	      /* a listing for it is in flight */
	char *error;	      /* why the spec cannot be applied, or NULL */
	uint64_t retry_at_ms; /* after a failed listing */
	struct kube_call *status_call;
	json_t *status_sent; /* the last status written, without times */
	struct kube_sched *ks;
};

/* What the scheduler knows of a Kubernetes Node. */
struct knode {
	char *name;
	json_t *obj; /* metadata and spec as last seen */
	struct kube_call *patching;
	uint64_t retry_at_ms;
	struct kube_sched *ks;
};

struct kube_sched {
	struct sched *s;
	struct kube *k;
	int taint;
	struct kube_watch *node_watch, *cr_watch;
	struct knode **nodes;
	size_t nnodes;
	struct cr **crs;
	size_t ncrs;
	int crs_synced;
	json_t *managed; /* names of the datasets Dataset objects made (saved) */
	uv_timer_t tick;
	uint64_t patches, patch_errors;
	char *last_error;
	char *secret; /* --token-secret: the join token's Secret, or NULL */
	struct kube_call *secret_call;
	int secret_done; /* the Secret exists (found or written) */
	uint64_t secret_retry_ms;
};

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void note_error(struct kube_sched *ks, const char *what, const char *detail)
{
	if (!ks->last_error || strcmp(ks->last_error, detail))
		log_warn("kubernetes: %s: %s", what, detail);
	free(ks->last_error);
	ks->last_error = xstrdup(detail);
}

/* ---- which datasets are where ---- */

static int node_ready(const struct cluster_node *n, const char *dataset)
{
	for (size_t i = 0; i < n->nreports; i++)
		if (n->reports[i].dataset && !strcmp(n->reports[i].dataset, dataset) &&
		    n->reports[i].published)
			return 1;
	return 0;
}

/* ---- node labels and taints ---- */

static void node_free(struct knode *kn)
{
	if (kn->patching)
		kube_call_cancel(kn->patching);
	json_decref(kn->obj);
	free(kn->name);
	free(kn);
}

static struct knode *node_find(struct kube_sched *ks, const char *name, size_t *index)
{
	for (size_t i = 0; i < ks->nnodes; i++)
		if (!strcmp(ks->nodes[i]->name, name)) {
			if (index)
				*index = i;
			return ks->nodes[i];
		}
	return NULL;
}

static void node_patched(int status, long code, json_t *body, const char *detail, void *arg)
{
	struct knode *kn = arg;
	kn->patching = NULL;
	if (status == 0) {
		kn->ks->patches++;
		json_decref(kn->obj);
		kn->obj = json_deep_copy(body);
		return;
	}
	kn->ks->patch_errors++;
	kn->retry_at_ms = uv_now(&kn->ks->s->loop) + KUBE_SCHED_RETRY_MS;
	if (code != 409 && code != 422) /* a stale resourceVersion: the watch brings news */
		note_error(kn->ks, kn->name, detail ? detail : sb_strerror(status));
}

/* The label keys this scheduler wants on node name (a JSON object key →
 * "ready"), and whether one of its datasets there is still incomplete. */
static json_t *wanted_labels(struct kube_sched *ks, const char *name, int *incomplete)
{
	json_t *want = json_object();
	struct cluster *c = &ks->s->cluster;
	struct cluster_node *n = cluster_node_find(c, name);
	*incomplete = 0;
	for (size_t i = 0; n && i < c->ndatasets; i++) {
		struct cluster_dataset *d = c->datasets[i];
		if (!cluster_assigned(d, n))
			continue;
		if (!node_ready(n, d->name)) {
			*incomplete = 1;
			continue;
		}
		char *key = kube_dataset_key(d->name);
		char *label = xasprintf(KUBE_LABEL_PREFIX "%s", key);
		json_object_set_new(want, label, json_string("ready"));
		free(label);
		free(key);
	}
	return want;
}

/* The merge patch of labels and the managed-labels annotation that takes
 * the node from what it has to want, or NULL when nothing changes. */
static json_t *label_patch(json_t *obj, json_t *want)
{
	json_t *meta = json_object_get(obj, "metadata");
	json_t *labels = json_object_get(meta, "labels");
	const char *managed = jstr(json_object_get(meta, "annotations"), KUBE_MANAGED_ANNOT);
	json_t *set = json_object(), *v;
	const char *key;
	int changed = 0;
	json_object_foreach(want, key, v)
	{
		if (!jstr(labels, key) || strcmp(jstr(labels, key), "ready")) {
			json_object_set_new(set, key, json_string("ready"));
			changed = 1;
		}
	}
	char *copy = xstrdup(managed ? managed : ""), *save = NULL;
	for (char *k = strtok_r(copy, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
		char *label = xasprintf(KUBE_LABEL_PREFIX "%s", k);
		if (!json_object_get(want, label) && json_object_get(labels, label)) {
			json_object_set_new(set, label, json_null());
			changed = 1;
		}
		free(label);
	}
	free(copy);
	struct buf list = BUF_INIT;
	json_object_foreach(want, key, v)
	    buf_printf(&list, "%s%s", list.len ? "," : "", key + strlen(KUBE_LABEL_PREFIX));
	const char *now = list.len ? buf_cstr(&list) : "";
	if (strcmp(now, managed ? managed : ""))
		changed = 1;
	json_t *patch = NULL;
	if (changed)
		patch = json_pack("{s:{s:o, s:{s:o}}}", "metadata", "labels", set, "annotations",
				  KUBE_MANAGED_ANNOT, list.len ? json_string(now) : json_null());
	else
		json_decref(set);
	buf_close(&list);
	return patch;
}

/* A JSON patch setting spec.taints with or without ours, guarded by the
 * resourceVersion (taints are a list: no merge keeps the others). NULL
 * when the node already is as wanted. */
static json_t *taint_patch(json_t *obj, int want)
{
	json_t *taints = json_object_get(json_object_get(obj, "spec"), "taints"), *t;
	json_t *out = json_array();
	size_t i;
	int has = 0;
	json_array_foreach(taints, i, t)
	{
		if (jstr(t, "key") && !strcmp(jstr(t, "key"), KUBE_TAINT_KEY))
			has = 1;
		else
			json_array_append(out, t);
	}
	if (has == want) {
		json_decref(out);
		return NULL;
	}
	if (want)
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "key", KUBE_TAINT_KEY,
						     "value", "true", "effect", "NoSchedule"));
	const char *rv = jstr(json_object_get(obj, "metadata"), "resourceVersion");
	return json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:o}]", "op", "test", "path",
			 "/metadata/resourceVersion", "value", rv ? rv : "", "op", "add", "path",
			 "/spec/taints", "value", out);
}

static void node_send(struct knode *kn, json_t *patch, const char *ctype)
{
	char *body = json_dumps(patch, JSON_COMPACT);
	char *path = xasprintf("/api/v1/nodes/%s", kn->name);
	kn->patching = kube_call(kn->ks->k, "PATCH", path, ctype, body, node_patched, kn);
	if (!kn->patching)
		kn->retry_at_ms = uv_now(&kn->ks->s->loop) + KUBE_SCHED_RETRY_MS;
	free(path);
	free(body);
	json_decref(patch);
}

static void node_reconcile(struct kube_sched *ks, struct knode *kn, uint64_t now)
{
	if (kn->patching || now < kn->retry_at_ms)
		return;
	int incomplete;
	json_t *want = wanted_labels(ks, kn->name, &incomplete);
	json_t *patch = label_patch(kn->obj, want);
	json_decref(want);
	if (patch) {
		node_send(kn, patch, "application/merge-patch+json");
		return;
	}
	if (ks->taint && (patch = taint_patch(kn->obj, incomplete)))
		node_send(kn, patch, "application/json-patch+json");
}

static void node_event(struct kube_watch *w, enum kube_event ev, json_t *obj, void *arg)
{
	struct kube_sched *ks = arg;
	const char *name = jstr(json_object_get(obj, "metadata"), "name");
	size_t i = 0;
	struct knode *kn = name ? node_find(ks, name, &i) : NULL;
	if (ev == KUBE_RESET) {
		while (ks->nnodes)
			node_free(ks->nodes[--ks->nnodes]);
	} else if (ev == KUBE_DELETED && kn) {
		node_free(kn);
		ks->nodes[i] = ks->nodes[--ks->nnodes];
	} else if ((ev == KUBE_ADDED || ev == KUBE_MODIFIED) && name) {
		if (!kn) {
			kn = xcalloc(1, sizeof *kn);
			kn->ks = ks;
			kn->name = xstrdup(name);
			ks->nodes = xrealloc(ks->nodes, (ks->nnodes + 1) * sizeof *ks->nodes);
			ks->nodes[ks->nnodes++] = kn;
		}
		json_decref(kn->obj);
		kn->obj = json_deep_copy(obj);
		kn->retry_at_ms = 0;
	}
}

/* ---- Dataset objects ---- */

static void save_managed(struct kube_sched *ks)
{
	char *path = xasprintf("%s/%s", ks->s->o->data, KUBE_CRD_FILE);
	char *tmp = xasprintf("%s.tmp", path);
	if (json_dump_file(ks->managed, tmp, JSON_COMPACT) < 0 || rename(tmp, path) < 0)
		log_warn("%s: cannot record the datasets Dataset objects made", path);
	free(tmp);
	free(path);
}

static int is_managed(struct kube_sched *ks, const char *name, size_t *index)
{
	json_t *v;
	size_t i;
	json_array_foreach(ks->managed, i, v)
	{
		if (!strcmp(json_string_value(v), name)) {
			if (index)
				*index = i;
			return 1;
		}
	}
	return 0;
}

static void set_managed(struct kube_sched *ks, const char *name, int on)
{
	size_t i;
	int now = is_managed(ks, name, &i);
	if (now == on)
		return;
	if (on)
		json_array_append_new(ks->managed, json_string(name));
	else
		json_array_remove(ks->managed, i);
	save_managed(ks);
}

static void cr_free(struct cr *c)
{
	if (c->status_call)
		kube_call_cancel(c->status_call);
	json_decref(c->obj);
	json_decref(c->status_sent);
	free(c->name);
	free(c->error);
	free(c);
}

static struct cr *cr_find(struct kube_sched *ks, const char *name, size_t *index)
{
	for (size_t i = 0; i < ks->ncrs; i++)
		if (!strcmp(ks->crs[i]->name, name)) {
			if (index)
				*index = i;
			return ks->crs[i];
		}
	return NULL;
}

static void cr_set_error(struct cr *c, char *why)
{
	if (why && (!c->error || strcmp(c->error, why)))
		log_warn("dataset %s (Dataset object): %s", c->name, why);
	free(c->error);
	c->error = why;
}

/* The spec as a selector and block size; 0, or SB_EPROTO with *why. */
static int cr_spec(struct cr *c, struct assign_label **sel, size_t *nsel, uint32_t *bs,
		   const char **source, char **why)
{
	json_t *spec = json_object_get(c->obj, "spec");
	json_t *ns = json_object_get(spec, "nodeSelector"), *v;
	const char *layout = jstr(spec, "layout"), *key;
	json_int_t block = json_integer_value(json_object_get(spec, "blockSize"));
	*source = jstr(spec, "source");
	*sel = xcalloc(json_object_size(ns) + 1, sizeof **sel);
	*nsel = 0;
	*why = NULL;
	if (cluster_check_name(c->name) < 0)
		*why = xasprintf("name: use 1 to 128 characters of A-Z a-z 0-9 . _ -");
	else if (!*source || !**source)
		*why = xstrdup("spec.source is required");
	else if (layout && *layout && strcmp(layout, "plain"))
		*why = xasprintf("spec.layout %s: cluster datasets are published plain", layout);
	*bs = block > 0 ? (uint32_t)block : BLOCK_SIZE_DEFAULT;
	if (!*why && (block < 0 || block > UINT32_MAX || manifest_check_block_size(*bs) < 0))
		*why = xasprintf("spec.blockSize %lld: a power of two from 4KiB to 256MiB",
				 (long long)block);
	json_object_foreach(ns, key, v)
	{
		if (!json_is_string(v) || assign_check_label(key, json_string_value(v)) < 0) {
			if (!*why)
				*why = xasprintf("spec.nodeSelector %s: not a usable label", key);
			continue;
		}
		(*sel)[*nsel].key = xstrdup(key);
		(*sel)[(*nsel)++].value = xstrdup(json_string_value(v));
	}
	return *why ? SB_EPROTO : 0;
}

static void free_sel(struct assign_label *sel, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(sel[i].key);
		free(sel[i].value);
	}
	free(sel);
}

struct cr_listing {
	struct kube_sched *ks;
	char *name;
	struct assign_label *sel;
	size_t nsel;
	uint32_t bs;
	json_int_t generation;
};

static void cr_listed(struct sched *s, int status, const char *detail, struct sched_version *v,
		      void *arg)
{
	struct cr_listing *l = arg;
	struct cr *c = s->stopping ? NULL : cr_find(l->ks, l->name, NULL);
	if (c)
		c->listing = 0;
	if (status == 0 && c) {
		/* A Dataset object has no include/exclude rules: a name it takes
		 * over loses those of a `dataset add`. */
		static const struct filter none;
		struct cluster_dataset *d = sched_apply_filtered(s, l->name, v->m->source, l->sel,
								 l->nsel, l->bs, &none, v);
		set_managed(l->ks, l->name, 1);
		c->applied = l->generation;
		cr_set_error(c, NULL);
		log_info("dataset %s (Dataset object): at %s (%llu %s, %llu bytes)", d->name,
			 d->source, (unsigned long long)d->current->v->files,
			 progress_noun(d->current->v->files, "file", "files"),
			 (unsigned long long)d->current->v->bytes);
	} else if (status == 0) {
		version_free(v);
	} else if (c) {
		cr_set_error(c, xstrdup(detail));
		c->retry_at_ms = uv_now(&s->loop) + 6 * KUBE_SCHED_RETRY_MS;
	}
	free_sel(l->sel, l->nsel);
	free(l->name);
	free(l);
}

/* The dataset already has this source and block size: at most the
 * selector changes, no listing. 1 when so. */
static int cr_apply_unchanged(struct kube_sched *ks, struct cr *c, const char *source,
			      struct assign_label *sel, size_t nsel, uint32_t bs)
{
	struct cluster_dataset *d = cluster_dataset_find(&ks->s->cluster, c->name);
	struct source_uri uri;
	if (!d || !d->current || d->block_size != bs || uri_parse(source, &uri) < 0)
		return 0;
	int same = !strcmp(uri.canonical, d->source);
	uri_close(&uri);
	if (!same)
		return 0;
	if (d->nselector != nsel || !assign_selector_match(sel, nsel, d->selector, nsel) ||
	    !assign_selector_match(d->selector, nsel, sel, nsel)) {
		cluster_dataset_set(&ks->s->cluster, d->name, d->source, sel, nsel, bs, d->current);
		log_info("dataset %s (Dataset object): selector changed", d->name);
		server_reconcile(ks->s);
	}
	set_managed(ks, c->name, 1);
	return 1;
}

static void cr_apply(struct kube_sched *ks, struct cr *c, uint64_t now)
{
	json_int_t gen =
	    json_integer_value(json_object_get(json_object_get(c->obj, "metadata"), "generation"));
	/* Applied, unless the dataset went (a CLI rm): the object wins. */
	int done = c->applied && c->applied == gen &&
		   (c->error || cluster_dataset_find(&ks->s->cluster, c->name));
	if (c->listing || done || now < c->retry_at_ms)
		return;
	struct assign_label *sel;
	size_t nsel;
	uint32_t bs;
	const char *source;
	char *why;
	if (cr_spec(c, &sel, &nsel, &bs, &source, &why) < 0) {
		cr_set_error(c, why);
		c->applied = gen;
		free_sel(sel, nsel);
		return;
	}
	if (cr_apply_unchanged(ks, c, source, sel, nsel, bs)) {
		c->applied = gen;
		cr_set_error(c, NULL);
		free_sel(sel, nsel);
		return;
	}
	struct cr_listing *l = xcalloc(1, sizeof *l);
	*l = (struct cr_listing){ks, xstrdup(c->name), sel, nsel, bs, gen};
	int rc = listing_start(ks->s, source, bs, sched_format_of(ks->s, c->name), NULL, cr_listed,
			       l, NULL, &why);
	if (rc < 0) {
		cr_set_error(c, why);
		c->applied = gen;
		free_sel(l->sel, l->nsel);
		free(l->name);
		free(l);
		return;
	}
	c->listing = 1;
}

/* status: nodesAssigned, nodesReady, observedGeneration, conditions. */
static json_t *cr_status(struct kube_sched *ks, struct cr *c)
{
	struct cluster *cl = &ks->s->cluster;
	struct cluster_dataset *d = cluster_dataset_find(cl, c->name);
	json_int_t assigned = 0, ready = 0;
	for (size_t i = 0; d && i < cl->nnodes; i++)
		if (cluster_assigned(d, cl->nodes[i])) {
			assigned++;
			ready += node_ready(cl->nodes[i], d->name);
		}
	const char *status = "False", *reason;
	char msg[512];
	if (c->error) {
		char *shown = uri_redact(c->error);
		reason = "Invalid";
		snprintf(msg, sizeof msg, "%s", shown);
		free(shown);
	} else if (c->listing || !d) {
		reason = "Listing";
		snprintf(msg, sizeof msg, "listing the source");
	} else if (!assigned) {
		reason = "NoNodes";
		snprintf(msg, sizeof msg, "no node's labels match the selector");
	} else if (ready < assigned) {
		reason = "Syncing";
		snprintf(msg, sizeof msg, "%lld of %lld %s ready", (long long)ready,
			 (long long)assigned, assigned == 1 ? "node" : "nodes");
	} else {
		status = "True";
		reason = "Ready";
		snprintf(msg, sizeof msg, "complete on %s %lld %s", assigned == 1 ? "its" : "all",
			 (long long)assigned, assigned == 1 ? "node" : "nodes");
	}
	return json_pack("{s:I, s:I, s:I, s:[{s:s, s:s, s:s, s:s}]}", "nodesAssigned", assigned,
			 "nodesReady", ready, "observedGeneration", c->applied, "conditions",
			 "type", "Ready", "status", status, "reason", reason, "message", msg);
}

static void status_written(int status, long code, json_t *body, const char *detail, void *arg)
{
	struct cr *c = arg;
	c->status_call = NULL;
	if (status == 0) {
		c->ks->patches++;
		return;
	}
	c->ks->patch_errors++;
	json_decref(c->status_sent);
	c->status_sent = NULL; /* write it again */
	c->retry_at_ms = uv_now(&c->ks->s->loop) + KUBE_SCHED_RETRY_MS;
	note_error(c->ks, c->name, detail ? detail : sb_strerror(status));
}

static void cr_write_status(struct kube_sched *ks, struct cr *c, uint64_t now)
{
	if (c->status_call || now < c->retry_at_ms)
		return;
	json_t *st = cr_status(ks, c);
	if (c->status_sent && json_equal(st, c->status_sent)) {
		json_decref(st);
		return;
	}
	json_t *cond = json_array_get(json_object_get(st, "conditions"), 0);
	json_t *old =
	    json_array_get(json_object_get(json_object_get(c->obj, "status"), "conditions"), 0);
	char ts[32];
	kube_time_now(ts);
	const char *since = jstr(old, "lastTransitionTime");
	int flips = !jstr(old, "status") || strcmp(jstr(old, "status"), jstr(cond, "status"));
	json_t *sent = json_deep_copy(st);
	json_object_set_new(cond, "lastTransitionTime", json_string(flips || !since ? ts : since));
	json_t *patch = json_pack("{s:o}", "status", st);
	char *body = json_dumps(patch, JSON_COMPACT);
	char *path = xasprintf(KUBE_CRD_PATH "/%s/status", c->name);
	c->status_call = kube_call(ks->k, "PATCH", path, "application/merge-patch+json", body,
				   status_written, c);
	json_decref(c->status_sent);
	c->status_sent = c->status_call ? sent : (json_decref(sent), NULL);
	free(path);
	free(body);
	json_decref(patch);
}

static void cr_removed(struct kube_sched *ks, const char *name)
{
	if (!is_managed(ks, name, NULL))
		return;
	if (cluster_dataset_find(&ks->s->cluster, name)) {
		log_info("dataset %s removed (its Dataset object was deleted)", name);
		cluster_dataset_remove(&ks->s->cluster, name);
		server_reconcile(ks->s);
	}
	set_managed(ks, name, 0);
}

/* After a (re-)list: datasets made by objects that are gone go too. */
static void cr_synced(struct kube_sched *ks)
{
	for (size_t i = json_array_size(ks->managed); i-- > 0;) {
		const char *n = json_string_value(json_array_get(ks->managed, i));
		if (!cr_find(ks, n, NULL)) {
			char *copy = xstrdup(n);
			cr_removed(ks, copy);
			free(copy);
		}
	}
	ks->crs_synced = 1;
}

static void cr_event(struct kube_watch *w, enum kube_event ev, json_t *obj, void *arg)
{
	struct kube_sched *ks = arg;
	const char *name = jstr(json_object_get(obj, "metadata"), "name");
	size_t i = 0;
	struct cr *c = name ? cr_find(ks, name, &i) : NULL;
	if (ev == KUBE_RESET) {
		while (ks->ncrs)
			cr_free(ks->crs[--ks->ncrs]);
		ks->crs_synced = 0;
	} else if (ev == KUBE_SYNCED) {
		cr_synced(ks);
	} else if (ev == KUBE_DELETED && c) {
		char *n = xstrdup(c->name);
		cr_free(c);
		ks->crs[i] = ks->crs[--ks->ncrs];
		cr_removed(ks, n);
		free(n);
	} else if ((ev == KUBE_ADDED || ev == KUBE_MODIFIED) && name) {
		if (!c) {
			c = xcalloc(1, sizeof *c);
			c->ks = ks;
			c->name = xstrdup(name);
			ks->crs = xrealloc(ks->crs, (ks->ncrs + 1) * sizeof *ks->crs);
			ks->crs[ks->ncrs++] = c;
		}
		json_decref(c->obj);
		c->obj = json_deep_copy(obj);
		cr_apply(ks, c, uv_now(&ks->s->loop));
	}
}

static void watch_error(struct kube_watch *w, long code, const char *detail, void *arg)
{
	struct kube_sched *ks = arg;
	if (w == ks->cr_watch && (code == 404 || code == 403))
		log_warn("kubernetes: Dataset objects unavailable (%s); datasets come from the "
			 "CLI only, node labels go on",
			 code == 404 ? "the CRD datasets.syncbit.io is not installed"
				     : "RBAC does not allow reading them");
	else
		note_error(ks, "watch", detail);
}

static const struct kube_watch_ops node_ops = {.event = node_event, .error = watch_error};
static const struct kube_watch_ops cr_ops = {.event = cr_event, .error = watch_error};

/* ---- the join token's Secret ---- */

static void secret_step(struct kube_sched *ks);

/* The token as the Secret's data: base64 of the file's text. */
static char *token_b64(const struct kube_sched *ks)
{
	char hex[2 * SECURE_TOKEN_BYTES + 2];
	sodium_bin2hex(hex, sizeof hex - 1, ks->s->token.key, SECURE_TOKEN_BYTES);
	hex[2 * SECURE_TOKEN_BYTES] = '\n';
	hex[2 * SECURE_TOKEN_BYTES + 1] = '\0';
	size_t n = sodium_base64_ENCODED_LEN(sizeof hex - 1, sodium_base64_VARIANT_ORIGINAL);
	char *out = xmalloc(n);
	sodium_bin2base64(out, n, (const unsigned char *)hex, sizeof hex - 1,
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(hex, sizeof hex);
	return out;
}

static void secret_answer(int status, long code, json_t *body, const char *detail, void *arg)
{
	struct kube_sched *ks = arg;
	ks->secret_call = NULL;
	if (status == 0 && json_object_get(body, "data")) {
		char *mine = token_b64(ks);
		const char *theirs = jstr(json_object_get(body, "data"), "token");
		if (!theirs || strcmp(theirs, mine))
			log_error("kubernetes: Secret %s holds another join token than this "
				  "scheduler's; agents using it will be refused (delete the Secret "
				  "and the scheduler writes it again)",
				  ks->secret);
		else
			log_info("kubernetes: the join token is in Secret %s", ks->secret);
		free(mine);
		ks->secret_done = 1;
	} else if (code == 404) {
		secret_step(ks); /* not there: write it */
	} else if (code == 409) {
		ks->secret_retry_ms = 0; /* made meanwhile: read it next */
	} else {
		note_error(ks, "join token Secret", detail ? detail : sb_strerror(status));
		ks->secret_retry_ms = uv_now(&ks->s->loop) + 6 * KUBE_SCHED_RETRY_MS;
	}
}

/* After a 404: create the Secret. */
static void secret_step(struct kube_sched *ks)
{
	const char *ns = kube_namespace(ks->k) ? kube_namespace(ks->k) : "default";
	char *path = xasprintf("/api/v1/namespaces/%s/secrets", ns);
	if (!ks->secret_call) {
		char *b64 = token_b64(ks);
		json_t *obj = json_pack(
		    "{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:{s:s}}", "apiVersion", "v1", "kind",
		    "Secret", "metadata", "name", ks->secret, "namespace", ns, "labels",
		    "app.kubernetes.io/name", "syncbit", "type", "Opaque", "data", "token", b64);
		char *body = json_dumps(obj, JSON_COMPACT);
		ks->secret_call = kube_call(ks->k, "POST", path, NULL, body, secret_answer, ks);
		sodium_memzero(body, strlen(body));
		sodium_memzero(b64, strlen(b64));
		free(body);
		free(b64);
		json_decref(obj);
	}
	free(path);
}

static void secret_tick(struct kube_sched *ks, uint64_t now)
{
	if (!ks->secret || ks->secret_done || ks->secret_call || now < ks->secret_retry_ms)
		return;
	const char *ns = kube_namespace(ks->k) ? kube_namespace(ks->k) : "default";
	char *path = xasprintf("/api/v1/namespaces/%s/secrets/%s", ns, ks->secret);
	ks->secret_call = kube_call(ks->k, "GET", path, NULL, NULL, secret_answer, ks);
	free(path);
}

static void on_tick(uv_timer_t *t)
{
	struct kube_sched *ks = t->data;
	uint64_t now = uv_now(&ks->s->loop);
	secret_tick(ks, now);
	for (size_t i = 0; i < ks->ncrs; i++) {
		cr_apply(ks, ks->crs[i], now);
		cr_write_status(ks, ks->crs[i], now);
	}
	for (size_t i = 0; i < ks->nnodes; i++)
		node_reconcile(ks, ks->nodes[i], now);
}

int kube_sched_new(struct sched *s, const struct kube_config *cfg, int taint,
		   const char *token_secret, struct kube_sched **out)
{
	struct kube_sched *ks = xcalloc(1, sizeof *ks);
	ks->s = s;
	ks->taint = taint;
	ks->secret = token_secret && *token_secret ? xstrdup(token_secret) : NULL;
	int rc = kube_new(&s->loop, cfg, &ks->k);
	if (rc < 0) {
		free(ks);
		return rc;
	}
	char *path = xasprintf("%s/%s", s->o->data, KUBE_CRD_FILE);
	ks->managed = json_load_file(path, 0, NULL);
	free(path);
	if (!json_is_array(ks->managed)) {
		json_decref(ks->managed);
		ks->managed = json_array();
	}
	uv_timer_init(&s->loop, &ks->tick);
	ks->tick.data = ks;
	uv_timer_start(&ks->tick, on_tick, KUBE_SCHED_TICK_MS, KUBE_SCHED_TICK_MS);
	ks->node_watch = kube_watch_start(ks->k, "/api/v1/nodes", NULL, &node_ops, ks);
	ks->cr_watch = kube_watch_start(ks->k, KUBE_CRD_PATH, NULL, &cr_ops, ks);
	log_info("kubernetes: %s; node labels %s/<DATASET>=ready%s, Dataset objects",
		 cfg->source ? cfg->source : "", KUBE_LABEL_PREFIX,
		 taint ? ", taint " KUBE_TAINT_KEY " until ready" : "");
	*out = ks;
	return 0;
}

static void tick_closed(uv_handle_t *h)
{
	free(h->data);
}

void kube_sched_free(struct kube_sched *ks)
{
	if (!ks)
		return;
	while (ks->nnodes)
		node_free(ks->nodes[--ks->nnodes]);
	while (ks->ncrs)
		cr_free(ks->crs[--ks->ncrs]);
	free(ks->nodes);
	free(ks->crs);
	/* Before the client: kube_free releases every call it still has. */
	kube_call_cancel(ks->secret_call);
	kube_free(ks->k);
	json_decref(ks->managed);
	free(ks->last_error);
	free(ks->secret);
	uv_close((uv_handle_t *)&ks->tick, tick_closed);
}

json_t *kube_sched_status_json(const struct kube_sched *ks)
{
	return json_pack("{s:I, s:I, s:b, s:I, s:I, s:s?}", "nodes", (json_int_t)ks->nnodes,
			 "dataset_objects", (json_int_t)ks->ncrs, "dataset_objects_synced",
			 ks->crs_synced, "patches", (json_int_t)ks->patches, "patch_errors",
			 (json_int_t)ks->patch_errors, "last_error", ks->last_error);
}
