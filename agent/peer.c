#include "agent/peer_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/net/conn.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/log.h"
#include "common/net/wire.h"

static void maybe_free(struct peers *p);

static const struct conn_callbacks peer_cbs;

/* A peer that sent bad data is shunned for PEER_BAN_MS. */
int peer_banned(struct peers *p, const char *node)
{
	uint64_t now = uv_now(p->loop);
	for (size_t i = 0; i < p->nbans; i++)
		if (!strcmp(p->bans[i].node, node) && now < p->bans[i].until_ms)
			return 1;
	return 0;
}

static const char *verify(struct conn *c, const char *node, const uint8_t *key);
static const struct frame_handler *peer_limits(size_t *n);

/* Until this node fetches a version, no Block may carry a real payload. */
static uint32_t payload_cap(const struct peers *p)
{
	return p->block_cap ? p->block_cap : 1;
}

static struct conn_config conn_cfg(struct peers *p)
{
	size_t nrows;
	const struct frame_handler *rows = peer_limits(&nrows);
	struct conn_config cfg = {.token = &p->token,
				  .key = &p->key,
				  .purpose = HANDSHAKE_PEER,
				  .verify = verify,
				  .node = p->node,
				  .encrypt = p->encrypt,
				  .body_max = CTL_BODY_MAX,
				  .payload_max = payload_cap(p),
				  .table = rows,
				  .table_len = nrows,
				  .idle_ms = PEER_IDLE_MS,
				  .name = "peer"};
	return cfg;
}

/* ---- connections ---- */

static struct known *known_find(struct peers *p, const char *node)
{
	for (size_t i = 0; i < p->nknown; i++)
		if (!strcmp(p->known[i].node, node))
			return &p->known[i];
	return NULL;
}

/* Who may be on the other end of a peer link, in either direction: a node
 * the scheduler named, with the key it registered for that name (so no
 * node can pose as another), not shunned; and the node dialled. */
static const char *verify(struct conn *c, const char *node, const uint8_t *key)
{
	static const uint8_t none[SECURE_KEY_BYTES];
	struct peer *pe = conn_data(c);
	struct peers *p = pe->p;
	struct known *k = known_find(p, node);
	if (pe->node && strcmp(pe->node, node))
		return "it is not the node dialled";
	if (peer_banned(p, node))
		return "it is shunned for sending bad data";
	if (!k || !sodium_memcmp(k->key, none, sizeof none))
		return "not among the peers the scheduler named (yet)";
	if (sodium_memcmp(k->key, key, SECURE_KEY_BYTES) == 0)
		return NULL;
	uint64_t now = uv_now(p->loop);
	if (!p->refused_logged_ms || now - p->refused_logged_ms >= PEER_REFUSED_LOG_MS) {
		char fp[SECURE_FINGERPRINT_LEN];
		secure_key_fingerprint(key, fp);
		log_with(LOG_WARN, LOG_KV({"peer", node}),
			 "peer %s (%s) refused: its key %s is not the one the scheduler registered "
			 "for that node",
			 node, conn_peer_addr(c), fp);
		p->refused_logged_ms = now;
	}
	return "its key is not the one the scheduler registered for that node";
}

static struct peer *peer_new(struct peers *p)
{
	struct peer *pe = xcalloc(1, sizeof *pe);
	pe->p = p;
	pe->next = p->list;
	p->list = pe;
	return pe;
}

void peer_release(struct peer *pe)
{
	if (!pe->closed || pe->reading)
		return;
	struct peers *p = pe->p;
	for (struct peer **pp = &p->list; *pp; pp = &(*pp)->next)
		if (*pp == pe) {
			*pp = pe->next;
			break;
		}
	for (size_t i = 0; i < pe->nvers; i++) {
		free(pe->vers[i].bits);
		free(pe->vers[i].pbits);
	}
	free(pe->vers);
	while (pe->q_head) {
		struct serve *s = pe->q_head;
		pe->q_head = s->next;
		free(s);
	}
	free(pe->node);
	free(pe);
	if (p->closing)
		maybe_free(p);
}

