#include "common/net/admit.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"

static const char *const reason_labels[] = {
#define ADMIT_LABEL_(name, label, text) label,
    ADMIT_REASON_MAP(ADMIT_LABEL_)
#undef ADMIT_LABEL_
};

static const char *const reason_texts[] = {
#define ADMIT_TEXT_(name, label, text) text,
    ADMIT_REASON_MAP(ADMIT_TEXT_)
#undef ADMIT_TEXT_
};

/* Freed when accept(2) hits EMFILE so that the retry succeeds. */
static int spare_fd = -1;

static void spare_take(void)
{
	if (spare_fd < 0)
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* ---- descriptors ---- */

unsigned admit_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > ADMIT_FD_LIMIT_MAX)
		return ADMIT_FD_LIMIT_MAX;
	return (unsigned)rl.rlim_cur;
}

unsigned admit_fd_reserve(unsigned limit)
{
	unsigned r = limit / 8;
	return r < ADMIT_FD_RESERVE_MIN	  ? ADMIT_FD_RESERVE_MIN
	       : r > ADMIT_FD_RESERVE_MAX ? ADMIT_FD_RESERVE_MAX
					  : r;
}

int admit_fd_limit_raise(unsigned *limit)
{
	struct rlimit rl;
	rlim_t want = 0;
	int rc = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		want = rl.rlim_max;
		if (want == RLIM_INFINITY || want > ADMIT_FD_LIMIT_MAX)
			want = ADMIT_FD_LIMIT_MAX;
		if (rl.rlim_cur < want) {
			rl.rlim_cur = want;
			if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
				rc = -errno;
		}
	} else {
		rc = -errno;
	}
	unsigned now = admit_fd_limit();
	if (limit)
		*limit = now;
	if (rc < 0)
		log_warn("cannot raise the file descriptor limit to %llu: %s",
			 (unsigned long long)want, sb_strerror(rc));
	log_info("file descriptors: %u, %u kept back from unauthenticated connections", now,
		 admit_fd_reserve(now));
	return rc;
}

/* Descriptors this admission leaves free for others. */
static unsigned fd_floor(const struct admit *a, unsigned limit)
{
	unsigned r = admit_fd_reserve(limit);
	return a->cfg.probes ? r / 4 : r;
}

/* ---- log lines ---- */

/* Space-saving count of the sources in this window: a new address takes
 * the place of the least counted one when the table is full. */
static void top_add(struct admit *a, const char *addr)
{
	unsigned min = 0;

	if (!addr)
		return;
	for (unsigned i = 0; i < a->ntop; i++) {
		if (!strcmp(a->top[i].addr, addr)) {
			a->top[i].n++;
			return;
		}
		if (a->top[i].n < a->top[min].n)
			min = i;
	}
	uint64_t n = 1;
	if (a->ntop < ADMIT_TOP_MAX)
		min = a->ntop++;
	else
		n = a->top[min].n + 1;
	snprintf(a->top[min].addr, sizeof a->top[min].addr, "%s", addr);
	a->top[min].n = n;
}

/* One line for the window's refusals, if any; 1 when it logged. */
static int window_flush(struct admit *a)
{
	struct buf reasons = BUF_INIT;
	uint64_t total = 0;
	unsigned top = 0;

	for (int i = 0; i < ADMIT_REASONS; i++) {
		if (!a->window[i])
			continue;
		buf_printf(&reasons, "%s%s %llu", total ? ", " : "", reason_labels[i],
			   (unsigned long long)a->window[i]);
		total += a->window[i];
	}
	for (unsigned i = 1; i < a->ntop; i++)
		if (a->top[i].n > a->top[top].n)
			top = i;
	uint64_t now = uv_now(a->loop);
	if (total)
		log_warn("%s: %llu more connection%s refused in %.1f s (%s); most from %s (%llu)",
			 a->what, (unsigned long long)total, total == 1 ? "" : "s",
			 (double)(now - a->window_since) / 1000, buf_cstr(&reasons),
			 a->ntop ? a->top[top].addr : "unknown addresses",
			 (unsigned long long)(a->ntop ? a->top[top].n : total));
	buf_close(&reasons);
	memset(a->window, 0, sizeof a->window);
	a->ntop = 0;
	a->window_since = now;
	return total > 0;
}

static void window_end(uv_timer_t *t)
{
	struct admit *a = t->data;

	if (window_flush(a))
		uv_timer_start(&a->log_timer, window_end, ADMIT_LOG_MS, 0);
	else
		a->window_open = 0;
}

/* The first refusal after a quiet spell is logged at once with its
 * detail; the ones after it only in a summary when the window ends. */
void admit_note(struct admit *a, enum admit_reason why, const char *addr, const char *detail)
{
	a->count[why]++;
	if (a->window_open) {
		a->window[why]++;
		top_add(a, addr);
		return;
	}
	log_warn("%s: refused a connection from %s: %s; further refusals are summarised every %d s",
		 a->what, addr ? addr : "an unknown address",
		 detail && detail[0] ? detail : reason_texts[why], ADMIT_LOG_MS / 1000);
	a->window_open = 1;
	a->window_since = uv_now(a->loop);
	uv_timer_start(&a->log_timer, window_end, ADMIT_LOG_MS, 0);
}

