// wschat admin page. Served by the API's listener (`GET /admin`), it uses only the HTTP API
// of docs/API.md on its own origin: it asks for an API key once (kept in this tab's
// sessionStorage), sends it as `Authorization: Bearer KEY` with every request, and goes back to
// the key form (dropping the key) on any 401. It polls the server every POLL_MS, one poll at a
// time, and redraws a list only when what the server said of it changed (so a keyboard user's
// focus stays put). Every string from the API is untrusted: it is shown with textContent and
// createElement, never as HTML.
"use strict";

const POLL_MS = 1500;                 // the issue asks for two seconds at most
const HISTORY_LIMIT = 50;
const KEY_STORE = "wschat-admin-key";

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem(KEY_STORE),
  timer: null,
  polling: false,
  selected: null,                     // the room whose members and messages are shown
  sample: null,                       // the last {messages, at} from /api/stats, for the rate
  drawn: new Map(),                   // list id -> the JSON it was last drawn from
};

// An answer other than 2xx: its status and the API's one-line error.
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// One request to the API with the key; resolves to the JSON answer. A 401 signs out.
async function api(method, path, body) {
  const init = { method, cache: "no-store", headers: { Authorization: `Bearer ${state.key}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `cannot reach the server (${error.message})`);
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (_) {
    answer = null;
  }
  if (response.ok) return answer;
  const said = answer && typeof answer.error === "string" ? answer.error : `HTTP ${response.status}`;
  if (response.status === 401) signOut(`the key was refused: ${said}`);
  throw new ApiError(response.status, said);
}

// ----- signing in and out -----

function showKeyForm(error) {
  $("dashboard").hidden = true;
  $("sign-out").hidden = true;
  $("key-form").hidden = false;
  $("key-error").textContent = error ?? "";
  $("key-error").hidden = !error;
  setStatus("offline", "signed out");
  $("key-input").focus();
}

function signOut(error) {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  clearInterval(state.timer);
  state.timer = null;
  state.sample = null;
  state.drawn.clear();
  showKeyForm(error);
}

async function signIn(key) {
  state.key = key;
  setStatus("connecting", "checking the key");
  try {
    await api("GET", "/api/stats");
  } catch (error) {
    // A 401 has shown the key form with the reason already. Any other failure says nothing
    // of the key (the server may be restarting): the dashboard shows what fails until it
    // answers.
    if (error.status === 401) return;
  }
  sessionStorage.setItem(KEY_STORE, key);
  $("key-input").value = "";
  $("key-form").hidden = true;
  $("key-error").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  poll();
  clearInterval(state.timer);
  state.timer = setInterval(poll, POLL_MS);
}

function setStatus(kind, text) {
  $("status").dataset.state = kind;
  $("status-text").textContent = text;
}

// ----- polling -----

// Asks for everything shown, and draws it. A poll still waiting when the next is due is not
// doubled: the next simply does not start.
async function poll() {
  if (state.polling || !state.key) return;
  state.polling = true;
  try {
    const [stats, rooms, bans] = await Promise.allSettled([
      api("GET", "/api/stats"),
      api("GET", "/api/rooms"),
      api("GET", "/api/bans"),
    ]);
    if (!state.key) return;
    section("stats", stats, drawStats);
    section("rooms", rooms, drawRooms);
    section("bans", bans, drawBans);
    await pollRoom(rooms.status === "fulfilled" ? rooms.value : null);
    const failed = [stats, rooms, bans].filter((outcome) => outcome.status === "rejected").length;
    const [kind, what] = [["open", "updated"], ["connecting", "partly updated"], ["offline", "no answer"]][
      failed === 0 ? 0 : failed < 3 ? 1 : 2
    ];
    setStatus(kind, `${what} ${clock(Date.now())}`);
  } finally {
    state.polling = false;
  }
}

// Draws one part of the dashboard from its answer, or shows why there is none.
function section(name, outcome, draw) {
  const problem = $(`${name}-error`);
  if (outcome.status === "fulfilled") draw(outcome.value);
  if (!problem) return;
  problem.hidden = outcome.status === "fulfilled";
  problem.textContent = outcome.status === "rejected" ? `${name}: ${outcome.reason.message}` : "";
}

// The selected room's members and recent messages, while it has members. A room that has
// emptied is not asked after (one without history would be a 404 at every poll): its last
// messages stay shown. The rooms' list is whole unless there are over 100.
async function pollRoom(rooms) {
  const room = state.selected;
  if (!room) return;
  const listed = rooms?.rooms?.some((entry) => entry.room === room);
  if (rooms && !listed && rooms.rooms.length >= rooms.total) {
    drawList("members", [], () => null);
    $("member-total").textContent = "(no members now)";
    return;
  }
  const query = `room=${encodeURIComponent(room)}`;
  const [presence, history] = await Promise.allSettled([
    api("GET", `/api/presence?${query}`),
    api("GET", `/api/history?${query}&limit=${HISTORY_LIMIT}`),
  ]);
  if (!state.key || state.selected !== room) return;
  if (presence.status === "fulfilled") drawMembers(presence.value);
  if (history.status === "fulfilled") drawHistory(history.value);
  const problems = [presence, history].filter((o) => o.status === "rejected").map((o) => o.reason.message);
  $("room-error").hidden = problems.length === 0;
  $("room-error").textContent = problems.join("; ");
}

// ----- drawing -----

function drawStats(stats) {
  const now = performance.now();
  $("stat-connections").textContent = String(stats.connections);
  $("stat-rooms").textContent = String(stats.rooms);
  $("stat-messages").textContent = String(stats.messages);
  const previous = state.sample;
  if (previous && now > previous.at && stats.messages >= previous.messages) {
    const rate = (stats.messages - previous.messages) / ((now - previous.at) / 1000);
    $("stat-rate").textContent = rate.toFixed(1);
  }
  state.sample = { messages: stats.messages, at: now };
  const linked = typeof stats.cluster === "string";
  $("stat-cluster-item").hidden = !linked;
  // The messages are those this process received (docs/API.md): in a cluster, say so.
  for (const here of document.querySelectorAll("#stats .here")) here.hidden = !linked;
  if (linked) $("stat-cluster").textContent = stats.cluster;
}

// Replaces list `id`'s children with `make(item)` for each item, unless `items` is what it was
// drawn from last time.
function drawList(id, items, make) {
  const drawn = JSON.stringify(items);
  if (state.drawn.get(id) === drawn) return false;
  state.drawn.set(id, drawn);
  $(id).replaceChildren(...items.map(make).filter(Boolean));
  return true;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function drawRooms(answer) {
  const rooms = answer.rooms ?? [];
  $("rooms-total").textContent = answer.total > rooms.length ? `(${rooms.length} of ${answer.total})` : "";
  $("rooms-empty").hidden = rooms.length > 0;
  drawList("rooms", rooms.map((r) => [r.room, r.members, r.room === state.selected]), ([room, members, chosen]) => {
    const row = element("tr", undefined, chosen ? "selected" : "");
    row.dataset.room = room;
    const name = element("td");
    const button = element("button", room, "room");
    button.type = "button";
    button.setAttribute("aria-pressed", String(chosen));
    button.addEventListener("click", () => select(room));
    name.append(button);
    row.append(name, element("td", String(members), "number"));
    return row;
  });
}

function drawMembers(presence) {
  const members = presence.members ?? [];
  const more = presence.total > members.length ? ` of ${presence.total}` : "";
  $("member-total").textContent = `(${members.length}${more})`;
  drawList("members", members, (nick) => element("li", nick));
}

function drawHistory(answer) {
  const messages = answer.messages ?? [];
  const box = $("history");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 4;
  const changed = drawList("history", messages, (m) => {
    const kinds = ["message", m.action ? "action" : "", m.api ? "api" : ""].filter(Boolean).join(" ");
    const item = element("li", undefined, kinds);
    item.dataset.id = m.id ?? "";
    const time = element("time", clock(m.ts));
    time.dateTime = new Date(m.ts).toISOString();
    const text = element("span", undefined, "text");
    text.append(element("span", m.from, "nick"), m.action ? ` ${m.text}` : `: ${m.text}`);
    item.append(time, text);
    return item;
  });
  if (messages.length === 0 && changed) box.replaceChildren(element("li", "No messages kept for this room.", "empty"));
  if (changed && atBottom) box.scrollTop = box.scrollHeight;
}

// One row a nick: unbanning is by nick and lifts all of its bans (a guest's is listed twice,
// by name and by the address it connected from); the row shows the one that ends last.
function drawBans(answer) {
  const byNick = new Map();
  for (const ban of answer.bans ?? []) {
    const key = ban.nick.toLowerCase();
    if (!byNick.has(key) || ban.until > byNick.get(key).until) byNick.set(key, ban);
  }
  const bans = [...byNick.values()];
  $("bans-empty").hidden = bans.length > 0;
  drawList("bans", bans, (ban) => {
    const row = element("tr");
    row.dataset.nick = ban.nick;
    const until = element("td");
    const time = element("time", clock(ban.until));
    time.dateTime = new Date(ban.until).toISOString();
    const remaining = element("span", undefined, "left");
    remaining.dataset.until = String(ban.until);
    until.append(time, " ", remaining);
    const action = element("td");
    const button = element("button", "Unban", "unban");
    button.type = "button";
    button.setAttribute("aria-label", `Unban ${ban.nick}`);
    button.addEventListener("click", () => unban(ban.nick));
    action.append(button);
    row.append(element("td", ban.nick), until, element("td", ban.reason ?? ""), element("td", ban.by ?? ""), action);
    return row;
  });
  // The rows stay while the bans do (a focused button keeps its focus); the time left moves.
  for (const remaining of $("bans").querySelectorAll(".left")) {
    remaining.textContent = `(${left(Number(remaining.dataset.until))})`;
  }
}

function select(room) {
  const previous = state.selected;
  state.selected = room;
  $("room-name").textContent = room;
  const publishRoom = $("publish-room");
  if (!publishRoom.value || publishRoom.value === previous) publishRoom.value = room;
  for (const id of ["members", "history", "rooms"]) state.drawn.delete(id);
  $("members").replaceChildren();
  $("history").replaceChildren();
  $("member-total").textContent = "";
  poll();
}

// HH:MM:SS of a time in milliseconds since the epoch, as the chat page shows them.
function clock(ms) {
  const at = new Date(ms);
  return [at.getHours(), at.getMinutes(), at.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

// How long until `ms`, roughly: "9m 58s left".
function left(ms) {
  const seconds = Math.max(0, Math.round((ms - Date.now()) / 1000));
  if (seconds >= 86400) return `${Math.floor(seconds / 86400)}d ${Math.floor((seconds % 86400) / 3600)}h left`;
  if (seconds >= 3600) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m left`;
  if (seconds >= 60) return `${Math.floor(seconds / 60)}m ${seconds % 60}s left`;
  return `${seconds}s left`;
}

// ----- acting -----

// Runs an action from a form: its result (or the API's error) is shown in `result`.
async function act(result, request, describe) {
  const shown = $(result);
  shown.classList.remove("failed");
  shown.textContent = "…";
  try {
    const answer = await request();
    shown.textContent = describe(answer);
    poll();
    return true;
  } catch (error) {
    shown.classList.add("failed");
    shown.textContent = `error: ${error.message}`;
    return false;
  }
}

function optional(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : value;
}

async function unban(nick) {
  await act("bans-result", () => api("POST", "/api/unban", { nick }), () => `unbanned ${nick}`);
}

function wireForms() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (key) signIn(key);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("publish-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { room: $("publish-room").value.trim(), text: $("publish-text").value, from: optional("publish-from") };
    const done = await act("publish-result", () => api("POST", "/api/publish", body),
      (answer) => `published in ${body.room}: ${answer.id}`);
    if (done) $("publish-text").value = "";
  });
  $("kick-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { nick: $("kick-nick").value.trim(), reason: optional("kick-reason") };
    const plural = (n) => `${n} connection${n === 1 ? "" : "s"}`;
    act("kick-result", () => api("POST", "/api/kick", body), (answer) => `kicked ${body.nick} (${plural(answer.kicked)})`);
  });
  $("ban-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { nick: $("ban-nick").value.trim(), duration: $("ban-duration").value.trim(), reason: optional("ban-reason") };
    act("ban-result", () => api("POST", "/api/ban", body),
      (answer) => `banned ${answer.nick} until ${clock(answer.until)}; ${answer.kicked} connection(s) closed`);
  });
}

wireForms();
if (state.key) signIn(state.key);
else showKeyForm();
