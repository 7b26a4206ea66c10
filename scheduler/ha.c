#include "scheduler/ha.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "common/path.h"
#include "scheduler/sched.h"
#include "scheduler/server.h"

#define HA_FILE_MAX 4096 /* the identity files are a line each */

/* ---- etcd requests ---------------------------------------------------------- */

/* The value of key into val (reset first): 1 when the key exists, 0 when
 * not, or a negative error. */
static int get_key(struct ha *h, const char *key, struct buf *val, int64_t *create_rev)
{
	json_t *resp, *req = json_pack("{s:o}", "key", etcd_b64(key, strlen(key)));
	int rc = etcd_call(h->e, "/v3/kv/range", req, &resp);
	if (rc < 0)
		return rc;
	json_t *kv = json_array_get(json_object_get(resp, "kvs"), 0);
	buf_reset(val);
	if (kv && create_rev)
		*create_rev = etcd_int(json_object_get(kv, "create_revision"));
	rc = kv ? etcd_unb64(json_object_get(kv, "value"), val) : 0;
	json_decref(resp);
	return rc < 0 ? rc : kv != NULL;
}

/* Create key = val (with lease, unless 0) when absent: 1 when created
 * (*rev its creation revision), 0 with the value there now in have. */
static int create_key(struct ha *h, const char *key, const void *val, size_t len, int64_t lease,
		      struct buf *have, int64_t *rev)
{
	json_t *put =
	    json_pack("{s:o, s:o}", "key", etcd_b64(key, strlen(key)), "value", etcd_b64(val, len));
	if (lease)
		json_object_set_new(put, "lease", json_integer(lease));
	json_t *req = json_pack("{s:[{s:o, s:s, s:s, s:i}], s:[{s:o}], s:[{s:{s:o}}]}", "compare",
				"key", etcd_b64(key, strlen(key)), "target", "CREATE", "result",
				"EQUAL", "create_revision", 0, "success", "request_put", put,
				"failure", "request_range", "key", etcd_b64(key, strlen(key)));
	json_t *resp;
	int rc = etcd_call(h->e, "/v3/kv/txn", req, &resp);
	if (rc < 0)
		return rc;
	if (json_is_true(json_object_get(resp, "succeeded"))) {
		if (rev)
			*rev =
			    etcd_int(json_object_get(json_object_get(resp, "header"), "revision"));
		json_decref(resp);
		return 1;
	}
	json_t *r = json_object_get(json_array_get(json_object_get(resp, "responses"), 0),
				    "response_range");
	buf_reset(have);
	rc = etcd_unb64(json_object_get(json_array_get(json_object_get(r, "kvs"), 0), "value"),
			have);
	json_decref(resp);
	return rc < 0 ? rc : 0;
}

static int lease_grant(struct ha *h)
{
	json_t *resp, *req = json_pack("{s:i}", "TTL", (int)h->ttl_s);
	int rc = etcd_call(h->e, "/v3/lease/grant", req, &resp);
	if (rc < 0)
		return rc;
	h->lease = etcd_int(json_object_get(resp, "ID"));
	json_decref(resp);
	return h->lease ? 0 : SB_EPROTO;
}

static void lease_revoke(struct ha *h)
{
	if (!h->lease)
		return;
	json_t *resp, *req = json_pack("{s:I}", "ID", (json_int_t)h->lease);
	if (etcd_call(h->e, "/v3/lease/revoke", req, &resp) == 0)
		json_decref(resp);
	h->lease = 0;
}

/* Renew the lease: its remaining TTL (0: it expired), or a negative error. */
static int64_t lease_keepalive(struct ha *h)
{
	json_t *resp, *req = json_pack("{s:I}", "ID", (json_int_t)h->lease);
	int rc = etcd_call(h->e, "/v3/lease/keepalive", req, &resp);
	if (rc < 0)
		return rc;
	json_t *r = json_object_get(resp, "result");
	int64_t ttl = etcd_int(json_object_get(r ? r : resp, "TTL"));
	json_decref(resp);
	return ttl;
}

/* ---- identity --------------------------------------------------------------- */

