#!/usr/bin/env python3
"""Interoperability check with a second, independent WebSocket implementation.

Starts the release or debug `wschat-server` binary given as the first argument on a free port
and chats through it with Python's `websockets` client (its sync API): two clients, nicks,
broadcast with the sender included, /msg, binary relay, /echo, keep-alive, and a clean /quit.
Meanwhile it scrapes `--metrics` and reads the exposition with the `prometheus_client`
package's OpenMetrics parser, checking that the counts move as the chat happens.
Then all of it again over TLS (`wss://`, with a CA and certificate made by the `openssl` command
and trusted through an `ssl` context), and a plain `ws://` client refused at the TLS port.
Exits non-zero on the first failed expectation. Used by .ci/run:

    python3 -m venv .venv && .venv/bin/pip install websockets prometheus_client
    .venv/bin/python scripts/interop.py target/debug/wschat-server
"""
import json
import os
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

TIMEOUT = 10


def start(binary, *flags):
    """Starts the server; returns it, its address and (with --metrics) the scrape URL."""
    server = subprocess.Popen([binary, "127.0.0.1:0", *flags], stderr=subprocess.PIPE, text=True)
    addr = None
    for line in server.stderr:
        if "listening on " in line:
            addr = line.split("listening on ")[1].strip()
            if "--metrics" not in flags:
                return server, addr, None
        if "metrics at " in line:
            return server, addr, line.split("metrics at ")[1].strip()
    sys.exit("server exited before listening")


def scrape(url):
    """The exposition, parsed: {(sample name, labels as a sorted tuple): value}."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        expect(response.headers["Content-Type"].startswith("application/openmetrics-text"), True,
               "metrics: OpenMetrics content type")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def recv_chat(ws):
    """Next message that is not a server notice."""
    while True:
        message = ws.recv(timeout=TIMEOUT)
        if not (isinstance(message, str) and message.startswith("*** ")):
            return message


PASSED = []


def expect(actual, wanted, what):
    if actual != wanted:
        print(f"FAILED {what}: got {actual!r}, wanted {wanted!r}")
        print(f"interop: {len(PASSED)} passed, 1 failed")
        sys.exit(1)
    PASSED.append(what)
    print(f"ok   {what}")


def make_certificates(directory):
    """A CA and a certificate it signed for localhost and 127.0.0.1; returns (ca, cert, key)."""
    ca, ca_key = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    csr, ext = os.path.join(directory, "cert.csr"), os.path.join(directory, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "authorityKeyIdentifier=keyid\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for command in (
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=interop CA"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run(command, check=True, capture_output=True)
    return ca, cert, key


def chat(base, tls, label, metrics_url=None):
    """The conversation, over ws:// or wss://; with a scrape URL, the gauges in the middle of it."""
    options = {"open_timeout": TIMEOUT, "ssl": tls} if tls else {"open_timeout": TIMEOUT}
    # ana compresses (websockets offers permessage-deflate by default), ben does not.
    with connect(f"{base}/?nick=ana", **options) as ana, \
            connect(f"{base}/?nick=ben", compression=None, **options) as ben:
        expect(ana.recv(timeout=TIMEOUT).startswith("*** welcome, you are ana"), True, f"{label}welcome notice")
        agreed = ana.response.headers.get("Sec-WebSocket-Extensions", "")
        expect(agreed.startswith("permessage-deflate") and "server_no_context_takeover" in agreed
               and "client_no_context_takeover" in agreed, True,
               f"{label}permessage-deflate negotiated without context takeover")
        expect([type(e).__name__ for e in ana.protocol.extensions], ["PerMessageDeflate"], f"{label}ana compresses")
        expect(ben.response.headers.get("Sec-WebSocket-Extensions"), None, f"{label}ben does not")
        ben.send("hello from python")
        expect(recv_chat(ana), "ben: hello from python", f"{label}broadcast reaches the room")
        expect(recv_chat(ben), "ben: hello from python", f"{label}broadcast includes the sender")
        long = "a line long enough to be compressed, said twice over: " * 6
        ana.send(long)
        expect(recv_chat(ana), f"ana: {long}", f"{label}a compressed line comes back compressed")
        expect(recv_chat(ben), f"ana: {long}", f"{label}and plain to a client without the extension")
        ana.send("/msg ben psst")
        expect(recv_chat(ben), "[PM from ana] psst", f"{label}private message")
        expect(recv_chat(ana), "[PM to ben] psst", f"{label}private message copy")
        ben.send(bytes(range(256)))
        expect(recv_chat(ana), bytes(range(256)), f"{label}binary relayed verbatim")
        expect(recv_chat(ben), bytes(range(256)), f"{label}binary relayed to the sender")
        expect(ana.ping().wait(TIMEOUT), True, f"{label}ping answered")
        if metrics_url:
            during = scrape(metrics_url)
            expect(value(during, "wschat_connections_open", state="chat"), 2.0, "metrics: two chat connections open")
            expect(value(during, "wschat_members"), 2.0, "metrics: two members")
            expect(value(during, "wschat_rooms"), 1.0, "metrics: one room")
        ana.send("/quit bye")
        try:
            while True:
                ana.recv(timeout=TIMEOUT)
        except ConnectionClosedOK as closed:
            expect((closed.rcvd.code, closed.rcvd.reason), (1000, "bye"), f"{label}/quit closes with 1000")
        expect(ben.recv(timeout=TIMEOUT), "*** ana left lobby (quit: bye)", f"{label}departure notice")
    with connect(f"{base}/echo", max_size=None, **options) as echo:
        big = "é" * 30000
        echo.send(big)
        expect(echo.recv(timeout=TIMEOUT) == big, True, f"{label}echo of a 60,000-byte text message")


