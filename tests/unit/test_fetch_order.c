/* The order blocks are fetched in (agent/fetch_order.c): which block a peer
 * is asked for next, given the blocks it has, how rare each is, and which
 * files a consumer reads in which order or waits for now; and the order in
 * which this node's origin share is read. The fetches are real ones on a
 * real cache; nothing is read from their sources. */
#include "tests/unit/testutil.h"

#include <uv.h>

#include "agent/fetch_int.h"
#include "agent/peer_int.h"
#include "common/buf.h"
#include "common/log.h"

#define BS 32768u /* four blocks make a file larger than FETCH_SMALL_FIRST */
#define NB 13u	  /* file 0: block 0 (small); files 1, 2, 3: blocks 1-4, 5-8, 9-12 */

struct fx {
	char *root;
	uv_loop_t loop;
	struct cache *c;
	struct fetch *f;
	int wakes;
	uint8_t has[NB / 8 + 1]; /* the peer's bitfield */
};

static void on_done(void *arg, struct fetch *f, int status)
{
}

static void on_wake(void *arg, struct fetch *f)
{
	((struct fx *)arg)->wakes++;
}

/* A version of a small file and three of four blocks, every hash known,
 * from source (its scheme picks the policy): a node that holds none of it
 * needs every block. */
static struct fx *setup_from(const char *source)
{
	struct fx *x = calloc(1, sizeof *x);
	x->root = testutil_mkdtemp();
	char data[4096], target[4096];
	snprintf(data, sizeof data, "%s/data", x->root);
	snprintf(target, sizeof target, "%s/target", x->root);
	static const char *paths[] = {"blobs/sha256/00-config", "blobs/sha256/11",
				      "blobs/sha256/22", "blobs/sha256/33"};
	uint64_t sizes[] = {1000, 4 * BS, 4 * BS, 4 * BS - 5};
	uint8_t hashes[4][4 * HASH_LEN];
	FileEntry e[4], *ep[4];
	for (size_t i = 0; i < 4; i++) {
		syncbit__file_entry__init(&e[i]);
		ep[i] = &e[i];
		e[i].path = (char *)paths[i];
		e[i].type = SYNCBIT__FILE_TYPE__FILE_REGULAR;
		e[i].mode = 0644;
		e[i].size = sizes[i];
		e[i].source_digest = "";
		size_t nb = (size_t)manifest_nblocks(sizes[i], BS);
		for (size_t k = 0; k < nb; k++) {
			uint8_t seed[2] = {(uint8_t)i, (uint8_t)k};
			hash_sha256(seed, sizeof seed,
				    (struct hash_id *)(hashes[i] + k * HASH_LEN));
		}
		e[i].block_hashes.data = hashes[i];
		e[i].block_hashes.len = nb * HASH_LEN;
	}
	Manifest mm = SYNCBIT__MANIFEST__INIT, *m;
	mm.format = MANIFEST_FORMAT;
	mm.source = (char *)source;
	mm.source_version = "";
	mm.block_size = BS;
	mm.n_files = 4;
	mm.files = ep;
	struct buf enc = BUF_INIT;
	struct hash_id id;
	manifest_encode(&mm, &enc, &id);
	assert_int_equal(manifest_decode(enc.ptr, enc.len, &m), 0);
	buf_close(&enc);
	uv_loop_init(&x->loop);
	assert_int_equal(cache_open(data, 0, &x->c), 0);
	struct source_options so;
	source_options_default(&so);
	struct fetch_hooks hooks = {.arg = x, .done = on_done, .wake = on_wake};
	uint8_t vid[HASH_LEN] = {7};
	assert_int_equal(fetch_new(&x->loop, x->c, "ds", target, vid, m, &so, &hooks, &x->f), 0);
	manifest_free(m);
	assert_int_equal(fetch_nblocks(x->f), NB);
	for (uint32_t b = 0; b < NB; b++)
		assert_int_equal(fetch_block_state(x->f, b), FETCH_NEED);
	return x;
}

static int setup_oci(void **state)
{
	*state = setup_from("oci://registry.example/team/app:v1");
	return 0;
}

static int setup_http(void **state)
{
	*state = setup_from("https://origin.example/models/m");
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	fetch_free(x->f);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&x->loop), 0);
	cache_free(x->c);
	testutil_rmtree(x->root);
	free(x);
	return 0;
}

static void has(struct fx *x, uint32_t first, uint32_t last)
{
	for (uint32_t b = first; b <= last; b++)
		x->has[b / 8] |= (uint8_t)(1u << (b % 8));
}

/* Every block the peer has is held by copies peers in all. */
static void avail(struct fx *x, int copies)
{
	for (uint32_t b = 0; b < NB; b++)
		if (x->has[b / 8] >> (b % 8) & 1)
			fetch_avail_add(x->f, b, copies);
}

