//! The build jail: how an untrusted project's toolchains run (cargo and rustc with the
//! project's build scripts and proc macros, componentize-py, jco, clang).
//!
//! A jailed process and everything it starts:
//! - sees an environment of wasmig's making (the caller's is cleared: no secrets from the CI
//!   job's variables);
//! - reads only the paths granted (the system's programs and libraries, the toolchain, the
//!   staged sources), writes only the paths granted (the build directory), and nothing
//!   else: not the home directory, other projects, credentials, wasmig's compile cache key;
//! - opens no TCP connection and listens on no port, unless a port is granted (the fetch of
//!   dependencies, to the registry's HTTPS port); without a granted port it cannot create a
//!   socket at all (no UDP, no Unix socket to the database's socket file, no `io_uring`);
//! - cannot signal or trace processes outside the jail.
//!
//! Enforced by the kernel: Landlock (filesystem and TCP rules, ABI 4 or later, Linux 6.7),
//! scoped signals and abstract Unix sockets where the kernel has them (ABI 6), and a seccomp
//! filter refusing `socket` and `io_uring_setup`. Everything that allocates is prepared in
//! the parent; between `fork` and `exec` the child only makes system calls.
//!
//! Not here: what each build grants (`artifact` for Rust, `toolchain` for the others), the
//! staging of an untrusted project's sources (`untrusted`).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};

use crate::error::BuildError;

/// The Landlock ABI the jail needs: 4 is the first that restricts TCP (Linux 6.7).
const NEEDED: ABI = ABI::V4;

/// What the system lends every jailed toolchain, read-only: programs, libraries, the
/// dynamic loader's cache and the name service files a program may look up.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    // OpenSSL's configuration, which node reads at start (not /etc/ssl/private).
    "/etc/ssl/openssl.cnf",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
];

/// What the fetch of dependencies also reads: name resolution and TLS certificates.
const NETWORK_READ: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
];

/// The rules for one jailed command.
#[derive(Debug, Clone)]
pub struct Jail {
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    /// TCP ports it may connect to; empty: no sockets at all.
    connect: Vec<u16>,
    env: Vec<(OsString, OsString)>,
}

impl Default for Jail {
    fn default() -> Self {
        Self::new()
    }
}