static int send_bitfield(struct peer *pe, struct fetch *f, int ask)
{
	Syncbit__Bitfield m = SYNCBIT__BITFIELD__INIT;
	m.reply = ask;
	m.version_id.data = (uint8_t *)fetch_version_id(f);
	m.version_id.len = HASH_LEN;
	m.nblocks = fetch_nblocks(f);
	m.bits.data = (uint8_t *)fetch_bits(f);
	m.bits.len = (m.nblocks + 7) / 8;
	int rc = wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_BITFIELD, &m.base, NULL, 0, NULL, NULL);
	if (rc == 0)
		peer_tell_lives(pe, f);
	return rc;
}

static struct pver *find_pver(struct peer *pe, const uint8_t *vid)
{
	for (size_t i = 0; i < pe->nvers; i++)
		if (!memcmp(pe->vers[i].vid, vid, HASH_LEN))
			return &pe->vers[i];
	return NULL;
}

static struct fetch *find_fetch(struct peers *p, const uint8_t *vid)
{
	for (size_t i = 0; i < p->nfetches; i++)
		if (!memcmp(fetch_version_id(p->fetches[i]), vid, HASH_LEN))
			return p->fetches[i];
	return NULL;
}

/* Count (sign 1) or uncount (sign -1) a peer's blocks in f's availability. */
static void apply_avail(struct pver *v, int sign)
{
	if (!v->f || fetch_nblocks(v->f) != v->nblocks)
		return;
	for (uint32_t b = 0; b < v->nblocks; b++)
		if (peer_offers(v, b))
			fetch_avail_add(v->f, b, sign);
}

void peer_drop_req(struct peer *pe, size_t i, int cancel)
{
	struct req *r = &pe->reqs[i];
	if (cancel && pe->ready && !pe->closed) {
		Syncbit__Cancel m = SYNCBIT__CANCEL__INIT;
		m.request_id = r->id;
		wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_CANCEL, &m.base, NULL, 0, NULL, NULL);
	}
	peer_req_end(pe, r);
	fetch_block_unasked(r->f, r->b);
	pe->reqs[i] = pe->reqs[--pe->nreqs];
}

static void on_ready(struct conn *c, int status)
{
	struct peer *pe = conn_data(c);
	struct peers *p = pe->p;
	if (status < 0)
		return;
	const char *node = conn_peer_node(c);
	/* One connection per peer: a newer one (a restarted peer) wins. */
	for (struct peer *o = p->list; o; o = o->next)
		if (o != pe && o->ready && !o->closed && o->node && !strcmp(o->node, node))
			conn_close(o->c, 0);
	free(pe->node);
	pe->node = xstrdup(node);
	pe->ready = 1;
	p->st.connected++;
	log_with(LOG_INFO, LOG_KV({"peer", node}), "peer %s (%s) connected%s", node,
		 conn_peer_addr(c), conn_encrypted(c) ? "" : " without encryption");
	for (size_t i = 0; i < p->nfetches; i++)
		send_bitfield(pe, p->fetches[i], 0);
}

