/* Allocation budgets for protobuf messages from outside bytes. protobuf-c
 * allocates while it unpacks: a struct per submessage, an array per
 * repeated field, a scan record per field occurrence. A small body can ask
 * for far more memory than it is long (an empty submessage is 2 bytes on
 * the wire and a struct of ~50 bytes in memory), so every frame that
 * common/net/frame.c dispatches is first unpacked here under a budget derived
 * from its length and its type. Pure functions; thread-safe. */
#ifndef SYNCBIT_NET_PBUF_BUDGET_H
#define SYNCBIT_NET_PBUF_BUDGET_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes a message may hold at once while it unpacks: its body length times
 * the type's factor, plus this floor (the top struct and protobuf-c's first
 * scan slabs for a short body). */
#define PBUF_BUDGET_FLOOR (64u << 10)
/* Messages made of submessages and repeated fields. An honest encoding
 * needs less than a third of it (tests/unit/test_pbuf_budget.c); the same
 * factor bounds a manifest (common/manifest.c). */
#define PBUF_BUDGET_FACTOR 16
/* Messages without repeated or nested fields: at most the struct, strings
 * and bytes copied once, and a scan record per repeated occurrence of a
 * field. */
#define PBUF_BUDGET_FACTOR_FLAT 4

/* Live bytes of an unpack, counted by its allocator. */
struct pbuf_budget {
	size_t limit; /* live bytes allowed at once */
	size_t live;  /* allocated and not freed, headers included */
	size_t peak;
	int refused; /* an allocation did not fit: why the unpack failed */
};

/* A ProtobufCAllocator counting into b; a message unpacked with it must be
 * freed with it (each block carries its size in front). */
void pbuf_budget_init(struct pbuf_budget *b, size_t limit, ProtobufCAllocator *a);

/* The descriptor of message type `type` (a Syncbit__MsgType value), or
 * NULL for a type that carries no message (MSG_AUTH) or is unknown. */
const ProtobufCMessageDescriptor *pbuf_budget_descriptor(uint32_t type);
/* The budget of a body of len bytes of message type `type`. */
size_t pbuf_budget_limit(uint32_t type, size_t len);

/* Unpack body (len bytes) as message type `type` under its budget, with
 * allocator *a counting into *b (both set up here): 0 and the message in
 * *out, to be freed with protobuf_c_message_free_unpacked(*out, a);
 * SB_ETOOBIG when unpacking needs more memory than the budget, SB_EPROTO
 * when body is not a valid message of that type (nothing stays allocated
 * then). A type without a message: 0 and *out NULL. */
int pbuf_budget_unpack(uint32_t type, const uint8_t *body, size_t len, struct pbuf_budget *b,
		       ProtobufCAllocator *a, ProtobufCMessage **out);

/* The same, releasing the message at once: 0 when it fits or is not a valid message of that type
 * (the handler then refuses it as it always did), SB_ETOOBIG when
 * unpacking it needs more memory than its budget. Nothing stays
 * allocated either way. A type without a message passes. */
int pbuf_budget_check(uint32_t type, const uint8_t *body, size_t len);

#endif
