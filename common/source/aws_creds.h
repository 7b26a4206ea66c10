/* AWS credentials and settings as the AWS SDKs and CLI find them: the
 * environment, then web identity (IRSA: the role and token file given by
 * AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE exchanged at STS by
 * AssumeRoleWithWebIdentity), then the shared credentials file and the
 * shared config file of the active profile. Thread-safe: web identity
 * credentials are kept process-wide under a lock; once they come within
 * AWS_CREDS_REFRESH_S of their Expiration new ones are fetched on a thread
 * of their own while callers go on with the old. Only the first fetch, or
 * one with less than AWS_CREDS_URGENT_S left, blocks the caller for one
 * HTTP request (at most AWS_STS_TIMEOUT_S). */
#ifndef SYNCBIT_SOURCE_AWS_CREDS_H
#define SYNCBIT_SOURCE_AWS_CREDS_H

#include <stddef.h>
#include <stdint.h>

#define AWS_CREDS_REFRESH_S 300	       /* renew temporary credentials this early */
#define AWS_CREDS_URGENT_S  60	       /* ...and wait for them with less than this left */
#define AWS_STS_TIMEOUT_S   30	       /* one AssumeRoleWithWebIdentity request */
#define AWS_FILE_MAX	    (1u << 20) /* a shared file or a token file */
#define AWS_STS_REPLY_MAX   (64u << 10)
#define AWS_STS_VERSION	    "2011-06-15"
#define AWS_REGION_MAX	    64

struct aws_creds {
	char *access_key; /* NULL: none found, requests go anonymous */
	char *secret_key;
	char *session_token; /* NULL for long-term keys */
	int64_t expires;     /* unix seconds; 0: they do not expire */
	char *origin;	     /* where they came from, for messages */
};

/* The value of key (any case) in one profile of an AWS shared file's text:
 * the credentials file names its sections [NAME], the config file
 * [profile NAME] ([default] for the default profile). '#' and ';' start
 * comment lines; indented lines under a key are its sub-settings and are
 * skipped. *out (heap) is NULL when absent; *has_profile (may be NULL) says
 * whether the section exists. 0, or SB_ECONFIG with *error "line N: why". */
int aws_ini_get(const char *text, int config_file, const char *profile, const char *key, char **out,
		int *has_profile, char **error);

/* A setting (region, endpoint_url, ...) of the active profile ($AWS_PROFILE,
 * else default) in $AWS_CONFIG_FILE, else ~/.aws/config. *out (heap) NULL
 * when absent; a missing file is no error. 0, or a negative error with
 * *error (one line, heap) naming the file. */
int aws_config_get(const char *key, char **out, char **error);

/* Credentials by the chain above. 0 with *out filled (access_key NULL when
 * there are none), or a negative error with *error (one line, heap): half a
 * key pair, a malformed file, an unknown $AWS_PROFILE, a refused or
 * failed AssumeRoleWithWebIdentity. */
int aws_creds_get(struct aws_creds *out, char **error);
void aws_creds_close(struct aws_creds *c);

/* Read an AssumeRoleWithWebIdentity answer (AccessKeyId, SecretAccessKey,
 * SessionToken and Expiration under Credentials). 0, or SB_EPROTO with
 * *error (one line, heap). */
int aws_sts_parse(const char *xml, size_t len, struct aws_creds *out, char **error);

/* 1 when r can be a region name (a-z, 0-9, '-'; below AWS_REGION_MAX). */
int aws_region_valid(const char *r);

#endif
