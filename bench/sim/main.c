/* build/bench/sim: the distribution model's command line (bench/sim/README.md).
 * Prints the configuration, the timeline when asked, and the results; the
 * last line is "ratio time T x S/B, egress E x S". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sim/sim.h"

static const char usage[] =
    "usage: sim [--testbed] [--nodes N] [--size BYTES] [--block BYTES] [--link LO[:HI]]\n"
    "           [--origin RATE] [--efficiency F] [--rack N] [--oversub X] [--late N] [--late-until "
    "F]\n"
    "           [--die N] [--die-window F:F] [--latency-ms MS] [--cpu BYTES/S]\n"
    "           [--heartbeat-s S] [--seed N] [--timeline] [--selftest]\n"
    "  sizes take K, M, G, T (powers of 1024); rates take k, M, G (bits/s, powers of 1000)\n"
    "  --testbed: bench/cluster's testbed (8 nodes, 256 MiB, every link 200 Mbit/s)\n";

/* "256M" -> bytes (binary units) or, with si, "200M" -> bits/s. */
static int parse_num(const char *s, int si, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	double k = si ? 1000.0 : 1024.0;
	switch (*end) {
	case 'k':
	case 'K':
		v *= k, end++;
		break;
	case 'm':
	case 'M':
		v *= k * k, end++;
		break;
	case 'g':
	case 'G':
		v *= k * k * k, end++;
		break;
	case 't':
	case 'T':
		v *= k * k * k * k, end++;
		break;
	default:
		break;
	}
	if (!strcmp(end, "iB") || !strcmp(end, "B") || !strcmp(end, "bit") || !strcmp(end, "b"))
		end += strlen(end);
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int parse_pair(const char *s, int si, double *lo, double *hi)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%s", s);
	char *colon = strchr(buf, ':');
	if (colon)
		*colon = 0;
	if (parse_num(buf, si, lo) < 0)
		return -1;
	*hi = *lo;
	return colon ? parse_num(colon + 1, si, hi) : 0;
}

static void testbed(struct sim_config *c)
{
	sim_config_default(c);
	c->nodes = 8;
	c->size = 256ull << 20;
	c->block = 4u << 20;
	c->link_lo = c->link_hi = c->origin = 200e6;
	c->efficiency = 1448.0 / 1514.0; /* TCP payload of a full Ethernet frame */
	c->rack_size = 0;
	c->oversub = 0;
	c->late = c->die = 0;
}

static int bad(const char *flag, const char *v)
{
	fprintf(stderr, "sim: bad value for %s: '%s' (sim --help lists the flags)\n", flag,
		v ? v : "");
	return 2;
}

