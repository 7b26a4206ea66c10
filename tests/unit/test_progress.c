#include "tests/unit/testutil.h"

#include <fcntl.h>
#include <pty.h>
#include <sys/ioctl.h>

#include "common/progress.h"

#define SEC 1000000000ull
#define MS  1000000ull
#define MIB (1ull << 20)
#define GIB (1ull << 30)
/* An arbitrary start on the fake clock, far from 0. */
#define T0 (1000 * SEC)

/* ---- formatting ---- */

static void test_fmt_bytes(void **state)
{
	static const struct {
		uint64_t n;
		const char *want;
	} cases[] = {
	    {0, "0 B"},
	    {1, "1 B"},
	    {1023, "1023 B"},
	    {1024, "1.0 KiB"},
	    {1536, "1.5 KiB"},
	    {1048575, "1.0 MiB"}, /* not "1024.0 KiB" */
	    {10 * MIB + MIB / 2, "10.5 MiB"},
	    {99 * MIB, "99.0 MiB"},
	    {100 * MIB - 1024, "100 MiB"},
	    {410 * MIB, "410 MiB"},
	    {1023 * MIB, "1023 MiB"},
	    {1288490189ull, "1.2 GiB"},
	    {4 * GIB, "4.0 GiB"},
	    {1ull << 40, "1.0 TiB"},
	    {3ull << 50, "3.0 PiB"},
	    {UINT64_MAX, "16.0 EiB"},
	};
	char out[32];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *r = progress_fmt_bytes(cases[i].n, out, sizeof out);

		assert_ptr_equal(r, out);
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("%llu -> '%s', want '%s'", (unsigned long long)cases[i].n, out,
				 cases[i].want);
	}
	/* never overruns the buffer */
	memset(out, 'z', sizeof out);
	progress_fmt_bytes(4 * GIB, out, 4);
	assert_string_equal(out, "4.0");
	assert_int_equal(out[4], 'z');
}

static void test_fmt_duration(void **state)
{
	static const struct {
		uint64_t s;
		const char *want;
	} cases[] = {
	    {0, "0s"},	     {7, "7s"},		  {59, "59s"},	   {60, "1m00s"},
	    {65, "1m05s"},   {3599, "59m59s"},	  {3600, "1h00m"}, {7380, "2h03m"},
	    {7439, "2h03m"}, {360000, "100h00m"},
	};
	char out[32];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_ptr_equal(progress_fmt_duration(cases[i].s, out, sizeof out), out);
		assert_string_equal(out, cases[i].want);
	}
}

static void test_noun(void **state)
{
	assert_string_equal(progress_noun(0, "file", "files"), "files");
	assert_string_equal(progress_noun(1, "file", "files"), "file");
	assert_string_equal(progress_noun(2, "node drops", "nodes drop"), "nodes drop");
}

static void test_now_monotonic(void **state)
{
	uint64_t a = progress_now_ns(), b = progress_now_ns();

	assert_true(a > 0);
	assert_true(b >= a);
}

/* ---- a progress writing to a temp file on a fake clock ---- */

struct fake {
	struct progress p;
	FILE *out;
};

static void fake_init(struct fake *f, uint64_t total, int tty, int enabled)
{
	progress_init(&f->p, "pull", total, enabled);
	f->out = tmpfile();
	assert_non_null(f->out);
	f->p.fd = fileno(f->out);
	f->p.tty = tty;
	f->p.start_ns = T0;
	f->p.rate_ns = T0;
}

/* Everything written so far; heap string. */
static char *fake_output(struct fake *f)
{
	long n = lseek(f->p.fd, 0, SEEK_END);
	char *s = calloc(1, (size_t)n + 1);

	assert_int_equal(pread(f->p.fd, s, (size_t)n, 0), n);
	return s;
}

static void fake_close(struct fake *f)
{
	fclose(f->out);
}

/* 410 MiB/s: 205 MiB every half second, from t0 (exclusive) to t1. */
static void feed(struct progress *p, uint64_t t0, uint64_t t1)
{
	for (uint64_t t = t0 + SEC / 2; t <= t1; t += SEC / 2)
		progress_add_at(p, 205 * MIB, t);
}

