/* sched-scale: the load generator of bench/sched-scale.sh.
 *
 *   sched-scale --scheduler HOST:PORT --token-file FILE --nodes N [options]
 *
 * Commands, one a line on stdin; each answer is one line on stdout, times
 * in wall-clock milliseconds (CLOCK_REALTIME):
 *   status                     status registered=R dialing=D versions=V ...
 *   wait-registered N          registered N T        (once N nodes registered)
 *   wait-assign NAME COUNT     assigned NAME COUNT T (COUNT nodes got its Assign;
 *                                                     T = the last one)
 *   wait-complete NAME COUNT   complete NAME COUNT T (COUNT nodes hold all of it)
 *   hold NAME / release NAME   nodes read nothing of NAME from the origin meanwhile
 *   freeze K NAME              K nodes with unread origin blocks of NAME stop
 *                              sending and reading, sockets left open; later:
 *                              replanned NAME K MS_SINCE_FREEZE MS_SINCE_LAST_HEARTBEAT
 *                              (every unread block of theirs is in a live node's share)
 *   thaw                       frozen nodes dial again
 *   deaf K                     K registered nodes stop reading their sockets and
 *                              go on sending: deaf K
 *   hear                       they read again: hearing K
 *   leave K                    K nodes close their connection and join 2 s later
 *   quit
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench/sched-scale/sim.h"
#include "common/buf.h"
#include "common/log.h"

#define WATCH_MAX 256

struct sim *sim;

/* A dataset name some command waits on. */
struct watch {
	char *name;
	uint32_t assigned, complete;
	int64_t assigned_ms, complete_ms;
	uint32_t want_assigned, want_complete; /* 0 = not waiting */
};

static struct watch watches[WATCH_MAX];
static size_t nwatches;
static char *held[WATCH_MAX];
static size_t nheld;
static uint32_t want_registered;
static uv_pipe_t in;
static struct buf line;

int64_t sim_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static struct watch *watch_of(const char *name)
{
	for (size_t i = 0; i < nwatches; i++)
		if (!strcmp(watches[i].name, name))
			return &watches[i];
	if (nwatches == WATCH_MAX)
		return NULL;
	struct watch *w = &watches[nwatches++];
	memset(w, 0, sizeof *w);
	w->name = xstrdup(name);
	return w;
}

static int is_held(const char *dataset)
{
	for (size_t i = 0; i < nheld; i++)
		if (!strcmp(held[i], dataset))
			return 1;
	return 0;
}

struct gver *sim_gver(const uint8_t id[32], uint32_t nblocks, const char *dataset)
{
	for (size_t i = 0; i < sim->nvers; i++)
		if (!memcmp(sim->vers[i]->id, id, 32))
			return sim->vers[i];
	if (!nblocks)
		return NULL;
	struct gver *g = xcalloc(1, sizeof *g);
	memcpy(g->id, id, 32);
	g->dataset = xstrdup(dataset);
	g->nblocks = nblocks;
	g->known = xcalloc(nblocks / 8 + 1, 1);
	g->orphan = xcalloc(nblocks / 8 + 1, 1);
	g->held = is_held(dataset);
	sim->vers = xrealloc(sim->vers, (sim->nvers + 1) * sizeof *sim->vers);
	sim->vers[sim->nvers++] = g;
	return g;
}

/* ---- events ------------------------------------------------------------------ */

static void check_registered(void)
{
	if (want_registered && sim->registered >= want_registered) {
		say("registered %u %lld", sim->registered, (long long)sim_wall_ms());
		want_registered = 0;
	}
}

void sim_on_registered(struct snode *n)
{
	sim->dialing--;
	sim->registered++;
	check_registered();
}

void sim_on_assign(struct snode *n, struct nver *v)
{
	struct watch *w = watch_of(v->dataset);
	if (!w)
		return;
	w->assigned++;
	w->assigned_ms = sim_wall_ms();
	if (w->want_assigned && w->assigned >= w->want_assigned) {
		say("assigned %s %u %lld", w->name, w->assigned, (long long)w->assigned_ms);
		w->want_assigned = 0;
	}
}

