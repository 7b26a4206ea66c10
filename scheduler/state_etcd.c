/* The scheduler's state in etcd: key PREFIX/TABLE/KEY, the value as LMDB
 * holds it. A group of writes is one transaction, cut into several when
 * it outgrows etcd's limits (--max-txn-ops 128, 1.5 MiB a request); every
 * transaction compares the leader key's creation revision first, so a
 * scheduler that lost the election writes nothing. Reports of versions
 * (what each node holds) stay in memory: agents send them again in their
 * next heartbeat to whichever scheduler leads. */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/etcd.h"
#include "common/log.h"
#include "scheduler/state_int.h"

#define ETCD_TXN_OPS   100	  /* below etcd's default --max-txn-ops 128 */
#define ETCD_TXN_BYTES (1u << 20) /* below its default --max-request-bytes 1.5 MiB */
#define ETCD_SCAN_PAGE 500

struct etcd_state {
	struct state base;
	struct etcd *e;
	char *prefix;
	struct state_fence *fence;
	json_t *ops; /* the open group's requests */
	size_t bytes;
	int group, failed;
};

static int stored(enum table t)
{
	return t != T_HAVE;
}

static void table_key(struct etcd_state *st, enum table t, const void *k, size_t kl,
		      struct buf *out)
{
	buf_printf(out, "%s%s/", st->prefix, state_table_names[t]);
	buf_append(out, k, kl);
}

/* Send the requests in ops as one fenced transaction. */
static int send_txn(struct etcd_state *st, json_t *ops)
{
	if (!st->fence->create_rev) {
		json_decref(ops);
		return SB_EDENIED;
	}
	json_t *cmp =
	    json_pack("[{s:o, s:s, s:s, s:I}]", "key",
		      etcd_b64(st->fence->key, strlen(st->fence->key)), "target", "CREATE",
		      "result", "EQUAL", "create_revision", (json_int_t)st->fence->create_rev);
	json_t *req = json_pack("{s:o, s:o}", "compare", cmp, "success", ops), *resp;
	int rc = etcd_call(st->e, "/v3/kv/txn", req, &resp);
	if (rc < 0) {
		log_limited(LOG_ERROR, "scheduler state: etcd: %s", etcd_error(st->e));
		return rc;
	}
	int ok = json_is_true(json_object_get(resp, "succeeded"));
	json_decref(resp);
	if (!ok) {
		log_error("scheduler state: a write was refused: this scheduler no longer leads");
		st->fence->lost = 1;
		return SB_EDENIED;
	}
	return 0;
}

static int flush_group(struct etcd_state *st)
{
	json_t *ops = st->ops;
	st->ops = json_array();
	st->bytes = 0;
	if (!json_array_size(ops)) {
		json_decref(ops);
		return 0;
	}
	return send_txn(st, ops);
}

static int add_op(struct etcd_state *st, json_t *op, size_t bytes)
{
	if (!st->group) {
		json_t *ops = json_array();
		json_array_append_new(ops, op);
		return send_txn(st, ops);
	}
	if (st->failed) {
		json_decref(op);
		return st->failed;
	}
	json_array_append_new(st->ops, op);
	st->bytes += bytes;
	int rc = 0;
	if (json_array_size(st->ops) >= ETCD_TXN_OPS || st->bytes >= ETCD_TXN_BYTES)
		rc = flush_group(st);
	if (rc < 0)
		st->failed = rc;
	return rc;
}

static int es_begin(struct state *s)
{
	struct etcd_state *st = (struct etcd_state *)s;
	if (st->group)
		fatal("scheduler state: nested transaction");
	st->group = 1;
	st->failed = 0;
	return 0;
}

static int es_commit(struct state *s)
{
	struct etcd_state *st = (struct etcd_state *)s;
	if (!st->group)
		return st->failed;
	int rc = st->failed ? st->failed : flush_group(st);
	st->group = 0;
	json_array_clear(st->ops);
	st->bytes = 0;
	return rc;
}