static void on_close(struct conn *c, int status)
{
	struct peer *pe = conn_data(c);
	struct peers *p = pe->p;
	const char *why = conn_error(c)[0] ? conn_error(c) : sb_strerror(status);
	if (pe->ready && !status)
		log_with(LOG_INFO, LOG_KV({"peer", pe->node}), "peer %s gone: closed", pe->node);
	else if (pe->ready)
		log_limited_with(LOG_WARN, LOG_KV({"peer", pe->node}, {"error", why}),
				 "peer %s (%s): connection lost: %s", pe->node, conn_peer_addr(c),
				 why);
	else if (status == SB_EAUTH)
		log_limited_with(LOG_WARN, LOG_KV({"peer", pe->node}, {"addr", conn_peer_addr(c)}),
				 "peer %s (%s) refused the handshake (wrong join token?)",
				 pe->node ? pe->node : "?", conn_peer_addr(c));
	else if (status && pe->node) /* a peer this node dialed */
		log_limited_with(LOG_WARN, LOG_KV({"peer", pe->node}, {"error", why}),
				 "peer %s unreachable at %s: %s", pe->node, conn_peer_addr(c), why);
	else if (status)
		log_with(LOG_DEBUG, LOG_KV({"addr", conn_peer_addr(c)}, {"error", why}),
			 "peer %s: %s", conn_peer_addr(c), why);
	peer_streams_drop(pe);
	if (p->closing) { /* the fetches may be gone already */
		pe->nreqs = 0;
	} else {
		while (pe->nreqs)
			peer_drop_req(pe, 0, 0);
		for (size_t i = 0; i < pe->nvers; i++)
			apply_avail(&pe->vers[i], -1);
	}
	pe->closed = 1;
	pe->c = NULL;
	int closing = p->closing;
	peer_release(pe); /* may free p when it is closing */
	if (!closing)
		peers_wake(p);
}

static void on_drain(struct conn *c)
{
	struct peer *pe = conn_data(c);
	peer_pump_serve(pe->p);
}

static void on_accept(struct conn_listener *l, struct conn *c)
{
	struct peers *p = conn_data(c);
	struct peer *pe = peer_new(p);
	pe->c = c;
	conn_set_data(c, pe);
	conn_set_payload_max(c, payload_cap(p)); /* the listener's dates from its start */
}

static void dial(struct peers *p, struct known *k)
{
	struct conn_config cfg = conn_cfg(p);
	struct peer *pe = peer_new(p);
	pe->node = xstrdup(k->node);
	int rc = conn_dial(p->loop, k->addr, &cfg, &peer_cbs, pe, &pe->c);
	if (rc < 0) {
		log_with(LOG_WARN, LOG_KV({"peer", k->node}, {"error", sb_strerror(rc)}),
			 "peer %s: cannot dial %s: %s", k->node, k->addr, sb_strerror(rc));
		pe->closed = 1;
		peer_release(pe);
	}
	k->next_dial_ms = uv_now(p->loop) + PEER_REDIAL_MS;
}

static struct peer *peer_by_node(struct peers *p, const char *node)
{
	for (struct peer *pe = p->list; pe; pe = pe->next)
		if (!pe->closed && pe->node && !strcmp(pe->node, node))
			return pe;
	return NULL;
}

static void dial_missing(struct peers *p)
{
	uint64_t now = uv_now(p->loop);
	for (size_t i = 0; i < p->nknown; i++) {
		struct known *k = &p->known[i];
		if (strcmp(k->node, p->node) <= 0 || now < k->next_dial_ms ||
		    peer_by_node(p, k->node))
			continue;
		dial(p, k);
	}
}

/* ---- messages ---- */

static int h_bitfield(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		      uint8_t *payload, size_t plen)
{
	struct peer *pe = ctx;
	Syncbit__Bitfield *m = (Syncbit__Bitfield *)msg;
	int rc = 0;
	if (m->version_id.len != HASH_LEN || m->nblocks > BITFIELD_BLOCKS_MAX ||
	    m->bits.len != (m->nblocks + 7) / 8) {
		rc = SB_EPROTO;
		goto out;
	}
	/* Only versions this node fetches or holds are kept, and only with
	 * their true size: what a peer can make this node hold is bounded by
	 * this node's own versions, not by what the peer invents. */
	struct fetch *f = find_fetch(pe->p, m->version_id.data);
	if (!f || fetch_nblocks(f) != m->nblocks) {
		pe->p->st.bitfields_ignored++;
		goto out;
	}
	struct pver *v = find_pver(pe, m->version_id.data);
	if (v) {
		apply_avail(v, -1);
		free(v->bits);
		free(v->pbits);
		v->pbits = NULL;
	} else {
		pe->vers = xrealloc(pe->vers, (pe->nvers + 1) * sizeof *pe->vers);
		v = &pe->vers[pe->nvers++];
		memcpy(v->vid, m->version_id.data, HASH_LEN);
		v->pbits = NULL;
		v->nreading = 0;
	}
	v->nblocks = m->nblocks;
	v->bits = xcalloc(m->bits.len + 1, 1);
	memcpy(v->bits, m->bits.data, m->bits.len);
	v->f = f;
	apply_avail(v, 1);
	if (m->reply)
		rc = send_bitfield(pe, f, 0);
	peer_fill(pe);
out:
	return rc;
}

