//! What `stor sync` does, decided from what each side holds and nothing else:
//! `plan(source, destination, rules) -> Plan` does no I/O, so every combination of
//! states and flags is a row of one table test.
//!
//! Paths are relative to the synced directory or prefix, `/`-separated.
//!
//! ## When a file counts as changed
//!
//! A different size always counts. Otherwise:
//! 1. With `--checksum`, contents are compared when the object carries a checksum
//!    (stor's CRC64NVME, CRC32C or CRC32, or an S3-native full-object one) and the
//!    local file was hashed in that algorithm.
//! 2. Otherwise times. An object `stor sync` uploaded records its file's
//!    modification time (`stor-mtime`, to the nanosecond), and a downloaded file
//!    gets that time: they must be equal — exactly, or as exactly as the
//!    destination's file system keeps times (whole seconds on some) — in both
//!    directions. A file replaced by an older one, or changed twice within a
//!    second, differs.
//! 3. An object another tool uploaded records no time. Up, the file counts as
//!    changed when it is newer than the object's Last-Modified (the rule of
//!    `aws s3 sync`; the upload then records its time). Down, it counts as
//!    changed unless it carries the object's Last-Modified (what a download gives
//!    it), so a same-size rewrite within the object's one-second Last-Modified is
//!    found only with `--checksum`.
//!
//! ## `--delete`
//!
//! Deletes what the destination holds and the source does not, but never
//! - anything when the source holds nothing at all (a mistyped prefix, an empty or
//!   unmounted directory): the whole run is refused, and the plan lists what
//!   would have gone, unless `--allow-empty-source`;
//! - what the filters exclude;
//! - what lies at or below a path whose source exists but was skipped (unreadable,
//!   a special file, a dangling link, a key without a path of its own, a name the
//!   engine would rewrite): its source is there, only not copied.
//!
//! ## A file on one side, a directory on the other
//!
//! A directory cannot hold a file and a directory of one name. Down, the
//! destination's side goes first (files, links, then the emptied directories)
//! when `--delete` may delete all of it; otherwise nothing is done there and the
//! conflict is reported (the run fails). Up, an object store may hold `x` beside
//! `x/y` (some engines cannot), so without `--delete` the upload goes ahead; with
//! it, what is in the way is deleted before the uploads, not after.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use stor::ChecksumAlgorithm;

/// Which way a sync goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A directory to a prefix.
    Up,
    /// A prefix to a directory.
    Down,
}

/// What is known of a file or object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    /// A file's modification time; an object's record of its source file's
    /// (`stor-mtime`), if it has one.
    pub mtime: Option<SystemTime>,
    /// An object's Last-Modified (the server's clock, often whole seconds).
    pub modified: Option<SystemTime>,
    /// An object's checksum; a file's in the object's algorithm, when hashed.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

/// A source entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(Meta),
    /// There, but not copied (reported elsewhere). A path ending in `/` stands for
    /// a whole directory.
    Skipped,
}

/// A destination entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    File(Meta),
    /// A local directory (a prefix's directories are implied by its keys).
    Dir,
    /// A local symlink, FIFO, socket or device: never written through, and deleted
    /// only when it is in the way of a copy.
    Other,
}

/// The flags that change a plan.
pub struct Rules<'a> {
    pub direction: Direction,
    pub delete: bool,
    pub checksum: bool,
    pub allow_empty_source: bool,
    /// How finely the local file system keeps modification times, in nanoseconds
    /// (1; 1 000 000 000 where it keeps whole seconds): a time set on a downloaded
    /// file keeps only that much.
    pub granularity: u64,
    /// The `--include`/`--exclude` filters.
    pub allows: &'a dyn Fn(&str) -> bool,
}

/// A path that is a file on one side and a directory on the other, left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub path: String,
    pub source: Kind,
    pub dest: Kind,
    pub why: Blocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "a file",
            Kind::Dir => "a directory",
            Kind::Other => "a symlink or special file",
        }
    }
}

