/* Connections of the peer, control and admin protocols: a libuv TCP stream
 * that first runs the handshake (common/net/handshake.h: Noise XXpsk3 keyed by
 * the join token, each side's static key its identity), then carries frames
 * (common/net/frame.h), sealed with an AEAD unless both ends chose --no-encrypt,
 * when each frame carries a MAC instead. The application sees whole frames:
 * a type, the packed body and, for block frames, the raw payload. Loop thread only; every callback
 * runs on the loop thread, never from inside the call that caused it. The
 * first connection sets SIGPIPE to SIG_IGN unless the program handles it. */
#ifndef SYNCBIT_NET_CONN_H
#define SYNCBIT_NET_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/net/admit.h"
#include "common/buf.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/secure.h"

#define CONN_BODY_MAX	     (64u << 20) /* largest frame body accepted by default */
#define CONN_PAYLOAD_MAX     (64u << 20) /* largest raw payload accepted by default */
#define CONN_HIGH_WATER	     (32u << 20) /* write-queue bytes above which on_drain is armed */
#define CONN_HANDSHAKE_MS    10000
#define CONN_DIAL_MS	     10000
#define CONN_USER_TIMEOUT_MS 20000 /* sent data unacknowledged this long: the peer is gone */
#define CONN_KEEPALIVE_S     10	   /* TCP keepalive probes after this much idle time */

/* Listeners: accepted connections still in the handshake, per source
 * address and overall; a new one gets the busy deadline once past half a
 * cap (common/net/admit.h). */
#define CONN_PREAUTH_PER_ADDR  16
#define CONN_PREAUTH_MAX       128
#define CONN_HANDSHAKE_BUSY_MS 1000

struct conn;
struct conn_listener;

struct conn_config {
	const struct secure_token *token; /* join token; copied */
	/* Our static key (copied); NULL: a fresh one, per connection for a
	 * dial, per listener for a listener (no identity beyond the token). */
	const struct secure_keypair *key;
	const char *node; /* our node name, sent in the handshake */
	/* What the connection is for: a dial's purpose; a listener takes the
	 * purposes in the mask, or only `purpose` when the mask is 0. */
	enum handshake_purpose purpose;
	unsigned purposes; /* HANDSHAKE_PURPOSE_BIT()s */
	/* Who may be on the other end (common/net/handshake.h), called with the
	 * connection once the peer's node name and static key are known: NULL
	 * to go on, or why not (the handshake fails with SB_EDENIED). NULL:
	 * anyone holding the token. */
	const char *(*verify)(struct conn *c, const char *node, const uint8_t *key);
	int encrypt;	      /* 1 = want encryption */
	uint32_t body_max;    /* 0 = CONN_BODY_MAX */
	uint32_t payload_max; /* 0 = CONN_PAYLOAD_MAX */
	/* The protocol's dispatch table (common/net/frame.h; kept, not copied):
	 * once ready, a frame of a type not in it, or over its row's limits,
	 * closes the connection at its header, before anything of it is
	 * allocated. NULL: body_max and payload_max only. */
	const struct frame_handler *table;
	size_t table_len;
	unsigned handshake_ms; /* 0 = CONN_HANDSHAKE_MS */
	unsigned idle_ms;      /* close after this long without a byte in; 0 = never */
	int no_aes_gcm;	       /* 1 = never choose AES-256-GCM (tests, benchmarks) */
	unsigned dial_ms;      /* 0 = CONN_DIAL_MS */
	/* Dials only: the local IP address to bind before connecting (NULL:
	 * the kernel's choice), e.g. one of several loopback addresses when
	 * one address runs out of ports. */
	const char *bind_ip;
	/* Listeners only (common/net/admit.h): at a cap the oldest connection in
	 * the handshake makes room or the new one is closed at accept; one
	 * accepted with less than the descriptor reserve left is closed too. */
	const char *name;	    /* what the listener serves, for log lines ("control") */
	unsigned preauth_per_addr;  /* 0 = CONN_PREAUTH_PER_ADDR */
	unsigned preauth_max;	    /* 0 = CONN_PREAUTH_MAX */
	unsigned handshake_busy_ms; /* 0 = CONN_HANDSHAKE_BUSY_MS */
};

struct conn_callbacks {
	/* Handshake finished (status 0: conn_peer_node() is known) or failed
	 * (status < 0; on_close follows). */
	void (*on_ready)(struct conn *c, int status);
	/* One frame. body is valid during the call only; payload (NULL when
	 * payload_len is 0) is malloc'd and now belongs to the callee. Return
	 * 0 to go on, a negative error to close the connection with it. */
	int (*on_frame)(struct conn *c, uint32_t type, const uint8_t *body, size_t body_len,
			uint8_t *payload, size_t payload_len);
	/* The write queue fell below CONN_HIGH_WATER / 2 after exceeding it.
	 * May be NULL. */
	void (*on_drain)(struct conn *c);
	/* The connection is gone (status 0 when closed by conn_close(c, 0) or
	 * by the peer cleanly; negative otherwise). The conn is freed right
	 * after this returns. Called exactly once for every conn that was
	 * handed out, including dials that never connected. */
	void (*on_close)(struct conn *c, int status);
};

