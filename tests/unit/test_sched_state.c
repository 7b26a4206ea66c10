/* The scheduler's model without the network: selectors, origin plans,
 * versions (listing ids, hashes, carry-over) and the LMDB state across a
 * reopen. */
#include "testutil.h"

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "scheduler/assign.h"
#include "scheduler/cluster.h"
#include "scheduler/version.h"

#define BS (64u << 10)

static void add_file(struct source_listing *l, const char *path, enum source_file_type type,
		     uint64_t size, const char *digest, uint32_t hardlink_to, const char *target)
{
	l->files = xrealloc(l->files, (l->nfiles + 1) * sizeof *l->files);
	struct source_file *f = &l->files[l->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	f->type = type;
	f->size = size;
	f->mode = type == SRC_DIRECTORY ? 0755 : 0644;
	f->mtime_ns = 1000;
	f->digest = digest ? xstrdup(digest) : NULL;
	f->hardlink_to = hardlink_to;
	f->link_target = target ? xstrdup(target) : NULL;
}

/* a.bin (3 blocks), dir/, dir/b.bin (1 block), dir/c (link to a.bin),
 * e.bin (empty), z.bin (2 blocks, digest zd), link -> dir/b.bin */
static void sample_listing(struct source_listing *l, const char *zdigest)
{
	memset(l, 0, sizeof *l);
	add_file(l, "a.bin", SRC_REGULAR, 2 * BS + 1, "ad", 0, NULL);
	add_file(l, "dir", SRC_DIRECTORY, 0, NULL, 0, NULL);
	add_file(l, "dir/b.bin", SRC_REGULAR, 100, "bd", 0, NULL);
	add_file(l, "dir/c", SRC_REGULAR, 2 * BS + 1, "ad", 1, NULL);
	add_file(l, "e.bin", SRC_REGULAR, 0, "ed", 0, NULL);
	add_file(l, "link", SRC_SYMLINK, 0, NULL, 0, "dir/b.bin");
	add_file(l, "z.bin", SRC_REGULAR, 2 * BS, zdigest, 0, NULL);
	l->version = xstrdup("v1");
}

#define listed(l, src, bs, v, d) version_from_listing(l, src, bs, MANIFEST_FORMAT, v, d)

static struct sched_version *sample_version(const char *zdigest)
{
	struct source_listing l;
	struct sched_version *v = NULL;
	char *detail = NULL;
	sample_listing(&l, zdigest);
	assert_int_equal(listed(&l, "file:///src", BS, &v, &detail), 0);
	assert_null(detail);
	source_listing_close(&l);
	return v;
}

static void fake_hash(uint8_t *h, uint32_t b, uint8_t salt)
{
	memset(h, 0, HASH_LEN);
	h[0] = (uint8_t)(b + 1);
	h[1] = salt;
	h[31] = 0xaa;
}

static void test_selectors(void **state)
{
	struct assign_label node[] = {{"zone", "a"}, {"gpu", "h100"}};
	struct assign_label s1[] = {{"gpu", "h100"}};
	struct assign_label s2[] = {{"gpu", "h100"}, {"zone", "b"}};
	struct assign_label s3[] = {{"zone", "a"}, {"gpu", "h100"}};
	assert_true(assign_selector_match(NULL, 0, node, 2));
	assert_true(assign_selector_match(NULL, 0, NULL, 0));
	assert_true(assign_selector_match(s1, 1, node, 2));
	assert_false(assign_selector_match(s2, 2, node, 2));
	assert_true(assign_selector_match(s3, 2, node, 2));
	assert_false(assign_selector_match(s1, 1, NULL, 0));
	assert_int_equal(assign_check_label("gpu", "h100"), 0);
	assert_int_equal(assign_check_label("topology.kubernetes.io/zone", ""), 0);
	assert_int_equal(assign_check_label("", "x"), SB_EPROTO);
	assert_int_equal(assign_check_label("a b", "x"), SB_EPROTO);
	assert_int_equal(assign_check_label("a", "x,y"), SB_EPROTO);
	assert_int_equal(cluster_check_name("llama-3.1_8B"), 0);
	assert_int_equal(cluster_check_name(".hidden"), SB_EPROTO);
	assert_int_equal(cluster_check_name("a/b"), SB_EPROTO);
	assert_int_equal(cluster_check_name(""), SB_EPROTO);
	char long_name[200];
	memset(long_name, 'x', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	assert_int_equal(cluster_check_name(long_name), SB_EPROTO);
	long_name[128] = '\0';
	assert_int_equal(cluster_check_name(long_name), 0);
}

/* Every unknown block is in exactly one member's ranges, none known is. */
static void check_cover(const uint8_t *known, uint32_t nblocks, struct assign_plan *p, size_t n)
{
	uint8_t *seen = calloc(nblocks + 1, 1);
	for (size_t m = 0; m < n; m++) {
		uint32_t count = 0;
		for (size_t r = 0; r < p[m].nranges; r++) {
			if (r > 0)
				assert_true(p[m].ranges[r - 1].first + p[m].ranges[r - 1].count <
					    p[m].ranges[r].first);
			for (uint32_t b = 0; b < p[m].ranges[r].count; b++) {
				uint32_t blk = p[m].ranges[r].first + b;
				assert_true(blk < nblocks);
				assert_false(assign_bit(known, blk));
				assert_int_equal(seen[blk], 0);
				seen[blk] = 1;
				count++;
			}
		}
		assert_int_equal(count, p[m].nblocks);
	}
	for (uint32_t b = 0; b < nblocks; b++)
		assert_int_equal(seen[b], !assign_bit(known, b));
	free(seen);
}

static void test_origin_plan(void **state)
{
	uint8_t known[4] = {0};
	struct assign_plan p[3];
	assert_int_equal(assign_origin_plan(known, 10, 3, p), 1);
	/* Stripe 1: block b goes to member b % 3. */
	assert_int_equal(p[0].nblocks, 4);
	assert_int_equal(p[1].nblocks, 3);
	assert_int_equal(p[2].nblocks, 3);
	assert_int_equal(p[1].ranges[0].first, 1);
	assert_int_equal(p[1].ranges[1].first, 4);
	check_cover(known, 10, p, 3);
	for (int i = 0; i < 3; i++)
		assign_plan_close(&p[i]);
	/* Known blocks are left out; one member gets merged ranges. */
	assign_set_bit(known, 2);
	assign_set_bit(known, 3);
	assign_origin_plan(known, 10, 1, p);
	assert_int_equal(p[0].nranges, 2);
	assert_int_equal(p[0].ranges[0].first, 0);
	assert_int_equal(p[0].ranges[0].count, 2);
	assert_int_equal(p[0].ranges[1].first, 4);
	assert_int_equal(p[0].ranges[1].count, 6);
	check_cover(known, 10, p, 1);
	assign_plan_close(&p[0]);
	/* No members: nothing planned. */
	assert_int_equal(assign_origin_plan(known, 10, 0, NULL), 1);
}

static void test_origin_plan_wide_stripe(void **state)
{
	uint32_t nblocks = 3 * ASSIGN_RANGES_MAX * 4 + 5;
	uint8_t *known = calloc(nblocks / 8 + 1, 1);
	struct assign_plan p[3];
	uint32_t stripe = assign_origin_plan(known, nblocks, 3, p);
	assert_true(stripe > 1);
	for (int i = 0; i < 3; i++)
		assert_true(p[i].nranges <= ASSIGN_RANGES_MAX);
	check_cover(known, nblocks, p, 3);
	/* Stripe is the smallest power of two that fits. */
	for (int i = 0; i < 3; i++)
		assign_plan_close(&p[i]);
	assert_int_equal(stripe, 8);
	free(known);
}

/* A member done with its share takes the upper part of a laggard's: the
 * blocks move, stay ascending, and none is lost or doubled. */
static void test_plan_move(void **state)
{
	uint8_t known[4] = {0};
	struct assign_plan p[2];
	assign_origin_plan(known, 20, 2, p); /* p[0]: even blocks, p[1]: odd */
	assert_int_equal(assign_plan_unknown(&p[0], known), 10);
	/* Member 1 read its share. */
	for (uint32_t b = 1; b < 20; b += 2)
		assign_set_bit(known, b);
	assert_int_equal(assign_plan_unknown(&p[1], known), 0);
	/* Member 0 read blocks 0 and 2 so far. */
	assign_set_bit(known, 0);
	assign_set_bit(known, 2);
	assert_int_equal(assign_plan_unknown(&p[0], known), 8);
	assert_int_equal(assign_plan_move(&p[0], &p[1], known, 3), 3);
	assert_int_equal(assign_plan_unknown(&p[0], known), 5);
	assert_int_equal(assign_plan_unknown(&p[1], known), 3);
	/* The highest unknown ones moved: 14, 16, 18. */
	assert_int_equal(p[0].nblocks, 7);
	assert_int_equal(p[0].ranges[p[0].nranges - 1].first, 12);
	int seen[20] = {0};
	for (int m = 0; m < 2; m++) {
		uint32_t prev = 0;
		for (size_t r = 0; r < p[m].nranges; r++)
			for (uint32_t k = 0; k < p[m].ranges[r].count; k++) {
				uint32_t b = p[m].ranges[r].first + k;
				assert_true(r + k == 0 || b > prev);
				prev = b;
				seen[b]++;
			}
	}
	for (int b = 0; b < 20; b++)
		assert_int_equal(seen[b], 1);
	/* More than is left: only the unknown ones move. */
	assert_int_equal(assign_plan_move(&p[0], &p[1], known, 100), 5);
	assert_int_equal(assign_plan_unknown(&p[0], known), 0);
	assert_int_equal(p[0].nblocks, 2); /* 0 and 2 stay with the member that read them */
	assign_plan_close(&p[0]);
	assign_plan_close(&p[1]);
}

/* assign_plan_add merges blocks into a share in order, joining ranges. */
static void test_plan_add(void **state)
{
	uint8_t known[3] = {0};
	struct assign_plan p[2];
	assign_origin_plan(known, 20, 2, p); /* p[1]: 1, 3, ..., 19 */
	uint32_t add[] = {0, 2, 4, 18};
	assign_plan_add(&p[1], add, 4);
	assert_int_equal(p[1].nblocks, 14);
	/* 0-5 one range, then 7, 9, ..., 15, then 17-19 */
	assert_int_equal(p[1].ranges[0].first, 0);
	assert_int_equal(p[1].ranges[0].count, 6);
	assert_int_equal(p[1].ranges[p[1].nranges - 1].first, 17);
	assert_int_equal(p[1].ranges[p[1].nranges - 1].count, 3);
	assert_int_equal(p[1].nranges, 7);
	assign_plan_add(&p[1], NULL, 0);
	assert_int_equal(p[1].nblocks, 14);
	assign_plan_close(&p[0]);
	assign_plan_close(&p[1]);
}

/* A file's SHA-256 from the source (S3 full-object checksum) goes into the
 * manifest the nodes check assembled files against; a listing without one
 * encodes as before. A malformed one is refused. */
static void test_version_content_sha256(void **state)
{
	struct source_listing l;
	struct sched_version *plain = sample_version("zd"), *v = NULL;
	char *detail = NULL;
	sample_listing(&l, "zd");
	l.files[6].has_content_sha256 = 1;
	memset(l.files[6].content_sha256, 0xab, HASH_LEN);
	assert_int_equal(listed(&l, "file:///src", BS, &v, &detail), 0);
	source_listing_close(&l);
	const FileEntry *z = v->m->files[6], *zp = plain->m->files[6];
	assert_string_equal(z->path, "z.bin");
	assert_int_equal(z->content_sha256.len, HASH_LEN);
	assert_int_equal(z->content_sha256.data[0], 0xab);
	assert_int_equal(zp->content_sha256.len, 0);
	assert_int_equal(v->m->files[0]->content_sha256.len, 0);
	assert_memory_not_equal(v->id.b, plain->id.b, HASH_LEN);
	assert_int_equal(manifest_validate(v->m), 0);
	v->m->files[6]->content_sha256.len = 31;
	assert_int_equal(manifest_validate(v->m), SB_EPROTO);
	v->m->files[6]->content_sha256.len = HASH_LEN;
	version_free(v);
	version_free(plain);
}

static void test_version_from_listing(void **state)
{
	struct sched_version *v = sample_version("zd");
	assert_int_equal(v->nblocks, 3 + 1 + 2);
	assert_int_equal(v->files, 5);
	assert_int_equal(v->bytes, 2 * (2 * BS + 1) + 100 + 2 * BS);
	assert_int_equal(v->nknown, 0);
	assert_false(v->complete);
	assert_int_equal(version_block_len(v, 2), 1);
	assert_int_equal(version_block_len(v, 3), 100);
	assert_int_equal(version_block_len(v, 5), BS);
	assert_int_equal(version_block_len(v, 6), 0);
	assert_null(version_block_hash(v, 6));
	/* The listing id is the encoding without hashes, and stays put as
	 * hashes are learnt. */
	struct hash_id id0 = v->id, id1;
	uint8_t h[HASH_LEN];
	for (uint32_t b = 0; b < v->nblocks; b++) {
		fake_hash(h, b, 1);
		assert_int_equal(version_set_hash(v, b, h), 1);
		assert_int_equal(version_set_hash(v, b, h), 0);
		assert_int_equal(version_settle(v), b + 1 == v->nblocks);
	}
	version_listing_id(v->m, &id1);
	assert_memory_equal(id0.b, id1.b, HASH_LEN);
	assert_true(v->complete);
	/* Conflicts and nonsense are refused; the first hash stays. */
	fake_hash(h, 0, 9);
	assert_int_equal(version_set_hash(v, 0, h), SB_ECORRUPT);
	memset(h, 0, sizeof h);
	assert_int_equal(version_set_hash(v, 1, h), SB_EPROTO);
	assert_int_equal(version_set_hash(v, 99, h), SB_EPROTO);
	fake_hash(h, 0, 1);
	assert_memory_equal(version_block_hash(v, 0), h, HASH_LEN);
	/* The hardlink carries its target's hashes; the manifest id covers
	 * the whole manifest and it decodes again. */
	const FileEntry *link = v->m->files[3];
	assert_int_equal(link->hardlink_to, 1);
	assert_memory_equal(link->block_hashes.data, v->m->files[0]->block_hashes.data,
			    3 * HASH_LEN);
	struct buf enc = BUF_INIT;
	struct hash_id mid;
	manifest_encode(v->m, &enc, &mid);
	assert_memory_equal(mid.b, v->manifest_id.b, HASH_LEN);
	struct sched_version *again;
	assert_int_equal(version_from_manifest(enc.ptr, enc.len, &again), 0);
	assert_true(again->complete);
	assert_memory_equal(again->id.b, id0.b, HASH_LEN);
	buf_close(&enc);
	version_free(again);
	version_free(v);
}

static void test_version_refuses_escapes(void **state)
{
	struct source_listing l;
	struct sched_version *v = NULL;
	char *detail = NULL;
	memset(&l, 0, sizeof l);
	add_file(&l, "bad", SRC_SYMLINK, 0, NULL, 0, "../../etc/passwd");
	assert_int_equal(listed(&l, "file:///src", BS, &v, &detail), SB_ECONFINE);
	assert_null(v);
	assert_non_null(strstr(detail, "bad -> ../../etc/passwd"));
	free(detail);
	source_listing_close(&l);
}

/* A source claiming more than a manifest holds is refused before a hash
 * is allocated for it: 2^62 bytes would be 2^40 hashes of 32 bytes. */
static void test_version_refuses_oversized(void **state)
{
	struct source_listing l;
	struct sched_version *v = NULL;
	char *detail = NULL;
	memset(&l, 0, sizeof l);
	add_file(&l, "big.bin", SRC_REGULAR, 1ull << 62, "etag:x", 0, NULL);
	assert_int_equal(listed(&l, "http://h/big.bin", 4u << 20, &v, &detail), SB_ETOOBIG);
	assert_null(v);
	assert_non_null(strstr(detail, "1099511627776 blocks of 4MiB, over the limit of"));
	free(detail);
	source_listing_close(&l);
}

static void test_carry_over(void **state)
{
	struct sched_version *prev = sample_version("zd");
	struct sched_version *same = sample_version("zd");
	struct sched_version *next = sample_version("zd2");
	uint8_t h[HASH_LEN];
	/* prev knows blocks 0, 1, 3 and 4 (not 2, not 5). */
	uint32_t known[] = {0, 1, 3, 4};
	for (size_t i = 0; i < 4; i++) {
		fake_hash(h, known[i], 1);
		version_set_hash(prev, known[i], h);
	}
	version_settle(prev);
	assert_memory_equal(same->id.b, prev->id.b, HASH_LEN);
	assert_memory_not_equal(next->id.b, prev->id.b, HASH_LEN);
	/* z.bin changed digest: its block 4 is not taken. */
	assert_int_equal(version_carry_over(next, prev), 3);
	assert_int_equal(next->nknown, 3);
	assert_true(assign_bit(next->known, 0) && assign_bit(next->known, 3));
	assert_false(assign_bit(next->known, 4));
	/* Another block size takes nothing. */
	struct source_listing l;
	struct sched_version *other;
	char *detail = NULL;
	sample_listing(&l, "zd");
	assert_int_equal(listed(&l, "file:///src", 2 * BS, &other, &detail), 0);
	assert_int_equal(version_carry_over(other, prev), 0);
	source_listing_close(&l);
	version_free(other);
	version_free(prev);
	version_free(same);
	version_free(next);
}

static Syncbit__Register *make_register(const char *name, const char *zone)
{
	static Syncbit__Label lab, *labs[1];
	static Syncbit__Register reg;
	syncbit__label__init(&lab);
	lab.key = "zone";
	lab.value = (char *)zone;
	labs[0] = &lab;
	syncbit__register__init(&reg);
	reg.node = (char *)name;
	reg.peer_addr = "127.0.0.1:7000";
	reg.labels = labs;
	reg.n_labels = 1;
	reg.disk_free = 12345;
	return &reg;
}

static void report(struct cluster *c, struct cluster_node *n, const struct sched_version *v,
		   const uint8_t *bits, int published, uint64_t now)
{
	Syncbit__Bitfield bf;
	Syncbit__VersionState vs, *vsp = &vs;
	syncbit__bitfield__init(&bf);
	syncbit__version_state__init(&vs);
	bf.nblocks = v->nblocks;
	bf.bits.data = (uint8_t *)bits;
	bf.bits.len = (v->nblocks + 7) / 8;
	vs.dataset = "models";
	vs.version_id.data = (uint8_t *)v->id.b;
	vs.version_id.len = HASH_LEN;
	vs.have = &bf;
	vs.published = published;
	vs.bytes_from_origin = 1000;
	(void)cluster_node_report(c, n, &vsp, bits ? 1 : 0, now);
}

static const uint8_t key_a[SECURE_KEY_BYTES] = {0xa1, 0xa2}, key_b[SECURE_KEY_BYTES] = {0xb1},
		     key_x[SECURE_KEY_BYTES] = {0xee};

/* A node reporting many versions: each is found (a node's reports are kept
 * sorted by version and looked up by bisection), a version twice in one
 * heartbeat counts once, and after a reopen (reports loaded in the state's
 * order) each is found again; a map of every block is kept as none and
 * saved as such. */
static void test_reports_of_many_versions(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	enum { NV = 7 };
	struct hash_id ids[NV];
	const struct sched_version *vs[NV];
	char digest[16];
	assert_int_equal(cluster_open(&c, dir), 0);
	for (int i = 0; i < NV; i++) {
		snprintf(digest, sizeof digest, "z%d", i);
		struct cluster_version *cv = cluster_version_add(&c, sample_version(digest));
		char name[16];
		snprintf(name, sizeof name, "set%d", i);
		cluster_dataset_set(&c, name, "file:///src", NULL, 0, BS, cv);
		ids[i] = cv->v->id;
		vs[i] = cv->v;
	}
	struct cluster_node *a =
	    cluster_node_register(&c, "gpu-a", make_register("gpu-a", "a"), key_a, 1);
	Syncbit__Bitfield bf[NV + 1];
	Syncbit__VersionState st[NV + 1], *stp[NV + 1];
	uint8_t all[8], some[8] = {0x01};
	memset(all, 0xff, sizeof all);
	for (int k = 0; k <= NV; k++) {
		int i = k < NV ? (k * 3) % NV : 2; /* out of order, then 2 again */
		syncbit__bitfield__init(&bf[k]);
		syncbit__version_state__init(&st[k]);
		bf[k].nblocks = vs[i]->nblocks;
		bf[k].bits.data = i % 2 ? some : all;
		bf[k].bits.len = (vs[i]->nblocks + 7) / 8;
		st[k].dataset = "x";
		st[k].version_id.data = (uint8_t *)ids[i].b;
		st[k].version_id.len = HASH_LEN;
		st[k].have = &bf[k];
		st[k].bytes_from_origin = 100u + (unsigned)k;
		stp[k] = &st[k];
	}
	(void)cluster_node_report(&c, a, stp, NV + 1, 1);
	assert_int_equal(a->nreports, NV);
	for (int i = 0; i < NV; i++) {
		const struct cluster_report *r = cluster_node_report_of(a, &ids[i]);
		assert_non_null(r);
		assert_memory_equal(r->version.b, ids[i].b, HASH_LEN);
		if (i % 2) {
			assert_non_null(r->bits);
			assert_int_equal(r->have, 1);
		} else {
			assert_null(r->bits); /* every block */
			assert_int_equal(r->have, vs[i]->nblocks);
		}
		if (i == 2) /* the first of its two entries */
			assert_int_equal(r->bytes_from_origin, 100 + 3);
	}
	cluster_node_flush(&c, a);
	cluster_close(&c);

	assert_int_equal(cluster_open(&c, dir), 0);
	a = cluster_node_find(&c, "gpu-a");
	assert_non_null(a);
	assert_int_equal(a->nreports, NV);
	for (int i = 0; i < NV; i++) {
		const struct cluster_report *r = cluster_node_report_of(a, &ids[i]);
		assert_non_null(r);
		assert_int_equal(r->have, i % 2 ? 1 : r->nbits);
		assert_true(cluster_report_has(r, 0));
		assert_int_equal(cluster_report_has(r, 1), i % 2 ? 0 : r->nbits > 1);
	}
	cluster_close(&c);
	testutil_rmtree(dir);
}

static void test_cluster_persists(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	struct assign_label sel[] = {{"zone", "a"}};
	uint8_t h[HASH_LEN];
	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_version *cv = cluster_version_add(&c, sample_version("zd"));
	struct hash_id id = cv->v->id;
	cluster_dataset_set(&c, "models", "file:///src", sel, 1, BS, cv);
	struct cluster_node *a =
	    cluster_node_register(&c, "gpu-a", make_register("gpu-a", "a"), key_a, 1);
	struct cluster_node *b =
	    cluster_node_register(&c, "gpu-b", make_register("gpu-b", "b"), key_b, 1);
	a->conn = b->conn = (void *)1;
	/* Hashes, one conflicting. */
	Syncbit__BlockHash bh[3], *bhp[3], *fresh[3];
	for (int i = 0; i < 3; i++) {
		syncbit__block_hash__init(&bh[i]);
		bh[i].block = (uint32_t)i;
		bh[i].hash.data = malloc(HASH_LEN);
		bh[i].hash.len = HASH_LEN;
		fake_hash(bh[i].hash.data, (uint32_t)i, 1);
		bhp[i] = &bh[i];
	}
	int completed;
	size_t refused;
	uint32_t example;
	/* Hashes come from the node the plan gives the blocks to. */
	assert_int_equal(
	    cluster_ingest(&c, cv, bhp, 2, "gpu-a", fresh, &completed, &refused, &example), 0);
	assert_int_equal(refused, 2);
	cluster_plan(&c, cv, NULL, 0);
	assert_non_null(cluster_plan_of(cv, "gpu-a"));
	assert_int_equal(
	    cluster_ingest(&c, cv, bhp, 2, "gpu-a", fresh, &completed, &refused, &example), 2);
	assert_int_equal(refused, 0);
	bh[1].hash.data[5] = 0x55;
	assert_int_equal(
	    cluster_ingest(&c, cv, bhp, 3, "gpu-a", fresh, &completed, &refused, &example), 1);
	assert_ptr_equal(fresh[0], bhp[2]);
	assert_false(completed);
	uint8_t bits[1] = {0x05};
	report(&c, a, cv->v, bits, 0, 10);
	cluster_node_flush(&c, a);
	cluster_close(&c);
	for (int i = 0; i < 3; i++)
		free(bh[i].hash.data);

	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_dataset *d = cluster_dataset_find(&c, "models");
	assert_non_null(d);
	assert_string_equal(d->source, "file:///src");
	assert_int_equal(d->nselector, 1);
	assert_string_equal(d->selector[0].value, "a");
	assert_int_equal(d->block_size, BS);
	assert_non_null(d->current);
	assert_memory_equal(d->current->v->id.b, id.b, HASH_LEN);
	assert_int_equal(d->current->v->nknown, 3);
	fake_hash(h, 1, 1);
	assert_memory_equal(version_block_hash(d->current->v, 1), h, HASH_LEN);
	a = cluster_node_find(&c, "gpu-a");
	assert_non_null(a);
	assert_null(a->conn);
	assert_string_equal(a->addr, "127.0.0.1:7000");
	assert_int_equal(a->disk_free, 12345);
	assert_true(cluster_assigned(d, a));
	assert_false(cluster_assigned(d, cluster_node_find(&c, "gpu-b")));
	const struct cluster_report *r = cluster_node_report_of(a, &id);
	assert_non_null(r);
	assert_int_equal(r->have, 2);
	assert_int_equal(r->bytes_from_origin, 1000);
	assert_int_equal(r->bits[0], 0x05);
	/* Each name's key was saved with it: another key is refused. */
	assert_true(a->has_key);
	assert_memory_equal(a->key, key_a, SECURE_KEY_BYTES);
	assert_int_equal(cluster_node_key_check(&c, "gpu-a", key_a), 0);
	assert_int_equal(cluster_node_key_check(&c, "gpu-a", key_b), SB_EDENIED);
	assert_int_equal(cluster_node_key_check(&c, "gpu-b", key_a), SB_EDENIED);
	assert_int_equal(cluster_node_key_check(&c, "gpu-new", key_x), 0);
	/* A registration with the pinned key keeps it. */
	cluster_node_register(&c, "gpu-b", make_register("gpu-b", "b"), key_b, 2);
	assert_memory_equal(cluster_node_find(&c, "gpu-b")->key, key_b, SECURE_KEY_BYTES);
	/* node rm: refused while connected; gone for good once removed, and
	 * with it the key: the name takes a new one. */
	a->conn = (void *)1;
	assert_int_equal(cluster_node_remove(&c, "gpu-a"), SB_EDENIED);
	a->conn = NULL;
	assert_int_equal(cluster_node_remove(&c, "gpu-a"), 0);
	assert_int_equal(cluster_node_remove(&c, "gpu-a"), SB_ENOTFOUND);
	assert_null(cluster_node_find(&c, "gpu-a"));
	assert_int_equal(cluster_node_key_check(&c, "gpu-a", key_b), 0);
	cluster_close(&c);
	assert_int_equal(cluster_open(&c, dir), 0);
	assert_null(cluster_node_find(&c, "gpu-a"));
	assert_non_null(cluster_node_find(&c, "gpu-b"));
	assert_int_equal(cluster_node_key_check(&c, "gpu-b", key_a), SB_EDENIED);
	assert_non_null(cluster_dataset_find(&c, "models"));
	cluster_close(&c);
	testutil_rmtree(dir);
}

static void test_cluster_members_and_plans(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_version *cv = cluster_version_add(&c, sample_version("zd"));
	cluster_dataset_set(&c, "models", "file:///src", NULL, 0, BS, cv);
	const char *names[] = {"n3", "n1", "n2"};
	struct cluster_node *n[3];
	for (int i = 0; i < 3; i++) {
		n[i] = cluster_node_register(&c, names[i], make_register(names[i], "a"), key_x, 1);
		n[i]->conn = (void *)1;
	}
	size_t nm;
	struct cluster_node **m = cluster_members(&c, cv, &nm);
	assert_int_equal(nm, 3);
	assert_string_equal(m[0]->name, "n1");
	assert_string_equal(m[2]->name, "n3");
	free(m);
	cluster_plan(&c, cv, NULL, 0);
	assert_int_equal(cluster_plan_of(cv, "n1")->nblocks, 2); /* blocks 0, 3 */
	assert_int_equal(cluster_plan_of(cv, "n2")->nblocks, 2);
	assert_int_equal(cluster_plan_of(cv, "n3")->nblocks, 2);
	/* n2 leaves: two members share the six blocks. */
	n[2]->conn = NULL; /* "n2" */
	assert_int_equal(cluster_plan(&c, cv, NULL, 0), 0);
	assert_null(cluster_plan_of(cv, "n2"));
	assert_int_equal(cluster_plan_of(cv, "n1")->nblocks, 3);
	assert_int_equal(cluster_plan_of(cv, "n3")->nblocks, 3);
	/* Everything known: an empty plan. */
	uint8_t h[HASH_LEN];
	for (uint32_t b = 0; b < cv->v->nblocks; b++) {
		fake_hash(h, b, 1);
		version_set_hash(cv->v, b, h);
	}
	version_settle(cv->v);
	assert_int_equal(cluster_plan(&c, cv, NULL, 0), 0);
	assert_null(cluster_plan_of(cv, "n1"));
	/* n2 held everything, n1 blocks 0-1 (n3 nothing); n2 leaves: the
	 * blocks only it held are planned again, over n1 and n3. */
	uint8_t all[1] = {0x3f}, two[1] = {0x03};
	n[2]->conn = (void *)1;
	report(&c, n[2], cv->v, all, 1, 1);
	report(&c, n[1], cv->v, two, 0, 1);
	n[2]->conn = NULL;
	char *gone[] = {"n2"};
	assert_int_equal(cluster_plan(&c, cv, gone, 1), 4);
	assert_int_equal(cluster_plan_of(cv, "n1")->nblocks + cluster_plan_of(cv, "n3")->nblocks,
			 4);
	assert_int_equal(cluster_plan_of(cv, "n1")->ranges[0].first, 2);
	cluster_close(&c);
	testutil_rmtree(dir);
}

/* A replaced version stays while a node reports it, then goes. */
static void test_cluster_version_gc(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_version *v1 = cluster_version_add(&c, sample_version("zd"));
	cluster_dataset_set(&c, "models", "file:///src", NULL, 0, BS, v1);
	struct cluster_node *a = cluster_node_register(&c, "a", make_register("a", "x"), key_x, 1);
	uint8_t bits[1] = {0xff};
	report(&c, a, v1->v, bits, 1, 1);
	struct hash_id id1 = v1->v->id;
	struct sched_version *nv = sample_version("zd2");
	version_carry_over(nv, v1->v);
	struct cluster_version *v2 = cluster_version_add(&c, nv);
	cluster_dataset_set(&c, "models", "file:///src", NULL, 0, BS, v2);
	assert_int_equal(c.nversions, 2);
	/* Still there after a reopen: the report pins it. */
	cluster_close(&c);
	assert_int_equal(cluster_open(&c, dir), 0);
	assert_int_equal(c.nversions, 2);
	assert_non_null(cluster_version_find(&c, id1.b, HASH_LEN));
	a = cluster_node_find(&c, "a");
	v2 = cluster_dataset_find(&c, "models")->current;
	report(&c, a, v2->v, NULL, 0, 2); /* reports nothing any more */
	assert_int_equal(c.nversions, 1);
	assert_null(cluster_version_find(&c, id1.b, HASH_LEN));
	assert_int_equal(cluster_dataset_remove(&c, "models"), 0);
	assert_int_equal(cluster_dataset_remove(&c, "models"), SB_ENOTFOUND);
	assert_int_equal(c.nversions, 0);
	cluster_close(&c);
	assert_int_equal(cluster_open(&c, dir), 0);
	assert_int_equal(c.nversions, 0);
	assert_int_equal(c.ndatasets, 0);
	assert_int_equal(c.nnodes, 1);
	cluster_close(&c);
	testutil_rmtree(dir);
}

/* Datasets by name and versions by id are found among many, also after
 * some went and after a reopen. */
static void test_cluster_lookups(void **state)
{
	enum { MANY = 70 };
	char *dir = testutil_mkdtemp(), name[32];
	struct cluster c;
	struct hash_id ids[MANY];
	assert_int_equal(cluster_open(&c, dir), 0);
	for (int i = 0; i < MANY; i++) {
		snprintf(name, sizeof name, "z%d", i);
		struct cluster_version *cv = cluster_version_add(&c, sample_version(name));
		ids[i] = cv->v->id;
		snprintf(name, sizeof name, "ds-%02d", i);
		cluster_dataset_set(&c, name, "file:///src", NULL, 0, BS, cv);
	}
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < MANY; i++) {
			snprintf(name, sizeof name, "ds-%02d", i);
			struct cluster_dataset *d = cluster_dataset_find(&c, name);
			struct cluster_version *cv = cluster_version_find(&c, ids[i].b, HASH_LEN);
			if (round == 1 && i % 3 == 0) { /* removed */
				assert_true(!d && !cv);
				continue;
			}
			assert_true(d && !strcmp(d->name, name) && cv == d->current);
		}
		assert_null(cluster_dataset_find(&c, "ds-99"));
		assert_null(cluster_version_find(&c, ids[1].b, HASH_LEN - 1));
		for (int i = 0; round == 0 && i < MANY; i += 3) {
			snprintf(name, sizeof name, "ds-%02d", i);
			assert_int_equal(cluster_dataset_remove(&c, name), 0);
		}
		cluster_close(&c);
		assert_int_equal(cluster_open(&c, dir), 0);
	}
	cluster_close(&c);
	testutil_rmtree(dir);
}

