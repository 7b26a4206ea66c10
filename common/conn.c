#include "common/conn.h"
#include "common/conn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/frame.h"
#include "common/handshake.h"
#include "common/log.h"
#include "proto/wire.pb-c.h"

#define READ_CHUNK	(64u << 10) /* socket reads land here ... */
#define DIRECT_MIN	(64u << 10) /* ... unless a payload or record still misses this much */
#define WRITE_BATCH_MAX (8u << 20)  /* frame bytes in one uv_write (plain mode) */
#define SEAL_BATCH_MAX	(1u << 20)  /* plaintext sealed for one uv_write (encrypted mode) */
#define KEEP_BUF_MAX	(64u << 10) /* larger scratch buffers are released when idle */
#define LISTEN_BACKLOG	511

/* A file payload handed to the socket by sendfile(2) on the pool. */
struct sendfile_work {
	uv_work_t work;
	struct conn *c;
	int sock; /* a dup of the socket: the loop may close its own meanwhile */
	int fd;
	uint64_t off;
	size_t len, done;
	int rc;
};

struct conn_listener {
	uv_tcp_t tcp;
	uv_loop_t *loop;
	struct conn_config cfg; /* token, key and node point at our copies */
	struct secure_token token;
	struct secure_keypair key;
	struct handshake_replay *replay; /* first messages seen */
	char *node;
	struct conn_callbacks cb;
	void *data;
	void (*on_accept)(struct conn_listener *l, struct conn *c);
	int port;
	int closing;
	struct admit admit; /* connections in the handshake */
	int handles;	    /* the socket, and admit once listening */
};

static void frames_feed(struct conn *c, const uint8_t *p, size_t n, size_t *used);

/* ---- addresses ---- */

/* "host:port" or "[v6]:port" into host and port; host may be empty. */
static int addr_split(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *h = addr, *hend, *p;

	if (addr[0] == '[') {
		h = addr + 1;
		hend = strchr(h, ']');
		if (!hend || hend[1] != ':')
			return -EINVAL;
		p = hend + 2;
	} else {
		hend = strrchr(addr, ':');
		if (!hend || memchr(addr, ':', (size_t)(hend - addr)))
			return -EINVAL;
		p = hend + 1;
	}
	size_t hlen = (size_t)(hend - h), plen = strlen(p);
	if (hlen >= hcap || plen == 0 || plen >= pcap || plen > 5)
		return -EINVAL;
	for (size_t i = 0; i < plen; i++)
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
	if (strtoul(p, NULL, 10) > 65535)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, p, plen + 1);
	return 0;
}

static void addr_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		uv_ip6_name(a, ip, sizeof ip);
		snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		uv_ip4_name(a, ip, sizeof ip);
		snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
	}
}

/* ---- lifecycle ---- */

static uv_once_t sigpipe_once = UV_ONCE_INIT;

/* A peer that resets the connection must fail a write with EPIPE, not kill
 * the process: libuv writes with plain write(2). A handler the program set
 * itself is left alone. */
static void sigpipe_ignore(void)
{
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
}

static void msgs_fail(struct conn *c, int status)
{
	struct conn_msg *m = c->sq_head;

	c->sq_head = c->sq_tail = c->sq_cur = NULL;
	c->queued = 0;
	while (m) {
		struct conn_msg *next = m->next;
		if (m->done)
			m->done(m->arg, status);
		free(m);
		m = next;
	}
}

/* Every handle is closed and no request is pending: report and free. */
static void conn_finish(struct conn *c)
{
	int status = c->status;
	int err = status < 0 ? status : SB_ECANCELED;

	if (!c->ready_reported && c->cb.on_ready)
		c->cb.on_ready(c, err);
	msgs_fail(c, err);
	if (c->ai)
		uv_freeaddrinfo(c->ai);
	if (c->hs) {
		handshake_close(c->hs);
		free(c->hs);
	}
	secure_session_close(&c->sess);
	free(c->rbuf);
	frame_reader_close(&c->fr);
	buf_close(&c->rec);
	buf_close(&c->plain);
	buf_close(&c->wbuf);
	buf_close(&c->stage);
	if (c->cb.on_close)
		c->cb.on_close(c, status);
	free(c);
}

