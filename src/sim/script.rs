//! Scripted runs of a simulated cluster, and the rules every run must keep: what the cluster
//! property tests (`tests/simulation_cluster.rs`) and the fuzz target (`fuzz/`) share. A
//! [`Script`] is a seed, a number of processes, a network latency and a list of [`Action`]s
//! (clients connecting, talking, moving, renaming, hanging up; time passing; links cut,
//! stalled and healed; Redis stopped and started). [`run`] plays it, brings everything back
//! up at the end, and panics if a rule was broken. A panic here is a bug in the chat, the
//! broker or the model.
//!
//! The rules:
//! - **one order**: any two clients, on any processes, that both got two messages of a room
//!   live got them in the same order, and nobody got one live twice;
//! - **one message per id**: no `EPOCH:SEQ` of a room names two different messages;
//! - **own notices**: a client still connected at the end was welcomed, was told of each of
//!   its own joins, and was answered each `/nick` (its nick change, or why not), unless a
//!   fault came before the cluster next settled (a known bug loses them then: see
//!   `tests/simulation_cluster.rs`);
//! - **nothing lost**: a message said while every process was linked and nothing was wrong,
//!   with nothing going wrong before the cluster next settled, reached every member that was
//!   settled in its room when it was said and stayed there to the end;
//! - **one holder per nick**: at the end, no two connected clients share a nick (reported in
//!   the [`Outcome`] rather than checked here, for a known bug breaks it after faults).
//!
//! Clients and targets are chosen by index, modulo what exists, so any list of actions is a
//! valid script (what the fuzzer needs).

use std::time::Duration;

use super::cluster::{Member, SimCluster};
use super::observe::{check_one_order, check_unique_ids, Seen};
use crate::chat::names::fold;

/// The nicks clients ask for.
pub const NICKS: [&str; 5] = ["ann", "bob", "cy", "dee", "eve"];
/// The rooms clients go to.
pub const ROOMS: [&str; 3] = ["lobby", "dev", "ops"];
/// How long the end of a run waits for links a silent cut left dead to be noticed and made
/// again (a heartbeat every third of the presence TTL, then the reply timeout, then back-off).
const RECOVERY: Duration = Duration::from_secs(30);

/// One thing that happens in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A client connects to a process, asking for `NICKS[nick]` (or a guest nick), to enter
    /// `ROOMS[room]`.
    Connect {
        process: usize,
        nick: Option<usize>,
        room: usize,
    },
    /// A client says a line (its text is made unique by the run).
    Say {
        member: usize,
    },
    /// `/join ROOMS[room]`.
    Join {
        member: usize,
        room: usize,
    },
    /// `/nick NICKS[nick]`.
    Nick {
        member: usize,
        nick: usize,
    },
    /// A question: `/who`, `/rooms`, or `/msg` to `NICKS[what]`.
    Ask {
        member: usize,
        what: usize,
    },
    /// The client closes its connection.
    HangUp {
        member: usize,
    },
    /// Time passes (what is on the way meanwhile happens).
    Wait {
        micros: u64,
    },
    /// Everything on the way arrives.
    Settle,
    /// A process loses Redis: its link reset, or (`silent`) black-holed.
    Cut {
        process: usize,
        silent: bool,
    },
    /// A process's link takes this many more milliseconds each way, until healed.
    Stall {
        process: usize,
        millis: u64,
    },
    Heal {
        process: usize,
    },
    StopRedis {
        keep_data: bool,
    },
    StartRedis,
}

/// A cluster and what happens to it.
#[derive(Debug, Clone)]
pub struct Script {
    pub seed: u64,
    pub processes: usize,
    /// Longest a message takes to cross the network, one way.
    pub latency: Duration,
    pub actions: Vec<Action>,
}

impl Script {
    /// A script from arbitrary bytes (fuzzing): the first two choose the cluster, then every
    /// three bytes an action.
    pub fn from_bytes(data: &[u8]) -> Self {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let actions = data
            .get(2..)
            .unwrap_or(&[])
            .chunks(3)
            .map(|c| action(c[0], byte_at(c, 1), byte_at(c, 2)))
            .collect();
        Script {
            seed: u64::from(byte(0)),
            processes: 2 + usize::from(byte(1) % 2),
            latency: Duration::from_micros(u64::from(byte(1) / 2) * 50),
            actions,
        }
    }
}

fn byte_at(chunk: &[u8], i: usize) -> u8 {
    chunk.get(i).copied().unwrap_or(0)
}

