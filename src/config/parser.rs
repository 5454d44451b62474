//! Recursive-descent parser: tokens of one file → [`Item`]s. Includes are
//! left as [`Item::Include`] for the loader; nesting is bounded so no input
//! can exhaust the stack.

use super::diag::{Diag, Pos};
use super::lexer::{Tok, Token, lex};
use super::tree::{Entry, Include, Item, MAX_NESTING, Name, Opt, Scalar, Scope, Value};

/// Parses one file. `depth` is the nesting level of the include site.
pub(crate) fn parse(text: &str, file: u32, depth: usize) -> Result<Vec<Item>, Diag> {
    let toks = lex(text, file)?;
    let mut p = Parser { toks, i: 0 };
    let items = p.items(depth, None)?;
    Ok(items)
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
}

const EQ_HELP: &str =
    "options are written `key = value`; only the console lets you leave out the `=`";

impl Parser {
    fn peek(&self) -> &Token {
        // `lex` always ends with Eof and `next` never moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &Token {
        &self.toks[(self.i + n).min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn check_depth(depth: usize, pos: Pos) -> Result<(), Diag> {
        if depth >= MAX_NESTING {
            Err(Diag::at(
                format!(
                    "nesting too deep: more than {MAX_NESTING} levels of scopes, arrays and dictionaries"
                ),
                pos,
            ))
        } else {
            Ok(())
        }
    }

    /// Statements until `}` (inside `scope`) or end of file (top level).
    fn items(&mut self, depth: usize, scope: Option<&Name>) -> Result<Vec<Item>, Diag> {
        let mut items = Vec::new();
        loop {
            let t = self.next();
            match t.tok {
                Tok::Eof => {
                    return match scope {
                        None => Ok(items),
                        Some(name) => Err(Diag::at(
                            format!(
                                "unterminated scope `{}`: expected `}}` before end of file",
                                name.written
                            ),
                            name.pos,
                        )),
                    };
                }
                Tok::RBrace => {
                    return match scope {
                        Some(_) => Ok(items),
                        None => Err(Diag::at("unexpected `}`: no scope is open here", t.pos)),
                    };
                }
                Tok::Word(w) => items.push(self.statement(w, t.pos, depth)?),
                other => {
                    return Err(Diag::at(
                        format!(
                            "expected an option or scope name, found {}",
                            other.describe()
                        ),
                        t.pos,
                    ));
                }
            }
        }
    }

    fn statement(&mut self, word: String, pos: Pos, depth: usize) -> Result<Item, Diag> {
        let lower = word.to_lowercase();
        let next = self.peek().clone();
        if lower == "include" || lower == "readonly_include" {
            if let Tok::Word(path) | Tok::Str(path) = &next.tok {
                let path = Scalar {
                    text: path.clone(),
                    pos: next.pos,
                };
                self.next();
                return Ok(Item::Include(Include {
                    readonly: lower == "readonly_include",
                    pos,
                    path,
                }));
            }
        }
        let name = Name::new(&word, pos);
        match next.tok {
            Tok::Eq => {
                self.next();
                let value = self.value(depth, &name)?;
                Ok(Item::Option(Opt { key: name, value }))
            }
            Tok::LBrace => {
                self.next();
                Self::check_depth(depth, pos)?;
                let body = self.items(depth + 1, Some(&name))?;
                Ok(Item::Scope(Scope {
                    name,
                    instance: None,
                    body,
                }))
            }
            Tok::Word(ref inst) | Tok::Str(ref inst) => {
                if self.peek_at(1).tok == Tok::LBrace {
                    let instance = Scalar {
                        text: inst.clone(),
                        pos: next.pos,
                    };
                    self.next();
                    self.next();
                    Self::check_depth(depth, pos)?;
                    let body = self.items(depth + 1, Some(&name))?;
                    Ok(Item::Scope(Scope {
                        name,
                        instance: Some(instance),
                        body,
                    }))
                } else {
                    Err(Diag::at(
                        format!("expected `=` between `{word}` and {}", next.tok.describe()),
                        next.pos,
                    )
                    .help(EQ_HELP))
                }
            }
            other => Err(Diag::at(
                format!(
                    "expected `=`, `{{` or an instance name after `{word}`, found {}",
                    other.describe()
                ),
                next.pos,
            )
            .help(EQ_HELP)),
        }
    }

    /// A value after `key =` (or inside an array or dictionary).
    fn value(&mut self, depth: usize, key: &Name) -> Result<Value, Diag> {
        let t = self.next();
        match t.tok {
            Tok::Word(text) | Tok::Str(text) => Ok(Value::Scalar(Scalar { text, pos: t.pos })),
            Tok::LParen => {
                Self::check_depth(depth, t.pos)?;
                let mut elems = Vec::new();
                loop {
                    let n = self.peek().clone();
                    match n.tok {
                        Tok::RParen => {
                            self.next();
                            return Ok(Value::Array(elems, t.pos));
                        }
                        Tok::Eof => {
                            return Err(Diag::at(
                                format!("unterminated array in `{}`: expected `)`", key.written),
                                t.pos,
                            ));
                        }
                        Tok::Word(_) | Tok::Str(_) | Tok::LParen | Tok::LBracket => {
                            elems.push(self.value(depth + 1, key)?);
                        }
                        other => {
                            return Err(Diag::at(
                                format!(
                                    "unexpected {} in the array of `{}`: arrays are written `( value value ... )`",
                                    other.describe(),
                                    key.written
                                ),
                                n.pos,
                            ));
                        }
                    }
                }
            }
            Tok::LBracket => {
                Self::check_depth(depth, t.pos)?;
                let mut entries = Vec::new();
                loop {
                    let k = self.next();
                    let key_text = match k.tok {
                        Tok::RBracket => return Ok(Value::Dict(entries, t.pos)),
                        Tok::Eof => {
                            return Err(Diag::at(
                                format!(
                                    "unterminated dictionary in `{}`: expected `]`",
                                    key.written
                                ),
                                t.pos,
                            ));
                        }
                        Tok::Word(s) | Tok::Str(s) => s,
                        other => {
                            return Err(self.dict_error(&other, k.pos, key));
                        }
                    };
                    let eq = self.next();
                    if eq.tok != Tok::Eq {
                        return Err(self.dict_error(&eq.tok, eq.pos, key));
                    }
                    let n = self.peek().clone();
                    if !matches!(
                        n.tok,
                        Tok::Word(_) | Tok::Str(_) | Tok::LParen | Tok::LBracket
                    ) {
                        return Err(self.dict_error(&n.tok, n.pos, key));
                    }
                    let value = self.value(depth + 1, key)?;
                    entries.push(Entry {
                        key: Scalar {
                            text: key_text,
                            pos: k.pos,
                        },
                        value,
                    });
                }
            }
            other => Err(Diag::at(
                format!(
                    "missing value after `{} =`, found {}",
                    key.written,
                    other.describe()
                ),
                t.pos,
            )),
        }
    }

    fn dict_error(&self, found: &Tok, pos: Pos, key: &Name) -> Diag {
        Diag::at(
            format!(
                "unexpected {} in the dictionary of `{}`: dictionaries are written `[ key = value ... ]`",
                found.describe(),
                key.written
            ),
            pos,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::clear_positions;

    pub(crate) fn p(s: &str) -> Vec<Item> {
        let mut items = parse(s, 0, 0).unwrap_or_else(|e| panic!("{s}: {e:?}"));
        clear_positions(&mut items);
        items
    }

    fn err(s: &str) -> (String, u32, u32) {
        let e = parse(s, 0, 0).unwrap_err();
        let pos = e.pos.unwrap();
        (e.msg, pos.line, pos.col)
    }

    fn sc(s: &str) -> Value {
        Value::Scalar(Scalar {
            text: s.into(),
            pos: Pos::default(),
        })
    }

    #[test]
    fn options_scopes_named_scopes() {
        let items =
            p("a = 1 B = \"x y\" Scope { c = d } Listen \"*:4802\"\n{\n}\nDomain yahoo.com { }");
        assert_eq!(items.len(), 5);
        let Item::Option(o) = &items[1] else { panic!() };
        assert_eq!((o.key.name.as_str(), o.key.written.as_str()), ("b", "B"));
        assert_eq!(o.value, sc("x y"));
        let Item::Scope(s) = &items[3] else { panic!() };
        assert_eq!(s.name.name, "listen");
        assert_eq!(s.instance.as_ref().unwrap().text, "*:4802");
        let Item::Scope(s) = &items[4] else { panic!() };
        assert_eq!(s.instance.as_ref().unwrap().text, "yahoo.com");
    }

    #[test]
    fn arrays_and_dicts() {
        let items = p(
            "x = ( a \"b c\"\n # comment\n /* c */ d ) e = () f = [ node1.example.com = \"1.2.3.4\" \"q k\" = v ]",
        );
        let Item::Option(o) = &items[0] else { panic!() };
        assert_eq!(
            o.value,
            Value::Array(vec![sc("a"), sc("b c"), sc("d")], Pos::default())
        );
        let Item::Option(o) = &items[1] else { panic!() };
        assert_eq!(o.value, Value::Array(vec![], Pos::default()));
        let Item::Option(o) = &items[2] else { panic!() };
        let Value::Dict(e, _) = &o.value else {
            panic!()
        };
        assert_eq!(e[0].key.text, "node1.example.com");
        assert_eq!(e[1].key.text, "q k");
    }

    #[test]
    fn includes() {
        let items = p("include \"a.conf\" readonly_include b.conf s { include c }");
        assert!(matches!(&items[0], Item::Include(i) if !i.readonly && i.path.text == "a.conf"));
        assert!(matches!(&items[1], Item::Include(i) if i.readonly && i.path.text == "b.conf"));
        // `include = x` is an ordinary option.
        assert!(matches!(&p("include = x")[0], Item::Option(_)));
    }

    #[test]
    fn errors() {
        assert_eq!(err("a {\n b = c\n").1, 1);
        assert!(err("a {\n b = c\n").0.contains("unterminated scope `a`"));
        assert_eq!(
            err("a = b\n}"),
            ("unexpected `}`: no scope is open here".into(), 2, 1)
        );
        let (m, l, c) = err("port 4809");
        assert!(m.contains("expected `=`"), "{m}");
        assert_eq!((l, c), (1, 6));
        assert!(err("a = }").0.contains("missing value after `a =`"));
        assert!(err("a =").0.contains("missing value"));
        assert!(err("a = ( b = c )").0.contains("array"));
        assert!(err("a = ( b ").0.contains("unterminated array"));
        assert!(err("a = [ b c ]").0.contains("dictionary"));
        assert!(err("a = [ b = ]").0.contains("dictionary"));
        assert!(err("a = [ b = c").0.contains("unterminated dictionary"));
        assert!(
            err("\"x\" = 1")
                .0
                .contains("expected an option or scope name")
        );
        assert!(err("a }").0.contains("expected `=`, `{`"));
    }

    #[test]
    fn nesting_limit() {
        let deep = "a { ".repeat(70) + &"}".repeat(70);
        assert!(err(&deep).0.contains("nesting too deep"));
        let deep = "a = ".to_owned() + &"(".repeat(100_000);
        assert!(err(&deep).0.contains("nesting too deep"));
        let ok = "a { ".repeat(64) + &"}".repeat(64);
        assert!(parse(&ok, 0, 0).is_ok());
    }
}