void sim_on_complete(struct snode *n, struct nver *v)
{
	struct watch *w = watch_of(v->dataset);
	if (!w)
		return;
	w->complete++;
	w->complete_ms = sim_wall_ms();
	if (w->want_complete && w->complete >= w->want_complete) {
		say("complete %s %u %lld", w->name, w->complete, (long long)w->complete_ms);
		w->want_complete = 0;
	}
}

void sim_on_plan(struct snode *n, struct nver *v)
{
	struct gver *g = v->g;
	if (!g->frozen_ms || n->frozen || !g->norphan)
		return;
	for (uint32_t i = 0; i < v->nplan; i++) {
		uint32_t b = v->plan[i];
		if (g->orphan[b / 8] >> (b % 8) & 1) {
			g->orphan[b / 8] &= (uint8_t) ~(1u << (b % 8));
			g->norphan--;
		}
	}
	if (g->norphan == 0) {
		int64_t now = sim_wall_ms();
		say("replanned %s %u %lld %lld", g->dataset, g->nfrozen,
		    (long long)(now - g->frozen_ms), (long long)(now - g->frozen_hb_ms));
		g->frozen_ms = 0;
	}
}

/* ---- commands ---------------------------------------------------------------- */

static struct gver *current_of(const char *dataset)
{
	struct gver *g = NULL;
	for (size_t i = 0; i < sim->nvers; i++)
		if (!strcmp(sim->vers[i]->dataset, dataset))
			g = sim->vers[i]; /* the latest seen */
	return g;
}

static void cmd_freeze(uint32_t k, const char *dataset)
{
	struct gver *g = current_of(dataset);
	uint32_t done = 0;
	if (!g) {
		say("error freeze: no version of %s seen", dataset);
		return;
	}
	memset(g->orphan, 0, g->nblocks / 8 + 1);
	g->norphan = 0;
	g->frozen_hb_ms = 0;
	for (uint32_t i = 0; i < sim->o.nodes && done < k; i++) {
		struct snode *n = &sim->nodes[(i * 7919u) % sim->o.nodes];
		struct nver *v = n->registered && !n->frozen ? node_ver(n, g) : NULL;
		if (!v || node_unread(v) == 0)
			continue;
		node_freeze(n);
		done++;
		if (n->last_hb_ms > g->frozen_hb_ms)
			g->frozen_hb_ms = n->last_hb_ms;
		for (uint32_t j = 0; j < v->nplan; j++) {
			uint32_t b = v->plan[j];
			if (!(v->have[b / 8] >> (b % 8) & 1) &&
			    !(g->orphan[b / 8] >> (b % 8) & 1)) {
				g->orphan[b / 8] |= (uint8_t)(1u << (b % 8));
				g->norphan++;
			}
		}
	}
	g->nfrozen = done;
	g->frozen_ms = sim_wall_ms();
	say("frozen %s %u blocks=%u %lld", dataset, done, g->norphan, (long long)g->frozen_ms);
}

static void cmd_release(const char *dataset)
{
	for (size_t i = 0; i < nheld; i++)
		if (!strcmp(held[i], dataset)) {
			free(held[i]);
			held[i] = held[--nheld];
			break;
		}
	for (size_t i = 0; i < sim->nvers; i++)
		if (!strcmp(sim->vers[i]->dataset, dataset))
			sim->vers[i]->held = 0;
}

static void cmd_status(void)
{
	uint32_t frozen = 0;
	size_t nv = 0;
	for (uint32_t i = 0; i < sim->o.nodes; i++) {
		frozen += sim->nodes[i].frozen;
		nv += sim->nodes[i].nvers;
	}
	say("status registered=%u dialing=%u frozen=%u node_versions=%zu versions=%zu msgs_in=%llu "
	    "msgs_out=%llu heartbeat_bytes=%llu",
	    sim->registered, sim->dialing, frozen, nv, sim->nvers, (unsigned long long)sim->msgs_in,
	    (unsigned long long)sim->msgs_out, (unsigned long long)sim->bytes_hb);
}

