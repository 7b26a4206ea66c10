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

/* The control protocol's liveness rule, the same on both ends: a node is
 * gone once nothing came from it for WIRE_SILENT_BEATS heartbeat intervals
 * plus a slack for the jitter of timers, loops and the network (a quarter
 * interval, at least WIRE_SLACK_MIN_MS, at most WIRE_SLACK_MAX_MS). One late
 * or lost heartbeat is tolerated; the second is not. The control
 * connection's TCP_USER_TIMEOUT is the same span on both ends. */
#define WIRE_SILENT_BEATS 2
#define WIRE_SLACK_MIN_MS 250
#define WIRE_SLACK_MAX_MS 1000

/* Before that, a node nothing came from for one and a half intervals (a
 * heartbeat more than half an interval late) is late: the scheduler moves
 * its origin shares to the others until it is heard again, so that blocks
 * only it was to read do not wait for it to be taken as gone. */
static inline uint64_t wire_late_ms(uint64_t heartbeat_ms)
{
	return heartbeat_ms + heartbeat_ms / 2;
}

static inline uint64_t wire_silence_ms(uint64_t heartbeat_ms)
{
	uint64_t slack = heartbeat_ms / 4;
	slack = slack < WIRE_SLACK_MIN_MS ? WIRE_SLACK_MIN_MS : slack;
	slack = slack > WIRE_SLACK_MAX_MS ? WIRE_SLACK_MAX_MS : slack;
	return WIRE_SILENT_BEATS * heartbeat_ms + slack;
}

/* Pack msg and send it as a frame of type, with an optional payload (see
 * conn_send for its lifetime and done). 0 or a negative error. */
int wire_send(struct conn *c, uint32_t type, const ProtobufCMessage *msg, const void *payload,
	      size_t payload_len, void (*done)(void *arg, int status), void *arg);
/* The same with the payload from a file by sendfile (conn_send_file). */
int wire_send_file(struct conn *c, uint32_t type, const ProtobufCMessage *msg, int fd, uint64_t off,
		   size_t payload_len, void (*done)(void *arg, int status), void *arg);

#endif
