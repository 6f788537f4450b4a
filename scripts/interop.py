#!/usr/bin/env python3
"""Interoperability check with a second, independent WebSocket implementation.

Starts the release or debug `wschat-server` binary given as the first argument on a free port
and chats through it with Python's `websockets` client (its sync API): two clients, nicks,
broadcast with the sender included, /msg, binary relay, /echo, keep-alive, and a clean /quit.
Exits non-zero on the first failed expectation. Used by .ci/run:

    python3 -m venv .venv && .venv/bin/pip install websockets
    .venv/bin/python scripts/interop.py target/debug/wschat-server
"""
import subprocess
import sys

from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

TIMEOUT = 10


def start(binary):
    server = subprocess.Popen([binary, "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        if "listening on " in line:
            return server, line.split("listening on ")[1].strip()
    sys.exit("server exited before listening")


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


def main():
    server, addr = start(sys.argv[1])
    try:
        with connect(f"ws://{addr}/?nick=ana", open_timeout=TIMEOUT) as ana, \
             connect(f"ws://{addr}/?nick=ben", open_timeout=TIMEOUT) as ben:
            expect(ana.recv(timeout=TIMEOUT).startswith("*** welcome, you are ana"), True, "welcome notice")
            ben.send("hello from python")
            expect(recv_chat(ana), "ben: hello from python", "broadcast reaches the room")
            expect(recv_chat(ben), "ben: hello from python", "broadcast includes the sender")
            ana.send("/msg ben psst")
            expect(recv_chat(ben), "[PM from ana] psst", "private message")
            expect(recv_chat(ana), "[PM to ben] psst", "private message copy")
            ben.send(bytes(range(256)))
            expect(recv_chat(ana), bytes(range(256)), "binary relayed verbatim")
            expect(recv_chat(ben), bytes(range(256)), "binary relayed to the sender")
            expect(ana.ping().wait(TIMEOUT), True, "ping answered")
            ana.send("/quit bye")
            try:
                while True:
                    ana.recv(timeout=TIMEOUT)
            except ConnectionClosedOK as closed:
                expect((closed.rcvd.code, closed.rcvd.reason), (1000, "bye"), "/quit closes with 1000")
            expect(ben.recv(timeout=TIMEOUT), "*** ana left lobby (quit: bye)", "departure notice")
        with connect(f"ws://{addr}/echo", open_timeout=TIMEOUT, max_size=None) as echo:
            big = "é" * 30000
            echo.send(big)
            expect(echo.recv(timeout=TIMEOUT) == big, True, "echo of a 60,000-byte text message")
    finally:
        server.terminate()
        code = server.wait(timeout=TIMEOUT)
    expect(code, 0, "SIGTERM exit status")
    print(f"interop: {len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
