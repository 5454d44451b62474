//! Protocol errors and the exact `-ERR` texts clients see.

use std::fmt;

/// `-ERR` texts, verbatim from nats-server so client libraries recognise
/// them (several act on the exact string, e.g. on 'Authorization Violation').
pub mod text {
    pub const UNKNOWN_PROTOCOL_OPERATION: &str = "Unknown Protocol Operation";
    /// nats-server sends this one in lower case.
    pub const MAX_CONTROL_LINE_EXCEEDED: &str = "maximum control line exceeded";
    pub const MAX_PAYLOAD_VIOLATION: &str = "Maximum Payload Violation";
    pub const INVALID_SUBJECT: &str = "Invalid Subject";
    pub const INVALID_PUBLISH_SUBJECT: &str = "Invalid Publish Subject";
    pub const AUTHORIZATION_VIOLATION: &str = "Authorization Violation";
    pub const AUTHENTICATION_TIMEOUT: &str = "Authentication Timeout";
    /// Plain text on a listener that requires TLS (nats-server's text).
    pub const TLS_REQUIRED: &str = "Secure Connection - TLS Required";
    pub const STALE_CONNECTION: &str = "Stale Connection";
    pub const MAX_CONNECTIONS_EXCEEDED: &str = "maximum connections exceeded";
    pub const MAX_SUBSCRIPTIONS_EXCEEDED: &str = "maximum subscriptions exceeded";
    pub const PERMISSIONS_VIOLATION_PUBLISH: &str = "Permissions Violation for Publish";
    pub const PERMISSIONS_VIOLATION_SUBSCRIPTION: &str = "Permissions Violation for Subscription";
    /// An ordered publish refused outside a primary component. Worded as a
    /// publish permission violation on purpose: nats.c, nats-py and nats.js
    /// keep the connection on those (and report them to the application),
    /// but close it for good on any `-ERR` they do not know.
    pub const NO_QUORUM: &str = "Permissions Violation for Publish (msgc: no quorum)";
}

/// What went wrong in the client's byte stream. The `Display` form carries
/// detail for logs; [`ProtoError::err_text`] is what goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A line that starts with no known verb, a verb a client may not send
    /// (`MSG`, `HMSG`), or a payload not followed by exactly `\r\n`.
    UnknownOperation,
    /// A control line longer than the limit (see `Limits`).
    MaxControlLineExceeded { limit: usize },
    /// A `PUB`/`HPUB` announcing more than `max_payload` bytes; caught on the
    /// control line, before any payload is buffered.
    MaxPayloadViolation { size: u64, limit: usize },
    /// Wrong argument count or a size that is not a decimal number.
    /// Closed without a word, as nats-server does (nats.c reconnects after a
    /// silent close, but gives up for good after an `-ERR`).
    BadArguments { verb: &'static str },
    /// `CONNECT` (or, client side, `INFO`) whose argument is not the
    /// expected JSON object. Closed without a word, as nats-server does.
    BadJson { verb: &'static str, detail: String },
    /// `HPUB` from a client that did not send `"headers": true`. Closed
    /// without a word, as nats-server does.
    HeadersNotSupported,
    /// `SUB` to a malformed subject. The connection stays up.
    InvalidSubject,
    /// `PUB`/`HPUB` from a pedantic client to a malformed subject or one
    /// with wildcards. The message is dropped; the connection stays up.
    InvalidPublishSubject,
    /// `PUB`/`HPUB` from a client that is not pedantic to a subject no
    /// subscription can match (an empty token, non-UTF-8). Dropped without a
    /// word, as nats-server does: nats.c closes its connection for good on
    /// any `-ERR` it does not know, so a typo must not cost the connection.
    UnroutableSubject,
}

impl ProtoError {
    /// The text to send as `-ERR '<text>'`; `None` where nats-server says
    /// nothing (docs/PROTOCOL.md, "Errors", has the table and the reasons).
    pub fn err_text(&self) -> Option<&'static str> {
        match self {
            Self::UnknownOperation => Some(text::UNKNOWN_PROTOCOL_OPERATION),
            Self::MaxControlLineExceeded { .. } => Some(text::MAX_CONTROL_LINE_EXCEEDED),
            Self::MaxPayloadViolation { .. } => Some(text::MAX_PAYLOAD_VIOLATION),
            Self::InvalidSubject => Some(text::INVALID_SUBJECT),
            Self::InvalidPublishSubject => Some(text::INVALID_PUBLISH_SUBJECT),
            Self::BadArguments { .. }
            | Self::BadJson { .. }
            | Self::HeadersNotSupported
            | Self::UnroutableSubject => None,
        }
    }

    /// Whether the connection must be closed (after the `-ERR`, if any).
    /// The parser stops producing ops after a fatal error: the stream has
    /// lost its framing.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::InvalidSubject | Self::InvalidPublishSubject | Self::UnroutableSubject
        )
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOperation => f.write_str("unknown protocol operation"),
            Self::MaxControlLineExceeded { limit } => {
                write!(f, "control line longer than {limit} bytes")
            }
            Self::MaxPayloadViolation { size, limit } => {
                write!(f, "payload of {size} bytes exceeds max_payload {limit}")
            }
            Self::BadArguments { verb } => write!(f, "malformed {verb} arguments"),
            Self::BadJson { verb, detail } => write!(f, "malformed {verb} JSON: {detail}"),
            Self::HeadersNotSupported => {
                f.write_str("HPUB without headers support announced in CONNECT")
            }
            Self::InvalidSubject => f.write_str("invalid subject"),
            Self::InvalidPublishSubject => f.write_str("invalid publish subject"),
            Self::UnroutableSubject => {
                f.write_str("publish to a subject no subscription can match; dropped")
            }
        }
    }
}

impl std::error::Error for ProtoError {}
