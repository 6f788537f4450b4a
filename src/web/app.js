// wschat browser client. Speaks the JSON mode of docs/PROTOCOL.md (the `wschat.json`
// subprotocol) over one WebSocket to the server that served this page, and sends plain text
// lines (chat and commands) as every client does. All text from the network is inserted with
// textContent, never as HTML. It remembers the last message id it saw in each room and, after
// every reconnect, asks the server for what it missed (`room=` and `since=`); when the server
// cannot tell exactly, the page says that some messages were missed. A room's replayed history
// is set apart (an "earlier messages" divider, muted lines), and notices are told apart by
// their style, not by the "*** " text clients print. The room and member lists are kept from
// the server's events and refreshed with /rooms and /who, whose automatic replies are not
// shown in the conversation. While the user types it says so (/typing, at most every 2 s) and
// shows who else is typing; messages naming the user (@NICK) stand out, and a mention in
// another room marks that room; scrolling to the top (or the button there) pages back through
// the room's earlier messages with /history. The user's own messages can be edited and deleted
// (/edit, /delete) from buttons beside them, and every shown copy follows the room's `edited`
// and `deleted` events. Read markers: the page says how far the user has read (/read) and marks
// where new messages start on coming back to a room (see "read markers" below).
"use strict";

const MAX_SHOWN = 2000;           // messages kept on screen
const REFRESH_MS = 20000;         // /rooms and /who refresh while connected
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 30000;
const SUBPROTOCOL = "wschat.json";
const TYPING_EVERY_MS = 2000;     // least time between two /typing sent (the server's limit too)
const TYPING_SHOWN_MS = 3000;     // how long "is typing" lasts after someone's last `typing`
const EARLIER_PAGE = 50;          // messages asked for per /history
const READ_EVERY_MS = 1000;       // least time between two /read sent
const TITLE = document.title;
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
  typingSent: 0,                  // when this page last sent /typing (ms)
  typists: new Map(),             // nick -> timer that ends their "is typing" (current room)
  mentionedIn: new Map(),         // room (lower case) -> ids of the mentions there not yet read
  earliest: new Map(),            // room (lower case) -> { first: oldest id shown, done: no more }
  earlierPending: null,           // the room (lower case) of a /history that is out
  earlierBatch: [],
  replayIds: new Set(),           // ids of the replay under way, shown already or not
  replayLines: [],                // lines the replay under way added
  readUpTo: new Map(),            // room (lower case) -> where the user's read marker stands
  readSentAt: 0,                  // when this page last sent /read (ms)
  readTimer: null,
  unread: [],                     // ids of the current room's messages that came unseen
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
  // A replay the last connection left unfinished has no `replayed` coming.
  state.replayIds = new Set();
  state.replayLines = [];
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
    // A /history that was out has no answer coming: the next scroll asks again.
    state.earlierPending = null;
    state.earlierBatch = [];
    drawEarlier();
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
      // A page of /history: older than anything shown, so it neither moves where a reconnect
      // resumes from nor counts as said now; shown together when its summary comes.
      if (m.older) { state.earlierBatch.push(m); return; }
      state.lastIds.set(m.room.toLowerCase(), m.id);
      noteEarliest(m.room, m.id);
      if (m.replay) state.replayIds.add(m.id);
      else stopTyping(m.from);
      if (state.shownIds.has(m.id)) {
        // Shown before, and edited since (a join's replay has the room as it stands).
        if (m.edited) showEdited(m.room, m.id, m.text);
        return;
      }
      remember(m.id);
      if (m.replay) startReplay();
      const line = messageLine(m, m.replay ? " replayed" : "");
      append(line);
      if (m.replay) state.replayLines.push(line);
      else { countUnread(m); markReadSoon(); }
      return;
    }
    case "edited":
    case "deleted":
      // A page of /history has its messages as they stand: its changes have nothing to do.
      if (m.older) return;
      state.lastIds.set(m.room.toLowerCase(), m.id);
      if (m.type === "edited") showEdited(m.room, m.target, m.text);
      else showDeleted(m.room, m.target);
      if (!m.replay) markReadSoon();
      return;
    case "read":
      // Another connection of the user's (another tab or device) read the room up to `id`.
      readUpTo(m.room, m.id);
      return;
    case "history":
      earlierArrived(m);
      return;
    case "mention":
      // Named in another room: said here, and that room marked until the user goes there.
      show(`${m.from} mentioned you in ${m.room}: ${m.text}`, "notice mention");
      if (!sameName(m.room, state.room)) {
        const key = m.room.toLowerCase();
        state.mentionedIn.set(key, [...(state.mentionedIn.get(key) ?? []), m.id]);
      }
      drawRooms();
      return;
    case "typing":
      if (sameName(m.room, state.room) && m.nick !== state.me) startTyping(m.nick);
      return;
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
      // A /history the server cannot answer: an id it does not know (its history started
      // again) means there is nothing earlier to reach; a failed read may work next time.
      if (state.earlierPending && /^no message \S+ in /.test(m.text)) {
        earlierFailed(true);
        return;
      }
      if (state.earlierPending && /^earlier messages cannot be read/.test(m.text)) earlierFailed(false);
      show(`error: ${m.text}`, "error");
      return;
    case "welcome":
      state.me = m.nick;
      enterRoom(m.room);
      show(`welcome, you are ${m.nick} in ${m.room}; type /help for commands`, "notice");
      return;
    case "replayed": {
      state.replaying = false;
      const key = m.room.toLowerCase();
      if (m.last) state.lastIds.set(key, m.last);
      if (state.resuming && !m.recovered) {
        show(`some messages in ${m.room} were missed while disconnected`, "gap");
      }
      state.resuming = false;
      // The room as it stands (not the changes since a point): what it no longer has among the
      // ids it spans was deleted meanwhile.
      if (!m.recovered) dropDeleted(m.room, state.replayIds);
      if (m.read) state.readUpTo.set(key, m.read);
      else state.readUpTo.delete(key);
      markNew(m.read, state.replayLines);
      state.replayIds = new Set();
      state.replayLines = [];
      markReadSoon();
      return;
    }
    case "joined":
      if (m.nick === state.me) enterRoom(m.room);
      else if (sameName(m.room, state.room)) { state.members.add(m.nick); drawMembers(); roomsChanged(); }
      show(`${m.nick} joined ${m.room}`, "notice");
      return;
    case "left": {
      if (sameName(m.room, state.room) && state.members.delete(m.nick)) drawMembers();
      if (sameName(m.room, state.room)) stopTyping(m.nick);
      roomsChanged();
      const why = m.moved_to ? ` (joined ${m.moved_to})` : m.reason ? ` (${m.reason})` : "";
      show(`${m.nick} left ${m.room}${why}`, "notice");
      return;
    }
    case "nick":
      if (m.old === state.me) { state.me = m.new; state.wantedNick = m.new; drawActions(); }
      if (state.members.delete(m.old)) state.members.add(m.new);
      stopTyping(m.old);
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
  // A reconnect comes back to the same room: what came unseen there is still unseen.
  if (!sameName(room, state.room)) state.unread = [];
  state.room = room;
  state.members = new Set();
  state.mentionedIn.delete(room.toLowerCase());
  for (const timer of state.typists.values()) clearTimeout(timer);
  state.typists.clear();
  drawTitle();
  drawTyping();
  drawWhere();
  drawMembers();
  drawEarlier();
  drawActions();
  refreshLists();
  markReadSoon();
}

