/* The admin protocol: the CLI's `dataset add|update|ls|rm`, `node ls|rm`
 * and `status`. Each request gets one AdminReply: code 0 and a JSON document,
 * or a negative code and a one-line message. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/progress.h"
#include "common/uri.h"
#include "scheduler/api.h"
#include "scheduler/ds_filter.h"
#include "scheduler/ha.h"
#include "scheduler/listing.h"
#include "scheduler/server.h"

/* A dataset add or update waiting for its source listing. */
struct pending_add {
	struct sched_client *cl;
	char *name;
	struct assign_label *sel;
	size_t nsel;
	uint32_t block_size;
	struct filter filter; /* the rules it is to have */
	json_t *changes;      /* update: what changes, for the reply; or NULL */
};

static void pending_free(struct pending_add *p)
{
	for (size_t i = 0; i < p->nsel; i++) {
		free(p->sel[i].key);
		free(p->sel[i].value);
	}
	free(p->sel);
	filter_close(&p->filter);
	free(p->name);
	json_decref(p->changes);
	server_client_release(p->cl);
	free(p);
}

static struct pending_add *pending_new(struct sched_client *cl, const char *name,
				       Syncbit__Label *const *sel, size_t nsel, uint32_t bs)
{
	struct pending_add *p = xcalloc(1, sizeof *p);
	p->cl = cl;
	server_client_hold(cl);
	p->name = xstrdup(name);
	p->block_size = bs;
	p->nsel = nsel;
	p->sel = xcalloc(nsel + 1, sizeof *p->sel);
	for (size_t i = 0; i < nsel; i++) {
		p->sel[i].key = xstrdup(sel[i]->key);
		p->sel[i].value = xstrdup(sel[i]->value ? sel[i]->value : "");
	}
	return p;
}

static int same_selector(const struct cluster_dataset *d, const struct assign_label *sel,
			 size_t nsel)
{
	return d->nselector == nsel && assign_selector_match(sel, nsel, d->selector, nsel) &&
	       assign_selector_match(d->selector, nsel, sel, nsel);
}

/* "k=v,k=v", or "(every node)" for an empty selector. Heap string. */
static char *selector_text(const struct assign_label *sel, size_t n)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < n; i++)
		buf_printf(&b, "%s%s=%s", i ? "," : "", sel[i].key, sel[i].value);
	return n ? buf_steal(&b) : xstrdup("(every node)");
}

/* The reply to an add or update: the dataset document, whether it changed
 * and, for an update, what did. */
static json_t *add_reply(struct sched *s, const struct cluster_dataset *d, int changed,
			 json_t *changes)
{
	json_t *o = api_dataset(s, d);
	json_object_set_new(o, "changed", json_boolean(changed));
	if (changes)
		json_object_set(o, "changes", changes);
	return o;
}

static void add_listed(struct sched *s, int status, const char *detail, struct sched_version *v,
		       void *arg)
{
	struct pending_add *p = arg;
	if (status < 0) {
		if (status != SB_ECANCELED || !s->stopping)
			log_with(LOG_WARN, LOG_KV({"dataset", p->name}, {"error", detail}),
				 "dataset %s: %s", p->name, detail);
		server_reply(p->cl, status, detail, NULL);
		pending_free(p);
		return;
	}
	struct cluster_dataset *d = cluster_dataset_find(&s->cluster, p->name);
	int changed = !d || !d->current || memcmp(d->current->v->id.b, v->id.b, HASH_LEN) != 0 ||
		      strcmp(d->source, v->m->source) || d->block_size != p->block_size ||
		      !same_selector(d, p->sel, p->nsel) || !ds_filter_same(&d->filter, &p->filter);
	d = sched_apply_filtered(s, p->name, v->m->source, p->sel, p->nsel, p->block_size,
				 &p->filter, v);
	log_with(LOG_INFO, LOG_KV({"dataset", d->name}, {"source", d->source}),
		 "dataset %s: %s %s (%llu %s, %llu bytes)", d->name,
		 changed ? "now at" : "unchanged at", d->source,
		 (unsigned long long)d->current->v->files,
		 progress_noun(d->current->v->files, "file", "files"),
		 (unsigned long long)d->current->v->bytes);
	server_reply(p->cl, 0, NULL, add_reply(s, d, changed, p->changes));
	pending_free(p);
}

