/* On-demand pulls of the registry mirror (`--registry-mirror-pull`): a
 * manifest request, by tag or digest, for an image no dataset here holds
 * starts a pull of oci://NS/NAME:TAG (or @DIGEST), with ?platform= this
 * node's or the configured one, through the agent (agent/adhoc.h): the
 * scheduler lists it into a pull-<hash> dataset assigned to this node, which
 * is fetched peers first like any dataset and served from its cache objects
 * as they arrive (agent/mirror_early.c). Requests for the same image share
 * one pull; each waits for the manifest at most wait_ms, then gets a 404 so
 * containerd asks its next host (its blob fetcher moves on after a 404
 * only). A pull that failed is answered with a 404 at once for
 * MIRROR_PULL_RETRY_MS, and a repository whose pull has already kept a
 * request waiting in vain is not waited for again until it ends. Loop
 * thread only. */
#include "agent/mirror_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "agent/adhoc.h"
#include "agent/daemon.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/net/httpd.h"
#include "common/uri.h"

#define MIRROR_PULLS_MAX	 64    /* pulls running or remembered */
#define MIRROR_PULL_WAITERS_MAX	 128   /* requests parked for pulls */
#define MIRROR_PULL_RETRY_MS	 10000 /* a failed pull is not started again sooner */
#define MIRROR_PULL_PLATFORM_MAX 96

enum pull_state { PULL_RUNNING, PULL_DONE, PULL_FAILED };

/* One image pulled on demand. */
struct pull_entry {
	struct pull_entry *next;
	struct mirror_pull *mp;
	char *source; /* oci://NS/NAME:TAG?platform=P */
	char registry[OCI_NAME_HOST_MAX + 1];
	char repo[OCI_NAME_REPO_MAX + 1];
	enum pull_state state;
	struct adhoc_pull *ap; /* RUNNING */
	char *dataset;	       /* DONE */
	char *error;	       /* FAILED */
	uint64_t ended_ms;
	int late; /* a request gave up waiting for it */
};

struct mirror_pull {
	struct mirror *m;
	char *from; /* the registries allowed (mirror_pull_allows) */
	char platform[MIRROR_PULL_PLATFORM_MAX];
	uint64_t wait_ms;
	struct pull_entry *pulls;
	size_t npulls;
	struct mreq *waiting;
	size_t nwaiting;
	uv_timer_t timer;
	uint64_t started, done, failed, expired;
};

/* ---- configuration ---- */

/* This node's platform as image indexes name it (GOARCH values). */
static void node_platform(char *out, size_t cap)
{
	static const struct {
		const char *machine, *platform;
	} map[] = {
	    {"x86_64", "linux/amd64"},
	    {"aarch64", "linux/arm64"},
	    {"arm64", "linux/arm64"},
	    {"armv7l", "linux/arm/v7"},
	    {"armv6l", "linux/arm/v6"},
	    {"i686", "linux/386"},
	    {"i386", "linux/386"},
	    {"ppc64le", "linux/ppc64le"},
	    {"s390x", "linux/s390x"},
	    {"riscv64", "linux/riscv64"},
	    {"loongarch64", "linux/loong64"},
	};
	struct utsname u;
	snprintf(out, cap, "linux/amd64");
	if (uname(&u) < 0)
		return;
	for (size_t i = 0; i < sizeof map / sizeof *map; i++)
		if (!strcmp(u.machine, map[i].machine)) {
			snprintf(out, cap, "%s", map[i].platform);
			return;
		}
	log_warn("mirror: machine %s has no known image platform; on-demand pulls ask for %s "
		 "(--registry-mirror-platform says otherwise)",
		 u.machine, out);
}

int mirror_pull_check_from(const char *list, char **detail)
{
	char *copy = xstrdup(list ? list : ""), *save = NULL;
	int rc = 0;
	for (char *t = strtok_r(copy, ", ", &save); t && rc == 0; t = strtok_r(NULL, ", ", &save)) {
		char folded[OCI_NAME_HOST_MAX + 1];
		if (oci_name_registry(t, folded, sizeof folded) < 0) {
			*detail = xasprintf("\"%s\" is not a registry host[:port]", t);
			rc = SB_EURI;
		}
	}
	free(copy);
	return rc;
}

/* The host of a folded host[:port] ("[v6]" kept whole), into out. */
static void host_of(const char *hostport, char *out, size_t cap)
{
	const char *end = hostport[0] == '[' ? strchr(hostport, ']') : strrchr(hostport, ':');
	size_t n = end ? (size_t)(end - hostport) + (hostport[0] == '[') : strlen(hostport);
	snprintf(out, cap, "%.*s", (int)n, hostport);
}