/// The action three bytes stand for: mostly clients, some time, a few faults.
fn action(kind: u8, a: u8, b: u8) -> Action {
    let (a, b) = (usize::from(a), usize::from(b));
    match kind % 32 {
        0..=3 => Action::Connect { process: a, nick: (b % 6 < 5).then_some(b % 6), room: b / 6 },
        4..=11 => Action::Say { member: a },
        12..=14 => Action::Join { member: a, room: b },
        15..=16 => Action::Nick { member: a, nick: b },
        17 => Action::Ask { member: a, what: b },
        18 => Action::HangUp { member: a },
        19..=23 => Action::Wait { micros: (a * 256 + b) as u64 * 10 },
        24..=26 => Action::Settle,
        27 if b % 4 == 3 => Action::Stall { process: a, millis: b as u64 * 40 },
        27 => Action::Cut { process: a, silent: b % 2 == 1 },
        28..=29 => Action::Heal { process: a },
        30 => Action::StopRedis { keep_data: b % 2 == 1 },
        _ => Action::StartRedis,
    }
}

/// What a run did, for tests to see that it did something.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub clients: usize,
    /// Lines said.
    pub said: usize,
    /// Room messages received, over all clients.
    pub received: usize,
    /// Deliveries the "nothing lost" rule checked.
    pub checked_deliveries: usize,
    /// Nicks held by two connected clients at the end: (nick, client, client). Not a panic:
    /// a known bug breaks this after a link comes back (see `tests/simulation_cluster.rs`).
    pub shared_nicks: Vec<(String, usize, usize)>,
    /// Cuts, stalls and Redis stops.
    pub faults: usize,
    /// What each client received, as (room, text, replayed), in order: equal for equal runs.
    pub transcripts: Vec<Vec<(String, String, bool)>>,
}

/// Something a client must be told of itself (a room it entered, a nick it asked for).
struct Owed {
    what: String,
    /// Faults before it was asked, or None if its process was linked over a dead link then
    /// (a fault it had not noticed yet).
    faults: Option<usize>,
    /// Decided at the next settle: no fault came between, so it must arrive.
    required: Option<bool>,
}

impl Owed {
    fn new(what: &str, faults: Option<usize>) -> Self {
        Self { what: what.to_string(), faults, required: None }
    }

    fn is_required(&self) -> bool {
        self.required == Some(true)
    }
}

/// A client as the run follows it.
struct Tracked {
    member: Member,
    /// Rooms it must be told it entered, in order.
    entered: Vec<Owed>,
    /// Nicks it asked for with `/nick`, in order.
    asked: Vec<Owed>,
    hung_up: bool,
    /// The index of its last action that took it out of its room (a move, a hang-up).
    last_move: Option<usize>,
}

/// A line said, and who must get it.
struct Said {
    text: String,
    at: usize,
    /// Members settled in its room when it was said.
    members: Vec<usize>,
    /// Nothing was wrong when it was said.
    clean: bool,
    /// Faults before it was said.
    faults: usize,
    /// Decided at the next settle: it must arrive.
    must_arrive: Option<bool>,
}

struct Run {
    cluster: SimCluster,
    tracked: Vec<Tracked>,
    said: Vec<Said>,
    faults: usize,
}

/// Plays `script`, brings every link back, and checks every rule (panics on a breach).
pub fn run(script: &Script) -> Outcome {
    let processes = script.processes.max(1);
    let cluster = SimCluster::new(&SimCluster::settings(), processes, script.seed, script.latency);
    let mut run = Run { cluster, tracked: Vec::new(), said: Vec::new(), faults: 0 };
    for (at, action) in script.actions.iter().enumerate() {
        run.play(at, action);
    }
    run.finish();
    run.check()
}

