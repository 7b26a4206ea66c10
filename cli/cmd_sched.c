/* syncbit scheduler: run the cluster scheduler until SIGINT or SIGTERM. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "scheduler/sched.h"

static const struct config_key sched_keys[] = {
    CLI_COMMON_KEYS,
    {"listen", "0.0.0.0:7400", 0, "HOST:PORT for agents and admin commands"},
    {"http", NULL, 0, "HOST:PORT for /healthz, /api/v1/... and /metrics"},
    {"refresh", "300", 0, "seconds between re-listings of every source (0: never)"},
    {"no-encrypt", "false", 1, "authenticate connections but send in the clear"},
    {"kubeconfig", NULL, 0,
     "FILE: label nodes, read Dataset objects from this API server (also $KUBECONFIG; "
     "in-cluster when $KUBERNETES_SERVICE_HOST is set)"},
    {"token-secret", NULL, 0,
     "NAME: with Kubernetes, create this Secret (key token) with the join token when "
     "missing, for the agents to mount"},
    {"taint-until-ready", "false", 1,
     "with Kubernetes: taint nodes syncbit.io/syncing:NoSchedule until their datasets are "
     "ready"},
    {"heartbeat-ms", "1000", 0, "how often agents report; 3 missed reports = gone"},
    {"retries", "2", 0, "retries of a source listing request"},
    {"stall-timeout", "30", 0, "seconds without progress before a listing request is retried"},
    CLI_SOURCE_ACCESS_KEYS,
    CLI_SOURCE_LIMIT_KEYS,
    {NULL, NULL, 0, NULL},
};

static const char *sched_usage = "scheduler --listen HOST:PORT --data DIR [--http HOST:PORT] "
				 "[--refresh SECONDS] [--no-encrypt] [--s3-endpoint URL] ...";

int cmd_scheduler(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, no_encrypt = 0, taint = 0;
	uint64_t refresh, heartbeat, retries, stall;
	char *data = NULL, *detail = NULL;
	if ((rc = cli_parse(&cfg, sched_keys, sched_usage, argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 0) {
		cli_error("scheduler takes no arguments");
		fprintf(stderr, "usage: syncbit %s\n", sched_usage);
		goto out;
	}
	if (config_get_u64(&cfg, "refresh", 0, 30 * 86400, &refresh) < 0 ||
	    config_get_u64(&cfg, "heartbeat-ms", 100, 60000, &heartbeat) < 0 ||
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
	    .refresh_s = (unsigned)refresh,
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
