#include "common/source/oci_doc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/log.h"

#define SHA256_PREFIX	"sha256:"
#define TOKEN_DEFAULT_S 60
#define TOKEN_MIN_S	1
#define TOKEN_MAX_S	86400
#define HOST_LIST_MAX	4096
#define LOOPBACK_NET	127

/* Documents. */

static char *why_dup(const char *fmt, const char *arg)
{
	return xasprintf(fmt, arg ? arg : "");
}

int oci_digest_valid(const char *d)
{
	size_t n = sizeof SHA256_PREFIX - 1;
	if (!d || strncmp(d, SHA256_PREFIX, n) != 0 || strlen(d + n) != HASH_HEX_LEN)
		return 0;
	for (d += n; *d; d++)
		if (!isdigit((unsigned char)*d) && !(*d >= 'a' && *d <= 'f'))
			return 0;
	return 1;
}

void oci_digest_of(const void *data, size_t len, char *out)
{
	struct hash_id h;
	char hex[HASH_HEX_LEN + 1];
	hash_sha256(data, len, &h);
	hash_to_hex(&h, hex);
	snprintf(out, OCI_DIGEST_MAX, "%s%s", SHA256_PREFIX, hex);
}

static void copy_field(char *dst, size_t cap, const char *v)
{
	snprintf(dst, cap, "%s", v ? v : "");
}

static const char *arch_alias(const char *a)
{
	if (!strcmp(a, "x86_64") || !strcmp(a, "x86-64"))
		return "amd64";
	if (!strcmp(a, "aarch64"))
		return "arm64";
	return a;
}

static int parse_platform_json(json_t *p, struct oci_platform *out)
{
	const char *os = json_string_value(json_object_get(p, "os"));
	const char *arch = json_string_value(json_object_get(p, "architecture"));
	const char *variant = json_string_value(json_object_get(p, "variant"));
	if (!os || !arch)
		return SB_EPROTO;
	copy_field(out->os, sizeof out->os, os);
	copy_field(out->arch, sizeof out->arch, arch_alias(arch));
	copy_field(out->variant, sizeof out->variant, variant);
	return 0;
}

static int parse_descriptor(json_t *d, struct oci_descriptor *out, char **why)
{
	const char *mt = json_string_value(json_object_get(d, "mediaType"));
	const char *digest = json_string_value(json_object_get(d, "digest"));
	json_t *size = json_object_get(d, "size");
	if (!json_is_object(d) || !digest) {
		*why = why_dup("a descriptor has no digest%s", NULL);
		return SB_EPROTO;
	}
	if (!oci_digest_valid(digest)) {
		*why = why_dup("unsupported or malformed digest \"%.80s\"", digest);
		return SB_EPROTO;
	}
	if (!json_is_integer(size) || json_integer_value(size) < 0 ||
	    (uint64_t)json_integer_value(size) > OCI_BLOB_SIZE_MAX) {
		*why = why_dup("descriptor %s has no valid size", digest);
		return SB_EPROTO;
	}
	copy_field(out->media_type, sizeof out->media_type, mt);
	copy_field(out->digest, sizeof out->digest, digest);
	out->size = (uint64_t)json_integer_value(size);
	json_t *p = json_object_get(d, "platform");
	if (json_is_object(p) && parse_platform_json(p, &out->platform) == 0)
		out->has_platform = 1;
	return 0;
}