static void test_plain_lines_every_5s(void **state)
{
	struct fake f;
	char *out;

	fake_init(&f, 4100 * MIB, 0, 1);
	feed(&f.p, T0, T0 + 4 * SEC + SEC / 2);
	out = fake_output(&f);
	assert_string_equal(out, ""); /* nothing in the first 5 s */
	free(out);

	feed(&f.p, T0 + 4 * SEC + SEC / 2, T0 + 5 * SEC);
	out = fake_output(&f);
	assert_string_equal(out, "pull: 2.0 GiB / 4.0 GiB (50%), 410 MiB/s, "
				 "ETA 5s\n");
	free(out);

	feed(&f.p, T0 + 5 * SEC, T0 + 9 * SEC + SEC / 2);
	out = fake_output(&f);
	assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* still one line */
	free(out);

	feed(&f.p, T0 + 9 * SEC + SEC / 2, T0 + 10 * SEC);
	progress_close_at(&f.p, T0 + 10 * SEC);
	out = fake_output(&f);
	assert_string_equal(out, "pull: 2.0 GiB / 4.0 GiB (50%), 410 MiB/s, ETA 5s\n"
				 "pull: 4.0 GiB / 4.0 GiB (100%), 410 MiB/s\n"
				 "pull: 4.0 GiB in 10s, 410 MiB/s\n");
	assert_null(f.p.label);
	free(out);
	fake_close(&f);
}

static void test_plain_unknown_total(void **state)
{
	struct fake f;
	char *out;

	fake_init(&f, 0, 0, 1);
	feed(&f.p, T0, T0 + 5 * SEC);
	progress_close_at(&f.p, T0 + 6 * SEC);
	out = fake_output(&f);
	assert_string_equal(out, "pull: 2.0 GiB, 410 MiB/s\n"
				 "pull: 2.0 GiB in 6s, 342 MiB/s\n");
	free(out);
	fake_close(&f);
}

static void test_plain_incomplete_close(void **state)
{
	struct fake f;
	char *out;

	fake_init(&f, 0, 0, 1);
	feed(&f.p, T0, T0 + 5 * SEC);
	progress_set_total(&f.p, 8 * GIB);
	progress_close_at(&f.p, T0 + 5 * SEC);
	out = fake_output(&f);
	assert_string_equal(out, "pull: 2.0 GiB, 410 MiB/s\n"
				 "pull: 2.0 GiB / 8.0 GiB (25%) in 5s, "
				 "410 MiB/s\n");
	free(out);
	fake_close(&f);
}

/* Short operations print nothing at all, bar or not. */
static void test_short_operation_silent(void **state)
{
	for (int tty = 0; tty <= 1; tty++) {
		struct fake f;
		char *out;

		fake_init(&f, 100 * MIB, tty, 1);
		progress_add_at(&f.p, 50 * MIB, T0 + 300 * MS);
		progress_add_at(&f.p, 50 * MIB, T0 + 900 * MS);
		progress_close_at(&f.p, T0 + 950 * MS);
		out = fake_output(&f);
		assert_string_equal(out, "");
		free(out);
		fake_close(&f);
	}
}

static void test_disabled_is_silent(void **state)
{
	for (int tty = 0; tty <= 1; tty++) {
		struct fake f;
		char *out;

		fake_init(&f, 4 * GIB, tty, 0);
		feed(&f.p, T0, T0 + 20 * SEC);
		assert_int_equal(f.p.done, 40 * 205 * MIB);
		progress_close_at(&f.p, T0 + 20 * SEC);
		out = fake_output(&f);
		assert_string_equal(out, "");
		free(out);
		fake_close(&f);
	}
}