/* The block asked for next, from every start: -1 when none, -2 when the
 * answer depends on the start. */
static int next(struct fx *x)
{
	int first = -3;
	for (uint32_t start = 0; start < NB; start++) {
		uint32_t b;
		int got = fetch_order_pick(x->f, x->has, start, &b) ? (int)b : -1;
		if (first == -3)
			first = got;
		else if (got != first)
			return -2;
	}
	return first;
}

static void ask_all(struct fx *x, uint32_t first, uint32_t last)
{
	for (uint32_t b = first; b <= last; b++)
		fetch_block_asked(x->f, b);
}

/* The origin queue, from its head. */
static void queue_is(struct fx *x, const uint32_t *want, size_t n)
{
	const uint32_t *q = (const uint32_t *)x->f->origin_q.ptr;
	size_t nq = x->f->origin_q.len / sizeof *q - x->f->origin_head;
	assert_int_equal(nq, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(q[x->f->origin_head + i], want[i]);
}

static void queue_all(struct fx *x)
{
	buf_reset(&x->f->origin_q);
	x->f->origin_head = 0;
	for (uint32_t b = NB; b-- > 0;) /* backwards: the order is the policy's */
		buf_append(&x->f->origin_q, &b, sizeof b);
}

static void test_policy_by_source(void **state)
{
	struct fx *x = *state;
	assert_int_equal(fetch_order(x->f), FETCH_ORDER_FILES);
	assert_true(fetch_order_matters(x->f));
	const Manifest *m = fetch_manifest(x->f);
	assert_int_equal(fetch_order_of(m, FETCH_ORDER_AUTO), FETCH_ORDER_FILES);
	assert_int_equal(fetch_order_of(m, FETCH_ORDER_RAREST), FETCH_ORDER_RAREST);
}

static void test_files_small_file_first(void **state)
{
	struct fx *x = *state;
	has(x, 0, NB - 1);
	avail(x, 3);
	fetch_avail_add(x->f, 10, -2); /* the rarest, but in the last file */
	assert_int_equal(next(x), 0);
}

static void test_files_earliest_file_the_peer_has(void **state)
{
	struct fx *x = *state;
	has(x, 5, 12); /* files 2 and 3 */
	avail(x, 3);
	fetch_avail_add(x->f, 11, -2);
	fetch_avail_add(x->f, 7, -1); /* the rarest of file 2 */
	assert_int_equal(next(x), 7);
}

static void test_files_earlier_file_beats_rarer_block(void **state)
{
	struct fx *x = *state;
	has(x, 2, 2);
	has(x, 9, 9);
	fetch_avail_add(x->f, 2, 6);
	fetch_avail_add(x->f, 9, 1);
	assert_int_equal(next(x), 2);
}

static void test_files_equally_rare_from_the_start(void **state)
{
	struct fx *x = *state;
	has(x, 1, 12);
	avail(x, 2);
	uint32_t b;
	assert_true(fetch_order_pick(x->f, x->has, 3, &b));
	assert_int_equal(b, 3);
	assert_true(fetch_order_pick(x->f, x->has, 0, &b));
	assert_int_equal(b, 1);
	assert_true(fetch_order_pick(x->f, x->has, 11, &b)); /* wraps into file 1 */
	assert_int_equal(b, 1);
}

static void test_files_next_file_once_asked(void **state)
{
	struct fx *x = *state;
	has(x, 0, NB - 1);
	avail(x, 1);
	ask_all(x, 0, 4); /* the small file and file 1 are in flight */
	int b = next(x);
	assert_true(b == -2 || (b >= 5 && b <= 8));
	ask_all(x, 5, 12);
	assert_int_equal(next(x), -1); /* everything asked: nothing new */
}

static void test_files_consumer_order(void **state)
{
	struct fx *x = *state;
	has(x, 1, 12);
	avail(x, 2);
	size_t order[] = {3, 1}; /* manifest indices: the last file, then the first */
	fetch_order_files(x->f, order, 2);
	int b = next(x);
	assert_true(b == -2 || (b >= 9 && b <= 12));
	ask_all(x, 9, 12);
	b = next(x);
	assert_true(b == -2 || (b >= 1 && b <= 4));
	ask_all(x, 1, 4);
	size_t again[] = {2, 1}; /* named later, after those; 1 keeps its place */
	fetch_order_files(x->f, again, 2);
	b = next(x);
	assert_true(b == -2 || (b >= 5 && b <= 8));
}

static void test_files_wanted_first(void **state)
{
	struct fx *x = *state;
	has(x, 0, NB - 1);
	avail(x, 2);
	fetch_avail_add(x->f, 1, -1);
	assert_int_equal(x->wakes, 0);
	fetch_want_file(x->f, 2); /* containerd waits for this blob */
	assert_int_equal(x->wakes, 1);
	assert_true(fetch_file_wanted(x->f, 2));
	assert_false(fetch_file_wanted(x->f, 1));
	fetch_avail_add(x->f, 6, -1); /* the rarest of the wanted file */
	assert_int_equal(next(x), 6);
	fetch_want_file(x->f, 2); /* again: nothing changes, nobody woken */
	assert_int_equal(x->wakes, 1);
	/* two wanted: the policy's order between them (file 2 before 3) */
	fetch_want_file(x->f, 3);
	assert_int_equal(next(x), 6);
	/* a peer without the wanted blocks: what it has, in order */
	memset(x->has, 0, sizeof x->has);
	has(x, 0, 4);
	assert_int_equal(next(x), 0);
}

static void test_files_origin_queue(void **state)
{
	struct fx *x = *state;
	queue_all(x);
	fetch_order_queue(x->f);
	static const uint32_t in_order[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	queue_is(x, in_order, NB);
	size_t order[] = {2};
	fetch_order_files(x->f, order, 1);
	static const uint32_t named[] = {0, 5, 6, 7, 8, 1, 2, 3, 4, 9, 10, 11, 12};
	queue_is(x, named, NB);
	fetch_want_file(x->f, 3);
	static const uint32_t wanted[] = {9, 10, 11, 12, 0, 5, 6, 7, 8, 1, 2, 3, 4};
	queue_is(x, wanted, NB);
	/* reads under way are not queued: what is left keeps the order */
	x->f->origin_head = 6;
	fetch_order_queue(x->f);
	static const uint32_t rest[] = {6, 7, 8, 1, 2, 3, 4};
	queue_is(x, rest, 7);
}

static void test_rarest_across_the_version(void **state)
{
	struct fx *x = *state;
	assert_int_equal(fetch_order(x->f), FETCH_ORDER_RAREST);
	assert_false(fetch_order_matters(x->f)); /* agent/pick.h decides */
	has(x, 0, NB - 1);
	avail(x, 3);
	fetch_avail_add(x->f, 10, -2); /* the small file is no reason */
	assert_int_equal(next(x), 10);
	/* equally rare: any, by the start */
	fetch_avail_add(x->f, 10, 2);
	assert_int_equal(next(x), -2);
}

static void test_rarest_wanted_first(void **state)
{
	struct fx *x = *state;
	has(x, 0, NB - 1);
	avail(x, 3);
	fetch_avail_add(x->f, 10, -2);
	fetch_want_file(x->f, 1);
	assert_true(fetch_order_matters(x->f));
	fetch_avail_add(x->f, 3, -1);
	assert_int_equal(next(x), 3); /* the rarest of the wanted file */
	ask_all(x, 1, 4);
	assert_int_equal(next(x), 10); /* then rarest first again */
}

static void test_rarest_origin_small_first(void **state)
{
	struct fx *x = *state;
	queue_all(x);
	fetch_order_queue(x->f);
	static const uint32_t in_order[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	queue_is(x, in_order, NB);
	fetch_want_file(x->f, 2);
	static const uint32_t wanted[] = {5, 6, 7, 8, 0, 1, 2, 3, 4, 9, 10, 11, 12};
	queue_is(x, wanted, NB);
}

/* Through the peer module: the request that goes to a peer. */
static void test_peer_pick_follows_the_policy(void **state)
{
	struct fx *x = *state;
	struct peers p = {.loop = &x->loop};
	struct pver v = {.nblocks = NB, .bits = x->has, .f = x->f};
	struct peer pe = {.p = &p, .ready = 1, .vers = &v, .nvers = 1};
	p.list = &pe;
	has(x, 5, 12);
	avail(x, 1);
	fetch_want_file(x->f, 3);
	for (unsigned seed = 1; seed <= 32; seed++) {
		struct fetch *f = NULL;
		uint32_t b = 0;
		srandom(seed);
		assert_true(peer_pick(&pe, &f, &b));
		assert_ptr_equal(f, x->f);
		assert_in_range(b, 9, 12);
	}
}

#define OCI(fn)	 cmocka_unit_test_setup_teardown(fn, setup_oci, teardown)
#define HTTP(fn) cmocka_unit_test_setup_teardown(fn, setup_http, teardown)

int main(void)
{
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    OCI(test_policy_by_source),
	    OCI(test_files_small_file_first),
	    OCI(test_files_earliest_file_the_peer_has),
	    OCI(test_files_earlier_file_beats_rarer_block),
	    OCI(test_files_equally_rare_from_the_start),
	    OCI(test_files_next_file_once_asked),
	    OCI(test_files_consumer_order),
	    OCI(test_files_wanted_first),
	    OCI(test_files_origin_queue),
	    HTTP(test_rarest_across_the_version),
	    HTTP(test_rarest_wanted_first),
	    HTTP(test_rarest_origin_small_first),
	    OCI(test_peer_pick_follows_the_policy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
