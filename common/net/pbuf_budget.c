#include "common/net/pbuf_budget.h"

#include <stdlib.h>

#include "common/err.h"
#include "proto/wire.pb-c.h"

/* Each block carries its size in front, so frees give the budget back: the
 * limit is on what is live at once, as protobuf-c frees its scan slabs
 * before it returns. */
static void *budget_alloc(void *data, size_t size)
{
	struct pbuf_budget *b = data;
	size_t need = size + sizeof(size_t);
	if (need < size || need > b->limit - b->live) {
		b->refused = 1;
		return NULL;
	}
	size_t *p = malloc(need);
	if (!p)
		return NULL;
	b->live += need;
	if (b->live > b->peak)
		b->peak = b->live;
	p[0] = need;
	return p + 1;
}

static void budget_free(void *data, void *ptr)
{
	struct pbuf_budget *b = data;
	if (!ptr)
		return;
	size_t *p = (size_t *)ptr - 1;
	b->live -= p[0];
	free(p);
}

void pbuf_budget_init(struct pbuf_budget *b, size_t limit, ProtobufCAllocator *a)
{
	b->limit = limit;
	b->live = b->peak = 0;
	b->refused = 0;
	a->alloc = budget_alloc;
	a->free = budget_free;
	a->allocator_data = b;
}

const ProtobufCMessageDescriptor *pbuf_budget_descriptor(uint32_t type)
{
	switch (type) {
	case SYNCBIT__MSG_TYPE__MSG_HELLO:
		return &syncbit__hello__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_BITFIELD:
		return &syncbit__bitfield__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_HAVE:
		return &syncbit__have__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_REQUEST:
		return &syncbit__request__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_BLOCK:
		return &syncbit__block_header__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_REJECT:
		return &syncbit__reject__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_CANCEL:
		return &syncbit__cancel__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_REGISTER:
		return &syncbit__register__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_HEARTBEAT:
		return &syncbit__heartbeat__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_INGESTED:
		return &syncbit__ingested__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_REGISTERED:
		return &syncbit__registered__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_ASSIGN:
		return &syncbit__assign__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_UNASSIGN:
		return &syncbit__unassign__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_HASHES:
		return &syncbit__hashes__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_PEERS:
		return &syncbit__peers__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_ORIGIN:
		return &syncbit__origin__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_ADMIN:
		return &syncbit__admin__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_ADMIN_REPLY:
		return &syncbit__admin_reply__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_BAD_BLOCK:
		return &syncbit__bad_block__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_PIECE:
		return &syncbit__piece_header__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_PULL:
		return &syncbit__pull_request__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_PULL_REPLY:
		return &syncbit__pull_reply__descriptor;
	case SYNCBIT__MSG_TYPE__MSG_ERROR:
		return &syncbit__error_msg__descriptor;
	default:
		return NULL;
	}
}

/* Flat: no field repeats and none is a message, so unpacking copies each
 * string or bytes field once next to one struct. */
static int flat(const ProtobufCMessageDescriptor *d)
{
	for (unsigned i = 0; i < d->n_fields; i++)
		if (d->fields[i].label == PROTOBUF_C_LABEL_REPEATED ||
		    d->fields[i].type == PROTOBUF_C_TYPE_MESSAGE)
			return 0;
	return 1;
}

size_t pbuf_budget_limit(uint32_t type, size_t len)
{
	const ProtobufCMessageDescriptor *d = pbuf_budget_descriptor(type);
	size_t factor = d && flat(d) ? PBUF_BUDGET_FACTOR_FLAT : PBUF_BUDGET_FACTOR;
	if (len > (SIZE_MAX - PBUF_BUDGET_FLOOR) / factor)
		return SIZE_MAX;
	return len * factor + PBUF_BUDGET_FLOOR;
}

int pbuf_budget_unpack(uint32_t type, const uint8_t *body, size_t len, struct pbuf_budget *b,
		       ProtobufCAllocator *a, ProtobufCMessage **out)
{
	const ProtobufCMessageDescriptor *d = pbuf_budget_descriptor(type);
	*out = NULL;
	pbuf_budget_init(b, pbuf_budget_limit(type, len), a);
	if (!d)
		return 0;
	*out = protobuf_c_message_unpack(d, a, len, body);
	if (*out)
		return 0;
	return b->refused ? SB_ETOOBIG : SB_EPROTO;
}

int pbuf_budget_check(uint32_t type, const uint8_t *body, size_t len)
{
	struct pbuf_budget b;
	ProtobufCAllocator a;
	ProtobufCMessage *m;
	int rc = pbuf_budget_unpack(type, body, len, &b, &a, &m);
	if (m)
		protobuf_c_message_free_unpacked(m, &a);
	return rc == SB_ETOOBIG ? rc : 0;
}
