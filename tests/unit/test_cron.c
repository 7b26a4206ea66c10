#include "tests/unit/testutil.h"

#include <errno.h>
#include <time.h>

#include "agent/cron.h"
#include "common/err.h"

static void use_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

/* "YYYY-MM-DD HH:MM" in the current TZ. */
static time_t at(const char *s)
{
	struct tm t = {0};
	const char *end = strptime(s, "%Y-%m-%d %H:%M", &t);
	if (!end || *end)
		fail_msg("bad time '%s'", s);
	t.tm_isdst = -1;
	return mktime(&t);
}

static void fmt(time_t v, char *out, size_t len)
{
	struct tm t;
	localtime_r(&v, &t);
	strftime(out, len, "%Y-%m-%d %H:%M", &t);
}

static struct cron parse_ok(const char *expr)
{
	struct cron c;
	char *err = NULL;
	if (cron_parse(expr, &c, &err) != 0)
		fail_msg("'%s' rejected: %s", expr, err ? err : "?");
	assert_null(err);
	return c;
}

/* The fire after `after` is `want` ("never" for -ENOENT). */
static void expect_next(const char *expr, const char *after, const char *want)
{
	struct cron c = parse_ok(expr);
	time_t next = 0;
	int rc = cron_next(&c, at(after), &next);
	char got[32] = "never";
	if (rc == 0)
		fmt(next, got, sizeof got);
	else if (rc != -ENOENT)
		fail_msg("'%s' after %s: error %d", expr, after, rc);
	if (strcmp(got, want) != 0)
		fail_msg("'%s' after %s: got %s, want %s", expr, after, got, want);
}

/* A chain of fires from a start time. */
static void expect_chain(const char *expr, const char *start, const char *const *want)
{
	struct cron c = parse_ok(expr);
	time_t t = at(start);
	for (size_t i = 0; want[i]; i++) {
		char got[32];
		if (cron_next(&c, t, &t) != 0)
			fail_msg("'%s': no fire #%zu, want %s", expr, i, want[i]);
		fmt(t, got, sizeof got);
		if (strcmp(got, want[i]) != 0)
			fail_msg("'%s' fire #%zu: got %s, want %s", expr, i, got, want[i]);
	}
}

static void expect_invalid(const char *expr, const char *needle)
{
	struct cron c;
	char *err = NULL;
	int rc = cron_parse(expr, &c, &err);
	if (rc != SB_ECONFIG)
		fail_msg("'%s' accepted (rc %d)", expr, rc);
	assert_non_null(err);
	if (!strstr(err, needle))
		fail_msg("'%s': error '%s' does not mention '%s'", expr, err, needle);
	if (strchr(err, '\n'))
		fail_msg("'%s': error '%s' is not one line", expr, err);
	free(err);
}

static void test_crontab_commands(void **state)
{
	size_t n = 9;
	char *c =
	    cron_crontab_commands("SHELL=/bin/sh\n# c\n*/5 * * * * rsync -a --exclude x /a /b\r\n"
				  "@daily other\n0 1 * * *\n",
				  &n);
	assert_int_equal(n, 2);
	assert_string_equal(c, "line 3: rsync -a --exclude x /a /b");
	free(c);
	assert_null(cron_crontab_commands("@hourly\n# x\n", &n));
	assert_int_equal(n, 0);
}

static void test_every_minute(void **state)
{
	use_tz("UTC");
	expect_next("* * * * *", "2024-05-01 10:00", "2024-05-01 10:01");
	/* strictly after, also in the middle of a minute */
	struct cron c = parse_ok("* * * * *");
	time_t next;
	assert_int_equal(cron_next(&c, at("2024-05-01 10:00") + 59, &next), 0);
	assert_int_equal(next, at("2024-05-01 10:01"));
	expect_next("0 * * * *", "2024-05-01 10:00", "2024-05-01 11:00");
	expect_next("0 * * * *", "2024-05-01 23:30", "2024-05-02 00:00");
}