// Ids on screen, so a replay never shows a message twice. Only what can still be on screen
// needs remembering (a Set keeps insertion order).
function remember(id) {
  state.shownIds.add(id);
  if (state.shownIds.size > 2 * MAX_SHOWN) state.shownIds.delete(state.shownIds.values().next().value);
}

// ----- edits and deletes -----

// The shown copies of message `id` of `room` (one, unless something went wrong).
function linesOf(room, id) {
  return [...$("messages").querySelectorAll(`li[data-id="${CSS.escape(id)}"]`)]
    .filter((item) => sameName(item.dataset.room, room));
}

// Message `id` has new text: shown with it, and marked "(edited)".
function showEdited(room, id, text) {
  for (const item of linesOf(room, id)) {
    item.querySelector(".body").replaceChildren(...withMentions(text));
    markEdited(item);
  }
}

function markEdited(item) {
  if (item.querySelector(".edited")) return;
  const mark = document.createElement("span");
  mark.className = "edited";
  mark.textContent = " (edited)";
  item.querySelector(".text").append(mark);
}

// Message `id` was deleted: its line goes (and with it any edit or question open on it).
function showDeleted(room, id) {
  for (const item of linesOf(room, id)) {
    if (item.contains(document.activeElement)) $("message-input").focus();
    item.remove();
  }
  const before = state.unread.length;
  state.unread = state.unread.filter((unread) => unread !== id);
  if (state.unread.length !== before) drawTitle();
}

