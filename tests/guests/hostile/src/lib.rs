//! A guest that tries to escape the sandbox through WASI: read a file, read the
//! environment, open a socket, resolve a name. Built for wasm32-wasip2 so it has the WASI
//! imports to try with. Every attempt must be denied; it prints what happened (stdout is
//! captured into wasmig's log) and fails the migration if anything got through.
//!
//! If the table `hostile_sleep` exists, it instead sleeps for an hour through WASI's clocks,
//! a wait inside the host that the epoch deadline alone cannot interrupt.

use wasmig_guest::{Dialect, Migration, Result, bail, db};

struct Hostile;

impl Migration for Hostile {
    fn upgrade() -> Result<()> {
        let probe = match db::dialect() {
            Dialect::Postgres => "SELECT count(*) FROM pg_tables WHERE tablename = 'hostile_sleep'",
            Dialect::Sqlite => "SELECT count(*) FROM sqlite_master WHERE name = 'hostile_sleep'",
            Dialect::Mysql => {
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'hostile_sleep'"
            }
        };
        if db::query_one(probe, &[])?.get::<i64>(0)? > 0 {
            db::batch("CREATE TABLE hostile_slept (x integer)")?;
            std::thread::sleep(std::time::Duration::from_secs(3600));
            return Ok(());
        }
        let mut escaped = Vec::new();
        match std::fs::read_to_string("/etc/passwd") {
            Ok(_) => escaped.push("read /etc/passwd"),
            Err(e) => println!("file read denied: {e}"),
        }
        match std::fs::read_dir(".") {
            Ok(_) => escaped.push("listed the current directory"),
            Err(e) => println!("directory listing denied: {e}"),
        }
        let vars: Vec<(String, String)> = std::env::vars().collect();
        if vars.is_empty() {
            println!("environment denied: 0 variables");
        } else {
            escaped.push("read the environment");
        }
        let args: Vec<String> = std::env::args().collect();
        println!("arguments: {}", args.len());
        match std::net::TcpStream::connect("127.0.0.1:5432") {
            Ok(_) => escaped.push("connected to 127.0.0.1:5432"),
            Err(e) => println!("socket denied: {e}"),
        }
        match std::net::UdpSocket::bind("0.0.0.0:0") {
            Ok(_) => escaped.push("bound a UDP socket"),
            Err(e) => println!("udp denied: {e}"),
        }
        use std::net::ToSocketAddrs;
        match "example.com:80".to_socket_addrs() {
            Ok(_) => escaped.push("resolved example.com"),
            Err(e) => println!("name lookup denied: {e}"),
        }
        if !escaped.is_empty() {
            bail!("escaped the sandbox: {}", escaped.join(", "));
        }
        Ok(())
    }

    fn downgrade() -> Result<()> {
        Ok(())
    }
}

wasmig_guest::migration!(Hostile);
