//! The relay between sqlx and PostgreSQL on the connections that run migrations: wasmig's
//! own reading of what the server sends, before sqlx reads it.
//!
//! sqlx reads each message from the server whole, whatever its length (up to the server's
//! 1 GiB), and keeps the transaction status of `ReadyForQuery` to itself. A migration
//! decides what the server sends on its connection, so both are wasmig's business:
//! - **Host memory.** A message longer than [`MESSAGE_LIMIT`] (one row of a result, say)
//!   never reaches sqlx: the relay reads it in small pieces, drops it, and hands sqlx an
//!   `ErrorResponse` (SQLSTATE `54000`) in its place, then drops what the server sends for
//!   the same request until its `ReadyForQuery`. The guest gets an SQL error it can handle
//!   (the server's transaction is intact, and the sandbox holds the guest to rolling back
//!   to a savepoint, as after any error). An error or notice longer than [`TEXT_LIMIT`] is
//!   passed on with each of its fields cut to [`FIELD_KEEP`] bytes and marked as cut.
//!   Each connection's buffer stays under [`MESSAGE_LIMIT`] plus one read.
//! - **The transaction, as the server sees it.** Every `ReadyForQuery` status and every
//!   completion tag of transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`…) is counted in
//!   the connection's [`Wire`], which the session consults after every guest call without
//!   a round trip (see `PgSession::transaction_ended`).
//!
//! The relay listens on a Linux abstract unix socket with a random name (no file to leave
//! behind) and serves only this process: a connection whose peer is another process is
//! closed unread, so no other local user can reach the server through wasmig's
//! credentials. It carries no TLS (wasmig's sqlx is built without it), and only the
//! pool's connections pass through it: the control connection, which never runs migration
//! SQL, goes to the server directly.
//!
//! Not here: what the session does with what the relay saw (`session`), the pool (`mod.rs`).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::linux::net::SocketAddrExt as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// The longest message the relay passes to sqlx (its body, in bytes): the result budget
/// of one guest call, so a row the guest could not be given anyway is never held whole.
pub(crate) const MESSAGE_LIMIT: usize = crate::MAX_RESULT_BYTES;

/// The longest error or notice passed on whole; a longer one has its fields cut.
pub(crate) const TEXT_LIMIT: usize = 64 * 1024;

/// What is kept of each field of an error or notice over [`TEXT_LIMIT`].
pub(crate) const FIELD_KEEP: usize = 8 * 1024;

/// How much the relay reads from the server at a time.
const READ_SIZE: usize = 64 * 1024;

/// The `ReadyForQuery` status before the first one arrives.
const STATUS_UNKNOWN: u8 = 0;

/// What the relay saw on one connection, shared with the session that uses it.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    /// The status byte of the last `ReadyForQuery`: `I` idle, `T` in a transaction block,
    /// `E` in a failed one; [`STATUS_UNKNOWN`] before the first.
    status: AtomicU8,
    /// How many statements completed with a tag of transaction control.
    transaction_tags: AtomicU64,
    /// How many `ReadyForQuery` messages came: one ends every exchange, so an unchanged
    /// count says nothing was sent on the connection in between.
    ready: AtomicU64,
    /// How many messages over [`MESSAGE_LIMIT`] were dropped.
    refused: AtomicU64,
    /// Whether the relay stopped carrying the connection (the server, or sqlx, ended it).
    ended: AtomicBool,
    /// Whether the server began a message other than `ReadyForQuery` since its last one.
    since_ready: AtomicBool,
    /// The relay's socket to the server, duplicated: [`Wire::quiet`] looks at what is
    /// waiting there without reading it.
    upstream: Option<OwnedFd>,
}

impl Wire {
    /// The status byte of the last `ReadyForQuery` (`b'I'`, `b'T'`, `b'E'`), if any came.
    pub(crate) fn status(&self) -> Option<u8> {
        match self.status.load(Ordering::SeqCst) {
            STATUS_UNKNOWN => None,
            s => Some(s),
        }
    }

