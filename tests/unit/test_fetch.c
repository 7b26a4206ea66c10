/* The fetch engine on real caches and a real local source: a version read
 * wholly from the origin and published; the same version assembled on a
 * second node from bytes handed in as a peer would; a corrupt block
 * refused; a restart that reuses what the cache holds; origin shares that
 * drop blocks and name them again; blocks that match poisoned hashes but
 * not the source's whole-file digest; a standalone pull's batched fetch
 * stopped midway; peer blocks counted while they wait to be stored. */
#include "tests/unit/testutil.h"

#include <sys/stat.h>
#include <uv.h>

#include "agent/fetch.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/uri.h"

#define BS 4096u

struct ctx {
	int durable, from_origin, bad, done, status;
	int wakes; /* the wake hook ran */
	uv_loop_t *loop;
};

static void on_durable(void *arg, struct fetch *f, uint32_t b, const struct hash_id *h,
		       int from_origin)
{
	struct ctx *c = arg;
	c->durable++;
	c->from_origin += from_origin;
}

static void on_bad(void *arg, struct fetch *f, const char *peer, uint32_t b)
{
	struct ctx *c = arg;
	c->bad++;
	assert_string_equal(peer, "evil");
}

static void on_done(void *arg, struct fetch *f, int status)
{
	struct ctx *c = arg;
	c->done++;
	c->status = status;
	uv_stop(c->loop);
}

static void on_wake(void *arg, struct fetch *f)
{
	struct ctx *c = arg;
	c->wakes++;
}

static const struct fetch_hooks hooks = {
    .durable = on_durable, .wake = on_wake, .bad_peer = on_bad, .done = on_done};

static void write_file(const char *dir, const char *name, size_t size, unsigned seed)
{
	char *p = path_join(dir, name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	srand(seed);
	for (size_t i = 0; i < size; i++)
		fputc(rand() & 0xff, f);
	fclose(f);
	free(p);
}

static void listed_cb(struct source *src, int status, void *arg)
{
	*(int *)arg = status;
}

/* The manifest a scheduler would send: the listing, every hash unknown. */
static Manifest *listing_manifest(uv_loop_t *loop, const char *dir)
{
	struct source_uri uri;
	struct source_options so;
	struct source *src;
	int st = 1;
	source_options_default(&so);
	assert_int_equal(uri_parse(dir, &uri), 0);
	assert_int_equal(source_new(loop, &uri, &so, &src), 0);
	assert_int_equal(src->ops->list(src, listed_cb, &st), 0);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(st, 0);
	Manifest *out;
	char *detail = NULL;
	assert_int_equal(
	    manifest_from_listing(&src->listing, uri.canonical, BS, MANIFEST_FORMAT, &out, &detail),
	    0);
	assert_null(detail);
	source_free(src);
	uri_close(&uri);
	return out;
}

static void read_exact(const char *path, uint64_t off, uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
	assert_int_equal(fread(buf, 1, len, f), len);
	fclose(f);
}

static void assert_same_file(const char *a, const char *b)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
	assert_int_equal(system(cmd), 0);
}

/* Four files as a source: "copy" has the bytes of "big", "empty" none,
 * "exact" a whole number of blocks. */
struct env {
	char *tmp, *src;
	uv_loop_t loop;
	Manifest *m; /* the listing's: every hash unknown until full_manifest */
	uint8_t vid[HASH_LEN];
	struct source_options so;
};

struct node {
	char *dir, *target;
	struct cache *c;
	struct fetch *f;
	struct ctx cx;
	struct fetch_hooks h;
};

static const char *const names[] = {"big", "copy", "empty", "exact"};
#define NB_ALL (4 + 4 + 2)

static void env_init(struct env *e)
{
	memset(e, 0, sizeof *e);
	e->tmp = testutil_mkdtemp();
	e->src = path_join(e->tmp, "src");
	mkdir(e->src, 0755);
	write_file(e->src, "big", 3 * BS + 17, 1);
	write_file(e->src, "copy", 3 * BS + 17, 1); /* same bytes: dedup */
	write_file(e->src, "empty", 0, 2);
	write_file(e->src, "exact", 2 * BS, 3);
	uv_loop_init(&e->loop);
	e->m = listing_manifest(&e->loop, e->src);
	e->vid[0] = 7;
	source_options_default(&e->so);
}

