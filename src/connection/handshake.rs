//! The first phase of a connection: reading the HTTP request head, answering it (the page or
//! an error), or completing the WebSocket upgrade with tungstenite.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use log::debug;
use tungstenite::handshake::server::{Request, Response};
use tungstenite::http::header::{HeaderValue, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL};

use super::{Admission, Clock, Connection, HandshakeStream, Phase, Protocol, Route, Step, Stream};
use crate::auth::{unix_now, Identity, Token};
use crate::chat::{Bans, JSON_SUBPROTOCOL};
use crate::deflate::negotiate;
use crate::http::{self, Decision, Endpoint, HeadProgress, Reply};
use crate::logline::quoted;
use crate::metrics::Verdict;
use crate::rate::RateLimiter;
use crate::remote_warn;
use crate::settings::Settings;

/// The identity the token a client presented proves, when the server has keys, or the 401 to
/// answer (see [`Auth::admission`](crate::auth::Auth::admission)). Without keys a token is
/// ignored and the client is a guest.
fn authenticate(token: Option<Token>, settings: &Settings) -> Result<Option<Box<Identity>>, Reply> {
    let Some(auth) = &settings.auth else { return Ok(None) };
    let identity = auth.admission(token.as_ref(), settings.require_auth, unix_now());
    identity.map(|identity| identity.map(Box::new)).map_err(|refusal| Reply::unauthorized(refusal.0))
}

impl<S: Stream> Connection<S> {
    pub(super) fn read_head(&mut self, settings: &Settings, bans: &Bans, clock: Clock) -> Step {
        let Phase::Head { transport, head, .. } = &mut self.phase else {
            return Step::Done;
        };
        let mut chunk = [0u8; 2048];
        loop {
            match io::Read::read(&mut transport.socket, &mut chunk) {
                Ok(0) => return Step::Gone("closed before the handshake".into()),
                Ok(n) => {
                    transport.note_read(n);
                    head.0.extend_from_slice(&chunk[..n]);
                    match http::head_progress(&head.0) {
                        HeadProgress::Incomplete => {}
                        HeadProgress::Complete => break,
                        HeadProgress::Refused(reply) => return self.reject(reply, clock, settings),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Done,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        // The only invalid data below the HTTP head is a TLS failure.
                        self.verdict = Some(Verdict::Tls);
                    }
                    return Step::Gone(format!("read failed during handshake: {e}").into());
                }
            }
        }
        match http::decide(&head.0, &settings.origins, settings.tls.is_some()) {
            Decision::Serve(reply) => self.respond(reply, clock, settings),
            Decision::Reject(reply) => self.reject(reply, clock, settings),
            Decision::Upgrade(..) if self.admission == Admission::ShuttingDown => {
                // Expected while draining, not the client's fault: no warning, no bad verdict.
                debug!("{}: answering 503: the server is shutting down", self.peer);
                self.respond(Reply::shutting_down(), clock, settings)
            }
            Decision::Upgrade(..) if self.admission == Admission::ServerFull => {
                self.verdict = Some(Verdict::ServerFull);
                self.reject(Reply::service_unavailable(), clock, settings)
            }
            Decision::Upgrade(..) if self.admission == Admission::AddressFull => {
                self.verdict = Some(Verdict::AddressFull);
                self.reject(Reply::too_many_from_address(), clock, settings)
            }
            Decision::Upgrade(mut endpoint, token) => {
                let ignored = token.is_some() && settings.auth.is_none();
                match self.admit_token(token, settings, bans) {
                    Ok(identity) => {
                        if let Endpoint::Chat(query) = &mut endpoint {
                            self.note_ignored_token(query, ignored);
                        }
                        self.upgrade(endpoint, identity, settings, clock)
                    }
                    Err(reply) => self.reject(reply, clock, settings),
                }
            }
            Decision::CheckSession(token) => match self.admit_token(token, settings, bans) {
                Ok(_) => self.respond(Reply::session_ok(), clock, settings),
                Err(reply) => self.reject(reply, clock, settings),
            },
            Decision::Health(head_only) => Step::Health(head_only),
        }
    }

    /// Answers a request whose reply the hub made ([`Step::Health`]), then finishes.
    pub fn answer(&mut self, reply: Reply, clock: Clock, settings: &Settings) {
        self.respond(reply, clock, settings);
    }

    /// The identity a presented token proves, once it is checked (see [`authenticate`]) and the
    /// user (or, for a guest, the address) is not banned; else the 401 or 403 to answer.
    fn admit_token(
        &mut self,
        token: Option<Token>,
        settings: &Settings,
        bans: &Bans,
    ) -> Result<Option<Box<Identity>>, Reply> {
        let identity =
            authenticate(token, settings).inspect_err(|_| self.verdict = Some(Verdict::Unauthorized))?;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let sub = identity.as_ref().map(|identity| identity.sub.as_str());
        if let Some(ban) = bans.check(sub, self.peer.get().ip(), now_ms) {
            self.verdict = Some(Verdict::Banned);
            return Err(Reply::new(403, "Forbidden", ban.refusal(now_ms)));
        }
        Ok(identity)
    }