static int parse_list(json_t *arr, struct oci_descriptor **out, size_t *n, const char *what,
		      char **why)
{
	if (!json_is_array(arr)) {
		*why = why_dup("no %s array", what);
		return SB_EPROTO;
	}
	size_t count = json_array_size(arr);
	if (count > OCI_LAYERS_MAX) {
		*why = why_dup("too many %s", what);
		return SB_EPROTO;
	}
	*out = xcalloc(count + 1, sizeof **out);
	*n = count;
	for (size_t i = 0; i < count; i++) {
		int rc = parse_descriptor(json_array_get(arr, i), &(*out)[i], why);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int is_index_type(const char *mt)
{
	return !strcmp(mt, OCI_MT_INDEX) || !strcmp(mt, OCI_MT_DOCKER_LIST);
}

static int is_manifest_type(const char *mt)
{
	return !strcmp(mt, OCI_MT_MANIFEST) || !strcmp(mt, OCI_MT_DOCKER_V2);
}

/* The media type without parameters ("; charset=utf-8"). */
static void bare_type(const char *in, char *out, size_t cap)
{
	size_t n = in ? strcspn(in, "; \t") : 0;
	if (n >= cap)
		n = 0;
	memcpy(out, in ? in : "", n);
	out[n] = '\0';
}

static int parse_doc(json_t *root, const char *content_type, struct oci_manifest *out, char **why)
{
	char header_type[OCI_MEDIA_TYPE_MAX];
	json_t *sv = json_object_get(root, "schemaVersion");
	const char *mt = json_string_value(json_object_get(root, "mediaType"));
	bare_type(content_type, header_type, sizeof header_type);
	if (!json_is_object(root)) {
		*why = why_dup("not a JSON object%s", NULL);
		return SB_EPROTO;
	}
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		*why = why_dup("schemaVersion is not 2 (Docker schema 1 is not supported)%s", NULL);
		return SB_EPROTO;
	}
	if (!mt || !*mt) {
		/* OCI documents may leave mediaType out; their shape decides. */
		if (header_type[0])
			mt = header_type;
		else if (json_object_get(root, "manifests"))
			mt = OCI_MT_INDEX;
		else
			mt = OCI_MT_MANIFEST;
	}
	copy_field(out->media_type, sizeof out->media_type, mt);
	if (is_index_type(mt)) {
		out->is_index = 1;
		return parse_list(json_object_get(root, "manifests"), &out->manifests,
				  &out->nmanifests, "manifests", why);
	}
	if (!is_manifest_type(mt)) {
		*why = why_dup("unsupported media type %.200s", mt);
		return SB_EPROTO;
	}
	int rc = parse_descriptor(json_object_get(root, "config"), &out->config, why);
	if (rc < 0)
		return rc;
	return parse_list(json_object_get(root, "layers"), &out->layers, &out->nlayers, "layers",
			  why);
}

int oci_manifest_parse(const void *body, size_t len, const char *content_type,
		       struct oci_manifest *out, char **why)
{
	json_error_t err;
	memset(out, 0, sizeof *out);
	*why = NULL;
	if (len > OCI_DOC_MAX) {
		*why = why_dup("larger than the 4 MiB a manifest may be%s", NULL);
		return SB_ETOOBIG;
	}
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	if (!root) {
		*why = xasprintf("malformed JSON: %s (line %d)", err.text, err.line);
		return SB_EPROTO;
	}
	int rc = parse_doc(root, content_type, out, why);
	json_decref(root);
	if (rc < 0)
		oci_manifest_close(out);
	return rc;
}

void oci_manifest_close(struct oci_manifest *m)
{
	free(m->layers);
	free(m->manifests);
	memset(m, 0, sizeof *m);
}

void oci_error_summary(const void *body, size_t len, char *out, size_t cap)
{
	json_error_t err;
	out[0] = '\0';
	if (!body || len == 0 || len > OCI_DOC_MAX)
		return;
	json_t *root = json_loadb(body, len, 0, &err);
	json_t *e = json_array_get(json_object_get(root, "errors"), 0);
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	if (code || msg)
		snprintf(out, cap, " (%.64s%s%.160s)", code ? code : "", code && msg ? ": " : "",
			 msg ? msg : "");
	json_decref(root);
}

static const struct {
	const char *docker, *oci;
} layer_types[] = {
    {"application/vnd.docker.image.rootfs.diff.tar.gzip",
     "application/vnd.oci.image.layer.v1.tar+gzip"},
    {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
     "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"},
    {"application/vnd.docker.image.rootfs.diff.tar", "application/vnd.oci.image.layer.v1.tar"},
    {"application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json"},
};

static void retype(json_t *desc)
{
	const char *mt = json_string_value(json_object_get(desc, "mediaType"));
	for (size_t i = 0; mt && i < sizeof layer_types / sizeof layer_types[0]; i++)
		if (!strcmp(mt, layer_types[i].docker)) {
			json_object_set_new(desc, "mediaType", json_string(layer_types[i].oci));
			return;
		}
}

int oci_manifest_to_oci(const void *body, size_t len, char **out, size_t *outlen)
{
	json_error_t err;
	*out = NULL;
	*outlen = 0;
	if (len > OCI_DOC_MAX)
		return SB_ETOOBIG;
	json_t *root = json_loadb(body, len, 0, &err);
	const char *mt = json_string_value(json_object_get(root, "mediaType"));
	json_t *layers = json_object_get(root, "layers");
	if (!mt || strcmp(mt, OCI_MT_DOCKER_V2) || !json_is_array(layers)) {
		json_decref(root);
		return SB_EPROTO;
	}
	json_object_set_new(root, "mediaType", json_string(OCI_MT_MANIFEST));
	retype(json_object_get(root, "config"));
	for (size_t i = 0; i < json_array_size(layers); i++)
		retype(json_array_get(layers, i));
	char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!s)
		fatal("out of memory");
	*outlen = strlen(s);
	*out = xstrdup(s);
	free(s);
	return 0;
}

