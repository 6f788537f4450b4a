#!/usr/bin/env python3
"""Side-by-side benchmark of wschat and the reference peers, in one run.

Each server is started pinned to core 0 (taskset -c 0) and loaded by wschat-bench pinned to
core 1, one server at a time, with identical load:

  saturation  1,000 clients, 4 senders, window 16, 64-byte messages: deliveries/s, loss, and
              server CPU time per delivery (utime+stime from /proc/PID/stat over the bench run,
              divided by every delivery the bench saw)
  latency     100 clients, 4 senders, 1,000 messages/s in total: p50/p99/p99.9
  idle        RSS per idle connection at 10,000 connections (scripts/idle_rss.py)
  sweep       deliveries/s at 10 to 5,000 clients (4 senders, window 16), drawn as an SVG

    cargo build --release
    scripts/compare.py --peers DIR [--out docs/compare] [--skip-idle] [--skip-sweep]
                       [--only wschat,node-ws] [--server NAME=PATH ...] [--tls] [--durable]
                       [--text-size MIN..MAX] [--json-mode] [--deflate] [--fixed-rate MSGS]

The load can be made chat-like: --text-size sends lines of English words of a random length
(wschat-bench --text-size) instead of 64-byte messages, and --json-mode has the bench take
wschat's JSON mode (`wschat.json`; the peers, plain broadcast servers, get the same lines as
they are). --deflate measures every server that can compress a second time, as NAME+deflate:
the bench and the memory run offer permessage-deflate, wschat runs as it is (deflate is on by
default), uwebsockets with `--compression shared` (its SHARED_COMPRESSOR; the peer built with
WITH_ZLIB=1). --fixed-rate adds a run at 1,000 clients and MSGS messages/s in total, for server
CPU per delivery at the same load whatever each server's saturation. With any of these a
second table gives bytes on the wire per delivery and server CPU per delivery, each against
the same server without deflate.

With --tls the same measures are taken over TLS (wss://, a certificate made for the run with
`openssl`): wschat with --tls-cert against the tokio-tungstenite + tokio-rustls peer, with plain
wschat and plain tokio-tungstenite measured in the same run as the baselines.

DIR holds the reference peers set up as their README says (node-ws with node_modules,
python-websockets with .venv, tokio-tungstenite built, uwebsockets built into
uwebsockets/target); missing ones are skipped. `--server wschat-before=OLD/wschat-server` adds
another wschat build, started like this one, so two builds are compared in the same run (with
--tls, also over TLS, as NAME-tls).
"""
import argparse
import json
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "target/release/wschat-bench")
SWEEP = [10, 100, 500, 1000, 2000, 5000]


def wschat_command(binary, max_connections=12000):
    """A wschat build, started for the load: quiet, room for 10,000 clients from one address, and
    no idle timeout while the memory run's clients (which never answer a ping) connect."""
    cmd = [binary, "127.0.0.1:{port}", "-q", "--max-connections", str(max_connections), "--idle-timeout", "10m"]
    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    if "--max-connections-per-ip" in help_text:
        cmd += ["--max-connections-per-ip", "0"]
    return cmd