    /// How many statements so far completed with a tag of transaction control.
    pub(crate) fn transaction_tags(&self) -> u64 {
        self.transaction_tags.load(Ordering::SeqCst)
    }

    /// How many `ReadyForQuery` messages came so far: while it stays the same, nothing was
    /// sent on the connection.
    pub(crate) fn ready(&self) -> u64 {
        self.ready.load(Ordering::SeqCst)
    }

    /// How many messages over [`MESSAGE_LIMIT`] were dropped so far.
    #[cfg(test)]
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Whether the relay no longer carries this connection: either side ended it (the
    /// server's end of an idle transaction, a `pg_terminate_backend`), so nothing sent on
    /// it reaches the server.
    pub(crate) fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Whether the server has been silent since its last `ReadyForQuery`: nothing read by
    /// the relay, nothing waiting in the socket, the connection not ended. Between two
    /// exchanges a server sends nothing unasked but to end the session (the `FATAL` of an
    /// idle transaction's timeout or a `pg_terminate_backend`, then the end of the stream)
    /// or to notify; either way a connection kept for the next step that is not quiet is
    /// not used for it. This does not wait for the relay's task to have run: what the
    /// server sent before the call is seen, in the socket if not yet in the relay.
    pub(crate) fn quiet(&self) -> bool {
        // The socket first: the relay reads it before it notes what it read.
        let waiting = self.upstream.as_ref().is_some_and(|fd| {
            let mut byte = 0u8;
            // SAFETY: `fd` is an open socket owned by this wire; the buffer is one byte.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    (&raw mut byte).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            // Data (> 0), the end of the stream (0), or an error other than "nothing yet".
            n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
        });
        !waiting && !self.since_ready.load(Ordering::SeqCst) && !self.ended()
    }
}

/// The connections passing through the relay, by the backend pid the server gave each
/// (`BackendKeyData`), which is how a session finds its own.
type Wires = Arc<Mutex<HashMap<i32, Arc<Wire>>>>;

/// Where the relay connects to: the server the URL names.
#[derive(Debug, Clone)]
enum Upstream {
    Tcp(String, u16),
    Unix(String),
}

/// A running relay; stops accepting when dropped (connections through it end with
/// theirs).
pub(crate) struct Relay {
    wires: Wires,
    accept: JoinHandle<()>,
    /// The socket directory sqlx is given to reach the relay (an abstract address).
    directory: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Relay {
    /// Starts a relay to the server `options` name, and returns it with the options that
    /// reach the server through it.
    ///
    /// # Errors
    /// When the socket cannot be made.
    pub(crate) fn start(options: &PgConnectOptions) -> io::Result<(Relay, PgConnectOptions)> {
        let port = options.get_port();
        let upstream = match options.get_socket() {
            Some(dir) => Upstream::Unix(format!("{}/.s.PGSQL.{port}", dir.display())),
            None if options.get_host().starts_with('/') => {
                Upstream::Unix(format!("{}/.s.PGSQL.{port}", options.get_host()))
            }
            None => Upstream::Tcp(options.get_host().to_owned(), port),
        };
        let name = format!(
            "wasmig-relay-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        // sqlx connects to `{directory}/.s.PGSQL.{port}`; a leading NUL makes it (through
        // tokio) an abstract address.
        let directory = format!("\0{name}");
        let address =
            std::os::unix::net::SocketAddr::from_abstract_name(format!("{name}/.s.PGSQL.{port}"))?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&address)?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let wires: Wires = Arc::default();
        let accept = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&wires)));
        let relay = Relay {
            wires,
            accept,
            directory,
        };
        let through = relay.through(options);
        Ok((relay, through))
    }

    /// `options` (the same server, other session settings, say), reaching the server
    /// through this relay.
    pub(crate) fn through(&self, options: &PgConnectOptions) -> PgConnectOptions {
        options
            .clone()
            .socket(&self.directory)
            .ssl_mode(sqlx::postgres::PgSslMode::Disable)
    }

    /// What the relay saw on the connection to backend `pid`, if it passes through here.
    pub(crate) fn wire(&self, pid: i32) -> Option<Arc<Wire>> {
        self.wires.lock().ok()?.get(&pid).cloned()
    }
}

