/* Cut-through: a node receiving a block as pieces passes each verified
 * piece on to a peer that asks for the block meanwhile, announces it
 * (Have.partial), and once the block is durable says Have and serves it
 * from the cache as pieces too; a bad piece gets
 * its sender a BadBlock and the connection dropped, and the peer it was
 * passed on to a Reject and Have.gone, with nothing of the block stored.
 * The node is a real peers set and fetch on a real cache; its two peers are
 * real connections on loopback speaking the wire protocol from this test:
 * "node-a" holds the version, "node-a2" wants it.
 * Blocks whose hash nobody knows yet, read from the origin: the reader
 * streams them as they come (Have.reading, pieces without hashes); the
 * receiver keeps them unwritten until the hash comes, then stores them, or
 * shuns the reader when they do not match it. */
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <uv.h>

#include "agent/cache.h"
#include "agent/fetch.h"
#include "agent/fetch_int.h"
#include "agent/peer.h"
#include "agent/peer_int.h"
#include "common/manifest.h"
#include "common/net/conn.h"
#include "common/net/wire.h"
#include "common/path.h"

#define BS	 (1u << 20) /* 4 pieces */
#define NB	 3u
#define NP	 (BS / PIECE_SIZE)
#define GUARD_MS 60000
#define MAXREQ	 8

struct client {
	uv_loop_t *loop;
	struct conn *c;
	int ready, closed, bitfields, bad_blocks, rejects;
	uint64_t req_id[MAXREQ];
	uint32_t req_block[MAXREQ];
	int req_pieces[MAXREQ], req_hashed[MAXREQ], nreqs;
	int partial[NB], gone[NB], have[NB], reading[NB];
	int unhashed;	 /* first pieces that came without piece hashes */
	uint8_t got[BS]; /* pieces received, in place */
	int npieces;
	uint8_t leaves[NP * HASH_LEN];
	size_t nleaves;
};

static void cl_ready(struct conn *c, int status)
{
	struct client *cl = conn_data(c);
	cl->ready = status == 0 ? 1 : -1;
}

static void on_have(struct client *cl, const uint8_t *body, size_t len)
{
	Syncbit__Have *m = syncbit__have__unpack(NULL, len, body);
	assert_non_null(m);
	for (size_t i = 0; i < m->n_blocks; i++)
		cl->have[m->blocks[i] % NB]++;
	for (size_t i = 0; i < m->n_partial; i++)
		cl->partial[m->partial[i] % NB]++;
	for (size_t i = 0; i < m->n_gone; i++)
		cl->gone[m->gone[i] % NB]++;
	for (size_t i = 0; i < m->n_reading; i++)
		cl->reading[m->reading[i] % NB]++;
	syncbit__have__free_unpacked(m, NULL);
}

static int cl_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct client *cl = conn_data(c);
	if (type == SYNCBIT__MSG_TYPE__MSG_BITFIELD) {
		cl->bitfields++;
	} else if (type == SYNCBIT__MSG_TYPE__MSG_HAVE) {
		on_have(cl, body, len);
	} else if (type == SYNCBIT__MSG_TYPE__MSG_REQUEST) {
		Syncbit__Request *m = syncbit__request__unpack(NULL, len, body);
		assert_non_null(m);
		assert_true(cl->nreqs < MAXREQ);
		cl->req_id[cl->nreqs] = m->request_id;
		cl->req_block[cl->nreqs] = m->block;
		cl->req_hashed[cl->nreqs] = m->block_hash.len == HASH_LEN;
		cl->req_pieces[cl->nreqs++] = m->pieces;
		syncbit__request__free_unpacked(m, NULL);
	} else if (type == SYNCBIT__MSG_TYPE__MSG_PIECE) {
		Syncbit__PieceHeader *m = syncbit__piece_header__unpack(NULL, len, body);
		assert_non_null(m);
		assert_int_equal(m->piece, (uint32_t)cl->npieces); /* in order */
		assert_int_equal(plen, PIECE_SIZE);
		if (m->piece == 0 && !m->piece_hashes.len) {
			cl->unhashed++;
		} else if (m->piece == 0) {
			assert_int_equal(m->piece_hashes.len, sizeof cl->leaves);
			memcpy(cl->leaves, m->piece_hashes.data, sizeof cl->leaves);
			cl->nleaves = m->piece_hashes.len / HASH_LEN;
		} else {
			assert_int_equal(m->piece_hashes.len, 0);
		}
		memcpy(cl->got + (size_t)m->piece * PIECE_SIZE, payload, plen);
		cl->npieces++;
		syncbit__piece_header__free_unpacked(m, NULL);
	} else if (type == SYNCBIT__MSG_TYPE__MSG_REJECT) {
		cl->rejects++;
	} else if (type == SYNCBIT__MSG_TYPE__MSG_BAD_BLOCK) {
		cl->bad_blocks++;
	}
	free(payload);
	return 0;
}

