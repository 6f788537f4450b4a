//! Durable history (`--data-dir DIR`): every room's kept messages, epoch and sequence in an
//! embedded database (`DIR/history.redb`, [redb](https://docs.rs/redb): pure Rust, ACID,
//! crash-safe), so a restarted server keeps its ids and clients resume across a deploy.
//!
//! **Write-ahead, group-committed.** The chat journals each history change ([`Journal`]); the
//! hub hands the journal to the [`WriteBarrier`], which every write to a client socket passes
//! first (`FanOut::flush`). A barrier holding changes commits them, in one durable transaction,
//! before the first byte of the turn is written: so a message reaches clients only after its
//! commit, every id a client has seen survives a crash, and an id is never reused for another
//! message. Normally that is one commit per loop turn, at the end-of-turn flush, however many
//! messages the turn carried. (A reader whose queue is at `--max-outbound` mid-turn is flushed
//! before it is judged, which commits what is pending at that point.)
//!
//! **Layout.** Table `rooms`: room key -> (epoch, display name, next sequence number). Table
//! `messages_v2`: (room key, sequence number) -> (timestamp, kind, flags, nick, text,
//! mentions), trimmed to the last `--retain` per room (at least `--history`) in the same
//! transaction that adds to it: memory holds the newest `--history`, and `/history` reads
//! further back from here ([`Store::older`], a page in one read transaction). The kind is [`Kind::code`]: a chat line, a `/me` action, or an application's message
//! (the HTTP API); the flags are 0 (kept for the states a message may take); the mentions
//! are the nicks it names, separated by spaces (a nick has none).
//! A store written before applications could publish has table `messages`, with a flag for
//! actions where the kind is now: it is copied into `messages_v2` and dropped, in one
//! transaction, when the store is opened.
//!
//! A store that cannot be opened or read (missing permissions, a corrupt file, another server
//! using it) is an error at start, naming the file; never a silent reset. A commit that fails
//! while running stops the server (nothing uncommitted has been sent).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use log::{debug, info};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::chat::history::Kind;
use crate::chat::{Ban, BanKey, Journal, Stored};

/// The database file inside `--data-dir`.
pub const FILE_NAME: &str = "history.redb";

const ROOMS: TableDefinition<&str, (&str, &str, u64)> = TableDefinition::new("rooms");
/// A kept message as the store holds it: (timestamp, kind, flags, nick, text, mentions, the
/// message an edit or a delete is about).
type MessageRow<'a> = (u64, u8, u8, &'a str, &'a str, &'a str, u64);
const MESSAGES: TableDefinition<(&str, u64), MessageRow> = TableDefinition::new("messages_v2");
/// The messages of a store from before [`Kind::Api`]: an action flag where the kind is now.
const MESSAGES_V1: TableDefinition<(&str, u64), (u64, bool, &str, &str)> = TableDefinition::new("messages");
/// `schema` -> the layout's version ([`SCHEMA`]): a store written by a later version, whose
/// layout this one does not know, is refused rather than misread.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// In `meta` while a delete's text may still be in freed pages: written in the delete's own
/// transaction, removed once the file is compacted, so a crash in between is compacted at the
/// next start (and only then: a start does not compact a store that owes nothing).
const SCRUB: &str = "scrub";
/// The layout this version writes: 2 since messages have a kind (`messages_v2`).
pub const SCHEMA: u64 = 2;
/// (signed-in user's folded nick, room key) -> the message id it read up to (`/read`).
const READ: TableDefinition<(&str, &str), &str> = TableDefinition::new("read");
/// `user:NAME` or `address:IP` -> (nick, until in ms since the Unix epoch, reason, by).
const BANS: TableDefinition<&str, (&str, u64, &str, &str)> = TableDefinition::new("bans");

/// A store failure, with the file it concerns.
#[derive(Debug)]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history store {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for StoreError {}

/// A room as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRoom {
    pub key: String,
    pub display: String,
    pub epoch: String,
    pub next_seq: u64,
    /// Oldest first.
    pub messages: Vec<Stored>,
}

/// Default for `--retain`: messages the store keeps per room.
pub const DEFAULT_RETAIN: usize = 10_000;

