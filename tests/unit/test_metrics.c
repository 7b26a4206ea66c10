#include "tests/unit/testutil.h"

#include <math.h>

#include "common/metrics.h"
#include "common/version.h"

static void test_family_and_samples(void **state)
{
	struct buf b = BUF_INIT;
	metrics_family(&b, "syncbit_x_bytes_total", METRICS_COUNTER, "Bytes \\ moved\nin total.");
	metrics_sample(&b, "syncbit_x_bytes_total", METRICS_LABELS("dataset", "a\"b\\c\nd"),
		       18446744073709551615ull);
	metrics_sample(&b, "syncbit_x_bytes_total", NULL, 0);
	metrics_sample_real(&b, "syncbit_y", METRICS_LABELS("k", "v", "l", "w"), 0.25);
	assert_string_equal(
	    buf_cstr(&b),
	    "# HELP syncbit_x_bytes_total Bytes \\\\ moved\\nin total.\n"
	    "# TYPE syncbit_x_bytes_total counter\n"
	    "syncbit_x_bytes_total{dataset=\"a\\\"b\\\\c\\nd\"} 18446744073709551615\n"
	    "syncbit_x_bytes_total 0\n"
	    "syncbit_y{k=\"v\",l=\"w\"} 0.25\n");
	buf_close(&b);
}

static void test_single_and_build_info(void **state)
{
	struct buf b = BUF_INIT;
	char want[512];
	metrics_single(&b, "syncbit_peers_connected", METRICS_GAUGE, "Peers.", 3);
	metrics_build_info(&b);
	snprintf(want, sizeof want,
		 "# HELP syncbit_peers_connected Peers.\n"
		 "# TYPE syncbit_peers_connected gauge\n"
		 "syncbit_peers_connected 3\n"
		 "# HELP syncbit_build_info Always 1; the labels say which Syncbit runs.\n"
		 "# TYPE syncbit_build_info gauge\n"
		 "syncbit_build_info{version=\"%s\",commit=\"%s\"} 1\n",
		 SYNCBIT_VERSION, syncbit_commit());
	assert_string_equal(buf_cstr(&b), want);
	buf_close(&b);
}

/* Buckets are cumulative, +Inf last and equal to the count; a value on a
 * bound falls in that bucket (le); NaN is not counted. */
static void test_histogram(void **state)
{
	static const double bounds[] = {0.01, 0.5, 2};
	struct metrics_histogram h;
	struct buf b = BUF_INIT;
	metrics_histogram_init(&h, bounds, 3);
	metrics_histogram_observe(&h, 0.001);
	metrics_histogram_observe(&h, 0.5);
	metrics_histogram_observe(&h, 0.75);
	metrics_histogram_observe(&h, 100);
	metrics_histogram_observe(&h, NAN);
	metrics_histogram_write(&b, "syncbit_t_seconds", METRICS_LABELS("from", "peer"), &h);
	assert_string_equal(buf_cstr(&b), "syncbit_t_seconds_bucket{from=\"peer\",le=\"0.01\"} 1\n"
					  "syncbit_t_seconds_bucket{from=\"peer\",le=\"0.5\"} 2\n"
					  "syncbit_t_seconds_bucket{from=\"peer\",le=\"2\"} 3\n"
					  "syncbit_t_seconds_bucket{from=\"peer\",le=\"+Inf\"} 4\n"
					  "syncbit_t_seconds_sum{from=\"peer\"} 101.251\n"
					  "syncbit_t_seconds_count{from=\"peer\"} 4\n");
	buf_reset(&b);
	metrics_histogram_init(&h, bounds, 3);
	metrics_histogram_write(&b, "syncbit_t_seconds", NULL, &h);
	assert_string_equal(buf_cstr(&b), "syncbit_t_seconds_bucket{le=\"0.01\"} 0\n"
					  "syncbit_t_seconds_bucket{le=\"0.5\"} 0\n"
					  "syncbit_t_seconds_bucket{le=\"2\"} 0\n"
					  "syncbit_t_seconds_bucket{le=\"+Inf\"} 0\n"
					  "syncbit_t_seconds_sum 0\n"
					  "syncbit_t_seconds_count 0\n");
	buf_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_family_and_samples),
	    cmocka_unit_test(test_single_and_build_info),
	    cmocka_unit_test(test_histogram),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