static int check_selector(Syncbit__Label *const *sel, size_t n, char **why)
{
	for (size_t i = 0; i < n; i++) {
		if (assign_check_label(sel[i]->key, sel[i]->value) < 0) {
			*why = xasprintf("selector %s=%s: keys take A-Z a-z 0-9 . _ / - and values "
					 "no ',' or '='",
					 sel[i]->key ? sel[i]->key : "",
					 sel[i]->value ? sel[i]->value : "");
			return SB_EPROTO;
		}
	}
	return 0;
}

static int check_block_size(uint32_t bs, char **why)
{
	if (manifest_check_block_size(bs) < 0) {
		*why = xasprintf("block size %u: must be a power of two from 4KiB to 256MiB", bs);
		return SB_EPROTO;
	}
	return 0;
}

/* Rules for source: an oci:// source refuses them (as pull does). */
static int check_filter(const char *source, const struct filter *f, char **why)
{
	if (f->n && source && !strncasecmp(source, "oci://", 6)) {
		*why = xstrdup("--include/--exclude do not apply to oci:// sources: --tag-regex "
			       "picks the tags");
		return SB_EPROTO;
	}
	return 0;
}

/* Checks of a request's fields; a one-line message in *why when refused. */
static int check_add(const Syncbit__Admin *a, uint32_t *block_size, char **why)
{
	if (cluster_check_name(a->name) < 0) {
		*why = xasprintf("dataset name '%s': use 1 to 128 characters of A-Z a-z 0-9 . _ - "
				 "(not starting with '.')",
				 a->name ? a->name : "");
		return SB_EPROTO;
	}
	int rc = check_selector(a->selector, a->n_selector, why);
	if (rc < 0)
		return rc;
	*block_size = a->block_size ? a->block_size : BLOCK_SIZE_DEFAULT;
	if ((rc = check_block_size(*block_size, why)) < 0)
		return rc;
	if (!a->source || !a->source[0]) {
		*why = xstrdup("a SOURCE is required");
		return SB_EPROTO;
	}
	return 0;
}

/* The canonical form of source, or source itself when it does not parse
 * (the listing says why). Heap string. */
static char *canonical(const char *source)
{
	struct source_uri uri;
	if (uri_parse(source, &uri) < 0)
		return xstrdup(source);
	char *c = xstrdup(uri.canonical);
	uri_close(&uri);
	return c;
}

/* 1 when source names d's source (compared in canonical form). */
static int same_source(const struct cluster_dataset *d, const char *source)
{
	char *c = canonical(source);
	int same = !strcmp(c, d->source);
	free(c);
	return same;
}

/* A new selector for d, same source and block size: no listing. */
static void set_selector(struct sched *s, struct sched_client *cl, struct cluster_dataset *d,
			 const struct pending_add *p)
{
	d = cluster_dataset_set(&s->cluster, d->name, d->source, p->sel, p->nsel, d->block_size,
				d->current);
	char *text = selector_text(d->selector, d->nselector);
	log_with(LOG_INFO, LOG_KV({"dataset", d->name}), "dataset %s: selector now %s", d->name,
		 text);
	free(text);
	server_reconcile(s);
	server_reply(cl, 0, NULL, add_reply(s, d, 1, p->changes));
}

/* An add of a name already defined: the same definition is no change;
 * another one is refused without replace. 1 when answered. */
static int add_existing(struct sched *s, struct sched_client *cl, const Syncbit__Admin *a,
			struct pending_add *p)
{
	struct cluster_dataset *d = cluster_dataset_find(&s->cluster, a->name);
	if (!d)
		return 0;
	int src = same_source(d, a->source), bs = d->block_size == p->block_size;
	int sel = same_selector(d, p->sel, p->nsel), flt = ds_filter_same(&d->filter, &p->filter);
	if (src && bs && sel && flt && d->current) {
		server_reply(cl, 0, NULL, add_reply(s, d, 0, NULL));
		return 1;
	}
	if (!a->replace) {
		char *text = selector_text(d->selector, d->nselector), size[32];
		char *rules = ds_filter_text(&d->filter);
		char *why = xasprintf(
		    "dataset %s exists with source %s and selector %s (block size "
		    "%s, filter %s); give --replace to redefine it, or use 'dataset update'",
		    d->name, d->source, text, progress_fmt_bytes(d->block_size, size, sizeof size),
		    rules);
		server_reply(cl, -EEXIST, why, NULL);
		free(why);
		free(text);
		free(rules);
		return 1;
	}
	if (src && bs && flt && d->current) {
		set_selector(s, cl, d, p);
		return 1;
	}
	return 0;
}

