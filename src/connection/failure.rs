//! What a read error from tungstenite means for a connection, and the close frame that says so.

use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;

/// How a read error ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The client broke the protocol or a limit: send this close code and reason, then close.
    Close(CloseCode, String),
    /// The close handshake is complete.
    Closed,
    /// The connection is gone (reset, dropped without a close); nothing can be sent.
    Dropped(String),
}

impl Failure {
    /// Maps an error to the close code RFC 6455 asks for (7.4.1).
    pub fn of(error: WsError) -> Self {
        match error {
            WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                Self::Close(CloseCode::Size, format!("message too big: {size} bytes, limit {max_size}"))
            }
            WsError::Capacity(e) => Self::Close(CloseCode::Size, e.to_string()),
            // tungstenite reports a bad close reason exactly like a bad text message.
            WsError::Utf8(_) => {
                Self::Close(CloseCode::Invalid, "invalid UTF-8 in a text message or close reason".to_string())
            }
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                Self::Dropped("connection dropped without a close".to_string())
            }
            WsError::Protocol(e) => Self::Close(CloseCode::Protocol, e.to_string()),
            WsError::Io(e) => Self::Dropped(format!("connection lost: {e}")),
            WsError::ConnectionClosed | WsError::AlreadyClosed => Self::Closed,
            other => Self::Close(CloseCode::Error, format!("internal error: {other}")),
        }
    }
}

/// A close frame with `reason` cut to the 123 bytes RFC 6455 (5.5) allows, at a character
/// boundary.
pub fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame { code, reason: reason[..end].into() }
}

/// A close frame as a log line shows it: code and quoted reason.
pub fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!("{} {}", u16::from(f.code), crate::logline::quoted(f.reason.as_str())),
        None => "no status".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_to_123_bytes_on_a_char_boundary() {
        assert_eq!(close_frame(CloseCode::Normal, "short").reason.as_str(), "short");
        let long = "é".repeat(100);
        assert_eq!(close_frame(CloseCode::Normal, &long).reason.len(), 122);
    }
}