/// Why the destination's side of a conflict stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// No `--delete`.
    NoDelete,
    /// This path in the way is excluded by a filter.
    Excluded(String),
    /// This path in the way has a source that was skipped.
    Skipped(String),
}

impl Conflict {
    /// What happened and what to do, for the user.
    pub fn message(&self) -> String {
        let what = format!(
            "{:?} is {} in the source but {} at the destination",
            self.path,
            self.source.name(),
            self.dest.name()
        );
        match &self.why {
            Blocked::NoDelete => format!(
                "{what}; nothing was copied there. Run with --delete to replace the \
                 destination's, or rename one of them"
            ),
            Blocked::Excluded(p) => format!(
                "{what}; nothing was copied there: {p:?} is in the way and excluded by a \
                 filter, so --delete keeps it"
            ),
            Blocked::Skipped(p) => format!(
                "{what}; nothing was copied there: {p:?} is in the way and its source was \
                 skipped, so --delete keeps it"
            ),
        }
    }
}

/// What a sync does, in this order: `clear`, `rmdirs`, `copy`, `delete`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Destination files, objects and links in the way of a copy: deleted first.
    pub clear: Vec<String>,
    /// Local directories `clear` empties: removed deepest first.
    pub rmdirs: Vec<String>,
    /// Copied from the source.
    pub copy: Vec<String>,
    /// Deleted after the copies (`--delete`).
    pub delete: Vec<String>,
    /// Left alone and reported.
    pub conflicts: Vec<Conflict>,
    /// `--delete` with an empty source: nothing was planned but these, which
    /// would have been deleted.
    pub refused: Option<Vec<String>>,
}

/// Whether the copy at the destination differs from the source (see the module
/// docs for the rules).
pub fn changed(src: &Meta, dst: &Meta, rules: &Rules<'_>) -> bool {
    if src.size != dst.size {
        return true;
    }
    let (file, object) = match rules.direction {
        Direction::Up => (src, dst),
        Direction::Down => (dst, src),
    };
    let same_time = |f, t| same_time(f, t, rules.granularity);
    if rules.checksum {
        if let (Some((fa, fv)), Some((oa, ov))) = (&file.checksum, &object.checksum) {
            if fa == oa {
                return fv != ov;
            }
        }
    }
    match (file.mtime, object.mtime, object.modified) {
        (Some(f), Some(recorded), _) => !same_time(f, recorded),
        (Some(f), None, Some(modified)) => match rules.direction {
            Direction::Up => f > modified,
            Direction::Down => !same_time(f, modified),
        },
        _ => true,
    }
}

/// Whether a file's modification time is `t`, as precisely as its file system
/// keeps times (every `granularity` nanoseconds).
pub fn same_time(file: SystemTime, t: SystemTime, granularity: u64) -> bool {
    file == t || (granularity > 1 && Some(file) == truncate(t, granularity))
}

/// `t` rounded down to a multiple of `granularity` nanoseconds since the epoch.
pub fn truncate(t: SystemTime, granularity: u64) -> Option<SystemTime> {
    let ns = t.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    let g = u128::from(granularity.max(1));
    let kept = ns / g * g;
    Some(
        UNIX_EPOCH
            + std::time::Duration::new(
                (kept / 1_000_000_000) as u64,
                (kept % 1_000_000_000) as u32,
            ),
    )
}