static int h_have(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		  uint8_t *payload, size_t plen)
{
	struct peer *pe = ctx;
	Syncbit__Have *m = (Syncbit__Have *)msg;
	struct pver *v = m->version_id.len == HASH_LEN ? find_pver(pe, m->version_id.data) : NULL;
	int rc = 0;
	for (size_t i = 0; v && i < m->n_blocks; i++) {
		uint32_t b = m->blocks[i];
		if (b >= v->nblocks) {
			rc = SB_EPROTO;
			break;
		}
		if (peer_bit(v->bits, b))
			continue;
		pver_unread(v, b);
		int counted = peer_offers(v, b); /* as a partial */
		v->bits[b / 8] |= (uint8_t)(1u << (b % 8));
		if (counted)
			v->pbits[b / 8] &= (uint8_t) ~(1u << (b % 8));
		else if (v->f && fetch_nblocks(v->f) == v->nblocks)
			fetch_avail_add(v->f, b, 1);
	}
	if (rc == 0 && v && (m->n_partial || m->n_gone || m->n_reading))
		rc = peer_have_partial(pe, v, m);
	if (rc == 0 && v)
		peer_fill(pe);
	return rc;
}

int peer_find_req(struct peer *pe, uint64_t id)
{
	for (size_t i = 0; i < pe->nreqs; i++)
		if (pe->reqs[i].id == id)
			return (int)i;
	return -1;
}

static int h_block(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		   uint8_t *payload, size_t plen)
{
	struct peer *pe = ctx;
	const Syncbit__BlockHeader *m = (const Syncbit__BlockHeader *)msg;
	int i = peer_find_req(pe, m->request_id);
	uint64_t m_id = m->request_id;
	pe->p->st.bytes_received += plen;
	if (i < 0) { /* canceled meanwhile */
		pe->p->st.bytes_unneeded += plen;
		log_with(LOG_DEBUG, LOG_KV({"peer", pe->node}),
			 "peer %s: block for canceled request %llu dropped", pe->node,
			 (unsigned long long)m_id);
		free(payload);
		return 0;
	}
	pe->window_bytes += plen;
	peer_block_done(pe, (size_t)i, payload, plen, 0);
	return 0;
}

void peer_block_done(struct peer *pe, size_t i, uint8_t *payload, size_t plen, int verified)
{
	struct fetch *f = pe->reqs[i].f;
	uint32_t b = pe->reqs[i].b;
	enum fetch_block_state bs = fetch_block_state(f, b);
	if (bs != FETCH_NEED && bs != FETCH_PEER && bs != FETCH_UNKNOWN)
		pe->p->st.bytes_unneeded += plen; /* another peer's copy came first */
	fetch_metrics_latency(FETCH_FROM_PEER,
			      (double)(uv_now(pe->p->loop) - pe->reqs[i].sent_ms) / 1000.0);
	peer_drop_req(pe, i, 0);
	pe->block_len = (uint32_t)plen > pe->block_len ? (uint32_t)plen : pe->block_len;
	fetch_block_received(f, b, payload, plen, pe->node, verified);
	/* Endgame duplicates elsewhere are no longer needed. */
	for (struct peer *o = pe->p->list; o; o = o->next)
		for (size_t k = 0; k < o->nreqs; k++)
			if (o->reqs[k].f == f && o->reqs[k].b == b) {
				peer_drop_req(o, k, 1);
				peer_fill(o); /* its pipeline just shrank */
				break;
			}
	peer_fill(pe);
}