int mirror_pull_allows(const char *list, const char *ns)
{
	char host[OCI_NAME_HOST_MAX + 1];
	int any = 1, ok = 0;
	host_of(ns, host, sizeof host);
	char *copy = xstrdup(list ? list : ""), *save = NULL;
	for (char *t = strtok_r(copy, ", ", &save); t && !ok; t = strtok_r(NULL, ", ", &save)) {
		char folded[OCI_NAME_HOST_MAX + 1], own[OCI_NAME_HOST_MAX + 1];
		any = 0;
		if (oci_name_registry(t, folded, sizeof folded) < 0)
			continue;
		host_of(folded, own, sizeof own);
		ok = !strcmp(folded, ns) || (!strcmp(own, folded) && !strcmp(own, host));
	}
	free(copy);
	return any || ok;
}

/* ---- pulls ---- */

static void entry_free(struct pull_entry *e)
{
	if (e->ap)
		adhoc_cancel(e->ap); /* the dataset stays assigned */
	free(e->source);
	free(e->dataset);
	free(e->error);
	free(e);
}

static void forget(struct mirror_pull *mp, struct pull_entry *e)
{
	for (struct pull_entry **p = &mp->pulls; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			mp->npulls--;
			break;
		}
	entry_free(e);
}

/* Drop what no longer says anything: failures past the retry time, and
 * pulls whose dataset left this node (the scheduler's --pull-linger). */
static void sweep(struct mirror_pull *mp, uint64_t now)
{
	for (struct pull_entry *e = mp->pulls, *next; e; e = next) {
		next = e->next;
		if ((e->state == PULL_FAILED && now - e->ended_ms >= MIRROR_PULL_RETRY_MS) ||
		    (e->state == PULL_DONE && !daemon_fetch(mp->m->d, e->dataset)))
			forget(mp, e);
	}
}

/* Room for one more pull: the oldest ended one goes when needed. 0, or
 * -1 when every remembered pull still runs. */
static int make_room(struct mirror_pull *mp)
{
	struct pull_entry *oldest = NULL;
	if (mp->npulls < MIRROR_PULLS_MAX)
		return 0;
	for (struct pull_entry *e = mp->pulls; e; e = e->next)
		if (e->state != PULL_RUNNING && (!oldest || e->ended_ms < oldest->ended_ms))
			oldest = e;
	if (!oldest)
		return -1;
	forget(mp, oldest);
	return 0;
}

static void tick(uv_timer_t *t);

/* Parked requests look again on the next turn of the loop (never from
 * inside the callback that changed things). */
static void wake_soon(struct mirror_pull *mp)
{
	if (mp->waiting)
		uv_timer_start(&mp->timer, tick, 0, MIRROR_EARLY_TICK_MS);
}

static void on_pull(void *arg, struct adhoc_pull *p, json_t *msg, int final)
{
	struct pull_entry *e = arg;
	struct mirror_pull *mp = e->mp;
	if (!final) {
		json_decref(msg);
		return;
	}
	e->ap = NULL;
	e->ended_ms = uv_now(mp->m->loop);
	json_t *r = json_object_get(msg, "result");
	const char *ds = json_string_value(json_object_get(r, "dataset"));
	if (ds) {
		e->state = PULL_DONE;
		e->dataset = xstrdup(ds);
		mp->done++;
		log_info("mirror: pulled %s as dataset %s (%" JSON_INTEGER_FORMAT
			 " bytes: %" JSON_INTEGER_FORMAT " from the source, %" JSON_INTEGER_FORMAT
			 " from peers)",
			 e->source, ds, json_integer_value(json_object_get(r, "bytes")),
			 json_integer_value(json_object_get(r, "bytes_from_source")),
			 json_integer_value(json_object_get(r, "bytes_from_peers")));
	} else {
		const char *why = json_string_value(json_object_get(msg, "error"));
		e->state = PULL_FAILED;
		e->error = xstrdup(why ? why : "the pull failed");
		mp->failed++;
		log_warn("mirror: on-demand pull of %s failed: %s; its manifest requests get 404 "
			 "(containerd asks its next host) for %d s",
			 e->source, e->error, MIRROR_PULL_RETRY_MS / 1000);
	}
	json_decref(msg);
	wake_soon(mp);
}

