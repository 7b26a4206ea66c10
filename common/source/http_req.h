/* HTTP requests of one client (a source, a registry) on top of http_multi:
 * the lists a request lives on, each attempt's easy handle, retries with
 * backoff (Retry-After honoured), the stall watch, the one-line message of a
 * failure and callbacks deferred to one timer. The owner embeds struct
 * http_client and, in each of its requests, struct http_req; what differs
 * between owners (URL, headers, signing, auth, body checks, delivery) comes
 * through struct http_req_ops. Loop thread only. Callbacks never run from
 * inside the call that started the request. */
#ifndef SYNCBIT_SOURCE_HTTP_REQ_H
#define SYNCBIT_SOURCE_HTTP_REQ_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/http_multi.h"

#define HTTP_ERROR_BODY_MAX (64u << 10) /* error page drained before hanging up */
#define HTTP_RANGE_RESIZED  1		/* http_req_check_range: another total size */

struct http_req;
struct http_client;

struct http_req_list {
	struct http_req *head, *tail;
};

enum http_req_state {
	HTTP_REQ_IDLE,	  /* not started, or no transfer of its own */
	HTTP_REQ_RUNNING, /* a transfer is on the wire */
	HTTP_REQ_WAITING, /* on active, until due: the next attempt */
	HTTP_REQ_PARKED,  /* on a list of the owner's (held, waiting for a token) */
	HTTP_REQ_DONE,	  /* on done: its callback is still to run */
};

/* What an owner supplies. Optional hooks may be NULL. */
struct http_req_ops {
	/* Set what this attempt sends: URL, range, write function, headers
	 * through http_req_add_header. The client has set http_easy_defaults,
	 * the error buffer, the header function, and r (the struct http_req,
	 * not the owner's request around it) as the write function's data. */
	void (*setup)(struct http_req *r, CURL *easy);
	/* The attempt ended; the easy handle is gone. Typically
	 * http_req_attempt_failed first, then the owner's own checks. */
	void (*done)(struct http_req *r, CURLcode rc);
	/* From the timer: r's result for the owner's callback; r is off every
	 * list and the owner's to free. */
	void (*deliver)(struct http_req *r);
	/* Append what a message about r starts with ("GET URL: "). */
	void (*describe)(const struct http_req *r, struct buf *b);
	/* Release r entirely (the owner's part, then http_req_close). */
	void (*free)(struct http_req *r);
	/* Optional: 1 when r must not start now; the owner has moved it off
	 * the active list (a token is on its way). */
	int (*hold)(struct http_req *r);
	/* Optional: one raw header line, after r->resp took it. */
	void (*header)(struct http_req *r, const char *line, size_t n);
	/* Optional: an error status ended the attempt. Default:
	 * http_req_status_failed(r, reason, 0). */
	void (*status_failed)(struct http_req *r);
	/* Optional: r ends with r->status. 1 when the owner disposed of r
	 * itself; 0 puts it on done. */
	int (*finishing)(struct http_req *r);
	/* For ranged reads through http_req_range_body: judge the answer once
	 * per attempt (http_req_range_judge), at its first body byte or at its
	 * end when none came. 0 takes its bytes, having set r->discard for an
	 * error status; -1 after http_req_refuse. */
	int (*range_check)(struct http_req *r);
	/* Optional: the body bytes of a discarded answer to a ranged read;
	 * returns what curl's write function returns. Default: http_req_drain. */
	size_t (*error_body)(struct http_req *r, const char *data, size_t n);
};

/* What a client's requests came to, for /metrics: requests that ended in
 * failure, and attempts made again. Several clients may share one; bumped
 * atomically. */
struct http_counters {
	uint64_t errors, retries;
};

struct http_client_options {
	int retries;			/* attempts after the first */
	unsigned connect_seconds;	/* connect timeout */
	unsigned stall_seconds;		/* no byte for this long = a stall; 0: not watched */
	uint64_t *bytes_read;		/* http_req_take adds here, or NULL */
	struct http_counters *counters; /* or NULL */
	/* Called by http_req_take after a ranged read's bytes land: buf is
	 * the read's buffer, got how many of its bytes are in, from its
	 * start. NULL: not told. */
	void (*took)(void *arg, const uint8_t *buf, size_t got);
	void *took_arg;
};

struct http_client {
	uv_loop_t *loop;
	struct http_multi *multi;
	uv_timer_t wake;
	int closing;
	const struct http_req_ops *ops;
	int retries;
	unsigned connect_seconds, stall_seconds;
	uint64_t stall_ms;
	uint64_t *bytes_read;
	void (*took)(void *arg, const uint8_t *buf, size_t got);
	void *took_arg;
	struct http_counters *counters;
	uint64_t rng;
	struct http_req_list active; /* running, or waiting to retry */
	struct http_req_list done;   /* callbacks still to run */
	void (*closed)(struct http_client *c);
};

