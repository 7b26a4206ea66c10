/* Serving blocks to peers: requests queue per peer, a bounded number of
 * disk reads run on the pool at once, taken from the peers in turn, and
 * nothing is read for a peer whose socket has not drained. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/peer_int.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "common/net/wire.h"

/* ---- serving ---- */

static void serve_work(uv_work_t *w)
{
	struct serve *s = w->data;
	struct cache_block_loc loc;
	int rc = cache_block_find(s->pe->p->cache, &s->h, &loc);
	for (int attempt = 0; rc == 1 && attempt < 2; attempt++) {
		int fd = open(loc.path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) { /* a partial just became an object: look again */
			rc = cache_block_find(s->pe->p->cache, &s->h, &loc);
			continue;
		}
		s->len = loc.len;
		s->pieces = s->pieces && loc.len > PIECE_SIZE;
		if (s->by_file && !s->pieces) { /* the socket reads it: no copy here */
			s->fd = fd;
			s->file_off = loc.offset;
			s->rc = 0;
			return;
		}
		s->buf = xmalloc(loc.len ? loc.len : 1);
		s->rc = io_pread_full(fd, s->buf, loc.len, loc.offset) == 0 ? 0 : SB_ETRUNCATED;
		if (s->rc == 0 && s->pieces && s->by_file) { /* pieces go by sendfile */
			s->fd = fd;
			s->file_off = loc.offset;
		} else {
			close(fd);
		}
		if (s->rc == 0 && s->pieces) {
			/* The piece hashes the receiver checks each piece
			 * against; they must name the block as asked, which
			 * checks this copy on the way. */
			uint32_t n = block_npieces(loc.len);
			struct hash_id root;
			s->leaves = xmalloc((size_t)n * HASH_LEN);
			block_piece_hashes(s->buf, loc.len, s->leaves);
			block_id_of_pieces(s->leaves, n, &root);
			if (memcmp(root.b, s->h.b, HASH_LEN))
				s->rc = SB_ECORRUPT;
			if (s->fd >= 0) { /* read for the hashes only */
				free(s->buf);
				s->buf = NULL;
			}
		}
		return;
	}
	s->rc = rc < 0 ? rc : SB_ENOTFOUND;
}

static void block_sent(void *arg, int status)
{
	free(arg);
}

struct file_sent {
	struct peers *p;
	int fd;
};

static void file_sent(void *arg, int status)
{
	struct file_sent *fs = arg;
	close(fs->fd);
	fs->p->files_open--;
	free(fs);
}

void peer_add_served(struct peers *p, const uint8_t *vid, uint64_t n)
{
	for (size_t i = 0; i < p->nserved; i++)
		if (!memcmp(p->served[i].vid, vid, HASH_LEN)) {
			p->served[i].bytes += n;
			return;
		}
	p->served = xrealloc(p->served, (p->nserved + 1) * sizeof *p->served);
	memcpy(p->served[p->nserved].vid, vid, HASH_LEN);
	p->served[p->nserved++].bytes = n;
}

static void serve_done(uv_work_t *w, int status)
{
	struct serve *s = w->data;
	struct peer *pe = s->pe;
	struct peers *p = pe->p;
	p->serve_busy--;
	pe->reading--;
	if (!pe->closed && pe->ready && s->rc == 0 && s->leaves) {
		peer_stream_whole(pe, s->id, &s->h, s->vid, s->buf, s->len, s->leaves, s->fd,
				  s->file_off);
		s->buf = NULL;
		s->leaves = NULL;
		s->fd = -1; /* the live block closes it */
	} else if (!pe->closed && pe->ready) {
		if (s->rc == 0) {
			Syncbit__BlockHeader m = SYNCBIT__BLOCK_HEADER__INIT;
			m.request_id = s->id;
			m.block_hash.data = s->h.b;
			m.block_hash.len = HASH_LEN;
			int sent;
			if (s->fd >= 0) {
				struct file_sent *fs = xmalloc(sizeof *fs);
				fs->p = p;
				fs->fd = s->fd;
				p->files_open++; /* until file_sent */
				sent =
				    wire_send_file(pe->c, SYNCBIT__MSG_TYPE__MSG_BLOCK, &m.base,
						   s->fd, s->file_off, s->len, file_sent, fs) == 0;
				if (sent) {
					s->fd = -1; /* file_sent closes it */
				} else {
					p->files_open--;
					free(fs);
				}
			} else {
				sent = wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_BLOCK, &m.base,
						 s->buf, s->len, block_sent, s->buf) == 0;
				if (sent)
					s->buf = NULL;
			}
			if (sent) {
				p->st.bytes_served += s->len;
				p->st.blocks_served++;
				peer_add_served(p, s->vid, s->len);
			}
		} else {
			Syncbit__Reject m = SYNCBIT__REJECT__INIT;
			m.request_id = s->id;
			m.reason = "missing";
			wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_REJECT, &m.base, NULL, 0, NULL,
				  NULL);
		}
	}
	if (s->rc == SB_ECORRUPT) {
		log_limited(LOG_WARN, "the cached copy of a block a peer asked for does not match "
				      "its hash; checking it");
		if (p->on_bad_block)
			p->on_bad_block(p->bad_block_arg, &s->h);
	}
	free(s->buf);
	free(s->leaves);
	if (s->fd >= 0) /* not handed over */
		close(s->fd);
	free(s);
	int closing = p->closing;
	peer_release(pe); /* may free p when it is closing */
	if (!closing)
		peer_pump_serve(p);
}

/* Disk reads for peers, one peer at a time in turn, none for a peer whose
 * socket has not taken what was read for it already. */
