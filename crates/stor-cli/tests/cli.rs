//! The built `stor` binary, run in temp dirs against the local store and, when
//! `scripts/with-servers.sh` provides it, SeaweedFS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
    s3: Option<String>,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            s3: None,
        }
    }

    /// With SeaweedFS, or `None` (skip) when it is not configured.
    fn with_s3() -> Option<Env> {
        let url = std::env::var("STOR_TEST_SEAWEEDFS")
            .ok()
            .filter(|v| !v.is_empty());
        if url.is_none() && std::env::var("STOR_TEST_REQUIRE_SERVERS").as_deref() == Ok("1") {
            panic!("STOR_TEST_SEAWEEDFS not set but STOR_TEST_REQUIRE_SERVERS=1");
        }
        let mut env = Env::new();
        env.s3 = Some(url?);
        Some(env)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stor"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("STOR_LOCAL_ROOT", self.path("store"))
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env_remove("STOR_CONFIG")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3");
        if let Some(url) = &self.s3 {
            c.env("AWS_ENDPOINT_URL", url)
                .env(
                    "AWS_ACCESS_KEY_ID",
                    std::env::var("STOR_TEST_ACCESS_KEY_ID").unwrap_or("stor-test".into()),
                )
                .env(
                    "AWS_SECRET_ACCESS_KEY",
                    std::env::var("STOR_TEST_SECRET_ACCESS_KEY")
                        .unwrap_or("stor-test-secret".into()),
                )
                .env("AWS_REGION", "us-east-1");
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Runs and requires exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "stor {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn bucket() -> String {
    format!("stor-cli-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    n ^ std::process::id().rotate_left(16)
}

fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, data) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

// ------------------------------------------------------------------ local store

#[test]
fn local_roundtrip_with_metadata_and_stat_json() {
    let e = Env::new();
    e.ok(&["mb", "local://news"]);
    std::fs::write(e.path("a.json"), br#"{"title":"hi"}"#).unwrap();
    let out = e.ok(&[
        "cp",
        "a.json",
        "local://news/2026/",
        "--metadata",
        "source=crawler",
        "--metadata",
        "lang=ko",
    ]);
    assert!(
        out.contains("upload: a.json to local://news/2026/a.json"),
        "{out}"
    );
    let stat: serde_json::Value =
        serde_json::from_str(&e.ok(&["stat", "--json", "local://news/2026/a.json"])).unwrap();
    assert_eq!(stat["size"], 14);
    assert_eq!(stat["content_type"], "application/json");
    assert_eq!(stat["metadata"]["source"], "crawler");
    assert_eq!(stat["metadata"]["lang"], "ko");
    assert!(stat["etag"].as_str().unwrap().len() == 32);
    assert!(stat["last_modified"].as_str().unwrap().ends_with('Z'));
    e.ok(&["cp", "local://news/2026/a.json", "back.json"]);
    assert_eq!(
        std::fs::read(e.path("back.json")).unwrap(),
        br#"{"title":"hi"}"#
    );
    // Into an existing directory: the key's last segment names the file.
    std::fs::create_dir(e.path("dl")).unwrap();
    e.ok(&["cp", "local://news/2026/a.json", "dl"]);
    assert!(e.path("dl/a.json").is_file());
    // ls: one level with PRE, recursive with full keys, JSON lines.
    let ls = e.ok(&["ls", "local://news"]);
    assert!(ls.contains("PRE 2026/"), "{ls}");
    let ls = e.ok(&["ls", "-r", "local://news"]);
    assert!(ls.trim_end().ends_with(" 2026/a.json"), "{ls}");
    let json = e.ok(&["ls", "-r", "--json", "local://news"]);
    let line: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(line["key"], "2026/a.json");
    let buckets = e.ok(&["ls", "local://"]);
    assert_eq!(buckets.trim(), "local://news");
}

#[test]
fn exit_codes_and_one_line_errors() {
    let e = Env::new();
    e.ok(&["mb", "local://bkt"]);
    // Operation failed: 1.
    let out = e.run(&["cp", "local://bkt/missing", "x"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("key not found") && err.contains("local://bkt/missing"),
        "{err}"
    );
    assert!(!e.path("x").exists());
    // Bad input: 2, with what was wrong.
    let out = e.run(&["cp", "x", "local://Bad_Bucket/k"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("invalid bucket name"),
        "{}",
        stderr(&out)
    );
    for expires in ["0", "-5", "604801"] {
        let out = e.run(&["presign", "--expires", expires, "s3://bkt/k"]);
        assert_eq!(code(&out), 2, "expires {expires}: {}", stderr(&out));
    }
    // Bad usage: 2.
    assert_eq!(code(&e.run(&["cp", "only-one-arg"])), 2);
    assert_eq!(code(&e.run(&["frobnicate"])), 2);
    assert_eq!(
        code(&e.run(&["cp", "a", "b"])),
        2,
        "file to file is not ours"
    );
    // Unsupported on the local store: 1, and says why.
    let out = e.run(&["presign", "local://bkt/k"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("presign"), "{}", stderr(&out));
    // A bad config file names the key.
    std::fs::write(
        e.path("bad.json"),
        r#"{"storageConfig": {"max_concurency": 4}}"#,
    )
    .unwrap();
    let out = e.run(&["--config", "bad.json", "ls", "local://bkt"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("max_concurency"), "{}", stderr(&out));
}

#[test]
fn recursive_copy_both_ways_and_prefix_to_prefix() {
    let e = Env::new();
    e.ok(&["mb", "local://tree"]);
    let files: &[(&str, &[u8])] = &[
        ("src/a.txt", b"a"),
        ("src/sub/b.bin", &[0u8, 1, 2, 3]),
        ("src/sub/deeper/c d%.txt", b"spaces and percent"),
        ("src/유니코드.txt", b"unicode"),
    ];
    write_tree(e.dir.path(), files);
    e.ok(&["cp", "--recursive", "src", "local://tree/up/"]);
    let ls = e.ok(&["ls", "-r", "local://tree/up/"]);
    assert_eq!(ls.lines().count(), 4, "{ls}");
    e.ok(&["cp", "--recursive", "local://tree/up/", "down"]);
    for (rel, data) in files {
        let back = e.path(&rel.replacen("src/", "down/", 1));
        assert_eq!(std::fs::read(&back).unwrap(), *data, "{rel}");
    }
    // Object prefix to prefix, server-side.
    e.ok(&["cp", "-r", "local://tree/up/", "local://tree/copy/"]);
    assert_eq!(e.ok(&["ls", "-r", "local://tree/copy/"]).lines().count(), 4);
    // Dry runs change nothing.
    let out = e.ok(&["rm", "-r", "--dry-run", "local://tree/copy/"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("(dryrun) delete:"))
            .count(),
        4
    );
    assert_eq!(e.ok(&["ls", "-r", "local://tree/copy/"]).lines().count(), 4);
    e.ok(&["rm", "-r", "local://tree/copy/"]);
    assert_eq!(e.ok(&["ls", "-r", "local://tree/copy/"]).lines().count(), 0);
    // A bucket with objects needs --force.
    assert_eq!(code(&e.run(&["rb", "local://tree"])), 1);
    e.ok(&["rb", "--force", "local://tree"]);
}

#[test]
fn keys_that_would_escape_the_target_directory_are_refused() {
    let e = Env::new();
    e.ok(&["mb", "local://evil"]);
    std::fs::write(e.path("payload"), b"gotcha").unwrap();
    e.ok(&["cp", "payload", "local://evil/in/../../escaped.txt"]);
    e.ok(&["cp", "payload", "local://evil/in/fine.txt"]);
    std::fs::create_dir(e.path("out")).unwrap();
    let out = e.run(&["cp", "-r", "local://evil/in/", "out/inner"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("outside"), "{}", stderr(&out));
    assert!(
        e.path("out/inner/fine.txt").is_file(),
        "the safe key is still copied"
    );
    assert!(!e.path("escaped.txt").exists() && !e.path("out/escaped.txt").exists());
}

#[test]
fn stdin_to_object_and_object_to_stdout() {
    let e = Env::new();
    e.ok(&["mb", "local://pipe"]);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = e.run_stdin(&["cp", "-", "local://pipe/from-stdin.bin"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = e.run(&["cp", "local://pipe/from-stdin.bin", "-"]);
    assert!(out.status.success());
    assert!(out.stdout == data);
}

#[test]
fn move_keeps_the_source_when_the_copy_fails() {
    let e = Env::new();
    e.ok(&["mb", "local://mv-src"]);
    std::fs::write(e.path("f"), b"x").unwrap();
    e.ok(&["cp", "f", "local://mv-src/k"]);
    let out = e.run(&["mv", "local://mv-src/k", "local://no-such-bucket/k"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(e.ok(&["ls", "local://mv-src"]).contains(" k"));
    e.ok(&["mv", "local://mv-src/k", "local://mv-src/k2"]);
    let ls = e.ok(&["ls", "local://mv-src"]);
    assert!(ls.contains(" k2") && !ls.contains(" k\n"), "{ls}");
    // File to object removes the file only after the upload.
    e.ok(&["mv", "f", "local://mv-src/from-file"]);
    assert!(!e.path("f").exists());
}

#[test]
fn broken_pipe_exits_quietly() {
    let e = Env::new();
    e.ok(&["mb", "local://many"]);
    std::fs::create_dir(e.path("d")).unwrap();
    for i in 0..50 {
        std::fs::write(e.path(&format!("d/{i:03}")), b"x").unwrap();
    }
    e.ok(&["cp", "-r", "-q", "d", "local://many/"]);
    let mut child = e
        .cmd(&["ls", "-r", "local://many"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// The bytes writer `w` puts as its `i`-th upload: a header naming them, then a
/// pattern and a length only they give, so a reader can tell a whole version from a
/// torn or mixed one. 100-600 KB, so a read takes several chunks.
fn version(w: usize, i: usize) -> Vec<u8> {
    let len = 100_000 + (w * 7_919 + i * 104_729) % 500_000;
    let mut v = format!("v {w} {i}\n").into_bytes();
    let seed = (w * 1_000 + i) as u32;
    v.extend(
        (0..len as u32).map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8),
    );
    v
}

/// Whether `data` is exactly one of the versions any writer put.
fn is_whole_version(data: &[u8]) -> bool {
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let head = String::from_utf8_lossy(&data[..nl]);
    let mut f = head.split(' ');
    match (f.next(), f.next().map(str::parse), f.next().map(str::parse)) {
        (Some("v"), Some(Ok(w)), Some(Ok(i))) => data == version(w, i),
        _ => false,
    }
}

#[test]
fn several_processes_write_and_read_one_local_store() {
    const WRITERS: usize = 4;
    const UPLOADS: usize = 100;
    let e = std::sync::Arc::new(Env::new());
    e.ok(&["mb", "local://multi"]);
    // Every writer overwrites the shared keys; each also has keys of its own.
    let key = |w: usize, i: usize| match i % 2 {
        0 => format!("shared/{}", (i / 2) % 4),
        _ => format!("w{w}/{}", (i / 2) % 5),
    };
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(WRITERS));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (e, writing) = (e.clone(), writing.clone());
        writers.push(std::thread::spawn(move || {
            let mut failed = Vec::new();
            let mut check = |what: String, out: Output| {
                if !out.status.success() {
                    failed.push(format!("writer {w} {what}: {}", stderr(&out)));
                }
            };
            if w % 2 == 0 {
                // Batches of 10 files in one process: back-to-back commits.
                for batch in 0..UPLOADS / 10 {
                    let dir = e.path(&format!("w{w}-{batch}"));
                    for i in batch * 10..batch * 10 + 10 {
                        let p = dir.join(key(w, i));
                        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                        std::fs::write(p, version(w, i)).unwrap();
                    }
                    let dir = dir.to_str().unwrap();
                    check(
                        format!("batch {batch}"),
                        e.run(&["cp", "-r", "-q", dir, "local://multi/"]),
                    );
                }
            } else {
                // One process per upload, streamed from stdin (never retried).
                for i in 0..UPLOADS {
                    let url = format!("local://multi/{}", key(w, i));
                    check(
                        format!("upload {i}"),
                        e.run_stdin(&["cp", "-q", "-", &url], &version(w, i)),
                    );
                }
            }
            writing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            failed
        }));
    }
    let mut readers = Vec::new();
    for r in 0..2usize {
        let (e, writing) = (e.clone(), writing.clone());
        readers.push(std::thread::spawn(move || {
            let (mut failed, mut whole) = (Vec::new(), 0);
            let mut n = 0;
            // Bounded: until the writers are done, at most 1000 reads.
            while writing.load(std::sync::atomic::Ordering::SeqCst) > 0 && n < 1_000 {
                let url = format!("local://multi/{}", key(n % WRITERS, n % 10));
                let (out, data) = if n % 2 == 0 {
                    let out = e.run(&["cat", &url]);
                    let data = out.stdout.clone();
                    (out, data)
                } else {
                    let file = e.path(&format!("r{r}.bin"));
                    let _ = std::fs::remove_file(&file);
                    let out = e.run(&["cp", "-q", &url, file.to_str().unwrap()]);
                    let data = std::fs::read(&file).unwrap_or_default();
                    (out, data)
                };
                if out.status.success() {
                    if is_whole_version(&data) {
                        whole += 1;
                    } else {
                        failed.push(format!("{url}: read {} bytes, not one version", data.len()));
                    }
                } else if !(code(&out) == 1 && stderr(&out).contains("key not found")) {
                    failed.push(format!("reading {url}: {}", stderr(&out)));
                }
                n += 1;
            }
            (failed, whole)
        }));
    }
    let mut failed: Vec<String> = writers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut whole_reads = 0;
    for t in readers {
        let (f, whole) = t.join().unwrap();
        failed.extend(f);
        whole_reads += whole;
    }
    assert!(
        failed.is_empty(),
        "{} failures, first: {:#?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(whole_reads > 0, "the readers read something");
    // Every key ends as one whole version, and nothing is left beside them.
    let keys: Vec<String> = e
        .ok(&["ls", "-r", "local://multi"])
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 4 + WRITERS * 5, "{keys:?}");
    for k in &keys {
        let out = e.run(&["cat", &format!("local://multi/{k}")]);
        assert!(is_whole_version(&out.stdout), "{k}");
    }
    let count = |dir: &str| std::fs::read_dir(e.path(dir)).unwrap().count();
    assert_eq!(count("store/blobs"), keys.len(), "one blob per object");
    assert_eq!(count("store/tmp"), 0, "no temp files left");
}

/// Waits (bounded) for something another process does.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("{what} never happened");
}

/// Sizes of the files in `dir`.
fn file_sizes(dir: &Path) -> Vec<u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect()
}

/// Holds the local store's index write lock: a writer then stops between the rename
/// of its blob into blobs/ and its commit, and waits there.
fn hold_index(e: &Env) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(e.path("store/stor.sqlite3")).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    c
}

/// `stor cp - URL` with its stdin kept open. It buffers one 5 MiB part before it
/// streams into the store: write more than that to see a temp file grow.
fn upload_from_pipe(e: &Env, url: &str) -> (std::process::Child, std::process::ChildStdin) {
    let mut child = e
        .cmd(&["--concurrency", "1", "--part-size", "5MiB", "cp", "-", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

const NOTHING_SWEPT: &str =
    "removed 0 temp file(s) (0 bytes) and 0 orphan blob(s) (0 bytes) left by writes";

#[test]
fn killed_local_uploads_leave_nothing_once_reopened_and_cleaned_up() {
    let e = Env::new();
    e.ok(&["mb", "local://crash"]);
    let (tmp, blobs) = (e.path("store/tmp"), e.path("store/blobs"));
    // Killed after its blob was renamed into blobs/, before the commit.
    std::fs::write(e.path("big.bin"), vec![7u8; 3 << 20]).unwrap();
    let hold = hold_index(&e);
    let mut child = e
        .cmd(&["cp", "big.bin", "local://crash/big.bin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the blob in blobs/", || file_sizes(&blobs) == [3 << 20]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(hold);
    // Killed while streaming from stdin into its temp file.
    let (mut child, mut stdin) = upload_from_pipe(&e, "local://crash/stream.bin");
    stdin.write_all(&[1u8; 6 << 20]).unwrap();
    wait_for("bytes in the temp file", || {
        file_sizes(&tmp).iter().any(|&n| n > 0)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    // Leftovers: a temp file, and a blob no object points at.
    assert_eq!(file_sizes(&tmp).len(), 1);
    assert_eq!(file_sizes(&blobs).len(), 1);
    assert_eq!(e.ok(&["ls", "-r", "local://crash"]), "");
    // That `ls` opened the store, which removed the temp file.
    assert_eq!(file_sizes(&tmp).len(), 0, "the open sweeps tmp/");
    assert_eq!(file_sizes(&blobs).len(), 1, "the open does not scan blobs/");
    let out = e.ok(&["cleanup", "local://crash"]);
    assert!(
        out.contains("removed 0 temp file(s) (0 bytes) and 1 orphan blob(s) (3145728 bytes)"),
        "{out}"
    );
    assert_eq!(file_sizes(&blobs).len(), 0);
    assert!(e.ok(&["cleanup", "local://crash"]).contains(NOTHING_SWEPT));
    // The store works as before.
    e.ok(&["cp", "big.bin", "local://crash/big.bin"]);
    assert_eq!(
        e.run(&["cat", "local://crash/big.bin"]).stdout,
        vec![7u8; 3 << 20]
    );
}

#[test]
fn cleanup_in_another_process_never_removes_a_write_in_flight() {
    let e = Env::new();
    e.ok(&["mb", "local://busy"]);
    let (tmp, blobs) = (e.path("store/tmp"), e.path("store/blobs"));
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let (child, mut stdin) = upload_from_pipe(&e, "local://busy/k");
    stdin.write_all(&data[..6 << 20]).unwrap();
    wait_for("bytes in the temp file", || {
        file_sizes(&tmp).iter().any(|&n| n > 0)
    });
    let out = e.ok(&["cleanup", "local://busy"]);
    assert!(out.contains(NOTHING_SWEPT), "{out}");
    // Between the rename into blobs/ and the commit.
    let hold = hold_index(&e);
    stdin.write_all(&data[6 << 20..]).unwrap();
    drop(stdin);
    wait_for("the blob in blobs/", || {
        file_sizes(&blobs) == [8 << 20] && file_sizes(&tmp).is_empty()
    });
    let out = e.ok(&["cleanup", "local://busy"]);
    assert!(out.contains(NOTHING_SWEPT), "{out}");
    drop(hold);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(e.run(&["cat", "local://busy/k"]).stdout == data);
}

/// `mv FILE` (and `mv -r DIR`) removes a file only if it did not change after the
/// upload last read it: here a line is appended while the upload waits for the
/// local store's index, after its last byte was read and checked.
#[test]
fn a_move_keeps_a_file_that_changed_after_its_upload_read_it() {
    let e = Env::new();
    e.ok(&["mb", "local://mvf"]);
    let blobs = e.path("store/blobs");
    std::fs::create_dir_all(e.path("d")).unwrap();
    for (args, file) in [
        (vec!["mv", "f", "local://mvf/f"], "f"),
        (vec!["mv", "-r", "d", "local://mvf/d/"], "d/g"),
    ] {
        std::fs::write(e.path(file), vec![b'x'; 1 << 20]).unwrap();
        let n = file_sizes(&blobs).len();
        let hold = hold_index(&e);
        let child = e
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the blob in blobs/", || file_sizes(&blobs).len() == n + 1);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(e.path(file))
            .unwrap();
        f.write_all(b"IMPORTANT APPENDED LINE\n").unwrap();
        drop(hold);
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("changed after it was uploaded"),
            "{}",
            stderr(&out)
        );
        let kept = std::fs::read(e.path(file)).unwrap();
        assert!(
            kept.ends_with(b"APPENDED LINE\n"),
            "{args:?}: the file is kept"
        );
        // The object holds what was read; a move unchanged goes through.
        e.ok(&args);
        assert!(!e.path(file).exists(), "{args:?}");
    }
}

/// A move between stores deletes its source only if it is still the version it
/// copied: here the source is replaced while the copy waits for the local store's
/// index, and both are kept.
#[test]
fn a_move_between_stores_keeps_a_source_replaced_meanwhile() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    e.ok(&["mb", "local://race"]);
    let blobs = e.path("store/blobs");
    let src = format!("s3://{b}/race/k");
    for (i, dst) in ["local://race/k", "local://race/many/"].iter().enumerate() {
        assert_eq!(
            code(&e.run_stdin(&["cp", "-", &src], &vec![b'o'; 1 << 20])),
            0
        );
        let n = file_sizes(&blobs).len();
        let hold = hold_index(&e);
        let args = match i {
            0 => vec!["mv", src.as_str(), dst],
            _ => vec!["mv", "-r", "--json", "SRC", dst],
        };
        let prefix = format!("s3://{b}/race/");
        let args: Vec<&str> = (args.iter())
            .map(|a| if *a == "SRC" { prefix.as_str() } else { a })
            .collect();
        let child = e
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the copy's blob in blobs/", || {
            file_sizes(&blobs).len() == n + 1
        });
        assert_eq!(code(&e.run_stdin(&["cp", "-", &src], b"NEW")), 0);
        drop(hold);
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("changed during the move"),
            "{}",
            stderr(&out)
        );
        assert_eq!(e.ok(&["cat", &src]), "NEW", "the new version is kept");
        let copy = if i == 0 {
            dst.to_string()
        } else {
            format!("{dst}k")
        };
        assert_eq!(e.run(&["cat", &copy]).stdout, vec![b'o'; 1 << 20]);
    }
}

// ------------------------------------------------------------------ SeaweedFS

#[test]
fn s3_upload_download_list_presign() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let files: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("dir/f{i:02}.txt"), format!("file {i}").into_bytes()))
        .collect();
    for (rel, data) in &files {
        write_tree(e.dir.path(), &[(rel.as_str(), data.as_slice())]);
    }
    e.ok(&["cp", "--recursive", "dir", &format!("s3://{b}/pfx/")]);
    let ls = e.ok(&["ls", &format!("s3://{b}/pfx/")]);
    assert_eq!(ls.lines().count(), 30, "{ls}");
    e.ok(&["cp", "--recursive", &format!("s3://{b}/pfx/"), "back"]);
    for (rel, data) in &files {
        assert_eq!(
            &std::fs::read(e.path(&rel.replacen("dir/", "back/", 1))).unwrap(),
            data
        );
    }
    let stat: serde_json::Value =
        serde_json::from_str(&e.ok(&["stat", "--json", &format!("s3://{b}/pfx/f07.txt")])).unwrap();
    assert_eq!(stat["size"], 6);
    assert_eq!(stat["content_type"], "text/plain");
    // Presign, one and many, and the URL works.
    let u = e.ok(&["presign", &format!("s3://{b}/pfx/f07.txt")]);
    assert!(u.trim().starts_with("http://127.0.0.1"), "{u}");
    let body = ureq::get(u.trim()).call().unwrap().into_string().unwrap();
    assert_eq!(body, "file 7");
    let input: String = (0..20)
        .map(|i| format!("s3://{b}/pfx/f{i:02}.txt\n"))
        .collect();
    let out = e.run_stdin(&["presign", "--stdin"], input.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 20);
    // Wrong credentials: a one-line access-denied error, exit 1, and no secret shown.
    let out = e
        .cmd(&["ls", &format!("s3://{b}/")])
        .env("AWS_SECRET_ACCESS_KEY", "canary-secret-do-not-print")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("canary-secret-do-not-print"));
    // Cleanup aborts stale multipart uploads; sweeping files is the local store's.
    let out = e.ok(&["cleanup", &format!("s3://{b}")]);
    assert_eq!(out, "aborted 0 stale multipart upload(s)\n");
    e.ok(&["rb", "--force", &format!("s3://{b}")]);
}

#[test]
fn s3_stdin_multipart_and_cross_store_copy() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    std::fs::write(
        e.path("cfg.json"),
        r#"{"storageConfig": {"multipart_threshold": 5242880}}"#,
    )
    .unwrap();
    let data: Vec<u8> = (0..(12 << 20) as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let out = e.run_stdin(
        &[
            "--config",
            "cfg.json",
            "--part-size",
            "5MiB",
            "cp",
            "-",
            &format!("s3://{b}/big.bin"),
        ],
        &data,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stat: serde_json::Value =
        serde_json::from_str(&e.ok(&["stat", "--json", &format!("s3://{b}/big.bin")])).unwrap();
    assert_eq!(stat["size"], 12 << 20);
    assert!(
        stat["etag"].as_str().unwrap().ends_with("-3"),
        "multipart: {stat}"
    );
    let out = e.run(&[
        "--part-size",
        "5MiB",
        "cp",
        &format!("s3://{b}/big.bin"),
        "-",
    ]);
    assert!(out.stdout == data, "streamed download differs");
    e.ok(&[
        "--part-size",
        "5MiB",
        "cp",
        &format!("s3://{b}/big.bin"),
        "big.bin",
    ]);
    assert!(std::fs::read(e.path("big.bin")).unwrap() == data);
    // local:// -> s3:// streams between stores and keeps metadata.
    e.ok(&["mb", "local://src"]);
    std::fs::write(e.path("doc.json"), b"{}").unwrap();
    e.ok(&[
        "cp",
        "doc.json",
        "local://src/doc.json",
        "--metadata",
        "origin=local",
    ]);
    e.ok(&[
        "cp",
        "local://src/doc.json",
        &format!("s3://{b}/from-local/doc.json"),
    ]);
    let stat: serde_json::Value =
        serde_json::from_str(&e.ok(&["stat", "--json", &format!("s3://{b}/from-local/doc.json")]))
            .unwrap();
    assert_eq!(stat["metadata"]["origin"], "local");
    assert_eq!(stat["content_type"], "application/json");
    e.ok(&["rb", "--force", &format!("s3://{b}")]);
}

/// The emulators' environment, as each cloud's own tools read it, or `None` (skip).
fn cloud_env() -> Option<Vec<(&'static str, String)>> {
    let var = |v: &str| std::env::var(v).ok().filter(|x| !x.is_empty());
    let (Some(gcs), Some(az)) = (var("STOR_TEST_GCS"), var("STOR_TEST_AZURITE")) else {
        if std::env::var("STOR_TEST_REQUIRE_SERVERS").as_deref() == Ok("1") {
            panic!("STOR_TEST_GCS/STOR_TEST_AZURITE not set but STOR_TEST_REQUIRE_SERVERS=1");
        }
        return None;
    };
    // Azurite's well-known development account (public, in Azure's docs).
    let key =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    Some(vec![
        ("STORAGE_EMULATOR_HOST", gcs),
        (
            "AZURE_STORAGE_CONNECTION_STRING",
            format!("AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint={az}"),
        ),
    ])
}

/// local → s3 → gs → az → local with only each ecosystem's usual environment
/// variables: byte-identical, multipart on every hop, metadata and Content-Type kept.
#[test]
fn cross_store_copies_through_s3_gcs_and_azure() {
    let Some(e) = Env::with_s3() else { return };
    let Some(cloud) = cloud_env() else { return };
    let run = |args: &[&str]| {
        let mut c = e.cmd(args);
        for (k, v) in &cloud {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "stor {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let b = bucket();
    for scheme in ["s3", "gs", "az"] {
        run(&["mb", &format!("{scheme}://{b}")]);
    }
    run(&["mb", "local://src"]);
    run(&["mb", "local://dst"]);
    std::fs::write(
        e.path("cfg.json"),
        r#"{"storageConfig": {"multipart_threshold": 5242880}}"#,
    )
    .unwrap();
    let data: Vec<u8> = (0..(11 << 20) as u32 + 7)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(e.path("big.json"), &data).unwrap();
    let hops = [
        "local://src/x/big.json".to_owned(),
        format!("s3://{b}/x/big.json"),
        format!("gs://{b}/x/big.json"),
        format!("az://{b}/x/big.json"),
        "local://dst/x/big.json".to_owned(),
    ];
    let cfg = ["--config", "cfg.json", "--part-size", "5MiB"];
    run(&[
        &cfg[..],
        &["cp", "big.json", &hops[0], "--metadata", "origin=crawler"],
    ]
    .concat());
    for pair in hops.windows(2) {
        run(&[&cfg[..], &["cp", &pair[0], &pair[1]]].concat());
        let stat: serde_json::Value =
            serde_json::from_str(&run(&["stat", "--json", &pair[1]])).unwrap();
        assert_eq!(stat["size"], data.len(), "{}: {stat}", pair[1]);
        assert_eq!(stat["metadata"]["origin"], "crawler", "{}: {stat}", pair[1]);
        assert_eq!(
            stat["content_type"], "application/json",
            "{}: {stat}",
            pair[1]
        );
    }
    run(&["cp", &hops[4], "back.json"]);
    assert!(
        std::fs::read(e.path("back.json")).unwrap() == data,
        "bytes differ"
    );
    // Azure SAS URLs from `stor presign`, used by curl against Azurite (which checks
    // the signature): a PUT that makes a block blob, a GET of it, a tampered GET.
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    };
    let az_obj = format!("az://{b}/shared/report.txt");
    let put = run(&[
        "presign",
        "--method",
        "put",
        "--content-type",
        "text/plain",
        &az_obj,
    ]);
    let (status, body) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: text/plain",
        "-H",
        "x-ms-blob-type: BlockBlob",
        "--data-binary",
        "from curl",
        put.trim(),
    ]);
    assert_eq!(status, "201", "{body}");
    let get = run(&["presign", &az_obj]);
    assert_eq!(
        curl(&[get.trim()]),
        ("200".to_owned(), "from curl".to_owned())
    );
    let tampered = get.trim().replace("sp=r&", "sp=rw&");
    assert_ne!(tampered, get.trim());
    assert_eq!(curl(&[&tampered]).0, "403", "a tampered SAS was accepted");
    // Listing, streaming and removal speak the new schemes too.
    for scheme in ["gs", "az"] {
        let listed = run(&["ls", "-r", &format!("{scheme}://{b}/")]);
        assert!(listed.contains("x/big.json"), "{scheme}: {listed}");
        let out = e.cmd(&["cat", &format!("{scheme}://{b}/x/big.json")]);
        let mut out = out;
        for (k, v) in &cloud {
            out.env(k, v);
        }
        assert!(
            out.output().unwrap().stdout == data,
            "{scheme}: cat differs"
        );
        run(&["rb", "--force", &format!("{scheme}://{b}")]);
    }
    run(&["rb", "--force", &format!("s3://{b}")]);
    // Each store's own bucket rules, before any request: exit 2.
    let out = e.run(&["ls", "az://my_container/"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid Azure container name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cat_du_config_show_and_completions() {
    let e = Env::new();
    e.ok(&["mb", "local://misc"]);
    std::fs::write(e.path("a"), b"12345").unwrap();
    std::fs::write(e.path("b"), b"123").unwrap();
    e.ok(&["cp", "a", "local://misc/p/a"]);
    e.ok(&["cp", "b", "local://misc/p/b"]);
    e.ok(&["cp", "b", "local://misc/q/b"]);
    assert_eq!(e.ok(&["cat", "local://misc/p/a"]), "12345");
    let du: serde_json::Value =
        serde_json::from_str(&e.ok(&["du", "--json", "local://misc/p/"])).unwrap();
    assert_eq!(
        (du["objects"].as_u64(), du["bytes"].as_u64()),
        (Some(2), Some(8))
    );
    assert!(e
        .ok(&["du", "local://misc"])
        .starts_with("11 bytes in 3 objects"));
    // Secrets masked; flags and environment win over the file.
    std::fs::write(
        e.path("cfg.json"),
        r#"{"storageConfig": {"aws_access_key_id": "AKIAFILEKEY", "aws_secret_access_key": "file-secret-canary", "region_name": "eu-west-1", "max_concurrency": 4}}"#,
    )
    .unwrap();
    let shown = e.ok(&[
        "--config",
        "cfg.json",
        "--region",
        "us-west-2",
        "config",
        "show",
    ]);
    assert!(
        !shown.contains("file-secret-canary") && !shown.contains("AKIAFILEKEY"),
        "{shown}"
    );
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["storageConfig"]["region_name"], "us-west-2");
    assert_eq!(v["storageConfig"]["max_concurrency"], 4);
    assert_eq!(v["storageConfig"]["aws_secret_access_key"], "***");
    for shell in ["bash", "zsh", "fish"] {
        assert!(e.ok(&["completions", shell]).contains("presign"), "{shell}");
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command line on a pseudo-terminal (script(1)); its output is the
/// terminal's.
fn on_pty(env: &Env, line: &str) -> Output {
    Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .current_dir(env.dir.path())
        .env("STOR_LOCAL_ROOT", env.path("store"))
        .env("HOME", env.dir.path())
        .env("TERM", "xterm")
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .unwrap()
}

#[test]
fn progress_bar_on_a_terminal_and_none_in_a_pipe() {
    let env = Env::new();
    let data = vec![7u8; 40 << 20];
    std::fs::create_dir_all(env.path("up")).unwrap();
    for i in 0..4 {
        std::fs::write(env.path(&format!("up/f{i}.bin")), &data).unwrap();
    }
    assert_eq!(code(&env.run(&["mb", "local://bars"])), 0);
    // On a pseudo-terminal (script(1) gives the command one): the bar is drawn.
    let bin = env!("CARGO_BIN_EXE_stor");
    let out = on_pty(&env, &format!("{bin} cp -r up local://bars/tty/"));
    let tty = stdout(&out);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("/4 files"),
        "a bar with files done/total: {tty:?}"
    );
    assert!(tty.contains("Done: 4 objects"), "summary: {tty:?}");
    // In a pipe: no bar, the per-file lines on stdout, the summary on stderr.
    let piped = env.run(&["cp", "-r", "up", "local://bars/pipe/"]);
    assert_eq!(code(&piped), 0);
    let (o, e) = (stdout(&piped), stderr(&piped));
    assert!(
        !e.contains("files") && !o.contains("files"),
        "no bar: {e:?} {o:?}"
    );
    assert!(!e.contains('\u{1b}'), "no terminal escapes: {e:?}");
    assert_eq!(
        o.lines().filter(|l| l.starts_with("upload: ")).count(),
        4,
        "{o}"
    );
    assert!(e.contains("Done: 4 objects, 160.0 MiB"), "{e}");
    // --quiet: neither.
    let quiet = env.run(&["-q", "cp", "-r", "up", "local://bars/quiet/"]);
    assert_eq!(code(&quiet), 0);
    assert!(stdout(&quiet).is_empty() && stderr(&quiet).is_empty());
    // --json on a terminal: no bar, one object per line, then the summary.
    let out = on_pty(&env, &format!("{bin} cp -r --json up local://bars/json/"));
    let text = stdout(&out);
    assert!(!text.contains("/4 files"), "no bar with --json: {text:?}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[..4]
        .iter()
        .all(|v| v["op"] == "upload" && v["bytes"] == 40 << 20));
    assert_eq!(lines[4]["summary"]["objects"], 4);
    assert_eq!(lines[4]["summary"]["failures"], 0);
}

/// The sizes a progress bar drew just before `marker` (`/64.00 MiB`, ` read,`).
fn sizes_before(tty: &str, marker: &str) -> Vec<String> {
    tty.split(['\r', '\n'])
        .flat_map(|frame| frame.match_indices(marker).map(|(i, _)| &frame[..i]))
        .map(|before| {
            let t: Vec<&str> = before.split_whitespace().rev().take(2).collect();
            format!("{} {}", t.get(1).unwrap_or(&""), t.first().unwrap_or(&""))
        })
        .collect()
}

/// Regression: `cp FILE URL` and `cp URL FILE` showed no bar; batch bars moved only
/// at their 200 ms ticks. Each progress update now draws (at most 20 a second,
/// the first ones at once), so even a fast transfer shows sizes between none and
/// all.
#[test]
fn single_transfers_show_a_bar_that_moves_with_the_bytes() {
    let env = Env::new();
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(env.path("big.bin"), &data).unwrap();
    assert_eq!(code(&env.run(&["mb", "local://one"])), 0);
    let bin = env!("CARGO_BIN_EXE_stor");
    for (line, marker) in [
        (
            format!("{bin} cp big.bin local://one/big.bin"),
            "/64.00 MiB",
        ),
        (
            format!("{bin} cp local://one/big.bin back.bin"),
            "/64.00 MiB",
        ),
        // stdin: the bytes read so far, its length unknown.
        (
            format!("cat big.bin | {bin} cp - local://one/stdin.bin"),
            " read,",
        ),
    ] {
        let out = on_pty(&env, &line);
        let tty = stdout(&out);
        assert!(out.status.success(), "{line}: {tty}");
        let shown = sizes_before(&tty, marker);
        assert!(
            shown.iter().any(|s| s != "0 B" && s != "64.00 MiB"),
            "{line}: no size between 0 and 64 MiB drawn: {shown:?} {tty:?}"
        );
    }
    assert!(std::fs::read(env.path("back.bin")).unwrap() == data);
    assert!(env.run(&["cat", "local://one/stdin.bin"]).stdout == data);
}

#[test]
fn sync_copies_only_what_changed_and_deletes_extras() {
    let env = Env::new();
    write_tree(
        &env.path("site"),
        &[
            ("index.html", b"<h1>hi</h1>"),
            ("css/a.css", b"a{}"),
            ("tmp/x", b"x"),
        ],
    );
    assert_eq!(code(&env.run(&["mb", "local://web"])), 0);
    let first = env.run(&["sync", "site", "local://web/www", "--exclude", "tmp/*"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(
        stdout(&first).matches("upload: ").count(),
        2,
        "{}",
        stdout(&first)
    );
    // Nothing changed: nothing moves.
    let again = env.run(&["sync", "site", "local://web/www", "--exclude", "tmp/*"]);
    assert_eq!(
        stdout(&again).matches("upload: ").count(),
        0,
        "{}",
        stdout(&again)
    );
    // Same size, new content: by time it is newer; by checksum it differs.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(env.path("site/css/a.css"), b"b{}").unwrap();
    let dry = env.run(&["sync", "--dry-run", "--checksum", "site", "local://web/www"]);
    let d = stdout(&dry);
    assert!(d.contains("(dryrun) upload: site/css/a.css"), "{d}");
    assert!(d.contains("(dryrun) upload: site/tmp/x"), "{d}");
    assert!(
        !d.contains("index.html"),
        "unchanged content is skipped: {d}"
    );
    let by_sum = env.run(&[
        "sync",
        "--checksum",
        "site",
        "local://web/www",
        "--exclude",
        "tmp/*",
    ]);
    assert_eq!(
        stdout(&by_sum).matches("upload: ").count(),
        1,
        "{}",
        stdout(&by_sum)
    );
    // --delete removes what the source no longer has.
    std::fs::remove_file(env.path("site/index.html")).unwrap();
    let del = env.run(&[
        "sync",
        "--delete",
        "site",
        "local://web/www",
        "--exclude",
        "tmp/*",
    ]);
    assert!(
        stdout(&del).contains("delete: local://web/www/index.html"),
        "{}",
        stdout(&del)
    );
    let ls = stdout(&env.run(&["ls", "-r", "local://web/www/"]));
    assert!(
        !ls.contains("index.html") && ls.contains("css/a.css"),
        "{ls}"
    );
    // Down: a prefix to a directory, then nothing to do, then --delete locally.
    let down = env.run(&["sync", "local://web/www", "copy"]);
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    assert_eq!(std::fs::read(env.path("copy/css/a.css")).unwrap(), b"b{}");
    let again = env.run(&["sync", "local://web/www", "copy"]);
    assert_eq!(
        stdout(&again).matches("download: ").count(),
        0,
        "{}",
        stdout(&again)
    );
    std::fs::write(env.path("copy/stray.txt"), b"s").unwrap();
    let del = env.run(&["sync", "--delete", "local://web/www", "copy"]);
    assert!(stdout(&del).contains("stray.txt"), "{}", stdout(&del));
    assert!(!env.path("copy/stray.txt").exists());
}

#[test]
fn include_exclude_and_wildcards_select_objects() {
    let env = Env::new();
    write_tree(
        &env.path("logs"),
        &[
            ("a.json", b"1"),
            ("b.json", b"2"),
            ("c.txt", b"3"),
            ("old/d.json", b"4"),
        ],
    );
    assert_eq!(code(&env.run(&["mb", "local://lgs"])), 0);
    let up = env.run(&[
        "cp",
        "-r",
        "logs",
        "local://lgs/l/",
        "--include",
        "*.json",
        "--exclude",
        "old/*",
    ]);
    assert_eq!(code(&up), 0, "{}", stderr(&up));
    let ls = stdout(&env.run(&["ls", "-r", "local://lgs/l/"]));
    assert!(ls.contains("l/a.json") && ls.contains("l/b.json"), "{ls}");
    assert!(!ls.contains("c.txt") && !ls.contains("d.json"), "{ls}");
    // A wildcard source URL.
    assert_eq!(code(&env.run(&["cp", "-r", "logs", "local://lgs/all/"])), 0);
    let got = env.run(&["cp", "local://lgs/all/*.txt", "out/"]);
    assert_eq!(code(&got), 0, "{}", stderr(&got));
    assert_eq!(std::fs::read(env.path("out/c.txt")).unwrap(), b"3");
    assert!(!env.path("out/a.json").exists());
    let copy = env.run(&["cp", "local://lgs/all/old/*", "local://lgs/moved/"]);
    assert_eq!(code(&copy), 0, "{}", stderr(&copy));
    let ls = stdout(&env.run(&["ls", "-r", "local://lgs/moved/"]));
    assert!(ls.contains("moved/d.json"), "{ls}");
}

#[test]
fn man_page_profiles_and_config_permissions() {
    let env = Env::new();
    let man = env.run(&["man"]);
    assert_eq!(code(&man), 0);
    assert!(
        stdout(&man).starts_with(".ie") || stdout(&man).contains(".TH"),
        "roff"
    );
    assert!(stdout(&man).contains("sync"));
    let cfg = env.path("stor.json");
    std::fs::write(
        &cfg,
        r#"{"profiles": {
            "default": {"storage_type": "local"},
            "minio": {"storage_type": "s3", "endpoint_url": "http://127.0.0.1:9",
                      "aws_access_key_id": "AKIAPROFILE", "aws_secret_access_key": "hush"}}}"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let show = env.run(&[
        "--config",
        "stor.json",
        "--profile",
        "minio",
        "config",
        "show",
    ]);
    assert_eq!(code(&show), 0, "{}", stderr(&show));
    let o = stdout(&show);
    assert!(
        o.contains("http://127.0.0.1:9") && !o.contains("hush"),
        "{o}"
    );
    assert!(
        stderr(&show).contains("chmod 600"),
        "warns: {}",
        stderr(&show)
    );
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let show = env.run(&[
        "--config",
        "stor.json",
        "--profile",
        "minio",
        "config",
        "show",
    ]);
    assert!(!stderr(&show).contains("chmod"), "{}", stderr(&show));
    let missing = env.run(&[
        "--config",
        "stor.json",
        "--profile",
        "prod",
        "config",
        "show",
    ]);
    assert_eq!(code(&missing), 2);
    assert!(
        stderr(&missing).contains("default, minio"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn doctor_checks_and_says_what_to_fix() {
    let Some(env) = Env::with_s3() else { return };
    let b = bucket();
    assert_eq!(code(&env.run(&["mb", &format!("s3://{b}")])), 0);
    let ok = env.run(&["doctor", &format!("s3://{b}")]);
    let o = stdout(&ok);
    assert_eq!(code(&ok), 0, "{o}{}", stderr(&ok));
    for line in [
        "ok    endpoint reachable",
        "ok    clock skew",
        "ok    write an object",
        "ok    read it back",
        "ok    feature: multipart uploads",
        "ok    feature: server-side copy",
        // SeaweedFS keeps them; the endpoint is custom, so they are off until asked.
        "ok    feature: S3-native checksums (kept here; set \"native_checksums\": true",
    ] {
        assert!(o.contains(line), "{line:?} in {o}");
    }
    assert!(
        !o.contains(".stor-doctor"),
        "probe keys are not printed: {o}"
    );
    let bad = env
        .cmd(&["doctor", &format!("s3://{b}")])
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        .output()
        .unwrap();
    assert_eq!(code(&bad), 1);
    let o = stdout(&bad);
    assert!(
        o.contains("FAIL") && o.contains("fix: check the credentials"),
        "{o}"
    );
    assert!(!o.contains("wrong-secret") && !stderr(&bad).contains("wrong-secret"));
}

/// Runs `stor ARGS` inside a private mount namespace where `dir` is a fresh tmpfs
/// mounted with `opts`; returns the output and what `dir` holds afterwards.
fn in_tmpfs(env: &Env, dir: &Path, opts: &str, args: &[&str]) -> (Output, String) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"mount -t tmpfs -o "$1" tmpfs "$2" || exit 99
bin=$3; dir=$2; shift 3
"$bin" "$@"; rc=$?
echo "LEFT:$(ls -A "$dir" | tr '\n' ' ')" >&2
exit $rc"#;
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh", opts, dir.to_str().unwrap()])
        .arg(env!("CARGO_BIN_EXE_stor"))
        .args(args)
        .current_dir(env.dir.path())
        .env("STOR_LOCAL_ROOT", env.path("store"))
        .env("HOME", env.dir.path())
        .env("XDG_CONFIG_HOME", env.path("config"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_ne!(code(&out), 99, "could not mount a tmpfs: {err}");
    let left = err
        .lines()
        .find_map(|l| l.strip_prefix("LEFT:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    (out, left)
}

#[test]
fn disk_full_and_read_only_targets_fail_typed_and_leave_nothing() {
    let env = Env::new();
    assert_eq!(code(&env.run(&["mb", "local://dsk"])), 0);
    // 3 MiB fills the disk while writing; 12 MiB is refused up front (its blocks
    // are reserved before any byte is fetched).
    for name in ["big.bin", "huge.bin"] {
        let len = if name == "big.bin" { 3 << 20 } else { 12 << 20 };
        std::fs::write(env.path(name), vec![1u8; len]).unwrap();
        let dst = format!("local://dsk/{name}");
        assert_eq!(code(&env.run(&["cp", name, &dst])), 0);
    }
    let target = env.path("mnt");
    // A 1 MiB filesystem (the downloads run out of space), then a read-only one.
    for (opts, message, name) in [
        ("size=1m", "No space left on device", "big.bin"),
        ("size=1m", "No space left on device", "huge.bin"),
        ("ro", "Read-only file system", "big.bin"),
    ] {
        let dest = target.join(name);
        let src = format!("local://dsk/{name}");
        let args = ["cp", src.as_str(), dest.to_str().unwrap()];
        let (out, left) = in_tmpfs(&env, &target, opts, &args);
        let err = stderr(&out);
        assert_eq!(code(&out), 1, "{opts}: {err}");
        assert!(err.contains(message), "{opts}: {err}");
        if name == "huge.bin" {
            assert!(err.contains("allocating"), "refused before fetching: {err}");
        }
        assert!(!err.contains("attempts"), "{opts}: not retried: {err}");
        assert_eq!(left, "", "{opts}: no temp or partial file left: {err}");
    }
}

#[test]
fn permission_denied_and_killed_downloads_leave_no_destination() {
    let Some(env) = Env::with_s3() else { return };
    let b = bucket();
    assert_eq!(code(&env.run(&["mb", &format!("s3://{b}")])), 0);
    std::fs::write(env.path("obj.bin"), vec![2u8; 64 << 20]).unwrap();
    let put = env.run(&["cp", "obj.bin", &format!("s3://{b}/obj.bin")]);
    assert_eq!(code(&put), 0, "{}", stderr(&put));
    // A directory only root may write, and stor run as nobody.
    let locked = env.path("locked");
    std::fs::create_dir_all(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    // stor's environment (endpoint, credentials), run through setpriv as nobody.
    let c = env.cmd(&[]);
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = c
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_stor"))
        .args(["cp", &format!("s3://{b}/obj.bin")])
        .arg(locked.join("obj.bin"))
        .envs(envs)
        .env("HOME", "/tmp")
        .env("XDG_CONFIG_HOME", "/tmp/stor-nobody-config")
        .current_dir("/tmp")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!err.contains("attempts"), "not retried: {err}");
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);

    // Killed mid-download: the destination never appears (only a temp file may).
    let dest = env.path("killed.bin");
    let mut child = env
        .cmd(&[
            "--concurrency",
            "1",
            "cp",
            &format!("s3://{b}/obj.bin"),
            "killed.bin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = (0..400).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::read_dir(env.dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".stor-part")
        })
    });
    child.kill().unwrap();
    let _ = child.wait();
    eprintln!("killed mid-download: {started}");
    if started {
        assert!(!dest.exists(), "a killed download left its destination");
    } else {
        // Finished before we saw it: then it must be whole.
        assert_eq!(
            std::fs::metadata(&dest)
                .map(|m| m.len())
                .unwrap_or(64 << 20),
            64 << 20
        );
    }
}

// ------------------------------------------------------------------ data safety at the edges

/// Both stores a test should see: the local store, and SeaweedFS when configured.
fn stores() -> Vec<(Env, String)> {
    let mut v = vec![(Env::new(), "local://".to_owned())];
    if let Some(e) = Env::with_s3() {
        v.push((e, "s3://".to_owned()));
    }
    v
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {p:?}");
}

extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

/// cp(1) semantics for destinations that are not plain files: a symlink is
/// written through (and stays a link), a FIFO or device is streamed into (never
/// replaced), a directory is refused; mv never feeds a FIFO and then deletes.
#[test]
fn destinations_that_are_not_regular_files() {
    for (e, scheme) in stores() {
        let b = format!("{scheme}{}", bucket());
        e.ok(&["mb", &b]);
        std::fs::write(e.path("src.txt"), b"the object").unwrap();
        let obj = format!("{b}/obj.txt");
        e.ok(&["cp", "src.txt", &obj]);
        // Through a symlink (and a dangling one) to its target.
        std::fs::write(e.path("target.txt"), b"old").unwrap();
        std::os::unix::fs::symlink("target.txt", e.path("link")).unwrap();
        std::os::unix::fs::symlink("made.txt", e.path("dangling")).unwrap();
        e.ok(&["cp", &obj, "link"]);
        e.ok(&["cp", &obj, "dangling"]);
        assert!(std::fs::symlink_metadata(e.path("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(e.path("target.txt")).unwrap(), b"the object");
        assert_eq!(std::fs::read(e.path("made.txt")).unwrap(), b"the object");
        // Into a device.
        e.ok(&["cp", &obj, "/dev/null"]);
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        // Into a FIFO, whose reader gets the bytes; the FIFO stays a FIFO.
        let fifo = e.path("fifo");
        mkfifo(&fifo);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        e.ok(&["cp", &obj, "fifo"]);
        assert_eq!(reader.join().unwrap(), b"the object");
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        // mv never streams into a FIFO and then deletes the only copy.
        let out = e.run(&["mv", &obj, "fifo"]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        e.ok(&["stat", &obj]);
        // No temp files left anywhere.
        let stray: Vec<_> = std::fs::read_dir(e.dir.path())
            .unwrap()
            .filter_map(|d| d.ok())
            .filter(|d| d.file_name().to_string_lossy().ends_with(".stor-part"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }
}

/// A recursive download writes only inside its directory, whatever is planted there:
/// a symlinked directory, a symlinked file and a FIFO are refused per file (exit 1),
/// nothing outside changes, and the other files arrive.
#[test]
fn recursive_downloads_never_write_outside_the_target() {
    for (e, scheme) in stores() {
        let b = format!("{scheme}{}", bucket());
        e.ok(&["mb", &b]);
        write_tree(
            &e.path("tree"),
            &[
                ("etc/passwd", b"root:x:0:0"),
                ("file-link", b"through a file link"),
                ("pipe", b"into a fifo"),
                ("fine/ok.txt", b"fine"),
            ],
        );
        e.ok(&["cp", "-r", "tree", &format!("{b}/p/")]);
        let outside = e.path("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("passwd"), b"precious").unwrap();
        std::fs::write(outside.join("victim"), b"precious").unwrap();
        for cmd in ["cp", "sync"] {
            let dest = e.path(&format!("dest-{cmd}"));
            std::fs::create_dir(&dest).unwrap();
            std::os::unix::fs::symlink(&outside, dest.join("etc")).unwrap();
            std::os::unix::fs::symlink(outside.join("victim"), dest.join("file-link")).unwrap();
            mkfifo(&dest.join("pipe"));
            let src = format!("{b}/p");
            let dest_s = dest.to_str().unwrap();
            let out = match cmd {
                "cp" => e.run(&["cp", "-r", &src, dest_s]),
                _ => e.run(&["sync", &src, dest_s]),
            };
            assert_eq!(code(&out), 1, "{cmd}: {}", stderr(&out));
            assert_eq!(std::fs::read(outside.join("passwd")).unwrap(), b"precious");
            assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"precious");
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 2, "{cmd}");
            assert_eq!(std::fs::read(dest.join("fine/ok.txt")).unwrap(), b"fine");
            use std::os::unix::fs::FileTypeExt;
            assert!(std::fs::symlink_metadata(dest.join("pipe"))
                .unwrap()
                .file_type()
                .is_fifo());
            let err = stderr(&out);
            assert!(
                err.contains("symlink") && (err.contains("FIFO") || err.contains("special file")),
                "{cmd}: {err}"
            );
        }
    }
}

/// Local paths and keys map one to one or the transfer refuses: names that are not
/// UTF-8 fail per file (never merged into one key); keys that would land on one path
/// fail naming both; nothing is overwritten.
#[test]
fn paths_and_keys_map_one_to_one_or_fail_clearly() {
    use std::os::unix::ffi::OsStrExt;
    for (e, scheme) in stores() {
        let b = format!("{scheme}{}", bucket());
        e.ok(&["mb", &b]);
        let dir = e.path("names");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("plain.txt"), b"plain").unwrap();
        for (i, raw) in [&b"caf\xe9.txt"[..], &b"caf\xe8.txt"[..]]
            .iter()
            .enumerate()
        {
            std::fs::write(dir.join(std::ffi::OsStr::from_bytes(raw)), [i as u8]).unwrap();
        }
        let out = e.run(&["cp", "-r", "names", &format!("{b}/n/")]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert_eq!(
            stderr(&out).matches("not valid UTF-8").count(),
            2,
            "{}",
            stderr(&out)
        );
        let listed = e.ok(&["ls", "-r", &format!("{b}/n")]);
        assert_eq!(listed.lines().count(), 1, "only plain.txt: {listed}");
        // Keys that fold onto one path.
        if scheme == "local://" {
            for (k, v) in [
                ("k/a/b", "1"),
                ("k/a//b", "2"),
                ("k/a/./b", "3"),
                ("k/x", "4"),
                ("k/x/y", "5"),
            ] {
                std::fs::write(e.path("v"), v).unwrap();
                e.ok(&["cp", "v", &format!("{b}/{k}")]);
            }
            let out = e.run(&["cp", "-r", &format!("{b}/k"), "out"]);
            assert_eq!(code(&out), 1, "{}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains("\"k/a//b\" and \"k/a/b\""), "{err}");
            assert!(err.contains("\"k/a/./b\" and \"k/a/b\""), "{err}");
            assert!(
                err.contains("\"k/x\"") && err.contains("\"k/x/y\""),
                "{err}"
            );
            assert_eq!(std::fs::read(e.path("out/a/b")).unwrap(), b"1");
            assert!(!e.path("out/x").exists());
        }
    }
}

/// One rule for every recursive command: a URL names a directory, so siblings that
/// only share a name prefix are never touched.
#[test]
fn recursive_commands_mean_the_same_tree() {
    let e = Env::new();
    e.ok(&["mb", "local://rules"]);
    std::fs::write(e.path("f"), b"12345").unwrap();
    for k in ["logs/a", "logs/sub/b", "logs-archive/c", "logsX", "logs"] {
        e.ok(&["cp", "f", &format!("local://rules/{k}")]);
    }
    for url in ["local://rules/logs", "local://rules/logs/"] {
        let du = e.ok(&["du", "--json", url]);
        let v: serde_json::Value = serde_json::from_str(&du).unwrap();
        assert_eq!(v["objects"], 2, "du {url}: {du}");
        let ls = e.ok(&["ls", "-r", url]);
        assert_eq!(ls.lines().count(), 2, "ls -r {url}: {ls}");
        let dry = e.ok(&["rm", "-r", "--dry-run", url]);
        assert_eq!(dry.lines().count(), 2, "rm -r {url}: {dry}");
        let cp = e.ok(&["cp", "-r", "--dry-run", url, "out"]);
        assert_eq!(cp.lines().count(), 2, "cp -r {url}: {cp}");
    }
    e.ok(&["rm", "-r", "local://rules/logs"]);
    let left = e.ok(&["ls", "-r", "local://rules"]);
    for k in ["logs-archive/c", "logsX", "logs"] {
        assert!(
            left.lines().any(|l| l.ends_with(&format!(" {k}"))),
            "{k} kept: {left}"
        );
    }
    assert!(
        !left.contains("logs/a") && !left.contains("logs/sub/b"),
        "{left}"
    );
}

/// A truncated stream never commits: `--expected-size` fails a short or long
/// stdin and stores nothing (the previous object stays); the right size goes in.
#[test]
fn expected_size_stops_a_truncated_stream() {
    for (e, scheme) in stores() {
        let b = format!("{scheme}{}", bucket());
        e.ok(&["mb", &b]);
        let obj = format!("{b}/stream.bin");
        e.run_stdin(&["cp", "-", &obj], b"previous");
        for (len, ok) in [(100usize, false), (300, false), (200, true)] {
            let out = e.run_stdin(
                &["cp", "--expected-size", "200", "-", &obj],
                &vec![7u8; len],
            );
            assert_eq!(out.status.success(), ok, "{len}: {}", stderr(&out));
            let now = e.ok(&["cat", &obj]);
            if ok {
                assert_eq!(now.len(), 200);
            } else {
                assert_eq!(now, "previous", "{len}");
                assert!(stderr(&out).contains("expected"), "{}", stderr(&out));
            }
        }
    }
}

/// Bad input is exit 2 with what was wrong; an operation that failed is 1.
#[test]
fn exit_codes_for_bad_input_and_empty_matches() {
    let e = Env::new();
    e.ok(&["mb", "local://codes"]);
    std::fs::write(e.path("f"), b"x").unwrap();
    e.ok(&["cp", "f", "local://codes/k"]);
    for (args, want, says) in [
        (
            &["cp", "no-such-file", "local://codes/k2"][..],
            2,
            "no such file",
        ),
        // A dry run refuses what the real run would.
        (
            &["cp", "--dry-run", "no-such-file", "local://codes/k2"][..],
            2,
            "no such file",
        ),
        (
            &["mv", "--dry-run", "no-such-file", "local://codes/k2"][..],
            2,
            "no such file",
        ),
        (&["cp", "local://codes/k", ""], 2, "empty"),
        (
            &["mv", "local://codes/k", "local://codes/k"],
            2,
            "onto itself",
        ),
        (
            &["cp", "local://codes/nothing*", "out/"],
            1,
            "no objects match",
        ),
        (
            &["mv", "local://codes/nothing*", "local://codes/else/"],
            1,
            "no objects match",
        ),
    ] {
        let out = e.run(args);
        assert_eq!(code(&out), want, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    e.ok(&["stat", "local://codes/k"]);
    // mv onto itself with new headers replaces them in place.
    e.ok(&[
        "mv",
        "local://codes/k",
        "local://codes/k",
        "--content-type",
        "text/x-kept",
    ]);
    let stat = e.ok(&["stat", "--json", "local://codes/k"]);
    assert!(stat.contains("text/x-kept"), "{stat}");
    assert_eq!(e.ok(&["cat", "local://codes/k"]), "x");
}

/// Refusals say what was wrong, name what they refused, and come before any work:
/// a bad glob is bad input; a key a recursive download refuses is named; a symlink
/// loop is said before a byte is fetched.
#[test]
fn refusals_name_what_was_wrong() {
    let e = Env::new();
    e.ok(&["mb", "local://say"]);
    std::fs::write(e.path("f"), b"x").unwrap();
    for k in ["p/ok", "p/./dot", "p/a//b"] {
        e.ok(&["cp", "f", &format!("local://say/{k}")]);
    }
    for args in [
        &["rm", "--dry-run", "local://say/p/[ab"][..],
        &["cp", "-r", "--include", "[", "local://say/p", "out/"],
        &["cp", "-r", "--exclude", "a{", "f", "local://say/q/"],
    ] {
        let out = e.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("bad glob"), "{}", stderr(&out));
    }
    let out = e.run(&["cp", "-r", "local://say/p", "out/"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    for k in ["p/./dot", "p/a//b"] {
        assert!(
            err.contains(&format!("download local://say/{k} failed")),
            "{k}: {err}"
        );
    }
    assert!(e.path("out/ok").is_file());
    // A symlink loop, at once (the object is big enough to notice a download).
    std::fs::write(e.path("big"), vec![1u8; 4 << 20]).unwrap();
    e.ok(&["cp", "big", "local://say/big"]);
    std::os::unix::fs::symlink("l2", e.path("l1")).unwrap();
    std::os::unix::fs::symlink("l1", e.path("l2")).unwrap();
    let out = e.run(&["cp", "local://say/big", "l1"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("l1 is a symlink loop"), "{err}");
    assert!(!err.contains("during the download"), "{err}");
}

/// Keys with control characters print escaped; logs carry no colour codes off a
/// terminal; a recursive copy reports what it skipped.
#[test]
fn output_is_safe_for_terminals_and_reports_skips() {
    let e = Env::new();
    e.ok(&["mb", "local://term"]);
    std::fs::write(e.path("f"), b"x").unwrap();
    e.ok(&["cp", "f", "local://term/evil\n\u{1b}[31mred"]);
    let ls = e.ok(&["ls", "local://term"]);
    assert_eq!(ls.lines().count(), 1, "{ls:?}");
    assert!(
        ls.contains("evil\\n\\x1b[31mred") && !ls.contains('\u{1b}'),
        "{ls:?}"
    );
    let out = e.run(&["-vv", "ls", "local://term"]);
    assert!(!stderr(&out).contains('\u{1b}'), "{:?}", stderr(&out));
    // Special entries of a tree are counted and named, not silently dropped.
    write_tree(&e.path("t"), &[("a.txt", b"a")]);
    mkfifo(&e.path("t/pipe"));
    std::os::unix::fs::symlink("nowhere", e.path("t/dangling")).unwrap();
    std::os::unix::fs::symlink("loop2", e.path("t/loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", e.path("t/loop2")).unwrap();
    let out = e.run(&["cp", "-r", "t", "local://term/t/"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    for what in ["FIFO", "dangling symlink", "symlink loop", "4 skipped"] {
        assert!(err.contains(what), "{what}: {err}");
    }
}

/// Temp files of downloads are never uploaded, and a later download into the same
/// directory removes stale ones nobody holds.
#[test]
fn download_temp_files_are_never_uploaded_and_are_swept() {
    let e = Env::new();
    e.ok(&["mb", "local://tmps"]);
    write_tree(&e.path("d"), &[("real.txt", b"real")]);
    let stale = e.path("d/.big.iso.1234abcd.stor-part");
    std::fs::write(&stale, b"partial").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    e.ok(&["cp", "-r", "d", "local://tmps/d/"]);
    let listed = e.ok(&["ls", "-r", "local://tmps/d"]);
    assert!(!listed.contains("stor-part"), "{listed}");
    assert!(stale.exists(), "an upload leaves it alone");
    e.ok(&["cp", "local://tmps/d/real.txt", "d/again.txt"]);
    assert!(!stale.exists(), "a download into the directory swept it");
}

// ------------------------------------------------------------------ config and credentials
// (task C: errors printed once, config files, ranges, secrets in URLs, profiles,
// missing credentials)

/// How often `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Runs `stor ARGS` as nobody (setpriv) in `env`'s directory, with `env`'s
/// variables; the directory is opened up so nobody can reach it.
fn run_as_nobody(env: &Env, args: &[&str]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let c = env.cmd(&[]);
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = c
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_stor"))
        .args(args)
        .envs(envs)
        .current_dir(env.dir.path())
        .output()
        .unwrap()
}

#[test]
fn an_os_error_is_printed_once() {
    let e = Env::new();
    // The store is made by nobody, so the unreadable-file case fails on the file.
    let nobody = run_as_nobody(&e, &["mb", "local://once"]);
    assert_eq!(code(&nobody), 0, "{}", stderr(&nobody));
    std::fs::write(e.path("secret.txt"), b"root only").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(e.path("secret.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // A missing source is bad input (2); an unreadable one a failed operation (1).
    let cases = [
        (
            e.run(&["cp", "missing.txt", "local://once/"]),
            "no such file or directory",
            2,
        ),
        (
            run_as_nobody(&e, &["cp", "secret.txt", "local://once/"]),
            "Permission denied",
            1,
        ),
    ];
    for (out, os_error, want) in cases {
        let err = stderr(&out);
        assert_eq!(code(&out), want, "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert_eq!(count(&err, os_error), 1, "{os_error:?} once: {err}");
    }
}

#[test]
fn config_files_that_are_not_one_clean_object_are_refused() {
    let e = Env::new();
    let cases = [
        ("[]", "must be a JSON object"),
        ("\"x\"", "must be a JSON object"),
        ("3", "must be a JSON object"),
        ("null", "must be a JSON object"),
        (
            r#"{"region_name": "eu-west-1", "region_name": "us-east-1"}"#,
            "\"region_name\" appears twice",
        ),
        (
            r#"{"storageConfig": {"max_retries": 2, "max_retries": 3}}"#,
            "\"max_retries\" appears twice",
        ),
        (
            r#"{"profiles": {"default": {}, "default": {"storage_type": "s3"}}}"#,
            "\"default\" appears twice",
        ),
        (r#"{"local_root": ""}"#, "local_root: empty"),
        (
            r#"{"profiles": {"default": {"local_root": ""}}}"#,
            "local_root: empty",
        ),
    ];
    for (json, says) in cases {
        std::fs::write(e.path("cfg.json"), json).unwrap();
        // Without STOR_LOCAL_ROOT, so the file's local_root is the one in force.
        let out = e
            .cmd(&["--config", "cfg.json", "ls", "local://"])
            .env_remove("STOR_LOCAL_ROOT")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{json}: {err}");
        assert_eq!(err.lines().count(), 1, "{json}: {err}");
        assert!(
            err.contains(says) && err.contains("cfg.json"),
            "{json}: {err}"
        );
    }
    let names: Vec<String> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["cfg.json"],
        "nothing written into the current directory"
    );
    let out = e.run(&["--local-root", "", "ls", "local://"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("local-root"), "{}", stderr(&out));

    // A byte order mark, as Windows editors write, is not an error.
    std::fs::write(
        e.path("bom.json"),
        "\u{feff}{\"region_name\": \"eu-west-1\"}",
    )
    .unwrap();
    let shown = e.ok(&["--config", "bom.json", "config", "show"]);
    assert!(shown.contains("eu-west-1"), "{shown}");
}

#[test]
fn a_config_file_that_cannot_be_read_is_bad_input_with_the_os_error_once() {
    let e = Env::new();
    std::fs::create_dir(e.path("adir")).unwrap();
    let cases = [
        (
            e.run(&["--config", "nope.json", "ls", "local://"]),
            "No such file or directory",
        ),
        (
            e.cmd(&["ls", "local://"])
                .env("STOR_CONFIG", "nope.json")
                .output()
                .unwrap(),
            "No such file or directory",
        ),
        (
            e.run(&["--config", "adir", "config", "show"]),
            "Is a directory",
        ),
    ];
    for (out, os_error) in cases {
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(count(&err, os_error), 1, "{os_error:?} once: {err}");
        assert!(err.contains("config file"), "{err}");
    }
    // Unreadable (mode 000, run as nobody: root reads anything).
    std::fs::write(e.path("locked.json"), "{}").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        e.path("locked.json"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let out = run_as_nobody(&e, &["--config", "locked.json", "config", "show"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert_eq!(count(&err, "Permission denied"), 1, "{err}");
}

#[test]
fn out_of_range_numbers_are_bad_input_naming_the_key() {
    let e = Env::new();
    let max = u64::MAX.to_string();
    let cases = [
        ("connect_timeout", max.as_str()),
        ("read_timeout", "0"),
        ("upload_timeout", "604801"),
        ("max_concurrency", max.as_str()),
        ("max_pool_connections", "0"),
        ("max_retries", "4294967296"),
        ("multipart_threshold", max.as_str()),
        ("part_size", "1"),
    ];
    for (key, value) in cases {
        std::fs::write(
            e.path("cfg.json"),
            format!(
                r#"{{"{key}": {value}, "endpoint_url": "http://127.0.0.1:9",
                    "aws_access_key_id": "AKIATEST", "aws_secret_access_key": "x"}}"#
            ),
        )
        .unwrap();
        // An S3 command: connect_timeout = u64::MAX panicked there (exit 101).
        let out = e.run(&["--config", "cfg.json", "ls", "s3://bucket"]);
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{key}={value}: {err}");
        assert!(err.contains(&format!("config key {key}")), "{key}: {err}");
    }
    let out = e.run(&["--concurrency", "0", "ls", "local://"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn passwords_in_endpoint_urls_never_show() {
    let e = Env::new();
    let canary = "url-canary-pw";
    let url = format!("http://stor-user:{canary}@127.0.0.1:9");
    std::fs::write(
        e.path("cfg.json"),
        format!(r#"{{"endpoint_url": "{url}", "max_retries": 1}}"#),
    )
    .unwrap();
    std::fs::write(e.path("one-try.json"), r#"{"max_retries": 1}"#).unwrap();
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIATEST"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", "us-east-1"),
    ];
    let runs = [
        // config show, the URL from the file, the flag and the environment
        e.run(&["--config", "cfg.json", "config", "show"]),
        e.run(&["--endpoint-url", &url, "config", "show"]),
        e.cmd(&["config", "show"])
            .env("AWS_ENDPOINT_URL", &url)
            .output()
            .unwrap(),
        // a request's TRACE logs and its error (nothing listens on port 9)
        e.cmd(&[
            "-vvv",
            "--config",
            "one-try.json",
            "--endpoint-url",
            &url,
            "ls",
            "s3://bkt",
        ])
        .envs(keys)
        .output()
        .unwrap(),
        e.cmd(&["--config", "cfg.json", "doctor"])
            .envs(keys)
            .output()
            .unwrap(),
        // a URL refused by validation
        e.run(&[
            "--endpoint-url",
            &format!("http://u:{canary}/x@host"),
            "config",
            "show",
        ]),
    ];
    for (i, out) in runs.iter().enumerate() {
        let all = format!("{}{}", stdout(out), stderr(out));
        assert!(!all.contains(canary), "run {i} leaks the password: {all}");
    }
    for out in &runs[..3] {
        assert!(
            stdout(out).contains("\"http://***@127.0.0.1:9\""),
            "{}",
            stdout(out)
        );
    }
    let trace = stderr(&runs[3]);
    assert!(
        trace.contains("127.0.0.1:9"),
        "the request was tried: {trace}"
    );
    assert_eq!(
        count(&trace, "so they are ignored"),
        1,
        "said once: {trace}"
    );
    assert!(
        stdout(&runs[4]).contains("endpoint http://***@127.0.0.1:9"),
        "{}",
        stdout(&runs[4])
    );
    assert_eq!(code(&runs[5]), 2, "{}", stderr(&runs[5]));

    // On a real server the stripped URL works.
    let Some(s3) = Env::with_s3() else { return };
    let with_userinfo =
        s3.s3
            .as_deref()
            .unwrap()
            .replacen("://", &format!("://stor-user:{canary}@"), 1);
    let out = s3
        .cmd(&["ls", "s3://"])
        .env("AWS_ENDPOINT_URL", &with_userinfo)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains(canary), "{}", stderr(&out));
}

/// `-vvv` shows the SDK's TRACE logs, but never what its config loader reads: an
/// endpoint's password from the environment or a profile, nor a profile's keys.
#[test]
fn trace_logs_never_show_what_the_aws_config_holds() {
    let e = Env::new();
    let (pw_env, pw_profile) = ("PWCANARY-ENV", "PWCANARY-PROFILE");
    let (key_id, secret) = ("AKIACANARYKEYID", "SECRET-CANARY");
    std::fs::create_dir(e.path(".aws")).unwrap();
    std::fs::write(
        e.path(".aws/config"),
        format!(
            "[profile dev]\nendpoint_url = http://u:{pw_profile}@127.0.0.1:9\n\
             aws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n\
             region = us-east-1\n"
        ),
    )
    .unwrap();
    // Nothing listens there: one try, one second.
    let quick = r#"{"max_retries": 1, "operation_timeout": 1}"#;
    std::fs::write(e.path("one-try.json"), quick).unwrap();
    let args = ["-vvv", "--config", "one-try.json", "ls", "s3://bkt"];
    let from_env = isolated(&e, &args)
        .env("AWS_PROFILE", "dev")
        .env("AWS_ENDPOINT_URL", format!("http://u:{pw_env}@127.0.0.1:9"))
        .output()
        .unwrap();
    let from_profile = isolated(&e, &args)
        .env("AWS_PROFILE", "dev")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    for (name, out) in [("env", &from_env), ("profile", &from_profile)] {
        let all = format!("{}{}", stdout(out), stderr(out));
        assert!(all.contains("TRACE"), "{name}: -vvv traces: {all}");
        assert!(all.contains("127.0.0.1:9"), "{name}: the request was tried");
        for canary in [pw_env, pw_profile, key_id, secret] {
            assert!(!all.contains(canary), "{name} shows {canary}: {all}");
        }
    }
}

/// `doctor` and `config show` say which endpoint is in use and where it came from,
/// also when an AWS profile sets it (the SDK reads that one itself).
#[test]
fn the_endpoint_in_use_and_where_it_comes_from() {
    let e = Env::new();
    std::fs::create_dir(e.path(".aws")).unwrap();
    std::fs::write(
        e.path(".aws/config"),
        "[profile dev]\nendpoint_url = http://127.0.0.1:9\nregion = us-east-1\n",
    )
    .unwrap();
    // Nothing listens there: doctor's requests fail within a second.
    let quick = r#"{"max_retries": 1, "operation_timeout": 1}"#;
    std::fs::write(e.path("one-try.json"), quick).unwrap();
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIATEST"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_PROFILE", "dev"),
    ];
    let run = |args: &[&str], endpoint: Option<&str>| {
        let mut c = isolated(&e, args);
        c.envs(keys).env_remove("AWS_ENDPOINT_URL");
        if let Some(u) = endpoint {
            c.env("AWS_ENDPOINT_URL", u);
        }
        c.output().unwrap()
    };
    let doctor = stdout(&run(&["--config", "one-try.json", "doctor"], None));
    assert!(
        doctor.contains("endpoint http://127.0.0.1:9 (from the AWS config, profile dev)"),
        "{doctor}"
    );
    let show = |args: &[&str], endpoint| {
        let out = run(args, endpoint);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let v = show(&["config", "show"], None);
    assert_eq!(v["endpoint"], "http://127.0.0.1:9", "{v}");
    assert_eq!(v["endpoint_source"], "the AWS config, profile dev", "{v}");
    // The environment and the flag win over the profile, and say so.
    let v = show(&["config", "show"], Some("http://127.0.0.1:7"));
    assert_eq!(v["endpoint"], "http://127.0.0.1:7", "{v}");
    assert_eq!(v["endpoint_source"], "AWS_ENDPOINT_URL", "{v}");
    let v = show(
        &["--endpoint-url", "http://127.0.0.1:8", "config", "show"],
        None,
    );
    assert_eq!(v["endpoint_source"], "--endpoint-url", "{v}");
    // No endpoint anywhere: AWS's own.
    let out = isolated(&e, &["config", "show"])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["endpoint"], serde_json::Value::Null, "{v}");
    assert_eq!(v["endpoint_source"], "AWS default for the region", "{v}");
}

/// `stor ARGS` with no AWS setting from the outside world: HOME is `env`'s
/// directory (its `.aws/` is the one the test writes), the AWS_* and STOR_* variables
/// that choose credentials are unset, instance metadata is a closed local port
/// (there is none, and asking fails at once), and S3 is a closed port too.
fn isolated(env: &Env, args: &[&str]) -> Command {
    let mut c = env.cmd(args);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "STOR_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        c.env_remove(var);
    }
    c.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    c
}

/// The region a presigned URL is signed for (its credential scope), or the error.
fn presigned_region(e: &Env, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = extra.to_vec();
    args.extend(["presign", "s3://bkt/k"]);
    let mut c = isolated(e, &args);
    c.env("AWS_ACCESS_KEY_ID", "AKIAREGIONTEST")
        .env("AWS_SECRET_ACCESS_KEY", "region-secret");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert_eq!(code(&out), 0, "{args:?} {env:?}: {}", stderr(&out));
    let url = stdout(&out);
    let scope = url.split("X-Amz-Credential=").nth(1).unwrap();
    scope.split("%2F").nth(2).unwrap().to_owned()
}

#[test]
fn the_cli_region_is_flag_then_environment_then_config_then_profile_then_ap_northeast_2() {
    let e = Env::new();
    assert_eq!(presigned_region(&e, &[], &[]), "ap-northeast-2");
    std::fs::create_dir(e.path(".aws")).unwrap();
    std::fs::write(
        e.path(".aws/config"),
        "[default]\nregion = eu-north-1\n[profile prod]\nregion = sa-east-1\n",
    )
    .unwrap();
    std::fs::write(
        e.path(".aws/credentials"),
        "[prod]\naws_access_key_id = AKIAPROD\naws_secret_access_key = prod-secret\n",
    )
    .unwrap();
    assert_eq!(presigned_region(&e, &[], &[]), "eu-north-1");
    assert_eq!(
        presigned_region(&e, &["--profile", "prod"], &[]),
        "sa-east-1"
    );
    assert_eq!(
        presigned_region(&e, &[], &[("AWS_PROFILE", "prod")]),
        "sa-east-1"
    );
    std::fs::write(
        e.path("cfg.json"),
        r#"{"storageConfig": {"region_name": "eu-west-3"}}"#,
    )
    .unwrap();
    assert_eq!(
        presigned_region(&e, &["--config", "cfg.json"], &[]),
        "eu-west-3"
    );
    let env_region = [("AWS_REGION", "us-west-1")];
    assert_eq!(
        presigned_region(&e, &["--config", "cfg.json"], &env_region),
        "us-west-1"
    );
    assert_eq!(
        presigned_region(
            &e,
            &["--config", "cfg.json", "--region", "ca-central-1"],
            &env_region
        ),
        "ca-central-1"
    );
}

/// Flags, and environment variables, of one run.
type Args<'a> = &'a [&'a str];
type Vars<'a> = &'a [(&'a str, &'a str)];

/// The access key id a presigned URL was signed with (no request is made).
fn signed_with(out: &Output) -> String {
    let url = stdout(out);
    let start = url
        .find("X-Amz-Credential=")
        .unwrap_or_else(|| panic!("no presigned URL ({}): {}", code(out), stderr(out)))
        + "X-Amz-Credential=".len();
    url[start..].split("%2F").next().unwrap().to_owned()
}

#[test]
fn an_explicit_profile_wins_or_the_command_fails() {
    let e = Env::new();
    std::fs::create_dir(e.path(".aws")).unwrap();
    std::fs::write(
        e.path(".aws/credentials"),
        "[prod]\naws_access_key_id = AKIAPROD\naws_secret_access_key = prod-secret\n",
    )
    .unwrap();
    std::fs::write(
        e.path(".aws/config"),
        "[profile cfgonly]\naws_access_key_id = AKIACFGONLY\naws_secret_access_key = s\n\
         region = eu-west-1\n",
    )
    .unwrap();
    std::fs::write(
        e.path("other-creds"),
        "[elsewhere]\naws_access_key_id = AKIAELSEWHERE\naws_secret_access_key = s\n",
    )
    .unwrap();
    std::fs::write(
        e.path("keys.json"),
        r#"{"aws_access_key_id": "AKIAFILE", "aws_secret_access_key": "file-secret"}"#,
    )
    .unwrap();
    std::fs::write(
        e.path("profiles.json"),
        r#"{"profiles": {"default": {},
            "minio": {"aws_access_key_id": "AKIAMINIO", "aws_secret_access_key": "m"}}}"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in ["keys.json", "profiles.json"] {
        std::fs::set_permissions(e.path(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let env_keys = [
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ];
    let none: [(&str, &str); 0] = [];
    let presign = ["presign", "s3://bkt/k"];
    // (flags, environment, key used, credentials_source says)
    let cases: &[(Args, Vars, &str, &str)] = &[
        (
            &["--profile", "prod"],
            &env_keys,
            "AKIAPROD",
            "profile prod (~/.aws/credentials)",
        ),
        (
            &[],
            &[("AWS_PROFILE", "prod"), env_keys[0], env_keys[1]],
            "AKIAENV",
            "environment",
        ),
        (&[], &[("AWS_PROFILE", "prod")], "AKIAPROD", "profile prod"),
        (&[], &[("STOR_PROFILE", "prod")], "AKIAPROD", "profile prod"),
        (
            &["--profile", "cfgonly"],
            &env_keys,
            "AKIACFGONLY",
            "(~/.aws/config)",
        ),
        (
            &["--config", "keys.json"],
            &env_keys,
            "AKIAENV",
            "environment",
        ),
        (
            &["--config", "keys.json"],
            &none,
            "AKIAFILE",
            "config file keys.json",
        ),
        (
            &["--config", "keys.json"],
            &[("AWS_PROFILE", "prod")],
            "AKIAPROD",
            "profile prod",
        ),
        (
            &["--config", "keys.json", "--profile", "prod"],
            &env_keys,
            "AKIAPROD",
            "profile prod",
        ),
        (
            &["--config", "profiles.json", "--profile", "minio"],
            &env_keys,
            "AKIAMINIO",
            "profile minio",
        ),
        (
            &["--config", "profiles.json"],
            &[("STOR_PROFILE", "minio"), env_keys[0], env_keys[1]],
            "AKIAENV",
            "environment",
        ),
        (
            &["--config", "profiles.json", "--profile", "prod"],
            &none,
            "AKIAPROD",
            "profile prod",
        ),
        (
            &["--profile", "elsewhere"],
            &[("AWS_SHARED_CREDENTIALS_FILE", "other-creds")],
            "AKIAELSEWHERE",
            "profile elsewhere (other-creds)",
        ),
    ];
    for (i, (flags, vars, key, source)) in cases.iter().enumerate() {
        let with = |args: &[&str]| {
            let all: Vec<&str> = flags.iter().chain(args).copied().collect();
            isolated(&e, &all)
                .envs(vars.iter().copied())
                .output()
                .unwrap()
        };
        let url = with(&presign);
        assert_eq!(signed_with(&url), *key, "case {i}: {flags:?} {vars:?}");
        let show = with(&["config", "show"]);
        assert_eq!(code(&show), 0, "case {i}: {}", stderr(&show));
        let v: serde_json::Value = serde_json::from_str(&stdout(&show)).unwrap();
        let said = v["credentials_source"].as_str().unwrap_or_default();
        assert!(
            said.contains(source),
            "case {i}: {said:?} should say {source:?}"
        );
    }

    // A profile that exists nowhere: exit 2 naming the files looked in, whether or
    // not keys are in the environment, however it is named.
    let unknown: &[(Args, Vars)] = &[
        (&["--profile", "prdo"], &env_keys),
        (&["--profile", "prdo"], &none),
        (&[], &[("AWS_PROFILE", "prdo")]),
        (&[], &[("STOR_PROFILE", "prdo"), env_keys[0], env_keys[1]]),
        (
            &["--config", "profiles.json", "--profile", "prdo"],
            &env_keys,
        ),
    ];
    for (flags, vars) in unknown {
        for args in [&presign[..], &["config", "show"], &["ls", "local://"]] {
            let all: Vec<&str> = flags.iter().chain(args).copied().collect();
            let out = isolated(&e, &all)
                .envs(vars.iter().copied())
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(code(&out), 2, "{all:?} {vars:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("profile prdo not found in"), "{err}");
            assert!(err.contains("~/.aws/credentials, ~/.aws/config"), "{err}");
            assert!(!err.contains("attempts"), "{err}");
        }
    }
}

#[test]
fn no_credentials_is_one_clear_error_not_a_retried_failure() {
    let e = Env::new();
    std::fs::create_dir(e.path("dir")).unwrap();
    for f in ["a", "b", "c"] {
        std::fs::write(e.path(&format!("dir/{f}")), f).unwrap();
    }
    std::fs::write(e.path("cfg.json"), r#"{"region_name": "eu-west-1"}"#).unwrap();
    let runs = [
        isolated(&e, &["ls", "s3://bkt"]).output().unwrap(),
        isolated(&e, &["ls", "s3://bkt"])
            .env("AWS_ACCESS_KEY_ID", "")
            .output()
            .unwrap(),
        isolated(&e, &["cp", "-r", "dir", "s3://bkt/d/"])
            .output()
            .unwrap(),
        isolated(&e, &["--config", "cfg.json", "cp", "dir/a", "s3://bkt/a"])
            .output()
            .unwrap(),
        isolated(&e, &["presign", "s3://bkt/k"]).output().unwrap(),
        isolated(&e, &["ls", "s3://bkt"])
            .env("AWS_ACCESS_KEY_ID", "AKIAHALF")
            .output()
            .unwrap(),
    ];
    for (i, out) in runs.iter().enumerate() {
        let err = stderr(out);
        assert_eq!(code(out), 2, "run {i}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "run {i}: one line, no SDK warnings: {err}"
        );
        assert_eq!(
            count(&err, "no credentials found (looked in: "),
            1,
            "run {i}: {err}"
        );
        for place in [
            "environment",
            "profile default (~/.aws/credentials",
            "instance metadata",
        ] {
            assert!(err.contains(place), "run {i}: names {place:?}: {err}");
        }
        assert!(
            !err.contains("attempts") && !err.contains("transient"),
            "run {i}: {err}"
        );
    }
    assert!(
        stderr(&runs[3]).contains("config file cfg.json"),
        "{}",
        stderr(&runs[3])
    );
    assert!(
        stderr(&runs[5]).contains("AWS_ACCESS_KEY_ID without AWS_SECRET_ACCESS_KEY"),
        "{}",
        stderr(&runs[5])
    );
    // AWS_EC2_METADATA_DISABLED is honoured and said.
    let out = isolated(&e, &["ls", "s3://bkt"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("disabled by AWS_EC2_METADATA_DISABLED"),
        "{}",
        stderr(&out)
    );
    // A profile that exists but holds no keys: also bad input, naming it.
    std::fs::create_dir(e.path(".aws")).unwrap();
    std::fs::write(
        e.path(".aws/config"),
        "[profile bare]\nregion = eu-west-1\n",
    )
    .unwrap();
    let out = isolated(&e, &["--profile", "bare", "ls", "s3://bkt"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("profile bare (~/.aws/config)"), "{err}");
    // doctor says it as a failed check, with what to do.
    let out = isolated(&e, &["doctor"]).output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no credentials found"),
        "{}",
        stdout(&out)
    );
}

// ------------------------------------------------------------------ sync: its rules
//
// Each test runs on the local store, then on SeaweedFS when scripts/with-servers.sh
// provides it. The rules themselves are a table test in src/sync/plan.rs.

/// Runs `check` on the local store, then on SeaweedFS (when configured), each in a
/// fresh environment with a fresh bucket; `base` is `local://BUCKET` or `s3://BUCKET`.
/// The bucket goes afterwards (SeaweedFS gives each bucket volumes of its own).
fn on_each_store(check: impl Fn(&Env, &str)) {
    let stores = [Some(Env::new()), Env::with_s3()];
    for env in stores.into_iter().flatten() {
        let scheme = if env.s3.is_some() { "s3" } else { "local" };
        let base = format!("{scheme}://{}", bucket());
        let mb = env.run(&["mb", &base]);
        assert_eq!(code(&mb), 0, "{}", stderr(&mb));
        check(&env, &base);
        env.ok(&["rb", "--force", &base]);
    }
}

/// The keys under `url`, below it.
fn keys_under(env: &Env, url: &str) -> Vec<String> {
    let prefix = url.splitn(4, '/').nth(3).unwrap_or("").to_owned();
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix
    } else {
        format!("{prefix}/")
    };
    let mut keys: Vec<String> = env
        .ok(&["ls", "-r", "--json", url])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| v["key"].as_str().unwrap()[prefix.len()..].to_owned())
        .collect();
    keys.sort();
    keys
}

fn cat(env: &Env, url: &str) -> String {
    env.ok(&["cat", url])
}

fn set_mtime(path: &Path, t: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// 2020-01-01T00:00:00Z plus `ms` milliseconds.
fn t2020(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_577_836_800_000 + ms)
}

/// The files below `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[test]
fn sync_delete_refuses_a_source_that_holds_nothing() {
    on_each_store(|env, base| {
        let www = format!("{base}/www");
        write_tree(&env.path("site"), &[("a", b"a"), ("b/c", b"c")]);
        env.ok(&["sync", "site", &www]);
        // An empty directory as the source: nothing goes, and the user hears what would.
        std::fs::create_dir(env.path("empty")).unwrap();
        let out = env.run(&["sync", "--delete", "empty", &www]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("--allow-empty-source"),
            "{}",
            stderr(&out)
        );
        assert!(
            stdout(&out).contains(&format!("(refused) delete: {www}/b/c")),
            "{}",
            stdout(&out)
        );
        assert_eq!(keys_under(env, &www), ["a", "b/c"]);
        // Nor one that holds only what a sync skips: a leftover temp file, a FIFO.
        std::fs::create_dir(env.path("leftovers")).unwrap();
        std::fs::write(env.path("leftovers/.a.1234abcd.stor-part"), "p").unwrap();
        mkfifo(&env.path("leftovers/fifo"));
        let out = env.run(&["sync", "--delete", "leftovers", &www]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("(refused) delete: {www}/b/c")),
            "{}",
            stdout(&out)
        );
        assert_eq!(keys_under(env, &www), ["a", "b/c"]);
        // A missing directory neither.
        let out = env.run(&["sync", "--delete", "missing", &www]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert_eq!(keys_under(env, &www), ["a", "b/c"]);
        // A mistyped prefix as the source of a download.
        write_tree(&env.path("mine"), &[("x", b"x"), ("y/z", b"z")]);
        let typo = format!("{base}/wwww");
        let out = env.run(&["sync", "--delete", &typo, "mine"]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stdout(&out).contains("(refused) delete: mine/y/z"),
            "{}",
            stdout(&out)
        );
        assert_eq!(files_under(&env.path("mine")), ["x", "y/z"]);
        // Filters that let nothing through count as nothing.
        let out = env.run(&["sync", "--delete", "--include", "*.none", "site", &www]);
        assert_eq!(code(&out), 0, "nothing to delete either: {}", stderr(&out));
        // Said on purpose: it goes.
        let out = env.run(&["sync", "--delete", "--allow-empty-source", &typo, "mine"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(files_under(&env.path("mine")), Vec::<String>::new());
    });
}

#[test]
fn sync_follows_symlinks_reports_skips_and_never_deletes_their_copies() {
    on_each_store(|env, base| {
        let www = format!("{base}/www");
        write_tree(&env.path("outside/lib"), &[("x.txt", b"x")]);
        write_tree(
            &env.path("site"),
            &[("a", b"a"), ("gone", b"was a file once")],
        );
        env.ok(&["sync", "site", &www]);
        // Now `gone` dangles and two links join the tree.
        std::fs::remove_file(env.path("site/gone")).unwrap();
        use std::os::unix::fs::symlink;
        symlink("nowhere", env.path("site/gone")).unwrap();
        symlink(env.path("outside/lib"), env.path("site/linked")).unwrap();
        symlink("a", env.path("site/lf")).unwrap();
        let out = env.run(&["sync", "--delete", "site", &www]);
        assert_eq!(code(&out), 0, "skips are not failures: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("skipped site/gone: a dangling symlink"),
            "{err}"
        );
        assert!(err.contains("1 skipped"), "{err}");
        // Followed (links to files and to directories); the dangling one's copy kept.
        assert_eq!(keys_under(env, &www), ["a", "gone", "lf", "linked/x.txt"]);
        assert_eq!(cat(env, &format!("{www}/gone")), "was a file once");
        // Not followed: each link is reported, and what they uploaded stays.
        let out = env.run(&["sync", "--delete", "--no-follow-symlinks", "site", &www]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let err = stderr(&out);
        for link in ["gone", "lf", "linked"] {
            assert!(
                err.contains(&format!("skipped site/{link}: a symlink")),
                "{err}"
            );
        }
        assert!(!stdout(&out).contains("delete:"), "{}", stdout(&out));
        assert_eq!(keys_under(env, &www), ["a", "gone", "lf", "linked/x.txt"]);

        // Down: keys with no path of their own (`k` beside `k/v`) are skipped and
        // reported, and the file a `k` left earlier is kept.
        let src = format!("{base}/src");
        std::fs::write(env.path("one"), "1").unwrap();
        for k in ["k", "k/v", "ok"] {
            env.ok(&["cp", "one", &format!("{src}/{k}")]);
        }
        // A key that folds into another one's path (the local store keeps `x/../d/e`
        // as sent) is refused without keeping the other from its file.
        let folds = env.s3.is_none();
        if folds {
            for k in ["d/e", "x/../d/e"] {
                env.ok(&["cp", "one", &format!("{src}/{k}")]);
            }
        }
        write_tree(
            &env.path("dest"),
            &[("k", b"an earlier k"), ("extra", b"e")],
        );
        let out = env.run(&["sync", "--delete", &src, "dest"]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("needs a directory"), "{err}");
        let mut want = vec!["k", "ok"];
        if folds {
            assert!(err.contains("would be the same file"), "{err}");
            want.insert(0, "d/e");
        }
        assert_eq!(files_under(&env.path("dest")), want);
        assert_eq!(std::fs::read(env.path("dest/k")).unwrap(), b"an earlier k");
    });
}

#[test]
fn sync_never_marks_a_failed_download_done() {
    on_each_store(|env, base| {
        // An object whose bytes fail verification on the way down: stored with a
        // checksum they do not have.
        let none = r#"{"storageConfig": {"checksum": "none"}}"#;
        std::fs::write(env.path("none.json"), none).unwrap();
        std::fs::write(env.path("new"), "new!").unwrap();
        let src = format!("{base}/src");
        let bad = ["--metadata", "stor-crc64nvme=AAAAAAAAAAA="];
        let f = format!("{src}/f");
        env.ok(&["--config", "none.json", "cp", bad[0], bad[1], "new", &f]);
        write_tree(&env.path("dest"), &[("f", b"old!")]);
        let old = t2020(0);
        set_mtime(&env.path("dest/f"), old);
        // However often it runs, it fails, and the old file stays as it was.
        for run in 0..2 {
            let out = env.run(&["sync", &src, "dest"]);
            assert_eq!(code(&out), 1, "run {run}: {}", stderr(&out));
            assert!(stderr(&out).contains("integrity"), "{}", stderr(&out));
            assert_eq!(std::fs::read(env.path("dest/f")).unwrap(), b"old!");
            assert_eq!(mtime(&env.path("dest/f")), old, "run {run}");
        }
    });
}

#[test]
fn sync_finds_same_size_changes_within_a_second_both_ways() {
    on_each_store(|env, base| {
        let www = format!("{base}/www");
        let a = env.path("site/a");
        write_tree(&env.path("site"), &[("a", b"v1v1")]);
        set_mtime(&a, t2020(100));
        env.ok(&["sync", "site", &www]);
        // Changed 200 ms later, same size.
        std::fs::write(&a, "v2v2").unwrap();
        set_mtime(&a, t2020(300));
        let out = env.ok(&["sync", "site", &www]);
        assert!(out.contains("upload: site/a"), "{out}");
        assert_eq!(cat(env, &format!("{www}/a")), "v2v2");
        // Replaced by an older file of the same size.
        std::fs::write(&a, "v3v3").unwrap();
        set_mtime(&a, t2020(0) - std::time::Duration::from_secs(10));
        let out = env.ok(&["sync", "site", &www]);
        assert!(out.contains("upload: site/a"), "{out}");
        assert_eq!(cat(env, &format!("{www}/a")), "v3v3");
        let out = env.ok(&["sync", "site", &www]);
        assert!(!out.contains("upload:"), "nothing changed: {out}");

        // Down: a file gets its source file's time, to the nanosecond ...
        env.ok(&["sync", &www, "copy"]);
        assert_eq!(mtime(&env.path("copy/a")), mtime(&a));
        // ... so an object rewritten within a second is found.
        std::fs::write(&a, "v4v4").unwrap();
        set_mtime(&a, mtime(&a) + std::time::Duration::from_millis(400));
        env.ok(&["sync", "site", &www]);
        let out = env.ok(&["sync", &www, "copy"]);
        assert!(out.contains("download:"), "{out}");
        assert_eq!(std::fs::read(env.path("copy/a")).unwrap(), b"v4v4");
        let out = env.ok(&["sync", &www, "copy"]);
        assert!(!out.contains("download:"), "nothing changed: {out}");
    });
}

#[test]
fn sync_checksum_compares_in_the_objects_algorithm_and_settles() {
    on_each_store(|env, base| {
        write_tree(&env.path("site"), &[("a", b"aaaa"), ("b/c", b"cccc")]);
        for (algo, bytes) in [
            ("crc64nvme", "AAAA"),
            ("crc32c", "BBBB"),
            ("crc32", "CCCC"),
            ("none", ""),
        ] {
            let cfg = format!("{algo}.json");
            let json = format!(r#"{{"storageConfig": {{"checksum": "{algo}"}}}}"#);
            std::fs::write(env.path(&cfg), json).unwrap();
            let url = format!("{base}/{algo}");
            let dl = format!("dl-{algo}");
            let sync = |args: &[&str]| {
                let mut all = vec!["--config", cfg.as_str(), "sync"];
                all.extend_from_slice(args);
                env.ok(&all)
            };
            assert_eq!(sync(&["site", &url]).matches("upload: ").count(), 2);
            let again = sync(&["--checksum", "site", &url]);
            assert!(!again.contains("upload:"), "{algo}: {again}");
            assert_eq!(
                sync(&["--checksum", &url, &dl])
                    .matches("download: ")
                    .count(),
                2
            );
            let again = sync(&["--checksum", &url, &dl]);
            assert!(!again.contains("download:"), "{algo}: {again}");
            if algo == "none" {
                continue; // nothing to compare contents with: times decide
            }
            // Same size, same time, other bytes: only the contents tell.
            let a = env.path("site/a");
            let t = mtime(&a);
            std::fs::write(&a, bytes).unwrap();
            set_mtime(&a, t);
            let by_time = sync(&["site", &url]);
            assert!(!by_time.contains("upload:"), "{algo}: {by_time}");
            let by_sum = sync(&["--checksum", "site", &url]);
            assert!(by_sum.contains("upload: site/a"), "{algo}: {by_sum}");
            let down = sync(&["--checksum", &url, &dl]);
            assert!(down.contains("download: "), "{algo}: {down}");
            assert_eq!(
                std::fs::read(env.path(&dl).join("a")).unwrap(),
                bytes.as_bytes()
            );
        }
    });
}

/// A child's exit code and the peak of its resident memory in KiB: its VmHWM,
/// read from /proc every millisecond while it runs (a high-water mark: it only
/// grows). Not wait4's ru_maxrss: that counts the memory of this test process,
/// which the child shares until it execs.
fn peak_rss(mut cmd: Command) -> (i32, u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    // Until it exits: a zombie has no memory, so no VmHWM.
    while let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|s| {
        let line = s.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
        line.trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    }) {
        peak = peak.max(kib);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    (child.wait().unwrap().code().unwrap_or(-1), peak)
}

/// `--checksum` hashes a file as it streams: comparing a 150 MiB file costs
/// nothing like 150 MiB of memory (it cost 170 MB when the file was read whole).
#[test]
fn sync_checksum_holds_the_memory_bound() {
    let env = Env::new();
    env.ok(&["mb", "local://mem"]);
    std::fs::create_dir(env.path("big")).unwrap();
    let mut f = std::fs::File::create(env.path("big/file.bin")).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    for _ in 0..150 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    env.ok(&["sync", "big", "local://mem/big"]);
    let (status, kib) = peak_rss(env.cmd(&["sync", "--checksum", "big", "local://mem/big"]));
    assert_eq!(status, 0);
    eprintln!("sync --checksum of 150 MiB: peak RSS {kib} KiB");
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB");
}

#[test]
fn sync_resolves_file_directory_conflicts_in_one_run() {
    on_each_store(|env, base| {
        let put = |url: &str, data: &str| {
            std::fs::write(env.path("data"), data).unwrap();
            env.ok(&["cp", "data", url]);
        };
        // Down: an object `z` where a directory `z/` is, and objects below `x/`
        // where a file `x` is.
        let src = format!("{base}/t");
        for k in ["z", "x/y", "ok"] {
            put(&format!("{src}/{k}"), k);
        }
        write_tree(
            &env.path("dest"),
            &[("z/old.txt", b"old"), ("x", b"a file")],
        );
        let out = env.run(&["sync", &src, "dest"]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(r#""z" is a file in the source but a directory at the destination"#),
            "{err}"
        );
        assert!(
            err.contains(r#""x" is a directory in the source but a file at the destination"#),
            "{err}"
        );
        assert!(err.contains("Run with --delete"), "{err}");
        assert_eq!(files_under(&env.path("dest")), ["ok", "x", "z/old.txt"]);
        // --delete replaces the destination's side, in one run.
        let out = env.run(&["sync", "--delete", &src, "dest"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(files_under(&env.path("dest")), ["ok", "x/y", "z"]);
        assert_eq!(std::fs::read(env.path("dest/z")).unwrap(), b"z");
        let again = env.ok(&["sync", "--delete", &src, "dest"]);
        assert!(again.is_empty(), "settled: {again}");

        // Up: a directory `z/` where an object `z` is, a file `x` where objects
        // below `x/` are. An object store may hold both; --delete leaves one.
        let up = format!("{base}/u");
        for k in ["z", "x/y"] {
            put(&format!("{up}/{k}"), k);
        }
        write_tree(&env.path("local"), &[("z/a", b"za"), ("x", b"xx")]);
        let out = env.run(&["sync", "--delete", "local", &up]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(keys_under(env, &up), ["x", "z/a"]);
        let again = env.ok(&["sync", "--delete", "local", &up]);
        assert!(again.is_empty(), "settled: {again}");
    });
}

#[test]
fn sync_refuses_keys_the_engine_would_rewrite() {
    on_each_store(|env, base| {
        let www = format!("{base}/www");
        write_tree(
            &env.path("site"),
            &[(r"a\b", b"ab"), ("plain", b"p"), ("sp ace", b"s")],
        );
        // SeaweedFS stores `a\b` as `a/b`; the local store keeps every key as sent.
        let rewrites = env.s3.is_some();
        if rewrites {
            // What an earlier run left: the twin the engine made of `a\b`.
            std::fs::write(env.path("twin"), "twin").unwrap();
            env.ok(&["cp", "twin", &format!("{www}/a/b")]);
        }
        for run in 0..2 {
            let out = env.run(&["sync", "--delete", "site", &www]);
            let (err, text) = (stderr(&out), stdout(&out));
            if rewrites {
                assert_eq!(code(&out), 1, "run {run}: {err}");
                assert!(err.contains(r#"(it rewrites "\\" as "/")"#), "{err}");
                assert!(err.contains("rename it"), "{err}");
                assert!(
                    !text.contains("delete:") && !text.contains(r"a\b"),
                    "{text}"
                );
                assert_eq!(keys_under(env, &www), ["a/b", "plain", "sp ace"]);
                assert_eq!(cat(env, &format!("{www}/a/b")), "twin");
            } else {
                assert_eq!(code(&out), 0, "run {run}: {err}");
                assert_eq!(keys_under(env, &www), [r"a\b", "plain", "sp ace"]);
                if run == 1 {
                    assert!(text.is_empty(), "settled: {text}");
                }
            }
        }
        // The probes are gone, "directories" and all.
        let top = env.ok(&["ls", &format!("{www}/")]);
        assert!(!top.contains(".stor-probe"), "{top}");
        assert!(keys_under(env, base)
            .iter()
            .all(|k| !k.contains(".stor-probe")));
    });
}

/// `cp`, `cp -r`, `cp -` and `mv` refuse keys the engine would not keep as sent,
/// like sync: SeaweedFS stores `a\b` as `a/b` (a silent overwrite) and refuses
/// `.` and `..` segments; the local store keeps them all.
#[test]
fn uploads_and_copies_refuse_keys_the_engine_would_rewrite() {
    on_each_store(|env, base| {
        let rewrites = env.s3.is_some();
        write_tree(
            &env.path("src1"),
            &[("a/b", b"slash"), (r"a\b", b"backslash")],
        );
        let out = env.run(&["cp", "-r", "src1", &format!("{base}/bs/")]);
        let err = stderr(&out);
        if rewrites {
            assert_eq!(code(&out), 1, "{err}");
            assert!(
                err.contains(r#"not uploaded: the engine stores the key "bs/a\\b" as "bs/a/b""#),
                "{err}"
            );
            assert_eq!(keys_under(env, &format!("{base}/bs")), ["a/b"]);
            assert_eq!(cat(env, &format!("{base}/bs/a/b")), "slash");
        } else {
            assert_eq!(code(&out), 0, "{err}");
            assert_eq!(keys_under(env, &format!("{base}/bs")), ["a/b", r"a\b"]);
        }
        // One key: a file, stdin, an object, a move. On SeaweedFS each would have
        // overwritten x/y or failed with a bare HTTP 400.
        std::fs::write(env.path("f"), "new").unwrap();
        std::fs::write(env.path("mvme"), "moved").unwrap();
        let x_y = format!("{base}/x/y");
        let kept = || assert_eq!(code(&env.run_stdin(&["cp", "-", &x_y], b"kept")), 0);
        kept();
        for (args, key) in [
            (vec!["cp", "f", r"KEY"], r"x\y"),
            (vec!["cp", "-", "KEY"], r"x\y"),
            (vec!["cp", "X_Y", "KEY"], r"c\d"),
            (vec!["mv", "mvme", "KEY"], r"m\n"),
            (vec!["cp", "f", "KEY"], "p/./a/k"),
            (vec!["cp", "X_Y", "KEY"], "./p/a/k"),
            (vec!["mv", "X_Y", "KEY"], "p/a/k/.."),
        ] {
            let url = format!("{base}/{key}");
            let args: Vec<&str> = (args.iter())
                .map(|a| match *a {
                    "KEY" => url.as_str(),
                    "X_Y" => x_y.as_str(),
                    a => a,
                })
                .collect();
            let out = env.run_stdin(&args, b"stdin");
            let err = stderr(&out);
            if rewrites {
                assert_eq!(code(&out), 2, "{args:?}: {err}");
                assert!(err.contains("rename it"), "{args:?}: {err}");
                if key.contains('.') {
                    assert!(err.contains("does not keep the key"), "{args:?}: {err}");
                }
            } else {
                assert_eq!(code(&out), 0, "{args:?}: {err}");
                if args[0] == "mv" && args[1] == x_y {
                    kept();
                }
            }
        }
        assert_eq!(cat(env, &x_y), "kept", "never overwritten");
        assert!(
            env.path("mvme").exists() == rewrites,
            "a refused mv keeps its file"
        );
        // The probes are gone.
        assert!(keys_under(env, base)
            .iter()
            .all(|k| !k.contains(".stor-probe")));
    });
}

/// A wildcard or recursive copy or move whose destinations include another pair's
/// source is refused before anything moves (the hostile report's
/// `mv 's3://b/m2/*' s3://b/m2/z/` destroyed `m2/z/a*`); `mv -r` and `--dry-run`
/// work on trees and directories; a move refused as the same stored object
/// changes nothing.
#[test]
fn moves_refuse_overlaps_and_take_trees() {
    on_each_store(|env, base| {
        for i in 1..=3 {
            for (k, v) in [
                (format!("m2/a{i}"), format!("top-{i}")),
                (format!("m2/z/a{i}"), format!("sub-{i}")),
            ] {
                let out = env.run_stdin(&["cp", "-", &format!("{base}/{k}")], v.as_bytes());
                assert_eq!(code(&out), 0, "{}", stderr(&out));
            }
        }
        let all = ["a1", "a2", "a3", "z/a1", "z/a2", "z/a3"];
        for args in [
            vec!["--concurrency", "1", "mv", "M2/*", "M2/z/"],
            vec!["cp", "M2/*", "M2/z/"],
            vec!["mv", "-r", "M2", "M2/z/"],
            vec!["mv", "--dry-run", "M2/*", "M2/z/"],
        ] {
            let m2 = format!("{base}/m2");
            let args: Vec<String> = args.iter().map(|a| a.replace("M2", &m2)).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = env.run(&args);
            assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains(&format!("{m2}/a1 would go onto {m2}/z/a1")),
                "{err}"
            );
            assert!(err.contains("Nothing was"), "{err}");
            assert_eq!(keys_under(env, &m2), all, "{args:?}");
        }
        assert_eq!(cat(env, &format!("{base}/m2/z/a1")), "sub-1");
        // Trees: a dry run lists, a move moves.
        let dry = env.ok(&[
            "mv",
            "--dry-run",
            "-r",
            &format!("{base}/m2/z"),
            &format!("{base}/m3/"),
        ]);
        assert_eq!(
            dry.lines()
                .filter(|l| l.starts_with("(dryrun) move: "))
                .count(),
            3,
            "{dry}"
        );
        assert_eq!(keys_under(env, &format!("{base}/m3")), Vec::<String>::new());
        env.ok(&["mv", "-r", &format!("{base}/m2/z"), &format!("{base}/m3/")]);
        assert_eq!(keys_under(env, &format!("{base}/m3")), ["a1", "a2", "a3"]);
        assert_eq!(keys_under(env, &format!("{base}/m2")), ["a1", "a2", "a3"]);
        // A directory: refused without -r (with the flag that exists), moved with it.
        write_tree(&env.path("dir"), &[("x", b"x"), ("sub/y", b"y")]);
        let out = env.run(&["mv", "dir", &format!("{base}/d/")]);
        assert_eq!(code(&out), 2);
        assert!(stderr(&out).contains("add --recursive"), "{}", stderr(&out));
        env.ok(&["mv", "-r", "dir", &format!("{base}/d/")]);
        assert_eq!(files_under(&env.path("dir")), Vec::<String>::new());
        assert_eq!(keys_under(env, &format!("{base}/d")), ["sub/y", "x"]);
        env.ok(&["mv", "-r", &format!("{base}/d"), "back"]);
        assert_eq!(files_under(&env.path("back")), ["sub/y", "x"]);
        assert_eq!(keys_under(env, &format!("{base}/d")), Vec::<String>::new());
        if env.s3.is_some() {
            // SeaweedFS folds `n//k` into `n/k`: refused (by the key probe, else by
            // the move's same-object proof), and its new metadata is not applied.
            env.ok(&["cp", "back/x", &format!("{base}/n/k")]);
            let out = env.run(&[
                "mv",
                "--metadata",
                "x=y",
                &format!("{base}/n/k"),
                &format!("{base}/n//k"),
            ]);
            assert_eq!(code(&out), 2, "{}", stderr(&out));
            assert!(stderr(&out).contains(r#"as "n/k""#), "{}", stderr(&out));
            let stat = env.ok(&["stat", "--json", &format!("{base}/n/k")]);
            assert!(!stat.contains("\"x\""), "{stat}");
        }
    });
}

/// With --json, cp and mv print nothing but JSON on stdout — one object per
/// transfer, then the summary — for one file, stdin, one object, copies between
/// objects and batches alike, failures included.
#[test]
fn cp_and_mv_json_print_nothing_but_json() {
    on_each_store(|env, base| {
        std::fs::write(env.path("f"), "data").unwrap();
        write_tree(&env.path("dir"), &[("a", b"a"), ("b", b"b")]);
        let k = |k: &str| format!("{base}/{k}");
        let local = format!("local://{}", bucket());
        env.ok(&["mb", &local]);
        let runs: Vec<(Vec<String>, &str)> = vec![
            (vec!["cp".into(), "f".into(), k("j/k")], "upload"),
            (
                vec!["cp".into(), "--dry-run".into(), "f".into(), k("j/dry")],
                "upload",
            ),
            (vec!["cp".into(), k("j/k"), "f2".into()], "download"),
            (vec!["cp".into(), k("j/k"), k("j/k2")], "copy"),
            (
                vec!["cp".into(), "-r".into(), "dir".into(), k("j/dir/")],
                "upload",
            ),
            (
                vec![
                    "cp".into(),
                    "-r".into(),
                    "--dry-run".into(),
                    "dir".into(),
                    k("j/dir/"),
                ],
                "upload",
            ),
            (vec!["cp".into(), k("j/dir/*"), k("j/dir2/")], "copy"),
            (vec!["mv".into(), "f2".into(), k("j/k3")], "move"),
            (vec!["mv".into(), k("j/k3"), "f3".into()], "move"),
            (vec!["mv".into(), k("j/k2"), k("j/k4")], "move"),
            (
                vec!["mv".into(), "-r".into(), k("j/dir2"), k("j/dir3/")],
                "move",
            ),
            (
                vec!["mv".into(), "-r".into(), k("j/dir3"), "dir3".into()],
                "move",
            ),
            (vec!["cp".into(), k("j/k"), format!("{local}/k")], "copy"),
        ];
        for (args, op) in &runs {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.insert(1, "--json");
            let (c, lines) = json_lines(env, &args);
            assert_eq!(c, 0, "{args:?}: {lines:?}");
            let dry = args.contains(&"--dry-run");
            let (last, each) = match dry {
                // A plan, as sync's: no summary.
                true => (&serde_json::Value::Null, &lines[..]),
                false => lines.split_last().expect("lines"),
            };
            assert!(dry || last["summary"].is_object(), "{args:?}: {lines:?}");
            assert!(!each.is_empty(), "{args:?}");
            for l in each {
                assert_eq!(l["op"], *op, "{args:?}: {l}");
                assert!(dry == (l["dry_run"] == true), "{args:?}: {l}");
                assert!(dry || l["error"].is_null(), "{args:?}: {l}");
            }
            if !dry {
                assert_eq!(last["summary"]["objects"], each.len(), "{args:?}");
            }
        }
        // stdin, and a failure: still only JSON, the error in its object.
        let out = env.run_stdin(&["cp", "--json", "-", &k("j/stdin")], b"in");
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let first: serde_json::Value =
            serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
        assert_eq!(
            (first["op"].as_str(), first["path"].as_str()),
            (Some("upload"), Some("-"))
        );
        let (c, lines) = json_lines(env, &["cp", "--json", &k("j/missing"), "x"]);
        assert_eq!(c, 1);
        assert!(
            lines[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("not found")),
            "{lines:?}"
        );
        assert_eq!(lines[1]["summary"]["failures"], 1, "{lines:?}");
        env.ok(&["rb", "--force", &local]);
    });
}

/// Runs a command whose stdout must be JSON objects only, one a line.
fn json_lines(env: &Env, args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let out = env.run(args);
    let lines = stdout(&out)
        .lines()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v.is_object() => v,
            _ => panic!("{args:?} printed a line that is no JSON object: {l:?}"),
        })
        .collect();
    (code(&out), lines)
}

fn has_op(lines: &[serde_json::Value], op: &str, field: &str, value: &str) -> bool {
    lines.iter().any(|l| l["op"] == op && l[field] == value)
}

#[test]
fn sync_json_prints_nothing_but_json() {
    on_each_store(|env, base| {
        let www = format!("{base}/www");
        write_tree(&env.path("site"), &[("a", b"a"), ("gone", b"g")]);
        env.ok(&["sync", "site", &www]);
        std::fs::remove_file(env.path("site/gone")).unwrap();
        std::os::unix::fs::symlink("nowhere", env.path("site/dangling")).unwrap();
        std::fs::write(env.path("site/new"), "n").unwrap();
        let up = ["sync", "--json", "--delete", "site", www.as_str()];

        let (c, plan) = json_lines(env, &[&up[..], &["--dry-run"]].concat());
        assert_eq!(c, 0);
        assert!(plan
            .iter()
            .all(|l| l["dry_run"] == true || l["op"] == "skip"));
        let key = |k: &str| format!("{}/{k}", www.splitn(4, '/').nth(3).unwrap());
        assert!(has_op(&plan, "upload", "key", &key("new")), "{plan:?}");
        assert!(has_op(&plan, "delete", "key", &key("gone")), "{plan:?}");
        assert!(has_op(&plan, "skip", "path", "site/dangling"), "{plan:?}");
        assert_eq!(
            keys_under(env, &www),
            ["a", "gone"],
            "a dry run changes nothing"
        );

        let (c, done) = json_lines(env, &up);
        assert_eq!(c, 0);
        assert!(has_op(&done, "upload", "key", &key("new")), "{done:?}");
        assert!(has_op(&done, "delete", "key", &key("gone")), "{done:?}");
        assert!(has_op(&done, "skip", "path", "site/dangling"), "{done:?}");
        let s = &done.last().unwrap()["summary"];
        assert_eq!(
            (s["objects"].as_u64(), s["deleted"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(s["skipped"], 1);

        // Down, through a conflict, then --delete.
        write_tree(
            &env.path("dest"),
            &[("a", b"x"), ("stray", b"s"), ("new/inside", b"i")],
        );
        let (c, lines) = json_lines(env, &["sync", "--json", &www, "dest"]);
        assert_eq!(c, 1);
        assert!(has_op(&lines, "conflict", "path", "dest/new"), "{lines:?}");
        assert!(has_op(&lines, "download", "path", "dest/a"), "{lines:?}");
        assert_eq!(lines.last().unwrap()["summary"]["failures"], 1);
        let (c, lines) = json_lines(env, &["sync", "--json", "--delete", &www, "dest"]);
        assert_eq!(c, 0, "{lines:?}");
        assert!(has_op(&lines, "delete", "path", "dest/stray"), "{lines:?}");
        assert!(has_op(&lines, "rmdir", "path", "dest/new"), "{lines:?}");
        assert!(has_op(&lines, "download", "path", "dest/new"), "{lines:?}");
        assert_eq!(lines.last().unwrap()["summary"]["deleted"], 3);

        // A refusal, too.
        let typo = format!("{base}/typo");
        let (c, lines) = json_lines(env, &["sync", "--json", "--delete", &typo, "dest"]);
        assert_eq!(c, 2);
        assert!(!lines.is_empty() && lines.iter().all(|l| l["refused"] == true));
    });
}

// ------------------------------------------------------------------ wildcards, moves in place, messages

/// One wildcard rule for cp, mv and rm: an existing key of exactly the text given
/// wins, `\` escapes, a pattern that matches nothing fails, --dry-run lists matches.
#[test]
fn wildcards_never_widen_a_literal_key() {
    for (e, scheme) in stores() {
        let b = format!("{scheme}{}", bucket());
        e.ok(&["mb", &b]);
        for (k, v) in [
            ("gl/[x].txt", "brackets"),
            ("gl/x.txt", "plain"),
            ("gl/st*r", "star"),
            ("gl/stXr", "x"),
        ] {
            std::fs::write(e.path("v"), v).unwrap();
            e.ok(&["cp", "v", &format!("{b}/{k}")]);
        }
        // The exact key wins over the pattern it also is.
        e.ok(&["cp", &format!("{b}/gl/[x].txt"), "got1"]);
        assert_eq!(std::fs::read(e.path("got1")).unwrap(), b"brackets");
        // Escapes make a literal key, to a file and to stdout alike.
        e.ok(&["cp", &format!("{b}/gl/\\[x\\].txt"), "got2"]);
        assert_eq!(std::fs::read(e.path("got2")).unwrap(), b"brackets");
        let out = e.ok(&["cp", &format!("{b}/gl/\\[x\\].txt"), "-"]);
        assert_eq!(out, "brackets");
        let out = e.run(&["cp", &format!("{b}/gl/*.txt"), "-"]);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        if scheme == "local://" {
            // The exact text wins with its escapes too: `e\*` is the key `e\*`
            // when there is one (SeaweedFS cannot hold a `\`).
            for (k, v) in [("gl/e*", "star"), ("gl/e\\*", "backslash")] {
                e.run_stdin(&["cp", "-", &format!("{b}/{k}")], v.as_bytes());
            }
            e.ok(&["rm", &format!("{b}/gl/e\\*")]);
            assert_eq!(e.ok(&["cat", &format!("{b}/gl/e*")]), "star");
            assert_eq!(code(&e.run(&["stat", &format!("{b}/gl/e\\*")])), 1);
            e.ok(&["rm", &format!("{b}/gl/e\\*")]);
            assert_eq!(code(&e.run(&["stat", &format!("{b}/gl/e*")])), 1);
        }
        // A destructive command with the literal text moves only that object.
        e.ok(&["mv", &format!("{b}/gl/st*r"), &format!("{b}/gl2/")]);
        assert_eq!(e.ok(&["cat", &format!("{b}/gl2/st*r")]), "star");
        e.ok(&["stat", &format!("{b}/gl/stXr")]);
        // A real pattern: --dry-run lists the matches, rm deletes exactly them.
        let dry = e.ok(&["rm", "--dry-run", &format!("{b}/gl/*.txt")]);
        assert_eq!(dry.lines().count(), 2, "{dry}");
        e.ok(&["rm", &format!("{b}/gl/*.txt")]);
        let left = e.ok(&["ls", "-r", &format!("{b}/gl")]);
        assert!(left.contains("stXr") && !left.contains(".txt"), "{left}");
        for cmd in [
            &["rm", &format!("{b}/gl/*.none")][..],
            &["cp", &format!("{b}/gl/*.none"), "d/"],
        ] {
            let out = e.run(cmd);
            assert_eq!(code(&out), 1, "{cmd:?}");
            assert!(
                stderr(&out).contains("no objects match"),
                "{}",
                stderr(&out)
            );
        }
    }
}

/// `mv` onto the same objects with new headers (the in-place retag idiom) replaces
/// their headers and deletes nothing.
#[test]
fn moving_objects_onto_themselves_with_new_headers_keeps_them() {
    for (e, scheme) in stores() {
        let b = format!("{scheme}{}", bucket());
        e.ok(&["mb", &b]);
        for k in ["logs/a.json", "logs/b.json", "logs/c.txt"] {
            std::fs::write(e.path("v"), k).unwrap();
            e.ok(&["cp", "v", &format!("{b}/{k}")]);
        }
        e.ok(&[
            "mv",
            &format!("{b}/logs/*.json"),
            &format!("{b}/logs/"),
            "--cache-control",
            "max-age=60",
        ]);
        e.ok(&[
            "mv",
            &format!("{b}/logs/c.txt"),
            &format!("{b}/logs/c.txt"),
            "--metadata",
            "stage=done",
        ]);
        for k in ["logs/a.json", "logs/b.json"] {
            assert_eq!(e.ok(&["cat", &format!("{b}/{k}")]), k);
            let stat = e.ok(&["stat", "--json", &format!("{b}/{k}")]);
            assert!(stat.contains("max-age=60"), "{stat}");
        }
        let stat = e.ok(&["stat", "--json", &format!("{b}/logs/c.txt")]);
        assert!(stat.contains("\"stage\":\"done\""), "{stat}");
    }
}

/// Messages that used to mislead: `du -H` units, `cat` of a damaged object after its
/// bytes went out, `--expires` in the same forms as `--older-than`.
#[test]
fn messages_say_what_happened() {
    let e = Env::new();
    e.ok(&["mb", "local://msgs"]);
    std::fs::write(e.path("f"), vec![1u8; 120_000]).unwrap();
    e.ok(&["cp", "f", "local://msgs/d/f"]);
    let du = e.ok(&["du", "-H", "local://msgs/d"]);
    assert!(du.starts_with("117.2 KiB in 1 objects"), "{du}");
    let du = e.ok(&["du", "local://msgs/d"]);
    assert!(du.starts_with("120000 bytes in 1 objects"), "{du}");
    // Damage the stored bytes (same size): cat says how much it already wrote.
    let blobs = e.path("store/blobs");
    let blob = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut data = std::fs::read(&blob).unwrap();
    data[100_000] ^= 0xff;
    std::fs::write(&blob, data).unwrap();
    let out = e.run(&["cat", "local://msgs/d/f"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("120000 bytes of it had already been written"),
        "{err}"
    );
    assert!(!err.contains("nothing was kept"), "{err}");
    assert_eq!(out.stdout.len(), 120_000);
    // A damaged download to a file keeps nothing, and says so.
    let out = e.run(&["cp", "local://msgs/d/f", "copy"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("nothing was kept"),
        "{}",
        stderr(&out)
    );
    assert!(!e.path("copy").exists());
    // Durations: seconds or units, everywhere.
    for (exp, want) in [("0", 2), ("8d", 2), ("-5", 2), ("10x", 2)] {
        let out = e.run(&["presign", "--expires", exp, "s3://bkt/k"]);
        assert_eq!(code(&out), want, "--expires {exp}: {}", stderr(&out));
    }
    e.ok(&["cleanup", "local://msgs", "--older-than", "3600"]);
}

/// presign --stdin keeps keys as given (trailing spaces are part of a key).
#[test]
fn presign_stdin_keeps_keys_whole() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let out = e.run_stdin(
        &["presign", "--stdin", "--expires", "10m"],
        format!("s3://{b}/trailing \ns3://{b}/plain\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let urls = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = urls.lines().collect();
    assert_eq!(lines.len(), 2, "{urls}");
    assert!(lines[0].contains("/trailing%20?"), "{}", lines[0]);
    assert!(lines[0].contains("X-Amz-Expires=600"), "{}", lines[0]);
}

// ------------------------------------------------------------------ a closed stdout
// (`stor … | head`: see crates/stor-cli/src/output.rs for the policy)

/// Runs `stor ARGS` with stdout into a pipe whose reader takes one line and closes
/// it, as `stor … | head -1` does; returns that line and how the command ended.
fn piped_into_head_1(env: &Env, args: &[&str]) -> (String, Output) {
    use std::io::BufRead;
    let mut child = env
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone: the pipe is closed.
    (first, child.wait_with_output().unwrap())
}

/// Regression: `stor cp -r` of 3,003 files piped into `head` stopped after 1,852
/// objects and exited 0, leaving what was in flight to chance. A copy now runs to
/// its end whatever happens to its stdout, and its status is the copy's.
#[test]
fn a_closed_stdout_never_leaves_a_half_done_copy() {
    on_each_store(|env, base| {
        // 600 lines of ~450 bytes overflow stdout's 64 KiB buffer four times over,
        // so the reader has closed the pipe long before the copy ends; the three
        // big files go up in parts (5 MiB threshold below), last.
        let deep = format!("{}/{}", "a".repeat(100), "b".repeat(100));
        let mut want: Vec<(String, Vec<u8>)> = (0..600)
            .map(|i| {
                let data = format!("file {i}\n").repeat(i % 7 + 1).into_bytes();
                (format!("{deep}/f{i:03}.txt"), data)
            })
            .collect();
        for i in 0..3u8 {
            let data: Vec<u8> = (0..6u32 << 20).map(|j| (j % 251) as u8 ^ i).collect();
            want.push((format!("z-big-{i}.bin"), data));
        }
        for (rel, data) in &want {
            write_tree(&env.path("d"), &[(rel.as_str(), data.as_slice())]);
        }
        std::fs::write(
            env.path("cfg.json"),
            r#"{"storageConfig": {"multipart_threshold": 5242880}}"#,
        )
        .unwrap();
        let up = format!("{base}/up");
        let cfg = ["--config", "cfg.json", "--part-size", "5MiB"];

        let args = [&cfg[..], &["cp", "-r", "d", &up]].concat();
        let (first, out) = piped_into_head_1(env, &args);
        assert!(first.starts_with("upload: "), "{first:?}");
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Done: 603 objects") && stderr(&out).contains(" 0 failures"),
            "{}",
            stderr(&out)
        );
        let mut names: Vec<String> = want.iter().map(|(r, _)| r.clone()).collect();
        names.sort();
        assert_eq!(keys_under(env, &up), names);
        // No multipart upload left pending (none is older than now).
        let pending = env.ok(&["cleanup", "--dry-run", "--older-than", "0", base]);
        assert_eq!(pending, "", "pending multipart uploads");
        if env.s3.is_none() {
            let tmp = files_under(&env.path("store/tmp"));
            assert!(tmp.is_empty(), "local store temp files: {tmp:?}");
        }

        // Down the same way: every file whole, no temp file left.
        let args = [&cfg[..], &["cp", "-r", &up, "down"]].concat();
        let (first, out) = piped_into_head_1(env, &args);
        assert!(first.starts_with("download: "), "{first:?}");
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Done: 603 objects"),
            "{}",
            stderr(&out)
        );
        assert_eq!(files_under(&env.path("down")), names);
        for (rel, data) in &want {
            let got = std::fs::read(env.path("down").join(rel)).unwrap();
            assert!(&got == data, "{rel} differs");
        }
    });
}

/// Reading commands end at once on a closed stdout, quietly, with status 0:
/// nothing they do is left half-done.
#[test]
fn reading_commands_end_quietly_on_a_closed_stdout() {
    let e = Env::new();
    e.ok(&["mb", "local://reads"]);
    let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(e.path("big.txt"), &text).unwrap();
    e.ok(&["cp", "big.txt", "local://reads/big.txt"]);
    std::fs::create_dir(e.path("many")).unwrap();
    for i in 0..3000 {
        std::fs::write(e.path(&format!("many/{i:04}")), b"x").unwrap();
    }
    e.ok(&["cp", "-r", "-q", "many", "local://reads/many"]);
    for args in [
        &["cat", "local://reads/big.txt"][..],
        &["cp", "local://reads/big.txt", "-"],
        &["ls", "-r", "local://reads/many"],
        &["ls", "-r", "--json", "local://reads/many"],
        &["cp", "-r", "--dry-run", "local://reads/many", "back"],
    ] {
        let (first, out) = piped_into_head_1(&e, args);
        assert!(!first.is_empty(), "{args:?}");
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
    assert!(!e.path("back").exists(), "a dry run wrote nothing");
}

#[test]
fn help_lists_the_global_options_under_their_own_heading() {
    let e = Env::new();
    let help = e.ok(&["cp", "--help"]);
    let (own, globals) = help
        .split_once("\nGlobal options:\n")
        .unwrap_or_else(|| panic!("no Global options heading: {help}"));
    for flag in [
        "--endpoint-url",
        "--region",
        "--profile",
        "--config",
        "--local-root",
        "--concurrency",
        "--part-size",
        "--quiet",
        "--verbose",
    ] {
        assert!(
            globals.contains(flag) && !own.contains(flag),
            "{flag}: {help}"
        );
    }
    for flag in [
        "--recursive",
        "--dry-run",
        "--include",
        "--json",
        "--expected-size",
        "--metadata",
        "--sse",
    ] {
        assert!(
            own.contains(flag) && !globals.contains(flag),
            "{flag}: {help}"
        );
    }
}

/// Any other write error (a full disk behind `> file`) is said once and makes the
/// status 1: a reading command stops there, a changing one still finishes its work.
#[test]
fn a_stdout_that_fails_is_said_once_and_fails_the_command() {
    let e = Env::new();
    e.ok(&["mb", "local://full"]);
    std::fs::create_dir(e.path("many")).unwrap();
    for i in 0..2000 {
        std::fs::write(e.path(&format!("many/{i:04}")), b"x").unwrap();
    }
    let to_dev_full = |args: &[&str]| {
        let full = std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .unwrap();
        e.cmd(args).stdout(full).output().unwrap()
    };
    let out = to_dev_full(&["cp", "-r", "many", "local://full/many"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        count(&stderr(&out), "writing to stdout failed"),
        1,
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("Done: 2000 objects"),
        "{}",
        stderr(&out)
    );
    assert_eq!(keys_under(&e, "local://full/many").len(), 2000);
    let out = to_dev_full(&["ls", "-r", "local://full/many"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        count(&stderr(&out), "writing to stdout failed"),
        1,
        "{}",
        stderr(&out)
    );
}

/// `/dev/stdout` (and `/dev/fd/N`) is written through the open descriptor: a
/// redirected file is appended to, never replaced; a pipe gets the bytes.
#[test]
fn dev_stdout_is_the_open_descriptor_not_the_file_behind_it() {
    let e = Env::new();
    e.ok(&["mb", "local://fds"]);
    std::fs::write(e.path("obj"), b"OBJ\n").unwrap();
    e.ok(&["cp", "obj", "local://fds/k"]);
    std::fs::write(e.path("log.txt"), b"line1\nline2\n").unwrap();
    let stor = env!("CARGO_BIN_EXE_stor");
    for (cmd, want) in [
        (
            format!("{stor} cp local://fds/k /dev/stdout >> log.txt"),
            "line1\nline2\nOBJ\n",
        ),
        (
            format!("{stor} cp local://fds/k /dev/fd/1 >> log.txt"),
            "line1\nline2\nOBJ\nOBJ\n",
        ),
        // Another descriptor of the shell's: written through it too.
        (
            format!("{stor} cp local://fds/k /dev/fd/5 5>> log.txt"),
            "line1\nline2\nOBJ\nOBJ\nOBJ\n",
        ),
    ] {
        let out = Command::new("sh")
            .args(["-c", &cmd])
            .current_dir(e.dir.path())
            .env("STOR_LOCAL_ROOT", e.path("store"))
            .env("HOME", e.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(e.path("log.txt")).unwrap(),
            want,
            "{cmd}"
        );
    }
    let out = Command::new("sh")
        .args(["-c", &format!("{stor} cp local://fds/k /dev/stdout | cat")])
        .current_dir(e.dir.path())
        .env("STOR_LOCAL_ROOT", e.path("store"))
        .env("HOME", e.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"OBJ\n");
}

// ------------------------------------------------------------------ issue 17

/// `cp --no-clobber` writes only keys that hold nothing — one file, a tree, an
/// object copy — and says what it skipped (exit 0); `--if-match` replaces only the
/// version it names (a stale ETag fails, exit 1, changing nothing); neither applies
/// to files.
#[test]
fn no_clobber_skips_what_exists_and_if_match_replaces_only_that_version() {
    let e = Env::new();
    e.ok(&["mb", "local://cond"]);
    write_tree(
        e.path("").as_path(),
        &[
            ("a.txt", b"first"),
            ("b.txt", b"second"),
            ("d/x", b"x"),
            ("d/y", b"y"),
        ],
    );
    e.ok(&["cp", "a.txt", "local://cond/k"]);
    let out = e.run(&["cp", "--no-clobber", "b.txt", "local://cond/k"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the destination exists (--no-clobber)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(e.ok(&["cat", "local://cond/k"]), "first");
    e.ok(&["cp", "-n", "b.txt", "local://cond/new"]);
    assert_eq!(e.ok(&["cat", "local://cond/new"]), "second");
    // A tree: what exists stays, the rest goes up.
    e.ok(&["cp", "local://cond/k", "local://cond/d/x"]);
    let out = e.run(&["cp", "-r", "-n", "d", "local://cond/d/"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("skipped upload:"), "{}", stderr(&out));
    assert_eq!(e.ok(&["cat", "local://cond/d/x"]), "first");
    assert_eq!(e.ok(&["cat", "local://cond/d/y"]), "y");
    // Skips are not failures in the summary (text or JSON); they were counted as both.
    let out = e.run(&["cp", "-r", "-n", "d", "local://cond/d/"]);
    assert!(
        stderr(&out).contains("0 objects") && stderr(&out).contains("0 failures, 2 skipped"),
        "{}",
        stderr(&out)
    );
    let out = e.ok(&["cp", "-r", "-n", "--json", "d", "local://cond/d/"]);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let summary = &last["summary"];
    assert_eq!(
        (
            &summary["objects"],
            &summary["failures"],
            &summary["skipped"]
        ),
        (&0.into(), &0.into(), &2.into()),
        "{out}"
    );
    // Object to object.
    let out = e.run(&["cp", "-n", "local://cond/new", "local://cond/k"]);
    assert_eq!(code(&out), 0);
    assert_eq!(e.ok(&["cat", "local://cond/k"]), "first");
    // If-Match: a stale ETag changes nothing; the current one writes.
    let etag = |e: &Env| {
        let v: serde_json::Value =
            serde_json::from_str(&e.ok(&["stat", "--json", "local://cond/k"])).unwrap();
        v["etag"].as_str().unwrap().to_owned()
    };
    let before = etag(&e);
    e.ok(&["cp", "--if-match", &before, "b.txt", "local://cond/k"]);
    assert_eq!(e.ok(&["cat", "local://cond/k"]), "second");
    let out = e.run(&["cp", "--if-match", &before, "a.txt", "local://cond/k"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("precondition failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(e.ok(&["cat", "local://cond/k"]), "second");
    // Files are not checked: refused, as is --if-match over many objects.
    let out = e.run(&["cp", "-n", "local://cond/k", "out.txt"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!e.path("out.txt").exists());
    let out = e.run(&["cp", "-r", "--if-match", &before, "d", "local://cond/d/"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// `--tag` sets tags on upload; `stat` shows them (`--json`: a `tags` map); bad
/// tags are refused before anything is written.
#[test]
fn tags_given_on_upload_show_in_stat() {
    let e = Env::new();
    e.ok(&["mb", "local://tags"]);
    std::fs::write(e.path("f"), b"data").unwrap();
    e.ok(&[
        "cp",
        "--tag",
        "team=data eng",
        "--tag",
        "tier=hot",
        "f",
        "local://tags/f",
    ]);
    let stat = e.ok(&["stat", "local://tags/f"]);
    assert!(stat.contains("Tag:           team=data eng"), "{stat}");
    assert!(stat.contains("Tag:           tier=hot"), "{stat}");
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(&["stat", "--json", "local://tags/f"])).unwrap();
    assert_eq!(
        v["tags"],
        serde_json::json!({"team": "data eng", "tier": "hot"})
    );
    // Copies keep them.
    e.ok(&["cp", "local://tags/f", "local://tags/g"]);
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(&["stat", "--json", "local://tags/g"])).unwrap();
    assert_eq!(v["tags"]["tier"], "hot");
    let out = e.run(&["cp", "--tag", "a&b=c", "f", "local://tags/bad"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid tag"), "{}", stderr(&out));
    assert_eq!(code(&e.run(&["stat", "local://tags/bad"])), 1);
}

/// `--bwlimit` reaches the config (both ways, or UP:DOWN); bad rates are usage
/// errors. (That the limit paces transfers is the library's test, on a paused
/// clock; the measured rate is in `bench/bwlimit.sh`.)
#[test]
fn bwlimit_is_one_global_flag() {
    let e = Env::new();
    let show = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["config", "show"]);
        serde_json::from_str(&e.ok(&all)).unwrap()
    };
    assert_eq!(
        show(&["--bwlimit", "50M"])["storageConfig"]["max_bandwidth"],
        "50MiB"
    );
    assert_eq!(
        show(&["--bwlimit", "10MiB:50MiB"])["storageConfig"]["max_bandwidth"],
        "10MiB:50MiB"
    );
    assert!(show(&["--bwlimit", "off"])["storageConfig"]["max_bandwidth"].is_null());
    for bad in ["fast", "12", "5X"] {
        let out = e.run(&["--bwlimit", bad, "config", "show"]);
        assert_eq!(code(&out), 2, "{bad}");
        assert!(stderr(&out).contains("bandwidth limit"), "{}", stderr(&out));
    }
}

/// Versions from the command line, on SeaweedFS: turn versioning on, list versions
/// (text and JSON rows with `version_id`), read one (`stat`, `cat`, `cp`,
/// `presign`), delete the current object (a marker), restore an old version by
/// copying it over its key, remove one version, purge the prefix.
#[test]
fn versions_from_the_command_line() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    let root = format!("s3://{b}");
    let k = format!("s3://{b}/doc.txt");
    e.ok(&["mb", &root]);
    assert!(e
        .ok(&["versioning", &root])
        .contains("versioning unversioned"));
    assert!(e
        .ok(&["versioning", &root, "enable"])
        .contains("versioning enabled"));
    for body in ["one", "two"] {
        std::fs::write(e.path("f"), body).unwrap();
        e.ok(&["cp", "f", &k]);
    }
    let rows: Vec<serde_json::Value> = e
        .ok(&["ls", "--all-versions", "--json", &root])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["is_latest"], true);
    let (v2, v1) = (
        rows[0]["version_id"].as_str().unwrap().to_owned(),
        rows[1]["version_id"].as_str().unwrap().to_owned(),
    );
    let text = e.ok(&["ls", "--all-versions", &root]);
    assert!(
        text.lines()
            .any(|l| l.contains(&v1) && l.ends_with(" doc.txt")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&v2) && l.contains("LATEST")),
        "{text}"
    );
    let stat = e.ok(&["stat", "--version-id", &v1, &k]);
    assert!(stat.contains(&format!("Version-Id:    {v1}")), "{stat}");
    assert!(stat.contains("Size:          3"), "{stat}");
    assert_eq!(e.ok(&["cat", "--version-id", &v1, &k]), "one");
    e.ok(&["cp", "--version-id", &v1, &k, "old.txt"]);
    assert_eq!(std::fs::read(e.path("old.txt")).unwrap(), b"one");
    let url = e.ok(&["presign", "--version-id", &v1, &k]);
    let got = ureq::get(url.trim()).call().unwrap().into_string().unwrap();
    assert_eq!(got, "one");
    // Deleted: a marker hides it; restoring v1 brings it back.
    e.ok(&["rm", &k]);
    assert_eq!(code(&e.run(&["cat", &k])), 1);
    let text = e.ok(&["ls", "--all-versions", &root]);
    assert!(text.contains("DELETED"), "{text}");
    e.ok(&["cp", "--version-id", &v1, &k, &k]);
    assert_eq!(e.ok(&["cat", &k]), "one");
    // One version for good, then the whole prefix.
    e.ok(&["rm", "--version-id", &v2, &k]);
    assert_eq!(code(&e.run(&["cat", "--version-id", &v2, &k])), 1);
    let out = e.ok(&["rm", "-r", "--all-versions", &root]);
    assert_eq!(out.matches("delete:").count(), 3, "{out}");
    assert!(e.ok(&["ls", "--all-versions", &root]).trim().is_empty());
    e.ok(&["rb", &root]);
}

/// Copies and moves between stores keep the source's tags, as copies within a
/// store do: local → S3, S3 → local (mv: the source is gone, its tags must not
/// be), and `cp -r` across. They were dropped (metadata was kept).
#[test]
fn copies_and_moves_between_stores_keep_tags() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    let s3 = format!("s3://{b}");
    e.ok(&["mb", &s3]);
    e.ok(&["mb", "local://xtags"]);
    std::fs::write(e.path("f"), b"data").unwrap();
    let tags = |u: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&e.ok(&["stat", "--json", u])).unwrap();
        v["tags"].clone()
    };
    let want = serde_json::json!({"env": "prod \u{fc}", "team": "data"});
    let tagged = ["--tag", "team=data", "--tag", "env=prod \u{fc}"];
    e.ok(&[&["cp"][..], &tagged, &["f", "local://xtags/t1"]].concat());
    e.ok(&["cp", "local://xtags/t1", &format!("{s3}/fromlocal")]);
    assert_eq!(tags(&format!("{s3}/fromlocal")), want);
    e.ok(&[&["cp"][..], &tagged, &["f", &format!("{s3}/t5")]].concat());
    e.ok(&["mv", &format!("{s3}/t5"), "local://xtags/froms3"]);
    assert_eq!(tags("local://xtags/froms3"), want);
    for k in ["a", "b"] {
        e.ok(&[&["cp"][..], &tagged, &["f", &format!("{s3}/rdir/{k}")]].concat());
    }
    e.ok(&["cp", "-r", &format!("{s3}/rdir/"), "local://xtags/rdir/"]);
    assert_eq!(tags("local://xtags/rdir/a"), want);
    assert_eq!(tags("local://xtags/rdir/b"), want);
    e.ok(&["rm", "-r", &format!("{s3}/")]);
    e.ok(&["rb", &s3]);
}

/// The key-name probe leaves nothing behind in a versioned bucket: its plain
/// deletes only added delete markers, so each upload of a key with `?` left a
/// version and a marker under a fresh `.stor-probe-…/`.
#[test]
fn the_key_probe_leaves_no_versions_in_a_versioned_bucket() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    let root = format!("s3://{b}");
    e.ok(&["mb", &root]);
    e.ok(&["versioning", &root, "enable"]);
    let out = e.run_stdin(&["cp", "-", &format!("{root}/t/q?x")], b"x");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed = e.ok(&["ls", "-r", "--all-versions", &format!("{root}/t/")]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains("q?x") && !listed.contains("stor-probe"),
        "{listed}"
    );
    e.ok(&["rm", "-r", "--all-versions", "-q", &root]);
    e.ok(&["rb", &root]);
}

/// `rm --version-id` with a version that is not there deletes nothing and fails
/// (exit 1), on a bucket never versioned (the engines dropped the id and deleted
/// the live object, exit 0) and on a versioned one (it said "delete", exit 0);
/// `cat`/`stat --version-id` do not answer with the current object.
#[test]
fn a_version_that_is_not_there_is_never_the_live_object() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    let k = format!("s3://{b}/bogusver");
    e.ok(&["mb", &format!("s3://{b}")]);
    let out = e.run_stdin(&["cp", "-", &k], b"keep");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ghost = "67129e71fe0a8a0b4d1794fb43cc9d7d";
    for id in ["nosuch", ghost] {
        let out = e.run(&["rm", "--version-id", id, &k]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(stderr(&out).contains(id), "{}", stderr(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("delete:"));
        assert_eq!(e.ok(&["cat", &k]), "keep");
    }
    assert_eq!(code(&e.run(&["cat", "--version-id", ghost, &k])), 1);
    assert_eq!(code(&e.run(&["stat", "--version-id", ghost, &k])), 1);
    e.ok(&["versioning", &format!("s3://{b}"), "enable"]);
    let out = e.run(&["rm", "--version-id", ghost, &k]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(e.ok(&["cat", &k]), "keep");
    e.ok(&["rm", "-r", "--all-versions", "-q", &format!("s3://{b}")]);
    e.ok(&["rb", &format!("s3://{b}")]);
}

/// `rm -r --all-versions` over more than a page of versions (10 keys x 110) removes
/// them all on moto, which ends a version listing early when its markers name
/// versions just deleted (the purge left 96 and said it was done).
#[test]
fn a_purge_of_more_than_a_page_of_versions_removes_them_all() {
    let Some(e) = Env::with_moto() else { return };
    let b = bucket();
    let root = format!("s3://{b}");
    e.ok(&["mb", &root]);
    e.ok(&["versioning", &root, "enable"]);
    for k in 0..10 {
        // One presigned PUT, sent 110 times: 110 versions without 110 processes.
        let url = e.ok(&["presign", "--method", "put", &format!("{root}/d/k{k}")]);
        for i in 0..110 {
            ureq::put(url.trim()).send_string(&i.to_string()).unwrap();
        }
    }
    let out = e.run_stdin(&["cp", "-", &format!("{root}/keep")], b"x");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed = |p: &str| e.ok(&["ls", "-r", "--all-versions", p]).lines().count();
    assert_eq!(listed(&format!("{root}/d/")), 1100);
    let out = e.run(&["rm", "-r", "--all-versions", "-q", &format!("{root}/d")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(listed(&format!("{root}/d/")), 0);
    assert_eq!(listed(&root), 1, "only keep is left");
    e.ok(&["rm", "-r", "--all-versions", "-q", &root]);
    e.ok(&["rb", &root]);
}

/// `presign --method post` prints `{"url": …, "fields": {…}}`; the form (sent by
/// curl, as a browser would) uploads a small file under the prefix, and SeaweedFS
/// refuses one over `--max-size`.
#[test]
fn presign_post_prints_a_form_the_store_enforces() {
    let Some(e) = Env::with_s3() else { return };
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let form: serde_json::Value = serde_json::from_str(&e.ok(&[
        "presign",
        "--method",
        "post",
        "--max-size",
        "10",
        "--content-type",
        "text/plain",
        &format!("s3://{b}/inbox/"),
    ]))
    .unwrap();
    let post = |name: &str, data: &[u8]| -> u16 {
        std::fs::write(e.path(name), data).unwrap();
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
        for (k, v) in form["fields"].as_object().unwrap() {
            c.arg("--form-string")
                .arg(format!("{k}={}", v.as_str().unwrap()));
        }
        c.arg("-F").arg(format!("file=@{}", e.path(name).display()));
        c.arg(form["url"].as_str().unwrap());
        String::from_utf8(c.output().unwrap().stdout)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(post("small.txt", b"hello"), 204);
    assert_eq!(
        e.ok(&["cat", &format!("s3://{b}/inbox/small.txt")]),
        "hello"
    );
    assert_eq!(post("big.txt", b"more than ten bytes"), 400);
    assert_eq!(
        code(&e.run(&["stat", &format!("s3://{b}/inbox/big.txt")])),
        1
    );
    e.ok(&["rb", "--force", &format!("s3://{b}")]);
}

// ------------------------------------------------------------------ resume after kill -9

/// A TCP relay in front of the S3 server that counts the bytes going each way and,
/// once the counted direction has carried `stall_at` bytes, stops relaying it (the
/// process on the other side hangs mid-transfer until the test kills it). Every
/// byte stor sends or receives passes here, headers included.
struct Relay {
    url: String,
    up: std::sync::Arc<std::sync::atomic::AtomicU64>,
    down: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Stall uploads (true) or downloads (false) at this many bytes; 0: never.
    stall_at: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Connections accepted so far, and (when not 0) the last one a stall holds:
    /// those opened later pass.
    conns: std::sync::Arc<std::sync::atomic::AtomicU64>,
    held_upto: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    fn new(upstream: &str, stall_up: bool) -> Relay {
        use std::sync::atomic::AtomicU64;
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = upstream.trim_start_matches("http://").trim_end_matches('/');
        let target = target.to_owned();
        let (up, down, stall_at) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (conns, held_upto) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counters = (up.clone(), down.clone(), stall_at.clone());
        let (n, held) = (conns.clone(), held_upto.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let (up, down, stall) = counters.clone();
                let id = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let hold = Hold {
                    id,
                    upto: held.clone(),
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (stall_up, stall_down) = if stall_up {
                    (Some(stall.clone()), None)
                } else {
                    (None, Some(stall.clone()))
                };
                let hold2 = hold.clone();
                std::thread::spawn(move || pump(client, server, up, stall_up, hold));
                std::thread::spawn(move || pump(s2, c2, down, stall_down, hold2));
            }
        });
        Relay {
            url,
            up,
            down,
            stall_at,
            conns,
            held_upto,
        }
    }

    /// From now on the stall holds only the connections already open: a new
    /// process gets through.
    fn hold_only_open(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.held_upto.store(self.conns.load(SeqCst), SeqCst);
    }

    fn up(&self) -> u64 {
        self.up.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn down(&self) -> u64 {
        self.down.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn stall_at(&self, n: u64) {
        self.stall_at.store(n, std::sync::atomic::Ordering::SeqCst)
    }
    fn reset(&self) {
        self.up.store(0, std::sync::atomic::Ordering::SeqCst);
        self.down.store(0, std::sync::atomic::Ordering::SeqCst);
        self.held_upto.store(0, std::sync::atomic::Ordering::SeqCst);
        self.stall_at(0);
    }
}

/// Which connection a pump relays, and the last one a stall holds (0: all).
#[derive(Clone)]
struct Hold {
    id: u64,
    upto: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Copies `from` to `to`, counting; with `stall`, holds (never relays) the bytes
/// past that count while it is set.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stall: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    hold: Hold,
) {
    use std::io::Read;
    use std::sync::atomic::Ordering::SeqCst;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let upto = hold.upto.load(SeqCst);
            let held = upto == 0 || hold.id <= upto;
            let limit = match &stall {
                Some(s) if held => s.load(SeqCst),
                _ => 0,
            };
            let now = count.load(SeqCst);
            if limit > 0 && now >= limit {
                // Held: the transfer hangs here until the process is killed.
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            let take = if limit > 0 {
                chunk.len().min((limit - now) as usize)
            } else {
                chunk.len()
            };
            if to.write_all(&chunk[..take]).is_err() {
                let _ = from.shutdown(std::net::Shutdown::Both);
                return;
            }
            count.fetch_add(take as u64, SeqCst);
            chunk = &chunk[take..];
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Pseudo-random bytes (no two parts alike).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const MIB: u64 = 1024 * 1024;
/// The object of the kill tests: 8 parts of 5 MiB.
const OBJECT: u64 = 40 * MIB;
const PART: u64 = 5 * MIB;
/// What a transfer costs besides the object's bytes: request and response heads,
/// ListParts, CompleteMultipartUpload, the HEAD — a few KiB; bounded loosely.
const OVERHEAD: u64 = 256 * 1024;

impl Env {
    /// With moto's server, or `None` (skip) when it is not configured.
    fn with_moto() -> Option<Env> {
        let url = std::env::var("STOR_TEST_MOTO")
            .ok()
            .filter(|v| !v.is_empty());
        if url.is_none() && std::env::var("STOR_TEST_REQUIRE_SERVERS").as_deref() == Ok("1") {
            panic!("STOR_TEST_MOTO not set but STOR_TEST_REQUIRE_SERVERS=1");
        }
        let mut env = Env::new();
        env.s3 = Some(url?);
        Some(env)
    }

    /// `stor` through the relay, one part at a time (so at most one part is in
    /// flight when it is killed), journaling under this env's state dir.
    fn via(&self, relay: &Relay, args: &[&str]) -> Command {
        // Multipart from 5 MiB (the default threshold is 100 MiB).
        let cfg = self.path("resume-cfg.json");
        std::fs::write(
            &cfg,
            r#"{"storageConfig": {"multipart_threshold": 5242880}}"#,
        )
        .unwrap();
        let cfg = cfg.display().to_string();
        let mut full = vec![
            "--config",
            &cfg,
            "--concurrency",
            "1",
            "--part-size",
            "5MiB",
        ];
        full.extend_from_slice(args);
        let mut c = self.cmd(&full);
        c.env("AWS_ENDPOINT_URL", &relay.url)
            .env("STOR_STATE_DIR", self.path("state"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `args` through the relay, stalling the counted direction at `at`
    /// bytes, and kills the process (SIGKILL) once it stalled there.
    fn killed_at(&self, relay: &Relay, at: u64, up: bool, args: &[&str]) {
        relay.reset();
        relay.stall_at(at);
        let mut child = self.via(relay, args).spawn().unwrap();
        let count = || if up { relay.up() } else { relay.down() };
        let mut waited = 0;
        while count() < at {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("stor ended ({status}) before the kill at {at} bytes");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
            assert!(waited < 60_000, "stor never reached {at} bytes");
        }
        child.kill().unwrap(); // SIGKILL: nothing runs after it.
        child.wait().unwrap();
    }
}

#[test]
fn s3_upload_killed_midway_resumes_sending_only_what_is_missing() {
    let Some(e) = Env::with_s3() else { return };
    upload_killed_midway_resumes(e);
}

#[test]
fn moto_upload_killed_midway_resumes_sending_only_what_is_missing() {
    let Some(e) = Env::with_moto() else { return };
    upload_killed_midway_resumes(e);
}

fn upload_killed_midway_resumes(e: Env) {
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let data = noise(OBJECT as usize, 7);
    std::fs::write(e.path("big.bin"), &data).unwrap();
    let dst = format!("s3://{b}/big.bin");

    // Killed with a bit more than half the object sent.
    e.killed_at(&relay, OBJECT / 2 + MIB, true, &["cp", "big.bin", &dst]);
    assert!(
        e.run(&["stat", &dst]).status.code() != Some(0),
        "nothing stored yet"
    );

    relay.reset();
    let out = e.via(&relay, &["cp", "big.bin", &dst]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sent = relay.up();
    eprintln!("upload resumed: second run sent {sent} bytes of a {OBJECT}-byte object");
    assert!(
        sent <= OBJECT / 2 + PART + OVERHEAD,
        "the rerun sent {sent} bytes: more than half the object plus one part; {}",
        stderr(&out)
    );
    assert!(sent >= OBJECT / 4, "it did send the missing parts ({sent})");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("resumed:"),
        "{out:?}"
    );

    // End to end: the stored object is the file (read back without the journal).
    e.ok(&["cp", &dst, "back.bin", "--no-resume"]);
    assert!(std::fs::read(e.path("back.bin")).unwrap() == data);
    // Nothing left to resume or clean up.
    let left = e.ok(&[
        "cleanup",
        &format!("s3://{b}"),
        "--older-than",
        "0s",
        "--dry-run",
    ]);
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn s3_download_killed_midway_resumes_fetching_only_what_is_missing() {
    let Some(e) = Env::with_s3() else { return };
    download_killed_midway_resumes(e);
}

#[test]
fn moto_download_killed_midway_resumes_fetching_only_what_is_missing() {
    let Some(e) = Env::with_moto() else { return };
    download_killed_midway_resumes(e);
}

fn download_killed_midway_resumes(e: Env) {
    let relay = Relay::new(e.s3.as_deref().unwrap(), false);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let data = noise(OBJECT as usize, 11);
    std::fs::write(e.path("src.bin"), &data).unwrap();
    let src = format!("s3://{b}/big.bin");
    e.ok(&["cp", "src.bin", &src]);

    e.killed_at(&relay, OBJECT / 2 + MIB, false, &["cp", &src, "got.bin"]);
    assert!(!e.path("got.bin").exists(), "no target before it verified");

    relay.reset();
    let out = e.via(&relay, &["cp", &src, "got.bin"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let received = relay.down();
    eprintln!("download resumed: second run received {received} bytes of a {OBJECT}-byte object");
    assert!(
        received <= OBJECT / 2 + PART + OVERHEAD,
        "the rerun received {received} bytes: more than half the object plus one part"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("resumed:"),
        "{out:?}"
    );
    assert!(std::fs::read(e.path("got.bin")).unwrap() == data);
    let leftovers: Vec<_> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .filter_map(|d| d.ok())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(stor::TEMP_SUFFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn s3_upload_killed_then_source_changed_starts_over_and_stores_the_new_bytes() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    std::fs::write(e.path("big.bin"), noise(OBJECT as usize, 3)).unwrap();
    let dst = format!("s3://{b}/big.bin");
    e.killed_at(&relay, OBJECT / 2 + MIB, true, &["cp", "big.bin", &dst]);

    // Same size, other bytes, a later mtime: the journaled parts must not be used.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let data = noise(OBJECT as usize, 4);
    std::fs::write(e.path("big.bin"), &data).unwrap();
    relay.reset();
    let out = e.via(&relay, &["cp", "big.bin", &dst]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        relay.up() >= OBJECT,
        "every part sent again ({})",
        relay.up()
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("resumed:"),
        "{out:?}"
    );
    assert!(stderr(&out).contains("starts over"), "said so: {out:?}");
    e.ok(&["cp", &dst, "back.bin", "--no-resume"]);
    assert!(std::fs::read(e.path("back.bin")).unwrap() == data);
    // The interrupted upload was aborted, not left behind.
    let left = e.ok(&[
        "cleanup",
        &format!("s3://{b}"),
        "--older-than",
        "0s",
        "--dry-run",
    ]);
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn s3_batch_killed_midway_skips_what_it_finished() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("f{i}.bin"), noise(3 * MIB as usize, 20 + i)))
        .collect();
    std::fs::create_dir(e.path("tree")).unwrap();
    for (n, d) in &files {
        std::fs::write(e.path("tree").join(n), d).unwrap();
    }
    let dst = format!("s3://{b}/t/");
    let total = 8 * 3 * MIB;
    e.killed_at(&relay, total / 2 + MIB, true, &["cp", "-r", "tree", &dst]);

    relay.reset();
    let out = e
        .via(&relay, &["cp", "-r", "tree", &dst, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sent = relay.up();
    eprintln!("batch resumed: second run sent {sent} bytes of {total}");
    assert!(
        sent <= total / 2 + 3 * MIB + OVERHEAD,
        "the rerun sent {sent} bytes: the finished files went again"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("summary").cloned())
        .expect("a summary line");
    assert!(summary["resumed"].as_u64().unwrap() > 0, "{summary}");
    for (n, d) in &files {
        e.ok(&["cp", &format!("{dst}{n}"), "back.bin", "--no-resume"]);
        assert!(std::fs::read(e.path("back.bin")).unwrap() == *d, "{n}");
    }
}

#[test]
fn s3_upload_interrupted_by_ctrl_c_says_how_to_resume_and_resumes() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let data = noise(OBJECT as usize, 5);
    std::fs::write(e.path("big.bin"), &data).unwrap();
    let dst = format!("s3://{b}/big.bin");

    let at = OBJECT / 2 + MIB;
    relay.stall_at(at);
    let child = e.via(&relay, &["cp", "big.bin", &dst]).spawn().unwrap();
    let mut waited = 0;
    while relay.up() < at {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
        assert!(waited < 60_000, "stor never reached {at} bytes");
    }
    let int = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("kept 1 interrupted transfer(s)")
            && err.contains("run the same command again"),
        "{err}"
    );
    // The journal lists it for cleanup (of the same store: the journal knows a
    // store by its endpoint, here the relay's).
    relay.reset();
    let bucket_url = format!("s3://{b}");
    let args = ["cleanup", &bucket_url, "--older-than", "0s", "--dry-run"];
    let listed = e.via(&relay, &args).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("(dryrun) discard: upload"), "{listed}");

    relay.reset();
    let out = e.via(&relay, &["cp", "big.bin", &dst]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        relay.up() <= OBJECT / 2 + PART + OVERHEAD,
        "the rerun sent {} bytes",
        relay.up()
    );
    e.ok(&["cp", &dst, "back.bin", "--no-resume"]);
    assert!(std::fs::read(e.path("back.bin")).unwrap() == data);
}

/// SIGTERM (kill, timeout, docker stop, systemd) and SIGHUP stop a transfer the way
/// Ctrl-C does: an upload nothing keeps for resuming (`--no-resume`) is aborted,
/// not left on the server; exit 130, saying which signal.
#[test]
fn s3_upload_stopped_by_sigterm_or_sighup_leaves_no_upload_behind() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    std::fs::write(e.path("big.bin"), noise(OBJECT as usize, 11)).unwrap();
    for (signal, said) in [
        ("-TERM", "terminated (SIGTERM)"),
        ("-HUP", "hung up (SIGHUP)"),
    ] {
        relay.reset();
        let dst = format!("s3://{b}/stopped{signal}.bin");
        let args = ["cp", "big.bin", &dst, "--no-resume", "--bwlimit", "4MiB"];
        let child = e.via(&relay, &args).spawn().unwrap();
        // Parts are on their way (more than one part's worth sent).
        let mut waited = 0;
        while relay.up() < PART + MIB {
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
            assert!(waited < 60_000, "stor never reached one part");
        }
        let kill = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 130, "{signal}: {out:?}");
        assert!(stderr(&out).contains(said), "{signal}: {}", stderr(&out));
        let listed = e
            .via(
                &relay,
                &[
                    "cleanup",
                    &format!("s3://{b}"),
                    "--older-than",
                    "0s",
                    "--dry-run",
                ],
            )
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert!(
            !listed.contains("abort:"),
            "{signal} left an upload: {listed}"
        );
        assert!(
            !listed.contains("discard:"),
            "{signal}: nothing was to be kept: {listed}"
        );
        let ls = e.ok(&["ls", &format!("s3://{b}/")]);
        assert!(!ls.contains("stopped"), "{signal}: {ls}");
    }
}

#[test]
fn s3_cleanup_discards_an_interrupted_upload_and_its_journal_record() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    std::fs::write(e.path("big.bin"), noise(OBJECT as usize, 9)).unwrap();
    let dst = format!("s3://{b}/big.bin");
    e.killed_at(&relay, OBJECT / 2 + MIB, true, &["cp", "big.bin", &dst]);

    relay.reset();
    let cleanup = |older: &str| {
        let out = e
            .via(
                &relay,
                &["cleanup", &format!("s3://{b}"), "--older-than", older],
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let young = cleanup("1h");
    assert!(
        young.contains("aborted 0 stale"),
        "kept while young: {young}"
    );
    let gone = cleanup("0s");
    assert!(
        gone.contains("discarded 1 interrupted transfer(s)"),
        "{gone}"
    );
    assert!(
        gone.contains("aborted 0 stale"),
        "its upload went with it: {gone}"
    );
    // Nothing left to resume: the next run sends everything.
    relay.reset();
    let out = e.via(&relay, &["cp", "big.bin", &dst]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(relay.up() >= OBJECT, "{}", relay.up());
}

#[test]
fn s3_a_second_process_running_the_same_upload_is_refused() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let data = noise(OBJECT as usize, 13);
    std::fs::write(e.path("big.bin"), &data).unwrap();
    let dst = format!("s3://{b}/big.bin");

    // The first one holds at ~50 % (alive, its lock held).
    let at = OBJECT / 2 + MIB;
    relay.stall_at(at);
    let mut first = e.via(&relay, &["cp", "big.bin", &dst]).spawn().unwrap();
    while relay.up() < at {
        assert!(first.try_wait().unwrap().is_none(), "the first one ended");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The second gets through the relay (the first stays held), and is refused.
    relay.hold_only_open();
    let mut second = e.via(&relay, &["cp", "big.bin", &dst]).spawn().unwrap();
    let mut waited = 0;
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        waited += 1;
        if waited > 3000 {
            second.kill().unwrap();
            first.kill().unwrap();
            panic!("the second runner was not refused");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let out = second.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("already transferring"), "{out:?}");

    // The first goes on alone, once the relay lets it.
    relay.stall_at(0);
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    e.ok(&["cp", &dst, "back.bin", "--no-resume"]);
    assert!(std::fs::read(e.path("back.bin")).unwrap() == data);
}

#[test]
fn s3_download_killed_then_object_replaced_starts_over_with_the_new_object() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), false);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    std::fs::write(e.path("v1.bin"), noise(OBJECT as usize, 21)).unwrap();
    let src = format!("s3://{b}/big.bin");
    e.ok(&["cp", "v1.bin", &src]);
    e.killed_at(&relay, OBJECT / 2 + MIB, false, &["cp", &src, "got.bin"]);

    // Replaced between the runs: same size, other bytes.
    let v2 = noise(OBJECT as usize, 22);
    std::fs::write(e.path("v2.bin"), &v2).unwrap();
    e.ok(&["cp", "v2.bin", &src]);
    relay.reset();
    let out = e.via(&relay, &["cp", &src, "got.bin"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        relay.down() >= OBJECT,
        "all of it fetched ({})",
        relay.down()
    );
    assert!(stderr(&out).contains("starts over"), "said so: {out:?}");
    assert!(std::fs::read(e.path("got.bin")).unwrap() == v2);
}

#[test]
fn s3_upload_killed_then_journal_deleted_or_damaged_starts_over_never_wrong() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let journal = e.path("state").join(stor::journal::JOURNAL_FILE);
    let wal = |suffix: &str| PathBuf::from(format!("{}{suffix}", journal.display()));
    for (case, seed) in [("deleted", 31), ("damaged", 32)] {
        let data = noise(OBJECT as usize, seed);
        std::fs::write(e.path("big.bin"), &data).unwrap();
        let dst = format!("s3://{b}/{case}.bin");
        e.killed_at(&relay, OBJECT / 2 + MIB, true, &["cp", "big.bin", &dst]);
        assert!(journal.exists(), "{case}: journaled");
        let _ = std::fs::remove_file(wal("-wal"));
        let _ = std::fs::remove_file(wal("-shm"));
        match case {
            "deleted" => std::fs::remove_file(&journal).unwrap(),
            _ => std::fs::write(&journal, vec![0x5a; 64 * 1024]).unwrap(),
        }
        relay.reset();
        let out = e.via(&relay, &["cp", "big.bin", &dst]).output().unwrap();
        assert!(out.status.success(), "{case}: {out:?}");
        assert!(
            relay.up() >= OBJECT,
            "{case}: all sent again ({})",
            relay.up()
        );
        e.ok(&["cp", &dst, "back.bin", "--no-resume"]);
        assert!(
            std::fs::read(e.path("back.bin")).unwrap() == data,
            "{case}: the stored object is the file"
        );
    }
    // The damaged journal was set aside, not reused.
    let aside = std::fs::read_dir(e.path("state"))
        .unwrap()
        .filter_map(|d| d.ok())
        .any(|d| d.file_name().to_string_lossy().contains(".damaged-"));
    assert!(aside, "the damaged journal kept aside");
    // The uploads those journals named are orphans only until the usual sweep.
    let left = e.ok(&["cleanup", &format!("s3://{b}"), "--older-than", "0s"]);
    assert!(left.contains("aborted 2 stale"), "{left}");
}

#[test]
fn s3_upload_killed_then_its_upload_lost_on_the_server_starts_over() {
    let Some(e) = Env::with_s3() else { return };
    let relay = Relay::new(e.s3.as_deref().unwrap(), true);
    let b = bucket();
    e.ok(&["mb", &format!("s3://{b}")]);
    let data = noise(OBJECT as usize, 41);
    std::fs::write(e.path("big.bin"), &data).unwrap();
    let dst = format!("s3://{b}/big.bin");
    e.killed_at(&relay, OBJECT / 2 + MIB, true, &["cp", "big.bin", &dst]);
    // Someone else aborts it (a cleanup on the server side, not through this journal).
    let swept = e.ok(&["cleanup", &format!("s3://{b}"), "--older-than", "0s"]);
    assert!(swept.contains("aborted 1 stale"), "{swept}");

    relay.reset();
    let out = e.via(&relay, &["cp", "big.bin", &dst]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("starts over"), "said so: {out:?}");
    assert!(relay.up() >= OBJECT, "all sent again ({})", relay.up());
    e.ok(&["cp", &dst, "back.bin", "--no-resume"]);
    assert!(std::fs::read(e.path("back.bin")).unwrap() == data);
}