def servers(peers, extra, tls=None, durable=False, max_connections=12000):
    """name -> (command, scheme). With `tls` (cert, key), the TLS comparison's servers; with
    `durable`, also wschat keeping its history in a store (`--data-dir`)."""
    wschat = os.path.join(ROOT, "target/release/wschat-server")
    tt = f"{peers}/tokio-tungstenite/target/release/peer-tokio-tungstenite"
    if tls:
        cert, key = tls
        tt_tls = f"{peers}/tokio-tungstenite-rustls/target/release/peer-tokio-tungstenite-rustls"
        candidates = {
            "wschat": (wschat_command(wschat, max_connections), wschat, "ws"),
            "wschat-tls": (wschat_command(wschat, max_connections) + ["--tls-cert", cert, "--tls-key", key], wschat, "wss"),
            "tokio-tungstenite": ([tt, "{port}"], tt, "ws"),
            "tokio-tungstenite-rustls": ([tt_tls, "{port}", cert, key], tt_tls, "wss"),
        }
    else:
        candidates = {
            "wschat": (wschat_command(wschat, max_connections), wschat, "ws"),
            "node-ws": (["node", f"{peers}/node-ws/server.js", "{port}"], f"{peers}/node-ws/node_modules", "ws"),
            "python-websockets": ([f"{peers}/python-websockets/.venv/bin/python",
                                   f"{peers}/python-websockets/server.py", "{port}"],
                                  f"{peers}/python-websockets/.venv/bin/python", "ws"),
            "tokio-tungstenite": ([tt, "{port}"], tt, "ws"),
            "uwebsockets": ([f"{peers}/uwebsockets/target/peer-uwebsockets", "{port}"],
                            f"{peers}/uwebsockets/target/peer-uwebsockets", "ws"),
        }
    for name, binary in extra:
        candidates[name] = (wschat_command(binary, max_connections), binary, "ws")
        if tls:
            # The other build over TLS too, as NAME-tls, so two builds' TLS paths meet in one run.
            candidates[f"{name}-tls"] = (wschat_command(binary, max_connections) + ["--tls-cert", cert, "--tls-key", key],
                                         binary, "wss")
    if durable:
        candidates["wschat-durable"] = (wschat_command(wschat, max_connections) + ["--data-dir", "{data_dir}"], wschat, "ws")
    return {name: (cmd, scheme) for name, (cmd, needs, scheme) in candidates.items() if os.path.exists(needs)}


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1, for the TLS comparison: (cert, key)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:FALSE", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def cpu_seconds(pid):
    """A process's CPU time so far, user and system, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    """A process's resident memory, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Server:
    def __init__(self, cmd, port):
        self.port = port
        # {data_dir}: a fresh, empty history store for every start (see --durable).
        # Removed when the server stops (or, should this run fail, when Python exits).
        self.data_dir = tempfile.TemporaryDirectory(prefix="wschat-compare-data-") \
            if any("{data_dir}" in a for a in cmd) else None
        fresh = self.data_dir.name if self.data_dir else ""
        argv = ["taskset", "-c", "0"] + [a.format(port=port, data_dir=fresh) for a in cmd]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"server on port {port} did not start")
                time.sleep(0.05)
        time.sleep(0.3)

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.data_dir:
            self.data_dir.cleanup()
        time.sleep(1)


CA_FILE = None  # the TLS comparison's certificate, trusted by the bench


def bench(port, scheme, *args):
    """Runs wschat-bench on core 1; its result, plus its own CPU use (a saturated load
    generator measures itself, not the server)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        tls = ["--ca-file", CA_FILE] if scheme == "wss" else []
        cmd = ["taskset", "-c", "1", BENCH, f"{scheme}://127.0.0.1:{port}/", *tls, "--json", out.name,
               *map(str, args)]
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - start
        with open(out.name) as f:
            result = json.load(f)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        result["bench_cpu_share"] = cpu / wall
        return result


# Servers that can compress, and what their NAME+deflate variant adds to their command line
# (wschat builds given with --server compress as wschat does).
DEFLATE_SERVER_ARGS = {"wschat": [], "uwebsockets": ["--compression", "shared"]}


def measure(name, cmd, scheme, port, skip_idle, skip_sweep, size=("--size", 64), load=(), idle_flags=(),
            fixed_rate=None):
    """One server's measures. `size`: the message size flags of every run; `load`: more bench
    flags (--json-mode, --deflate); `idle_flags`: more idle_rss.py flags (--deflate)."""
    result = {"server": name}
    server = Server(cmd, port)
    try:
        before = server.cpu_seconds()
        sat = bench(port, scheme, "--clients", 1000, "--senders", 4, "--window", 16, *size,
                    "--duration", "10s", "--warmup", "2s", *load)
        cpu = server.cpu_seconds() - before
        result["saturation"] = sat
        result["cpu_us_per_delivery"] = cpu * 1e6 / max(sat["deliveries_total"], 1)
        if fixed_rate:
            before = server.cpu_seconds()
            fixed = bench(port, scheme, "--clients", 1000, "--senders", 4, "--rate", fixed_rate, *size,
                          "--duration", "10s", "--warmup", "2s", *load)
            result["fixed_rate"] = fixed
            result["fixed_rate_cpu_us_per_delivery"] = \
                (server.cpu_seconds() - before) * 1e6 / max(fixed["deliveries_total"], 1)
        result["latency"] = bench(port, scheme, "--clients", 100, "--senders", 4, "--rate", 1000, *size,
                                  "--duration", "10s", "--warmup", "2s", *load)
    finally:
        server.stop()
    result["sweep"] = {}
    for clients in [] if skip_sweep else SWEEP:
        server = Server(cmd, port)
        try:
            run = bench(port, scheme, "--clients", clients, "--senders", 4, "--window", 16, *size,
                        "--duration", "5s", "--warmup", "1s", *load)
            result["sweep"][clients] = run["deliveries_per_sec"]
        finally:
            server.stop()
    if not skip_idle:
        server = Server(cmd, port)
        try:
            out = subprocess.run(["taskset", "-c", "1", sys.executable, os.path.join(ROOT, "scripts/idle_rss.py"),
                                  "--pid", str(server.proc.pid), "--url", f"{scheme}://127.0.0.1:{port}/", "-n", "10000",
                                  *idle_flags],
                                 check=True, capture_output=True, text=True).stdout
            result["idle_bytes_per_connection"] = float(out.split("bytes_per_connection=")[1].split()[0])
        finally:
            server.stop()
    return result


def svg_start(width, height):
    """The opening of an SVG drawing on white, for the plots of this script and its siblings."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>']


