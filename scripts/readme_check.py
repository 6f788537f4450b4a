#!/usr/bin/env python3
"""Runs the README's shell blocks in order, as a new user pasting them would, and fails on the
first command that does not work.

  python3 scripts/readme_check.py [README.md]

Run from a checkout (CI runs it on a clean clone). Every line of every ```sh block is one of:

- a server (`target/release/wschat-server ...`, in the foreground or with `&`): started in the
  background and waited for until its port accepts connections; it must bind, so a block that
  reuses the address of a server still running fails, as it would for the user. A server in
  the foreground runs on (the user's terminal holds it) to the end; one started with `&` is
  the block's job, numbered from 1, and `kill %N ...` in the block stops it. If the line's
  comment says to open a page, the page is fetched and must answer 200.
- an interactive client (its comment says `# terminal N`): started in a pseudo-terminal of its
  own. Once all the terminals of a block are in (the server's welcome shows in each), each
  types a line that every other one must show, then `/quit`, and each must exit 0.
- a step CI runs on its own (`cargo test`, the soak, the browser test and its install): named
  and skipped here, so nothing runs twice.
- anything else: run with bash; it must exit 0 within two minutes.

Needs `websocat` on PATH for the README's websocat block (`.ci/run` installs it).
"""

import os
import pty
import re
import select
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

DEADLINE = 20.0
# Lines CI runs as steps of their own; the reason is printed when they are skipped.
RUN_BY_CI = [
    (re.compile(r"^cargo test$"), "CI's test step"),
    (re.compile(r"^python3 scripts/soak\.py "), "CI's soak step"),
    (re.compile(r"apt-get install (-y )?chromium"), "CI's browser step installs it"),
    (re.compile(r"node e2e\.mjs"), "CI's browser step"),
]


def blocks(readme):
    """The ```sh blocks of the README, each a list of (command, comment) lines."""
    found, current = [], None
    for line in open(readme, encoding="utf-8"):
        line = line.rstrip("\n")
        if current is None and line.strip() == "```sh":
            current = []
        elif current is not None and line.strip() == "```":
            found.append(current)
            current = None
        elif current is not None and current and current[-1][0].endswith("\\"):
            # A continued line: the command goes on, and its comment is the last line's.
            previous, _ = current.pop()
            command, _, comment = line.partition(" #")
            current.append((previous[:-1].rstrip() + " " + command.strip(), comment.strip()))
        elif current is not None and line.strip():
            command, _, comment = line.partition(" #")
            current.append((command.strip(), comment.strip()))
    return found


def fail(message):
    print(f"README check FAILED: {message}", flush=True)
    sys.exit(1)


class Terminal:
    """A command in a pseudo-terminal, its output collected as it comes."""

    def __init__(self, command):
        self.command = command
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            ["bash", "-c", command], stdin=slave, stdout=slave, stderr=slave,
            env={**os.environ, "NO_COLOR": "1", "TERM": "xterm"}, start_new_session=True)
        os.close(slave)
        self.output = b""

    def text(self):
        return self.output.decode("utf-8", "replace")

    def read_for(self, seconds):
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other side closed: the process ended
                return
            if not chunk:
                return
            self.output += chunk

    def wait_for(self, needle):
        end = time.monotonic() + DEADLINE
        while needle not in self.text():
            if time.monotonic() > end:
                fail(f"`{self.command}` never showed {needle!r}; it showed:\n{self.text()}")
            self.read_for(0.1)

    def type(self, line):
        os.write(self.master, line.encode() + b"\r")

    def wait_exit(self):
        """Waits for the process to end; a tool that keeps reading the terminal after the
        server closed (websocat does) gets Ctrl-D, as its user would press it."""
        end = time.monotonic() + DEADLINE
        eof_at = time.monotonic() + 2
        while self.process.poll() is None:
            if eof_at and time.monotonic() > eof_at:
                os.write(self.master, b"\x04")
                eof_at = None
            if time.monotonic() > end:
                self.process.kill()
                fail(f"`{self.command}` did not exit after /quit:\n{self.text()}")
            self.read_for(0.1)
        self.read_for(0.2)
        os.close(self.master)
        return self.process.returncode