static void maybe_finish(struct conn *c)
{
	if (c->handles == 0 && !c->gai_pending)
		conn_finish(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->handles--;
	maybe_finish(c);
}

/* How a connection that was in the handshake on a listener ended, for the
 * admission's counters: a client that left is not counted. */
static enum admit_reason preauth_reason(int status)
{
	switch (status) {
	case 0:
	case UV_EOF:
	case -ECONNRESET:
	case -ECONNABORTED:
	case -EPIPE:
	case SB_ECANCELED:
		return ADMIT_NONE;
	case -ETIMEDOUT:
		return ADMIT_TIMEOUT;
	default:
		return ADMIT_BAD_HANDSHAKE;
	}
}

void conn_close(struct conn *c, int status)
{
	if (!c || c->state == ST_CLOSING)
		return;
	c->state = ST_CLOSING;
	c->status = status;
	admit_leave(&c->slot, preauth_reason(status), c->error);
	__atomic_store_n(&c->sf_stop, 1, __ATOMIC_RELAXED);
	if (c->gai_pending)
		uv_cancel((uv_req_t *)&c->gai);
	if (c->tcp_open) {
		c->tcp_open = 0;
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	}
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void conn_fail(struct conn *c, int rc, const char *fmt, ...)
{
	va_list ap;

	if (c->state == ST_CLOSING)
		return;
	if (!c->error[0]) {
		va_start(ap, fmt);
		vsnprintf(c->error, sizeof c->error, fmt, ap);
		va_end(ap);
	}
	log_debug("conn %s: %s", c->peer_addr, c->error);
	conn_close(c, rc);
}

static int conn_new(uv_loop_t *loop, const struct conn_config *cfg, const struct conn_callbacks *cb,
		    void *data, int initiator, struct conn **out)
{
	if (!cfg || !cfg->token || !cb)
		return -EINVAL;
	uv_once(&sigpipe_once, sigpipe_ignore);
	struct conn *c = xcalloc(1, sizeof *c);
	c->initiator = initiator;
	int rc = initiator ? conn_hs_init(c, cfg, NULL) : 0;
	if (rc) {
		free(c);
		return rc;
	}
	c->loop = loop;
	c->cb = *cb;
	c->data = data;
	c->state = ST_CONNECTING;
	c->body_max = cfg->body_max ? cfg->body_max : CONN_BODY_MAX;
	c->payload_max = cfg->payload_max ? cfg->payload_max : CONN_PAYLOAD_MAX;
	c->table = cfg->table;
	c->table_len = cfg->table ? cfg->table_len : 0;
	c->dial_ms = cfg->dial_ms ? cfg->dial_ms : CONN_DIAL_MS;
	c->handshake_ms = cfg->handshake_ms ? cfg->handshake_ms : CONN_HANDSHAKE_MS;
	c->idle_ms = cfg->idle_ms;
	frame_reader_init(&c->fr, HANDSHAKE_HELLO_MAX, 0); /* handshake frames until ready */
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	*out = c;
	return 0;
}

static void tcp_open(struct conn *c)
{
	uv_tcp_init(c->loop, &c->tcp);
	c->tcp.data = c;
	c->tcp_open = 1;
	c->handles++;
}

/* ---- timers ---- */

void conn_on_timer(uv_timer_t *t)
{
	struct conn *c = t->data;

	switch (c->state) {
	case ST_RESOLVING:
	case ST_CONNECTING:
		conn_fail(c, -ETIMEDOUT, "no connection to %s within %u ms", c->peer_addr,
			  c->dial_ms);
		break;
	case ST_HANDSHAKE:
		conn_fail(c, -ETIMEDOUT, "handshake with %s did not finish within %u ms",
			  c->peer_addr, c->handshake_ms);
		break;
	case ST_READY: {
		uint64_t quiet = uv_now(c->loop) - c->last_in;
		if (quiet >= c->idle_ms)
			conn_fail(c, -ETIMEDOUT, "nothing received from %s for %u ms", c->peer_addr,
				  c->idle_ms);
		else
			uv_timer_start(&c->timer, conn_on_timer, c->idle_ms - quiet, 0);
		break;
	}
	case ST_CLOSING:
		break;
	}
}

/* ---- receive ---- */

static void frame_deliver(struct conn *c, const struct frame *f)
{
	if (c->state == ST_HANDSHAKE) {
		free(f->payload);
		conn_hs_frame(c, f->type, f->body, f->body_len);
	} else if (!c->cb.on_frame) {
		free(f->payload);
	} else {
		int rc =
		    c->cb.on_frame(c, f->type, f->body, f->body_len, f->payload, f->payload_len);
		if (rc < 0)
			conn_fail(c, rc, "frame type %u from %s refused: %s", f->type, c->peer_addr,
				  sb_strerror(rc));
	}
}

/* Consume a plaintext stream; *used says how much. Stops early when the
 * handshake switches the stream to records. */
static void frames_feed(struct conn *c, const uint8_t *p, size_t n, size_t *used)
{
	int encrypted = c->encrypted;
	size_t off = 0;

	while (off < n && c->state != ST_CLOSING && c->encrypted == encrypted && !c->refused) {
		struct frame f;
		size_t k;
		int rc = frame_reader_feed(&c->fr, p + off, n - off, &k, &f);
		off += k;
		const struct frame_header *h = &c->fr.h;
		uint32_t body_max, payload_max;
		if (rc == SB_ETOOBIG) {
			frame_reader_limits(&c->fr, h->type, &body_max, &payload_max);
			conn_fail(c, rc,
				  "%s sent a frame (type %u) with a %u-byte body and a %u-byte "
				  "payload; the limits are %u and %u",
				  c->peer_addr, h->type, h->body_len, h->payload_len, body_max,
				  payload_max);
		} else if (rc == SB_EPROTO && c->state == ST_READY && c->fr.table) {
			conn_fail(c, rc, "%s sent a frame of type %u, which this protocol lacks",
				  c->peer_addr, h->type);
		} else if (rc < 0) {
			conn_fail(c, rc, "frame (type %u) from %s %s", h->type, c->peer_addr,
				  rc == SB_EAUTH ? "failed authentication" : sb_strerror(rc));
		} else if (rc == 1) {
			frame_deliver(c, &f);
		}
	}
	if (used)
		*used = off;
}

static void record_open(struct conn *c, const uint8_t *ct)
{
	size_t ct_len = c->rec_len, plen = ct_len - SECURE_TAG_BYTES;
	uint8_t *dst = NULL;
	size_t room = frame_reader_payload_room(&c->fr, &dst);
	int direct = plen > 0 && room >= plen; /* the record lies within the payload */

	c->rec_len = 0;
	c->rec_hdr_got = 0;
	c->rec.len = 0;
	if (!direct) {
		buf_reserve(&c->plain, plen + 1); /* never NULL, even for an empty record */
		dst = c->plain.ptr;
	}
	int rc = secure_open(&c->sess, c->rec_hdr, ct, ct_len, dst);
	if (rc) {
		conn_fail(c, rc, "record from %s: %s", c->peer_addr,
			  rc == SB_EAUTH ? "failed authentication" : sb_strerror(rc));
		return;
	}
	if (!direct) {
		frames_feed(c, dst, plen, NULL);
		return;
	}
	struct frame f;
	if (frame_reader_payload_filled(&c->fr, plen, &f))
		frame_deliver(c, &f);
}

static size_t record_step(struct conn *c, const uint8_t *p, size_t n)
{
	size_t k;

	if (c->rec_len == 0) {
		k = SECURE_RECORD_HEADER - c->rec_hdr_got;
		k = k < n ? k : n;
		memcpy(c->rec_hdr + c->rec_hdr_got, p, k);
		c->rec_hdr_got += k;
		if (c->rec_hdr_got < SECURE_RECORD_HEADER)
			return k;
		int rc = secure_record_len(c->rec_hdr, &c->rec_len);
		if (rc) {
			conn_fail(c, rc, "%s sent a record of %zu bytes", c->peer_addr, c->rec_len);
			return n;
		}
		if (n - k >= c->rec_len) { /* the whole record is here: no copy */
			size_t len = c->rec_len;
			record_open(c, p + k);
			return k + len;
		}
		buf_reserve(&c->rec, c->rec_len);
		return k;
	}
	k = c->rec_len - c->rec.len;
	k = k < n ? k : n;
	memcpy(c->rec.ptr + c->rec.len, p, k);
	c->rec.len += k;
	if (c->rec.len == c->rec_len)
		record_open(c, c->rec.ptr);
	return k;
}

static void input(struct conn *c, const uint8_t *p, size_t n)
{
	while (n > 0 && c->state != ST_CLOSING && !c->refused) {
		size_t k;
		if (c->encrypted)
			k = record_step(c, p, n);
		else
			frames_feed(c, p, n, &k);
		p += k;
		n -= k;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct conn *c = h->data;
	uint8_t *room;
	size_t n;

	if (c->state == ST_READY && !c->encrypted &&
	    (n = frame_reader_payload_room(&c->fr, &room)) >= DIRECT_MIN) {
		b->base = (char *)room;
		b->len = n;
		return;
	}
	if (c->state == ST_READY && c->encrypted && c->rec_len &&
	    c->rec_len - c->rec.len >= DIRECT_MIN) {
		b->base = (char *)c->rec.ptr + c->rec.len;
		b->len = c->rec_len - c->rec.len;
		return;
	}
	if (!c->rbuf)
		c->rbuf = xmalloc(READ_CHUNK);
	b->base = (char *)c->rbuf;
	b->len = READ_CHUNK;
}

static int rx_partial(const struct conn *c)
{
	return frame_reader_partial(&c->fr) || c->rec_hdr_got || c->rec_len;
}

static void on_eof(struct conn *c, int err)
{
	enum handshake_state hs = c->state == ST_HANDSHAKE ? c->hs->state : HANDSHAKE_DONE;
	int gone = err == UV_EOF ? -ECONNRESET : err;

	if (hs == HANDSHAKE_CONFIRM)
		conn_fail(c, SB_EAUTH,
			  "%s closed the connection instead of confirming the handshake "
			  "(it refused this side)",
			  c->peer_addr);
	else if (hs == HANDSHAKE_SENT)
		conn_fail(c, gone,
			  "%s closed the connection before answering the handshake (a Syncbit "
			  "older than protocol v%d, or too busy?)",
			  c->peer_addr, HANDSHAKE_VERSION);
	else if (hs == HANDSHAKE_REPLIED)
		conn_fail(c, gone,
			  "%s closed the connection instead of finishing the handshake (it "
			  "refused this side?)",
			  c->peer_addr);
	else if (c->state == ST_HANDSHAKE)
		conn_fail(c, gone, "%s closed the connection during the handshake", c->peer_addr);
	else if (err != UV_EOF)
		conn_fail(c, err, "read from %s: %s", c->peer_addr, uv_strerror(err));
	else if (rx_partial(c))
		conn_fail(c, SB_ETRUNCATED, "%s closed the connection in the middle of a frame",
			  c->peer_addr);
	else
		conn_close(c, 0);
}

static void release_idle_buffers(struct conn *c)
{
	if (c->rec_len == 0 && c->rec.cap > KEEP_BUF_MAX)
		buf_close(&c->rec);
	if (c->plain.cap > KEEP_BUF_MAX)
		buf_close(&c->plain);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;

	if (c->state == ST_CLOSING || n == 0)
		return;
	if (n < 0) {
		on_eof(c, (int)n);
		return;
	}
	c->bytes_in += (uint64_t)n;
	c->last_in = uv_now(c->loop);
	if (b->base == (char *)c->rbuf) {
		input(c, (const uint8_t *)b->base, (size_t)n);
	} else if (c->encrypted) { /* straight into the record */
		c->rec.len += (size_t)n;
		if (c->rec.len == c->rec_len)
			record_open(c, c->rec.ptr);
	} else { /* straight into the payload */
		struct frame f;
		if (frame_reader_payload_filled(&c->fr, (size_t)n, &f))
			frame_deliver(c, &f);
	}
	if (c->state != ST_CLOSING)
		release_idle_buffers(c);
}

/* ---- send ---- */

static size_t msg_total(const struct conn_msg *m)
{
	return m->head_len + m->tag_len + m->payload_len;
}

/* The contiguous bytes at the send cursor: head, tag, then payload. */
static void cursor_seg(const struct conn *c, const uint8_t **p, size_t *len)
{
	const struct conn_msg *m = c->sq_cur;
	size_t off = c->sq_cur_off, tag_end = m->head_len + m->tag_len;

	if (off < m->head_len) {
		*p = m->head + off;
		*len = m->head_len - off;
	} else if (off < tag_end) {
		*p = m->tag + (off - m->head_len);
		*len = tag_end - off;
	} else {
		*p = m->payload + (off - tag_end);
		*len = m->payload_len - (off - tag_end);
	}
}

/* A plain session: the MAC of the frame at the cursor, once its turn has
 * come (so the counters follow the order on the wire). */
static int cursor_tag(struct conn *c)
{
	struct conn_msg *m = c->sq_cur;

	if (!c->mac || c->sq_cur_off != 0 || m->tag_len)
		return 0;
	int rc = secure_mac(&c->sess, m->head, FRAME_HEADER_LEN, m->head + FRAME_HEADER_LEN,
			    m->head_len - FRAME_HEADER_LEN, m->tag);
	if (rc == 0) {
		m->tag_len = SECURE_MAC_BYTES;
		c->queued += m->tag_len;
	}
	return rc;
}

static void cursor_advance(struct conn *c, size_t k)
{
	c->sq_cur_off += k;
	if (c->sq_cur_off == msg_total(c->sq_cur)) {
		c->sq_cur = c->sq_cur->next;
		c->sq_cur_off = 0;
	}
}

/* Plain mode: point the write at the queued bytes themselves. 0 buffers:
 * a file payload is next; < 0: an error. */
static int batch_plain(struct conn *c)
{
	int n = 0;

	c->w_frame_bytes = 0;
	while (c->sq_cur && n < WRITE_IOV_MAX && c->w_frame_bytes < WRITE_BATCH_MAX) {
		const uint8_t *p;
		size_t len;
		int rc = cursor_tag(c);
		if (rc)
			return rc;
		if (c->sq_cur->fd >= 0 && c->sq_cur_off >= c->sq_cur->head_len + c->sq_cur->tag_len)
			break; /* a file payload: sendfile, on its own */
		cursor_seg(c, &p, &len);
		len = len < WRITE_BATCH_MAX ? len : WRITE_BATCH_MAX;
		c->wbufs[n++] = uv_buf_init((char *)p, (unsigned)len);
		c->w_frame_bytes += len;
		cursor_advance(c, len);
	}
	c->w_wire_bytes = c->w_frame_bytes;
	return n;
}

/* Encrypted mode: seal up to SEAL_BATCH_MAX bytes into records. Large
 * payloads are sealed straight from the caller's buffer in whole records
 * (so the receiver can open them straight into its payload buffer); small
 * frames and headers are gathered into one record first. */
static int batch_sealed(struct conn *c)
{
	c->wbuf.len = 0;
	c->w_frame_bytes = 0;
	while (c->sq_cur && c->w_frame_bytes < SEAL_BATCH_MAX) {
		const uint8_t *p;
		size_t len;
		cursor_seg(c, &p, &len);
		int last = !c->sq_cur->next && c->sq_cur_off + len == msg_total(c->sq_cur);
		if (len >= SECURE_RECORD_MAX || last) {
			len = len < SECURE_RECORD_MAX ? len : SECURE_RECORD_MAX;
			cursor_advance(c, len);
		} else {
			c->stage.len = 0;
			while (c->sq_cur && c->stage.len < SECURE_RECORD_MAX) {
				size_t k;
				cursor_seg(c, &p, &k);
				if (k >= SECURE_RECORD_MAX)
					break;
				k = k < SECURE_RECORD_MAX - c->stage.len
					? k
					: SECURE_RECORD_MAX - c->stage.len;
				buf_append(&c->stage, p, k);
				cursor_advance(c, k);
			}
			p = c->stage.ptr;
			len = c->stage.len;
		}
		buf_reserve(&c->wbuf, len + SECURE_RECORD_OVERHEAD);
		int rc = secure_seal(&c->sess, p, len, c->wbuf.ptr + c->wbuf.len);
		if (rc)
			return rc;
		c->wbuf.len += len + SECURE_RECORD_OVERHEAD;
		c->w_frame_bytes += len;
	}
	c->w_wire_bytes = c->wbuf.len;
	c->wbufs[0] = uv_buf_init((char *)c->wbuf.ptr, (unsigned)c->wbuf.len);
	return 0;
}

static void on_written(uv_write_t *req, int status);
static void wrote(struct conn *c);

/* Pool: the whole payload into the socket, waiting for room as needed. */
static void sendfile_run(uv_work_t *w)
{
	struct sendfile_work *sw = w->data;
	off_t off = (off_t)sw->off;
	while (sw->done < sw->len && !__atomic_load_n(&sw->c->sf_stop, __ATOMIC_RELAXED)) {
		ssize_t k = sendfile(sw->sock, sw->fd, &off, sw->len - sw->done);
		if (k > 0) {
			sw->done += (size_t)k;
		} else if (k == 0) {
			sw->rc = SB_ETRUNCATED; /* the file is shorter than it was */
			return;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			struct pollfd pfd = {.fd = sw->sock, .events = POLLOUT};
			if (poll(&pfd, 1, 100) < 0 && errno != EINTR) {
				sw->rc = -errno;
				return;
			}
		} else if (errno != EINTR) {
			sw->rc = -errno;
			return;
		}
	}
	if (sw->done < sw->len && !sw->rc)
		sw->rc = SB_ECANCELED;
}

static void sendfile_done(uv_work_t *w, int status)
{
	struct sendfile_work *sw = w->data;
	struct conn *c = sw->c;
	int rc = status < 0 ? status : sw->rc;
	close(sw->sock);
	c->handles--;
	c->writing = 0;
	size_t done = sw->done;
	free(sw);
	if (c->state == ST_CLOSING) {
		maybe_finish(c);
		return;
	}
	if (rc < 0) {
		conn_fail(c, rc, "sendfile to %s: %s", c->peer_addr, sb_strerror(rc));
		return;
	}
	c->w_frame_bytes = c->w_wire_bytes = done;
	cursor_advance(c, done);
	wrote(c);
}

static void start_sendfile(struct conn *c)
{
	struct conn_msg *m = c->sq_cur;
	uv_os_fd_t sock;
	int rc = uv_fileno((uv_handle_t *)&c->tcp, &sock);
	int dup_sock = rc < 0 ? -1 : fcntl(sock, F_DUPFD_CLOEXEC, 0);
	if (dup_sock < 0) {
		conn_fail(c, rc < 0 ? rc : -errno, "sendfile to %s: no socket", c->peer_addr);
		return;
	}
	struct sendfile_work *sw = xcalloc(1, sizeof *sw);
	size_t at = c->sq_cur_off - m->head_len - m->tag_len;
	sw->c = c;
	sw->sock = dup_sock;
	sw->fd = m->fd;
	sw->off = m->file_off + at;
	sw->len = m->payload_len - at;
	sw->work.data = sw;
	rc = uv_queue_work(c->loop, &sw->work, sendfile_run, sendfile_done);
	if (rc < 0) {
		close(dup_sock);
		free(sw);
		conn_fail(c, rc, "sendfile to %s: %s", c->peer_addr, uv_strerror(rc));
		return;
	}
	c->handles++;
	c->writing = 1;
}

void conn_writer_kick(struct conn *c)
{
	int n = 1;

	if (c->writing || c->state != ST_READY || !c->sq_cur)
		return;
	if (!c->encrypted) {
		n = batch_plain(c);
		if (n < 0) {
			conn_fail(c, n, "cannot authenticate a frame to %s: %s", c->peer_addr,
				  sb_strerror(n));
			return;
		}
		if (n == 0) {
			start_sendfile(c);
			return;
		}
	} else {
		int rc = batch_sealed(c);
		if (rc) {
			conn_fail(c, rc, "cannot seal a record to %s: %s", c->peer_addr,
				  sb_strerror(rc));
			return;
		}
	}
	c->wreq.data = c;
	int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, c->wbufs, (unsigned)n, on_written);
	if (rc < 0) {
		conn_fail(c, rc, "write to %s: %s", c->peer_addr, uv_strerror(rc));
		return;
	}
	c->writing = 1;
}

/* The socket took k frame bytes: finish the messages they complete. */
static void sent(struct conn *c, size_t k)
{
	struct conn_msg *done = NULL, **tail = &done;

	c->queued -= k;
	while (k > 0) {
		struct conn_msg *m = c->sq_head;
		size_t left = msg_total(m) - m->sent;
		size_t take = left < k ? left : k;
		m->sent += take;
		k -= take;
		if (m->sent < msg_total(m))
			break;
		c->sq_head = m->next;
		if (!c->sq_head)
			c->sq_tail = NULL;
		m->next = NULL;
		*tail = m;
		tail = &m->next;
	}
	if (!c->sq_cur) {
		if (c->wbuf.cap > KEEP_BUF_MAX)
			buf_close(&c->wbuf);
		if (c->stage.cap > KEEP_BUF_MAX)
			buf_close(&c->stage);
	}
	while (done) {
		struct conn_msg *m = done;
		done = m->next;
		if (m->done)
			m->done(m->arg, 0);
		free(m);
	}
}

static void on_written(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	c->writing = 0;
	if (status < 0) {
		conn_fail(c, status, "write to %s: %s", c->peer_addr, uv_strerror(status));
		return;
	}
	wrote(c);
}

/* The socket took the batch in flight. */
static void wrote(struct conn *c)
{
	c->bytes_out += c->w_wire_bytes;
	sent(c, c->w_frame_bytes);
	if (c->state == ST_CLOSING)
		return;
	if (c->over_high && c->queued < CONN_HIGH_WATER / 2) {
		c->over_high = 0;
		if (c->cb.on_drain)
			c->cb.on_drain(c);
	}
	conn_writer_kick(c);
}

static int enqueue(struct conn *c, uint32_t type, const void *body, size_t body_len,
		   const void *payload, int fd, uint64_t file_off, size_t payload_len,
		   void (*done)(void *arg, int status), void *arg);

int conn_send(struct conn *c, uint32_t type, const void *body, size_t body_len, const void *payload,
	      size_t payload_len, void (*done)(void *arg, int status), void *arg)
{
	if (payload_len && !payload)
		return -EINVAL;
	return enqueue(c, type, body, body_len, payload, -1, 0, payload_len, done, arg);
}

int conn_send_file(struct conn *c, uint32_t type, const void *body, size_t body_len, int fd,
		   uint64_t off, size_t payload_len, void (*done)(void *arg, int status), void *arg)
{
	if (fd < 0 || c->encrypted)
		return -EINVAL;
	return enqueue(c, type, body, body_len, NULL, fd, off, payload_len, done, arg);
}

static int enqueue(struct conn *c, uint32_t type, const void *body, size_t body_len,
		   const void *payload, int fd, uint64_t file_off, size_t payload_len,
		   void (*done)(void *arg, int status), void *arg)
{
	if (c->state == ST_CLOSING)
		return -EPIPE;
	if (body_len > UINT32_MAX || payload_len > UINT32_MAX)
		return SB_ETOOBIG;
	if (body_len && !body)
		return -EINVAL;

	struct conn_msg *m = xmalloc(sizeof *m + FRAME_HEADER_LEN + body_len);
	struct frame_header h = {(uint32_t)body_len, type, (uint32_t)payload_len};
	frame_header_encode(&h, m->head);
	if (body_len)
		memcpy(m->head + FRAME_HEADER_LEN, body, body_len);
	m->head_len = FRAME_HEADER_LEN + body_len;
	m->tag_len = 0;
	m->payload = payload_len && fd < 0 ? payload : NULL;
	m->payload_len = payload_len;
	m->fd = payload_len ? fd : -1;
	m->file_off = file_off;
	m->sent = 0;
	m->done = done;
	m->arg = arg;
	m->next = NULL;
	if (c->sq_tail)
		c->sq_tail->next = m;
	else
		c->sq_head = m;
	c->sq_tail = m;
	if (!c->sq_cur) {
		c->sq_cur = m;
		c->sq_cur_off = 0;
	}
	c->queued += msg_total(m);
	if (c->queued > CONN_HIGH_WATER)
		c->over_high = 1;
	conn_writer_kick(c);
	return 0;
}

size_t conn_queued(const struct conn *c)
{
	return c->queued;
}

void conn_set_payload_max(struct conn *c, uint32_t payload_max)
{
	c->payload_max = payload_max;
	if (c->state == ST_READY)
		c->fr.payload_max = payload_max;
}

/* ---- dial ---- */

static void hs_begin(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;

	c->state = ST_HANDSHAKE;
	c->last_in = uv_now(c->loop);
	uv_tcp_nodelay(&c->tcp, 1);
	/* A peer that vanished (link cut, host gone) is noticed once sent data
	 * stays unacknowledged this long, instead of after minutes of
	 * retransmissions; keepalives cover an idle socket. */
	uv_os_fd_t fd;
	unsigned user_timeout = CONN_USER_TIMEOUT_MS;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
	uv_tcp_keepalive(&c->tcp, 1, CONN_KEEPALIVE_S);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		addr_name(&ss, c->peer_addr, sizeof c->peer_addr);
	uv_timer_start(&c->timer, conn_on_timer, c->handshake_ms, 0);
	int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc < 0) {
		conn_fail(c, rc, "read from %s: %s", c->peer_addr, uv_strerror(rc));
		return;
	}
	if (c->initiator)
		conn_hs_start(c);
}

static void dial_next(struct conn *c);

static void on_retry_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	c->handles--;
	if (c->state == ST_CLOSING) {
		maybe_finish(c);
		return;
	}
	tcp_open(c);
	dial_next(c);
}

