#include "common/source/oci_name.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hash.h"

#define SHA256_PREFIX "sha256:"
#define SHA256_HEX    64
#define PORT_MAX      65535

static int lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* over s[0..n) */
static int component_valid(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t run = 0;
		while (i < n && lower_alnum(s[i]))
			i++, run++;
		if (run == 0)
			return 0;
		if (i == n)
			return 1;
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i += i + 1 < n && s[i + 1] == '_' ? 2 : 1;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return 0;
		}
		if (i == n)
			return 0; /* a separator must be followed */
	}
	return 0;
}

int oci_name_repo_valid(const char *name)
{
	size_t len = strnlen(name, OCI_NAME_REPO_MAX + 1);
	if (len == 0 || len > OCI_NAME_REPO_MAX)
		return 0;
	for (const char *s = name, *end = name + len; s <= end;) {
		const char *slash = memchr(s, '/', (size_t)(end - s));
		const char *stop = slash ? slash : end;
		if (!component_valid(s, (size_t)(stop - s)))
			return 0;
		if (!slash)
			return 1;
		s = slash + 1;
	}
	return 0;
}

int oci_name_tag_valid(const char *tag)
{
	size_t n = strnlen(tag, OCI_NAME_TAG_MAX + 1);
	if (n == 0 || n > OCI_NAME_TAG_MAX || (!isalnum((unsigned char)tag[0]) && tag[0] != '_'))
		return 0;
	for (size_t i = 1; i < n; i++) {
		unsigned char c = (unsigned char)tag[i];
		if (!isalnum(c) && c != '_' && c != '.' && c != '-')
			return 0;
	}
	return 1;
}