/// The directories above `rel`, outermost first: `a`, `a/b` for `a/b/c`.
fn parents(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

fn below(rel: &str, dir: &str) -> bool {
    rel.len() > dir.len() && rel.starts_with(dir) && rel.as_bytes()[dir.len()] == b'/'
}

/// Decides a sync. `source` and `dest` map relative paths to entries.
pub fn plan(
    source: &BTreeMap<String, Source>,
    dest: &BTreeMap<String, Dest>,
    rules: &Rules<'_>,
) -> Plan {
    let allows = |rel: &str| (rules.allows)(rel.trim_end_matches('/'));
    let skipped: BTreeSet<&str> = source
        .iter()
        .filter(|(_, s)| matches!(s, Source::Skipped))
        .map(|(k, _)| k.trim_end_matches('/'))
        .collect();
    // At or below a skipped path.
    let protected = |rel: &str| skipped.contains(rel) || parents(rel).any(|p| skipped.contains(p));
    // Why a destination path may not be deleted, if it may not.
    let keep = |rel: &str| -> Option<Blocked> {
        if !rules.delete {
            Some(Blocked::NoDelete)
        } else if !allows(rel) {
            Some(Blocked::Excluded(rel.to_owned()))
        } else {
            protected(rel).then(|| Blocked::Skipped(rel.to_owned()))
        }
    };
    let files: BTreeMap<&str, &Meta> = source
        .iter()
        .filter(|(k, _)| allows(k))
        .filter_map(|(k, s)| match s {
            Source::File(m) => Some((k.as_str(), m)),
            Source::Skipped => None,
        })
        .collect();
    let source_empty = !source.keys().any(|k| allows(k));
    let dest_dirs: BTreeSet<&str> = dest
        .iter()
        .filter(|(_, d)| matches!(d, Dest::Dir))
        .map(|(k, _)| k.as_str())
        .chain(dest.keys().flat_map(|k| parents(k)))
        .collect();
    let under = |dir: &str| -> Vec<&str> {
        dest.range::<str, _>((std::ops::Bound::Excluded(dir), std::ops::Bound::Unbounded))
            .map(|(k, _)| k.as_str())
            .take_while(|k| k.starts_with(dir))
            .filter(|k| below(k, dir))
            .collect()
    };

    let mut p = Plan::default();
    let mut clear = BTreeSet::new();
    let mut rmdirs = BTreeSet::new();
    let mut conflicts: BTreeMap<String, Conflict> = BTreeMap::new();
    for (&rel, &src) in &files {
        let mut blocked = false;
        let mut conflict = |path: &str, source, dest, why| {
            blocked = true;
            conflicts.entry(path.to_owned()).or_insert(Conflict {
                path: path.to_owned(),
                source,
                dest,
                why,
            });
        };
        // A file or link where the source has a directory above `rel`.
        for dir in parents(rel) {
            let kind = match dest.get(dir) {
                Some(Dest::File(_)) => Kind::File,
                Some(Dest::Other) => Kind::Other,
                _ => continue,
            };
            match (rules.direction, keep(dir)) {
                (_, None) => {
                    clear.insert(dir.to_owned());
                }
                (Direction::Down, Some(why)) => conflict(dir, Kind::Dir, kind, why),
                (Direction::Up, Some(_)) => {}
            }
        }
        // A directory where the source has the file `rel`.
        if dest_dirs.contains(rel) {
            let inside = under(rel);
            let why = keep(rel).or_else(|| inside.iter().find_map(|k| keep(k)));
            match (rules.direction, why) {
                (_, None) => {
                    for k in inside {
                        match dest[k] {
                            Dest::Dir => rmdirs.insert(k.to_owned()),
                            _ => clear.insert(k.to_owned()),
                        };
                    }
                    if rules.direction == Direction::Down {
                        rmdirs.insert(rel.to_owned());
                    }
                }
                (Direction::Down, Some(why)) => conflict(rel, Kind::File, Kind::Dir, why),
                (Direction::Up, Some(_)) => {}
            }
        }
        let copy = match dest.get(rel) {
            None | Some(Dest::Dir) => true,
            Some(Dest::File(dst)) => changed(src, dst, rules),
            Some(Dest::Other) => match keep(rel) {
                None => {
                    clear.insert(rel.to_owned());
                    true
                }
                Some(why) => {
                    conflict(rel, Kind::File, Kind::Other, why);
                    false
                }
            },
        };
        if copy && !blocked {
            p.copy.push(rel.to_owned());
        }
    }
    if rules.delete {
        p.delete = dest
            .iter()
            .filter(|(k, d)| matches!(d, Dest::File(_)) && !files.contains_key(k.as_str()))
            .map(|(k, _)| k.as_str())
            .filter(|k| keep(k).is_none() && !clear.contains(*k))
            .map(str::to_owned)
            .collect();
    }
    if rules.delete && !rules.allow_empty_source && source_empty && !p.delete.is_empty() {
        return Plan {
            refused: Some(p.delete),
            ..Plan::default()
        };
    }
    p.clear = clear.into_iter().collect();
    // Deepest first, so each is empty when its turn comes.
    p.rmdirs = rmdirs.into_iter().rev().collect();
    p.rmdirs
        .sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    p.conflicts = conflicts.into_values().collect();
    p
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T: u64 = 1_700_000_000;

    fn at(secs: u64, nanos: u32) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    /// A local file of `size` bytes modified at `T + ms` milliseconds.
    fn file(size: u64, ms: u64) -> Meta {
        Meta {
            size,
            mtime: at(T + ms / 1000, (ms % 1000) as u32 * 1_000_000),
            ..Meta::default()
        }
    }

    /// An object stor uploaded from a file modified at `T + ms`, stored at `T + 5 s`.
    fn object(size: u64, ms: u64) -> Meta {
        Meta {
            modified: at(T + 5, 0),
            ..file(size, ms)
        }
    }

    /// An object another tool uploaded: no recorded mtime, Last-Modified `T + s`.
    fn foreign(size: u64, s: u64) -> Meta {
        Meta {
            size,
            modified: at(T + s, 0),
            ..Meta::default()
        }
    }

    fn summed(mut m: Meta, algo: ChecksumAlgorithm, v: &str) -> Meta {
        m.checksum = Some((algo, v.to_owned()));
        m
    }

    /// Flags: d --delete, c --checksum, e --allow-empty-source, w a whole-second
    /// file system, x a filter excluding paths that start with `x` or hold `/x`.
    fn rules(direction: Direction, flags: &str) -> Rules<'static> {
        fn no_x(rel: &str) -> bool {
            !rel.starts_with('x') && !rel.contains("/x")
        }
        fn all(_: &str) -> bool {
            true
        }
        Rules {
            direction,
            delete: flags.contains('d'),
            checksum: flags.contains('c'),
            allow_empty_source: flags.contains('e'),
            granularity: if flags.contains('w') {
                1_000_000_000
            } else {
                1
            },
            allows: if flags.contains('x') { &no_x } else { &all },
        }
    }

    #[rustfmt::skip]
    #[test]
    fn what_counts_as_changed() {
        use ChecksumAlgorithm::{Crc32, Crc32c, Crc64nvme};
        use Direction::{Down, Up};
        let rows: Vec<(&str, Direction, &str, Meta, Meta, bool)> = vec![
            // (case, direction, flags, source, destination, changed)
            ("same size and time", Up, "", file(4, 100), object(4, 100), false),
            ("other size", Up, "", file(5, 100), object(4, 100), true),
            ("same second, 200 ms later", Up, "", file(4, 300), object(4, 100), true),
            ("replaced by an older file", Up, "", file(4, 0), object(4, 100), true),
            ("down, same time", Down, "", object(4, 100), file(4, 100), false),
            ("down, same second", Down, "", object(4, 300), file(4, 100), true),
            ("down, a whole second, not the time", Down, "", object(4, 300), file(4, 0), true),
            ("down, whole-second fs", Down, "w", object(4, 1300), file(4, 1000), false),
            ("down, whole-second fs, other second", Down, "w", object(4, 2300), file(4, 1000), true),
            ("down, local edit", Down, "", object(4, 100), file(4, 9000), true),
            ("foreign, file older", Up, "", file(4, 1000), foreign(4, 5), false),
            ("foreign, file newer", Up, "", file(4, 6000), foreign(4, 5), true),
            ("foreign down, as downloaded", Down, "", foreign(4, 5), file(4, 5000), false),
            ("foreign down, other time", Down, "", foreign(4, 5), file(4, 4000), true),
            ("checksums equal, times differ", Up, "c", summed(file(4, 0), Crc64nvme, "A"), summed(object(4, 100), Crc64nvme, "A"), false),
            ("checksums differ, times equal", Up, "c", summed(file(4, 100), Crc64nvme, "A"), summed(object(4, 100), Crc64nvme, "B"), true),
            ("crc32c settles too", Down, "c", summed(object(4, 100), Crc32c, "C"), summed(file(4, 900), Crc32c, "C"), false),
            ("crc32 differs", Down, "c", summed(object(4, 100), Crc32, "C"), summed(file(4, 100), Crc32, "D"), true),
            ("no checksum: the recorded time decides", Up, "c", file(4, 100), object(4, 100), false),
            ("no checksum, other time", Up, "c", file(4, 200), object(4, 100), true),
            ("checksums ignored without --checksum", Up, "", summed(file(4, 100), Crc64nvme, "A"), summed(object(4, 100), Crc64nvme, "B"), false),
            ("other algorithms are not compared", Up, "c", summed(file(4, 100), Crc32, "A"), summed(object(4, 100), Crc32c, "B"), false),
            ("no times, no checksum: copy", Up, "c", Meta { size: 4, ..Meta::default() }, Meta { size: 4, ..Meta::default() }, true),
        ];
        for (case, dir, flags, src, dst, want) in rows {
            assert_eq!(changed(&src, &dst, &rules(dir, flags)), want, "{case}");
        }
    }

    fn src(entries: &[(&str, Source)]) -> BTreeMap<String, Source> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn dst(entries: &[(&str, Dest)]) -> BTreeMap<String, Dest> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// A plan in one line: `clear a; rmdir b; copy c; delete d; conflict e(file/dir)`.
    fn show(p: &Plan) -> String {
        let mut parts = Vec::new();
        for (name, v) in [
            ("clear", &p.clear),
            ("rmdir", &p.rmdirs),
            ("copy", &p.copy),
            ("delete", &p.delete),
        ] {
            if !v.is_empty() {
                parts.push(format!("{name} {}", v.join(" ")));
            }
        }
        if let Some(r) = &p.refused {
            parts.push(format!("refuse {}", r.join(" ")));
        }
        let k = |k: Kind| match k {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Other => "other",
        };
        for c in &p.conflicts {
            let why = match &c.why {
                Blocked::NoDelete => String::new(),
                Blocked::Excluded(p) => format!(" excluded {p}"),
                Blocked::Skipped(p) => format!(" skipped {p}"),
            };
            let (s, d) = (k(c.source), k(c.dest));
            parts.push(format!("conflict {}({s}/{d}{why})", c.path));
        }
        parts.join("; ")
    }

    /// Source state × destination state × flags → plan.
    #[rustfmt::skip]
    #[test]
    fn the_sync_table() {
        use Dest::{Dir, Other};
        use Direction::{Down, Up};
        use Source::Skipped;
        let same = || Source::File(file(4, 100));
        let newer = || Source::File(file(4, 300));
        let uploaded = || Dest::File(object(4, 100));
        let downloaded = || Dest::File(file(4, 100));
        let obj = || Source::File(object(4, 100));
        let obj_newer = || Source::File(object(4, 300));
        let f = || Dest::File(file(1, 0));
        let o = || Dest::File(object(1, 0));
        type Row = (&'static str, Direction, &'static str, BTreeMap<String, Source>, BTreeMap<String, Dest>, &'static str);
        let rows: Vec<Row> = vec![
            // (case, direction, flags, source, destination, plan)
            // ---- up: a directory to a prefix
            ("new file", Up, "", src(&[("a", same())]), dst(&[]), "copy a"),
            ("unchanged", Up, "", src(&[("a", same())]), dst(&[("a", uploaded())]), ""),
            ("changed within a second", Up, "", src(&[("a", newer())]), dst(&[("a", uploaded())]), "copy a"),
            ("extra kept without --delete", Up, "", src(&[("a", same())]), dst(&[("a", uploaded()), ("b", o())]), ""),
            ("extra deleted", Up, "d", src(&[("a", same())]), dst(&[("a", uploaded()), ("b", o())]), "delete b"),
            ("extra excluded", Up, "dx", src(&[("a", same())]), dst(&[("a", uploaded()), ("x/b", o())]), ""),
            ("excluded file not copied", Up, "x", src(&[("x", same()), ("y/x", same())]), dst(&[]), ""),
            ("skipped file's copy kept", Up, "d", src(&[("a", same()), ("link", Skipped)]), dst(&[("a", uploaded()), ("link", o())]), ""),
            ("skipped directory keeps all below", Up, "d", src(&[("a", same()), ("sub/", Skipped)]), dst(&[("sub/x", o()), ("sub/y/z", o()), ("subway", o())]), "copy a; delete subway"),
            ("empty source refused", Up, "d", src(&[]), dst(&[("a", o()), ("b/c", o())]), "refuse a b/c"),
            ("empty source allowed", Up, "de", src(&[]), dst(&[("a", o())]), "delete a"),
            ("empty source, nothing to delete", Up, "d", src(&[]), dst(&[]), ""),
            ("empty source without --delete", Up, "", src(&[]), dst(&[("a", o())]), ""),
            ("only skipped entries: not empty", Up, "d", src(&[("s", Skipped)]), dst(&[("a", o())]), "delete a"),
            ("empty after the filters", Up, "dx", src(&[("x/a", same())]), dst(&[("b", o())]), "refuse b"),
            ("dir over object, no --delete", Up, "", src(&[("z/a", same())]), dst(&[("z", o())]), "copy z/a"),
            ("dir over object, --delete", Up, "d", src(&[("z/a", same())]), dst(&[("z", o())]), "clear z; copy z/a"),
            ("file over prefix, no --delete", Up, "", src(&[("x", same())]), dst(&[("x/y", o())]), "copy x"),
            ("file over prefix, --delete", Up, "d", src(&[("x", same())]), dst(&[("x/y", o()), ("x/z/w", o())]), "clear x/y x/z/w; copy x"),
            ("file over prefix, part excluded", Up, "dx", src(&[("y", same())]), dst(&[("y/x", o())]), "copy y"),
            // ---- down: a prefix to a directory
            ("download new", Down, "", src(&[("a", obj())]), dst(&[]), "copy a"),
            ("down unchanged", Down, "", src(&[("a", obj())]), dst(&[("a", downloaded())]), ""),
            ("down changed within a second", Down, "", src(&[("a", obj_newer())]), dst(&[("a", downloaded())]), "copy a"),
            ("down extra deleted", Down, "d", src(&[("a", obj())]), dst(&[("a", downloaded()), ("b", f())]), "delete b"),
            ("down extra link kept", Down, "d", src(&[("a", obj())]), dst(&[("a", downloaded()), ("l", Other)]), ""),
            ("down empty dirs kept", Down, "d", src(&[("a", obj())]), dst(&[("a", downloaded()), ("e", Dir)]), ""),
            ("down empty source refused", Down, "d", src(&[]), dst(&[("a", f()), ("s", Dir), ("s/b", f())]), "refuse a s/b"),
            ("down skipped keys keep their files", Down, "d", src(&[("k", Skipped), ("k/v", Skipped), ("ok", obj())]), dst(&[("k", f()), ("ok", downloaded())]), ""),
            ("object over dir, no --delete", Down, "", src(&[("z", obj())]), dst(&[("z", Dir), ("z/old", f())]), "conflict z(file/dir)"),
            ("object over dir, --delete", Down, "d", src(&[("z", obj())]), dst(&[("z", Dir), ("z/old", f()), ("z/s", Dir), ("z/s/l", Other), ("z/s/t", f())]), "clear z/old z/s/l z/s/t; rmdir z/s z; copy z"),
            ("object over dir, part excluded", Down, "dx", src(&[("z", obj())]), dst(&[("z", Dir), ("z/x", Dir), ("z/x/keep", f())]), "conflict z(file/dir excluded z/x)"),
            ("object over dir, part skipped", Down, "d", src(&[("z", obj()), ("z/k", Skipped)]), dst(&[("z", Dir), ("z/k", f())]), "conflict z(file/dir skipped z/k)"),
            ("object over empty dir, --delete", Down, "d", src(&[("z", obj())]), dst(&[("z", Dir)]), "rmdir z; copy z"),
            ("object over empty dir, no --delete", Down, "", src(&[("z", obj())]), dst(&[("z", Dir)]), "conflict z(file/dir)"),
            ("prefix over file, no --delete", Down, "", src(&[("p/y", obj()), ("p/z", obj()), ("ok", obj())]), dst(&[("p", f())]), "copy ok; conflict p(dir/file)"),
            ("prefix over file, --delete", Down, "d", src(&[("p/y", obj())]), dst(&[("p", f())]), "clear p; copy p/y"),
            ("prefix over file, deeper", Down, "d", src(&[("p/q/r", obj())]), dst(&[("p", Dir), ("p/q", f())]), "clear p/q; copy p/q/r"),
            ("prefix over a skipped key's file", Down, "d", src(&[("p/y", obj()), ("p", Skipped)]), dst(&[("p", f())]), "conflict p(dir/file skipped p)"),
            ("object over link, no --delete", Down, "", src(&[("l", obj())]), dst(&[("l", Other)]), "conflict l(file/other)"),
            ("object over link, --delete", Down, "d", src(&[("l", obj())]), dst(&[("l", Other)]), "clear l; copy l"),
            ("prefix over link, --delete", Down, "d", src(&[("l/a", obj())]), dst(&[("l", Other)]), "clear l; copy l/a"),
            ("prefix over link, no --delete", Down, "", src(&[("l/a", obj())]), dst(&[("l", Other)]), "conflict l(dir/other)"),
            ("excluded object not copied", Down, "x", src(&[("x/a", obj())]), dst(&[]), ""),
        ];
        for (case, direction, flags, s, d, want) in rows {
            assert_eq!(show(&plan(&s, &d, &rules(direction, flags))), want, "{case}");
        }
    }

    #[test]
    fn conflict_messages_say_what_to_do() {
        let c = Conflict {
            path: "z".into(),
            source: Kind::File,
            dest: Kind::Dir,
            why: Blocked::NoDelete,
        };
        let m = c.message();
        assert!(
            m.contains("\"z\" is a file in the source but a directory"),
            "{m}"
        );
        assert!(m.contains("--delete"), "{m}");
        let c = Conflict {
            why: Blocked::Excluded("z/x".into()),
            ..c
        };
        assert!(c.message().contains("excluded by a filter"));
    }

    #[test]
    fn whole_second_file_systems_match_within_their_second() {
        let t = at(T, 999_999_999).unwrap();
        const S: u64 = 1_000_000_000;
        assert!(same_time(at(T, 0).unwrap(), t, S));
        assert!(!same_time(at(T, 0).unwrap(), t, 1));
        assert!(!same_time(at(T + 1, 0).unwrap(), t, S));
        assert!(same_time(t, t, 1));
        // Microseconds (some network file systems), two seconds (FAT).
        assert!(same_time(at(T, 999_999_000).unwrap(), t, 1_000));
        assert!(!same_time(at(T, 999_000_000).unwrap(), t, 1_000));
        assert!(same_time(at(T, 0).unwrap(), at(T + 1, 5).unwrap(), 2 * S));
    }
}
