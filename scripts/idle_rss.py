#!/usr/bin/env python3
"""Server memory per idle WebSocket connection.

Opens N WebSocket connections to URL (raw sockets, standard library only), waits until every
handshake has completed, lets the server settle, then reads the server's resident memory from
/proc/PID/status and reports (RSS with N connections - RSS before) / N. A wss:// URL opens TLS
connections, one handshake after another (the certificate is not checked: this measures
memory, on loopback).

    scripts/idle_rss.py --pid $(pgrep -f wschat-server) --url ws://127.0.0.1:9001/ -n 10000

With --say TEXT every connection sends one text message once all are open, so what is measured
is a connection gone idle after talking (a server that keeps per-connection buffers after use
shows it here), not only one that never said anything.

With --warm-up K, K connections are opened (and kept) before the first reading, so that the
code pages an idle connection's path faults in (the handshake, the chat's join: file-backed
memory the kernel shares, about 0.5 MiB for wschat) are counted once, in the baseline, not
spread over the N connections. `anon_bytes_per_connection` counts only anonymous memory
(RssAnon: the heap and the server's own mappings), which no code page is.

With --deflate every connection offers permessage-deflate as wschat's own clients do (no context
takeover either way), so what is measured is a connection that negotiated compression; the
script checks that the server accepted it on every connection and says how many did.

Needs a file limit above N in this shell (ulimit -n 20000) and a server allowing N clients.
"""
import argparse
import base64
import os
import resource
import selectors
import socket
import ssl
import sys
import time
from urllib.parse import urlparse


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def text_frame(text):
    """One masked client text frame (payload under 126 bytes)."""
    payload, mask = text.encode(), os.urandom(4)
    assert len(payload) < 126, "--say takes a short message"
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


DEFLATE_OFFER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def deflate_agreed(head):
    """Whether a 101 response's head accepted permessage-deflate."""
    for line in bytes(head).split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-extensions" and b"permessage-deflate" in value.lower():
            return True
    return False


def open_idle_tls(host, port, request, count, timeout=300.0):
    """TLS connections, opened one after another: simple, and fast enough for 10,000."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    opened, deadline = [], time.monotonic() + timeout
    for _ in range(count):
        if time.monotonic() > deadline:
            sys.exit(f"only {len(opened)} of {count} TLS handshakes completed in {timeout}s")
        sock = context.wrap_socket(socket.create_connection((host, port)), server_hostname=host)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        if not head.startswith(b"HTTP/1.1 101"):
            sys.exit(f"handshake refused: {head[:80]!r}")
        opened.append(sock)
        AGREED[0] += deflate_agreed(head)
    return opened


AGREED = [0]  # connections whose handshake accepted permessage-deflate


def open_idle(url, count, batch=500, timeout=60.0, deflate=False):
    parts = urlparse(url)
    secure = parts.scheme == "wss"
    host, port, path = parts.hostname, parts.port or (443 if secure else 80), (parts.path or "/")
    if parts.query:
        path += "?" + parts.query
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        + (f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else "")
        + "\r\n"
    ).encode()
    if secure:
        return open_idle_tls(host, port, request, count)
    sel = selectors.DefaultSelector()
    opened, done, deadline = [], 0, time.monotonic() + timeout
    while done < count:
        # Keep at most `batch` handshakes in flight.
        while len(opened) - done < batch and len(opened) < count:
            sock = socket.create_connection((host, port))
            sock.setblocking(False)
            sock.sendall(request)
            sel.register(sock, selectors.EVENT_READ, bytearray())
            opened.append(sock)
        if time.monotonic() > deadline:
            sys.exit(f"only {done} of {count} handshakes completed in {timeout}s")
        for key, _ in sel.select(timeout=1.0):
            head = key.data
            head.extend(key.fileobj.recv(4096))
            if b"\r\n\r\n" in head:
                if not head.startswith(b"HTTP/1.1 101"):
                    sys.exit(f"handshake refused: {bytes(head[:80])!r}")
                sel.unregister(key.fileobj)
                AGREED[0] += deflate_agreed(head)
                done += 1
    return opened


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pid", type=int, required=True, help="server process id")
    parser.add_argument("--url", required=True, help="ws://HOST:PORT/PATH or wss://HOST:PORT/PATH")
    parser.add_argument("-n", "--connections", type=int, default=10000)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before measuring")
    parser.add_argument("--say", metavar="TEXT", help="every connection sends this text message once all are open")
    parser.add_argument("--warm-up", type=int, default=0, metavar="K",
                        help="open K connections (kept) before the baseline reading")
    parser.add_argument("--deflate", action="store_true",
                        help="offer permessage-deflate (no context takeover) on every connection; fail unless all get it")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + args.warm_up + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + args.warm_up + 64), hard))
    warm = open_idle(args.url, args.warm_up, deflate=args.deflate) if args.warm_up else []
    if warm:
        time.sleep(args.settle)
    AGREED[0] = 0
    before, anon_before = rss_kib(args.pid), rss_kib(args.pid, "RssAnon")
    started = time.monotonic()
    socks = open_idle(args.url, args.connections, deflate=args.deflate)
    if args.deflate and AGREED[0] < args.connections:
        sys.exit(f"--deflate: the server accepted permessage-deflate on {AGREED[0]} of {args.connections} connections")
    elapsed = time.monotonic() - started
    if args.say is not None:
        for sock in socks:
            sock.sendall(text_frame(args.say))
    time.sleep(args.settle)  # let the server finish announcing joins and go idle
    after, anon_after = rss_kib(args.pid), rss_kib(args.pid, "RssAnon")
    per = (after - before) * 1024 / args.connections
    anon = (anon_after - anon_before) * 1024 / args.connections
    print(f"connections={args.connections} connect_s={elapsed:.2f} rss_before_kib={before} "
          f"rss_after_kib={after} bytes_per_connection={per:.0f} anon_bytes_per_connection={anon:.0f}"
          + (f" warm_up={args.warm_up}" if args.warm_up else "")
          + (f" deflate_connections={AGREED[0]}" if args.deflate else ""))
    for sock in socks + warm:
        sock.close()


if __name__ == "__main__":
    main()
