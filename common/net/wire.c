#include "common/net/wire.h"

#include <stdlib.h>

#include "common/buf.h"

int wire_send(struct conn *c, uint32_t type, const ProtobufCMessage *msg, const void *payload,
	      size_t payload_len, void (*done)(void *arg, int status), void *arg)
{
	uint8_t small[512];
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *body = n <= sizeof small ? small : xmalloc(n);
	protobuf_c_message_pack(msg, body);
	int rc = conn_send(c, type, body, n, payload, payload_len, done, arg);
	if (body != small)
		free(body);
	return rc;
}

int wire_send_file(struct conn *c, uint32_t type, const ProtobufCMessage *msg, int fd, uint64_t off,
		   size_t payload_len, void (*done)(void *arg, int status), void *arg)
{
	uint8_t small[512];
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *body = n <= sizeof small ? small : xmalloc(n);
	protobuf_c_message_pack(msg, body);
	int rc = conn_send_file(c, type, body, n, fd, off, payload_len, done, arg);
	if (body != small)
		free(body);
	return rc;
}
