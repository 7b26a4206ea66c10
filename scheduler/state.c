#include "scheduler/state.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "scheduler/state_int.h"

#define NAME_MAX_LEN 1024 /* longest node or dataset name kept as a key */

const char *const state_table_names[T_COUNT] = {"nodes", "datasets", "versions", "hashes",
						"have",	 "meta",     "readers"};

int state_begin(struct state *st)
{
	return st->ops->begin(st);
}

int state_commit(struct state *st)
{
	return st->ops->commit(st);
}

void state_free(struct state *st)
{
	if (st)
		st->ops->free(st);
}

static int write_op(struct state *st, int del, enum table t, const void *k, size_t kl,
		    const void *v, size_t vl)
{
	return st->ops->write(st, del, t, k, kl, v, vl);
}

static int del_prefix(struct state *st, enum table t, const void *prefix, size_t plen)
{
	return st->ops->del_prefix(st, t, prefix, plen);
}

/* ---- records ------------------------------------------------------------ */

static void hash_key(uint8_t *key, const struct hash_id *id, uint32_t block)
{
	memcpy(key, id->b, HASH_LEN);
	for (int i = 0; i < 4; i++)
		key[HASH_LEN + i] = (uint8_t)(block >> (24 - 8 * i));
}

/* Key of a report: version id, then the node name. */
static size_t have_key(struct buf *k, const struct hash_id *id, const char *node)
{
	buf_append(k, id->b, HASH_LEN);
	buf_append_str(k, node);
	return k->len;
}

static void append_packed(struct buf *b, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	buf_reserve(b, n);
	b->len += protobuf_c_message_pack(m, b->ptr + b->len);
}

int state_put_node(struct state *st, const char *name, int64_t last_seen_ms,
		   const Syncbit__Register *reg)
{
	struct buf v = BUF_INIT;
	uint64_t t = (uint64_t)last_seen_ms;
	buf_append(&v, &t, sizeof t);
	append_packed(&v, &reg->base);
	int rc = write_op(st, 0, T_NODES, name, strlen(name), v.ptr, v.len);
	buf_close(&v);
	return rc;
}

int state_put_dataset(struct state *st, const char *name, const struct hash_id *version,
		      const Syncbit__Admin *def)
{
	struct buf v = BUF_INIT;
	buf_append(&v, version->b, HASH_LEN);
	append_packed(&v, &def->base);
	int rc = write_op(st, 0, T_DATASETS, name, strlen(name), v.ptr, v.len);
	buf_close(&v);
	return rc;
}

int state_del_node(struct state *st, const char *name)
{
	return write_op(st, 1, T_NODES, name, strlen(name), NULL, 0);
}

int state_del_dataset(struct state *st, const char *name)
{
	return write_op(st, 1, T_DATASETS, name, strlen(name), NULL, 0);
}

int state_put_version(struct state *st, const struct hash_id *id, const uint8_t *manifest,
		      size_t len)
{
	return write_op(st, 0, T_VERSIONS, id->b, HASH_LEN, manifest, len);
}

int state_del_version(struct state *st, const struct hash_id *id)
{
	int rc = write_op(st, 1, T_VERSIONS, id->b, HASH_LEN, NULL, 0);
	if (rc == 0)
		rc = del_prefix(st, T_HASHES, id->b, HASH_LEN);
	if (rc == 0)
		rc = del_prefix(st, T_HAVE, id->b, HASH_LEN);
	if (rc == 0)
		rc = del_prefix(st, T_READERS, id->b, HASH_LEN);
	return rc;
}

int state_put_hash(struct state *st, const struct hash_id *id, uint32_t block, const uint8_t *hash)
{
	uint8_t key[HASH_LEN + 4];
	hash_key(key, id, block);
	return write_op(st, 0, T_HASHES, key, sizeof key, hash, HASH_LEN);
}

int state_put_have(struct state *st, const struct hash_id *id, const char *node,
		   const Syncbit__VersionState *vs)
{
	struct buf k = BUF_INIT, v = BUF_INIT;
	have_key(&k, id, node);
	append_packed(&v, &vs->base);
	int rc = write_op(st, 0, T_HAVE, k.ptr, k.len, v.ptr, v.len);
	buf_close(&k);
	buf_close(&v);
	return rc;
}

