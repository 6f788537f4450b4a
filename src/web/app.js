// wschat browser client. Speaks the text protocol of docs/PROTOCOL.md over one WebSocket to the
// server that served this page. All text from the network is inserted with textContent, never
// as HTML. The room and member lists are kept from the server's notices and refreshed with
// /rooms and /who, whose automatic replies are not shown in the conversation.
"use strict";

const MAX_SHOWN = 2000;           // messages kept on screen
const REFRESH_MS = 20000;         // /rooms and /who refresh while connected
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 30000;

const $ = (id) => document.getElementById(id);
const state = {
  socket: null,
  wantedNick: "",
  me: null,
  room: null,
  members: new Set(),
  rooms: [],
  pendingWho: 0,
  pendingRooms: 0,
  retries: 0,
  retryTimer: null,
  refreshTimer: null,
  roomsTimer: null,
  leaving: false,
  binaryFrom: null,               // who sent the binary message the server announced next
};

// ----- connection -----

function connect() {
  clearTimeout(state.retryTimer);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const nick = state.me || state.wantedNick;
  const query = nick ? "?nick=" + encodeURIComponent(nick) : "";
  setStatus("connecting", "connecting…");
  const socket = new WebSocket(`${scheme}://${location.host}/${query}`);
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  socket.onopen = () => {
    state.retries = 0;
    setStatus("open", "connected");
    clearInterval(state.refreshTimer);
    state.refreshTimer = setInterval(refreshLists, REFRESH_MS);
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      receive(event.data);
    } else {
      const from = state.binaryFrom ? ` from ${state.binaryFrom}` : "";
      state.binaryFrom = null;
      show(`[binary, ${event.data.byteLength} bytes${from}]`, "binary");
    }
  };
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    clearInterval(state.refreshTimer);
    const why = event.reason ? `${event.code} ${event.reason}` : `${event.code}`;
    if (event.code === 1000 && state.leaving) {
      // The user typed /quit: back to the nick form.
      show(`left the chat (${why})`, "local");
      setStatus("offline", "not connected");
      $("chat").hidden = true;
      $("login").hidden = false;
      state.me = null;
      state.leaving = false;
      return;
    }
    const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(state.retries, 16));
    const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
    state.retries += 1;
    show(`connection closed (${why}); reconnecting in ${(jittered / 1000).toFixed(1)}s`, "local");
    setStatus("connecting", `reconnecting in ${(jittered / 1000).toFixed(1)}s`);
    state.retryTimer = setTimeout(connect, jittered);
  };
}

function send(text) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
    show("not connected; message not sent", "error");
    return false;
  }
  state.socket.send(text);
  return true;
}

function refreshLists() {
  if (send("/rooms")) state.pendingRooms += 1;
  if (send("/who")) state.pendingWho += 1;
}

// Someone came or went, so room sizes (and maybe the set of rooms) changed: refresh the room
// list once things settle rather than once per notice.
function roomsChanged() {
  clearTimeout(state.roomsTimer);
  state.roomsTimer = setTimeout(() => { if (send("/rooms")) state.pendingRooms += 1; }, 300);
}

function setStatus(kind, text) {
  $("status").dataset.state = kind;
  $("status-text").textContent = text;
}

// ----- what the server says -----

const NOTICES = [
  [/^\*\*\* welcome, you are (\S+) in (\S+);/, (nick, room) => { state.me = nick; enterRoom(room); }],
  [/^\*\*\* (\S+) joined (\S+)$/, (nick, room) => {
    if (nick === state.me) enterRoom(room);
    else if (sameName(room, state.room)) { state.members.add(nick); drawMembers(); roomsChanged(); }
  }],
  [/^\*\*\* (\S+) left (\S+)(?: \(.*\))?$/, (nick, room) => {
    if (sameName(room, state.room) && state.members.delete(nick)) drawMembers();
    roomsChanged();
  }],
  [/^\*\*\* (\S+) is now known as (\S+)$/, (old, now) => {
    if (old === state.me) state.me = now;
    if (state.members.delete(old)) state.members.add(now);
    drawMembers();
    drawWhere();
  }],
];

/// Back to the nick form with the reason shown next to the field: a nick the server refused
/// while signing in (taken, or not allowed) is better asked for again than accepted as a guest.
function refuseNick(reason) {
  showNickError(reason);
  state.leaving = true;
  if (state.socket) state.socket.close(1000, "nick refused");
}

function showNickError(reason) {
  $("nick-error").textContent = reason;
  $("nick-error").hidden = false;
  $("login").hidden = false;
  $("chat").hidden = true;
  $("nick-input").focus();
}

