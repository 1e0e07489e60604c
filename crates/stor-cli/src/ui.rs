//! What the user sees while many bytes move: a progress bar on a terminal (bytes,
//! rate, ETA, files done/total) and a summary line at the end; and the
//! `--include`/`--exclude` filters of many-object commands.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress of one command: a bar when both stdout and stderr are terminals (and
/// not `--quiet`/`--json`), counters always, for the summary.
pub struct Ui {
    bar: Option<ProgressBar>,
    start: Instant,
    files_total: u64,
    files_done: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
    deleted: AtomicU64,
    quiet: bool,
}

impl Ui {
    /// `bytes_total` and `files_total` are what the command plans to move.
    pub fn new(quiet: bool, json: bool, bytes_total: u64, files_total: u64) -> Arc<Ui> {
        let show =
            !quiet && !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = show.then(|| {
            let b = ProgressBar::with_draw_target(Some(bytes_total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} \
                     {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(format!("0/{files_total} files"));
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Arc::new(Ui {
            bar,
            start: Instant::now(),
            files_total,
            files_done: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            quiet: quiet || json,
        })
    }

    /// A progress callback for the library: bytes done across the whole command.
    pub fn progress(self: &Arc<Ui>) -> stor::Progress {
        let ui = self.clone();
        stor::Progress::new(move |done, _total| {
            if let Some(b) = &ui.bar {
                b.set_position(done);
            }
        })
    }

    /// One object finished (`bytes` when it succeeded).
    pub fn finished(&self, bytes: Option<u64>) {
        let n = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
        match bytes {
            Some(b) => {
                self.bytes.fetch_add(b, Ordering::Relaxed);
            }
            None => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{n}/{} files", self.files_total));
        }
    }

    /// One object or file deleted (`sync --delete`), for the summary.
    pub fn deleted(&self) {
        self.deleted.fetch_add(1, Ordering::Relaxed);
    }

    /// Prints a line above the bar; false when there is no bar (print it
    /// yourself, to stdout).
    pub fn println(&self, line: &str) -> bool {
        match &self.bar {
            Some(b) => {
                b.println(printable(line));
                true
            }
            None => false,
        }
    }

    /// Clears the bar and prints the summary on stderr (unless quiet or JSON):
    /// objects, bytes, elapsed, rate, retries, failures. Returns it.
    /// `earlier_failures`: items that failed before the transfers started (refused
    /// while planning), counted in the summary too.
    pub fn finish(&self, retries: u64, skipped: u64, earlier_failures: u64) -> Summary {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let failures = self.failures.load(Ordering::Relaxed);
        let s = Summary {
            objects: self.files_done.load(Ordering::Relaxed) - failures,
            bytes: self.bytes.load(Ordering::Relaxed),
            seconds: self.start.elapsed().as_secs_f64(),
            retries,
            failures: failures + earlier_failures,
            skipped,
            deleted: self.deleted.load(Ordering::Relaxed),
        };
        if !self.quiet {
            let rate = if s.seconds > 0.0 {
                s.bytes as f64 / s.seconds
            } else {
                0.0
            };
            let skipped = match s.skipped {
                0 => String::new(),
                n => format!(", {n} skipped"),
            };
            let deleted = match s.deleted {
                0 => String::new(),
                n => format!(", {n} deleted"),
            };
            eprintln!(
                "Done: {} objects, {} in {:.1} s ({}/s), {} retries, {} failures{skipped}{deleted}",
                s.objects,
                crate::commands::human(s.bytes),
                s.seconds,
                crate::commands::human(rate as u64),
                s.retries,
                s.failures
            );
        }
        s
    }
}

/// What a many-object command did.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub objects: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub retries: u64,
    pub failures: u64,
    /// Entries left out: not regular files, dangling links, loops.
    pub skipped: u64,
    /// Objects or files deleted (`sync --delete`).
    pub deleted: u64,
}

/// `--include` / `--exclude` globs, matched against the path below the command's
/// directory or prefix (`*` also matches `/`, as in `aws s3`). Excludes win.
#[derive(Debug, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn set(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).with_context(|| format!("bad glob {p:?}"))?);
    }
    Ok(Some(b.build()?))
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter> {
        Ok(Filter {
            include: set(include)?,
            exclude: set(exclude)?,
        })
    }

    /// A filter of one glob (a wildcard source URL).
    pub fn glob(pattern: &str) -> Result<Filter> {
        Filter::new(&[pattern.to_owned()], &[])
    }

    /// Whether `rel` passes.
    pub fn allows(&self, rel: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(rel))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(rel))
    }
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

