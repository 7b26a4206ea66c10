/* Repairs (fetch_options.repair) on real caches and a real local source:
 * a node published a version, then one file's object left the index and
 * its published file was written to, and the source was moved away. The
 * repair does not fail for the origin: it says why it waits, takes the
 * changed file's blocks from peers, checks the file against the
 * whole-file digest its manifest records, and puts back only that file
 * (the intact one keeps its inode); with a digest the blocks do not
 * match, nothing is put back. */
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
#define NB (4 + 2) /* "big": 3 blocks and 17 bytes; "exact": 2 blocks */

struct env {
	char *tmp, *src, *away, *cache, *target;
	uv_loop_t loop;
	Manifest *m; /* complete once the origin fetch is done */
	uint8_t vid[HASH_LEN];
	struct source_options so;
	struct cache *c;
	struct fetch *f;
	int done, status;
	ino_t big_ino; /* the published "big" before the repair */
};

static void on_done(void *arg, struct fetch *f, int status)
{
	struct env *e = arg;
	e->done++;
	e->status = status;
	uv_stop(&e->loop);
}

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

static int same_file(const char *a, const char *b)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

static struct fetch *open_fetch(struct env *e, const Manifest *m, int repair)
{
	struct fetch_hooks h = {.arg = e, .done = on_done};
	struct fetch_options o = {.name = "ds",
				  .target_root = e->target,
				  .version_id = e->vid,
				  .so = &e->so,
				  .repair = repair};
	struct fetch *f;
	e->done = 0;
	assert_int_equal(fetch_open(&e->loop, e->c, m, &o, &h, &f), 0);
	return f;
}

/* The source listed, and the version read whole from it and published. */
static void env_init(struct env *e)
{
	struct source_uri uri;
	struct source *src;
	char *detail = NULL;
	int st = 1;
	memset(e, 0, sizeof *e);
	e->tmp = testutil_mkdtemp();
	e->src = path_join(e->tmp, "src");
	e->away = path_join(e->tmp, "src.away");
	e->cache = path_join(e->tmp, "cache");
	e->target = path_join(e->tmp, "target");
	mkdir(e->src, 0755);
	write_file(e->src, "big", 3 * BS + 17, 1);
	write_file(e->src, "exact", 2 * BS, 3);
	uv_loop_init(&e->loop);
	source_options_default(&e->so);
	assert_int_equal(uri_parse(e->src, &uri), 0);
	assert_int_equal(source_new(&e->loop, &uri, &e->so, &src), 0);
	assert_int_equal(src->ops->list(src, listed_cb, &st), 0);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(st, 0);
	assert_int_equal(manifest_from_listing(&src->listing, uri.canonical, BS, MANIFEST_FORMAT,
					       &e->m, &detail),
			 0);
	source_free(src);
	uri_close(&uri);
	e->vid[0] = 7;
	assert_int_equal(cache_open(e->cache, 0, &e->c), 0);
	e->f = open_fetch(e, e->m, 0);
	uint32_t first = 0, count = NB;
	fetch_set_origin(e->f, &first, &count, 1);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(e->status, 0);
	assert_true(fetch_published(e->f));
	for (uint32_t b = 0, k = 0; k < e->m->n_files; k++) /* the hashes, as learnt */
		for (size_t i = 0; i < e->m->files[k]->block_hashes.len / HASH_LEN; i++, b++)
			memcpy(e->m->files[k]->block_hashes.data + i * HASH_LEN,
			       fetch_block_hash(e->f, b)->b, HASH_LEN);
	fetch_free(e->f);
	uv_run(&e->loop, UV_RUN_DEFAULT);
}

static void env_close(struct env *e)
{
	fetch_free(e->f);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&e->loop), 0);
	cache_free(e->c);
	manifest_free(e->m);
	free(e->src);
	free(e->away);
	free(e->cache);
	free(e->target);
	testutil_rmtree(e->tmp);
}

/* The version as the cache records it (with digest as "exact"'s whole-file
 * SHA-256 when not NULL) after "exact" changed on disk: its object out of
 * the index, its published file written to; the source moved away. */
