// End-to-end test of the chat page's conversation aids in real headless Chromium: who is
// typing, mentions, scrolling back through a room's earlier messages, edits and deletes, and
// read markers.
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
// Edits and deletes: ann edits her message with the Edit beside it (shown on hovering the line
// or focusing it; Escape cancels, Enter sends /edit) and bob's page shows the new text marked
// "(edited)"; Delete asks "Delete?" (No is focused, and keeps it; Yes sends /delete) and the
// line goes from bob's page; neither has Edit or Delete on the other's messages, and deleting
// bob's by typing /delete shows the server's refusal; a newcomer's replay has the edited text,
// "(edited)", and not the deleted message. Read markers: a guest's page sends /read for the
// newest message once it is seen (never two within a second, never backwards, not again
// without news); away in another room and back, the replay's `read` is where it read up to
// and a "new messages" divider comes before what was said meanwhile. On servers of their own
// with --jwt-secret, zoe signs in on two tabs: the one in the background (unfocused) counts
// what comes in its title ("(2) wschat") and sends no /read, and the other's /read reaches it
// (`read`) and clears the count; a third tab opened later finds her marker (its divider before
// the first message after it) and reading there clears the background tab's count; the
// background tab, back from another room where it was not told of a delete and an edit, shows
// the room as it stands. Colours meet WCAG AA in light and dark mode. Saves a screenshot of
// ann's page with the mention's notice and badge. Fails on any page error or console error (a
// Content-Security-Policy violation shows up as one).
//
//   node conversation.mjs [--cluster] [SERVER_BINARY] [SCREENSHOT_PATH]
//
// With --cluster the chat is two server processes (`--history 5`, no `--data-dir`: it is not
// for a cluster) joined by a `redis-server` started for the run, ann and the newcomers on the
// first, bob and carol on the second: typing, mentions, edits and deletes cross Redis, and so
// do a signed-in user's read markers (two more processes, zoe's tabs on both). A process in a
// cluster pages back only through its copy of the room's history (the last five), so there the
// newcomers see "beginning of history" at once, nothing added and no error.

import { createHmac } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  STEP_TIMEOUT_MS, commandLine, launchChromium, lowContrast, passed, run, scratchDir, startRedis, startServer, step,
} from "./harness.mjs";

