/* One Admin request to the scheduler and its reply, for the admin commands
 * (cli/cmd_admin.c) and dataset wait / status --watch: dial with the join
 * token on a short-lived loop, follow the leader among several addresses. */
#ifndef SYNCBIT_CLI_ADMIN_CALL_H
#define SYNCBIT_CLI_ADMIN_CALL_H

#include "cli/cli.h"
#include "common/buf.h"
#include "common/net/conn.h"
#include "proto/wire.pb-c.h"

#define ADMIN_REPLY_MAX (64u << 20)
/* How often a call looks for a stop asked by a signal. */
#define CALL_STOP_CHECK_MS 100

struct call {
	const char *what; /* "dataset add", for messages */
	const char *addr; /* --scheduler: one HOST:PORT or several A,B,C */
	char *list;	  /* the copy addr points into once one of several is asked */
	struct buf body;
	uv_timer_t timer;
	uv_timer_t stop; /* looks for a stop asked by a signal */
	int status;	 /* connection failure, or 0 */
	int dial_failed; /* the address did not parse */
	char *error;	 /* its one-line explanation */
	Syncbit__AdminReply *reply;
};

/* Send a and wait for the reply. 0 with k->reply, or EXIT_FAIL after the
 * error line. */
int admin_call_scheduler(struct call *k, struct config *cfg, const Syncbit__Admin *a);
void admin_call_close(struct call *k);

#endif