def json_until(ws, kind):
    """JSON objects until one of type `kind`: (the `message` objects before it, that one)."""
    messages = []
    while True:
        value = json.loads(ws.recv(timeout=TIMEOUT))
        if value["type"] == kind:
            return messages, value
        if value["type"] == "message":
            messages.append(value)


def json_resume(base):
    """JSON mode and resume, with Python's client: what was said while away comes back once."""
    json_mode = {"open_timeout": TIMEOUT, "subprotocols": ["wschat.json"]}
    with connect(f"{base}/?nick=cam&room=py", **json_mode) as cam:
        expect(cam.subprotocol, "wschat.json", "json: the wschat.json subprotocol is selected")
        expect(json.loads(cam.recv(timeout=TIMEOUT))["type"], "welcome", "json: a welcome object first")
        json_until(cam, "replayed")
        cam.send("before the drop")
        _, seen = json_until(cam, "message")
        expect(seen["text"], "before the drop", "json: a message object with its text")
    with connect(f"{base}/?nick=dee&room=py", open_timeout=TIMEOUT) as dee:
        for i in (1, 2, 3):
            dee.send(f"missed {i}")
            while recv_chat(dee) != f"dee: missed {i}":
                pass
    with connect(f"{base}/?nick=cam&room=py&since={seen['id']}", **json_mode) as cam:
        replayed, summary = json_until(cam, "replayed")
        expect([m["text"] for m in replayed], ["missed 1", "missed 2", "missed 3"], "json: resume replays what was missed")
        expect(summary["recovered"], True, "json: recovered after resume")


def stop(server, label):
    server.terminate()
    code = server.wait(timeout=TIMEOUT)
    expect(code, 0, f"{label}SIGTERM exit status")


def check_metrics(addr, metrics_url, before):
    """After the conversation: the counters moved by what happened."""
    for request, status in ((f"http://{addr}/nope", 404),):
        try:
            urllib.request.urlopen(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as error:
            expect(error.code, status, f"metrics: a {status} for the counts to see")
    try:
        with connect(f"ws://{addr}/", open_timeout=TIMEOUT, origin="http://evil.example"):
            pass
    except InvalidStatus as error:
        expect(error.response.status_code, 403, "metrics: a foreign origin refused")
    after = scrape(metrics_url)
    moved = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)
    expect(moved("wschat_connections_accepted_total") >= 5, True, "metrics: connections accepted counted")
    expect(moved("wschat_connections_rejected_total", reason="bad_request"), 1.0, "metrics: the 404 counted")
    expect(moved("wschat_connections_rejected_total", reason="origin"), 1.0, "metrics: the 403 counted")
    # In: ben's line, ana's long one, /msg, /quit and the echoed text; ben's binary message.
    expect(moved("wschat_messages_received_total", kind="text"), 5.0, "metrics: text messages received")
    expect(moved("wschat_messages_received_total", kind="binary"), 1.0, "metrics: binary messages received")
    expect(moved("wschat_deliveries_total", kind="binary") , 2.0, "metrics: binary deliveries (sender included)")
    expect(moved("wschat_deliveries_total", kind="text") >= 8, True, "metrics: text deliveries")
    # Python compressed the 60,000-byte echo too: bytes in are counted on the wire, not inflated.
    expect(0 < moved("wschat_received_bytes_total") < 30000, True, "metrics: bytes in, counted on the wire")
    # The 60,000-byte echo went back compressed: 2 bytes repeated, far fewer on the wire.
    expect(0 < moved("wschat_sent_bytes_total") < 30000, True, "metrics: bytes out, compressed")
    expect(moved("wschat_compressions_total") >= 2, True, "metrics: compressions (ana's long line, the echo)")
    saved = moved("wschat_compressed_payload_bytes_total", side="before") - moved(
        "wschat_compressed_payload_bytes_total", side="after")
    expect(saved > 50000, True, "metrics: compression saved bytes")
    expect(value(after, "wschat_loop_turn_duration_seconds_count") > 0, True, "metrics: loop turns timed")
    expect(value(after, "wschat_process_start_time_seconds") > 1.6e9, True, "metrics: start time")


def main():
    server, addr, metrics_url = start(sys.argv[1], "--metrics", "127.0.0.1:0")
    try:
        before = scrape(metrics_url)
        expect(value(before, "wschat_connections_open", state="chat"), 0.0, "metrics: no chat connection yet")
        chat(f"ws://{addr}", None, "", metrics_url)
        check_metrics(addr, metrics_url, before)
        json_resume(f"ws://{addr}")
    finally:
        stop(server, "")
    with tempfile.TemporaryDirectory() as directory:
        ca, cert, key = make_certificates(directory)
        server, addr, _ = start(sys.argv[1], "--tls-cert", cert, "--tls-key", key)
        port = addr.rsplit(":", 1)[1]
        try:
            chat(f"wss://localhost:{port}", ssl.create_default_context(cafile=ca), "wss: ")
            try:
                with connect(f"ws://{addr}/", open_timeout=TIMEOUT):
                    refused = None
            except InvalidStatus as error:
                refused = error.response.status_code
            expect(refused, 400, "wss: plain ws:// to the TLS port answered 400")
        finally:
            stop(server, "wss: ")
    print(f"interop: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
