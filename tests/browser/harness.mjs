// What the browser tests (e2e.mjs, conversation.mjs, admin.mjs) share: the server and redis-server processes a
// run starts, Chromium, the steps' reporting, a contrast check run in pages, and the clean-up of everything a run started
// (processes and scratch directories), however it ends.
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); playwright-core never downloads one.

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const STEP_TIMEOUT_MS = 10000;

// The command line every browser test takes: `[--OPTION...] [SERVER_BINARY] [SCREENSHOT_PATH]`,
// the options among `known` (anything else is an error). The screenshot is named after the
// test and its options (`chat-tls-cluster.png`), in target/browser/.
export function commandLine(name, known) {
  const args = process.argv.slice(2);
  const options = new Set();
  while (args[0]?.startsWith("--")) options.add(args.shift());
  for (const option of options) {
    if (!known.includes(option)) throw new Error(`unknown option ${option}`);
  }
  const root = `${dirname(fileURLToPath(import.meta.url))}/../..`;
  const shot = [name, ...known.filter((option) => options.has(option)).map((option) => option.slice(2))].join("-");
  return {
    options,
    serverBinary: resolve(args[0] ?? `${root}/target/debug/wschat-server`),
    screenshotPath: resolve(args[1] ?? `${root}/target/browser/${shot}.png`),
  };
}

// Every process a run started is killed, and its scratch directories removed, when it ends.
const children = [];
const scratchDirs = [];
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

// A directory for this run (a certificate, a secret, a key file), removed when it ends.
export function scratchDir() {
  const dir = mkdtempSync(join(tmpdir(), "wschat-e2e-"));
  scratchDirs.push(dir);
  return dir;
}

// Steps passed so far (a live binding: importers read the current count).
export let passed = 0;

export async function step(name, body) {
  try {
    await body();
  } catch (error) {
    console.log(`FAILED - ${name}`);
    throw error;
  }
  passed += 1;
  console.log(`ok - ${name}`);
}

// Runs a test's `main` and exits when it is done, either way: the processes it started (their
// pipes) would keep it running. `name` starts the summary line on failure.
export function run(name, main) {
  main().then(
    () => process.exit(0),
    (error) => {
      console.error(error);
      console.log(`${name}: ${passed} passed, 1 failed`);
      process.exit(1);
    },
  );
}

// Starts a server process; resolves once it listens, with --redis among its flags once it is
// linked to Redis (before that it chats on its own, and a page connected to it would not be in
// the others' chat), and with --api once its API listens (`api` is then its HOST:PORT).
export function startServer(binary, addr, flags) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(binary, [addr, ...flags], { stdio: ["ignore", "ignore", "pipe"] });
    children.push(child);
    let log = "";
    const timer = setTimeout(() => reject(new Error(`server did not start: ${log}`)), STEP_TIMEOUT_MS);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = log.match(/listening on (\S+)/);
      const api = log.match(/admin page at http:\/\/(\S+)\/admin/);
      const linked = !flags.includes("--redis") || log.includes("connected to Redis at");
      if (match && linked && (api || !flags.includes("--api"))) {
        clearTimeout(timer);
        resolvePromise({ child, addr: match[1], api: api?.[1] });
      }
    });
    child.on("error", reject);
  });
}

export function stopServer(server) {
  return new Promise((resolvePromise) => {
    server.child.on("exit", resolvePromise);
    server.child.kill("SIGTERM");
  });
}

// A free loopback port, for redis-server (which cannot be told to pick one and say which).
function freePort() {
  return new Promise((resolvePromise, reject) => {
    const probe = createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePromise(port));
    });
  });
}

// A redis-server for --cluster, without persistence; resolves once it accepts connections.
export async function startRedis() {
  const port = await freePort();
  const binary = process.env.REDIS_SERVER ?? "redis-server";
  const redisFlags = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(binary, redisFlags, { stdio: ["ignore", "pipe", "ignore"] });
    children.push(child);
    let log = "";
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${log}`)), STEP_TIMEOUT_MS);
    child.stdout.on("data", (chunk) => {
      log += chunk;
      if (log.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolvePromise({ child, url: `redis://127.0.0.1:${port}` });
      }
    });
    child.on("error", (error) => reject(new Error(`cannot run ${binary} (--cluster needs it): ${error.message}`)));
  });
}

// Runs in the page: every visible element with its own text (and every button and filled
// input) whose text colour against the background behind it is below 4.5:1, the WCAG AA
// minimum for normal text. Colours are the computed ones, so this is what the browser draws.
export function lowContrast() {
  const rgba = (css) => {
    const parts = css.match(/[\d.]+/g).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const background = (element) => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const colour = rgba(getComputedStyle(e).backgroundColor);
      if (colour.a > 0) layers.push(colour);
      if (colour.a >= 1) break;
    }
    return layers.reduceRight((below, layer) => over(layer, below), { r: 255, g: 255, b: 255, a: 1 });
  };
  const luminance = ({ r, g, b }) => {
    const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const failures = [];
  for (const element of document.body.querySelectorAll("*")) {
    if (!element.getClientRects().length || getComputedStyle(element).visibility === "hidden") continue;
    const ownText = [...element.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.data.trim());
    const control = element.matches("button, input") && (element.textContent.trim() || element.value);
    if (!ownText && !control) continue;
    const bg = background(element);
    const fg = over(rgba(getComputedStyle(element).color), bg);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
    const ratio = (hi + 0.05) / (lo + 0.05);
    if (ratio < 4.5) {
      const label = (element.textContent.trim() || element.value || "").slice(0, 30);
      failures.push(`${element.tagName.toLowerCase()} "${label}" ${ratio.toFixed(2)}:1`);
    }
  }
  return failures;
}

// Headless Chromium, with `extraArgs`.
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
      ...extraArgs,
    ],
  });
}