static void node_start(struct env *e, struct node *n, const char *name, struct cache *shared)
{
	memset(n, 0, sizeof *n);
	char *dir = xasprintf("c%s", name), *target = xasprintf("t%s", name);
	n->dir = path_join(e->tmp, dir);
	n->target = path_join(e->tmp, target);
	free(dir);
	free(target);
	n->cx.loop = &e->loop;
	n->h = hooks;
	n->h.arg = &n->cx;
	if (shared)
		n->c = shared;
	else
		assert_int_equal(cache_open(n->dir, 0, &n->c), 0);
	assert_int_equal(
	    fetch_new(&e->loop, n->c, "ds", n->target, e->vid, e->m, &e->so, &n->h, &n->f), 0);
}

/* Free what the node holds besides its fetch (stop_all stops that). */
static void node_close(struct node *n, int own_cache)
{
	if (own_cache)
		cache_free(n->c);
	free(n->dir);
	free(n->target);
}

/* Stop the nodes' fetches and let their work end: a fetch's timer keeps
 * the loop running until the last one is freed. */
static void stop_all(struct env *e, struct node *a, struct node *b)
{
	fetch_free(a->f);
	if (b)
		fetch_free(b->f);
	uv_run(&e->loop, UV_RUN_DEFAULT);
}

static void env_close(struct env *e)
{
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&e->loop), 0);
	manifest_free(e->m);
	free(e->src);
	testutil_rmtree(e->tmp);
}

static void assert_published_like_source(struct env *e, struct node *n)
{
	for (int i = 0; i < 4; i++) {
		char *x = path_join(e->src, names[i]),
		     *y = xasprintf("%s/ds/%s", n->target, names[i]);
		assert_same_file(x, y);
		free(x);
		free(y);
	}
}

/* Node a reads the whole version from the origin. */
static void origin_fetch(struct env *e, struct node *a)
{
	node_start(e, a, "a", NULL);
	uint32_t first = 0, count = fetch_nblocks(a->f);
	fetch_set_origin(a->f, &first, &count, 1);
	uv_run(&e->loop, UV_RUN_DEFAULT);
}

/* The manifest as the scheduler has it once a has read everything: every
 * block's hash filled in (e->m, in place). */
static void full_manifest(struct env *e, struct node *a)
{
	uint32_t k = 0;
	for (size_t i = 0; i < e->m->n_files; i++)
		for (size_t j = 0; j < e->m->files[i]->block_hashes.len / HASH_LEN; j++, k++)
			memcpy(e->m->files[i]->block_hashes.data + j * HASH_LEN,
			       fetch_block_hash(a->f, k)->b, HASH_LEN);
}

/* Block b's bytes as a peer would send them (malloc'd). */
static uint8_t *block_bytes(struct env *e, struct fetch *f, uint32_t b)
{
	uint32_t len = fetch_block_len(f, b);
	uint8_t *p = malloc(len + 1);
	char *path = path_join(e->src, b < 4 ? "big" : b < 8 ? "copy" : "exact");
	read_exact(path, (uint64_t)(b < 4 ? b : b < 8 ? b - 4 : b - 8) * BS, p, len);
	free(path);
	return p;
}

/* Hand node n every block it needs, as peers would; the first one from
 * "evil" with a byte flipped when corrupt_first. The corrupt block's
 * number plus one, or 0. */
static uint32_t feed_peer_blocks(struct env *e, struct node *n, int corrupt_first)
{
	uint32_t bad = 0;
	for (uint32_t b = 0; b < fetch_nblocks(n->f); b++) {
		if (fetch_block_state(n->f, b) != FETCH_NEED)
			continue; /* copied locally ("copy" duplicates "big") */
		uint8_t *p = block_bytes(e, n->f, b);
		if (corrupt_first && !bad) {
			bad = b + 1;
			p[0] ^= 0xff;
			fetch_block_received(n->f, b, p, fetch_block_len(n->f, b), "evil", 0);
		} else {
			fetch_block_received(n->f, b, p, fetch_block_len(n->f, b), "good", 0);
		}
	}
	return bad;
}

static void test_origin_fetch_publishes(void **state)
{
	struct env e;
	struct node a;
	env_init(&e);
	origin_fetch(&e, &a);
	assert_int_equal(fetch_nblocks(a.f), NB_ALL);
	assert_int_equal(a.cx.done, 1);
	assert_int_equal(a.cx.status, 0);
	assert_true(fetch_published(a.f));
	assert_int_equal(a.cx.durable, NB_ALL);
	assert_int_equal(a.cx.from_origin, NB_ALL);
	assert_published_like_source(&e, &a);
	struct fetch_stats st;
	fetch_stats(a.f, &st);
	assert_int_equal(st.bytes_from_origin + st.bytes_reused, st.bytes);
	stop_all(&e, &a, NULL);
	node_close(&a, 1);
	env_close(&e);
}

