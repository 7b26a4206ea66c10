/* Progress reporting for the CLI on stderr: a redrawn bar (bytes, rate, ETA)
 * when stderr is a TTY and the operation lasts over a second; otherwise a
 * plain line every few seconds. Loop thread only. */
#ifndef SYNCBIT_PROGRESS_H
#define SYNCBIT_PROGRESS_H

#include <stdint.h>

#define PROGRESS_LINE_SECONDS 5

struct progress {
	char *label;
	uint64_t total; /* 0 if unknown */
	uint64_t done;
	uint64_t files, files_total; /* files done of files_total; 0: not counted */
	uint64_t start_ns;
	uint64_t last_draw_ns;
	uint64_t rate_ns;   /* time of the last rate sample */
	uint64_t rate_done; /* done at the last rate sample */
	double rate;	    /* smoothed bytes per second */
	int tty;	    /* draw a bar (1) or plain lines (0) */
	int enabled;
	int drawn; /* a bar is on screen and needs a newline at end */
	int fd;
};

/* enabled = 0 silences it entirely (e.g. --json or --quiet). */
void progress_init(struct progress *p, const char *label, uint64_t total, int enabled);
void progress_set_total(struct progress *p, uint64_t total);
/* Count files too: lines then start "3/10 files, ". */
void progress_set_files(struct progress *p, uint64_t total);
void progress_files_done(struct progress *p, uint64_t n);
/* Add n bytes done; redraws at most 10 times a second (TTY), or prints a
 * plain line every PROGRESS_LINE_SECONDS (not a TTY: logs, CI, sidecars). */
void progress_add(struct progress *p, uint64_t n);
/* Change the label the next lines and redraws show. */
void progress_set_label(struct progress *p, const char *label);
/* One line on stderr that stays (a file done, a node ready): on a TTY it
 * goes above the bar, which is drawn again below it. Printed even when
 * the progress is silenced: the caller decides. */
void progress_note(struct progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Final line and release. The final line is printed only when a bar or a
 * periodic line was shown before, so short operations stay silent. */
void progress_close(struct progress *p);
/* progress_add and progress_close at an explicit progress_now_ns() time. */
void progress_add_at(struct progress *p, uint64_t n, uint64_t now_ns);
void progress_close_at(struct progress *p, uint64_t now_ns);

/* Human-readable size into out ("1.5 GiB"); returns out. Values from 100
 * of a unit up print without a decimal ("410 MiB"). */
const char *progress_fmt_bytes(uint64_t n, char *out, int len);
/* The noun for a count of n: one when n is 1, many otherwise ("1 file",
 * "2 files"). */
const char *progress_noun(uint64_t n, const char *one, const char *many);
/* Duration in seconds into out ("7s", "4m05s", "2h03m"); returns out. */
const char *progress_fmt_duration(uint64_t seconds, char *out, int len);
/* Monotonic clock in nanoseconds. */
uint64_t progress_now_ns(void);

#endif
