//! What each client of a simulated cluster saw, read back from its JSON-mode frames
//! ([`Event::from_json`], the inverse of what the server sends), and the rules that compare
//! what different clients saw: one order per room ([`check_one_order`]) and one message per
//! id ([`check_unique_ids`]).
//!
//! A client follows its own story from its events: its nick (the welcome, then its own nick
//! changes), the rooms it entered (its own joins), and the room messages it got, live or
//! replayed. Which joins and nick changes are its own, its frames cannot say (after a link
//! comes back two clients may share a nick until one is renamed): its process's broker says,
//! by the origin each announcement comes back with ([`Observed`] keeps them as [`Echoes`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use mio::Token;

use super::Received;
use crate::broker::{Broker, Notice, Request};
use crate::chat::{ClientId, Event};

/// A process's clients' own announcements (their joins, their nick changes) as they came back
/// to it, by client: what [`Seen::update`] tells its own from another client's by.
pub type Echoes = Rc<RefCell<HashMap<ClientId, Vec<Event>>>>;

/// A process's broker, as it is, with the announcements its notices say are its clients' own
/// copied to [`Echoes`] on their way to the chat. Every method is passed on: a default of the
/// trait's left in place would change what is tested.
pub struct Observed {
    pub broker: Box<dyn Broker>,
    pub echoes: Echoes,
}

impl Broker for Observed {
    fn request(&mut self, request: Request) {
        self.broker.request(request)
    }

    fn take_notices(&mut self, into: &mut Vec<Notice>) {
        let start = into.len();
        self.broker.take_notices(into);
        for notice in &into[start..] {
            if let Notice::Event { event, origin: Some(client), .. } = notice {
                self.echoes.borrow_mut().entry(*client).or_default().push(event.clone());
            }
        }
    }

    fn in_flight(&self, client: ClientId) -> bool {
        self.broker.in_flight(client)
    }

    fn is_saturated(&self) -> bool {
        self.broker.is_saturated()
    }

    fn has_spare_room(&self) -> bool {
        self.broker.has_spare_room()
    }

    fn saturations(&self) -> Option<u64> {
        self.broker.saturations()
    }

    fn forget(&mut self, client: ClientId) {
        self.broker.forget(client)
    }

    fn linked(&self) -> Option<bool> {
        self.broker.linked()
    }

    fn owns(&self, token: Token) -> bool {
        self.broker.owns(token)
    }

    fn on_event(&mut self, token: Token, readable: bool, writable: bool, now: Instant) {
        self.broker.on_event(token, readable, writable, now)
    }

    fn on_turn(&mut self, now: Instant) {
        self.broker.on_turn(now)
    }

    fn end_turn(&mut self, now: Instant) {
        self.broker.end_turn(now)
    }

    fn wake_at(&self, now: Instant) -> Option<Instant> {
        self.broker.wake_at(now)
    }

    fn leave(&mut self, now: Instant) {
        self.broker.leave(now)
    }

    fn release_memory(&mut self) {
        self.broker.release_memory()
    }
}

/// A room message as one client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenMessage {
    /// The room's name as shown.
    pub room: String,
    /// `EPOCH:SEQ`.
    pub id: String,
    pub from: String,
    pub text: String,
    /// Part of a replay rather than live.
    pub replay: bool,
}

/// Everything one client received, as events.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Its nick now, once welcomed.
    pub nick: Option<String>,
    pub welcomed: bool,
    /// Rooms it entered, in order: each join announced under its nick.
    pub joins: Vec<String>,
    /// Its nick changes (old, new), in order.
    pub renames: Vec<(String, String)>,
    /// The answers to its `/nick`s, in order: the nick it was renamed to, or refused.
    pub nick_answers: Vec<String>,
    /// Error texts, in order.
    pub errors: Vec<String>,
    pub messages: Vec<SeenMessage>,
    /// Frames read so far.
    read: usize,
    /// Its own announcements that came back to its process, not yet found among its frames.
    echoes: Vec<Event>,
}