static void test_month_and_year_ends(void **state)
{
	use_tz("UTC");
	expect_next("0 0 * * *", "2024-01-31 12:00", "2024-02-01 00:00");
	expect_next("0 0 31 * *", "2024-01-31 01:00", "2024-03-31 00:00");
	expect_next("0 0 31 * *", "2024-03-31 00:00", "2024-05-31 00:00");
	expect_next("0 0 30 * *", "2024-01-30 00:00", "2024-03-30 00:00");
	expect_next("0 0 29 2 *", "2023-03-01 00:00", "2024-02-29 00:00");
	expect_next("0 0 29 2 *", "2024-03-01 00:00", "2028-02-29 00:00");
	/* 2100 is not a leap year */
	expect_next("0 0 29 2 *", "2096-03-01 00:00", "2104-02-29 00:00");
	expect_next("59 23 31 12 *", "2024-12-31 23:59", "2025-12-31 23:59");
	expect_next("*/15 * * * *", "2024-12-31 23:50", "2025-01-01 00:00");
	expect_next("0 0 1 * *", "2024-02-29 23:59", "2024-03-01 00:00");
	expect_next("0 12 28-31 * *", "2023-02-28 13:00", "2023-03-28 12:00");
}

static void test_dom_dow_or(void **state)
{
	use_tz("UTC");
	/* Both restricted: either matches (2024-05-01 is a Wednesday). */
	static const char *const or_chain[] = {"2024-05-06 00:00",
					       "2024-05-13 00:00",
					       "2024-05-20 00:00",
					       "2024-05-27 00:00",
					       "2024-06-01 00:00",
					       "2024-06-03 00:00",
					       NULL};
	expect_chain("0 0 1 * mon", "2024-05-01 00:00", or_chain);
	/* A starred field (even "*\/2") means both must match. */
	expect_next("0 0 */2 * mon", "2024-05-01 00:00", "2024-05-13 00:00");
	expect_next("0 0 * * mon", "2024-05-01 00:00", "2024-05-06 00:00");
	expect_next("0 0 1 * *", "2024-05-01 00:00", "2024-06-01 00:00");
	/* dow restricted, dom starred, month restricted */
	expect_next("0 0 * 2 sun", "2024-05-01 00:00", "2025-02-02 00:00");
	/* 13th or Friday */
	expect_next("0 0 13 * 5", "2024-09-07 00:00", "2024-09-13 00:00");
	expect_next("0 0 13 * 5", "2024-09-13 00:00", "2024-09-20 00:00");
	/* 7 is Sunday too */
	expect_next("0 0 * * 7", "2024-05-01 00:00", "2024-05-05 00:00");
	expect_next("0 0 * * 5-7", "2024-05-01 00:00", "2024-05-03 00:00");
}

static void test_lists_ranges_steps(void **state)
{
	use_tz("UTC");
	static const char *const step7[] = {"2024-05-01 10:49", "2024-05-01 10:56",
					    "2024-05-01 11:00", "2024-05-01 11:07", NULL};
	expect_chain("*/7 * * * *", "2024-05-01 10:45", step7);
	static const char *const range_step[] = {"2024-05-01 10:05", "2024-05-01 10:10",
						 "2024-05-01 10:15", "2024-05-01 10:20",
						 "2024-05-01 11:05", NULL};
	expect_chain("5-20/5 * * * *", "2024-05-01 10:00", range_step);
	static const char *const from_step[] = {"2024-05-01 10:10", "2024-05-01 10:30",
						"2024-05-01 10:50", "2024-05-01 11:10", NULL};
	expect_chain("10/20 * * * *", "2024-05-01 10:00", from_step);
	static const char *const list[] = {
	    "2024-05-01 03:00", "2024-05-01 03:30", "2024-05-01 09:00", "2024-05-01 09:30",
	    "2024-05-01 17:00", "2024-05-01 17:30", "2024-05-02 03:00", NULL};
	expect_chain("0,30 3,9-9,17 * * *", "2024-05-01 00:00", list);
	static const char *const hours[] = {"2024-05-01 06:15", "2024-05-01 12:15",
					    "2024-05-01 18:15", "2024-05-02 00:15", NULL};
	expect_chain("15 */6 * * *", "2024-05-01 00:15", hours);
	expect_next("0 0 1 */3 *", "2024-02-01 00:00", "2024-04-01 00:00");
}

static void test_names(void **state)
{
	use_tz("UTC");
	expect_next("0 12 * jan,jul sun", "2024-02-01 00:00", "2024-07-07 12:00");
	expect_next("0 0 * * MON-fri", "2024-05-03 12:00", "2024-05-06 00:00");
	expect_next("0 0 * * Sat", "2024-05-01 00:00", "2024-05-04 00:00");
	expect_next("0 0 1 DEC *", "2024-05-01 00:00", "2024-12-01 00:00");
	expect_next("0 0 1 mar-may/2 *", "2024-03-01 00:00", "2024-05-01 00:00");
}

