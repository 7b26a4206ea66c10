#include "common/uri.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/source/oci_name.h"
#include "common/path.h"

#define S3_BUCKET_MIN 3
#define S3_BUCKET_MAX 63
#define S3_KEY_MAX    1024
#define HF_NAME_MAX   96
#define REV_MAX	      255
/* Distribution spec: clients limit "registry/name" to 255 characters. */
#define OCI_NAME_MAX 255
#define HOST_MAX     253
#define PORT_MAX     65535

#define OCI_PLATFORM_MAX       96   /* os/arch/variant in ?platform= */
#define OCI_PLATFORMS_TEXT_MAX 1024 /* ?platform=P,P,... */
#define OCI_REGEX_MAX	       256  /* ?tag-regex= */

struct scheme {
	const char *name;
	enum uri_kind kind;
	int (*parse)(const char *scheme, const char *rest, struct source_uri *out);
	const char *form; /* what a well-formed one looks like, for errors */
};

static int parse_file_uri(const char *scheme, const char *rest, struct source_uri *out);
static int parse_http(const char *scheme, const char *rest, struct source_uri *out);
static int parse_s3(const char *scheme, const char *rest, struct source_uri *out);
static int parse_hub(const char *scheme, const char *rest, struct source_uri *out);
static int parse_oci(const char *scheme, const char *rest, struct source_uri *out);

static const struct scheme schemes[] = {
    {"file", URI_FILE, parse_file_uri, "file:///ABSOLUTE/PATH"},
    {"http", URI_HTTP, parse_http, "http://HOST[:PORT]/PATH"},
    {"https", URI_HTTP, parse_http, "https://HOST[:PORT]/PATH"},
    {"s3", URI_S3, parse_s3, "s3://BUCKET[/PREFIX]"},
    {"hf", URI_HF, parse_hub, "hf://[datasets/]ORG/NAME[@REVISION]"},
    {"ms", URI_MS, parse_hub, "ms://[datasets/]ORG/NAME[@REVISION]"},
    {"oci", URI_OCI, parse_oci,
     "oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST][?platform=OS/ARCH[,...]|all&tag-regex=ERE]"},
};

const char *uri_kind_name(enum uri_kind k)
{
	switch (k) {
	case URI_FILE:
		return "file";
	case URI_HTTP:
		return "http";
	case URI_S3:
		return "s3";
	case URI_HF:
		return "hf";
	case URI_MS:
		return "ms";
	case URI_OCI:
		return "oci";
	}
	return "unknown";
}

void uri_close(struct source_uri *u)
{
	free(u->raw);
	free(u->canonical);
	free(u->path);
	free(u->url);
	free(u->bucket);
	free(u->prefix);
	free(u->repo);
	free(u->revision);
	free(u->digest);
	free(u->registry);
	free(u->platform);
	free(u->tag_regex);
	memset(u, 0, sizeof *u);
}

static int is_lower_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_hex(int c)
{
	return isxdigit((unsigned char)c);
}

static int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	return (tolower(c) - 'a') + 10;
}

static int has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* ---- local paths ---- */

static int set_local_path(const char *path, struct source_uri *out)
{
	char *abs = NULL, *cwd;

	if (!*path)
		return SB_EURI;
	if (path[0] == '/') {
		out->path = path_normalize_abs(path);
	} else {
		cwd = getcwd(NULL, 0);
		if (!cwd)
			return -errno;
		abs = path_join(cwd, path);
		free(cwd);
		out->path = path_normalize_abs(abs);
		free(abs);
	}
	if (!out->path)
		return SB_EURI;
	return 0;
}

/* The canonical form is a key: every path maps to exactly one string, and
 * the result is a valid URI even for paths with spaces or '%'. */
static char *file_canonical(const char *path)
{
	static const char keep[] = "-._~!$&'()*+,;=:@/";
	struct buf b = BUF_INIT;

	buf_append_str(&b, "file://");
	for (const char *p = path; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (isalnum(c) || (c && strchr(keep, c)))
			buf_append(&b, p, 1);
		else
			buf_printf(&b, "%%%02X", c);
	}
	return buf_steal(&b);
}

