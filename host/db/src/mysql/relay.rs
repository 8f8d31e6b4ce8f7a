//! The relay between sqlx and the server on the connections that run migration SQL:
//! wasmig's reading of the packet headers the server sends, before sqlx reads a packet.
//!
//! sqlx (0.9) reads each packet from the server whole, its 16 MiB continuation parts
//! joined in one buffer, before it hands over a row; and the server sends a row of several
//! values whole, however large (`max_allowed_packet` bounds each value, not a row: a
//! 75 MB row of five values came with it at 16 MiB). A migration decides what the server
//! sends on its connection, so host memory is wasmig's business: the relay forwards what
//! the server sends part by part, in pieces of at most [`PIECE`] bytes, and once a packet
//! would pass [`PACKET_LIMIT`] (the result budget of one guest call) it forwards nothing
//! more of it and closes the connection both ways. sqlx then fails the call as a broken
//! connection, the server rolls the step's transaction back, and the session, seeing the
//! relay's [`Cut`], reports the packet's size rather than a lost connection. A graceful
//! error the guest could handle (an `ERR` packet in the row's place and the rest of the
//! result set skipped, as PostgreSQL's relay does) would need the result set's state, and
//! is not done.
//!
//! The relay listens on a unix socket of its own (a random name in the temporary
//! directory), for one connection only, and accepts it only from this process; the socket
//! file is removed once that connection is made. sqlx is built without TLS, so the relay
//! sees the protocol in the clear, and sqlx does not compress it.
//!
//! Not here: the connection's settings (`mod.rs`), what the session does with a cut
//! (`session`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::mysql::MySqlConnectOptions;
use sqlx::{Connection as _, MySqlConnection};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::net::{TcpStream, UnixListener};
use wasmig_contract::SqlError;

/// The longest packet the relay passes to sqlx (its payload, all its parts): the result
/// budget of one guest call, so a row the guest could not be given anyway is never held
/// whole.
pub(crate) const PACKET_LIMIT: usize = crate::MAX_RESULT_BYTES;

/// How much of a packet the relay reads from the server at a time.
const PIECE: usize = 64 * 1024;

/// The length of a packet part that another part follows.
const CONTINUED: usize = 0xFF_FF_FF;

/// What the relay saw of a packet it did not pass on: the bytes it had reached, 0 if none.
#[derive(Debug, Default)]
pub(super) struct Cut(AtomicU64);

impl Cut {
    /// The size the refused packet had reached when the relay closed the connection.
    pub(super) fn refused(&self) -> Option<u64> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }
}

/// A connection to the server of `options` (host and port) through a relay of its own,
/// and what the relay cut. Only for TCP: a URL naming a unix socket connects directly
/// (with no [`Cut`] to report).
///
/// # Errors
/// When the relay's socket cannot be made, or the connection fails.
pub(super) async fn connect(
    options: &MySqlConnectOptions,
) -> Result<(MySqlConnection, Option<Arc<Cut>>), sqlx::Error> {
    if options.get_socket().is_some() {
        return Ok((MySqlConnection::connect_with(options).await?, None));
    }
    let path: PathBuf = std::env::temp_dir().join(format!(
        "wasmig-mysql-{}.sock",
        uuid::Uuid::new_v4().simple()
    ));
    let listener = UnixListener::bind(&path)?;
    let server = (options.get_host().to_owned(), options.get_port());
    let cut = Arc::new(Cut::default());
    let relayed = Arc::clone(&cut);
    let accepting = path.clone();
    let relay = tokio::spawn(async move {
        let accepted = listener.accept().await;
        let _ = std::fs::remove_file(&accepting);
        let (client, _) = accepted?;
        // Only this process: no other local user reaches the server through wasmig.
        if client.peer_cred()?.pid() != Some(std::process::id().cast_signed()) {
            return Ok(());
        }
        let upstream = TcpStream::connect(server).await?;
        upstream.set_nodelay(true)?;
        pump(client, upstream, &relayed).await;
        std::io::Result::Ok(())
    });
    let connected = MySqlConnection::connect_with(&options.clone().socket(&path)).await;
    let _ = std::fs::remove_file(&path);
    if connected.is_err() {
        relay.abort();
    }
    Ok((connected?, Some(cut)))
}

/// Carries the bytes both ways until either side closes, or a packet from the server would
/// pass [`PACKET_LIMIT`] (then both sides are closed and `cut` says how far it got).
async fn pump(client: tokio::net::UnixStream, server: TcpStream, cut: &Cut) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        let _ = to_server.shutdown().await;
    };
    let downstream = async {
        // Buffered both ways, so a result of many small rows costs a few system calls per
        // 64 KiB rather than four per row; what was read is written on before the relay
        // waits on the server again, so nothing is held back from sqlx while it waits.
        let mut from_server = BufReader::with_capacity(PIECE, &mut from_server);
        let mut to_client = BufWriter::with_capacity(PIECE, &mut to_client);
        let mut buf = vec![0u8; PIECE];
        // The bytes of the packet so far, over its parts.
        let mut packet = 0usize;
        loop {
            let mut header = [0u8; 4];
            if flush_before_waiting(&from_server, &mut to_client)
                .await
                .is_err()
                || from_server.read_exact(&mut header).await.is_err()
            {
                break;
            }
            let part =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            if packet + part > PACKET_LIMIT {
                cut.0.store((packet + part) as u64, Ordering::SeqCst);
                break;
            }
            if to_client.write_all(&header).await.is_err() {
                break;
            }
            let mut left = part;
            while left > 0 {
                let n = left.min(PIECE);
                if flush_before_waiting(&from_server, &mut to_client)
                    .await
                    .is_err()
                    || from_server.read_exact(&mut buf[..n]).await.is_err()
                    || to_client.write_all(&buf[..n]).await.is_err()
                {
                    return;
                }
                left -= n;
            }
            packet = if part == CONTINUED { packet + part } else { 0 };
        }
    };
    // Either side ending ends both: the other half is dropped, closing its socket.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

/// Writes on what `to_client` holds when `from_server` has nothing buffered, that is before
/// the next read could wait on the server.
async fn flush_before_waiting<R, W>(
    from_server: &BufReader<R>,
    to_client: &mut BufWriter<W>,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead,
    W: tokio::io::AsyncWrite + Unpin,
{
    if from_server.buffer().is_empty() {
        to_client.flush().await?;
    }
    Ok(())
}

/// A failed call's error, or the relay's account of it when it closed the connection over
/// a packet too large.
pub(super) fn explained(cut: Option<&Arc<Cut>>, error: SqlError) -> SqlError {
    match cut.and_then(|c| c.refused()) {
        Some(bytes) => SqlError::wasmig(
            "LIMIT",
            format!(
                "the server sent a packet of at least {bytes} bytes (one row of a result, say), more than the {} MiB one call may return: wasmig closed the connection rather than hold it, so the step's transaction was rolled back; select large values in parts (SUBSTRING) or fewer columns at a time",
                PACKET_LIMIT / (1024 * 1024)
            ),
        ),
        None => error,
    }
}
