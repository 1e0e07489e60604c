//! Bandwidth limits: one token bucket per [`Storage`](crate::Storage) for the bytes
//! going up and one for those coming down, shared by every transfer of the handle
//! and its clones — a batch of 1000 files shares the limit, it does not get 1000
//! of them.
//!
//! The bucket works by reservation: taking `n` bytes always succeeds and says how
//! long to wait before sending them (the debt, divided by the rate). Waiters thus
//! queue in the order they asked, and the time arithmetic is plain enough to test
//! on a paused clock. Bodies are paced in small pieces (about 20 ms of the rate),
//! so a connection never sits idle long enough for a server to give up on it.
//!
//! Where the bytes are paced: file bodies as they are read (`FileBody`), bytes in
//! memory and streams as they are handed to the backend, downloads as chunks
//! arrive from it (TCP then slows the sender).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::types::ByteStream;

/// A bandwidth limit, bytes per second, for uploads (`up`) and downloads (`down`);
/// `None` is unlimited.
///
/// Written like rclone's `--bwlimit`: `"50MiB"` for both ways, `"10MiB:50MiB"` for
/// 10 MiB/s up and 50 MiB/s down, `"off"` for none. Units: `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB` (powers of 1024, as rclone), `KB`/`MB`/`GB` (powers of 1000), none
/// for bytes; a trailing `/s` is allowed. In the config, also a number of bytes per
/// second or `{"up": "10MiB", "down": "50MiB"}`.
///
/// ```
/// use stor::config::Bandwidth;
/// let b: Bandwidth = "10MiB:50MiB".parse().unwrap();
/// assert_eq!((b.up, b.down), (Some(10 << 20), Some(50 << 20)));
/// assert_eq!("50M".parse::<Bandwidth>().unwrap(), Bandwidth::both(50 << 20));
/// assert_eq!("off".parse::<Bandwidth>().unwrap(), Bandwidth::default());
/// assert!("fast".parse::<Bandwidth>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bandwidth {
    /// Bytes per second of uploads, `None` for no limit.
    pub up: Option<u64>,
    /// Bytes per second of downloads, `None` for no limit.
    pub down: Option<u64>,
}

impl Bandwidth {
    /// The same limit both ways.
    pub fn both(bytes_per_second: u64) -> Bandwidth {
        Bandwidth {
            up: Some(bytes_per_second),
            down: Some(bytes_per_second),
        }
    }

    /// Whether neither way is limited.
    pub fn is_unlimited(&self) -> bool {
        self.up.is_none() && self.down.is_none()
    }
}

/// Parses one rate: `50MiB`, `1.5G`, `800K/s`, `1000000`; `off` (or `0`) is none.
fn parse_rate(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    if t.is_empty() {
        return Err("an empty rate".into());
    }
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use K, M, G, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    match bytes as u64 {
        0 => Ok(None),
        n if n < 1024 => Err(format!(
            "{s:?} is below 1 KiB/s; give a larger limit, or \"off\" for none"
        )),
        n => Ok(Some(n)),
    }
}

impl FromStr for Bandwidth {
    type Err = Error;

    fn from_str(s: &str) -> Result<Bandwidth> {
        let bad = |why: String| {
            Error::invalid(format!(
                "bandwidth limit {s:?}: {why}; write e.g. 50MiB, or 10MiB:50MiB for \
                 upload:download"
            ))
        };
        match s.split_once(':') {
            Some((up, down)) => Ok(Bandwidth {
                up: parse_rate(up).map_err(bad)?,
                down: parse_rate(down).map_err(bad)?,
            }),
            None => {
                let r = parse_rate(s).map_err(bad)?;
                Ok(Bandwidth { up: r, down: r })
            }
        }
    }
}

fn show(rate: Option<u64>) -> String {
    match rate {
        None => "off".into(),
        Some(n) if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        Some(n) if n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        Some(n) => n.to_string(),
    }
}

impl fmt::Display for Bandwidth {
    /// As it parses: `50MiB`, or `10MiB:50MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.up == self.down {
            f.write_str(&show(self.up))
        } else {
            write!(f, "{}:{}", show(self.up), show(self.down))
        }
    }
}