static int percent_decode(const char *s, char **out)
{
	struct buf b = BUF_INIT;

	for (; *s; s++) {
		char c = *s;

		if (c == '%') {
			if (!is_hex(s[1]) || !is_hex(s[2]))
				goto bad;
			c = (char)(hex_value(s[1]) * 16 + hex_value(s[2]));
			if (c == '\0')
				goto bad;
			s += 2;
		}
		buf_append(&b, &c, 1);
	}
	*out = buf_steal(&b);
	return 0;
bad:
	buf_close(&b);
	return SB_EURI;
}

static int parse_file_uri(const char *scheme, const char *rest, struct source_uri *out)
{
	char *path;
	int rc;

	/* Only this host: file:///p or file://localhost/p. */
	if (strncasecmp(rest, "localhost/", 10) == 0)
		rest += 9;
	if (rest[0] != '/' || strpbrk(rest, "?#") || has_control(rest))
		return SB_EURI;
	if ((rc = percent_decode(rest, &path)) < 0)
		return rc;
	rc = set_local_path(path, out);
	free(path);
	return rc;
}

/* ---- hosts ---- */

struct hostport {
	const char *host; /* not NUL-terminated */
	size_t host_len;
	const char *port; /* digits or NULL */
	size_t port_len;
};

static int valid_ipv6_literal(const char *s, size_t n)
{
	if (n < 2)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_hex(s[i]) && s[i] != ':' && s[i] != '.')
			return 0;
	return 1;
}

static int valid_reg_name(const char *s, size_t n)
{
	if (n == 0 || n > HOST_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return 0;
	}
	return 1;
}

/* host[:port] or [v6]:port, the whole of s[0..n). */
static int split_hostport(const char *s, size_t n, struct hostport *hp)
{
	const char *end = s + n, *colon;
	unsigned long port = 0;

	memset(hp, 0, sizeof *hp);
	if (n > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', n);

		if (!close || !valid_ipv6_literal(s + 1, (size_t)(close - s - 1)))
			return SB_EURI;
		hp->host = s;
		hp->host_len = (size_t)(close - s + 1);
		colon = close + 1 < end ? close + 1 : NULL;
		if (colon && *colon != ':')
			return SB_EURI;
	} else {
		colon = memchr(s, ':', n);
		hp->host = s;
		hp->host_len = colon ? (size_t)(colon - s) : n;
		if (!valid_reg_name(s, hp->host_len))
			return SB_EURI;
	}
	if (!colon)
		return 0;
	hp->port = colon + 1;
	hp->port_len = (size_t)(end - hp->port);
	if (hp->port_len == 0 || hp->port_len > 5)
		return SB_EURI;
	for (size_t i = 0; i < hp->port_len; i++) {
		if (!isdigit((unsigned char)hp->port[i]))
			return SB_EURI;
		port = port * 10 + (unsigned long)(hp->port[i] - '0');
	}
	if (port == 0 || port > PORT_MAX)
		return SB_EURI;
	return 0;
}

static void append_lower(struct buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = (char)tolower((unsigned char)s[i]);

		buf_append(b, &c, 1);
	}
}

/* ---- http ---- */

static int is_default_port(const char *scheme, const struct hostport *hp)
{
	const char *def = strcmp(scheme, "https") == 0 ? "443" : "80";

	return hp->port && hp->port_len == strlen(def) && memcmp(hp->port, def, hp->port_len) == 0;
}

