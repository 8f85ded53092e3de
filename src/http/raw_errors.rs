//! The HTTP/1 layer's own error answers, as problem+json.
//!
//! actix-http's h1 dispatcher answers a request head it cannot parse (a NUL
//! in a header, a head over its fixed 128 KiB buffer, more than 96 header
//! fields) and a head that never arrives itself: a bare 400, 431 or 408
//! with an empty body, written before any service or middleware runs, and
//! through no hook. [`ProblemIo`] sits between the socket (after TLS) and
//! the dispatcher and replaces those answers on their way out with the
//! problem+json every other error has.
//!
//! Such an answer is recognised by its exact shape: a status line with one
//! of those statuses, then only `content-length: 0`, an optional
//! `connection: close` and `date`, ending the dispatcher's write. The app's
//! own responses never take that shape: every one carries `x-request-id`
//! (see `request_id`), and no body asapd writes holds a raw CRLF.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::request_id::new_id;
use crate::http::error::{Problem, PROBLEM_JSON};

/// actix-http's limit on a request head (`MAX_BUFFER_SIZE`, not settable).
pub const MAX_HEAD_BYTES: usize = 131_072;
/// actix-http's limit on header fields in a request head (`MAX_HEADERS`).
pub const MAX_HEADER_FIELDS: usize = 96;
/// A connection whose bare dispatcher error answers become problem+json.
pub struct ProblemIo<T> {
    inner: T,
    replacing: Option<Replacement>,
    /// `http.request_head_timeout_ms`, which a 408 names.
    head_timeout: Duration,
}

/// The answer being written in place of a bare one.
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// Length of the bare answer, reported written once `bytes` are.
    stands_for: usize,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T, head_timeout: Duration) -> Self {
        Self {
            inner,
            replacing: None,
            head_timeout,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            match bare_answer(buf) {
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
                // Pipelined responses before it go out untouched first.
                Some((start, _)) if start > 0 => {
                    return Pin::new(&mut this.inner).poll_write(cx, &buf[..start])
                }
                Some((_, bare)) => {
                    this.replacing = Some(Replacement {
                        bytes: bare.replacement(this.head_timeout),
                        written: 0,
                        stands_for: buf.len(),
                    })
                }
            }
        }
        let Some(r) = this.replacing.as_mut() else {
            unreachable!("set above")
        };
        while r.written < r.bytes.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &r.bytes[r.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.written += n;
        }
        let stands_for = r.stands_for;
        this.replacing = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A bare dispatcher answer found at the end of a write.
struct Bare<'a> {
    status_line: &'a [u8],
    date_line: Option<&'a [u8]>,
    status: u16,
}

/// Where a bare dispatcher answer starts in `buf`, if `buf` ends with one.
fn bare_answer(buf: &[u8]) -> Option<(usize, Bare<'_>)> {
    // The hot path: every response of the app ends with its body or, when
    // that is empty, with its `x-request-id`-carrying head; neither ends
    // like this often, and the check is a few bytes.
    if !buf.ends_with(b" GMT\r\n\r\n") {
        return None;
    }
    // A bare answer is about 110 bytes long.
    let from = buf.len().saturating_sub(192);
    let start = from + rfind(&buf[from..], b"HTTP/1.")?;
    // Each line with its CRLF, the blank line's left off.
    let head = &buf[start..buf.len() - 3];
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r"));
    let status_line = lines.next()??;
    let status = match status_line.get(8..13)? {
        b" 400 " => 400,
        b" 408 " => 408,
        b" 431 " => 431,
        _ => return None,
    };
    let (mut length, mut date_line) = (false, None);
    for line in lines {
        let line = line?;
        let lower = line.to_ascii_lowercase();
        match lower.as_slice() {
            b"content-length: 0" => length = true,
            b"connection: close" => {}
            l if l.starts_with(b"date: ") => date_line = Some(line),
            _ => return None,
        }
    }
    length.then_some((
        start,
        Bare {
            status_line,
            date_line,
            status,
        },
    ))
}