impl Seen {
    /// Reads the frames received since the last call (`frames` is everything received), and
    /// `echoes`, its own announcements that came back since. Called after every step: an own
    /// announcement reaches its client in the step it comes back, so it is told from another
    /// client's event that looks the same.
    pub fn update(&mut self, frames: &[Received], echoes: Vec<Event>) {
        self.echoes = echoes;
        for frame in frames.get(self.read..).unwrap_or(&[]) {
            let event = (frame.opcode == 1).then(|| std::str::from_utf8(&frame.payload).ok()).flatten();
            if let Some(event) = event.and_then(Event::from_json) {
                self.take(event);
            }
        }
        self.read = frames.len();
    }

    /// Whether `event` is one of its own announcements (and takes it off the list).
    fn is_own(&mut self, event: &Event) -> bool {
        let found = self.echoes.iter().position(|echo| echo == event);
        found.map(|at| self.echoes.remove(at)).is_some()
    }

    fn take(&mut self, event: Event) {
        match event {
            Event::Welcome { nick, .. } => {
                self.nick = Some(nick.to_string());
                self.welcomed = true;
            }
            Event::Joined { ref room, .. } if self.is_own(&event) => self.joins.push(room.to_string()),
            Event::NickChanged { ref old, ref new, .. } if self.is_own(&event) => {
                self.renames.push((old.to_string(), new.to_string()));
                self.nick_answers.push(new.to_string());
                self.nick = Some(new.to_string());
            }
            Event::Error(text) => {
                // `nick "NAME" refused: why`
                let refused = text.strip_prefix("nick \"").and_then(|rest| rest.split_once("\" refused"));
                self.nick_answers.extend(refused.map(|(nick, _)| nick.to_string()));
                self.errors.push(text);
            }
            Event::Message(m) => self.messages.push(SeenMessage {
                room: m.room.to_string(),
                id: format!("{}:{}", m.epoch, m.message.seq),
                from: m.message.from.to_string(),
                text: m.message.text.to_string(),
                replay: m.replay,
            }),
            _ => {}
        }
    }

    /// The room it is in by its own account: where it last joined.
    pub fn room(&self) -> Option<&str> {
        self.joins.last().map(String::as_str)
    }

    /// Whether it received a message with this text, live or replayed.
    pub fn got(&self, text: &str) -> bool {
        self.messages.iter().any(|m| m.text == text)
    }

    /// Its live messages in `room`, as (id, text).
    fn live_in<'a>(&'a self, room: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.messages.iter().filter(move |m| !m.replay && m.room == room).map(|m| (&*m.id, &*m.text))
    }
}

/// Every client saw each room's messages in one order: no client got the same live message
/// twice, and any two messages two clients both got live came to both in the same order.
/// Returns the first breach, naming the clients by index in `seen`.
pub fn check_one_order(seen: &[Seen]) -> Result<(), String> {
    let mut rooms: Vec<&str> = seen.iter().flat_map(|s| s.messages.iter().map(|m| &*m.room)).collect();
    rooms.sort_unstable();
    rooms.dedup();
    for room in rooms {
        let mut positions: Vec<HashMap<(&str, &str), usize>> = Vec::with_capacity(seen.len());
        for (client, s) in seen.iter().enumerate() {
            let mut at = HashMap::new();
            for (position, message) in s.live_in(room).enumerate() {
                if at.insert(message, position).is_some() {
                    return Err(format!("client {client} got {message:?} in {room} live twice"));
                }
            }
            positions.push(at);
        }
        for (a, s) in seen.iter().enumerate() {
            for (b, theirs) in positions.iter().enumerate().skip(a + 1) {
                let mut last: Option<(usize, (&str, &str))> = None;
                for message in s.live_in(room).filter(|m| theirs.contains_key(m)) {
                    let position = theirs[&message];
                    if let Some((_, earlier)) = last.filter(|(before, _)| *before > position) {
                        let (first, then) = (earlier, message);
                        return Err(format!(
                            "in {room}, client {a} got {first:?} before {then:?}, client {b} after"
                        ));
                    }
                    last = Some((position, message));
                }
            }
        }
    }
    Ok(())
}

