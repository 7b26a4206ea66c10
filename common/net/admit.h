/* Admission of connections that have proven nothing yet: those accepted by
 * the join-token listeners (common/net/conn.c) until their handshake ends, and
 * the HTTP server's (common/net/httpd.c) until their request is in. Caps per
 * source address and overall, a short deadline once past half a cap, a
 * reserve of file descriptors such connections leave to authenticated peers
 * and probes, a pause instead of a busy loop when accept(2) runs out of
 * descriptors, counters per reason and at most one warn line per
 * ADMIT_LOG_MS.
 *
 * At a cap, or short of descriptors, a new connection takes the place of a
 * pending one whose peer has sent nothing at all (nothing read, nothing
 * waiting in its socket): honest clients speak at once, so such a connection
 * is most likely an idle flood's, and a probe or an agent is not refused
 * because idle connections from its own address or from everywhere hold the
 * slots. The one to go is the oldest silent one that waited
 * ADMIT_EVICT_AGE_MS, else the newest silent one (in a burst, the one that
 * came just before; a client accepted earlier keeps its time to speak).
 * With none silent, at a cap, the oldest pending connection makes room if it
 * waited ADMIT_EVICT_AGE_MS, else the new one is closed at accept; short of
 * descriptors, the new one is closed.
 * Listening sockets are made here too (admit_listen): the kernel holds a
 * connection back until its first bytes arrive (TCP_DEFER_ACCEPT; every
 * Syncbit client speaks first), so an honest client is never pending and
 * silent at once, and an idle one reaches the pending set only after
 * ADMIT_DEFER_ACCEPT_S.
 * Loop thread only (one spare descriptor per process, taken on the loop). */
#ifndef SYNCBIT_NET_ADMIT_H
#define SYNCBIT_NET_ADMIT_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/buf.h"

#define ADMIT_EVICT_AGE_MS   250	/* a pending connection this old may make room */
#define ADMIT_LOG_MS	     60000	/* one warn line per listener at most this often */
#define ADMIT_PAUSE_MS	     200	/* accepting pauses this long after EMFILE/ENFILE */
#define ADMIT_FD_RESERVE_MIN 16		/* descriptors kept back: an eighth of the limit, */
#define ADMIT_FD_RESERVE_MAX 256	/* ... within these bounds; HTTP probes keep a quarter */
#define ADMIT_FD_LIMIT_MAX   (1u << 20) /* the soft limit is raised up to this */
#define ADMIT_TOP_MAX	     8		/* source addresses tracked per log line */
#define ADMIT_ADDR_MAX	     48		/* an IPv6 address in text */
#define ADMIT_WHAT_MAX	     64
/* The kernel hands over a connection that sent nothing after this long
 * (rounded up to its SYN-ACK retransmissions: 1 s, 3 s, 7 s ... after the
 * connect; 5 s is handed over at about 7 s). */
#define ADMIT_DEFER_ACCEPT_S 5
/* SYN and accept queue of a listener (the kernel caps it at
 * net.core.somaxconn): a deferred connection waits in the SYN queue, and
 * past this many waiting the kernel's SYN cookies take over. Room for a
 * mass join (thousands of agents after a scheduler restart) beside a flood. */
#define ADMIT_BACKLOG 1024

/* Why a connection was refused or dropped: enum, metric label, log text. */
#define ADMIT_REASON_MAP(X)                                                                 \
	X(PER_ADDRESS, "per_address", "too many connections from this address are pending") \
	X(OVERALL, "overall", "too many connections are pending")                           \
	X(FD_RESERVE, "fd_reserve", "file descriptors are running short")                   \
	X(FD_EXHAUSTED, "fd_exhausted", "accept found no file descriptor left")             \
	X(EVICTED, "evicted", "dropped to make room for a newer connection")                \
	X(TIMEOUT, "timeout", "its deadline passed")                                        \
	X(BAD_HANDSHAKE, "bad_handshake", "its handshake failed")

enum admit_reason {
#define ADMIT_ENUM_(name, label, text) ADMIT_##name,
	ADMIT_REASON_MAP(ADMIT_ENUM_)
#undef ADMIT_ENUM_
	    ADMIT_REASONS,
	ADMIT_NONE = ADMIT_REASONS /* left normally: nothing counted */
};

struct admit;

/* Embedded in each connection; all zero when not pending. */
struct admit_slot {
	struct admit *a; /* NULL once the connection left the pending set */
	struct admit_slot *prev, *next;
	uint64_t since;
	int fd;		 /* its socket, asked whether the peer sent anything */
	int heard;	 /* bytes were read from it (admit_heard) */
	uint8_t key[17]; /* family, then the address (IPv4-mapped IPv6 as IPv4) */
	char addr[ADMIT_ADDR_MAX];
};

