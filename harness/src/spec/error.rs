//! Errors in user-written files, always pointing at file, line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a spec file. `Display` gives `file:line:column: message`, the form
/// editors and CI annotations understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl SpecError {
    /// An error at a byte span of `source`.
    pub fn at(file: &Path, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let (line, column) = line_column(source, span.start);
        Self {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error about a file as a whole (missing, unreadable).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: message.into(),
        }
    }

    pub fn from_toml(file: &Path, source: &str, err: &toml::de::Error) -> Self {
        let span = err.span().unwrap_or(0..0);
        // toml's own message is multi-line with a source excerpt; keep its first sentence,
        // since file:line:column already locates it.
        Self::at(file, source, span, err.message().trim().to_string())
    }

    /// `from_toml` without the values serde quotes in "invalid type: string \"...\"":
    /// for files where a typed value may be a credential (platform, endpoints).
    pub fn from_toml_redacted(file: &Path, source: &str, err: &toml::de::Error) -> Self {
        let mut e = Self::from_toml(file, source, err);
        e.message = redact_quoted_values(&e.message);
        e
    }
}

/// Drops the value from serde's `Unexpected` texts (`string "x"`, `integer `5``,
/// `character `c``...), keeping the kind: "invalid type: string, expected u16".
pub fn redact_quoted_values(message: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r#"\b(string|integer|floating point|boolean|character|unit variant|newtype variant|tuple variant|struct variant) (?:"(?:[^"\\]|\\.)*"|`[^`]*`)"#,
        )
        .expect("a fixed pattern")
    });
    re.replace_all(message, "$1").into_owned()
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for SpecError {}

/// Several spec errors, reported together so a user fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> Self {
        Self(vec![e])
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("abc", 0, (1, 1))]
    #[case("abc", 2, (1, 3))]
    #[case("a\nbc", 2, (2, 1))]
    #[case("a\nbc", 3, (2, 2))]
    #[case("é\nx", 3, (2, 1))]
    #[case("abc", 99, (1, 4))]
    fn computes_line_and_column(
        #[case] src: &str,
        #[case] offset: usize,
        #[case] expected: (usize, usize),
    ) {
        assert_eq!(line_column(src, offset), expected);
    }

    #[rstest]
    #[case(
        r#"invalid type: string "hunter2", expected u16"#,
        "invalid type: string, expected u16"
    )]
    #[case(
        r#"invalid type: string "a\"b\\", expected x"#,
        "invalid type: string, expected x"
    )]
    #[case(
        "invalid type: integer `1234567`, expected a string",
        "invalid type: integer, expected a string"
    )]
    #[case(
        "invalid value: floating point `1.5`, expected u8",
        "invalid value: floating point, expected u8"
    )]
    #[case(
        "unknown field `password`, expected `env`",
        "unknown field `password`, expected `env`"
    )]
    fn redacts_quoted_values(#[case] message: &str, #[case] expected: &str) {
        assert_eq!(redact_quoted_values(message), expected);
    }

    #[test]
    fn displays_as_file_line_column() {
        let e = SpecError::at(
            Path::new("suites/x.toml"),
            "a\nb = 1",
            2..3,
            "unknown field `b`",
        );
        assert_eq!(e.to_string(), "suites/x.toml:2:1: unknown field `b`");
    }
}