static int write_file(const char *path, const struct buf *b)
{
	char *tmp = xasprintf("%s.etcd.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc = 0;
	if (fd < 0 || io_write_full(fd, b->ptr, b->len) < 0 || fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0 && close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* Make DATA/name the cluster's: etcd's copy when it has one, else this
 * one's (made by init when missing) goes there. */
static int share_file(struct ha *h, const char *data, const char *name,
		      int (*init)(struct sched *s, const char *path, char **detail), char **detail)
{
	char *path = path_join(data, name), *key = xasprintf("%s%s", h->prefix, name);
	struct buf have = BUF_INIT, mine = BUF_INIT;
	int rc = get_key(h, key, &have, NULL);
	if (rc == 1) {
		if (buf_read_file(path, HA_FILE_MAX, &mine) < 0 || mine.len != have.len ||
		    memcmp(mine.ptr, have.ptr, have.len))
			rc = write_file(path, &have);
		if (rc == 1)
			rc = 0;
		if (rc == 0)
			log_info("%s: the cluster's, from etcd", path);
	} else if (rc == 0 && (rc = init(h->s, path, detail)) == 0 &&
		   (rc = buf_read_file(path, HA_FILE_MAX, &mine)) >= 0) {
		rc = create_key(h, key, mine.ptr, mine.len, 0, &have, NULL);
		if (rc == 0) /* another scheduler was first */
			rc = write_file(path, &have);
		else if (rc == 1)
			rc = 0;
	}
	if (rc < 0 && !*detail)
		*detail = xasprintf("%s: %s", path,
				    rc == SB_EHTTP || rc == SB_EAUTH || rc == SB_EHTTP4XX ||
					    rc == SB_EHTTP5XX
					? etcd_error(h->e)
					: sb_strerror(rc));
	buf_close(&have);
	buf_close(&mine);
	free(path);
	free(key);
	return rc < 0 ? rc : 0;
}

static int init_token(struct sched *s, const char *path, char **detail)
{
	struct secure_token tok;
	char *why = NULL;
	int rc = secure_token_init(path, &tok, &why);
	if (rc < 0)
		*detail = xasprintf("%s: %s", path, why ? why : sb_strerror(rc));
	free(why);
	return rc;
}

static int init_key(struct sched *s, const char *path, char **detail)
{
	struct secure_keypair kp;
	char *why = NULL;
	int rc = secure_keypair_init(path, &kp, NULL, &why);
	if (rc < 0)
		*detail = xasprintf("%s: %s", path, why ? why : sb_strerror(rc));
	else
		secure_keypair_close(&kp);
	free(why);
	return rc;
}

int ha_open(struct sched *s, struct ha **out, char **detail)
{
	const struct sched_options *o = s->o;
	struct etcd_config ec = {.endpoints = o->etcd,
				 .cacert = o->etcd_cacert,
				 .cert = o->etcd_cert,
				 .key = o->etcd_key,
				 .user = o->etcd_user,
				 .password = o->etcd_password};
	struct ha *h = xcalloc(1, sizeof *h);
	*out = NULL;
	h->s = s;
	h->ttl_s = o->etcd_lease_s ? o->etcd_lease_s : HA_LEASE_S;
	h->prefix = xasprintf("/syncbit/%s/", o->etcd_cluster ? o->etcd_cluster : "default");
	h->state_prefix = xasprintf("%sstate/", h->prefix);
	h->fence.key = xasprintf("%sleader", h->prefix);
	int rc = etcd_open(&ec, &h->e, detail);
	if (rc == 0 && (rc = path_mkdirs(o->data, 0700)) < 0)
		*detail = xasprintf("--data %s: %s", o->data, sb_strerror(rc));
	if (rc == 0)
		rc = share_file(h, o->data, "join-token", init_token, detail);
	if (rc == 0)
		rc = share_file(h, o->data, SCHED_KEY_FILE, init_key, detail);
	if (rc < 0) {
		ha_free(h);
		return rc;
	}
	uv_timer_init(&s->loop, &h->tick);
	h->tick.data = h;
	h->started = 1;
	*out = h;
	return 0;
}

/* ---- election ---------------------------------------------------------------- */

static void set_leader_addr(struct ha *h, const char *addr)
{
	if (h->leader_addr && addr && !strcmp(h->leader_addr, addr))
		return;
	free(h->leader_addr);
	h->leader_addr = addr ? xstrdup(addr) : NULL;
	if (addr && !h->leader)
		log_info("scheduler %s leads; this one is a standby", addr);
}

static void campaign(struct ha *h, uint64_t now)
{
	struct buf have = BUF_INIT;
	int64_t rev = 0;
	const char *me = h->s->o->listen;
	int rc = lease_grant(h);
	if (rc == 0)
		rc = create_key(h, h->fence.key, me, strlen(me), h->lease, &have, &rev);
	if (rc == 1) {
		h->leader = 1;
		h->fence.create_rev = rev;
		h->fence.lost = 0;
		h->renewed = h->kept = now;
		set_leader_addr(h, me);
		log_info("elected leader (etcd revision %lld, lease %u s)", (long long)rev,
			 h->ttl_s);
		if (sched_elected(h->s) < 0) {
			log_error("cannot load the state from etcd: %s; giving the lead up",
				  etcd_error(h->e));
			h->leader = 0;
			h->fence.create_rev = 0;
			lease_revoke(h);
		}
	} else if (rc == 0) {
		lease_revoke(h);
		set_leader_addr(h, buf_cstr(&have));
	} else {
		lease_revoke(h);
	}
	buf_close(&have);
}

static void standby_tick(struct ha *h, uint64_t now)
{
	struct buf val = BUF_INIT;
	int rc = get_key(h, h->fence.key, &val, NULL);
	if (rc < 0) {
		if (!h->unreachable)
			log_warn("etcd: %s; cannot follow the election", etcd_error(h->e));
		h->unreachable = 1;
	} else {
		if (h->unreachable)
			log_info("etcd answers again");
		h->unreachable = 0;
		if (rc == 1)
			set_leader_addr(h, buf_cstr(&val));
		else
			campaign(h, now);
	}
	buf_close(&val);
}

static void deposed(struct ha *h, const char *why)
{
	log_error("no longer the leader (%s); stopping: started again, this scheduler is a "
		  "standby",
		  why);
	h->leader = 0;
	h->fence.create_rev = 0;
	h->lease = 0;
	sched_deposed(h->s);
}

static void leader_tick(struct ha *h, uint64_t now)
{
	if (h->fence.lost) {
		deposed(h, "a write was fenced off");
		return;
	}
	if (now - h->kept < h->ttl_s * 1000u / 3)
		return;
	h->kept = now;
	int64_t ttl = lease_keepalive(h);
	if (ttl < 0) {
		if (!h->unreachable)
			log_error("etcd: %s; serving the nodes what is known, refusing changes "
				  "until etcd answers",
				  etcd_error(h->e));
		h->unreachable = 1;
		return;
	}
	if (ttl == 0) {
		deposed(h, "its lease expired");
		return;
	}
	struct buf val = BUF_INIT;
	int64_t rev = 0;
	if (h->unreachable) {
		int rc = get_key(h, h->fence.key, &val, &rev);
		if (rc >= 0 && (rc == 0 || rev != h->fence.create_rev)) {
			buf_close(&val);
			deposed(h, rc == 1 ? "another scheduler leads" : "the leader key is gone");
			return;
		}
		if (rc >= 0)
			log_info("etcd answers again; still the leader, changes accepted");
	}
	buf_close(&val);
	h->unreachable = 0;
	h->renewed = now;
}

static void on_tick(uv_timer_t *t)
{
	struct ha *h = t->data;
	uint64_t now = uv_now(t->loop);
	if (h->leader)
		leader_tick(h, now);
	else
		standby_tick(h, now);
}

void ha_start(struct ha *h)
{
	uv_timer_start(&h->tick, on_tick, 0, HA_POLL_MS);
}

void ha_stop(struct ha *h)
{
	if (!h || !h->started)
		return;
	h->started = 0;
	uv_close((uv_handle_t *)&h->tick, NULL);
	if (h->leader) {
		h->leader = 0;
		h->fence.create_rev = 0;
		lease_revoke(h); /* the key goes with it: a standby leads at once */
	}
}

void ha_free(struct ha *h)
{
	if (!h)
		return;
	etcd_free(h->e);
	free(h->prefix);
	free(h->state_prefix);
	free(h->fence.key);
	free(h->leader_addr);
	free(h);
}

const char *ha_role(const struct ha *h)
{
	return !h || h->leader ? "leader" : "standby";
}

int ha_check_change(const struct ha *h, char **why)
{
	*why = NULL;
	if (!h)
		return 0;
	if (!h->leader)
		*why = h->leader_addr ? xasprintf("this scheduler is a standby; the leader is %s",
						  h->leader_addr)
				      : xstrdup("this scheduler is a standby; no leader is elected "
						"yet");
	else if (h->unreachable)
		*why = xasprintf("etcd unreachable: changes are refused until it answers (%s)",
				 etcd_error(h->e));
	return !*why ? 0 : h->leader ? SB_EDENIED : SB_ESTANDBY;
}
