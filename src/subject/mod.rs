//! NATS subjects: validation and the subscription index.
//!
//! A subject is a non-empty sequence of non-empty tokens separated by `.`.
//! In a subscription a token may be `*` (exactly one token) or, as the last
//! token only, `>` (one or more tokens). Partial wildcards such as `foo*` are
//! ordinary literal tokens, as in nats-server.

mod index;

pub use index::{InvalidSubject, Matches, QueuePicker, SubjectIndex};

/// Bytes nats-server treats as whitespace inside a subject; they can never
/// appear in one because the wire protocol splits arguments on them.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c')
}

/// Whether `s` is a well-formed subject. With `wildcards_allowed` (SUB) `*`
/// tokens and a final `>` token are accepted; without it (pedantic PUB) any
/// full-token wildcard is rejected.
pub fn valid_subject(s: &str, wildcards_allowed: bool) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut tokens = s.split('.').peekable();
    while let Some(tok) = tokens.next() {
        if tok.is_empty() || tok.bytes().any(is_space) {
            return false;
        }
        match tok {
            "*" if !wildcards_allowed => return false,
            ">" if !wildcards_allowed || tokens.peek().is_some() => return false,
            _ => {}
        }
    }
    true
}

/// Whether `s` has no wildcard token (`*` or `>`), i.e. names one subject.
/// Does not check well-formedness; pair it with [`valid_subject`].
pub fn is_literal(s: &str) -> bool {
    !s.split('.').any(|t| t == "*" || t == ">")
}

/// Whether the subscription `pattern` matches the literal `subject`, by
/// direct token comparison. Linear in the tokens; the index is the fast
/// path, this is the reference it is tested against.
pub fn pattern_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in [
            "a",
            "a.b",
            "foo.*.bar",
            "foo.>",
            ">",
            "*",
            "a*.b>",
            "$MSGC.VIEW",
        ] {
            assert!(valid_subject(ok, true), "{ok}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a.>.b", "a b", "a\tb", "a\rb", "a\nb",
        ] {
            assert!(!valid_subject(bad, true), "{bad:?}");
        }
        assert!(valid_subject("a.b*", false));
        assert!(!valid_subject("a.*", false));
        assert!(!valid_subject("a.>", false));
        assert!(!valid_subject(">", false));
    }

    #[test]
    fn literal() {
        assert!(is_literal("a.b"));
        assert!(is_literal("a*.b>"));
        assert!(!is_literal("a.*"));
        assert!(!is_literal(">"));
    }

    #[test]
    fn naive_matching() {
        assert!(pattern_matches("a.b", "a.b"));
        assert!(!pattern_matches("a.b", "a.b.c"));
        assert!(pattern_matches("a.*", "a.b"));
        assert!(!pattern_matches("a.*", "a.b.c"));
        assert!(!pattern_matches("a.*", "a"));
        assert!(pattern_matches("a.>", "a.b.c"));
        assert!(!pattern_matches("a.>", "a"));
        assert!(pattern_matches(">", "a"));
        assert!(pattern_matches("*.b.>", "x.b.c"));
    }
}
