//! The access log: one line per request, as JSON or in Apache's "combined" format (what
//! GoAccess, AWStats and fail2ban read), written by one task in batches so that a slow disk
//! never holds a request: when the queue is full, lines are dropped and counted. The queue
//! is bounded in bytes as well as in lines, and the fields a client writes are cut to a few
//! kilobytes: 65,536 lines of 16 KB heads (a User-Agent of tabs escaped four times over)
//! would have queued 4 GB behind a slow disk. The writes themselves happen on tokio's
//! blocking pool: a log on a stalled pipe (`-`) must not freeze the reloads, the signals
//! and ACME that share the writer's thread.

use chrono::{DateTime, Utc};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// How each line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`ts`, `client`, `host`, `method`, `path`, `status`, …).
    #[default]
    Json,
    /// `client - - [time] "METHOD path VERSION" status bytes "referer" "user-agent"`.
    Combined,
    /// Apache's `vhost_combined`: `host:port ` and then the combined line, for one log
    /// shared by every site (GoAccess's `VCOMBINED`).
    VhostCombined,
}

/// What is known of one request once it has been answered.
#[derive(Clone, Debug)]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub client: IpAddr,
    pub host: String,
    /// The port the client reached (the listener's public one).
    pub port: u16,
    pub method: String,
    pub path: String,
    pub version: &'static str,
    pub status: u16,
    /// The body's bytes sent (none for a HEAD or a 304; fewer than announced when the
    /// client left halfway), or `None` when not known.
    pub bytes: Option<u64>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// From the request's head to its answer's last byte (nginx's `$request_time`).
    pub elapsed: Duration,
}

impl Entry {
    /// The line, newline included.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => self.json(),
            Format::Combined => self.combined(),
            Format::VhostCombined => {
                let host = escape(&field(&self.host, HEADER_CAP)).replace(' ', "\\x20");
                // an IPv6 address in brackets, as in a URL: `host:port` stays readable
                let host = match host.contains(':') {
                    true => format!("[{host}]"),
                    false => host,
                };
                format!("{host}:{} {}", self.port, self.combined())
            }
        }
    }

    fn json(&self) -> String {
        let line = serde_json::json!({
            "ts": self.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "client": self.client.to_string(),
            "host": field(&self.host, HEADER_CAP),
            "method": field(&self.method, HEADER_CAP),
            "path": field(&self.path, PATH_CAP),
            "version": self.version,
            "status": self.status,
            "bytes": self.bytes,
            "referer": self.referer.as_deref().map(|r| field(r, HEADER_CAP)),
            "user_agent": self.user_agent.as_deref().map(|u| field(u, HEADER_CAP)),
            "ms": (self.elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0,
        });
        let mut line = line.to_string();
        // JSON lets these be raw in a string, but JavaScript's and Python's `splitlines`
        // break lines there: a forged line for a log tool (they occur in strings only).
        // Looked for first: a usual line has none, and is not copied again
        if line.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
            line = line
                .replace('\u{85}', "\\u0085")
                .replace('\u{2028}', "\\u2028")
                .replace('\u{2029}', "\\u2029");
        }
        line.push('\n');
        line
    }

    fn combined(&self) -> String {
        let bytes = self.bytes.map_or("-".to_owned(), |b| b.to_string());
        let header = |h: Option<&str>| h.map_or("-".into(), |h| escape(&field(h, HEADER_CAP)));
        format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
            self.client,
            self.time.format("%d/%b/%Y:%H:%M:%S %z"),
            escape(&field(&self.method, HEADER_CAP)),
            escape(&field(&self.path, PATH_CAP)),
            self.version,
            self.status,
            bytes,
            header(self.referer.as_deref()),
            header(self.user_agent.as_deref()),
        )
    }
}

/// Quotes, backslashes and control characters escaped as Apache does (`\"`, `\\`, `\xNN`),
/// so a crafted header can neither end a field nor forge a second line (nor can the Unicode
/// line and paragraph separators, where some tools' `splitlines` break lines too).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Lines queued at most (beyond, they are dropped and counted).
const QUEUED_LINES: usize = 65_536;
/// Bytes queued at most: about 100,000 usual lines.
const QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// The longest Host, method, Referer and User-Agent a line keeps, in bytes, and the longest
/// path (its query may be what an admin looks for): longer, cut and marked `…`.
const HEADER_CAP: usize = 1024;
const PATH_CAP: usize = 4096;

/// `s`, cut to `cap` bytes at most (at a character's boundary) and marked as cut.
fn field(s: &str, cap: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= cap {
        return s.into();
    }
    let end = (0..=cap)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", s.get(..end).unwrap_or_default()).into()
}

