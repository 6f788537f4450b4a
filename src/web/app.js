// wschat browser client. Speaks the JSON mode of docs/PROTOCOL.md (the `wschat.json`
// subprotocol) over one WebSocket to the server that served this page, and sends plain text
// lines (chat and commands) as every client does. All text from the network is inserted with
// textContent, never as HTML. It remembers the last message id it saw in each room and, after
// every reconnect, asks the server for what it missed (`room=` and `since=`); when the server
// cannot tell exactly, the page says that some messages were missed. A room's replayed history
// is set apart (an "earlier messages" divider, muted lines), and notices are told apart by
// their style, not by the "*** " text clients print. The room and member lists are kept from
// the server's events and refreshed with /rooms and /who, whose automatic replies are not
// shown in the conversation.
"use strict";

const MAX_SHOWN = 2000;           // messages kept on screen
const REFRESH_MS = 20000;         // /rooms and /who refresh while connected
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 30000;
const SUBPROTOCOL = "wschat.json";
// A sign-in token the embedding site put in this page's URL (?token=JWT): used for every
// connection, and the nick is the token's.
const TOKEN = new URLSearchParams(location.search).get("token");
// Out of the address bar and the browser's history once read.
if (TOKEN) history.replaceState(null, "", location.pathname);

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
  lastIds: new Map(),             // room name (lower case) -> last message id seen there
  shownIds: new Set(),            // ids on screen, so a replay never shows a message twice
  resuming: false,                // this connection asked to resume (it sent `since`)
  replaying: false,               // a replay's divider is shown and its `replayed` not yet come
};

// ----- connection -----

function connect() {
  clearTimeout(state.retryTimer);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const params = new URLSearchParams();
  // The nick the user chose, even if a reconnect while the old connection still held it got a
  // guest nick meanwhile; a guest keeps its guest nick.
  const nick = state.wantedNick || state.me;
  if (TOKEN) params.set("token", TOKEN);
  else if (nick) params.set("nick", nick);
  // Back where it was, from just after the last message it saw there.
  const since = state.room && state.lastIds.get(state.room.toLowerCase());
  if (state.room) params.set("room", state.room);
  if (since) params.set("since", since);
  state.resuming = Boolean(since);
  state.replaying = false;
  const query = params.toString() ? `?${params}` : "";
  setStatus("connecting", "connecting…");
  const socket = new WebSocket(`${scheme}://${location.host}/${query}`, [SUBPROTOCOL]);
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  let opened = false;
  socket.onopen = () => {
    opened = true;
    state.retries = 0;
    setStatus("open", "connected");
    clearInterval(state.refreshTimer);
    state.refreshTimer = setInterval(refreshLists, REFRESH_MS);
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      let message;
      try { message = JSON.parse(event.data); } catch (_) { show(event.data, "chat"); return; }
      receive(message);
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
      state.room = null;
      state.leaving = false;
      return;
    }
    // Removed by a moderator, or a session that cannot go on: coming back would only repeat it.
    if (event.code === 4000 || (event.code === 1008 && /^(token expired|nick )/.test(event.reason))) {
      show(`disconnected: ${why}`, "gap");
      setStatus("offline", "disconnected");
      return;
    }
    if (!opened) {
      // A refused handshake looks like any failed connection to a page: ask the server why.
      checkSession().then((refusal) => {
        if (refusal) {
          show(`cannot sign in: ${refusal}`, "gap");
          setStatus("offline", "not signed in");
        } else {
          retry(why);
        }
      });
      return;
    }
    retry(why);
  };
}

// What the server would say to this page's token: null if it would be let in.
async function checkSession() {
  try {
    const query = TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "";
    const response = await fetch(`/session${query}`, { cache: "no-store" });
    return response.status === 401 || response.status === 403 ? (await response.text()).trim() : null;
  } catch (_) {
    return null; // the server is unreachable: just try again later
  }
}

// Reconnects with backoff (0.5 s doubling to 30 s, with jitter).
function retry(why) {
  const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(state.retries, 16));
  const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
  state.retries += 1;
  show(`connection closed (${why}); reconnecting in ${(jittered / 1000).toFixed(1)}s`, "local");
  setStatus("connecting", `reconnecting in ${(jittered / 1000).toFixed(1)}s`);
  state.retryTimer = setTimeout(connect, jittered);
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

