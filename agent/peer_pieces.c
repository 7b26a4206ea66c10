/* Blocks passed on piece by piece (manifest format 2, common/blockid.h). A
 * node that asks a peer for a block with Request.pieces may get it as Piece
 * frames from a peer that is itself still receiving it. The receiver checks
 * the piece hashes of the first frame against the block id, then every
 * piece against its hash as it arrives; each verified piece is passed on at
 * once to the peers that asked this node for the block meanwhile, so a
 * block crosses a chain of nodes about one piece time behind its first
 * copy instead of one block time per hop. A bad piece shuns its sender as a
 * bad block does. Pieces live in memory only until the whole block is
 * verified and handed to the fetch, so nothing unverified is written, and a
 * crash leaves nothing behind. Loop thread only. */
#include "agent/peer_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/net/wire.h"

/* A block received whole but not durable after this long (its storing
 * failed) is no longer passed on. */
#define LIVE_KEEP_MS 30000

struct stream {
	uint64_t id;
	struct peer *pe;
	struct live *lv;
	uint32_t next; /* the next piece to send */
	struct stream *next_s;
};

static uint32_t piece_len(const struct live *lv, uint32_t i)
{
	uint64_t off = (uint64_t)i * PIECE_SIZE;
	return lv->len - off < PIECE_SIZE ? (uint32_t)(lv->len - off) : PIECE_SIZE;
}

static void reap(struct peers *p);

static void live_free_if_idle(struct live *lv)
{
	if (lv->dead && !lv->streams && !lv->sends && !lv->receiving)
		reap(lv->p);
}

static void stream_remove(struct stream *s)
{
	struct live *lv = s->lv;
	for (struct stream **sp = &lv->streams; *sp; sp = &(*sp)->next_s)
		if (*sp == s) {
			*sp = s->next_s;
			break;
		}
	free(s);
	live_free_if_idle(lv);
}

static void piece_sent(void *arg, int status)
{
	struct live *lv = arg;
	lv->sends--;
	live_free_if_idle(lv);
}

static void send_reject(struct peer *pe, uint64_t id)
{
	Syncbit__Reject m = SYNCBIT__REJECT__INIT;
	m.request_id = id;
	m.reason = "missing";
	if (pe->ready && !pe->closed)
		wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_REJECT, &m.base, NULL, 0, NULL, NULL);
}

/* Send s the pieces verified so far; it ends after the last one. */
static void stream_pump(struct stream *s)
{
	struct live *lv = s->lv;
	struct peers *p = lv->p;
	while (s->next < lv->ready) {
		Syncbit__PieceHeader m = SYNCBIT__PIECE_HEADER__INIT;
		uint32_t n = piece_len(lv, s->next);
		m.request_id = s->id;
		m.piece = s->next;
		if (s->next == 0 && lv->leaves) { /* none: read from the origin here */
			m.piece_hashes.data = lv->leaves;
			m.piece_hashes.len = (size_t)lv->npieces * HASH_LEN;
		}
		uint64_t off = (uint64_t)s->next * PIECE_SIZE;
		int rc = !s->pe->ready || s->pe->closed ? SB_ECANCELED
			 : lv->buf ? wire_send(s->pe->c, SYNCBIT__MSG_TYPE__MSG_PIECE, &m.base,
					       lv->buf + off, n, piece_sent, lv)
				   : wire_send_file(s->pe->c, SYNCBIT__MSG_TYPE__MSG_PIECE, &m.base,
						    lv->fd, lv->file_off + off, n, piece_sent, lv);
		if (rc < 0) {
			stream_remove(s);
			return;
		}
		lv->sends++;
		s->next++;
		p->st.bytes_served += n;
		if (lv->f)
			p->st.bytes_passed_on += n;
		if (lv->origin)
			p->st.bytes_streamed += n;
		peer_add_served(p, lv->vid, n);
	}
	if (s->next == lv->npieces) {
		p->st.blocks_served++;
		stream_remove(s);
	}
}

static void live_pump(struct live *lv)
{
	for (struct stream *s = lv->streams, *next; s; s = next) {
		next = s->next_s;
		stream_pump(s);
	}
}

enum announce { ANNOUNCE_PARTIAL, ANNOUNCE_GONE, ANNOUNCE_READING };

/* Tell every peer but skip about block b of lv (Have.partial, .gone or
 * .reading). */
