//! Which objects or files a many-object command takes: the `--include` /
//! `--exclude` filters and the wildcard rule of source URLs.

use anyhow::{Context as _, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use stor::Storage;

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

/// A source key by the wildcard rule ([`Selection`]): a pattern, unless an object
/// of exactly the text given exists (it wins).
pub async fn resolve(store: &Storage, bucket: &str, key: &str) -> Result<Selection> {
    match select(key) {
        Selection::Pattern { raw, .. } if store.exists(bucket, &raw).await? => {
            Ok(Selection::Key(raw))
        }
        s => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