def svg_save(out, path):
    """Closes the drawing `out` (a list of elements) and writes it to `path`."""
    with open(path, "w") as f:
        f.write("\n".join(out + ["</svg>"]) + "\n")


def svg_plot(results, path):
    """deliveries/s against clients, both axes logarithmic."""
    width, height, left, bottom, top, right = 720, 420, 80, 50, 30, 170
    xs = [math.log10(c) for c in SWEEP]
    values = [v for r in results for v in r["sweep"].values() if v > 0]
    ymin, ymax = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    def px(c):
        return left + (math.log10(c) - xs[0]) / (xs[-1] - xs[0]) * (width - left - right)
    def py(v):
        return height - bottom - (math.log10(v) - ymin) / (ymax - ymin) * (height - top - bottom)
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
    out = svg_start(width, height) + [
        f'<text x="{width / 2 - 120}" y="18" font-size="14">Broadcast deliveries/s vs clients (4 senders, window 16, 64 B)</text>']
    for e in range(ymin, ymax + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">1e{e}</text>')
    for c in SWEEP:
        x = px(c)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{c}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">clients</text>')
    for i, r in enumerate(results):
        colour = colours[i % len(colours)]
        points = " ".join(f"{px(int(c)):.1f},{py(v):.1f}" for c, v in r["sweep"].items() if v > 0)
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for c, v in r["sweep"].items():
            if v > 0:
                out.append(f'<circle cx="{px(int(c)):.1f}" cy="{py(v):.1f}" r="3" fill="{colour}"/>')
        ly = top + 20 + i * 20
        out.append(f'<line x1="{width - right + 15}" y1="{ly}" x2="{width - right + 40}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 46}" y="{ly + 4}">{r["server"]}</text>')
    svg_save(out, path)


def bytes_table(results):
    """Bytes on the wire and server CPU per delivery, each NAME+deflate against NAME."""
    by_name = {r["server"]: r for r in results}
    def ratio(r, value):
        plain = by_name.get(r["server"].removesuffix("+deflate"))
        return "" if plain is None or plain is r else f" ({value(r) / value(plain):.2f}x)"
    wire = lambda r: r["saturation"]["wire_bytes_per_delivery"]  # noqa: E731
    sat_cpu = lambda r: r["cpu_us_per_delivery"]  # noqa: E731
    fixed_cpu = lambda r: r["fixed_rate_cpu_us_per_delivery"]  # noqa: E731
    fixed = all("fixed_rate" in r for r in results)
    print("| server | bytes on the wire per delivery | message bytes per delivery | deliveries/s (1,000 clients) "
          "| server CPU per delivery | bench core use |" + (" server CPU per delivery at fixed rate |" if fixed else "")
          + " idle bytes per connection |")
    print("|---|---|---|---|---|---|" + ("---|" if fixed else "") + "---|")
    for r in results:
        s, idle = r["saturation"], r.get("idle_bytes_per_connection")
        row = (f"| {r['server']} | {wire(r):,.1f}{ratio(r, wire)} | {s['message_bytes_per_delivery']:,.1f} "
               f"| {s['deliveries_per_sec']:,.0f} | {sat_cpu(r):.3f} us{ratio(r, sat_cpu)} | {s['bench_cpu_share']:.0%} |")
        if fixed:
            f = r["fixed_rate"]
            row += f" {fixed_cpu(r):.3f} us{ratio(r, fixed_cpu)} ({f['deliveries_per_sec']:,.0f}/s, lost {f['lost']}) |"
        print(row + f" {'-' if idle is None else f'{idle:,.0f}'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", required=True, help="folder with the set-up reference peers")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs/compare"), help="output path prefix")
    parser.add_argument("--skip-idle", action="store_true", help="skip the 10,000-connection memory run")
    parser.add_argument("--skip-sweep", action="store_true", help="skip the deliveries/s sweep over client counts")
    parser.add_argument("--only", help="comma-separated server names")
    parser.add_argument("--server", action="append", default=[], metavar="NAME=PATH",
                        help="another wschat-server build to measure under NAME (repeatable)")
    parser.add_argument("--tls", action="store_true", help="compare over TLS (wss://)")
    parser.add_argument("--durable", action="store_true",
                        help="also measure wschat with --data-dir (durable history, a fresh store per start)")
    parser.add_argument("--text-size", metavar="MIN..MAX",
                        help="chat-like lines of this size (wschat-bench --text-size) instead of 64-byte messages")
    parser.add_argument("--json-mode", action="store_true",
                        help="the bench takes wschat's JSON mode against wschat builds (the peers get the same lines)")
    parser.add_argument("--deflate", action="store_true",
                        help="also measure each server that can compress with permessage-deflate, as NAME+deflate")
    parser.add_argument("--fixed-rate", type=int, metavar="MSGS",
                        help="also a run at 1,000 clients and MSGS messages/s in total (server CPU at the same load)")
    args = parser.parse_args()
    global CA_FILE
    tls = tls_dir = None
    if args.tls:
        # Held until this function returns, then removed with the certificate in it.
        tls_dir = tempfile.TemporaryDirectory(prefix="wschat-compare-")
        tls = make_certificate(tls_dir.name)
        CA_FILE = tls[0]
    extra = [tuple(spec.split("=", 1)) for spec in args.server]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    chosen = servers(os.path.abspath(args.peers), extra, tls, args.durable)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    size = ("--text-size", args.text_size) if args.text_size else ("--size", 64)
    wschat_builds = {"wschat", "wschat-durable"} | {name for name, _ in extra}
    runs = []  # (name, command, scheme, bench flags, idle_rss.py flags)
    for name, (cmd, scheme) in chosen.items():
        load = ["--json-mode"] if args.json_mode and name in wschat_builds else []
        runs.append((name, cmd, scheme, load, []))
        if args.deflate and (name in wschat_builds or name in DEFLATE_SERVER_ARGS):
            runs.append((f"{name}+deflate", cmd + DEFLATE_SERVER_ARGS.get(name, []), scheme, load + ["--deflate"],
                         ["--deflate"]))
    results = []
    for i, (name, cmd, scheme, load, idle_flags) in enumerate(runs):
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results.append(measure(name, cmd, scheme, 9800 + i, args.skip_idle, args.skip_sweep, size, load, idle_flags,
                               args.fixed_rate))
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=1)
    if not args.skip_sweep:
        svg_plot(results, args.out + ".svg")
    base = next((r for r in results if r["server"] == ("wschat" if args.tls else "node-ws")), results[0])
    print(f"| server | deliveries/s (1,000 clients) | lost | vs {base['server']} | server CPU per delivery | vs {base['server']} "
          "| bench core use | p50 / p99 / p99.9 at 100 clients, 1,000 msg/s | idle bytes per connection |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s, l = r["saturation"], r["latency"]
        idle = r.get("idle_bytes_per_connection")
        print(f"| {r['server']} | {s['deliveries_per_sec']:,.0f} | {s['lost']} "
              f"| {s['deliveries_per_sec'] / base['saturation']['deliveries_per_sec']:.1f}x "
              f"| {r['cpu_us_per_delivery']:.3f} us | {r['cpu_us_per_delivery'] / base['cpu_us_per_delivery']:.3f}x "
              f"| {s['bench_cpu_share']:.0%} "
              f"| {l['latency_p50_us']:.0f} / {l['latency_p99_us']:.0f} / {l['latency_p999_us']:.0f} us "
              f"| {'-' if idle is None else f'{idle:,.0f}'} |")
    if args.text_size or args.json_mode or args.deflate or args.fixed_rate:
        print()
        bytes_table(results)
    if args.skip_sweep:
        return
    print()
    print("| clients | " + " | ".join(r["server"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for c in SWEEP:
        print(f"| {c} | " + " | ".join(f"{r['sweep'][c]:,.0f}" for r in results) + " |")


if __name__ == "__main__":
    main()
