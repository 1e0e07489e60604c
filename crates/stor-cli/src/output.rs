//! What `stor` writes: lines on stdout (control characters escaped), failures and
//! notes on stderr, how sizes read — and what a closed stdout does.
//!
//! # A closed stdout (`stor … | head`)
//!
//! Rust ignores SIGPIPE, so a reader that goes away shows up as a failed write.
//! What happens then depends on what the command does ([`OnClose`]):
//!
//! - **Commands that only read** (`ls`, `stat`, `du`, `cat`, `cp OBJECT -`,
//!   `presign`, `config show`, every `--dry-run`, `completions`, `man`) end at once,
//!   quietly, with status 0, as ripgrep does: nothing they do is left half-done.
//! - **Commands that change things** (`cp`, `mv`, `rm`, `sync`, `mb`, `rb`, `cleanup`)
//!   and `doctor` carry on to the end as if nothing happened: their lines are
//!   only a log of the work, and the work is what was asked for. The status is the
//!   work's — 0 only if everything succeeded — and failures and the summary still go
//!   to stderr. Why not stop: the library cancels a transfer only by dropping it, and
//!   an upload dropped while the server was creating its multipart upload leaves
//!   that upload to `stor cleanup` (no abort guard exists yet). Going on, a closed
//!   pipe changes nothing about what is stored. Ctrl-C remains the way to stop.
//!
//! Any other write error (a full disk behind `> file`) is printed once, stops a
//! reading command, and makes the status 1.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

/// What a command does when its stdout goes away (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnClose {
    /// It only reads: stop at once, status 0.
    Quit,
    /// It changes things: carry on to the end; the work decides the status.
    Finish,
}

/// How stdout was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The reader went away (EPIPE).
    Closed,
    /// Writing failed otherwise (already reported on stderr).
    Failed,
}

/// Stdout and stderr of one run, and the failures reported on them.
pub struct Output {
    quiet: bool,
    /// Many-object commands print JSON lines (`cp --json`, `sync --json`).
    json: bool,
    on_close: OnClose,
    stdout: Mutex<std::io::BufWriter<std::io::Stdout>>,
    lost: watch::Sender<Option<Lost>>,
    failures: AtomicU64,
    /// Entries a walk left out (FIFOs, dangling links …), for the summary.
    skipped: AtomicU64,
}

impl Output {
    pub fn new(quiet: bool, json: bool, on_close: OnClose) -> Output {
        Output {
            quiet,
            json,
            on_close,
            stdout: Mutex::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stdout(),
            )),
            lost: watch::Sender::new(None),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// `--quiet`: no notes, no progress, no summary.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// `--json` of a many-object command.
    pub fn json(&self) -> bool {
        self.json
    }

    pub fn on_close(&self) -> OnClose {
        self.on_close
    }

    /// Writes a line to stdout, control characters escaped (a key holding `\n` or
    /// ESC never splits a line or reaches the terminal). Once stdout is lost, lines
    /// go nowhere.
    pub fn say(&self, line: &str) {
        self.write(|w| writeln!(w, "{}", printable(line)));
    }

    /// Several lines of text the command made itself (pretty JSON: serde escapes
    /// control characters in strings), each through [`Output::say`].
    pub fn say_block(&self, text: &str) {
        for line in text.lines() {
            self.say(line);
        }
    }

    /// Like [`Output::say`] unless `--quiet`.
    pub fn note(&self, line: &str) {
        if !self.quiet {
            self.say(line);
        }
    }

    /// Bytes as they are (completions, the man page), not line by line.
    pub fn raw(&self, bytes: &[u8]) {
        self.write(|w| w.write_all(bytes));
    }

    pub fn flush(&self) {
        self.write(|w| w.flush());
    }

    fn write(
        &self,
        f: impl FnOnce(&mut std::io::BufWriter<std::io::Stdout>) -> std::io::Result<()>,
    ) {
        if self.lost().is_some() {
            return;
        }
        let mut out = self.stdout.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f(&mut out) {
            // What is buffered can never be written: drop it, so the flush when
            // the process ends does not try again.
            let _ = std::mem::replace(&mut *out, std::io::BufWriter::new(std::io::stdout()))
                .into_parts();
            drop(out);
            self.lose(e);
        }
    }

    /// Records that writing stdout failed with `e` (once): a closed pipe quietly,
    /// anything else with one line on stderr.
    pub fn lose(&self, e: std::io::Error) {
        let how = match e.kind() {
            std::io::ErrorKind::BrokenPipe => Lost::Closed,
            _ => Lost::Failed,
        };
        let first = self.lost.send_if_modified(|l| {
            let first = l.is_none();
            if first {
                *l = Some(how);
            }
            first
        });
        if first && how == Lost::Failed {
            eprintln!("stor: writing to stdout failed: {e}");
        }
    }

    /// How stdout was lost, if it was.
    pub fn lost(&self) -> Option<Lost> {
        *self.lost.borrow()
    }

    /// Resolves when stdout is lost.
    pub async fn until_lost(&self) -> Lost {
        let mut rx = self.lost.subscribe();
        let lost = rx.wait_for(Option::is_some).await.map(|l| *l);
        // The sender lives as long as `self`: the wait ends only with a value.
        lost.ok().flatten().unwrap_or(Lost::Failed)
    }

    /// Reports one failed item of a many-item command on stderr and remembers the
    /// failure for the status.
    pub fn fail(&self, what: &str, err: &dyn std::fmt::Display) {
        self.failed();
        self.flush();
        eprintln!("stor: {}", printable(&format!("{what} failed: {err}")));
    }

    /// Counts a failure already reported some other way (a JSON line).
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Failures so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// An entry left out that is not a failure, with a line on stderr (unless
    /// `--quiet`).
    pub fn skip(&self, line: &str) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        if !self.quiet {
            self.flush();
            eprintln!("stor: {}", printable(line));
        }
    }

    /// Entries skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// The one line on stderr of a command that stopped with an error.
pub fn error(e: &anyhow::Error) {
    let msg = format!("{e:#}");
    eprintln!("stor: error: {}", printable(&msg));
}

/// `s` with control characters escaped, for a terminal or a line-oriented pipe:
/// `\n` and `\r` as such, others as `\xHH` (C0, DEL) or `\u{HH}` (C1), so a key
/// holding a newline never splits a line and ESC never reaches a terminal. Tabs
/// stay (columns use them, and they do neither). Borrowed when there is nothing to
/// escape.
///
/// ```ignore
/// assert_eq!(printable("a\nb\x1b[31m"), "a\\nb\\x1b[31m");
/// ```
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write;
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    if !s.chars().any(unsafe_char) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && unsafe_char(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.into()
}

/// A size as `-H` shows it: `1.5 KiB`, `5.0 GiB`, whole bytes below 1 KiB.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        for (raw, shown) in [
            ("plain/key.txt", "plain/key.txt"),
            ("a\nb", "a\\nb"),
            ("tab\there\r", "tab\there\\r"),
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
            ("bell\x07del\x7f", "bell\\x07del\\x7f"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
            ("ünïcödé 日本", "ünïcödé 日本"),
        ] {
            assert_eq!(printable(raw), shown, "{raw:?}");
            assert!(!printable(raw).chars().any(|c| c.is_control() && c != '\t'));
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }
}