static void test_peer_blocks_assemble_version(void **state)
{
	struct env e;
	struct node a, b;
	env_init(&e);
	origin_fetch(&e, &a);
	full_manifest(&e, &a);
	node_start(&e, &b, "b", NULL);
	feed_peer_blocks(&e, &b, 0);
	if (!b.cx.done)
		uv_run(&e.loop, UV_RUN_DEFAULT);
	assert_int_equal(b.cx.status, 0);
	assert_true(fetch_published(b.f));
	struct fetch_stats st;
	fetch_stats(b.f, &st);
	assert_int_equal(st.bytes_from_origin, 0);
	assert_int_equal(st.bad_blocks, 0);
	assert_int_equal(st.bytes_from_peers + st.bytes_reused, st.bytes);
	assert_published_like_source(&e, &b);
	stop_all(&e, &a, &b);
	node_close(&b, 1);
	node_close(&a, 1);
	env_close(&e);
}

/* Blocks handed in from peers count as waiting to be stored (what peers
 * hold back new requests on) until each is verified and written, or
 * refused; each one done wakes the peers. */
static void test_peer_blocks_storing_counted(void **state)
{
	struct env e;
	struct node a, b;
	env_init(&e);
	origin_fetch(&e, &a);
	full_manifest(&e, &a);
	node_start(&e, &b, "b", NULL);
	assert_int_equal(fetch_peer_storing(b.f), 0); /* local copies are not counted */
	uint64_t fed = 0;
	int nfed = 0;
	for (uint32_t i = 0; i < fetch_nblocks(b.f); i++)
		if (fetch_block_state(b.f, i) == FETCH_NEED) {
			fed += fetch_block_len(b.f, i);
			nfed++;
		}
	assert_true(nfed > 1);
	int wakes = b.cx.wakes;
	assert_true(feed_peer_blocks(&e, &b, 1) > 0); /* the first one corrupt */
	assert_int_equal(fetch_peer_storing(b.f), fed);
	while (fetch_peer_storing(b.f) > 0)
		uv_run(&e.loop, UV_RUN_ONCE);
	assert_true(b.cx.wakes - wakes >= nfed); /* the refused block too */
	assert_int_equal(b.cx.bad, 1);
	stop_all(&e, &a, &b);
	node_close(&b, 1);
	node_close(&a, 1);
	env_close(&e);
}

static void test_corrupt_peer_block_refused(void **state)
{
	struct env e;
	struct node a, b;
	env_init(&e);
	origin_fetch(&e, &a);
	full_manifest(&e, &a);
	node_start(&e, &b, "b", NULL);
	uint32_t bad = feed_peer_blocks(&e, &b, 1);
	assert_true(bad > 0);
	while (!b.cx.bad) /* on_bad checks the peer is "evil" */
		uv_run(&e.loop, UV_RUN_ONCE);
	assert_int_equal(fetch_block_state(b.f, bad - 1), FETCH_NEED); /* wanted again */
	uint8_t *p = block_bytes(&e, b.f, bad - 1);
	fetch_block_received(b.f, bad - 1, p, fetch_block_len(b.f, bad - 1), "good", 0);
	if (!b.cx.done)
		uv_run(&e.loop, UV_RUN_DEFAULT);
	assert_int_equal(b.cx.status, 0);
	assert_int_equal(b.cx.bad, 1);
	struct fetch_stats st;
	fetch_stats(b.f, &st);
	assert_int_equal(st.bad_blocks, 1);
	assert_published_like_source(&e, &b);
	stop_all(&e, &a, &b);
	node_close(&b, 1);
	node_close(&a, 1);
	env_close(&e);
}

/* A node that restarts with the version already in its cache fetches
 * nothing: every file is reused. */
static void test_restart_reuses_cache(void **state)
{
	struct env e;
	struct node a, again;
	env_init(&e);
	origin_fetch(&e, &a);
	assert_int_equal(a.cx.status, 0);
	full_manifest(&e, &a);
	node_start(&e, &again, "a", a.c);
	if (!again.cx.done)
		uv_run(&e.loop, UV_RUN_DEFAULT);
	assert_int_equal(again.cx.status, 0);
	struct fetch_stats st;
	fetch_stats(again.f, &st);
	assert_int_equal(st.bytes_reused, st.bytes);
	assert_int_equal(st.bytes_from_origin + st.bytes_from_peers, 0);
	stop_all(&e, &a, &again);
	node_close(&again, 0);
	node_close(&a, 1);
	env_close(&e);
}