static void announce(struct live *lv, struct peer *skip, enum announce what)
{
	Syncbit__Have m = SYNCBIT__HAVE__INIT;
	uint32_t b = lv->b;
	m.version_id.data = (uint8_t *)fetch_version_id(lv->f);
	m.version_id.len = HASH_LEN;
	if (what == ANNOUNCE_GONE) {
		m.n_gone = 1;
		m.gone = &b;
	} else if (what == ANNOUNCE_READING) {
		m.n_reading = 1;
		m.reading = &b;
	} else {
		m.n_partial = 1;
		m.partial = &b;
	}
	for (struct peer *pe = lv->p->list; pe; pe = pe->next)
		if (pe != skip && pe->ready && !pe->closed)
			wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_HAVE, &m.base, NULL, 0, NULL, NULL);
}

/* lv will not be whole: those it was passed on to ask elsewhere. It is
 * freed by the caller once idle (live_free_if_idle, reap). */
static void live_fail(struct live *lv)
{
	if (lv->dead)
		return;
	lv->dead = 1;
	while (lv->streams) {
		struct stream *s = lv->streams;
		send_reject(s->pe, s->id);
		lv->streams = s->next_s;
		free(s);
	}
	if (lv->announced)
		announce(lv, NULL, ANNOUNCE_GONE);
}

static void live_release(struct peers *p, struct live *lv)
{
	if (lv->fd >= 0) {
		close(lv->fd);
		p->files_open--;
	}
	free(lv->buf);
	free(lv->leaves);
	free(lv);
}

/* Free every live block that is done with. */
static void reap(struct peers *p)
{
	for (struct live **lp = &p->lives; *lp;) {
		struct live *lv = *lp;
		if (!lv->dead || lv->streams || lv->sends || lv->receiving) {
			lp = &lv->next;
			continue;
		}
		*lp = lv->next;
		live_release(p, lv);
	}
}

/* The live copy of hash h that has the most pieces, or NULL. */
static struct live *live_find(struct peers *p, const struct hash_id *h)
{
	struct live *best = NULL;
	for (struct live *lv = p->lives; lv; lv = lv->next)
		if (!lv->dead && !lv->origin && !memcmp(lv->h.b, h->b, HASH_LEN) &&
		    (!best || lv->ready > best->ready))
			best = lv;
	return best;
}

void peer_req_end(struct peer *pe, struct req *r)
{
	free(r->pbuf);
	r->pbuf = NULL;
	struct live *lv = r->lv;
	if (!lv)
		return;
	r->lv = NULL;
	lv->receiving = 0;
	if (lv->ready < lv->npieces)
		live_fail(lv);
	live_free_if_idle(lv);
}

/* A live block of len bytes named h, of version vid, in buf (taken; NULL:
 * in file fd, taken), with piece hashes leaves (taken), linked into p. */
static struct live *live_new(struct peers *p, const struct hash_id *h, const uint8_t *vid,
			     uint32_t len, uint8_t *buf, uint8_t *leaves, int fd, uint64_t off)
{
	struct live *lv = xcalloc(1, sizeof *lv);
	lv->p = p;
	lv->h = *h;
	memcpy(lv->vid, vid, HASH_LEN);
	lv->len = len;
	lv->npieces = block_npieces(len);
	lv->buf = buf;
	lv->leaves = leaves;
	lv->fd = fd;
	lv->file_off = off;
	if (fd >= 0)
		p->files_open++; /* until the live block goes */
	lv->next = p->lives;
	p->lives = lv;
	return lv;
}

/* Serve request id of pe from lv: what is verified now, the rest as it
 * comes. */
static void stream_add(struct peer *pe, uint64_t id, struct live *lv)
{
	struct stream *s = xcalloc(1, sizeof *s);
	s->id = id;
	s->pe = pe;
	s->lv = lv;
	s->next_s = lv->streams;
	lv->streams = s;
	stream_pump(s);
}

/* The first frame of request r: piece hashes that name the block. NULL
 * when they do not (the sender is bad). */
static struct live *live_start(struct peer *pe, struct req *r, const Syncbit__PieceHeader *m)
{
	struct fetch *f = r->f;
	uint32_t len = fetch_block_len(f, r->b), n = block_npieces(len);
	struct hash_id root;
	if (m->piece_hashes.len != (size_t)n * HASH_LEN)
		return NULL;
	block_id_of_pieces(m->piece_hashes.data, n, &root);
	if (memcmp(root.b, fetch_block_hash(f, r->b)->b, HASH_LEN))
		return NULL;
	/* One announcement per block: an endgame duplicate is not told. */
	int first = live_find(pe->p, &root) == NULL;
	uint8_t *leaves = xmalloc(m->piece_hashes.len);
	memcpy(leaves, m->piece_hashes.data, m->piece_hashes.len);
	struct live *lv =
	    live_new(pe->p, &root, fetch_version_id(f), len, xmalloc(len), leaves, -1, 0);
	lv->f = f;
	lv->b = r->b;
	lv->receiving = 1;
	lv->announced = first;
	if (lv->announced)
		announce(lv, pe, ANNOUNCE_PARTIAL);
	return lv;
}

