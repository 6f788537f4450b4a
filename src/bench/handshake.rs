//! A bench connection's opening handshake: the upgrade request with what the run offers
//! ([`Offers`]: `permessage-deflate` with `--deflate`, the `wschat.json` subprotocol with
//! `--json-mode`), and the check of the server's response, which says what was agreed.
//!
//! A server that declines `permessage-deflate` is answered as a browser would: the connection
//! goes on uncompressed, and the run reports how many connections negotiated it. A server that
//! answers with something that was not offered fails the connection (RFC 6455 9.1), as does a
//! server that does not select `wschat.json` when it was asked for: JSON mode measures wschat's
//! JSON events, and nothing else is what the user asked to measure.

use crate::chat::JSON_SUBPROTOCOL;
use crate::deflate::negotiate::{check_answer, CLIENT_OFFER};
use crate::wire::UpgradeRequest;

/// What every connection of a run offers in its upgrade request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offers {
    /// `--deflate`: offer `permessage-deflate` without context takeover.
    pub deflate: bool,
    /// `--json-mode`: offer the `wschat.json` subprotocol.
    pub json_mode: bool,
}

/// What the server agreed to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agreed {
    /// Messages from the server may come compressed (RSV1).
    pub deflate: bool,
}

/// The upgrade request for `path` on `host`, with the offers.
pub fn request(host: &str, path: &str, offers: Offers) -> Vec<u8> {
    let mut request = UpgradeRequest::new(host, path);
    if offers.deflate {
        request = request.header("Sec-WebSocket-Extensions", CLIENT_OFFER);
    }
    if offers.json_mode {
        request = request.header("Sec-WebSocket-Protocol", JSON_SUBPROTOCOL);
    }
    request.to_bytes()
}

/// The values of every header called `name` (any case) in a response head, in order.
fn header_values<'a>(head: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    head.split("\r\n").skip(1).filter_map(move |line| {
        let (field, value) = line.split_once(':')?;
        field.trim().eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

/// Checks the response `head` (up to its blank line) against `offers`: what was agreed, or why
/// the connection fails.
pub fn check_response(head: &[u8], offers: Offers) -> Result<Agreed, String> {
    let head = String::from_utf8_lossy(head);
    let status_line = head.split("\r\n").next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.1 101") {
        // "HTTP/1.1 404 Not Found" says it all.
        return Err(format!("the server answered {}", status_line.get(9..).unwrap_or_default()));
    }
    let extensions: Vec<&str> = header_values(&head, "Sec-WebSocket-Extensions").collect();
    let deflate = match (offers.deflate, extensions.is_empty()) {
        (_, true) => false,
        (false, false) => {
            return Err(format!("the server answered with extensions that were not offered: {extensions:?}"))
        }
        // Several headers answer for several extensions, which is one more than offered.
        (true, false) => check_answer(Some(&extensions.join(", ")))?,
    };
    let protocols: Vec<&str> = header_values(&head, "Sec-WebSocket-Protocol").collect();
    match (offers.json_mode, protocols.as_slice()) {
        (true, [JSON_SUBPROTOCOL]) | (false, []) => {}
        (true, []) => {
            return Err(format!(
                "the server did not select the {JSON_SUBPROTOCOL} subprotocol (--json-mode is for wschat)"
            ))
        }
        (_, other) => {
            return Err(format!("the server selected a subprotocol that was not offered: {other:?}"))
        }
    }
    Ok(Agreed { deflate })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Offers = Offers { deflate: true, json_mode: true };

    fn response(headers: &str) -> Vec<u8> {
        format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{headers}")
            .into_bytes()
    }

    #[test]
    fn the_request_carries_the_offers() {
        let plain = String::from_utf8(request("h:1", "/", Offers::default())).unwrap();
        assert!(!plain.contains("Extensions") && !plain.contains("Protocol"), "{plain}");
        let both = String::from_utf8(request("h:1", "/?nick=b", BOTH)).unwrap();
        assert!(both.starts_with("GET /?nick=b HTTP/1.1\r\nHost: h:1\r\n"), "{both}");
        assert!(both.contains(&format!("\r\nSec-WebSocket-Extensions: {CLIENT_OFFER}\r\n")), "{both}");
        assert!(both.contains("\r\nSec-WebSocket-Protocol: wschat.json\r\n") && both.ends_with("\r\n\r\n"));
    }

    #[test]
    fn an_accepted_offer_is_agreed_and_a_declined_one_is_not() {
        let accepted = response(&format!(
            "sec-websocket-extensions: {CLIENT_OFFER}\r\nSec-WebSocket-Protocol: wschat.json\r\n"
        ));
        assert_eq!(check_response(&accepted, BOTH), Ok(Agreed { deflate: true }));
        let declined = response("Sec-WebSocket-Protocol: wschat.json\r\n");
        assert_eq!(check_response(&declined, BOTH), Ok(Agreed { deflate: false }));
        let offers = Offers { deflate: true, json_mode: false };
        assert_eq!(check_response(&response(""), offers), Ok(Agreed { deflate: false }));
        assert_eq!(check_response(&response(""), Offers::default()), Ok(Agreed::default()));
    }

    #[test]
    fn answers_that_were_not_offered_fail_the_connection() {
        let deflate = Offers { deflate: true, json_mode: false };
        let unasked = response(&format!("Sec-WebSocket-Extensions: {CLIENT_OFFER}\r\n"));
        assert!(check_response(&unasked, Offers::default()).unwrap_err().contains("not offered"));
        let other = response("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n");
        assert!(check_response(&other, deflate).unwrap_err().contains("not offered"));
        let twice = response(&format!(
            "Sec-WebSocket-Extensions: {CLIENT_OFFER}\r\nSec-WebSocket-Extensions: {CLIENT_OFFER}\r\n"
        ));
        assert!(check_response(&twice, deflate).is_err());
        let json = Offers { deflate: false, json_mode: true };
        assert!(check_response(&response(""), json).unwrap_err().contains("did not select"));
        let chat = response("Sec-WebSocket-Protocol: chat\r\n");
        assert!(check_response(&chat, json).unwrap_err().contains("not offered"));
        assert!(check_response(&chat, Offers::default()).is_err());
    }

    #[test]
    fn a_refusal_says_the_status() {
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n";
        assert_eq!(check_response(refused, BOTH), Err("the server answered 404 Not Found".into()));
    }
}
