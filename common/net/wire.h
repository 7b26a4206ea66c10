/* Sending protobuf messages over a connection: pack into a frame body and
 * queue it (common/net/conn.h), and unpack a body with protobuf-c's bounded
 * decoder. Loop thread only. */
#ifndef SYNCBIT_NET_WIRE_H
#define SYNCBIT_NET_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net/conn.h"
#include "proto/wire.pb-c.h"

/* Pack msg and send it as a frame of type, with an optional payload (see
 * conn_send for its lifetime and done). 0 or a negative error. */
int wire_send(struct conn *c, uint32_t type, const ProtobufCMessage *msg, const void *payload,
	      size_t payload_len, void (*done)(void *arg, int status), void *arg);
/* The same with the payload from a file by sendfile (conn_send_file). */
int wire_send_file(struct conn *c, uint32_t type, const ProtobufCMessage *msg, int fd, uint64_t off,
		   size_t payload_len, void (*done)(void *arg, int status), void *arg);

#endif
