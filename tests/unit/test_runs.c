/* Block maps as runs (common/net/runs.h): round trips over random and
 * striped maps, additions to a base, and runs a peer could send that pass
 * the map's end. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/net/runs.h"

static void set(uint8_t *m, uint32_t b)
{
	m[b / 8] |= (uint8_t)(1u << (b % 8));
}

/* Encode bits over base, apply onto a copy of base: bits again. */
static void round_trip(const uint8_t *bits, const uint8_t *base, uint32_t n)
{
	size_t len = (n + 7) / 8;
	uint8_t *got = calloc(len + 1, 1);
	if (base)
		memcpy(got, base, len);
	uint32_t *runs;
	size_t count = runs_encode(bits, base, n, &runs);
	assert_int_equal(count % 2, 0);
	for (size_t i = 1; i < count; i += 2)
		assert_true(runs[i] > 0);
	assert_int_equal(runs_apply(runs, count, got, n), 0);
	assert_memory_equal(got, bits, len);
	free(runs);
	free(got);
}

static void test_round_trips(void **state)
{
	static const uint32_t sizes[] = {1, 7, 8, 9, 63, 64, 1000, 4099};
	srand(7);
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		uint32_t n = sizes[s];
		size_t len = (n + 7) / 8;
		uint8_t *bits = calloc(len + 1, 1), *base = calloc(len + 1, 1);
		round_trip(bits, NULL, n); /* nothing held: no runs */
		for (uint32_t b = 0; b < n; b++) {
			if (rand() % 3 == 0)
				set(bits, b);
			if (b % 5 < 2) /* stripes, a share of the origin plan */
				set(base, b);
		}
		for (size_t i = 0; i < len; i++)
			bits[i] |= base[i]; /* a node only adds between two maps */
		round_trip(bits, NULL, n);
		round_trip(bits, base, n);
		round_trip(base, NULL, n);
		memset(bits, 0xff, len);
		if (n % 8)
			bits[len - 1] = (uint8_t)((1u << (n % 8)) - 1);
		round_trip(bits, NULL, n); /* every block: one run */
		free(bits);
		free(base);
	}
}

/* Stripes of a 1,000-block share: a few bytes, not 125. */
static void test_stripes_are_short(void **state)
{
	uint8_t bits[125] = {0};
	for (uint32_t b = 0; b < 1000; b++)
		if (b / 50 % 4 == 0)
			set(bits, b);
	uint32_t *runs;
	size_t count = runs_encode(bits, NULL, 1000, &runs);
	assert_int_equal(count, 10);
	assert_int_equal(runs[0], 0);
	assert_int_equal(runs[1], 50);
	assert_int_equal(runs[2], 150);
	assert_true(runs_wire_bytes(runs, count) <= 20);
	free(runs);
	uint32_t big[] = {127, 128, 16384};
	assert_int_equal(runs_wire_bytes(big, 3), 1 + 2 + 3);
}

/* Runs past the map's end, of no length or odd in number are refused and
 * leave the map alone. */
static void test_bad_runs(void **state)
{
	uint8_t bits[2] = {0};
	uint32_t past[] = {10, 7}, none[] = {0, 0}, odd[] = {1, 2, 3},
		 wrap[] = {0, 1, 0xffffffffu, 1}, late[] = {0, 2, 14, 1};
	assert_int_equal(runs_apply(past, 2, bits, 16), SB_EPROTO);
	assert_int_equal(runs_apply(none, 2, bits, 16), SB_EPROTO);
	assert_int_equal(runs_apply(odd, 3, bits, 16), SB_EPROTO);
	assert_int_equal(runs_apply(wrap, 4, bits, 16), SB_EPROTO);
	assert_int_equal(runs_apply(late, 4, bits, 16), SB_EPROTO); /* ends at 17 */
	assert_int_equal(bits[0] | bits[1], 0);
	uint32_t fits[] = {0, 2, 13, 1};
	assert_int_equal(runs_apply(fits, 4, bits, 16), 0);
	assert_int_equal(bits[0], 0x03);
	assert_int_equal(bits[1], 0x80);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trips),
	    cmocka_unit_test(test_stripes_are_short),
	    cmocka_unit_test(test_bad_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
