/* syncbit containerd-hosts: point containerd at the agent's registry
 * mirror (agent/containerd_hosts.c writes the files). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/containerd_hosts.h"
#include "cli/cli.h"
#include "common/buf.h"
#include "common/err.h"

const struct config_key cli_hosts_keys[] = {
    CLI_COMMON_KEYS,
    {"dir", NULL, 0, "containerd's config_path, e.g. /etc/containerd/certs.d", "DIR", 0},
    {"mirror", NULL, 0, "the agent's mirror, e.g. http://10.0.0.5:5001 (tried in order)",
     "URL[,URL]", 0},
    {"insecure-registry", NULL, 0,
     "registries whose server is plain HTTP (loopback ones always are)",
     "HOST[:PORT][,HOST[:PORT]]...", 0},
    {"skip-verify", "false", 1, "https:// mirrors: do not verify their certificate", NULL, 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

/* Split --mirror's comma-separated URLs (copies in *store). */
static int split_mirrors(const char *s, char **store, const char **urls, size_t *n)
{
	char *save = NULL;
	*store = xstrdup(s);
	*n = 0;
	for (char *tok = strtok_r(*store, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (*n == CONTAINERD_MIRRORS_MAX) {
			cli_error("--mirror: at most %d URLs", CONTAINERD_MIRRORS_MAX);
			return EXIT_USAGE;
		}
		if (!containerd_hosts_mirror_valid(tok)) {
			cli_error("--mirror: '%s' is not http(s)://HOST[:PORT]", tok);
			return EXIT_USAGE;
		}
		urls[(*n)++] = tok;
	}
	if (*n == 0) {
		cli_error("--mirror: no URL given");
		return EXIT_USAGE;
	}
	return 0;
}

int cmd_containerd_hosts(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL, *store = NULL;
	const char *urls[CONTAINERD_MIRRORS_MAX];
	int npos = 0, rc, skip = 0;
	struct containerd_hosts h = {.mirrors = urls};

	if ((rc = cli_parse(&cfg, "containerd-hosts", argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	const char *dir = config_get(&cfg, "dir"), *mirror = config_get(&cfg, "mirror");
	if (!dir || !dir[0] || !mirror || !mirror[0] || npos == 0) {
		cli_error("containerd-hosts needs --dir, --mirror and at least one REGISTRY");
		cli_usage("containerd-hosts");
		goto out;
	}
	if (config_get_bool(&cfg, "skip-verify", &skip) < 0) {
		cli_error("%s", cfg.error);
		goto out;
	}
	if ((rc = split_mirrors(mirror, &store, urls, &h.nmirrors)))
		goto out;
	rc = EXIT_USAGE;
	for (int i = 0; i < npos; i++)
		if (!containerd_hosts_registry_valid(pos[i])) {
			cli_error(
			    "containerd-hosts: '%s' is not a registry HOST[:PORT] (or _default)",
			    pos[i]);
			goto out;
		}
	h.insecure = config_get(&cfg, "insecure-registry");
	h.skip_verify = skip;
	rc = EXIT_OK;
	for (int i = 0; i < npos && rc == EXIT_OK; i++) {
		struct buf toml = BUF_INIT;
		char *detail = NULL;
		int changed = 0;
		int err = containerd_hosts_render(&h, pos[i], &toml);
		if (err == 0)
			err = containerd_hosts_write(dir, pos[i], &toml, &changed, &detail);
		if (err < 0) {
			cli_error("containerd-hosts: %s", detail ? detail : sb_strerror(err));
			rc = EXIT_FAIL;
		} else {
			printf("%s/%s/%s %s\n", dir, pos[i], CONTAINERD_HOSTS_FILE,
			       changed ? "written" : "unchanged");
		}
		free(detail);
		buf_close(&toml);
	}
out:
	free(store);
	free(pos);
	config_close(&cfg);
	return rc;
}
