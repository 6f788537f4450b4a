#!/usr/bin/env python3
"""The websocket-shootout measure for wschat and the reference peers, side by side, in one run.

Each server is started pinned to core 0 (as scripts/compare.py starts it) and measured by
`wschat-bench --shootout` pinned to core 1: clients added in steps of 1,000, 4 senders, 100
broadcasts timed per step from sending to arrival at the last client, and max_clients, the most
clients whose p95 stays under 500 ms. The clients come from several loopback addresses
(--source-addrs), so the count is capped by the open-file limit (20,000 per process here), not by
ephemeral ports.

    cargo build --release
    scripts/shootout.py --peers DIR [--clients 19000] [--step 1000] [--only wschat,uwebsockets]
                        [--out docs/shootout]

Writes OUT.json (every step of every server) and OUT.svg (p95 against clients, log scale), and
prints a Markdown table for docs/BENCHMARKS.md.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the servers and how they are started, said once)

SOURCE_ADDRS = "127.0.0.1-127.0.0.8"


def shootout(port, pid, clients, step, limit_ms):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["taskset", "-c", "1", compare.BENCH, f"ws://127.0.0.1:{port}/", "--shootout",
               "--clients", str(clients), "--step", str(step), "--shootout-limit", f"{limit_ms}ms",
               "--source-addrs", SOURCE_ADDRS, "--connect-timeout", "120s", "--server-pid", str(pid),
               "--json", out.name]
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        print(run.stdout, end="", flush=True)
        with open(out.name) as f:
            return json.load(f)


def svg_plot(results, path, limit_ms):
    """p95 against clients, one line per server, log-scale latency, the limit drawn across."""
    width, height, left, bottom, top, right = 720, 420, 70, 50, 30, 160
    max_clients = max(s["clients"] for r in results.values() for s in r["steps"])
    # A step whose samples did not all arrive has no p95 (null): it is left out of the lines.
    p95s = [s["p95_ms"] for r in results.values() for s in r["steps"] if s["p95_ms"] is not None]
    lo, hi = math.floor(math.log10(max(min(p95s), 0.1))), math.ceil(math.log10(max(max(p95s), limit_ms * 2)))

    def px(clients):
        return left + (width - left - right) * clients / max_clients

    def py(ms):
        ms = min(max(ms, 10 ** lo), 10 ** hi)
        return top + (height - top - bottom) * (1 - (math.log10(ms) - lo) / (hi - lo))

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    out = compare.svg_start(width, height) + [
        f'<text x="{left}" y="18">websocket-shootout: p95 time for a broadcast to reach every client</text>']
    for e in range(lo, hi + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:g} ms</text>')
    for i in range(0, 6):
        c = max_clients * i / 5
        out.append(f'<text x="{px(c):.1f}" y="{height - bottom + 18}" text-anchor="middle">{int(c):,}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle">clients</text>')
    y = py(limit_ms)
    out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="black" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{width - right + 4}" y="{y + 4:.1f}">limit {limit_ms} ms</text>')
    for i, (name, r) in enumerate(results.items()):
        colour = colours[i % len(colours)]
        points = " ".join(f"{px(s['clients']):.1f},{py(s['p95_ms']):.1f}" for s in r["steps"] if s["p95_ms"] is not None)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        legend_y = height - bottom - 16 * (len(results) - i)
        out.append(f'<text x="{width - right + 4}" y="{legend_y}" fill="{colour}">{name}: {r["max_clients"]:,}</text>')
    compare.svg_save(out, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", required=True, help="folder with the set-up reference peers")
    parser.add_argument("--out", default=os.path.join(compare.ROOT, "docs/shootout"), help="output path prefix")
    parser.add_argument("--clients", type=int, default=19000, help="the most clients to step up to")
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--limit-ms", type=int, default=500)
    parser.add_argument("--only", help="comma-separated server names")
    args = parser.parse_args()
    candidates = compare.servers(args.peers, [], max_connections=args.clients + 500)
    wanted = args.only.split(",") if args.only else ["wschat", "uwebsockets", "tokio-tungstenite", "node-ws"]
    results = {}
    for port, name in enumerate((n for n in wanted if n in candidates), start=9700):
        cmd, _ = candidates[name]
        print(f"== {name}", flush=True)
        server = compare.Server(cmd, port)
        try:
            results[name] = shootout(port, server.proc.pid, args.clients, args.step, args.limit_ms)
        finally:
            server.stop()
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    svg_plot(results, args.out + ".svg", args.limit_ms)
    print("\n| server | max_clients (p95 < %d ms) | stopped by | p95 at 1,000 | p95 at 10,000 | p95 at the last step |" % args.limit_ms)
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        at = {s["clients"]: s["p95_ms"] for s in r["steps"]}
        last = r["steps"][-1] if r["steps"] else None
        fmt = lambda ms: "-" if ms is None else f"{ms:.1f} ms"
        print(f"| {name} | {r['max_clients']:,} | {r['stopped_by']} | {fmt(at.get(1000))} | {fmt(at.get(10000))} "
              f"| {fmt(last and last['p95_ms'])} at {last['clients'] if last else 0:,} |")


if __name__ == "__main__":
    main()