static int es_write(struct state *s, int del, enum table t, const void *k, size_t kl, const void *v,
		    size_t vl)
{
	struct etcd_state *st = (struct etcd_state *)s;
	if (!stored(t))
		return 0;
	struct buf key = BUF_INIT;
	table_key(st, t, k, kl, &key);
	json_t *op =
	    del ? json_pack("{s:{s:o}}", "request_delete_range", "key", etcd_b64(key.ptr, key.len))
		: json_pack("{s:{s:o, s:o}}", "request_put", "key", etcd_b64(key.ptr, key.len),
			    "value", etcd_b64(v, vl));
	size_t bytes = (key.len + vl) * 4 / 3 + 64;
	buf_close(&key);
	return add_op(st, op, bytes);
}

static int es_del_prefix(struct state *s, enum table t, const void *prefix, size_t plen)
{
	struct etcd_state *st = (struct etcd_state *)s;
	if (!stored(t))
		return 0;
	struct buf key = BUF_INIT, end = BUF_INIT;
	table_key(st, t, prefix, plen, &key);
	etcd_prefix_end(key.ptr, key.len, &end);
	json_t *op = json_pack("{s:{s:o, s:o}}", "request_delete_range", "key",
			       etcd_b64(key.ptr, key.len), "range_end", etcd_b64(end.ptr, end.len));
	size_t bytes = (key.len + end.len) * 4 / 3 + 64;
	buf_close(&key);
	buf_close(&end);
	return add_op(st, op, bytes);
}

/* One page of a scan: its records to cb; *more and next (the key to go on
 * from) when etcd has more. */
static int scan_page(struct etcd_state *st, enum table t, struct buf *from, const struct buf *end,
		     size_t skip, state_scan_cb cb, void *arg, int *more)
{
	json_t *req = json_pack("{s:o, s:o, s:i}", "key", etcd_b64(from->ptr, from->len),
				"range_end", etcd_b64(end->ptr, end->len), "limit", ETCD_SCAN_PAGE),
	       *resp;
	int rc = etcd_call(st->e, "/v3/kv/range", req, &resp);
	if (rc < 0) {
		log_error("scheduler state: etcd: %s", etcd_error(st->e));
		return rc;
	}
	json_t *kvs = json_object_get(resp, "kvs"), *kv;
	size_t i;
	struct buf k = BUF_INIT, v = BUF_INIT;
	*more = json_is_true(json_object_get(resp, "more"));
	json_array_foreach(kvs, i, kv)
	{
		buf_reset(&k);
		buf_reset(&v);
		if (etcd_unb64(json_object_get(kv, "key"), &k) < 0 ||
		    etcd_unb64(json_object_get(kv, "value"), &v) < 0 || k.len < skip) {
			log_warn("scheduler state: skipping an undecodable etcd record");
			continue;
		}
		if ((rc = cb(arg, t, k.ptr + skip, k.len - skip, v.ptr, v.len)) < 0)
			break;
		buf_reset(from);
		buf_append(from, k.ptr, k.len);
		buf_append(from, "", 1); /* the next key after it */
	}
	buf_close(&k);
	buf_close(&v);
	json_decref(resp);
	if (rc == 0 && *more && !json_array_size(kvs))
		*more = 0;
	return rc;
}

static int es_scan(struct state *s, enum table t, state_scan_cb cb, void *arg)
{
	struct etcd_state *st = (struct etcd_state *)s;
	if (!stored(t))
		return 0;
	struct buf from = BUF_INIT, end = BUF_INIT;
	table_key(st, t, "", 0, &from);
	size_t skip = from.len;
	etcd_prefix_end(from.ptr, from.len, &end);
	int more = 1, rc = 0;
	while (more && rc == 0)
		rc = scan_page(st, t, &from, &end, skip, cb, arg, &more);
	buf_close(&from);
	buf_close(&end);
	return rc;
}

static void es_free(struct state *s)
{
	struct etcd_state *st = (struct etcd_state *)s;
	json_decref(st->ops);
	free(st->prefix);
	free(st);
}

static const struct state_ops etcd_ops = {es_begin,	 es_commit, es_write,
					  es_del_prefix, es_scan,   es_free};

int state_open_etcd(struct etcd *e, const char *prefix, struct state_fence *fence,
		    struct state **out)
{
	struct etcd_state *st = xcalloc(1, sizeof *st);
	st->base.ops = &etcd_ops;
	st->e = e;
	st->prefix = xstrdup(prefix);
	st->fence = fence;
	st->ops = json_array();
	*out = &st->base;
	return 0;
}
