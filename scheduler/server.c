#include "scheduler/server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/conn.h"
#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/wire.h"
#include "scheduler/pull.h"

/* What a node was assigned on this connection. */
struct sent {
	char *dataset;
	struct hash_id version;
	uint64_t round; /* the sync round that sent it */
};

struct sched_client {
	struct sched *s;
	struct conn *conn; /* NULL once closed */
	struct sched_client *next, **prev;
	int refs; /* the connection's, plus holds */
	struct cluster_node *node;
	int admin;
	uint64_t accepted;
	struct sent *sent;
	size_t nsent;
	char **told; /* datasets it reported that it was told to drop */
	size_t ntold;
};

static uint64_t sync_round;

/* ---- clients --------------------------------------------------------------- */

void server_client_hold(struct sched_client *cl)
{
	cl->refs++;
}

void server_client_release(struct sched_client *cl)
{
	if (--cl->refs > 0)
		return;
	for (size_t i = 0; i < cl->nsent; i++)
		free(cl->sent[i].dataset);
	for (size_t i = 0; i < cl->ntold; i++)
		free(cl->told[i]);
	free(cl->sent);
	free(cl->told);
	free(cl);
}

static struct sched_client *client_of(const struct cluster_node *n)
{
	return n->conn ? conn_data(n->conn) : NULL;
}

static const char *peer_name(const struct sched_client *cl)
{
	return cl->node ? cl->node->name : cl->conn ? conn_peer_addr(cl->conn) : "?";
}

static void send_msg(struct sched_client *cl, uint32_t type, const ProtobufCMessage *m)
{
	if (!cl->conn)
		return;
	int rc = wire_send(cl->conn, type, m, NULL, 0, NULL, NULL);
	if (rc < 0)
		log_debug("%s: cannot send message %u: %s", peer_name(cl), type, sb_strerror(rc));
}

void server_send(struct sched_client *cl, uint32_t type, const ProtobufCMessage *m)
{
	send_msg(cl, type, m);
}

struct cluster_node *server_client_node(const struct sched_client *cl)
{
	return cl->node;
}

static void send_error(struct sched_client *cl, int code, const char *message)
{
	Syncbit__ErrorMsg m = SYNCBIT__ERROR_MSG__INIT;
	m.code = code;
	m.message = (char *)message;
	send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ERROR, &m.base);
}

void server_reply(struct sched_client *cl, int code, const char *message, json_t *json)
{
	Syncbit__AdminReply m = SYNCBIT__ADMIN_REPLY__INIT;
	char *text = json ? jsonfmt_dumps(json) : NULL;
	m.code = code;
	m.message = (char *)(message ? message : code < 0 ? sb_strerror(code) : "");
	m.json = text ? text : (char *)"";
	send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ADMIN_REPLY, &m.base);
	free(text);
	json_decref(json);
}

/* ---- what to tell the nodes ------------------------------------------------ */

static struct sent *sent_find(struct sched_client *cl, const char *dataset)
{
	for (size_t i = 0; i < cl->nsent; i++)
		if (!strcmp(cl->sent[i].dataset, dataset))
			return &cl->sent[i];
	return NULL;
}

static void sent_drop(struct sched_client *cl, struct sent *e)
{
	free(e->dataset);
	*e = cl->sent[--cl->nsent];
}

/* PeerInfo for the members other than self; free the two arrays. */
static Syncbit__PeerInfo **peer_list(struct cluster_node **m, size_t n,
				     const struct cluster_node *self, Syncbit__PeerInfo **store,
				     size_t *count)
{
	Syncbit__PeerInfo *v = xcalloc(n + 1, sizeof *v);
	Syncbit__PeerInfo **p = xcalloc(n + 1, sizeof *p);
	*count = 0;
	for (size_t i = 0; i < n; i++) {
		if (m[i] == self)
			continue;
		syncbit__peer_info__init(&v[*count]);
		v[*count].node = m[i]->name;
		v[*count].addr = m[i]->addr;
		if (m[i]->has_key) {
			v[*count].key.data = m[i]->key;
			v[*count].key.len = sizeof m[i]->key;
		}
		p[*count] = &v[*count];
		(*count)++;
	}
	*store = v;
	return p;
}