/* Platforms. */

static int platform_part_ok(const char *s, size_t n)
{
	if (n == 0 || n >= OCI_PLATFORM_PART)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return 0;
	return 1;
}

int oci_platform_parse(const char *s, struct oci_platform *p)
{
	const char *parts[3] = {NULL, NULL, NULL};
	size_t lens[3] = {0, 0, 0};
	int n = 0;
	memset(p, 0, sizeof *p);
	for (const char *c = s;; n++) {
		if (n == 3)
			return SB_EURI;
		const char *slash = strchr(c, '/');
		parts[n] = c;
		lens[n] = slash ? (size_t)(slash - c) : strlen(c);
		if (!platform_part_ok(c, lens[n]))
			return SB_EURI;
		if (!slash) {
			n++;
			break;
		}
		c = slash + 1;
	}
	if (n < 2)
		return SB_EURI;
	char arch[OCI_PLATFORM_PART];
	snprintf(p->os, sizeof p->os, "%.*s", (int)lens[0], parts[0]);
	snprintf(arch, sizeof arch, "%.*s", (int)lens[1], parts[1]);
	copy_field(p->arch, sizeof p->arch, arch_alias(arch));
	if (n == 3)
		snprintf(p->variant, sizeof p->variant, "%.*s", (int)lens[2], parts[2]);
	return 0;
}

void oci_platform_format(const struct oci_platform *p, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s%s%s", p->os, p->arch, p->variant[0] ? "/" : "", p->variant);
}

int oci_platforms_parse(const char *s, struct oci_platforms *out)
{
	memset(out, 0, sizeof *out);
	if (!strcmp(s, "all")) {
		out->all = 1;
		return 0;
	}
	for (const char *c = s;;) {
		size_t n = strcspn(c, ",");
		char one[3 * OCI_PLATFORM_PART];
		struct oci_platform p;
		if (n == 0 || n >= sizeof one || out->n == OCI_PLATFORMS_MAX)
			return SB_EURI;
		memcpy(one, c, n);
		one[n] = '\0';
		if (oci_platform_parse(one, &p) < 0)
			return SB_EURI;
		for (size_t i = 0; i < out->n; i++)
			if (!memcmp(&out->p[i], &p, sizeof p))
				return SB_EURI;
		out->p[out->n++] = p;
		if (!c[n])
			return 0;
		c += n + 1;
	}
}

int oci_index_choose(const struct oci_manifest *idx, const struct oci_platform *want)
{
	int first = -1;
	for (size_t i = 0; i < idx->nmanifests; i++) {
		const struct oci_descriptor *d = &idx->manifests[i];
		if (!d->has_platform || !strcmp(d->platform.os, "unknown"))
			continue;
		if (strcmp(d->platform.os, want->os) || strcmp(d->platform.arch, want->arch))
			continue;
		if (want->variant[0]) {
			if (!strcmp(d->platform.variant, want->variant))
				return (int)i;
			continue;
		}
		if (!strcmp(want->arch, "arm64") && !strcmp(d->platform.variant, "v8"))
			return (int)i;
		if (first < 0)
			first = (int)i;
	}
	return first;
}

/* WWW-Authenticate. */

static const char *skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* One auth-param: name=value or name="quoted \" value". Returns the
 * position after it (and its comma), or NULL when malformed. */
