#!/usr/bin/env python3
"""Several wschat processes as one chat through Redis (--redis), against one process alone,
under the same load: what sharing rooms through Redis costs.

Every server process and Redis run on core 0, the load on core 1 (as in scripts/compare.py), so
the figures are CPU per delivery and per message, not a speed-up: these machines have two
cores, and the load needs one of them.

  alone        one wschat process
  one+redis    one wschat process with --redis (every message makes the round trip)
  two+redis    two wschat processes with --redis --reuse-port on one address (the kernel
               splits the clients between them; every message crosses)

Loads (--loads): CLIENTS clients in one room, SENDERS of them at RATE messages/s in all, the same
in every configuration: a room of 1,000 at 100 msg/s, and a room of 100 at 1,000 msg/s. Recorded: deliveries/s, losses, latency p50/p99/p99.9, wschat CPU per
delivery (all processes), Redis's CPU per message, and the crossing cost: what wschat and
Redis together spend per message beyond what one process alone spends.

With --big N (38,000 by default), also N connections in one room over two processes (19,000
each: a process may have 20,000 open files here) from two bench processes: memory per
connection while they are held, and the latency of a broadcast to all N, twice a second.

    cargo build --release
    scripts/cluster.py [--out docs/cluster] [--big 38000]

With --server NAME=PATH (repeatable), each run goes through every build in turn, alternated, so
a before and an after are measured side by side in one session (rows are named NAME/CONFIG).
Each row also records the load average when it ended and Redis's own account of its commands
(INFO commandstats: EVALSHA's calls and microseconds per call, publishes, and messages kept
per publish, i.e. how many messages one say-script call carried).

Needs redis-server on PATH. Writes OUT.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

PORT = 9660
REDIS_PORT = 6391
SERVER = os.path.join(compare.ROOT, "target/release/wschat-server")


class Redis:
    def __init__(self):
        argv = ["taskset", "-c", "0", "redis-server", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True).stdout != b"PONG\n":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def commandstats(self):
        """Redis's own account of its commands (INFO commandstats): name -> calls, usec_per_call."""
        info = subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "info", "commandstats"],
                              capture_output=True, text=True).stdout
        stats = {}
        for line in info.splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[len("cmdstat_"):].split(":", 1)
                fields = dict(kv.split("=") for kv in rest.split(","))
                stats[name] = {"calls": int(fields["calls"]), "usec_per_call": float(fields["usec_per_call"])}
        return stats

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def start_servers(count, redis, max_connections, server=SERVER):
    cmd = compare.wschat_command(server, max_connections)
    if redis:
        cmd += ["--redis", f"redis://127.0.0.1:{REDIS_PORT}", "--reuse-port"]
    servers = [compare.Server(cmd, PORT) for _ in range(count)]
    # Linked to Redis (a few round trips) before the load connects.
    time.sleep(0.5)
    return servers


def bench(*args):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    cmd = ["taskset", "-c", "1", compare.BENCH, f"ws://127.0.0.1:{PORT}/", "--json", path, *map(str, args)]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    with open(path) as f:
        result = json.load(f)
    os.unlink(path)
    return result