static void stop_loop(uv_timer_t *t)
{
	uv_stop(t->data);
}

/* A share that drops queued blocks and names them again (plans made again
 * while nodes come back after a scheduler restart) reads each block once:
 * a block read twice would count durable twice and seal its file early. */
static void test_share_named_again(void **state)
{
	char *tmp = testutil_mkdtemp();
	char *src = path_join(tmp, "src"), *ca = path_join(tmp, "ca"), *ta = path_join(tmp, "ta");
	mkdir(src, 0755);
	write_file(src, "small", 2 * BS + 5, 4);
	uv_loop_t loop;
	uv_loop_init(&loop);
	Manifest *m = listing_manifest(&loop, src);
	uint8_t vid[HASH_LEN] = {9};
	struct source_options so;
	source_options_default(&so);
	struct cache *c;
	struct fetch *f;
	struct ctx cx = {.loop = &loop};
	struct fetch_hooks h = hooks;
	h.arg = &cx;
	assert_int_equal(cache_open(ca, 0, &c), 0);
	assert_int_equal(fetch_new(&loop, c, "ds", ta, vid, m, &so, &h, &f), 0);
	uint32_t nb = fetch_nblocks(f), first = 0, count = nb;
	assert_int_equal(nb, 3);
	/* The source is still being listed: every block waits in the queue. */
	fetch_set_origin(f, &first, &count, 1);
	fetch_set_origin(f, NULL, NULL, 0);
	for (uint32_t b = 0; b < nb; b++)
		assert_int_equal(fetch_block_state(f, b), FETCH_UNKNOWN);
	fetch_set_origin(f, &first, &count, 1);
	uv_timer_t guard; /* a block counted twice stalls the fetch: fail, not hang */
	uv_timer_init(&loop, &guard);
	guard.data = &loop;
	uv_timer_start(&guard, stop_loop, 10000, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&guard, NULL);
	assert_int_equal(cx.done, 1);
	assert_int_equal(cx.status, 0);
	assert_int_equal(cx.durable, (int)nb);
	struct fetch_stats st;
	fetch_stats(f, &st);
	assert_int_equal(st.bytes_from_origin, 2 * BS + 5);
	char *x = path_join(src, "small"), *y = path_join(ta, "ds/small");
	assert_same_file(x, y);
	free(x);
	free(y);
	fetch_free(f);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	cache_free(c);
	manifest_free(m);
	free(src);
	free(ca);
	free(ta);
	testutil_rmtree(tmp);
}

static uint8_t *read_whole(const char *dir, const char *name, size_t size)
{
	char *p = path_join(dir, name);
	uint8_t *b = malloc(size + 1);
	read_exact(p, 0, b, size);
	free(p);
	return b;
}

static size_t count_files(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "test -z \"$(find '%s' -type f)\"", dir);
	return system(cmd) == 0 ? 0 : 1;
}

/* One lying node reads its share of a file wrong and reports the hashes of
 * what it read; the scheduler takes them (it was that block's reader) and
 * a peer gets, from that node, bytes that match them. The source publishes
 * the file's SHA-256, as the Hub (lfs sha256: source_digest) or S3 (a
 * full-object checksum: content_sha256, beside an ETag) do: the assembled
 * file is checked against it, not published, and not kept. */
