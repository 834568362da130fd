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

/// `{error_code, message}` from an error body. Otherwise (a Python exception the server did
/// not handle, or a proxy in front of it): the exception's last line when the body carries
/// a traceback, else the HTML page's title or a snippet, and for a 5xx a pointer to the
/// server's log, which has the traceback (the report attaches its tail).
pub(super) fn api_error(status: u16, body: &[u8]) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct ApiError {
        error_code: Option<String>,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<ApiError>(body) {
        if e.error_code.is_some() || !e.message.is_empty() {
            return (e.error_code, e.message);
        }
    }
    let text = String::from_utf8_lossy(body);
    if let Some(exception) = last_exception(&text) {
        let exception = crate::mask::clip(&exception, 300);
        return (
            None,
            format!("the server raised {exception} (the last line of the traceback it sent)"),
        );
    }
    let server_failed = status >= 500;
    let what = match (html_title(&text), text.trim().is_empty()) {
        (Some(title), _) => format!("{title}, an HTML error page"),
        (None, true) => "an empty body".to_string(),
        (None, false) => return (None, snippet(body)),
    };
    let why = if server_failed {
        "an unhandled exception in the server; its log has the traceback"
    } else {
        "the server's log may say more"
    };
    (None, format!("{what}: {why}"))
}

/// The exception line closing the last Python traceback in `text`: the first line after
/// `Traceback (most recent call last):` that is not an indented frame. HTML (Werkzeug's
/// debugger page) is reduced to its text first.
fn last_exception(text: &str) -> Option<String> {
    const MARKER: &str = "Traceback (most recent call last):";
    let start = text.rfind(MARKER)? + MARKER.len();
    let tail = &text[start..];
    let tail = if tail.contains("</") {
        let stripped = regex::Regex::new(r"<[^>]*>")
            .expect("a fixed pattern")
            .replace_all(tail, "");
        // Entities as XML knows them cover what Werkzeug escapes; others leave the text as is.
        quick_xml::escape::unescape(&stripped)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| stripped.into_owned())
    } else {
        tail.to_string()
    };
    tail.lines()
        .skip(1)
        .find(|l| !l.trim().is_empty() && !l.starts_with([' ', '\t']))
        .map(|l| l.trim().to_string())
}

/// An unhandled exception in the server (e.g. the artifact store failing) gives Flask's
/// HTML error page; its title says what happened, the server's log says why.
fn html_title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    Some(
        text[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
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

    const TRACEBACK: &str = "Traceback (most recent call last):
  File \"/usr/lib/python3/dist-packages/botocore/endpoint.py\", line 279, in _do_get_response
    http_response = self._send(request)
botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: \"http://127.0.0.1:9/b\"
";

    const CHAINED: &str = "Traceback (most recent call last):
  File \"a.py\", line 1, in f
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"a.py\", line 3, in g
    raise MlflowException(msg)
mlflow.exceptions.MlflowException: artifact store failed
  with a second line
";

    const WERKZEUG_DEBUG: &str = "<!doctype html><html><head><title>ValueError: bad value // Werkzeug Debugger</title></head>
<body><div class=\"plain\"><textarea cols=\"50\" rows=\"10\" name=\"code\" readonly>Traceback (most recent call last):
  File &quot;/srv/app.py&quot;, line 9, in view
    raise ValueError(&#x27;bad value&#x27;)
ValueError: bad value &lt;here&gt;</textarea></div></body></html>";

    #[rstest]
    #[case::api(
        500,
        br#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'x' not found"}"#.as_slice(),
        Some("RESOURCE_DOES_NOT_EXIST"),
        "Run 'x' not found"
    )]
    #[case::html_without_title(
        502,
        b"<html>\n<h1>Internal   Server Error</h1></html>".as_slice(),
        None,
        "<html> <h1>Internal Server Error</h1></html>"
    )]
    #[case::flask_500(
        500,
        b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>".as_slice(),
        None,
        "500 Internal Server Error, an HTML error page: an unhandled exception in the server; its log has the traceback"
    )]
    #[case::empty_500(
        500,
        b"".as_slice(),
        None,
        "an empty body: an unhandled exception in the server; its log has the traceback"
    )]
    #[case::empty_404(404, b"  \n".as_slice(), None, "an empty body: the server's log may say more")]
    #[case::plain_traceback(
        500,
        TRACEBACK.as_bytes(),
        None,
        "the server raised botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: \"http://127.0.0.1:9/b\" (the last line of the traceback it sent)"
    )]
    #[case::chained(
        500,
        CHAINED.as_bytes(),
        None,
        "the server raised mlflow.exceptions.MlflowException: artifact store failed (the last line of the traceback it sent)"
    )]
    #[case::werkzeug_debugger(
        500,
        WERKZEUG_DEBUG.as_bytes(),
        None,
        "the server raised ValueError: bad value <here> (the last line of the traceback it sent)"
    )]
    fn reads_api_errors(
        #[case] status: u16,
        #[case] body: &[u8],
        #[case] code: Option<&str>,
        #[case] message: &str,
    ) {
        assert_eq!(
            api_error(status, body),
            (code.map(str::to_string), message.to_string())
        );
    }

    #[test]
    fn an_error_status_with_no_body_says_status_and_where_to_look() {
        let (error_code, message) = api_error(500, b"");
        let e = Error::Api {
            method: "PUT".into(),
            url: "http://h/api/2.0/mlflow-artifacts/artifacts/a".into(),
            status: 500,
            error_code,
            message,
        };
        assert_eq!(
            e.to_string(),
            "PUT http://h/api/2.0/mlflow-artifacts/artifacts/a: HTTP 500: an empty body: an unhandled exception in the server; its log has the traceback"
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
