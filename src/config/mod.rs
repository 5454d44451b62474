//! Momentum's configuration syntax, read by hand, into [`Settings`].
//!
//! Pipeline: `lexer` → `parser` (tree with positions, includes spliced) →
//! `de` (serde `Deserializer` over the tree) → `schema` (typed scopes) →
//! `resolve` (defaults, addresses, node identity) → [`Settings`].

mod settings;

pub use settings::*;
