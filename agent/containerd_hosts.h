/* containerd's registry host configuration pointing at the agent's
 * registry mirror: DIR/<registry>/hosts.toml (the `config_path` layout of
 * containerd 1.5 and later) names the mirrors first, with the pull and
 * resolve capabilities, and the registry itself as the server containerd
 * falls back to. Blocking file I/O, for the CLI; thread-safe. */
#ifndef SYNCBIT_CONTAINERD_HOSTS_H
#define SYNCBIT_CONTAINERD_HOSTS_H

#include <stddef.h>

#include "common/buf.h"

#define CONTAINERD_HOSTS_FILE	 "hosts.toml"
#define CONTAINERD_HOSTS_DEFAULT "_default"  /* every registry without a directory of its own */
#define CONTAINERD_HOSTS_MAX	 (64u << 10) /* an existing hosts.toml read back */
#define CONTAINERD_MIRRORS_MAX	 16

struct containerd_hosts {
	const char *const *mirrors; /* "http(s)://host[:port]", tried in this order */
	size_t nmirrors;
	const char *insecure; /* registries served over plain HTTP ("host[:port],..."), or NULL */
	int skip_verify;      /* https:// mirrors: do not verify their certificate */
};

/* 1 when url is http:// or https:// and a host[:port], nothing more. */
int containerd_hosts_mirror_valid(const char *url);
/* 1 when registry may name a host directory: host[:port] as in an image
 * reference (a DNS name, IPv4 or [IPv6] address), or "_default". */
int containerd_hosts_registry_valid(const char *registry);
/* The hosts.toml for registry into out: server "https://REGISTRY"
 * (Docker Hub's API host for docker.io; http:// for a loopback or
 * insecure registry; none for _default, where containerd uses the image's
 * own registry), then one [host."URL"] table per mirror. 0, or SB_EURI for
 * an invalid registry or mirror. */
int containerd_hosts_render(const struct containerd_hosts *h, const char *registry,
			    struct buf *out);
/* Write content as dir/registry/hosts.toml: directories made as needed
 * (the registry's never followed if it is a symlink), the file through a
 * temporary file, fsync and rename, then the directory fsynced; nothing is
 * written when the file already holds content. 0 with *changed set, or a
 * negative error with *detail (heap) saying what failed where. */
int containerd_hosts_write(const char *dir, const char *registry, const struct buf *content,
			   int *changed, char **detail);

#endif