static int parse_http(const char *scheme, const char *rest, struct source_uri *out)
{
	struct buf url = BUF_INIT, canon = BUF_INIT;
	struct hostport hp;
	size_t auth_len = strcspn(rest, "/?#");
	size_t tail_len;
	const char *at, *hostpart, *tail = rest + auth_len;

	/* A URL reaches curl and logs as is: it must already be encoded. */
	for (const char *p = rest; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return SB_EURI;
	at = memrchr(rest, '@', auth_len);
	hostpart = at ? at + 1 : rest;
	if (split_hostport(hostpart, (size_t)(rest + auth_len - hostpart), &hp) < 0)
		return SB_EURI;
	/* The fragment never reaches the server. */
	tail_len = strcspn(tail, "#");

	buf_printf(&url, "%s://", scheme);
	if (at)
		buf_append(&url, rest, (size_t)(at - rest + 1));
	append_lower(&url, hp.host, hp.host_len);
	if (hp.port)
		buf_printf(&url, ":%.*s", (int)hp.port_len, hp.port);
	buf_append(&url, tail, tail_len);

	/* Credentials stay out of the identity key, which ends up in logs. */
	buf_printf(&canon, "%s://", scheme);
	append_lower(&canon, hp.host, hp.host_len);
	if (hp.port && !is_default_port(scheme, &hp))
		buf_printf(&canon, ":%.*s", (int)hp.port_len, hp.port);
	if (tail_len == 0 || tail[0] != '/')
		buf_append_str(&canon, "/");
	buf_append(&canon, tail, tail_len);

	out->url = buf_steal(&url);
	out->canonical = buf_steal(&canon);
	return 0;
}

/* ---- s3 ---- */

static int is_ipv4_form(const char *s)
{
	int dots = 0;

	for (; *s; s++) {
		if (*s == '.')
			dots++;
		else if (!isdigit((unsigned char)*s))
			return 0;
	}
	return dots == 3;
}

static int has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

/* AWS general purpose bucket naming rules. */
static int valid_bucket(const char *b)
{
	static const char *const bad_prefix[] = {"xn--", "sthree-", "amzn-s3-demo-"};
	static const char *const bad_suffix[] = {"-s3alias", "--ol-s3", ".mrap", "--x-s3",
						 "--table-s3"};
	size_t n = strlen(b);

	if (n < S3_BUCKET_MIN || n > S3_BUCKET_MAX)
		return 0;
	if (!is_lower_alnum(b[0]) || !is_lower_alnum(b[n - 1]))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(b[i]) && b[i] != '.' && b[i] != '-')
			return 0;
	if (strstr(b, "..") || is_ipv4_form(b))
		return 0;
	for (size_t i = 0; i < sizeof bad_prefix / sizeof bad_prefix[0]; i++)
		if (has_prefix(b, bad_prefix[i]))
			return 0;
	for (size_t i = 0; i < sizeof bad_suffix / sizeof bad_suffix[0]; i++)
		if (has_suffix(b, bad_suffix[i]))
			return 0;
	return 1;
}

static int parse_s3(const char *scheme, const char *rest, struct source_uri *out)
{
	const char *slash = strchr(rest, '/');
	size_t blen = slash ? (size_t)(slash - rest) : strlen(rest);
	const char *prefix = slash ? slash + 1 : "";

	out->bucket = xstrndup(rest, blen);
	if (!valid_bucket(out->bucket))
		return SB_EURI;
	if (strlen(prefix) > S3_KEY_MAX || has_control(prefix))
		return SB_EURI;
	out->prefix = xstrdup(prefix);
	/* The prefix stays as given: "data" also matches "data-old/". */
	if (*prefix)
		out->canonical = xasprintf("s3://%s/%s", out->bucket, prefix);
	else
		out->canonical = xasprintf("s3://%s", out->bucket);
	return 0;
}

/* ---- hf / ms ---- */

static int valid_hub_name(const char *s, size_t n)
{
	if (n == 0 || n > HF_NAME_MAX)
		return 0;
	if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return 0;
	}
	return 1;
}

/* Branch, tag or commit; branches may hold '/' ("refs/pr/1"), but nothing
 * that could step out of the URL path it is put into. */
static int valid_revision(const char *r)
{
	size_t n = strlen(r);

	if (n == 0 || n > REV_MAX || r[0] == '/' || r[n - 1] == '/')
		return 0;
	if (strstr(r, "//") || strstr(r, ".."))
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)r[i];

		if (!isalnum(c) && !strchr("._-/+", c))
			return 0;
	}
	return 1;
}

