#!/usr/bin/env python3
"""A flood of requests for the chaos suite (tests/chaos/chaos_flood.sh).

Usage: api_flood.py --seed N --seconds S [--threads K]
                    [--http HOST:PORT,...] [--tcp HOST:PORT,...]

K threads, for S seconds, each picks (from a random.Random seeded with N and
its index) one of:
  get        a GET of one of /healthz /readyz /metrics /api/v1/datasets
             /api/v1/nodes /api/v1/status / (and an unknown path) on an --http
             port, a new connection each time
  keepalive  several GETs on one connection
  slow       a request line and half a header, then silence for up to 2 s
  huge       a header line of 64 KiB and more
  garbage    random bytes (1 byte to 64 KiB) to a --tcp port (the control
             port, a peer port: the handshake must reject them), then close
  reset      connect and close at once with an RST (SO_LINGER 0)
Every connection comes from one of 127.0.0.2 .. 127.0.0.12 (all of 127/8 is
loopback), never from 127.0.0.1, the address of the test's own clients: a
server's per-address caps may refuse the flood, not them. Every socket has
a 3 s timeout. SIGTERM ends the flood early. Prints one line at the end:
"sent N answered A refused R timeouts T", answered counting HTTP replies
of any status.
"""
import argparse
import random
import signal
import socket
import struct
import sys
import threading
import time

PATHS = ["/healthz", "/readyz", "/metrics", "/api/v1/datasets", "/api/v1/nodes",
         "/api/v1/status", "/", "/no/such/path", "/api/v1/datasets?x=" + "a" * 300]
LOCK = threading.Lock()
COUNT = {"sent": 0, "answered": 0, "refused": 0, "timeouts": 0}


def count(k):
    with LOCK:
        COUNT[k] += 1


def addr(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def conn(a):
    s = socket.socket()
    s.settimeout(3)
    s.bind(("127.0.0.%d" % random.randint(2, 12), 0))
    s.connect(a)
    return s


def get(a, path, keep=False):
    s = conn(a)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (
            path, "" if keep else "Connection: close\r\n")).encode())
        count("sent")
        if s.recv(4096).startswith(b"HTTP/1."):
            count("answered")
    finally:
        s.close()


def one(rng, http, tcp):
    kind = rng.choice(["get", "get", "get", "keepalive", "slow", "huge", "garbage", "reset"])
    if kind in ("garbage", "reset") and not tcp:
        kind = "get"
    try:
        if kind == "get":
            get(addr(rng.choice(http)), rng.choice(PATHS))
        elif kind == "keepalive":
            s = conn(addr(rng.choice(http)))
            try:
                for _ in range(rng.randint(2, 6)):
                    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % rng.choice(PATHS)).encode())
                    count("sent")
                    if s.recv(65536).startswith(b"HTTP/1."):
                        count("answered")
            finally:
                s.close()
        elif kind == "slow":
            s = conn(addr(rng.choice(http)))
            try:
                s.sendall(b"GET /api/v1/datasets HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                count("sent")
                time.sleep(rng.uniform(0.1, 2.0))
            finally:
                s.close()
        elif kind == "huge":
            s = conn(addr(rng.choice(http)))
            try:
                s.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * rng.randint(65536, 300000) + b"\r\n\r\n")
                count("sent")
                if s.recv(4096).startswith(b"HTTP/1."):
                    count("answered")
            finally:
                s.close()
        elif kind == "garbage":
            s = conn(addr(rng.choice(tcp)))
            try:
                s.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 65536))))
                count("sent")
                s.recv(4096)
            finally:
                s.close()
        elif kind == "reset":
            s = conn(addr(rng.choice(tcp + http)))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            count("sent")
            s.close()
    except socket.timeout:
        count("timeouts")
    except OSError:
        count("refused")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--http", default="")
    ap.add_argument("--tcp", default="")
    a = ap.parse_args()
    http = [x for x in a.http.split(",") if x]
    tcp = [x for x in a.tcp.split(",") if x]
    if not http:
        print("api_flood.py: --http is required", file=sys.stderr)
        return 2
    deadline = time.monotonic() + a.seconds
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def run(i):
        rng = random.Random(a.seed * 1000 + i)
        while time.monotonic() < deadline and not stop:
            one(rng, http, tcp)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("sent %(sent)d answered %(answered)d refused %(refused)d timeouts %(timeouts)d" % COUNT,
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
