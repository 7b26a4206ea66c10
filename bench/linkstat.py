#!/usr/bin/python3
"""Link counters of the bench testbed over time, and where a run's time went.

  linkstat.py sample OUT INTERVAL NAME=PORT...
      Run inside the bridge namespace: every INTERVAL seconds append one line
      "t name:sent:received ..." to OUT (t in ns, wall clock), where sent and
      received are the host's bytes (the bridge port's rx and tx), and
      "cpu:busy:total" in jiffies from /proc/stat. Stops on SIGTERM.

  linkstat.py report OUT START_NS SIZE BPS ORIGIN NODE...
      Read OUT and print, in units of S/B (the time one link needs to carry
      SIZE at BPS), when the origin had sent a quarter, half, three quarters
      and all of SIZE, when each node had received SIZE, and how busy the
      nodes' down- and uplinks were before and after the origin was done:
      the part of the time to the last node that no link could have saved,
      and how busy the machine's CPUs were meanwhile (all hosts share them).
"""
import signal
import sys
import time


def sample(out, interval, pairs):
    ports = [p.split("=", 1) for p in pairs]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def read(port, ctr):
        with open("/sys/class/net/%s/statistics/%s" % (port, ctr)) as f:
            return int(f.read())

    with open(out, "w", buffering=1) as f:
        while not stop:
            t = time.time_ns()
            cells = ["%s:%d:%d" % (n, read(p, "rx_bytes"), read(p, "tx_bytes")) for n, p in ports]
            with open("/proc/stat") as st:
                jiffies = [int(x) for x in st.readline().split()[1:]]
            idle = jiffies[3] + jiffies[4]  # idle, iowait
            cells.append("cpu:%d:%d" % (sum(jiffies) - idle, sum(jiffies)))
            f.write("%d %s\n" % (t, " ".join(cells)))
            time.sleep(interval)


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            d = {}
            for c in parts[1:]:
                n, s, r = c.split(":")
                d[n] = (int(s), int(r))
            rows.append((int(parts[0]), d))
    return rows


def first_time(rows, pred):
    """Interpolated time (ns) at which pred's value first reaches its goal."""
    prev = None
    for t, d in rows:
        v, goal = pred(d)
        if v >= goal:
            if prev is None or prev[1] >= v:
                return t
            pt, pv = prev
            return pt + (t - pt) * (goal - pv) / max(1, v - pv)
        prev = (t, v)
    return None


def report(path, start, size, bps, origin, nodes):
    rows = load(path)
    if len(rows) < 2:
        print("timeline: too few samples")
        return
    base = rows[0][1]
    rel = [(t, {n: (s - base[n][0], r - base[n][1]) for n, (s, r) in d.items()}) for t, d in rows]
    sb = size * 8 / bps
    norm = lambda t: (t - start) / 1e9 / sb if t is not None else float("nan")
    link = bps / 8  # bytes/s

    marks = []
    for q in (0.25, 0.5, 0.75, 1.0):
        t = first_time(rel, lambda d, q=q: (d[origin][0], q * size))
        marks.append("%d%% %.2f" % (q * 100, norm(t)))
    t_first = first_time(rel, lambda d: (d[origin][0], 64 * 1024))
    t_origin = first_time(rel, lambda d: (d[origin][0], size))
    print("timeline: origin sent %s x S/B (first 64 KiB at %.2f)" % (", ".join(marks), norm(t_first)))

    done = {}
    for n in nodes:
        done[n] = first_time(rel, lambda d, n=n: (d[n][1], size))
    last = max((t for t in done.values() if t is not None), default=rows[-1][0])
    print("timeline: nodes had S at " + " ".join("%s %.2f" % (n, norm(done[n])) for n in nodes) + " x S/B")

    def usage(t0, t1):
        """Mean down- and uplink use of the nodes between t0 and t1 (0..1)."""
        if t0 is None or t1 is None or t1 <= t0:
            return float("nan"), float("nan"), float("nan"), float("nan")

        def at(t):
            best = rel[0]
            for row in rel:
                if row[0] <= t:
                    best = row
            return best[1]

        a, b = at(t0), at(t1)
        secs = (t1 - t0) / 1e9
        down = sum(b[n][1] - a[n][1] for n in nodes) / (len(nodes) * link * secs)
        up = sum(b[n][0] - a[n][0] for n in nodes) / (len(nodes) * link * secs)
        org = (b[origin][0] - a[origin][0]) / (link * secs)
        cpu = float("nan")
        if "cpu" in a and b["cpu"][1] > a["cpu"][1]:
            cpu = (b["cpu"][0] - a["cpu"][0]) / (b["cpu"][1] - a["cpu"][1])
        return down, up, org, cpu

    for label, t0, t1 in (("until the origin was done", start, t_origin), ("after it", t_origin, last),
                          ("whole run", start, last)):
        down, up, org, cpu = usage(t0, t1)
        print("timeline: %-26s %5.2f..%5.2f x S/B: node downlinks %3.0f%% busy, uplinks %3.0f%%, origin uplink %3.0f%%; CPUs %3.0f%% busy"
              % (label, norm(t0), norm(t1), 100 * down, 100 * up, 100 * org, 100 * cpu))
    # The floor: every node must receive S through a link of B.
    got = {n: rel[-1][1][n][1] for n in nodes}
    print("timeline: received per node %.2f..%.2f x S (protocol and retransmits included)"
          % (min(got.values()) / size, max(got.values()) / size))


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "sample":
        sample(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
    elif len(sys.argv) >= 8 and sys.argv[1] == "report":
        report(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7:])
    else:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
