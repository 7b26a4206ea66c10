#include "common/source/oci_auth.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/source/oci_doc.h"
#include "common/source/oci_name.h"

#define DOCKER_HUB "docker.io"

/* A key of "auths" as a registry or namespace: lower-case host, URL
 * scheme and (for URL keys) path dropped, Docker Hub's aliases folded.
 * Heap string. */
static char *normalize_key(const char *key)
{
	int url = 0;
	if (!strncasecmp(key, "https://", 8) || !strncasecmp(key, "http://", 7)) {
		key = strstr(key, "://") + 3;
		url = 1;
	}
	size_t host_len = strcspn(key, "/");
	char *host = xstrndup(key, host_len);
	for (char *p = host; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	if (!strcmp(host, "index.docker.io") || !strcmp(host, "registry-1.docker.io")) {
		free(host);
		host = xstrdup(DOCKER_HUB);
	}
	const char *path = key + host_len;
	char *out = url || !*path ? xstrdup(host) : xasprintf("%s%s", host, path);
	free(host);
	/* "reg/team/" names the same namespace as "reg/team". */
	size_t n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	return out;
}

/* How much of "registry/repo" key covers: its length when key is the
 * registry or a namespace of it along '/' boundaries, else 0. */
static size_t key_covers(const char *key, const char *image)
{
	size_t n = strlen(key);
	if (strncmp(key, image, n) || (image[n] != '\0' && image[n] != '/'))
		return 0;
	return n;
}

static int not_auth_file(char **why, const char *what)
{
	*why = xstrdup(what);
	return SB_ECONFIG;
}

int oci_auth_find(const char *json, size_t len, const char *registry, const char *repo,
		  char **userpwd, char **why)
{
	json_error_t jerr;
	*userpwd = NULL;
	*why = NULL;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		*why = xasprintf("malformed JSON at line %d: %s", jerr.line, jerr.text);
		return SB_ECONFIG;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return not_auth_file(why, "not a JSON object");
	}
	/* docker's and containers' files keep the map under "auths"; the
	 * legacy ~/.dockercfg is that map alone. */
	json_t *auths = json_object_get(root, "auths");
	if (!auths && !json_object_get(root, "credHelpers") && !json_object_get(root, "credsStore"))
		auths = root;
	if (auths && !json_is_object(auths)) {
		json_decref(root);
		return not_auth_file(why, "\"auths\" is not an object");
	}
	char *image = xasprintf("%s/%s", registry, repo);
	char *reg = normalize_key(registry);
	char *img = normalize_key(image);
	const char *k;
	json_t *v, *best = NULL;
	size_t best_len = 0;
	json_object_foreach(auths, k, v)
	{
		char *key = normalize_key(k);
		size_t covers = key_covers(key, img);
		/* A namespace key must be in the same registry, not a prefix of
		 * its host name. */
		if (covers && covers >= strlen(reg) && covers > best_len && json_is_object(v)) {
			json_t *a = json_object_get(v, "auth");
			if (json_is_string(a) && json_string_length(a) > 0) {
				best = a;
				best_len = covers;
			}
		}
		free(key);
	}
	int rc = 0;
	if (best) {
		*userpwd = oci_credentials(json_string_value(best));
		if (!*userpwd) {
			*why = xstrdup("an \"auth\" is not base64 of user:password");
			rc = SB_ECONFIG;
		} else {
			rc = 1;
		}
	}
	free(img);
	free(reg);
	free(image);
	json_decref(root);
	return rc;
}

/* The files in the order they are read; NULL entries are skipped. */
static void auth_paths(const char *override, char *paths[4])
{
	const char *home = getenv("HOME");
	const char *env = getenv("REGISTRY_AUTH_FILE");
	const char *run = getenv("XDG_RUNTIME_DIR");
	const char *conf = getenv("XDG_CONFIG_HOME");
	const char *docker = getenv("DOCKER_CONFIG");
	int has_home = home && *home;
	memset(paths, 0, 4 * sizeof *paths);
	if (override && *override)
		paths[0] = xstrdup(override);
	else if (env && *env)
		paths[0] = xstrdup(env);
	else if (run && *run)
		paths[0] = xasprintf("%s/containers/auth.json", run);
	if (conf && *conf)
		paths[1] = xasprintf("%s/containers/auth.json", conf);
	else if (has_home)
		paths[1] = xasprintf("%s/.config/containers/auth.json", home);
	if (docker && *docker)
		paths[2] = xasprintf("%s/config.json", docker);
	else if (has_home)
		paths[2] = xasprintf("%s/.docker/config.json", home);
	if (has_home)
		paths[3] = xasprintf("%s/.dockercfg", home);
}

int oci_auth_lookup(const char *registry, const char *repo, const char *override, char **userpwd,
		    char **from)
{
	char *paths[4];
	int rc = 0;
	*userpwd = NULL;
	*from = NULL;
	auth_paths(override, paths);
	for (int i = 0; i < 4 && rc == 0; i++) {
		struct buf b = BUF_INIT;
		char *why = NULL;
		if (!paths[i])
			continue;
		int r = buf_read_file(paths[i], OCI_AUTH_FILE_MAX, &b);
		/* Only --authfile must exist; a missing $REGISTRY_AUTH_FILE is
		 * empty, as skopeo takes it. */
		if (r == -ENOENT && !(i == 0 && override && *override)) {
			buf_close(&b);
			continue;
		}
		if (r < 0) {
			*from = xasprintf("%s: %s", paths[i], sb_strerror(r));
			rc = SB_ECONFIG;
		} else {
			rc = oci_auth_find(b.len ? (const char *)b.ptr : "", b.len, registry, repo,
					   userpwd, &why);
			if (rc == 1)
				*from = xstrdup(paths[i]);
			else if (rc < 0)
				*from = xasprintf("%s: %s", paths[i], why);
		}
		free(why);
		buf_close(&b);
	}
	for (int i = 0; i < 4; i++)
		free(paths[i]);
	return rc;
}
