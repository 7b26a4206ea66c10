/* The agent daemon's life cycle: setting up the cache, peers, control
 * socket, watcher, mirror and Kubernetes link, restoring the datasets
 * published before a restart, the Node's labels, and stopping on SIGTERM or
 * SIGINT. Loop thread only. */
#include "agent/daemon_int.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/adhoc.h"
#include "agent/cache.h"
#include "agent/ctl.h"
#include "agent/kube_agent.h"
#include "agent/mirror.h"
#include "agent/peer.h"
#include "agent/watch.h"
#include "common/net/admit.h"
#include "common/buf.h"
#include "common/net/conn.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/net/secure.h"
#include "common/version.h"

static char *labels_path(struct daemon *d)
{
	return xasprintf("%s/%s", d->o->data, DAEMON_LABELS_FILE);
}

void daemon_set_node_labels(struct daemon *d, json_t *labels)
{
	json_t *now = labels ? json_deep_copy(labels) : json_object();
	int first = d->labels_deadline_ms != 0;
	d->labels_deadline_ms = 0;
	if (d->node_labels && json_equal(d->node_labels, now)) {
		json_decref(now);
		return;
	}
	json_decref(d->node_labels);
	d->node_labels = now;
	char *path = labels_path(d), *tmp = xasprintf("%s.tmp", path);
	if (json_dump_file(now, tmp, JSON_COMPACT | JSON_SORT_KEYS) < 0 || rename(tmp, path) < 0)
		log_warn("%s: cannot record the node's labels", path);
	free(tmp);
	free(path);
	if (first || !d->sched_ready)
		return; /* the next registration carries them */
	log_info("node %s: its labels changed; registering again", d->o->node);
	conn_close(d->sched, 0);
}

/* With Kubernetes on, the labels last seen let the agent register at once
 * after a restart; without them it waits for the Node a while. */
static void load_node_labels(struct daemon *d)
{
	char *path = labels_path(d);
	json_t *l = json_load_file(path, 0, NULL);
	free(path);
	if (json_is_object(l)) {
		d->node_labels = l;
		return;
	}
	json_decref(l);
	d->labels_deadline_ms = uv_now(&d->loop) + DAEMON_LABELS_WAIT_MS;
}

static void stop(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = 1;
	log_info("stopping");
	uv_timer_stop(&d->reconnect);
	uv_timer_stop(&d->heartbeat);
	uv_timer_stop(&d->retry);
	if (d->sched)
		conn_close(d->sched, 0);
	kube_agent_free(d->kube);
	d->kube = NULL;
	for (size_t i = 0; i < d->nsets; i++)
		free_set(d, d->sets[i]);
	d->nsets = 0;
	peers_free(d->peers);
	d->peers = NULL;
	daemon_hb_sent_clear(d);
	ctl_free(d->ctl); /* cancels its clients' pulls */
	d->ctl = NULL;
	mirror_free(d->mirror); /* cancels its on-demand pulls */
	d->mirror = NULL;
	adhoc_free(d->adhoc);
	d->adhoc = NULL;
	watch_free(d->watch);
	d->watch = NULL;
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->reconnect, NULL);
	uv_close((uv_handle_t *)&d->heartbeat, NULL);
	uv_close((uv_handle_t *)&d->retry, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	stop(s->data);
}

/* Datasets published here before a restart stay ready (their files are in
 * place and were verified when they arrived) until the scheduler assigns
 * them again, so a restarted agent does not fail readiness probes while
 * the scheduler is away. */