/* Records this build cannot use are skipped at start, never fatal: a
 * version that does not decode, and a dataset whose block size would make
 * its next listing divide by zero. */
static void test_cluster_skips_bad_records(void **state)
{
	char *dir = testutil_mkdtemp();
	struct cluster c;
	struct hash_id junk_id, none = {{0}};
	static const uint8_t junk[] = {0x08, 0x01, 0x18, 0x00, 0x2a, 0x7f};
	assert_int_equal(cluster_open(&c, dir), 0);
	struct cluster_version *cv = cluster_version_add(&c, sample_version("zd"));
	struct hash_id id = cv->v->id;
	cluster_dataset_set(&c, "models", "file:///src", NULL, 0, BS, cv);
	memset(junk_id.b, 0x42, HASH_LEN);
	assert_int_equal(state_put_version(c.state, &junk_id, junk, sizeof junk), 0);
	Syncbit__Admin def;
	syncbit__admin__init(&def);
	def.op = SYNCBIT__ADMIN_OP__ADMIN_DATASET_ADD;
	def.name = (char *)"broken";
	def.source = (char *)"file:///src";
	def.block_size = 0;
	assert_int_equal(state_put_dataset(c.state, "broken", &none, &def), 0);
	cluster_close(&c);
	assert_int_equal(cluster_open(&c, dir), 0);
	assert_int_equal(c.ndatasets, 1);
	assert_null(cluster_dataset_find(&c, "broken"));
	assert_int_equal(c.nversions, 1);
	assert_null(cluster_version_find(&c, junk_id.b, HASH_LEN));
	struct cluster_dataset *d = cluster_dataset_find(&c, "models");
	assert_non_null(d);
	assert_memory_equal(d->current->v->id.b, id.b, HASH_LEN);
	cluster_close(&c);
	testutil_rmtree(dir);
}

