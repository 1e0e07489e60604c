//! Keys an engine does not keep as sent. SeaweedFS stores `a\b` as `a/b` and
//! `a//b` as `a/b`, and refuses `p/./k` and `p/../k`; an upload under such a key
//! would silently replace another object (`cp f 's3://b/x\y'` overwrites `x/y`), or
//! never be found under its name again — a sync would upload it on every run, and
//! `--delete` would remove the twin it made. So before uploading or copying to new
//! keys (`cp`, `mv`, `sync`), the unusual parts of their names are tried once per
//! run on throwaway objects; a key with a part the engine does not keep is refused
//! (and its twin never deleted).
//!
//! Cheap: keys of AWS's "safe characters" only (letters, digits, `!-_.*'()`, single
//! slashes, no `.` or `..` segment) are never probed, and the others are probed by
//! their distinct unusual parts, many to one probe object — no request per object.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use stor::{ListOptions, Storage, UploadOptions, Versioning};

/// Characters every engine keeps as sent (AWS's "safe characters" for keys).
fn safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!-_.*'()/".contains(c)
}

/// A part of a key an engine might rewrite: its byte range, and the text a probe
/// object holds to try it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    start: usize,
    end: usize,
    /// The range's own text, or for a `.`/`..` segment and a leading `/` a text
    /// that tries the same thing inside a probe's name (`/./`, `/../`, `//`: an
    /// empty segment).
    probe: String,
}

impl Part {
    /// Whether the probe tries the range's own text (so its image can be put in
    /// its place).
    fn literal(&self, key: &str) -> bool {
        key[self.start..self.end] == self.probe
    }
}

/// The parts of `key` an engine might rewrite: runs of other characters, runs of
/// two or more `/`, a leading `/`, and `.` and `..` segments.
fn unusual(key: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let part = |start: usize, end: usize, probe: &str| Part {
        start,
        end,
        probe: probe.to_owned(),
    };
    if key.starts_with('/') && !key.starts_with("//") {
        out.push(part(0, 1, "//"));
    }
    let mut seg_start = 0;
    for seg in key.split('/') {
        if seg == "." || seg == ".." {
            out.push(part(seg_start, seg_start + seg.len(), &format!("/{seg}/")));
        }
        seg_start += seg.len() + 1;
    }
    let mut chars = key.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let slash = c == '/';
        if safe(c) && !(slash && key[i + 1..].starts_with('/')) {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek() {
            let same = if slash { d == '/' } else { !safe(d) };
            if !same {
                break;
            }
            end = j + d.len_utf8();
            chars.next();
        }
        out.push(part(i, end, &key[i..end]));
    }
    out.sort_by_key(|p| p.start);
    out
}

/// Whether `key` has a part worth probing.
pub fn is_unusual(key: &str) -> bool {
    !unusual(key).is_empty()
}

/// What the engine makes of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Kept,
    /// Stored as this instead.
    Rewritten(String),
    /// Refused, or not found again.
    Lost(String),
}

/// What a probe found, per unusual part.
#[derive(Debug, Default)]
pub struct Rewrites(BTreeMap<String, Fate>);

/// Why a key cannot be written as it is, and the key the engine would store
/// instead, when known.
pub struct Refusal {
    /// What is wrong and what to do (`the engine stores the key … ; rename it`).
    pub reason: String,
    pub twin: Option<String>,
}

impl Rewrites {
    /// `None` when the engine keeps `key` as sent (or it was not probed).
    pub fn refusal(&self, key: &str) -> Option<Refusal> {
        let mut twin = Some(String::new());
        let mut at = 0;
        let (mut rewritten, mut lost) = (None, None);
        for p in unusual(key) {
            // A `.` segment overlaps no other part; a leading `/` may start a run.
            if p.start < at {
                continue;
            }
            let text = &key[p.start..p.end];
            if let Some(t) = twin.as_mut() {
                t.push_str(&key[at..p.start]);
            }
            at = p.end;
            match self.0.get(&p.probe) {
                None | Some(Fate::Kept) => {
                    if let Some(t) = twin.as_mut() {
                        t.push_str(text)
                    }
                }
                Some(Fate::Rewritten(image)) => {
                    match twin.as_mut() {
                        Some(t) if p.literal(key) => t.push_str(image),
                        _ => twin = None,
                    }
                    rewritten.get_or_insert((p.probe.clone(), image.clone()));
                }
                Some(Fate::Lost(why)) => {
                    lost.get_or_insert((p.probe.clone(), why.clone()));
                }
            }
        }
        if let Some(t) = twin.as_mut() {
            t.push_str(&key[at..]);
        }
        match (lost, rewritten) {
            (Some((part, why)), _) => Some(Refusal {
                reason: format!(
                    "the engine does not keep the key {key:?} as sent (a probe holding \
                     {part:?} {why}); rename it"
                ),
                twin: None,
            }),
            (None, Some((part, image))) => Some(Refusal {
                reason: match &twin {
                    Some(t) => format!(
                        "the engine stores the key {key:?} as {t:?} (it rewrites {part:?} as \
                         {image:?}): it would replace that key, and never be found under its \
                         own name; rename it"
                    ),
                    None => format!(
                        "the engine does not keep the key {key:?} as sent (it rewrites \
                         {part:?} as {image:?}); rename it"
                    ),
                },
                twin,
            }),
            (None, None) => None,
        }
    }
}