impl Run {
    fn play(&mut self, at: usize, action: &Action) {
        let processes = self.cluster.processes();
        match *action {
            Action::Connect { process, nick, room } => self.connect(process % processes, nick, room),
            Action::Say { member } => self.say(at, member),
            Action::Join { member, room } => {
                let room = ROOMS[room % ROOMS.len()];
                let faults = self.faults_seen_by(member);
                if let Some(t) = self.pick(member) {
                    if t.entered.last().is_some_and(|r| r.what != room) {
                        t.entered.push(Owed::new(room, faults));
                    }
                    t.last_move = Some(at);
                    let member = t.member;
                    self.cluster.send_text(member, &format!("/join {room}"));
                }
            }
            Action::Nick { member, nick } => {
                let nick = NICKS[nick % NICKS.len()];
                let faults = self.faults_seen_by(member);
                if let Some(t) = self.pick(member) {
                    t.asked.push(Owed::new(nick, faults));
                    let member = t.member;
                    self.cluster.send_text(member, &format!("/nick {nick}"));
                }
            }
            Action::Ask { member, what } => {
                let line = match what % 4 {
                    0 => "/who".to_string(),
                    1 => "/rooms".to_string(),
                    n => format!("/msg {} hello", NICKS[(what / 4 + n) % NICKS.len()]),
                };
                if let Some(member) = self.pick(member).map(|t| t.member) {
                    self.cluster.send_text(member, &line);
                }
            }
            Action::HangUp { member } => {
                if let Some(t) = self.pick(member) {
                    (t.hung_up, t.last_move) = (true, Some(at));
                    let member = t.member;
                    self.cluster.hang_up(member);
                }
            }
            Action::Wait { micros } => self.cluster.advance(Duration::from_micros(micros)),
            Action::Settle => self.settle(),
            Action::Cut { process, silent } => {
                self.faults += 1;
                self.cluster.cut(process % processes, silent);
            }
            Action::Stall { process, millis } => {
                self.faults += 1;
                self.cluster.stall(process % processes, Duration::from_millis(millis));
            }
            Action::Heal { process } => self.cluster.heal(process % processes),
            Action::StopRedis { keep_data } => {
                self.faults += 1;
                self.cluster.stop_redis(keep_data);
            }
            Action::StartRedis => self.cluster.start_redis(),
        }
    }

    /// The faults so far, as what a client of `process` asks now is owed against: None if the
    /// process is linked over a link that no longer works (it will find out too late).
    fn faults_of(&self, process: usize) -> Option<usize> {
        let now = self.cluster.now();
        let unaware = self.cluster.is_linked(process) && !self.cluster.redis().works_for(process, now);
        (!unaware).then_some(self.faults)
    }

    /// [`Self::faults_of`] the process of the client chosen by `index`.
    fn faults_seen_by(&mut self, index: usize) -> Option<usize> {
        let process = self.pick(index)?.member.process;
        self.faults_of(process)
    }

    /// The client chosen by `index`, among those that have not hung up.
    fn pick(&mut self, index: usize) -> Option<&mut Tracked> {
        let count = self.tracked.iter().filter(|t| !t.hung_up).count();
        let n = index.checked_rem(count)?;
        self.tracked.iter_mut().filter(|t| !t.hung_up).nth(n)
    }

    fn connect(&mut self, process: usize, nick: Option<usize>, room: usize) {
        let room = ROOMS[room % ROOMS.len()];
        let nick = nick.map_or(String::new(), |n| format!("&nick={}", NICKS[n % NICKS.len()]));
        let member = self.cluster.connect(process, &format!("/?room={room}{nick}"));
        self.tracked.push(Tracked {
            member,
            entered: vec![Owed::new(room, self.faults_of(process))],
            asked: Vec::new(),
            hung_up: false,
            last_move: None,
        });
    }

    fn say(&mut self, at: usize, member: usize) {
        let text = format!("line {}", self.said.len());
        let Some(sender) = self.pick(member) else { return };
        let (sender, room) =
            (sender.member, sender.entered.last().map(|r| r.what.clone()).unwrap_or_default());
        let members = (0..self.tracked.len())
            .filter(|&i| {
                let (t, seen) = (&self.tracked[i], self.cluster.seen(self.tracked[i].member));
                !t.hung_up && seen.joins.len() == t.entered.len() && seen.room() == Some(&room)
            })
            .collect();
        let linked = (0..self.cluster.processes()).all(|p| self.cluster.is_linked(p));
        let clean = linked && self.cluster.redis().is_healthy(self.cluster.now());
        self.said.push(Said {
            text: text.clone(),
            at,
            members,
            clean,
            faults: self.faults,
            must_arrive: None,
        });
        self.cluster.send_text(sender, &text);
    }

    /// Everything on the way arrives; what was said cleanly, and what a client must be told of
    /// itself, with no fault since, must have.
    fn settle(&mut self) {
        self.cluster.settle();
        for said in self.said.iter_mut().filter(|s| s.must_arrive.is_none()) {
            said.must_arrive = Some(said.clean && said.faults == self.faults);
        }
        let owed = self.tracked.iter_mut().flat_map(|t| t.entered.iter_mut().chain(&mut t.asked));
        for owed in owed.filter(|o| o.required.is_none()) {
            owed.required = Some(owed.faults == Some(self.faults));
        }
    }

