//! A guest that tries to escape the sandbox through WASI: read a file, read the
//! environment, open a socket, resolve a name. Built for wasm32-wasip2 so it has the WASI
//! imports to try with. Every attempt must be denied; it prints what happened (stdout is
//! captured into wasmig's log) and fails the migration if anything got through.

use wasmig_guest::{Migration, Result, bail};

struct Hostile;

impl Migration for Hostile {
    fn upgrade() -> Result<()> {
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