static int h_reject(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct peer *pe = ctx;
	Syncbit__Reject *m = (Syncbit__Reject *)msg;
	int i = peer_find_req(pe, m->request_id);
	int missing = m->reason && !strcmp(m->reason, "missing");
	if (i < 0)
		return 0;
	struct fetch *f = pe->reqs[i].f;
	uint32_t b = pe->reqs[i].b;
	peer_drop_req(pe, (size_t)i, 0);
	if (missing) { /* it no longer has the block (evicted, or its read ended) */
		struct pver *v = find_pver(pe, fetch_version_id(f));
		if (v)
			pver_unread(v, b);
		if (v && b < v->nblocks && peer_offers(v, b)) {
			v->bits[b / 8] &= (uint8_t) ~(1u << (b % 8));
			if (v->pbits)
				v->pbits[b / 8] &= (uint8_t) ~(1u << (b % 8));
			fetch_avail_add(f, b, -1);
		}
	}
	peers_wake(pe->p);
	return 0;
}

/* Limits the connection applies at each header: only a Block carries a
 * payload, one block (also under the connection's cap, payload_cap). */
static const struct frame_handler peer_table[] = {
    {SYNCBIT__MSG_TYPE__MSG_BITFIELD, CTL_BODY_MAX, FRAME_NO_PAYLOAD, h_bitfield},
    {SYNCBIT__MSG_TYPE__MSG_HAVE, PEER_HAVE_MAX, FRAME_NO_PAYLOAD, h_have},
    {SYNCBIT__MSG_TYPE__MSG_REQUEST, PEER_REQUEST_MAX, FRAME_NO_PAYLOAD, peer_h_request},
    {SYNCBIT__MSG_TYPE__MSG_BLOCK, PEER_BLOCK_MAX, BLOCK_SIZE_MAX, h_block},
    {SYNCBIT__MSG_TYPE__MSG_REJECT, PEER_REJECT_MAX, FRAME_NO_PAYLOAD, h_reject},
    {SYNCBIT__MSG_TYPE__MSG_CANCEL, PEER_CANCEL_MAX, FRAME_NO_PAYLOAD, peer_h_cancel},
    {SYNCBIT__MSG_TYPE__MSG_BAD_BLOCK, PEER_BAD_BLOCK_MAX, FRAME_NO_PAYLOAD, peer_h_bad_block},
    {SYNCBIT__MSG_TYPE__MSG_PIECE, PEER_PIECE_MAX, PIECE_SIZE, peer_h_piece},
};

static const struct frame_handler *peer_limits(size_t *n)
{
	*n = sizeof peer_table / sizeof *peer_table;
	return peer_table;
}

static int on_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct peer *pe = conn_data(c);
	return frame_dispatch(peer_table, sizeof peer_table / sizeof *peer_table, pe, type, body,
			      len, payload, plen);
}

static const struct conn_callbacks peer_cbs = {
    .on_ready = on_ready, .on_frame = on_frame, .on_drain = on_drain, .on_close = on_close};

/* ---- the set ---- */

