/* syncbit scheduler: run the cluster scheduler until SIGINT or SIGTERM. */
#include <stdio.h>
#include <stdlib.h>

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
    {"heartbeat-ms", "1000", 0, "how often agents report; 3 missed reports = gone", "MS", 0},
    {"retries", "2", 0, "retries of a source listing request", "N", 0},
    {"stall-timeout", "30", 0, "seconds without progress before a listing request is retried",
     "SECONDS", 0},
    CLI_SOURCE_ACCESS_KEYS,
    CLI_SOURCE_LIMIT_KEYS,
    {NULL, NULL, 0, NULL, NULL, 0},
};

int cmd_scheduler(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, no_encrypt = 0, taint = 0;
	uint64_t refresh, heartbeat, retries, stall, linger;
	char *data = NULL, *detail = NULL;
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
	    config_get_bool(&cfg, "no-encrypt", &no_encrypt) < 0 ||
	    config_get_bool(&cfg, "taint-until-ready", &taint) < 0) {
		cli_error("%s", cfg.error);
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
	    .heartbeat_ms = (unsigned)heartbeat,
	    .encrypt = !no_encrypt,
	    .kubeconfig = config_get(&cfg, "kubeconfig"),
	    .taint_until_ready = taint,
	    .token_secret = config_get(&cfg, "token-secret"),
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
	free(detail);
	free(data);
	free(pos);
	config_close(&cfg);
	return rc;
}
