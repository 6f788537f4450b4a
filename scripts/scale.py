#!/usr/bin/env python3
"""One wschat process at the machine's limit, and the slopes that project it further.

The server is pinned to core 0 and the load to core 1, as in scripts/compare.py. For each
connection count N (1,000 to 19,000 by default; these machines cap a process at 20,000 open
files), a fresh server takes N chat connections from `wschat-bench --idle`, in rooms of 100
(so joins are announced and `/who` lists stay realistic), spread over 8 loopback source
addresses. While they are held it records:

  rss_per_conn_b      server RSS growth over N
  connect_cpu_us      server CPU spent per connection to accept, handshake and join
  connect_s           time until all N were connected
  load_ns_per_delivery, load_p99_us
                      a fixed load beside them (100 more clients in a room of their own,
                      4 senders, 1,000 msg/s): server CPU per delivery, which must not grow
                      with N if nothing does O(N) work per event

At the largest N it also measures:

  room broadcast      10,000 clients in one room, one sender at 20 msg/s: deliveries/s and
                      the latency percentiles of each delivery
  churn               N clients that each close and reconnect every 2 to 6 s (mean 4 s):
                      reconnections/s, failures, and server RSS before and after

    cargo build --release
    scripts/scale.py [--counts 1000,2000,5000,10000,19000] [--out docs/scale]

Writes OUT.json and OUT.svg (bytes and CPU per connection against N).
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

SOURCE_ADDRS = "127.0.0.1-127.0.0.8"
PORT = 9650


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_server(n):
    cmd = compare.wschat_command(os.path.join(compare.ROOT, "target/release/wschat-server"), n + 500)
    # The default idle timeout (60 s, a ping after 30 s): held connections are pinged and answer.
    cmd = [a for a in cmd if a not in ("--idle-timeout", "10m")]
    return compare.Server(cmd, PORT)


def bench(*args, background=False):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    cmd = ["taskset", "-c", "1", compare.BENCH, f"ws://127.0.0.1:{PORT}/", "--source-addrs", SOURCE_ADDRS,
           "--connect-timeout", "120s", "--json", path, *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if background:
        return proc, path
    proc.wait()
    with open(path) as f:
        result = json.load(f)
    os.unlink(path)
    return result


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def held(n):
    """N idle chat connections in rooms of 100, then a fixed load beside them."""
    server = start_server(n)
    try:
        pid = server.proc.pid
        base_files, base_rss, base_cpu = open_files(pid), compare.rss_bytes(pid), server.cpu_seconds()
        start = time.monotonic()
        idle, _ = bench("--clients", n, "--idle", "--duration", "600s", "--warmup", "0s",
                        "--room", "scale", "--rooms", max(1, n // 100), background=True)
        wait_for(f"{n} connections", lambda: open_files(pid) >= base_files + n, 180)
        connect_s = time.monotonic() - start
        # Joins and their announcements settle, and the CPU counters catch up.
        time.sleep(2)
        rss, cpu = compare.rss_bytes(pid), server.cpu_seconds()
        load = bench("--clients", 100, "--senders", 4, "--rate", 1000, "--duration", "5s", "--warmup", "1s",
                     "--room", "load", "--server-pid", pid)
        row = {"connections": n, "connect_s": round(connect_s, 2),
               "rss_per_conn_b": round((rss - base_rss) / n), "rss_mib": round(rss / 2**20, 1),
               "connect_cpu_us": round((cpu - base_cpu) * 1e6 / n, 1),
               "load_ns_per_delivery": load["server_cpu_ns_per_delivery"],
               "load_p99_us": load["latency_p99_us"], "load_lost": load["lost"]}
        idle.kill()
        idle.wait()
        return row
    finally:
        server.stop()


def room_broadcast():
    server = start_server(10000)
    try:
        r = bench("--clients", 10000, "--senders", 1, "--rate", 20, "--duration", "10s", "--warmup", "2s",
                  "--server-pid", server.proc.pid)
        return {k: r[k] for k in ("connected", "deliveries_per_sec", "lost", "latency_p50_us", "latency_p99_us",
                                  "latency_p999_us", "latency_max_us", "server_cpu_ns_per_delivery", "connect_s")}
    finally:
        server.stop()


def churn(n):
    server = start_server(n)
    try:
        pid = server.proc.pid
        r = bench("--clients", n, "--idle", "--churn", "4s", "--duration", "20s", "--warmup", "0s",
                  "--server-pid", pid)
        rss_after = compare.rss_bytes(pid)
        return {"clients": n, "connected": r["connected"], "cycles": r["churn_cycles"],
                "reconnections_per_s": round(r["churn_cycles"] / 20), "failures": r["churn_failures"],
                "rss_after_mib": round(rss_after / 2**20, 1)}
    finally:
        server.stop()


def svg_plot(rows, path):
    """Three panels against the connection count: RSS per connection, server CPU per
    connection to connect and join, server CPU per delivery of the fixed load beside them."""
    width, height, left, right, top, bottom = 1000, 330, 70, 30, 40, 50
    panel = (width - left - right - 2 * 60) / 3
    xs = [r["connections"] for r in rows]
    out = compare.svg_start(width, height)

    def draw(x0, title, series, unit):
        ymax = max(v for _, values, _ in series for v in values) * 1.2
        ph = height - top - bottom
        px = lambda c: x0 + panel * c / max(xs)
        py = lambda v: top + ph * (1 - v / ymax)
        out.append(f'<text x="{x0}" y="{top - 14}">{title}</text>')
        for i in range(5):
            v = ymax * i / 4
            out.append(f'<line x1="{x0}" y1="{py(v):.1f}" x2="{x0 + panel}" y2="{py(v):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        for c in xs:
            out.append(f'<text x="{px(c):.1f}" y="{height - bottom + 16}" text-anchor="middle">{c // 1000}k</text>')
        out.append(f'<text x="{x0 + panel / 2}" y="{height - 12}" text-anchor="middle">connections ({unit})</text>')
        for j, (label, values, colour) in enumerate(series):
            pts = " ".join(f"{px(c):.1f},{py(v):.1f}" for c, v in zip(xs, values))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
            out.append(f'<text x="{x0 + 6}" y="{top + 14 + 14 * j}" fill="{colour}">{label}</text>')

    draw(left, "server RSS per idle chat connection", [("bytes", [r["rss_per_conn_b"] for r in rows], "#1f77b4")], "bytes")
    draw(left + panel + 60, "server CPU to connect and join, per connection",
         [("us", [r["connect_cpu_us"] for r in rows], "#d62728")], "us")
    draw(left + 2 * (panel + 60), "server CPU per delivery, fixed load beside them",
         [("ns", [r["load_ns_per_delivery"] or 0 for r in rows], "#2ca02c")], "ns")
    compare.svg_save(out, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1000,2000,5000,10000,19000")
    parser.add_argument("--out", default=os.path.join(compare.ROOT, "docs/scale"))
    parser.add_argument("--skip-extras", action="store_true", help="only the held-connection sweep")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    result = {"held": []}
    for n in counts:
        row = held(n)
        print(json.dumps(row), flush=True)
        result["held"].append(row)
    if not args.skip_extras:
        result["room_broadcast"] = room_broadcast()
        print(json.dumps(result["room_broadcast"]), flush=True)
        result["churn"] = churn(max(counts))
        print(json.dumps(result["churn"]), flush=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    svg_plot(result["held"], args.out + ".svg")


if __name__ == "__main__":
    main()