impl Serialize for Bandwidth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Rate {
            Bytes(u64),
            Text(String),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ways {
            up: Option<Rate>,
            down: Option<Rate>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(Rate),
            Ways(Ways),
        }
        let one = |r: Option<Rate>| -> std::result::Result<Option<u64>, D::Error> {
            match r {
                None | Some(Rate::Bytes(0)) => Ok(None),
                Some(Rate::Bytes(n)) if n < 1024 => Err(D::Error::custom(format!(
                    "{n} bytes per second is below 1 KiB/s; give a larger limit, or \"off\""
                ))),
                Some(Rate::Bytes(n)) => Ok(Some(n)),
                Some(Rate::Text(t)) => parse_rate(&t).map_err(D::Error::custom),
            }
        };
        match Form::deserialize(d).map_err(|_| {
            D::Error::custom(
                "expected a rate (\"50MiB\", \"10MiB:50MiB\", a number of bytes per second) \
                 or {\"up\": …, \"down\": …}",
            )
        })? {
            Form::One(Rate::Text(t)) => t.parse().map_err(|e: Error| {
                D::Error::custom(
                    e.message()
                        .trim_start_matches("bandwidth limit ")
                        .to_owned(),
                )
            }),
            Form::One(r) => {
                let n = one(Some(r))?;
                Ok(Bandwidth { up: n, down: n })
            }
            Form::Ways(w) => Ok(Bandwidth {
                up: one(w.up)?,
                down: one(w.down)?,
            }),
        }
    }
}

/// A token bucket: `rate` bytes per second, at most `burst` saved up.
pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    /// Tokens (bytes) available as of `at`; negative is debt, paid off at `rate`.
    state: Mutex<(f64, Instant)>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Limiter({} B/s)", self.rate)
    }
}

impl Limiter {
    /// A bucket of `rate` bytes per second, starting full. It saves up at most a
    /// piece or 50 ms of the rate, whichever is more: a transfer that paused does
    /// not burst far above the limit afterwards.
    pub fn new(rate: u64) -> Limiter {
        let rate = rate.max(1) as f64;
        let mut l = Limiter {
            rate,
            burst: 0.0,
            state: Mutex::new((0.0, Instant::now())),
        };
        l.burst = (rate * 0.05).max(l.piece() as f64);
        l.state.get_mut().unwrap_or_else(|p| p.into_inner()).0 = l.burst;
        l
    }

    /// The bytes sent at once: about 20 ms of the rate, 1 KiB to 256 KiB.
    pub fn piece(&self) -> usize {
        ((self.rate / 50.0) as usize).clamp(1024, 256 * 1024)
    }

    /// Takes `n` bytes from the bucket; returns how long to wait before sending
    /// them (zero when there were enough tokens).
    pub fn reserve(&self, n: u64) -> Duration {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = *st;
        let refilled = (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        let left = refilled - n as f64;
        *st = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        }
    }