static void test_state_single_writer(void **state)
{
	char *dir = testutil_mkdtemp();
	struct state *a, *b;
	assert_int_equal(state_open(dir, &a), 0);
	assert_int_equal(state_open(dir, &b), -EBUSY);
	state_free(a);
	assert_int_equal(state_open(dir, &b), 0);
	state_free(b);
	testutil_rmtree(dir);
}

int main(void)
{
	log_setup(LOG_ERROR + 1, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_selectors),
	    cmocka_unit_test(test_origin_plan),
	    cmocka_unit_test(test_origin_plan_wide_stripe),
	    cmocka_unit_test(test_plan_move),
	    cmocka_unit_test(test_plan_add),
	    cmocka_unit_test(test_version_from_listing),
	    cmocka_unit_test(test_version_content_sha256),
	    cmocka_unit_test(test_version_refuses_escapes),
	    cmocka_unit_test(test_version_refuses_oversized),
	    cmocka_unit_test(test_carry_over),
	    cmocka_unit_test(test_cluster_persists),
	    cmocka_unit_test(test_reports_of_many_versions),
	    cmocka_unit_test(test_cluster_members_and_plans),
	    cmocka_unit_test(test_cluster_version_gc),
	    cmocka_unit_test(test_cluster_lookups),
	    cmocka_unit_test(test_cluster_skips_bad_records),
	    cmocka_unit_test(test_state_single_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