/* Sender pe sent bad bytes for request i: shunned as for a bad block. */
static void bad_piece(struct peer *pe, size_t i)
{
	struct fetch *f = pe->reqs[i].f;
	uint32_t b = pe->reqs[i].b;
	char *node = xstrdup(pe->node);
	peer_drop_req(pe, i, 0);
	fetch_block_bad(f, b, node, "a piece of block"); /* the hook drops the peer */
	free(node);
	peers_wake(pe->p);
}

/* A piece of a block its reader streams as it comes from the origin: kept
 * unchecked in the request's buffer, in order; the whole block goes to
 * the fetch, which holds it until it knows the block's hash. */
static int streamed_piece(struct peer *pe, size_t i, const Syncbit__PieceHeader *m,
			  uint8_t *payload, size_t plen)
{
	struct req *r = &pe->reqs[i];
	uint32_t len = fetch_block_len(r->f, r->b);
	uint32_t want = len - r->pgot < PIECE_SIZE ? len - r->pgot : PIECE_SIZE;
	if (m->piece != r->pgot / PIECE_SIZE || plen != want || m->piece_hashes.len) {
		free(payload);
		return SB_EPROTO;
	}
	if (!r->pbuf)
		r->pbuf = xmalloc(len);
	memcpy(r->pbuf + r->pgot, payload, plen);
	free(payload);
	r->pgot += (uint32_t)plen;
	pe->window_bytes += plen;
	if (r->pgot == len) {
		uint8_t *buf = r->pbuf;
		r->pbuf = NULL;
		for (size_t k = 0; k < pe->nvers; k++) /* all it had: not streamed again */
			if (pe->vers[k].f == r->f)
				pver_unread(&pe->vers[k], r->b);
		peer_block_done(pe, i, buf, len, 0);
	}
	return 0;
}

int peer_h_piece(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		 uint8_t *payload, size_t plen)
{
	struct peer *pe = ctx;
	const Syncbit__PieceHeader *m = (const Syncbit__PieceHeader *)msg;
	int i = peer_find_req(pe, m->request_id);
	pe->p->st.bytes_received += plen;
	if (i < 0) { /* canceled meanwhile */
		pe->p->st.bytes_unneeded += plen;
		free(payload);
		return 0;
	}
	struct req *r = &pe->reqs[i];
	if (r->streamed)
		return streamed_piece(pe, (size_t)i, m, payload, plen);
	struct live *lv = r->lv;
	if (!lv) {
		if (m->piece != 0 || fetch_manifest(r->f)->format != MANIFEST_FORMAT_PIECES) {
			free(payload);
			return SB_EPROTO;
		}
		if (!(lv = r->lv = live_start(pe, r, m))) {
			free(payload);
			bad_piece(pe, (size_t)i);
			return 0;
		}
	}
	if (m->piece != lv->ready || plen != piece_len(lv, m->piece)) {
		free(payload);
		return SB_EPROTO;
	}
	struct hash_id h;
	hash_sha256(payload, plen, &h);
	if (memcmp(h.b, lv->leaves + (size_t)m->piece * HASH_LEN, HASH_LEN)) {
		free(payload);
		bad_piece(pe, (size_t)i);
		return 0;
	}
	memcpy(lv->buf + (size_t)m->piece * PIECE_SIZE, payload, plen);
	free(payload);
	lv->ready++;
	pe->window_bytes += plen;
	live_pump(lv);
	if (lv->ready < lv->npieces)
		return 0;
	lv->done_ms = uv_now(pe->p->loop);
	/* The fetch takes a copy: peers may still ask for the block here
	 * until it is durable and served from the cache. */
	uint8_t *copy = xmalloc(lv->len);
	memcpy(copy, lv->buf, lv->len);
	peer_block_done(pe, (size_t)i, copy, lv->len, 1);
	return 0;
}

int peer_stream_start(struct peer *pe, uint64_t id, const struct hash_id *h)
{
	struct live *lv = live_find(pe->p, h);
	if (!lv)
		return 0;
	stream_add(pe, id, lv);
	return 1;
}

