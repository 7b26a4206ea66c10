/* syncbit daemon, and the commands that ask the local agent over its unix
 * socket: status, ready NAME, pull NAME. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/daemon.h"
#include "agent/mirror.h"
#include "cli/cli.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/io.h"
#include "common/jsonfmt.h"
#include "common/log.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/source/oci_doc.h"

#define AGENT_REPLY_MAX (16u << 20)

#define DAEMON_GRACE_DEFAULT "120"

const struct config_key cli_daemon_keys[] = {
    CLI_SERVICE_COMMON_KEYS,
    {"scheduler", NULL, 0,
     "the scheduler's address; with several schedulers on etcd, all of them, comma-separated (the "
     "leader is followed)",
     "HOST:PORT[,...]", 0},
    {"listen", "0.0.0.0:7401", 0, "address for peers", "HOST:PORT", 0},
    {"advertise", NULL, 0,
     "the address peers dial (default: --listen; on 0.0.0.0, $POD_IP or $HOST_IP, else the "
     "address the scheduler sees)",
     "HOST:PORT", 0},
    {"target", NULL, 0, "datasets appear at TARGET/NAME", "DIR", 0},
    {"node", NULL, 0, "node name (default: $NODE_NAME, else the host name)", "NAME", 0},
    {"labels", "", 0, "labels matched by dataset selectors", "k=v[,k=v]", 0},
    {"token-file", NULL, 0, "the cluster's join token", "FILE", 0},
    {"socket", NULL, 0, "unix socket for the CLI (default DATA/agent.sock)", "PATH", 0},
    {"http", NULL, 0, "address for /healthz, /readyz and /metrics", "HOST:PORT", 0},
    {"scheduler-grace", DAEMON_GRACE_DEFAULT, 0,
     "/healthz fails once the scheduler has been unreachable or refusing this long (0: "
     "never)",
     "SECONDS", 0},
    {"registry-mirror", NULL, 0,
     "serve the oci:// datasets published here as a read-only registry mirror "
     "(docs/IMAGES.md)",
     "HOST:PORT", 0},
    {"registry-mirror-wait", "30", 0,
     "a manifest or blob of an image still being fetched here is waited for while bytes of "
     "its dataset keep arriving, until none arrived for this long, then 404 (0: 404 at once; "
     "an hour at most in all); the blob waited for is fetched first",
     "SECONDS", 0},
    {"registry-mirror-pull", "false", 1,
     "a manifest of an image no dataset here holds is pulled through the cluster on demand "
     "(oci://NS/NAME:TAG, NS from containerd's ?ns=), instead of a 404",
     NULL, 0},
    {"registry-mirror-pull-from", NULL, 0,
     "with --registry-mirror-pull: only from these registries (a host without a port: any "
     "of its ports; default: every registry containerd asks for)",
     "REGISTRY[,...]", 0},
    {"registry-mirror-pull-wait", "30", 0,
     "with --registry-mirror-pull: how long a request waits for the pulled manifest, then "
     "404 (the pull goes on)",
     "SECONDS", 0},
    {"registry-mirror-platform", NULL, 0,
     "with --registry-mirror-pull: the platform pulled from an image index (default: this "
     "node's, e.g. linux/amd64)",
     "OS/ARCH[/VARIANT]", 0},
    {"kubeconfig", NULL, 0,
     "node labels and readiness gates from this API server (also $KUBECONFIG; "
     "in-cluster when $KUBERNETES_SERVICE_HOST is set)",
     "FILE", 0},
    {"no-encrypt", "false", 1, "authenticate peers but send blocks in the clear", NULL, 0},
    {"cache-size", "0", 0, "evict unpinned blocks above this size (0: no limit)", "SIZE", 0},
    {"jobs", "2", 0, "origin reads in flight (few: each node reads a share of the origin)", "N",
     'j'},
    CLI_SOURCE_ACCESS_KEYS,
    {NULL, NULL, 0, NULL, NULL, 0},
};

/* status takes the flags of both its forms: the local agent's, and
 * --scheduler's (cli/cmd_admin.c). */
