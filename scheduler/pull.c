#include "scheduler/pull.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/manifest.h"
#include "scheduler/ha.h"
#include "scheduler/listing.h"

/* A pull waiting for its listing. */
struct pending_pull {
	struct sched_client *cl;
	char *node;
	uint64_t id;
	uint32_t block_size;
};

void pull_dataset_name(const char *canonical, uint32_t block_size, char *out, size_t len)
{
	struct buf b = BUF_INIT;
	struct hash_id h;
	char hex[HASH_HEX_LEN + 1];
	buf_printf(&b, "%s%c%u", canonical, 0, block_size);
	hash_sha256(b.ptr, b.len, &h);
	buf_close(&b);
	hash_to_hex(&h, hex);
	snprintf(out, len, "%s%.*s", PULL_NAME_PREFIX, PULL_NAME_HEX, hex);
}

static void reply(struct sched_client *cl, uint64_t id, int code, const char *message,
		  const struct cluster_dataset *d)
{
	Syncbit__PullReply m = SYNCBIT__PULL_REPLY__INIT;
	m.id = id;
	m.code = code;
	m.message = (char *)(message ? message : code < 0 ? sb_strerror(code) : "");
	if (d) {
		m.dataset = d->name;
		m.version_id.data = d->current->v->id.b;
		m.version_id.len = HASH_LEN;
	}
	server_send(cl, SYNCBIT__MSG_TYPE__MSG_PULL_REPLY, &m.base);
}

static void pending_free(struct pending_pull *p)
{
	server_client_release(p->cl);
	free(p->node);
	free(p);
}

static void pull_listed(struct sched *s, int status, const char *detail, struct sched_version *v,
			void *arg)
{
	struct pending_pull *p = arg;
	char name[sizeof PULL_NAME_PREFIX + PULL_NAME_HEX];
	if (status < 0) {
		if (status != SB_ECANCELED || !s->stopping)
			log_warn("node %s: pull: %s", p->node, detail);
		reply(p->cl, p->id, status, detail, NULL);
		pending_free(p);
		return;
	}
	pull_dataset_name(v->m->source, p->block_size, name, sizeof name);
	struct cluster_dataset *d = cluster_dataset_find(&s->cluster, name);
	if (d && !d->pulled) {
		char *why =
		    xasprintf("dataset %s, which `dataset add` defined, has the name a pull "
			      "of %s takes; `syncbit pull %s` waits for it",
			      name, v->m->source, name);
		reply(p->cl, p->id, -EEXIST, why, NULL);
		free(why);
		version_free(v);
		pending_free(p);
		return;
	}
	int fresh = !d || !cluster_pulled_by(d, p->node);
	d = sched_set_version(s, name, v->m->source, NULL, 0, p->block_size, v);
	cluster_dataset_pulled_by(&s->cluster, d, p->node);
	d->pulled_at_ms = uv_now(&s->loop);
	if (fresh)
		log_info("dataset %s: node %s pulls %s through it (%zu %s)", d->name, p->node,
			 d->source, d->npulled_by, d->npulled_by == 1 ? "node" : "nodes");
	server_reconcile(s); /* the Assign goes out before the reply */
	reply(p->cl, p->id, 0, NULL, d);
	pending_free(p);
}

/* The node of cl no longer pulls the dataset m->drop: it leaves the nodes
 * the dataset goes to, and the dataset goes once none is left. */