/// Where requests queue their lines for the writer.
#[derive(Debug)]
pub(crate) struct Queue {
    tx: mpsc::Sender<String>,
    /// Bytes sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
}

impl Queue {
    /// Queues `line`; false (and it is dropped) when the queue is full, in lines or bytes.
    pub(crate) fn push(&self, line: String) -> bool {
        let n = line.len();
        if self.queued.fetch_add(n, Relaxed) + n > QUEUED_BYTES {
            self.queued.fetch_sub(n, Relaxed);
            return false;
        }
        if self.tx.try_send(line).is_err() {
            self.queued.fetch_sub(n, Relaxed);
            return false;
        }
        true
    }
}

/// What the writer takes lines from.
struct Lines {
    rx: mpsc::Receiver<String>,
    queued: Arc<AtomicUsize>,
}

impl Lines {
    /// The next line, waited for; `None` once every sender is gone.
    async fn next(&mut self) -> Option<String> {
        let line = self.rx.recv().await?;
        Some(self.taken(line))
    }

    /// The next line if one is queued.
    fn next_now(&mut self) -> Option<String> {
        let line = self.rx.try_recv().ok()?;
        Some(self.taken(line))
    }

    /// `line` is out of the queue: its bytes are room again.
    fn taken(&self, line: String) -> String {
        self.queued.fetch_sub(line.len(), Relaxed);
        line
    }
}

/// A queue and its writer's end.
fn queue() -> (Queue, Lines) {
    let (tx, rx) = mpsc::channel(QUEUED_LINES);
    let queued = Arc::new(AtomicUsize::new(0));
    let lines = Lines {
        rx,
        queued: Arc::clone(&queued),
    };
    (Queue { tx, queued }, lines)
}

/// The access log's writer task, seen from the proxy.
pub(crate) struct Writer {
    /// Reopen the file (after logrotate moved it: SIGHUP, as for nginx).
    pub reopen: Arc<Notify>,
    /// Set once no request is left to log: the writer writes what is queued and ends.
    pub close: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the task writing the lines queued to `path` ("-": standard output); the lines a
/// failed write loses (a full disk) are counted in `dropped`, with those the queue refused.
pub(crate) fn start(path: PathBuf, dropped: Arc<AtomicU64>) -> (Queue, Writer) {
    let (queue, lines) = queue();
    let reopen = Arc::new(Notify::new());
    let (close, closed) = watch::channel(false);
    let out = Output {
        path,
        dropped,
        failing: false,
    };
    let task = tokio::spawn(write(out, lines, Arc::clone(&reopen), closed));
    let writer = Writer {
        reopen,
        close,
        task,
    };
    (queue, writer)
}

type Out = Box<dyn std::io::Write + Send>;

/// Fails unless the access log can be opened for appending (made if missing): checked
/// before the proxy serves, as the user it runs as, rather than found by nobody later.
pub(crate) fn can_open(path: &Path) -> Result<(), crate::Error> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|source| crate::Error::Write {
            path: path.to_owned(),
            source,
        })
}

fn open(path: &Path) -> Option<Out> {
    if path.as_os_str() == "-" {
        return Some(Box::new(std::io::stdout()));
    }
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => Some(Box::new(f)),
        Err(e) => {
            tracing::error!("access log {}: {e}", path.display());
            None
        }
    }
}

/// Where the lines go, and what became of the last write.
struct Output {
    path: PathBuf,
    dropped: Arc<AtomicU64>,
    /// The last write failed (said once, until one works again); its last line may have
    /// been cut.
    failing: bool,
}

impl Output {
    /// Counts and says what a write's outcome means for the lines of `batch`.
    fn count(&mut self, outcome: std::io::Result<()>, batch: &str) {
        match outcome {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("access log {}: written again", self.path.display());
            }
            Ok(()) => {}
            Err(e) => {
                // the empty line a batch after a failed one starts with is none of them
                let lines = batch
                    .split_terminator('\n')
                    .filter(|l| !l.is_empty())
                    .count();
                self.dropped.fetch_add(lines as u64, Relaxed);
                if !self.failing {
                    self.failing = true;
                    tracing::error!(
                        "access log {}: {e}; lines are lost (counted in access_log_dropped_total) until a write works again",
                        self.path.display()
                    );
                }
            }
        }
    }
}

