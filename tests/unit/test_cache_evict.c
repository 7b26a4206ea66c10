/* Pins, LFRU order and eviction of the block cache. */
#include "tests/unit/cache_fixture.h"

/* ---- (d) pins ---- */

static void test_pins(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	struct hash_id a = make_object(c, "a", 31, 1000);
	struct hash_id b = make_object(c, "b", 32, 2000);
	struct hash_id x = make_object(c, "x", 33, 4000);
	uint64_t n, bytes;

	struct spec v1[] = {{"a", 31, 1000}, {"b", 32, 2000}, {"b2", 32, 2000}};
	struct spec v2[] = {{"b", 32, 2000}, {"c", 33, 4000}};
	assert_int_equal(set_dataset(c, "ds", v1, 3), 0);
	assert_int_equal(stats(c).pinned, 3000);
	/* Setting the same version again changes nothing. */
	assert_int_equal(set_dataset(c, "ds", v1, 3), 0);
	assert_int_equal(stats(c).pinned, 3000);

	struct cache_dataset d1;
	assert_int_equal(cache_dataset_get(c, "ds", &d1), 1);
	assert_int_equal(set_dataset(c, "ds", v2, 2), 0);
	assert_int_equal(stats(c).pinned, 6000);
	/* The old manifest went with its last user. */
	uint8_t *m;
	size_t ml;
	assert_int_equal(cache_manifest_get(c, &d1.manifest_id, &m, &ml), 0);
	cache_dataset_close(&d1);

	/* Only a, no longer referenced, can go, even with target 0. */
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 1);
	assert_int_equal(bytes, 1000);
	assert_int_equal(present(c, &a), 0);
	assert_int_equal(present(c, &b), 1);
	assert_int_equal(present(c, &x), 1);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 0);
	struct cache_stats s = stats(c);
	assert_int_equal(s.used, 6000);
	assert_int_equal(s.pinned, 6000);

	/* A second dataset sharing b keeps it pinned when the first goes. */
	struct spec w[] = {{"same-b", 32, 2000}};
	assert_int_equal(set_dataset(c, "other", w, 1), 0);
	assert_int_equal(stats(c).pinned, 6000);
	assert_int_equal(cache_dataset_remove(c, "ds"), 0);
	assert_int_equal(cache_dataset_remove(c, "ds"), SB_ENOTFOUND);
	assert_int_equal(stats(c).pinned, 2000);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 1);
	assert_int_equal(present(c, &x), 0);
	assert_int_equal(present(c, &b), 1);
	assert_int_equal(cache_dataset_remove(c, "other"), 0);
	assert_int_equal(stats(c).pinned, 0);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 1);
	s = stats(c);
	assert_int_equal(s.used, 0);
	assert_int_equal(s.objects, 0);

	/* A manifest naming an object the cache does not hold is refused and
	 * changes nothing. */
	assert_int_equal(set_dataset(c, "ghost", v2, 2), SB_ENOTFOUND);
	assert_int_equal(cache_dataset_get(c, "ghost", &d1), 0);
	/* So is one that does not decode. */
	struct hash_id zero = {{0}};
	assert_int_equal(cache_dataset_set(c, "bad", "s", "/t", &zero, "\x0f", 1), SB_EPROTO);
}

/* An object dropped because it changed on disk and then fetched again
 * starts unpinned; setting the same version again (a repairing pull) must
 * pin it once more, or eviction would take a current dataset's file. */
static void test_pins_after_refetch(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	struct hash_id a = make_object(c, "a", 34, 3000);
	struct spec v[] = {{"a", 34, 3000}, {"b", 35, 100}};
	make_object(c, "b", 35, 100);
	assert_int_equal(set_dataset(c, "ds", v, 2), 0);
	assert_int_equal(stats(c).pinned, 3100);

	char pa[4200];
	cache_object_path(c, &a, pa, sizeof pa);
	assert_int_equal(truncate(pa, 10), 0);
	assert_int_equal(present(c, &a), 0);
	assert_int_equal(stats(c).pinned, 100);

	make_object(c, "a-again", 34, 3000);
	assert_int_equal(set_dataset(c, "ds", v, 2), 0);
	assert_int_equal(stats(c).pinned, 3100);
	uint64_t n, bytes;
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 0);
	assert_int_equal(present(c, &a), 1);
	/* Counted once: removing the dataset unpins it completely. */
	assert_int_equal(cache_dataset_remove(c, "ds"), 0);
	assert_int_equal(stats(c).pinned, 0);
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 2);
}

/* ---- (e) LFRU ---- */

static void test_lfru_key(void **state)
{
	assert_true(fabs(cache_lfru_key(1, 0)) < 1e-12);
	assert_true(fabs(cache_lfru_key(2, 0) - 1) < 1e-12);
	assert_true(fabs(cache_lfru_key(8, 3600) - 4) < 1e-12);
	assert_true(fabs(cache_lfru_key(1, 1800) - 0.5) < 1e-12);
	assert_true(fabs(cache_lfru_key(1024, 7200) - 12) < 1e-12);
	/* An hour of recency is worth a doubling of frequency. */
	assert_true(fabs(cache_lfru_key(4, 0) - cache_lfru_key(2, 3600)) < 1e-12);
	assert_true(cache_lfru_key(3, 100) > cache_lfru_key(2, 100));
	assert_true(cache_lfru_key(2, 101) > cache_lfru_key(2, 100));
}

static void touch_n(struct cache *c, const struct hash_id *id, double from, int n)
{
	for (int i = 0; i < n; i++) {
		cache_set_clock(c, from + i);
		assert_int_equal(cache_object_touch(c, id, 1), 0);
	}
}

