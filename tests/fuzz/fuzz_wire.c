/* libFuzzer target for the protobuf messages that travel after the
 * handshake (proto/wire.proto): the peer protocol (Bitfield, Have,
 * Request, BlockHeader, Reject, Cancel), the control protocol both ways
 * (Register, Heartbeat, Ingested; Registered, Assign, Unassign, Hashes,
 * Peers, Origin, ErrorMsg) and the admin protocol (Admin, AdminReply). The
 * first input byte picks the message type, the rest is the frame body.
 *
 * Each body is unpacked as frame_dispatch does for the handlers (under its
 * type's allocation budget, common/net/pbuf_budget.h), then given to the project's
 * own checks that the handlers apply before acting: dataset and node names
 * (cluster_check_name, path_check_relative), labels and selectors
 * (assign_check_label), block sizes (manifest_check_block_size), sources
 * (uri_parse), the advertised peer address (conn_addr_resolve), and for an
 * Assign the copy of its manifest that fetch_new makes (manifest_encode,
 * then manifest_decode with its budget and manifest_validate). What a
 * handler then does with a live daemon, scheduler or peer is not reached
 * here. Whatever the bytes: no crash, leak or out-of-bounds access; a
 * message that unpacks packs again (its unknown fields dropped, see
 * strip_unknown) to bytes that unpack and pack the same; a manifest the
 * agent accepts validates. */
#include "tests/fuzz/fuzz_util.h"

#include "agent/peer_int.h"
#include "common/net/conn.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/manifest.h"
#include "common/net/pbuf_budget.h"
#include "common/path.h"
#include "common/uri.h"
#include "proto/wire.pb-c.h"
#include "scheduler/assign.h"
#include "scheduler/cluster.h"

typedef void (*check_fn)(const ProtobufCMessage *m);

static void check_bitfield(const ProtobufCMessage *pm)
{
	const Syncbit__Bitfield *m = (const Syncbit__Bitfield *)pm;
	/* What h_bitfield accepts keeps its bits within nblocks' bytes. */
	if (m->version_id.len == HASH_LEN && m->nblocks <= BITFIELD_BLOCKS_MAX &&
	    m->bits.len == (m->nblocks + 7) / 8)
		fuzz_check(m->bits.len <= BITFIELD_BLOCKS_MAX / 8, "bitfield too long");
}

static void check_labels(Syncbit__Label *const *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = assign_check_label(l[i]->key, l[i]->value);
		fuzz_check(rc == 0 || rc == SB_EPROTO, "assign_check_label");
		if (rc == 0)
			fuzz_check(fuzz_no_control(l[i]->key) && fuzz_no_control(l[i]->value) &&
				       !strpbrk(l[i]->value, ",="),
				   "a label with a separator accepted");
	}
}

static void check_name(const char *name)
{
	if (cluster_check_name(name) == 0)
		fuzz_check(name[0] && name[0] != '.' && !strchr(name, '/') &&
			       strlen(name) <= CLUSTER_NAME_MAX && path_check_relative(name) == 0,
			   "a name that is no path component accepted");
}

static void check_register(const ProtobufCMessage *pm)
{
	const Syncbit__Register *m = (const Syncbit__Register *)pm;
	check_name(m->node);
	check_labels(m->labels, m->n_labels);
	char *dial = conn_addr_resolve(m->peer_addr, "10.1.2.3:41000");
	fuzz_check(dial != NULL, "conn_addr_resolve");
	free(dial);
}

static void check_heartbeat(const ProtobufCMessage *pm)
{
	const Syncbit__Heartbeat *m = (const Syncbit__Heartbeat *)pm;
	for (size_t i = 0; i < m->n_versions; i++) {
		check_name(m->versions[i]->dataset);
		if (m->versions[i]->have)
			check_bitfield(&m->versions[i]->have->base);
	}
}

static void check_hashes(Syncbit__BlockHash *const *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fuzz_check(b[i]->hash.len == 0 || b[i]->hash.data, "hash without data");
}

static void check_ingested(const ProtobufCMessage *pm)
{
	const Syncbit__Ingested *m = (const Syncbit__Ingested *)pm;
	check_hashes(m->blocks, m->n_blocks);
}

static void check_hashes_msg(const ProtobufCMessage *pm)
{
	const Syncbit__Hashes *m = (const Syncbit__Hashes *)pm;
	check_hashes(m->blocks, m->n_blocks);
}