// A replay of `room` as it stands, `ids` its messages: a line of the room shown from within the
// ids it spans (the same epoch, between its first and its last) that it left out was deleted
// while this page was not told (in another room, or disconnected).
function dropDeleted(room, ids) {
  if (ids.size === 0) return;
  const first = ids.values().next().value;
  const last = [...ids].pop();
  if (epochOf(first) !== epochOf(last)) return;
  for (const item of $("messages").querySelectorAll("li[data-id]")) {
    const id = item.dataset.id;
    if (!sameName(item.dataset.room, room) || ids.has(id) || epochOf(id) !== epochOf(first)) continue;
    if (seqOf(id) > seqOf(first) && seqOf(id) < seqOf(last)) showDeleted(room, id);
  }
}

// The user's own chat lines and actions in the current room have Edit and Delete beside them
// (what /edit and /delete take; the server says if one is too old to edit): added to or taken
// from every shown line, as the room or the user's nick changes.
function drawActions(items = $("messages").querySelectorAll("li[data-from]")) {
  for (const item of items) {
    const own = Boolean(state.me) && sameName(item.dataset.from, state.me) && sameName(item.dataset.room, state.room);
    const actions = item.querySelector(".actions");
    if (own && !actions) item.append(actionsFor(item));
    else if (!own && actions) actions.remove();
  }
}

function smallButton(label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", onClick);
  return button;
}

function actionsFor(item) {
  const box = document.createElement("span");
  box.className = "actions";
  const edit = smallButton("Edit", () => startEdit(item, box, edit));
  const remove = smallButton("Delete", () => {
    // Asked once more, beside the line: Yes deletes, No (focused first) leaves it.
    const question = document.createElement("span");
    question.className = "question";
    question.textContent = "Delete?";
    const no = smallButton("No", () => { box.replaceChildren(edit, remove); remove.focus(); });
    const yes = smallButton("Yes", () => {
      box.replaceChildren(edit, remove);
      $("message-input").focus();
      send(`/delete ${item.dataset.id}`);
    });
    box.replaceChildren(question, yes, no);
    no.focus();
  });
  edit.title = "Edit this message";
  remove.title = "Delete this message";
  box.append(edit, remove);
  return box;
}

// The line's text becomes a field holding it: Enter sends /edit (the `edited` event that comes
// back shows the new text), Escape leaves it as it was.
function startEdit(item, box, button) {
  const text = item.querySelector(".text");
  const body = item.querySelector(".body");
  const form = document.createElement("form");
  form.className = "edit-form";
  const input = document.createElement("input");
  input.value = body.textContent;
  input.setAttribute("aria-label", "Edit the message");
  input.title = "Enter saves, Escape cancels";
  form.append(input);
  const close = () => {
    form.remove();
    text.hidden = false;
    box.hidden = false;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const changed = input.value.trim() && input.value !== body.textContent;
    if (changed && !send(`/edit ${item.dataset.id} ${input.value}`)) return;
    close();
    $("message-input").focus();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    close();
    button.focus();
  });
  text.hidden = true;
  box.hidden = true;
  text.after(form);
  input.focus();
}