static void cl_close(struct conn *c, int status)
{
	struct client *cl = conn_data(c);
	cl->closed = 1;
}

static const struct conn_callbacks cl_cbs = {
    .on_ready = cl_ready, .on_frame = cl_frame, .on_close = cl_close};

static void on_guard(uv_timer_t *t)
{
	fail_msg("timed out");
}

#define RUN_UNTIL(loop, cond)                      \
	do {                                       \
		while (!(cond))                    \
			uv_run(loop, UV_RUN_ONCE); \
	} while (0)

struct fx {
	uv_loop_t loop;
	uv_timer_t guard;
	char *tmp;
	struct cache *c;
	struct peers *p;
	struct fetch *f;
	Manifest *m;
	uint8_t *bytes;
	uint8_t vid[HASH_LEN];
	struct hash_id ids[NB];
	struct secure_token tok;
	struct secure_keypair nkey, akey[2];
	struct client src, dst;
	int copy_reported; /* peers_on_bad_block: a cached copy to check */
	int unknown;	   /* the manifest gives no block hash */
};

static void on_bad_copy(void *arg, const struct hash_id *h)
{
	struct fx *x = arg;
	x->copy_reported += !memcmp(h->b, x->ids[0].b, HASH_LEN);
}

static void hook_durable(void *arg, struct fetch *f, uint32_t b, const struct hash_id *h,
			 int from_origin)
{
	struct fx *x = arg;
	peers_have(x->p, f, b);
}

static void hook_bad_peer(void *arg, struct fetch *f, const char *peer, uint32_t b)
{
	struct fx *x = arg;
	peers_drop(x->p, peer, "bad piece", f, b);
}

/* One file of NB blocks of NP pieces under format 2, every hash known (or
 * none, with x->unknown: still to be read from the origin). */
static Manifest *make_manifest(struct fx *x)
{
	Manifest m = SYNCBIT__MANIFEST__INIT, *out;
	FileEntry e = SYNCBIT__FILE_ENTRY__INIT, *pe = &e;
	uint8_t hashes[NB * HASH_LEN];
	x->bytes = malloc((size_t)NB * BS);
	for (size_t i = 0; i < (size_t)NB * BS; i++)
		x->bytes[i] = (uint8_t)(i * 13 + i / 4093);
	for (uint32_t b = 0; b < NB; b++) {
		block_id(MANIFEST_FORMAT_PIECES, x->bytes + (size_t)b * BS, BS, &x->ids[b]);
		if (x->unknown)
			memset(hashes + b * HASH_LEN, 0, HASH_LEN);
		else
			memcpy(hashes + b * HASH_LEN, x->ids[b].b, HASH_LEN);
	}
	m.format = MANIFEST_FORMAT_PIECES;
	m.source = (char *)"file:///nowhere";
	m.source_version = (char *)"";
	m.block_size = BS;
	m.n_files = 1;
	m.files = &pe;
	e.path = (char *)"weights";
	e.type = SYNCBIT__FILE_TYPE__FILE_REGULAR;
	e.mode = 0644;
	e.size = (uint64_t)NB * BS;
	e.source_digest = (char *)"";
	e.block_hashes.len = sizeof hashes;
	e.block_hashes.data = hashes;
	struct buf enc = BUF_INIT;
	manifest_encode(&m, &enc, NULL);
	assert_int_equal(manifest_decode(enc.ptr, enc.len, &out), 0);
	buf_close(&enc);
	return out;
}

static void dial(struct fx *x, struct client *cl, const char *node, struct secure_keypair *key)
{
	char addr[64];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", peers_port(x->p));
	cl->loop = &x->loop;
	struct conn_config cc = {
	    .token = &x->tok, .key = key, .node = node, .purpose = HANDSHAKE_PEER, .encrypt = 1};
	assert_int_equal(conn_dial(&x->loop, addr, &cc, &cl_cbs, cl, &cl->c), 0);
	RUN_UNTIL(&x->loop, cl->ready);
	assert_int_equal(cl->ready, 1);
	RUN_UNTIL(&x->loop, cl->bitfields); /* the node's, on connecting */
}

