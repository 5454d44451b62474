//! A serde `Deserializer` over the tree, so typed scopes are plain
//! `#[derive(Deserialize)]` structs. It merges what Momentum merges (last
//! option wins; repeated anonymous scopes merge), refuses unknown names with
//! a "did you mean", and puts a position on every error.
//!
//! Extra types: [`Spanned`] (value + position), [`Named`] (the instances of
//! a named scope, in order), [`Dict`] (an ordered dictionary), [`Seconds`]
//! and [`Octal`].

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::diag::{Diag, Pos};
use super::tree::{Entry, Item, Scope, Value};

const SPANNED: &str = "$__ecc_Spanned";
const NAMED: &str = "$__ecc_Named";
const NAMED_ENTRY: &str = "$__ecc_NamedEntry";

/// Deserialises a whole (already include-expanded) file as `T`.
pub(crate) fn from_items<'de, T: Deserialize<'de>>(items: &[Item]) -> Result<T, Diag> {
    let pos = Pos {
        file: 0,
        line: 1,
        col: 1,
        len: 1,
    };
    T::deserialize(NodeDe(Node::Body {
        items: items.iter().collect(),
        pos,
        what: None,
    }))
    .map_err(|e| e.or_pos(pos))
}

impl de::Error for Diag {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let msg = msg.to_string();
        if msg.starts_with("expects ") {
            Diag::expects(msg)
        } else {
            Diag::new(msg)
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Diag::expects(format!("expects {exp}, found {}", unexpected(&unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Diag::expects(format!("expects {exp}, found {}", unexpected(&unexp)))
    }

    fn missing_field(field: &'static str) -> Self {
        Diag::new(format!("missing option `{field}`"))
    }
}

fn unexpected(u: &de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Str(s) => format!("`{s}`"),
        de::Unexpected::Seq => "an array".into(),
        de::Unexpected::Map => "a scope or dictionary".into(),
        other => other.to_string(),
    }
}

/// What a deserializer stands on.
#[derive(Clone)]
enum Node<'a> {
    /// A word or string; `key` is where the option (or element) starts.
    Scalar { text: &'a str, pos: Pos, key: Pos },
    Array {
        elems: &'a [Value],
        pos: Pos,
        key: Pos,
    },
    Dict {
        entries: &'a [Entry],
        pos: Pos,
        key: Pos,
    },
    /// Every scope of one name in one scope (possibly several).
    Scopes {
        name: &'a str,
        scopes: Vec<&'a Scope>,
    },
    /// The statements of a scope (merged), `what` naming it for messages.
    Body {
        items: Vec<&'a Item>,
        pos: Pos,
        what: Option<String>,
    },
    /// One instance of a named scope.
    Instance(&'a Scope),
    /// A packed position (see [`Spanned`]).
    Pos(Pos),
}

impl<'a> Node<'a> {
    fn from_value(v: &'a Value, key: Pos) -> Self {
        match v {
            Value::Scalar(s) => Node::Scalar {
                text: &s.text,
                pos: s.pos,
                key,
            },
            Value::Array(elems, pos) => Node::Array {
                elems,
                pos: *pos,
                key,
            },
            Value::Dict(entries, pos) => Node::Dict {
                entries,
                pos: *pos,
                key,
            },
        }
    }

    fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Array { pos, .. } | Node::Dict { pos, .. } => *pos,
            Node::Scopes { scopes, .. } => scopes.first().map(|s| s.name.pos).unwrap_or_default(),
            Node::Body { pos, .. } | Node::Pos(pos) => *pos,
            Node::Instance(s) => s.name.pos,
        }
    }

    fn key_pos(&self) -> Pos {
        match self {
            Node::Scalar { key, .. } | Node::Array { key, .. } | Node::Dict { key, .. } => *key,
            _ => self.pos(),
        }
    }

    fn found(&self) -> String {
        match self {
            Node::Scalar { text, .. } => format!("`{text}`"),
            Node::Array { .. } => "an array".into(),
            Node::Dict { .. } => "a dictionary".into(),
            Node::Scopes { .. } | Node::Body { .. } | Node::Instance(_) => "a scope".into(),
            Node::Pos(_) => "a position".into(),
        }
    }
}

struct NodeDe<'a>(Node<'a>);