static void test_lfru_order(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	const double t0 = 1e6, t1 = t0 + 100000; /* ~28 h later */
	struct hash_id id[7];
	const char *what[7] = {
	    "probation, old",
	    "probation, recent",
	    "main, 10 touches long ago",
	    "main, 1 touch recently",
	    "main, 1 touch 10 minutes later",
	    "main, 5 touches recently",
	    "main, 20 touches recently",
	};

	cache_set_clock(c, t0);
	id[0] = make_object(c, "o0", 40, BS);
	id[2] = make_object(c, "o2", 42, BS);
	touch_n(c, &id[2], t0 + 1, 10);
	cache_set_clock(c, t1);
	id[1] = make_object(c, "o1", 41, BS);
	id[3] = make_object(c, "o3", 43, BS);
	id[4] = make_object(c, "o4", 44, BS);
	id[5] = make_object(c, "o5", 45, BS);
	id[6] = make_object(c, "o6", 46, BS);
	touch_n(c, &id[3], t1 + 1, 1);
	touch_n(c, &id[5], t1 + 1, 5);
	touch_n(c, &id[6], t1 + 2, 20);
	touch_n(c, &id[4], t1 + 600, 1);
	/* Touching an unknown object is not an error. */
	struct hash_id none = key_of("none");
	assert_int_equal(cache_object_touch(c, &none, 1), 0);
	cache_set_clock(c, t1 + 700);

	for (int k = 0; k < 7; k++) {
		uint64_t used = stats(c).used, n, bytes;
		assert_int_equal(used, (7 - k) * (uint64_t)BS);
		assert_int_equal(cache_evict(c, used - BS, &n, &bytes), 0);
		assert_int_equal(n, 1);
		assert_int_equal(bytes, BS);
		for (int j = 0; j < 7; j++)
			if (present(c, &id[j]) != (j > k))
				fail_msg("evicting #%d (%s): #%d (%s) is %s", k, what[k], j,
					 what[j], j > k ? "gone" : "still there");
	}
	cache_set_clock(c, 0);
}

/* ---- (g) eviction and orphans ---- */

static void test_evict_and_orphans(void **state)
{
	struct fixture *f = *state;
	struct cache *c = f->c;
	struct hash_id a = make_object(c, "a", 61, 2 * BS);
	struct hash_id b = make_object(c, "b", 62, BS + 3);
	char pa[4200], pb[4200];
	cache_object_path(c, &a, pa, sizeof pa);
	cache_object_path(c, &b, pb, sizeof pb);
	uint64_t n, bytes;

	/* Under the target: nothing goes. */
	assert_int_equal(cache_evict(c, 3 * BS + 3, &n, &bytes), 0);
	assert_int_equal(n, 0);
	assert_int_equal(bytes, 0);

	/* Files nobody indexed: an object (as after a crash between rename
	 * and commit), a partial without a record; and a live partial. */
	struct hash_id orphan = key_of("orphan");
	char po[4200], pp[4200], junk[4200];
	cache_object_path(c, &orphan, po, sizeof po);
	char *slash = strrchr(po, '/');
	*slash = '\0';
	mkdir(po, 0755);
	*slash = '/';
	int fd = open(po, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	char hex[HASH_HEX_LEN + 1];
	struct hash_id pkey = key_of("stray-partial");
	hash_to_hex(&pkey, hex);
	snprintf(pp, sizeof pp, "%s/partial/%s", f->dir, hex);
	fd = open(pp, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(junk, sizeof junk, "%s/partial/not-a-key", f->dir);
	fd = open(junk, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	struct cache_partial *live;
	struct hash_id lkey = key_of("live");
	assert_int_equal(cache_partial_open(c, &lkey, BS, BS, &live), 0);
	char pl[4200];
	hash_to_hex(&lkey, hex);
	snprintf(pl, sizeof pl, "%s/partial/%s", f->dir, hex);

	assert_int_equal(cache_evict(c, UINT64_MAX, &n, &bytes), 0);
	assert_int_equal(n, 0);
	assert_false(file_exists(po));
	assert_false(file_exists(pp));
	assert_true(file_exists(junk));
	assert_true(file_exists(pl));
	assert_true(file_exists(pa));
	assert_true(file_exists(pb));
	cache_partial_discard(live);

	/* Down to zero: files and every block location go. */
	assert_int_equal(cache_evict(c, 0, &n, &bytes), 0);
	assert_int_equal(n, 2);
	assert_int_equal(bytes, 3 * BS + 3);
	assert_false(file_exists(pa));
	assert_false(file_exists(pb));
	assert_int_equal(count_objects_on_disk(f->dir), 0);
	uint8_t *da = content(61, 2 * BS), *db = content(62, BS + 3);
	for (uint64_t i = 0; i < 2; i++) {
		struct cache_block_loc loc;
		struct hash_id h = block_hash(da, 2 * BS, i);
		assert_int_equal(cache_block_find(c, &h, &loc), 0);
		h = block_hash(db, BS + 3, i);
		assert_int_equal(cache_block_find(c, &h, &loc), 0);
	}
	free(da);
	free(db);
	struct cache_stats s = stats(c);
	assert_int_equal(s.used, 0);
	assert_int_equal(s.objects, 0);
	assert_int_equal(s.capacity, 0);
	cache_set_capacity(c, 1 << 20);
	assert_int_equal(stats(c).capacity, 1 << 20);
	assert_string_equal(cache_dir(c), f->dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_pins),
	    T(test_pins_after_refetch),
	    T(test_lfru_order),
	    T(test_evict_and_orphans),
	    cmocka_unit_test(test_lfru_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