/* One address failed: try the next on a fresh socket, or give up. */
static void dial_failed(struct conn *c, int err)
{
	c->dial_err = err;
	if (!c->ai_next) {
		conn_fail(c, err, "cannot connect to %s: %s", c->peer_addr, uv_strerror(err));
		return;
	}
	c->tcp_open = 0;
	uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct conn *c = req->data;

	if (c->state == ST_CLOSING)
		return;
	if (status < 0)
		dial_failed(c, status);
	else
		hs_begin(c);
}

static void dial_next(struct conn *c)
{
	struct addrinfo *ai = c->ai_next;

	c->ai_next = ai->ai_next;
	c->connect.data = c;
	int rc = uv_tcp_connect(&c->connect, &c->tcp, ai->ai_addr, on_connected);
	if (rc < 0)
		dial_failed(c, rc);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct conn *c = req->data;

	c->gai_pending = 0;
	if (c->state == ST_CLOSING) {
		uv_freeaddrinfo(res);
		maybe_finish(c);
		return;
	}
	if (status < 0 || !res) {
		uv_freeaddrinfo(res);
		conn_fail(c, SB_ENOTFOUND, "cannot resolve %s: %s", c->peer_addr,
			  uv_strerror(status));
		return;
	}
	c->ai = c->ai_next = res;
	c->state = ST_CONNECTING;
	dial_next(c);
}

