//! A scripted fault proxy for tests: a tokio TCP proxy on 127.0.0.1 (port 0) in
//! front of a real S3 server. Every request gets its own upstream connection
//! (`Connection: close` both ways, so faults land on exactly one request); rules
//! matched on method and request target decide what happens to it: forwarded
//! untouched, reset after N bytes (of the request or the response), stalled,
//! delayed, answered with an S3 error (503 SlowDown, 500, a 4xx) or a 200 whose
//! body is an error, or forwarded with one body byte flipped. The whole proxy can
//! also stop listening for a while, so connections are refused (a server
//! restarting).
//!
//! No toxiproxy in our registries, and netem is not in this kernel; this is small
//! enough to read in one sitting.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// What to do to a matched request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward the head and this many body bytes of the request, then reset both
    /// connections (a connection lost mid-upload).
    ResetRequestAfter(usize),
    /// Forward the request, relay this many bytes of the response (head included),
    /// then reset (a connection lost mid-download).
    ResetResponseAfter(usize),
    /// Read the request and answer nothing for this long (a stalled server).
    Stall(Duration),
    /// Wait, then forward normally.
    Delay(Duration),
    /// Answer with this status and S3 error code, without forwarding.
    Error(u16, &'static str),
    /// Answer 200 OK with an S3 error document as the body, without forwarding
    /// (what S3 does when CompleteMultipartUpload or a copy fails late).
    OkWithError(&'static str),
    /// Forward, flipping one bit of the response body at this offset.
    CorruptBody(usize),
    /// Answer with this status and an HTML page (a proxy or load balancer).
    Html(u16, &'static str),
    /// Forward, but hold the response after its head and about this many body
    /// bytes until the proxy has seen `until_seen` requests in all (at most 10 s):
    /// shows whether a client starts other requests while one body is still coming.
    HoldBody { after: usize, until_seen: usize },
}

/// A rule: requests with this method whose target (path + query) contains every
/// space-separated part of `target` get `fault`, `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub target: String,
    pub fault: Fault,
    pub times: usize,
}

impl Rule {
    pub fn new(method: &'static str, target: impl Into<String>, fault: Fault) -> Rule {
        Rule {
            method,
            target: target.into(),
            fault,
            times: 1,
        }
    }
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }
}

/// One request the proxy saw: method, target, and the fault it got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    down: AtomicBool,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    accepted: AtomicUsize,
    inflight: AtomicUsize,
    peak_inflight: AtomicUsize,
    /// Requests seen when a held body was let go.
    seen_at_release: AtomicUsize,
}

/// Counts a request in flight from its head until just before the last byte of its
/// response is relayed (the client cannot start another on a freed slot earlier).
struct InFlight<'a>(Option<&'a State>);