/* BlockRange list of a node's share of the plan; free the two arrays. */
static Syncbit__BlockRange **origin_list(const struct cluster_version *cv,
					 const struct cluster_node *n, Syncbit__BlockRange **store,
					 size_t *count)
{
	const struct assign_plan *p = cluster_plan_of(cv, n->name);
	size_t k = p ? p->nranges : 0;
	Syncbit__BlockRange *v = xcalloc(k + 1, sizeof *v);
	Syncbit__BlockRange **ptrs = xcalloc(k + 1, sizeof *ptrs);
	for (size_t i = 0; i < k; i++) {
		syncbit__block_range__init(&v[i]);
		v[i].first = p->ranges[i].first;
		v[i].count = p->ranges[i].count;
		ptrs[i] = &v[i];
	}
	*store = v;
	*count = k;
	return ptrs;
}

static void send_assign(struct sched *s, struct sched_client *cl, struct cluster_dataset *d)
{
	struct cluster_version *cv = d->current;
	Syncbit__Assign m = SYNCBIT__ASSIGN__INIT;
	Syncbit__PeerInfo *pstore;
	Syncbit__BlockRange *rstore;
	size_t nm;
	struct cluster_node **members = cluster_members(&s->cluster, cv, &nm);
	m.dataset = d->name;
	m.version_id.data = cv->v->id.b;
	m.version_id.len = HASH_LEN;
	m.manifest = cv->v->m;
	m.peers = peer_list(members, nm, cl->node, &pstore, &m.n_peers);
	m.origin = origin_list(cv, cl->node, &rstore, &m.n_origin);
	m.reason = cv->reason;
	m.pulled = d->pulled;
	if (syncbit__assign__get_packed_size(&m) > SERVER_ASSIGN_MAX)
		log_with(LOG_ERROR, LOG_KV({"dataset", d->name}),
			 "dataset %s: its manifest is too large to send", d->name);
	else
		send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ASSIGN, &m.base);
	free(m.peers);
	free(pstore);
	free(m.origin);
	free(rstore);
	free(members);
}

static void send_unassign(struct sched_client *cl, const char *dataset)
{
	Syncbit__Unassign m = SYNCBIT__UNASSIGN__INIT;
	m.dataset = (char *)dataset;
	log_with(LOG_INFO, LOG_KV({"node", cl->node->name}, {"dataset", dataset}),
		 "node %s: dataset %s is no longer assigned to it", cl->node->name, dataset);
	send_msg(cl, SYNCBIT__MSG_TYPE__MSG_UNASSIGN, &m.base);
}

static void send_peers_origin(struct sched *s, struct sched_client *cl, struct cluster_version *cv,
			      struct cluster_node **members, size_t nm)
{
	Syncbit__Peers p = SYNCBIT__PEERS__INIT;
	Syncbit__Origin o = SYNCBIT__ORIGIN__INIT;
	Syncbit__PeerInfo *pstore;
	Syncbit__BlockRange *rstore;
	p.version_id.data = cv->v->id.b;
	p.version_id.len = HASH_LEN;
	p.peers = peer_list(members, nm, cl->node, &pstore, &p.n_peers);
	send_msg(cl, SYNCBIT__MSG_TYPE__MSG_PEERS, &p.base);
	o.version_id = p.version_id;
	o.blocks = origin_list(cv, cl->node, &rstore, &o.n_blocks);
	o.reason = cv->reason;
	send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ORIGIN, &o.base);
	free(p.peers);
	free(pstore);
	free(o.blocks);
	free(rstore);
}

static void send_origin(struct sched_client *cl, struct cluster_version *cv)
{
	Syncbit__Origin o = SYNCBIT__ORIGIN__INIT;
	Syncbit__BlockRange *rstore;
	o.version_id.data = cv->v->id.b;
	o.version_id.len = HASH_LEN;
	o.blocks = origin_list(cv, cl->node, &rstore, &o.n_blocks);
	o.reason = cv->reason;
	send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ORIGIN, &o.base);
	free(o.blocks);
	free(rstore);
}

/* cl's node read its whole share and took `moved` unknown blocks over from
 * donor's: both hear their new shares. */
