/* What the agent tells about its datasets: the status document for the CLI
 * and probes, readiness, progress, and the accessors agent/ctl.c,
 * agent/adhoc.c and agent/mirror.c read. Loop thread only. */
#include "agent/daemon_int.h"

#include <stdlib.h>

#include "agent/cache.h"
#include "agent/kube_agent.h"
#include "agent/mirror.h"
#include "agent/peer.h"
#include "agent/watch.h"
#include "common/err.h"
#include "common/uri.h"
#include "common/path.h"

/* An error line for status: the URLs in it without their credentials. */
static json_t *error_json(const char *err)
{
	if (!err)
		return json_null();
	char *r = uri_redact(err);
	json_t *j = json_string(r);
	free(r);
	return j;
}

static json_t *fetch_json(struct daemon *d, struct dset *s, struct fetch *f)
{
	struct fetch_stats st;
	char hex[HASH_HEX_LEN + 1];
	fetch_stats(f, &st);
	hash_to_hex((const struct hash_id *)fetch_version_id(f), hex);
	const char *state = fetch_published(f)				  ? "published"
			    : fetch_error(f) || (f == s->cur && s->error) ? "error"
			    : fetch_complete(f)				  ? "publishing"
									  : "fetching";
	json_t *o =
	    json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "version", hex,
		      "state", state, "target", "", "blocks", (json_int_t)st.blocks, "blocks_have",
		      (json_int_t)st.blocks_have, "bytes", (json_int_t)st.bytes, "bytes_have",
		      (json_int_t)st.bytes_have, "bytes_from_origin",
		      (json_int_t)st.bytes_from_origin, "bytes_from_peers",
		      (json_int_t)st.bytes_from_peers, "bytes_reused", (json_int_t)st.bytes_reused,
		      "bytes_served", (json_int_t)peers_served(d->peers, fetch_version_id(f)));
	char *target = path_join(d->o->target, s->name);
	json_object_set_new(o, "target", json_string(target));
	free(target);
	json_object_set_new(o, "origin_refetch",
			    json_pack("{s:i, s:i}", "bad_peer", (int)st.refetch_bad_peer, "no_peer",
				      (int)st.refetch_no_peer));
	json_object_set_new(o, "bad_blocks", json_integer(st.bad_blocks));
	const char *err = f == s->cur && s->error ? s->error : fetch_error(f);
	json_object_set_new(o, "error", error_json(err));
	json_object_set_new(o, "waiting", error_json(fetch_waiting(f)));
	const char *src = fetch_manifest(f)->source;
	char *shown = src ? uri_redact(src) : NULL;
	json_object_set_new(o, "source", shown ? json_string(shown) : json_null());
	free(shown);
	return o;
}

json_t *daemon_status_json(struct daemon *d)
{
	struct peers_stats ps;
	peers_stats(d->peers, &ps);
	json_t *sets = json_array();
	for (size_t i = 0; i < d->nsets; i++) {
		struct dset *s = d->sets[i];
		json_t *o = s->cur ? fetch_json(d, s, s->cur) : json_object();
		json_object_set_new(o, "name", json_string(s->name));
		if (!s->cur)
			json_object_set_new(o, "state",
					    json_string(s->restored ? "published"
							: s->error  ? "error"
								    : "waiting"));
		json_object_set_new(o, "restored", json_boolean(s->restored));
		json_object_set_new(o, "pulled", json_boolean(s->pulled));
		if (s->pulled)
			json_object_set_new(o, "target", json_null());
		if (!s->cur && s->error)
			json_object_set_new(o, "error", error_json(s->error));
		if (s->prev)
			json_object_set_new(o, "previous", fetch_json(d, s, s->prev));
		json_object_set_new(o, "ready", json_boolean(daemon_ready(d, s->name, NULL)));
		watch_status(d->watch, s->name, o);
		json_array_append_new(sets, o);
	}
	json_t *st = json_pack(
	    "{s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o}", "node", d->o->node,
	    "scheduler", uplink_json(&d->link, uv_now(&d->loop)), "peers", "connected",
	    (json_int_t)ps.connected_now, "bytes_served", (json_int_t)ps.bytes_served,
	    "blocks_served", (json_int_t)ps.blocks_served, "dropped_bad_data",
	    (json_int_t)ps.dropped_bad_data, "bytes_received", (json_int_t)ps.bytes_received,
	    "bytes_unneeded", (json_int_t)ps.bytes_unneeded, "bytes_passed_on",
	    (json_int_t)ps.bytes_passed_on, "bytes_streamed", (json_int_t)ps.bytes_streamed,
	    "datasets", sets);
	if (d->kube)
		json_object_set_new(st, "kubernetes", kube_agent_status_json(d->kube));
	struct cache_stats cs;
	if (cache_stats(d->cache, &cs) == 0)
		json_object_set_new(st, "cache",
				    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "used",
					      (json_int_t)cs.used, "pinned", (json_int_t)cs.pinned,
					      "objects", (json_int_t)cs.objects, "capacity",
					      (json_int_t)cs.capacity, "evicted",
					      (json_int_t)cs.evicted, "disk_free",
					      (json_int_t)disk_free(d->o->data)));
	return st;
}

