// End-to-end test of the wschat page in real headless Chromium.
//
// Starts the real server on 127.0.0.1:0, opens the page twice (separate browser contexts, as two
// people), and checks what they see: joining, chatting both ways, binary messages, a room's
// history set apart from live lines, notices styled rather than prefixed, switching rooms with
// the member lists following, and reconnecting after a server restart. Saves a
// screenshot. Fails on any page error or console error (a Content-Security-Policy violation
// shows up as one), except the connection errors expected while the server is down.
//
//   node e2e.mjs [--tls] [--cluster] [SERVER_BINARY] [SCREENSHOT_PATH]
//
// With --tls the server serves https:// and wss:// with a certificate made for the run by the
// `openssl` command, and Chromium is told to accept it (--ignore-certificate-errors, for the
// test only); everything else is the same test.
//
// With --cluster the chat is two server processes joined by a `redis-server` started for the
// run (on a free loopback port, without persistence; $REDIS_SERVER names another binary), and
// the two people are on different processes: everything one sees of the other crossed Redis.
// The restart step then restarts only ann's process, and she must miss nothing (Redis kept
// the room) instead of being told of a gap.
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); playwright-core never downloads one.
// What starting the processes and Chromium takes is harness.mjs's, shared with
// conversation.mjs and admin.mjs.

import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  STEP_TIMEOUT_MS, commandLine, launchChromium, lowContrast, passed, run, scratchDir, startRedis, startServer as start, step, stopServer,
} from "./harness.mjs";

const { options, serverBinary, screenshotPath } = commandLine("chat", ["--tls", "--cluster"]);
const tls = options.has("--tls");
const cluster = options.has("--cluster");

// A self-signed certificate for 127.0.0.1, made for this run.
function tlsFlags() {
  if (!tls) return [];
  const dir = scratchDir();
  const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
  ], { stdio: "ignore" });
  return ["--tls-cert", cert, "--tls-key", key];
}
const serverFlags = tlsFlags();

// Starts a server process with this run's flags (--tls) and `extraFlags`, which a restart
// repeats.
async function startServer(addr = "127.0.0.1:0", extraFlags = []) {
  const server = await start(serverBinary, addr, [...serverFlags, ...extraFlags]);
  return { ...server, flags: extraFlags };
}