static void send_share_moved(struct sched *s, struct cluster_version *cv, struct sched_client *cl,
			     const char *donor, uint32_t moved)
{
	snprintf(cv->reason, sizeof cv->reason,
		 "node %s read its share; %u block%s of node %s's share moved to it",
		 cl->node->name, moved, moved > 1 ? "s" : "", donor);
	log_info("%s: origin plan: %s", cv->v->m->source, cv->reason);
	send_origin(cl, cv);
	for (size_t i = 0; i < s->cluster.nnodes; i++) {
		struct cluster_node *n = s->cluster.nodes[i];
		struct sched_client *o = strcmp(n->name, donor) ? NULL : client_of(n);
		if (o && o->conn)
			send_origin(o, cv);
	}
}

/* ---- sync ------------------------------------------------------------------ */

/* 1 when a line of holders ("name addr" lines) names node. */
static int holder_in(const char *holders, const char *node)
{
	size_t n = strlen(node);
	for (const char *p = holders; p && *p;) {
		if (!strncmp(p, node, n) && p[n] == ' ')
			return 1;
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	return 0;
}

/* Holders in old ("name addr" lines) that are not among the members now.
 * Heap array of heap names. */
static char **departed(const char *old, struct cluster_node **m, size_t n, size_t *count)
{
	char **out = NULL;
	*count = 0;
	for (const char *p = old; p && *p;) {
		const char *sp = strchr(p, ' '), *nl = strchr(p, '\n');
		if (!sp || !nl)
			break;
		char *name = xstrndup(p, (size_t)(sp - p));
		int still = 0;
		for (size_t j = 0; j < n && !still; j++)
			still = !strcmp(m[j]->name, name);
		if (still) {
			free(name);
		} else {
			out = xrealloc(out, (*count + 1) * sizeof *out);
			out[(*count)++] = name;
		}
		p = nl + 1;
	}
	return out;
}

/* Unknown blocks the departed nodes' old shares held. */
static uint32_t moved_blocks(const struct cluster_version *cv, char **gone, size_t ngone)
{
	uint32_t moved = 0;
	for (size_t g = 0; g < ngone; g++) {
		const struct assign_plan *p = cluster_plan_of(cv, gone[g]);
		for (size_t r = 0; p && r < p->nranges; r++)
			for (uint32_t b = 0; b < p->ranges[r].count; b++)
				moved += !assign_bit(cv->v->known, p->ranges[r].first + b);
	}
	return moved;
}

static void join_names(struct buf *out, char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf_printf(out, "%s%s", i ? ", " : "", names[i]);
}

/* "node a left; its 12 blocks reassigned; 3 blocks only it held come from
 * the origin again; node b joined; 40 unknown blocks over 3 nodes". */
static void plan_reason(const struct cluster_version *cv, const char *old, struct cluster_node **m,
			size_t n, char **gone, size_t ngone, uint32_t moved, uint32_t orphans,
			struct buf *out)
{
	int many = ngone > 1;
	if (ngone) {
		buf_printf(out, "%s ", many ? "nodes" : "node");
		join_names(out, gone, ngone);
		buf_printf(out, " left; %s %u %s reassigned; ", many ? "their" : "its", moved,
			   moved == 1 ? "block" : "blocks");
	}
	if (orphans)
		buf_printf(out, "%u block%s only %s held come%s from the origin again; ", orphans,
			   orphans > 1 ? "s" : "", many ? "they" : "it", orphans > 1 ? "" : "s");
	size_t njoined = 0;
	for (size_t j = 0; old && j < n; j++)
		if (!holder_in(old, m[j]->name))
			buf_printf(out, "%s%s", njoined++ ? ", " : "node ", m[j]->name);
	if (njoined)
		buf_printf(out, " joined; ");
	uint32_t unknown = cv->v->nblocks - cv->v->nknown;
	if (n == 0)
		buf_printf(out, "no node holds it");
	else if (unknown == 0)
		buf_printf(out, "%s %u block %s known: blocks come from peers",
			   cv->v->nblocks == 1 ? "the" : "all", cv->v->nblocks,
			   cv->v->nblocks == 1 ? "hash" : "hashes");
	else
		buf_printf(out, "%u unknown %s over %zu node%s", unknown,
			   unknown == 1 ? "block" : "blocks", n, n > 1 ? "s" : "");
	if (cv->stripe > 1)
		buf_printf(out, " (stripe %u)", cv->stripe);
}

/* Re-plan cv when its holders changed since they were last told. */
static void replan_if_changed(struct sched *s, struct cluster_version *cv)
{
	size_t n, ngone;
	struct cluster_node **m = cluster_members(&s->cluster, cv, &n);
	struct buf sig = BUF_INIT, reason = BUF_INIT;
	for (size_t i = 0; i < n; i++)
		buf_printf(&sig, "%s %s\n", m[i]->name, m[i]->addr);
	const char *now = sig.len ? buf_cstr(&sig) : "";
	if (!cv->holders || strcmp(cv->holders, now) != 0) {
		char **gone = departed(cv->holders, m, n, &ngone);
		uint32_t moved = moved_blocks(cv, gone, ngone);
		uint32_t orphans = cluster_plan(&s->cluster, cv, gone, ngone);
		plan_reason(cv, cv->holders, m, n, gone, ngone, moved, orphans, &reason);
		snprintf(cv->reason, sizeof cv->reason, "%s", buf_cstr(&reason));
		log_info("%s: origin plan: %s", cv->v->m->source, cv->reason);
		free(cv->holders);
		cv->holders = xstrdup(now);
		cv->changed = 1;
		for (size_t i = 0; i < ngone; i++)
			free(gone[i]);
		free(gone);
	}
	buf_close(&sig);
	buf_close(&reason);
	free(m);
}

/* ASSIGN what is new to the node, UNASSIGN what left it. */
static void reconcile(struct sched *s, struct sched_client *cl)
{
	struct cluster *c = &s->cluster;
	for (size_t i = 0; i < c->ndatasets; i++) {
		struct cluster_dataset *d = c->datasets[i];
		struct sent *e = sent_find(cl, d->name);
		int want = d->current && cluster_assigned(d, cl->node);
		if (want && (!e || memcmp(e->version.b, d->current->v->id.b, HASH_LEN))) {
			send_assign(s, cl, d);
			if (!e) {
				cl->sent = xrealloc(cl->sent, (cl->nsent + 1) * sizeof *cl->sent);
				e = &cl->sent[cl->nsent++];
				e->dataset = xstrdup(d->name);
			}
			e->version = d->current->v->id;
			e->round = sync_round;
		} else if (!want && e) {
			send_unassign(cl, d->name);
			sent_drop(cl, e);
		}
	}
	for (size_t i = 0; i < cl->nsent;) {
		if (cluster_dataset_find(c, cl->sent[i].dataset)) {
			i++;
			continue;
		}
		send_unassign(cl, cl->sent[i].dataset);
		sent_drop(cl, &cl->sent[i]);
	}
}

/* 1 when the node got an ASSIGN of cv in this round. */
static int assigned_now(struct sched_client *cl, const struct cluster_version *cv)
{
	for (size_t i = 0; i < cl->nsent; i++)
		if (cl->sent[i].round == sync_round &&
		    !memcmp(cl->sent[i].version.b, cv->v->id.b, HASH_LEN))
			return 1;
	return 0;
}

void server_sync(struct sched *s)
{
	struct cluster *c = &s->cluster;
	if (s->stopping)
		return;
	sync_round++;
	for (size_t i = 0; i < c->nversions; i++)
		if (c->versions[i]->refs > 0)
			replan_if_changed(s, c->versions[i]);
	for (struct sched_client *cl = s->clients; cl; cl = cl->next)
		if (cl->node && cl->conn)
			reconcile(s, cl);
	for (size_t i = 0; i < c->nversions; i++) {
		struct cluster_version *cv = c->versions[i];
		if (!cv->changed)
			continue;
		cv->changed = 0;
		size_t n;
		struct cluster_node **m = cluster_members(c, cv, &n);
		for (size_t j = 0; j < n; j++) {
			struct sched_client *cl = client_of(m[j]);
			if (cl && !assigned_now(cl, cv))
				send_peers_origin(s, cl, cv, m, n);
		}
		free(m);
	}
}

/* ---- control protocol ------------------------------------------------------ */

static int check_register(struct sched_client *cl, const Syncbit__Register *r, const char *name)
{
	const char *why = NULL;
	if (cluster_check_name(name) < 0)
		why = "node name must be 1 to 128 characters of A-Z a-z 0-9 . _ -";
	else if (r->node && r->node[0] && strcmp(r->node, name) != 0)
		why = "the node name differs from the handshake's";
	for (size_t i = 0; !why && i < r->n_labels; i++)
		if (assign_check_label(r->labels[i]->key, r->labels[i]->value) < 0)
			why = "a label is malformed";
	if (!why)
		return 0;
	log_with(LOG_WARN, LOG_KV({"addr", conn_peer_addr(cl->conn)}, {"error", why}),
		 "registration from %s refused: %s", conn_peer_addr(cl->conn), why);
	send_error(cl, SB_EPROTO, why);
	return SB_EPROTO;
}

/* A name registered with another static key: refused, with one warn line
 * per node at most every SERVER_KEY_LOG_MS (an agent retries). */
static int check_key(struct sched_client *cl, const char *name)
{
	struct sched *s = cl->s;
	const uint8_t *key = conn_peer_key(cl->conn);
	if (cluster_node_key_check(&s->cluster, name, key) == 0)
		return 0;
	struct cluster_node *n = cluster_node_find(&s->cluster, name);
	uint64_t now = uv_now(&s->loop);
	if (!n->key_refused_logged || now - n->key_refused_logged >= SERVER_KEY_LOG_MS) {
		char want[SECURE_FINGERPRINT_LEN], got[SECURE_FINGERPRINT_LEN];
		secure_key_fingerprint(n->key, want);
		secure_key_fingerprint(key, got);
		log_with(LOG_WARN, LOG_KV({"node", name}, {"addr", conn_peer_addr(cl->conn)}),
			 "node %s: registration from %s refused: its key %s is not the one "
			 "registered (%s); `syncbit node rm %s` if the node was reinstalled",
			 name, conn_peer_addr(cl->conn), got, want, name);
		n->key_refused_logged = now;
	}
	char *why = xasprintf("node name %s is registered with another key; `syncbit node rm "
			      "%s` on the scheduler if this node was reinstalled",
			      name, name);
	send_error(cl, SB_EDENIED, why);
	free(why);
	return SB_EDENIED;
}

static int h_register(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct sched_client *cl = ctx;
	struct sched *s = cl->s;
	if (cl->node || conn_purpose(cl->conn) != HANDSHAKE_CONTROL)
		return SB_EPROTO;
	Syncbit__Register *r = syncbit__register__unpack(NULL, len, body);
	if (!r)
		return SB_EPROTO;
	const char *name = conn_peer_node(cl->conn);
	int rc = check_register(cl, r, name);
	if (rc == 0)
		rc = check_key(cl, name);
	if (rc == 0) {
		struct cluster_node *n = cluster_node_find(&s->cluster, name);
		if (n && n->conn) {
			log_with(
			    LOG_WARN, LOG_KV({"node", name}),
			    "node %s registered again from %s; closing its previous connection",
			    name, conn_peer_addr(cl->conn));
			struct sched_client *old = client_of(n);
			old->node = NULL;
			n->conn = NULL;
			conn_close(old->conn, 0);
		}
		/* A node listening on 0.0.0.0 is dialled where it connected from. */
		char *advertised = r->peer_addr;
		char *dial = conn_addr_resolve(advertised, conn_peer_addr(cl->conn));
		r->peer_addr = dial;
		n = cluster_node_register(&s->cluster, name, r, conn_peer_key(cl->conn),
					  uv_now(&s->loop));
		r->peer_addr = advertised;
		free(dial);
		n->conn = cl->conn;
		cl->node = n;
		log_with(LOG_INFO, LOG_KV({"node", name}, {"addr", conn_peer_addr(cl->conn)}),
			 "node %s registered from %s (peers dial %s)", name,
			 conn_peer_addr(cl->conn), n->addr);
		Syncbit__Registered m = SYNCBIT__REGISTERED__INIT;
		m.node = n->name;
		m.heartbeat_ms = s->o->heartbeat_ms;
		send_msg(cl, SYNCBIT__MSG_TYPE__MSG_REGISTERED, &m.base);
		server_sync(s);
	}
	syncbit__register__free_unpacked(r, NULL);
	return rc;
}

static int told(struct sched_client *cl, const char *dataset)
{
	for (size_t i = 0; i < cl->ntold; i++)
		if (!strcmp(cl->told[i], dataset))
			return 1;
	return 0;
}

/* A node holding a dataset it was not given (removed while it was away, or
 * its labels changed) is told once to drop it. */
static void drop_strays(struct sched *s, struct sched_client *cl, const Syncbit__Heartbeat *hb)
{
	for (size_t i = 0; i < hb->n_versions; i++) {
		const char *name = hb->versions[i]->dataset;
		if (!name || !name[0] || sent_find(cl, name) || told(cl, name))
			continue;
		struct cluster_dataset *d = cluster_dataset_find(&s->cluster, name);
		if (d && d->current && cluster_assigned(d, cl->node))
			continue;
		send_unassign(cl, name);
		cl->told = xrealloc(cl->told, (cl->ntold + 1) * sizeof *cl->told);
		cl->told[cl->ntold++] = xstrdup(name);
	}
}

static int h_heartbeat(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct sched_client *cl = ctx;
	struct sched *s = cl->s;
	if (!cl->node)
		return SB_EPROTO;
	Syncbit__Heartbeat *hb = syncbit__heartbeat__unpack(NULL, len, body);
	if (!hb)
		return SB_EPROTO;
	uint64_t now = uv_now(&s->loop);
	cl->node->disk_free = hb->disk_free;
	cluster_node_heard(&s->cluster, cl->node, now);
	cluster_node_report(&s->cluster, cl->node, hb->versions, hb->n_versions, now);
	drop_strays(s, cl, hb);
	syncbit__heartbeat__free_unpacked(hb, NULL);
	return 0;
}

/* The entries go out as copies of their two fields, not as the node sent
 * them: protobuf-c keeps unknown fields and packs them again, some in a
 * form it then refuses to unpack (field 0 spelled in two bytes), and every
 * member would drop its connection over one node's message. */
static void broadcast_hashes(struct sched *s, struct cluster_version *cv,
			     Syncbit__BlockHash **fresh, size_t n)
{
	Syncbit__Hashes m = SYNCBIT__HASHES__INIT;
	Syncbit__BlockHash *copies = xcalloc(n + 1, sizeof *copies);
	Syncbit__BlockHash **ptrs = xcalloc(n + 1, sizeof *ptrs);
	for (size_t i = 0; i < n; i++) {
		syncbit__block_hash__init(&copies[i]);
		copies[i].block = fresh[i]->block;
		copies[i].hash = fresh[i]->hash;
		ptrs[i] = &copies[i];
	}
	size_t nm;
	struct cluster_node **members = cluster_members(&s->cluster, cv, &nm);
	m.version_id.data = cv->v->id.b;
	m.version_id.len = HASH_LEN;
	m.blocks = ptrs;
	m.n_blocks = n;
	size_t blen = syncbit__hashes__get_packed_size(&m);
	uint8_t *body = xmalloc(blen);
	syncbit__hashes__pack(&m, body);
	for (size_t i = 0; i < nm; i++) {
		struct sched_client *cl = client_of(members[i]);
		if (cl && cl->conn)
			conn_send(cl->conn, SYNCBIT__MSG_TYPE__MSG_HASHES, body, blen, NULL, 0,
				  NULL, NULL);
	}
	free(body);
	free(members);
	free(ptrs);
	free(copies);
}

/* A node reported hashes of blocks it was never given to read: counted, and
 * told at most once per SERVER_REFUSED_LOG_MS (a node may send many). */
static void note_refused(struct sched *s, struct cluster_node *n, const struct cluster_version *cv,
			 size_t count, uint32_t example)
{
	uint64_t now = uv_now(&s->loop);
	n->hashes_refused += count;
	n->refused_unlogged += count;
	if (n->refused_logged && now - n->refused_logged < SERVER_REFUSED_LOG_MS)
		return;
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(&cv->v->id, hex);
	log_with(LOG_WARN, LOG_KV({"node", n->name}),
		 "node %s: %llu block hash%s refused (block %u of version %.12s of %s, for "
		 "one): not in any origin share it was given; they stay unknown and come from "
		 "the nodes that read them",
		 n->name, (unsigned long long)n->refused_unlogged,
		 n->refused_unlogged > 1 ? "es" : "", example, hex, cv->v->m->source);
	n->refused_unlogged = 0;
	n->refused_logged = now;
}

static int h_ingested(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct sched_client *cl = ctx;
	struct sched *s = cl->s;
	if (!cl->node)
		return SB_EPROTO;
	Syncbit__Ingested *m = syncbit__ingested__unpack(NULL, len, body);
	if (!m)
		return SB_EPROTO;
	int rc = 0;
	for (size_t i = 0; i < m->n_blocks && rc == 0; i++)
		if (m->blocks[i]->hash.len != HASH_LEN)
			rc = SB_EPROTO;
	struct cluster_version *cv =
	    cluster_version_find(&s->cluster, m->version_id.data, m->version_id.len);
	cluster_node_heard(&s->cluster, cl->node, uv_now(&s->loop));
	if (rc == 0 && !cv)
		log_with(LOG_INFO, LOG_KV({"node", cl->node->name}),
			 "node %s: hashes for a version no longer held; ignored", cl->node->name);
	if (rc == 0 && cv) {
		Syncbit__BlockHash **fresh = xcalloc(m->n_blocks + 1, sizeof *fresh);
		int completed = 0;
		size_t refused = 0;
		uint32_t example = 0;
		size_t n = cluster_ingest(&s->cluster, cv, m->blocks, m->n_blocks, cl->node->name,
					  fresh, &completed, &refused, &example);
		if (refused)
			note_refused(s, cl->node, cv, refused, example);
		if (n)
			broadcast_hashes(s, cv, fresh, n);
		const char *donor = NULL;
		uint32_t moved = n ? cluster_rebalance(cv, cl->node->name, &donor) : 0;
		if (moved)
			send_share_moved(s, cv, cl, donor, moved);
		if (completed) {
			char hex[HASH_HEX_LEN + 1];
			hash_to_hex(&cv->v->manifest_id, hex);
			log_info("%s: every block hash is known (manifest %.12s)", cv->v->m->source,
				 hex);
		}
		free(fresh);
	}
	syncbit__ingested__free_unpacked(m, NULL);
	return rc;
}

static int h_admin(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct sched_client *cl = ctx;
	if (conn_purpose(cl->conn) != HANDSHAKE_ADMIN)
		return SB_EPROTO;
	cl->admin = 1;
	return admin_handle(cl->s, cl, body, len);
}

static int h_pull(void *ctx, const uint8_t *body, size_t len, uint8_t *pl, size_t plen)
{
	struct sched_client *cl = ctx;
	return cl->node ? pull_handle(cl->s, cl, body, len) : SB_EPROTO;
}

static const struct frame_handler dispatch[] = {
    {SYNCBIT__MSG_TYPE__MSG_REGISTER, SERVER_REGISTER_MAX, h_register},
    {SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, SERVER_HEARTBEAT_MAX, h_heartbeat},
    {SYNCBIT__MSG_TYPE__MSG_INGESTED, SERVER_INGESTED_MAX, h_ingested},
    {SYNCBIT__MSG_TYPE__MSG_ADMIN, SERVER_ADMIN_MAX, h_admin},
    {SYNCBIT__MSG_TYPE__MSG_PULL, SERVER_ADMIN_MAX, h_pull},
};

/* ---- connections ----------------------------------------------------------- */

static int on_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t body_len,
		    uint8_t *payload, size_t payload_len)
{
	struct sched_client *cl = conn_data(c);
	free(payload); /* no control or admin message carries one */
	if (payload_len)
		return SB_EPROTO;
	int rc = frame_dispatch(dispatch, sizeof dispatch / sizeof dispatch[0], cl, type, body,
				body_len, NULL, 0);
	if (rc == SB_EPROTO || rc == SB_ETOOBIG)
		log_warn("%s: message type %u refused: %s", peer_name(cl), type, sb_strerror(rc));
	return rc;
}

