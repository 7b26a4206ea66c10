#!/usr/bin/env python3
"""Drive headless Chromium (Debian's chromium) through the DevTools protocol
on a pipe (--remote-debugging-pipe: commands on the browser's fd 3, answers
on fd 4, each message ending in a NUL byte), with the standard library only.

  cdp.py [--chromium BIN] --profile DIR [--pidfile F] [--timeout S] STEP...

Steps run in order in one tab; each prints one line on stdout:
  open URL        navigate and wait for the load        -> "open URL"
  eval JS         evaluate (promises awaited)           -> the value as JSON
  wait SECS JS    evaluate every 0.25 s until truthy    -> the value as JSON
                  (exit 1 after SECS, with the last value on stderr)
  size WxH        the viewport                          -> "size WxH"
  media light|dark  prefers-color-scheme to emulate     -> "media X"
  shot FILE       a PNG of the viewport                 -> "shot FILE BYTES"
The browser runs in a process group of its own (its id in --pidfile), which
is killed on exit, on error and after --timeout seconds in all.
"""
import base64
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-default-browser-check", "--password-store=basic", "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]
ARITY = {"open": 1, "eval": 1, "wait": 2, "size": 1, "media": 1, "shot": 1}


class Failure(Exception):
    pass


class Browser:
    def __init__(self, binary, profile, log):
        to_r, self.to_w = os.pipe()  # our commands: the browser's fd 3
        self.from_r, from_w = os.pipe()  # its answers: the browser's fd 4

        def fds():
            a, b = os.dup(to_r), os.dup(from_w)  # out of the way of 3 and 4
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary] + FLAGS + ["--user-data-dir=" + profile, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=fds,
            pass_fds=(3, 4), start_new_session=True)
        os.close(to_r)
        os.close(from_w)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("no answer from the browser in time")
            ready, _, _ = select.select([self.from_r], [], [], left)
            if ready:
                chunk = os.read(self.from_r, 1 << 16)
                if not chunk:
                    raise Failure("the browser closed its pipe (exited?)")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.to_w, data):]
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise Failure("%s: %s" % (method, m["error"].get("message")))
                return m.get("result", {})

    def attach(self):
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        got = self.call("Target.attachToTarget",
                        {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = got["sessionId"]
        self.call("Page.enable")

    def evaluate(self, js):
        r = self.call("Runtime.evaluate",
                      {"expression": js, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise Failure("script error: %s" % d.get("exception", {}).get("description", d.get("text")))
        return r.get("result", {}).get("value")

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # renderers left behind
        except ProcessLookupError:
            pass
        self.proc.wait()
        # This process is their subreaper: collect the ones that outlived
        # the browser's main process.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)


def subreaper():
    """Orphaned browser processes come to this process, not to init."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def run_step(b, name, args):
    if name == "open":
        b.call("Page.navigate", {"url": args[0]})
        deadline = time.monotonic() + 30
        while b.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise Failure("open %s: not loaded within 30 s" % args[0])
            time.sleep(0.1)
        return "open " + args[0]
    if name == "eval":
        return json.dumps(b.evaluate(args[0]), ensure_ascii=False)
    if name == "wait":
        deadline = time.monotonic() + float(args[0])
        while True:
            v = b.evaluate(args[1])
            if v:
                return json.dumps(v, ensure_ascii=False)
            if time.monotonic() > deadline:
                raise Failure("wait: not true after %s s: %s (last value %s)" %
                              (args[0], args[1][:120], json.dumps(v)))
            time.sleep(0.25)
    if name == "size":
        w, h = (int(x) for x in args[0].split("x"))
        b.call("Emulation.setDeviceMetricsOverride",
               {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": False})
        return "size " + args[0]
    if name == "media":
        b.call("Emulation.setEmulatedMedia",
               {"features": [{"name": "prefers-color-scheme", "value": args[0]}]})
        return "media " + args[0]
    if name == "shot":
        png = base64.b64decode(b.call("Page.captureScreenshot", {"format": "png"})["data"])
        with open(args[0], "wb") as f:
            f.write(png)
        return "shot %s %d" % (args[0], len(png))
    raise Failure("unknown step " + name)


def main(argv):
    opts = {"--chromium": "chromium", "--profile": None, "--pidfile": None, "--timeout": "300"}
    i = 0
    while i < len(argv) and argv[i] in opts:
        opts[argv[i]] = argv[i + 1]
        i += 2
    steps = []
    while i < len(argv):
        name = argv[i]
        if name not in ARITY or i + ARITY[name] >= len(argv):
            print("cdp.py: bad step at %r" % argv[i:], file=sys.stderr)
            return 2
        steps.append((name, argv[i + 1:i + 1 + ARITY[name]]))
        i += 1 + ARITY[name]
    if not opts["--profile"]:
        print("cdp.py: --profile DIR is required", file=sys.stderr)
        return 2

    def on_alarm(signum, frame):
        raise Failure("gave up after --timeout %s s" % opts["--timeout"])

    def on_term(signum, frame):
        raise Failure("terminated")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(int(opts["--timeout"]))
    subreaper()
    os.makedirs(opts["--profile"], exist_ok=True)
    with open(os.path.join(opts["--profile"], "chromium.log"), "ab") as log:
        b = Browser(opts["--chromium"], opts["--profile"], log)
        try:
            if opts["--pidfile"]:
                with open(opts["--pidfile"], "w") as f:
                    f.write("%d\n" % b.proc.pid)
            b.attach()
            for name, args in steps:
                print(run_step(b, name, args), flush=True)
            return 0
        except Failure as e:
            print("cdp.py: %s" % e, file=sys.stderr)
            return 1
        finally:
            signal.alarm(0)
            b.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