// ----- read markers -----
//
// The page tells the server how far the user has read in the current room (/read with the id
// of the newest message there) once the user has seen it: the window visible and focused, and
// the conversation scrolled to its end; at most once a second, and only when that moves the
// marker on. The server keeps the marker (a signed-in user's across devices, which are told:
// `read`), and the replay on coming back to a room says where it stands: a "new messages"
// divider goes before the first line newer than it.
//
// What is counted as unread, from what this page can know (it only receives its current
// room's messages):
// - the current room: the messages from others that came while the window was hidden or
//   unfocused, shown in the title ("(3) wschat") until the marker passes them (this page
//   reading them, or another device of the user's);
// - other rooms: the mentions of the user there (the "@" badge, with their number past one),
//   until the user goes there or another device reads past them.

const windowSeen = () => document.visibilityState === "visible" && document.hasFocus();

function atBottom() {
  const scroller = $("scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
}

// `id` is past read marker `mark` (none, or one of an earlier epoch: the room began again).
const isAfter = (id, mark) => !mark || epochOf(id) !== epochOf(mark) || seqOf(id) > seqOf(mark);
// `id` is covered by read marker `mark`: the same epoch, and not after it.
const isCovered = (id, mark) => Boolean(mark) && epochOf(id) === epochOf(mark) && seqOf(id) <= seqOf(mark);

// A live message of the current room from someone else, come while the user was away.
function countUnread(m) {
  if (!sameName(m.room, state.room) || sameName(m.from, state.me) || windowSeen()) return;
  state.unread.push(m.id);
  drawTitle();
}

// Marks the current room read soon (after what is arriving now is on screen), if it is seen.
function markReadSoon() {
  if (state.readTimer) return;
  const wait = Math.max(0, state.readSentAt + READ_EVERY_MS - Date.now());
  state.readTimer = setTimeout(() => { state.readTimer = null; markRead(); }, wait);
}

function markRead() {
  if (!state.room || !windowSeen() || !atBottom()) return;
  const last = state.lastIds.get(state.room.toLowerCase());
  // EPOCH:0 is where a room without messages resumes from: nothing to read.
  if (!last || seqOf(last) === 0 || !isAfter(last, state.readUpTo.get(state.room.toLowerCase()))) return;
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  state.socket.send(`/read ${last}`);
  state.readSentAt = Date.now();
  readUpTo(state.room, last);
}

// The user's marker in `room` moved to `id` (here or on another device): what it passes is read.
function readUpTo(room, id) {
  const key = room.toLowerCase();
  state.readUpTo.set(key, id);
  if (sameName(room, state.room)) {
    state.unread = state.unread.filter((unread) => !isCovered(unread, id));
    drawTitle();
  }
  const mentions = state.mentionedIn.get(key);
  if (mentions) {
    const left = mentions.filter((mention) => !isCovered(mention, id));
    if (left.length) state.mentionedIn.set(key, left);
    else state.mentionedIn.delete(key);
    drawRooms();
  }
}

// A replay's lines, and where the user had read up to in their room: "new messages" before the
// first line after it (one such divider on screen at a time).
function markNew(read, lines) {
  if (!read) return;
  const first = lines.find((item) => item.isConnected
    && epochOf(item.dataset.id) === epochOf(read) && seqOf(item.dataset.id) > seqOf(read));
  if (!first) return;
  for (const old of $("messages").querySelectorAll("li.unread")) old.remove();
  const item = document.createElement("li");
  item.className = "divider unread";
  item.textContent = "new messages";
  first.before(item);
}

function drawTitle() {
  document.title = state.unread.length ? `(${state.unread.length}) ${TITLE}` : TITLE;
}

// ----- typing -----

// Someone in the room is typing: shown until TYPING_SHOWN_MS after their last `typing`.
function startTyping(nick) {
  clearTimeout(state.typists.get(nick));
  state.typists.set(nick, setTimeout(() => stopTyping(nick), TYPING_SHOWN_MS));
  drawTyping();
}

// Their message came (or they left): no longer typing.
function stopTyping(nick) {
  if (!state.typists.has(nick)) return;
  clearTimeout(state.typists.get(nick));
  state.typists.delete(nick);
  drawTyping();
}

// The user is typing a message (not a command): the room is told, at most every 2 s, which
// is all the server passes on anyway. Sent quietly: a page offline has nobody to tell.
function typed() {
  const text = $("message-input").value;
  if (!text.trim() || text.trimStart().startsWith("/")) return;
  const now = Date.now();
  if (now - state.typingSent < TYPING_EVERY_MS) return;
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  state.typingSent = now;
  state.socket.send("/typing");
}

// ----- earlier messages -----

// The oldest message shown of a room, where scrolling back starts. A message of another epoch
// (the server's history started again) starts over: what is older than it is out of reach.
function noteEarliest(room, id) {
  const key = room.toLowerCase();
  const known = state.earliest.get(key);
  if (known && epochOf(known.first) === epochOf(id)) {
    if (seqOf(id) < seqOf(known.first)) known.first = id;
    return;
  }
  state.earliest.set(key, { first: id, done: false });
  if (sameName(room, state.room)) drawEarlier();
}

// Ids are EPOCH:SEQ; sequence numbers order a room's messages within an epoch.
const epochOf = (id) => id.slice(0, id.lastIndexOf(":"));
const seqOf = (id) => Number(id.slice(id.lastIndexOf(":") + 1));

// Asks for the page before the oldest message shown of the room, unless one is out already
// or the room's beginning is shown.
function requestEarlier() {
  const known = state.room && state.earliest.get(state.room.toLowerCase());
  if (!known || known.done || state.earlierPending) return;
  if (!send(`/history ${known.first} ${EARLIER_PAGE}`)) return;
  state.earlierPending = state.room.toLowerCase();
  state.earlierBatch = [];
  drawEarlier();
}

// The summary after a page: its messages go on top, oldest first, the view kept where it was.
// Only the page this script asked for moves where scrolling back goes on from: one the user
// asked for by typing /history may be from anywhere.
function earlierArrived(m) {
  const batch = state.earlierBatch;
  const known = state.earlierPending === m.room.toLowerCase() && state.earliest.get(state.earlierPending);
  state.earlierPending = null;
  state.earlierBatch = [];
  if (known) {
    if (m.first) known.first = m.first;
    if (!m.more) known.done = true;
  }
  const fresh = batch.filter((message) => !state.shownIds.has(message.id));
  for (const message of fresh) remember(message.id);
  prepend(fresh.map((message) => messageLine(message, " replayed")));
}

// A /history the server refused; `done` when nothing earlier can be reached.
function earlierFailed(done) {
  const known = state.earliest.get(state.earlierPending);
  state.earlierPending = null;
  state.earlierBatch = [];
  if (known && done) known.done = true;
  drawEarlier();
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
  const colon = kind.split(" ").includes("chat") ? line.indexOf(": ") : -1;
  if (colon > 0) append(lineItem(kind, ts, [nickSpan(line.slice(0, colon + 1)), line.slice(colon + 1)]));
  else append(lineItem(kind, ts, [line]));
}

// A chat line, a /me or an application's message, read as text clients get them, its @NICKs
// in bold, and the whole line marked when it names the user. `earlier`: " replayed" for history.
// The line carries the message's id and room (for its edits and deletes), and a member's
// message its sender (for the Edit and Delete of the user's own).
function messageLine(m, earlier) {
  const body = document.createElement("span");
  body.className = "body";
  body.append(...withMentions(m.text));
  // An application's message (the server's HTTP API) is styled apart: its sender is a name
  // the application gave, not a member.
  const item = m.api ? lineItem(`api${earlier}`, m.ts, [`[${m.from}] `, body])
    : m.type === "message" ? lineItem(`chat${earlier}`, m.ts, [nickSpan(`${m.from}:`), " ", body])
    : lineItem(`action${earlier}`, m.ts, [`* ${m.from} `, body]);
  item.dataset.id = m.id;
  item.dataset.room = m.room;
  if (!m.api) item.dataset.from = m.from;
  if (m.edited) markEdited(item);
  if (state.me && (m.mentions ?? []).some((nick) => sameName(nick, state.me))) {
    item.classList.add("mentioned");
    item.title = "mentions you";
  }
  drawActions([item]);
  return item;
}

// A line of the conversation: its time, then `parts` (strings and nodes) in a box of their own.
function lineItem(kind, ts, parts) {
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
  text.append(...parts);
  // A multi-line notice (/help) is a table aligned with spaces: keep it in a monospace block.
  if (text.textContent.includes("\n")) text.classList.add("block");
  item.append(time, text);
  return item;
}

function nickSpan(label) {
  const nick = document.createElement("span");
  nick.className = "nick";
  nick.textContent = label;
  return nick;
}

// `@NAME` at the start of a word, less the punctuation after it, as the server reads mentions
// (`bob@example.com` is none).
const MENTION = /(^|\s)(@[^\s.,;:!?)\]}"'’”…][^\s]*?)(?=[.,;:!?)\]}"'’”…]*(?:\s|$))/gu;