static void test_macros(void **state)
{
	use_tz("UTC");
	expect_next("@hourly", "2024-05-01 10:30", "2024-05-01 11:00");
	expect_next("@daily", "2024-05-01 10:30", "2024-05-02 00:00");
	expect_next("@midnight", "2024-05-01 10:30", "2024-05-02 00:00");
	expect_next("@weekly", "2024-05-01 10:30", "2024-05-05 00:00");
	expect_next("@monthly", "2024-05-01 10:30", "2024-06-01 00:00");
	expect_next("@yearly", "2024-05-01 10:30", "2025-01-01 00:00");
	expect_next("@annually", "2024-05-01 10:30", "2025-01-01 00:00");
	expect_next("  @HOURLY  ", "2024-05-01 10:30", "2024-05-01 11:00");
	struct cron c = parse_ok("@reboot");
	time_t t;
	assert_true(c.reboot);
	assert_int_equal(cron_next(&c, at("2024-05-01 10:30"), &t), -ENOENT);
}

static void test_never(void **state)
{
	use_tz("UTC");
	expect_next("0 0 30 2 *", "2024-01-01 00:00", "never");
	expect_next("0 0 31 4,6,9,11 *", "2024-01-01 00:00", "never");
	/* ...but a weekday makes it fire (OR) */
	expect_next("0 0 30 2 mon", "2024-01-31 00:00", "2024-02-05 00:00");
}

static void test_invalid(void **state)
{
	expect_invalid("", "expected 5 fields");
	expect_invalid("* * * *", "got 4");
	expect_invalid("* * * * * *", "'*' follows the schedule");
	expect_invalid("*/5 * * * * rsync -a /a /b",
		       "'rsync -a /a /b' follows the schedule: this "
		       "takes the 5 schedule fields (or one macro) of a "
		       "crontab line, not its command");
	expect_invalid("60 * * * *", "minute field '60': 60 is outside 0-59");
	expect_invalid("* 24 * * *", "hour field");
	expect_invalid("* * 0 * *", "day-of-month field '0'");
	expect_invalid("* * 32 * *", "outside 1-31");
	expect_invalid("* * * 13 *", "month field");
	expect_invalid("* * * 0 *", "month field");
	expect_invalid("* * * * 8", "day-of-week field");
	expect_invalid("*/0 * * * *", "step must be at least 1");
	expect_invalid("*/ * * * *", "step must be a number");
	expect_invalid("*/60 * * * *", "step is larger");
	expect_invalid("5-1 * * * *", "range start is after its end");
	expect_invalid("5- * * * *", "range without an end");
	expect_invalid("a * * * *", "expected a number");
	expect_invalid("-1 * * * *", "expected a number");
	expect_invalid("* * * foo *", "month field 'foo'");
	expect_invalid("* * * * monday", "day-of-week field");
	expect_invalid("* * * jan *x", "unexpected");
	expect_invalid("1,,2 * * * *", "empty list element");
	expect_invalid("1, * * * *", "empty list element");
	expect_invalid("*5 * * * *", "unexpected characters");
	expect_invalid("99999999999 * * * *", "outside 0-59");
	expect_invalid("@every5m", "unknown macro '@every5m'");
	expect_invalid("@daily extra", "'extra' follows the schedule");
	expect_invalid("mon * * * *", "minute field 'mon'");
}

/* Brute force: step minute by minute and test every field. */
static int matches(const struct cron *c, time_t t)
{
	struct tm tm;
	localtime_r(&t, &tm);
	int dom = (c->dom >> tm.tm_mday) & 1, dow = (c->dow >> tm.tm_wday) & 1;
	int day = c->dom_star || c->dow_star ? dom && dow : dom || dow;
	return ((c->minute >> tm.tm_min) & 1) && ((c->hour >> tm.tm_hour) & 1) && day &&
	       ((c->month >> (tm.tm_mon + 1)) & 1);
}

static void test_against_brute_force(void **state)
{
	static const char *const exprs[] = {
	    "*/13 */5 * * *", "0 0 * * 1-5",	   "30 4 1,15 * 5", "0 0 29 * *",      "7 7 7 * *",
	    "0 */2 */3 * *",  "45 23 * * sat,sun", "0 12 1 */2 *",  "1-59/29 1 * * *", NULL,
	};
	use_tz("UTC");
	srand(7);
	for (size_t i = 0; exprs[i]; i++) {
		struct cron c = parse_ok(exprs[i]);
		for (int k = 0; k < 6; k++) {
			time_t start = at("2023-01-01 00:00") + (time_t)(rand() % (730 * 86400));
			time_t next, t = start - start % 60 + 60;
			assert_int_equal(cron_next(&c, start, &next), 0);
			while (!matches(&c, t))
				t += 60;
			if (t != next) {
				char a[32], b[32];
				fmt(t, a, sizeof a);
				fmt(next, b, sizeof b);
				fail_msg("'%s': brute force %s, cron_next %s", exprs[i], a, b);
			}
		}
	}
}