int main(int argc, char **argv)
{
	struct sim_config c;
	sim_config_default(&c);
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--testbed"))
			testbed(&c);
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		double x, y;
		if (!strcmp(f, "--testbed"))
			continue;
		if (!strcmp(f, "--timeline")) {
			c.timeline = 1;
			continue;
		}
		if (!strcmp(f, "--selftest")) {
			int ok = swarm_selftest(c.seed);
			printf("selftest: index and agent/pick.c scan %s\n",
			       ok ? "agree" : "DIFFER");
			return ok ? 0 : 1;
		}
		if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
			fputs(usage, stdout);
			return 0;
		}
		if (!v)
			return bad(f, v);
		i++;
		if (!strcmp(f, "--nodes") && parse_num(v, 1, &x) == 0 && x >= 1 && x <= 100000)
			c.nodes = (uint32_t)x;
		else if (!strcmp(f, "--size") && parse_num(v, 0, &x) == 0 && x >= 1)
			c.size = (uint64_t)x;
		else if (!strcmp(f, "--block") && parse_num(v, 0, &x) == 0 && x >= 65536 &&
			 x <= (1u << 30))
			c.block = (uint32_t)x;
		else if (!strcmp(f, "--link") && parse_pair(v, 1, &x, &y) == 0 && x > 0 && y >= x)
			c.link_lo = x, c.link_hi = y;
		else if (!strcmp(f, "--efficiency") && parse_num(v, 1, &x) == 0 && x > 0 && x <= 1)
			c.efficiency = x;
		else if (!strcmp(f, "--origin") && parse_num(v, 1, &x) == 0 && x > 0)
			c.origin = x;
		else if (!strcmp(f, "--rack") && parse_num(v, 1, &x) == 0)
			c.rack_size = (uint32_t)x;
		else if (!strcmp(f, "--oversub") && parse_num(v, 1, &x) == 0)
			c.oversub = x;
		else if (!strcmp(f, "--late") && parse_num(v, 1, &x) == 0)
			c.late = (uint32_t)x;
		else if (!strcmp(f, "--late-until") && parse_num(v, 1, &x) == 0)
			c.late_until = x;
		else if (!strcmp(f, "--die") && parse_num(v, 1, &x) == 0)
			c.die = (uint32_t)x;
		else if (!strcmp(f, "--die-window") && parse_pair(v, 1, &x, &y) == 0 && y >= x)
			c.die_from = x, c.die_until = y;
		else if (!strcmp(f, "--latency-ms") && parse_num(v, 1, &x) == 0)
			c.latency_s = x / 1000.0;
		else if (!strcmp(f, "--cpu") && parse_num(v, 0, &x) == 0)
			c.cpu = x;
		else if (!strcmp(f, "--heartbeat-s") && parse_num(v, 1, &x) == 0 && x > 0)
			c.heartbeat_s = x;
		else if (!strcmp(f, "--seed") && parse_num(v, 1, &x) == 0)
			c.seed = (uint64_t)x;
		else
			return bad(f, v);
	}
	printf("model: %u nodes, %.6g GiB in %u KiB blocks, node links %.4g-%.4g Gbit/s, "
	       "origin %.4g Gbit/s, payload %.3f of the line rate\n",
	       c.nodes, (double)c.size / (1ull << 30), c.block >> 10, c.link_lo / 1e9,
	       c.link_hi / 1e9, c.origin / 1e9, c.efficiency);
	printf("       racks of %u, rack 0's uplink 1:%.3g, %u late (until %.2f S/B), %u dying "
	       "(%.2f-%.2f S/B), latency %.3f ms, CPUs %s, seed %llu\n",
	       c.rack_size, c.oversub, c.late, c.late_until, c.die, c.die_from, c.die_until,
	       c.latency_s * 1000, c.cpu > 0 ? "limited" : "not modelled",
	       (unsigned long long)c.seed);
	fflush(stdout);
	struct sim_result r;
	if (c.timeline)
		printf("t/(S/B)    t        origin link  nodes done    blocks held\n");
	if (sim_run(&c, &r, stdout) < 0)
		return 1;
	double S = (double)c.size;
	printf("nodes: %u, %u joined late, %u died, %u alive, %u done%s\n", r.nodes, r.late, r.died,
	       r.alive, r.finished, r.complete ? ", every one holds every block" : ", INCOMPLETE");
	printf("S/B %.3f s (B: the slowest link); first node %.3f s (%.3f x S/B), last %.3f s; "
	       "origin done %.3f x S/B\n",
	       r.floor_s, r.first_s, r.first_s / r.floor_s, r.last_s, r.origin_done_s / r.floor_s);
	printf("each node, from its join to done, over S / its own link: mean %.3f, worst %.3f "
	       "(node %u), worst of those there from the start outside rack 0 %.3f\n",
	       r.own_mean, r.own_max, r.own_max_node, r.own_max_plain);
	printf("payload: origin %.4f x S, peers %.3f x S (duplicates %.4f x S); %llu plans, "
	       "%llu orphaned blocks, %llu blocks moved by rebalance, %llu events\n",
	       (double)r.origin_bytes / S, (double)r.peer_bytes / S, (double)r.dup_bytes / S,
	       (unsigned long long)r.replans, (unsigned long long)r.orphans,
	       (unsigned long long)r.moved, (unsigned long long)r.events);
	printf("digest %016llx\n", (unsigned long long)r.digest);
	printf("ratio time %.3f x S/B, egress %.3f x S\n", r.last_s / r.floor_s,
	       (double)r.origin_bytes / S);
	return r.complete ? 0 : 1;
}
