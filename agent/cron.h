/* Cron schedules: five-field expressions (minute hour day-of-month month
 * day-of-week) with lists, ranges, steps and month/weekday names, the
 * @hourly .. @yearly and @reboot macros, and whole crontabs. Next-fire times
 * are computed in local time (TZ), as cron does. Pure functions;
 * thread-safe. */
#ifndef SYNCBIT_CRON_H
#define SYNCBIT_CRON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* How far cron_next looks ahead: enough for "Feb 29 on a Monday". */
#define CRON_HORIZON_YEARS 30

struct cron {
	uint64_t minute; /* bit n: minute n (0-59) */
	uint32_t hour;	 /* 0-23 */
	uint32_t dom;	 /* 1-31 */
	uint16_t month;	 /* 1-12 */
	uint8_t dow;	 /* 0-6, Sunday = 0 (7 is accepted as Sunday) */
	/* The day fields began with '*': as in Vixie cron, a day matches both
	 * fields when either is a star, and either field otherwise. */
	int dom_star, dow_star;
	int reboot; /* @reboot: runs once at start, never by the clock */
};

/* Parse one schedule ("*\/10 * * * *", "0 3 * * mon-fri", "@daily").
 * 0, or SB_ECONFIG with *error (heap, one line) naming the field and why;
 * *error is left NULL on success. */
int cron_parse(const char *expr, struct cron *out, char **error);

/* The first time strictly after `after` (rounded to the minute) that c
 * fires, in local time. 0, or -ENOENT when c never fires within
 * CRON_HORIZON_YEARS (e.g. "0 0 30 2 *") or is @reboot. */
int cron_next(const struct cron *c, time_t after, time_t *next);

/* Earliest next fire among n schedules; -ENOENT when none fires. */
int cron_next_of(const struct cron *c, size_t n, time_t after, time_t *next);

/* Parse a crontab (no user field): blank lines, '#' comments and
 * NAME=value lines are skipped; every other line is a job whose schedule
 * is taken (its command is not looked at). *out is a heap array of *n
 * schedules. 0, or SB_ECONFIG with *error = "line N: why", or "no job
 * line (...)" for a crontab without any job. */
int cron_parse_crontab(const char *text, struct cron **out, size_t *n, char **error);

/* The commands of a crontab's job lines, which cron_parse_crontab does not
 * take: *n lines have one, and the result (heap; NULL when none has) is
 * the first as "line N: COMMAND". */
char *cron_crontab_commands(const char *text, size_t *n);

#endif
