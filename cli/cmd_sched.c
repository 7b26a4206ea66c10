/* syncbit scheduler: run the cluster scheduler until SIGINT or SIGTERM. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "scheduler/sched.h"

const struct config_key cli_scheduler_keys[] = {
    CLI_SERVICE_COMMON_KEYS,
    {"listen", "0.0.0.0:7400", 0, "address for agents and admin commands", "HOST:PORT", 0},
    {"http", NULL, 0, "address for /healthz, /api/v1/..., /metrics and the page on /", "HOST:PORT",
     0},
    {"http-token-file", NULL, 0,
     "require \"Authorization: Bearer TOKEN\" on /api/v1/... (the page asks for it); TOKEN is "
     "the line in FILE (mode 0600)",
     "FILE", 0},
    {"refresh", "300", 0, "seconds between re-listings of every source (0: never)", "SECONDS", 0},
    {"pull-linger", "600", 0,
     "a dataset made for pulls through agents goes once every node that pulled it has had it "
     "this long with no new pull",
     "SECONDS", 0},
    {"assign-queue", "128M", 0,
     "bytes of assignments (each carries its dataset's manifest) queued for nodes at once; "
     "more wait until sockets take what is queued",
     "BYTES", 0},
    {"no-encrypt", "false", 1, "authenticate connections but send in the clear", NULL, 0},
    {"kubeconfig", NULL, 0,
     "label nodes, read Dataset objects from this API server (also $KUBECONFIG; "
     "in-cluster when $KUBERNETES_SERVICE_HOST is set)",
     "FILE", 0},
    {"token-secret", NULL, 0,
     "with Kubernetes, create this Secret (key token) with the join token when "
     "missing, for the agents to mount",
     "NAME", 0},
    {"taint-until-ready", "false", 1,
     "with Kubernetes: taint nodes syncbit.io/syncing:NoSchedule until their datasets are "
     "ready",
     NULL, 0},
    {"heartbeat-ms", "1000", 0, "how often agents report; silent for 2 reports and a slack = gone",
     "MS", 0},
    {"retries", "2", 0, "retries of a source listing request", "N", 0},
    {"stall-timeout", "30", 0, "seconds without progress before a listing request is retried",
     "SECONDS", 0},
    {"etcd", NULL, 0,
     "keep the state in etcd (v3 API) and elect one leader among the schedulers sharing it; "
     "the others stand by",
     "URL[,URL...]", 0},
    {"etcd-cluster", "default", 0, "the cluster's keys in etcd: /syncbit/NAME/...", "NAME", 0},
    {"etcd-lease", "5", 0, "the leader's lease: a standby leads this long after it is gone",
     "SECONDS", 0},
    {"etcd-cacert", NULL, 0, "verify etcd's TLS certificate with this CA", "FILE", 0},
    {"etcd-cert", NULL, 0, "TLS client certificate for etcd (with --etcd-key)", "FILE", 0},
    {"etcd-key", NULL, 0, "TLS client key for etcd", "FILE", 0},
    {"etcd-user", NULL, 0, "authenticate to etcd as this user (with --etcd-password-file)", "NAME",
     0},
    {"etcd-password-file", NULL, 0, "the etcd user's password: the first line of FILE", "FILE", 0},
    CLI_SOURCE_ACCESS_KEYS,
    CLI_SOURCE_LIMIT_KEYS,
    {NULL, NULL, 0, NULL, NULL, 0},
};

/* The first line of --etcd-password-file into *out (heap). */
static int etcd_password(struct config *cfg, char **out)
{
	const char *f = config_get(cfg, "etcd-password-file");
	struct buf b = BUF_INIT;
	*out = NULL;
	if (!f)
		return 0;
	int rc = buf_read_file(f, 4096, &b);
	if (rc < 0) {
		cli_error("scheduler: --etcd-password-file %s: %s", f, sb_strerror(rc));
		buf_close(&b);
		return EXIT_USAGE;
	}
	const char *p = buf_cstr(&b);
	*out = xstrndup(p, strcspn(p, "\r\n"));
	sodium_memzero(b.ptr, b.len);
	buf_close(&b);
	return 0;
}