/// Least time between two compactions after deletes (see [`Store::scrub`]).
pub const SCRUB_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The open history database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
    /// Messages kept per room ([`DEFAULT_RETAIN`] unless [`Store::retaining`] says).
    retain: u64,
    /// A delete's text may still be in freed pages: the file is to be compacted.
    scrub_pending: bool,
    last_scrub: Option<std::time::Instant>,
}

impl Store {
    /// Opens (or creates) `dir/history.redb`, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE_NAME);
        let fail = |message: String| StoreError { path: path.clone(), message };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create the directory: {e}")))?;
        let db = Database::create(&path).map_err(|e| fail(format!("cannot open: {e}")))?;
        let mut store = Self {
            db,
            path: path.clone(),
            retain: DEFAULT_RETAIN as u64,
            scrub_pending: false,
            last_scrub: None,
        };
        store.scrub_pending = store.migrate().map_err(|e| fail(format!("cannot use the store: {e}")))?;
        // What a delete just before a crash left in freed pages goes now (not counted against
        // the first delete of this run, which is scrubbed at once).
        store.scrub();
        store.last_scrub = None;
        // Make every table exist, so a fresh store reads as empty rather than as an error.
        store.write(|_, _, _, _, _| Ok(())).map_err(|e| fail(format!("cannot write: {}", e.message)))?;
        Ok(store)
    }

    /// Refuses a store of a later layout; copies a store's messages from before [`Kind::Api`]
    /// into the current table and drops the old one; records the layout. True if a delete's
    /// compaction was still owed when the store was last closed (see [`Store::scrub`]).
    fn migrate(&self) -> Result<bool, String> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        let (schema, scrub) = {
            let meta = txn.open_table(META).map_err(|e| e.to_string())?;
            let get = |name| meta.get(name).map(|v| v.map(|v| v.value())).map_err(|e| e.to_string());
            (get("schema")?, get(SCRUB)?.is_some())
        };
        if let Some(schema) = schema.filter(|&schema| schema > SCHEMA) {
            return Err(format!(
                "written by a later version of wschat (layout {schema}; this one reads up to {SCHEMA})"
            ));
        }
        self.copy_messages_v1(&txn).map_err(|e| e.to_string())?;
        {
            let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
            meta.insert("schema", SCHEMA).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        Ok(scrub)
    }

    /// The messages of a store from before [`Kind::Api`], copied into the current table.
    fn copy_messages_v1(&self, txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        if !txn.list_tables()?.any(|table| table.name() == MESSAGES_V1.name()) {
            return Ok(());
        }
        let mut copied = 0;
        {
            let old = txn.open_table(MESSAGES_V1)?;
            let mut new = txn.open_table(MESSAGES)?;
            for entry in old.iter()? {
                let (id, value) = entry?;
                let (ts, action, from, text) = value.value();
                let kind = if action { Kind::Action } else { Kind::Line };
                new.insert(id.value(), (ts, kind.code().0, 0, from, text, "", 0))?;
                copied += 1;
            }
        }
        txn.delete_table(MESSAGES_V1)?;
        info!("history store {}: {copied} messages copied to this version's table", self.path.display());
        Ok(())
    }

    /// Keeps `retain` messages per room from now on (0: none).
    pub fn retaining(mut self, retain: usize) -> Self {
        self.retain = retain as u64;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl fmt::Display) -> StoreError {
        StoreError { path: self.path.clone(), message: message.to_string() }
    }

    /// Every room with its newest `newest` messages (what memory holds: `--history`).
    pub fn load(&self, newest: usize) -> Result<Vec<SavedRoom>, StoreError> {
        let read = || -> Result<Vec<SavedRoom>, redb::Error> {
            let txn = self.db.begin_read()?;
            let rooms = txn.open_table(ROOMS)?;
            let messages = txn.open_table(MESSAGES)?;
            let mut saved = Vec::new();
            for entry in rooms.iter()? {
                let (key, value) = entry?;
                let key = key.value().to_string();
                let (epoch, display, next_seq) = value.value();
                let mut room = SavedRoom {
                    key: key.clone(),
                    display: display.to_string(),
                    epoch: epoch.to_string(),
                    next_seq,
                    messages: Vec::new(),
                };
                for entry in messages.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))?.rev().take(newest)
                {
                    let (id, value) = entry?;
                    room.messages.push(stored(id.value().1, value.value()));
                }
                room.messages.reverse();
                saved.push(room);
            }
            Ok(saved)
        };
        read().map_err(|e| self.error(format!("cannot read: {e}")))
    }

    /// Up to `count` messages of room `key` before sequence number `before`, oldest first, and
    /// whether older ones are kept still (`/history` past what memory holds).
    pub fn older(&self, key: &str, before: u64, count: usize) -> Result<(Vec<Stored>, bool), StoreError> {
        let read = || -> Result<(Vec<Stored>, bool), redb::Error> {
            let txn = self.db.begin_read()?;
            let messages = txn.open_table(MESSAGES)?;
            let mut page = Vec::with_capacity(count);
            let mut more = false;
            for entry in messages.range((key, 0)..(key, before))?.rev() {
                if page.len() == count {
                    more = true;
                    break;
                }
                let (id, value) = entry?;
                page.push(stored(id.value().1, value.value()));
            }
            page.reverse();
            Ok((page, more))
        };
        read().map_err(|e| self.error(format!("cannot read: {e}")))
    }

    /// A signed-in user's read markers (`user`: its folded nick), as (room key, id).
    pub fn markers(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        let read = || -> Result<Vec<(String, String)>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(READ)?;
            let mut markers = Vec::new();
            for entry in table.range((user, "")..)? {
                let (key, id) = entry?;
                let (owner, room) = key.value();
                if owner != user {
                    break;
                }
                markers.push((room.to_string(), id.value().to_string()));
            }
            Ok(markers)
        };
        read().map_err(|e| self.error(format!("cannot read: {e}")))
    }

    /// The bans that have not ended.
    pub fn load_bans(&self) -> Result<Vec<(BanKey, Ban)>, StoreError> {
        let read = || -> Result<Vec<(BanKey, Ban)>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(BANS)?;
            let mut bans = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let (nick, until_ms, reason, by) = value.value();
                if let Some(key) = BanKey::from_store(key.value()) {
                    let ban = Ban { nick: nick.into(), until_ms, reason: reason.into(), by: by.into() };
                    bans.push((key, ban));
                }
            }
            Ok(bans)
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let bans = read().map_err(|e| self.error(format!("cannot read: {e}")))?;
        Ok(bans.into_iter().filter(|(_, ban)| ban.until_ms > now_ms).collect())
    }

    /// Records a batch of history changes in one durable transaction. A batch that deletes a
    /// message is followed by a compaction of the file, so that no byte of the deleted text
    /// stays in it (a copy-on-write store keeps freed pages as they were until reused; the
    /// compaction moves the live pages over them and cuts the file after them).
    pub fn commit(&mut self, journal: &[Journal]) -> Result<(), StoreError> {
        let mut deleted = false;
        self.write(|rooms, messages, bans, read, meta| {
            // Per room: the newest epoch/sequence and how far to trim, applied once.
            let mut touched: HashMap<&str, (&str, &str, u64)> = HashMap::new();
            for change in journal {
                match change {
                    Journal::Message { room, display, epoch, message } => {
                        let m = message;
                        let mentions = m.mentions.join(" ");
                        let ((kind, target), flags) = (m.kind.code(), if m.edited { EDITED } else { 0 });
                        messages.insert(
                            (&**room, m.seq),
                            (m.ts, kind, flags, &*m.from, &*m.text, &*mentions, target),
                        )?;
                        touched.insert(room, (epoch, display, m.seq + 1));
                        match m.kind {
                            Kind::Edit { target } => {
                                let old = messages.get((&**room, target))?.map(|row| {
                                    let (ts, kind, flags, from, _, mentions, about) = row.value();
                                    (ts, kind, flags | EDITED, from.to_string(), mentions.to_string(), about)
                                });
                                if let Some((ts, kind, flags, from, mentions, about)) = old {
                                    let row =
                                        (ts, kind, flags, from.as_str(), &*m.text, mentions.as_str(), about);
                                    messages.insert((&**room, target), row)?;
                                }
                            }
                            Kind::Delete { target } => {
                                deleted |= messages.remove((&**room, target))?.is_some();
                                // The edits of it hold its text too.
                                let mut edits = Vec::new();
                                for entry in messages.range((&**room, target + 1)..=(&**room, u64::MAX))? {
                                    let (id, row) = entry?;
                                    let (_, kind, _, _, _, _, about) = row.value();
                                    if Kind::from_code(kind, about) == (Kind::Edit { target }) {
                                        edits.push(id.value().1);
                                    }
                                }
                                for seq in edits {
                                    deleted |= messages.remove((&**room, seq))?.is_some();
                                }
                            }
                            _ => {}
                        }
                    }
                    Journal::Banned { key, ban } => {
                        bans.insert(
                            key.to_store().as_str(),
                            (&*ban.nick, ban.until_ms, &*ban.reason, &*ban.by),
                        )?;
                    }
                    Journal::Unbanned { key } => {
                        bans.remove(key.to_store().as_str())?;
                    }
                    Journal::Read { user, room, id } => {
                        read.insert((&**user, &**room), id.as_str())?;
                    }
                    Journal::RoomDropped { room } => {
                        touched.remove(&**room);
                        rooms.remove(&**room)?;
                        messages.retain_in((&**room, 0)..=(&**room, u64::MAX), |_, _| false)?;
                    }
                }
            }
            if deleted {
                meta.insert(SCRUB, 1)?;
            }
            for (room, (epoch, display, next_seq)) in touched {
                rooms.insert(room, (epoch, display, next_seq))?;
                let oldest_kept = next_seq.saturating_sub(self.retain);
                messages.retain_in((room, 0)..(room, oldest_kept), |_, _| false)?;
            }
            Ok(())
        })?;
        self.scrub_pending |= deleted;
        self.scrub();
        Ok(())
    }

    /// Compacts the file if a delete left freed pages holding its text: at once, unless the
    /// last compaction is under [`SCRUB_EVERY`] old (then at a later commit: the loop waits
    /// for a compaction, and deletes must not hold it without bound). A compaction that fails
    /// is logged and tried again later; one still owed when the server stopped (see [`SCRUB`])
    /// is done at the next start, so a text deleted just before a crash is gone once the
    /// server is back.
    fn scrub(&mut self) {
        let due = self.last_scrub.is_none_or(|at| at.elapsed() >= SCRUB_EVERY);
        if !self.scrub_pending || !due {
            return;
        }
        self.last_scrub = Some(std::time::Instant::now());
        let done = self.db.compact().map_err(|e| e.to_string()).and_then(|_| {
            self.write(|_, _, _, _, meta| Ok(meta.remove(SCRUB).map(drop)?)).map_err(|e| e.message)
        });
        match done {
            Ok(()) => self.scrub_pending = false,
            Err(e) => {
                log::error!("history store {}: compaction after a delete failed: {e}", self.path.display())
            }
        }
    }

    fn write(
        &self,
        change: impl FnOnce(
            &mut redb::Table<&str, (&str, &str, u64)>,
            &mut redb::Table<(&str, u64), MessageRow>,
            &mut redb::Table<&str, (&str, u64, &str, &str)>,
            &mut redb::Table<(&str, &str), &str>,
            &mut redb::Table<&str, u64>,
        ) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let run = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            {
                let mut rooms = txn.open_table(ROOMS)?;
                let mut messages = txn.open_table(MESSAGES)?;
                let mut bans = txn.open_table(BANS)?;
                let mut read = txn.open_table(READ)?;
                let mut meta = txn.open_table(META)?;
                change(&mut rooms, &mut messages, &mut bans, &mut read, &mut meta)?;
            }
            txn.commit()?;
            Ok(())
        };
        run().map_err(|e| self.error(format!("commit failed: {e}")))
    }
}

