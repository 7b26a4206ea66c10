#include "scheduler/sched.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/admit.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/version.h"
#include "scheduler/api.h"
#include "scheduler/ha.h"
#include "scheduler/hold.h"
#include "scheduler/kube_sched.h"
#include "scheduler/listing.h"
#include "scheduler/pull.h"
#include "scheduler/server.h"

/* A refresh listing of one dataset; dropped when the dataset changed
 * meanwhile. */
struct refresh {
	char *name;
	uint64_t generation;
};

static struct cluster_dataset *set_version(struct sched *s, const char *name, const char *source,
					   const struct assign_label *sel, size_t nsel,
					   uint32_t block_size, const struct filter *filter,
					   struct sched_version *v)
{
	struct cluster_dataset *d = cluster_dataset_find(&s->cluster, name);
	struct cluster_version *cur = d ? d->current : NULL, *cv;
	char *src = xstrdup(source); /* source may live in v, which may be freed here */
	if (cur && !memcmp(cur->v->id.b, v->id.b, HASH_LEN)) {
		version_free(v);
		cv = cur;
	} else {
		uint32_t carried = cur ? version_carry_over(v, cur->v) : 0;
		char hex[HASH_HEX_LEN + 1];
		hash_to_hex(&v->id, hex);
		log_with(LOG_INFO, LOG_KV({"dataset", name}),
			 "dataset %s: version %.12s, %u %s, %u %s carried over", name, hex,
			 v->nblocks, progress_noun(v->nblocks, "block", "blocks"), carried,
			 progress_noun(carried, "hash", "hashes"));
		cv = cluster_version_add(&s->cluster, v);
	}
	d = cluster_dataset_define(&s->cluster, name, src, sel, nsel, block_size, filter, cv);
	free(src);
	return d;
}

struct cluster_dataset *sched_set_version(struct sched *s, const char *name, const char *source,
					  const struct assign_label *sel, size_t nsel,
					  uint32_t block_size, struct sched_version *v)
{
	return set_version(s, name, source, sel, nsel, block_size, NULL, v);
}

struct cluster_dataset *sched_apply_filtered(struct sched *s, const char *name, const char *source,
					     const struct assign_label *sel, size_t nsel,
					     uint32_t block_size, const struct filter *filter,
					     struct sched_version *v)
{
	struct cluster_dataset *d = set_version(s, name, source, sel, nsel, block_size, filter, v);
	server_reconcile(s);
	return d;
}

struct cluster_dataset *sched_apply_version(struct sched *s, const char *name, const char *source,
					    const struct assign_label *sel, size_t nsel,
					    uint32_t block_size, struct sched_version *v)
{
	return sched_apply_filtered(s, name, source, sel, nsel, block_size, NULL, v);
}

static void refresh_listed(struct sched *s, int status, const char *detail, struct sched_version *v,
			   void *arg)
{
	struct refresh *r = arg;
	struct cluster_dataset *d = cluster_dataset_find(&s->cluster, r->name);
	if (d)
		d->listing = 0;
	if (!d || d->generation != r->generation || s->stopping) {
		version_free(v);
	} else if (status < 0) {
		log_limited_with(LOG_WARN, LOG_KV({"dataset", d->name}, {"error", detail}),
				 "dataset %s: refresh: %s", d->name, detail);
		free(d->error);
		d->error = xstrdup(detail);
	} else {
		free(d->error);
		d->error = NULL;
		if (d->current && !memcmp(d->current->v->id.b, v->id.b, HASH_LEN)) {
			version_free(v);
		} else {
			log_with(LOG_INFO, LOG_KV({"dataset", d->name}),
				 "dataset %s: the source changed", d->name);
			sched_apply_version(s, d->name, d->source, d->selector, d->nselector,
					    d->block_size, v);
		}
	}
	free(r->name);
	free(r);
}

uint32_t sched_format_of(struct sched *s, const char *name)
{
	const struct cluster_dataset *d = cluster_dataset_find(&s->cluster, name);
	return d && d->current ? d->current->v->m->format : MANIFEST_FORMAT;
}

static void refresh_all(uv_timer_t *t)
{
	struct sched *s = t->data;
	for (size_t i = 0; i < s->cluster.ndatasets; i++) {
		struct cluster_dataset *d = s->cluster.datasets[i];
		if (d->listing)
			continue;
		struct refresh *r = xcalloc(1, sizeof *r);
		char *detail = NULL;
		r->name = xstrdup(d->name);
		r->generation = d->generation;
		if (listing_start(s, d->source, d->block_size, sched_format_of(s, d->name),
				  &d->filter, refresh_listed, r, NULL, &detail) < 0) {
			log_limited_with(LOG_WARN, LOG_KV({"dataset", d->name}, {"error", detail}),
					 "dataset %s: refresh: %s", d->name, detail);
			free(detail);
			free(r->name);
			free(r);
			continue;
		}
		d->listing = 1;
	}
}

