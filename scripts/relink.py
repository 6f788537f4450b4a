#!/usr/bin/env python3
"""A link to Redis that starts with a lot to do, measured on the release build: how long the
loop is blocked, and whether the link holds.

  members N   one wschat process holds N idle chat connections (`wschat-bench --idle`, all in
              the lobby); Redis is killed (SIGKILL) and started again empty on the same port, and
              the process relinks: every member's nick is claimed again and its seat written
              again. Recorded: the time from Redis answering again to the link being up, and to
              every nick and seat being back in Redis; the worst `GET /` meanwhile; loop turns over
              10 and 50 ms (the server's own histogram); whether the broker saturated
              (`wschat_cluster_saturated_total`); how many times the process linked (2: at start,
              and once again).
  bans N      Redis holds N address bans, written as the server writes them; one wschat process
              starts and links to it. Recorded: the time until it is linked and until all N bans
              are held (`wschat_bans`); the worst `GET /` meanwhile; turns over 10 and 50 ms.

`GET /` is asked for on a fresh connection every 10 ms, and the metrics scraped between pages.
The server runs on core 0, Redis and the clients on core 1 (two cores here).

    cargo build --release
    scripts/relink.py members 19000
    scripts/relink.py bans 500000

Needs redis-server on PATH. Prints one JSON line. WSCHAT_SERVER=PATH measures another build of
the server (an older one has no `wschat_cluster_saturated_total` or `wschat_bans`: run `members`
only, whose `saturated` is then null).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.environ.get("WSCHAT_SERVER", os.path.join(ROOT, "target/release/wschat-server"))
BENCH = os.path.join(ROOT, "target/release/wschat-bench")
PORT, METRICS_PORT, REDIS_PORT = 9670, 9671, 6392
TURN_BOUNDS = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5]


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Reader:
    """Just enough RESP2 to read replies."""

    def __init__(self, sock):
        self.file = sock.makefile("rb")

    def reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b":"):
            return int(rest) if kind == b":" else rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"not RESP: {line!r}")


def redis(*commands):
    """Runs commands pipelined on one connection; their replies."""
    with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=30) as sock:
        sock.sendall(b"".join(resp(*c) for c in commands))
        reader = Reader(sock)
        return [reader.reply() for _ in commands]


class Redis:
    def __init__(self):
        argv = ["taskset", "-c", "1", "redis-server", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis(["PING"]) == ["PONG"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


class Server:
    def __init__(self, max_connections):
        self.log = tempfile.NamedTemporaryFile(prefix="wschat-relink-", suffix=".log", delete=False)
        argv = ["taskset", "-c", "0", SERVER, f"127.0.0.1:{PORT}", "--redis", f"redis://127.0.0.1:{REDIS_PORT}",
                "--metrics", f"127.0.0.1:{METRICS_PORT}", "--max-connections", str(max_connections),
                "--max-connections-per-ip", "0", "--idle-timeout", "10m"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 10
        while "listening on" not in self.text():
            if time.monotonic() > deadline:
                raise RuntimeError("wschat-server did not start")
            time.sleep(0.01)

    def text(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        os.unlink(self.log.name)


def http_get(port, path, timeout=10):
    """One GET on a fresh connection: (seconds, body)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                               if l.lower().startswith(b"content-length:")), None)
                if length is not None and len(body) >= length:
                    break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {path}: {data[:80]!r}")
    return time.monotonic() - started, data.partition(b"\r\n\r\n")[2].decode(errors="replace")


def metrics():
    """name{labels} -> value, and the turn histogram's cumulative buckets."""
    _, body = http_get(METRICS_PORT, "/metrics")
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def turns_over(before, after, bound):
    """Turns over `bound` seconds between two scrapes."""
    def over(m):
        total = m.get("wschat_loop_turn_duration_seconds_count", 0)
        key = f'wschat_loop_turn_duration_seconds_bucket{{le="{bound}"}}'
        return total - m.get(key, 0)
    return int(over(after) - over(before))


def probe_until(done, limit_s):
    """GET / every 10 ms until done(metrics) or the limit; the pages' times in ms."""
    pages = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        took, _ = http_get(PORT, "/")
        pages.append(took * 1000)
        if done(metrics()):
            return pages
        time.sleep(0.01)
    raise RuntimeError("not done in time")


