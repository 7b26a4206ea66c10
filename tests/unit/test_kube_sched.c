/* The scheduler's Kubernetes side stopped while its calls are in flight:
 * an API server that accepts connections and never answers keeps the node
 * and Dataset watches and the join token Secret's GET on the wire. */
#include "sched_fixture.h"

#include "scheduler/kube_sched.h"

#define MUTE_BACKLOG 16
#define MUTE_MAX     8

struct mute {
	uv_tcp_t server;
	uv_tcp_t peers[MUTE_MAX];
	int accepted;
	int port;
};

static void mute_accept(uv_stream_t *server, int status)
{
	struct mute *m = server->data;
	if (status < 0 || m->accepted == MUTE_MAX)
		return;
	uv_tcp_t *p = &m->peers[m->accepted];
	uv_tcp_init(server->loop, p);
	if (uv_accept(server, (uv_stream_t *)p) == 0)
		m->accepted++;
	else
		uv_close((uv_handle_t *)p, NULL);
}

static void mute_start(struct mute *m)
{
	struct sockaddr_in sa;
	struct sockaddr_storage got;
	int len = sizeof got;
	memset(m, 0, sizeof *m);
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_init(&fx.s.loop, &m->server), 0);
	m->server.data = m;
	assert_int_equal(uv_tcp_bind(&m->server, (const struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&m->server, MUTE_BACKLOG, mute_accept), 0);
	assert_int_equal(uv_tcp_getsockname(&m->server, (struct sockaddr *)&got, &len), 0);
	m->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void mute_stop(struct mute *m)
{
	for (int i = 0; i < m->accepted; i++)
		uv_close((uv_handle_t *)&m->peers[i], NULL);
	uv_close((uv_handle_t *)&m->server, NULL);
}

/* Freed with the Secret's call on the wire: the call goes with the client
 * once, and nothing of it is touched after. */
static void test_free_with_secret_call(void **state)
{
	static struct mute m; /* its handles close in teardown's loop run */
	char server[64];
	mute_start(&m);
	snprintf(server, sizeof server, "https://127.0.0.1:%d", m.port);
	struct kube_config cfg = {.server = server,
				  .token = (char *)"token",
				  .namespace = (char *)"syncbit",
				  .source = (char *)"test"};
	struct kube_sched *ks;
	assert_int_equal(kube_sched_new(&fx.s, &cfg, 0, "syncbit-join", &ks), 0);
	/* Two watches at once, the Secret's GET at the first tick. */
	WAIT_FOR(m.accepted >= 3);
	kube_sched_free(ks);
	mute_stop(&m);
}

int main(void)
{
	log_setup(LOG_ERROR + 1, LOG_FORMAT_TEXT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_free_with_secret_call, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
