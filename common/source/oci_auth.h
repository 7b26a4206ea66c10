/* Registry credentials from the files skopeo, podman and docker read
 * (containers-auth.json(5)): the first of these that has an entry for the
 * registry wins:
 *   1. the override (--authfile), else $REGISTRY_AUTH_FILE, else
 *      ${XDG_RUNTIME_DIR}/containers/auth.json;
 *   2. ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json;
 *   3. ${DOCKER_CONFIG:-~/.docker}/config.json;
 *   4. ~/.dockercfg (the legacy form: the "auths" map at the top).
 * In a file, "auths" maps a registry ("reg:5000"), or a namespace in it
 * ("reg:5000/team", "quay.io/org/image"), to {"auth": base64("user:pass")};
 * the longest key naming the image's repository wins. Keys written as URLs
 * ("https://index.docker.io/v1/", docker login's form) name their host only;
 * index.docker.io and registry-1.docker.io are docker.io. Credential
 * helpers (credHelpers, credsStore) and identity tokens are not run or
 * used. Blocking file reads; thread-safe. Credentials are never logged. */
#ifndef SYNCBIT_SOURCE_OCI_AUTH_H
#define SYNCBIT_SOURCE_OCI_AUTH_H

#include <stddef.h>

/* A larger auth file is refused (real ones are a few KiB). */
#define OCI_AUTH_FILE_MAX (4u << 20)

/* "user:password" for repo (as the registry names it, "library/x" on Docker
 * Hub) at registry (host[:port]), from the files above; override replaces
 * file 1 when non-NULL. 1 with *userpwd (heap) and *from (heap: the file's
 * path), 0 when no file has an entry, or SB_ECONFIG with *from saying which
 * file is malformed and why (one line). */
int oci_auth_lookup(const char *registry, const char *repo, const char *override, char **userpwd,
		    char **from);

/* The same in one file's text. 1 with *userpwd, 0 without an entry, or
 * SB_ECONFIG with *why (heap) for JSON that is not an auth file. */
int oci_auth_find(const char *json, size_t len, const char *registry, const char *repo,
		  char **userpwd, char **why);

#endif