static void on_ready(struct conn *c, int status)
{
	/* Refusals are counted and logged, rate-limited, by the listener
	 * (common/admit.h): one line each would flood the log. */
	if (status < 0)
		log_debug("connection from %s refused: %s", conn_peer_addr(c),
			  conn_error(c)[0] ? conn_error(c) : sb_strerror(status));
	else
		log_debug("connection from %s (%s) authenticated", conn_peer_addr(c),
			  conn_peer_node(c));
}

static void on_close(struct conn *c, int status)
{
	struct sched_client *cl = conn_data(c);
	struct sched *s = cl->s;
	cl->conn = NULL;
	*cl->prev = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	if (cl->node && cl->node->conn == c) {
		struct cluster_node *n = cl->node;
		n->conn = NULL;
		cluster_node_flush(&s->cluster, n);
		if (status)
			log_with(LOG_WARN,
				 LOG_KV({"node", n->name},
					{"error",
					 conn_error(c)[0] ? conn_error(c) : sb_strerror(status)}),
				 "node %s: connection lost: %s", n->name,
				 conn_error(c)[0] ? conn_error(c) : sb_strerror(status));
		else
			log_with(LOG_INFO, LOG_KV({"node", n->name}), "node %s disconnected",
				 n->name);
		server_sync(s);
	}
	server_client_release(cl);
}