static void liveness(uv_timer_t *t);

/* After the poll of the iteration the liveness timer fired in: what the
 * nodes sent while the loop was busy (a long reconcile, this process not
 * scheduled) has been read, so a busy scheduler does not take its nodes
 * for silent. The timer is set again for the next node that may fall
 * silent, or a quarter heartbeat. */
static void liveness_judge(uv_check_t *h)
{
	struct sched *s = h->data;
	uv_check_stop(&s->liveness_check);
	uv_idle_stop(&s->liveness_poll);
	uint64_t next = server_check_liveness(s);
	pull_expire(s);
	hold_tick(s);
	if (!s->stopping)
		uv_timer_start(&s->liveness, liveness, next ? next : 1, 0);
}

static void liveness_idle(uv_idle_t *h)
{
}

static void liveness(uv_timer_t *t)
{
	struct sched *s = t->data;
	uv_idle_start(&s->liveness_poll, liveness_idle); /* poll without waiting */
	uv_check_start(&s->liveness_check, liveness_judge);
}

static void flush(uv_timer_t *t)
{
	static unsigned rounds;
	struct sched *s = t->data;
	cluster_flush(&s->cluster);
	/* Assigns to many nodes at once (a join burst, a new dataset) queue
	 * a manifest per node; once sent, give the freed heap back to the
	 * system instead of keeping the burst's peak for good. */
	if (++rounds % SCHED_TRIM_FLUSHES == 0)
		malloc_trim(0);
}