int conn_dial(uv_loop_t *loop, const char *addr, const struct conn_config *cfg,
	      const struct conn_callbacks *cb, void *data, struct conn **out)
{
	char host[256], port[8];
	struct addrinfo hints;
	struct conn *c;

	int rc = addr_split(addr, host, sizeof host, port, sizeof port);
	if (rc || !host[0] || strcmp(port, "0") == 0)
		return -EINVAL;
	if ((rc = conn_new(loop, cfg, cb, data, 1, &c)) != 0)
		return rc;
	snprintf(c->peer_addr, sizeof c->peer_addr, "%s", addr);
	tcp_open(c);
	c->state = ST_RESOLVING;
	uv_timer_start(&c->timer, conn_on_timer, c->dial_ms, 0);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	c->gai.data = c;
	rc = uv_getaddrinfo(loop, &c->gai, on_resolved, host, port, &hints);
	if (rc < 0)
		conn_fail(c, rc, "cannot resolve %s: %s", addr, uv_strerror(rc));
	else
		c->gai_pending = 1;
	*out = c;
	return 0;
}

/* ---- listen ---- */

/* Admission (common/admit.h): 0 with the handshake deadline set, or a
 * negative error when the connection must be closed now. */
static int admit_accepted(struct conn_listener *l, struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	uv_os_fd_t fd;
	unsigned deadline;

	int rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
	if (rc == 0)
		rc = uv_fileno((uv_handle_t *)&c->tcp, &fd);
	if (rc == 0)
		rc = admit_enter(&l->admit, &c->slot, (struct sockaddr *)&ss, fd, &deadline);
	if (rc == 0)
		c->handshake_ms = deadline;
	return rc;
}