/// The wildcard rule, the same for every command that takes a source URL with
/// wildcards (`cp`, `mv`, `rm`):
/// - `*`, `?` and `[…]` in a key are wildcards (`*` also crosses `/`), matched
///   against the keys below the last `/` before the first wildcard;
/// - `\` makes the next character literal (`s3://b/gl/\[x\].txt` is the key
///   `gl/[x].txt`);
/// - an existing key of exactly the text given wins over the pattern, so a key that
///   holds `*`, `?` or `[` is never widened into other objects by surprise;
/// - `stat`, `cat` and `presign` name one object: their keys are always literal.
///
/// What a source URL's key selects, before the exact-name check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One key (escapes removed).
    Key(String),
    /// Keys under `prefix` (escapes removed) whose rest matches `pattern`
    /// (globset syntax, escapes kept); `raw` is the text as given.
    Pattern {
        prefix: String,
        pattern: String,
        raw: String,
    },
}

impl Selection {
    /// The one key, or the raw text of a pattern.
    pub fn key(&self) -> String {
        match self {
            Selection::Key(k) => k.clone(),
            Selection::Pattern { raw, .. } => raw.clone(),
        }
    }
}

/// Reads a key by the wildcard rule (see [`Selection`]).
pub fn select(key: &str) -> Selection {
    let mut first = None;
    let mut escaped = false;
    for (i, c) in key.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '*' | '?' | '[' => {
                first = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(first) = first else {
        return Selection::Key(unescape(key));
    };
    let cut = key[..first].rfind('/').map(|i| i + 1).unwrap_or(0);
    Selection::Pattern {
        prefix: unescape(&key[..cut]),
        pattern: key[cut..].to_owned(),
        raw: key.to_owned(),
    }
}

/// Removes the `\` before `*`, `?`, `[`, `]` and `\`; other backslashes stay.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('*' | '?' | '[' | ']' | '\\')) {
            out.push(chars.next().expect("peeked"));
        } else {
            out.push(c);
        }
    }
    out
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
    fn filters_include_then_exclude() {
        let f = Filter::new(&["*.json".into()], &["tmp/*".into()]).unwrap();
        assert!(f.allows("a.json"));
        assert!(f.allows("2026/11/a.json"), "* crosses /");
        assert!(!f.allows("tmp/a.json"), "exclude wins");
        assert!(!f.allows("a.csv"));
        assert!(Filter::default().allows("anything"));
        assert!(Filter::new(&["[".into()], &[]).is_err());
    }

    #[test]
    fn the_wildcard_rule_with_escapes() {
        let pat = |p: &str, q: &str, raw: &str| Selection::Pattern {
            prefix: p.into(),
            pattern: q.into(),
            raw: raw.into(),
        };
        for (key, want) in [
            (
                "logs/2026-*/x.json",
                pat("logs/", "2026-*/x.json", "logs/2026-*/x.json"),
            ),
            ("*.json", pat("", "*.json", "*.json")),
            ("gl/[x].txt", pat("gl/", "[x].txt", "gl/[x].txt")),
            ("a?", pat("", "a?", "a?")),
            ("logs/a.json", Selection::Key("logs/a.json".into())),
            ("gl/\\[x\\].txt", Selection::Key("gl/[x].txt".into())),
            ("st\\*r", Selection::Key("st*r".into())),
            ("dir\\*/x*", pat("dir*/", "x*", "dir\\*/x*")),
            ("back\\slash\\\\", Selection::Key("back\\slash\\".into())),
            ("a\\b", Selection::Key("a\\b".into())),
        ] {
            assert_eq!(select(key), want, "{key}");
        }
        // Escaped wildcards in a pattern match themselves.
        let f = Filter::glob("x\\*y*").unwrap();
        assert!(f.allows("x*yz") && !f.allows("xAyz"));
    }
}
