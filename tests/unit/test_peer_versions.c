/* What a peer can make this node hold: bitfields only of the versions this
 * node fetches or holds, with their true block count. A peer announcing
 * many versions of the largest size gets nothing kept; one that asks
 * (Bitfield.reply) gets this node's bitfield back. The peer here is a real
 * connection (common/net/conn.h) speaking the wire protocol to a real peers
 * set on loopback. */
#include "tests/unit/testutil.h"

#include <uv.h>

#include "agent/cache.h"
#include "agent/fetch.h"
#include "agent/peer.h"
#include "agent/peer_int.h"
#include "common/net/conn.h"
#include "common/manifest.h"
#include "common/path.h"
#include "common/net/wire.h"

#define BS	 (64u << 10)
#define NBLOCKS	 5
#define UNKNOWN	 200
#define GUARD_MS 60000

struct client {
	uv_loop_t *loop;
	struct conn *c;
	int ready, closed, close_status;
	int bitfields, replies_asked;
	uint32_t nblocks;
	uint8_t vid[HASH_LEN];
};

static void cl_ready(struct conn *c, int status)
{
	struct client *cl = conn_data(c);
	cl->ready = status == 0 ? 1 : -1;
	uv_stop(cl->loop);
}

static int cl_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		    uint8_t *payload, size_t plen)
{
	struct client *cl = conn_data(c);
	free(payload);
	if (type != SYNCBIT__MSG_TYPE__MSG_BITFIELD)
		return 0;
	Syncbit__Bitfield *m = syncbit__bitfield__unpack(NULL, len, body);
	assert_non_null(m);
	cl->bitfields++;
	cl->replies_asked += m->reply;
	cl->nblocks = m->nblocks;
	if (m->version_id.len == HASH_LEN)
		memcpy(cl->vid, m->version_id.data, HASH_LEN);
	syncbit__bitfield__free_unpacked(m, NULL);
	uv_stop(cl->loop);
	return 0;
}

static void cl_close(struct conn *c, int status)
{
	struct client *cl = conn_data(c);
	cl->closed = 1;
	cl->close_status = status;
	uv_stop(cl->loop);
}

static const struct conn_callbacks cl_cbs = {
    .on_ready = cl_ready, .on_frame = cl_frame, .on_close = cl_close};

static void send_bitfield(struct client *cl, const uint8_t *vid, uint32_t nblocks, int reply)
{
	Syncbit__Bitfield m = SYNCBIT__BITFIELD__INIT;
	uint8_t *bits = calloc((nblocks + 7) / 8 + 1, 1);
	memset(bits, 0xff, (nblocks + 7) / 8);
	m.version_id.data = (uint8_t *)vid;
	m.version_id.len = HASH_LEN;
	m.nblocks = nblocks;
	m.bits.data = bits;
	m.bits.len = (nblocks + 7) / 8;
	m.reply = reply;
	assert_int_equal(
	    wire_send(cl->c, SYNCBIT__MSG_TYPE__MSG_BITFIELD, &m.base, NULL, 0, NULL, NULL), 0);
	free(bits);
}

/* Run the loop until the peers set has taken n more bitfields in, or
 * something stopped it. */
static void run_until_ignored(uv_loop_t *loop, struct peers *p, uint64_t n)
{
	struct peers_stats st;
	for (int i = 0; i < 20000; i++) {
		peers_stats(p, &st);
		if (st.bitfields_ignored >= n)
			return;
		uv_run(loop, UV_RUN_ONCE);
	}
	fail_msg("only %llu bitfields ignored, want %llu", (unsigned long long)st.bitfields_ignored,
		 (unsigned long long)n);
}

static void on_guard(uv_timer_t *t)
{
	fail_msg("timed out");
}

/* One regular file of NBLOCKS blocks, hashes unknown: a version as the
 * scheduler assigns it. */
static Manifest *one_file_manifest(void)
{
	Manifest m = SYNCBIT__MANIFEST__INIT;
	FileEntry e = SYNCBIT__FILE_ENTRY__INIT;
	FileEntry *pe = &e;
	m.format = MANIFEST_FORMAT;
	m.source = (char *)"file:///nowhere";
	m.source_version = (char *)"";
	m.block_size = BS;
	m.n_files = 1;
	m.files = &pe;
	e.path = (char *)"weights";
	e.type = SYNCBIT__FILE_TYPE__FILE_REGULAR;
	e.mode = 0644;
	e.size = (uint64_t)NBLOCKS * BS;
	e.source_digest = (char *)"";
	e.block_hashes.len = NBLOCKS * HASH_LEN;
	e.block_hashes.data = calloc(NBLOCKS * HASH_LEN, 1);
	struct buf enc = BUF_INIT;
	struct hash_id id;
	Manifest *out;
	manifest_encode(&m, &enc, &id);
	assert_int_equal(manifest_decode(enc.ptr, enc.len, &out), 0);
	buf_close(&enc);
	free(e.block_hashes.data);
	return out;
}