static int count(const char *s, char c)
{
	int n = 0;

	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_tty_bar(void **state)
{
	struct fake f;
	char *out, *bar;

	fake_init(&f, 4100 * MIB, 1, 1);
	feed(&f.p, T0, T0 + SEC / 2);
	out = fake_output(&f);
	assert_string_equal(out, ""); /* not before 1 s */
	free(out);

	progress_add_at(&f.p, 205 * MIB, T0 + SEC);
	out = fake_output(&f);
	/* not a terminal, so 80 columns: the bar takes what is left of 79 */
	assert_string_equal(out, "\rpull:  10% [##..........................."
				 "] 410 MiB / 4.0 GiB, 410 MiB/s, ETA 9s\033[K");
	assert_int_equal(strlen(out) - 1 - 3, 79);
	assert_true(f.p.drawn);
	free(out);

	/* at most ten redraws a second */
	progress_add_at(&f.p, MIB, T0 + SEC + 50 * MS);
	progress_add_at(&f.p, MIB, T0 + SEC + 99 * MS);
	out = fake_output(&f);
	assert_int_equal(count(out, '\r'), 1);
	free(out);
	progress_add_at(&f.p, MIB, T0 + SEC + 100 * MS);
	progress_add_at(&f.p, MIB, T0 + SEC + 150 * MS);
	progress_add_at(&f.p, MIB, T0 + SEC + 200 * MS);
	out = fake_output(&f);
	assert_int_equal(count(out, '\r'), 3);
	assert_int_equal(count(out, '\n'), 0);
	free(out);

	progress_close_at(&f.p, T0 + 2 * SEC);
	out = fake_output(&f);
	bar = strrchr(out, '\r');
	assert_string_equal(bar, "\rpull: 415 MiB / 4.0 GiB (10%) in 2s, "
				 "208 MiB/s\033[K\n");
	free(out);
	fake_close(&f);
}

/* The bar fits the terminal, whatever its width. */
static void test_tty_width(void **state)
{
	static const unsigned short widths[] = {200, 70, 30};

	for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
		struct winsize ws = {.ws_row = 24, .ws_col = widths[i]};
		struct progress p;
		int master, slave;
		char buf[1024];
		ssize_t n;
		char *end;

		assert_int_equal(openpty(&master, &slave, NULL, NULL, &ws), 0);
		progress_init(&p, "pull", 4100 * MIB, 1);
		p.fd = slave;
		p.tty = 1;
		p.start_ns = T0;
		p.rate_ns = T0;
		feed(&p, T0, T0 + SEC);
		n = read(master, buf, sizeof buf - 1);
		assert_true(n > 0);
		buf[n] = '\0';
		assert_int_equal(buf[0], '\r');
		end = strstr(buf, "\033[K");
		assert_non_null(end);
		assert_true(end - buf - 1 <= widths[i] - 1);
		if (widths[i] == 200)
			assert_non_null(strstr(buf, "[####............"
						    "................"
						    "........] 410 MiB"));
		if (widths[i] == 30) /* too narrow for a bar: text only */
			assert_null(strstr(buf, "[#"));
		if (widths[i] == 70)
			assert_non_null(strstr(buf, "% [#....."));
		progress_close(&p);
		close(slave);
		close(master);
	}
}

/* The rate follows a change of speed within a few seconds, smoothly. */
static void test_rate_smoothing(void **state)
{
	struct fake f;
	uint64_t t = T0;
	double mid;

	fake_init(&f, 0, 0, 0);
	f.p.enabled = 1;
	for (int i = 0; i < 40; i++) /* 100 MiB/s for 10 s */
		progress_add_at(&f.p, 25 * MIB, t += SEC / 4);
	assert_true(f.p.rate > 99.9 * MIB && f.p.rate < 100.1 * MIB);
	for (int i = 0; i < 12; i++) /* then 200 MiB/s for 3 s */
		progress_add_at(&f.p, 50 * MIB, t += SEC / 4);
	mid = f.p.rate;
	/* one time constant: about 63% of the way */
	assert_true(mid > 160.0 * MIB && mid < 166.0 * MIB);
	for (int i = 0; i < 80; i++)
		progress_add_at(&f.p, 50 * MIB, t += SEC / 4);
	assert_true(f.p.rate > 199.0 * MIB && f.p.rate < 200.1 * MIB);
	/* calls closer together than a sample do not move it */
	mid = f.p.rate;
	progress_add_at(&f.p, 500 * MIB, t + MS);
	assert_true(f.p.rate == mid);
	progress_close_at(&f.p, t);
	fake_close(&f);
}

static void test_close_twice_and_overshoot(void **state)
{
	struct fake f;
	char *out;

	fake_init(&f, 100 * MIB, 0, 1);
	progress_add_at(&f.p, 300 * MIB, T0 + 6 * SEC);
	progress_close_at(&f.p, T0 + 6 * SEC);
	progress_close_at(&f.p, T0 + 7 * SEC);
	out = fake_output(&f);
	assert_string_equal(out, "pull: 300 MiB / 100 MiB (100%), 50.0 MiB/s\n"
				 "pull: 300 MiB in 6s, 50.0 MiB/s\n");
	free(out);
	fake_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fmt_bytes),
	    cmocka_unit_test(test_fmt_duration),
	    cmocka_unit_test(test_noun),
	    cmocka_unit_test(test_now_monotonic),
	    cmocka_unit_test(test_plain_lines_every_5s),
	    cmocka_unit_test(test_plain_unknown_total),
	    cmocka_unit_test(test_plain_incomplete_close),
	    cmocka_unit_test(test_short_operation_silent),
	    cmocka_unit_test(test_disabled_is_silent),
	    cmocka_unit_test(test_tty_bar),
	    cmocka_unit_test(test_tty_width),
	    cmocka_unit_test(test_rate_smoothing),
	    cmocka_unit_test(test_close_twice_and_overshoot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