int daemon_health(struct daemon *d, struct buf *why)
{
	if (!d->o->scheduler_grace_ms)
		return 1; /* --scheduler-grace 0: the scheduler does not count */
	return uplink_healthy(&d->link, uv_now(&d->loop), d->o->scheduler_grace_ms, why);
}

const char *daemon_dataset_name(struct daemon *d, size_t i)
{
	return i < d->nsets ? d->sets[i]->name : NULL;
}

int daemon_ready(struct daemon *d, const char *name, const char **why)
{
	struct dset *s = find_set(d, name);
	const char *w = NULL;
	if (!s)
		w = "not assigned to this node";
	else if ((w = watch_damage(d->watch, name)))
		; /* a published file changed on disk: repairing */
	else if ((s->cur && fetch_published(s->cur)) || (s->prev && fetch_published(s->prev)) ||
		 s->restored)
		return 1;
	else if (s->error)
		w = s->error;
	else
		w = "still fetching";
	if (why)
		*why = w;
	return 0;
}

void daemon_listener_metrics(struct daemon *d, struct buf *out)
{
	if (d->peers)
		peers_listener_metrics(d->peers, out);
	mirror_metrics(d->mirror, out);
}

int daemon_published(struct daemon *d, size_t i, struct daemon_published *out)
{
	if (i >= d->nsets)
		return -1;
	struct dset *s = d->sets[i];
	/* Repairing: the intact files are in place all along, and the changed
	 * ones are refused (daemon_file_damaged) until they are put back. */
	if (!s->pub_source || s->pulled ||
	    (!daemon_ready(d, s->name, NULL) && !watch_damage(d->watch, s->name)))
		return 0;
	out->name = s->name;
	out->source = s->pub_source;
	out->id = s->pub_id;
	return 1;
}

int daemon_fetching(struct daemon *d, size_t i, const char **name, const struct fetch **f)
{
	if (i >= d->nsets)
		return -1;
	struct dset *s = d->sets[i];
	if (!s->cur || (!s->pulled && fetch_published(s->cur)))
		return 0;
	*name = s->name;
	*f = s->cur;
	return 1;
}

int daemon_fetch_order(struct daemon *d, const char *name, const uint8_t *vid, const size_t *files,
		       size_t n, int wanted)
{
	struct dset *s = find_set(d, name);
	if (!s || !s->cur || memcmp(fetch_version_id(s->cur), vid, HASH_LEN))
		return -1;
	if (!wanted)
		fetch_order_files(s->cur, files, n);
	for (size_t i = 0; wanted && i < n; i++)
		fetch_want_file(s->cur, files[i]);
	return 0;
}

int daemon_file_damaged(struct daemon *d, const char *name, const struct hash_id *id)
{
	return watch_file_damaged(d->watch, name, id);
}

struct adhoc *daemon_adhoc(struct daemon *d)
{
	return d->adhoc;
}

struct cache *daemon_cache(struct daemon *d)
{
	return d->cache;
}

int daemon_pulled(struct daemon *d, const char *name)
{
	struct dset *s = find_set(d, name);
	return !s ? SB_ENOTFOUND : s->pulled ? 1 : 0;
}

const struct fetch *daemon_fetch(struct daemon *d, const char *name)
{
	struct dset *s = find_set(d, name);
	return s ? s->cur : NULL;
}

int daemon_progress(struct daemon *d, const char *name, uint64_t *bytes, uint64_t *have,
		    int *published, const char **error)
{
	struct dset *s = find_set(d, name);
	if (!s)
		return SB_ENOTFOUND;
	*bytes = *have = 0;
	*published = daemon_ready(d, name, NULL);
	*error = s->error;
	if (s->cur) {
		struct fetch_stats st;
		fetch_stats(s->cur, &st);
		*bytes = st.bytes;
		*have = st.bytes_have;
	}
	return 0;
}
