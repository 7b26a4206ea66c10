/* Internal to the connection layer: common/net/conn.c (a connection's life:
 * creating, closing, deadlines, addresses, accessors), conn_read.c (socket
 * reads, records, frames), conn_write.c (the send queue, batches,
 * sendfile), conn_dial.c (resolving and connecting), conn_listen.c
 * (accepting and admission) and conn_handshake.c (driving the handshake,
 * and a session's first frame). Loop thread only. */
#ifndef SYNCBIT_NET_CONN_INT_H
#define SYNCBIT_NET_CONN_INT_H

#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/net/conn.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/secure.h"

#define WRITE_IOV_MAX 64  /* buffers in one uv_write (plain mode) */
#define ADDR_MAX      300 /* "host:port", host up to 255 bytes */

enum conn_state { ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_CLOSING };

/* One queued frame: header and body copied, then (plain sessions) the MAC
 * computed when the frame's turn comes, then the payload, referenced. */
struct conn_msg {
	struct conn_msg *next;
	const uint8_t *payload;
	size_t payload_len;
	size_t sent; /* bytes of head + tag + payload the socket took */
	uint8_t tag[SECURE_MAC_BYTES];
	size_t tag_len; /* 0 until computed, and in encrypted sessions */
	void (*done)(void *arg, int status);
	void *arg;
	int fd; /* >= 0: the payload is the file's bytes at file_off */
	uint64_t file_off;
	size_t head_len;
	uint8_t head[]; /* frame header, then body */
};

struct conn {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	uv_timer_t timer; /* dial, handshake or idle deadline */
	uv_getaddrinfo_t gai;
	uv_connect_t connect;
	uv_write_t wreq;
	struct conn_callbacks cb;
	void *data;

	enum conn_state state;
	int initiator;
	int status;	    /* the close status */
	int ready_reported; /* on_ready ran */
	int tcp_open;	    /* uv_tcp_init done and uv_close not yet called */
	int handles;	    /* handles whose close callback has not run */
	int gai_pending;
	struct addrinfo *ai, *ai_next; /* dial candidates */
	int dial_err;

	uint32_t body_max, payload_max;
	const struct frame_handler *table; /* per-type limits once ready */
	size_t table_len;
	unsigned dial_ms, handshake_ms, idle_ms;
	struct handshake *hs; /* until the handshake ends */
	const char *(*verify)(struct conn *c, const char *node, const uint8_t *key);
	struct secure_session sess;
	enum secure_cipher cipher; /* kept after sess is wiped */
	int encrypted;
	int mac;     /* a plain session: frames carry MACs */
	int refused; /* a refusal is on its way out: nothing more is read */
	enum handshake_purpose purpose;
	uint8_t peer_key[SECURE_KEY_BYTES];

	uint64_t last_in; /* uv_now() of the last read */
	uint64_t bytes_in, bytes_out;
	char peer_addr[ADDR_MAX];
	char bind_ip[64]; /* a dial's local address, "" = any */
	char peer_node[SECURE_NODE_MAX + 1];
	char error[256];
	struct admit_slot slot; /* accepted and still in the handshake */

	/* receive: records (encrypted mode) ... */
	uint8_t *rbuf;
	uint8_t rec_hdr[SECURE_RECORD_HEADER];
	size_t rec_hdr_got;
	size_t rec_len;		/* ciphertext length of the record being read; 0 = in its header */
	struct buf rec;		/* its ciphertext so far */
	struct buf plain;	/* a record's plaintext that could not go straight to a payload */
	struct frame_reader fr; /* ... and frames */

	/* send */
	struct conn_msg *sq_head, *sq_tail;
	struct conn_msg *sq_cur; /* first message not wholly handed to a write */
	size_t sq_cur_off;
	size_t queued;
	int over_high;
	int writing;
	int sf_stop; /* the connection closes: a sendfile in flight gives up (atomic) */
	size_t w_frame_bytes, w_wire_bytes;
	uv_buf_t wbufs[WRITE_IOV_MAX];
	struct buf wbuf;  /* sealed records of the write in flight */
	struct buf stage; /* plaintext of one record gathered from several frames */
};

/* conn.c */

/* A connection with cfg's limits and deadlines, its timer initialised (an
 * initiator's handshake state too). 0, or -EINVAL / conn_hs_init's error. */
int conn_new(uv_loop_t *loop, const struct conn_config *cfg, const struct conn_callbacks *cb,
	     void *data, int initiator, struct conn **out);
/* Initialise c's TCP handle (counted in c->handles). */
void conn_tcp_open(struct conn *c);
/* The socket is connected: socket options, reads, the handshake deadline,
 * and the initiator's first message. */
void conn_begin(struct conn *c);
/* Close c with rc, keeping the first error line for conn_error(). */
void conn_fail(struct conn *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Free c once every handle is closed and no resolution is pending. */
void conn_maybe_finish(struct conn *c);
/* The dial, handshake or idle deadline. */
void conn_on_timer(uv_timer_t *t);
/* "host:port" or "[v6]:port" into host and port; host may be empty. 0 or
 * -EINVAL. */
int conn_addr_split(const char *addr, char *host, size_t hcap, char *port, size_t pcap);
/* "ip:port" / "[ip6]:port" of a socket address. */
void conn_addr_name(const struct sockaddr_storage *ss, char *out, size_t cap);

/* conn_read.c */

/* Start reading the socket into records and frames. 0 or a libuv error. */
int conn_read_start(struct conn *c);

/* conn_write.c */

/* Hand queued frames to the socket once ready. */
void conn_writer_kick(struct conn *c);
/* Drop every queued frame, telling each sender status. */
void conn_queue_fail(struct conn *c, int status);

/* conn_handshake.c */

/* c's handshake state from cfg (for an accepted connection only once it is
 * admitted; replay is the listener's). 0 or -EINVAL. */
int conn_hs_init(struct conn *c, const struct conn_config *cfg, struct handshake_replay *replay);
/* Initiator: send the first message. */
void conn_hs_start(struct conn *c);
/* A frame that arrived before c was ready. */
void conn_hs_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len);

#endif
