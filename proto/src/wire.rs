//! The node-to-node frame: a length, the protocol version, then one message
//! encoded with bincode 2. Frames have a maximum size; a frame that is too
//! big, of another version or that does not decode is an error for that
//! connection only.
//!
//! ```text
//! u32 big-endian   length of the rest (2 + payload), at most MAX_FRAME
//! u16 big-endian   the protocol version of the connection
//! payload          bincode 2 (standard config) of the message
//! ```
//!
//! A connection speaks one version, the newest both sides know
//! ([`MIN_PROTOCOL_VERSION`]..=[`PROTOCOL_VERSION`] here), agreed in the
//! handshake, so that a release and the next one run in one cluster.

use serde::{de::DeserializeOwned, Serialize};

/// The newest protocol version this build speaks: what it offers in the
/// handshake. A message kind added to the protocol comes with a new version,
/// and is sent only on connections that speak it. Version 2 added the
/// stick-table sync, version 3 the hand-over of a stopping leader; the
/// messages of older versions are encoded as they were.
pub const PROTOCOL_VERSION: u16 = 3;

/// The oldest protocol version this build still speaks, with a peer of an
/// older release. Peers outside the range are refused in the handshake;
/// a frame of another version than its connection's is an error.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The largest frame accepted or sent (length field included).
pub const MAX_FRAME: usize = 8 << 20;

/// Bytes before the payload: length and version.
pub const HEADER_LEN: usize = 6;

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The frame is bigger than [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The frame is shorter than its header.
    #[error("frame of {0} bytes is shorter than its header")]
    TooShort(usize),
    /// The frame is of another protocol version than its connection's.
    #[error("frame of protocol version {0}, not the version the connection agreed on")]
    Version(u16),
    /// The payload does not decode (or has bytes left over).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a message as one whole frame of [`PROTOCOL_VERSION`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    encode_as(msg, PROTOCOL_VERSION)
}

/// Encodes a message as one whole frame of protocol `version`, header
/// included.
pub fn encode_as<T: Serialize>(msg: &T, version: u16) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; HEADER_LEN];
    bincode::serde::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    if out.len() > MAX_FRAME {
        return Err(WireError::TooLarge(out.len()));
    }
    let rest = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&rest.to_be_bytes());
    out[4..6].copy_from_slice(&version.to_be_bytes());
    Ok(out)
}

/// Reads a frame's length field: how many more bytes to read after these 4.
/// Refuses lengths over the limit before anything is allocated.
pub fn body_len(len_field: [u8; 4]) -> Result<usize, WireError> {
    let rest = u32::from_be_bytes(len_field) as usize;
    if rest + 4 > MAX_FRAME {
        return Err(WireError::TooLarge(rest + 4));
    }
    if rest < 2 {
        return Err(WireError::TooShort(rest + 4));
    }
    Ok(rest)
}

/// Decodes the bytes after the length field (version + payload) of a
/// frame of [`PROTOCOL_VERSION`].
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    decode_body_as(body, PROTOCOL_VERSION)
}

/// Decodes the bytes after the length field of a frame on a connection of
/// protocol `version`: a frame of another version is an error.
pub fn decode_body_as<T: DeserializeOwned>(body: &[u8], version: u16) -> Result<T, WireError> {
    if body.len() < 2 {
        return Err(WireError::TooShort(body.len() + 4));
    }
    let got = u16::from_be_bytes([body[0], body[1]]);
    if got != version {
        return Err(WireError::Version(got));
    }
    let (msg, used) = bincode::serde::decode_from_slice(&body[2..], config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != body.len() - 2 {
        return Err(WireError::Malformed(format!(
            "{} bytes left over",
            body.len() - 2 - used
        )));
    }
    Ok(msg)
}

/// Decodes one whole frame (length field included).
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, WireError> {
    if frame.len() < HEADER_LEN {
        return Err(WireError::TooShort(frame.len()));
    }
    let rest = body_len([frame[0], frame[1], frame[2], frame[3]])?;
    if rest != frame.len() - 4 {
        return Err(WireError::Malformed(format!(
            "length field says {} bytes, frame has {}",
            rest,
            frame.len() - 4
        )));
    }
    decode_body(&frame[4..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use crate::state::{Command, OperatorState, ServerKey};

    /// Golden bytes: if this changes, the wire changed, and PROTOCOL_VERSION
    /// must change with it. (Version 1's messages are the same in 2.)
    #[test]
    fn the_encoding_of_a_command_is_pinned() {
        let cmd = Command::SetServerState {
            server: ServerKey::new("web", "s1"),
            state: OperatorState::Drain,
        };
        let frame = encode_as(&cmd, 1).unwrap();
        assert_eq!(
            frame,
            [0, 0, 0, 11, 0, 1, 2, 3, b'w', b'e', b'b', 2, b's', b'1', 1],
        );
        assert_eq!(decode_body_as::<Command>(&frame[4..], 1).unwrap(), cmd);
        let mut newest = frame.clone();
        newest[5] = 3;
        assert_eq!(encode(&cmd).unwrap(), newest);
        let apply = Command::ApplyConfig {
            doc: "x".into(),
            format: Format::Yaml,
            expected_version: Some(300),
        };
        assert_eq!(
            encode_as(&apply, 1).unwrap(),
            [0, 0, 0, 10, 0, 1, 0, 1, b'x', 1, 1, 251, 44, 1],
        );
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let good = encode(&Command::SetWeight {
            server: ServerKey::new("b", "s"),
            weight: 5,
        })
        .unwrap();
        assert_eq!(decode::<Command>(&good[..3]), Err(WireError::TooShort(3)));
        let mut other_version = good.clone();
        other_version[5] = 9;
        assert_eq!(
            decode::<Command>(&other_version),
            Err(WireError::Version(9))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        trailing[3] += 1;
        assert!(matches!(
            decode::<Command>(&trailing),
            Err(WireError::Malformed(_))
        ));
        let mut bad_variant = good.clone();
        bad_variant[6] = 77;
        assert!(matches!(
            decode::<Command>(&bad_variant),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            body_len(u32::MAX.to_be_bytes()),
            Err(WireError::TooLarge(u32::MAX as usize + 4))
        );
        // Every truncation of a good frame fails cleanly.
        for cut in 0..good.len() {
            assert!(decode::<Command>(&good[..cut]).is_err());
        }
    }

    #[test]
    fn frames_over_the_limit_are_not_encoded() {
        let big = "x".repeat(MAX_FRAME);
        assert!(matches!(encode(&big), Err(WireError::TooLarge(_))));
    }
}