/// A stored row as a message.
fn stored(seq: u64, (ts, kind, flags, from, text, mentions, target): MessageRow) -> Stored {
    let (kind, mentions) =
        (Kind::from_code(kind, target), mentions.split_whitespace().map(Rc::from).collect());
    let edited = flags & EDITED != 0;
    Stored { author: 0, edited, seq, ts, from: Rc::from(from), text: text.into(), kind, mentions }
}

/// A stored message's flags: bit 0, its author edited it.
const EDITED: u8 = 1;

/// What stands between the chat's history changes and the sockets: changes journaled in a
/// turn are committed before any byte is written (see the module docs).
#[derive(Debug, Default)]
pub struct WriteBarrier {
    store: Option<Store>,
    pending: Vec<Journal>,
    /// Durable transactions committed so far (for the metrics).
    pub commits: u64,
    /// A commit failed: nothing may be written any more, and the server stops.
    pub failed: Option<StoreError>,
}

impl WriteBarrier {
    pub fn new(store: Option<Store>) -> Self {
        if let Some(store) = &store {
            info!("history is kept in {}", store.path().display());
        }
        Self { store, ..Self::default() }
    }

    pub fn is_durable(&self) -> bool {
        self.store.is_some()
    }

    /// Up to `count` messages of room `key` before `before`, from the store (see
    /// [`Store::older`]); none without one.
    pub fn older(&self, key: &str, before: u64, count: usize) -> Result<(Vec<Stored>, bool), StoreError> {
        match &self.store {
            Some(store) => store.older(key, before, count),
            None => Ok((Vec::new(), false)),
        }
    }