static void tick(uv_timer_t *t)
{
	struct peers *p = t->data;
	uint64_t now = uv_now(p->loop);
	for (struct peer *pe = p->list; pe; pe = pe->next) {
		pe->rate = 0.7 * pe->rate + 0.3 * (double)pe->window_bytes * 1000.0 / TICK_MS;
		pe->window_bytes = 0;
	}
	for (struct peer *pe = p->list; pe; pe = pe->next)
		for (size_t i = 0; i < pe->nreqs;) {
			if (now - pe->reqs[i].sent_ms < PEER_REQUEST_MS) {
				i++;
				continue;
			}
			log_with(LOG_WARN, LOG_KV({"peer", pe->node}),
				 "peer %s: block %u unanswered for %d s; asking elsewhere",
				 pe->node, pe->reqs[i].b, PEER_REQUEST_MS / 1000);
			peer_drop_req(pe, i, 1);
		}
	peer_lives_sweep(p);
	/* An empty Have keeps every link's idle timer from firing while
	 * there is nothing to say; a silent peer is a gone peer. */
	if (now - p->last_keepalive_ms >= PEER_KEEPALIVE_MS) {
		Syncbit__Have m = SYNCBIT__HAVE__INIT;
		p->last_keepalive_ms = now;
		for (struct peer *pe = p->list; pe; pe = pe->next)
			if (pe->ready && !pe->closed)
				wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_HAVE, &m.base, NULL, 0,
					  NULL, NULL);
	}
	dial_missing(p);
	/* Also on a timer: a pipeline emptied by cancels or a peer that
	 * became useful again must not wait for the next event. */
	peers_wake(p);
}

int peers_new(uv_loop_t *loop, const struct peers_config *cfg, struct peers **out, char **detail)
{
	struct peers *p = xcalloc(1, sizeof *p);
	p->loop = loop;
	p->node = xstrdup(cfg->node);
	p->token = *cfg->token;
	p->key = *cfg->key;
	p->encrypt = cfg->encrypt;
	p->cache = cfg->cache;
	struct conn_config cc = conn_cfg(p);
	int rc = conn_listen(loop, cfg->listen, &cc, &peer_cbs, p, on_accept, &p->listener);
	if (rc < 0) {
		*detail =
		    xasprintf("cannot listen for peers on %s: %s", cfg->listen, sb_strerror(rc));
		secure_keypair_close(&p->key);
		free(p->node);
		free(p);
		return rc;
	}
	uv_timer_init(loop, &p->tick);
	p->tick.data = p;
	uv_timer_start(&p->tick, tick, TICK_MS, TICK_MS);
	*out = p;
	return 0;
}

static void maybe_free(struct peers *p)
{
	if (p->list || !p->tick_closed)
		return;
	peer_lives_free(p);
	secure_keypair_close(&p->key);
	sodium_memzero(&p->token, sizeof p->token);
	free(p->node);
	free(p);
}

static void tick_closed(uv_handle_t *h)
{
	struct peers *p = h->data;
	p->tick_closed = 1;
	maybe_free(p);
}

void peers_free(struct peers *p)
{
	if (!p)
		return;
	p->closing = 1;
	conn_listener_close(p->listener);
	for (struct peer *pe = p->list; pe; pe = pe->next)
		if (!pe->closed && pe->c)
			conn_close(pe->c, 0);
	for (size_t i = 0; i < p->nknown; i++) {
		free(p->known[i].node);
		free(p->known[i].addr);
	}
	free(p->known);
	free(p->fetches);
	free(p->served);
	for (size_t i = 0; i < p->nbans; i++)
		free(p->bans[i].node);
	free(p->bans);
	p->bans = NULL;
	p->nbans = 0;
	p->known = NULL;
	p->nknown = 0;
	p->fetches = NULL;
	p->nfetches = 0;
	p->served = NULL;
	p->nserved = 0;
	/* p is freed when the last peer connection and the timer are closed. */
	uv_close((uv_handle_t *)&p->tick, tick_closed);
}

int peers_port(const struct peers *p)
{
	return conn_listener_port(p->listener);
}

void peers_listener_metrics(const struct peers *p, struct buf *out)
{
	conn_listener_metrics(p->listener, out);
}

void peers_add_fetch(struct peers *p, struct fetch *f)
{
	p->fetches = xrealloc(p->fetches, (p->nfetches + 1) * sizeof *p->fetches);
	p->fetches[p->nfetches++] = f;
	/* The cap only grows: a block asked for earlier must still be taken. */
	uint32_t bs = fetch_manifest(f)->block_size;
	int grow = bs > p->block_cap;
	if (grow)
		p->block_cap = bs;
	for (struct peer *pe = p->list; pe; pe = pe->next) {
		if (grow && pe->c && !pe->closed)
			conn_set_payload_max(pe->c, bs);
		struct pver *v = find_pver(pe, fetch_version_id(f));
		if (v) {
			v->f = f;
			apply_avail(v, 1);
		}
		if (pe->ready && !pe->closed)
			send_bitfield(pe, f, 1);
	}
	peers_wake(p);
}