def summary(pages):
    ordered = sorted(pages)
    return {"pages": len(pages), "page_worst_ms": round(ordered[-1], 2),
            "page_p50_ms": round(ordered[len(ordered) // 2], 2)}


def measure_bans(n):
    store = Redis()
    until = int(time.time() * 1000) + 86_400_000
    commands = []
    for start in range(0, n, 1000):
        args = ["HSET", "wschat:bans"]
        for i in range(start, min(n, start + 1000)):
            key = f"address:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            args += [key, json.dumps({"key": key, "nick": f"guest-{i}", "until_ms": until,
                                      "reason": "spam", "by": "root"}, separators=(",", ":"))]
        commands.append(args)
    redis(*commands)
    size = redis(["MEMORY", "USAGE", "wschat:bans"])[0]
    server = Server(1000)
    try:
        started = time.monotonic()
        before = metrics()
        linked_at = None

        def done(m):
            nonlocal linked_at
            if linked_at is None and m.get("wschat_cluster_linked") == 1:
                linked_at = time.monotonic()
            return m.get("wschat_bans") == n
        pages = probe_until(done, 120)
        after = metrics()
        log = server.text()
        return {"scenario": "bans", "bans": n, "redis_hash_bytes": size,
                "linked_s": round(linked_at - started, 3) if linked_at else None,
                "all_bans_s": round(time.monotonic() - started, 3), **summary(pages),
                "turns_over_10ms": turns_over(before, after, 0.01), "turns_over_50ms": turns_over(before, after, 0.05),
                "linked_at_end": after.get("wschat_cluster_linked"),
                "links_made": log.count("connected to Redis"), "links_lost": log.count("on this server alone")}
    finally:
        server.stop()
        store.kill()


def measure_members(n):
    store = Redis()
    server = Server(n + 100)
    bench = None
    try:
        bench = subprocess.Popen(
            ["taskset", "-c", "1", BENCH, f"ws://127.0.0.1:{PORT}/", "--idle", "--clients", str(n),
             "--duration", "600s", "--connect-timeout", "300s", "--source-addrs", "127.0.0.1-127.0.0.8"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while metrics().get("wschat_members", 0) < n:
            if time.monotonic() > deadline or bench.poll() is not None:
                raise RuntimeError("the members did not all join")
            time.sleep(0.2)
        time.sleep(1)
        store.kill()
        while metrics().get("wschat_cluster_linked") != 0:
            time.sleep(0.01)
        store = Redis()
        started = time.monotonic()
        before = metrics()
        linked_at = None
        script = "return {#redis.call('KEYS', 'wschat:nick:*'), redis.call('HLEN', 'wschat:{lobby}:who')}"
        last_check = [0.0]

        def done(m):
            nonlocal linked_at
            if linked_at is None and m.get("wschat_cluster_linked") == 1:
                linked_at = time.monotonic()
            # Redis is asked a few times a second only: KEYS over 20,000 keys takes it a while.
            if linked_at is None or time.monotonic() < last_check[0] + 0.05:
                return False
            last_check[0] = time.monotonic()
            return redis(["EVAL", script, "0"])[0] == [n, n]
        pages = probe_until(done, 120)
        all_back = time.monotonic() - started
        after = metrics()
        log = server.text()
        return {"scenario": "members", "members": n, "linked_s": round(linked_at - started, 3),
                "all_reclaimed_s": round(all_back, 3), **summary(pages),
                "turns_over_10ms": turns_over(before, after, 0.01), "turns_over_50ms": turns_over(before, after, 0.05),
                "saturated": after.get("wschat_cluster_saturated_total"),
                "linked_at_end": after.get("wschat_cluster_linked"), "links_made": log.count("connected to Redis")}
    finally:
        if bench:
            bench.kill()
            bench.wait()
        server.stop()
        store.kill()


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("members", "bans"):
        sys.exit(__doc__)
    n = int(sys.argv[2])
    result = measure_members(n) if sys.argv[1] == "members" else measure_bans(n)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