function receive(line) {
  // Names the sender of the binary message that comes next; shown with it, not on its own.
  const binary = line.match(/^\*\*\* binary message from (\S+) \(\d+ bytes\)$/);
  if (binary) {
    state.binaryFrom = binary[1];
    return;
  }
  const refused = line.match(/^\*\*\* nick (".*") refused: (.*)$/);
  if (refused && state.me === null) {
    refuseNick(`The nick ${refused[1]} was refused: ${refused[2]}.`);
    return;
  }
  const who = line.match(/^\*\*\* in (\S+) \((\d+)\): (.*)$/);
  if (who) {
    state.members = new Set(who[3] ? who[3].split(", ") : []);
    drawMembers();
    if (state.pendingWho > 0) { state.pendingWho -= 1; return; }
  }
  const rooms = line.match(/^\*\*\* rooms: (.*)$/);
  if (rooms) {
    state.rooms = [...rooms[1].matchAll(/(\S+) \((\d+)\)/g)].map((m) => ({ name: m[1], count: +m[2] }));
    drawRooms();
    if (state.pendingRooms > 0) { state.pendingRooms -= 1; return; }
  }
  for (const [pattern, act] of NOTICES) {
    const m = line.match(pattern);
    if (m) { act(...m.slice(1)); break; }
  }
  show(line, classify(line));
}

// The first characters decide the form: a nick never starts with "*" or "[".
function classify(line) {
  if (line.startsWith("*** error:")) return "error";
  if (line.startsWith("*** ")) return "notice";
  if (line.startsWith("* ")) return "action";
  if (line.startsWith("[PM from ") || line.startsWith("[PM to ")) return "private";
  return "chat";
}

function enterRoom(room) {
  state.room = room;
  state.members = new Set();
  drawWhere();
  drawMembers();
  refreshLists();
}

const sameName = (a, b) => a && b && a.toLowerCase() === b.toLowerCase();

// ----- drawing -----

function show(line, kind) {
  const list = $("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const item = document.createElement("li");
  item.className = kind;
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = [now.getHours(), now.getMinutes(), now.getSeconds()]
    .map((n) => String(n).padStart(2, "0")).join(":");
  // The text sits in its own box beside the time, so a long message wraps under its own start.
  const text = document.createElement("span");
  text.className = "text";
  const colon = kind === "chat" ? line.indexOf(": ") : -1;
  if (colon > 0) {
    const nick = document.createElement("span");
    nick.className = "nick";
    nick.textContent = line.slice(0, colon + 1);
    text.append(nick, line.slice(colon + 1));
  } else {
    text.append(line);
  }
  // A multi-line notice (/help) is a table aligned with spaces: keep it in a monospace block.
  if (line.includes("\n")) text.classList.add("block");
  item.append(time, text);
  list.append(item);
  while (list.childElementCount > MAX_SHOWN) list.firstElementChild.remove();
  if (nearBottom) list.scrollTop = list.scrollHeight;
}

function drawWhere() {
  $("where").textContent = state.me ? `${state.me} in ${state.room}` : "";
}

function drawMembers() {
  const list = $("members");
  const names = [...state.members].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  list.replaceChildren(...names.map((name) => {
    const item = document.createElement("li");
    item.textContent = name;
    if (name === state.me) item.className = "me";
    return item;
  }));
  $("member-count").textContent = `(${names.length})`;
}

function drawRooms() {
  const list = $("rooms");
  list.replaceChildren(...state.rooms.map(({ name, count }) => {
    const item = document.createElement("li");
    item.textContent = `${name} (${count})`;
    item.dataset.room = name;
    item.title = `join ${name}`;
    if (sameName(name, state.room)) item.className = "current";
    item.addEventListener("click", () => send(`/join ${name}`));
    return item;
  }));
}

// ----- user input -----

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.wantedNick = $("nick-input").value.trim();
  $("nick-error").hidden = true;
  try { localStorage.setItem("wschat-nick", state.wantedNick); } catch (_) { /* private mode */ }
  $("login").hidden = true;
  $("chat").hidden = false;
  $("message-input").focus();
  connect();
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("message-input");
  const text = input.value;
  if (!text.trim()) return;
  if (/^\/quit(\s|$)/i.test(text.trim())) state.leaving = true;
  if (send(text)) input.value = "";
});

$("room-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("room-input");
  const room = input.value.trim();
  if (room && send(`/join ${room}`)) input.value = "";
});

// A nick the field's own pattern refuses is explained beside it, not only in a tooltip.
$("nick-input").addEventListener("invalid", () => showNickError($("nick-input").title));

try { $("nick-input").value = localStorage.getItem("wschat-nick") || ""; } catch (_) { /* private mode */ }
$("nick-input").focus();