static const char *auth_param(const char *p, char *name, size_t ncap, char *val, size_t vcap)
{
	size_t n = 0, v = 0;
	p = skip_space(p);
	while (*p && *p != '=' && *p != ',' && *p != ' ') {
		if (n + 1 < ncap)
			name[n++] = (char)tolower((unsigned char)*p);
		p++;
	}
	name[n] = '\0';
	p = skip_space(p);
	if (*p != '=' || n == 0)
		return NULL;
	p = skip_space(p + 1);
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (v + 1 >= vcap)
				return NULL;
			val[v++] = *p;
		}
		if (*p != '"')
			return NULL;
		p++;
	} else {
		while (*p && *p != ',' && *p != ' ' && *p != '\t') {
			if (v + 1 >= vcap)
				return NULL;
			val[v++] = *p++;
		}
	}
	val[v] = '\0';
	p = skip_space(p);
	if (*p == ',')
		p++;
	else if (*p)
		return NULL;
	return p;
}

int oci_challenge_parse(const char *hdr, struct oci_challenge *c)
{
	char name[32], val[OCI_CHALLENGE_MAX];
	memset(c, 0, sizeof *c);
	const char *p = skip_space(hdr);
	if (!strncasecmp(p, "Basic", 5) && (!p[5] || p[5] == ' ')) {
		c->bearer = 0;
		return 0;
	}
	if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
		return SB_EPROTO;
	c->bearer = 1;
	for (p += 6; *skip_space(p);) {
		p = auth_param(p, name, sizeof name, val, sizeof val);
		if (!p)
			return SB_EPROTO;
		if (!strcmp(name, "realm"))
			copy_field(c->realm, sizeof c->realm, val);
		else if (!strcmp(name, "service"))
			copy_field(c->service, sizeof c->service, val);
		else if (!strcmp(name, "scope"))
			copy_field(c->scope, sizeof c->scope, val);
	}
	return c->realm[0] ? 0 : SB_EPROTO;
}

int oci_token_parse(const void *body, size_t len, char **token, long *expires_in)
{
	json_error_t err;
	*token = NULL;
	*expires_in = TOKEN_DEFAULT_S;
	if (len > OCI_TOKEN_MAX)
		return SB_ETOOBIG;
	json_t *root = json_loadb(body, len, 0, &err);
	if (!root)
		return SB_EPROTO;
	const char *t = json_string_value(json_object_get(root, "token"));
	if (!t || !*t)
		t = json_string_value(json_object_get(root, "access_token"));
	json_t *e = json_object_get(root, "expires_in");
	int rc = SB_EPROTO;
	if (t && *t) {
		for (const char *c = t; *c; c++)
			if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
				goto out;
		*token = xstrdup(t);
		if (json_is_integer(e)) {
			json_int_t v = json_integer_value(e);
			*expires_in = v < TOKEN_MIN_S	? TOKEN_DEFAULT_S
				      : v > TOKEN_MAX_S ? TOKEN_MAX_S
							: (long)v;
		}
		rc = 0;
	}
out:
	json_decref(root);
	return rc;
}

int oci_tags_parse(const void *body, size_t len, char ***tags, size_t *ntags, size_t max)
{
	json_error_t err;
	if (len > OCI_DOC_MAX)
		return SB_ETOOBIG;
	json_t *root = json_loadb(body, len, 0, &err);
	if (!root)
		return SB_EPROTO;
	json_t *arr = json_object_get(root, "tags");
	int rc = 0;
	if (json_is_null(arr) || (!arr && json_is_object(root))) {
		json_decref(root); /* a repository without tags */
		return 0;
	}
	if (!json_is_array(arr)) {
		json_decref(root);
		return SB_EPROTO;
	}
	size_t n = json_array_size(arr);
	if (*ntags + n > max) {
		json_decref(root);
		return SB_ETOOBIG;
	}
	*tags = xrealloc(*tags, (*ntags + n + 1) * sizeof **tags);
	for (size_t i = 0; i < n; i++) {
		const char *t = json_string_value(json_array_get(arr, i));
		if (!t) {
			rc = SB_EPROTO;
			break;
		}
		(*tags)[(*ntags)++] = xstrdup(t);
	}
	json_decref(root);
	return rc;
}

char *oci_link_next(const char *hdr)
{
	/* Link: <url>; rel="next"[, <url2>; rel="prev"] */
	for (const char *p = hdr; (p = strchr(p, '<'));) {
		const char *end = strchr(p, '>');
		if (!end)
			return NULL;
		const char *params = end + 1, *stop = strchr(params, '<');
		size_t plen = stop ? (size_t)(stop - params) : strlen(params);
		char *ps = xstrndup(params, plen);
		int next = strstr(ps, "rel=\"next\"") || strstr(ps, "rel=next");
		free(ps);
		if (next)
			return xstrndup(p + 1, (size_t)(end - p - 1));
		p = end;
	}
	return NULL;
}

