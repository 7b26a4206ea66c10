#include "common/io.h"
#include "common/progress.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"

#define NS_PER_SEC 1000000000ull
/* A bar appears only for operations that last long enough to be watched. */
#define PROGRESS_TTY_DELAY_NS	  NS_PER_SEC
#define PROGRESS_TTY_INTERVAL_NS  (NS_PER_SEC / 10)
#define PROGRESS_LINE_INTERVAL_NS (PROGRESS_LINE_SECONDS * NS_PER_SEC)
/* Rate samples closer than this are too noisy to use. */
#define PROGRESS_SAMPLE_NS (NS_PER_SEC / 4)
/* Time constant of the rate average: long enough to hide bursts, short
 * enough that the ETA follows a real change of speed within seconds. */
#define PROGRESS_RATE_TAU_SEC 3.0
#define PROGRESS_BAR_MIN      10
#define PROGRESS_BAR_MAX      40
#define PROGRESS_COLS_DEFAULT 80

uint64_t progress_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

const char *progress_fmt_bytes(uint64_t n, char *out, int len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)n / 1024;
	int u = 0;

	if (n < 1024) {
		snprintf(out, (size_t)len, "%llu B", (unsigned long long)n);
		return out;
	}
	/* Move up a unit before rounding could print "1024.0 KiB". */
	while (u < 5 && v >= 1023.95) {
		v /= 1024;
		u++;
	}
	if (v >= 99.95)
		snprintf(out, (size_t)len, "%.0f %s", v, units[u]);
	else
		snprintf(out, (size_t)len, "%.1f %s", v, units[u]);
	return out;
}

const char *progress_noun(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

const char *progress_fmt_duration(uint64_t s, char *out, int len)
{
	if (s < 60)
		snprintf(out, (size_t)len, "%llus", (unsigned long long)s);
	else if (s < 3600)
		snprintf(out, (size_t)len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(out, (size_t)len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60));
	return out;
}

void progress_init(struct progress *p, const char *label, uint64_t total, int enabled)
{
	memset(p, 0, sizeof *p);
	p->label = xstrdup(label ? label : "");
	p->total = total;
	p->start_ns = progress_now_ns();
	p->rate_ns = p->start_ns;
	p->fd = STDERR_FILENO;
	/* With --log-format json every stderr line is a JSON object: no bar. */
	p->tty = isatty(p->fd) && log_get_format() != LOG_FORMAT_JSON;
	p->enabled = enabled;
}

void progress_set_total(struct progress *p, uint64_t total)
{
	p->total = total;
}

void progress_set_files(struct progress *p, uint64_t total)
{
	p->files_total = total;
}

void progress_files_done(struct progress *p, uint64_t n)
{
	p->files += n;
}

static void progress_sample(struct progress *p, uint64_t now)
{
	double dt, inst, alpha;

	if (now < p->rate_ns + PROGRESS_SAMPLE_NS)
		return;
	dt = (double)(now - p->rate_ns) / NS_PER_SEC;
	inst = (double)(p->done - p->rate_done) / dt;
	/* Weights follow elapsed time, so irregular calls average evenly. */
	alpha = p->rate > 0 ? 1.0 - exp(-dt / PROGRESS_RATE_TAU_SEC) : 1.0;
	p->rate += alpha * (inst - p->rate);
	p->rate_ns = now;
	p->rate_done = p->done;
}

static unsigned progress_percent(const struct progress *p)
{
	if (p->done >= p->total)
		return 100;
	return (unsigned)((unsigned __int128)p->done * 100 / p->total);
}

/* "1.2 GiB / 4.0 GiB (30%), 410 MiB/s, ETA 7s", parts omitted when unknown. */
static void progress_stats(const struct progress *p, int with_percent, struct buf *b)
{
	char s1[32], s2[32];

	if (p->files_total && with_percent)
		buf_printf(b, "%llu/%llu %s, ", (unsigned long long)p->files,
			   (unsigned long long)p->files_total,
			   progress_noun(p->files_total, "file", "files"));
	buf_append_str(b, progress_fmt_bytes(p->done, s1, sizeof s1));
	if (p->total) {
		progress_fmt_bytes(p->total, s2, sizeof s2);
		buf_printf(b, " / %s", s2);
		if (with_percent)
			buf_printf(b, " (%u%%)", progress_percent(p));
	}
	if (p->rate < 1.0)
		return;
	buf_printf(b, ", %s/s", progress_fmt_bytes((uint64_t)p->rate, s1, sizeof s1));
	if (p->total && p->done < p->total) {
		double eta = (double)(p->total - p->done) / p->rate;

		buf_printf(b, ", ETA %s",
			   progress_fmt_duration((uint64_t)ceil(eta), s1, sizeof s1));
	}
}

static int term_cols(int fd)
{
	struct winsize ws;

	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return PROGRESS_COLS_DEFAULT;
}

static void progress_draw_bar(struct progress *p)
{
	struct buf stats = BUF_INIT, b = BUF_INIT;
	/* The bar must never wrap, or "\r" would redraw only its last row. */
	int cols = term_cols(p->fd) - 1;
	int width;

	progress_stats(p, 0, &stats);
	buf_append_str(&b, "\r");
	buf_printf(&b, "%s: ", p->label);
	if (p->total) {
		unsigned pct = progress_percent(p);

		buf_printf(&b, "%3u%% ", pct);
		width = cols - (int)(b.len - 1) - (int)stats.len - 3;
		if (width > PROGRESS_BAR_MAX)
			width = PROGRESS_BAR_MAX;
		if (width >= PROGRESS_BAR_MIN) {
			int fill = (int)(pct * (unsigned)width / 100);

			buf_append_str(&b, "[");
			for (int i = 0; i < width; i++)
				buf_append(&b, i < fill ? "#" : ".", 1);
			buf_append_str(&b, "] ");
		}
	}
	buf_append(&b, stats.ptr, stats.len);
	if (b.len > (size_t)cols + 1)
		b.len = (size_t)cols + 1;
	buf_append_str(&b, "\033[K");
	(void)io_write_full(p->fd, b.ptr, b.len);
	p->drawn = 1;
	buf_close(&b);
	buf_close(&stats);
}

/* A finished line (ending in "\n") out: as it is, or as a JSON log line. */
static void progress_write(struct progress *p, struct buf *b)
{
	if (log_get_format() == LOG_FORMAT_JSON && p->fd == STDERR_FILENO) {
		log_print(LOG_INFO, "progress", NULL, "%.*s", (int)(b->len - 1),
			  (const char *)b->ptr);
		return;
	}
	(void)io_write_full(p->fd, b->ptr, b->len);
}

static void progress_print_line(struct progress *p)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "%s: ", p->label);
	progress_stats(p, 1, &b);
	buf_append_str(&b, "\n");
	progress_write(p, &b);
	buf_close(&b);
}

