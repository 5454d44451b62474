//! The NATS client protocol, sans-IO: parsers that take bytes as they arrive
//! and yield typed ops, and encoders that append frames to a write buffer.
//! No sockets, clocks or executor here; `docs/protocol-client.md` describes
//! the wire format as implemented.
//!
//! - [`ClientParser`] reads what a client sends (`CONNECT`, `PUB`, `HPUB`,
//!   `SUB`, `UNSUB`, `PING`, `PONG`, and the tolerated `+OK`/`INFO`/`-ERR`).
//! - [`encode`] writes what the server sends (`INFO`, `MSG`, `HMSG`, `PING`,
//!   `PONG`, `+OK`, `-ERR`) and, for tools, what a client sends.
//! - [`ServerParser`] reads what a server sends, for our client tools.
//! - [`headers`] builds and edits NATS header blocks.

mod decoder;
pub mod encode;
mod error;
pub mod headers;
mod json;
mod parse;
mod server_parse;

#[cfg(test)]
mod tests;

pub use error::{ProtoError, text};
pub use json::{ConnectOptions, ServerInfo, private_name};
pub use parse::{ClientParser, Op, Publish};
pub use server_parse::{Delivery, ServerOp, ServerParser};

/// nats-server's default `max_control_line`.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// nats-server's default `max_payload` (1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// Bounds on what one peer can make the parser hold.
///
/// `max_control_line` counts the bytes of a control line from the first
/// byte of the verb up to, not including, its terminator (`\r\n` or `\n`):
/// `PUB a 1` is 7 bytes. `max_payload` bounds the announced `#bytes` of a
/// `PUB` (for `HPUB`, headers plus payload) and is checked on the control
/// line, before any payload is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_control_line: usize,
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}