void peer_pump_serve(struct peers *p)
{
	int progress = 1;
	while (p->serve_busy < PEER_SERVE_SLOTS && progress) {
		progress = 0;
		for (struct peer *pe = p->list; pe && p->serve_busy < PEER_SERVE_SLOTS;
		     pe = pe->next) {
			if (pe->closed || !pe->q_head || conn_queued(pe->c) >= CONN_HIGH_WATER)
				continue;
			struct serve *s = pe->q_head;
			pe->q_head = s->next;
			if (!pe->q_head)
				pe->q_tail = NULL;
			pe->qlen--;
			pe->reading++;
			p->serve_busy++;
			s->by_file = !conn_encrypted(pe->c) && p->files_open < PEER_SENDFILE_MAX;
			s->work.data = s;
			int rc = uv_queue_work(p->loop, &s->work, serve_work, serve_done);
			if (rc < 0)
				fatal("uv_queue_work: %s", uv_strerror(rc));
			progress = 1;
		}
	}
}

int peer_h_request(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		   uint8_t *payload, size_t plen)
{
	struct peer *pe = ctx;
	Syncbit__Request *m = (Syncbit__Request *)msg;
	int rc = 0;
	if (m->version_id.len != HASH_LEN || (m->block_hash.len && m->block_hash.len != HASH_LEN) ||
	    (!m->block_hash.len && !m->pieces)) {
		rc = SB_EPROTO;
	} else if (!m->block_hash.len) { /* a block this node reads from the origin now */
		if (!peer_stream_origin(pe, m->request_id, m->version_id.data, m->block)) {
			Syncbit__Reject r = SYNCBIT__REJECT__INIT;
			r.request_id = m->request_id;
			r.reason = "missing";
			wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_REJECT, &r.base, NULL, 0, NULL,
				  NULL);
		}
	} else if (m->pieces && peer_stream_start(pe, m->request_id,
						  (const struct hash_id *)m->block_hash.data)) {
		/* passed on piece by piece as it arrives here */
	} else if (pe->qlen >= PEER_SERVE_QUEUE) {
		Syncbit__Reject r = SYNCBIT__REJECT__INIT;
		r.request_id = m->request_id;
		r.reason = "busy";
		wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_REJECT, &r.base, NULL, 0, NULL, NULL);
	} else {
		struct serve *s = xcalloc(1, sizeof *s);
		s->fd = -1;
		s->id = m->request_id;
		s->pe = pe;
		memcpy(s->h.b, m->block_hash.data, HASH_LEN);
		memcpy(s->vid, m->version_id.data, HASH_LEN);
		s->pieces = m->pieces;
		if (pe->q_tail)
			pe->q_tail->next = s;
		else
			pe->q_head = s;
		pe->q_tail = s;
		pe->qlen++;
		peer_pump_serve(pe->p);
	}
	return rc;
}

int peer_h_cancel(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		  uint8_t *payload, size_t plen)
{
	struct peer *pe = ctx;
	Syncbit__Cancel *m = (Syncbit__Cancel *)msg;
	if (peer_stream_cancel(pe, m->request_id))
		return 0;
	for (struct serve **sp = &pe->q_head, *prev = NULL; *sp; prev = *sp, sp = &(*sp)->next) {
		if ((*sp)->id != m->request_id)
			continue;
		struct serve *s = *sp;
		*sp = s->next;
		if (pe->q_tail == s)
			pe->q_tail = prev;
		pe->qlen--;
		free(s);
		break;
	}
	return 0;
}

uint64_t peers_served(const struct peers *p, const uint8_t *vid)
{
	for (size_t i = 0; i < p->nserved; i++)
		if (!memcmp(p->served[i].vid, vid, HASH_LEN))
			return p->served[i].bytes;
	return 0;
}

/* ---- reports of bad blocks ---- */

void peers_on_bad_block(struct peers *p, void (*fn)(void *arg, const struct hash_id *h), void *arg)
{
	p->on_bad_block = fn;
	p->bad_block_arg = arg;
}

static void report_sent(void *arg, int status)
{
	conn_close(arg, SB_ECORRUPT);
}

int peer_send_bad_block(struct peer *pe, struct fetch *f, uint32_t b)
{
	Syncbit__BadBlock m = SYNCBIT__BAD_BLOCK__INIT;
	m.version_id.data = (uint8_t *)fetch_version_id(f);
	m.version_id.len = HASH_LEN;
	m.block = b;
	m.block_hash.data = (uint8_t *)fetch_block_hash(f, b)->b;
	m.block_hash.len = HASH_LEN;
	return pe->ready && !pe->closed &&
	       wire_send(pe->c, SYNCBIT__MSG_TYPE__MSG_BAD_BLOCK, &m.base, NULL, 0, report_sent,
			 pe->c) == 0;
}

int peer_h_bad_block(void *ctx, ProtobufCMessage *msg, const uint8_t *body, size_t len,
		     uint8_t *payload, size_t plen)
{
	struct peer *pe = ctx;
	Syncbit__BadBlock *m = (Syncbit__BadBlock *)msg;
	int rc = m->block_hash.len == HASH_LEN ? 0 : SB_EPROTO;
	if (rc == 0) {
		log_limited(LOG_WARN,
			    "peer %s: block %u it had from here did not match its hash; checking "
			    "the copy here",
			    pe->node, m->block);
		if (pe->p->on_bad_block)
			pe->p->on_bad_block(pe->p->bad_block_arg,
					    (const struct hash_id *)m->block_hash.data);
	}
	return rc;
}
