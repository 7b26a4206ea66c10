#include "scheduler/server.h"
#include "scheduler/server_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/net/conn.h"
#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/net/frame.h"
#include "common/log.h"
#include "common/net/wire.h"
#include "scheduler/ha.h"
#include "scheduler/hold.h"
#include "scheduler/pull.h"

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
	free(cl->sent_ix);
	free(cl->told);
	free(cl->peers_due);
	free(cl);
}

struct sched_client *server_client_of(const struct cluster_node *n)
{
	return n->conn ? conn_data(n->conn) : NULL;
}

static const char *peer_name(const struct sched_client *cl)
{
	return cl->node ? cl->node->name : cl->conn ? conn_peer_addr(cl->conn) : "?";
}

void server_send_msg(struct sched_client *cl, uint32_t type, const ProtobufCMessage *m)
{
	if (!cl->conn)
		return;
	int rc = wire_send(cl->conn, type, m, NULL, 0, NULL, NULL);
	if (rc < 0)
		log_debug("%s: cannot send message %u: %s", peer_name(cl), type, sb_strerror(rc));
}

void server_send(struct sched_client *cl, uint32_t type, const ProtobufCMessage *m)
{
	server_send_msg(cl, type, m);
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
	server_send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ERROR, &m.base);
}

void server_reply(struct sched_client *cl, int code, const char *message, json_t *json)
{
	Syncbit__AdminReply m = SYNCBIT__ADMIN_REPLY__INIT;
	char *text = json ? jsonfmt_dumps(json) : NULL;
	m.code = code;
	m.message = (char *)(message ? message : code < 0 ? sb_strerror(code) : "");
	m.json = text ? text : (char *)"";
	server_send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ADMIN_REPLY, &m.base);
	free(text);
	json_decref(json);
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