impl NodeDe<'_> {
    fn expects(&self, what: &str) -> Diag {
        Diag::expects(format!("expects {what}, found {}", self.0.found())).with_pos(self.0.pos())
    }

    fn scalar(&self, what: &str) -> Result<&str, Diag> {
        match &self.0 {
            Node::Scalar { text, .. } => Ok(text),
            _ => Err(self.expects(what)),
        }
    }

    fn int(&self, min: i128, max: i128) -> Result<i128, Diag> {
        let what = format!("an integer from {min} to {max}");
        let text = self.scalar(&what)?;
        match text.parse::<i128>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.expects(&what)),
        }
    }
}

/// Momentum's boolean spellings (`ec_atobool`), any case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "enabled" | "enable" | "1" => Some(true),
        "false" | "no" | "off" | "disabled" | "disable" | "0" => Some(false),
        _ => None,
    }
}

macro_rules! int_methods {
    ($($method:ident $visit:ident $t:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
            let v = self.int(i128::from(<$t>::MIN), i128::from(<$t>::MAX))?;
            let v = <$t>::try_from(v).map_err(|_| self.expects("an integer"))?;
            visitor.$visit(v)
        }
    )*};
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = Diag;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        match self.0 {
            Node::Scalar { text, .. } => visitor.visit_str(text),
            Node::Array { elems, .. } => visitor.visit_seq(Seq::new(elems)),
            Node::Dict { entries, .. } => visitor.visit_map(DictMap::new(entries)),
            Node::Pos(p) => visitor.visit_u128(p.pack()),
            Node::Scopes { .. } | Node::Body { .. } | Node::Instance(_) => {
                self.deserialize_map(visitor)
            }
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        const WHAT: &str = "a boolean (true/false, yes/no, on/off, enabled/disabled, 1/0)";
        match parse_bool(self.scalar(WHAT)?) {
            Some(b) => visitor.visit_bool(b),
            None => Err(self.expects(WHAT)),
        }
    }

    int_methods! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        match self.0 {
            Node::Pos(p) => visitor.visit_u128(p.pack()),
            _ => {
                let v = self.int(0, i128::MAX)?;
                visitor.visit_u128(v.unsigned_abs())
            }
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        let text = self.scalar("a number")?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => visitor.visit_f64(v),
            _ => Err(self.expects("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        let text = self.scalar("one character")?;
        let mut it = text.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(self.expects("one character")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        visitor.visit_str(self.scalar("a string")?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Diag> {
        Err(self.expects("nothing"))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Diag> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Diag> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        match self.0 {
            Node::Array { elems, .. } => visitor.visit_seq(Seq::new(elems)),
            // A lone value where a list is expected is a list of one.
            Node::Scalar { .. } => visitor.visit_seq(One(Some(self.0))),
            _ => Err(self.expects("an array `( ... )`")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Diag> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Diag> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        match self.0 {
            Node::Dict { entries, .. } => visitor.visit_map(DictMap::new(entries)),
            Node::Body { items, what, .. } => visitor.visit_map(BodyMap::new(&items, None, what)?),
            Node::Scopes { .. } => {
                let (items, pos, what) = self.merged()?;
                let _ = pos;
                visitor.visit_map(BodyMap::new(&items, None, what)?)
            }
            Node::Instance(s) => {
                let items: Vec<&Item> = s.body.iter().collect();
                visitor.visit_map(BodyMap::new(&items, None, Some(instance_what(s)))?)
            }
            _ => Err(self.expects("a dictionary `[ key = value ... ]`")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Diag> {
        if name == SPANNED {
            let node = self.0;
            let entries = vec![
                ("pos", Node::Pos(node.pos())),
                ("key", Node::Pos(node.key_pos())),
                ("value", node),
            ];
            return visitor.visit_map(Fixed::new(entries));
        }
        if name == NAMED {
            return match self.0 {
                Node::Scopes { name, scopes } => {
                    if let Some(s) = scopes.iter().find(|s| s.instance.is_none()) {
                        return Err(Diag::at(
                            format!(
                                "`{}` needs an instance name: `{} \"...\" {{ ... }}`",
                                s.name.written, s.name.written
                            ),
                            s.name.pos,
                        ));
                    }
                    let _ = name;
                    visitor.visit_seq(Instances(scopes.into_iter()))
                }
                _ => Err(self.expects("a named scope `name \"instance\" { ... }`")),
            };
        }
        if name == NAMED_ENTRY {
            if let Node::Instance(s) = self.0 {
                let inst = s.instance.as_ref().map(|i| Node::Scalar {
                    text: &i.text,
                    pos: i.pos,
                    key: s.name.pos,
                });
                let mut entries = Vec::new();
                if let Some(inst) = inst {
                    entries.push(("instance", inst));
                }
                entries.push((
                    "body",
                    Node::Body {
                        items: s.body.iter().collect(),
                        pos: s.name.pos,
                        what: Some(instance_what(s)),
                    },
                ));
                return visitor.visit_map(Fixed::new(entries));
            }
            return Err(self.expects("a named scope"));
        }
        match self.0 {
            Node::Body { items, what, .. } => {
                visitor.visit_map(BodyMap::new(&items, Some(fields), what)?)
            }
            Node::Scopes { .. } => {
                let (items, _pos, what) = self.merged()?;
                visitor.visit_map(BodyMap::new(&items, Some(fields), what)?)
            }
            Node::Instance(s) => {
                let items: Vec<&Item> = s.body.iter().collect();
                visitor.visit_map(BodyMap::new(&items, Some(fields), Some(instance_what(s)))?)
            }
            _ => Err(self.expects("a scope `{ ... }`")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Diag> {
        let text = self.scalar("a word")?;
        visitor.visit_enum(text.to_lowercase().into_deserializer())
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Diag> {
        visitor.visit_unit()
    }
}

fn instance_what(s: &Scope) -> String {
    match &s.instance {
        Some(i) => format!("{} \"{}\"", s.name.written, i.text),
        None => s.name.written.clone(),
    }
}

impl<'a> NodeDe<'a> {
    /// Repeated anonymous scopes as one body (later options win).
    #[allow(clippy::type_complexity)]
    fn merged(&self) -> Result<(Vec<&'a Item>, Pos, Option<String>), Diag> {
        let Node::Scopes { scopes, .. } = &self.0 else {
            return Err(self.expects("a scope"));
        };
        if let Some(s) = scopes.iter().find(|s| s.instance.is_some()) {
            return Err(Diag::at(
                format!(
                    "`{}` takes no instance name: write `{} {{ ... }}`",
                    s.name.written, s.name.written
                ),
                s.instance.as_ref().map(|i| i.pos).unwrap_or(s.name.pos),
            ));
        }
        let items = scopes.iter().flat_map(|s| s.body.iter()).collect();
        let what = scopes.first().map(|s| s.name.written.clone());
        Ok((items, self.0.pos(), what))
    }
}

/// The options and sub-scopes of a scope, grouped by lower-case name.
struct BodyMap<'a> {
    groups: std::vec::IntoIter<(String, String, Pos, Node<'a>)>,
    fields: Option<&'static [&'static str]>,
    what: Option<String>,
    value: Option<(String, Node<'a>)>,
}

impl<'a> BodyMap<'a> {
    fn new(
        items: &[&'a Item],
        fields: Option<&'static [&'static str]>,
        what: Option<String>,
    ) -> Result<Self, Diag> {
        // (name, written, first position, node)
        let mut groups: Vec<(String, String, Pos, Node<'a>)> = Vec::new();
        for item in items {
            match item {
                Item::Option(o) => {
                    let node = Node::from_value(&o.value, o.key.pos);
                    match groups.iter_mut().find(|g| g.0 == o.key.name) {
                        Some(g) => {
                            if matches!(g.3, Node::Scopes { .. }) {
                                return Err(conflict(&o.key.written, o.key.pos));
                            }
                            // Last one wins, as in Momentum.
                            g.3 = node;
                        }
                        None => groups.push((
                            o.key.name.clone(),
                            o.key.written.clone(),
                            o.key.pos,
                            node,
                        )),
                    }
                }
                Item::Scope(s) => match groups.iter_mut().find(|g| g.0 == s.name.name) {
                    Some(g) => match &mut g.3 {
                        Node::Scopes { scopes, .. } => scopes.push(s),
                        _ => return Err(conflict(&s.name.written, s.name.pos)),
                    },
                    None => groups.push((
                        s.name.name.clone(),
                        s.name.written.clone(),
                        s.name.pos,
                        Node::Scopes {
                            name: &s.name.written,
                            scopes: vec![s],
                        },
                    )),
                },
                Item::Include(_) => {}
            }
        }
        Ok(BodyMap {
            groups: groups.into_iter(),
            fields,
            what,
            value: None,
        })
    }
}

fn conflict(name: &str, pos: Pos) -> Diag {
    Diag::at(
        format!("`{name}` is used both as an option and as a scope here"),
        pos,
    )
}

fn unknown(written: &str, pos: Pos, node: &Node<'_>, fields: &[&str], what: Option<&str>) -> Diag {
    let kind = if matches!(node, Node::Scopes { .. }) {
        "scope"
    } else {
        "option"
    };
    let place = match what {
        Some(w) => format!("in `{w}`"),
        None => "at the top level".to_owned(),
    };
    let mut d = Diag::at(format!("unknown {kind} `{written}` {place}"), pos);
    if let Some(best) = did_you_mean(&written.to_lowercase(), fields) {
        d = d.help(format!("did you mean `{best}`?"));
    }
    if fields.len() <= 16 {
        d = d.help(format!("valid here: {}", fields.join(", ")));
    }
    d
}

/// The closest known name, when close enough to be a typo.
pub(crate) fn did_you_mean<'f>(name: &str, known: &[&'f str]) -> Option<&'f str> {
    let limit = name.chars().count().div_ceil(3);
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance with adjacent transpositions (optimal string alignment).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

impl<'de> MapAccess<'de> for BodyMap<'_> {
    type Error = Diag;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Diag> {
        match self.groups.next() {
            None => Ok(None),
            Some((key, written, pos, node)) => {
                // Checked here, not up front, so errors come in file order.
                if let Some(fields) = self.fields
                    && !fields.contains(&key.as_str())
                {
                    return Err(unknown(&written, pos, &node, fields, self.what.as_deref()));
                }
                let k = seed
                    .deserialize(key.as_str().into_deserializer())
                    .map_err(|e: Diag| e.or_pos(pos))?;
                self.value = Some((written, node));
                Ok(Some(k))
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Diag> {
        let Some((written, node)) = self.value.take() else {
            return Err(Diag::new("internal error: value without key"));
        };
        let pos = node.pos();
        seed.deserialize(NodeDe(node))
            .map_err(|e| e.or_pos(pos).or_subject(&written))
    }
}

/// Array elements.
struct Seq<'a> {
    elems: std::slice::Iter<'a, Value>,
}

impl<'a> Seq<'a> {
    fn new(elems: &'a [Value]) -> Self {
        Seq {
            elems: elems.iter(),
        }
    }
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = Diag;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Diag> {
        match self.elems.next() {
            None => Ok(None),
            Some(v) => {
                let pos = v.pos();
                seed.deserialize(NodeDe(Node::from_value(v, pos)))
                    .map(Some)
                    .map_err(|e| e.or_pos(pos))
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.elems.len())
    }
}

/// A single value read as a one-element list.
struct One<'a>(Option<Node<'a>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Diag;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Diag> {
        match self.0.take() {
            None => Ok(None),
            Some(n) => {
                let pos = n.pos();
                seed.deserialize(NodeDe(n))
                    .map(Some)
                    .map_err(|e| e.or_pos(pos))
            }
        }
    }
}

/// The instances of a named scope.
struct Instances<'a>(std::vec::IntoIter<&'a Scope>);

impl<'de> SeqAccess<'de> for Instances<'_> {
    type Error = Diag;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Diag> {
        match self.0.next() {
            None => Ok(None),
            Some(s) => seed
                .deserialize(NodeDe(Node::Instance(s)))
                .map(Some)
                .map_err(|e| e.or_pos(s.name.pos)),
        }
    }
}

/// `[ key = value ... ]` entries, in order (duplicates kept).
struct DictMap<'a> {
    entries: std::slice::Iter<'a, Entry>,
    value: Option<&'a Entry>,
}

impl<'a> DictMap<'a> {
    fn new(entries: &'a [Entry]) -> Self {
        DictMap {
            entries: entries.iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for DictMap<'_> {
    type Error = Diag;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Diag> {
        match self.entries.next() {
            None => Ok(None),
            Some(e) => {
                self.value = Some(e);
                let node = Node::Scalar {
                    text: &e.key.text,
                    pos: e.key.pos,
                    key: e.key.pos,
                };
                seed.deserialize(NodeDe(node))
                    .map(Some)
                    .map_err(|d| d.or_pos(e.key.pos))
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Diag> {
        let Some(e) = self.value.take() else {
            return Err(Diag::new("internal error: value without key"));
        };
        let pos = e.value.pos();
        seed.deserialize(NodeDe(Node::from_value(&e.value, e.key.pos)))
            .map_err(|d| d.or_pos(pos))
    }
}

/// A fixed list of fields (for the helper types below).
struct Fixed<'a> {
    entries: std::vec::IntoIter<(&'static str, Node<'a>)>,
    value: Option<Node<'a>>,
}

impl<'a> Fixed<'a> {
    fn new(entries: Vec<(&'static str, Node<'a>)>) -> Self {
        Fixed {
            entries: entries.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Fixed<'_> {
    type Error = Diag;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Diag> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, node)) => {
                self.value = Some(node);
                seed.deserialize(k.into_deserializer()).map(Some)
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Diag> {
        let Some(node) = self.value.take() else {
            return Err(Diag::new("internal error: value without key"));
        };
        let pos = node.pos();
        seed.deserialize(NodeDe(node)).map_err(|e| e.or_pos(pos))
    }
}

// ---------------------------------------------------------------- helper types

/// A value with where it was written: `pos` is the value itself, `key` the
/// option name (or, for an instance name, its scope keyword).
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
    pub key: Pos,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value with a position")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let (mut pos, mut key, mut value) = (None, None, None);
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "pos" => pos = Some(Pos::unpack(map.next_value::<u128>()?)),
                        "key" => key = Some(Pos::unpack(map.next_value::<u128>()?)),
                        _ => value = Some(map.next_value::<T>()?),
                    }
                }
                let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
                let pos = pos.unwrap_or_default();
                Ok(Spanned {
                    value,
                    pos,
                    key: key.unwrap_or(pos),
                })
            }
        }
        d.deserialize_struct(
            SPANNED,
            &["pos", "key", "value"],
            V(std::marker::PhantomData),
        )
    }
}

/// The instances of a named scope (`Listen "a" {} Listen "b" {}`), in file
/// order; the instance name carries the position of the name (`pos`) and of
/// the scope keyword (`key`). Instances with the same name are kept apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry<T>(Spanned<String>, T);
        impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entry<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<T>(std::marker::PhantomData<T>);
                impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                    type Value = Entry<T>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a named scope")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Entry<T>, A::Error> {
                        let (mut inst, mut body) = (None, None);
                        while let Some(k) = map.next_key::<String>()? {
                            if k == "instance" {
                                inst = Some(map.next_value::<Spanned<String>>()?);
                            } else {
                                body = Some(map.next_value::<T>()?);
                            }
                        }
                        match (inst, body) {
                            (Some(i), Some(b)) => Ok(Entry(i, b)),
                            _ => Err(de::Error::custom("a named scope needs an instance name")),
                        }
                    }
                }
                d.deserialize_struct(
                    NAMED_ENTRY,
                    &["instance", "body"],
                    V(std::marker::PhantomData),
                )
            }
        }
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("named scopes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Named<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(Entry(i, b)) = seq.next_element::<Entry<T>>()? {
                    out.push((i, b));
                }
                Ok(Named(out))
            }
        }
        d.deserialize_struct(NAMED, &[], V(std::marker::PhantomData))
    }
}

/// A dictionary `[ key = value ... ]` in file order, duplicates kept (the
/// consumer decides whether they are an error). Keys keep their case.
#[derive(Debug, Clone, PartialEq)]
pub struct Dict<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Dict<T> {
    fn default() -> Self {
        Dict(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Dict<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Dict<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dictionary `[ key = value ... ]`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dict<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    out.push((k, map.next_value::<T>()?));
                }
                Ok(Dict(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A time in seconds: `5`, `0.2`, `"0.5"`; never negative, NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

const SECONDS: &str = "a time in seconds (a non-negative number such as `5` or `0.5`)";

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SECONDS)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Seconds, E> {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .and_then(|v| Duration::try_from_secs_f64(v).ok())
                    .map(Seconds)
                    .ok_or_else(|| E::custom(format!("expects {SECONDS}, found `{s}`")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// An octal file mode: `0660`, `660`, `"0o660"`; at most `07777`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Octal(pub u32);

const OCTAL: &str = "an octal file mode such as `0660`";

impl<'de> Deserialize<'de> for Octal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Octal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(OCTAL)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Octal, E> {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|v| *v <= 0o7777 && !digits.starts_with('+'))
                    .map(Octal)
                    .ok_or_else(|| E::custom(format!("expects {OCTAL}, found `{s}`")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parser::parse;
    use std::collections::BTreeMap;

    fn de<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, Diag> {
        let items = parse(text, 0, 0)
            .map_err(|e| panic!("{e:?}"))
            .unwrap_or_default();
        from_items(&items)
    }

    fn err<T: for<'de> Deserialize<'de> + fmt::Debug>(
        text: &str,
    ) -> (String, Vec<String>, u32, u32) {
        let e = de::<T>(text).unwrap_err();
        let p = e.pos.unwrap_or_default();
        (e.message(), e.help, p.line, p.col)
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: Option<u16>,
        on: Option<bool>,
        ratio: Option<f64>,
        name: Option<String>,
        list: Option<Vec<String>>,
        t: Option<Seconds>,
        mode: Option<Octal>,
        d: Option<Dict<Spanned<String>>>,
        keepalive_interval: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Top {
        a: Option<Spanned<u32>>,
        inner: Option<Inner>,
        listen: Option<Named<Inner>>,
        map: Option<BTreeMap<String, String>>,
    }

    #[test]
    fn scalars_and_bools() {
        for (s, b) in [
            ("true", true),
            ("\"yes\"", true),
            ("ON", true),
            ("Enabled", true),
            ("1", true),
            ("no", false),
            ("off", false),
            ("disabled", false),
            ("0", false),
            ("FALSE", false),
        ] {
            let t: Top = de(&format!("inner {{ on = {s} }}")).unwrap();
            assert_eq!(t.inner.unwrap().on, Some(b), "{s}");
        }
        let t: Top = de(
            "a = 7 inner { port = \"4809\" ratio = 0.5 name = x list = one t = 0.2 mode = 0660 }",
        )
        .unwrap();
        assert_eq!(t.a.as_ref().unwrap().value, 7);
        assert_eq!(
            (t.a.as_ref().unwrap().pos.line, t.a.unwrap().pos.col),
            (1, 5)
        );
        let i = t.inner.unwrap();
        assert_eq!(i.port, Some(4809));
        assert_eq!(i.ratio, Some(0.5));
        assert_eq!(i.list, Some(vec!["one".to_owned()]));
        assert_eq!(i.t, Some(Seconds(Duration::from_millis(200))));
        assert_eq!(i.mode, Some(Octal(0o660)));
    }

    #[test]
    fn type_errors_name_the_option() {
        let (m, _, l, c) = err::<Top>("inner {\n  port = abc }");
        assert_eq!(m, "`port` expects an integer from 0 to 65535, found `abc`");
        assert_eq!((l, c), (2, 10));
        assert!(
            err::<Top>("inner { port = 70000 }")
                .0
                .contains("0 to 65535")
        );
        assert!(
            err::<Top>("inner { on = maybe }")
                .0
                .starts_with("`on` expects a boolean")
        );
        assert!(
            err::<Top>("inner { t = -1 }")
                .0
                .starts_with("`t` expects a time in seconds")
        );
        assert!(
            err::<Top>("inner { t = nan }")
                .0
                .contains("time in seconds")
        );
        assert!(err::<Top>("inner { mode = 0999 }").0.contains("octal"));
        assert!(
            err::<Top>("inner { name = ( a b ) }")
                .0
                .contains("`name` expects a string, found an array")
        );
        assert!(
            err::<Top>("inner = 5")
                .0
                .contains("`inner` expects a scope")
        );
        assert!(err::<Top>("inner { port { } }").0.contains("found a scope"));
    }

    #[test]
    fn unknown_names_suggest() {
        let (m, help, l, c) = err::<Top>("inner {\n   kepalive_interval = 5 }");
        assert_eq!(m, "unknown option `kepalive_interval` in `inner`");
        assert_eq!(help[0], "did you mean `keepalive_interval`?");
        assert_eq!((l, c), (2, 4));
        let (m, help, ..) = err::<Top>("Inerr { }");
        assert_eq!(m, "unknown scope `Inerr` at the top level");
        assert_eq!(help[0], "did you mean `inner`?");
        assert!(help[1].contains("a, inner, listen, map"));
        let (_, help, ..) = err::<Top>("zzzzzzzz = 1");
        assert!(help[0].starts_with("valid here"));
    }

    #[test]
    fn merging_and_named_scopes() {
        let t: Top = de("inner { port = 1 name = a } a = 1 a = 2 INNER { port = 2 }").unwrap();
        assert_eq!(t.a.unwrap().value, 2);
        let i = t.inner.unwrap();
        assert_eq!((i.port, i.name.as_deref()), (Some(2), Some("a")));
        let t: Top = de("Listen \"x\" { port = 1 } listen y { }").unwrap();
        let l = t.listen.unwrap();
        assert_eq!(l.0.len(), 2);
        assert_eq!(l.0[0].0.value, "x");
        assert_eq!(l.0[0].0.pos.col, 8);
        assert_eq!(l.0[0].0.key.col, 1);
        assert_eq!(l.0[0].1.port, Some(1));
        assert!(
            err::<Top>("listen { }")
                .0
                .contains("needs an instance name")
        );
        assert!(
            err::<Top>("inner \"x\" { }")
                .0
                .contains("takes no instance name")
        );
        assert!(
            err::<Top>("a = 1 a { }")
                .0
                .contains("both as an option and as a scope")
        );
        let (m, _, l, c) = err::<Top>("listen x {\n port = q }");
        assert!(m.contains("`port` expects"), "{m}");
        assert_eq!((l, c), (2, 9));
        let (m, ..) = err::<Top>("listen x { bogus = 1 }");
        assert_eq!(m, "unknown option `bogus` in `listen \"x\"`");
    }

    #[test]
    fn dicts_keep_order_and_positions() {
        let t: Top = de("inner { d = [ b = \"1\" A.x = 2 b = 3 ] } map = [ k = v ]").unwrap();
        let d = t.inner.unwrap().d.unwrap();
        let keys: Vec<&str> = d.0.iter().map(|(k, _)| k.value.as_str()).collect();
        assert_eq!(keys, ["b", "A.x", "b"]);
        assert_eq!(d.0[1].0.pos.col, 23);
        assert_eq!(d.0[1].1.pos.col, 29);
        assert_eq!(t.map.unwrap()["k"], "v");
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kepalive", "keepalive"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(did_you_mean("prot", &["port", "peers"]), Some("port"));
        assert_eq!(did_you_mean("xyz", &["port"]), None);
    }
}