void progress_set_label(struct progress *p, const char *label)
{
	free(p->label);
	p->label = xstrdup(label ? label : "");
}

void progress_note(struct progress *p, const char *fmt, ...)
{
	struct buf msg = BUF_INIT, b = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	if (p->drawn)
		buf_append_str(&b, "\r\033[K");
	/* Names from sources and peers may hold any byte. */
	buf_reserve(&b, 4 * msg.len + 2);
	b.len += log_escape((char *)b.ptr + b.len, b.cap - b.len, (const char *)msg.ptr, msg.len);
	buf_close(&msg);
	buf_append_str(&b, "\n");
	(void)io_write_full(p->fd, b.ptr, b.len);
	buf_close(&b);
	if (p->drawn)
		progress_draw_bar(p);
}

void progress_add_at(struct progress *p, uint64_t n, uint64_t now)
{
	p->done += n;
	if (!p->enabled)
		return;
	progress_sample(p, now);
	if (p->tty) {
		if (now < p->start_ns + PROGRESS_TTY_DELAY_NS ||
		    (p->last_draw_ns && now < p->last_draw_ns + PROGRESS_TTY_INTERVAL_NS))
			return;
		progress_draw_bar(p);
	} else {
		uint64_t since = p->last_draw_ns;

		if (!since)
			since = p->start_ns;
		if (now < since + PROGRESS_LINE_INTERVAL_NS)
			return;
		progress_print_line(p);
	}
	p->last_draw_ns = now;
}

void progress_add(struct progress *p, uint64_t n)
{
	progress_add_at(p, n, progress_now_ns());
}

void progress_close_at(struct progress *p, uint64_t now)
{
	struct buf b = BUF_INIT;
	char s1[32], s2[32];
	uint64_t elapsed = now > p->start_ns ? now - p->start_ns : 0;
	double secs = (double)elapsed / NS_PER_SEC;

	/* Short operations stay silent: only close what the user has seen. */
	if (p->enabled && p->last_draw_ns) {
		if (p->drawn)
			buf_append_str(&b, "\r");
		buf_printf(&b, "%s: %s", p->label, progress_fmt_bytes(p->done, s1, sizeof s1));
		if (p->total && p->done < p->total)
			buf_printf(&b, " / %s (%u%%)", progress_fmt_bytes(p->total, s2, sizeof s2),
				   progress_percent(p));
		buf_printf(&b, " in %s",
			   progress_fmt_duration((uint64_t)llround(secs), s1, sizeof s1));
		if (secs > 0) {
			progress_fmt_bytes((uint64_t)(p->done / secs), s2, sizeof s2);
			buf_printf(&b, ", %s/s", s2);
		}
		buf_append_str(&b, p->drawn ? "\033[K\n" : "\n");
		progress_write(p, &b);
		buf_close(&b);
	}
	p->drawn = 0;
	p->enabled = 0;
	free(p->label);
	p->label = NULL;
}

void progress_close(struct progress *p)
{
	progress_close_at(p, progress_now_ns());
}
