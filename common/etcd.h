/* A small client of etcd's v3 JSON gateway (etcd 3.4: POST /v3/kv/range,
 * /v3/kv/txn, /v3/lease/grant ...; keys and values base64, 64-bit numbers
 * as strings). Calls are synchronous with a short timeout: the scheduler
 * makes them from its loop, where etcd on the same network answers in a
 * millisecond or two. Several endpoints are tried in turn; TLS with a CA,
 * a client certificate and key; user and password are exchanged for a
 * token (/v3/auth/authenticate), taken again when etcd refuses it. Loop
 * thread only (one curl handle). */
#ifndef SYNCBIT_ETCD_H
#define SYNCBIT_ETCD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define ETCD_TIMEOUT_MS	   2000 /* one request, connection included */
#define ETCD_CONNECT_MS	   700
#define ETCD_BACKOFF_MS	   500 /* after every endpoint failed, calls fail at once this long */
#define ETCD_RESPONSE_MAX  (64u << 20) /* a larger answer is refused */
#define ETCD_ENDPOINTS_MAX 16

struct etcd_config {
	const char *endpoints;		 /* "http://h:2379,https://h2:2379" */
	const char *cacert, *cert, *key; /* PEM files, or NULL */
	const char *user;		 /* NULL: no authentication */
	const char *password;
};

struct etcd;

/* Check the configuration and, with a user, authenticate. 0, or a negative
 * error with *detail (one line, heap). */
int etcd_open(const struct etcd_config *cfg, struct etcd **out, char **detail);
void etcd_free(struct etcd *e);

/* POST req (taken) to path ("/v3/kv/range"). 0 with *resp (the answer's
 * object, caller frees), or a negative error: SB_EHTTP when no endpoint
 * answered, SB_EAUTH when the credentials are refused, SB_EHTTP4XX/5XX
 * for an error answer; etcd_error() then says why in one line. */
int etcd_call(struct etcd *e, const char *path, json_t *req, json_t **resp);
const char *etcd_error(const struct etcd *e);
/* 1 while the last call found no endpoint answering. */
int etcd_unreachable(const struct etcd *e);

/* Base64 of bytes as a JSON string (new reference). */
json_t *etcd_b64(const void *p, size_t n);
/* Decode a base64 JSON string into b (appended). 0 or SB_EPROTO; a
 * missing field is an empty value. */
int etcd_unb64(const json_t *s, struct buf *b);
/* A 64-bit number sent as a string (or a number); missing = 0. */
int64_t etcd_int(const json_t *v);
/* The key just after every key starting with prefix (range_end of a
 * prefix range), appended to b. */
void etcd_prefix_end(const void *prefix, size_t n, struct buf *b);

#endif