impl Jail {
    /// A jail that reads the system's programs and libraries, writes `/dev/null`, has no
    /// network and an empty environment.
    pub fn new() -> Self {
        Jail {
            read: SYSTEM_READ.iter().map(PathBuf::from).collect(),
            write: vec![PathBuf::from("/dev/null")],
            connect: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Also lets it read `path` (and everything beneath it).
    #[must_use]
    pub fn read(mut self, path: impl Into<PathBuf>) -> Self {
        self.read.push(path.into());
        self
    }

    /// Also lets it read, write, create and remove `path` and everything beneath it.
    #[must_use]
    pub fn write(mut self, path: impl Into<PathBuf>) -> Self {
        self.write.push(path.into());
        self
    }

    /// Sets a variable of its environment (which starts empty).
    #[must_use]
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Lets it connect to TCP `port` (on any host), with what resolving and TLS need.
    #[must_use]
    pub fn connect_to(mut self, port: u16) -> Self {
        self.connect.push(port);
        self.read.extend(NETWORK_READ.iter().map(PathBuf::from));
        self
    }

    /// Makes `command` run in this jail: its environment replaced, and the kernel's rules
    /// applied in the child before it runs the program.
    ///
    /// # Errors
    /// [`BuildError`] when the kernel cannot enforce the jail (Landlock missing or older
    /// than ABI 4), saying why.
    fn apply(&self, command: &mut Command) -> Result<(), BuildError> {
        let ruleset = self.ruleset()?;
        let filter = if self.connect.is_empty() {
            Some(seccomp::no_sockets())
        } else {
            None
        };
        command.env_clear();
        for (name, value) in &self.env {
            command.env(name, value);
        }
        // SAFETY: the closure only makes system calls (prctl, landlock_restrict_self,
        // seccomp) on data prepared above; it allocates nothing and takes no lock, as
        // required between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(filter) = &filter {
                    seccomp::install(filter)?;
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Runs `command` in this jail, its standard output captured (standard error as the
    /// caller set it), in a process group of its own, and waits at most
    /// `limit` for it (and for its output to end). Then every process left in the group is
    /// killed: a build script that forks a daemon, or loops, does not outlive the build or
    /// hold the run. (A process that leaves the group with `setsid` escapes the kill, but
    /// not the jail; its output pipes then end the wait at `limit`.)
    ///
    /// # Errors
    /// [`BuildError`] when the jail cannot be enforced, the program cannot start, or it
    /// ran past `limit` (naming it and the variable that sets it).
    pub fn output(&self, command: &mut Command, limit: Duration) -> Result<Output, BuildError> {
        use std::io::Read as _;
        use std::os::unix::process::CommandExt as _;
        self.apply(command)?;
        // Captured, as `Command::output` does; standard error is the caller's choice.
        command
            .process_group(0)
            .stdout(std::process::Stdio::piped());
        let program = command.get_program().to_string_lossy().into_owned();
        // Orphans of the build (a daemon that left its group with `setsid`) become this
        // process's children, not init's, so they can be found and ended below.
        // SAFETY: a plain system call.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        let before = children();
        let mut child = command.spawn().map_err(|e| BuildError {
            message: format!("cannot run {program} ({e})"),
        })?;
        let group = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            let (done, got) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    // At most OUTPUT_CAP kept (the rest read and dropped): a build that
                    // prints without end does not fill wasmig's memory.
                    let _ = (&mut pipe).take(OUTPUT_CAP).read_to_end(&mut bytes);
                    let _ = std::io::copy(&mut pipe, &mut std::io::sink());
                }
                let _ = done.send(bytes);
            });
            got
        };
        let stdout = reader(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = reader(child.stderr.take().map(|p| Box::new(p) as _));
        let started = std::time::Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break None,
            }
        };
        // Whatever happened, nothing the build started outlives it: its group, then any
        // orphan that left the group.
        // SAFETY: plain system calls; the group is the one the child leads.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        end_orphans(&before);
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BuildError {
                message: format!(
                    "the build ({program}) ran past its time limit of {} s, and every process it started was killed; if it needs longer, the operator raises {BUILD_TIMEOUT_VARIABLE}",
                    limit.as_secs()
                ),
            });
        };
        let wait = Duration::from_secs(5);
        Ok(Output {
            status,
            stdout: stdout.recv_timeout(wait).unwrap_or_default(),
            stderr: stderr.recv_timeout(wait).unwrap_or_default(),
        })
    }

    /// The Landlock ruleset, created in this process (its file descriptor is inherited by
    /// the child up to `exec`).
    fn ruleset(&self) -> Result<OwnedFd, BuildError> {
        let unenforceable = |e: &dyn std::fmt::Display| BuildError {
            message: format!(
                "the build jail cannot be enforced on this machine: {e}; untrusted mode needs Linux 6.7 or later with Landlock enabled (check `cat /sys/kernel/security/lsm`)"
            ),
        };
        let mut created = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(NEEDED))
            .and_then(|r| r.handle_access(AccessNet::from_all(NEEDED)))
            // Scoped signals and abstract sockets (ABI 6) where the kernel has them; the
            // seccomp filter refuses sockets anyway.
            .map(|r| r.set_compatibility(CompatLevel::BestEffort))
            .and_then(|r| r.scope(Scope::AbstractUnixSocket | Scope::Signal))
            .map(|r| r.set_compatibility(CompatLevel::HardRequirement))
            .and_then(|r| r.create())
            .map_err(|e| unenforceable(&e))?;
        for (paths, writable) in [(&self.read, false), (&self.write, true)] {
            for path in paths {
                let Ok(meta) = std::fs::metadata(path) else {
                    continue;
                };
                let access = match (meta.is_dir(), writable) {
                    (true, false) => AccessFs::from_read(NEEDED),
                    (true, true) => AccessFs::from_all(NEEDED),
                    (false, false) => AccessFs::from_read(NEEDED) & AccessFs::from_file(NEEDED),
                    (false, true) => AccessFs::from_file(NEEDED),
                };
                let fd = PathFd::new(path).map_err(|e| BuildError {
                    message: format!("cannot open {} for the build jail: {e}", path.display()),
                })?;
                created = created
                    .add_rule(PathBeneath::new(fd, access))
                    .map_err(|e| unenforceable(&e))?;
            }
        }
        for port in &self.connect {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(|e| unenforceable(&e))?;
        }
        let fd: Option<OwnedFd> = created.into();
        fd.ok_or_else(|| unenforceable(&"Landlock is not enabled in this kernel"))
    }
}

