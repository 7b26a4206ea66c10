/* The S3 protocol as the s3:// source speaks it: where a bucket is reached
 * (endpoint, region, addressing style, credentials), the URL of a request,
 * and the XML S3 answers with (ListObjectsV2 pages and Error documents,
 * read by common/source/xml.c). Pure functions, thread-safe, except s3_config_init, which
 * reads the environment. */
#ifndef SYNCBIT_SOURCE_S3_API_H
#define SYNCBIT_SOURCE_S3_API_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/source/aws_creds.h"
#include "common/source/xml.h"

#define S3_DEFAULT_REGION "us-east-1"
#define S3_ERR_MAX	  XML_ERR_MAX /* one-line reason of a parse error */

struct s3_config {
	char *scheme; /* "http" or "https" */
	char *host;   /* endpoint host[:port] (port only when not the default) */
	char *base;   /* endpoint path without trailing '/', often "" */
	char *region;
	int path_style;	  /* 1: endpoint/bucket/key; 0: bucket.endpoint/key */
	int custom;	  /* the endpoint came from a flag or the environment */
	char *access_key; /* NULL: anonymous requests, not signed */
	char *secret_key;
	char *session_token;	/* x-amz-security-token, or NULL */
	char *credentials_from; /* where the keys came from, for messages */
	int64_t expires;	/* unix seconds the keys expire; 0: never */
};

/* Fill c for bucket from the flags (NULL or -1 when not given) and the
 * environment: endpoint = flag, else AWS_ENDPOINT_URL_S3, else
 * AWS_ENDPOINT_URL, else https://s3.REGION.amazonaws.com; region = flag,
 * else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1; path-style =
 * flag, else 1 for a custom endpoint or a dotted bucket name on https, else
 * virtual-hosted; credentials by common/source/aws_creds.h's chain (environment,
 * web identity, shared files), anonymous when none is found. Region and
 * endpoint fall back to the active profile's region and endpoint_url in
 * the AWS config file before the defaults. 0, or a negative error
 * (SB_ECONFIG for bad settings) with a one-line *detail (heap) and c left
 * empty. */
int s3_config_init(struct s3_config *c, const char *bucket, const char *endpoint,
		   const char *region, int path_style, char **detail);
void s3_config_close(struct s3_config *c);
/* Fetch the credentials again when they expire within AWS_CREDS_REFRESH_S
 * (temporary ones from web identity); a no-op otherwise. May block for one
 * STS request. 0, or a negative error with *detail (heap), c unchanged. */
int s3_config_refresh(struct s3_config *c, char **detail);

/* Where one request goes: url to send, and the Host header and encoded path
 * to sign. key NULL addresses the bucket itself; query is a canonical query
 * (sigv4_query) or "". Appends to the three buffers. */
void s3_target(const struct s3_config *c, const char *bucket, const char *key, const char *query,
	       struct buf *url, struct buf *host, struct buf *path);

struct s3_object {
	char *key;
	uint64_t size;
	int64_t mtime_ns; /* from LastModified */
	char *etag;	  /* quotes stripped; NULL when absent */
	int sha256;	  /* <ChecksumAlgorithm>SHA256: HeadObject can tell it */
	int composite;	  /* <ChecksumType>COMPOSITE: of the parts, not the whole */
};

struct s3_list_page {
	struct s3_object *objects;
	size_t n, cap;
	int truncated;	  /* IsTruncated */
	char *next_token; /* NextContinuationToken or NULL */
	int url_encoded;  /* EncodingType was "url": keys came decoded here */
};

/* Parse one ListObjectsV2 answer. 0, or SB_EPROTO with a one-line reason
 * ("byte N: what") in err[S3_ERR_MAX]; the page then holds nothing. */
int s3_list_parse(const char *xml, size_t len, struct s3_list_page *out, char *err);
void s3_list_page_close(struct s3_list_page *p);

struct s3_error {
	char code[64]; /* "NoSuchBucket", "SignatureDoesNotMatch", ... */
	char message[256];
	char region[AWS_REGION_MAX]; /* Region, when S3 names the right one */
};

/* Read an S3 Error document. 0 when body is one and has a Code, else
 * SB_EPROTO with out zeroed. */
int s3_error_parse(const char *xml, size_t len, struct s3_error *out);

#endif