    /// A chat client presented a token that this server, without sign-in keys, cannot check:
    /// it is told so in the chat, and the operator in the log (an `info` line within the budget
    /// of client-triggered lines, since any client can send one).
    fn note_ignored_token(&self, query: &mut http::ChatQuery, ignored: bool) {
        query.ignored_token = ignored;
        if ignored {
            let line = "presented a token, but this server has no sign-in keys (--jwt-secret, \
                        --jwt-public-key): it joins as a guest";
            if crate::logline::warning_allowed() {
                log::info!("{}: {line}", self.peer);
            } else {
                debug!("{}: {line}", self.peer);
            }
        }
    }

    /// Hands the request to tungstenite, which validates it once more and writes the 101
    /// response; the response is queued and the WebSocket set up over the socket.
    fn upgrade(
        &mut self,
        endpoint: Endpoint,
        identity: Option<Box<Identity>>,
        settings: &Settings,
        clock: Clock,
    ) -> Step {
        let Phase::Head { mut transport, head } = std::mem::replace(&mut self.phase, Phase::Gone) else {
            return Step::Done;
        };
        let mut stream = HandshakeStream { head: &head.0, response: Vec::new() };
        let json = matches!(&endpoint, Endpoint::Chat(query) if query.json);
        let mut deflate = None;
        // The signature is tungstenite's handshake callback's; its error type is not ours.
        #[allow(clippy::result_large_err)]
        let select_subprotocol = |request: &Request, mut response: Response| {
            if json {
                response
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(JSON_SUBPROTOCOL));
            }
            if settings.deflate {
                let offers = request.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
                if let Some((agreement, answer)) =
                    negotiate::answer(offers.iter().filter_map(|v| v.to_str().ok()))
                {
                    if let Ok(answer) = HeaderValue::from_str(&answer) {
                        response.headers_mut().insert(SEC_WEBSOCKET_EXTENSIONS, answer);
                        deflate = Some(agreement);
                    }
                }
            }
            Ok(response)
        };
        if let Err(e) =
            tungstenite::accept_hdr_with_config(&mut stream, select_subprotocol, Some(settings.websocket))
        {
            // http::decide already checked what tungstenite checks, so this is not expected.
            remote_warn!("{}: handshake refused by tungstenite: {e}", self.peer);
            self.phase = Phase::Head { transport, head: Box::default() };
            return self.reject(
                Reply::new(400, "Bad Request", "invalid WebSocket handshake"),
                clock,
                settings,
            );
        }
        transport.outbox.push(Bytes::from(stream.response));
        transport.deflate_window = deflate.map_or(0, |agreement| agreement.window_bits);
        let route = match endpoint {
            Endpoint::Chat(_) => Route::Chat,
            Endpoint::Echo => Route::Echo,
        };
        // Parked until the client's first frame arrives.
        self.phase = Phase::Open { transport, ws: Protocol::default(), route, closing: false };
        self.last_heard = clock.tick();
        self.rate = RateLimiter::new(settings.max_messages_per_sec, clock.ms as u32);
        if let Some(identity) = &identity {
            // The token's expiry, on the loop's clock.
            self.extend_session(identity.expires_at(clock.now, unix_now()));
        }
        Step::Upgraded(endpoint, identity)
    }

    /// Logs and queues an HTTP error reply.
    fn reject(&mut self, reply: Reply, clock: Clock, settings: &Settings) -> Step {
        if self.verdict.is_none() {
            self.verdict = Some(if reply.status == 403 { Verdict::Origin } else { Verdict::BadRequest });
        }
        // The body may repeat what the client sent (an Origin): quoted and cut short.
        let why = quoted(String::from_utf8_lossy(&reply.body).trim_end());
        // Refusals an operator should see: a full server, and browsers from other sites
        // (a misconfigured --allowed-origins looks exactly like this).
        if reply.status == 503 || reply.status == 403 {
            remote_warn!("{}: answering {} {}: {why}", self.peer, reply.status, reply.reason);
        } else {
            debug!("{}: answering {} {}: {why}", self.peer, reply.status, reply.reason);
        }
        self.respond(reply, clock, settings)
    }

    /// Queues an HTTP response, then finishes (one request per connection).
    fn respond(&mut self, reply: Reply, clock: Clock, settings: &Settings) -> Step {
        if reply.status < 400 {
            debug!("{}: {} {}", self.peer, reply.status, reply.reason);
        }
        let (head, body) = reply.into_parts();
        if let Some(transport) = self.transport_mut() {
            transport.outbox.push(head);
            if let Some(body) = body {
                transport.outbox.push(body);
            }
        }
        self.finish(clock, settings, true);
        Step::Done
    }
}