/* ---- the pending set ---- */

static void slot_unlink(struct admit *a, struct admit_slot *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		a->oldest = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		a->newest = s->prev;
	s->prev = s->next = NULL;
	s->a = NULL;
	a->pending--;
}

static void slot_link(struct admit *a, struct admit_slot *s)
{
	s->a = a;
	s->since = uv_now(a->loop);
	s->prev = a->newest;
	s->next = NULL;
	if (a->newest)
		a->newest->next = s;
	else
		a->oldest = s;
	a->newest = s;
	a->pending++;
}

/* Nothing ever came from s's peer: nothing read, nothing waiting in the
 * socket (a peer that closed without a byte counts too). */
static int slot_silent(const struct admit_slot *s)
{
	char c;

	if (s->heard)
		return 0;
	ssize_t n = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

static int slot_aged(const struct admit *a, const struct admit_slot *s)
{
	return uv_now(a->loop) - s->since >= ADMIT_EVICT_AGE_MS;
}

/* The pending connection that makes room for a new one, from key's address
 * (NULL: any): the oldest silent one that waited ADMIT_EVICT_AGE_MS; else the
 * newest silent one (of a burst, the one before the new one; a client
 * accepted earlier keeps its time to speak); else, unless silent_only, the
 * oldest once it waited that long (an honest handshake is long done by
 * then). NULL when none may go. The pending set is in arrival order. */
static struct admit_slot *victim(struct admit *a, const uint8_t *key, int silent_only, int *silent)
{
	struct admit_slot *p;

	*silent = 1;
	for (p = a->oldest; p && slot_aged(a, p); p = p->next)
		if ((!key || !memcmp(p->key, key, sizeof p->key)) && slot_silent(p))
			return p;
	for (p = a->newest; p; p = p->prev)
		if ((!key || !memcmp(p->key, key, sizeof p->key)) && slot_silent(p))
			return p;
	*silent = 0;
	if (silent_only)
		return NULL;
	for (p = a->oldest; p && slot_aged(a, p); p = p->next)
		if (!key || !memcmp(p->key, key, sizeof p->key))
			return p;
	return NULL;
}

static void evict(struct admit *a, struct admit_slot *victim, int silent)
{
	char detail[96];

	snprintf(
	    detail, sizeof detail, "%s after %llu ms, dropped to make room for a newer connection",
	    silent ? "silent" : "pending", (unsigned long long)(uv_now(a->loop) - victim->since));
	slot_unlink(a, victim);
	admit_note(a, ADMIT_EVICTED, victim->addr, detail);
	a->cfg.evict(victim);
}

/* At a cap (why) for s, a new connection, from s's address only or any
 * (same): 1 when a pending connection made room, else 0 (counted). Short of
 * descriptors only a silent one makes room. */
static int make_room(struct admit *a, const struct admit_slot *s, int same, enum admit_reason why)
{
	int silent;
	struct admit_slot *v = victim(a, same ? s->key : NULL, why == ADMIT_FD_RESERVE, &silent);

	if (!v) {
		admit_note(a, why, s->addr, NULL);
		return 0;
	}
	evict(a, v, silent);
	return 1;
}

static void slot_address(struct admit_slot *s, const struct sockaddr *sa)
{
	memset(s->key, 0, sizeof s->key);
	snprintf(s->addr, sizeof s->addr, "?");
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
			struct sockaddr_in a4 = {.sin_family = AF_INET};
			memcpy(&a4.sin_addr, a6->sin6_addr.s6_addr + 12, 4);
			slot_address(s, (const struct sockaddr *)&a4);
			return;
		}
		s->key[0] = 6;
		memcpy(s->key + 1, &a6->sin6_addr, 16);
		uv_ip6_name(a6, s->addr, sizeof s->addr);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
		s->key[0] = 4;
		memcpy(s->key + 1, &a4->sin_addr, 4);
		uv_ip4_name(a4, s->addr, sizeof s->addr);
	}
}

int admit_enter(struct admit *a, struct admit_slot *s, const struct sockaddr *sa, int fd,
		unsigned *deadline_ms)
{
	unsigned same = 0;

	memset(s, 0, sizeof *s);
	s->fd = fd;
	slot_address(s, sa);
	/* The kernel hands out the lowest free descriptor: every one below
	 * fd is open, so at most this many are left. A silent connection
	 * gives its descriptor to the new one (no more are open after). */
	unsigned limit = admit_fd_limit(), floor = fd_floor(a, limit);
	unsigned left = (unsigned)fd + 1 >= limit ? 0 : limit - (unsigned)fd - 1;
	if (left < floor && !make_room(a, s, 0, ADMIT_FD_RESERVE))
		return -EMFILE;
	for (struct admit_slot *p = a->oldest; p; p = p->next)
		same += !memcmp(p->key, s->key, sizeof s->key);
	if (same >= a->cfg.per_addr_max) {
		if (!make_room(a, s, 1, ADMIT_PER_ADDRESS))
			return -EBUSY;
		same--;
	}
	if (a->pending >= a->cfg.total_max && !make_room(a, s, 0, ADMIT_OVERALL))
		return -EBUSY;
	slot_link(a, s);
	int busy = a->pending > a->cfg.total_max / 2 || same + 1 > a->cfg.per_addr_max / 2 ||
		   left < 2 * floor;
	*deadline_ms = busy && a->cfg.busy_deadline_ms < a->cfg.deadline_ms
			   ? a->cfg.busy_deadline_ms
			   : a->cfg.deadline_ms;
	return 0;
}

