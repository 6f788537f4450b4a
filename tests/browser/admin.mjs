// End-to-end test of the admin page (`GET /admin` on the API's listener) in real headless
// Chromium, against chat pages open at the same time.
//
// Starts the real server with `--api 127.0.0.1:0 --api-key-file FILE`, opens the chat page as
// ann and bob and the admin page in a context of its own, and checks what the operator does
// and what the chat pages see: a wrong key is refused and the form stays; the right key signs
// in (kept for the tab); rooms, members, connections and message rate show; publishing into
// the lobby reaches bob's page and the room's recent messages (marked as the API's); kicking
// bob closes his page with the reason; banning carol for 10m closes hers and lists the ban,
// unbanning removes it; an API error is shown as text; new keys (SIGHUP) send the page back
// to the key form; a server down and back is waited out, the key kept. Fails on any page error
// or console error (a Content-Security-Policy violation shows up as one), except the failed
// requests a step expects (a refused key, a nick that is not there, a server that is down).
//
//   node admin.mjs [--cluster] [SERVER_BINARY] [SCREENSHOT_PATH]
//
// With --cluster the chat is two server processes joined by a `redis-server` started for the
// run: the admin page is on the first process's API, ann and bob on the second, so everything
// the operator sees and does crosses Redis.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  STEP_TIMEOUT_MS, commandLine, launchChromium, lowContrast, passed, run, scratchDir, startRedis, startServer, step, stopServer,
} from "./harness.mjs";

const { options, serverBinary, screenshotPath } = commandLine("admin", ["--cluster"]);
const cluster = options.has("--cluster");

const KEY = "admin-test-key-0123456789abcdef";
const NEW_KEY = "admin-test-key-after-sighup-0123";