/* Start pulling source (taken) for mr's image (make_room first). */
static void start(struct mirror_pull *mp, struct mreq *mr, char *source)
{
	struct pull_entry *e = xcalloc(1, sizeof *e);
	e->mp = mp;
	e->source = source;
	snprintf(e->registry, sizeof e->registry, "%s", mr->ns);
	snprintf(e->repo, sizeof e->repo, "%s", mr->p.name);
	e->next = mp->pulls;
	mp->pulls = e;
	mp->npulls++;
	mp->started++;
	log_info("mirror: %s/%s is held by no dataset here; pulling %s through the cluster", mr->ns,
		 mr->p.name, source);
	struct adhoc_request rq = {.source = source};
	e->ap = adhoc_start(daemon_adhoc(mp->m->d), &rq, on_pull, e);
}

/* 1 when a pull of mr's repository kept a request waiting in vain and
 * still runs: its requests are not kept waiting again. */
static int repo_late(const struct mirror_pull *mp, const struct mreq *mr)
{
	for (const struct pull_entry *e = mp->pulls; e; e = e->next)
		if (e->late && e->state == PULL_RUNNING && !strcmp(e->registry, mr->ns) &&
		    !strcmp(e->repo, mr->p.name))
			return 1;
	return 0;
}

/* A 404 with why (taken) as the OCI error's message. */
static void refuse(struct mreq *mr, char *why)
{
	log_debug("mirror: %s: %s", httpd_request_path(mr->req), why);
	mirror_answer_error(mr, 404, "MANIFEST_UNKNOWN", why, MIRROR_NOT_FOUND);
	free(why);
}

static void park(struct mirror_pull *mp, struct mreq *mr, uint64_t now)
{
	if (!mr->pull_deadline_ms) {
		mr->pull_deadline_ms = now + mp->wait_ms;
		httpd_request_extend(mr->req,
				     mp->wait_ms + MIRROR_EARLY_TICK_MS + HTTPD_TIMEOUT_MS);
	}
	mr->next = mp->waiting;
	mp->waiting = mr;
	mp->nwaiting++;
	if (!uv_is_active((uv_handle_t *)&mp->timer))
		uv_timer_start(&mp->timer, tick, MIRROR_EARLY_TICK_MS, MIRROR_EARLY_TICK_MS);
}

/* The source an image request names: oci://NS/NAME:TAG or @DIGEST, with
 * the platform (heap). */
static char *source_of(const struct mirror_pull *mp, const struct mreq *mr)
{
	return xasprintf("oci://%s/%s%c%s?platform=%s", mr->ns, mr->p.name,
			 mr->p.by_digest ? '@' : ':', mr->p.ref, mp->platform);
}

/* A request waited for e (NULL: forgotten meanwhile) until its deadline. */
static void expire(struct mirror_pull *mp, struct mreq *mr, struct pull_entry *e,
		   const char *source)
{
	mp->expired++;
	if (e && !e->late)
		log_warn("mirror: the on-demand pull of %s brought no manifest within %llu s; "
			 "404 (containerd asks its next host); the pull goes on",
			 source, (unsigned long long)(mp->wait_ms / 1000));
	if (e)
		e->late = 1;
	refuse(mr, xasprintf("the on-demand pull of %s brought no manifest within %llu s", source,
			     (unsigned long long)(mp->wait_ms / 1000)));
}

int mirror_pull_request(struct mreq *mr)
{
	struct mirror_pull *mp = mr->m->pull;
	if (!mp || !mr->has_ns || mr->p.route != OCI_ROUTE_MANIFEST ||
	    !mirror_pull_allows(mp->from, mr->ns))
		return 0;
	uint64_t now = uv_now(mr->m->loop);
	char *source = source_of(mp, mr);
	sweep(mp, now);
	struct pull_entry *e = mp->pulls;
	while (e && strcmp(e->source, source))
		e = e->next;
	if (e && e->state == PULL_FAILED) {
		refuse(mr, xasprintf("the on-demand pull of %s failed: %s", source, e->error));
	} else if (e && e->state == PULL_DONE) {
		refuse(mr, xasprintf("%s was pulled as dataset %s, which does not hold it", source,
				     e->dataset));
	} else if (mr->pull_deadline_ms && now >= mr->pull_deadline_ms) {
		expire(mp, mr, e, source);
	} else if (!mr->pull_deadline_ms && ((e && e->late) || repo_late(mp, mr))) {
		refuse(mr, xasprintf("an on-demand pull of %s/%s is still running and was too "
				     "slow to wait for",
				     mr->ns, mr->p.name));
	} else if (!mr->pull_deadline_ms && mp->nwaiting >= MIRROR_PULL_WAITERS_MAX) {
		refuse(mr, xstrdup("too many requests wait for on-demand pulls"));
	} else if (!e && make_room(mp) < 0) {
		refuse(mr, xstrdup("too many on-demand pulls at once"));
	} else {
		if (!e) {
			start(mp, mr, source);
			source = NULL; /* the entry's now */
		}
		park(mp, mr, now);
	}
	free(source);
	return 1;
}