static int parse_hub(const char *scheme, const char *rest, struct source_uri *out)
{
	const char *at = strchr(rest, '@');
	size_t idlen = at ? (size_t)(at - rest) : strlen(rest);
	const char *org, *slash;
	static const char datasets[] = "datasets/";

	if (at) {
		if (!valid_revision(at + 1))
			return SB_EURI;
		out->revision = xstrdup(at + 1);
	}
	org = rest;
	if (idlen > sizeof datasets - 1 && memcmp(rest, datasets, sizeof datasets - 1) == 0) {
		out->is_dataset = 1;
		org += sizeof datasets - 1;
		idlen -= sizeof datasets - 1;
	}
	slash = memchr(org, '/', idlen);
	if (!slash || !valid_hub_name(org, (size_t)(slash - org)) ||
	    !valid_hub_name(slash + 1, idlen - (size_t)(slash - org) - 1))
		return SB_EURI;
	out->repo = xstrndup(org, idlen);
	out->canonical = xasprintf("%s://%s%s%s%s", scheme, out->is_dataset ? datasets : "",
				   out->repo, at ? "@" : "", at ? out->revision : "");
	return 0;
}

/* ---- oci ---- */

/* os/arch[/variant]: lower-case names, as in an image index. */
static int valid_oci_platform_one(const char *p, size_t n)
{
	int slashes = 0;

	if (n == 0 || n > OCI_PLATFORM_MAX || p[0] == '/' || p[n - 1] == '/' ||
	    memmem(p, n, "//", 2))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '/')
			slashes++;
		else if (!is_lower_alnum(p[i]) && p[i] != '_' && p[i] != '.' && p[i] != '-')
			return 0;
	}
	return slashes == 1 || slashes == 2;
}

/* "all", or platforms separated by commas. */
static int valid_oci_platform(const char *p)
{
	if (!strcmp(p, "all"))
		return 1;
	if (strlen(p) > OCI_PLATFORMS_TEXT_MAX)
		return 0;
	for (;;) {
		size_t n = strcspn(p, ",");
		if (!valid_oci_platform_one(p, n))
			return 0;
		if (!p[n])
			return 1;
		p += n + 1;
	}
}

static void append_query_value(struct buf *b, const char *v)
{
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;

		if (isalnum(c) || strchr("-._~/", c))
			buf_append(b, v, 1);
		else
			buf_printf(b, "%%%02X", c);
	}
}

/* "platform=P&tag-regex=R" after the reference; each key at most once. */
static int parse_oci_query(const char *q, struct source_uri *out)
{
	while (*q) {
		size_t n = strcspn(q, "&");
		const char *eq = memchr(q, '=', n);
		char *raw, *val;
		char **slot;

		if (!eq)
			return SB_EURI;
		if ((size_t)(eq - q) == 8 && !strncmp(q, "platform", 8))
			slot = &out->platform;
		else if ((size_t)(eq - q) == 9 && !strncmp(q, "tag-regex", 9))
			slot = &out->tag_regex;
		else
			return SB_EURI;
		raw = xstrndup(eq + 1, n - (size_t)(eq - q) - 1);
		if (*slot || percent_decode(raw, &val) < 0) {
			free(raw);
			return SB_EURI;
		}
		free(raw);
		*slot = val;
		q += n;
		if (*q == '&')
			q++;
	}
	if (out->platform && !valid_oci_platform(out->platform))
		return SB_EURI;
	if (out->tag_regex && (!*out->tag_regex || strlen(out->tag_regex) > OCI_REGEX_MAX ||
			       has_control(out->tag_regex)))
		return SB_EURI;
	return 0;
}