async function main() {
  const dir = scratchDir();
  const keyFile = join(dir, "keys");
  writeFileSync(keyFile, `${KEY}\n`);
  const redis = cluster ? await startRedis() : null;
  const chatFlags = cluster ? ["--redis", redis.url] : [];
  const adminFlags = (api) => [...chatFlags, "--api", api, "--api-key-file", keyFile];
  let admin = await startServer(serverBinary, "127.0.0.1:0", adminFlags("127.0.0.1:0"));
  const chat = cluster ? await startServer(serverBinary, "127.0.0.1:0", chatFlags) : admin;
  const adminUrl = `http://${admin.api}/admin`;
  const chatUrl = `http://${chat.addr}/`;

  const browser = await launchChromium();
  const problems = [];
  // What a step expects Chromium to report as a failed request (it logs every 4xx answer to a
  // fetch as a console error): a pattern, or null.
  let expectedFailure = null;
  async function open(who) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (error) => problems.push(`${who}: page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      if (expectedFailure?.test(message.text())) return;
      problems.push(`${who}: console error: ${message.text()}`);
    });
    return page;
  }
  const joinChat = async (page, nick) => {
    await page.goto(chatUrl);
    await page.fill("#nick-input", nick);
    await page.click("#join-button");
    await page.waitForSelector('#status[data-state="open"]');
  };
  const chatLines = (page) => page.locator("#messages li");
  const waitText = (page, selector, pattern) =>
    page.waitForFunction(
      ([selector, source]) => new RegExp(source).test(document.querySelector(selector)?.textContent ?? ""),
      [selector, pattern.source],
    );
  const expectListed = (page, selector, wanted) =>
    page.waitForFunction(
      ([selector, wanted]) => [...document.querySelectorAll(selector)].map((e) => e.textContent).join(",") === wanted,
      [selector, wanted.join(",")],
    );

  try {
    const operator = await open("admin");
    const ann = await open("ann");
    const bob = await open("bob");

    await step("the admin page loads from the API's listener under the chat page's CSP, asking for a key", async () => {
      const response = await operator.goto(adminUrl);
      if (response.status() !== 200) throw new Error(`status ${response.status()}`);
      const csp = response.headers()["content-security-policy"] ?? "";
      if (!csp.includes("script-src 'self'") || !csp.includes("connect-src 'self'")) throw new Error(`CSP: ${csp}`);
      await operator.locator("#key-form").waitFor({ state: "visible" });
      if (!(await operator.locator("#dashboard").isHidden())) throw new Error("the dashboard shows before a key");
      const background = await operator.evaluate(() => getComputedStyle(document.body).backgroundColor);
      if (!background || background === "rgba(0, 0, 0, 0)") throw new Error("style.css not applied");
    });

    await step("a wrong key is refused with the API's error, and the key form stays", async () => {
      expectedFailure = /status of 401/;
      await operator.fill("#key-input", "not-the-key-but-long-enough");
      await operator.click("#sign-in");
      await waitText(operator, "#key-error", /key was refused: missing or wrong API key/);
      if (!(await operator.locator("#key-form").isVisible())) throw new Error("the key form is gone");
      if (!(await operator.locator("#dashboard").isHidden())) throw new Error("the dashboard shows");
      const stored = await operator.evaluate(() => sessionStorage.length);
      if (stored !== 0) throw new Error("a refused key was stored");
      expectedFailure = null;
    });

    await step("ann and bob join the lobby on the chat page", async () => {
      await joinChat(ann, "ann");
      await joinChat(bob, "bob");
      await chatLines(ann).filter({ hasText: "bob joined lobby" }).waitFor();
    });

    await step("the right key signs in, is kept for the tab, and the dashboard shows the chat", async () => {
      await operator.fill("#key-input", KEY);
      await operator.press("#key-input", "Enter");
      await operator.locator("#dashboard").waitFor({ state: "visible" });
      if (!(await operator.locator("#key-form").isHidden())) throw new Error("the key form is still shown");
      await waitText(operator, "#stat-connections", /^2$/);
      await waitText(operator, "#rooms tr[data-room='lobby'] td.number", /^2$/);
      await waitText(operator, "#status-text", /^updated \d\d:\d\d:\d\d$/);
      if (cluster) await waitText(operator, "#stat-cluster", /^linked$/);
      else if (!(await operator.locator("#stat-cluster-item").isHidden())) throw new Error("a cluster link shown without one");
      // A reload keeps the key (sessionStorage): no form.
      await operator.reload();
      await operator.locator("#dashboard").waitFor({ state: "visible" });
      if (!(await operator.locator("#key-form").isHidden())) throw new Error("the key was not kept");
    });

    await step("selecting the lobby shows its members and recent messages; the message count and rate show", async () => {
      await operator.locator("#rooms button.room", { hasText: "lobby" }).click();
      await expectListed(operator, "#members li", ["ann", "bob"]);
      if ((await operator.inputValue("#publish-room")) !== "lobby") throw new Error("publish is not to the selected room");
      await bob.fill("#message-input", "hi from bob <b>not bold</b>");
      await bob.press("#message-input", "Enter");
      const said = operator.locator("#history li", { hasText: "bob: hi from bob <b>not bold</b>" });
      await said.waitFor();
      if ((await said.locator("b").count()) !== 0) throw new Error("a message was inserted as HTML");
      if (!/^\d\d:\d\d:\d\d$/.test(await said.locator("time").textContent())) throw new Error("no time");
      // `messages` counts what this process's clients sent: with --cluster, none (bob is on
      // the other process), and the page says the count is this process's.
      await waitText(operator, "#stat-messages", cluster ? /^0$/ : /^[1-9]\d*$/);
      await waitText(operator, "#stat-rate", /^\d+\.\d$/);
      const here = await operator.locator("#stats .here").first().isVisible();
      if (here !== cluster) throw new Error(`the messages are ${here ? "" : "not "}marked as this process's`);
    });

    await step("publishing into the lobby reaches bob's page and shows in the room as the API's", async () => {
      await operator.fill("#publish-text", "hello from the admin page");
      await operator.fill("#publish-from", "ops");
      await operator.click("#publish-form button");
      await waitText(operator, "#publish-result", /^published in lobby: [a-z0-9]+:\d+$/);
      await chatLines(bob).filter({ hasText: "hello from the admin page" }).waitFor();
      await operator.locator("#history li.api", { hasText: "hello from the admin page" }).waitFor();
      if ((await operator.inputValue("#publish-text")) !== "") throw new Error("the text was not cleared");
    });

    await step("kicking bob closes his page with the reason; the members follow", async () => {
      await operator.fill("#kick-nick", "bob");
      await operator.fill("#kick-reason", "cool down");
      await operator.click("#kick-form button");
      await waitText(operator, "#kick-result", /^kicked bob \(1 connection\)$/);
      await chatLines(bob).filter({ hasText: "disconnected: 4000 kicked by server: cool down" }).waitFor();
      await bob.waitForSelector('#status[data-state="offline"]');
      await expectListed(operator, "#members li", ["ann"]);
    });

    await step("banning carol for 10m closes her page and lists the ban; its Unban button lifts it", async () => {
      // A guest is banned while connected (by the address she connects from): carol is.
      const carol = await open("carol");
      await joinChat(carol, "carol");
      await operator.fill("#ban-nick", "carol");
      await operator.fill("#ban-duration", "10m");
      await operator.fill("#ban-reason", "spam");
      await operator.click("#ban-form button");
      await waitText(operator, "#ban-result", /^banned carol until \d\d:\d\d:\d\d; 1 connection\(s\) closed$/);
      await chatLines(carol).filter({ hasText: "disconnected: 4000 banned by server: spam" }).waitFor();
      const row = operator.locator("#bans tr[data-nick='carol']");
      await row.waitFor();
      const shown = await row.textContent();
      if (!/spam/.test(shown) || !/(9m \d+s|10m 0s) left/.test(shown)) throw new Error(`the ban reads "${shown}"`);
      // The time left counts down with the polls.
      await waitText(operator, "#bans tr[data-nick='carol'] .left", /^\(9m [0-5]\ds left\)$/);
      await row.getByRole("button", { name: "Unban carol" }).click();
      await waitText(operator, "#bans-result", /^unbanned carol$/);
      await row.waitFor({ state: "detached" });
      await operator.locator("#bans-empty").waitFor({ state: "visible" });
      await carol.context().close();
    });

    await step("an API error is shown as text beside its form", async () => {
      expectedFailure = /status of 404/;
      await operator.fill("#kick-nick", "nobody-here");
      await operator.fill("#kick-reason", "");
      await operator.click("#kick-form button");
      await waitText(operator, "#kick-result", /^error: \S/);
      if (!(await operator.locator("#kick-result").evaluate((e) => e.classList.contains("failed")))) {
        throw new Error("the error is not marked as one");
      }
      expectedFailure = null;
    });

    await step("the dashboard meets WCAG AA contrast (4.5:1) in light and dark mode", async () => {
      const failures = [];
      for (const colorScheme of ["light", "dark"]) {
        await operator.emulateMedia({ colorScheme });
        for (const f of await operator.evaluate(lowContrast)) failures.push(`${colorScheme}: ${f}`);
      }
      await operator.emulateMedia({ colorScheme: "light" });
      if (failures.length) throw new Error(`below 4.5:1:\n${failures.join("\n")}`);
    });

    await step("screenshot saved", async () => {
      mkdirSync(dirname(screenshotPath), { recursive: true });
      await operator.screenshot({ path: screenshotPath, fullPage: true });
    });

    await step("new keys (SIGHUP) send the page back to the key form, the old key dropped", async () => {
      expectedFailure = /status of 401/;
      writeFileSync(keyFile, `${NEW_KEY}\n`);
      admin.child.kill("SIGHUP");
      await operator.locator("#key-form").waitFor({ state: "visible" });
      await waitText(operator, "#key-error", /key was refused/);
      if ((await operator.evaluate(() => sessionStorage.length)) !== 0) throw new Error("the old key is still stored");
      expectedFailure = null;
      await operator.fill("#key-input", NEW_KEY);
      await operator.click("#sign-in");
      await operator.locator("#dashboard").waitFor({ state: "visible" });
      await waitText(operator, "#stat-connections", /^1$/);
    });

    await step("while the server is down the page says so and keeps the key; it comes back by itself", async () => {
      // Chromium reports every refused request, the chat pages' reconnections too.
      expectedFailure = /ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/;
      await stopServer(admin);
      await waitText(operator, "#status-text", /^no answer \d\d:\d\d:\d\d$/);
      await waitText(operator, "#stats-error", /^stats: cannot reach the server/);
      if (!(await operator.locator("#key-form").isHidden())) throw new Error("signed out by a server that is down");
      if ((await operator.evaluate(() => sessionStorage.length)) !== 1) throw new Error("the key was dropped");
      admin = await startServer(serverBinary, admin.addr, adminFlags(admin.api));
      await waitText(operator, "#status-text", /^updated /);
      if (!(await operator.locator("#stats-error").isHidden())) throw new Error("the error stays");
      await ann.waitForSelector('#status[data-state="open"]', { timeout: 20000 });
      expectedFailure = null;
    });

    await step("no page or console errors", async () => {
      if (problems.length) throw new Error(problems.join("\n"));
    });
    const how = cluster ? " on two processes and Redis" : "";
    console.log(`browser admin${how}: ${passed} passed, 0 failed; screenshot ${screenshotPath}`);
  } finally {
    await browser.close();
  }
}

run("browser admin", main);