/// Writes the lines received, a batch per write, until `closed` (then the queue is
/// written out first) or every sender is gone.
async fn write(
    mut output: Output,
    mut lines: Lines,
    reopen: Arc<Notify>,
    mut closed: watch::Receiver<bool>,
) {
    // checked at start ([`can_open`]); gone since, the lines wait for a reopen that works
    let mut out = open(&output.path).unwrap_or_else(|| Box::new(std::io::sink()));
    let mut buf = String::new();
    loop {
        tokio::select! {
            line = lines.next() => {
                let Some(line) = line else { return };
                buf.push_str(&line);
                while buf.len() < 64 * 1024 {
                    let Some(l) = lines.next_now() else { break };
                    buf.push_str(&l);
                }
            }
            () = reopen.notified() => {
                // a file that cannot be opened now keeps the old one (logged)
                if let Some(o) = open(&output.path) {
                    out = o;
                }
                continue;
            }
            _ = closed.changed() => {
                // lines pushed from now on fail (and are counted as dropped) instead of
                // queueing behind a writer that has ended
                lines.rx.close();
                while let Some(l) = lines.next_now() {
                    buf.push_str(&l);
                }
                if let Some((_, b, outcome)) = written(out, buf).await {
                    output.count(outcome, &b);
                }
                return;
            }
        }
        if output.failing {
            // the failed write may have cut its last line: this batch starts a line of its own
            buf.insert(0, '\n');
        }
        match written(out, buf).await {
            Some((o, b, outcome)) => {
                output.count(outcome, &b);
                (out, buf) = (o, b);
            }
            None => return,
        }
        buf.clear();
    }
}

/// Writes `buf` out on the blocking pool; the output, the buffer and the write's outcome
/// back (`None` if the pool is gone: the runtime is shutting down).
async fn written(mut out: Out, buf: String) -> Option<(Out, String, std::io::Result<()>)> {
    tokio::task::spawn_blocking(move || {
        let outcome = out.write_all(buf.as_bytes()).and_then(|()| out.flush());
        (out, buf, outcome)
    })
    .await
    .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: DateTime::parse_from_rfc3339("2026-11-25T21:05:09.250Z")
                .unwrap()
                .with_timezone(&Utc),
            client: "2001:db8::7".parse().unwrap(),
            host: "velobs.test".into(),
            port: 443,
            method: "GET".into(),
            path: "/carte?x=1".into(),
            version: "HTTP/1.1",
            status: 200,
            bytes: Some(1024),
            referer: None,
            user_agent: Some("curl/8 \"evil\"\n127.0.0.1 - - [forged]".into()),
            elapsed: Duration::from_micros(1500),
        }
    }

    #[test]
    fn combined_lines_are_apaches_and_cannot_be_forged() {
        assert_eq!(
            entry().render(Format::Combined),
            "2001:db8::7 - - [25/Nov/2026:21:05:09 +0000] \"GET /carte?x=1 HTTP/1.1\" 200 1024 \
             \"-\" \"curl/8 \\\"evil\\\"\\x0a127.0.0.1 - - [forged]\"\n"
        );
    }

    #[test]
    fn vhost_combined_lines_start_with_the_host_and_port() {
        assert_eq!(
            entry().render(Format::VhostCombined),
            format!("velobs.test:443 {}", entry().render(Format::Combined))
        );
    }

    /// U+2028, U+2029 and U+0085 end a line for Python's and JavaScript's line splitting:
    /// escaped in both formats, as a newline is.
    #[test]
    fn unicode_line_separators_cannot_forge_a_line() {
        let mut e = entry();
        e.user_agent = Some("a\u{2028}b\u{2029}c\u{85}d".into());
        for format in [Format::Json, Format::Combined] {
            let line = e.render(format);
            assert_eq!(line.lines().count(), 1);
            assert_eq!(
                line.trim_end()
                    .split(['\u{2028}', '\u{2029}', '\u{85}'])
                    .count(),
                1,
                "{line}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(&e.render(Format::Json)).unwrap();
        assert_eq!(
            v["user_agent"], "a\u{2028}b\u{2029}c\u{85}d",
            "the JSON still reads back"
        );
    }

    #[test]
    fn fields_are_cut_at_a_character_and_marked() {
        assert_eq!(field("abc", 3), "abc");
        assert_eq!(field("abcd", 3), "abc…");
        // "é" is two bytes: a cut inside it steps back before it
        assert_eq!(field("aé", 2), "a…");
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_and_gives_them_back_as_lines_are_taken() {
        let (q, mut lines) = queue();
        let line = "x".repeat(1024 * 1024);
        for _ in 0..16 {
            assert!(q.push(line.clone()));
        }
        assert!(!q.push("one more\n".into()), "16 MB queued, and more taken");
        lines.next().await.unwrap();
        assert!(q.push(line.clone()), "room came back");
        assert!(!q.push(line));
    }

    #[test]
    fn json_lines_carry_every_field() {
        let line = entry().render(Format::Json);
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ts"], "2026-11-25T21:05:09.250Z");
        assert_eq!(v["client"], "2001:db8::7");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 1024);
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["ms"], 1.5);
    }
}
