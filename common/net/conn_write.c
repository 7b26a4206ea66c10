/* Sending: the queue of frames, batches handed to the socket (sealed into
 * records in encrypted sessions, MACed in plain ones) and file payloads by
 * sendfile(2). */
#include "common/net/conn.h"
#include "common/net/conn_int.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/log.h"

#define WRITE_BATCH_MAX (8u << 20)  /* frame bytes in one uv_write (plain mode) */
#define SEAL_BATCH_MAX	(1u << 20)  /* plaintext sealed for one uv_write (encrypted mode) */
#define KEEP_BUF_MAX	(16u << 10) /* larger scratch buffers are released when idle */

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

void conn_queue_fail(struct conn *c, int status)
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
		conn_maybe_finish(c);
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
		if (!m) /* a batch is made of queued bytes only */
			fatal("%s: the socket took %zu bytes more than queued", c->peer_addr, k);
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