int state_del_have(struct state *st, const struct hash_id *id, const char *node)
{
	struct buf k = BUF_INIT;
	have_key(&k, id, node);
	int rc = write_op(st, 1, T_HAVE, k.ptr, k.len, NULL, 0);
	buf_close(&k);
	return rc;
}

int state_put_readers(struct state *st, const struct hash_id *id, const char *node,
		      const uint8_t *bits, size_t len)
{
	struct buf k = BUF_INIT;
	have_key(&k, id, node);
	int rc = write_op(st, 0, T_READERS, k.ptr, k.len, bits, len);
	buf_close(&k);
	return rc;
}

/* ---- loading ------------------------------------------------------------ */

static char *key_string(const uint8_t *k, size_t kl, size_t skip)
{
	if (kl <= skip || kl - skip > NAME_MAX_LEN)
		return NULL;
	char *s = xstrndup((const char *)k + skip, kl - skip);
	return strlen(s) == kl - skip ? s : (free(s), NULL);
}

static int load_record(void *arg, enum table t, const void *kp, size_t kl, const void *vp,
		       size_t vl)
{
	const struct state_loader *l = arg;
	const uint8_t *kd = kp, *vd = vp;
	struct hash_id id;
	int rc = SB_EPROTO;
	char *name = NULL;
	if (t == T_VERSIONS && kl == HASH_LEN) {
		memcpy(id.b, kd, HASH_LEN);
		rc = l->version ? l->version(l->arg, &id, vd, vl) : 0;
	} else if (t == T_HASHES && kl == HASH_LEN + 4 && vl == HASH_LEN) {
		memcpy(id.b, kd, HASH_LEN);
		uint32_t b = (uint32_t)kd[HASH_LEN] << 24 | (uint32_t)kd[HASH_LEN + 1] << 16 |
			     (uint32_t)kd[HASH_LEN + 2] << 8 | kd[HASH_LEN + 3];
		rc = l->hash ? l->hash(l->arg, &id, b, vd) : 0;
	} else if (t == T_DATASETS && vl >= HASH_LEN && (name = key_string(kd, kl, 0))) {
		memcpy(id.b, vd, HASH_LEN);
		Syncbit__Admin *a = syncbit__admin__unpack(NULL, vl - HASH_LEN, vd + HASH_LEN);
		if (a)
			rc = l->dataset ? l->dataset(l->arg, name, &id, a) : 0;
		syncbit__admin__free_unpacked(a, NULL);
	} else if (t == T_NODES && vl >= 8 && (name = key_string(kd, kl, 0))) {
		uint64_t seen;
		memcpy(&seen, vd, 8);
		Syncbit__Register *r = syncbit__register__unpack(NULL, vl - 8, vd + 8);
		if (r)
			rc = l->node ? l->node(l->arg, name, (int64_t)seen, r) : 0;
		syncbit__register__free_unpacked(r, NULL);
	} else if (t == T_READERS && (name = key_string(kd, kl, HASH_LEN))) {
		memcpy(id.b, kd, HASH_LEN);
		rc = l->readers ? l->readers(l->arg, &id, name, vd, vl) : 0;
	} else if (t == T_HAVE && (name = key_string(kd, kl, HASH_LEN))) {
		memcpy(id.b, kd, HASH_LEN);
		Syncbit__VersionState *vs = syncbit__version_state__unpack(NULL, vl, vd);
		if (vs)
			rc = l->have ? l->have(l->arg, &id, name, vs) : 0;
		syncbit__version_state__free_unpacked(vs, NULL);
	}
	free(name);
	if (rc == SB_EPROTO) {
		log_warn("scheduler state: skipping an unreadable %s record", state_table_names[t]);
		rc = 0;
	}
	return rc;
}

int state_load(struct state *st, const struct state_loader *l)
{
	static const enum table order[] = {T_VERSIONS, T_HASHES, T_DATASETS,
					   T_NODES,    T_HAVE,	 T_READERS};
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		int rc = st->ops->scan(st, order[i], load_record, (void *)l);
		if (rc < 0)
			return rc;
	}
	return 0;
}
