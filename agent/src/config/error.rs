//! What a config error says: the file, the key and what was expected; for a TOML syntax
//! error, the line and column, with the line shown and a caret under the column.

use std::fmt;

/// A configuration error: which file, which key, what was wrong.
///
/// Displayed as `FILE: KEY: MESSAGE`. A TOML syntax error has a position instead of a key,
/// and shows the line with a caret under the column:
///
/// ```text
/// agent.toml: line 4, column 7: not valid TOML: extra `=`, expected nothing
///   4 | ttl = = 1
///     |       ^
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file as the user named it.
    pub file: String,
    /// The dotted key path, for example `activity.ports[1]`; `line L, column C` for a TOML
    /// syntax error; `(file)` for the file itself.
    pub key: String,
    /// What was found and what was expected.
    pub message: String,
    /// Where a TOML syntax error is; `None` for every other error.
    pub at: Option<Position>,
}

/// A place in the config text, for syntax errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters (a tab is one).
    pub column: usize,
    /// The whole line, without its line ending.
    pub text: String,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    pub(super) fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        Self {
            line: text[..start].matches('\n').count() + 1,
            column: text[start..offset].chars().count() + 1,
            text: text[start..end].trim_end_matches('\r').to_string(),
        }
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.message)?;
        if let Some(at) = &self.at {
            // Keep tabs in the caret line so the caret lines up under a tab-indented line.
            let pad: String = at
                .text
                .chars()
                .take(at.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let gutter = " ".repeat(at.line.to_string().len());
            write!(f, "\n  {} | {}\n  {gutter} | {pad}^", at.line, at.text)?;
        }
        Ok(())
    }
}

/// A TOML syntax error at its line and column. The parser's "duplicate key" does not say
/// which key: the text at the position does.
pub(super) fn syntax_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let mut message = format!("not valid TOML: {}", one_line(e.message()));
    let Some(span) = e.span() else {
        return ConfigError {
            file: file.to_string(),
            key: "(file)".into(),
            message,
            at: None,
        };
    };
    let at = Position::of(text, span.start);
    if e.message() == "duplicate key"
        && let Some(key) = text
            .get(span)
            .filter(|k| !k.is_empty() && !k.contains('\n'))
    {
        message = format!(
            "not valid TOML: duplicate key `{key}` (each key and table may be defined only once)"
        );
    }
    ConfigError {
        file: file.to_string(),
        key: format!("line {}, column {}", at.line, at.column),
        message,
        at: Some(at),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// serde's messages say "unknown field" and "missing field"; our users write keys.
pub(super) fn describe_serde_error(msg: &str) -> String {
    let msg = one_line(msg);
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        return format!("missing required key {rest}");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::super::testing::{err, with};

    /// A file that is not TOML names the line and column (1-based, in characters) and shows
    /// the line, like a compiler does.
    #[test]
    fn syntax_errors_name_the_line_and_column_and_show_the_line() {
        let head = "[container]\necs_container_name = \"game\"\n";
        let cases = [
            // (file, line, column, the line shown, what the message says)
            (
                format!("{head}[dns]\nttl = = 1\n"),
                4,
                7,
                "ttl = = 1",
                "extra",
            ),
            (
                format!("{head}docker_name = \"game\n[activity]\nports = [\"udp:1\"]\n"),
                3,
                20,
                "docker_name = \"game",
                "string",
            ),
            (
                format!("{head}ecs_container_name = \"other\"\n"),
                3,
                1,
                "ecs_container_name = \"other\"",
                "duplicate key `ecs_container_name`",
            ),
            (
                format!("{head}[activity]\nports = [\"udp:1\"]\n\n[container]\n"),
                6,
                2,
                "[container]",
                "duplicate key `container`",
            ),
            // Columns count characters, not bytes; a tab before the error is one column.
            (
                format!("{head}\tdocker_name = \"sp\u{ef}el\" = 1\n"),
                3,
                24,
                "\tdocker_name = \"sp\u{ef}el\" = 1",
                "",
            ),
            ("[container\n".to_string(), 1, 11, "[container", ""),
        ];
        for (text, line, column, shown, needle) in cases {
            let e = err(&text);
            let at =
                e.at.as_ref()
                    .unwrap_or_else(|| panic!("no position for:\n{text}\ngot: {e}"));
            assert_eq!(
                (at.line, at.column, at.text.as_str()),
                (line, column, shown),
                "for input:\n{text}\ngot: {e}"
            );
            assert_eq!(e.key, format!("line {line}, column {column}"), "{e}");
            assert!(
                e.message.starts_with("not valid TOML: ") && e.message.contains(needle),
                "for input:\n{text}\ngot: {e}"
            );
            // The line is shown, and the caret sits under the column (a tab stays a tab).
            let pad: String = shown
                .chars()
                .take(column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let gutter = " ".repeat(line.to_string().len());
            let expected = format!(
                "agent.toml: line {line}, column {column}: {}\n  {line} | {shown}\n  {gutter} | {pad}^",
                e.message
            );
            assert_eq!(e.to_string(), expected);
        }
    }

    #[test]
    fn a_stray_equals_sign_reads_like_a_compiler_error() {
        let e = err("[container]\necs_container_name = \"game\"\n[dns]\nttl = = 1\n");
        assert_eq!(
            e.to_string(),
            "agent.toml: line 4, column 7: not valid TOML: extra `=`, expected nothing\n  4 | ttl = = 1\n    |       ^"
        );
    }

    #[test]
    fn errors_after_parsing_have_no_position() {
        let e = err(&with(
            "",
            "",
            "[dns]\nhosted_zone_id = \"Z1\"\nrecord_name = \"a.b\"\nttl = -5",
        ));
        assert_eq!(e.at, None);
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
    }
}
