//! UCI's file syntax, as libuci reads it (`file.c`, `uci_parse_line`):
//!
//! - one command per line (or several, split by a `;` that starts an
//!   argument or follows a quoted one; a `;` right after unquoted text ends
//!   the line there, the rest dropped, as libuci's in-place parsing does):
//!   `package NAME`,
//!   `config TYPE [NAME]`, `option NAME [VALUE]`, `list NAME [VALUE]`, each
//!   keyword also as its first letter (`c`, `o`, `l`, `p`);
//! - an argument is a run of unquoted text, `'single'` quoted (nothing
//!   escaped), and `"double"` quoted (`\` escapes the next character) pieces
//!   without space between them: `'a'"b"c` is `abc`; quoted text may span
//!   lines; `\` at the end of a line continues it;
//! - `#` outside quotes starts a comment to the end of the line;
//! - a named section given twice is one section (its type must agree); an
//!   `option` given twice keeps the last value, `list` adds an item (and turns
//!   an earlier `option` of the name into the list's first item), `option`
//!   after `list` replaces the list; `option NAME` without a value, or with
//!   an empty one, changes nothing;
//! - names are `[A-Za-z0-9_]`, types any printable ASCII but space; only ASCII
//!   white space separates (libuci's C-locale `isspace`); more arguments
//!   than the command takes are an error (libuci's default, strict mode).
//!
//! Checked against libuci built from openwrt/uci (`uci export` of the same
//! files) where the rules above are not obvious from its source.
//!
//! Pure: text in, sections or every error (line and column) out. Where libuci
//! stops at the first error, this reads on from the next line, so a homeowner
//! sees every mistake at once.

/// Where something starts in the file: 1-based line and column (characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// One value with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The value, quotes and escapes resolved.
    pub text: String,
    /// Where the value starts (the option's name when it has no value).
    pub at: Pos,
}

/// An `option` (one value) or a `list` (its items in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciOption {
    /// The option's name.
    pub name: String,
    /// Written with `list` (or turned into one by a `list` line).
    pub is_list: bool,
    /// One value for an option, the items of a list.
    pub values: Vec<Located>,
    /// Where its (last) `option` or first `list` line starts.
    pub at: Pos,
}

/// A `config TYPE [NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section's type (`config TYPE`).
    pub kind: String,
    /// Its name; `None` for an anonymous section.
    pub name: Option<String>,
    /// Its options, in the order first written.
    pub options: Vec<UciOption>,
    /// Where its first `config` line starts.
    pub at: Pos,
}

impl Section {
    /// The option called `name`, if set.
    pub fn option(&self, name: &str) -> Option<&UciOption> {
        self.options.iter().find(|o| o.name == name)
    }
}

/// A parsed UCI file: its sections in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UciFile {
    /// The sections, in the order first written.
    pub sections: Vec<Section>,
}

/// A syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {message}", at.line, at.column)]
pub struct SyntaxError {
    /// Where.
    pub at: Pos,
    /// What is wrong.
    pub message: String,
}

/// Parses a UCI file.
pub fn parse(text: &str) -> Result<UciFile, Vec<SyntaxError>> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        column: 1,
        file: UciFile::default(),
        current: None,
        errors: Vec::new(),
    };
    parser.run();
    if parser.errors.is_empty() {
        Ok(parser.file)
    } else {
        Err(parser.errors)
    }
}

struct Parser {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
    file: UciFile,
    /// Index of the section options go to.
    current: Option<usize>,
    errors: Vec<SyntaxError>,
}

/// How an argument ended.
#[derive(PartialEq, Eq)]
enum End {
    /// Whitespace, a comment, the end of the line or of the file.
    Line,
    /// `;`: another command follows on the line.
    Command,
    /// `;` right after unquoted text: libuci ends the line there.
    Dropped,
}

