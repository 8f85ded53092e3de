//! Just enough of a Rust lexer to find paths: comments are dropped, string
//! and character literals become one token each, so `crate::x` in a doc
//! comment or an error message is not an import.

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Ident,
    /// `::`
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    /// A string literal's contents (escapes left as written).
    Str,
    Other,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub kind: Kind,
    pub text: String,
    pub line: usize,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    out: Vec<Token>,
}

pub fn tokens(source: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        chars: source.chars().collect(),
        pos: 0,
        line: 1,
        out: Vec::new(),
    };
    while lexer.pos < lexer.chars.len() {
        lexer.step();
    }
    lexer.out
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Moves on by one character, counting lines.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn push(&mut self, kind: Kind, text: String, line: usize) {
        self.out.push(Token { kind, text, line });
    }

    fn step(&mut self) {
        let line = self.line;
        let c = self.peek(0).unwrap_or(' ');
        match (c, self.peek(1)) {
            ('/', Some('/')) => self.skip_line(),
            ('/', Some('*')) => self.skip_block_comment(),
            ('"', _) => {
                self.bump();
                let text = self.string_body(0);
                self.push(Kind::Str, text, line);
            }
            ('\'', _) => self.char_or_lifetime(),
            (':', Some(':')) => {
                self.pos += 2;
                self.push(Kind::PathSep, "::".into(), line);
            }
            _ if c.is_alphabetic() || c == '_' => self.ident_or_prefixed_literal(),
            _ if c.is_ascii_digit() => self.skip_number(),
            _ => {
                self.bump();
                let kind = match c {
                    '{' => Kind::Open,
                    '}' => Kind::Close,
                    ',' => Kind::Comma,
                    '*' => Kind::Star,
                    _ => Kind::Other,
                };
                if !c.is_whitespace() {
                    self.push(kind, c.to_string(), line);
                }
            }
        }
    }

    fn skip_line(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    /// Block comments nest in Rust.
    fn skip_block_comment(&mut self) {
        let mut depth = 0;
        while let Some(c) = self.bump() {
            if c == '/' && self.peek(0) == Some('*') {
                self.bump();
                depth += 1;
            } else if c == '*' && self.peek(0) == Some('/') {
                self.bump();
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
        }
    }

    /// The body of a string whose opening quote is consumed; `hashes` > 0
    /// for raw strings, which have no escapes.
    fn string_body(&mut self, hashes: usize) -> String {
        let mut text = String::new();
        while let Some(c) = self.bump() {
            if hashes == 0 && c == '\\' {
                text.push(c);
                text.extend(self.bump());
            } else if c == '"' && (0..hashes).all(|i| self.peek(i) == Some('#')) {
                self.pos += hashes;
                return text;
            } else {
                text.push(c);
            }
        }
        text
    }

    /// `'a'`, `'\n'` and `'\''` are literals; `'a` alone is a lifetime or a
    /// label, read on as an identifier (harmless: it is never a path).
    fn char_or_lifetime(&mut self) {
        let line = self.line;
        self.bump();
        if self.peek(0) == Some('\\') {
            // The backslash and the escaped character, then up to the quote
            // (`'\u{1F600}'` is longer).
            self.pos += 2;
            while let Some(c) = self.bump() {
                if c == '\'' || c == '\n' {
                    break;
                }
            }
            self.push(Kind::Other, "'".into(), line);
        } else if self.peek(1) == Some('\'') {
            self.pos += 2;
            self.push(Kind::Other, "'".into(), line);
        }
    }

    fn ident_or_prefixed_literal(&mut self) {
        let line = self.line;
        let start = self.pos;
        while self
            .peek(0)
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        let ident: String = self.chars[start..self.pos].iter().collect();
        let next = self.peek(0);
        match (ident.as_str(), next) {
            ("r" | "br" | "cr", Some('#' | '"')) if self.raw_string_ahead() => {
                let mut hashes = 0;
                while self.peek(0) == Some('#') {
                    self.pos += 1;
                    hashes += 1;
                }
                self.pos += 1;
                let text = self.string_body(hashes);
                self.push(Kind::Str, text, line);
            }
            ("r", Some('#')) => {
                // A raw identifier, `r#type`.
                self.pos += 1;
                self.ident_or_prefixed_literal();
            }
            ("b" | "c", Some('"')) => {
                self.pos += 1;
                let text = self.string_body(0);
                self.push(Kind::Str, text, line);
            }
            ("b", Some('\'')) => self.char_or_lifetime(),
            _ => self.push(Kind::Ident, ident, line),
        }
    }

    /// After `r`/`br`/`cr`: `#`* then `"` starts a raw string.
    fn raw_string_ahead(&self) -> bool {
        let mut i = 0;
        while self.peek(i) == Some('#') {
            i += 1;
        }
        self.peek(i) == Some('"')
    }

    fn skip_number(&mut self) {
        while self
            .peek(0)
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            // `0..n` is a range, not a float.
            if self.peek(0) == Some('.') && self.peek(1) == Some('.') {
                return;
            }
            self.bump();
        }
    }
}