/// "5 seconds" for whole seconds (the default), else "250 ms".
fn in_words(d: Duration) -> String {
    if d == Duration::from_secs(1) {
        "1 second".to_owned()
    } else if d.subsec_millis() == 0 {
        format!("{} seconds", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

impl Bare<'_> {
    fn problem(&self, request_id: &str, head_timeout: Duration) -> Problem {
        let (slug, title, detail) = match self.status {
            431 => (
                "request-header-fields-too-large",
                "Request Header Fields Too Large",
                format!(
                    "the request head is too large: at most {MAX_HEAD_BYTES} bytes and \
                     {MAX_HEADER_FIELDS} header fields"
                ),
            ),
            408 => (
                "request-timeout",
                "Request Timeout",
                format!(
                    "the request head did not arrive within {}",
                    in_words(head_timeout)
                ),
            ),
            _ => (
                "bad-request",
                "Bad Request",
                "the request head is not valid HTTP/1.1 (a control character such as NUL \
                 in a header, or a malformed request line or header field)"
                    .to_owned(),
            ),
        };
        Problem {
            kind: format!("urn:asapd:problem:{slug}"),
            title,
            status: self.status,
            detail,
            request_id: Some(request_id.to_owned()),
            field: None,
        }
    }

    /// The whole problem+json answer, keeping the status line and date.
    fn replacement(&self, head_timeout: Duration) -> Vec<u8> {
        let id = new_id();
        tracing::debug!(request_id = %id, status = self.status, "refused a request head");
        report_refused_head();
        let body =
            serde_json::to_vec(&self.problem(&id, head_timeout)).expect("problem serialises");
        let mut out = Vec::with_capacity(256 + body.len());
        out.extend_from_slice(self.status_line);
        out.extend_from_slice(b"\r\ncontent-type: ");
        out.extend_from_slice(PROBLEM_JSON.as_bytes());
        out.extend_from_slice(format!("\r\ncontent-length: {}", body.len()).as_bytes());
        // The dispatcher closes the connection after its error answer.
        out.extend_from_slice(b"\r\nconnection: close\r\nx-request-id: ");
        out.extend_from_slice(id.as_bytes());
        if let Some(date) = self.date_line {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(date);
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&body);
        out
    }
}

/// How often at most a WARN line reports refused request heads: anyone
/// can send them, and a line each would let anyone fill the log.
const REPORT_EVERY: Duration = Duration::from_secs(60);
static REFUSED_SINCE_REPORT: AtomicU64 = AtomicU64::new(0);
static LAST_REPORT: Mutex<Option<Instant>> = Mutex::new(None);

/// Counts a refused head; reports the count at WARN at most once per
/// [`REPORT_EVERY`] (each answer is at DEBUG with its request id).
fn report_refused_head() {
    REFUSED_SINCE_REPORT.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let mut last = LAST_REPORT.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_some_and(|at| now.duration_since(at) < REPORT_EVERY) {
        return;
    }
    *last = Some(now);
    let refused = REFUSED_SINCE_REPORT.swap(0, Ordering::Relaxed);
    tracing::warn!(
        refused,
        "refused request heads that were malformed, too large or too slow (counted since \
         the last such line; at most one a minute)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sat, 28 Nov 2026 09:54:05 GMT\r\n\r\n";

    #[test]
    fn a_bare_answer_is_found_after_pipelined_responses() {
        let mut buf = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: a\r\ndate: Sat, 28 Nov 2026 09:54:05 GMT\r\n\r\n{}".to_vec();
        let at = buf.len();
        buf.extend_from_slice(BARE);
        assert_eq!(
            bare_answer(&buf).map(|(s, b)| (s, b.status)),
            Some((at, 400))
        );
        assert_eq!(bare_answer(BARE).map(|(s, _)| s), Some(0));
    }

    #[test]
    fn app_responses_are_not_bare() {
        // An empty-bodied app answer: it carries its request id.
        let app = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: a\r\ndate: Sat, 28 Nov 2026 09:54:05 GMT\r\n\r\n";
        assert!(bare_answer(app).is_none());
        let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\ndate: Sat, 28 Nov 2026 09:54:05 GMT\r\n\r\n";
        assert!(bare_answer(ok).is_none());
        assert!(bare_answer(&BARE[..BARE.len() - 1]).is_none());
    }

    #[test]
    fn the_replacement_keeps_status_and_date() {
        let (_, bare) = bare_answer(BARE).unwrap();
        let out = String::from_utf8(bare.replacement(Duration::from_secs(5))).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains("\r\ndate: Sat, 28 Nov 2026 09:54:05 GMT"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["status"], 400);
    }

    #[test]
    fn a_408_names_the_configured_wait() {
        assert_eq!(in_words(Duration::from_secs(5)), "5 seconds");
        assert_eq!(in_words(Duration::from_secs(1)), "1 second");
        assert_eq!(in_words(Duration::from_millis(250)), "250 ms");
        assert_eq!(in_words(Duration::from_millis(1500)), "1500 ms");
    }
}