static int setup_with(void **state, int unknown)
{
	struct fx *x = calloc(1, sizeof *x);
	x->unknown = unknown;
	x->tmp = testutil_mkdtemp();
	char *data = path_join(x->tmp, "data"), *target = path_join(x->tmp, "target");
	uv_loop_init(&x->loop);
	uv_timer_init(&x->loop, &x->guard);
	uv_timer_start(&x->guard, on_guard, GUARD_MS, 0);
	uv_unref((uv_handle_t *)&x->guard);
	memset(x->tok.key, 0x5a, sizeof x->tok.key);
	secure_keypair_new(&x->nkey);
	secure_keypair_new(&x->akey[0]);
	secure_keypair_new(&x->akey[1]);
	assert_int_equal(cache_open(data, 0, &x->c), 0);
	struct peers_config pc = {.node = "node-b",
				  .listen = "127.0.0.1:0",
				  .token = &x->tok,
				  .key = &x->nkey,
				  .encrypt = 1,
				  .cache = x->c};
	char *detail = NULL;
	assert_int_equal(peers_new(&x->loop, &pc, &x->p, &detail), 0);
	/* Both peers sort before node-b: they dial it. */
	const char *nodes[] = {"node-a", "node-a2"};
	const char *addrs[] = {"127.0.0.1:1", "127.0.0.1:1"};
	uint8_t keys[2 * SECURE_KEY_BYTES];
	memcpy(keys, x->akey[0].pub, SECURE_KEY_BYTES);
	memcpy(keys + SECURE_KEY_BYTES, x->akey[1].pub, SECURE_KEY_BYTES);
	peers_set(x->p, nodes, addrs, keys, 2);
	peers_on_bad_block(x->p, on_bad_copy, x);
	x->m = make_manifest(x);
	memset(x->vid, 0x22, sizeof x->vid);
	struct source_options so;
	source_options_default(&so);
	struct fetch_hooks hooks = {.arg = x, .durable = hook_durable, .bad_peer = hook_bad_peer};
	assert_int_equal(fetch_new(&x->loop, x->c, "ds", target, x->vid, x->m, &so, &hooks, &x->f),
			 0);
	peers_add_fetch(x->p, x->f);
	free(data);
	free(target);
	*state = x;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, 0);
}

static int setup_unknown(void **state)
{
	return setup_with(state, 1);
}

static int teardown(void **state)
{
	struct fx *x = *state;
	struct client *cls[] = {&x->src, &x->dst};
	for (int i = 0; i < 2; i++)
		if (cls[i]->c && !cls[i]->closed) {
			conn_close(cls[i]->c, 0);
			RUN_UNTIL(&x->loop, cls[i]->closed);
		}
	peers_remove_fetch(x->p, x->f);
	fetch_free(x->f);
	peers_free(x->p);
	uv_close((uv_handle_t *)&x->guard, NULL);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&x->loop), 0);
	manifest_free(x->m);
	cache_free(x->c);
	secure_keypair_close(&x->nkey);
	secure_keypair_close(&x->akey[0]);
	secure_keypair_close(&x->akey[1]);
	testutil_rmtree(x->tmp);
	free(x->bytes);
	free(x);
	return 0;
}

static void send_bits(struct fx *x, struct client *cl, uint8_t bits)
{
	Syncbit__Bitfield m = SYNCBIT__BITFIELD__INIT;
	m.version_id.data = x->vid;
	m.version_id.len = HASH_LEN;
	m.nblocks = NB;
	m.bits.data = &bits;
	m.bits.len = 1;
	assert_int_equal(
	    wire_send(cl->c, SYNCBIT__MSG_TYPE__MSG_BITFIELD, &m.base, NULL, 0, NULL, NULL), 0);
}

/* dst fetches the version and holds none of it; src holds blocks 0 and 1:
 * the node asks src for both, as pieces (it may pass them on to dst). */
static void src_offers(struct fx *x)
{
	send_bits(x, &x->dst, 0);
	send_bits(x, &x->src, 3);
	RUN_UNTIL(&x->loop, x->src.nreqs == 2);
	for (int i = 0; i < 2; i++)
		assert_true(x->src.req_pieces[i]); /* a format 2 block of 4 pieces */
}