const struct config_key cli_status_keys[] = {
    CLI_COMMON_KEYS,
    {"socket", NULL, 0, "the local agent's unix socket (default DATA/agent.sock)", "PATH", 0},
    {"json", "false", 1, "print JSON as the last line", NULL, 0},
    {"scheduler", NULL, 0, "ask the scheduler for the cluster's status instead", "HOST:PORT", 0},
    {"token-file", NULL, 0, "with --scheduler: the cluster's join token (DATA/join-token)", "FILE",
     0},
    {"timeout", "120", 0, "with --scheduler: seconds to wait for its answer", "SECONDS", 0},
    {"no-encrypt", "false", 1, "with --scheduler: authenticate but send in the clear", NULL, 0},
    {"watch", "false", 1,
     "keep watching: redraw on a terminal, else print the status again when it changes; "
     "stops on Ctrl-C (SIGINT) or SIGTERM",
     NULL, 'w'},
    {"interval", "2", 0, "with --watch: seconds between looks", "SECONDS", 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

#define READY_POLL_MS 500

const struct config_key cli_ready_keys[] = {
    CLI_COMMON_KEYS,
    {"socket", NULL, 0, "the local agent's unix socket (default DATA/agent.sock)", "PATH", 0},
    {"json", "false", 1, "print JSON as the last line", NULL, 0},
    {"wait", "false", 1, "block until NAME is ready here (init containers)", NULL, 0},
    {"timeout", "0", 0, "with --wait, give up after this long (0: never)", "SECONDS", 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

static char *socket_path(const struct config *cfg)
{
	const char *s = config_get(cfg, "socket");
	if (s && s[0])
		return cli_abs_path(s);
	char *data = cli_data_dir(cfg);
	char *p = xasprintf("%s/agent.sock", data);
	free(data);
	return p;
}

/* Parse "k=v,k=v" into labels; 0 or EXIT_USAGE after saying why. */
static int parse_labels(const char *s, struct daemon_label **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	char *copy = xstrdup(s), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq || eq == tok) {
			cli_error("--labels: '%s' is not k=v", tok);
			free(copy);
			return EXIT_USAGE;
		}
		*eq = '\0';
		*out = xrealloc(*out, (*n + 1) * sizeof **out);
		(*out)[*n].key = xstrdup(tok);
		(*out)[(*n)++].value = xstrdup(eq + 1);
	}
	free(copy);
	return 0;
}

/* --registry-mirror-pull and the flags that go with it into o; 0 or
 * EXIT_USAGE after saying why. */
static int check_mirror_pull(const struct config *cfg, struct daemon_options *o, int on)
{
	const char *from = config_get(cfg, "registry-mirror-pull-from");
	const char *platform = config_get(cfg, "registry-mirror-platform");
	char *why = NULL;
	struct oci_platform p;
	if (!on && ((from && from[0]) || (platform && platform[0]))) {
		cli_error("--registry-mirror-pull-from and --registry-mirror-platform go with "
			  "--registry-mirror-pull");
		return EXIT_USAGE;
	}
	if (on && !o->registry_mirror) {
		cli_error("--registry-mirror-pull needs --registry-mirror HOST:PORT");
		return EXIT_USAGE;
	}
	if (from && mirror_pull_check_from(from, &why) < 0) {
		cli_error("--registry-mirror-pull-from: %s", why);
		free(why);
		return EXIT_USAGE;
	}
	if (platform && platform[0] && oci_platform_parse(platform, &p) < 0) {
		cli_error("--registry-mirror-platform: \"%s\" is not os/arch[/variant]", platform);
		return EXIT_USAGE;
	}
	o->mirror_pull = on;
	o->mirror_pull_from = from && from[0] ? from : NULL;
	o->mirror_platform = platform && platform[0] ? platform : NULL;
	return 0;
}

int cmd_daemon(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, noenc = 0;
	uint64_t cache_size = 0, jobs = 2, grace = 0, mirror_wait = 0, pull_wait = 0;
	int mirror_pull = 0;
	struct daemon_options o = {0};
	char *data = NULL, *target = NULL, *sock = NULL, *token = NULL, *detail = NULL;
	char host[256];

	if ((rc = cli_parse(&cfg, "daemon", argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos) {
		cli_error("daemon takes no arguments");
		goto out;
	}
	if (config_get_bool(&cfg, "no-encrypt", &noenc) < 0 ||
	    config_get_size(&cfg, "cache-size", 0, UINT64_MAX, &cache_size) < 0 ||
	    config_get_u64(&cfg, "jobs", 1, 64, &jobs) < 0 ||
	    config_get_u64(&cfg, "scheduler-grace", 0, 30 * 86400, &grace) < 0 ||
	    config_get_u64(&cfg, "registry-mirror-wait", 0, 3600, &mirror_wait) < 0 ||
	    config_get_bool(&cfg, "registry-mirror-pull", &mirror_pull) < 0 ||
	    config_get_u64(&cfg, "registry-mirror-pull-wait", 1, 3600, &pull_wait) < 0) {
		cli_error("%s", cfg.error);
		goto out;
	}
	static const char *const required[] = {"scheduler", "target", "token-file"};
	for (size_t i = 0; i < sizeof required / sizeof *required; i++)
		if (!config_get(&cfg, required[i]) || !config_get(&cfg, required[i])[0]) {
			cli_error("daemon needs --%s", required[i]);
			cli_usage("daemon");
			goto out;
		}
	if (parse_labels(config_get(&cfg, "labels"), &o.labels, &o.nlabels))
		goto out;
	data = cli_data_dir(&cfg);
	target = cli_abs_path(config_get(&cfg, "target"));
	token = cli_abs_path(config_get(&cfg, "token-file"));
	sock = socket_path(&cfg);
	if (gethostname(host, sizeof host) < 0)
		snprintf(host, sizeof host, "node");
	host[sizeof host - 1] = '\0';
	o.scheduler = config_get(&cfg, "scheduler");
	o.listen = config_get(&cfg, "listen");
	o.advertise = config_get(&cfg, "advertise");
	o.data = data;
	o.target = target;
	const char *node = config_get(&cfg, "node"), *env_node = getenv("NODE_NAME");
	o.node = node ? node : env_node && env_node[0] ? env_node : host;
	o.kubeconfig = config_get(&cfg, "kubeconfig");
	o.token_file = token;
	o.socket = sock;
	o.http = config_get(&cfg, "http");
	o.registry_mirror = config_get(&cfg, "registry-mirror");
	if (o.registry_mirror && !o.registry_mirror[0])
		o.registry_mirror = NULL;
	o.mirror_wait_ms = mirror_wait * 1000;
	if (check_mirror_pull(&cfg, &o, mirror_pull))
		goto out;
	o.mirror_pull_wait_ms = pull_wait * 1000;
	o.encrypt = !noenc;
	o.cache_size = cache_size;
	o.scheduler_grace_ms = grace * 1000;
	source_options_default(&o.src);
	if ((rc = cli_source_access(&cfg, &o.src)))
		goto out;
	rc = EXIT_USAGE;
	o.src.jobs = (int)jobs;
	if (!o.node[0] || strlen(o.node) > 255) {
		cli_error("--node: a name of 1 to 255 characters");
		goto out;
	}
	int err = daemon_run(&o, &detail);
	if (err < 0) {
		cli_error("daemon: %s", detail ? detail : sb_strerror(err));
		rc = EXIT_FAIL;
	} else {
		rc = EXIT_OK;
	}
out:
	for (size_t i = 0; i < o.nlabels; i++) {
		free(o.labels[i].key);
		free(o.labels[i].value);
	}
	free(o.labels);
	free(detail);
	free(data);
	free(target);
	free(sock);
	free(token);
	free(pos);
	config_close(&cfg);
	return rc;
}

/* ---- talking to the local agent ---- */

struct agent_conn {
	int fd;
	struct buf in;
};

static int agent_connect(const char *path, struct agent_conn *a)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memset(a, 0, sizeof *a);
	if (strlen(path) >= sizeof sa.sun_path)
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (a->fd < 0)
		return -errno;
	if (connect(a->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = -errno;
		close(a->fd);
		return e;
	}
	return 0;
}

static int agent_send(struct agent_conn *a, json_t *req)
{
	char *s = jsonfmt_dumps(req);
	json_decref(req);
	char *line = xasprintf("%s\n", s);
	free(s);
	int rc = io_write_full(a->fd, line, strlen(line));
	free(line);
	return rc;
}

/* Next JSON line from the agent (*out owned by the caller). */
static int agent_recv(struct agent_conn *a, json_t **out)
{
	for (;;) {
		char *nl = a->in.len ? memchr(a->in.ptr, '\n', a->in.len) : NULL;
		if (nl) {
			*nl = '\0';
			json_error_t e;
			*out = json_loads((const char *)a->in.ptr, 0, &e);
			size_t used = (size_t)(nl + 1 - (char *)a->in.ptr);
			memmove(a->in.ptr, nl + 1, a->in.len - used);
			a->in.len -= used;
			return *out ? 0 : SB_EPROTO;
		}
		if (a->in.len > AGENT_REPLY_MAX)
			return SB_ETOOBIG;
		buf_reserve(&a->in, 65536);
		ssize_t n = read(a->fd, a->in.ptr + a->in.len, a->in.cap - a->in.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : SB_ETRUNCATED;
		a->in.len += (size_t)n;
	}
}

static void agent_close(struct agent_conn *a)
{
	close(a->fd);
	buf_close(&a->in);
}

/* One request, one reply. Prints the error and returns EXIT_FAIL on failure. */
static int agent_call(const char *path, json_t *req, json_t **reply)
{
	struct agent_conn a;
	int rc = agent_connect(path, &a);
	if (rc < 0) {
		json_decref(req);
		cli_error("cannot reach the agent at %s: %s (is syncbit daemon running?)", path,
			  sb_strerror(rc));
		return EXIT_FAIL;
	}
	if ((rc = agent_send(&a, req)) < 0 || (rc = agent_recv(&a, reply)) < 0) {
		cli_error("agent at %s: %s", path, sb_strerror(rc));
		agent_close(&a);
		return EXIT_FAIL;
	}
	agent_close(&a);
	return 0;
}

int cli_agent_request(const struct config *cfg, json_t *req, json_t **reply)
{
	char *sock = socket_path(cfg);
	struct agent_conn a;
	int rc = agent_connect(sock, &a);
	*reply = NULL;
	if (rc < 0) {
		log_info("no agent answers at %s (%s)", sock, sb_strerror(rc));
		json_decref(req);
		free(sock);
		return CLI_NO_AGENT;
	}
	if ((rc = agent_send(&a, req)) < 0 || (rc = agent_recv(&a, reply)) < 0) {
		cli_error("agent at %s: %s", sock, sb_strerror(rc));
		rc = EXIT_FAIL;
	}
	agent_close(&a);
	free(sock);
	return rc;
}

static void print_json_line(json_t *o)
{
	char *s = jsonfmt_dumps(o);
	printf("%s\n", s);
	free(s);
}

/* The node, its link to the scheduler (and why it is down), its cache. */
static void print_header(const json_t *st)
{
	json_t *sched = json_object_get(st, "scheduler"), *cache = json_object_get(st, "cache");
	const char *err = json_string_value(json_object_get(sched, "error"));
	double down = json_number_value(json_object_get(sched, "seconds_disconnected"));
	char d[32];
	printf("node %s, scheduler %s ", json_string_value(json_object_get(st, "node")),
	       json_string_value(json_object_get(sched, "addr")));
	if (json_is_true(json_object_get(sched, "connected")))
		printf("(connected)\n");
	else
		printf("(not connected for %s: %s)\n",
		       progress_fmt_duration((uint64_t)down, d, sizeof d),
		       err ? err : "not registered yet");
	if (cache) {
		char u[32], p[32];
		printf(
		    "cache %s, %s pinned\n",
		    progress_fmt_bytes((uint64_t)json_integer_value(json_object_get(cache, "used")),
				       u, sizeof u),
		    progress_fmt_bytes(
			(uint64_t)json_integer_value(json_object_get(cache, "pinned")), p,
			sizeof p));
	}
}

void cli_print_agent_status(const json_t *st)
{
	size_t i;
	json_t *s;
	print_header(st);
	printf("%-24s %-10s %7s %10s %10s %10s %10s\n", "DATASET", "STATE", "DONE", "SIZE",
	       "ORIGIN", "PEERS", "REUSED");
	json_array_foreach(json_object_get(st, "datasets"), i, s)
	{
		char b[4][32];
		double bytes = (double)json_integer_value(json_object_get(s, "bytes"));
		double have = (double)json_integer_value(json_object_get(s, "bytes_have"));
		printf("%-24s %-10s %6.1f%% %10s %10s %10s %10s\n",
		       json_string_value(json_object_get(s, "name")),
		       json_string_value(json_object_get(s, "state")),
		       bytes > 0 ? 100.0 * have / bytes : 100.0,
		       progress_fmt_bytes((uint64_t)bytes, b[0], sizeof b[0]),
		       progress_fmt_bytes(
			   (uint64_t)json_integer_value(json_object_get(s, "bytes_from_origin")),
			   b[1], sizeof b[1]),
		       progress_fmt_bytes(
			   (uint64_t)json_integer_value(json_object_get(s, "bytes_from_peers")),
			   b[2], sizeof b[2]),
		       progress_fmt_bytes(
			   (uint64_t)json_integer_value(json_object_get(s, "bytes_reused")), b[3],
			   sizeof b[3]));
		json_t *rf = json_object_get(s, "origin_refetch");
		json_int_t bad = json_integer_value(json_object_get(rf, "bad_peer"));
		json_int_t lonely = json_integer_value(json_object_get(rf, "no_peer"));
		if (bad || lonely)
			printf("  back to the origin: %lld %s a peer sent corrupt, %lld %s no peer "
			       "held\n",
			       (long long)bad, bad == 1 ? "block" : "blocks", (long long)lonely,
			       lonely == 1 ? "block" : "blocks");
		const char *src = json_string_value(json_object_get(s, "source"));
		if (json_is_true(json_object_get(s, "pulled")) && src)
			printf("  pulled through this agent: %s\n", src);
		const char *err = json_string_value(json_object_get(s, "error"));
		if (err)
			printf("  error: %s\n", err);
		const char *damage = json_string_value(json_object_get(s, "damage"));
		if (damage)
			printf("  damaged: %s\n", damage);
		const char *waiting = json_string_value(json_object_get(s, "waiting"));
		if (waiting)
			printf("  waiting: %s\n", waiting);
	}
}

int cli_agent_status(const struct config *cfg, json_t **doc, char **error)
{
	char *sock = socket_path(cfg);
	struct agent_conn a;
	*doc = NULL;
	*error = NULL;
	int rc = agent_connect(sock, &a);
	if (rc < 0) {
		*error = xasprintf("cannot reach the agent at %s: %s (is syncbit daemon running?)",
				   sock, sb_strerror(rc));
	} else {
		if ((rc = agent_send(&a, json_pack("{s:s}", "op", "status"))) < 0 ||
		    (rc = agent_recv(&a, doc)) < 0)
			*error = xasprintf("agent at %s: %s", sock, sb_strerror(rc));
		agent_close(&a);
	}
	free(sock);
	return rc;
}

int cmd_agent_status(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, json = 0;
	json_t *reply = NULL;
	char *sock = NULL;
	if ((rc = cli_parse(&cfg, "status", argc, argv, &pos, &npos)))
		goto out;
	if (npos) {
		cli_error("status NAME goes with --scheduler HOST:PORT (the cluster's view)");
		cli_usage("status");
		rc = EXIT_USAGE;
		goto out;
	}
	config_get_bool(&cfg, "json", &json);
	if ((rc = cli_status_watch(&cfg, NULL, json, 0)) != CLI_NO_WATCH)
		goto out;
	sock = socket_path(&cfg);
	if ((rc = agent_call(sock, json_pack("{s:s}", "op", "status"), &reply)))
		goto out;
	if (json)
		print_json_line(reply);
	else
		cli_print_agent_status(reply);
	rc = EXIT_OK;
out:
	json_decref(reply);
	free(sock);
	free(pos);
	config_close(&cfg);
	return rc;
}

/* One "ready" question to the agent, quietly: 1 ready, 0 not (reply set),
 * negative when the agent cannot be reached. */
static int ask_ready(const char *sock, const char *name, json_t **reply)
{
	struct agent_conn a;
	int rc = agent_connect(sock, &a);
	if (rc < 0)
		return rc;
	if ((rc = agent_send(&a, json_pack("{s:s, s:s}", "op", "ready", "name", name))) == 0)
		rc = agent_recv(&a, reply);
	agent_close(&a);
	if (rc < 0)
		return rc;
	return json_is_true(json_object_get(*reply, "ready"));
}

/* ready NAME --wait: ask every READY_POLL_MS until ready or the timeout
 * (0: none); the agent may not be up yet, as in an init container that
 * starts with its pod. */
static int wait_ready(const char *sock, const char *name, uint64_t timeout_s, json_t **reply)
{
	uint64_t start = uv_hrtime();
	int rc;
	char *last = NULL;
	for (;;) {
		json_decref(*reply);
		*reply = NULL;
		rc = ask_ready(sock, name, reply);
		if (rc == 1)
			break;
		char *why =
		    rc < 0 ? xasprintf("cannot reach the agent at %s: %s", sock, sb_strerror(rc))
			   : xstrdup(json_string_value(json_object_get(*reply, "reason"))
					 ?: "unknown");
		if (!last || strcmp(last, why))
			cli_note("waiting for %s: %s", name, why);
		free(last);
		last = why;
		if (timeout_s && uv_hrtime() - start >= timeout_s * 1000000000ull) {
			cli_error("%s is not ready after %llu s: %s", name,
				  (unsigned long long)timeout_s, last);
			break;
		}
		usleep(READY_POLL_MS * 1000);
	}
	free(last);
	return rc == 1 ? EXIT_OK : EXIT_FAIL;
}

int cmd_ready(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, json = 0, wait = 0;
	uint64_t timeout = 0;
	json_t *reply = NULL;
	char *sock = NULL;
	if ((rc = cli_parse(&cfg, "ready", argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 1) {
		cli_error("ready takes one dataset NAME");
		goto out;
	}
	if (config_get_bool(&cfg, "json", &json) < 0 || config_get_bool(&cfg, "wait", &wait) < 0 ||
	    config_get_u64(&cfg, "timeout", 0, UINT32_MAX, &timeout) < 0) {
		cli_error("%s", cfg.error);
		goto out;
	}
	sock = socket_path(&cfg);
	if (wait) {
		rc = wait_ready(sock, pos[0], timeout, &reply);
		if (json && reply)
			print_json_line(reply);
		goto out;
	}
	if ((rc = agent_call(sock, json_pack("{s:s, s:s}", "op", "ready", "name", pos[0]), &reply)))
		goto out;
	int ok = json_is_true(json_object_get(reply, "ready"));
	if (json)
		print_json_line(reply);
	else if (!ok)
		cli_error("%s is not ready: %s", pos[0],
			  json_string_value(json_object_get(reply, "reason")) ?: "unknown");
	rc = ok ? EXIT_OK : EXIT_FAIL;
out:
	json_decref(reply);
	free(sock);
	free(pos);
	config_close(&cfg);
	return rc;
}

/* The outcome of pull NAME from the agent's last answer o: an error line
 * when it failed, or is not assigned here at all; with --no-wait, a line
 * saying how far it is. */
static int pull_agent_result(const char *name, const char *sock, json_t *o, int json, int wait)
{
	int ready = json_is_true(json_object_get(o, "ready"));
	const char *err = json_string_value(json_object_get(o, "error"));
	const char *reason = json_string_value(json_object_get(o, "reason"));
	const json_t *assigned = json_object_get(o, "assigned");
	if (ready) {
		if (!wait && !json)
			printf("%s: ready\n", name);
		return EXIT_OK;
	}
	if (json_is_false(assigned) || (!assigned && reason && strstr(reason, "not assigned"))) {
		cli_error("pull %s: not assigned to this node (agent at %s); see 'syncbit status'",
			  name, sock);
		return EXIT_FAIL;
	}
	if (wait || (!reason && err)) {
		cli_error("pull %s: %s", name, err ? err : reason ? reason : "not ready");
		return EXIT_FAIL;
	}
	if (!json)
		printf("%s: not ready yet: %s\n", name, reason ? reason : "unknown");
	return EXIT_OK;
}

/* pull NAME: ask the agent and wait until the dataset is published here. */
int cli_pull_agent(const struct config *cfg, const char *name, int json, int wait)
{
	char *sock = socket_path(cfg);
	struct agent_conn a;
	struct progress prog;
	int rc = agent_connect(sock, &a), result = EXIT_FAIL;
	uint64_t start = progress_now_ns();
	if (rc < 0) {
		cli_error("pull %s: cannot reach the agent at %s: %s (is syncbit daemon running?)",
			  name, sock, sb_strerror(rc));
		free(sock);
		return EXIT_FAIL;
	}
	progress_init(&prog, name, 0, !json);
	uint64_t shown = 0;
	rc = agent_send(&a, json_pack("{s:s, s:s}", "op", wait ? "pull" : "ready", "name", name));
	json_t *o = NULL;
	while (rc == 0 && (rc = agent_recv(&a, &o)) == 0) {
		uint64_t bytes = (uint64_t)json_integer_value(json_object_get(o, "bytes"));
		uint64_t have = (uint64_t)json_integer_value(json_object_get(o, "bytes_have"));
		progress_set_total(&prog, bytes);
		if (have > shown) {
			progress_add(&prog, have - shown);
			shown = have;
		}
		if (!json_is_true(json_object_get(o, "progress")))
			break;
		json_decref(o);
		o = NULL;
	}
	progress_close(&prog);
	agent_close(&a);
	if (rc < 0) {
		cli_error("pull %s: agent at %s: %s", name, sock, sb_strerror(rc));
	} else {
		result = pull_agent_result(name, sock, o, json, wait);
		json_object_set_new(o, "seconds",
				    jsonfmt_seconds((double)(progress_now_ns() - start) / 1e9));
		if (json)
			print_json_line(o);
	}
	json_decref(o);
	free(sock);
	return result;
}

/* pull SOURCE through the local agent (agent/adhoc.h): the agent, its
 * peers and the scheduler's origin plan serve it, and it publishes into
 * target, which is made here first as the user who asks (the agent
 * publishes only into a directory that user owns). */
int cli_pull_source_agent(const struct config *cfg, const struct cli_agent_pull *rq,
			  json_t **result, char **error)
{
	char *sock = socket_path(cfg), *dir = NULL;
	struct agent_conn a;
	struct progress prog;
	int rc = agent_connect(sock, &a), answered = 0;
	*result = NULL;
	*error = NULL;
	if (rc < 0) {
		log_info("no agent answers at %s (%s): pulling standalone", sock, sb_strerror(rc));
		free(sock);
		return CLI_NO_AGENT;
	}
	if (rq->target) {
		if ((rc = path_mkdirs(rq->target, 0755)) < 0 ||
		    !(dir = realpath(rq->target, NULL))) {
			*error = xasprintf("%s: %s", rq->target, sb_strerror(rc < 0 ? rc : -errno));
			agent_close(&a);
			free(sock);
			return EXIT_FAIL;
		}
	}
	json_t *req = json_pack("{s:s, s:s, s:I}", "op", "pull", "source", rq->source, "block_size",
				(json_int_t)rq->block_size);
	json_object_set_new(req, "target", dir ? json_string(dir) : json_null());
	progress_init(&prog, "pull", 0, rq->progress);
	uint64_t shown = 0;
	json_t *o = NULL;
	rc = agent_send(&a, req);
	while (rc == 0 && (rc = agent_recv(&a, &o)) == 0) {
		answered = 1;
		if (!json_is_true(json_object_get(o, "progress")))
			break;
		uint64_t have = (uint64_t)json_integer_value(json_object_get(o, "bytes_have"));
		progress_set_total(&prog,
				   (uint64_t)json_integer_value(json_object_get(o, "bytes")));
		if (have > shown) {
			progress_add(&prog, have - shown);
			shown = have;
		}
		json_decref(o);
		o = NULL;
	}
	progress_close(&prog);
	agent_close(&a);
	const char *err = json_string_value(json_object_get(o, "error"));
	int status = EXIT_FAIL;
	if (rc < 0) {
		*error = xasprintf("the agent at %s: %s", sock, sb_strerror(rc));
	} else if (err && !strcmp(err, "unknown request")) {
		log_info("the agent at %s cannot pull sources (an older version): pulling "
			 "standalone",
			 sock);
		status = CLI_NO_AGENT;
	} else if (err) {
		*error = xstrdup(err);
	} else if (json_is_object(json_object_get(o, "result"))) {
		*result = json_incref(json_object_get(o, "result"));
		status = EXIT_OK;
	} else {
		*error = xasprintf("the agent at %s answered %s", sock,
				   answered ? "something else" : "nothing");
	}
	json_decref(o);
	free(dir);
	free(sock);
	return status;
}