// One JSON event (see "JSON mode" in docs/PROTOCOL.md). Lines read as text clients get them,
// less the "*** " before notices: here the style says what a line is.
function receive(m) {
  switch (m.type) {
    case "message":
    case "action": {
      state.lastIds.set(m.room.toLowerCase(), m.id);
      if (state.shownIds.has(m.id)) return;
      state.shownIds.add(m.id);
      // Only what can still be on screen needs remembering (a Set keeps insertion order).
      if (state.shownIds.size > 2 * MAX_SHOWN) state.shownIds.delete(state.shownIds.values().next().value);
      if (m.replay) startReplay();
      const earlier = m.replay ? " replayed" : "";
      // An application's message (the server's HTTP API) reads as text clients get it, and
      // is styled apart: its sender is a name the application gave, not a member.
      if (m.api) show(`[${m.from}] ${m.text}`, `api${earlier}`, m.ts);
      else if (m.type === "message") show(`${m.from}: ${m.text}`, `chat${earlier}`, m.ts);
      else show(`* ${m.from} ${m.text}`, `action${earlier}`, m.ts);
      return;
    }
    case "private": {
      const outgoing = !m.api && m.from === state.me && m.to !== state.me;
      if (m.api) show(`[PM from app ${m.from}] ${m.text}`, "private api", m.ts);
      else show(outgoing ? `[PM to ${m.to}] ${m.text}` : `[PM from ${m.from}] ${m.text}`, "private", m.ts);
      return;
    }
    case "notice": {
      const refused = m.text.match(/^nick (".*") refused: (.*)$/);
      if (refused && state.me === null) {
        refuseNick(`The nick ${refused[1]} was refused: ${refused[2]}.`);
        return;
      }
      show(m.text, "notice");
      return;
    }
    case "error":
      show(`error: ${m.text}`, "error");
      return;
    case "welcome":
      state.me = m.nick;
      enterRoom(m.room);
      show(`welcome, you are ${m.nick} in ${m.room}; type /help for commands`, "notice");
      return;
    case "replayed":
      state.replaying = false;
      if (m.last) state.lastIds.set(m.room.toLowerCase(), m.last);
      if (state.resuming && !m.recovered) {
        show(`some messages in ${m.room} were missed while disconnected`, "gap");
      }
      state.resuming = false;
      return;
    case "joined":
      if (m.nick === state.me) enterRoom(m.room);
      else if (sameName(m.room, state.room)) { state.members.add(m.nick); drawMembers(); roomsChanged(); }
      show(`${m.nick} joined ${m.room}`, "notice");
      return;
    case "left": {
      if (sameName(m.room, state.room) && state.members.delete(m.nick)) drawMembers();
      roomsChanged();
      const why = m.moved_to ? ` (joined ${m.moved_to})` : m.reason ? ` (${m.reason})` : "";
      show(`${m.nick} left ${m.room}${why}`, "notice");
      return;
    }
    case "nick":
      if (m.old === state.me) { state.me = m.new; state.wantedNick = m.new; }
      if (state.members.delete(m.old)) state.members.add(m.new);
      drawMembers();
      drawWhere();
      show(`${m.old} is now known as ${m.new}`, "notice");
      return;
    case "who": {
      state.members = new Set(m.nicks);
      drawMembers();
      if (state.pendingWho > 0) { state.pendingWho -= 1; return; }
      const more = m.count > m.nicks.length ? `, and ${m.count - m.nicks.length} more` : "";
      show(`in ${m.room} (${m.count}): ${m.nicks.join(", ")}${more}`, "notice");
      return;
    }
    case "rooms": {
      state.rooms = m.rooms.map((r) => ({ name: r.name, count: r.members }));
      drawRooms();
      if (state.pendingRooms > 0) { state.pendingRooms -= 1; return; }
      const more = m.count > m.rooms.length ? `, and ${m.count - m.rooms.length} more` : "";
      show(`rooms: ${m.rooms.map((r) => `${r.name} (${r.members})`).join(", ")}${more}`, "notice");
      return;
    }
    case "expired":
      show("your session expired; open the chat again from the site that signed you in", "gap");
      return;
    case "binary":
      // Names the sender of the binary message that comes next; shown with it, not on its own.
      state.binaryFrom = m.from;
      return;
    default:
      show(JSON.stringify(m), "notice");
  }
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

// The first replayed message of a join (one not already on screen) opens its history with a
// divider, as chat apps mark earlier messages; the replay's `replayed` closes it.
function startReplay() {
  if (state.replaying) return;
  state.replaying = true;
  const item = document.createElement("li");
  item.className = "divider";
  item.textContent = "earlier messages";
  append(item);
}

// `kind`: the line's classes (what it is, and "replayed" for history). `ts`: the server's
// timestamp (milliseconds since the Unix epoch) for messages; the time of arrival for the rest.
function show(line, kind, ts) {
  const item = document.createElement("li");
  item.className = kind;
  const time = document.createElement("time");
  const now = ts ? new Date(ts) : new Date();
  time.dateTime = now.toISOString();
  time.textContent = [now.getHours(), now.getMinutes(), now.getSeconds()]
    .map((n) => String(n).padStart(2, "0")).join(":");
  // The text sits in its own box beside the time, so a long message wraps under its own start.
  const text = document.createElement("span");
  text.className = "text";
  const colon = item.classList.contains("chat") ? line.indexOf(": ") : -1;
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
  append(item);
}

// Adds a line at the end, keeping the list bounded, and follows it if the view was at the end.
function append(item) {
  const list = $("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
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
if (TOKEN) {
  // Signed in by the embedding site: no nick to pick.
  $("login").hidden = true;
  $("chat").hidden = false;
  $("message-input").focus();
  connect();
} else {
  $("nick-input").focus();
}
