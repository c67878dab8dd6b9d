//! The access log: one line per request, as JSON or in Apache's "combined" format (what
//! GoAccess, AWStats and fail2ban read), written by one task in batches so that a slow disk
//! never holds a request: when the queue is full, lines are dropped and counted.

use chrono::{DateTime, Utc};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
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
}

/// What is known of one request once it has been answered.
#[derive(Clone, Debug)]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub client: IpAddr,
    pub host: String,
    pub method: String,
    pub path: String,
    pub version: &'static str,
    pub status: u16,
    /// The response's Content-Length, when it declares one.
    pub bytes: Option<u64>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub elapsed: Duration,
}

impl Entry {
    /// The line, newline included.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => self.json(),
            Format::Combined => self.combined(),
        }
    }

    fn json(&self) -> String {
        let line = serde_json::json!({
            "ts": self.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "client": self.client.to_string(),
            "host": self.host,
            "method": self.method,
            "path": self.path,
            "version": self.version,
            "status": self.status,
            "bytes": self.bytes,
            "referer": self.referer,
            "user_agent": self.user_agent,
            "ms": (self.elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0,
        });
        format!("{line}\n")
    }

    fn combined(&self) -> String {
        let bytes = self.bytes.map_or("-".to_owned(), |b| b.to_string());
        format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
            self.client,
            self.time.format("%d/%b/%Y:%H:%M:%S %z"),
            escape(&self.method),
            escape(&self.path),
            self.version,
            self.status,
            bytes,
            self.referer.as_deref().map_or("-".into(), escape),
            self.user_agent.as_deref().map_or("-".into(), escape),
        )
    }
}

/// Quotes, backslashes and control characters escaped as Apache does (`\"`, `\\`, `\xNN`),
/// so a crafted header can neither end a field nor forge a second line.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
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

/// The access log's writer task, seen from the proxy.
pub(crate) struct Writer {
    /// Reopen the file (after logrotate moved it: SIGHUP, as for nginx).
    pub reopen: Arc<Notify>,
    /// Set once no request is left to log: the writer writes what is queued and ends.
    pub close: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the task writing the lines of `rx` to `path` ("-": standard output).
pub(crate) fn start(path: PathBuf, rx: mpsc::Receiver<String>) -> Writer {
    let reopen = Arc::new(Notify::new());
    let (close, closed) = watch::channel(false);
    let task = tokio::spawn(write(path, rx, Arc::clone(&reopen), closed));
    Writer {
        reopen,
        close,
        task,
    }
}

fn open(path: &Path) -> Option<Box<dyn std::io::Write + Send>> {
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

/// Writes the lines received, a batch per write, until `closed` (then the queue is
/// written out first) or every sender is gone.
async fn write(
    path: PathBuf,
    mut rx: mpsc::Receiver<String>,
    reopen: Arc<Notify>,
    mut closed: watch::Receiver<bool>,
) {
    let Some(mut out) = open(&path) else { return };
    let mut buf = String::new();
    loop {
        tokio::select! {
            line = rx.recv() => {
                let Some(line) = line else { return };
                buf.push_str(&line);
                while buf.len() < 64 * 1024 {
                    match rx.try_recv() {
                        Ok(l) => buf.push_str(&l),
                        Err(_) => break,
                    }
                }
            }
            () = reopen.notified() => {
                // a file that cannot be opened now keeps the old one (logged)
                if let Some(o) = open(&path) {
                    out = o;
                }
                continue;
            }
            _ = closed.changed() => {
                while let Ok(l) = rx.try_recv() {
                    buf.push_str(&l);
                }
                let _ = out.write_all(buf.as_bytes());
                let _ = out.flush();
                return;
            }
        }
        let _ = out.write_all(buf.as_bytes());
        let _ = out.flush();
        buf.clear();
    }
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
