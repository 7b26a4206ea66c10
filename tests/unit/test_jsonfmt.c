#include "tests/unit/testutil.h"

#include "common/jsonfmt.h"

static char *dump_seconds(double s)
{
	json_t *o = json_pack("{s:o}", "seconds", jsonfmt_seconds(s));
	char *out = jsonfmt_dumps(o);
	json_decref(o);
	return out;
}

/* Seconds print as the milliseconds they are, never with binary noise. */
static void test_seconds(void **state)
{
	static const struct {
		double in;
		const char *out;
	} cases[] = {
	    {0.32168934900000001, "{\"seconds\":0.322}"},
	    {0.1, "{\"seconds\":0.1}"},
	    {2.0, "{\"seconds\":2.0}"},
	    {0.0004, "{\"seconds\":0.0}"},
	    {86400.1234, "{\"seconds\":86400.123}"},
	    {1234567.891, "{\"seconds\":1234567.891}"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *s = dump_seconds(cases[i].in);
		assert_string_equal(s, cases[i].out);
		free(s);
	}
}

static void test_real3_and_non_finite(void **state)
{
	json_t *o = json_pack("{s:o, s:o}", "ratio", jsonfmt_real3(1.0416666666666667), "bad",
			      jsonfmt_real3(1.0 / 0.0));
	char *s = jsonfmt_dumps(o);
	assert_string_equal(s, "{\"ratio\":1.042,\"bad\":0.0}");
	free(s);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seconds),
	    cmocka_unit_test(test_real3_and_non_finite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
