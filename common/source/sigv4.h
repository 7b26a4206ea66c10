/* AWS Signature Version 4 (header-based, HMAC-SHA256 with OpenSSL): the
 * canonical request, the string to sign and the Authorization header value,
 * plus the RFC 3986 encoding S3 wants in paths and queries. The S3 source
 * signs every request here rather than through CURLOPT_AWS_SIGV4, whose
 * libcurl 7.88 form neither sorts the query nor adds x-amz-content-sha256.
 * Pure functions; thread-safe. */
#ifndef SYNCBIT_SOURCE_SIGV4_H
#define SYNCBIT_SOURCE_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "common/buf.h"

#define SIGV4_DATE_LEN 16 /* "20150830T123600Z" */
/* SHA-256 of an empty payload: the x-amz-content-sha256 of a GET. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct sigv4_param {
	const char *name; /* raw (not yet encoded) */
	const char *value;
};

struct sigv4_header {
	const char *name; /* any case; signed lower-cased */
	const char *value;
};

struct sigv4_request {
	const char *method;
	const char *path;		    /* encoded as sent, e.g. "/bucket/a%20b" */
	const char *query;		    /* canonical query (sigv4_query), "" for none */
	const struct sigv4_header *headers; /* every header to sign, host included */
	size_t nheaders;
	const char *payload_hash; /* hex SHA-256, or "UNSIGNED-PAYLOAD" */
	const char *amz_date;	  /* "YYYYMMDDTHHMMSSZ", also sent as x-amz-date */
	const char *region;
	const char *service;
	const char *access_key;
	const char *secret_key;
};

/* Append s percent-encoded: every byte but A-Z a-z 0-9 - . _ ~ becomes %XX
 * (upper-case hex); '/' is kept when keep_slash. */
void sigv4_encode(struct buf *out, const char *s, int keep_slash);
/* Append the canonical query of n parameters: names and values encoded,
 * sorted by name then value, joined with '&'. Sending this same string as
 * the URL's query keeps what is signed and what is sent identical. */
void sigv4_query(struct buf *out, const struct sigv4_param *p, size_t n);
/* t as "YYYYMMDDTHHMMSSZ" (UTC) into out[SIGV4_DATE_LEN + 1]. */
void sigv4_date(time_t t, char *out);

/* The canonical request of rq (no trailing newline). */
void sigv4_canonical_request(const struct sigv4_request *rq, struct buf *out);
/* The string to sign for rq. */
void sigv4_string_to_sign(const struct sigv4_request *rq, struct buf *out);
/* Hex signature into out[65]. 0, or SB_EPROTO when rq lacks a field or
 * amz_date is malformed. */
int sigv4_signature(const struct sigv4_request *rq, char *out);
/* The Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=..."), appended to out. 0 or SB_EPROTO. */
int sigv4_authorization(const struct sigv4_request *rq, struct buf *out);

#endif