static void check_admin(const ProtobufCMessage *pm)
{
	const Syncbit__Admin *m = (const Syncbit__Admin *)pm;
	check_name(m->name);
	check_labels(m->selector, m->n_selector);
	uint32_t bs = m->block_size ? m->block_size : BLOCK_SIZE_DEFAULT;
	if (manifest_check_block_size(bs) == 0)
		fuzz_check(bs >= BLOCK_SIZE_MIN && bs <= BLOCK_SIZE_MAX && !(bs & (bs - 1)),
			   "block size");
	struct source_uri u;
	if (m->source && uri_parse(m->source, &u) == 0)
		uri_close(&u);
}

/* h_assign's checks, then fetch_new's copy of the manifest. */
static void check_assign(const ProtobufCMessage *pm)
{
	const Syncbit__Assign *a = (const Syncbit__Assign *)pm;
	if (!a->dataset || !a->manifest || a->version_id.len != HASH_LEN ||
	    path_check_relative(a->dataset) < 0 || strchr(a->dataset, '/') || a->dataset[0] == '.')
		return;
	struct buf enc = BUF_INIT;
	struct hash_id id;
	Manifest *copy = NULL;
	manifest_encode(a->manifest, &enc, &id);
	int rc = manifest_decode(enc.ptr, enc.len, &copy);
	fuzz_check(rc == 0 || rc == SB_EPROTO || rc == SB_ETOOBIG || rc == SB_ECONFINE,
		   "manifest_decode");
	if (rc == 0) {
		fuzz_check(manifest_validate(copy) == 0, "an accepted manifest does not validate");
		for (size_t i = 0; i < copy->n_files; i++)
			fuzz_check(path_check_relative(copy->files[i]->path) == 0,
				   "a manifest path not confined");
		manifest_free(copy);
	}
	buf_close(&enc);
}

static const struct {
	uint32_t type;
	const ProtobufCMessageDescriptor *desc;
	check_fn check;
} messages[] = {
    {SYNCBIT__MSG_TYPE__MSG_BITFIELD, &syncbit__bitfield__descriptor, check_bitfield},
    {SYNCBIT__MSG_TYPE__MSG_HAVE, &syncbit__have__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_REQUEST, &syncbit__request__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_BLOCK, &syncbit__block_header__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_PIECE, &syncbit__piece_header__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_REJECT, &syncbit__reject__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_CANCEL, &syncbit__cancel__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_REGISTER, &syncbit__register__descriptor, check_register},
    {SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &syncbit__heartbeat__descriptor, check_heartbeat},
    {SYNCBIT__MSG_TYPE__MSG_INGESTED, &syncbit__ingested__descriptor, check_ingested},
    {SYNCBIT__MSG_TYPE__MSG_REGISTERED, &syncbit__registered__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_ASSIGN, &syncbit__assign__descriptor, check_assign},
    {SYNCBIT__MSG_TYPE__MSG_UNASSIGN, &syncbit__unassign__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_HASHES, &syncbit__hashes__descriptor, check_hashes_msg},
    {SYNCBIT__MSG_TYPE__MSG_PEERS, &syncbit__peers__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_ORIGIN, &syncbit__origin__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_ADMIN, &syncbit__admin__descriptor, check_admin},
    {SYNCBIT__MSG_TYPE__MSG_ADMIN_REPLY, &syncbit__admin_reply__descriptor, NULL},
    {SYNCBIT__MSG_TYPE__MSG_ERROR, &syncbit__error_msg__descriptor, NULL},
};
#define NMESSAGES (sizeof messages / sizeof messages[0])

/* Drop the unknown fields protobuf-c kept, in m and every message inside
 * it. It packs them again as they came, some in a form it then refuses
 * (field 0 spelled in two bytes): the project never forwards them
 * (scheduler/server.c copies what it broadcasts), so the round trip below
 * holds for the known fields only. al: the allocator m was unpacked with. */
static void strip_unknown(ProtobufCMessage *m, ProtobufCAllocator *al)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		char *at = (char *)m + f->offset;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(size_t *)((char *)m + f->quantifier_offset);
			ProtobufCMessage **v = *(ProtobufCMessage ***)at;
			for (size_t k = 0; k < n; k++)
				strip_unknown(v[k], al);
		} else if (*(ProtobufCMessage **)at) {
			strip_unknown(*(ProtobufCMessage **)at, al);
		}
	}
	for (unsigned k = 0; k < m->n_unknown_fields; k++)
		al->free(al->allocator_data, m->unknown_fields[k].data);
	al->free(al->allocator_data, m->unknown_fields);
	m->unknown_fields = NULL;
	m->n_unknown_fields = 0;
}