static void free_sent(void *arg, int status)
{
	free(arg);
}

/* src sends piece i of block b for its request (corrupted when bad), the
 * piece hashes with the first unless streamed (as read from the origin). */
static void src_send(struct fx *x, uint32_t b, uint32_t i, int bad, int streamed)
{
	int r = x->src.nreqs - 1;
	while (r > 0 && x->src.req_block[r] != b)
		r--;
	Syncbit__PieceHeader m = SYNCBIT__PIECE_HEADER__INIT;
	uint8_t leaves[NP * HASH_LEN], *piece = malloc(PIECE_SIZE);
	const uint8_t *block = x->bytes + (size_t)b * BS;
	block_piece_hashes(block, BS, leaves);
	memcpy(piece, block + (size_t)i * PIECE_SIZE, PIECE_SIZE);
	if (bad)
		piece[100] ^= 0x40;
	m.request_id = x->src.req_id[r];
	m.piece = i;
	if (i == 0 && !streamed) {
		m.piece_hashes.data = leaves;
		m.piece_hashes.len = sizeof leaves;
	}
	assert_int_equal(wire_send(x->src.c, SYNCBIT__MSG_TYPE__MSG_PIECE, &m.base, piece,
				   PIECE_SIZE, free_sent, piece),
			 0);
}

static void src_piece(struct fx *x, uint32_t b, uint32_t i, int bad)
{
	src_send(x, b, i, bad, 0);
}

/* dst asks the node for block b as pieces, naming its hash when hashed. */
static void dst_ask(struct fx *x, uint64_t id, uint32_t b, int hashed)
{
	Syncbit__Request m = SYNCBIT__REQUEST__INIT;
	m.request_id = id;
	m.version_id.data = x->vid;
	m.version_id.len = HASH_LEN;
	m.block = b;
	if (hashed) {
		m.block_hash.data = x->ids[b].b;
		m.block_hash.len = HASH_LEN;
	}
	m.pieces = 1;
	assert_int_equal(
	    wire_send(x->dst.c, SYNCBIT__MSG_TYPE__MSG_REQUEST, &m.base, NULL, 0, NULL, NULL), 0);
}

static void dst_asks(struct fx *x, uint64_t id, uint32_t b)
{
	dst_ask(x, id, b, 1);
}

/* dst has every piece of a block, and they are blk's bytes. */
static void dst_gets_block(struct fx *x, const uint8_t *blk)
{
	RUN_UNTIL(&x->loop, x->dst.npieces == NP);
	assert_memory_equal(x->dst.got, blk, BS);
}