struct admit_config {
	unsigned per_addr_max;	   /* pending connections per source address */
	unsigned total_max;	   /* pending connections overall */
	unsigned deadline_ms;	   /* a pending connection's deadline ... */
	unsigned busy_deadline_ms; /* ... once past half a cap or short of descriptors */
	int probes;		   /* 1: may use three quarters of the descriptor reserve */
	/* Close the connection holding s now (s is no longer pending). */
	void (*evict)(struct admit_slot *s);
	/* Accept the connection a pause held back (see admit_connection). */
	void (*resume)(struct admit *a);
	void *data;
};

struct admit {
	struct admit_config cfg; /* may be changed between connections */
	char what[ADMIT_WHAT_MAX];
	uv_loop_t *loop;
	uv_timer_t log_timer, pause_timer;
	int handles; /* timers not yet closed */
	void (*closed)(struct admit *a);
	struct admit_slot *oldest, *newest;
	unsigned pending;
	int pause_next; /* hold the next accepted connection back */
	uint64_t count[ADMIT_REASONS];
	int window_open;       /* a line was logged less than ADMIT_LOG_MS ago */
	uint64_t window_since; /* uv_now() when it was */
	uint64_t window[ADMIT_REASONS];
	struct {
		char addr[ADMIT_ADDR_MAX];
		uint64_t n;
	} top[ADMIT_TOP_MAX];
	unsigned ntop;
};

/* Set a up; what names the listener in log lines ("control port 7400"). */
void admit_init(struct admit *a, uv_loop_t *loop, const char *what, const struct admit_config *cfg);
/* Forget the pending connections (they may outlive the listener) and close
 * the timers; closed(a) runs once a may be freed. */
void admit_close(struct admit *a, void (*closed)(struct admit *a));

/* In the listener's connection callback: 1 when the caller should
 * uv_accept() now. 0 otherwise: an accept error was handled (for
 * EMFILE/ENFILE a descriptor is freed, so libuv's retry succeeds, and that
 * connection is then held back for ADMIT_PAUSE_MS before cfg.resume
 * accepts it, instead of the loop spinning on accept). */
int admit_connection(struct admit *a, int status);
/* An accepted connection from sa on socket fd: 0 when admitted (s is
 * pending; *deadline_ms is its deadline), or a negative error when it must
 * be closed now (-EBUSY at a cap, -EMFILE short of descriptors; counted
 * and logged). May evict an older pending connection first (see above). */
int admit_enter(struct admit *a, struct admit_slot *s, const struct sockaddr *sa, int fd,
		unsigned *deadline_ms);
/* Bytes were read from s's socket: its peer is not silent. Harmless when s
 * is not pending. */
void admit_heard(struct admit_slot *s);
/* s leaves the pending set: proven (why ADMIT_NONE), or refused for why,
 * with detail (may be NULL) for the log. No-op when s is not pending. */
void admit_leave(struct admit_slot *s, enum admit_reason why, const char *detail);
/* Count a refusal of a connection from addr (may be NULL) and log it,
 * rate-limited. */
void admit_note(struct admit *a, enum admit_reason why, const char *addr, const char *detail);

uint64_t admit_count(const struct admit *a, enum admit_reason why);
unsigned admit_pending(const struct admit *a);
const char *admit_reason_label(enum admit_reason why);
/* Prometheus text: PREFIX_refused_total{reason="..."} for every reason,
 * with help, and the gauge PREFIX_pending. */
void admit_metrics(const struct admit *a, struct buf *out, const char *prefix, const char *help);

/* Listen on tcp (bound already) with ADMIT_BACKLOG, deferring each
 * connection until its first bytes (TCP_DEFER_ACCEPT, ADMIT_DEFER_ACCEPT_S)
 * unless admit_set_defer_accept(0). 0 or a negative error from uv_listen; a
 * kernel without TCP_DEFER_ACCEPT is logged and the listener works without. */
int admit_listen(uv_tcp_t *tcp, uv_connection_cb cb);
/* Process-wide, before listeners start: 0 accepts connections at once
 * (for tests that need silent connections accepted without the wait). */
void admit_set_defer_accept(int on);

/* Process-wide. The soft RLIMIT_NOFILE now, and the descriptors kept free
 * for authenticated peers and probes at that limit. */
unsigned admit_fd_limit(void);
unsigned admit_fd_reserve(unsigned limit);
/* Raise the soft limit to the hard one (at most ADMIT_FD_LIMIT_MAX) and log
 * the outcome; 0 or -errno. *limit (limit may be NULL) is the soft limit
 * afterwards either way. */
int admit_fd_limit_raise(unsigned *limit);

#endif