static int parse_oci_ref(const char *rest, struct source_uri *out)
{
	const char *slash = strchr(rest, '/');
	const char *at, *colon, *name;
	struct hostport hp;
	struct buf reg = BUF_INIT;
	size_t name_len;

	if (!slash || split_hostport(rest, (size_t)(slash - rest), &hp) < 0)
		return SB_EURI;
	append_lower(&reg, rest, (size_t)(slash - rest));
	out->registry = buf_steal(&reg);
	name = slash + 1;
	at = strchr(name, '@');
	name_len = at ? (size_t)(at - name) : strlen(name);
	colon = memchr(name, ':', name_len);
	if (at) {
		if (!oci_name_digest_valid(at + 1))
			return SB_EURI;
		out->digest = xstrdup(at + 1);
	}
	if (colon) {
		out->revision = xstrndup(colon + 1, name_len - (size_t)(colon - name) - 1);
		if (!oci_name_tag_valid(out->revision))
			return SB_EURI;
		name_len = (size_t)(colon - name);
	} else if (!at && !out->tag_regex) {
		/* What every registry client assumes when no tag is given. */
		out->revision = xstrdup("latest");
	}
	if ((colon || at) && out->tag_regex)
		return SB_EURI;
	out->repo = xstrndup(name, name_len); /* freed by uri_close on failure */
	if (!oci_name_repo_valid(out->repo) || strlen(out->registry) + 1 + name_len > OCI_NAME_MAX)
		return SB_EURI;
	return 0;
}

static int parse_oci(const char *scheme, const char *rest, struct source_uri *out)
{
	const char *q = strchr(rest, '?');
	char *ref = xstrndup(rest, q ? (size_t)(q - rest) : strlen(rest));
	struct buf canon = BUF_INIT;
	char sep = '?';
	int rc = q ? parse_oci_query(q + 1, out) : 0;

	if (rc == 0)
		rc = parse_oci_ref(ref, out);
	free(ref);
	if (rc < 0)
		return rc;
	/* A digest names the content exactly; a tag beside it adds nothing. */
	buf_printf(&canon, "oci://%s/%s", out->registry, out->repo);
	if (out->digest)
		buf_printf(&canon, "@%s", out->digest);
	else if (out->revision)
		buf_printf(&canon, ":%s", out->revision);
	if (out->platform) {
		buf_printf(&canon, "%cplatform=%s", sep, out->platform);
		sep = '&';
	}
	if (out->tag_regex) {
		buf_printf(&canon, "%ctag-regex=", sep);
		append_query_value(&canon, out->tag_regex);
	}
	out->canonical = buf_steal(&canon);
	return 0;
}

/* ---- entry point ---- */

/* Length of a leading "scheme:" name per RFC 3986, or 0. */
static size_t scheme_len(const char *s)
{
	size_t n = 0;

	if (!isalpha((unsigned char)s[0]))
		return 0;
	while (isalnum((unsigned char)s[n]) || s[n] == '+' || s[n] == '-' || s[n] == '.')
		n++;
	return s[n] == ':' ? n : 0;
}

static const struct scheme *find_scheme(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
		if (strlen(schemes[i].name) == n && strncasecmp(s, schemes[i].name, n) == 0)
			return &schemes[i];
	return NULL;
}

const char *uri_form(const char *s)
{
	size_t n = scheme_len(s);
	const struct scheme *sc = n ? find_scheme(s, n) : NULL;
	return sc ? sc->form
		  : "a path, or SCHEME://... with a scheme of file, http, https, s3, "
		    "hf, ms, oci";
}

int uri_parse(const char *s, struct source_uri *out)
{
	size_t n = scheme_len(s);
	const struct scheme *sc = n ? find_scheme(s, n) : NULL;
	int rc;

	memset(out, 0, sizeof *out);
	if (!*s)
		return SB_EURI;
	if (n && strncmp(s + n, "://", 3) == 0) {
		if (!sc)
			return SB_ESCHEME;
		out->kind = sc->kind;
		rc = sc->parse(sc->name, s + n + 3, out);
	} else if (sc) {
		/* "hf:org/repo" is a typo, not a directory named "hf:org". */
		return SB_EURI;
	} else {
		out->kind = URI_FILE;
		rc = set_local_path(s, out);
	}
	if (rc < 0) {
		uri_close(out);
		return rc;
	}
	if (out->kind == URI_FILE) {
		free(out->canonical);
		out->canonical = file_canonical(out->path);
	}
	out->raw = xstrdup(s);
	return 0;
}
