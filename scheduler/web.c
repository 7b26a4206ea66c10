#include "scheduler/web.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"

/* The files of scheduler/web/, as byte lists the Makefile writes. */
static const unsigned char index_html[] = {
#include "scheduler/web/index.html.inc"
};
static const unsigned char app_js[] = {
#include "scheduler/web/app.js.inc"
};
static const unsigned char app_css[] = {
#include "scheduler/web/app.css.inc"
};

static const struct {
	const char *path, *type;
	const unsigned char *data;
	size_t len;
} files[] = {
    {"/", "text/html; charset=utf-8", index_html, sizeof index_html},
    {"/app.js", "text/javascript; charset=utf-8", app_js, sizeof app_js},
    {"/app.css", "text/css; charset=utf-8", app_css, sizeof app_css},
};

/* The page loads its own script and style and asks only its own API; no
 * inline code, no other origin, no frames. */
#define WEB_HEADERS                                                                          \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; " \
	"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "    \
	"frame-ancestors 'none'\r\n"                                                         \
	"X-Content-Type-Options: nosniff\r\n"                                                \
	"X-Frame-Options: DENY\r\n"                                                          \
	"Referrer-Policy: no-referrer\r\n"

void web_get(void *arg, const char *path, const char *query, struct httpd_response *r)
{
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		if (strcmp(files[i].path, path) != 0)
			continue;
		r->content_type = files[i].type;
		buf_append(&r->body, files[i].data, files[i].len);
		buf_append_str(&r->headers, WEB_HEADERS);
		return;
	}
	r->status = 404;
	buf_append_str(&r->body, "not found\n");
}

static int token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("-._~+/=", c) != NULL;
}

/* The token in text[0..n): one line, its newline optional. */
static int token_parse(char *text, size_t n)
{
	if (n && text[n - 1] == '\n')
		n--;
	if (n && text[n - 1] == '\r')
		n--;
	text[n] = '\0';
	if (n < WEB_TOKEN_MIN || n > WEB_TOKEN_MAX)
		return SB_ECONFIG;
	for (size_t i = 0; i < n; i++)
		if (!token_char(text[i]))
			return SB_ECONFIG;
	return 0;
}

int web_token_load(const char *path, char **token, char **detail)
{
	char text[WEB_TOKEN_MAX + 3];
	struct stat st;
	ssize_t n = 0;
	int rc = 0;

	*token = NULL;
	*detail = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		rc = -errno;
		*detail = xasprintf("--http-token-file %s: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		*detail = xasprintf("--http-token-file %s is not a regular file", path);
	} else if (st.st_mode & 077) {
		rc = SB_EDENIED;
		*detail = xasprintf("--http-token-file %s is accessible by group or others (mode "
				    "%04o); chmod 600 it",
				    path, (unsigned)(st.st_mode & 07777));
	} else {
		do
			n = pread(fd, text, sizeof text - 1, 0);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			rc = -errno;
			*detail = xasprintf("--http-token-file %s: %s", path, strerror(errno));
		} else if ((rc = token_parse(text, (size_t)n)) < 0) {
			*detail = xasprintf("--http-token-file %s: expected one line of %d to %d "
					    "characters A-Z a-z 0-9 - . _ ~ + / =",
					    path, WEB_TOKEN_MIN, WEB_TOKEN_MAX);
		} else {
			*token = xstrdup(text);
		}
	}
	sodium_memzero(text, sizeof text);
	if (fd >= 0)
		close(fd);
	return rc;
}

int web_authorized(const char *token, const char *authorization)
{
	static const char scheme[] = "Bearer ";
	unsigned char want[crypto_generichash_BYTES], got[crypto_generichash_BYTES];
	if (!authorization || strncasecmp(authorization, scheme, sizeof scheme - 1) != 0)
		return 0;
	const char *given = authorization + sizeof scheme - 1;
	/* Digests of both, so that neither the length nor the first
	 * difference shows in the time taken. */
	crypto_generichash(want, sizeof want, (const unsigned char *)token, strlen(token), NULL, 0);
	crypto_generichash(got, sizeof got, (const unsigned char *)given, strlen(given), NULL, 0);
	return sodium_memcmp(want, got, sizeof want) == 0;
}

void web_unauthorized(struct httpd_response *r)
{
	r->status = 401;
	buf_append_str(&r->headers, "WWW-Authenticate: Bearer realm=\"syncbit\"\r\n"
				    "X-Content-Type-Options: nosniff\r\n");
	buf_append_str(&r->body, "a bearer token is required (--http-token-file)\n");
}