static int h_register(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		      uint8_t *pl, size_t plen)
{
	struct sched_client *cl = ctx;
	struct sched *s = cl->s;
	if (cl->node || conn_purpose(cl->conn) != HANDSHAKE_CONTROL)
		return SB_EPROTO;
	Syncbit__Register *r = (Syncbit__Register *)msg;
	const char *name = conn_peer_node(cl->conn);
	char *standby = NULL;
	int rc = s->ha && !s->ha->leader ? ha_check_change(s->ha, &standby) : 0;
	if (rc < 0) { /* the agent tries the next scheduler of its list */
		send_error(cl, rc, standby);
		free(standby);
		return rc;
	}
	rc = check_register(cl, r, name);
	if (rc == 0)
		rc = check_key(cl, name);
	if (rc == 0) {
		struct cluster_node *n = cluster_node_find(&s->cluster, name);
		if (n && n->conn) {
			log_with(
			    LOG_WARN, LOG_KV({"node", name}),
			    "node %s registered again from %s; closing its previous connection",
			    name, conn_peer_addr(cl->conn));
			struct sched_client *old = server_client_of(n);
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
		cl->peers_shared = r->peers_shared;
		/* What it does not acknowledge for as long as it may stay silent
		 * fails the connection too (a cut link, a machine gone). */
		conn_set_user_timeout(cl->conn, (unsigned)wire_silence_ms(s->o->heartbeat_ms));
		log_with(LOG_INFO, LOG_KV({"node", name}, {"addr", conn_peer_addr(cl->conn)}),
			 "node %s registered from %s (peers dial %s)", name,
			 conn_peer_addr(cl->conn), n->addr);
		Syncbit__Registered m = SYNCBIT__REGISTERED__INIT;
		m.node = n->name;
		m.heartbeat_ms = s->o->heartbeat_ms;
		m.heartbeat_deltas = 1;
		m.heartbeat_runs = 1;
		server_send_msg(cl, SYNCBIT__MSG_TYPE__MSG_REGISTERED, &m.base);
		server_reconcile_soon(s);
	}
	return rc;
}

static int told(struct sched_client *cl, const char *dataset)
{
	for (size_t i = 0; i < cl->ntold; i++)
		if (!strcmp(cl->told[i], dataset))
			return 1;
	return 0;
}

/* Something came from cl's node: a late one takes origin shares again. */
static void node_heard(struct sched *s, struct sched_client *cl, uint64_t now)
{
	uint64_t quiet = now - cl->node->last_heard;
	cluster_node_heard(&s->cluster, cl->node, now);
	if (!cl->node->late)
		return;
	cl->node->late = 0;
	log_with(LOG_INFO, LOG_KV({"node", cl->node->name}),
		 "node %s: heard again after %llu ms; it takes origin shares again", cl->node->name,
		 (unsigned long long)quiet);
	server_reconcile_soon(s);
}

/* A node holding a dataset it was not given (removed while it was away, or
 * its labels changed) is told once to drop it. */
static void drop_strays(struct sched *s, struct sched_client *cl, const Syncbit__Heartbeat *hb)
{
	for (size_t i = 0; i < hb->n_versions; i++) {
		const char *name = hb->versions[i]->dataset;
		if (!name || !name[0] || server_sent_find(cl, name) || told(cl, name))
			continue;
		struct cluster_dataset *d = cluster_dataset_find(&s->cluster, name);
		if (d && d->current && cluster_assigned(d, cl->node))
			continue;
		server_send_unassign(cl, name);
		cl->told = xrealloc(cl->told, (cl->ntold + 1) * sizeof *cl->told);
		cl->told[cl->ntold++] = xstrdup(name);
	}
}

static int h_heartbeat(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		       uint8_t *pl, size_t plen)
{
	struct sched_client *cl = ctx;
	struct sched *s = cl->s;
	if (!cl->node)
		return SB_EPROTO;
	Syncbit__Heartbeat *hb = (Syncbit__Heartbeat *)msg;
	uint64_t now = uv_now(&s->loop);
	cl->node->disk_free = hb->disk_free;
	node_heard(s, cl, now);
	if (cluster_node_report(&s->cluster, cl->node, hb->versions, hb->n_versions, now))
		server_reconcile_soon(s); /* a failing node's share goes to the others */
	drop_strays(s, cl, hb);
	if (!cl->reported) {
		cl->reported = 1;
		if (s->nhold)
			hold_reported(s, cl->node->name);
	}
	return 0;
}

/* A hash learnt and not yet sent (cluster_version.fresh). */
struct fresh_hash {
	uint32_t block;
	uint8_t hash[HASH_LEN];
};

/* The hashes cv learnt since the last broadcast, to every holder in one
 * message. The entries go out as copies of their two fields, not as the
 * node sent them: protobuf-c keeps unknown fields and packs them again,
 * some in a form it then refuses to unpack (field 0 spelled in two bytes),
 * and every member would drop its connection over one node's message. */
static void broadcast_hashes(struct sched *s, struct cluster_version *cv)
{
	const struct fresh_hash *f = (const struct fresh_hash *)cv->fresh.ptr;
	size_t n = cv->fresh.len / sizeof *f;
	Syncbit__Hashes m = SYNCBIT__HASHES__INIT;
	Syncbit__BlockHash *copies = xcalloc(n + 1, sizeof *copies);
	Syncbit__BlockHash **ptrs = xcalloc(n + 1, sizeof *ptrs);
	for (size_t i = 0; i < n; i++) {
		syncbit__block_hash__init(&copies[i]);
		copies[i].block = f[i].block;
		copies[i].hash.data = (uint8_t *)f[i].hash;
		copies[i].hash.len = HASH_LEN;
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
		struct sched_client *cl = server_client_of(members[i]);
		if (cl && cl->conn)
			conn_send(cl->conn, SYNCBIT__MSG_TYPE__MSG_HASHES, body, blen, NULL, 0,
				  NULL, NULL);
	}
	free(body);
	free(members);
	free(ptrs);
	free(copies);
	buf_reset(&cv->fresh);
}

/* The batch of every version; while batches go out, the next one waits
 * SERVER_HASHES_MS again. */
static void send_hashes(uv_timer_t *t)
{
	struct sched *s = t->data;
	int sent = 0;
	for (size_t i = 0; i < s->cluster.nversions; i++)
		if (s->cluster.versions[i]->fresh.len) {
			broadcast_hashes(s, s->cluster.versions[i]);
			sent = 1;
		}
	if (sent && !s->stopping)
		uv_timer_start(&s->hashes, send_hashes, SERVER_HASHES_MS, 0);
}

/* Hashes of cv learnt now go out with the next batch. */
static void queue_hashes(struct sched *s, struct cluster_version *cv, Syncbit__BlockHash **fresh,
			 size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct fresh_hash f = {fresh[i]->block, {0}};
		memcpy(f.hash, fresh[i]->hash.data, HASH_LEN);
		buf_append(&cv->fresh, &f, sizeof f);
	}
	/* The first hashes after a quiet spell go at once; those that follow
	 * within SERVER_HASHES_MS wait for one batch. */
	if (n && !s->stopping && !uv_is_active((uv_handle_t *)&s->hashes)) {
		broadcast_hashes(s, cv);
		uv_timer_start(&s->hashes, send_hashes, SERVER_HASHES_MS, 0);
	}
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

static int h_ingested(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		      uint8_t *pl, size_t plen)
{
	struct sched_client *cl = ctx;
	struct sched *s = cl->s;
	if (!cl->node)
		return SB_EPROTO;
	Syncbit__Ingested *m = (Syncbit__Ingested *)msg;
	int rc = 0;
	for (size_t i = 0; i < m->n_blocks && rc == 0; i++)
		if (m->blocks[i]->hash.len != HASH_LEN)
			rc = SB_EPROTO;
	struct cluster_version *cv =
	    cluster_version_find(&s->cluster, m->version_id.data, m->version_id.len);
	node_heard(s, cl, uv_now(&s->loop));
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
		queue_hashes(s, cv, fresh, n);
		const char *donor = NULL;
		uint32_t moved = n ? cluster_rebalance(cv, cl->node->name, &donor) : 0;
		if (moved)
			server_send_share_moved(s, cv, cl, donor, moved);
		if (completed) {
			char hex[HASH_HEX_LEN + 1];
			hash_to_hex(&cv->v->manifest_id, hex);
			log_info("%s: every block hash is known (manifest %.12s)", cv->v->m->source,
				 hex);
		}
		free(fresh);
	}
	return rc;
}