static void accept_one(struct conn_listener *l)
{
	struct conn *c;

	if (conn_new(l->loop, &l->cfg, &l->cb, l->data, 0, &c) != 0)
		fatal("listener config no longer valid");
	tcp_open(c);
	int rc = uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp);
	if (rc == 0)
		rc = admit_accepted(l, c);
	if (rc == 0 && conn_hs_init(c, &l->cfg, l->replay) != 0)
		fatal("listener config no longer valid");
	if (rc < 0) {
		log_debug("accept on port %d: %s", l->port, sb_strerror(rc));
		memset(&c->cb, 0, sizeof c->cb); /* never handed out: no callbacks */
		conn_close(c, rc);
		return;
	}
	if (l->on_accept)
		l->on_accept(l, c);
	if (c->state != ST_CLOSING)
		hs_begin(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct conn_listener *l = server->data;

	if (admit_connection(&l->admit, status))
		accept_one(l);
}

static void accept_resume(struct admit *a)
{
	accept_one(a->cfg.data);
}

static void evict_preauth(struct admit_slot *s)
{
	struct conn *c = (struct conn *)((char *)s - offsetof(struct conn, slot));

	conn_fail(c, -ECONNABORTED, "%s dropped in the handshake to make room", c->peer_addr);
}

static void listener_release(struct conn_listener *l)
{
	if (--l->handles > 0)
		return;
	sodium_memzero(&l->token, sizeof l->token);
	secure_keypair_close(&l->key);
	free(l->replay);
	free(l->node);
	free(l);
}