/* Packed again, the message unpacks and packs to the same bytes. */
static void round_trip(const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *a = malloc(n + 1), *b = malloc(n + 1);
	fuzz_check(a && b && protobuf_c_message_pack(m, a) == n, "pack size");
	ProtobufCMessage *again = protobuf_c_message_unpack(d, NULL, n, a);
	fuzz_check(again != NULL, "a packed message does not unpack");
	fuzz_check(protobuf_c_message_get_packed_size(again) == n &&
		       protobuf_c_message_pack(again, b) == n && !memcmp(a, b, n),
		   "packing not stable");
	protobuf_c_message_free_unpacked(again, NULL);
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t k = data[0] % NMESSAGES;
	const ProtobufCMessageDescriptor *d = messages[k].desc;
	fuzz_check(pbuf_budget_descriptor(messages[k].type) == d,
		   "a type unpacks as another message");
	struct pbuf_budget b;
	ProtobufCAllocator a;
	ProtobufCMessage *m;
	if (pbuf_budget_unpack(messages[k].type, data + 1, size - 1, &b, &a, &m) < 0)
		return 0;
	fuzz_check(b.peak <= b.limit, "an unpack went over its budget");
	fuzz_check(protobuf_c_message_check(m), "an unpacked message fails its own check");
	if (messages[k].check)
		messages[k].check(m);
	strip_unknown(m, &a);
	round_trip(d, m);
	protobuf_c_message_free_unpacked(m, &a);
	fuzz_check(b.live == 0, "an unpacked message did not free all it allocated");
	return 0;
}

#ifdef FUZZ_SEED_MAIN