static void start_listing(struct sched *s, struct sched_client *cl, const char *source,
			  struct pending_add *p)
{
	char *why = NULL;
	int rc = listing_start(s, source, p->block_size, sched_format_of(s, p->name), &p->filter,
			       add_listed, p, NULL, &why);
	if (rc < 0) {
		server_reply(cl, rc, why, NULL);
		free(why);
		pending_free(p);
	}
}

static void admin_add(struct sched *s, struct sched_client *cl, const Syncbit__Admin *a)
{
	uint32_t bs;
	char *why = NULL;
	int rc = check_add(a, &bs, &why);
	if (rc < 0) {
		server_reply(cl, rc, why, NULL);
		free(why);
		return;
	}
	struct pending_add *p = pending_new(cl, a->name, a->selector, a->n_selector, bs);
	if ((rc = ds_filter_from_wire(a->filter, a->n_filter, &p->filter, &why)) < 0 ||
	    (rc = check_filter(a->source, &p->filter, &why)) < 0) {
		server_reply(cl, rc, why, NULL);
		free(why);
		pending_free(p);
		return;
	}
	struct cluster_dataset *d = cluster_dataset_find(&s->cluster, a->name);
	if (d && d->pulled && a->replace) {
		/* Its nodes come from the selector from now on. */
		cluster_dataset_unpull(&s->cluster, d);
	}
	if (add_existing(s, cl, a, p)) {
		pending_free(p);
		return;
	}
	start_listing(s, cl, a->source, p);
}

static void add_change(json_t *changes, const char *field, json_t *old, json_t *now)
{
	json_array_append_new(changes,
			      json_pack("{s:s, s:o, s:o}", "field", field, "old", old, "new", now));
}

/* What an update changes of d, as [{field, old, new}]. */
static json_t *update_changes(const struct cluster_dataset *d, const Syncbit__Admin *a,
			      const struct pending_add *p)
{
	json_t *changes = json_array();
	if (a->source && a->source[0] && !same_source(d, a->source)) {
		char *c = canonical(a->source);
		add_change(changes, "source", json_string(d->source), json_string(c));
		free(c);
	}
	if (!same_selector(d, p->sel, p->nsel)) {
		char *old = selector_text(d->selector, d->nselector);
		char *now = selector_text(p->sel, p->nsel);
		add_change(changes, "selector", json_string(old), json_string(now));
		free(old);
		free(now);
	}
	if (d->block_size != p->block_size)
		add_change(changes, "block_size", json_integer(d->block_size),
			   json_integer(p->block_size));
	if (!ds_filter_same(&d->filter, &p->filter)) {
		char *old = ds_filter_text(&d->filter), *now = ds_filter_text(&p->filter);
		add_change(changes, "filter", json_string(old), json_string(now));
		free(old);
		free(now);
	}
	return changes;
}

/* `dataset update`: the fields given change, the others stay. */
static void admin_update(struct sched *s, struct sched_client *cl, const Syncbit__Admin *a)
{
	struct cluster_dataset *d = a->name ? cluster_dataset_find(&s->cluster, a->name) : NULL;
	char *why = NULL;
	uint32_t bs = d && a->block_size ? a->block_size : d ? d->block_size : 0;
	int rc = 0;
	if (!d) {
		why = xasprintf("no dataset named '%s'", a->name ? a->name : "");
		rc = SB_ENOTFOUND;
	} else if ((rc = check_block_size(bs, &why)) == 0 && a->set_selector) {
		rc = check_selector(a->selector, a->n_selector, &why);
	}
	struct filter filter = {0};
	const char *source = d && a->source && a->source[0] ? a->source : d ? d->source : NULL;
	if (rc == 0 && a->set_filter)
		rc = ds_filter_from_wire(a->filter, a->n_filter, &filter, &why);
	else if (rc == 0)
		ds_filter_copy(&filter, &d->filter);
	if (rc == 0)
		rc = check_filter(source, &filter, &why);
	if (rc < 0) {
		server_reply(cl, rc, why, NULL);
		free(why);
		filter_close(&filter);
		return;
	}
	struct pending_add *p = a->set_selector
				    ? pending_new(cl, d->name, a->selector, a->n_selector, bs)
				    : pending_new(cl, d->name, NULL, 0, bs);
	if (!a->set_selector) {
		for (size_t i = 0; i < d->nselector; i++) {
			p->sel = xrealloc(p->sel, (i + 2) * sizeof *p->sel);
			p->sel[i].key = xstrdup(d->selector[i].key);
			p->sel[i].value = xstrdup(d->selector[i].value);
			p->nsel = i + 1;
		}
	}
	p->filter = filter;
	p->changes = update_changes(d, a, p);
	if (json_array_size(p->changes) == 0 && d->current) {
		server_reply(cl, 0, NULL, add_reply(s, d, 0, p->changes));
		pending_free(p);
	} else if (same_source(d, source) && bs == d->block_size &&
		   ds_filter_same(&d->filter, &p->filter) && d->current) {
		set_selector(s, cl, d, p);
		pending_free(p);
	} else {
		log_with(LOG_INFO, LOG_KV({"dataset", d->name}, {"source", source}),
			 "dataset %s: listing %s for an update", d->name, source);
		start_listing(s, cl, source, p);
	}
}

