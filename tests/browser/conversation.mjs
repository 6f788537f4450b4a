// End-to-end test of the chat page's conversation aids in real headless Chromium: who is
// typing, mentions, and scrolling back through a room's earlier messages.
//
// Starts the real server with `--history 5` (and `--data-dir`, so that /history reaches past
// what a join replays), opens the chat page for several people (separate browser contexts)
// and checks what they see: bob typing shows "bob is typing…" on ann's page (the page sends
// /typing at most every 2 s however fast he types), which goes at once when his message
// arrives, or ~3 s after he stops; two typists are named together; a /command typed is not
// typing. Ann's "@bob look" is highlighted on bob's page with @bob in bold (names match
// case-insensitively, an @ inside a word is no mention); bob's "@ann come back" in the lobby
// while ann is in another room shows ann a notice and an "@" on the lobby in her room list
// until she goes back. Twelve messages are said in a room; a newcomer sees the last five,
// scrolls to the top and gets the seven before them above, in order, muted, with the view
// kept in place, then "beginning of history" (and no further request); another newcomer, with
// nothing to scroll, does the same with the keyboard (the "Load earlier messages" button).
// The page's resume point is moved by a live message after that, not by earlier messages.
// Colours meet WCAG AA in light and dark mode. Saves a screenshot of ann's page with the
// mention's notice and badge. Fails on any page error or console error (a
// Content-Security-Policy violation shows up as one).
//
//   node conversation.mjs [--cluster] [SERVER_BINARY] [SCREENSHOT_PATH]
//
// With --cluster the chat is two server processes (`--history 5`, no `--data-dir`: it is not
// for a cluster) joined by a `redis-server` started for the run, ann and the newcomers on the
// first, bob and carol on the second: typing and mentions cross Redis. A process in a cluster
// pages back only through its copy of the room's history (the last five), so there the
// newcomers see "beginning of history" at once, nothing added and no error.

import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  STEP_TIMEOUT_MS, launchChromium, lowContrast, passed, run, scratchDir, startRedis, startServer, step,
} from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const options = new Set();
while (args[0]?.startsWith("--")) options.add(args.shift());
for (const option of options) {
  if (option !== "--cluster") throw new Error(`unknown option ${option}`);
}
const cluster = options.has("--cluster");
const serverBinary = resolve(args[0] ?? `${here}/../../target/debug/wschat-server`);
const screenshotPath = resolve(args[1] ?? `${here}/../../target/browser/conversation${cluster ? "-cluster" : ""}.png`);