static Manifest *damage_exact(struct env *e, const uint8_t *digest)
{
	struct buf enc = BUF_INIT;
	Manifest *m;
	struct hash_id id;
	struct stat st;
	FileEntry *x = e->m->files[1];
	ProtobufCBinaryData had = x->content_sha256;
	assert_string_equal(x->path, "exact");
	if (digest)
		x->content_sha256 = (ProtobufCBinaryData){HASH_LEN, (uint8_t *)digest};
	manifest_encode(e->m, &enc, NULL);
	x->content_sha256 = had;
	assert_int_equal(manifest_decode(enc.ptr, enc.len, &m), 0);
	buf_close(&enc);
	manifest_file_object_id(x->size, BS, x->block_hashes.data, x->block_hashes.len / HASH_LEN,
				&id);
	assert_int_equal(cache_object_remove(e->c, &id), 0);
	char *p = xasprintf("%s/ds/exact", e->target), *q = xasprintf("%s/ds/big", e->target);
	FILE *fp = fopen(p, "r+b");
	assert_non_null(fp);
	fputc('!', fp);
	fclose(fp);
	assert_int_equal(stat(q, &st), 0);
	e->big_ino = st.st_ino;
	free(p);
	free(q);
	assert_int_equal(rename(e->src, e->away), 0);
	return m;
}

/* Open the repair of m and ask the origin for every block at once, as a
 * plan would: the origin fails, and the repair waits for peers. */
static void repair_waiting(struct env *e, const Manifest *m)
{
	e->f = open_fetch(e, m, 1);
	assert_int_equal(fetch_block_state(e->f, 0), FETCH_HAVE); /* "big": in place */
	assert_int_equal(fetch_block_state(e->f, 4), FETCH_NEED);
	uint32_t first = 0, count = NB;
	fetch_set_origin(e->f, &first, &count, 1);
	for (int i = 0; i < 1000 && !fetch_waiting(e->f); i++)
		uv_run(&e->loop, UV_RUN_ONCE);
	const char *why = fetch_waiting(e->f);
	assert_non_null(why);
	assert_non_null(strstr(why, "the origin cannot be read"));
	assert_non_null(strstr(why, "2 blocks wait for a peer, the origin is tried again in 10 s"));
	assert_int_equal(fetch_status(e->f), 0);
	assert_int_equal(e->done, 0);
	assert_int_equal(fetch_block_state(e->f, 4), FETCH_NEED); /* for a peer */
	assert_int_equal(fetch_block_state(e->f, 5), FETCH_NEED);
}

/* "exact"'s blocks, as a peer sends them. */
static void feed_exact(struct env *e)
{
	char *path = path_join(e->away, "exact");
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	for (uint32_t b = 4; b < NB; b++) {
		uint8_t *p = malloc(BS);
		assert_int_equal(fread(p, 1, BS, fp), BS);
		fetch_block_received(e->f, b, p, BS, "peer", 0);
	}
	fclose(fp);
	free(path);
	if (!e->done)
		uv_run(&e->loop, UV_RUN_DEFAULT);
}

static void test_repair_without_origin(void **state)
{
	struct env e;
	struct stat st;
	env_init(&e);
	Manifest *m = damage_exact(&e, NULL);
	repair_waiting(&e, m);
	feed_exact(&e);
	assert_int_equal(e.status, 0);
	assert_true(fetch_published(e.f));
	struct fetch_stats fs;
	fetch_stats(e.f, &fs);
	assert_int_equal(fs.bytes_from_origin, 0);
	assert_int_equal(fs.bytes_from_peers, 2 * BS);
	char *x = path_join(e.away, "exact"), *y = xasprintf("%s/ds/exact", e.target);
	char *big = xasprintf("%s/ds/big", e.target);
	assert_true(same_file(x, y));
	assert_int_equal(stat(big, &st), 0);
	assert_int_equal(st.st_ino, e.big_ino); /* left in place, not published again */
	free(x);
	free(y);
	free(big);
	manifest_free(m);
	env_close(&e);
}

static void test_repair_checks_digest(void **state)
{
	struct env e;
	uint8_t wrong[HASH_LEN];
	memset(wrong, 0x11, sizeof wrong);
	env_init(&e);
	Manifest *m = damage_exact(&e, wrong);
	repair_waiting(&e, m);
	feed_exact(&e);
	assert_int_equal(e.status, SB_ECORRUPT);
	assert_non_null(strstr(fetch_error(e.f), "does not match the source's digest"));
	assert_false(fetch_published(e.f));
	char *x = path_join(e.away, "exact"), *y = xasprintf("%s/ds/exact", e.target);
	assert_false(same_file(x, y)); /* still the changed file: nothing put back */
	free(x);
	free(y);
	manifest_free(m);
	env_close(&e);
}

int main(void)
{
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_repair_without_origin),
	    cmocka_unit_test(test_repair_checks_digest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
