// End-to-end test of the wschat page in real headless Chromium.
//
// Starts the real server on 127.0.0.1:0, opens the page twice (separate browser contexts, as two
// people), and checks what they see: joining, chatting both ways, binary messages, switching
// rooms with the member lists following, and reconnecting after a server restart. Saves a
// screenshot. Fails on any page error or console error (a Content-Security-Policy violation
// shows up as one), except the connection errors expected while the server is down.
//
//   node e2e.mjs [SERVER_BINARY] [SCREENSHOT_PATH]
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM); playwright-core never downloads one.

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const serverBinary = resolve(process.argv[2] ?? `${here}/../../target/debug/wschat-server`);
const screenshotPath = resolve(process.argv[3] ?? `${here}/../../target/browser/chat.png`);
const STEP_TIMEOUT_MS = 10000;

let passed = 0;
async function step(name, body) {
  try {
    await body();
  } catch (error) {
    console.log(`FAILED - ${name}`);
    throw error;
  }
  passed += 1;
  console.log(`ok - ${name}`);
}

function startServer(addr = "127.0.0.1:0") {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(serverBinary, [addr], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    const timer = setTimeout(() => reject(new Error(`server did not start: ${log}`)), STEP_TIMEOUT_MS);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = log.match(/listening on (\S+)/);
      if (match) {
        clearTimeout(timer);
        resolvePromise({ child, addr: match[1] });
      }
    });
    child.on("error", reject);
  });
}

function stopServer(server) {
  return new Promise((resolvePromise) => {
    server.child.on("exit", resolvePromise);
    server.child.kill("SIGTERM");
  });
}

async function main() {
  let server = await startServer();
  const base = `http://${server.addr}/`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
  const problems = [];
  let serverDown = false;
  async function person(nick) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (error) => problems.push(`${nick}: page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      // While the server is down, Chromium reports each failed reconnection attempt.
      if (serverDown && /WebSocket connection to .* failed/.test(message.text())) return;
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
    });

    await step("bob joins; ann's member list and notices show him", async () => {
      await bob.goto(base);
      await bob.fill("#nick-input", "bob");
      await bob.press("#nick-input", "Enter");
      await bob.waitForSelector('#status[data-state="open"]');
      await expectMembers(bob, ["ann", "bob"]);
      await expectMembers(ann, ["ann", "bob"]);
      const joined = messages(ann).filter({ hasText: "*** bob joined lobby" });
      await joined.waitFor();
      if ((await joined.getAttribute("class")) !== "notice") throw new Error("notice not styled as one");
    });

    await step("a taken or invalid nick brings the nick form back with the reason beside it", async () => {
      const carol = await person("carol");
      await carol.goto(base);
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

    await step("private messages and binary messages are shown apart", async () => {
      await say(ann, "/msg bob just for you");
      const pm = messages(bob).filter({ hasText: "[PM from ann] just for you" });
      await pm.waitFor();
      if ((await pm.getAttribute("class")) !== "private") throw new Error("PM not styled");
      await bob.evaluate(() => state.socket.send(new Uint8Array([1, 2, 3, 4, 5])));
      await messages(ann).filter({ hasText: "[binary, 5 bytes]" }).waitFor();
    });

    await step("bob switches to a new room; both member lists follow", async () => {
      await bob.fill("#room-input", "dev");
      await bob.press("#room-input", "Enter");
      await bob.waitForFunction(() => document.querySelector("#where").textContent === "bob in dev");
      await expectMembers(bob, ["bob"]);
      await expectMembers(ann, ["ann"]);
      await messages(ann).filter({ hasText: "*** bob left lobby (joined dev)" }).waitFor();
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

    await step("screenshot saved", async () => {
      mkdirSync(dirname(screenshotPath), { recursive: true });
      await ann.screenshot({ path: screenshotPath });
    });

    await step("after a server restart both pages reconnect with their nicks", async () => {
      serverDown = true;
      await stopServer(server);
      await ann.waitForSelector('#status[data-state="connecting"]');
      await messages(ann).filter({ hasText: "1001 server shutting down" }).waitFor();
      server = await startServer(server.addr);
      await ann.waitForSelector('#status[data-state="open"]', { timeout: 20000 });
      await bob.waitForSelector('#status[data-state="open"]', { timeout: 20000 });
      serverDown = false;
      await messages(ann).filter({ hasText: "welcome, you are ann in lobby" }).nth(1).waitFor();
      await expectMembers(ann, ["ann", "bob"]);
    });

    await step("/quit returns to the nick form", async () => {
      await say(bob, "/quit gone");
      await bob.locator("#login").waitFor({ state: "visible" });
      if (!(await bob.locator("#chat").isHidden())) throw new Error("the chat is still shown");
      await expectMembers(ann, ["ann"]);
    });

    await step("no page or console errors", async () => {
      if (problems.length) throw new Error(problems.join("\n"));
    });
    console.log(`browser e2e: ${passed} passed, 0 failed; screenshot ${screenshotPath}`);
  } finally {
    await browser.close();
    server.child.kill("SIGKILL");
  }
}

main().catch((error) => {
  console.error(error);
  console.log(`browser e2e: ${passed} passed, 1 failed`);
  process.exit(1);
});
