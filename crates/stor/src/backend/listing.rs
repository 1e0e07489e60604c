//! S3 listing semantics over any sorted key store (memory, local): byte order,
//! prefix, delimiter with common prefixes, max-keys counting keys and prefixes,
//! continuation tokens and start-after. Written once so both embedded stores agree.

use crate::error::{Error, Result};
use crate::types::{ListOptions, ListPage, ObjectInfo};

/// Reads objects of the store in byte order of key: those whose key is
/// `>= lower` (or `> lower` when `!inclusive`) and starts with `prefix`, at most `limit`.
pub(crate) trait Fetch {
    fn fetch(
        &mut self,
        prefix: &[u8],
        lower: &[u8],
        inclusive: bool,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>>;
}

impl<F> Fetch for F
where
    F: FnMut(&[u8], &[u8], bool, usize) -> Result<Vec<ObjectInfo>>,
{
    fn fetch(
        &mut self,
        prefix: &[u8],
        lower: &[u8],
        inclusive: bool,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        self(prefix, lower, inclusive, limit)
    }
}

/// The smallest byte string greater than every string that starts with `p`,
/// or `None` when there is none (all 0xFF).
pub(crate) fn successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut v = p.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xFF {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

// Continuation tokens are opaque to callers: hex of a tag byte and the position.
fn encode_token(tag: u8, pos: &[u8]) -> String {
    let mut raw = Vec::with_capacity(pos.len() + 1);
    raw.push(tag);
    raw.extend_from_slice(pos);
    hex::encode(raw)
}

fn decode_token(token: &str) -> Result<(u8, Vec<u8>)> {
    let raw = hex::decode(token)
        .ok()
        .filter(|r| !r.is_empty() && (r[0] == b'k' || r[0] == b'p'))
        .ok_or_else(|| {
            Error::invalid(
                "invalid continuation token: pass the next_continuation_token of the previous page",
            )
        })?;
    Ok((raw[0], raw[1..].to_vec()))
}

/// Builds one page of a listing by S3's rules. See [`Fetch`].
pub(crate) fn list_sorted(store: &mut dyn Fetch, req: &ListOptions) -> Result<ListPage> {
    let (prefix, delimiter) = (req.prefix.as_str(), req.delimiter.as_deref());
    let max_keys = req.max_keys.unwrap_or(1000);
    let (continuation, start_after) = (
        req.continuation_token.as_deref(),
        req.start_after.as_deref(),
    );
    let prefix_b = prefix.as_bytes();
    let delim = delimiter.filter(|d| !d.is_empty()).map(str::as_bytes);
    let max = max_keys as usize;

    // Where to start: after the token, else after start_after, else at the prefix.
    let (mut lower, mut inclusive) = (prefix_b.to_vec(), true);
    if let Some(sa) = start_after {
        if sa.as_bytes() >= prefix_b {
            lower = sa.as_bytes().to_vec();
            inclusive = false;
        }
    }
    if let Some(tok) = continuation {
        let (tag, pos) = decode_token(tok)?;
        if tag == b'p' {
            match successor(&pos) {
                Some(s) => (lower, inclusive) = (s, true),
                None => return Ok(ListPage::default()),
            }
        } else {
            (lower, inclusive) = (pos, false);
        }
    }

    let mut page = ListPage::default();
    if max == 0 {
        return Ok(page);
    }
    // Last position emitted, and whether it was a common prefix.
    let mut last: Option<(u8, Vec<u8>)> = None;
    'outer: loop {
        let want = (max - page.objects.len() - page.common_prefixes.len()).clamp(1, 1000);
        let batch = store.fetch(prefix_b, &lower, inclusive, want)?;
        if batch.is_empty() {
            return Ok(page);
        }
        let batch_len = batch.len();
        for obj in batch {
            let kb = obj.key.as_bytes().to_vec();
            let count = page.objects.len() + page.common_prefixes.len();
            if count == max {
                // There is more: this entry exists beyond the page.
                let (tag, pos) = last.expect("a full page has a last entry");
                page.next_continuation_token = Some(encode_token(tag, &pos));
                return Ok(page);
            }
            if let Some(d) = delim {
                let rest = &kb[prefix_b.len()..];
                if let Some(i) = find(rest, d) {
                    let cp = kb[..prefix_b.len() + i + d.len()].to_vec();
                    // cp ends on a delimiter; the key is valid UTF-8 so this is too
                    // unless the delimiter splits a character, which a str delimiter can't.
                    page.common_prefixes
                        .push(String::from_utf8(cp.clone()).expect("utf-8 prefix"));
                    match successor(&cp) {
                        Some(s) => (lower, inclusive) = (s, true),
                        None => return Ok(page),
                    }
                    last = Some((b'p', cp));
                    continue 'outer;
                }
            }
            lower = kb.clone();
            inclusive = false;
            last = Some((b'k', kb));
            page.objects.push(obj);
        }
        if batch_len < want && page.objects.len() + page.common_prefixes.len() < max {
            return Ok(page);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(keys: &[&str]) -> impl FnMut(&[u8], &[u8], bool, usize) -> Result<Vec<ObjectInfo>> {
        let mut keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        keys.sort();
        move |prefix, lower, inclusive, limit| {
            Ok(keys
                .iter()
                .filter(|k| k.starts_with(prefix))
                .filter(|k| {
                    if inclusive {
                        k.as_slice() >= lower
                    } else {
                        k.as_slice() > lower
                    }
                })
                .take(limit)
                .map(|k| ObjectInfo::new("b", std::str::from_utf8(k).unwrap(), 0))
                .collect())
        }
    }

    fn all_pages(keys: &[&str], prefix: &str, delim: Option<&str>, max: u32) -> Vec<String> {
        let mut s = store(keys);
        let mut out = vec![];
        let mut token = None;
        loop {
            let page = list_sorted(
                &mut s,
                &ListOptions {
                    prefix: prefix.into(),
                    delimiter: delim.map(str::to_owned),
                    max_keys: Some(max),
                    continuation_token: token.clone(),
                    start_after: None,
                },
            )
            .unwrap();
            assert!(page.objects.len() + page.common_prefixes.len() <= max as usize);
            out.extend(page.objects.iter().map(|o| o.key.clone()));
            out.extend(page.common_prefixes.iter().map(|p| format!("PRE {p}")));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return out,
            }
        }
    }

    #[test]
    fn pages_cover_everything_once_at_any_page_size() {
        let keys: Vec<String> = (0..25).map(|i| format!("k{i:03}")).collect();
        let refs: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
        for max in [1, 2, 5, 24, 25, 26, 1000] {
            assert_eq!(all_pages(&refs, "", None, max), keys, "max={max}");
        }
    }

    #[test]
    fn exact_page_boundary_has_no_token() {
        let mut s = store(&["a", "b"]);
        let page = list_sorted(
            &mut s,
            &ListOptions {
                prefix: "".into(),
                delimiter: None,
                max_keys: Some(2),
                continuation_token: None,
                start_after: None,
            },
        )
        .unwrap();
        assert_eq!(page.objects.len(), 2);
        assert!(page.next_continuation_token.is_none());
    }

    #[test]
    fn delimiter_groups_and_counts_prefixes() {
        let keys = ["a", "a/b", "a/c", "b/x/y", "c"];
        let mut s = store(&keys);
        let page = list_sorted(
            &mut s,
            &ListOptions {
                prefix: "".into(),
                delimiter: Some("/".into()),
                max_keys: Some(1000),
                continuation_token: None,
                start_after: None,
            },
        )
        .unwrap();
        let objs: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(objs, ["a", "c"]);
        assert_eq!(page.common_prefixes, ["a/", "b/"]);
        // One at a time, prefixes count toward max-keys and are not repeated.
        let got = all_pages(&keys, "", Some("/"), 1);
        assert_eq!(got, ["a", "PRE a/", "PRE b/", "c"]);
    }

    #[test]
    fn prefix_and_start_after() {
        let mut s = store(&["x/1", "x/2", "x/3", "y/1"]);
        let page = list_sorted(
            &mut s,
            &ListOptions {
                prefix: "x/".into(),
                delimiter: None,
                max_keys: Some(1000),
                continuation_token: None,
                start_after: Some("x/1".into()),
            },
        )
        .unwrap();
        let objs: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(objs, ["x/2", "x/3"]);
    }

    #[test]
    fn byte_order_not_char_order() {
        // U+FF5E (3 bytes) sorts after U+00E9 (2 bytes) and after ASCII.
        let got = all_pages(&["\u{ff5e}", "\u{e9}", "z", "A"], "", None, 2);
        assert_eq!(got, ["A", "z", "\u{e9}", "\u{ff5e}"]);
    }

    #[test]
    fn bad_token_is_invalid_input() {
        let mut s = store(&["a"]);
        let err = list_sorted(
            &mut s,
            &ListOptions {
                prefix: "".into(),
                delimiter: None,
                max_keys: Some(10),
                continuation_token: Some("zz".into()),
                start_after: None,
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    }
}