static void listener_closed(uv_handle_t *h)
{
	listener_release(h->data);
}

static void listener_admit_closed(struct admit *a)
{
	listener_release(a->cfg.data);
}

static void listener_admit_init(struct conn_listener *l, const struct conn_config *cfg)
{
	unsigned hs_ms = cfg->handshake_ms ? cfg->handshake_ms : CONN_HANDSHAKE_MS;
	struct admit_config ac = {
	    .per_addr_max = cfg->preauth_per_addr ? cfg->preauth_per_addr : CONN_PREAUTH_PER_ADDR,
	    .total_max = cfg->preauth_max ? cfg->preauth_max : CONN_PREAUTH_MAX,
	    .deadline_ms = hs_ms,
	    .busy_deadline_ms =
		cfg->handshake_busy_ms ? cfg->handshake_busy_ms : CONN_HANDSHAKE_BUSY_MS,
	    .evict = evict_preauth,
	    .resume = accept_resume,
	    .data = l,
	};
	char what[ADMIT_WHAT_MAX];
	snprintf(what, sizeof what, "%s port %d", cfg->name ? cfg->name : "listener", l->port);
	admit_init(&l->admit, l->loop, what, &ac);
	l->handles++;
}

/* The first address host resolves to, for a listener (resolving names
 * blocks briefly; listeners start once, before the loop runs). */