impl<'a> InFlight<'a> {
    fn start(st: &'a State) -> InFlight<'a> {
        let now = st.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        st.peak_inflight.fetch_max(now, Ordering::SeqCst);
        InFlight(Some(st))
    }
    fn end(&mut self) {
        if let Some(st) = self.0.take() {
            st.inflight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// The running proxy; dropping it stops accepting.
pub struct FaultProxy {
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
    /// Orders to stop listening for a while; answered once the port is closed.
    refusals: mpsc::UnboundedSender<(Duration, oneshot::Sender<()>)>,
}

/// What the accept loop does next.
enum Next {
    Client(TcpStream),
    Refuse(Duration, oneshot::Sender<()>),
    Stop,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and hands each client connection, counted while
    /// `handle` runs, to `handle` with the upstream address and the shared state.
    async fn listen<F, Fut>(upstream: &str, handle: F) -> FaultProxy
    where
        F: Fn(TcpStream, String, Arc<State>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let up = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mut listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let state = Arc::new(State::default());
        let st = state.clone();
        let handle = Arc::new(handle);
        let (refusals, mut orders) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    a = listener.accept() => match a {
                        Ok((client, _)) => Next::Client(client),
                        Err(_) => Next::Stop,
                    },
                    o = orders.recv() => match o {
                        Some((d, done)) => Next::Refuse(d, done),
                        None => Next::Stop,
                    },
                };
                match next {
                    Next::Client(client) => {
                        let (st, up, handle) = (st.clone(), up.clone(), handle.clone());
                        tokio::spawn(async move {
                            let now = st.open.fetch_add(1, Ordering::SeqCst) + 1;
                            st.peak_open.fetch_max(now, Ordering::SeqCst);
                            st.accepted.fetch_add(1, Ordering::SeqCst);
                            handle(client, up, st).await;
                        });
                    }
                    Next::Refuse(d, done) => {
                        // Nothing listens on the port: the kernel refuses connects
                        // (connections already accepted go on).
                        drop(listener);
                        let _ = done.send(());
                        tokio::time::sleep(d).await;
                        listener = loop {
                            match TcpListener::bind(addr).await {
                                Ok(l) => break l,
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        };
                    }
                    Next::Stop => return,
                }
            }
        });
        FaultProxy {
            url,
            state,
            task,
            refusals,
        }
    }

    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> FaultProxy {
        FaultProxy::listen(upstream, |client, up, st| async move {
            let _ = serve(client, &up, &st).await;
            st.open.fetch_sub(1, Ordering::SeqCst);
        })
        .await
    }

    /// A plain TCP tunnel to `upstream` (keep-alive connections pass through as
    /// they are), counting the client connections open at once.
    pub async fn tunnel(upstream: &str) -> FaultProxy {
        FaultProxy::listen(upstream, |client, up, st| async move {
            let Ok(u) = TcpStream::connect(&up).await else {
                st.open.fetch_sub(1, Ordering::SeqCst);
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut ur, mut uw) = u.into_split();
            let down = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut ur, &mut cw).await;
            });
            // The client's connection counts as open until the client closes it
            // (its EOF), not until the server side is done too.
            let _ = tokio::io::copy(&mut cr, &mut uw).await;
            st.open.fetch_sub(1, Ordering::SeqCst);
            let _ = uw.shutdown().await;
            let _ = down.await;
        })
        .await
    }

    /// A tunnel that closes any connection idle for `idle` (no bytes either way),
    /// as S3 does after about 20 s: the client must not reuse such a connection.
    pub async fn tunnel_closing_idle(upstream: &str, idle: Duration) -> FaultProxy {
        FaultProxy::listen(upstream, move |client, up, st| async move {
            let Ok(u) = TcpStream::connect(&up).await else {
                st.open.fetch_sub(1, Ordering::SeqCst);
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut ur, mut uw) = u.into_split();
            let mut a = vec![0u8; 64 * 1024];
            let mut b = vec![0u8; 64 * 1024];
            loop {
                tokio::select! {
                    r = cr.read(&mut a) => match r {
                        Ok(n) if n > 0 => { if uw.write_all(&a[..n]).await.is_err() { break } }
                        _ => break,
                    },
                    r = ur.read(&mut b) => match r {
                        Ok(n) if n > 0 => { if cw.write_all(&b[..n]).await.is_err() { break } }
                        _ => break,
                    },
                    _ = tokio::time::sleep(idle) => break, // idle: the "server" hangs up
                }
            }
            let _ = cw.shutdown().await;
            st.open.fetch_sub(1, Ordering::SeqCst);
        })
        .await
    }

    /// Stops listening for `d` (connections are refused, as by a server that is
    /// restarting), then listens on the same port again. Returns once the port
    /// is closed.
    pub async fn refuse_for(&self, d: Duration) {
        let (done, closed) = oneshot::channel();
        self.refusals.send((d, done)).unwrap();
        closed.await.unwrap();
    }

    /// Client connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Adds a rule (checked in order; the first live match applies).
    pub fn add(&self, rule: Rule) {
        self.state.rules.lock().unwrap().push(rule);
    }

    /// Removes all rules.
    pub fn clear(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// While down, every connection is reset at once (a server that is gone).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests seen with this method whose target matches `target` (as in rules).
    pub fn count(&self, method: &str, target: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && matches(&s.target, target))
            .count()
    }

    /// How many faults were injected so far.
    pub fn faults(&self) -> usize {
        self.seen().iter().filter(|s| s.fault.is_some()).count()
    }

    /// Most requests in flight at once (head seen, response not yet complete).
    pub fn peak_requests(&self) -> usize {
        self.state.peak_inflight.load(Ordering::SeqCst)
    }

    /// How many requests the proxy had seen when a `HoldBody` response went on.
    pub fn seen_at_release(&self) -> usize {
        self.state.seen_at_release.load(Ordering::SeqCst)
    }

    /// Most client connections open at once.
    pub fn peak_connections(&self) -> usize {
        self.state.peak_open.load(Ordering::SeqCst)
    }
}

fn matches(target: &str, pattern: &str) -> bool {
    pattern.split(' ').all(|p| target.contains(p))
}

#[allow(deprecated)] // SO_LINGER 0 blocks nothing: it makes close send a reset at once
fn reset(s: &TcpStream) {
    let _ = s.set_linger(Some(Duration::ZERO));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads until the end of an HTTP head; returns (head, bytes after it).
async fn read_head(s: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok(Some((buf, rest)));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return Err(std::io::Error::other("request head too large"));
        }
    }
}

fn error_doc(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>"
    )
}