/* Layout. */

char *oci_layout_index(const struct oci_layout_ref *refs, size_t n)
{
	json_t *root = json_object();
	json_t *arr = json_array();
	json_object_set_new(root, "schemaVersion", json_integer(2));
	json_object_set_new(root, "mediaType", json_string(OCI_MT_INDEX));
	for (size_t i = 0; i < n; i++) {
		json_t *d = json_object();
		json_object_set_new(d, "mediaType", json_string(refs[i].media_type));
		json_object_set_new(d, "digest", json_string(refs[i].digest));
		json_object_set_new(d, "size", json_integer((json_int_t)refs[i].size));
		if (refs[i].platform) {
			const struct oci_platform *p = refs[i].platform;
			json_t *pj = json_pack("{s:s,s:s}", "architecture", p->arch, "os", p->os);
			if (p->variant[0])
				json_object_set_new(pj, "variant", json_string(p->variant));
			json_object_set_new(d, "platform", pj);
		}
		if (refs[i].tag || refs[i].registry_digest) {
			json_t *a = json_object();
			if (refs[i].registry_digest)
				json_object_set_new(a, OCI_REGISTRY_DIGEST,
						    json_string(refs[i].registry_digest));
			if (refs[i].tag)
				json_object_set_new(a, OCI_REF_NAME, json_string(refs[i].tag));
			json_object_set_new(d, "annotations", a);
		}
		json_array_append_new(arr, d);
	}
	json_object_set_new(root, "manifests", arr);
	char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!s)
		fatal("out of memory");
	char *out = xstrdup(s);
	free(s);
	return out;
}

/* Hosts. */

/* The host part of host[:port] or [v6]:port, without brackets. */
static void host_only(const char *hostport, char *out, size_t cap)
{
	size_t n;
	if (hostport[0] == '[') {
		const char *close = strchr(hostport, ']');
		n = close ? (size_t)(close - hostport - 1) : strlen(hostport + 1);
		hostport++;
	} else {
		const char *colon = strchr(hostport, ':');
		n = colon ? (size_t)(colon - hostport) : strlen(hostport);
	}
	if (n >= cap)
		n = cap - 1;
	memcpy(out, hostport, n);
	out[n] = '\0';
}

int oci_host_is_loopback(const char *hostport)
{
	char host[256];
	struct in_addr a4;
	struct in6_addr a6;
	host_only(hostport, host, sizeof host);
	if (!strcasecmp(host, "localhost"))
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == LOOPBACK_NET;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

int oci_host_listed(const char *hostport, const char *list)
{
	char host[256];
	if (!list || strlen(list) > HOST_LIST_MAX)
		return 0;
	host_only(hostport, host, sizeof host);
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ", ");
		if (n && ((strlen(hostport) == n && !strncasecmp(p, hostport, n)) ||
			  (strlen(host) == n && !strncasecmp(p, host, n))))
			return 1;
		p += n;
		while (*p == ',' || *p == ' ')
			p++;
	}
	return 0;
}

void oci_append_escaped(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || strchr("-._~/", c))
			buf_append(b, s, 1);
		else
			buf_printf(b, "%%%02X", c);
	}
}

char *oci_source_with(const char *source, const char *platform, const char *tag_regex)
{
	struct buf b = BUF_INIT;
	char sep = strchr(source, '?') ? '&' : '?';
	buf_append_str(&b, source);
	if (platform && *platform) {
		buf_printf(&b, "%cplatform=", sep);
		oci_append_escaped(&b, platform);
		sep = '&';
	}
	if (tag_regex && *tag_regex) {
		buf_printf(&b, "%ctag-regex=", sep);
		oci_append_escaped(&b, tag_regex);
	}
	return buf_steal(&b);
}

char *oci_credentials(const char *auth)
{
	unsigned char raw[OCI_AUTH_MAX + 1];
	size_t n = 0;
	if (strlen(auth) > OCI_AUTH_MAX)
		return NULL;
	if (strchr(auth, ':'))
		return xstrdup(auth);
	if (sodium_base642bin(raw, OCI_AUTH_MAX, auth, strlen(auth), "\n\r ", &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    !memchr(raw, ':', n) || memchr(raw, '\0', n))
		return NULL;
	return xstrndup((const char *)raw, n);
}