/// No id names two different messages, whoever received them, live or replayed.
pub fn check_unique_ids(seen: &[Seen]) -> Result<(), String> {
    let mut named: HashMap<(&str, &str), (&str, &str)> = HashMap::new();
    for s in seen {
        for m in &s.messages {
            let first = *named.entry((&m.room, &m.id)).or_insert((&m.from, &m.text));
            if first != (&*m.from, &*m.text) {
                return Err(format!(
                    "id {} in {} names both {first:?} and {:?}",
                    m.id,
                    m.room,
                    (&m.from, &m.text)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(messages: &[(&str, bool)]) -> Seen {
        let mut s = Seen::default();
        for (id, replay) in messages {
            s.messages.push(SeenMessage {
                room: "lobby".into(),
                id: id.to_string(),
                from: "a".into(),
                text: format!("text of {id}"),
                replay: *replay,
            });
        }
        s
    }

    #[test]
    fn two_clients_that_disagree_on_order_are_caught() {
        let a = seen(&[("e:1", false), ("e:2", false), ("e:3", false)]);
        let b = seen(&[("e:2", true), ("e:1", false), ("e:3", false)]);
        assert_eq!(check_one_order(&[a.clone(), b]), Ok(()), "a replay is not a live delivery");
        let c = seen(&[("e:3", false), ("e:1", false)]);
        assert!(check_one_order(&[a.clone(), c]).unwrap_err().contains("client 1 after"));
        let twice = seen(&[("e:1", false), ("e:1", false)]);
        assert!(check_one_order(&[twice]).unwrap_err().contains("twice"));
        assert_eq!(check_unique_ids(&[a.clone(), a]), Ok(()));
    }

    #[test]
    fn an_id_given_to_two_messages_is_caught() {
        let a = seen(&[("e:1", false)]);
        let mut b = seen(&[("e:1", false)]);
        b.messages[0].text = "something else".into();
        assert!(check_unique_ids(&[a, b]).unwrap_err().contains("names both"));
    }

    #[test]
    fn a_client_follows_its_own_nick_and_joins() {
        let texts: Vec<Received> = [
            r#"{"type":"welcome","nick":"ann","room":"lobby"}"#,
            r#"{"type":"joined","room":"lobby","nick":"bob"}"#,
            r#"{"type":"joined","room":"lobby","nick":"ann"}"#,
            r#"{"type":"nick","room":"lobby","old":"ann","new":"cy"}"#,
            r#"{"type":"joined","room":"dev","nick":"cy"}"#,
        ]
        .map(|text| Received { opcode: 1, payload: text.as_bytes().to_vec() })
        .to_vec();
        let event = |i: usize| Event::from_json(std::str::from_utf8(&texts[i].payload).unwrap()).unwrap();
        let mut s = Seen::default();
        s.update(&texts[..2], Vec::new());
        s.update(&texts[..4], vec![event(2), event(3)]);
        s.update(&texts, vec![event(4)]);
        assert_eq!(s.joins, ["lobby", "dev"]);
        assert_eq!(s.renames, [("ann".to_string(), "cy".to_string())]);
        s.update(
            &[Received {
                opcode: 1,
                payload: br#"{"type":"error","text":"nick \"bob\" refused: taken"}"#.to_vec(),
            }],
            Vec::new(),
        );
        assert_eq!(s.nick_answers, ["cy"], "frames already read are not read again");
        assert_eq!((s.nick.as_deref(), s.room()), (Some("cy"), Some("dev")));
    }
}