    /// Every link back, and time for the links a silent cut left dead to be noticed and made
    /// again.
    fn finish(&mut self) {
        self.settle();
        self.cluster.start_redis();
        for process in 0..self.cluster.processes() {
            self.cluster.heal(process);
        }
        self.cluster.settle();
        self.cluster.advance(RECOVERY);
        self.settle();
    }

    fn check(mut self) -> Outcome {
        let seen: Vec<Seen> = self.tracked.iter().map(|t| self.cluster.seen(t.member).clone()).collect();
        if let Err(breach) = check_one_order(&seen).and_then(|()| check_unique_ids(&seen)) {
            panic!("{breach}");
        }
        for (i, t) in self.tracked.iter().enumerate() {
            if !t.hung_up && self.cluster.is_connected(t.member) {
                if let Err(breach) = check_own_notices(i, t, &seen[i]) {
                    panic!("{breach}; it received:\n{}", self.cluster.texts(t.member).join("\n"));
                }
            }
        }
        let checked_deliveries = self.check_nothing_lost();
        let shared_nicks = self.shared_nicks();
        Outcome {
            clients: self.tracked.len(),
            said: self.said.len(),
            received: seen.iter().map(|s| s.messages.len()).sum(),
            checked_deliveries,
            shared_nicks,
            faults: self.faults,
            transcripts: seen
                .iter()
                .map(|s| s.messages.iter().map(|m| (m.room.clone(), m.text.clone(), m.replay)).collect())
                .collect(),
        }
    }

    /// Every line that had to arrive did, for every member that stayed; returns how many
    /// deliveries that was.
    fn check_nothing_lost(&self) -> usize {
        let mut checked = 0;
        for said in self.said.iter().filter(|s| s.must_arrive == Some(true)) {
            for &i in &said.members {
                let t = &self.tracked[i];
                let stayed =
                    t.last_move.is_none_or(|moved| moved < said.at) && self.cluster.is_connected(t.member);
                if stayed {
                    assert!(
                        self.cluster.seen(t.member).got(&said.text),
                        "client {i} ({:?}) never got {:?}",
                        t.member,
                        said.text
                    );
                    checked += 1;
                }
            }
        }
        checked
    }

    /// Nicks two connected clients hold at once: (nick, one client, the other).
    fn shared_nicks(&self) -> Vec<(String, usize, usize)> {
        let mut nicks: Vec<(String, usize)> = (self.tracked.iter().enumerate())
            .filter(|(_, t)| !t.hung_up && self.cluster.is_connected(t.member))
            .filter_map(|(i, t)| Some((fold(self.cluster.nick(t.member)?), i)))
            .collect();
        nicks.sort();
        nicks.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| (w[0].0.clone(), w[0].1, w[1].1)).collect()
    }
}

/// A client still connected was welcomed, told of each of its joins (once), and answered
/// each `/nick` (its own nick change to it, or a refusal naming it), in order; what a fault
/// came between may be missing (see `Owed`), nothing else.
fn check_own_notices(i: usize, t: &Tracked, seen: &Seen) -> Result<(), String> {
    let who = format!("client {i} ({:?})", t.member);
    if !seen.welcomed {
        return Err(format!("{who} was never welcomed"));
    }
    let owed = |list: &[Owed]| list.iter().map(|o| (o.what.clone(), o.required)).collect::<Vec<_>>();
    if seen.joins.len() > t.entered.len() {
        return Err(format!(
            "{who} was told of joins it never made: {:?}, owed {:?}",
            seen.joins,
            owed(&t.entered)
        ));
    }
    let mut joins = seen.joins.iter();
    if let Some(missing) = t.entered.iter().filter(|o| o.is_required()).find(|o| !joins.any(|j| *j == o.what))
    {
        return Err(format!(
            "{who} was not told it joined {}: told {:?}, owed {:?}",
            missing.what,
            seen.joins,
            owed(&t.entered)
        ));
    }
    let mut answers = seen.nick_answers.iter();
    if let Some(missing) = t.asked.iter().filter(|o| o.is_required()).find(|o| !answers.any(|a| *a == o.what))
    {
        return Err(format!(
            "{who}: /nick {} was never answered: answers {:?}, asked {:?}",
            missing.what,
            seen.nick_answers,
            owed(&t.asked)
        ));
    }
    Ok(())
}