    /// A signed-in user's read markers from the store (see [`Store::markers`]); none without one.
    pub fn markers(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.store.as_ref().map_or(Ok(Vec::new()), |store| store.markers(user))
    }

    /// Where the caller puts the chat's journal (see `Chat::take_journal`).
    pub fn pending_mut(&mut self) -> &mut Vec<Journal> {
        &mut self.pending
    }

    /// Commits what is pending; false if writing to clients must not go on.
    pub fn before_write(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.pending.is_empty() {
            return true;
        }
        let Some(store) = &mut self.store else {
            self.pending.clear();
            return true;
        };
        match store.commit(&self.pending) {
            Ok(()) => {
                debug!("committed {} history change(s)", self.pending.len());
                self.commits += 1;
                self.pending.clear();
                true
            }
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;

    fn message(room: &str, seq: u64) -> Journal {
        let stored = Stored {
            author: 0,
            edited: false,
            seq,
            ts: 1000 + seq,
            from: Rc::from("alice"),
            text: format!("m{seq}").into(),
            kind: if seq == 2 { Kind::Action } else { Kind::Line },
            mentions: if seq == 3 { Box::new([Rc::from("bob"), Rc::from("Carol")]) } else { Box::new([]) },
        };
        Journal::Message {
            room: Rc::from(room),
            display: Rc::from(room.to_uppercase()),
            epoch: Rc::from("ep0ch"),
            message: Rc::new(stored),
        }
    }

    #[test]
    fn what_is_committed_is_read_back_trimmed_to_retain_after_reopening() {
        let dir = ScratchDir::new("store-roundtrip");
        {
            let mut store = Store::open(dir.path()).unwrap().retaining(2);
            assert_eq!(store.load(100).unwrap(), []);
            store.commit(&[message("dev", 1), message("dev", 2)]).unwrap();
            store.commit(&[message("dev", 3), message("ops", 1)]).unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let rooms = store.load(100).unwrap();
        assert_eq!(rooms.len(), 2);
        let dev = &rooms[0];
        assert_eq!(
            (dev.key.as_str(), dev.display.as_str(), dev.epoch.as_str(), dev.next_seq),
            ("dev", "DEV", "ep0ch", 4)
        );
        let seqs: Vec<u64> = dev.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [2, 3], "the last two (--retain 2)");
        assert!(
            dev.messages[0].kind == Kind::Action
                && &*dev.messages[1].text == "m3"
                && dev.messages[1].ts == 1003
        );
        assert_eq!(&*dev.messages[1].mentions, [Rc::from("bob"), Rc::from("Carol")], "mentions kept");
        let newest = store.load(1).unwrap();
        assert_eq!(newest[0].messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [3], "what memory holds");
        store.commit(&[Journal::RoomDropped { room: Rc::from("dev") }]).unwrap();
        let rooms = store.load(100).unwrap();
        assert_eq!(rooms.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["ops"]);
    }

    #[test]
    fn older_messages_are_read_a_page_at_a_time() {
        let dir = ScratchDir::new("store-older");
        let mut store = Store::open(dir.path()).unwrap();
        let journal: Vec<Journal> = (1..=10).map(|seq| message("dev", seq)).collect();
        store.commit(&journal).unwrap();
        let page = |before, count| {
            let (messages, more) = store.older("dev", before, count).unwrap();
            (messages.iter().map(|m| m.seq).collect::<Vec<_>>(), more)
        };
        assert_eq!(page(8, 3), (vec![5, 6, 7], true));
        assert_eq!(page(5, 4), (vec![1, 2, 3, 4], false), "exactly the rest");
        assert_eq!(page(2, 5), (vec![1], false));
        assert_eq!(page(1, 5), (vec![], false));
        assert_eq!(store.older("ops", 5, 5).unwrap(), (vec![], false), "another room's are not read");
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = ScratchDir::new("store-corrupt");
        std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 64 * 1024]).unwrap();
        let error = Store::open(dir.path()).expect_err("a corrupt store must not open");
        assert!(error.to_string().contains(FILE_NAME), "{error}");
    }