async fn accept_loop(listener: UnixListener, upstream: Upstream, wires: Wires) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of file descriptors, say: the connect that waits fails in sqlx;
                // retrying at once would only spin.
                tracing::warn!("wasmig's relay could not accept a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Only this process: anyone else on the machine could reach the server as wasmig.
        let ours = client
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .is_some_and(|pid| pid == std::process::id() as i32);
        if !ours {
            tracing::warn!("a connection to wasmig's relay from another process was closed");
            continue;
        }
        let upstream = upstream.clone();
        let wires = Arc::clone(&wires);
        tokio::spawn(async move {
            if let Err(e) = serve(client, &upstream, &wires).await {
                tracing::debug!("relay connection ended: {e}");
            }
        });
    }
}

/// Relays one connection until either side ends it, then ends the other.
async fn serve(client: UnixStream, upstream: &Upstream, wires: &Wires) -> io::Result<()> {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write, server_fd) = connect(upstream).await?;
    let wire = Arc::new(Wire {
        upstream: Some(server_fd),
        ..Wire::default()
    });
    let mut pid = None;
    let result = both_ways(
        client_read,
        client_write,
        server_read,
        server_write,
        &wire,
        wires,
        &mut pid,
    )
    .await;
    wire.ended.store(true, Ordering::SeqCst);
    // Unless the server has already given the pid to a newer connection.
    if let (Some(pid), Ok(mut map)) = (pid, wires.lock())
        && map.get(&pid).is_some_and(|w| Arc::ptr_eq(w, &wire))
    {
        map.remove(&pid);
    }
    result
}

/// The two halves of a connection to the server, and its socket duplicated.
type ServerHalves = (
    Box<dyn AsyncRead + Unpin + Send>,
    Box<dyn AsyncWrite + Unpin + Send>,
    OwnedFd,
);

/// Connects to the server, by TCP or its unix socket.
async fn connect(upstream: &Upstream) -> io::Result<ServerHalves> {
    Ok(match upstream {
        Upstream::Tcp(host, port) => {
            let server = TcpStream::connect((host.as_str(), *port)).await?;
            server.set_nodelay(true)?;
            let fd = server.as_fd().try_clone_to_owned()?;
            let (read, write) = server.into_split();
            (Box::new(read), Box::new(write), fd)
        }
        Upstream::Unix(path) => {
            let server = UnixStream::connect(path).await?;
            let fd = server.as_fd().try_clone_to_owned()?;
            let (read, write) = server.into_split();
            (Box::new(read), Box::new(write), fd)
        }
    })
}

/// Copies what the client sends as it is, and what the server sends through
/// [`Reader`]; returns when either side closes (dropping both).
async fn both_ways(
    mut client_read: impl AsyncRead + Unpin,
    client_write: impl AsyncWrite + Unpin,
    server_read: impl AsyncRead + Unpin,
    mut server_write: impl AsyncWrite + Unpin,
    wire: &Arc<Wire>,
    wires: &Wires,
    pid: &mut Option<i32>,
) -> io::Result<()> {
    let to_server = tokio::io::copy(&mut client_read, &mut server_write);
    let mut reader = Reader::new(Arc::clone(wire));
    let to_client = reader.run(server_read, client_write, wires, pid);
    tokio::select! {
        r = to_server => r.map(drop),
        r = to_client => r,
    }
}

/// What the reader is in the middle of.
enum State {
    /// At the start of a message.
    Header,
    /// Reading past a message over the limit: `left` bytes of its body to go.
    Skipping {
        left: usize,
        kind: u8,
        /// The body's full length, for the error.
        length: usize,
    },
    /// Reading an error or notice over [`TEXT_LIMIT`], keeping the start of each field.
    Cutting { left: usize, cut: Cut },
}

