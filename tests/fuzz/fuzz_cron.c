/* libFuzzer target for cron schedules and crontabs (agent/cron.c), which
 * `syncbit sync --schedule` and --crontab files give. The first input byte
 * picks one schedule or a crontab, the next four the time to look on from;
 * the rest is the text. Whatever the bytes: no crash, leak, out-of-bounds
 * access or undefined arithmetic; a schedule's fields hold only values in
 * their ranges; the next time found lies after the start, within the
 * horizon, and matches the schedule (checked in UTC, where every civil
 * time exists once); a refusal is SB_ECONFIG with a one-line reason. */
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <time.h>

#include "agent/cron.h"
#include "common/err.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	setenv("TZ", "UTC", 1);
	tzset();
	return 0;
}

static void check_fields(const struct cron *c)
{
	fuzz_check((c->minute >> 60) == 0 && c->minute, "minute out of range");
	fuzz_check((c->hour >> 24) == 0 && c->hour, "hour out of range");
	fuzz_check((c->dom & 1) == 0 && c->dom, "day out of range");
	fuzz_check((c->month & 1) == 0 && (c->month >> 13) == 0 && c->month, "month out of range");
	fuzz_check((c->dow >> 7) == 0 && c->dow, "weekday out of range");
}

static void check_next(const struct cron *c, time_t after)
{
	time_t next;
	int rc = cron_next(c, after, &next);
	if (rc < 0) {
		fuzz_check(rc == -ENOENT, "unexpected error code");
		return;
	}
	fuzz_check(!c->reboot, "@reboot fires by the clock");
	fuzz_check(next > after, "next time not after the start");
	fuzz_check(next - after <= (time_t)(CRON_HORIZON_YEARS + 1) * 366 * 86400,
		   "next time past the horizon");
	fuzz_check(next % 60 == 0, "next time not on a minute");
	struct tm tm;
	fuzz_check(gmtime_r(&next, &tm) != NULL, "gmtime");
	fuzz_check((c->minute >> tm.tm_min) & 1, "minute does not match");
	fuzz_check((c->hour >> tm.tm_hour) & 1, "hour does not match");
	fuzz_check((c->month >> (tm.tm_mon + 1)) & 1, "month does not match");
	int dom = (c->dom >> tm.tm_mday) & 1, dow = (c->dow >> tm.tm_wday) & 1;
	fuzz_check(c->dom_star || c->dow_star ? dom && dow : dom || dow, "day does not match");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	int crontab = data[0] & 1;
	time_t after = (time_t)((uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 |
				(uint32_t)data[3] << 8 | data[4]);
	char *text = fuzz_cstr(data + 5, size - 5), *error = NULL;
	if (!crontab) {
		struct cron c;
		int rc = cron_parse(text, &c, &error);
		if (rc == 0) {
			fuzz_check(error == NULL, "error set on success");
			if (!c.reboot)
				check_fields(&c);
			check_next(&c, after);
		} else {
			fuzz_check(rc == SB_ECONFIG, "unexpected error code");
			fuzz_check(error && (fuzz_one_line(error) || !fuzz_one_line(text)),
				   "reason spans lines");
		}
	} else {
		struct cron *cs = NULL;
		size_t n = 0;
		int rc = cron_parse_crontab(text, &cs, &n, &error);
		if (rc == 0) {
			fuzz_check(error == NULL && n > 0 && cs, "a crontab without jobs accepted");
			for (size_t i = 0; i < n; i++) {
				if (!cs[i].reboot)
					check_fields(&cs[i]);
				if (i < 4)
					check_next(&cs[i], after);
			}
			time_t t;
			int r = cron_next_of(cs, n, after, &t);
			fuzz_check(r == 0 || r == -ENOENT, "cron_next_of");
		} else {
			fuzz_check(rc == SB_ECONFIG && error && fuzz_one_line(error),
				   "reason not one line");
			fuzz_check(!cs && n == 0, "jobs left on failure");
		}
		free(cs);
	}
	free(error);
	free(text);
	return 0;
}