void peers_remove_fetch(struct peers *p, struct fetch *f)
{
	for (size_t i = 0; i < p->nfetches; i++)
		if (p->fetches[i] == f) {
			p->fetches[i] = p->fetches[--p->nfetches];
			break;
		}
	for (struct peer *pe = p->list; pe; pe = pe->next) {
		for (size_t i = 0; i < pe->nreqs;)
			if (pe->reqs[i].f == f)
				peer_drop_req(pe, i, 1);
			else
				i++;
		size_t kept = 0;
		for (size_t i = 0; i < pe->nvers; i++)
			if (pe->vers[i].f == f) {
				free(pe->vers[i].bits);
				free(pe->vers[i].pbits);
			} else
				pe->vers[kept++] = pe->vers[i];
		pe->nvers = kept;
	}
	peer_lives_end(p, f, UINT32_MAX);
}

void peers_have(struct peers *p, struct fetch *f, uint32_t b)
{
	/* Before the Have: a stream that cannot finish is refused first. */
	peer_lives_end(p, f, b);
	Syncbit__Have m = SYNCBIT__HAVE__INIT;
	m.version_id.data = (uint8_t *)fetch_version_id(f);
	m.version_id.len = HASH_LEN;
	m.n_blocks = 1;
	m.blocks = &b;
	for (struct peer *pe = p->list; pe; pe = pe->next)
		if (pe->ready && !pe->closed)
			wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_HAVE, &m.base, NULL, 0, NULL, NULL);
}

void peers_drop(struct peers *p, const char *node, const char *why, struct fetch *f, uint32_t b)
{
	struct peer *pe = peer_by_node(p, node);
	if (!pe)
		return;
	log_with(LOG_WARN, LOG_KV({"peer", node}, {"error", why}),
		 "peer %s: dropped: %s; shunned for %d s", node, why, PEER_BAN_MS / 1000);
	p->bans = xrealloc(p->bans, (p->nbans + 1) * sizeof *p->bans);
	p->bans[p->nbans].node = xstrdup(node);
	p->bans[p->nbans++].until_ms = uv_now(p->loop) + PEER_BAN_MS;
	p->st.dropped_bad_data++;
	if (!f || !peer_send_bad_block(pe, f, b))
		conn_close(pe->c, SB_ECORRUPT);
}

void peers_set(struct peers *p, const char *const *nodes, const char *const *addrs,
	       const uint8_t *keys, size_t n)
{
	struct known *old = p->known;
	size_t nold = p->nknown;
	p->known = xcalloc(n + 1, sizeof *p->known);
	p->nknown = 0;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(nodes[i], p->node))
			continue;
		struct known *k = &p->known[p->nknown++];
		k->node = xstrdup(nodes[i]);
		k->addr = xstrdup(addrs[i]);
		memcpy(k->key, keys + i * SECURE_KEY_BYTES, SECURE_KEY_BYTES);
		for (size_t j = 0; j < nold; j++)
			if (!strcmp(old[j].node, k->node) && !strcmp(old[j].addr, k->addr))
				k->next_dial_ms = old[j].next_dial_ms;
	}
	for (size_t j = 0; j < nold; j++) {
		free(old[j].node);
		free(old[j].addr);
	}
	free(old);
	dial_missing(p);
}

void peers_stats(const struct peers *p, struct peers_stats *out)
{
	*out = p->st;
	out->connected_now = 0;
	for (const struct peer *pe = p->list; pe; pe = pe->next)
		out->connected_now += pe->ready && !pe->closed;
}