    /// Waits until `n` bytes may go.
    pub async fn take(&self, n: u64) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The limits of one `Storage`: a bucket each way, when limited.
#[derive(Debug, Default)]
pub(crate) struct Pacing {
    pub up: Option<Arc<Limiter>>,
    pub down: Option<Arc<Limiter>>,
}

impl Pacing {
    pub fn new(b: Option<Bandwidth>) -> Pacing {
        let b = b.unwrap_or_default();
        Pacing {
            up: b.up.map(|r| Arc::new(Limiter::new(r))),
            down: b.down.map(|r| Arc::new(Limiter::new(r))),
        }
    }
}

/// `stream` handed on no faster than `limiter` allows, in pieces of
/// [`Limiter::piece`] bytes.
pub(crate) fn paced(stream: ByteStream, limiter: Arc<Limiter>) -> ByteStream {
    Box::pin(
        futures::stream::unfold(
            (stream, Bytes::new(), limiter),
            |(mut stream, mut rest, limiter)| async move {
                if rest.is_empty() {
                    match stream.next().await? {
                        Ok(b) => rest = b,
                        Err(e) => return Some((Err(e), (stream, rest, limiter))),
                    }
                }
                let piece = rest.split_to(rest.len().min(limiter.piece()));
                limiter.take(piece.len() as u64).await;
                Some((Ok(piece), (stream, rest, limiter)))
            },
        )
        .filter(|r| std::future::ready(!matches!(r, Ok(b) if b.is_empty()))),
    )
}

/// Bytes in memory as a paced stream.
pub(crate) fn paced_bytes(b: Bytes, limiter: Arc<Limiter>) -> ByteStream {
    paced(
        Box::pin(futures::stream::once(async move { Ok(b) })),
        limiter,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    /// The bucket's arithmetic on a paused clock: a start of one burst, then
    /// exactly the rate, however the bytes are split and however many callers
    /// share it.
    #[tokio::test(start_paused = true)]
    async fn the_bucket_lets_through_its_rate_and_no_more() {
        let l = Limiter::new(1_000_000); // 1 MB/s
        assert_eq!((l.burst, l.piece()), (50_000.0, 20_000), "50 ms; 20 ms");
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // The burst goes at once; the next bytes wait for the rate.
        assert_eq!(l.reserve(50_000), Duration::ZERO);
        assert!((ms(l.reserve(20_000)) - 20.0).abs() < 1e-6);
        // Debt adds up: the next caller queues behind the first.
        assert!((ms(l.reserve(20_000)) - 40.0).abs() < 1e-6);
        // Time pays it off at the rate, and not faster.
        tokio::time::advance(Duration::from_millis(30)).await;
        assert!((ms(l.reserve(0)) - 10.0).abs() < 1e-6);
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(l.reserve(0), Duration::ZERO);
        // Saved tokens never exceed the burst, however long it was idle.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(l.reserve(50_000), Duration::ZERO);
        assert!((ms(l.reserve(1_000)) - 1.0).abs() < 1e-6);
    }

    /// Four streams sharing one 1 MiB/s bucket move 4 MiB in 4 s of (paused)
    /// clock time, less the one burst — not 4 MiB/s between them.
    #[tokio::test(start_paused = true)]
    async fn streams_sharing_a_bucket_share_its_rate() {
        let rate = 1u64 << 20;
        let l = Arc::new(Limiter::new(rate));
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let s = paced_bytes(Bytes::from(vec![7u8; 1 << 20]), l.clone());
                tokio::spawn(async move {
                    let parts: Vec<Bytes> = s.try_collect().await.unwrap();
                    assert!(parts.iter().all(|p| p.len() <= 20_971));
                    parts.iter().map(|p| p.len()).sum::<usize>()
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 4 << 20);
        let took = start.elapsed().as_secs_f64();
        let ideal = (4.0 * rate as f64 - l.burst) / rate as f64;
        assert!(
            (took - ideal).abs() < 0.03,
            "took {took} s, ideal {ideal} s"
        );
    }

    #[test]
    fn rates_parse_like_rclone() {
        let p = |s: &str| s.parse::<Bandwidth>();
        assert_eq!(p("50MiB").unwrap(), Bandwidth::both(50 << 20));
        assert_eq!(p("50M/s").unwrap(), Bandwidth::both(50 << 20));
        assert_eq!(p("1.5G").unwrap(), Bandwidth::both(3 << 29));
        assert_eq!(p("100KB").unwrap(), Bandwidth::both(100_000));
        assert_eq!(p("2048").unwrap(), Bandwidth::both(2048));
        let b = p("10M:off").unwrap();
        assert_eq!((b.up, b.down), (Some(10 << 20), None));
        assert_eq!(p("0").unwrap(), Bandwidth::default());
        for bad in ["", "fast", "10X", "12", "-5M", "1:2:3M"] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}");
            assert!(e.message().contains("10MiB:50MiB"), "{e}");
        }
        assert_eq!(p("10MiB:50MiB").unwrap().to_string(), "10MiB:50MiB");
        assert_eq!(p("50M").unwrap().to_string(), "50MiB");
    }

    #[test]
    fn the_config_takes_a_rate_a_number_or_both_ways() {
        let de = |j: &str| serde_json::from_str::<Bandwidth>(j);
        assert_eq!(de("\"50MiB\"").unwrap(), Bandwidth::both(50 << 20));
        assert_eq!(de("1048576").unwrap(), Bandwidth::both(1 << 20));
        let b = de(r#"{"up": "10MiB", "down": 2097152}"#).unwrap();
        assert_eq!((b.up, b.down), (Some(10 << 20), Some(2 << 20)));
        assert_eq!(de(r#"{"down": "1M"}"#).unwrap().up, None);
        assert!(de(r#"{"sideways": "1M"}"#).is_err());
        assert!(de("\"lots\"").unwrap_err().to_string().contains("lots"));
        assert!(de("12").is_err());
        let back = serde_json::to_string(&de(r#"{"up": "10MiB"}"#).unwrap()).unwrap();
        assert_eq!(back, "\"10MiB:off\"");
    }
}