static void leave_some(uint32_t k)
{
	for (uint32_t j = 0; j < k; j++) {
		struct snode *n = &sim->nodes[(uint32_t)rand() % sim->o.nodes];
		node_leave(n, 2000);
	}
}

/* A command's count: decimal digits only, below 2^32 (sscanf's %u would
 * take "-1" for 4294967295). */
static int count_of(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v > UINT32_MAX)
		return 0;
	*out = (unsigned)v;
	return 1;
}

static void command(char *s)
{
	char name[256], num[24];
	unsigned a;
	if (!strcmp(s, "status")) {
		cmd_status();
	} else if (sscanf(s, "wait-registered %23s", num) == 1 && count_of(num, &a)) {
		want_registered = a;
		check_registered();
	} else if (sscanf(s, "wait-assign %255s %23s", name, num) == 2 && count_of(num, &a)) {
		struct watch *w = watch_of(name);
		w->want_assigned = a;
		if (w->assigned >= a) {
			say("assigned %s %u %lld", name, w->assigned, (long long)w->assigned_ms);
			w->want_assigned = 0;
		}
	} else if (sscanf(s, "wait-complete %255s %23s", name, num) == 2 && count_of(num, &a)) {
		struct watch *w = watch_of(name);
		w->want_complete = a;
		if (w->complete >= a) {
			say("complete %s %u %lld", name, w->complete, (long long)w->complete_ms);
			w->want_complete = 0;
		}
	} else if (sscanf(s, "hold %255s", name) == 1) {
		if (nheld < WATCH_MAX)
			held[nheld++] = xstrdup(name);
	} else if (sscanf(s, "release %255s", name) == 1) {
		cmd_release(name);
	} else if (sscanf(s, "freeze %23s %255s", num, name) == 2 && count_of(num, &a)) {
		cmd_freeze(a, name);
	} else if (!strcmp(s, "thaw")) {
		for (uint32_t i = 0; i < sim->o.nodes; i++)
			if (sim->nodes[i].frozen && !sim->nodes[i].conn) {
				sim->nodes[i].frozen = 0;
				node_dial(&sim->nodes[i]);
			}
	} else if (sscanf(s, "deaf %23s", num) == 1 && count_of(num, &a)) {
		uint32_t done = 0;
		for (uint32_t i = 0; i < sim->o.nodes && done < a; i++)
			done += (uint32_t)node_deafen(&sim->nodes[i], 1);
		say("deaf %u", done);
	} else if (!strcmp(s, "hear")) {
		uint32_t done = 0;
		for (uint32_t i = 0; i < sim->o.nodes; i++)
			done += (uint32_t)node_deafen(&sim->nodes[i], 0);
		say("hearing %u", done);
	} else if (sscanf(s, "leave %23s", num) == 1 && count_of(num, &a)) {
		leave_some(a);
	} else if (!strcmp(s, "quit")) {
		exit(0);
	} else if (s[0]) {
		say("error unknown command: %s", s);
	}
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char space[4096];
	b->base = space;
	b->len = sizeof space;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	if (nread < 0) {
		exit(0); /* the driver went away */
	}
	for (ssize_t i = 0; i < nread; i++) {
		if (b->base[i] != '\n') {
			buf_append(&line, &b->base[i], 1);
			continue;
		}
		command((char *)buf_cstr(&line));
		buf_reset(&line);
	}
}

/* ---- dialing and churn --------------------------------------------------------- */

static void dial_more(uv_timer_t *t)
{
	while (sim->next_dial < sim->o.nodes && sim->dialing < sim->o.dial_window)
		node_dial(&sim->nodes[sim->next_dial++]);
	if (sim->next_dial == sim->o.nodes)
		uv_timer_stop(t);
}