static int seed(const char *dir, const char *name, uint32_t type, const ProtobufCMessage *m)
{
	size_t k = 0;
	while (k < NMESSAGES && messages[k].type != type)
		k++;
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(n + 1);
	protobuf_c_message_pack(m, b);
	FILE *f = fopen(path, "wb");
	int ok = f && fputc((int)k, f) != EOF && fwrite(b, 1, n, f) == n;
	if (f && fclose(f) != 0)
		ok = 0;
	free(b);
	if (!ok)
		perror(path);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	const char *dir = argv[1];
	int rc = 0;
	uint8_t vid[HASH_LEN], hash[HASH_LEN], bits[3] = {0xff, 0x0f, 0x01};
	for (int i = 0; i < HASH_LEN; i++)
		vid[i] = (uint8_t)i, hash[i] = (uint8_t)(0xa0 + i);

	Syncbit__Bitfield bf = SYNCBIT__BITFIELD__INIT;
	bf.version_id = (ProtobufCBinaryData){HASH_LEN, vid};
	bf.nblocks = 17;
	bf.bits = (ProtobufCBinaryData){sizeof bits, bits};
	rc |= seed(dir, "bitfield", SYNCBIT__MSG_TYPE__MSG_BITFIELD, &bf.base);

	uint32_t blocks[] = {0, 5, 16};
	Syncbit__Have have = SYNCBIT__HAVE__INIT;
	have.version_id = bf.version_id;
	have.n_blocks = 3;
	have.blocks = blocks;
	rc |= seed(dir, "have", SYNCBIT__MSG_TYPE__MSG_HAVE, &have.base);

	Syncbit__Request req = SYNCBIT__REQUEST__INIT;
	req.request_id = 42;
	req.version_id = bf.version_id;
	req.block_hash = (ProtobufCBinaryData){HASH_LEN, hash};
	rc |= seed(dir, "request", SYNCBIT__MSG_TYPE__MSG_REQUEST, &req.base);

	Syncbit__Label l1 = SYNCBIT__LABEL__INIT, l2 = SYNCBIT__LABEL__INIT;
	l1.key = "topology.kubernetes.io/zone";
	l1.value = "eu-west-1a";
	l2.key = "gpu";
	l2.value = "";
	Syncbit__Label *labels[] = {&l1, &l2};
	Syncbit__Register reg = SYNCBIT__REGISTER__INIT;
	reg.node = "node-1.example";
	reg.peer_addr = "0.0.0.0:7001";
	reg.n_labels = 2;
	reg.labels = labels;
	reg.disk_free = 1ull << 40;
	reg.agent_version = "0.1";
	rc |= seed(dir, "register", SYNCBIT__MSG_TYPE__MSG_REGISTER, &reg.base);

	Syncbit__VersionState vs = SYNCBIT__VERSION_STATE__INIT;
	vs.dataset = "llama";
	vs.version_id = bf.version_id;
	vs.have = &bf;
	vs.bytes_from_origin = 1 << 20;
	vs.error = "";
	Syncbit__VersionState *vsp[] = {&vs};
	Syncbit__Heartbeat hb = SYNCBIT__HEARTBEAT__INIT;
	hb.seq = 7;
	hb.n_versions = 1;
	hb.versions = vsp;
	rc |= seed(dir, "heartbeat", SYNCBIT__MSG_TYPE__MSG_HEARTBEAT, &hb.base);

	Syncbit__BlockHash bh = SYNCBIT__BLOCK_HASH__INIT;
	bh.block = 3;
	bh.hash = req.block_hash;
	Syncbit__BlockHash *bhp[] = {&bh};
	Syncbit__Ingested ing = SYNCBIT__INGESTED__INIT;
	ing.version_id = bf.version_id;
	ing.n_blocks = 1;
	ing.blocks = bhp;
	rc |= seed(dir, "ingested", SYNCBIT__MSG_TYPE__MSG_INGESTED, &ing.base);

	/* An Assign of a two-file manifest, one hash still unknown. */
	static uint8_t hashes[2 * HASH_LEN];
	memcpy(hashes, hash, HASH_LEN);
	FileEntry dirent = SYNCBIT__FILE_ENTRY__INIT, file = SYNCBIT__FILE_ENTRY__INIT;
	dirent.path = "w";
	dirent.type = SYNCBIT__FILE_TYPE__FILE_DIRECTORY;
	dirent.mode = 0755;
	file.path = "w/model.bin";
	file.type = SYNCBIT__FILE_TYPE__FILE_REGULAR;
	file.mode = 0644;
	file.size = BLOCK_SIZE_MIN + 1;
	file.block_hashes = (ProtobufCBinaryData){sizeof hashes, hashes};
	FileEntry *files[] = {&dirent, &file};
	Manifest man = SYNCBIT__MANIFEST__INIT;
	man.format = MANIFEST_FORMAT;
	man.block_size = BLOCK_SIZE_MIN;
	man.source = "hf://acme/llm";
	man.n_files = 2;
	man.files = files;
	Syncbit__PeerInfo peer = SYNCBIT__PEER_INFO__INIT;
	peer.node = "node-2";
	peer.addr = "10.0.0.2:7001";
	Syncbit__PeerInfo *peers[] = {&peer};
	Syncbit__BlockRange range = SYNCBIT__BLOCK_RANGE__INIT;
	range.first = 0;
	range.count = 2;
	Syncbit__BlockRange *ranges[] = {&range};
	Syncbit__Assign as = SYNCBIT__ASSIGN__INIT;
	as.dataset = "llama";
	as.version_id = bf.version_id;
	as.manifest = &man;
	as.n_peers = 1;
	as.peers = peers;
	as.n_origin = 1;
	as.origin = ranges;
	as.reason = "striped over 2 nodes";
	rc |= seed(dir, "assign", SYNCBIT__MSG_TYPE__MSG_ASSIGN, &as.base);

	Syncbit__Admin adm = SYNCBIT__ADMIN__INIT;
	adm.op = SYNCBIT__ADMIN_OP__ADMIN_DATASET_ADD;
	adm.name = "llama";
	adm.source = "s3://bucket/models/llama/";
	adm.n_selector = 1;
	adm.selector = labels;
	adm.block_size = 1u << 22;
	rc |= seed(dir, "admin", SYNCBIT__MSG_TYPE__MSG_ADMIN, &adm.base);

	Syncbit__ErrorMsg err = SYNCBIT__ERROR_MSG__INIT;
	err.code = SB_EPROTO;
	err.message = "node name must be 1 to 128 characters";
	rc |= seed(dir, "error", SYNCBIT__MSG_TYPE__MSG_ERROR, &err.base);
	return rc ? 1 : 0;
}

#endif