static void stop(struct sched *s)
{
	if (s->stopping)
		return;
	s->stopping = 1;
	log_info("scheduler stopping");
	if (s->ha && s->ha->leader)
		cluster_flush(&s->cluster); /* while the writes still hold */
	ha_stop(s->ha);
	uv_close((uv_handle_t *)&s->liveness, NULL);
	uv_close((uv_handle_t *)&s->liveness_poll, NULL);
	uv_close((uv_handle_t *)&s->liveness_check, NULL);
	uv_close((uv_handle_t *)&s->refresh, NULL);
	uv_close((uv_handle_t *)&s->flush, NULL);
	uv_close((uv_handle_t *)&s->reconcile, NULL);
	uv_close((uv_handle_t *)&s->hashes, NULL);
	uv_close((uv_handle_t *)&s->pace, NULL);
	uv_close((uv_handle_t *)&s->sigint, NULL);
	uv_close((uv_handle_t *)&s->sigterm, NULL);
	kube_sched_free(s->kube);
	s->kube = NULL;
	server_stop(s);
	api_stop(s);
	listing_cancel_all(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
	stop(h->data);
}

static int open_state(struct sched *s, char **detail)
{
	const struct sched_options *o = s->o;
	char *token = path_join(o->data, "join-token");
	char *key = path_join(o->data, SCHED_KEY_FILE);
	char *dir = path_join(o->data, "sched");
	char *why = NULL;
	int rc = path_mkdirs(o->data, 0700);
	if (rc < 0)
		*detail = xasprintf("--data %s: %s", o->data, sb_strerror(rc));
	else if (o->etcd && (rc = ha_open(s, &s->ha, detail)) < 0)
		; /* *detail says why */
	else if ((rc = secure_token_init(token, &s->token, &why)) < 0)
		*detail = xasprintf("%s: %s", token, why ? why : sb_strerror(rc));
	else if ((rc = secure_keypair_init(key, &s->key, NULL, &why)) < 0)
		*detail = xasprintf("%s: %s", key, why ? why : sb_strerror(rc));
	else if (!s->ha && (rc = cluster_open(&s->cluster, dir)) < 0)
		*detail = xasprintf("%s: %s", dir,
				    rc == -EBUSY ? "another scheduler uses this data directory"
						 : sb_strerror(rc));
	free(why);
	free(token);
	free(key);
	free(dir);
	return rc;
}

static void start_timers(struct sched *s)
{
	/* Set again after every check for the next node that may fall silent
	 * (scheduler/server.c), at least four times a heartbeat. */
	uv_timer_start(&s->liveness, liveness, s->o->heartbeat_ms / 4, 0);
	uv_timer_start(&s->flush, flush, CLUSTER_FLUSH_MS, CLUSTER_FLUSH_MS);
	if (s->o->refresh_s)
		uv_timer_start(&s->refresh, refresh_all, (uint64_t)s->o->refresh_s * 1000,
			       (uint64_t)s->o->refresh_s * 1000);
	uv_signal_start(&s->sigint, on_signal, SIGINT);
	uv_signal_start(&s->sigterm, on_signal, SIGTERM);
}

static int start_kube(struct sched *s, char **detail)
{
	struct kube_config kc;
	int rc = kube_config_load(s->o->kubeconfig, &kc, detail);
	if (rc <= 0)
		return rc;
	rc = kube_sched_new(s, &kc, s->o->taint_until_ready, s->o->token_secret, &s->kube);
	if (rc < 0)
		*detail = xasprintf("kubernetes: %s", sb_strerror(rc));
	kube_config_close(&kc);
	return rc;
}

static int start(struct sched *s, char **detail)
{
	int rc = open_state(s, detail);
	uv_timer_init(&s->loop, &s->liveness);
	uv_idle_init(&s->loop, &s->liveness_poll);
	uv_check_init(&s->loop, &s->liveness_check);
	uv_timer_init(&s->loop, &s->refresh);
	uv_timer_init(&s->loop, &s->flush);
	uv_timer_init(&s->loop, &s->reconcile);
	uv_timer_init(&s->loop, &s->hashes);
	uv_timer_init(&s->loop, &s->pace);
	s->pace_tail = &s->pace_head;
	uv_signal_init(&s->loop, &s->sigint);
	uv_signal_init(&s->loop, &s->sigterm);
	s->liveness_poll.data = s->liveness_check.data = s;
	s->liveness.data = s->refresh.data = s->flush.data = s->reconcile.data = s->hashes.data =
	    s->pace.data = s;
	s->sigint.data = s->sigterm.data = s;
	if (rc < 0)
		return rc;
	if (!s->ha)
		hold_start(s);
	if ((rc = server_start(s, detail)) < 0)
		return rc;
	if (s->o->http && s->o->http[0] && (rc = api_start(s, detail)) < 0)
		return rc;
	if ((rc = start_kube(s, detail)) < 0)
		return rc;
	start_timers(s);
	if (s->ha)
		ha_start(s->ha);
	char fp[SECURE_FINGERPRINT_LEN];
	secure_key_fingerprint(s->key.pub, fp);
	log_info("syncbit %s (%s) scheduler: listening on %s, http %s, data %s, key %s; %zu %s, "
		 "%zu %s known",
		 SYNCBIT_VERSION, syncbit_commit(), s->o->listen,
		 s->o->http && s->o->http[0] ? s->o->http : "off", s->o->data, fp,
		 s->cluster.ndatasets, progress_noun(s->cluster.ndatasets, "dataset", "datasets"),
		 s->cluster.nnodes, progress_noun(s->cluster.nnodes, "node", "nodes"));
	return 0;
}

int sched_elected(struct sched *s)
{
	struct state *st;
	state_open_etcd(s->ha->e, s->ha->state_prefix, &s->ha->fence, &st);
	int rc = cluster_open_state(&s->cluster, st);
	if (rc < 0)
		return rc;
	/* Agents come back within a few reconnect attempts and re-report in
	 * their first heartbeats. */
	hold_start(s);
	log_info("leading with the state from etcd: %zu %s, %zu %s known", s->cluster.ndatasets,
		 progress_noun(s->cluster.ndatasets, "dataset", "datasets"), s->cluster.nnodes,
		 progress_noun(s->cluster.nnodes, "node", "nodes"));
	return 0;
}

void sched_deposed(struct sched *s)
{
	s->deposed = 1;
	stop(s);
}

int sched_init(struct sched *s, const struct sched_options *o, char **detail)
{
	memset(s, 0, sizeof *s);
	*detail = NULL;
	s->o = o;
	uv_loop_init(&s->loop);
	int rc = start(s, detail);
	if (rc < 0) {
		stop(s);
		uv_run(&s->loop, UV_RUN_DEFAULT);
		sched_close(s);
	}
	return rc;
}

void sched_stop(struct sched *s)
{
	stop(s);
}

void sched_close(struct sched *s)
{
	if (uv_loop_close(&s->loop) != 0)
		log_warn("scheduler: event loop still had handles at exit");
	hold_clear(s);
	cluster_close(&s->cluster);
	ha_free(s->ha);
	s->ha = NULL;
	sodium_memzero(&s->token, sizeof s->token);
	secure_keypair_close(&s->key);
}

int sched_run(const struct sched_options *o, char **detail)
{
	struct sched *s = xcalloc(1, sizeof *s);
	admit_fd_limit_raise(NULL);
	int rc = sched_init(s, o, detail);
	if (rc == 0) {
		uv_run(&s->loop, UV_RUN_DEFAULT);
		if (s->deposed) {
			rc = SB_EDENIED;
			*detail = xstrdup("another scheduler leads now; started again, this one "
					  "stands by");
		}
		sched_close(s);
	}
	free(s);
	return rc;
}