static void drop_pull(struct sched *s, struct sched_client *cl, const Syncbit__PullRequest *m)
{
	const char *node = server_client_node(cl)->name;
	char *why = NULL;
	int rc = ha_check_change(s->ha, &why);
	struct cluster_dataset *d = rc < 0 ? NULL : cluster_dataset_find(&s->cluster, m->drop);
	if (rc < 0) {
		reply(cl, m->id, rc, why, NULL);
	} else if (!d || !d->pulled || !cluster_pulled_by(d, node)) {
		why = d && !d->pulled
			  ? xasprintf("dataset %s comes to node %s by its selector, not "
				      "by a pull; `syncbit dataset rm %s` removes it",
				      m->drop, node, m->drop)
			  : xasprintf("node %s pulls no dataset %s", node, m->drop);
		reply(cl, m->id, SB_ENOTFOUND, why, NULL);
	} else {
		Syncbit__PullReply r = SYNCBIT__PULL_REPLY__INIT;
		r.id = m->id;
		r.message = "";
		r.dataset = m->drop;
		if (d->npulled_by <= 1) {
			log_info("dataset %s: node %s dropped its pull of %s; no node pulls it, "
				 "removing it",
				 d->name, node, d->source);
			cluster_dataset_remove(&s->cluster, m->drop);
		} else {
			cluster_dataset_unpulled_by(&s->cluster, d, node);
			log_info("dataset %s: node %s dropped its pull of %s (%zu %s left)",
				 d->name, node, d->source, d->npulled_by,
				 d->npulled_by == 1 ? "node" : "nodes");
		}
		/* The reply before the Unassign: the agent purges the dataset's
		 * objects (rm --purge) while its record still names them. */
		server_send(cl, SYNCBIT__MSG_TYPE__MSG_PULL_REPLY, &r.base);
		server_reconcile(s);
	}
	free(why);
}

int pull_handle(struct sched *s, struct sched_client *cl, const Syncbit__PullRequest *m)
{
	if (m->drop && m->drop[0]) {
		drop_pull(s, cl, m);
		return 0;
	}
	uint32_t bs = m->block_size ? m->block_size : BLOCK_SIZE_DEFAULT;
	char *why = NULL;
	int rc = 0;
	if (!m->source || !m->source[0]) {
		why = xstrdup("a SOURCE is required");
		rc = SB_EPROTO;
	} else if (manifest_check_block_size(bs) < 0) {
		why = xasprintf("block size %u: must be a power of two from 4KiB to 256MiB", bs);
		rc = SB_EPROTO;
	}
	struct pending_pull *p = NULL;
	if (rc == 0) {
		p = xcalloc(1, sizeof *p);
		p->cl = cl;
		server_client_hold(cl);
		p->node = xstrdup(server_client_node(cl)->name);
		p->id = m->id;
		p->block_size = bs;
		rc = listing_start(s, m->source, bs, MANIFEST_FORMAT, NULL, pull_listed, p, NULL,
				   &why);
	}
	if (rc < 0) {
		reply(cl, m->id, rc, why, NULL);
		if (p)
			pending_free(p);
	}
	free(why);
	return 0;
}

/* 1 when every connected node d goes to has published its current version. */
static int everyone_has(const struct cluster *c, const struct cluster_dataset *d)
{
	for (size_t i = 0; i < c->nnodes; i++) {
		const struct cluster_node *n = c->nodes[i];
		if (!n->conn || !cluster_pulled_by(d, n->name))
			continue;
		const struct cluster_report *r = cluster_node_report_of(n, &d->current->v->id);
		if (!r || !r->published)
			return 0;
	}
	return 1;
}

void pull_expire(struct sched *s)
{
	struct cluster *c = &s->cluster;
	uint64_t now = uv_now(&s->loop);
	int removed = 0;
	for (size_t i = c->ndatasets; i-- > 0;) {
		struct cluster_dataset *d = c->datasets[i];
		if (!d->pulled)
			continue;
		/* The linger runs from the last pull or the last node done,
		 * whichever came later (and from the start for loaded ones). */
		if (!d->pulled_at_ms || (d->current && !everyone_has(c, d)))
			d->pulled_at_ms = now;
		if (now - d->pulled_at_ms < s->o->pull_linger_ms)
			continue;
		log_info("dataset %s: every node that pulled %s has it; removing it", d->name,
			 d->source);
		cluster_dataset_remove(c, d->name);
		removed = 1;
	}
	if (removed)
		server_reconcile(s);
}
