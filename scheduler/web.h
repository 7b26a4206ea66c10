/* The operator's page on the scheduler's HTTP port: /, /app.js and
 * /app.css, the files of scheduler/web/ built into the binary, which draw
 * the cluster from the JSON API; and the bearer token that guards the API
 * when --http-token-file is given. Loop thread only. */
#ifndef SYNCBIT_WEB_H
#define SYNCBIT_WEB_H

#include "common/net/httpd.h"

#define WEB_TOKEN_MIN 16  /* characters of an API token */
#define WEB_TOKEN_MAX 256 /* below HTTPD_AUTH_MAX, with "Bearer " */

/* The httpd handler of "/", "/app.js" and "/app.css" (arg unused): the
 * file, with a Content-Security-Policy that lets it load only these. */
void web_get(void *arg, const char *path, const char *query, struct httpd_response *r);

/* Read an API token from path: one line of WEB_TOKEN_MIN..WEB_TOKEN_MAX
 * characters of RFC 6750's token alphabet (A-Z a-z 0-9 - . _ ~ + / =), a
 * regular file not readable by group or others. 0 with *token (heap), or a
 * negative error with *detail (heap, one line). */
int web_token_load(const char *path, char **token, char **detail);

/* 1 when the Authorization header value (NULL: none) is "Bearer TOKEN";
 * the comparison takes the same time wherever the two differ. */
int web_authorized(const char *token, const char *authorization);

/* Fill r with the answer to a request without the token: 401 and
 * "WWW-Authenticate: Bearer". */
void web_unauthorized(struct httpd_response *r);

#endif