static const struct conn_callbacks callbacks = {
    .on_ready = on_ready, .on_frame = on_frame, .on_close = on_close};

static void on_accept(struct conn_listener *l, struct conn *c)
{
	struct sched *s = conn_data(c);
	struct sched_client *cl = xcalloc(1, sizeof *cl);
	cl->s = s;
	cl->conn = c;
	cl->refs = 1;
	cl->accepted = uv_now(&s->loop);
	cl->next = s->clients;
	cl->prev = &s->clients;
	if (s->clients)
		s->clients->prev = &cl->next;
	s->clients = cl;
	conn_set_data(c, cl);
}

int server_start(struct sched *s, char **detail)
{
	struct conn_config cfg = {
	    .token = &s->token,
	    .key = &s->key,
	    .purposes =
		HANDSHAKE_PURPOSE_BIT(HANDSHAKE_CONTROL) | HANDSHAKE_PURPOSE_BIT(HANDSHAKE_ADMIN),
	    .node = "scheduler",
	    .encrypt = s->o->encrypt,
	    .body_max = SERVER_HEARTBEAT_MAX,
	    .payload_max = 1,
	    .name = "control",
	};
	int rc = conn_listen(&s->loop, s->o->listen, &cfg, &callbacks, s, on_accept, &s->listener);
	if (rc < 0)
		*detail = xasprintf("--listen %s: %s", s->o->listen,
				    rc == -EINVAL || rc == SB_EURI ? "expected HOST:PORT"
								   : sb_strerror(rc));
	return rc;
}

void server_stop(struct sched *s)
{
	if (s->listener)
		conn_listener_close(s->listener);
	s->listener = NULL;
	for (struct sched_client *cl = s->clients; cl; cl = cl->next)
		if (cl->conn)
			conn_close(cl->conn, 0);
}

void server_check_liveness(struct sched *s)
{
	uint64_t now = uv_now(&s->loop);
	uint64_t silent = (uint64_t)s->o->heartbeat_ms * SCHED_SILENT_BEATS;
	for (struct sched_client *cl = s->clients; cl; cl = cl->next) {
		if (!cl->conn)
			continue;
		if (cl->node && now - cl->node->last_heard > silent) {
			log_with(LOG_WARN, LOG_KV({"node", cl->node->name}),
				 "node %s: no heartbeat for %llu ms; taking it as gone",
				 cl->node->name, (unsigned long long)(now - cl->node->last_heard));
			conn_close(cl->conn, -ETIMEDOUT);
		} else if (!cl->node && cl->refs == 1 &&
			   now - cl->accepted > SCHED_CLIENT_IDLE_MS) {
			conn_close(cl->conn, -ETIMEDOUT);
		}
	}
}
