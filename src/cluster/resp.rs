//! RESP, the Redis wire format, through the sans-IO `redis-protocol` crate: commands are
//! encoded onto the end of a link's outbox, replies decoded off the front of its inbox. No
//! socket here, and no client library with a runtime of its own.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode;
pub use redis_protocol::resp2::types::BytesFrame as Frame;

/// Appends one command (an array of bulk strings, as Redis expects) to `out`.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    let frame = Frame::Array(
        args.iter().map(|arg| Frame::BulkString(Bytes::copy_from_slice(arg.as_ref()))).collect(),
    );
    // Encoding an array of bulk strings into a growable buffer cannot fail.
    let _ = extend_encode(out, &frame, false);
}

/// Takes the next whole reply off the front of `inbox`: None until one has fully arrived, an
/// error if the bytes are not RESP (the link is then dropped and made again).
pub fn decode(inbox: &mut BytesMut) -> Result<Option<Frame>, String> {
    match decode_bytes_mut(inbox) {
        Ok(Some((frame, _, _))) => Ok(Some(frame)),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("not RESP: {e}")),
    }
}

/// The bytes of a string reply (simple or bulk); None for anything else.
pub fn bytes(frame: &Frame) -> Option<&Bytes> {
    match frame {
        Frame::SimpleString(b) | Frame::BulkString(b) => Some(b),
        _ => None,
    }
}

/// A string reply as UTF-8 text; None for anything else.
pub fn text(frame: &Frame) -> Option<&str> {
    bytes(frame).and_then(|b| std::str::from_utf8(b).ok())
}

/// An integer reply, or a string reply that holds one (Lua numbers come back as integers,
/// hash fields as strings).
pub fn integer(frame: &Frame) -> Option<i64> {
    match frame {
        Frame::Integer(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// The error text of an error reply.
pub fn error(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Error(e) => Some(e.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&mut out, &["SET", "k", "v"]);
        encode_command(&mut out, &[b"PING".as_slice()]);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn replies_are_taken_whole_and_in_order() {
        let mut inbox = BytesMut::from(&b"+OK\r\n:42\r\n$5\r\nhel"[..]);
        assert_eq!(decode(&mut inbox).unwrap().as_ref().and_then(text), Some("OK"));
        assert_eq!(decode(&mut inbox).unwrap().as_ref().and_then(integer), Some(42));
        assert_eq!(decode(&mut inbox).unwrap(), None, "a cut reply waits for the rest");
        inbox.extend_from_slice(b"lo\r\n-ERR no\r\n");
        assert_eq!(decode(&mut inbox).unwrap().as_ref().and_then(text), Some("hello"));
        assert_eq!(decode(&mut inbox).unwrap().as_ref().and_then(error).as_deref(), Some("ERR no"));
        assert!(inbox.is_empty());
        let mut junk = BytesMut::from(&b"?what\r\n"[..]);
        assert!(decode(&mut junk).is_err());
    }
}