/* Parked requests are routed again: answered, or parked again. */
static void wake(struct mirror_pull *mp)
{
	struct mreq *w = mp->waiting;
	mp->waiting = NULL;
	mp->nwaiting = 0;
	while (w) {
		struct mreq *next = w->next;
		w->next = NULL;
		if (mp->m->stopping)
			mirror_stopping(w);
		else
			mirror_dispatch(w);
		w = next;
	}
}

static void tick(uv_timer_t *t)
{
	struct mirror_pull *mp = t->data;
	wake(mp);
	if (!mp->waiting)
		uv_timer_stop(&mp->timer);
}

void mirror_pull_changed(struct mirror_pull *mp)
{
	if (mp)
		wake_soon(mp);
}

/* ---- life cycle ---- */

int mirror_pull_new(struct mirror *m, const struct mirror_config *cfg, struct mirror_pull **out,
		    char **detail)
{
	*out = NULL;
	if (!cfg->pull)
		return 0;
	int rc = mirror_pull_check_from(cfg->pull_from, detail);
	if (rc == 0 && cfg->pull_platform && cfg->pull_platform[0]) {
		struct oci_platform p;
		if (oci_platform_parse(cfg->pull_platform, &p) < 0 ||
		    strlen(cfg->pull_platform) >= MIRROR_PULL_PLATFORM_MAX) {
			*detail = xasprintf("platform \"%s\" is not os/arch[/variant]",
					    cfg->pull_platform);
			rc = SB_EURI;
		}
	}
	if (rc < 0)
		return rc;
	struct mirror_pull *mp = xcalloc(1, sizeof *mp);
	mp->m = m;
	mp->wait_ms = cfg->pull_wait_ms;
	if (cfg->pull_platform && cfg->pull_platform[0])
		snprintf(mp->platform, sizeof mp->platform, "%s", cfg->pull_platform);
	else
		node_platform(mp->platform, sizeof mp->platform);
	mp->from = xstrdup(cfg->pull_from ? cfg->pull_from : "");
	uv_timer_init(m->loop, &mp->timer);
	mp->timer.data = mp;
	log_info("registry mirror: images no dataset holds are pulled through the cluster "
		 "(platform %s, from %s, waiting %llu s for a manifest)",
		 mp->platform, mp->from[0] ? mp->from : "any registry",
		 (unsigned long long)(mp->wait_ms / 1000));
	*out = mp;
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	struct mirror_pull *mp = h->data;
	struct mirror *m = mp->m;
	free(mp->from);
	free(mp);
	m->pull = NULL;
	m->jobs--;
	mirror_release(m);
}

void mirror_pull_stop(struct mirror_pull *mp)
{
	if (!mp)
		return;
	wake(mp); /* m->stopping: every parked request gets 503 */
	while (mp->pulls)
		forget(mp, mp->pulls);
	mp->m->jobs++;
	uv_close((uv_handle_t *)&mp->timer, timer_closed);
}

void mirror_pull_metrics(const struct mirror_pull *mp, struct buf *out)
{
	if (!mp)
		return;
	metrics_family(out, "syncbit_mirror_pulls_total", METRICS_COUNTER,
		       "On-demand pulls of images no dataset held, by how they ended.");
	metrics_sample(out, "syncbit_mirror_pulls_total", METRICS_LABELS("result", "started"),
		       mp->started);
	metrics_sample(out, "syncbit_mirror_pulls_total", METRICS_LABELS("result", "done"),
		       mp->done);
	metrics_sample(out, "syncbit_mirror_pulls_total", METRICS_LABELS("result", "failed"),
		       mp->failed);
	metrics_single(out, "syncbit_mirror_pull_wait_expired_total", METRICS_COUNTER,
		       "Manifest requests that waited for an on-demand pull in vain and got a 404.",
		       mp->expired);
}