/// The server-to-client direction: whole messages under the limits are passed on as they
/// are; the others are dropped or cut (see the module).
struct Reader {
    wire: Arc<Wire>,
    state: State,
    /// Dropping what the server sends until its next `ReadyForQuery`, after handing sqlx an
    /// error for a message over the limit.
    until_ready: bool,
    /// How many bytes the message being read needs, from where [`Reader::take`] stopped.
    wanted: usize,
    /// The length of a large message [`Reader::take`] stopped at, to pass on as it lies.
    large: Option<usize>,
}

impl Reader {
    fn new(wire: Arc<Wire>) -> Self {
        Reader {
            wire,
            state: State::Header,
            until_ready: false,
            wanted: 0,
            large: None,
        }
    }

    async fn run(
        &mut self,
        mut from: impl AsyncRead + Unpin,
        mut to: impl AsyncWrite + Unpin,
        wires: &Wires,
        pid: &mut Option<i32>,
    ) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE);
        let mut out: Vec<u8> = Vec::with_capacity(READ_SIZE);
        loop {
            let used = self.take(&buf, &mut out, wires, pid)?;
            if !out.is_empty() {
                to.write_all(&out).await?;
                out.clear();
            }
            if let Some(length) = self.large.take() {
                // Passed on from where it was read, not copied.
                to.write_all(&buf[used..used + length]).await?;
                buf.drain(..used + length);
                continue;
            }
            buf.drain(..used);
            // Never more than one message under the limit plus one read, and not kept
            // once that message is gone.
            if buf.capacity() > 4 * READ_SIZE && buf.len() <= READ_SIZE {
                buf.shrink_to(READ_SIZE);
            }
            let wanted = std::mem::take(&mut self.wanted).saturating_sub(buf.len());
            buf.reserve_exact(wanted.max(READ_SIZE));
            if from.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Handles what `buf` holds, appending what to send to `out`; returns the bytes used.
    fn take(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        wires: &Wires,
        pid: &mut Option<i32>,
    ) -> io::Result<usize> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match &mut self.state {
                State::Skipping { left, kind, length } => {
                    let n = (*left).min(rest.len());
                    *left -= n;
                    at += n;
                    if *left > 0 {
                        return Ok(at);
                    }
                    let (kind, length) = (*kind, *length);
                    self.state = State::Header;
                    self.wire.refused.fetch_add(1, Ordering::SeqCst);
                    if !self.until_ready {
                        out.extend_from_slice(&too_long(kind, length));
                        self.until_ready = true;
                    }
                }
                State::Cutting { left, cut } => {
                    let n = (*left).min(rest.len());
                    cut.feed(&rest[..n]);
                    *left -= n;
                    at += n;
                    if *left > 0 {
                        return Ok(at);
                    }
                    let State::Cutting { cut, .. } =
                        std::mem::replace(&mut self.state, State::Header)
                    else {
                        unreachable!()
                    };
                    if !self.until_ready {
                        out.extend_from_slice(&cut.finish());
                    }
                }
                State::Header => {
                    if rest.first().is_some_and(|&kind| kind != b'Z') {
                        self.wire.since_ready.store(true, Ordering::SeqCst);
                    }
                    if rest.len() < 5 {
                        return Ok(at);
                    }
                    let kind = rest[0];
                    let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
                    let Some(body) = length.checked_sub(4) else {
                        return Err(io::Error::other(format!(
                            "the server sent a message of length {length}"
                        )));
                    };
                    let text = matches!(kind, b'E' | b'N');
                    if text && body > TEXT_LIMIT {
                        at += 5;
                        self.state = State::Cutting {
                            left: body,
                            cut: Cut::new(kind),
                        };
                        continue;
                    }
                    if body > MESSAGE_LIMIT {
                        at += 5;
                        self.state = State::Skipping {
                            left: body,
                            kind,
                            length: body,
                        };
                        continue;
                    }
                    if rest.len() < 5 + body {
                        self.wanted = 5 + body;
                        return Ok(at);
                    }
                    let message = &rest[..5 + body];
                    self.observe(kind, &message[5..], wires, pid);
                    // While dropping, the server's status changes still reach sqlx.
                    if !self.until_ready || matches!(kind, b'Z' | b'S') {
                        if body > READ_SIZE {
                            self.large = Some(5 + body);
                            return Ok(at);
                        }
                        out.extend_from_slice(message);
                    }
                    if kind == b'Z' {
                        self.until_ready = false;
                    }
                    at += 5 + body;
                }
            }
        }
    }

    /// Notes what a message says about the connection.
    fn observe(&self, kind: u8, body: &[u8], wires: &Wires, pid: &mut Option<i32>) {
        match kind {
            b'Z' => {
                if let Some(&status) = body.first() {
                    self.wire.status.store(status, Ordering::SeqCst);
                }
                self.wire.since_ready.store(false, Ordering::SeqCst);
                self.wire.ready.fetch_add(1, Ordering::SeqCst);
            }
            b'C' => {
                let tag = body.strip_suffix(b"\0").unwrap_or(body);
                if is_transaction_tag(tag) {
                    self.wire.transaction_tags.fetch_add(1, Ordering::SeqCst);
                }
            }
            b'K' if body.len() >= 4 && pid.is_none() => {
                let backend = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                *pid = Some(backend);
                if let Ok(mut map) = wires.lock() {
                    map.insert(backend, Arc::clone(&self.wire));
                }
            }
            _ => {}
        }
    }
}

