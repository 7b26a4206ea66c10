/* The admin protocol: the CLI's `dataset add|ls|rm`, `node ls|rm` and
 * `status`. Each request gets one AdminReply: code 0 and a JSON document,
 * or a negative code and a one-line message. */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/uri.h"
#include "scheduler/api.h"
#include "scheduler/listing.h"
#include "scheduler/server.h"

/* A dataset add waiting for its source listing. */
struct pending_add {
	struct sched_client *cl;
	char *name;
	struct assign_label *sel;
	size_t nsel;
	uint32_t block_size;
};

static void pending_free(struct pending_add *p)
{
	for (size_t i = 0; i < p->nsel; i++) {
		free(p->sel[i].key);
		free(p->sel[i].value);
	}
	free(p->sel);
	free(p->name);
	server_client_release(p->cl);
	free(p);
}

static int same_selector(const struct cluster_dataset *d, const struct assign_label *sel,
			 size_t nsel)
{
	return d->nselector == nsel && assign_selector_match(sel, nsel, d->selector, nsel) &&
	       assign_selector_match(d->selector, nsel, sel, nsel);
}

/* The reply to an add: the dataset document and whether it changed. */
static json_t *add_reply(struct sched *s, const struct cluster_dataset *d, int changed)
{
	json_t *o = api_dataset(s, d);
	json_object_set_new(o, "changed", json_boolean(changed));
	return o;
}

static void add_listed(struct sched *s, int status, const char *detail, struct sched_version *v,
		       void *arg)
{
	struct pending_add *p = arg;
	if (status < 0) {
		if (status != SB_ECANCELED || !s->stopping)
			log_info("dataset add %s: %s", p->name, detail);
		server_reply(p->cl, status, detail, NULL);
		pending_free(p);
		return;
	}
	struct cluster_dataset *d = cluster_dataset_find(&s->cluster, p->name);
	int changed = !d || !d->current || memcmp(d->current->v->id.b, v->id.b, HASH_LEN) != 0;
	d = sched_apply_version(s, p->name, v->m->source, p->sel, p->nsel, p->block_size, v);
	log_info("dataset %s: %s %s (%llu files, %llu bytes)", d->name,
		 changed ? "now at" : "unchanged at", d->source,
		 (unsigned long long)d->current->v->files,
		 (unsigned long long)d->current->v->bytes);
	server_reply(p->cl, 0, NULL, add_reply(s, d, changed));
	pending_free(p);
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
	for (size_t i = 0; i < a->n_selector; i++) {
		if (assign_check_label(a->selector[i]->key, a->selector[i]->value) < 0) {
			*why = xasprintf("selector %s=%s: keys take A-Z a-z 0-9 . _ / - and values "
					 "no ',' or '='",
					 a->selector[i]->key ? a->selector[i]->key : "",
					 a->selector[i]->value ? a->selector[i]->value : "");
			return SB_EPROTO;
		}
	}
	*block_size = a->block_size ? a->block_size : BLOCK_SIZE_DEFAULT;
	if (manifest_check_block_size(*block_size) < 0) {
		*why = xasprintf("block size %u: must be a power of two from 4KiB to 256MiB",
				 *block_size);
		return SB_EPROTO;
	}
	if (!a->source || !a->source[0]) {
		*why = xstrdup("a SOURCE is required");
		return SB_EPROTO;
	}
	return 0;
}

/* The same source and block size as now: no listing, at most a new
 * selector. 1 when handled. */
static int add_unchanged(struct sched *s, struct sched_client *cl, const Syncbit__Admin *a,
			 struct assign_label *sel, uint32_t bs)
{
	struct cluster_dataset *d = cluster_dataset_find(&s->cluster, a->name);
	struct source_uri uri;
	if (!d || !d->current || d->block_size != bs || uri_parse(a->source, &uri) < 0)
		return 0;
	int same = !strcmp(uri.canonical, d->source);
	uri_close(&uri);
	if (!same)
		return 0;
	int changed = !same_selector(d, sel, a->n_selector);
	if (changed) {
		d = cluster_dataset_set(&s->cluster, d->name, d->source, sel, a->n_selector, bs,
					d->current);
		log_info("dataset %s: selector changed", d->name);
		server_sync(s);
	}
	server_reply(cl, 0, NULL, add_reply(s, d, changed));
	return 1;
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
	struct pending_add *p = xcalloc(1, sizeof *p);
	p->cl = cl;
	server_client_hold(cl);
	p->name = xstrdup(a->name);
	p->block_size = bs;
	p->nsel = a->n_selector;
	p->sel = xcalloc(a->n_selector + 1, sizeof *p->sel);
	for (size_t i = 0; i < a->n_selector; i++) {
		p->sel[i].key = xstrdup(a->selector[i]->key);
		p->sel[i].value = xstrdup(a->selector[i]->value ? a->selector[i]->value : "");
	}
	if (add_unchanged(s, cl, a, p->sel, bs)) {
		pending_free(p);
		return;
	}
	rc = listing_start(s, a->source, bs, add_listed, p, NULL, &why);
	if (rc < 0) {
		server_reply(cl, rc, why, NULL);
		free(why);
		pending_free(p);
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
	log_info("dataset %s removed", d->name);
	cluster_dataset_remove(&s->cluster, a->name);
	server_sync(s);
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
		log_info("node %s removed; its key is forgotten", name);
		server_sync(s);
		server_reply(cl, 0, NULL, json_pack("{s:s, s:b}", "name", name, "removed", 1));
	}
}

int admin_handle(struct sched *s, struct sched_client *cl, const uint8_t *body, size_t len)
{
	Syncbit__Admin *a = syncbit__admin__unpack(NULL, len, body);
	if (!a)
		return SB_EPROTO;
	switch (a->op) {
	case SYNCBIT__ADMIN_OP__ADMIN_DATASET_ADD:
		admin_add(s, cl, a);
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
	syncbit__admin__free_unpacked(a, NULL);
	return 0;
}