void peer_stream_whole(struct peer *pe, uint64_t id, const struct hash_id *h, const uint8_t *vid,
		       uint8_t *buf, uint32_t len, uint8_t *leaves, int fd, uint64_t off)
{
	struct live *lv = live_new(pe->p, h, vid, len, buf, leaves, fd, off);
	lv->ready = lv->npieces;
	lv->dead = 1; /* one request's: freed once sent */
	stream_add(pe, id, lv);
}

int peer_stream_cancel(struct peer *pe, uint64_t id)
{
	for (struct live *lv = pe->p->lives; lv; lv = lv->next)
		for (struct stream *s = lv->streams; s; s = s->next_s)
			if (s->pe == pe && s->id == id) {
				stream_remove(s);
				return 1;
			}
	return 0;
}

void peer_streams_drop(struct peer *pe)
{
	for (struct live *lv = pe->p->lives; lv; lv = lv->next)
		for (struct stream **sp = &lv->streams; *sp;) {
			struct stream *s = *sp;
			if (s->pe != pe) {
				sp = &s->next_s;
				continue;
			}
			*sp = s->next_s;
			free(s);
		}
	reap(pe->p);
}

void peer_lives_end(struct peers *p, struct fetch *f, uint32_t b)
{
	for (struct live *lv = p->lives; lv; lv = lv->next) {
		if (lv->f != f || (b != UINT32_MAX && lv->b != b))
			continue;
		if (b == UINT32_MAX && lv->origin) { /* its read ends with the fetch, untold */
			lv->receiving = 0;
			lv->src = NULL;
		}
		if (b == UINT32_MAX || lv->ready < lv->npieces)
			live_fail(lv);
		else /* whole and durable: the cache serves it now */
			lv->dead = 1;
	}
	reap(p);
}

void peer_lives_sweep(struct peers *p)
{
	uint64_t now = uv_now(p->loop);
	for (struct live *lv = p->lives; lv; lv = lv->next)
		if (!lv->dead && lv->done_ms && now - lv->done_ms > LIVE_KEEP_MS)
			lv->dead = 1; /* its storing failed: it is asked anew */
	reap(p);
}

void peer_lives_free(struct peers *p)
{
	while (p->lives) {
		struct live *lv = p->lives;
		p->lives = lv->next;
		while (lv->streams) {
			struct stream *s = lv->streams;
			lv->streams = s->next_s;
			free(s);
		}
		live_release(p, lv);
	}
}

void pver_unread(struct pver *v, uint32_t b)
{
	for (uint32_t i = 0; i < v->nreading; i++)
		if (v->reading[i] == b) {
			memmove(v->reading + i, v->reading + i + 1,
				(v->nreading - i - 1) * sizeof *v->reading);
			v->nreading--;
			return;
		}
}

int peer_have_partial(struct peer *pe, struct pver *v, const Syncbit__Have *m)
{
	const uint32_t *partial = m->partial, *gone = m->gone;
	size_t np = m->n_partial, ng = m->n_gone;
	int counted = v->f && fetch_nblocks(v->f) == v->nblocks;
	for (size_t i = 0; i < np + ng; i++)
		if ((i < np ? partial[i] : gone[i - np]) >= v->nblocks)
			return SB_EPROTO;
	for (size_t i = 0; i < m->n_reading; i++) {
		uint32_t b = m->reading[i];
		if (b >= v->nblocks)
			return SB_EPROTO;
		if (v->nreading == PVER_READING_MAX || peer_bit(v->bits, b))
			continue;  /* more are not tracked: a few per reader are under way */
		pver_unread(v, b); /* once, at the end: oldest first */
		v->reading[v->nreading++] = b;
	}
	for (size_t i = 0; i < ng; i++)
		pver_unread(v, gone[i]);
	if (np && !v->pbits)
		v->pbits = xcalloc((v->nblocks + 7) / 8 + 1, 1);
	for (size_t i = 0; i < np; i++) {
		uint32_t b = partial[i];
		if (peer_offers(v, b))
			continue;
		v->pbits[b / 8] |= (uint8_t)(1u << (b % 8));
		if (counted)
			fetch_avail_add(v->f, b, 1);
	}
	for (size_t i = 0; i < ng && v->pbits; i++) {
		uint32_t b = gone[i];
		if (!peer_bit(v->pbits, b))
			continue;
		v->pbits[b / 8] &= (uint8_t) ~(1u << (b % 8));
		if (!peer_bit(v->bits, b) && counted)
			fetch_avail_add(v->f, b, -1);
	}
	return 0;
}

/* ---- blocks read from the origin here, streamed as they come ---- */

