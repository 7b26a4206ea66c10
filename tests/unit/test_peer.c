/* The peer side's choices, without a network: which block a peer is asked
 * for (rarest first among the needed blocks it has, from any random start;
 * blocks already asked are left alone until the endgame, where a block
 * whose requests are overdue is asked of a second peer, at most
 * PEER_ENDGAME_ASKS at once), and shunning a peer that sent bad data. The
 * fetch is a real one on a real cache; the peers are the module's own
 * structures (agent/peer_int.h) with no connection behind them. */
#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <uv.h>

#include "agent/peer_int.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/path.h"
#include "common/uri.h"

#define BS 4096u
#define NB 8u

struct fx {
	char *root;
	uv_loop_t loop;
	struct cache *c;
	struct fetch *f;
	struct peers p;
	struct peer a, b; /* b is in the list first */
	uint8_t bits_a[NB / 8 + 1], bits_b[NB / 8 + 1];
	struct pver va, vb;
};

static void on_done(void *arg, struct fetch *f, int status)
{
}

/* A version of one file of NB distinct blocks, every hash known: a node
 * that holds none of it needs every block from peers. */
static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof *x);
	x->root = testutil_mkdtemp();
	char *src = path_join(x->root, "src"), *data = path_join(x->root, "data");
	char *target = path_join(x->root, "target"), *file = path_join(src, "model");
	mkdir(src, 0755);
	uint8_t *bytes = malloc(NB * BS), hashes[NB * HASH_LEN];
	for (size_t i = 0; i < NB * BS; i++)
		bytes[i] = (uint8_t)(i * 7 + i / BS);
	for (uint32_t b = 0; b < NB; b++)
		hash_sha256(bytes + (size_t)b * BS, BS, (struct hash_id *)(hashes + b * HASH_LEN));
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, bytes, NB * BS), (ssize_t)(NB * BS));
	close(fd);
	struct source_uri uri;
	assert_int_equal(uri_parse(src, &uri), 0);
	FileEntry e = SYNCBIT__FILE_ENTRY__INIT, *ep = &e;
	e.path = "model";
	e.type = SYNCBIT__FILE_TYPE__FILE_REGULAR;
	e.mode = 0644;
	e.size = NB * BS;
	e.source_digest = "";
	e.block_hashes.data = hashes;
	e.block_hashes.len = sizeof hashes;
	Manifest mm = SYNCBIT__MANIFEST__INIT, *m;
	mm.format = MANIFEST_FORMAT;
	mm.source = uri.canonical;
	mm.source_version = "";
	mm.block_size = BS;
	mm.n_files = 1;
	mm.files = &ep;
	struct buf enc = BUF_INIT;
	struct hash_id id;
	manifest_encode(&mm, &enc, &id);
	assert_int_equal(manifest_decode(enc.ptr, enc.len, &m), 0);
	buf_close(&enc);
	uv_loop_init(&x->loop);
	assert_int_equal(cache_open(data, 0, &x->c), 0);
	struct source_options so;
	source_options_default(&so);
	struct fetch_hooks hooks = {.done = on_done};
	uint8_t vid[HASH_LEN] = {3};
	assert_int_equal(fetch_new(&x->loop, x->c, "ds", target, vid, m, &so, &hooks, &x->f), 0);
	assert_int_equal(fetch_nblocks(x->f), NB);
	for (uint32_t b = 0; b < NB; b++)
		assert_int_equal(fetch_block_state(x->f, b), FETCH_NEED);
	manifest_free(m);
	uri_close(&uri);
	free(bytes);
	free(src);
	free(data);
	free(target);
	free(file);

	x->p.loop = &x->loop;
	x->p.list = &x->b;
	x->b.next = &x->a;
	struct peer *peers[] = {&x->a, &x->b};
	struct pver *vers[] = {&x->va, &x->vb};
	uint8_t *bits[] = {x->bits_a, x->bits_b};
	for (int i = 0; i < 2; i++) {
		peers[i]->p = &x->p;
		peers[i]->ready = 1;
		peers[i]->vers = vers[i];
		peers[i]->nvers = 1;
		memcpy(vers[i]->vid, vid, HASH_LEN);
		vers[i]->nblocks = NB;
		vers[i]->bits = bits[i];
		vers[i]->f = x->f;
	}
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	for (size_t i = 0; i < x->p.nbans; i++)
		free(x->p.bans[i].node);
	free(x->p.bans);
	fetch_free(x->f);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&x->loop), 0);
	cache_free(x->c);
	testutil_rmtree(x->root);
	free(x);
	return 0;
}

static void has(uint8_t *bits, uint32_t b)
{
	bits[b / 8] |= (uint8_t)(1u << (b % 8));
}

static void has_all(uint8_t *bits)
{
	for (uint32_t b = 0; b < NB; b++)
		has(bits, b);
}

/* Every peer holds the blocks it has set: availability as h_bitfield counts it. */
static void count_avail(struct fx *x, const uint8_t *bits, int copies)
{
	for (uint32_t b = 0; b < NB; b++)
		if (bits[b / 8] >> (b % 8) & 1)
			fetch_avail_add(x->f, b, copies);
}

/* The block a is asked for, from many random starts: -1 when none, -2 when
 * the answer depends on the start. */
static int picked(struct fx *x, struct peer *pe)
{
	int first = -3;
	for (unsigned seed = 1; seed <= 64; seed++) {
		struct fetch *f = NULL;
		uint32_t b;
		srandom(seed);
		int got = peer_pick(pe, &f, &b) ? (int)b : -1;
		if (got >= 0)
			assert_ptr_equal(f, x->f);
		if (first == -3)
			first = got;
		else if (got != first)
			return -2;
	}
	return first;
}