fn canned(status: u16, reason: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

async fn serve(mut client: TcpStream, upstream: &str, st: &State) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    if st.down.load(Ordering::SeqCst) {
        reset(&client);
        return Ok(());
    }
    let Some((head, body_start)) = read_head(&mut client).await? else {
        return Ok(());
    };
    let mut inflight = InFlight::start(st);
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut line = text.lines().next().unwrap_or("").split(' ');
    let method = line.next().unwrap_or("").to_owned();
    let target = line.next().unwrap_or("").to_owned();
    let fault = {
        let mut rules = st.rules.lock().unwrap();
        let hit = rules
            .iter_mut()
            .find(|r| r.times > 0 && r.method == method && matches(&target, &r.target));
        hit.map(|r| {
            r.times -= 1;
            r.fault.clone()
        })
    };
    st.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        fault: fault.clone(),
    });
    let head_only = method == "HEAD";
    match &fault {
        Some(Fault::Stall(d)) => {
            tokio::time::sleep(*d).await;
            reset(&client);
            return Ok(());
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::Error(status, code)) => {
            let reason = if *status == 503 { "Slow Down" } else { "Error" };
            let r = canned(*status, reason, &error_doc(code), head_only);
            client.write_all(&r).await?;
            return client.shutdown().await;
        }
        Some(Fault::Html(status, page)) => {
            let mut r = canned(*status, "Bad Gateway", page, head_only);
            let at = find(&r, b"application/xml").unwrap_or(0);
            if at > 0 {
                r.splice(at..at + 15, b"text/html".iter().copied());
            }
            client.write_all(&r).await?;
            return client.shutdown().await;
        }
        Some(Fault::OkWithError(code)) => {
            // Drain the request body first, as a server would.
            let r = canned(200, "OK", &error_doc(code), head_only);
            drain_request(&mut client, &text, body_start.len()).await?;
            client.write_all(&r).await?;
            return client.shutdown().await;
        }
        _ => {}
    }
    // Forward with `Connection: close`, so this connection carries this request only.
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut new_head = String::new();
    for (i, l) in text.split("\r\n").enumerate() {
        if l.is_empty() {
            continue;
        }
        if i > 0 && l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        new_head.push_str(l);
        new_head.push_str("\r\n");
    }
    new_head.push_str("Connection: close\r\n\r\n");
    up.write_all(new_head.as_bytes()).await?;
    if matches!(
        fault,
        Some(Fault::ResetRequestAfter(_) | Fault::ResetResponseAfter(_))
    ) {
        reset(&client); // the close below is then a reset
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    // Request body: client -> upstream (cut short for ResetRequestAfter).
    let req_limit = match &fault {
        Some(Fault::ResetRequestAfter(n)) => Some(*n),
        _ => None,
    };
    let to_up = async move {
        let mut sent = 0usize;
        let mut first = Some(body_start);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let data: Vec<u8> = match first.take() {
                Some(b) if !b.is_empty() => b,
                _ => {
                    let n = cr.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    buf[..n].to_vec()
                }
            };
            if let Some(limit) = req_limit {
                let take = data.len().min(limit - sent);
                uw.write_all(&data[..take]).await?;
                sent += take;
                if sent >= limit {
                    return Err(std::io::Error::other("reset mid-request"));
                }
            } else {
                uw.write_all(&data).await?;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    // Response: upstream -> client (cut or corrupted as the fault says).
    let fault2 = fault.clone();
    let inflight = &mut inflight;
    let to_client = async move {
        let mut relayed = 0usize;
        let mut end_at: Option<usize> = None;
        let mut body_at: Option<usize> = None;
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = ur.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let mut data = buf[..n].to_vec();
            if body_at.is_none() {
                pending.extend_from_slice(&data);
                match find(&pending, b"\r\n\r\n") {
                    Some(i) => {
                        body_at = Some(relayed + i + 4);
                        let head = String::from_utf8_lossy(&pending[..i]).to_ascii_lowercase();
                        end_at = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .map(|n| relayed + i + 4 + if head_only { 0 } else { n });
                        data = std::mem::take(&mut pending);
                    }
                    None => continue,
                }
            }
            if let (Some(Fault::CorruptBody(off)), Some(b)) = (&fault2, body_at) {
                let at = b + off;
                if at >= relayed && at < relayed + data.len() {
                    data[at - relayed] ^= 0x01;
                }
            }
            if let Some(Fault::ResetResponseAfter(limit)) = &fault2 {
                let take = data.len().min(limit.saturating_sub(relayed));
                cw.write_all(&data[..take]).await?;
                relayed += take;
                if relayed >= *limit {
                    return Err(std::io::Error::other("reset mid-response"));
                }
                continue;
            }
            if let (Some(Fault::HoldBody { after, until_seen }), Some(b)) = (&fault2, body_at) {
                if relayed <= b + after && relayed + data.len() > b + after {
                    for _ in 0..2000 {
                        if st.seen.lock().unwrap().len() >= *until_seen {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let n = st.seen.lock().unwrap().len();
                    st.seen_at_release.store(n, Ordering::SeqCst);
                }
            }
            if end_at.is_some_and(|e| relayed + data.len() >= e) {
                inflight.end();
            }
            cw.write_all(&data).await?;
            relayed += data.len();
        }
        inflight.end();
        cw.shutdown().await
    };
    tokio::pin!(to_up, to_client);
    let mut sent = false;
    loop {
        tokio::select! {
            r = &mut to_up, if !sent => {
                if r.is_err() {
                    return Ok(()); // drops both connections
                }
                sent = true;
            }
            r = &mut to_client => return r,
        }
    }
}

/// Reads and discards a request body of Content-Length bytes.
async fn drain_request(s: &mut TcpStream, head: &str, have: usize) -> std::io::Result<()> {
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut left = len.saturating_sub(have);
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = s.read(&mut buf[..left.min(64 * 1024)]).await?;
        if n == 0 {
            break;
        }
        left -= n;
    }
    Ok(())
}