    #[test]
    fn a_store_from_before_api_messages_is_upgraded_when_opened() {
        let dir = ScratchDir::new("store-v1");
        {
            // What an earlier version wrote: the action flag where the kind is now.
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut rooms = txn.open_table(ROOMS).unwrap();
                rooms.insert("dev", ("ep0ch", "Dev", 3)).unwrap();
                let mut old = txn.open_table(MESSAGES_V1).unwrap();
                old.insert(("dev", 1), (1001, false, "alice", "hi")).unwrap();
                old.insert(("dev", 2), (1002, true, "alice", "waves")).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let rooms = store.load(100).unwrap();
        let kinds: Vec<(u64, Kind, &str)> =
            rooms[0].messages.iter().map(|m| (m.seq, m.kind, &*m.text)).collect();
        assert_eq!(kinds, [(1, Kind::Line, "hi"), (2, Kind::Action, "waves")]);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load(100).unwrap(), rooms, "opened again: nothing to upgrade, nothing lost");
        let txn = store.db.begin_read().unwrap();
        assert!(txn.list_tables().unwrap().all(|t| t.name() != MESSAGES_V1.name()), "the old table is gone");
    }

    #[test]
    fn a_store_of_a_later_layout_is_refused_not_misread() {
        let dir = ScratchDir::new("store-later");
        {
            let store = Store::open(dir.path()).unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("schema", SCHEMA + 1).unwrap();
            txn.commit().unwrap();
        }
        let error = Store::open(dir.path()).expect_err("a later layout must not be read");
        assert!(error.to_string().contains("written by a later version of wschat"), "{error}");
    }