/* The live block of b of f this node reads from the origin, or NULL. */
static struct live *origin_live(struct peers *p, const uint8_t *vid, uint32_t b)
{
	for (struct live *lv = p->lives; lv; lv = lv->next)
		if (lv->origin && !lv->dead && lv->b == b && !memcmp(lv->vid, vid, HASH_LEN))
			return lv;
	return NULL;
}

/* got bytes of lv are in (src, the read's buffer): copied when it was
 * asked for, and sent on. */
static void origin_more(struct live *lv, const uint8_t *src, uint32_t got)
{
	if (lv->buf && got > lv->got)
		memcpy(lv->buf + lv->got, src + lv->got, got - lv->got);
	lv->src = src;
	lv->got = got > lv->got ? got : lv->got;
	lv->ready = lv->got == lv->len ? lv->npieces : lv->got / PIECE_SIZE;
	live_pump(lv);
}

void peers_reading(struct peers *p, struct fetch *f, uint32_t b, enum fetch_reading what,
		   const uint8_t *buf, uint32_t got, int ok)
{
	struct live *lv = origin_live(p, fetch_version_id(f), b);
	if (what == FETCH_READING_START) {
		if (lv) { /* an earlier read that did not end (cannot happen) */
			lv->receiving = 0;
			lv->src = NULL;
			live_fail(lv);
			live_free_if_idle(lv);
		}
		struct hash_id none = {{0}};
		lv = live_new(p, &none, fetch_version_id(f), fetch_block_len(f, b), NULL, NULL, -1,
			      0);
		lv->f = f;
		lv->b = b;
		lv->origin = 1;
		lv->receiving = 1; /* until the read ends: src is valid */
		lv->src = buf;
		lv->announced = 1;
		announce(lv, NULL, ANNOUNCE_READING);
		return;
	}
	if (!lv)
		return;
	if (what == FETCH_READING_MORE) {
		origin_more(lv, buf, got);
		return;
	}
	lv->receiving = 0;
	if (ok && lv->buf) {
		origin_more(lv, buf, got);
		lv->done_ms = uv_now(p->loop); /* served until durable here */
	} else if (ok) {
		lv->dead = 1; /* nobody asked: the cache serves it once durable */
	} else {
		live_fail(lv);
	}
	lv->src = NULL;
	live_free_if_idle(lv);
}

int peer_stream_origin(struct peer *pe, uint64_t id, const uint8_t *vid, uint32_t b)
{
	struct live *lv = origin_live(pe->p, vid, b);
	if (!lv)
		return 0;
	if (!lv->buf) { /* the first to ask: a copy from now on */
		lv->buf = xmalloc(lv->len);
		memcpy(lv->buf, lv->src, lv->got);
	}
	stream_add(pe, id, lv);
	return 1;
}

int peer_pick_streamed(struct peer *pe, struct fetch **fo, uint32_t *bo)
{
	for (size_t i = 0; i < pe->nvers; i++) {
		struct pver *v = &pe->vers[i];
		struct fetch *f = v->f;
		if (!v->nreading || !f || fetch_complete(f) || fetch_error(f) ||
		    v->nblocks != fetch_nblocks(f))
			continue;
		for (uint32_t k = 0; k < v->nreading; k++) {
			uint32_t b = v->reading[k];
			if (fetch_block_state(f, b) == FETCH_UNKNOWN && !fetch_block_asks(f, b) &&
			    !fetch_block_held(f, b)) {
				*fo = f;
				*bo = b;
				return 1;
			}
		}
	}
	return 0;
}

void peer_tell_lives(struct peer *pe, struct fetch *f)
{
	struct buf partial = BUF_INIT, reading = BUF_INIT;
	for (const struct live *lv = pe->p->lives; lv; lv = lv->next)
		if (lv->f == f && !lv->dead && lv->receiving && lv->announced)
			buf_append(lv->origin ? &reading : &partial, &lv->b, sizeof lv->b);
	if (partial.len || reading.len) {
		Syncbit__Have m = SYNCBIT__HAVE__INIT;
		m.version_id.data = (uint8_t *)fetch_version_id(f);
		m.version_id.len = HASH_LEN;
		m.partial = (uint32_t *)partial.ptr;
		m.n_partial = partial.len / sizeof(uint32_t);
		m.reading = (uint32_t *)reading.ptr;
		m.n_reading = reading.len / sizeof(uint32_t);
		wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_HAVE, &m.base, NULL, 0, NULL, NULL);
	}
	buf_close(&partial);
	buf_close(&reading);
}