/* The part every request shares; embedded in the owner's request. */
struct http_req {
	struct http_req *prev, *next;
	struct http_req_list *on;
	struct http_client *c;
	enum http_req_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct http_resp resp;
	char errbuf[CURL_ERROR_SIZE];
	uint64_t due;	   /* WAITING: loop time of the next attempt */
	uint64_t last_io;  /* RUNNING: loop time bytes last arrived */
	unsigned failures; /* failed attempts (since real progress) */
	/* Progress in one attempt that forgives earlier failures; 0: none. */
	uint64_t progress_reset;
	/* No retries: the first failed attempt ends r (an upload step whose
	 * owner starts over from a new session instead). */
	int once;
	int checked; /* the response was judged at its first body byte */
	int discard; /* an error response: drain it, store nothing */
	int verdict; /* < 0: a write callback refused the response */
	int paused;  /* paused on purpose: not watched for stalls */
	size_t discarded;
	int status;   /* DONE: what the callback receives */
	char *detail; /* one line for the user on failure, or NULL */
	/* Ranged reads: bytes off..off+len-1 into buf, got of them so far. */
	uint64_t off;
	size_t len, got;
	uint8_t *buf;
	uint64_t count; /* body bytes of this attempt */
};

/* Lists: push at the tail; unlink is a no-op off every list. */
void http_req_push(struct http_req_list *l, struct http_req *r);
void http_req_unlink(struct http_req *r);

/* Set up c on loop. 0, or SB_EHTTP when libcurl cannot start. */
int http_client_init(struct http_client *c, uv_loop_t *loop, const struct http_req_ops *ops,
		     const struct http_client_options *o);
/* Free every request on active and done (no callbacks), then close; closed
 * runs from the loop once the timer closed, and only then may the memory
 * holding c go. The owner frees requests on its own lists first. */
void http_client_close(struct http_client *c, void (*closed)(struct http_client *c));

/* Set up r (zeroed by the caller) as a request of c. */
void http_req_init(struct http_req *r, struct http_client *c);
/* Release what r holds (lists, transfer, headers, detail); not r itself. */
void http_req_close(struct http_req *r);
/* Start (again) an attempt; r moves to active. A failure to start ends r. */
void http_req_start(struct http_req *r);
/* Stop r's transfer, if any. */
void http_req_drop_easy(struct http_req *r);
/* r ends with status; the owner's deliver runs from the timer. */
void http_req_finish(struct http_req *r, int status);
/* r ends with code and a detail "<describe>why". */
void http_req_fail(struct http_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Refuse a response from a write callback: r's verdict becomes code and the
 * transfer ends with CURLE_WRITE_ERROR. Returns -1. */
int http_req_refuse(struct http_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Another attempt after a backoff, or, when the retries are used up, a
 * failure "why (gave up after N attempts)"; with r->once, a failure "why". */
void http_req_retry(struct http_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Cancel r: a request not yet called back will report SB_ECANCELED. */
void http_req_cancel(struct http_req *r);

/* Deal with a failed attempt: a refusal, an error status (ops->status_failed)
 * or a transport error. 1 when the attempt failed and r was dealt with. */
int http_req_attempt_failed(struct http_req *r, CURLcode rc);
/* An error status: "HTTP <status> why", retried when the status is worth
 * another attempt or retry is set. */
void http_req_status_failed(struct http_req *r, const char *why, int retry);
/* A transport error: SB_ESTALL for timeouts, else SB_EHTTP, retried when
 * worth it. */
void http_req_transport_failed(struct http_req *r, CURLcode rc);

/* Append a header line (printf-style) to this attempt's headers. */
void http_req_add_header(struct http_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Ask for the bytes of r still missing (off+got .. off+len-1). */
void http_req_set_range(struct http_req *r, CURL *easy);
/* Body bytes of an error response: counted, 0 (hang up) past
 * HTTP_ERROR_BODY_MAX. */
size_t http_req_drain(struct http_req *r, size_t n);
/* Range body bytes into r->buf; 0 after refusing more than was asked. */
size_t http_req_take(struct http_req *r, const char *data, size_t n);
/* ops->range_check, once per attempt: its verdict, or 0 when it ran before. */
int http_req_range_judge(struct http_req *r);
/* A ranged read's attempt ended cleanly short of what it asked: ask for
 * the rest at once, or retry when the attempts are used up. */
void http_req_ask_rest(struct http_req *r);
/* A ranged read's attempt ended without a transport error: finish r with
 * the judge's verdict, or 0 when all came, else http_req_ask_rest. */
void http_req_range_end(struct http_req *r);
/* The write function of a ranged read (its data is r): judges the answer at
 * its first byte, then takes the bytes into r->buf, or hands an error
 * answer's to ops->error_body. */
size_t http_req_range_body(char *data, size_t size, size_t nmemb, void *arg);
/* Judge a 2xx answer to r's ranged GET of a file of size bytes: 0 fine,
 * -1 refused, HTTP_RANGE_RESIZED when Content-Range gives another total
 * (the caller words it). A 200 is fine only when it is the whole file. */
int http_req_check_range(struct http_req *r, uint64_t size);
/* The Content-Range of a 206 covers what r asked for: 0, or -1 refused. */
int http_req_check_span(struct http_req *r);

/* url without credentials, query or fragment (heap), safe in messages;
 * NULL when it does not parse. */
char *http_url_for_messages(const char *url);

#endif