/// Probes the unusual parts of one key about to be written: `Err` (bad input) when
/// the engine would not keep it as sent. `verb` says what was not done
/// (`uploaded`, `copied`, `moved`).
pub async fn check_key(store: &Storage, bucket: &str, key: &str, verb: &str) -> Result<()> {
    if !is_unusual(key) {
        return Ok(());
    }
    let found = probe(store, bucket, key, &[key]).await?;
    match found.refusal(key) {
        Some(r) => Err(crate::exit::usage(format!("not {verb}: {}", r.reason))),
        None => Ok(()),
    }
}

/// Probes the unusual keys among `keys` (all under `under`): the refusal of each
/// key the engine would not keep as sent.
pub async fn refusals(
    store: &Storage,
    bucket: &str,
    under: &str,
    keys: &[&str],
) -> Result<BTreeMap<String, Refusal>> {
    let odd: Vec<&str> = keys.iter().copied().filter(|k| is_unusual(k)).collect();
    if odd.is_empty() {
        return Ok(BTreeMap::new());
    }
    let found = probe(store, bucket, under, &odd).await?;
    Ok(odd
        .into_iter()
        .filter_map(|k| found.refusal(k).map(|r| (k.to_owned(), r)))
        .collect())
}

/// Probe objects' names stay under this length (keys may have 1024 bytes).
const LEAF_BYTES: usize = 600;

/// Tries the unusual parts of `keys` on throwaway objects under `under` (where
/// the keys go, and where the credentials may write — cut before its own first
/// unusual part, so the probe objects' names are plain there), then removes them.
pub async fn probe(store: &Storage, bucket: &str, under: &str, keys: &[&str]) -> Result<Rewrites> {
    let under = match unusual(under).first() {
        Some(p) => &under[..under[..p.start].rfind('/').map_or(0, |i| i + 1)],
        None => under
            .get(..under.rfind('/').map_or(0, |i| i + 1))
            .unwrap_or(""),
    };
    let parts: BTreeSet<String> = keys
        .iter()
        .flat_map(|k| unusual(k))
        .map(|p| p.probe)
        .collect();
    let mut found = Rewrites::default();
    if parts.is_empty() {
        return Ok(found);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let nonce = nanos ^ u64::from(std::process::id()).rotate_left(40);
    let root = format!("{under}.stor-probe-{nonce:016x}/");
    // Round one: many parts per probe object. Round two: one part per object, for
    // the objects of round one that came back different.
    let mut groups: Vec<Vec<&str>> = Vec::new();
    for part in &parts {
        match groups.last_mut() {
            Some(g) if g.iter().map(|p| p.len() + 1).sum::<usize>() + part.len() < LEAF_BYTES => {
                g.push(part.as_str())
            }
            _ => groups.push(vec![part.as_str()]),
        }
    }
    let mut round = 0;
    let mut sent = Vec::new();
    while !groups.is_empty() {
        let leaves: Vec<String> = groups
            .iter()
            .map(|g| format!("x{}x", g.join("x")))
            .collect();
        let base = format!("{root}{round}/");
        let keys: Vec<String> = leaves
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{base}{i}/{l}"))
            .collect();
        let puts: Vec<_> = futures::stream::iter(keys.iter())
            .map(|k| async move {
                store
                    .upload_bytes(bucket, k, Vec::<u8>::new(), UploadOptions::default())
                    .await
                    .err()
            })
            .buffered(store.config().max_concurrency.max(1))
            .collect()
            .await;
        // Refused for a reason that is not the key (credentials, the network): the
        // real upload would fail the same way; say that, not "rename it".
        if let Some(i) = (puts.iter()).position(|e| e.as_ref().is_some_and(not_about_the_key)) {
            let mut puts = puts;
            let e = puts.swap_remove(i).expect("an error");
            clean_up(store, bucket, &root, sent).await;
            return Err(e.into());
        }
        let listed = store
            .list_stream(bucket, ListOptions::default().prefix(base.clone()))
            .map_ok(|o| o.key)
            .try_collect::<Vec<String>>()
            .await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) => {
                clean_up(store, bucket, &root, sent).await;
                return Err(e.into());
            }
        };
        // What was stored, as stored: a key refused or rewritten cannot be named
        // for deleting (SeaweedFS refuses to delete `x/./x` too).
        sent.extend(listed.iter().cloned());
        // What came back for each probe object, by its index.
        let mut back: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for k in &listed {
            let rest = &k[base.len()..];
            if let Some((i, leaf)) = rest.split_once('/') {
                if let Ok(i) = i.parse::<usize>() {
                    back.entry(i).or_default().push(leaf);
                }
            }
        }
        let mut again = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            let got = back.get(&i).map(Vec::as_slice).unwrap_or_default();
            if got == [leaves[i].as_str()] {
                for p in group {
                    found.0.insert(p.to_string(), Fate::Kept);
                }
                continue;
            }
            if group.len() > 1 {
                again.extend(group.iter().map(|p| vec![*p]));
                continue;
            }
            let fate = match (&puts[i], got) {
                (Some(e), _) => Fate::Lost(format!("was refused: {}", e.message())),
                (None, [one]) => match one.strip_prefix('x').and_then(|r| r.strip_suffix('x')) {
                    Some(image) => Fate::Rewritten(image.to_owned()),
                    None => Fate::Lost(format!("came back as {one:?}")),
                },
                (None, _) => Fate::Lost("was not listed again".to_owned()),
            };
            found.0.insert(group[0].to_owned(), fate);
        }
        groups = again;
        round += 1;
    }
    clean_up(store, bucket, &root, sent).await;
    Ok(found)
}

