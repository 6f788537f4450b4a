//! The `permessage-deflate` handshake (RFC 7692 section 7.1): the server's answer to a client's
//! offers, and a client's offer and its check of the answer.
//!
//! The server accepts only with no context takeover in both directions: then no compression
//! state outlives a message, one compressor serves every recipient of a broadcast and one
//! inflater every sender (see [`codec`](super::codec)). A client's `server_max_window_bits` is
//! honoured; its `client_max_window_bits` needs no answer (the inflater takes any window). An
//! offer with a parameter it does not know, a repeated one or a bad value is declined, and the
//! next offer tried; if none is acceptable the connection goes on uncompressed.

use super::codec::MAX_WINDOW_BITS;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// What a client and the server agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The largest window the server may compress with for this client (RFC 7692
    /// `server_max_window_bits`; 15 unless the client asked for less).
    pub window_bits: u8,
}

/// The server's answer to the `Sec-WebSocket-Extensions` header values of a request: the first
/// acceptable `permessage-deflate` offer, and the header value that accepts it; `None` if there
/// is none.
pub fn answer<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<(Agreement, String)> {
    headers.into_iter().flat_map(|value| value.split(',')).find_map(accept_offer)
}

/// One offer (`permessage-deflate; param; param=value`), accepted or not.
fn accept_offer(offer: &str) -> Option<(Agreement, String)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut window = None;
    let mut seen = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(value)) => window = Some(window_bits(value)?),
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(value)) => {
                window_bits(value)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    let mut response = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = window {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some((Agreement { window_bits: window.unwrap_or(MAX_WINDOW_BITS) }, response))
}

/// A parameter's value: a token, or a quoted string without escapes (RFC 7692 values are
/// digits).
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains(['"', '\\'])),
        None => Some(value),
    }
}

/// A window size parameter: 8 to 15, in decimal without leading zeros (RFC 7692 7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    let bits: u8 = value.parse().ok().filter(|_| !value.starts_with('0') && value.len() <= 2)?;
    (8..=MAX_WINDOW_BITS).contains(&bits).then_some(bits)
}

/// What wschat's own clients offer: both sides without context takeover, so that neither keeps
/// a zlib state between messages.
pub const CLIENT_OFFER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A client's check of the server's `Sec-WebSocket-Extensions` answer to [`CLIENT_OFFER`]: true
/// if the server accepted it, false if it answered nothing; an error for an answer the offer
/// did not allow (another extension, a parameter it did not offer), which RFC 6455 (9.1) says
/// fails the connection.
pub fn check_answer(value: Option<&str>) -> Result<bool, String> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    let mut parts = value.split(';').map(str::trim);
    if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case(EXTENSION)) || value.contains(',') {
        return Err(format!("the server answered with an extension not offered: {value:?}"));
    }
    for param in parts {
        let (name, value) = param.split_once('=').map_or((param, None), |(n, v)| (n.trim(), Some(v.trim())));
        let fine = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => value.is_none(),
            "server_max_window_bits" => value.and_then(unquote).and_then(window_bits).is_some(),
            _ => false,
        };
        if !fine {
            return Err(format!(
                "the server answered permessage-deflate with {param:?}, which was not offered"
            ));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn agreed(headers: &[&str]) -> Option<(u8, String)> {
        answer(headers.iter().copied()).map(|(agreement, response)| (agreement.window_bits, response))
    }

    #[test]
    fn a_bare_offer_is_accepted_without_context_takeover() {
        assert_eq!(agreed(&["permessage-deflate"]), Some((15, BOTH.to_string())));
        // What browsers send.
        assert_eq!(agreed(&["permessage-deflate; client_max_window_bits"]), Some((15, BOTH.to_string())));
        assert_eq!(agreed(&["Permessage-Deflate; CLIENT_NO_CONTEXT_TAKEOVER"]), Some((15, BOTH.to_string())));
    }

    #[test]
    fn a_server_window_is_honoured() {
        let (bits, response) = agreed(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert_eq!(bits, 10);
        assert_eq!(response, format!("{BOTH}; server_max_window_bits=10"));
        assert_eq!(agreed(&["permessage-deflate; server_max_window_bits=\"8\""]).unwrap().0, 8);
        assert_eq!(agreed(&["permessage-deflate; client_max_window_bits=9"]).unwrap().0, 15);
    }

    #[test]
    fn offers_that_cannot_be_honoured_are_declined_and_the_next_one_tried() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; mystery",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(agreed(&[bad]), None, "{bad}");
        }
        let (bits, _) = agreed(&[
            "x-webkit-deflate-frame, permessage-deflate; mystery",
            "permessage-deflate; server_max_window_bits=12",
        ])
        .unwrap();
        assert_eq!(bits, 12);
    }

    #[test]
    fn a_client_checks_the_answer() {
        assert_eq!(check_answer(None), Ok(false));
        assert_eq!(check_answer(Some(BOTH)), Ok(true));
        assert_eq!(check_answer(Some(&format!("{BOTH}; server_max_window_bits=10"))), Ok(true));
        assert!(check_answer(Some("x-other")).is_err());
        assert!(check_answer(Some("permessage-deflate; client_max_window_bits=10")).is_err());
        assert!(check_answer(Some("permessage-deflate, permessage-deflate")).is_err());
    }
}