static void test_versions_bounded(void **state)
{
	char *tmp = testutil_mkdtemp();
	char *data = path_join(tmp, "data"), *target = path_join(tmp, "target");
	uv_loop_t loop;
	uv_loop_init(&loop);
	uv_timer_t guard;
	uv_timer_init(&loop, &guard);
	uv_timer_start(&guard, on_guard, GUARD_MS, 0);
	uv_unref((uv_handle_t *)&guard);

	struct secure_token tok;
	memset(tok.key, 0x3c, sizeof tok.key);
	struct secure_keypair nkey, ckey;
	secure_keypair_new(&nkey);
	secure_keypair_new(&ckey);
	struct cache *c;
	assert_int_equal(cache_open(data, 0, &c), 0);
	struct peers_config pc = {.node = "node-b",
				  .listen = "127.0.0.1:0",
				  .token = &tok,
				  .key = &nkey,
				  .encrypt = 1,
				  .cache = c};
	struct peers *p;
	char *detail = NULL;
	assert_int_equal(peers_new(&loop, &pc, &p, &detail), 0);
	/* The client is a named node with its key (it dials: its name sorts
	 * first). */
	const char *nodes[] = {"node-a"};
	const char *addrs[] = {"127.0.0.1:1"};
	peers_set(p, nodes, addrs, ckey.pub, 1);

	Manifest *m = one_file_manifest();
	uint8_t vid[HASH_LEN];
	memset(vid, 0x11, sizeof vid);
	struct source_options so;
	source_options_default(&so);
	struct fetch *f;
	struct fetch_hooks hooks = {0};
	assert_int_equal(fetch_new(&loop, c, "ds", target, vid, m, &so, &hooks, &f), 0);
	peers_add_fetch(p, f);

	struct client cl = {.loop = &loop};
	char addr[64];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", peers_port(p));
	struct conn_config cc = {
	    .token = &tok, .key = &ckey, .node = "node-a", .purpose = HANDSHAKE_PEER, .encrypt = 1};
	assert_int_equal(conn_dial(&loop, addr, &cc, &cl_cbs, &cl, &cl.c), 0);
	while (!cl.ready)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(cl.ready, 1);
	/* On connecting, the node announces its version, asking nothing. */
	while (!cl.bitfields)
		uv_run(&loop, UV_RUN_ONCE);
	assert_memory_equal(cl.vid, vid, HASH_LEN);
	assert_int_equal(cl.nblocks, NBLOCKS);
	assert_int_equal(cl.replies_asked, 0);

	/* Versions the node does not fetch, each of a million blocks (128 KiB of
	 * bits each): none is kept. */
	for (int i = 0; i < UNKNOWN; i++) {
		uint8_t other[HASH_LEN];
		memset(other, 0, sizeof other);
		memcpy(other, &i, sizeof i);
		other[HASH_LEN - 1] = 0xee;
		send_bitfield(&cl, other, 1u << 20, 0);
	}
	/* Its own version with another block count: not kept either. */
	send_bitfield(&cl, vid, NBLOCKS + 1, 0);
	run_until_ignored(&loop, p, UNKNOWN + 1);
	assert_non_null(p->list);
	for (struct peer *pe = p->list; pe; pe = pe->next)
		assert_int_equal(pe->nvers, 0);
	assert_false(cl.closed);

	/* Its own version, asking for a reply: kept, and answered. */
	int before = cl.bitfields;
	send_bitfield(&cl, vid, NBLOCKS, 1);
	while (cl.bitfields == before && !cl.closed)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(cl.bitfields, before + 1);
	assert_memory_equal(cl.vid, vid, HASH_LEN);
	assert_int_equal(cl.replies_asked, 0); /* a reply never asks again */
	size_t kept = 0;
	for (struct peer *pe = p->list; pe; pe = pe->next)
		kept += pe->nvers;
	assert_int_equal(kept, 1);
	for (uint32_t b = 0; b < NBLOCKS; b++)
		assert_int_equal(fetch_avail(f, b), 1);

	/* The version goes: so does what the peer said about it. */
	peers_remove_fetch(p, f);
	for (struct peer *pe = p->list; pe; pe = pe->next)
		assert_int_equal(pe->nvers, 0);

	conn_close(cl.c, 0);
	while (!cl.closed)
		uv_run(&loop, UV_RUN_ONCE);
	fetch_free(f);
	peers_free(p);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	manifest_free(m);
	cache_free(c);
	secure_keypair_close(&nkey);
	secure_keypair_close(&ckey);
	free(data);
	free(target);
	testutil_rmtree(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_versions_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
