//! Errors of the API: no answer, an error status with MLflow's `{error_code, message}`,
//! or an answer the API does not document; and reading error bodies of any shape.

use std::fmt;

use serde::Deserialize;

/// Why a call did not give what was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// No answer: connection refused, timeout, TLS, a bad URL.
    Transport { url: String, cause: String },
    /// The server answered with an error status; MLflow's body is `{error_code, message}`.
    Api {
        method: String,
        url: String,
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// An answer that is not what the API documents.
    Protocol { url: String, cause: String },
}

impl Error {
    /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, ...), when the server gave one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Api { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport { url, cause } => write!(f, "{url}: {cause}"),
            Self::Api {
                method,
                url,
                status,
                error_code,
                message,
            } => {
                write!(f, "{method} {url}: HTTP {status}")?;
                if let Some(code) = error_code {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Self::Protocol { url, cause } => write!(f, "{url}: unexpected answer: {cause}"),
        }
    }
}

impl std::error::Error for Error {}

/// `{error_code, message}` from an error body; otherwise a short snippet of whatever the
/// server (or a proxy in front of it) sent.
pub(super) fn api_error(body: &[u8]) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct ApiError {
        error_code: Option<String>,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) if e.error_code.is_some() || !e.message.is_empty() => (e.error_code, e.message),
        _ => (None, html_title(body).unwrap_or_else(|| snippet(body))),
    }
}

/// An unhandled exception in the server (e.g. the artifact store failing) gives Flask's
/// HTML error page; its title says what happened, the server's log says why.
fn html_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title = text[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Some(format!(
        "{title} (an HTML error page: the server's log has the cause)"
    ))
}

/// The body on one line, masked before it is cut (a cut secret no longer matches).
pub(super) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    crate::mask::clip(&text.split_whitespace().collect::<Vec<_>>().join(" "), MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        br#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'x' not found"}"#.as_slice(),
        Some("RESOURCE_DOES_NOT_EXIST"),
        "Run 'x' not found"
    )]
    #[case(b"<html>\n<h1>Internal   Server Error</h1></html>".as_slice(), None, "<html> <h1>Internal Server Error</h1></html>")]
    #[case(
        b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>".as_slice(),
        None,
        "500 Internal Server Error (an HTML error page: the server's log has the cause)"
    )]
    #[case(b"".as_slice(), None, "")]
    fn reads_api_errors(#[case] body: &[u8], #[case] code: Option<&str>, #[case] message: &str) {
        assert_eq!(
            api_error(body),
            (code.map(str::to_string), message.to_string())
        );
    }

    #[test]
    fn api_errors_show_code_and_message() {
        let e = Error::Api {
            method: "GET".into(),
            url: "http://h/api/2.0/mlflow/runs/get".into(),
            status: 404,
            error_code: Some("RESOURCE_DOES_NOT_EXIST".into()),
            message: "Run 'x' not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "GET http://h/api/2.0/mlflow/runs/get: HTTP 404 RESOURCE_DOES_NOT_EXIST: Run 'x' not found"
        );
    }
}