static void test_cut_through(void **state)
{
	struct fx *x = *state;
	dial(x, &x->dst, "node-a2", &x->akey[1]);
	dial(x, &x->src, "node-a", &x->akey[0]);
	src_offers(x);

	/* Two of block 0's four pieces arrive: the node announces it and
	 * passes both on at once to the peer that asks. */
	src_piece(x, 0, 0, 0);
	src_piece(x, 0, 1, 0);
	RUN_UNTIL(&x->loop, x->dst.partial[0]);
	dst_asks(x, 77, 0);
	RUN_UNTIL(&x->loop, x->dst.npieces == 2);
	uint8_t leaves[NP * HASH_LEN];
	block_piece_hashes(x->bytes, BS, leaves);
	assert_int_equal(x->dst.nleaves, NP);
	assert_memory_equal(x->dst.leaves, leaves, sizeof leaves);
	assert_memory_equal(x->dst.got, x->bytes, 2 * PIECE_SIZE);
	assert_int_not_equal(fetch_block_state(x->f, 0), FETCH_HAVE);

	/* The rest follows as it arrives; the block is stored, and peers
	 * told it is held whole. */
	src_piece(x, 0, 2, 0);
	src_piece(x, 0, 3, 0);
	dst_gets_block(x, x->bytes);
	RUN_UNTIL(&x->loop, x->dst.have[0]);
	assert_int_equal(fetch_block_state(x->f, 0), FETCH_HAVE);
	assert_int_equal(x->dst.gone[0], 0);
	assert_int_equal(x->dst.rejects, 0);
	struct peers_stats st;
	peers_stats(x->p, &st);
	assert_int_equal(st.bytes_served, BS);
	assert_int_equal(st.bytes_passed_on, BS);

	/* Asked again once it is held: read from the cache, sent as pieces
	 * with their hashes, so the asker can pass them on in turn. */
	x->dst.npieces = 0;
	memset(x->dst.got, 0, sizeof x->dst.got);
	dst_asks(x, 79, 0);
	dst_gets_block(x, x->bytes);
	assert_memory_equal(x->dst.leaves, leaves, sizeof leaves);
	peers_stats(x->p, &st);
	assert_int_equal(st.bytes_served, 2 * BS);
	assert_int_equal(st.bytes_passed_on, BS); /* not while arriving */

	/* Block 1: a good first piece, passed on, then a bad one. The sender
	 * is told and dropped; the peer it was passed on to gets a Reject and
	 * Have.gone; nothing of block 1 is kept. */
	x->dst.npieces = 0;
	src_piece(x, 1, 0, 0);
	RUN_UNTIL(&x->loop, x->dst.partial[1]);
	dst_asks(x, 78, 1);
	RUN_UNTIL(&x->loop, x->dst.npieces == 1);
	src_piece(x, 1, 1, 1);
	RUN_UNTIL(&x->loop, x->src.closed && x->dst.rejects && x->dst.gone[1]);
	assert_int_equal(x->src.bad_blocks, 1);
	assert_true(peer_banned(x->p, "node-a"));
	struct fetch_stats fs;
	fetch_stats(x->f, &fs);
	assert_int_equal(fs.bad_blocks, 1);
	assert_int_equal(fetch_block_state(x->f, 1), FETCH_NEED);
	assert_null(x->p->lives);
	assert_int_equal(x->dst.have[1], 0);

	/* Block 0's cached copy goes bad: asked for as pieces, it is not
	 * sent (its piece hashes do not name the block) but refused, and
	 * the copy is reported to be checked. */
	struct cache_block_loc loc;
	assert_int_equal(cache_block_find(x->c, &x->ids[0], &loc), 1);
	int fd = open(loc.path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "?", 1, (off_t)loc.offset + 3 * PIECE_SIZE + 9), 1);
	close(fd);
	int rejects = x->dst.rejects;
	x->dst.npieces = 0;
	dst_asks(x, 80, 0);
	RUN_UNTIL(&x->loop, x->dst.rejects > rejects && x->copy_reported);
	assert_int_equal(x->dst.npieces, 0);
}

/* The node's request slots are reused: a request that takes a freed slot
 * starts with no piece of another block in it. */
static void test_slot_reused(void **state)
{
	struct fx *x = *state;
	dial(x, &x->dst, "node-a2", &x->akey[1]);
	dial(x, &x->src, "node-a", &x->akey[0]);
	src_offers(x);
	uint32_t first = x->src.req_block[0], second = x->src.req_block[1];
	src_piece(x, second, 0, 0); /* the second request has pieces under way */
	for (uint32_t i = 0; i < NP; i++)
		src_piece(x, first, i, 0);
	RUN_UNTIL(&x->loop, fetch_block_state(x->f, first) == FETCH_HAVE);
	Syncbit__Have h = SYNCBIT__HAVE__INIT;
	uint32_t two = 2;
	h.version_id.data = x->vid;
	h.version_id.len = HASH_LEN;
	h.n_blocks = 1;
	h.blocks = &two;
	assert_int_equal(
	    wire_send(x->src.c, SYNCBIT__MSG_TYPE__MSG_HAVE, &h.base, NULL, 0, NULL, NULL), 0);
	RUN_UNTIL(&x->loop, x->src.nreqs == 3);
	assert_int_equal(x->src.req_block[2], 2);
	for (uint32_t i = 0; i < NP; i++)
		src_piece(x, 2, i, 0);
	for (uint32_t i = 1; i < NP; i++)
		src_piece(x, second, i, 0);
	RUN_UNTIL(&x->loop, x->src.closed || (fetch_block_state(x->f, 2) == FETCH_HAVE &&
					      fetch_block_state(x->f, second) == FETCH_HAVE));
	assert_false(x->src.closed); /* no piece was out of place */
	struct fetch_stats fs;
	fetch_stats(x->f, &fs);
	assert_int_equal(fs.bad_blocks, 0);
}

/* With no other peer that lacks the blocks, nothing would be passed on:
 * they are asked whole (the sender need not hash them). */
static void test_whole_when_alone(void **state)
{
	struct fx *x = *state;
	dial(x, &x->src, "node-a", &x->akey[0]);
	send_bits(x, &x->src, 3);
	RUN_UNTIL(&x->loop, x->src.nreqs == 2);
	assert_false(x->src.req_pieces[0]);
	assert_false(x->src.req_pieces[1]);
}