int oci_name_digest_valid(const char *digest)
{
	if (strncmp(digest, SHA256_PREFIX, strlen(SHA256_PREFIX)) != 0)
		return 0;
	const char *hex = digest + strlen(SHA256_PREFIX);
	if (strnlen(hex, SHA256_HEX + 1) != SHA256_HEX)
		return 0;
	for (size_t i = 0; i < SHA256_HEX; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
			return 0;
	return 1;
}

/* A DNS name: labels of letters, digits and inner '-', joined by '.'. */
static int dns_valid(const char *h, size_t n)
{
	size_t label = 0;
	if (n == 0 || h[0] == '.' || h[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (c == '.') {
			if (label == 0 || h[i - 1] == '-')
				return 0;
			label = 0;
		} else if (isalnum(c) || (c == '-' && label > 0)) {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return h[n - 1] != '-';
}

static int port_valid(const char *p)
{
	if (!*p || strlen(p) > 5)
		return 0;
	for (const char *q = p; *q; q++)
		if (!isdigit((unsigned char)*q))
			return 0;
	long v = strtol(p, NULL, 10);
	return p[0] != '0' && v >= 1 && v <= PORT_MAX;
}

static int host_valid(const char *hostport)
{
	char host[OCI_NAME_HOST_MAX + 1];
	const char *port = NULL;
	size_t n = strlen(hostport);
	if (hostport[0] == '[') {
		const char *close = strchr(hostport, ']');
		if (!close || (close[1] && close[1] != ':'))
			return 0;
		port = close[1] ? close + 2 : NULL;
		n = (size_t)(close - hostport - 1);
		memcpy(host, hostport + 1, n);
		host[n] = '\0';
		struct in6_addr a6;
		return inet_pton(AF_INET6, host, &a6) == 1 && (!port || port_valid(port));
	}
	const char *colon = strchr(hostport, ':');
	if (colon) {
		port = colon + 1;
		n = (size_t)(colon - hostport);
	}
	memcpy(host, hostport, n);
	host[n] = '\0';
	return dns_valid(host, n) && (!port || port_valid(port));
}

int oci_name_registry(const char *host, char *out, size_t cap)
{
	size_t n = strnlen(host, OCI_NAME_HOST_MAX + 1);
	if (n == 0 || n > OCI_NAME_HOST_MAX || cap <= OCI_NAME_HOST_MAX || !host_valid(host))
		return SB_EURI;
	size_t i = 0;
	for (; host[i]; i++)
		out[i] = (char)tolower((unsigned char)host[i]);
	out[i] = '\0';
	if (!strcmp(out, "index.docker.io") || !strcmp(out, "registry-1.docker.io"))
		snprintf(out, cap, "%s", OCI_NAME_DOCKER);
	return 0;
}

int oci_name_repo(const char *registry, const char *repo, char *out, size_t cap)
{
	if (cap <= OCI_NAME_REPO_MAX || !oci_name_repo_valid(repo))
		return SB_EURI;
	int docker = !strcmp(registry, OCI_NAME_DOCKER) && !strchr(repo, '/');
	int n = snprintf(out, cap, "%s%s", docker ? "library/" : "", repo);
	return n < 0 || (size_t)n > OCI_NAME_REPO_MAX ? SB_EURI : 0;
}

/* The reference of a manifest or blob path, into out->ref. */
static int parse_ref(const char *ref, struct oci_name_path *out)
{
	if (strnlen(ref, OCI_NAME_REF_MAX + 1) > OCI_NAME_REF_MAX)
		return SB_EURI;
	out->by_digest = oci_name_digest_valid(ref);
	if (out->route == OCI_ROUTE_BLOB ? !out->by_digest
					 : !out->by_digest && !oci_name_tag_valid(ref))
		return SB_EURI;
	snprintf(out->ref, sizeof out->ref, "%s", ref);
	return 0;
}

int oci_name_parse_path(const char *path, struct oci_name_path *out)
{
	memset(out, 0, sizeof *out);
	if (strncmp(path, "/v2/", 4) != 0)
		return SB_ENOTFOUND;
	const char *rest = path + 4;
	if (!*rest) {
		out->route = OCI_ROUTE_BASE;
		return 0;
	}
	/* NAME/KIND/REF: REF and KIND hold no '/', NAME may. */
	const char *last = strrchr(rest, '/');
	if (!last || last == rest)
		return SB_ENOTFOUND;
	const char *kind = last - 1;
	while (kind > rest && kind[-1] != '/')
		kind--;
	if (kind == rest)
		return SB_ENOTFOUND;
	size_t klen = (size_t)(last - kind), nlen = (size_t)(kind - 1 - rest);
	if (klen == 9 && !strncmp(kind, "manifests", 9))
		out->route = OCI_ROUTE_MANIFEST;
	else if (klen == 5 && !strncmp(kind, "blobs", 5))
		out->route = OCI_ROUTE_BLOB;
	else if (klen == 4 && !strncmp(kind, "tags", 4) && !strcmp(last + 1, "list"))
		out->route = OCI_ROUTE_TAGS;
	else
		return SB_ENOTFOUND;
	if (nlen == 0 || nlen > OCI_NAME_REPO_MAX)
		return SB_EURI;
	memcpy(out->name, rest, nlen);
	out->name[nlen] = '\0';
	if (!oci_name_repo_valid(out->name))
		return SB_EURI;
	return out->route == OCI_ROUTE_TAGS ? 0 : parse_ref(last + 1, out);
}

int oci_name_query_ns(const char *query, char *out, size_t cap)
{
	for (const char *p = query; *p;) {
		size_t n = strcspn(p, "&");
		if (n > 3 && !strncmp(p, "ns=", 3)) {
			char raw[OCI_NAME_HOST_MAX + 1];
			size_t k = 0;
			for (size_t i = 3; i < n; i++) {
				int c = (unsigned char)p[i];
				if (c == '%') {
					int hi = i + 2 < n ? hash_hexval(p[i + 1]) : -1;
					int lo = hi >= 0 ? hash_hexval(p[i + 2]) : -1;
					if (lo < 0)
						return SB_EURI;
					c = hi * 16 + lo;
					i += 2;
				}
				if (k >= OCI_NAME_HOST_MAX || c == 0)
					return SB_EURI;
				raw[k++] = (char)c;
			}
			raw[k] = '\0';
			return oci_name_registry(raw, out, cap) < 0 ? SB_EURI : 1;
		}
		p += n;
		if (*p == '&')
			p++;
	}
	return 0;
}
