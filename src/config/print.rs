//! Prints a tree back as config text that parses to the same tree: used by
//! tests (round trip) and handy for showing a normalised config.

use std::fmt::Write;

use super::lexer::is_special;
use super::tree::{Item, Value};

/// The tree as config text, two spaces per level.
pub fn print(items: &[Item]) -> String {
    let mut out = String::new();
    body(&mut out, items, 0);
    out
}

fn body(out: &mut String, items: &[Item], level: usize) {
    let pad = "  ".repeat(level);
    for item in items {
        out.push_str(&pad);
        match item {
            Item::Option(o) => {
                let _ = write!(out, "{} = ", o.key.written);
                value(out, &o.value, level);
            }
            Item::Scope(s) => {
                out.push_str(&s.name.written);
                if let Some(i) = &s.instance {
                    out.push(' ');
                    out.push_str(&quote(&i.text));
                }
                if s.body.is_empty() {
                    out.push_str(" {}");
                } else {
                    out.push_str(" {\n");
                    body(out, &s.body, level + 1);
                    out.push_str(&pad);
                    out.push('}');
                }
            }
            Item::Include(i) => {
                let kw = if i.readonly {
                    "readonly_include"
                } else {
                    "include"
                };
                let _ = write!(out, "{kw} {}", quote(&i.path.text));
            }
        }
        out.push('\n');
    }
}

fn value(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Scalar(s) => out.push_str(&word_or_quote(&s.text)),
        Value::Array(elems, _) => {
            out.push('(');
            for e in elems {
                out.push(' ');
                value(out, e, level);
            }
            out.push_str(" )");
        }
        Value::Dict(entries, _) => {
            let pad = "  ".repeat(level + 1);
            out.push_str("[\n");
            for e in entries {
                let _ = write!(out, "{pad}{} = ", word_or_quote(&e.key.text));
                value(out, &e.value, level + 1);
                out.push('\n');
            }
            out.push_str(&"  ".repeat(level));
            out.push(']');
        }
    }
}

/// Bare when the lexer would read it back as one word, else quoted.
fn word_or_quote(s: &str) -> String {
    if !s.is_empty() && !s.chars().any(is_special) && !s.contains("/*") {
        s.to_owned()
    } else {
        quote(s)
    }
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diag::Pos;
    use crate::config::parser::parse;
    use crate::config::tree::{Entry, Include, Name, Opt, Scalar, Scope, clear_positions};
    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            "[A-Za-z0-9_.:*/-]{1,12}",
            any::<String>(),
            "[ \"\\\\\t\n#=(){}\\[\\]/*a]{0,8}",
        ]
        .prop_map(|text| Scalar {
            text,
            pos: Pos::default(),
        })
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar()
            .prop_map(Value::Scalar)
            .prop_recursive(3, 24, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5)
                        .prop_map(|v| Value::Array(v, Pos::default())),
                    prop::collection::vec((scalar(), inner), 0..4).prop_map(|v| Value::Dict(
                        v.into_iter()
                            .map(|(key, value)| Entry { key, value })
                            .collect(),
                        Pos::default()
                    )),
                ]
            })
    }

    fn name() -> impl Strategy<Value = Name> {
        "[A-Za-z_][A-Za-z0-9_.]{0,10}"
            .prop_filter("keyword", |n| {
                let l = n.to_lowercase();
                l != "include" && l != "readonly_include"
            })
            .prop_map(|n| Name::new(&n, Pos::default()))
    }

    fn items() -> impl Strategy<Value = Vec<Item>> {
        let leaf = prop_oneof![
            (name(), value()).prop_map(|(key, value)| Item::Option(Opt { key, value })),
            (any::<bool>(), scalar()).prop_map(|(readonly, path)| Item::Include(Include {
                readonly,
                pos: Pos::default(),
                path
            })),
        ];
        let item = leaf.prop_recursive(4, 40, 6, |inner| {
            (
                name(),
                prop::option::of(scalar()),
                prop::collection::vec(inner, 0..6),
            )
                .prop_map(|(name, instance, body)| {
                    Item::Scope(Scope {
                        name,
                        instance,
                        body,
                    })
                })
        });
        prop::collection::vec(item, 0..8)
    }

    proptest! {
        #[test]
        fn print_then_parse_round_trips(tree in items()) {
            let text = print(&tree);
            let mut back = parse(&text, 0, 0).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            clear_positions(&mut back);
            prop_assert_eq!(back, tree, "{}", text);
        }
    }

    #[test]
    fn prints_readably() {
        let src = "Listen \":4809\" { enable = yes }\npeers = [ node1 = \"1.2.3.4\" ]\nx = ( a \"b c\" )\n";
        let mut items = parse(src, 0, 0).unwrap();
        clear_positions(&mut items);
        assert_eq!(
            print(&items),
            "Listen \":4809\" {\n  enable = yes\n}\npeers = [\n  node1 = 1.2.3.4\n]\nx = ( a \"b c\" )\n"
        );
    }
}
