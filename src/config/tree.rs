//! The syntax tree: what the files say, with a position on every node,
//! before any meaning is given to names.

use super::diag::Pos;

/// Deepest nesting of scopes, arrays and dictionaries (across includes).
pub const MAX_NESTING: usize = 64;

/// One statement in a scope.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Option(Opt),
    Scope(Scope),
    /// Only in a freshly parsed file: the loader splices the included
    /// files' items in its place.
    Include(Include),
}

/// A name as written, and folded to lower case (names are case-insensitive).
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub name: String,
    pub written: String,
    pub pos: Pos,
}

impl Name {
    pub fn new(written: &str, pos: Pos) -> Self {
        Name {
            name: written.to_lowercase(),
            written: written.to_owned(),
            pos,
        }
    }
}

/// `key = value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Opt {
    pub key: Name,
    pub value: Value,
}

/// `Name { ... }` or `Name "instance" { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub name: Name,
    pub instance: Option<Scalar>,
    pub body: Vec<Item>,
}

/// `include path` / `readonly_include path`.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub readonly: bool,
    pub pos: Pos,
    pub path: Scalar,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A bare word or quoted string (the tree does not tell them apart).
    Scalar(Scalar),
    /// `( v v ... )`, position of `(`.
    Array(Vec<Value>, Pos),
    /// `[ k = v ... ]`, position of `[`.
    Dict(Vec<Entry>, Pos),
}

impl Value {
    pub fn pos(&self) -> Pos {
        match self {
            Value::Scalar(s) => s.pos,
            Value::Array(_, p) | Value::Dict(_, p) => *p,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub pos: Pos,
}

/// One `key = value` inside `[ ]`; keys keep their case.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Scalar,
    pub value: Value,
}

#[cfg(test)]
pub(crate) fn clear_positions(items: &mut [Item]) {
    fn value(v: &mut Value) {
        match v {
            Value::Scalar(s) => s.pos = Pos::default(),
            Value::Array(items, p) => {
                *p = Pos::default();
                items.iter_mut().for_each(value);
            }
            Value::Dict(entries, p) => {
                *p = Pos::default();
                for e in entries {
                    e.key.pos = Pos::default();
                    value(&mut e.value);
                }
            }
        }
    }
    for item in items {
        match item {
            Item::Option(o) => {
                o.key.pos = Pos::default();
                value(&mut o.value);
            }
            Item::Scope(s) => {
                s.name.pos = Pos::default();
                if let Some(i) = &mut s.instance {
                    i.pos = Pos::default();
                }
                clear_positions(&mut s.body);
            }
            Item::Include(i) => {
                i.pos = Pos::default();
                i.path.pos = Pos::default();
            }
        }
    }
}