    #[test]
    fn a_compaction_still_owed_when_the_store_closes_is_done_at_the_next_start() {
        let dir = ScratchDir::new("store-owed-scrub");
        const NEEDLE: &str = "owed-needle-5e4d3c2b1a";
        let file_holds_it = || {
            let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
            bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE.as_bytes())
        };
        {
            let mut store = Store::open(dir.path()).unwrap();
            let said = Journal::Message {
                room: Rc::from("dev"),
                display: Rc::from("dev"),
                epoch: Rc::from("ep0ch"),
                message: Rc::new(Stored { text: NEEDLE.into(), ..stored_row(1, Kind::Line) }),
            };
            store.commit(&[said]).unwrap();
            // A compaction just happened: this delete's waits for a later commit.
            store.last_scrub = Some(std::time::Instant::now());
            let delete = Journal::Message {
                room: Rc::from("dev"),
                display: Rc::from("dev"),
                epoch: Rc::from("ep0ch"),
                message: Rc::new(stored_row(2, Kind::Delete { target: 1 })),
            };
            store.commit(&[delete]).unwrap();
            assert!(store.scrub_pending);
            assert!(file_holds_it(), "deferred: the text is still in a freed page");
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.scrub_pending);
        assert!(!file_holds_it(), "the owed compaction was done when the store opened");
    }

    fn stored_row(seq: u64, kind: Kind) -> Stored {
        Stored {
            author: 0,
            edited: false,
            seq,
            ts: 1,
            from: Rc::from("alice"),
            text: "".into(),
            kind,
            mentions: Box::new([]),
        }
    }
}