// `text` as strings and <strong> nodes for its @NAMEs: server text only ever as text nodes.
function withMentions(text) {
  const parts = [];
  let at = 0;
  for (const match of text.matchAll(MENTION)) {
    const start = match.index + match[1].length;
    const name = document.createElement("strong");
    name.className = "at";
    name.textContent = match[2];
    parts.push(text.slice(at, start), name);
    at = start + match[2].length;
  }
  parts.push(text.slice(at));
  return parts;
}

// Adds a line at the end, keeping the list bounded, and follows it if the view was at the end.
function append(item) {
  const list = $("messages");
  const scroller = $("scroller");
  const nearBottom = atBottom();
  list.append(item);
  while (list.childElementCount > MAX_SHOWN) list.firstElementChild.remove();
  if (nearBottom) scroller.scrollTop = scroller.scrollHeight;
}

// Adds earlier lines at the top, the lines in view staying where they are on screen (the
// browser's own scroll anchoring is off for the list: it does not act at the very top).
function prepend(items) {
  const scroller = $("scroller");
  const before = scroller.scrollHeight;
  $("messages").prepend(...items);
  drawEarlier();
  scroller.scrollTop += scroller.scrollHeight - before;
}

// The top of the conversation: a button to load the current room's earlier messages while
// there are any, "beginning of history" once its first is shown.
function drawEarlier() {
  const known = state.room && state.earliest.get(state.room.toLowerCase());
  $("earlier").hidden = !known;
  const button = $("earlier-button");
  button.hidden = !known || known.done;
  button.textContent = state.earlierPending ? "loading earlier messages…" : "Load earlier messages";
  button.setAttribute("aria-busy", String(Boolean(state.earlierPending)));
  $("history-start").hidden = !known || !known.done;
}