/// Whether a completion tag is one of transaction control: the statements that begin,
/// end or prepare a transaction (`ROLLBACK TO SAVEPOINT` also completes as `ROLLBACK`).
fn is_transaction_tag(tag: &[u8]) -> bool {
    matches!(
        tag,
        b"BEGIN"
            | b"START TRANSACTION"
            | b"COMMIT"
            | b"ROLLBACK"
            | b"PREPARE TRANSACTION"
            | b"COMMIT PREPARED"
            | b"ROLLBACK PREPARED"
    )
}

/// The `ErrorResponse` handed to sqlx in place of a message over [`MESSAGE_LIMIT`].
fn too_long(kind: u8, length: usize) -> Vec<u8> {
    let what = match kind {
        b'D' => "one row of the result",
        b'd' => "one piece of COPY data",
        _ => "one message",
    };
    let message = format!(
        "{what} is {length} bytes long, over the {} MiB wasmig passes to a migration in one message; read large values in parts (substring, lo_get) or leave them in the database",
        MESSAGE_LIMIT / (1024 * 1024)
    );
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "54000"),
        (b'M', message.as_str()),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    framed(b'E', &fields)
}

/// A message: its type, its length, its body.
fn framed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(5 + body.len());
    message.push(kind);
    message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// An error or notice being cut field by field as it streams past: each field (a code
/// byte, then text up to a NUL) keeps its first [`FIELD_KEEP`] bytes, cut back to whole
/// UTF-8 characters, and says how long it was.
struct Cut {
    kind: u8,
    /// The fields kept so far.
    kept: Vec<u8>,
    /// The field being read: its code, its text kept, its full length.
    field: Option<(u8, Vec<u8>, usize)>,
    /// The terminating zero byte was read.
    done: bool,
}