/// libuci's `isspace` (C locale): ASCII white space only.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Why a line is abandoned.
struct Abandon(SyntaxError);

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn fail(&self, at: Pos, message: impl Into<String>) -> Abandon {
        Abandon(SyntaxError {
            at,
            message: message.into(),
        })
    }

    fn run(&mut self) {
        while self.peek().is_some() {
            if let Err(Abandon(e)) = self.line_of_commands() {
                self.errors.push(e);
            }
            self.skip_rest_of_line();
        }
    }

    /// Spaces and tabs (not the newline: commands end there).
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r' | '\x0b' | '\x0c')) {
            self.bump();
        }
    }

    fn skip_rest_of_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn at_line_end(&self) -> bool {
        matches!(self.peek(), None | Some('\n' | '#'))
    }

    fn line_of_commands(&mut self) -> Result<(), Abandon> {
        loop {
            self.skip_blanks();
            if self.at_line_end() {
                return Ok(());
            }
            let at = self.pos();
            let mut word = String::new();
            while let Some(c) = self.peek() {
                if is_space(c) || c == ';' {
                    break;
                }
                word.push(c);
                self.bump();
            }
            let end = match word.as_str() {
                "package" | "p" => self.package(at)?,
                "config" | "c" => self.config(at)?,
                "option" | "o" => self.option(at, false)?,
                "list" | "l" => self.option(at, true)?,
                _ => return Err(self.fail(at, format!("invalid command `{}`", word.escape_debug()))),
            };
            match end {
                End::Line | End::Dropped => return Ok(()),
                End::Command => continue,
            }
        }
    }

    /// The next argument, or `None` at the end of the command.
    fn argument(&mut self) -> Result<(Option<Located>, End), Abandon> {
        self.skip_blanks();
        let at = self.pos();
        if self.peek() == Some(';') {
            self.bump();
            return Ok((None, End::Command));
        }
        if self.at_line_end() {
            return Ok((None, End::Line));
        }
        let mut text = String::new();
        // Whether the last piece read was unquoted text.
        let mut bare = false;
        loop {
            match self.peek() {
                None | Some('\n' | '#') => break,
                Some(c) if is_space(c) => break,
                Some(';') => {
                    self.bump();
                    let end = if bare { End::Dropped } else { End::Command };
                    return Ok((Some(Located { text, at }), end));
                }
                Some('\'') => {
                    bare = false;
                    let open = self.pos();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(self.fail(open, "unterminated ' (the file ends inside it)")),
                            Some('\'') => break,
                            Some(c) => text.push(c),
                        }
                    }
                }
                Some('"') => {
                    bare = false;
                    let open = self.pos();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(self.fail(open, "unterminated \" (the file ends inside it)")),
                            Some('"') => break,
                            Some('\\') => self.escaped(&mut text),
                            Some(c) => text.push(c),
                        }
                    }
                }
                Some('\\') => {
                    bare = true;
                    self.bump();
                    self.escaped(&mut text);
                }
                Some(c) => {
                    bare = true;
                    text.push(c);
                    self.bump();
                }
            }
        }
        Ok((Some(Located { text, at }), End::Line))
    }

    /// After a `\`: a line break (or CR LF) continues the line; any other
    /// character is taken as it is.
    fn escaped(&mut self, text: &mut String) {
        match self.peek() {
            None => {}
            Some('\n') => {
                self.bump();
            }
            Some('\r') if self.chars.get(self.i + 1) == Some(&'\n') => {
                self.bump();
                self.bump();
            }
            Some(c) => {
                text.push(c);
                self.bump();
            }
        }
    }

    /// Nothing may follow a command's arguments but its end.
    fn end_of_command(&mut self, end: End) -> Result<End, Abandon> {
        if end != End::Line {
            return Ok(end);
        }
        let (extra, end) = self.argument()?;
        match extra {
            Some(extra) => Err(self.fail(
                extra.at,
                format!("too many arguments (`{}` is one more)", extra.text.escape_debug()),
            )),
            None => Ok(end),
        }
    }

    fn package(&mut self, at: Pos) -> Result<End, Abandon> {
        let (name, end) = self.argument()?;
        let Some(name) = name.filter(|n| !n.text.is_empty()) else {
            return Err(self.fail(at, "package without a name"));
        };
        if !valid_name(&name.text, true) {
            return Err(self.fail(name.at, "invalid character in the package name (a-z A-Z 0-9 _ -)"));
        }
        self.end_of_command(end)
    }

    fn config(&mut self, at: Pos) -> Result<End, Abandon> {
        let (kind, mut end) = self.argument()?;
        let Some(kind) = kind.filter(|k| !k.text.is_empty()) else {
            return Err(self.fail(at, "config without a type"));
        };
        if !valid_type(&kind.text) {
            return Err(self.fail(kind.at, "invalid character in the section type (printable ASCII)"));
        }
        let mut name = None;
        if end == End::Line {
            let (n, e) = self.argument()?;
            end = e;
            if let Some(n) = n.filter(|n| !n.text.is_empty()) {
                if !valid_name(&n.text, false) {
                    return Err(self.fail(n.at, "invalid character in the section name (a-z A-Z 0-9 _)"));
                }
                name = Some(n.text);
            }
        }
        let end = self.end_of_command(end)?;
        let existing = name
            .as_deref()
            .and_then(|n| self.file.sections.iter().position(|s| s.name.as_deref() == Some(n)));
        match existing {
            Some(i) => {
                if self.file.sections[i].kind != kind.text {
                    let first = self.file.sections[i].at.line;
                    return Err(self.fail(
                        kind.at,
                        format!(
                            "section `{}` was a `{}` on line {first}; a section of another type cannot take its name",
                            name.unwrap_or_default(),
                            self.file.sections[i].kind
                        ),
                    ));
                }
                self.current = Some(i);
            }
            None => {
                self.file.sections.push(Section {
                    kind: kind.text,
                    name,
                    options: Vec::new(),
                    at,
                });
                self.current = Some(self.file.sections.len() - 1);
            }
        }
        Ok(end)
    }

    fn option(&mut self, at: Pos, list: bool) -> Result<End, Abandon> {
        let what = if list { "list" } else { "option" };
        let Some(current) = self.current else {
            return Err(self.fail(at, format!("{what} before the first `config` section")));
        };
        let (name, end) = self.argument()?;
        let Some(name) = name.filter(|n| !n.text.is_empty()) else {
            return Err(self.fail(at, format!("{what} without a name")));
        };
        if !valid_name(&name.text, false) {
            return Err(self.fail(name.at, format!("invalid character in the {what} name (a-z A-Z 0-9 _)")));
        }
        let (value, end) = match end {
            End::Line => self.argument()?,
            other => (None, other),
        };
        let end = self.end_of_command(end)?;
        let options = &mut self.file.sections[current].options;
        let existing = options.iter().position(|o| o.name == name.text);
        // libuci: `option NAME` with no value, or an empty one, changes nothing.
        let value = if list {
            value
        } else {
            value.filter(|v| !v.text.is_empty())
        };
        match (list, value, existing) {
            (false, None, _) => {}
            (false, Some(v), Some(i)) => {
                options[i] = UciOption {
                    name: name.text,
                    is_list: false,
                    values: vec![v],
                    at,
                };
            }
            (false, Some(v), None) => options.push(UciOption {
                name: name.text,
                is_list: false,
                values: vec![v],
                at,
            }),
            (true, v, existing) => {
                let item = v.unwrap_or(Located {
                    text: String::new(),
                    at: name.at,
                });
                match existing {
                    Some(i) => {
                        options[i].is_list = true;
                        options[i].values.push(item);
                    }
                    None => options.push(UciOption {
                        name: name.text,
                        is_list: true,
                        values: vec![item],
                        at,
                    }),
                }
            }
        }
        Ok(end)
    }
}

/// libuci's `uci_validate_type`: printable ASCII, no space.
fn valid_type(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic())
}

/// libuci's `uci_validate_str` for names: letters, digits, `_` (and `-` for
/// package names).
fn valid_name(s: &str, dash: bool) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dash && c == '-'))
}
