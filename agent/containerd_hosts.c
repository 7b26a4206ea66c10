#include "agent/containerd_hosts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/source/oci_doc.h"
#include "common/source/oci_name.h"
#include "common/io.h"
#include "common/path.h"

#define DOCKER_HUB_SERVER "registry-1.docker.io"

int containerd_hosts_mirror_valid(const char *url)
{
	char host[OCI_NAME_HOST_MAX + 1];
	const char *rest;
	if (!strncmp(url, "http://", 7))
		rest = url + 7;
	else if (!strncmp(url, "https://", 8))
		rest = url + 8;
	else
		return 0;
	size_t n = strlen(rest);
	if (n && rest[n - 1] == '/')
		n--; /* "http://host:port/" is the same URL */
	if (n == 0 || n > OCI_NAME_HOST_MAX)
		return 0;
	char hostport[OCI_NAME_HOST_MAX + 1];
	memcpy(hostport, rest, n);
	hostport[n] = '\0';
	return oci_name_registry(hostport, host, sizeof host) == 0;
}

int containerd_hosts_registry_valid(const char *registry)
{
	char folded[OCI_NAME_HOST_MAX + 1];
	return !strcmp(registry, CONTAINERD_HOSTS_DEFAULT) ||
	       oci_name_registry(registry, folded, sizeof folded) == 0;
}

int containerd_hosts_render(const struct containerd_hosts *h, const char *registry, struct buf *out)
{
	char folded[OCI_NAME_HOST_MAX + 1];
	int is_default = !strcmp(registry, CONTAINERD_HOSTS_DEFAULT);
	if (!containerd_hosts_registry_valid(registry) || h->nmirrors == 0 ||
	    h->nmirrors > CONTAINERD_MIRRORS_MAX)
		return SB_EURI;
	for (size_t i = 0; i < h->nmirrors; i++)
		if (!containerd_hosts_mirror_valid(h->mirrors[i]))
			return SB_EURI;
	buf_append_str(out,
		       "# Written by `syncbit containerd-hosts`: images are pulled through the\n"
		       "# Syncbit agent's registry mirror on this node first; a 404 from it sends\n"
		       "# containerd on to the next host, then to the server.\n");
	if (!is_default) {
		oci_name_registry(registry, folded, sizeof folded);
		int plain = oci_host_is_loopback(folded) || oci_host_listed(folded, h->insecure);
		buf_printf(out, "server = \"%s://%s\"\n", plain ? "http" : "https",
			   !strcmp(folded, OCI_NAME_DOCKER) ? DOCKER_HUB_SERVER : folded);
	}
	for (size_t i = 0; i < h->nmirrors; i++) {
		const char *url = h->mirrors[i];
		size_t n = strlen(url);
		if (url[n - 1] == '/')
			n--;
		/* An http:// host is spoken to in plain HTTP as it is; skip_verify
		 * (or any TLS setting) on it would make containerd 1.7+ try HTTPS
		 * first, so it gets none. */
		buf_printf(out, "\n[host.\"%.*s\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
			   (int)n, url);
		if (h->skip_verify && !strncmp(url, "https://", 8))
			buf_append_str(out, "  skip_verify = true\n");
	}
	return 0;
}

/* 1 when dirfd/name holds exactly content. */
static int same_content(int dirfd, const struct buf *content)
{
	int fd = openat(dirfd, CONTAINERD_HOSTS_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char *have = xmalloc(content->len + 1);
	size_t got = 0;
	ssize_t k;
	while (got <= content->len && (k = read(fd, have + got, content->len + 1 - got)) > 0)
		got += (size_t)k;
	close(fd);
	int same = got == content->len && !memcmp(have, content->ptr, got);
	free(have);
	return same;
}

/* Temp file, fsync, rename over hosts.toml, fsync the directory. */
static int replace_file(int dirfd, const struct buf *content, const char **what)
{
	char tmp[64];
	snprintf(tmp, sizeof tmp, ".%s.%ld.tmp", CONTAINERD_HOSTS_FILE, (long)getpid());
	*what = "create a temporary file";
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = io_pwrite_full(fd, content->ptr, content->len, 0);
	if (rc == 0 && fchmod(fd, 0644) < 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0) {
		*what = "rename into place";
		if (renameat(dirfd, tmp, dirfd, CONTAINERD_HOSTS_FILE) < 0)
			rc = -errno;
	}
	if (rc < 0) {
		unlinkat(dirfd, tmp, 0);
		if (!strcmp(*what, "create a temporary file"))
			*what = "write";
		return rc;
	}
	*what = "fsync the directory";
	return fsync(dirfd) < 0 ? -errno : 0;
}

int containerd_hosts_write(const char *dir, const char *registry, const struct buf *content,
			   int *changed, char **detail)
{
	*changed = 0;
	*detail = NULL;
	if (!containerd_hosts_registry_valid(registry))
		return SB_EURI;
	int rc = path_mkdirs(dir, 0755);
	int root = rc < 0 ? rc : open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		rc = rc < 0 ? rc : -errno;
		*detail = xasprintf("%s: %s", dir, sb_strerror(rc));
		return rc;
	}
	if (mkdirat(root, registry, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		*detail = xasprintf("%s/%s: %s", dir, registry, sb_strerror(rc));
		close(root);
		return rc;
	}
	int d = openat(root, registry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(root);
	if (d < 0) {
		rc = -errno;
		*detail = xasprintf("%s/%s: %s", dir, registry, sb_strerror(rc));
		return rc;
	}
	const char *what = NULL;
	if (!same_content(d, content)) {
		rc = replace_file(d, content, &what);
		*changed = rc == 0;
	}
	close(d);
	if (rc < 0)
		*detail = xasprintf("%s/%s/%s: cannot %s: %s", dir, registry, CONTAINERD_HOSTS_FILE,
				    what, sb_strerror(rc));
	return rc;
}
