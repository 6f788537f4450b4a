#!/usr/bin/env python3
"""Soak and hostile-client scenarios against the real wschat-server binary.

    python3 scripts/soak.py target/release/wschat-server [--short] [--only NAME] [--json FILE]

Scenarios (standard library only: raw sockets and asyncio, no WebSocket library):

  churn      clients connect, chat and disconnect in waves while a fixed group stays; the
             stayers must receive every message, no connection may be refused below the
             limit, and server RSS (sampled every second) must come back to its start value.
  slowloris  sockets dribble their handshake one byte per second; a new client's handshake
             must still complete quickly, and after --handshake-timeout the dribblers are gone.
  flood      one client sends as fast as it can (its own room and /echo); the p99 latency of a
             normal conversation must stay low. With --max-messages-per-sec the flooder is
             closed with 1008.
  fdlimit    the server runs with a low `ulimit -n`; connections past it are refused or
             dropped without a busy loop, and the server serves again once clients leave.

--short runs each in seconds (CI); the default sizes are those recorded in docs/RELIABILITY.md.
Exits non-zero if any check fails.
"""
import argparse
import asyncio
import base64
import json
import os
import random
import resource
import struct
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# ----- server process -----

class Server:
    def __init__(self, binary, flags=(), nofile=None):
        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen([binary, "127.0.0.1:0", *flags], stderr=subprocess.PIPE,
                                     text=True, preexec_fn=limit)
        self.log = []
        for line in self.proc.stderr:
            self.log.append(line)
            if "listening on " in line:
                host, port = line.split("listening on ")[1].strip().rsplit(":", 1)
                self.host, self.port = host, int(port)
                break
        else:
            sys.exit("server exited before listening")
        # Keep reading the log (warnings are checked by some scenarios).
        import threading
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self):
        self.proc.kill()
        self.proc.wait()


# ----- a minimal WebSocket client -----

KEY = base64.b64encode(b"wschat-soak-key!").decode()