static void restore_sets(struct daemon *d)
{
	char **names;
	size_t n;
	if (cache_dataset_list(d->cache, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct cache_dataset ds;
		char *want = path_join(d->o->target, names[i]);
		struct stat st;
		if (cache_dataset_get(d->cache, names[i], &ds) == 1) {
			if (!strcmp(ds.target, want) && stat(want, &st) == 0 &&
			    S_ISDIR(st.st_mode)) {
				struct dset *s = xcalloc(1, sizeof *s);
				s->d = d;
				s->name = xstrdup(names[i]);
				s->restored = 1;
				s->pub_id = ds.manifest_id;
				s->pub_source = xstrdup(ds.source ? ds.source : "");
				d->sets = xrealloc(d->sets, (d->nsets + 1) * sizeof *d->sets);
				d->sets[d->nsets++] = s;
				log_info(
				    "dataset %s: published before the restart; ready until the "
				    "scheduler says otherwise",
				    s->name);
				watch_dataset(d->watch, s->name);
			}
			cache_dataset_close(&ds);
		}
		free(want);
		free(names[i]);
	}
	free(names);
}

/* What peers dial: --advertise; else the listen address with the port the
 * kernel chose, its host taken from $POD_IP or $HOST_IP (the Downward API)
 * when it listens on every address. Left unspecified ("0.0.0.0:PORT"), the
 * scheduler fills in the address this agent connects from: an unspecified
 * host is never handed to peers. */
static char *advertised_addr(const struct daemon_options *o, int port)
{
	if (o->advertise)
		return xstrdup(o->advertise);
	const char *colon = strrchr(o->listen, ':');
	int len = colon ? (int)(colon - o->listen) : (int)strlen(o->listen);
	char *addr = xasprintf("%.*s:%d", len, o->listen, port);
	if (!conn_addr_unspecified(addr))
		return addr;
	const char *env[] = {"POD_IP", "HOST_IP"};
	for (size_t i = 0; i < 2; i++) {
		const char *ip = getenv(env[i]);
		if (ip && *ip) {
			free(addr);
			return strchr(ip, ':') ? xasprintf("[%s]:%d", ip, port)
					       : xasprintf("%s:%d", ip, port);
		}
	}
	return addr;
}

static int setup_kube(struct daemon *d, char **detail)
{
	struct kube_config kc;
	int rc = kube_config_load(d->o->kubeconfig, &kc, detail);
	if (rc <= 0)
		return rc;
	load_node_labels(d);
	rc = kube_agent_new(&d->loop, d, &kc, d->o->node, &d->kube);
	if (rc < 0)
		*detail = xasprintf("kubernetes: %s", sb_strerror(rc));
	kube_config_close(&kc);
	return rc;
}

/* This node's identity: DATA/DAEMON_KEY_FILE, made on first start. The
 * scheduler pins it to the node's name at its first registration. */
static int load_key(struct daemon *d, char **detail)
{
	char *path = path_join(d->o->data, DAEMON_KEY_FILE), *why = NULL;
	char fp[SECURE_FINGERPRINT_LEN];
	int created;
	int rc = secure_keypair_init(path, &d->key, &created, &why);
	if (rc < 0) {
		*detail = why ? why : xasprintf("%s: %s", path, sb_strerror(rc));
		why = NULL;
	} else {
		secure_key_fingerprint(d->key.pub, fp);
		log_info("node %s: %s key %s in %s", d->o->node, created ? "new" : "its", fp, path);
	}
	free(why);
	free(path);
	return rc;
}

static int setup(struct daemon *d, char **detail)
{
	char *det = NULL;
	int rc = secure_token_load(d->o->token_file, &d->token, &det);
	if (rc < 0) {
		*detail = det ? det : xasprintf("%s: %s", d->o->token_file, sb_strerror(rc));
		return rc;
	}
	if ((rc = path_mkdirs(d->o->target, 0755)) < 0) {
		*detail = xasprintf("target %s: %s", d->o->target, sb_strerror(rc));
		return rc;
	}
	if ((rc = cache_open(d->o->data, d->o->cache_size, &d->cache)) < 0) {
		*detail = xasprintf("cannot open the cache in %s: %s", d->o->data, sb_strerror(rc));
		return rc;
	}
	if ((rc = load_key(d, detail)) < 0)
		return rc;
	d->adhoc = adhoc_new(&d->loop, d, d->cache);
	struct watch_hooks wh = {.arg = d, .damaged = hook_damaged};
	watch_new(&d->loop, d->cache, &wh, &d->watch);
	restore_sets(d);
	struct peers_config pc = {.node = d->o->node,
				  .listen = d->o->listen,
				  .token = &d->token,
				  .key = &d->key,
				  .encrypt = d->o->encrypt,
				  .cache = d->cache};
	if ((rc = peers_new(&d->loop, &pc, &d->peers, detail)) < 0)
		return rc;
	peers_on_bad_block(d->peers, hook_bad_block, d->watch);
	d->advertise = advertised_addr(d->o, peers_port(d->peers));
	if ((rc = ctl_new(&d->loop, d, d->o->socket, d->o->http, &d->ctl, detail)) < 0)
		return rc;
	if (d->o->registry_mirror) {
		struct mirror_config mc = {.listen = d->o->registry_mirror,
					   .target = d->o->target,
					   .d = d,
					   .cache = d->cache,
					   .wait_ms = d->o->mirror_wait_ms,
					   .pull = d->o->mirror_pull,
					   .pull_from = d->o->mirror_pull_from,
					   .pull_platform = d->o->mirror_platform,
					   .pull_wait_ms = d->o->mirror_pull_wait_ms};
		if ((rc = mirror_new(&d->loop, &mc, &d->mirror, detail)) < 0)
			return rc;
	}
	return setup_kube(d, detail);
}

/* One line with what an operator checks first. */
static void log_started(struct daemon *d)
{
	const struct daemon_options *o = d->o;
	struct buf labels = BUF_INIT;
	for (size_t i = 0; i < o->nlabels; i++)
		buf_printf(&labels, "%s%s=%s", i ? "," : "", o->labels[i].key, o->labels[i].value);
	log_info("syncbit %s (%s) daemon: node %s, labels %s, scheduler %s, peers on %s, http "
		 "%s, socket %s, data %s, target %s",
		 SYNCBIT_VERSION, syncbit_commit(), o->node, labels.len ? buf_cstr(&labels) : "-",
		 o->scheduler, d->advertise, o->http ? o->http : "off", o->socket, o->data,
		 o->target);
	buf_close(&labels);
}

int daemon_run(const struct daemon_options *o, char **detail)
{
	struct daemon d = {
	    .o = o, .heartbeat_ms = DAEMON_HEARTBEAT_MS, .backoff_ms = DAEMON_RECONNECT_MIN_MS};
	*detail = NULL;
	log_set_field("node", o->node); /* every JSON line says which agent */
	uv_loop_init(&d.loop);
	uplink_init(&d.link, o->scheduler, uv_now(&d.loop));
	uv_timer_init(&d.loop, &d.reconnect);
	uv_timer_init(&d.loop, &d.heartbeat);
	uv_timer_init(&d.loop, &d.retry);
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	d.reconnect.data = d.heartbeat.data = d.retry.data = &d;
	d.sigterm.data = d.sigint.data = &d;
	signal(SIGPIPE, SIG_IGN);
	admit_fd_limit_raise(NULL);
	int rc = setup(&d, detail);
	if (rc == 0) {
		uv_signal_start(&d.sigterm, on_signal, SIGTERM);
		uv_signal_start(&d.sigint, on_signal, SIGINT);
		uv_timer_start(&d.retry, retry_tick, 1000, 1000);
		dial_scheduler(&d.reconnect);
		log_started(&d);
	}
	if (rc < 0)
		stop(&d);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	free(d.sets);
	free(d.advertise);
	json_decref(d.node_labels);
	cache_free(d.cache);
	secure_keypair_close(&d.key);
	if (uv_loop_close(&d.loop) != 0)
		log_warn("daemon: event loop still had handles at exit");
	return rc;
}