static void churn(uv_timer_t *t)
{
	leave_some(1);
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: sched-scale --scheduler HOST:PORT --token-file FILE --nodes N\n"
	    "         [--bind-addrs K] [--dial-window W] [--origin-rate BLOCKS/S]\n"
	    "         [--peer-rate BLOCKS/S] [--churn-per-min C] [--groups G] [--no-encrypt]\n");
	exit(2);
}

static void parse(int argc, char **argv, struct sim_options *o)
{
	static const struct option opts[] = {{"scheduler", 1, 0, 's'},
					     {"token-file", 1, 0, 't'},
					     {"nodes", 1, 0, 'n'},
					     {"bind-addrs", 1, 0, 'b'},
					     {"dial-window", 1, 0, 'w'},
					     {"origin-rate", 1, 0, 'o'},
					     {"peer-rate", 1, 0, 'p'},
					     {"churn-per-min", 1, 0, 'c'},
					     {"groups", 1, 0, 'g'},
					     {"no-encrypt", 0, 0, 'x'},
					     {0, 0, 0, 0}};
	*o = (struct sim_options){.nodes = 1000,
				  .bind_addrs = 8,
				  .dial_window = 64,
				  .origin_rate = 8,
				  .peer_rate = 100,
				  .groups = 4,
				  .encrypt = 1};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->scheduler = optarg;
			break;
		case 't':
			o->token_file = optarg;
			break;
		case 'n':
			o->nodes = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'b':
			o->bind_addrs = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'w':
			o->dial_window = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'o':
			o->origin_rate = strtod(optarg, NULL);
			break;
		case 'p':
			o->peer_rate = strtod(optarg, NULL);
			break;
		case 'c':
			o->churn_per_min = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'g':
			o->groups = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'x':
			o->encrypt = 0;
			break;
		default:
			usage();
		}
	}
	if (!o->scheduler || !o->token_file || !o->nodes || o->nodes > 200000 || !o->bind_addrs ||
	    o->bind_addrs > 250 || !o->dial_window)
		usage();
}

int main(int argc, char **argv)
{
	static struct sim s;
	static uv_loop_t loop;
	char *why = NULL;
	sim = &s;
	parse(argc, argv, &s.o);
	log_setup(LOG_WARN, LOG_FORMAT_TEXT);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)s.o.nodes + 64)
		fprintf(stderr,
			"sched-scale: %llu file descriptors for %u nodes; raise ulimit -n\n",
			(unsigned long long)rl.rlim_cur, s.o.nodes);
	if (secure_token_load(s.o.token_file, &s.token, &why) < 0) {
		fprintf(stderr, "sched-scale: %s: %s\n", s.o.token_file, why ? why : "unreadable");
		return 1;
	}
	srand((unsigned)getpid());
	uv_loop_init(&loop);
	s.loop = &loop;
	s.nodes = xcalloc(s.o.nodes, sizeof *s.nodes);
	for (uint32_t i = 0; i < s.o.nodes; i++) {
		struct snode *n = &s.nodes[i];
		n->idx = i;
		snprintf(n->name, sizeof n->name, "sim-%05u", i);
		snprintf(n->bind_ip, sizeof n->bind_ip, "127.0.0.%u", 2 + i % s.o.bind_addrs);
		secure_keypair_new(&n->key);
		uv_timer_init(&loop, &n->hb);
		uv_timer_init(&loop, &n->tick);
		uv_timer_init(&loop, &n->redial);
		n->hb.data = n->tick.data = n->redial.data = n;
	}
	uv_pipe_init(&loop, &in, 0);
	if (uv_pipe_open(&in, 0) == 0)
		uv_read_start((uv_stream_t *)&in, on_alloc, on_read);
	uv_timer_init(&loop, &s.dialer);
	uv_timer_start(&s.dialer, dial_more, 0, 10);
	uv_timer_init(&loop, &s.churn);
	if (s.o.churn_per_min)
		uv_timer_start(&s.churn, churn, 60000 / s.o.churn_per_min,
			       60000 / s.o.churn_per_min);
	say("started %u %lld", s.o.nodes, (long long)sim_wall_ms());
	uv_run(&loop, UV_RUN_DEFAULT);
	return 0;
}