/// Whether a probe's refusal says nothing about its key.
fn not_about_the_key(e: &stor::Error) -> bool {
    use stor::ErrorKind::*;
    e.is_retryable() || matches!(e.kind(), AccessDenied | BucketNotFound | Config)
}

/// Deletes the probe objects, then their "directories" (engines that keep them,
/// like SeaweedFS, drop an empty one when its `dir/` key is deleted; on others
/// such a key does not exist, and deleting it is a no-op).
async fn clean_up(store: &Storage, bucket: &str, root: &str, keys: Vec<String>) {
    let mut dirs = BTreeSet::new();
    for k in &keys {
        for (i, _) in k.match_indices('/').filter(|(i, _)| *i >= root.len() - 1) {
            dirs.insert(k[..=i].to_owned());
        }
    }
    let keys: BTreeSet<String> = keys.into_iter().collect();
    let mut dirs: Vec<String> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    let warn = || {
        eprintln!(
            "stor: warning: could not remove every probe object under {root}; delete \
             them by hand"
        )
    };
    for batch in [keys.into_iter().collect::<Vec<_>>(), dirs] {
        match store.delete_many(bucket, &batch).await {
            Ok(r) if r.iter().all(|r| r.error.is_none()) => {}
            Ok(_) | Err(_) => warn(),
        }
    }
    // In a versioned bucket those deletes only add delete markers: every probe
    // would leave its objects behind as versions. They go by version id.
    let versioned = store.capabilities().versioning
        && matches!(
            store.versioning(bucket).await,
            Ok(Versioning::Enabled | Versioning::Suspended)
        );
    if versioned {
        match store.delete_all_versions(bucket, root).await {
            Ok(r) if r.iter().all(|d| d.is_deleted()) => {}
            Ok(_) | Err(_) => warn(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unusual_parts_are_probed() {
        let parts = |k: &str| -> Vec<String> { unusual(k).into_iter().map(|p| p.probe).collect() };
        assert!(parts("plain/Key_1.(x)-y*z!'").is_empty());
        assert!(parts("p/.hidden/.../x..y/.").len() == 1, "only `.` itself");
        assert_eq!(parts(r"a\b c"), [r"\", " "]);
        assert_eq!(parts("dir//x///y/z"), ["//", "///"]);
        assert_eq!(parts("é+@ok&="), ["é+@", "&="]);
        assert_eq!(parts("p/./a/k"), ["/./"]);
        assert_eq!(parts("./p/k/.."), ["/./", "/../"]);
        assert_eq!(parts("/lead"), ["//"], "an empty first segment");
        assert_eq!(
            parts("lead/"),
            Vec::<String>::new(),
            "a trailing slash is safe"
        );
    }

    #[test]
    fn a_rewritten_part_names_the_twin() {
        let mut r = Rewrites::default();
        r.0.insert(r"\".into(), Fate::Rewritten("/".into()));
        r.0.insert(" ".into(), Fate::Kept);
        r.0.insert("//".into(), Fate::Rewritten("/".into()));
        r.0.insert("?".into(), Fate::Lost("was refused: no".into()));
        r.0.insert("/./".into(), Fate::Lost("was refused: HTTP 400".into()));
        assert!(r.refusal("plain/a b").is_none());
        let x = r.refusal(r"www/a\b c").unwrap();
        assert_eq!(x.twin.as_deref(), Some("www/a/b c"));
        assert!(x.reason.contains(r#"as "www/a/b c""#), "{}", x.reason);
        assert_eq!(r.refusal("p//q").unwrap().twin.as_deref(), Some("p/q"));
        let lost = r.refusal(r"a\b?").unwrap();
        assert_eq!(lost.twin, None);
        assert!(lost.reason.contains("does not keep"), "{}", lost.reason);
        let dot = r.refusal("p/./k").unwrap();
        assert!(
            dot.reason.contains(r#"a probe holding "/./" was refused"#),
            "{}",
            dot.reason
        );
        // A leading `/` is tried as an empty segment; its image is not its own.
        let lead = r.refusal("/k").unwrap();
        assert_eq!(lead.twin, None);
        assert!(
            lead.reason.contains(r#"rewrites "//" as "/""#),
            "{}",
            lead.reason
        );
    }
}