def frame(opcode, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class Client:
    """One WebSocket connection over asyncio streams."""

    @classmethod
    async def connect(cls, server, path="/", timeout=10):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(server.host, server.port), timeout)
        request = (f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionRefusedError(head.split(b"\r\n")[0].decode(errors="replace"))
        return cls(reader, writer)

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    def send(self, text, opcode=1):
        self.writer.write(frame(opcode, text))

    async def recv(self):
        """(opcode, payload bytes) of the next frame."""
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def close(self):
        try:
            self.writer.write(frame(8, struct.pack("!H", 1000)))
            await self.writer.drain()
            while (await asyncio.wait_for(self.recv(), 5))[0] != 8:
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        self.writer.close()


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


# ----- scenarios -----

async def churn(binary, clients, duration, stayers=50):
    server = Server(binary, ["--max-connections", str(clients + 100), "--announce-limit", "20"])
    result = {"clients": clients, "duration_s": duration, "stayers": stayers}
    try:
        stay = [await Client.connect(server, f"/?nick=stay{i}") for i in range(stayers)]
        received = [set() for _ in stay]
        sent = []
        refused = []
        cycles = [0]
        stop = time.monotonic() + duration

        async def listen(i, c):
            while True:
                op, data = await c.recv()
                if op == 1 and data.startswith(b"stay0: seq "):
                    received[i].add(int(data.split()[-1]))

        async def talk():
            seq = 0
            while time.monotonic() < stop:
                stay[0].send(f"seq {seq}")
                sent.append(seq)
                seq += 1
                await asyncio.sleep(0.1)

        async def churner(slot):
            await asyncio.sleep(random.random() * 2)
            while time.monotonic() < stop:
                try:
                    c = await Client.connect(server, f"/?nick=churn{slot}")
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                    refused.append(str(e))
                    await asyncio.sleep(0.5)
                    continue
                c.send(f"hello from {slot}")
                await asyncio.sleep(0.5 + random.random() * 2)
                await c.close()
                cycles[0] += 1

        listeners = [asyncio.create_task(listen(i, c)) for i, c in enumerate(stay)]
        await asyncio.sleep(1)
        rss = [(0.0, server.rss_kib())]
        start = time.monotonic()

        async def sample():
            while time.monotonic() < stop + 3:
                await asyncio.sleep(1)
                rss.append((round(time.monotonic() - start, 1), server.rss_kib()))

        sampler = asyncio.create_task(sample())
        await asyncio.gather(talk(), *(churner(s) for s in range(clients - stayers)))
        await asyncio.sleep(2)  # let the last messages arrive and the churners' closes finish
        await sampler
        for t in listeners:
            t.cancel()
        lost = sum(len(set(sent) - got) for got in received)
        # The start value is taken once every churner has connected once (the ramp takes up to
        # 2 s plus one connection's life): the allocator keeps the pages of a peak, so what
        # shows a leak is growth after that, under the same load.
        ramp = [r for t, r in rss if t >= 3.0] or [rss[-1][1]]
        start_rss, end_rss = ramp[0], rss[-1][1]
        peak = max(r for _, r in rss)
        result.update(sent=len(sent), lost=lost, refused=len(refused), churn_cycles=cycles[0],
                      rss_start_kib=start_rss, rss_peak_kib=peak, rss_end_kib=end_rss, rss=rss)
        result["ok"] = lost == 0 and not refused and end_rss <= start_rss * 1.10
        for c in stay:
            c.writer.close()
    finally:
        server.stop()
    return result


async def slowloris(binary, dribblers, timeout_s):
    server = Server(binary, ["--handshake-timeout", f"{timeout_s}s"])
    request = (f"GET / HTTP/1.1\r\nHost: {server.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    dropped = [0]
    result = {"dribblers": dribblers, "handshake_timeout_s": timeout_s}
    try:
        async def dribble():
            reader, writer = await asyncio.open_connection(server.host, server.port)
            for byte in request:
                writer.write(bytes([byte]))
                try:
                    await writer.drain()
                    data = await asyncio.wait_for(reader.read(1), 1.0)
                    if data == b"":
                        dropped[0] += 1
                        return
                except asyncio.TimeoutError:
                    continue
                except OSError:
                    dropped[0] += 1
                    return
            writer.close()

        tasks = [asyncio.create_task(dribble()) for _ in range(dribblers)]
        await asyncio.sleep(1.5)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            c = await Client.connect(server, "/")
            times.append((time.perf_counter() - t0) * 1000)
            c.writer.close()
            await asyncio.sleep(0.05)
        await asyncio.wait(tasks, timeout=timeout_s + 3)
        result.update(new_handshake_ms_median=round(percentile(times, 50), 2),
                      new_handshake_ms_max=round(max(times), 2), dribblers_dropped=dropped[0])
        result["ok"] = max(times) < 10 and dropped[0] == dribblers
    finally:
        server.stop()
    return result


async def flood(binary, duration, rate_limit=None):
    flags = ["--max-messages-per-sec", str(rate_limit)] if rate_limit else []
    server = Server(binary, flags)
    result = {"duration_s": duration, "max_messages_per_sec": rate_limit}
    try:
        room = [await Client.connect(server, f"/?nick=talker{i}") for i in range(20)]
        flooder = await Client.connect(server, "/?nick=flooder")
        flooder.send("/join flood")
        echo_flooder = await Client.connect(server, "/echo")
        stop = time.monotonic() + duration
        latencies = []
        flood_sent = [0]
        flood_closed = []

        async def blast(c, name):
            payload = frame(1, "x" * 100) * 64
            async def drain():
                while True:
                    op, data = await c.recv()
                    if op == 8:
                        flood_closed.append((name, struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None))
                        return
            reader = asyncio.create_task(drain())
            try:
                while time.monotonic() < stop and not reader.done():
                    c.writer.write(payload)
                    flood_sent[0] += 64
                    await c.writer.drain()
            except OSError:
                pass
            reader.cancel()

        async def measure():
            probe = room[0]
            pending = {}
            async def listen():
                while True:
                    op, data = await probe.recv()
                    if op == 1 and data.startswith(b"talker0: t "):
                        n = int(data.split()[-1])
                        if n in pending:
                            latencies.append((time.perf_counter() - pending.pop(n)) * 1000)
            listener = asyncio.create_task(listen())
            n = 0
            while time.monotonic() < stop:
                pending[n] = time.perf_counter()
                probe.send(f"t {n}")
                n += 1
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)
            listener.cancel()

        async def drain_room(c):
            while True:
                await c.recv()

        drains = [asyncio.create_task(drain_room(c)) for c in room[1:]]
        await asyncio.gather(measure(), blast(flooder, "chat"), blast(echo_flooder, "echo"))
        for d in drains:
            d.cancel()
        cpu = server.cpu_seconds()
        result.update(probe_messages=len(latencies), p50_ms=round(percentile(latencies, 50), 2),
                      p99_ms=round(percentile(latencies, 99), 2), flood_messages_sent=flood_sent[0],
                      flooders_closed=flood_closed, server_cpu_s=round(cpu, 2))
        if rate_limit:
            result["ok"] = sorted(code for _, code in flood_closed) == [1008, 1008]
        else:
            result["ok"] = percentile(latencies, 99) < 5 and len(latencies) > 0
    finally:
        server.stop()
    return result


async def fdlimit(binary, nofile, extra):
    server = Server(binary, ["--max-connections", "10000"], nofile=nofile)
    result = {"ulimit_n": nofile, "attempted": nofile + extra}
    try:
        conns, failed = [], 0
        for _ in range(nofile + extra):
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(server.host, server.port), 5)
                conns.append(w)
            except (OSError, asyncio.TimeoutError):
                failed += 1
        await asyncio.sleep(1)
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        await asyncio.sleep(3)
        busy = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        for w in conns:
            w.close()
        await asyncio.sleep(0.5)
        recovered = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not recovered:
            try:
                c = await Client.connect(server, "/?nick=after")
                c.send("back")
                while True:
                    op, data = await asyncio.wait_for(c.recv(), 5)
                    if data == b"after: back":
                        recovered = True
                        break
                c.writer.close()
            except (OSError, ConnectionRefusedError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.2)
        warned = any("accept failed" in line for line in server.log)
        result.update(client_connect_failures=failed, server_cpu_at_limit=round(busy, 3),
                      accept_failure_logged=warned, recovered=recovered)
        result["ok"] = busy < 0.2 and recovered and warned
    finally:
        server.stop()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--short", action="store_true", help="seconds, not minutes (CI)")
    parser.add_argument("--only", choices=["churn", "slowloris", "flood", "fdlimit"])
    parser.add_argument("--skip", action="append", default=[], help="scenario to leave out (repeatable)")
    parser.add_argument("--clients", type=int, help="churn: total clients (default 10000; short 400)")
    parser.add_argument("--duration", type=float, help="churn: seconds (default 600; short 8)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    short = args.short
    plan = {
        "churn": lambda: churn(args.binary, args.clients or (400 if short else 10000),
                               args.duration or (8 if short else 600)),
        "slowloris": lambda: slowloris(args.binary, 200 if short else 1000, 3 if short else 10),
        "flood": lambda: flood(args.binary, 3 if short else 20),
        "flood-limited": lambda: flood(args.binary, 2 if short else 5, rate_limit=1000),
        "fdlimit": lambda: fdlimit(args.binary, 128 if short else 1024, 100 if short else 500),
    }
    results, failed = {}, []
    for name, run in plan.items():
        if (args.only and not name.startswith(args.only)) or name in args.skip:
            continue
        t0 = time.monotonic()
        result = asyncio.run(run())
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        results[name] = result
        shown = {k: v for k, v in result.items() if k != "rss"}
        print(f"{'ok' if result['ok'] else 'FAILED'} - {name}: {json.dumps(shown)}", flush=True)
        if not result["ok"]:
            failed.append(name)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"soak: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