async function main() {
  // Alone, one process serves everyone and keeps rooms on disk; with --cluster, ann's process
  // (servers[0]) and bob's (servers[1]) share the chat through Redis.
  const redis = cluster ? await startRedis() : null;
  const flags = ["--history", "5", ...(cluster ? ["--redis", redis.url] : ["--data-dir", scratchDir()])];
  const servers = [];
  for (let i = 0; i < (cluster ? 2 : 1); i += 1) servers.push(await startServer(serverBinary, "127.0.0.1:0", flags));
  const annUrl = `http://${servers[0].addr}/`;
  const bobUrl = `http://${servers[servers.length - 1].addr}/`;

  const browser = await launchChromium();
  const problems = [];
  async function person(nick, url, viewport = { width: 1000, height: 640 }) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (error) => problems.push(`${nick}: page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`${nick}: console error: ${message.text()}`);
    });
    await page.goto(url);
    await page.fill("#nick-input", nick);
    await page.click("#join-button");
    await page.waitForSelector('#status[data-state="open"]');
    await lines(page).filter({ hasText: `welcome, you are ${nick} in lobby` }).waitFor();
    return page;
  }
  const lines = (page) => page.locator("#messages li");
  const say = async (page, text) => {
    await page.fill("#message-input", text);
    await page.press("#message-input", "Enter");
  };
  const typingLine = (page) => page.textContent("#typing");
  const waitTyping = (page, wanted) =>
    page.waitForFunction((wanted) => document.querySelector("#typing").textContent === wanted, wanted);
  // Every line of the conversation: its classes and its text.
  const conversation = (page) => page.evaluate(() => [...document.querySelectorAll("#messages li")]
    .map((li) => ({ classes: [...li.classList], text: (li.querySelector(".text") ?? li).textContent })));
  // Records what the page sends from now on (window.sentLines).
  const recordSent = (page) => page.evaluate(() => {
    const socket = state.socket;
    const send = socket.send.bind(socket);
    window.sentLines = [];
    socket.send = (data) => { window.sentLines.push(data); send(data); };
  });
  const sentTyping = (page) => page.evaluate(() => window.sentLines.filter((line) => line === "/typing").length);
  async function expectContrast(pages) {
    const failures = [];
    for (const [page, view] of pages) {
      for (const colorScheme of ["light", "dark"]) {
        await page.emulateMedia({ colorScheme });
        for (const f of await page.evaluate(lowContrast)) failures.push(`${view}, ${colorScheme}: ${f}`);
      }
      await page.emulateMedia({ colorScheme: "light" });
    }
    if (failures.length) throw new Error(`below 4.5:1:\n${failures.join("\n")}`);
  }

  try {
    let ann, bob, carol;

    await step("ann, bob and carol join the lobby", async () => {
      ann = await person("ann", annUrl);
      bob = await person("bob", bobUrl);
      carol = await person("carol", bobUrl);
      await ann.waitForFunction(() => document.querySelectorAll("#members li").length === 3);
      const live = await ann.getAttribute("#typing", "aria-live");
      if (live !== "polite") throw new Error(`the typing line is aria-live=${live}`);
    });

    await step("bob types: ann sees \"bob is typing…\", sent once however fast he types, gone when his message arrives", async () => {
      await recordSent(bob);
      await bob.click("#message-input");
      await bob.keyboard.type("so here is", { delay: 40 });
      await waitTyping(ann, "bob is typing…");
      if ((await typingLine(bob)) !== "") throw new Error(`bob's own page says "${await typingLine(bob)}"`);
      await bob.keyboard.type(" my news", { delay: 40 });
      const sent = await sentTyping(bob);
      if (sent !== 1) throw new Error(`bob's page sent /typing ${sent} times`);
      await expectContrast([[ann, "typing line"]]);
      // Still shown, well within the 3 s an indicator lasts: only the message can clear it.
      if ((await typingLine(ann)) !== "bob is typing…") throw new Error("the indicator went before the message");
      await bob.press("#message-input", "Enter");
      await lines(ann).filter({ hasText: "bob: so here is my news" }).waitFor();
      if ((await typingLine(ann)) !== "") throw new Error(`after the message, ann's page says "${await typingLine(ann)}"`);
    });

    await step("two typists are named together; an indicator ends ~3 s after the last typing; a /command is not typing", async () => {
      // bob's page sent /typing less than 2 s ago: it (and the server) wait before the next.
      await bob.waitForTimeout(2100);
      await bob.fill("#message-input", "");
      await bob.locator("#message-input").pressSequentially("and");
      await carol.locator("#message-input").pressSequentially("me too");
      await ann.waitForFunction(() => /^(bob and carol|carol and bob) are typing…$/.test(document.querySelector("#typing").textContent));
      const since = Date.now();
      await waitTyping(ann, "");
      const lasted = Date.now() - since;
      if (lasted < 2000 || lasted > 4500) throw new Error(`the indicator went after ${lasted} ms`);
      await bob.fill("#message-input", "");
      await carol.fill("#message-input", "");
      // bob's page last sent /typing over `lasted` ms ago; past its 2 s, not sending one for a
      // command is the page's choice, not its throttle.
      await bob.waitForTimeout(2100 - Math.min(2100, lasted));
      await recordSent(bob);
      await bob.locator("#message-input").pressSequentially("/who");
      await bob.fill("#message-input", "");
      const sent = await sentTyping(bob);
      if (sent !== 0) throw new Error(`typing a command sent /typing ${sent} times`);
    });

    await step("ann's \"@bob look\" is highlighted on bob's page, @bob in bold; an @ inside a word is no mention", async () => {
      await say(ann, "@bob look");
      await say(ann, "hey @BOB, again");
      await say(ann, "mail bob@example.com");
      await lines(bob).filter({ hasText: "ann: mail bob@example.com" }).waitFor();
      const shown = await bob.evaluate(() => [...document.querySelectorAll("#messages li.chat")]
        .filter((li) => li.textContent.includes("ann: "))
        .map((li) => ({
          text: li.querySelector(".text").textContent,
          mentioned: li.classList.contains("mentioned"),
          bold: [...li.querySelectorAll("strong")].map((b) => b.textContent),
          background: getComputedStyle(li).backgroundColor,
        })));
      const expected = [
        { text: "ann: @bob look", mentioned: true, bold: ["@bob"] },
        { text: "ann: hey @BOB, again", mentioned: true, bold: ["@BOB"] },
        { text: "ann: mail bob@example.com", mentioned: false, bold: [] },
      ];
      const got = shown.map(({ text, mentioned, bold }) => ({ text, mentioned, bold }));
      if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`bob's page: ${JSON.stringify(shown)}`);
      if (shown[0].background === shown[2].background) throw new Error(`a mention is not set apart: ${shown[0].background}`);
      const bold = await bob.evaluate(() => getComputedStyle(document.querySelector("#messages strong")).fontWeight);
      if (Number(bold) < 600) throw new Error(`@bob has font-weight ${bold}`);
      // On ann's own page and carol's the names are bold, the lines not highlighted.
      for (const page of [ann, carol]) {
        const line = lines(page).filter({ hasText: "ann: @bob look" });
        await line.waitFor();
        if (await line.evaluate((li) => li.classList.contains("mentioned"))) throw new Error("highlighted for another");
        if ((await line.locator("strong").textContent()) !== "@bob") throw new Error("@bob not bold for another");
      }
    });

    await step("bob's \"@ann come back\" in the lobby while ann is in dev: a notice and an @ on the lobby for ann", async () => {
      await say(ann, "/join dev");
      await ann.waitForFunction(() => document.querySelector("#where").textContent === "ann in dev");
      await ann.waitForSelector('#rooms li[data-room="lobby"]');
      await say(bob, "@ann come back");
      const notice = lines(ann).filter({ hasText: "bob mentioned you in lobby: @ann come back" });
      await notice.waitFor();
      if (!(await notice.evaluate((li) => li.classList.contains("notice")))) throw new Error("the mention is not a notice");
      const badge = ann.locator('#rooms li[data-room="lobby"] .badge');
      await badge.waitFor();
      if ((await badge.textContent()) !== "@") throw new Error(`badge "${await badge.textContent()}"`);
      if ((await ann.locator("#rooms .badge").count()) !== 1) throw new Error("more than one room is marked");
      await expectContrast([[ann, "mention notice and badge"], [bob, "highlighted mentions"]]);
      // The badge stays through a refresh of the room list, and goes when ann goes back.
      await say(ann, "/rooms");
      await lines(ann).filter({ hasText: "rooms: dev (1)" }).waitFor();
      await badge.waitFor();
      mkdirSync(dirname(screenshotPath), { recursive: true });
      await ann.screenshot({ path: screenshotPath });
      await ann.locator('#rooms li[data-room="lobby"]').click();
      await ann.waitForFunction(() => document.querySelector("#where").textContent === "ann in lobby");
      await ann.locator("#rooms .badge").waitFor({ state: "detached" });
    });

    // Twelve long messages (each wraps over several lines, so five fill a small window).
    const story = (i) => `story line ${i}: ${"and then it went on ".repeat(16)}`.trim();
    const storyLines = async (page) => (await conversation(page))
      .filter((line) => line.text.startsWith("bob: story line "))
      .map((line) => Number(line.text.match(/story line (\d+)/)[1]));
    // Where the page resumes from: the newest id it saw in the room.
    const resumePoint = (page) => page.evaluate(() => state.lastIds.get("story"));
    const expectEarlier = async (page) => {
      await page.locator("#history-start").waitFor({ state: "visible" });
      if (!(await page.locator("#earlier-button").isHidden())) throw new Error("the button stays");
      const wanted = cluster ? [8, 9, 10, 11, 12] : [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
      const got = await storyLines(page);
      if (JSON.stringify(got) !== JSON.stringify(wanted)) throw new Error(`story lines shown: ${got}`);
      if ((await page.textContent("#history-start")) !== "beginning of history") throw new Error("no beginning shown");
    };
    // `height`: the window's; a short one makes the replay overflow.
    const newcomer = async (nick, height) => {
      const page = await person(nick, annUrl, { width: 1000, height });
      await say(page, "/join story");
      await lines(page).filter({ hasText: "bob: story line 12:" }).waitFor();
      const got = await storyLines(page);
      if (JSON.stringify(got) !== "[8,9,10,11,12]") throw new Error(`${nick}'s replay: ${got}`);
      await page.locator("#earlier-button").waitFor({ state: "visible" });
      return page;
    };

    let dan, resume;
    await step("twelve messages in a room: a newcomer scrolling to the top gets the earlier ones in order, the view kept", async () => {
      await say(bob, "/join story");
      await bob.waitForFunction(() => document.querySelector("#where").textContent === "bob in story");
      for (let i = 1; i <= 12; i += 1) await say(bob, story(i));
      await lines(bob).filter({ hasText: "bob: story line 12:" }).waitFor();
      dan = await newcomer("dan", 420);
      resume = await resumePoint(dan);
      const scroller = dan.locator("#scroller");
      const overflows = await scroller.evaluate((el) => el.scrollHeight > el.clientHeight + 100);
      if (!overflows) throw new Error("the replay does not fill dan's window; the test needs it to");
      await recordSent(dan);
      // Where line 8 (the oldest replayed) is on screen.
      const topOf8 = () => lines(dan).filter({ hasText: "bob: story line 8:" })
        .evaluate((li) => li.getBoundingClientRect().top);
      // Scrolled to the top, as the user would (the same scroll event), and where line 8 is
      // then, before any answer can have come.
      const before = await scroller.evaluate((el) => {
        el.scrollTop = 0;
        const eight = [...el.querySelectorAll("#messages li")].find((li) => li.textContent.includes("bob: story line 8:"));
        return eight.getBoundingClientRect().top;
      });
      await expectEarlier(dan);
      const sent = await dan.evaluate(() => window.sentLines.filter((line) => line.startsWith("/history")));
      if (sent.length !== 1 || !/^\/history \S+:\d+ 50$/.test(sent[0])) throw new Error(`dan's page sent ${JSON.stringify(sent)}`);
      // Whatever came above, line 8 stayed where it was on screen.
      const after = await topOf8();
      if (Math.abs(after - before) > 2) throw new Error(`line 8 moved from ${before} to ${after}`);
      if (!cluster) {
        const top = await scroller.evaluate((el) => el.scrollTop);
        if (top < 100) throw new Error(`the view is at the top of the earlier lines (scrollTop ${top})`);
        const classes = (await conversation(dan)).find((line) => line.text.startsWith("bob: story line 1:")).classes;
        if (!classes.includes("replayed")) throw new Error(`an earlier line is ${classes}`);
      }
      await scroller.hover();
      if ((await resumePoint(dan)) !== resume) throw new Error(`the resume point moved from ${resume} to ${await resumePoint(dan)}`);
      // Nothing more is asked for once the beginning is shown.
      await dan.mouse.wheel(0, 200);
      await dan.mouse.wheel(0, -10000);
      await dan.waitForTimeout(300);
      const again = await dan.evaluate(() => window.sentLines.filter((line) => line.startsWith("/history")));
      if (again.length !== 1) throw new Error(`asked again: ${JSON.stringify(again)}`);
      await expectContrast([[dan, "earlier messages"]]);
    });

    await step("another newcomer, with nothing to scroll, loads the earlier messages with the keyboard", async () => {
      const eve = await newcomer("eve", 900);
      const scrolls = await eve.locator("#scroller").evaluate((el) => el.scrollHeight > el.clientHeight);
      if (scrolls) throw new Error("eve's window is too short for the test: focusing the button would scroll");
      await recordSent(eve);
      await eve.focus("#earlier-button");
      const label = await eve.textContent("#earlier-button");
      if (label !== "Load earlier messages") throw new Error(`the button reads "${label}"`);
      await eve.keyboard.press("Enter");
      await expectEarlier(eve);
      const sent = await eve.evaluate(() => window.sentLines.filter((line) => line.startsWith("/history")));
      if (sent.length !== 1) throw new Error(`eve's page sent ${JSON.stringify(sent)}`);
      await eve.context().close();
    });

    await step("a live message after scrolling back comes at the end and is where a reconnect resumes from", async () => {
      await say(bob, "story line 13: live again");
      const line = lines(dan).filter({ hasText: "bob: story line 13: live again" });
      await line.waitFor();
      if (!(await line.evaluate((li) => li === li.parentElement.lastElementChild))) throw new Error("not at the end");
      const live = await resumePoint(dan);
      if (!live || live === resume) throw new Error(`the live message did not move the resume point (${live})`);
      await dan.context().close();
    });

    await step("no page or console errors", async () => {
      if (problems.length) throw new Error(problems.join("\n"));
    });
    const how = cluster ? " on two processes and Redis" : "";
    console.log(`browser conversation${how}: ${passed} passed, 0 failed; screenshot ${screenshotPath}`);
  } finally {
    await browser.close();
  }
}

run("browser conversation", main);