static void admin_rm(struct sched *s, struct sched_client *cl, const Syncbit__Admin *a)
{
	struct cluster_dataset *d = a->name ? cluster_dataset_find(&s->cluster, a->name) : NULL;
	if (!d) {
		char *why = xasprintf("no dataset named '%s'", a->name ? a->name : "");
		server_reply(cl, SB_ENOTFOUND, why, NULL);
		free(why);
		return;
	}
	json_t *nodes = json_array();
	for (size_t i = 0; i < s->cluster.nnodes; i++)
		if (cluster_assigned(d, s->cluster.nodes[i]))
			json_array_append_new(nodes, json_string(s->cluster.nodes[i]->name));
	json_t *reply = json_pack("{s:s, s:b, s:o}", "name", d->name, "removed", 1, "nodes", nodes);
	log_with(LOG_INFO, LOG_KV({"dataset", d->name}), "dataset %s removed", d->name);
	cluster_dataset_remove(&s->cluster, a->name);
	server_reconcile(s);
	server_reply(cl, 0, NULL, reply);
}

/* `node rm`: a node that left for good (decommissioned, renamed, or
 * reinstalled with a new key) leaves `node ls` and the state, and its key
 * is forgotten: the name registers again with whatever key comes first.
 * One still connected would only register again. */
static void admin_node_rm(struct sched *s, struct sched_client *cl, const Syncbit__Admin *a)
{
	const char *name = a->name ? a->name : "";
	int rc = cluster_node_remove(&s->cluster, name);
	if (rc == SB_ENOTFOUND) {
		char *why = xasprintf("no node named '%s'", name);
		server_reply(cl, rc, why, NULL);
		free(why);
	} else if (rc == SB_EDENIED) {
		char *why = xasprintf("node %s is connected; stop its agent first", name);
		server_reply(cl, rc, why, NULL);
		free(why);
	} else {
		log_with(LOG_INFO, LOG_KV({"node", name}), "node %s removed; its key is forgotten",
			 name);
		server_reconcile(s);
		server_reply(cl, 0, NULL, json_pack("{s:s, s:b}", "name", name, "removed", 1));
	}
}

int admin_handle(struct sched *s, struct sched_client *cl, Syncbit__Admin *a)
{
	/* With etcd: a standby answers status only (the rest to the leader),
	 * a leader cut off from etcd refuses changes. */
	char *why = NULL;
	int rc = a->op == SYNCBIT__ADMIN_OP__ADMIN_STATUS ? 0 : ha_check_change(s->ha, &why);
	if (rc == SB_EDENIED && (a->op == SYNCBIT__ADMIN_OP__ADMIN_DATASET_LS ||
				 a->op == SYNCBIT__ADMIN_OP__ADMIN_NODE_LS))
		rc = 0;
	if (rc < 0) {
		server_reply(cl, rc, why, NULL);
		free(why);
		return 0;
	}
	free(why);
	switch (a->op) {
	case SYNCBIT__ADMIN_OP__ADMIN_DATASET_ADD:
		admin_add(s, cl, a);
		break;
	case SYNCBIT__ADMIN_OP__ADMIN_DATASET_UPDATE:
		admin_update(s, cl, a);
		break;
	case SYNCBIT__ADMIN_OP__ADMIN_DATASET_RM:
		admin_rm(s, cl, a);
		break;
	case SYNCBIT__ADMIN_OP__ADMIN_DATASET_LS:
		server_reply(cl, 0, NULL, api_datasets(s));
		break;
	case SYNCBIT__ADMIN_OP__ADMIN_NODE_LS:
		server_reply(cl, 0, NULL, api_nodes(s));
		break;
	case SYNCBIT__ADMIN_OP__ADMIN_NODE_RM:
		admin_node_rm(s, cl, a);
		break;
	case SYNCBIT__ADMIN_OP__ADMIN_STATUS:
		server_reply(cl, 0, NULL, api_status(s, a->name));
		break;
	default:
		server_reply(cl, SB_EPROTO, "unknown admin operation", NULL);
		break;
	}
	return 0;
}