const { options, serverBinary, screenshotPath } = commandLine("conversation", ["--cluster"]);
const cluster = options.has("--cluster");

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
  // What each page's sockets sent (text, and when) and received (JSON events), from the start.
  const frames = new WeakMap();
  async function open(who, viewport) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (error) => problems.push(`${who}: page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`${who}: console error: ${message.text()}`);
    });
    const seen = { sent: [], received: [] };
    frames.set(page, seen);
    page.on("websocket", (socket) => {
      socket.on("framesent", ({ payload }) => seen.sent.push({ text: String(payload), at: Date.now() }));
      socket.on("framereceived", ({ payload }) => {
        try { seen.received.push(JSON.parse(payload)); } catch (_) { /* binary */ }
      });
    });
    return page;
  }
  async function person(nick, url, viewport = { width: 1000, height: 640 }) {
    const page = await open(nick, viewport);
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

    // The lines /read a page sent since `from` (an index into what it sent), as ids.
    const readsSent = (page) => frames.get(page).sent
      .filter((frame) => frame.text.startsWith("/read ")).map((frame) => ({ id: frame.text.slice(6), at: frame.at }));
    const received = (page, type) => frames.get(page).received.filter((event) => event.type === type);
    const seqOf = (id) => Number(id.slice(id.lastIndexOf(":") + 1));
    const lineText = (line) => line.evaluate((li) => li.querySelector(".text").textContent);
    const waitFor = async (what, check) => {
      const until = Date.now() + STEP_TIMEOUT_MS;
      for (;;) {
        if (await check()) return;
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
        await new Promise((done) => setTimeout(done, 50));
      }
    };
    const actionsShown = (line) => line.locator(".actions").evaluate((box) => getComputedStyle(box).opacity);

    let meeting;
    await step("ann edits her message with the Edit beside it (Escape cancels): bob sees the new text, marked (edited)", async () => {
      await say(ann, "/join plans");
      await say(bob, "/join plans");
      await bob.waitForFunction(() => document.querySelector("#where").textContent === "bob in plans");
      await say(ann, "the meeting is at 3");
      await say(bob, "bring snacks");
      await lines(ann).filter({ hasText: "bob: bring snacks" }).waitFor();
      await lines(bob).filter({ hasText: "ann: the meeting is at 3" }).waitFor();
      meeting = lines(ann).filter({ hasText: "ann: the meeting is at 3" });
      const id = await meeting.getAttribute("data-id");
      if (!/^[a-z0-9]+:\d+$/.test(id ?? "")) throw new Error(`the line's id is ${id}`);
      // Out of sight until the line is hovered or the keyboard reaches it.
      await ann.mouse.move(0, 0);
      if ((await actionsShown(meeting)) !== "0") throw new Error(`Edit and Delete shown on a line not hovered: ${await meeting.evaluate((li) => [li.matches(":hover"), li.matches(":focus-within"), document.activeElement.outerHTML.slice(0, 80)])}`);
      await meeting.locator("button", { hasText: "Edit" }).focus();
      if ((await actionsShown(meeting)) !== "1") throw new Error("Edit and Delete hidden from the keyboard");
      await ann.keyboard.press("Enter");
      const field = meeting.locator(".edit-form input");
      await field.waitFor();
      if (!(await field.evaluate((input) => input === document.activeElement))) throw new Error("the field is not focused");
      if ((await field.inputValue()) !== "the meeting is at 3") throw new Error(`the field holds "${await field.inputValue()}"`);
      await field.fill("never mind");
      await ann.keyboard.press("Escape");
      await field.waitFor({ state: "detached" });
      if ((await lineText(meeting)) !== "ann: the meeting is at 3") throw new Error(`after Escape: ${await lineText(meeting)}`);
      const sentBefore = frames.get(ann).sent.length;
      await meeting.hover();
      await meeting.locator("button", { hasText: "Edit" }).click();
      await field.fill("the meeting is at 4");
      await field.press("Enter");
      const edited = `ann: the meeting is at 4 (edited)`;
      for (const page of [bob, ann]) {
        const line = page.locator(`#messages li[data-id="${id}"]`);
        await page.waitForFunction((id) => document.querySelector(`#messages li[data-id="${id}"] .edited`), id);
        if ((await lineText(line)) !== edited) throw new Error(`shown as "${await lineText(line)}"`);
      }
      const sent = frames.get(ann).sent.slice(sentBefore).map((frame) => frame.text).filter((text) => /^\/(edit|delete) /.test(text));
      if (JSON.stringify(sent) !== JSON.stringify([`/edit ${id} the meeting is at 4`])) throw new Error(`ann's page sent ${JSON.stringify(sent)}`);
      await expectContrast([[ann, "an edited line, Edit and Delete"]]);
    });

    await step("ann has no Edit or Delete on bob's messages, nor bob on hers", async () => {
      const others = [
        [ann, lines(ann).filter({ hasText: "bob: bring snacks" })],
        [bob, lines(bob).filter({ hasText: "ann: the meeting is at 4" })],
      ];
      for (const [page, line] of others) {
        await line.hover();
        if ((await line.locator(".actions, button").count()) !== 0) throw new Error("actions on another's message");
      }
      if ((await lines(bob).filter({ hasText: "bob: bring snacks" }).locator("button").count()) !== 2) throw new Error("bob has none on his own");
    });

    await step("ann deletes a message (Delete, then No, then Delete, Yes): it goes from bob's page", async () => {
      await say(ann, "oops, wrong room");
      const oops = lines(ann).filter({ hasText: "ann: oops, wrong room" });
      await lines(bob).filter({ hasText: "ann: oops, wrong room" }).waitFor();
      const id = await oops.getAttribute("data-id");
      await oops.hover();
      await oops.locator("button", { hasText: "Delete" }).click();
      await oops.locator(".question", { hasText: "Delete?" }).waitFor();
      const focused = await ann.evaluate(() => document.activeElement.textContent);
      if (focused !== "No") throw new Error(`"${focused}" is focused after Delete`);
      await ann.keyboard.press("Enter");
      await oops.locator(".question").waitFor({ state: "detached" });
      await ann.waitForTimeout(300);
      if ((await lines(bob).filter({ hasText: "ann: oops, wrong room" }).count()) !== 1) throw new Error("No deleted it");
      const sentBefore = frames.get(ann).sent.length;
      await oops.hover();
      await oops.locator("button", { hasText: "Delete" }).click();
      await oops.locator("button", { hasText: "Yes" }).click();
      await lines(bob).filter({ hasText: "ann: oops, wrong room" }).waitFor({ state: "detached" });
      await oops.waitFor({ state: "detached" });
      const sent = frames.get(ann).sent.slice(sentBefore).map((frame) => frame.text).filter((text) => /^\/(edit|delete) /.test(text));
      if (JSON.stringify(sent) !== JSON.stringify([`/delete ${id}`])) throw new Error(`ann's page sent ${JSON.stringify(sent)}`);
      // Someone else's: the server's refusal is shown as its errors are.
      const snacks = await lines(ann).filter({ hasText: "bob: bring snacks" }).getAttribute("data-id");
      await say(ann, `/delete ${snacks}`);
      await lines(ann).filter({ hasText: "error: that message is not yours" }).waitFor();
      if ((await lines(bob).filter({ hasText: "bob: bring snacks" }).count()) !== 1) throw new Error("bob's message went");
    });

    await step("a newcomer's replay shows the edited text with (edited), not the deleted message", async () => {
      const gil = await person("gil", annUrl);
      await say(gil, "/join plans");
      await lines(gil).filter({ hasText: "bob: bring snacks" }).waitFor();
      const got = await gil.evaluate(() => [...document.querySelectorAll('#messages li.replayed[data-room="plans"] .text')]
        .map((text) => text.textContent));
      const wanted = ["ann: the meeting is at 4 (edited)", "bob: bring snacks"];
      if (JSON.stringify(got) !== JSON.stringify(wanted)) throw new Error(`gil's replay: ${JSON.stringify(got)}`);
      await gil.context().close();
    });

    await step("guest read markers: ann's page sends /read at the end of the room; away and back, \"new messages\" marks what came meanwhile", async () => {
      // Everything in plans is on ann's screen, at its end, the window focused: read.
      const last = await ann.evaluate(() => state.lastIds.get("plans"));
      await waitFor(`ann's /read ${last}`, async () => readsSent(ann).some((read) => read.id === last));
      const reads = readsSent(ann);
      for (let i = 1; i < reads.length; i += 1) {
        if (reads[i].at - reads[i - 1].at < 900) throw new Error(`two /read within ${reads[i].at - reads[i - 1].at} ms`);
        if (seqOf(reads[i].id) <= seqOf(reads[i - 1].id)) throw new Error(`/read went back: ${JSON.stringify(reads)}`);
      }
      // Nothing new, nothing sent.
      const count = reads.length;
      await ann.waitForTimeout(1200);
      if (readsSent(ann).length !== count) throw new Error("/read sent again without anything new");
      await say(ann, "/join dev");
      await ann.waitForFunction(() => document.querySelector("#where").textContent === "ann in dev");
      await say(bob, "while you were away");
      await say(bob, "and more");
      await lines(bob).filter({ hasText: "bob: and more" }).waitFor();
      const replays = received(ann, "replayed").length;
      await say(ann, "/join plans");
      await lines(ann).filter({ hasText: "bob: and more" }).waitFor();
      await waitFor("ann's replay of plans", async () => received(ann, "replayed").length > replays);
      const replayed = received(ann, "replayed").at(-1);
      if (replayed.room !== "plans" || replayed.read !== last) throw new Error(`replayed: ${JSON.stringify(replayed)}, last read ${last}`);
      // The divider comes right before bob's first message since, and there is one.
      const after = await ann.evaluate(() => {
        const divider = document.querySelectorAll("#messages li.unread");
        return [divider.length, divider[0]?.textContent, divider[0]?.nextElementSibling.querySelector(".text")?.textContent];
      });
      if (JSON.stringify(after) !== JSON.stringify([1, "new messages", "bob: while you were away"])) throw new Error(`divider: ${JSON.stringify(after)}`);
      // Seen now: marked read up to the newest.
      const newest = await ann.evaluate(() => state.lastIds.get("plans"));
      await waitFor(`ann's /read ${newest}`, async () => readsSent(ann).some((read) => read.id === newest));
      await expectContrast([[ann, "new messages divider"]]);
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

    await step("signed-in read markers: another tab's read clears the title's count; a new connection finds the marker; a tab away comes back to the room as it stands", async () => {
      // Servers of their own that take tokens (a token's `sub` is the nick; without one, a
      // guest): alone, one; with --cluster, two more on the same Redis.
      const secret = "a secret the embedding site shares, 32+ bytes";
      const dir = scratchDir();
      writeFileSync(join(dir, "secret"), secret);
      const signedFlags = ["--history", "20", ...(cluster ? ["--redis", redis.url] : ["--data-dir", scratchDir()]),
        "--jwt-secret", join(dir, "secret")];
      const signed = [];
      for (let i = 0; i < (cluster ? 2 : 1); i += 1) signed.push(await startServer(serverBinary, "127.0.0.1:0", signedFlags));
      const [urlA, urlB] = [signed[0], signed.at(-1)].map((server) => `http://${server.addr}/`);
      const now = Math.floor(Date.now() / 1000);
      const token = (sub) => {
        const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
        const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ sub, exp: now + 600 })}`;
        return `${unsigned}.${createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
      };
      const signIn = async (sub, url, who) => {
        const page = await open(who, { width: 1000, height: 640 });
        await page.goto(`${url}?token=${token(sub)}`);
        await lines(page).filter({ hasText: `welcome, you are ${sub} in lobby` }).waitFor();
        await say(page, "/join news");
        await page.waitForFunction((sub) => document.querySelector("#where").textContent === `${sub} in news`, sub);
        return page;
      };
      try {
        const zoeA = await signIn("zoe", urlA, "zoe (first tab)");
        const zoeB = await signIn("zoe", urlB, "zoe (second tab)");
        const yan = await signIn("yan", urlB, "yan");
        // zoe's second tab is in the background: nothing it shows is read there.
        await zoeB.evaluate(() => { document.hasFocus = () => false; window.dispatchEvent(new Event("blur")); });
        const readsB = readsSent(zoeB).length;
        await say(yan, "news 1");
        await say(yan, "news 2");
        await lines(zoeB).filter({ hasText: "yan: news 2" }).waitFor();
        const news2 = await lines(zoeA).filter({ hasText: "yan: news 2" }).getAttribute("data-id");
        // Her first tab reads them; until its /read is told, the second may say "(2) wschat".
        await waitFor("zoe's first tab's /read", async () => readsSent(zoeA).some((read) => read.id === news2));
        await waitFor("the read event on zoe's second tab", async () => received(zoeB, "read").some((read) => read.id === news2));
        await zoeB.waitForFunction(() => document.title === "wschat");
        if (readsSent(zoeB).length !== readsB) throw new Error("a tab in the background sent /read");
        // The first tab closes; two more come, which the background tab counts.
        await zoeA.context().close();
        await say(yan, "news 3");
        await say(yan, "news 4");
        await zoeB.waitForFunction(() => document.title === "(2) wschat");
        // zoe opens the chat again: the marker she left is where "new messages" starts.
        const zoeC = await signIn("zoe", urlA, "zoe (third tab)");
        await lines(zoeC).filter({ hasText: "yan: news 4" }).waitFor();
        const replayed = received(zoeC, "replayed").find((event) => event.room === "news");
        if (replayed?.read !== news2) throw new Error(`replayed: ${JSON.stringify(replayed)}, read up to ${news2}`);
        const next = await zoeC.evaluate(() => {
          const divider = document.querySelectorAll("#messages li.unread");
          return [divider.length, divider[0]?.nextElementSibling.querySelector(".text")?.textContent];
        });
        if (JSON.stringify(next) !== JSON.stringify([1, "yan: news 3"])) throw new Error(`divider: ${JSON.stringify(next)}`);
        // Read there: the background tab's count goes.
        await zoeB.waitForFunction(() => document.title === "wschat");
        // The background tab goes to the lobby; meanwhile yan deletes news 2 and edits news 3.
        // Back in news, its replay has the room as it stands, and so has the tab.
        await say(zoeB, "/join lobby");
        await zoeB.waitForFunction(() => document.querySelector("#where").textContent === "zoe in lobby");
        const id2 = await lines(yan).filter({ hasText: "yan: news 2" }).getAttribute("data-id");
        const id3 = await lines(yan).filter({ hasText: "yan: news 3" }).getAttribute("data-id");
        await say(yan, `/delete ${id2}`);
        await say(yan, `/edit ${id3} news 3, corrected`);
        await lines(zoeC).filter({ hasText: "yan: news 3, corrected (edited)" }).waitFor();
        if ((await lines(zoeC).filter({ hasText: "yan: news 2" }).count()) !== 0) throw new Error("news 2 stays on the third tab");
        if ((await lines(zoeB).filter({ hasText: "yan: news 2" }).count()) !== 1) throw new Error("the tab away was told");
        const replays = received(zoeB, "replayed").length;
        await say(zoeB, "/join news");
        await waitFor("the background tab's replay", async () => received(zoeB, "replayed").length > replays);
        await lines(zoeB).filter({ hasText: "yan: news 3, corrected (edited)" }).waitFor();
        const shown = await zoeB.evaluate(() => [...document.querySelectorAll('#messages li[data-room="news"] .text')]
          .map((text) => text.textContent));
        const wanted = ["yan: news 1", "yan: news 3, corrected (edited)", "yan: news 4"];
        if (JSON.stringify(shown) !== JSON.stringify(wanted)) throw new Error(`the tab back in news shows ${JSON.stringify(shown)}`);
        for (const page of [zoeB, zoeC, yan]) await page.context().close();
      } finally {
        for (const server of signed) server.child.kill("SIGKILL");
      }
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