int cmd_scheduler(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, no_encrypt = 0, taint = 0;
	uint64_t refresh, heartbeat, retries, stall, linger, lease, assign_queue;
	char *data = NULL, *detail = NULL, *password = NULL;
	if ((rc = cli_parse(&cfg, "scheduler", argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 0) {
		cli_error("scheduler takes no arguments");
		cli_usage("scheduler");
		goto out;
	}
	if (config_get_u64(&cfg, "refresh", 0, 30 * 86400, &refresh) < 0 ||
	    config_get_u64(&cfg, "heartbeat-ms", 100, 60000, &heartbeat) < 0 ||
	    config_get_u64(&cfg, "pull-linger", 0, 30 * 86400, &linger) < 0 ||
	    config_get_u64(&cfg, "retries", 0, 100, &retries) < 0 ||
	    config_get_u64(&cfg, "stall-timeout", 1, 3600, &stall) < 0 ||
	    config_get_u64(&cfg, "etcd-lease", 2, 600, &lease) < 0 ||
	    config_get_size(&cfg, "assign-queue", 1u << 20, 1ull << 40, &assign_queue) < 0 ||
	    config_get_bool(&cfg, "no-encrypt", &no_encrypt) < 0 ||
	    config_get_bool(&cfg, "taint-until-ready", &taint) < 0) {
		cli_error("%s", cfg.error);
		goto out;
	}
	if ((rc = etcd_password(&cfg, &password)))
		goto out;
	if (!config_get(&cfg, "etcd-cert") != !config_get(&cfg, "etcd-key")) {
		cli_error("scheduler: --etcd-cert and --etcd-key go together");
		rc = EXIT_USAGE;
		goto out;
	}
	if (config_get(&cfg, "etcd-user") && !password) {
		cli_error("scheduler: --etcd-user needs --etcd-password-file");
		rc = EXIT_USAGE;
		goto out;
	}
	data = cli_data_dir(&cfg);
	struct sched_options o = {
	    .listen = config_get(&cfg, "listen"),
	    .data = data,
	    .http = config_get(&cfg, "http"),
	    .http_token_file = config_get(&cfg, "http-token-file"),
	    .refresh_s = (unsigned)refresh,
	    .pull_linger_ms = linger * 1000,
	    .assign_queue_max = assign_queue,
	    .heartbeat_ms = (unsigned)heartbeat,
	    .encrypt = !no_encrypt,
	    .kubeconfig = config_get(&cfg, "kubeconfig"),
	    .taint_until_ready = taint,
	    .token_secret = config_get(&cfg, "token-secret"),
	    .etcd = config_get(&cfg, "etcd"),
	    .etcd_cacert = config_get(&cfg, "etcd-cacert"),
	    .etcd_cert = config_get(&cfg, "etcd-cert"),
	    .etcd_key = config_get(&cfg, "etcd-key"),
	    .etcd_user = config_get(&cfg, "etcd-user"),
	    .etcd_password = password,
	    .etcd_cluster = config_get(&cfg, "etcd-cluster"),
	    .etcd_lease_s = (unsigned)lease,
	};
	source_options_default(&o.src);
	if ((rc = cli_source_access(&cfg, &o.src)) || (rc = cli_source_limits(&cfg, &o.src)))
		goto out;
	o.src.retries = (int)retries;
	o.src.stall_seconds = (unsigned)stall;
	if (sched_run(&o, &detail) < 0) {
		cli_error("scheduler: %s", detail ? detail : "cannot start");
		rc = EXIT_FAIL;
	} else {
		rc = EXIT_OK;
	}
out:
	if (password) {
		sodium_memzero(password, strlen(password));
		free(password);
	}
	free(detail);
	free(data);
	free(pos);
	config_close(&cfg);
	return rc;
}
