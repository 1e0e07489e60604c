//! Keys an engine does not keep as sent. SeaweedFS stores `a\b` as `a/b` and
//! `a//b` as `a/b`; a sync that uploaded such a key would never find it again
//! under its name — it would upload it on every run, and `--delete` would remove
//! the twin it made. So before uploading new keys, the unusual parts of their
//! names are tried once per run on throwaway objects; a key with a part the engine
//! does not keep is refused (and its twin never deleted).
//!
//! Cheap: keys of AWS's "safe characters" only (letters, digits, `!-_.*'()`, single
//! slashes) are never probed, and the others are probed by their distinct unusual
//! parts, many to one probe object — no request per object.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use stor::{ListOptions, Storage, UploadOptions};

/// Characters every engine keeps as sent (AWS's "safe characters" for keys).
fn safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!-_.*'()/".contains(c)
}

/// The parts of `key` an engine might rewrite, as byte ranges: runs of other
/// characters, and runs of two or more `/`.
fn unusual(key: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
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
        out.push((i, end));
    }
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

/// Why a key cannot be uploaded as it is, and the key the engine would store
/// instead, when known.
pub struct Refusal {
    pub reason: String,
    pub twin: Option<String>,
}

impl Rewrites {
    /// `None` when the engine keeps `key` as sent (or it was not probed).
    pub fn refusal(&self, key: &str) -> Option<Refusal> {
        let mut twin = String::new();
        let mut at = 0;
        let (mut rewritten, mut lost) = (None, None);
        for (s, e) in unusual(key) {
            twin.push_str(&key[at..s]);
            at = e;
            let part = &key[s..e];
            match self.0.get(part) {
                None | Some(Fate::Kept) => twin.push_str(part),
                Some(Fate::Rewritten(image)) => {
                    twin.push_str(image);
                    rewritten.get_or_insert((part, image));
                }
                Some(Fate::Lost(why)) => {
                    lost.get_or_insert((part, why));
                }
            }
        }
        twin.push_str(&key[at..]);
        match (lost, rewritten) {
            (Some((part, why)), _) => Some(Refusal {
                reason: format!(
                    "not uploaded: the engine does not keep the key {key:?} as sent (a probe \
                     holding {part:?} {why}); rename it"
                ),
                twin: None,
            }),
            (None, Some((part, image))) => Some(Refusal {
                reason: format!(
                    "not uploaded: the engine stores the key {key:?} as {twin:?} (it rewrites \
                     {part:?} as {image:?}), so no sync would find it under its name again; \
                     rename it"
                ),
                twin: Some(twin),
            }),
            (None, None) => None,
        }
    }
}

/// Probe objects' names stay under this length (keys may have 1024 bytes).
const LEAF_BYTES: usize = 600;

/// Tries the unusual parts of `keys` on throwaway objects under `under` (the
/// synced prefix: where the keys go, and where the credentials may write), then
/// removes them.
pub async fn probe(store: &Storage, bucket: &str, under: &str, keys: &[&str]) -> Result<Rewrites> {
    let parts: BTreeSet<&str> = keys
        .iter()
        .flat_map(|k| unusual(k).into_iter().map(move |(s, e)| &k[s..e]))
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
    for part in parts {
        match groups.last_mut() {
            Some(g) if g.iter().map(|p| p.len() + 1).sum::<usize>() + part.len() < LEAF_BYTES => {
                g.push(part)
            }
            _ => groups.push(vec![part]),
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
        sent.extend(keys.iter().cloned());
        let listed: Vec<String> = store
            .list_stream(bucket, ListOptions::default().prefix(base.clone()))
            .map_ok(|o| o.key)
            .try_collect()
            .await?;
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
                (Some(e), _) => Fate::Lost(format!("was refused: {e}")),
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
    for batch in [keys.into_iter().collect::<Vec<_>>(), dirs] {
        match store.delete_many(bucket, &batch).await {
            Ok(r) if r.iter().all(|r| r.error.is_none()) => {}
            Ok(_) | Err(_) => eprintln!(
                "stor: warning: could not remove every probe object under {root}; delete \
                 them by hand"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unusual_parts_are_probed() {
        let parts = |k: &'static str| -> Vec<&'static str> {
            unusual(k).into_iter().map(|(s, e)| &k[s..e]).collect()
        };
        assert!(parts("plain/Key_1.(x)-y*z!'").is_empty());
        assert_eq!(parts(r"a\b c"), [r"\", " "]);
        assert_eq!(parts("dir//x///y/z"), ["//", "///"]);
        assert_eq!(parts("é+@ok&="), ["é+@", "&="]);
        assert_eq!(parts("/lead"), Vec::<&str>::new(), "one slash is safe");
    }

    #[test]
    fn a_rewritten_part_names_the_twin() {
        let mut r = Rewrites::default();
        r.0.insert(r"\".into(), Fate::Rewritten("/".into()));
        r.0.insert(" ".into(), Fate::Kept);
        r.0.insert("//".into(), Fate::Rewritten("/".into()));
        r.0.insert("?".into(), Fate::Lost("was refused: no".into()));
        assert!(r.refusal("plain/a b").is_none());
        let x = r.refusal(r"www/a\b c").unwrap();
        assert_eq!(x.twin.as_deref(), Some("www/a/b c"));
        assert!(x.reason.contains(r#"as "www/a/b c""#), "{}", x.reason);
        assert_eq!(r.refusal("p//q").unwrap().twin.as_deref(), Some("p/q"));
        let lost = r.refusal(r"a\b?").unwrap();
        assert_eq!(lost.twin, None);
        assert!(lost.reason.contains("does not keep"), "{}", lost.reason);
    }
}