static int listen_addr(uv_loop_t *loop, const char *addr, struct sockaddr_storage *ss)
{
	char host[256], port[8];
	struct addrinfo hints;
	uv_getaddrinfo_t req;

	if (addr_split(addr, host, sizeof host, port, sizeof port) != 0)
		return -EINVAL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = uv_getaddrinfo(loop, &req, NULL, host[0] ? host : NULL, port, &hints);
	if (rc < 0)
		return SB_ENOTFOUND;
	memcpy(ss, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
	uv_freeaddrinfo(req.addrinfo);
	return 0;
}

int conn_listen(uv_loop_t *loop, const char *addr, const struct conn_config *cfg,
		const struct conn_callbacks *cb, void *data,
		void (*on_accept)(struct conn_listener *l, struct conn *c),
		struct conn_listener **out)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;

	if (!cfg || !cfg->token || !cb || !secure_node_valid(cfg->node ? cfg->node : "") ||
	    (!cfg->purposes && !cfg->purpose))
		return -EINVAL;
	int rc = listen_addr(loop, addr, &ss);
	if (rc)
		return rc;
	struct conn_listener *l = xcalloc(1, sizeof *l);
	l->loop = loop;
	l->cfg = *cfg;
	l->token = *cfg->token;
	l->cfg.token = &l->token;
	if (cfg->key)
		l->key = *cfg->key;
	else
		secure_keypair_new(&l->key);
	l->cfg.key = &l->key;
	l->replay = xcalloc(1, sizeof *l->replay);
	l->node = xstrdup(cfg->node ? cfg->node : "");
	l->cfg.node = l->node;
	l->cb = *cb;
	l->data = data;
	l->on_accept = on_accept;
	uv_tcp_init(loop, &l->tcp);
	l->tcp.data = l;
	l->handles = 1;
	/* libuv sets SO_REUSEADDR on every TCP bind. */
	if ((rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0)) == 0 &&
	    (rc = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection)) == 0)
		rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
	if (rc < 0) {
		uv_close((uv_handle_t *)&l->tcp, listener_closed);
		return rc;
	}
	l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	listener_admit_init(l, cfg);
	*out = l;
	return 0;
}