static void test_dst(void **state)
{
	use_tz("America/New_York");
	/* 2024-03-10 02:30 does not exist: the run comes right after the gap. */
	struct cron c = parse_ok("30 2 * * *");
	time_t t = at("2024-03-10 00:00"), next;
	assert_int_equal(cron_next(&c, t, &next), 0);
	assert_true(next > t && next - t <= 4 * 3600);
	assert_int_equal(cron_next(&c, next, &next), 0);
	char s[32];
	fmt(next, s, sizeof s);
	assert_string_equal(s, "2024-03-11 02:30");
	/* 01:30 happens twice on 2024-11-03: one run, then the next day. */
	c = parse_ok("30 1 * * *");
	assert_int_equal(cron_next(&c, at("2024-11-03 00:00"), &next), 0);
	fmt(next, s, sizeof s);
	assert_string_equal(s, "2024-11-03 01:30");
	assert_int_equal(cron_next(&c, next, &next), 0);
	fmt(next, s, sizeof s);
	assert_string_equal(s, "2024-11-04 01:30");
	/* every 15 minutes stays monotonic through both changes */
	c = parse_ok("*/15 * * * *");
	t = at("2024-03-09 22:00");
	for (int i = 0; i < 4 * 24 * 2; i++) {
		assert_int_equal(cron_next(&c, t, &next), 0);
		assert_true(next > t && next - t <= 3600);
		t = next;
	}
	use_tz("UTC");
}

static void test_next_of(void **state)
{
	use_tz("UTC");
	struct cron c[3] = {parse_ok("0 3 * * *"), parse_ok("@reboot"), parse_ok("30 1 * * *")};
	time_t next;
	assert_int_equal(cron_next_of(c, 3, at("2024-05-01 00:00"), &next), 0);
	assert_int_equal(next, at("2024-05-01 01:30"));
	assert_int_equal(cron_next_of(&c[1], 1, at("2024-05-01 00:00"), &next), -ENOENT);
}

static void test_crontab(void **state)
{
	const char *tab = "# the model sync\n"
			  "SHELL=/bin/bash\n"
			  "  PATH = /usr/bin\n"
			  "\n"
			  "*/10 * * * * rsync -avH \"$SRC\" \"$DST\"\n"
			  "@reboot rsync -avH \"$SRC\" \"$DST\"\r\n"
			  "\t0 3 * * mon-fri /usr/local/bin/sync\n";
	struct cron *c;
	size_t n;
	char *err;
	assert_int_equal(cron_parse_crontab(tab, &c, &n, &err), 0);
	assert_null(err);
	assert_int_equal(n, 3);
	assert_int_equal(c[0].minute,
			 1ull | 1ull << 10 | 1ull << 20 | 1ull << 30 | 1ull << 40 | 1ull << 50);
	assert_true(c[1].reboot);
	assert_int_equal(c[2].hour, 1u << 3);
	assert_int_equal(c[2].dow, 0x3e);
	free(c);

	assert_int_equal(cron_parse_crontab("# nothing\n\nA=b\n", &c, &n, &err), SB_ECONFIG);
	assert_non_null(strstr(err, "no job line"));
	assert_null(c);
	free(err);
	assert_int_equal(cron_parse_crontab("* * * * * ok\n0 25 * * * bad\n", &c, &n, &err),
			 SB_ECONFIG);
	assert_non_null(strstr(err, "line 2: hour field '25'"));
	assert_null(c);
	free(err);
	assert_int_equal(cron_parse_crontab("rsync -a x y\n", &c, &n, &err), SB_ECONFIG);
	assert_non_null(strstr(err, "line 1:"));
	free(err);
	/* last line without a newline */
	assert_int_equal(cron_parse_crontab("@hourly", &c, &n, &err), 0);
	assert_int_equal(n, 1);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crontab_commands),
	    cmocka_unit_test(test_every_minute),
	    cmocka_unit_test(test_month_and_year_ends),
	    cmocka_unit_test(test_dom_dow_or),
	    cmocka_unit_test(test_lists_ranges_steps),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_macros),
	    cmocka_unit_test(test_never),
	    cmocka_unit_test(test_invalid),
	    cmocka_unit_test(test_against_brute_force),
	    cmocka_unit_test(test_dst),
	    cmocka_unit_test(test_next_of),
	    cmocka_unit_test(test_crontab),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