def same_load(name, processes, with_redis, load, duration, server=SERVER):
    clients, senders, rate = load
    redis = Redis() if with_redis else None
    servers = start_servers(processes, with_redis, 12000, server)
    try:
        pids = [s.proc.pid for s in servers] + ([redis.proc.pid] if redis else [])
        # A rate of 0: as fast as each sender's window lets it (bursts: many messages a turn).
        paced = ["--rate", rate] if rate else []
        r = bench("--clients", clients, "--senders", senders, *paced,
                  "--duration", duration, "--warmup", "2s", "--server-pid", ",".join(map(str, pids)))
        each = r["server_cpu_ns_per_delivery_each"]
        wschat_ns = sum(each[:processes])
        redis_ns = each[processes] if redis else 0.0
        per_message = clients  # every member gets every message, its sender included
        row = {
            "name": name, "processes": processes, "redis": with_redis, "clients": clients, "rate": rate,
            "deliveries_per_sec": round(r["deliveries_per_sec"]), "lost": r["lost"],
            "latency_p50_us": r["latency_p50_us"], "latency_p99_us": r["latency_p99_us"],
            "latency_p999_us": r["latency_p999_us"],
            "wschat_ns_per_delivery": round(wschat_ns, 1),
            "redis_us_per_message": round(redis_ns * per_message / 1000, 2),
            "server_us_per_message": round((wschat_ns + redis_ns) * per_message / 1000, 2),
            "bench_core_use": r["bench_core_use"],
        }
        if redis:
            stats = redis.commandstats()
            evalsha = stats.get("evalsha", {"calls": 0, "usec_per_call": None})
            row["redis_evalsha_usec_per_call"] = evalsha["usec_per_call"]
            row["redis_evalsha_calls"] = evalsha["calls"]
            calls = lambda name: stats.get(name, {}).get("calls", 0)  # noqa: E731
            # Publishes (sharded or not): one per say-script call, and one per announcement.
            row["redis_publish_calls"] = calls("publish") + calls("spublish")
            # Messages kept (one XADD each) per publish: how many messages a say call carried.
            row["messages_per_publish"] = round(calls("xadd") / row["redis_publish_calls"], 2) \
                if row["redis_publish_calls"] else None
        row["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(row), flush=True)
        return row
    finally:
        for s in servers:
            s.stop()
        if redis:
            redis.stop()


def big(n):
    """N connections over two processes, in one room: memory per connection while they are held,
    and the latency of a broadcast to all of them, twice a second."""
    redis = Redis()
    servers = start_servers(2, True, n // 2 + 800)
    try:
        base = sum(compare.rss_bytes(s.proc.pid) for s in servers)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
            path = out.name
        load = subprocess.Popen(
            ["taskset", "-c", "1", compare.BENCH, f"ws://127.0.0.1:{PORT}/", "--clients", str(n), "--processes", "2",
             "--senders", "1", "--rate", "2", "--duration", "20s", "--warmup", "2s",
             "--source-addrs", "127.0.0.1-127.0.0.16", "--connect-timeout", "180s", "--json", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        while sum(len(os.listdir(f"/proc/{s.proc.pid}/fd")) for s in servers) < n:
            if time.monotonic() > started + 240 or load.poll() is not None:
                raise RuntimeError("the connections did not all open")
            time.sleep(0.1)
        connect_s = time.monotonic() - started
        time.sleep(3)
        held = sum(compare.rss_bytes(s.proc.pid) for s in servers)
        split = [len(os.listdir(f"/proc/{s.proc.pid}/fd")) for s in servers]
        load.wait()
        with open(path) as f:
            cast = json.load(f)
        os.unlink(path)
        row = {
            "connections": n, "connected": cast["connected"], "connect_s": round(connect_s, 1),
            "files_per_process": split,
            "rss_per_conn_b": round((held - base) / n), "rss_mib": round(held / 2**20, 1),
            "broadcast_lost": cast["lost"], "broadcast_deliveries_per_sec": round(cast["deliveries_per_sec"]),
            "broadcast_p50_ms": round(cast["latency_p50_us"] / 1000, 1),
            "broadcast_p99_ms": round(cast["latency_p99_us"] / 1000, 1),
            "broadcast_max_ms": round(cast["latency_max_us"] / 1000, 1),
        }
        print(json.dumps(row), flush=True)
        return row
    finally:
        for s in servers:
            s.stop()
        redis.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", default="1000x10@100,100x10@1000",
                        help="CLIENTSxSENDERS@RATE, comma-separated: a big room and a busy small one "
                             "(RATE 0: each sender as fast as its window lets it)")
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--big", type=int, default=38000, help="0 skips the big run")
    parser.add_argument("--out", default=os.path.join(compare.ROOT, "docs/cluster"))
    parser.add_argument("--server", action="append", default=[], metavar="NAME=PATH",
                        help="a wschat build to measure (repeatable: builds alternate within each run); "
                             "default: this tree's target/release/wschat-server")
    args = parser.parse_args()
    builds = [tuple(b.split("=", 1)) for b in args.server] or [(None, SERVER)]
    loads = []
    for text in args.loads.split(","):
        clients, rest = text.split("x")
        senders, rate = rest.split("@")
        loads.append((int(clients), int(senders), int(rate)))
    rows = []
    for _ in range(args.runs):
        for load in loads:
            for build, server in builds:
                name = (lambda config: f"{build}/{config}") if build else (lambda config: config)
                alone = same_load(name("alone"), 1, False, load, args.duration, server)
                one = same_load(name("one+redis"), 1, True, load, args.duration, server)
                two = same_load(name("two+redis"), 2, True, load, args.duration, server)
                alone_us = alone["server_us_per_message"]
                for row in (one, two):
                    row["crossing_us_per_message"] = round(row["server_us_per_message"] - alone_us, 2)
                rows += [alone, one, two]
    result = {"runs": rows}
    if args.big:
        result["big"] = big(args.big)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}.json")


if __name__ == "__main__":
    main()