static void test_rarest_first(void **state)
{
	struct fx *x = *state;
	has_all(x->bits_a);
	count_avail(x, x->bits_a, 4); /* four holders of every block... */
	fetch_avail_add(x->f, 5, -3); /* ...but one of block 5 */
	assert_int_equal(picked(x, &x->a), 5);
}

static void test_rarest_among_what_the_peer_has(void **state)
{
	struct fx *x = *state;
	for (uint32_t b = 0; b < NB; b++)
		if (b != 5)
			has(x->bits_a, b);
	count_avail(x, x->bits_a, 4);
	fetch_avail_add(x->f, 5, 1);  /* rarest, but a does not have it */
	fetch_avail_add(x->f, 2, -2); /* the rarest a has */
	assert_int_equal(picked(x, &x->a), 2);
}

static void test_asked_blocks_left_alone(void **state)
{
	struct fx *x = *state;
	has_all(x->bits_a);
	count_avail(x, x->bits_a, 2);
	fetch_avail_add(x->f, 5, -1);
	fetch_block_asked(x->f, 5); /* in flight elsewhere, not overdue */
	assert_int_equal(fetch_block_state(x->f, 5), FETCH_PEER);
	int b = picked(x, &x->a);
	assert_true(b == -2 || (b >= 0 && b != 5)); /* any other: all equally rare */
	for (uint32_t k = 0; k < NB; k++)
		if (k != 5)
			fetch_block_asked(x->f, k);
	assert_int_equal(picked(x, &x->a), -1); /* all asked, none overdue */
}

/* b has asked for every block at sent_ms; a holds them all. */
static void endgame(struct fx *x, uint64_t sent_ms)
{
	has_all(x->bits_a);
	has_all(x->bits_b);
	count_avail(x, x->bits_a, 1);
	count_avail(x, x->bits_b, 1);
	for (uint32_t k = 0; k < NB; k++) {
		x->b.reqs[k] = (struct req){.id = k + 1, .f = x->f, .b = k, .sent_ms = sent_ms};
		fetch_block_asked(x->f, k);
	}
	x->b.nreqs = NB;
}

static void test_endgame_waits_for_overdue(void **state)
{
	struct fx *x = *state;
	endgame(x, uv_now(&x->loop));
	assert_int_equal(picked(x, &x->a), -1);
}

static void test_endgame_asks_overdue_block_again(void **state)
{
	struct fx *x = *state;
	uint64_t now = uv_now(&x->loop);
	assert_true(now > 120000); /* a monotonic clock since boot */
	endgame(x, now);
	x->b.reqs[3].sent_ms = now - 60000; /* stalled */
	assert_int_equal(picked(x, &x->a), 3);
	/* never asked of the same peer twice... */
	x->a.reqs[0] = (struct req){.id = 100, .f = x->f, .b = 3, .sent_ms = now};
	x->a.nreqs = 1;
	assert_int_equal(picked(x, &x->a), -1);
}

static void test_endgame_asks_limited(void **state)
{
	struct fx *x = *state;
	uint64_t now = uv_now(&x->loop);
	endgame(x, now);
	x->b.reqs[3].sent_ms = now - 60000;
	for (uint32_t i = 1; i < PEER_ENDGAME_ASKS; i++)
		fetch_block_asked(x->f, 3); /* already asked of enough peers */
	assert_int_equal(picked(x, &x->a), -1);
}

static void test_no_endgame_while_blocks_wait(void **state)
{
	struct fx *x = *state;
	uint64_t now = uv_now(&x->loop);
	endgame(x, now);
	x->b.reqs[3].sent_ms = now - 60000;
	/* block 6 is no longer asked and nobody a knows has it: not the end */
	x->b.reqs[6] = x->b.reqs[--x->b.nreqs];
	fetch_block_unasked(x->f, 6);
	x->bits_a[0] &= (uint8_t) ~(1u << 6);
	assert_int_equal(fetch_block_state(x->f, 6), FETCH_NEED);
	assert_int_equal(picked(x, &x->a), -1);
}

static void test_bad_data_shuns_the_peer(void **state)
{
	struct fx *x = *state;
	x->a.node = (char *)"evil";
	x->b.node = (char *)"good";
	x->a.c = NULL; /* nothing to close here */
	assert_false(peer_banned(&x->p, "evil"));
	peers_drop(&x->p, "evil", "sent a block that does not match its hash", NULL, 0);
	assert_true(peer_banned(&x->p, "evil"));
	assert_false(peer_banned(&x->p, "good"));
	struct peers_stats st;
	peers_stats(&x->p, &st);
	assert_int_equal(st.dropped_bad_data, 1);
	assert_int_equal(x->p.nbans, 1);
	assert_true(x->p.bans[0].until_ms >= uv_now(&x->loop) + PEER_BAN_MS);
	x->p.bans[0].until_ms = uv_now(&x->loop); /* the ban runs out */
	assert_false(peer_banned(&x->p, "evil"));
	x->a.node = x->b.node = NULL;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    T(test_rarest_first),
	    T(test_rarest_among_what_the_peer_has),
	    T(test_asked_blocks_left_alone),
	    T(test_endgame_waits_for_overdue),
	    T(test_endgame_asks_overdue_block_again),
	    T(test_endgame_asks_limited),
	    T(test_no_endgame_while_blocks_wait),
	    T(test_bad_data_shuns_the_peer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