static void poisoned_file(int s3_style)
{
	char *tmp = testutil_mkdtemp();
	char *src = path_join(tmp, "src"), *ca = path_join(tmp, "ca"), *ta = path_join(tmp, "ta");
	char *objs = path_join(ca, "objects");
	const size_t size = 3 * BS + 7;
	mkdir(src, 0755);
	write_file(src, "model.bin", size, 5);
	uv_loop_t loop;
	uv_loop_init(&loop);
	Manifest *listed = listing_manifest(&loop, src);
	/* The manifest as the scheduler holds it: the source's digest, and the
	 * liar's block hashes (a copy: the decoded one's strings are its own). */
	FileEntry e = *listed->files[0], *ep = &e;
	Manifest mm = *listed;
	uint8_t *bytes = read_whole(src, "model.bin", size), hashes[4 * HASH_LEN];
	struct hash_id whole;
	char hex[HASH_HEX_LEN + 1], *digest;
	mm.files = &ep;
	hash_sha256(bytes, size, &whole);
	hash_to_hex(&whole, hex);
	if (s3_style) {
		digest = xstrdup("etag:d41d8cd98f00b204e9800998ecf8427e");
		e.content_sha256.data = whole.b;
		e.content_sha256.len = HASH_LEN;
	} else {
		digest = xasprintf("sha256:%s", hex);
	}
	e.source_digest = digest;
	bytes[BS + 1] ^= 0x5a; /* block 1, as the liar read it */
	assert_int_equal(e.block_hashes.len, sizeof hashes);
	e.block_hashes.data = hashes;
	for (size_t k = 0; k < 4; k++) {
		size_t off = k * BS, len = size - off < BS ? size - off : BS;
		hash_sha256(bytes + off, len, (struct hash_id *)(hashes + k * HASH_LEN));
	}
	struct buf enc = BUF_INIT;
	struct hash_id mid;
	Manifest *m;
	manifest_encode(&mm, &enc, &mid);
	assert_int_equal(manifest_decode(enc.ptr, enc.len, &m), 0);
	buf_close(&enc);
	manifest_free(listed);
	free(digest);

	uint8_t vid[HASH_LEN] = {5};
	struct source_options so;
	source_options_default(&so);
	struct cache *c;
	struct fetch *f;
	struct ctx cx = {.loop = &loop};
	struct fetch_hooks h = hooks;
	h.arg = &cx;
	assert_int_equal(cache_open(ca, 0, &c), 0);
	assert_int_equal(fetch_new(&loop, c, "ds", ta, vid, m, &so, &h, &f), 0);
	assert_int_equal(fetch_nblocks(f), 4);
	for (uint32_t b = 0; b < 4; b++) {
		uint32_t len = fetch_block_len(f, b);
		uint8_t *p = malloc(len);
		memcpy(p, bytes + (size_t)b * BS, len);
		fetch_block_received(f, b, p, len, "liar", 0);
	}
	if (!cx.done)
		uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(cx.done, 1);
	assert_int_equal(cx.status, SB_ECORRUPT);
	assert_int_equal(cx.bad, 0); /* every block matched its (poisoned) hash */
	char want[128];
	snprintf(want, sizeof want, "does not match the source's digest sha256:%s", hex);
	assert_non_null(strstr(fetch_error(f), want));
	assert_false(fetch_published(f));
	char *pub = path_join(ta, "ds");
	struct stat st;
	assert_int_equal(stat(pub, &st), -1);
	free(pub);
	fetch_free(f);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(count_files(objs), 0); /* no object of it */
	struct cache_block_loc loc;
	assert_int_equal(cache_block_find(c, (const struct hash_id *)(hashes + HASH_LEN), &loc), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	cache_free(c);
	manifest_free(m);
	free(bytes);
	free(src);
	free(ca);
	free(ta);
	free(objs);
	testutil_rmtree(tmp);
}

static void test_poisoned_blocks_lfs_digest(void **state)
{
	poisoned_file(0);
}

static void test_poisoned_blocks_s3_checksum(void **state)
{
	poisoned_file(1);
}

/* The standalone pull's use of the engine: a source listed by the caller,
 * the whole source as the origin plan, one read in flight, syncs batched
 * (FETCH_SYNC_BATCHED), the caller publishing. A stop once the first file
 * has a durable block finishes that file, starts no other, fails with
 * SB_ECANCELED and leaves the finished file indexed: the next fetch of a
 * manifest without hashes finds every one of its blocks in the cache. */
struct bctx {
	volatile sig_atomic_t stop;
	int arm; /* stop once the first block is stored */
	int durable, done, status, completed, idle;
	uv_loop_t *loop;
};

static void b_durable(void *arg, struct fetch *f, uint32_t b, const struct hash_id *h,
		      int from_origin)
{
	struct bctx *c = arg;
	c->durable++;
}

static void b_done(void *arg, struct fetch *f, int status)
{
	struct bctx *c = arg;
	c->done++;
	c->status = status;
}

static int b_complete(void *arg, struct fetch *f, const Manifest *m, const struct hash_id *id,
		      char **detail)
{
	struct bctx *c = arg;
	c->completed++;
	assert_int_equal(manifest_validate(m), 0);
	return 0;
}

static void b_idle(void *arg, struct fetch *f)
{
	struct bctx *c = arg;
	c->idle++;
	uv_stop(c->loop);
}

static struct source *listed_source(uv_loop_t *loop, const char *dir)
{
	struct source_uri uri;
	struct source_options so;
	struct source *src;
	int st = 1;
	source_options_default(&so);
	assert_int_equal(uri_parse(dir, &uri), 0);
	assert_int_equal(source_new(loop, &uri, &so, &src), 0);
	uri_close(&uri);
	assert_int_equal(src->ops->list(src, listed_cb, &st), 0);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(st, 0);
	return src;
}

static void batched_run(uv_loop_t *loop, struct cache *c, const char *dir, struct bctx *cx,
			struct fetch_stats *st)
{
	struct source *src = listed_source(loop, dir);
	Manifest *m;
	char *detail = NULL;
	assert_int_equal(manifest_from_listing(&src->listing, src->uri.canonical, BS,
					       MANIFEST_FORMAT, &m, &detail),
			 0);
	struct source_options so;
	source_options_default(&so);
	struct fetch_hooks h = {.arg = cx,
				.durable = b_durable,
				.done = b_done,
				.complete = b_complete,
				.idle = b_idle};
	struct fetch_options o = {.name = "ds",
				  .so = &so,
				  .src = src,
				  .origin_jobs = 1,
				  .whole_blocks = 1,
				  .sync = FETCH_SYNC_BATCHED,
				  .quiet = 1,
				  .stop = &cx->stop};
	struct fetch *f;
	cx->loop = loop;
	assert_int_equal(fetch_open(loop, c, m, &o, &h, &f), 0);
	uint32_t first = 0, count = fetch_nblocks(f);
	fetch_set_origin(f, &first, &count, 1);
	/* One read in flight, the next started as one is stored: when the
	 * first block is stored, the read under way is the first file's. */
	while (!cx->idle && cx->arm) {
		uv_run(loop, UV_RUN_ONCE);
		fetch_stats(f, st);
		if (st->bytes_from_origin)
			cx->stop = 1; /* as a signal handler would */
	}
	if (!cx->idle)
		uv_run(loop, UV_RUN_DEFAULT);
	fetch_stats(f, st);
	fetch_free(f);
	source_free(src);
	uv_run(loop, UV_RUN_DEFAULT);
	manifest_free(m);
}

static void test_batched_stop(void **state)
{
	char *tmp = testutil_mkdtemp();
	char *src = path_join(tmp, "src"), *ca = path_join(tmp, "ca");
	mkdir(src, 0755);
	write_file(src, "a", 3 * BS + 1, 5);
	write_file(src, "b", 2 * BS, 6);
	write_file(src, "c", BS, 7);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct cache *c;
	assert_int_equal(cache_open(ca, 0, &c), 0);
	struct bctx cx = {.arm = 1};
	struct fetch_stats st;
	batched_run(&loop, c, src, &cx, &st);
	assert_int_equal(cx.idle, 1);
	assert_int_equal(cx.done, 1);
	assert_int_equal(cx.status, SB_ECANCELED);
	assert_int_equal(cx.completed, 0);
	assert_int_equal(st.bytes_from_origin, 3 * BS + 1); /* a only, whole */
	assert_int_equal(st.blocks_have, 4);		    /* and indexed */

	struct bctx cy = {0};
	batched_run(&loop, c, src, &cy, &st);
	assert_int_equal(cy.idle, 1);
	assert_int_equal(cy.completed, 1);
	assert_int_equal(cy.status, 0);
	assert_int_equal(st.bytes_from_origin, 3 * BS + 1 + 2 * BS + BS);
	assert_int_equal(st.bytes_origin_held, 3 * BS + 1); /* a's blocks, found in the cache */
	assert_int_equal(st.blocks_have, 7);
	assert_int_equal(uv_loop_close(&loop), 0);
	cache_free(c);
	free(src);
	free(ca);
	testutil_rmtree(tmp);
}

int main(void)
{
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_origin_fetch_publishes),
	    cmocka_unit_test(test_peer_blocks_assemble_version),
	    cmocka_unit_test(test_corrupt_peer_block_refused),
	    cmocka_unit_test(test_peer_blocks_storing_counted),
	    cmocka_unit_test(test_restart_reuses_cache),
	    cmocka_unit_test(test_share_named_again),
	    cmocka_unit_test(test_poisoned_blocks_lfs_digest),
	    cmocka_unit_test(test_poisoned_blocks_s3_checksum),
	    cmocka_unit_test(test_batched_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