/* Piece hashes that do not name the block: the sender is bad before any
 * piece is taken or passed on. */
static void test_wrong_piece_hashes(void **state)
{
	struct fx *x = *state;
	dial(x, &x->dst, "node-a2", &x->akey[1]);
	dial(x, &x->src, "node-a", &x->akey[0]);
	src_offers(x);
	uint8_t leaves[NP * HASH_LEN];
	block_piece_hashes(x->bytes, BS, leaves);
	leaves[5] ^= 1;
	Syncbit__PieceHeader m = SYNCBIT__PIECE_HEADER__INIT;
	m.request_id = x->src.req_id[x->src.req_block[0] == 0 ? 0 : 1];
	m.piece_hashes.data = leaves;
	m.piece_hashes.len = sizeof leaves;
	assert_int_equal(wire_send(x->src.c, SYNCBIT__MSG_TYPE__MSG_PIECE, &m.base, x->bytes,
				   PIECE_SIZE, NULL, NULL),
			 0);
	RUN_UNTIL(&x->loop, x->src.closed);
	assert_int_equal(x->src.bad_blocks, 1);
	assert_int_equal(x->dst.partial[0], 0);
	assert_null(x->p->lives);
	assert_int_equal(fetch_block_state(x->f, 0), FETCH_NEED);
}

/* ---- blocks streamed as they come from the origin ---- */

/* Ask the node, as dst, for block b with no hash: what it reads from the
 * origin now. */
static void dst_asks_streamed(struct fx *x, uint64_t id, uint32_t b)
{
	dst_ask(x, id, b, 0);
}

/* The node reads block 0 from the origin (the fetch's reading hook, as the
 * origin read calls it): it tells its peers, and one that asks gets the
 * bytes in order as they come, without piece hashes, counted as streamed.
 * A peer that connects meanwhile is told after the node's bitfield. A read
 * that fails ends the stream with a Reject and Have.gone; a block not being
 * read is refused. */
static void test_streams_what_it_reads(void **state)
{
	struct fx *x = *state;
	const uint8_t *blk = x->bytes;
	peers_reading(x->p, x->f, 0, FETCH_READING_START, blk, 0, 1);
	dial(x, &x->dst, "node-a2", &x->akey[1]);
	send_bits(x, &x->dst, 0);
	RUN_UNTIL(&x->loop, x->dst.reading[0]);
	dst_asks_streamed(x, 90, 0);
	/* 1.5 pieces in: the first piece goes at once, the half waits. */
	peers_reading(x->p, x->f, 0, FETCH_READING_MORE, blk, PIECE_SIZE + PIECE_SIZE / 2, 1);
	RUN_UNTIL(&x->loop, x->dst.npieces == 1);
	assert_int_equal(x->dst.unhashed, 1);
	assert_memory_equal(x->dst.got, blk, PIECE_SIZE);
	peers_reading(x->p, x->f, 0, FETCH_READING_MORE, blk, BS, 1);
	peers_reading(x->p, x->f, 0, FETCH_READING_END, blk, BS, 1);
	dst_gets_block(x, blk);
	assert_int_equal(x->dst.rejects, 0);
	struct peers_stats st;
	peers_stats(x->p, &st);
	assert_int_equal(st.bytes_streamed, BS);
	assert_int_equal(st.bytes_passed_on, BS);

	/* Block 1's read fails after its first piece: the stream ends. */
	x->dst.npieces = 0;
	const uint8_t *blk1 = x->bytes + BS;
	peers_reading(x->p, x->f, 1, FETCH_READING_START, blk1, 0, 1);
	RUN_UNTIL(&x->loop, x->dst.reading[1]);
	dst_asks_streamed(x, 91, 1);
	peers_reading(x->p, x->f, 1, FETCH_READING_MORE, blk1, PIECE_SIZE, 1);
	RUN_UNTIL(&x->loop, x->dst.npieces == 1);
	peers_reading(x->p, x->f, 1, FETCH_READING_END, blk1, 0, 0);
	RUN_UNTIL(&x->loop, x->dst.rejects == 1 && x->dst.gone[1]);

	/* Block 2 is not being read here. */
	dst_asks_streamed(x, 92, 2);
	RUN_UNTIL(&x->loop, x->dst.rejects == 2);
	assert_false(x->dst.closed);
}