// An HS256 token, as the site embedding the chat would sign it.
function signToken(secret, claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

async function main() {
  // Alone, one process serves both people; with --cluster, ann's process (servers[0]) and
  // bob's (servers[1]) share the chat through Redis.
  const redis = cluster ? await startRedis() : null;
  const chatFlags = cluster ? ["--redis", redis.url] : [];
  const servers = [];
  for (let i = 0; i < (cluster ? 2 : 1); i += 1) servers.push(await startServer("127.0.0.1:0", chatFlags));
  const pageUrl = (server) => `${tls ? "https" : "http"}://${server.addr}/`;
  const base = pageUrl(servers[0]);
  const bobBase = pageUrl(servers[servers.length - 1]);
  const browser = await launchChromium(tls ? ["--ignore-certificate-errors"] : []);
  const problems = [];
  let serverDown = false;
  async function person(nick, { refusedSockets = false } = {}) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (error) => problems.push(`${nick}: page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      // While the server is down, Chromium reports each failed reconnection attempt.
      if ((serverDown || refusedSockets) && /WebSocket connection to .* failed/.test(message.text())) return;
      if (refusedSockets && /status of 40[13]/.test(message.text())) return;
      problems.push(`${nick}: console error: ${message.text()}`);
    });
    return page;
  }
  const messages = (page) => page.locator("#messages li");
  const members = (page) => page.locator("#members li");
  const say = async (page, text) => {
    await page.fill("#message-input", text);
    await page.press("#message-input", "Enter");
  };
  const expectMembers = (page, names) =>
    page.waitForFunction(
      (wanted) => [...document.querySelectorAll("#members li")].map((li) => li.textContent).join(",") === wanted,
      names.join(","),
    );

  try {
    const ann = await person("ann");
    const bob = await person("bob");

    await step("the page loads with its own script and style under the CSP", async () => {
      const response = await ann.goto(base);
      if (response.status() !== 200) throw new Error(`status ${response.status()}`);
      const csp = response.headers()["content-security-policy"] ?? "";
      if (!csp.includes("script-src 'self'")) throw new Error(`CSP: ${csp}`);
      const hsts = response.headers()["strict-transport-security"];
      if (tls !== Boolean(hsts)) throw new Error(`Strict-Transport-Security: ${hsts} over ${base}`);
      await ann.locator("#login").waitFor({ state: "visible" });
      if (!(await ann.locator("#chat").isHidden())) throw new Error("the chat shows before joining");
      const background = await ann.evaluate(() => getComputedStyle(document.body).backgroundColor);
      if (!background || background === "rgba(0, 0, 0, 0)") throw new Error("style.css not applied");
    });

    await step("ann picks a nick and joins the lobby", async () => {
      await ann.fill("#nick-input", "ann");
      await ann.click("#join-button");
      await ann.waitForSelector('#status[data-state="open"]');
      await messages(ann).filter({ hasText: "welcome, you are ann in lobby" }).waitFor();
      await expectMembers(ann, ["ann"]);
      if (!(await ann.locator("#login").isHidden())) throw new Error("the nick form is still shown");
      if (!(await ann.locator("#chat").isVisible())) throw new Error("the chat is not shown");
      const where = await ann.textContent("#where");
      if (where !== "ann in lobby") throw new Error(`header says ${where}`);
      const socketUrl = await ann.evaluate(() => state.socket.url);
      if (!socketUrl.startsWith(tls ? "wss://" : "ws://")) throw new Error(`the page connected to ${socketUrl}`);
    });

    await step("bob joins; ann's member list and notices show him", async () => {
      await bob.goto(bobBase);
      await bob.fill("#nick-input", "bob");
      await bob.press("#nick-input", "Enter");
      await bob.waitForSelector('#status[data-state="open"]');
      await expectMembers(bob, ["ann", "bob"]);
      await expectMembers(ann, ["ann", "bob"]);
      const joined = messages(ann).filter({ hasText: "bob joined lobby" });
      await joined.waitFor();
      if ((await joined.getAttribute("class")) !== "notice") throw new Error("notice not styled as one");
      const text = await joined.locator(".text").textContent();
      if (text !== "bob joined lobby") throw new Error(`the notice reads "${text}"`);
    });

    await step("Chromium negotiates permessage-deflate, and a long line crosses compressed both ways", async () => {
      for (const page of [ann, bob]) {
        const extensions = await page.evaluate(() => state.socket.extensions);
        if (!extensions.startsWith("permessage-deflate") || !extensions.includes("server_no_context_takeover")) {
          throw new Error(`the socket's extensions are "${extensions}"`);
        }
      }
      // Over --deflate-min-size: Chromium sends it compressed, the server inflates it, and
      // compresses the broadcast once for both.
      const long = "a long line to compress, " + "said again and again and again, ".repeat(8) + "the end";
      await say(bob, long);
      await messages(ann).filter({ hasText: `bob: ${long}` }).waitFor();
      await messages(bob).filter({ hasText: `bob: ${long}` }).waitFor();
    });

    await step("a taken or invalid nick brings the nick form back with the reason beside it", async () => {
      const carol = await person("carol");
      await carol.goto(bobBase);
      await carol.fill("#nick-input", "ANN");
      await carol.click("#join-button");
      const error = carol.locator("#nick-error");
      await error.filter({ hasText: "already in use" }).waitFor();
      if (!(await carol.locator("#login").isVisible())) throw new Error("the nick form is not back");
      if (!(await carol.locator("#chat").isHidden())) throw new Error("signed in as a guest instead");
      await carol.fill("#nick-input", "two words");
      await carol.click("#join-button");
      await error.filter({ hasText: "no spaces" }).waitFor();
      await carol.context().close();
      await expectMembers(ann, ["ann", "bob"]);
    });

    await step("they chat in both directions, with timestamps", async () => {
      await say(ann, "hello bob");
      await messages(bob).filter({ hasText: "ann: hello bob" }).waitFor();
      await say(bob, "hi ann <b>not bold</b>");
      const line = messages(ann).filter({ hasText: "bob: hi ann <b>not bold</b>" });
      await line.waitFor();
      const time = await line.locator("time").textContent();
      if (!/^\d\d:\d\d:\d\d$/.test(time)) throw new Error(`timestamp ${time}`);
      if ((await line.locator("b").count()) !== 0) throw new Error("text was inserted as HTML");
      if ((await ann.inputValue("#message-input")) !== "") throw new Error("input not cleared after send");
    });

    await step("a newcomer sees the room's history muted, after an \"earlier messages\" divider", async () => {
      const dan = await person("dan");
      await dan.goto(bobBase);
      await dan.fill("#nick-input", "dan");
      await dan.click("#join-button");
      await messages(dan).filter({ hasText: "bob: hi ann <b>not bold</b>" }).waitFor();
      await say(ann, "said live");
      await messages(dan).filter({ hasText: "ann: said live" }).waitFor();
      // What dan's conversation holds, in order: each line's classes and text.
      const lines = await dan.evaluate(() => [...document.querySelectorAll("#messages li")]
        .map((li) => ({ classes: [...li.classList], text: (li.querySelector(".text") ?? li).textContent })));
      const at = (text) => lines.findIndex((line) => line.text === text);
      const dividers = lines.filter((line) => line.classes.includes("divider"));
      if (dividers.length !== 1 || dividers[0].text !== "earlier messages") {
        throw new Error(`dividers: ${JSON.stringify(dividers)}`);
      }
      const divider = lines.indexOf(dividers[0]);
      for (const text of ["ann: hello bob", "bob: hi ann <b>not bold</b>"]) {
        const line = lines[at(text)];
        if (!(at(text) > divider)) throw new Error(`"${text}" is not after the divider: ${JSON.stringify(lines)}`);
        if (!line.classes.includes("replayed")) throw new Error(`"${text}" is not muted: ${line.classes}`);
      }
      const live = lines[at("ann: said live")];
      if (live.classes.includes("replayed")) throw new Error("a live message is shown as replayed");
      // Muted, yet still told apart from the live lines by colour.
      const colours = await dan.evaluate(() => ["li.replayed", "li.chat:not(.replayed)"]
        .map((selector) => getComputedStyle(document.querySelector(`#messages ${selector}`)).color));
      if (colours[0] === colours[1]) throw new Error(`replayed and live lines are both ${colours[0]}`);
      await dan.context().close();
      await expectMembers(ann, ["ann", "bob"]);
    });

    await step("private messages and binary messages are shown apart", async () => {
      await say(ann, "/msg bob just for you");
      const pm = messages(bob).filter({ hasText: "[PM from ann] just for you" });
      await pm.waitFor();
      if ((await pm.getAttribute("class")) !== "private") throw new Error("PM not styled");
      await bob.evaluate(() => state.socket.send(new Uint8Array([1, 2, 3, 4, 5])));
      await messages(ann).filter({ hasText: "[binary, 5 bytes from bob]" }).waitFor();
      // The line naming the sender is folded into the binary message, not shown on its own.
      if ((await messages(ann).filter({ hasText: "binary message from" }).count()) !== 0) {
        throw new Error("the sender's line shows on its own");
      }
    });

    await step("/help is a monospace block with aligned columns; long messages wrap under their text", async () => {
      await say(ann, "/help");
      await messages(ann).filter({ hasText: "/nick NAME" }).waitFor();
      const help = await ann.evaluate(() => {
        // Where the description column starts on two rows of the /help table.
        const startOf = (needle) => {
          const walker = document.createTreeWalker(document.getElementById("messages"), NodeFilter.SHOW_TEXT);
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const at = node.data.indexOf(needle);
            if (at < 0) continue;
            const range = document.createRange();
            range.setStart(node, at);
            range.setEnd(node, at + 1);
            return { x: range.getBoundingClientRect().left, font: getComputedStyle(node.parentElement).fontFamily };
          }
          return null;
        };
        return [startOf("change your nick"), startOf("list rooms and member")];
      });
      if (!help[0] || !help[1]) throw new Error("the /help rows are not shown");
      if (!/mono/i.test(help[0].font)) throw new Error(`/help is in ${help[0].font}`);
      if (Math.abs(help[0].x - help[1].x) > 0.5) throw new Error(`/help columns start at ${help[0].x} and ${help[1].x}`);

      const long = "a long message " + "that keeps going ".repeat(30) + "end";
      await say(bob, long);
      const item = messages(ann).filter({ hasText: "that keeps going that keeps going" });
      await item.waitFor();
      const layout = await item.evaluate((li, text) => {
        const walker = document.createTreeWalker(li, NodeFilter.SHOW_TEXT);
        let node = walker.nextNode();
        while (node && !node.data.includes("that keeps going")) node = walker.nextNode();
        const range = document.createRange();
        range.selectNodeContents(node);
        const lines = [...range.getClientRects()].filter((r) => r.width > 0);
        return {
          lefts: lines.map((r) => r.left),
          tops: new Set(lines.map((r) => Math.round(r.top))).size,
          timeRight: li.querySelector("time").getBoundingClientRect().right,
        };
      }, long);
      if (layout.tops < 2) throw new Error("the long message did not wrap; the test needs it to");
      const under = Math.min(...layout.lefts);
      if (under <= layout.timeRight) throw new Error(`wrapped lines start at ${under}, under the time (ends ${layout.timeRight})`);
    });

    await step("bob switches to a new room; both member lists follow", async () => {
      await bob.fill("#room-input", "dev");
      await bob.press("#room-input", "Enter");
      await bob.waitForFunction(() => document.querySelector("#where").textContent === "bob in dev");
      await expectMembers(bob, ["bob"]);
      await expectMembers(ann, ["ann"]);
      await messages(ann).filter({ hasText: "bob left lobby (joined dev)" }).waitFor();
    });

    await step("ann follows by clicking the room in her room list", async () => {
      await ann.locator('#rooms li[data-room="dev"]').click();
      await ann.waitForFunction(() => document.querySelector("#where").textContent === "ann in dev");
      await expectMembers(ann, ["ann", "bob"]);
      await expectMembers(bob, ["ann", "bob"]);
      await ann.waitForSelector('#rooms li.current[data-room="dev"]');
      await say(bob, "welcome to dev");
      await messages(ann).filter({ hasText: "bob: welcome to dev" }).waitFor();
    });

    await step("a dropped connection comes back with every message said meanwhile, once", async () => {
      await ann.evaluate(() => state.socket.close(4001, "test: the network drops"));
      for (let i = 1; i <= 5; i += 1) await say(bob, `while ann was away ${i}`);
      await ann.waitForSelector('#status[data-state="open"]');
      await say(bob, "and live again");
      await messages(ann).filter({ hasText: "bob: and live again" }).waitFor();
      for (let i = 1; i <= 5; i += 1) {
        const count = await messages(ann).filter({ hasText: `bob: while ann was away ${i}` }).count();
        if (count !== 1) throw new Error(`"while ann was away ${i}" shown ${count} times`);
      }
      if ((await messages(ann).filter({ hasText: "bob: welcome to dev" }).count()) !== 1) {
        throw new Error("a message seen before the drop was shown again");
      }
      if ((await messages(ann).filter({ hasText: "were missed" }).count()) !== 0) throw new Error("a gap was reported");
      const url = await ann.evaluate(() => state.socket.url);
      if (!/[?&]room=dev&since=[a-z0-9]+%3A\d+/.test(url)) throw new Error(`did not resume: ${url}`);
      const protocol = await ann.evaluate(() => state.socket.protocol);
      if (protocol !== "wschat.json") throw new Error(`subprotocol ${protocol}`);
    });

    await step("replayed and live messages carry the server's timestamps", async () => {
      const line = messages(ann).filter({ hasText: "bob: while ann was away 1" });
      const shown = new Date(await line.locator("time").getAttribute("datetime")).getTime();
      if (!(Math.abs(Date.now() - shown) < 60000)) throw new Error(`timestamp ${shown}`);
    });

    await step("screenshot saved", async () => {
      mkdirSync(dirname(screenshotPath), { recursive: true });
      await ann.screenshot({ path: screenshotPath });
    });

    const restart = cluster
      ? "after ann's process restarts, her page comes back to her room on it and misses nothing"
      : "after a restart without --data-dir both pages come back to their room and show the gap";
    await step(restart, async () => {
      serverDown = true;
      const old = servers[0];
      await stopServer(old);
      await ann.waitForSelector('#status[data-state="connecting"]');
      await messages(ann).filter({ hasText: "1001 server shutting down" }).waitFor();
      // With --cluster bob's process stays up, and he talks while ann's is down.
      if (cluster) await say(bob, "while ann's server was down");
      servers[0] = await startServer(old.addr, old.flags);
      await ann.waitForSelector('#status[data-state="open"]', { timeout: 20000 });
      await bob.waitForSelector('#status[data-state="open"]', { timeout: 20000 });
      serverDown = false;
      await messages(ann).filter({ hasText: "welcome, you are ann in dev" }).nth(1).waitFor();
      await expectMembers(ann, ["ann", "bob"]);
      const gap = messages(ann).filter({ hasText: "some messages in dev were missed" });
      if (!cluster) {
        // The history went with the old process (a new epoch): the page must say so.
        await gap.waitFor();
        if ((await gap.getAttribute("class")) !== "gap") throw new Error("the gap is not marked as one");
        return;
      }
      // Redis kept the room: ann's page resumes from her last message and gets what bob said
      // meanwhile, once. A live line after it comes after the replay's summary, so by then a
      // gap would have been shown.
      await messages(ann).filter({ hasText: "bob: while ann's server was down" }).waitFor();
      await say(bob, "and after ann's restart");
      await messages(ann).filter({ hasText: "bob: and after ann's restart" }).waitFor();
      const missed = await messages(ann).filter({ hasText: "bob: while ann's server was down" }).count();
      if (missed !== 1) throw new Error(`what bob said meanwhile is shown ${missed} times`);
      if ((await gap.count()) !== 0) throw new Error("a gap was reported though Redis kept the room");
    });

    await step("/quit returns to the nick form", async () => {
      await say(bob, "/quit gone");
      await bob.locator("#login").waitFor({ state: "visible" });
      if (!(await bob.locator("#chat").isHidden())) throw new Error("the chat is still shown");
      await expectMembers(ann, ["ann"]);
    });

    await step("text and buttons meet WCAG AA contrast (4.5:1) in light and dark mode", async () => {
      await say(ann, "/me waves");
      await say(ann, "/nosuchcommand");
      await messages(ann).filter({ hasText: "error: unknown command /nosuchcommand" }).waitFor();
      const failures = [];
      for (const [page, view] of [[ann, "chat"], [bob, "nick form"]]) {
        for (const colorScheme of ["light", "dark"]) {
          await page.emulateMedia({ colorScheme });
          for (const f of await page.evaluate(lowContrast)) failures.push(`${view}, ${colorScheme}: ${f}`);
        }
      }
      if (failures.length) throw new Error(`below 4.5:1:\n${failures.join("\n")}`);
    });

    await step("notices, /help and errors are styled, not prefixed with \"*** \"", async () => {
      const shown = await ann.evaluate(() => [...document.querySelectorAll("#messages li.notice, #messages li.error")]
        .map((li) => {
          const text = li.querySelector(".text");
          return { text: text.textContent, rule: getComputedStyle(text).borderLeftStyle };
        }));
      const help = shown.filter((line) => line.text.includes("/nick NAME"));
      if (help.length !== 1 || !help[0].text.includes("\n")) throw new Error(`the /help notice: ${JSON.stringify(help)}`);
      if (!shown.some((line) => line.text.startsWith("error: "))) throw new Error("no error shown");
      const prefixed = shown.filter((line) => line.text.includes("***"));
      if (prefixed.length) throw new Error(`prefixed with ***: ${JSON.stringify(prefixed)}`);
      const plain = shown.filter((line) => line.rule !== "solid");
      if (plain.length) throw new Error(`not marked by their style: ${JSON.stringify(plain)}`);
    });

    await step("a page opened with ?token= signs in as the token's user; a bad token is told why", async () => {
      const secret = "a secret the embedding site shares, 32+ bytes";
      const dir = scratchDir();
      writeFileSync(join(dir, "secret"), secret);
      const signed = await startServer("127.0.0.1:0", ["--jwt-secret", join(dir, "secret")]);
      try {
        const origin = `${tls ? "https" : "http"}://${signed.addr}/`;
        const now = Math.floor(Date.now() / 1000);
        const dora = await person("dora");
        await dora.goto(`${origin}?token=${signToken(secret, { sub: "dora", exp: now + 600 })}`);
        await messages(dora).filter({ hasText: "welcome, you are dora in lobby" }).waitFor();
        if (!(await dora.locator("#login").isHidden())) throw new Error("the nick form is shown to a signed-in user");
        const eve = await person("eve", { refusedSockets: true });
        await eve.goto(`${origin}?token=${signToken("not the secret at all, but long enough", { sub: "eve", exp: now + 600 })}`);
        const refused = messages(eve).filter({ hasText: "cannot sign in: bad token signature" });
        await refused.waitFor();
        if ((await eve.locator("#status").getAttribute("data-state")) !== "offline") throw new Error("it keeps retrying");
        await dora.context().close();
        await eve.context().close();
      } finally {
        signed.child.kill("SIGKILL");
      }
    });

    await step("no page or console errors", async () => {
      if (problems.length) throw new Error(problems.join("\n"));
    });
    const how = `${tls ? " over https" : ""}${cluster ? " on two processes and Redis" : ""}`;
    console.log(`browser e2e${how}: ${passed} passed, 0 failed; screenshot ${screenshotPath}`);
  } finally {
    await browser.close();
  }
}

run("browser e2e", main);