class Servers:
    """The servers the README starts, by address, and the block's jobs (those started with `&`)."""

    def __init__(self):
        self.running = {}
        self.jobs = []

    def new_block(self):
        self.jobs = []

    def start(self, command, comment):
        args = shlex.split(command.rstrip("&").strip())
        address = next(a for a in args[1:] if not a.startswith("-"))
        if address in self.running:
            fail(f"`{command}` reuses {address}, still held by a server started earlier in the README "
                 "(stop that one first, or give this one a port of its own)")
        print(f"$ {command}   (in the background)", flush=True)
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        host, port = address.rsplit(":", 1)
        end = time.monotonic() + DEADLINE
        while True:
            if process.poll() is not None:
                fail(f"`{command}` exited with {process.returncode} (could it not bind {address}?)")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    fail(f"`{command}` never accepted a connection on {address}")
                time.sleep(0.05)
        self.running[address] = process
        if command.endswith("&"):
            self.jobs.append(address)
        page = re.search(r"open (https?://\S+)", comment)
        if page:
            # A certificate made for the example is not one the system trusts.
            context = ssl._create_unverified_context() if page.group(1).startswith("https") else None
            with urllib.request.urlopen(page.group(1), timeout=5, context=context) as response:
                body = response.read()
                if response.status != 200 or b"<title>wschat</title>" not in body:
                    fail(f"{page.group(1)} answered {response.status} without the chat page")
            print(f"  {page.group(1)} serves the chat page", flush=True)

    def kill_jobs(self, command):
        """`kill %1 %2`: the block's jobs by number, as the user's shell would."""
        print(f"$ {command}", flush=True)
        for number in re.findall(r"%(\d+)", command):
            index = int(number) - 1
            if index >= len(self.jobs) or self.jobs[index] not in self.running:
                fail(f"`{command}`: no job %{number} in this block")
            self.stop(self.jobs[index])

    def stop(self, address):
        process = self.running.pop(address, None)
        if process:
            process.terminate()
            process.wait(timeout=DEADLINE)

    def stop_all(self):
        for address in list(self.running):
            self.stop(address)


def converse(terminals):
    """Every terminal of a block is in: each says a line the others must show, then quits."""
    for terminal in terminals:
        terminal.wait_for("welcome, you are")
    for i, terminal in enumerate(terminals):
        line = f"hello from terminal {i + 1} of the README"
        terminal.type(line)
        for other in terminals:
            other.wait_for(line)
    for terminal in terminals:
        terminal.type("/quit")
        status = terminal.wait_exit()
        if status != 0:
            fail(f"`{terminal.command}` exited with {status} after /quit:\n{terminal.text()}")
    print(f"  {len(terminals)} terminals chatted, then quit with status 0", flush=True)


def run(command):
    print(f"$ {command}", flush=True)
    try:
        result = subprocess.run(["bash", "-c", command], timeout=120, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        fail(f"`{command}` did not finish within two minutes")
    if result.returncode != 0:
        fail(f"`{command}` exited with {result.returncode}:\n{result.stdout}{result.stderr}")
    shown = (result.stdout + result.stderr).strip().splitlines()
    for line in shown[-3:]:
        print(f"  {line}", flush=True)


def main():
    readme = sys.argv[1] if len(sys.argv) > 1 else "README.md"
    servers = Servers()
    commands = 0
    try:
        for block in blocks(readme):
            terminals = []
            servers.new_block()
            for command, comment in block:
                commands += 1
                in_terminal = re.match(r"terminal \d+\b", comment)
                if terminals and not in_terminal:
                    # The user chats in the terminals before going on with the block.
                    converse(terminals)
                    terminals = []
                ci_step = next((why for pattern, why in RUN_BY_CI if pattern.search(command)), None)
                if ci_step:
                    print(f"$ {command}   (skipped: {ci_step})", flush=True)
                elif command.startswith("target/release/wschat-server"):
                    servers.start(command, comment)
                elif re.match(r"kill( %\d+)+$", command):
                    servers.kill_jobs(command)
                elif in_terminal:
                    print(f"$ {command}   (in a terminal of its own)", flush=True)
                    terminals.append(Terminal(command))
                else:
                    run(command)
            if terminals:
                converse(terminals)
    finally:
        servers.stop_all()
    print(f"README check: all {commands} commands of {readme} work", flush=True)


if __name__ == "__main__":
    main()