impl Cut {
    fn new(kind: u8) -> Self {
        Cut {
            kind,
            kept: Vec::new(),
            field: None,
            done: false,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.done {
            match &mut self.field {
                None => {
                    let code = bytes[0];
                    bytes = &bytes[1..];
                    if code == 0 {
                        self.done = true;
                    } else {
                        self.field = Some((code, Vec::new(), 0));
                    }
                }
                Some((_, text, length)) => {
                    let end = bytes.iter().position(|&b| b == 0);
                    let piece = &bytes[..end.unwrap_or(bytes.len())];
                    let room = FIELD_KEEP.saturating_sub(text.len());
                    text.extend_from_slice(&piece[..piece.len().min(room)]);
                    *length += piece.len();
                    match end {
                        Some(end) => {
                            bytes = &bytes[end + 1..];
                            let (code, text, length) = self.field.take().expect("a field");
                            self.keep(code, text, length);
                        }
                        None => bytes = &[],
                    }
                }
            }
        }
    }

    fn keep(&mut self, code: u8, mut text: Vec<u8>, length: usize) {
        if length > text.len() {
            let whole = match std::str::from_utf8(&text) {
                Ok(_) => text.len(),
                Err(e) => e.valid_up_to(),
            };
            text.truncate(whole);
            text.extend_from_slice(format!(" [cut by wasmig: {length} bytes]").as_bytes());
        }
        self.kept.push(code);
        self.kept.extend_from_slice(&text);
        self.kept.push(0);
    }

    /// The message as it is passed on.
    fn finish(mut self) -> Vec<u8> {
        if let Some((code, text, length)) = self.field.take() {
            self.keep(code, text, length);
        }
        self.kept.push(0);
        framed(self.kind, &self.kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> (Reader, Wires) {
        (Reader::new(Arc::new(Wire::default())), Arc::default())
    }

    /// Feeds `input` in pieces of `step` bytes, as reads would bring it.
    fn pass(reader: &mut Reader, wires: &Wires, input: &[u8], step: usize) -> Vec<u8> {
        let mut pid = None;
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                let used = reader.take(&buf, &mut out, wires, &mut pid).unwrap();
                match reader.large.take() {
                    Some(length) => {
                        out.extend_from_slice(&buf[used..used + length]);
                        buf.drain(..used + length);
                    }
                    None => {
                        buf.drain(..used);
                        break;
                    }
                }
            }
        }
        assert!(buf.is_empty(), "{} bytes left unread", buf.len());
        out
    }

    fn error_fields(message: &[u8]) -> Vec<(u8, String)> {
        assert_eq!(message[0], b'E');
        let mut fields = Vec::new();
        let mut body = &message[5..];
        while body[0] != 0 {
            let end = body.iter().position(|&b| b == 0).unwrap();
            fields.push((body[0], String::from_utf8(body[1..end].to_vec()).unwrap()));
            body = &body[end + 1..];
        }
        fields
    }

    #[test]
    fn messages_under_the_limits_pass_unchanged_in_any_pieces() {
        let mut input = framed(b'T', b"row description");
        input.extend(framed(b'D', &[7; 1000]));
        input.extend(framed(b'D', &vec![8; READ_SIZE + 1]));
        input.extend(framed(b'C', b"SELECT 1\0"));
        input.extend(framed(b'Z', b"T"));
        for step in [1, 3, 5, 64, 4096] {
            let (mut r, wires) = reader();
            assert_eq!(pass(&mut r, &wires, &input, step), input, "step {step}");
            assert_eq!(r.wire.status(), Some(b'T'));
            assert_eq!(r.wire.transaction_tags(), 0);
        }
    }

    #[test]
    fn a_row_over_the_limit_becomes_an_error_and_the_rest_of_its_request_is_dropped() {
        let mut input = framed(b'D', b"small");
        input.extend(framed(b'D', &vec![1; MESSAGE_LIMIT + 1]));
        input.extend(framed(b'D', b"after"));
        input.extend(framed(b'C', b"SELECT 3\0"));
        input.extend(framed(b'S', b"application_name\0x\0"));
        input.extend(framed(b'Z', b"T"));
        input.extend(framed(b'C', b"SELECT 0\0"));
        let (mut r, wires) = reader();
        let out = pass(&mut r, &wires, &input, 1 << 20);
        let first = framed(b'D', b"small");
        assert_eq!(&out[..first.len()], first.as_slice());
        let rest = &out[first.len()..];
        let error_len = 1 + u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let fields = error_fields(&rest[..error_len]);
        assert!(fields.contains(&(b'C', "54000".into())), "{fields:?}");
        let mut expected = framed(b'S', b"application_name\0x\0");
        expected.extend(framed(b'Z', b"T"));
        expected.extend(framed(b'C', b"SELECT 0\0"));
        assert_eq!(&rest[error_len..], expected.as_slice());
        assert_eq!(r.wire.refused(), 1);
    }

    #[test]
    fn a_long_error_keeps_the_start_of_each_field_on_a_character_boundary() {
        let long = "é".repeat(100_000);
        let mut body = Vec::new();
        for (code, value) in [(b'S', "ERROR"), (b'C', "P0001"), (b'M', long.as_str())] {
            body.push(code);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let input = framed(b'E', &body);
        for step in [7, 65_536] {
            let (mut r, wires) = reader();
            let out = pass(&mut r, &wires, &input, step);
            let fields = error_fields(&out);
            assert_eq!(fields[0], (b'S', "ERROR".into()));
            assert_eq!(fields[1], (b'C', "P0001".into()));
            let message = &fields[2].1;
            assert!(message.len() < FIELD_KEEP + 64, "{}", message.len());
            assert!(
                message.ends_with("[cut by wasmig: 200000 bytes]"),
                "{message}"
            );
        }
    }

    #[test]
    fn transaction_control_tags_and_the_backend_pid_are_noted() {
        let mut input = framed(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]);
        input.extend(framed(b'C', b"COMMIT\0"));
        input.extend(framed(b'C', b"BEGIN\0"));
        input.extend(framed(b'C', b"INSERT 0 1\0"));
        input.extend(framed(b'C', b"ROLLBACK\0"));
        input.extend(framed(b'Z', b"I"));
        let (mut r, wires) = reader();
        pass(&mut r, &wires, &input, 2);
        assert_eq!(r.wire.transaction_tags(), 3);
        assert_eq!(r.wire.status(), Some(b'I'));
        assert!(wires.lock().unwrap().contains_key(&12345));
    }

    #[test]
    fn a_length_under_four_is_a_protocol_error() {
        let (mut r, wires) = reader();
        let mut pid = None;
        let err = r
            .take(&[b'D', 0, 0, 0, 3], &mut Vec::new(), &wires, &mut pid)
            .unwrap_err();
        assert!(err.to_string().contains("length 3"), "{err}");
    }

    /// A wire whose server end is `ours`, with `theirs` standing for the server.
    fn wire() -> (
        Wire,
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let wire = Wire {
            upstream: Some(ours.as_fd().try_clone_to_owned().unwrap()),
            ..Wire::default()
        };
        (wire, ours, theirs)
    }

    /// What the server sent and the relay has not read yet is seen in the socket: a
    /// message, or the end of the stream; nothing is read from it.
    #[test]
    fn what_waits_in_the_socket_is_seen_without_being_read() {
        let (wire, ours, mut theirs) = wire();
        assert!(wire.quiet());
        std::io::Write::write_all(&mut theirs, b"E").unwrap();
        assert!(!wire.quiet());
        assert!(!wire.quiet(), "seen again: peeked, not read");
        let (wire, _ours, theirs) = self::wire();
        drop(theirs);
        assert!(!wire.quiet(), "the end of the stream");
        drop(ours);
    }

    /// A message the relay read since the last `ReadyForQuery` (the `FATAL` before the end
    /// of the stream) makes the connection not quiet until the next `ReadyForQuery`.
    #[test]
    fn a_message_read_after_the_last_ready_for_query_is_not_quiet() {
        let mut reader = Reader::new(Arc::new(Wire::default()));
        let wires: Wires = Arc::default();
        let (mut out, mut pid) = (Vec::new(), None);
        reader
            .take(&framed(b'Z', b"T"), &mut out, &wires, &mut pid)
            .unwrap();
        assert!(reader.wire.quiet());
        reader
            .take(&framed(b'E', b"SFATAL\0\0"), &mut out, &wires, &mut pid)
            .unwrap();
        assert!(!reader.wire.quiet());
        reader
            .take(&framed(b'Z', b"I"), &mut out, &wires, &mut pid)
            .unwrap();
        assert!(reader.wire.quiet());
        reader.wire.ended.store(true, Ordering::SeqCst);
        assert!(!reader.wire.quiet());
    }
}