void admit_heard(struct admit_slot *s)
{
	s->heard = 1;
}

void admit_leave(struct admit_slot *s, enum admit_reason why, const char *detail)
{
	struct admit *a = s->a;

	if (!a)
		return;
	slot_unlink(a, s);
	if (why != ADMIT_NONE)
		admit_note(a, why, s->addr, detail);
}

/* ---- accepting ---- */

static void pause_end(uv_timer_t *t)
{
	struct admit *a = t->data;

	spare_take();
	a->cfg.resume(a);
}

int admit_connection(struct admit *a, int status)
{
	if (status == UV_EMFILE || status == UV_ENFILE) {
		/* libuv calls accept(2) again at once: free a descriptor so
		 * that it succeeds, then hold that connection back. */
		admit_note(a, ADMIT_FD_EXHAUSTED, NULL, NULL);
		if (spare_fd >= 0) {
			close(spare_fd);
			spare_fd = -1;
		} else if (a->oldest) {
			int silent;
			struct admit_slot *v = victim(a, NULL, 0, &silent);
			evict(a, v ? v : a->oldest, silent);
		}
		a->pause_next = 1;
		return 0;
	}
	if (status < 0) {
		log_debug("%s: accept: %s", a->what, uv_strerror(status));
		return 0;
	}
	if (a->pause_next) {
		/* Not accepting stops libuv watching the socket until
		 * resume() calls uv_accept(). */
		a->pause_next = 0;
		uv_timer_start(&a->pause_timer, pause_end, ADMIT_PAUSE_MS, 0);
		return 0;
	}
	return 1;
}

static int defer_accept = 1;

void admit_set_defer_accept(int on)
{
	defer_accept = on != 0;
}

int admit_listen(uv_tcp_t *tcp, uv_connection_cb cb)
{
	uv_os_fd_t fd;
	int secs = defer_accept ? ADMIT_DEFER_ACCEPT_S : 0;

	/* libuv made the socket at bind; the option may precede listen(2). */
	if (uv_fileno((uv_handle_t *)tcp, &fd) == 0 &&
	    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs) < 0)
		log_warn("listener: TCP_DEFER_ACCEPT: %s; idle connections are accepted at once",
			 sb_strerror(-errno));
	return uv_listen((uv_stream_t *)tcp, ADMIT_BACKLOG, cb);
}

/* ---- life cycle and numbers ---- */

void admit_init(struct admit *a, uv_loop_t *loop, const char *what, const struct admit_config *cfg)
{
	memset(a, 0, sizeof *a);
	a->cfg = *cfg;
	a->loop = loop;
	snprintf(a->what, sizeof a->what, "%s", what);
	uv_timer_init(loop, &a->log_timer);
	uv_timer_init(loop, &a->pause_timer);
	a->log_timer.data = a->pause_timer.data = a;
	/* Neither timer alone keeps the loop running. */
	uv_unref((uv_handle_t *)&a->log_timer);
	uv_unref((uv_handle_t *)&a->pause_timer);
	spare_take();
}

static void timer_closed(uv_handle_t *h)
{
	struct admit *a = h->data;

	if (--a->handles == 0 && a->closed)
		a->closed(a);
}

void admit_close(struct admit *a, void (*closed)(struct admit *a))
{
	while (a->oldest)
		slot_unlink(a, a->oldest);
	window_flush(a);
	a->closed = closed;
	a->handles = 2;
	uv_close((uv_handle_t *)&a->log_timer, timer_closed);
	uv_close((uv_handle_t *)&a->pause_timer, timer_closed);
}

uint64_t admit_count(const struct admit *a, enum admit_reason why)
{
	return why < ADMIT_REASONS ? a->count[why] : 0;
}

unsigned admit_pending(const struct admit *a)
{
	return a->pending;
}

const char *admit_reason_label(enum admit_reason why)
{
	return why < ADMIT_REASONS ? reason_labels[why] : "none";
}

void admit_metrics(const struct admit *a, struct buf *out, const char *prefix, const char *help)
{
	struct buf name = BUF_INIT;
	buf_printf(&name, "%s_refused_total", prefix);
	metrics_family(out, buf_cstr(&name), METRICS_COUNTER, help);
	for (int i = 0; i < ADMIT_REASONS; i++)
		metrics_sample(out, buf_cstr(&name), METRICS_LABELS("reason", reason_labels[i]),
			       a->count[i]);
	buf_reset(&name);
	buf_printf(&name, "%s_pending", prefix);
	metrics_single(out, buf_cstr(&name), METRICS_GAUGE,
		       "Connections accepted that have not proven anything yet.", a->pending);
	buf_close(&name);
}