/* Dial host:port. *out is valid until on_close. 0, or a negative error
 * (bad address) with no callback to follow. */
int conn_dial(uv_loop_t *loop, const char *addr, const struct conn_config *cfg,
	      const struct conn_callbacks *cb, void *data, struct conn **out);

/* Listen on host:port ("0.0.0.0:7400", "[::1]:0"). Each accepted connection
 * gets cb and data; on_accept (may be NULL) sees it first and may replace
 * its data with conn_set_data(). */
int conn_listen(uv_loop_t *loop, const char *addr, const struct conn_config *cfg,
		const struct conn_callbacks *cb, void *data,
		void (*on_accept)(struct conn_listener *l, struct conn *c),
		struct conn_listener **out);
/* The bound port (useful after listening on port 0). */
int conn_listener_port(const struct conn_listener *l);
/* Stop accepting and free the listener (asynchronously). Connections it
 * accepted stay open. */
void conn_listener_close(struct conn_listener *l);
/* The listener's admission of connections in the handshake: counts of
 * what was refused and why (common/net/admit.h). */
const struct admit *conn_listener_admit(const struct conn_listener *l);
/* Prometheus text for the listener: syncbit_handshakes_refused_total by
 * reason and syncbit_handshakes_pending. */
void conn_listener_metrics(const struct conn_listener *l, struct buf *out);

/* Queue a frame. body is copied; payload (may be NULL) is sent after it and
 * must stay valid until done(arg, status) runs (done may be NULL when
 * payload is NULL). 0, or a negative error when the connection is closing
 * (then done is not called). */
int conn_send(struct conn *c, uint32_t type, const void *body, size_t body_len, const void *payload,
	      size_t payload_len, void (*done)(void *arg, int status), void *arg);
/* As conn_send, with the payload payload_len bytes of file fd from off,
 * handed to the socket by sendfile(2) on the pool: no copy through this
 * process. Plain (--no-encrypt) connections only (-EINVAL otherwise); fd
 * stays the caller's and open until done runs. */
int conn_send_file(struct conn *c, uint32_t type, const void *body, size_t body_len, int fd,
		   uint64_t off, size_t payload_len, void (*done)(void *arg, int status),
		   void *arg);
/* Bytes queued and not yet written to the socket. */
size_t conn_queued(const struct conn *c);
/* Stop reading from the socket (pause 1: the peer's sends back up into
 * the kernel's buffers and then its own queue) or read again (0). Ready
 * connections only: 0, or -EINVAL. */
int conn_read_pause(struct conn *c, int pause);
/* The largest payload accepted from the next frame header on (the dispatch
 * table's rows still apply). */
void conn_set_payload_max(struct conn *c, uint32_t payload_max);

/* Close with status (0 = normal). on_close follows, asynchronously. Safe to
 * call more than once and from inside callbacks. */
void conn_close(struct conn *c, int status);
/* The connection fails once data it sent stays unacknowledged for ms
 * (TCP_USER_TIMEOUT; CONN_USER_TIMEOUT_MS until then): a protocol with a
 * liveness rule of its own gives the same span here. */
void conn_set_user_timeout(struct conn *c, unsigned ms);

void conn_set_data(struct conn *c, void *data);
void *conn_data(const struct conn *c);
/* The peer's node name from the handshake ("" before on_ready). */
const char *conn_peer_node(const struct conn *c);
/* The peer's static key, SECURE_KEY_BYTES (zeros before on_ready). */
const uint8_t *conn_peer_key(const struct conn *c);
/* What the connection is for (a listener's: what the initiator asked). */
enum handshake_purpose conn_purpose(const struct conn *c);
/* "host:port" of the remote end. */
const char *conn_peer_addr(const struct conn *c);
/* 1 when the host of "host:port" says "any address" (empty, 0.0.0.0, ::,
 * [::]): nobody can dial it. */
int conn_addr_unspecified(const char *addr);
/* The address peers dial for a node that advertised `advertised` from the
 * connection address `seen` ("host:port", "[v6]:port"): advertised as it is
 * unless its host is unspecified, then seen's host with advertised's port.
 * Heap string. */
char *conn_addr_resolve(const char *advertised, const char *seen);
/* 1 when traffic is encrypted, 0 when both sides chose --no-encrypt (frames
 * are then MACed, block payloads neither). */
int conn_encrypted(const struct conn *c);
/* The record cipher: "aes256gcm", "xchacha20poly1305" or "none". */
const char *conn_cipher(const struct conn *c);
/* Why the connection failed, one line for a log or an error message ("" when
 * it has not failed or the application closed it). Valid until on_close
 * returns. */
const char *conn_error(const struct conn *c);
/* Bytes read and written on the socket so far (including framing). */
uint64_t conn_bytes_in(const struct conn *c);
uint64_t conn_bytes_out(const struct conn *c);

#endif