function drawTyping() {
  const names = [...state.typists.keys()];
  $("typing").textContent = names.length === 0 ? ""
    : names.length === 1 ? `${names[0]} is typing…`
    : names.length === 2 ? `${names[0]} and ${names[1]} are typing…`
    : "several people are typing…";
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
    const mentions = state.mentionedIn.get(name.toLowerCase())?.length ?? 0;
    if (mentions) {
      // Someone named the user there: marked (with how often, past once) until the user goes
      // there or reads there on another device.
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = mentions > 1 ? `@${mentions}` : "@";
      badge.title = mentions > 1 ? `you were mentioned here ${mentions} times` : "you were mentioned here";
      item.append(badge);
      item.title = `join ${name}; you were mentioned there`;
    }
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

$("message-input").addEventListener("input", typed);

// Scrolled to the top, or the button there pressed (keyboard users have no scrolling to do):
// the page before the oldest message shown. Only a scroll upwards counts: following new lines
// scrolls down, even in a list just taller than the view.
let scrolledTo = 0;
$("scroller").addEventListener("scroll", () => {
  const top = $("scroller").scrollTop;
  if (top < 40 && top < scrolledTo) requestEarlier();
  scrolledTo = top;
  if (atBottom()) markReadSoon();
});
// Back to the page: what it shows at the end is seen now.
window.addEventListener("focus", markReadSoon);
document.addEventListener("visibilitychange", markReadSoon);
$("earlier-button").addEventListener("click", requestEarlier);

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