/// This process's children (pids), from `/proc`.
fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid …`: the name may hold spaces and parentheses.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
                    .is_some_and(|ppid| ppid == me)
            })
        })
        .collect()
}

/// Kills and reaps the children of this process that `before` did not list: orphans of a
/// jailed build, handed to this process as their subreaper. Repeated while new ones appear
/// (an orphan's own children are handed over when it dies), a bounded number of times.
fn end_orphans(before: &[i32]) {
    for _ in 0..50 {
        let orphans: Vec<i32> = children()
            .into_iter()
            .filter(|pid| !before.contains(pid))
            .collect();
        if orphans.is_empty() {
            return;
        }
        for pid in orphans {
            // SAFETY: plain system calls on a child of this process.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The most of a jailed build's standard output, and of its standard error, wasmig keeps.
const OUTPUT_CAP: u64 = 16 * 1024 * 1024;

/// The variable that sets how long one jailed build may take (seconds).
pub const BUILD_TIMEOUT_VARIABLE: &str = "WASMIG_MAX_BUILD_SECS";

/// How long one jailed build (a fetch, a cargo build, one language build) may take:
/// [`BUILD_TIMEOUT_VARIABLE`] from the operator's environment, else 15 minutes.
///
/// # Errors
/// [`BuildError`] when the variable is not a whole number of seconds above 0.
pub fn build_timeout() -> Result<Duration, BuildError> {
    match std::env::var(BUILD_TIMEOUT_VARIABLE) {
        Err(_) => Ok(Duration::from_secs(15 * 60)),
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| BuildError {
                message: format!(
                    "{BUILD_TIMEOUT_VARIABLE}={text} is not a whole number of seconds above 0"
                ),
            }),
    }
}

/// Whether this machine can enforce the jail, and if not, why.
///
/// # Errors
/// [`BuildError`] saying what the kernel lacks.
pub fn check_enforceable() -> Result<(), BuildError> {
    Jail::new().ruleset().map(drop)
}

/// The seccomp filter of a jail without network: `socket` and `io_uring_setup` fail with
/// `EACCES`, every other system call of the native architecture runs, and system calls of
/// another architecture (32-bit and x32 entry points) all fail.
mod seccomp {
    /// `AUDIT_ARCH_*` of this build's architecture.
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7;
    /// x32 system calls on x86_64 have this bit set.
    const X32_BIT: u32 = 0x4000_0000;

    /// Offsets in `struct seccomp_data`.
    const NR: u32 = 0;
    const ARCH_OFFSET: u32 = 4;

    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    /// The program, built in the parent.
    pub(super) fn no_sockets() -> Vec<libc::sock_filter> {
        let deny = libc::SECCOMP_RET_ERRNO | libc::EACCES as u32;
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let eq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        let ge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
        let ret = libc::BPF_RET | libc::BPF_K;
        vec![
            stmt(load, ARCH_OFFSET),
            // 0: another architecture's entry point: refuse everything.
            jump(eq, ARCH, 1, 0),
            stmt(ret, deny),
            stmt(load, NR),
            jump(ge, X32_BIT, 0, 1),
            stmt(ret, deny),
            jump(eq, libc::SYS_socket as u32, 0, 1),
            stmt(ret, deny),
            jump(eq, libc::SYS_io_uring_setup as u32, 0, 1),
            stmt(ret, deny),
            stmt(ret, libc::SECCOMP_RET_ALLOW),
        ]
    }

    /// Installs `filter` on the calling thread (after `PR_SET_NO_NEW_PRIVS`). Called
    /// between fork and exec: system calls only.
    pub(super) fn install(filter: &[libc::sock_filter]) -> std::io::Result<()> {
        let program = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr().cast_mut(),
        };
        // SAFETY: `program` points at `filter`, alive for the call.
        let done = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program as libc::c_ulong,
                0,
                0,
            )
        };
        if done == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