static int h_admin(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		   size_t plen)
{
	struct sched_client *cl = ctx;
	if (conn_purpose(cl->conn) != HANDSHAKE_ADMIN)
		return SB_EPROTO;
	cl->admin = 1;
	return admin_handle(cl->s, cl, (Syncbit__Admin *)msg);
}

static int h_pull(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len, uint8_t *pl,
		  size_t plen)
{
	struct sched_client *cl = ctx;
	return cl->node ? pull_handle(cl->s, cl, (const Syncbit__PullRequest *)msg) : SB_EPROTO;
}

static const struct frame_handler dispatch[] = {
    {SYNCBIT__MSG_TYPE__MSG_REGISTER, SERVER_REGISTER_MAX, FRAME_NO_PAYLOAD, h_register},
    {SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, SERVER_HEARTBEAT_MAX, FRAME_NO_PAYLOAD, h_heartbeat},
    {SYNCBIT__MSG_TYPE__MSG_INGESTED, SERVER_INGESTED_MAX, FRAME_NO_PAYLOAD, h_ingested},
    {SYNCBIT__MSG_TYPE__MSG_ADMIN, SERVER_ADMIN_MAX, FRAME_NO_PAYLOAD, h_admin},
    {SYNCBIT__MSG_TYPE__MSG_PULL, SERVER_ADMIN_MAX, FRAME_NO_PAYLOAD, h_pull},
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
	 * (common/net/admit.h): one line each would flood the log. */
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
		server_reconcile_soon(s);
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
	    .table = dispatch,
	    .table_len = sizeof dispatch / sizeof dispatch[0],
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
	server_reconcile_close(s);
	server_pace_stop(s);
	for (struct sched_client *cl = s->clients; cl; cl = cl->next)
		if (cl->conn)
			conn_close(cl->conn, 0);
}

uint64_t server_check_liveness(struct sched *s)
{
	uint64_t now = uv_now(&s->loop);
	uint64_t silent = wire_silence_ms(s->o->heartbeat_ms);
	uint64_t late = wire_late_ms(s->o->heartbeat_ms);
	uint64_t next = s->o->heartbeat_ms / 4;
	for (struct sched_client *cl = s->clients; cl; cl = cl->next) {
		if (!cl->conn)
			continue;
		uint64_t due;
		if (cl->node) {
			uint64_t quiet = now - cl->node->last_heard;
			if (quiet > silent) {
				log_with(LOG_WARN, LOG_KV({"node", cl->node->name}),
					 "node %s: no heartbeat for %llu ms (the limit is %llu: %u "
					 "heartbeats and a slack); taking it as gone",
					 cl->node->name, (unsigned long long)quiet,
					 (unsigned long long)silent, WIRE_SILENT_BEATS);
				conn_close(cl->conn, -ETIMEDOUT);
				continue;
			}
			if (quiet > late && !cl->node->late) {
				log_with(
				    LOG_WARN, LOG_KV({"node", cl->node->name}),
				    "node %s: no heartbeat for %llu ms; its origin shares go to "
				    "the others until it is heard again",
				    cl->node->name, (unsigned long long)quiet);
				cl->node->late = 1;
				server_reconcile_soon(s);
			}
			due = (quiet > late ? silent : late) + 1 - quiet;
		} else if (cl->refs == 1) {
			if (now - cl->accepted > SCHED_CLIENT_IDLE_MS) {
				conn_close(cl->conn, -ETIMEDOUT);
				continue;
			}
			due = SCHED_CLIENT_IDLE_MS + 1 - (now - cl->accepted);
		} else {
			continue;
		}
		if (due < next)
			next = due;
	}
	return next;
}