int conn_listener_port(const struct conn_listener *l)
{
	return l->port;
}

void conn_listener_close(struct conn_listener *l)
{
	if (!l || l->closing)
		return;
	l->closing = 1;
	uv_close((uv_handle_t *)&l->tcp, listener_closed);
	admit_close(&l->admit, listener_admit_closed);
}

const struct admit *conn_listener_admit(const struct conn_listener *l)
{
	return &l->admit;
}

void conn_listener_metrics(const struct conn_listener *l, struct buf *out)
{
	admit_metrics(&l->admit, out, "syncbit_handshakes",
		      "Connections closed before they proved the join token, by reason.");
}

/* ---- accessors ---- */

void conn_set_data(struct conn *c, void *data)
{
	c->data = data;
}

void *conn_data(const struct conn *c)
{
	return c->data;
}

const char *conn_peer_node(const struct conn *c)
{
	return c->peer_node;
}

const uint8_t *conn_peer_key(const struct conn *c)
{
	return c->peer_key;
}

enum handshake_purpose conn_purpose(const struct conn *c)
{
	return c->purpose;
}

const char *conn_peer_addr(const struct conn *c)
{
	return c->peer_addr;
}

/* Splits "host:port" / "[v6]:port" at the port's colon: the host's length
 * (brackets kept) and where the port starts; NULL when there is no port. */
static const char *addr_port(const char *addr, size_t *host_len)
{
	const char *colon = strrchr(addr, ':');
	if (!colon || (addr[0] == '[' && colon[-1] != ']'))
		return NULL;
	*host_len = (size_t)(colon - addr);
	return colon + 1;
}

int conn_addr_unspecified(const char *addr)
{
	size_t n = 0;
	if (!addr || !addr_port(addr, &n))
		return 1;
	static const char *const any[] = {"", "0.0.0.0", "::", "[::]", "*"};
	for (size_t i = 0; i < sizeof any / sizeof any[0]; i++)
		if (strlen(any[i]) == n && !strncmp(addr, any[i], n))
			return 1;
	return 0;
}

char *conn_addr_resolve(const char *advertised, const char *seen)
{
	size_t hn = 0, sn = 0;
	const char *port = advertised ? addr_port(advertised, &hn) : NULL;
	if (!port || !conn_addr_unspecified(advertised) || !seen || !addr_port(seen, &sn))
		return xstrdup(advertised ? advertised : "");
	return xasprintf("%.*s:%s", (int)sn, seen, port);
}

int conn_encrypted(const struct conn *c)
{
	return c->encrypted;
}

const char *conn_cipher(const struct conn *c)
{
	return secure_cipher_name(c->cipher);
}

const char *conn_error(const struct conn *c)
{
	return c->error;
}

uint64_t conn_bytes_in(const struct conn *c)
{
	return c->bytes_in;
}

uint64_t conn_bytes_out(const struct conn *c)
{
	return c->bytes_out;
}