static void src_reads(struct fx *x, uint32_t b)
{
	Syncbit__Have h = SYNCBIT__HAVE__INIT;
	h.version_id.data = x->vid;
	h.version_id.len = HASH_LEN;
	h.n_reading = 1;
	h.reading = &b;
	assert_int_equal(
	    wire_send(x->src.c, SYNCBIT__MSG_TYPE__MSG_HAVE, &h.base, NULL, 0, NULL, NULL), 0);
}

/* A peer reads blocks from the origin that the node lacks and whose hash
 * nobody knows: the node asks for them at once, keeps what comes unwritten
 * (not stored, not offered) until the hash comes, then stores the block;
 * a block that does not match its hash gets the reader a BadBlock and the
 * connection dropped, and is stored from nowhere; bytes whose hash never
 * comes go after FETCH_HELD_MS. */
static void test_takes_what_a_peer_reads(void **state)
{
	struct fx *x = *state;
	dial(x, &x->src, "node-a", &x->akey[0]);
	send_bits(x, &x->src, 0);

	/* Block 2: its hash never comes (the read failed after the bytes). */
	src_reads(x, 2);
	RUN_UNTIL(&x->loop, x->src.nreqs == 1);
	for (uint32_t i = 0; i < NP; i++)
		src_send(x, 2, i, 0, 1);
	RUN_UNTIL(&x->loop, fetch_block_held(x->f, 2));
	assert_int_equal(fetch_peer_storing(x->f), BS); /* it holds back new requests */
	uint64_t since = x->f->held->since_ms;
	fetch_held_sweep(x->f, since + FETCH_HELD_MS - 1);
	assert_true(fetch_block_held(x->f, 2));
	fetch_held_sweep(x->f, since + FETCH_HELD_MS);
	assert_false(fetch_block_held(x->f, 2));
	assert_int_equal(fetch_peer_storing(x->f), 0);
	assert_int_equal(fetch_block_state(x->f, 2), FETCH_UNKNOWN);
	x->src.nreqs = 0;

	src_reads(x, 0);
	RUN_UNTIL(&x->loop, x->src.nreqs == 1);
	assert_int_equal(x->src.req_block[0], 0);
	assert_false(x->src.req_hashed[0]);
	assert_true(x->src.req_pieces[0]);
	for (uint32_t i = 0; i < NP; i++)
		src_send(x, 0, i, 0, 1);
	RUN_UNTIL(&x->loop, fetch_block_held(x->f, 0));
	struct cache_block_loc loc;
	assert_int_equal(cache_block_find(x->c, &x->ids[0], &loc), 0); /* nothing written */
	assert_int_equal(fetch_block_state(x->f, 0), FETCH_UNKNOWN);
	assert_int_equal(x->src.nreqs, 1); /* not asked twice */
	uint32_t zero = 0;
	fetch_add_hashes(x->f, &zero, x->ids[0].b, 1);
	RUN_UNTIL(&x->loop, fetch_block_state(x->f, 0) == FETCH_HAVE);
	assert_false(fetch_block_held(x->f, 0));
	assert_int_equal(cache_block_find(x->c, &x->ids[0], &loc), 1);

	/* Block 1 comes with one byte changed: caught when its hash comes. */
	src_reads(x, 1);
	RUN_UNTIL(&x->loop, x->src.nreqs == 2);
	for (uint32_t i = 0; i < NP; i++)
		src_send(x, 1, i, i == 2, 1);
	RUN_UNTIL(&x->loop, fetch_block_held(x->f, 1));
	uint32_t one = 1;
	fetch_add_hashes(x->f, &one, x->ids[1].b, 1);
	RUN_UNTIL(&x->loop, x->src.closed);
	assert_int_equal(x->src.bad_blocks, 1);
	assert_true(peer_banned(x->p, "node-a"));
	struct fetch_stats fs;
	fetch_stats(x->f, &fs);
	assert_int_equal(fs.bad_blocks, 1);
	assert_int_equal(fetch_block_state(x->f, 1), FETCH_NEED);
	assert_int_equal(cache_block_find(x->c, &x->ids[1], &loc), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_streams_what_it_reads, setup_unknown, teardown),
	    cmocka_unit_test_setup_teardown(test_takes_what_a_peer_reads, setup_unknown, teardown),
	    cmocka_unit_test_setup_teardown(test_cut_through, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_piece_hashes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slot_reused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_whole_when_alone, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
