//! Tokens of Momentum's config language: bare words, quoted strings and the
//! punctuation `= { } ( ) [ ]`; `#` and `/* */` comments and all whitespace
//! vanish here.

use super::diag::{Diag, Pos};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Anything up to whitespace or one of `# " = { } [ ] ( )` (or `/*`).
    Word(String),
    /// `"..."` with escapes applied.
    Str(String),
    Eq,
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Eq => "`=`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Eof => "end of file".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// Characters that end a bare word.
pub(crate) fn is_special(c: char) -> bool {
    is_space(c) || matches!(c, '#' | '"' | '=' | '{' | '}' | '[' | ']' | '(' | ')')
}

/// Whitespace, counting a byte-order mark (anywhere) as blank.
fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

struct Cursor<'a> {
    rest: &'a str,
    file: u32,
    line: u32,
    col: u32,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.rest.chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    fn pos(&self, len: u32) -> Pos {
        Pos {
            file: self.file,
            line: self.line,
            col: self.col,
            len,
        }
    }
}

/// Splits `text` into tokens, ending with `Tok::Eof`.
pub(crate) fn lex(text: &str, file: u32) -> Result<Vec<Token>, Diag> {
    let mut c = Cursor {
        rest: text,
        file,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        let Some(ch) = c.peek() else {
            out.push(Token {
                tok: Tok::Eof,
                pos: c.pos(1),
            });
            return Ok(out);
        };
        let start = c.pos(1);
        let punct = match ch {
            '=' => Some(Tok::Eq),
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            _ => None,
        };
        if let Some(tok) = punct {
            c.bump();
            out.push(Token { tok, pos: start });
        } else if is_space(ch) {
            c.bump();
        } else if ch == '#' {
            while let Some(x) = c.peek() {
                if x == '\n' {
                    break;
                }
                c.bump();
            }
        } else if ch == '/' && c.peek2() == Some('*') {
            c.bump();
            c.bump();
            loop {
                match c.bump() {
                    None => {
                        return Err(Diag::at(
                            "unterminated comment: `/*` has no closing `*/`",
                            Pos { len: 2, ..start },
                        )
                        .help("comments do not nest; close it with `*/`"));
                    }
                    Some('*') if c.peek() == Some('/') => {
                        c.bump();
                        break;
                    }
                    Some(_) => {}
                }
            }
        } else if ch == '"' {
            c.bump();
            let mut s = String::new();
            let mut len: u32 = 1;
            loop {
                match c.peek() {
                    None | Some('\n') => {
                        return Err(Diag::at(
                            "unterminated string: a quoted value must end with `\"` on the same line",
                            Pos { len, ..start },
                        ));
                    }
                    Some('"') => {
                        c.bump();
                        len = len.saturating_add(1);
                        break;
                    }
                    Some('\\') => {
                        c.bump();
                        len = len.saturating_add(1);
                        match c.peek() {
                            Some('"') => s.push('"'),
                            Some('\\') => s.push('\\'),
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            // Any other backslash is kept as written
                            // (regular expressions in domain names).
                            _ => {
                                s.push('\\');
                                continue;
                            }
                        }
                        c.bump();
                        len = len.saturating_add(1);
                    }
                    Some(x) => {
                        c.bump();
                        len = len.saturating_add(1);
                        s.push(x);
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos: Pos { len, ..start },
            });
        } else {
            let mut w = String::new();
            while let Some(x) = c.peek() {
                if is_special(x) || (x == '/' && c.peek2() == Some('*')) {
                    break;
                }
                c.bump();
                w.push(x);
            }
            let len = u32::try_from(w.chars().count()).unwrap_or(u32::MAX);
            out.push(Token {
                tok: Tok::Word(w),
                pos: Pos { len, ..start },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s, 0).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn words_and_punctuation() {
        assert_eq!(
            toks("a=b{c}(d)[e]"),
            vec![
                w("a"),
                Tok::Eq,
                w("b"),
                Tok::LBrace,
                w("c"),
                Tok::RBrace,
                Tok::LParen,
                w("d"),
                Tok::RParen,
                Tok::LBracket,
                w("e"),
                Tok::RBracket,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn bare_words_keep_slashes_colons_stars() {
        assert_eq!(
            toks("127.0.0.0/8 *:4802 /tmp/x :4809"),
            vec![
                w("127.0.0.0/8"),
                w("*:4802"),
                w("/tmp/x"),
                w(":4809"),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn comments() {
        assert_eq!(toks("a # b = c\nd"), vec![w("a"), w("d"), Tok::Eof]);
        assert_eq!(toks("a/* x \n y */b"), vec![w("a"), w("b"), Tok::Eof]);
        assert_eq!(toks("/* /* */ c"), vec![w("c"), Tok::Eof]);
        let e = lex("a /* never closed", 0).unwrap_err();
        assert!(e.msg.contains("unterminated comment"));
        assert_eq!(e.pos.unwrap().col, 3);
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            toks(r#""a b" "q\"x\\y\n\t\d""#),
            vec![
                Tok::Str("a b".into()),
                Tok::Str("q\"x\\y\n\t\\d".into()),
                Tok::Eof
            ]
        );
        let e = lex("x = \"abc\ndef\"", 0).unwrap_err();
        assert!(e.msg.contains("unterminated string"));
        let p = e.pos.unwrap();
        assert_eq!((p.line, p.col), (1, 5));
        assert!(lex("\"abc", 0).is_err());
        assert!(lex("\"abc\\", 0).is_err());
    }

    #[test]
    fn byte_order_marks_are_blank() {
        assert_eq!(toks("\u{feff}a\u{feff}b"), vec![w("a"), w("b"), Tok::Eof]);
    }

    #[test]
    fn positions_count_characters() {
        let t = lex("é = \"ü\"\n  x", 0).unwrap();
        assert_eq!((t[1].pos.line, t[1].pos.col), (1, 3));
        assert_eq!((t[2].pos.col, t[2].pos.len), (5, 3));
        assert_eq!((t[3].pos.line, t[3].pos.col), (2, 3));
    }
}
