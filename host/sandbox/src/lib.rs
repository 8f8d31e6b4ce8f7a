//! wasmig's sandbox: one wasmtime engine, the linker with wasmig's interfaces and a deny-all
//! WASI, the compile cache, and running one `upgrade` or `downgrade` call under limits.
//!
//! What a guest gets: the `sql` interface on its migration's transaction, `log`, clocks and
//! randomness. What it does not: files, environment, arguments, stdin, sockets, name lookup.
//! Limits: a memory cap over all its memories, an element cap over all its tables, and a
//! wall-clock deadline enforced by epoch interruption while wasm runs and by cancelling the
//! statement while it waits on SQL.
//!
//! Not here: what the host functions do (`host`), the cache's file format (`cache`), why a
//! step failed (`error`), how progress is reported (`progress`). Depends on the contract
//! and the database crates; knows nothing of revisions, plans or the command line.

mod cache;
pub mod error;
mod functions;
pub mod host;
pub mod journal;
mod precompile;
pub mod progress;
pub mod throttle;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap};

use self::functions::{CodeShare, FunctionMemo};
use self::host::{GuestState, LimitTrap, NoSuchDialect};
use self::precompile::{Background, Claim};
use crate::error::{ComponentError, Failure};
use crate::progress::Progress;
use wasmig_contract::{MigrationHost, MigrationHostPre};
use wasmig_db::Session;
use wasmig_plan::graph::Direction;

pub use self::cache::{CacheStatus, Sealer};
pub use self::host::against_deadline;

/// What [`Sandbox::compile`] came to.
enum Compiled {
    Done(wasmtime::Result<(wasmtime::component::Component, CacheStatus)>),
    TimedOut,
}

/// A component over a limit that applies before it runs: its size, or the time compiling
/// it took (exit 7, like the limits of a call).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "revision {revision}: {what}; raise the limit in the [sandbox] table of wasmig.toml if the component is trusted"
)]
pub struct CompileLimit {
    /// The revision.
    pub revision: String,
    /// Which limit, and by how much.
    pub what: String,
}

/// How often a call past its deadline looks again whether its database call has returned
/// (see `Sandbox::run`).
const PARKED_CHECK: Duration = Duration::from_millis(20);

/// How often the epoch advances; the deadline's resolution while wasm runs.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest checkpoint a batch may pass to `next-batch`: it is stored with every batch.
const MAX_CHECKPOINT: usize = 64 * 1024;

/// The deadline used when `now + timeout` cannot be represented (a year; configuration
/// allows at most a week).
const MAX_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The only interfaces a component may import besides WASI: those of every WIT version
/// the host links (`wasmig_contract`'s `bindgen!`).
const ALLOWED_IMPORTS: &[&str] = &[
    "wasmig:migration/types@0.4.0",
    "wasmig:migration/sql@0.4.0",
    "wasmig:migration/log@0.4.0",
    "wasmig:migration/batch@0.4.0",
    "wasmig:migration/types@0.3.0",
    "wasmig:migration/sql@0.3.0",
    "wasmig:migration/log@0.3.0",
    "wasmig:migration/batch@0.3.0",
    "wasmig:migration/types@0.2.0",
    "wasmig:migration/sql@0.2.0",
    "wasmig:migration/log@0.2.0",
    "wasmig:migration/batch@0.2.0",
    "wasmig:migration/types@0.1.0",
    "wasmig:migration/sql@0.1.0",
    "wasmig:migration/log@0.1.0",
];

/// A loaded component, ready to instantiate.
#[derive(Clone)]
pub struct Loaded {
    /// The compiled component, linked; created by [`Sandbox::load`], dropped with this handle
    /// or by [`Loaded::release`] (a fleet's memo holds a handle of its own).
    pre: Option<MigrationHostPre<GuestState>>,
    /// Whether it came from the cache or was compiled now.
    pub cache: CacheStatus,
    /// Time spent compiling or loading.
    pub load_time: Duration,
}

impl Loaded {
    /// Lets go of the compiled component once its step has made its last call, so what
    /// follows (the step's record, which for an upgrade binds the component's bytes) runs
    /// without its code resident: for a Python component, about 16 MiB of pages mapped
    /// from the compile cache (issue 18). Running it again after this is a bug, reported
    /// as the call's error.
    pub fn release(&mut self) {
        self.pre = None;
    }
}

/// Limits for one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Memory cap in bytes.
    pub memory: u64,
    /// Wall-clock deadline.
    pub timeout: Duration,
    /// For batched steps: the most batches one run commits.
    pub max_batches: u64,
    /// For batched steps: the longest one run spends on the step.
    pub batched_timeout: Duration,
}

/// What the sandbox enforces on every component of a run, before any call.
#[derive(Debug, Clone, Copy)]
pub struct SandboxOptions {
    /// The longest compiling one component may take (a cache hit takes none).
    pub compile_timeout: Duration,
    /// The largest component accepted, in bytes.
    pub max_component_bytes: u64,
    /// Which of wasmtime's compilers turns components into native code.
    pub compiler: Compiler,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            compile_timeout: Duration::from_secs(120),
            max_component_bytes: 64 * 1024 * 1024,
            compiler: Compiler::Auto,
        }
    }
}

/// Which of wasmtime's compilers a run compiles components with (`[sandbox] compiler`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compiler {
    /// Cranelift, except for a run that must compile at least [`BULK_COMPILE`] new
    /// components at once (a database built from its first revision, a CI job with an
    /// empty cache): those it compiles with Winch, whose compiling is about three times
    /// faster and whose code is slower, since such a run's time goes to compiling; unless
    /// most of their code is shared between them (one project's revisions in one
    /// language), which Cranelift then compiles once for all of them. On x86-64 only, where
    /// wasmtime supports Winch at its first tier.
    #[default]
    Auto,
    /// Cranelift, wasmtime's optimising compiler, always.
    Cranelift,
    /// Winch, wasmtime's baseline compiler, always.
    Winch,
}

/// With [`Compiler::Auto`], the number of new components a run must compile from which it
/// compiles them with Winch.
pub const BULK_COMPILE: usize = 10;

/// One compiler's engine and the linker made for it (a linker serves one engine).
struct Tier {
    engine: Engine,
    linker: Linker<GuestState>,
    winch: bool,
    /// Cranelift's functions compiled in this run (none for Winch).
    functions: Option<Arc<FunctionMemo>>,
}

impl Tier {
    fn new(winch: bool) -> anyhow::Result<Tier> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let functions = if winch {
            config.strategy(wasmtime::Strategy::Winch);
            None
        } else {
            let memo = Arc::new(FunctionMemo::default());
            config.enable_incremental_compilation(
                Arc::clone(&memo) as Arc<dyn wasmtime::CacheStore>
            )?;
            Some(memo)
        };
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        MigrationHost::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Ok(Tier {
            engine,
            linker,
            winch,
            functions,
        })
    }

    fn name(&self) -> &'static str {
        if self.winch { "Winch" } else { "Cranelift" }
    }
}

/// The engine and linker, created once per run.
pub struct Sandbox {
    /// Cranelift's.
    cranelift: Tier,
    /// Winch's, unless the run always compiles with Cranelift.
    winch: Option<Tier>,
    options: SandboxOptions,
    cache_dir: Option<PathBuf>,
    /// The project being run; the compile cache refuses a key inside it.
    project_root: PathBuf,
    /// Stops the epoch ticker thread when the sandbox is dropped.
    ticker_stop: Arc<AtomicBool>,
    /// A sandbox shared by a fleet's targets ([`Sandbox::shared`]): each component it
    /// loaded, by the SHA-256 of its bytes, so that it is compiled (or read from the cache)
    /// once for the whole fleet. `None`: one run's sandbox, which loads each component once
    /// anyway.
    memo: Option<std::sync::Mutex<std::collections::HashMap<[u8; 32], Memo>>>,
    /// The run's new components, compiled in the background in step order
    /// ([`Sandbox::precompile`]); stopped when the sandbox is dropped.
    background: std::sync::OnceLock<Background>,
    /// With [`Compiler::Auto`], the components of a bulk this run compiles with Winch, by
    /// [`precompile::fingerprint`].
    bulk: std::sync::OnceLock<std::collections::HashSet<u64>>,
}

/// What loading one component's bytes gave, kept for a fleet's other targets: the loaded
/// component, or why it was refused (so a bad component is compiled once, not once per
/// target, each up to the compile timeout).
#[derive(Clone)]
enum Memo {
    Loaded(Loaded),
    Invalid(ComponentError),
    OverLimit(CompileLimit),
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("options", &self.options)
            .field("cache_dir", &self.cache_dir)
            .field("shared", &self.memo.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        let reused = self.functions_reused();
        if reused > 0 {
            tracing::debug!("Cranelift took {reused} function(s) compiled earlier in this run");
        }
    }
}

impl Sandbox {
    /// Creates the engine (Cranelift, epoch interruption) and the linker for running the
    /// project in `project_root`, caching compiled components in `cache_dir`.
    ///
    /// # Errors
    /// When wasmtime cannot be configured (a host problem).
    pub fn new(
        project_root: &Path,
        cache_dir: Option<PathBuf>,
        options: SandboxOptions,
    ) -> anyhow::Result<Self> {
        let cranelift = Tier::new(false)?;
        let winch = match options.compiler {
            Compiler::Cranelift => None,
            // Where wasmtime supports Winch at its first tier.
            Compiler::Auto if !cfg!(target_arch = "x86_64") => None,
            Compiler::Auto | Compiler::Winch => Some(Tier::new(true)?),
        };

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&ticker_stop);
        let ticking: Vec<Engine> = std::iter::once(&cranelift)
            .chain(&winch)
            .map(|t| t.engine.clone())
            .collect();
        std::thread::Builder::new()
            .name("wasmig-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &ticking {
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(Sandbox {
            cranelift,
            winch,
            options,
            cache_dir,
            project_root: project_root.to_path_buf(),
            ticker_stop,
            memo: None,
            background: std::sync::OnceLock::new(),
            bulk: std::sync::OnceLock::new(),
        })
    }

    /// The same sandbox, keeping every component it loads for the next run that loads the
    /// same bytes: a fleet's targets share one sandbox, and each component is compiled once
    /// for all of them (each target still gets fresh instances).
    #[must_use]
    pub fn shared(mut self) -> Self {
        self.memo = Some(std::sync::Mutex::new(std::collections::HashMap::new()));
        self
    }

    /// Prepares the run's components (in step order) before its first step: chooses the
    /// compiler of those that must be compiled (Winch for a bulk of them, see
    /// [`Compiler::Auto`]), and starts compiling them into the cache, in the background and
    /// in step order, so that a run of many new revisions compiles them on every core while
    /// its first steps run, rather than one after another as their steps come, or all of
    /// them before the first step. [`Sandbox::load`] waits for a component a worker is
    /// compiling, and compiles itself one no worker has started. Errors are left for `load`
    /// to report, in step order and with the revision's name.
    pub fn precompile(&self, components: Vec<Vec<u8>>) {
        let dir = self.cache_dir.as_deref();
        let needs_compiling = |engine: &Engine, bytes: &[u8]| {
            wasmparser_is_component(bytes)
                && (bytes.len() as u64) <= self.options.max_component_bytes
                && dir.is_none_or(|dir| !cache::has_entry(engine, dir, bytes))
        };
        // The run's compiler, before a bulk is counted.
        let mut tier = match &self.winch {
            Some(winch) if self.options.compiler == Compiler::Winch => winch,
            _ => &self.cranelift,
        };
        let mut missing: Vec<Vec<u8>> = components
            .into_iter()
            .filter(|bytes| needs_compiling(&tier.engine, bytes))
            .collect();
        // How much of their code repeats, read only where it decides something (each
        // component parsed whole: 18 MB for a Python one).
        let mut share = None;
        if let Some(winch) = &self.winch
            && self.options.compiler == Compiler::Auto
            && missing.len() >= BULK_COMPILE
            && !self.shared_bulk(&missing, *share.insert(CodeShare::of(&missing)))
        {
            tracing::debug!(
                "{} component(s) to compile: compiling them with Winch",
                missing.len()
            );
            let prints = missing.iter().map(|b| precompile::fingerprint(b)).collect();
            let _ = self.bulk.set(prints);
            missing.retain(|bytes| needs_compiling(&winch.engine, bytes));
            tier = winch;
        }
        let Some(dir) = dir else {
            return;
        };
        if missing.len() < 2 {
            return;
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(missing.len());
        tracing::debug!(
            "compiling {} component(s) into the cache with {} in the background on {workers} thread(s)",
            missing.len(),
            tier.name()
        );
        // Cranelift's workers find in its memo what another compiled before them: when most
        // of the code repeats, the first component goes alone.
        let first_alone = !tier.winch
            && share
                .unwrap_or_else(|| CodeShare::of(&missing))
                .mostly_repeated();
        let background = Background::start(
            &tier.engine,
            dir.to_path_buf(),
            self.project_root.clone(),
            missing,
            workers,
            first_alone,
        );
        if self.background.set(background).is_err() {
            // A second call: the first one's queue stays; this one's is dropped (stopped).
            tracing::debug!("the sandbox is compiling components in the background already");
        }
    }

    /// Whether a bulk of `missing` components is Cranelift's after all
    /// ([`CodeShare::cranelift_as_fast`]).
    fn shared_bulk(&self, missing: &[Vec<u8>], share: CodeShare) -> bool {
        let shared = share.cranelift_as_fast();
        if shared {
            tracing::debug!(
                "{} component(s) to compile, most of their code shared: compiling them with Cranelift, each function once",
                missing.len()
            );
        }
        shared
    }

    /// How many functions Cranelift did not compile again in this run, found compiled
    /// already in another component.
    fn functions_reused(&self) -> u64 {
        self.cranelift
            .functions
            .as_ref()
            .map_or(0, |m| m.reused.load(Ordering::Relaxed))
    }

    /// The compiler of a component: Winch's if the run compiles with Winch, or if the
    /// component is one of a bulk ([`Compiler::Auto`]), else Cranelift's.
    fn tier_for(&self, bytes: &[u8]) -> &Tier {
        match &self.winch {
            Some(winch)
                if self.options.compiler == Compiler::Winch
                    || self
                        .bulk
                        .get()
                        .is_some_and(|b| b.contains(&precompile::fingerprint(bytes))) =>
            {
                winch
            }
            _ => &self.cranelift,
        }
    }

    /// Compiles (or loads from the cache) a component and checks it against the world.
    ///
    /// # Errors
    /// [`ComponentError`] for malformed wasm, a core module, a denied import or missing
    /// exports.
    pub fn load(&self, revision: &str, path: &Path, bytes: &[u8]) -> anyhow::Result<Loaded> {
        let invalid = |reason: String| ComponentError {
            revision: revision.to_owned(),
            path: path.to_path_buf(),
            reason,
        };
        if !wasmparser_is_component(bytes) {
            return Err(invalid(if bytes.starts_with(b"\0asm") {
                "this is a core WebAssembly module, not a component; componentize it (the Rust, Python, JavaScript and C revisions wasmig builds are components already; `wasm-tools component new` does it for others)".into()
            } else {
                "not a WebAssembly file (no `\\0asm` header); point the manifest's `component` at a .wasm component".into()
            })
            .into());
        }
        let size = bytes.len() as u64;
        if size > self.options.max_component_bytes {
            return Err(CompileLimit {
                revision: revision.to_owned(),
                what: format!(
                    "the component is {} MiB, over the {} MiB that `max_component_mib` allows",
                    size.div_ceil(1024 * 1024),
                    self.options.max_component_bytes / (1024 * 1024)
                ),
            }
            .into());
        }
        let Some(memo) = &self.memo else {
            return self.load_new(revision, path, bytes);
        };
        let key: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(bytes).into();
        // Held while the first target compiles: the others wait for its result rather
        // than compile the same bytes beside it.
        let mut memo = memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match memo.get(&key) {
            Some(Memo::Loaded(loaded)) => {
                return Ok(Loaded {
                    cache: CacheStatus::Reused,
                    load_time: Duration::ZERO,
                    ..loaded.clone()
                });
            }
            Some(Memo::Invalid(e)) => return Err(e.clone().into()),
            Some(Memo::OverLimit(e)) => return Err(e.clone().into()),
            None => {}
        }
        match self.load_new(revision, path, bytes) {
            Ok(loaded) => {
                memo.insert(key, Memo::Loaded(loaded.clone()));
                Ok(loaded)
            }
            Err(e) => {
                if let Some(invalid) = e.downcast_ref::<ComponentError>() {
                    memo.insert(key, Memo::Invalid(invalid.clone()));
                } else if let Some(limit) = e.downcast_ref::<CompileLimit>() {
                    memo.insert(key, Memo::OverLimit(limit.clone()));
                }
                Err(e)
            }
        }
    }

    /// [`Sandbox::load`] without the fleet's memo.
    fn load_new(&self, revision: &str, path: &Path, bytes: &[u8]) -> anyhow::Result<Loaded> {
        let invalid = |reason: String| ComponentError {
            revision: revision.to_owned(),
            path: path.to_path_buf(),
            reason,
        };
        let started = std::time::Instant::now();
        let mut tier = self.tier_for(bytes);
        let claim = self.background.get().map_or(Claim::Load, |b| {
            b.claim(bytes, self.options.compile_timeout)
        });
        let mut compiled = match claim {
            Claim::Load | Claim::CompiledInBackground => {
                self.compile(tier, self.cache_dir.as_deref(), bytes)
            }
            Claim::TimedOut => Compiled::TimedOut,
        };
        let mut fell_back = false;
        if tier.winch
            && let Compiled::Done(Err(e)) = &compiled
        {
            fell_back = true;
            // Winch compiles fewer of WebAssembly's proposals than Cranelift: a component
            // it refuses is compiled with Cranelift, whose error, if any, is the one shown.
            tracing::debug!(
                "revision {revision}: Winch cannot compile it ({e:#}); compiling with Cranelift"
            );
            tier = &self.cranelift;
            compiled = self.compile(tier, self.cache_dir.as_deref(), bytes);
        }
        let (component, cache) = match compiled {
            // Found in the cache because a worker compiled it for this run.
            Compiled::Done(Ok((component, CacheStatus::Hit)))
                if claim == Claim::CompiledInBackground && !fell_back =>
            {
                (component, CacheStatus::Miss)
            }
            Compiled::Done(Ok(done)) => done,
            Compiled::Done(Err(e)) => {
                return Err(invalid(format!("not a valid component: {e:#}")).into());
            }
            Compiled::TimedOut => {
                return Err(CompileLimit {
                    revision: revision.to_owned(),
                    what: format!(
                        "compiling the component took longer than the {} s that `compile_timeout_secs` allows",
                        self.options.compile_timeout.as_secs_f64()
                    ),
                }
                .into());
            }
        };
        tracing::debug!(
            "revision {revision}: {} code, {}",
            tier.name(),
            match cache {
                CacheStatus::Hit => "from the cache",
                CacheStatus::Miss => "compiled in this run",
                CacheStatus::Disabled | CacheStatus::Reused => "compiled",
            }
        );
        let load_time = started.elapsed();

        let ty = component.component_type();
        for (name, _) in ty.imports(&tier.engine) {
            let allowed = ALLOWED_IMPORTS.contains(&name) || name.starts_with("wasi:");
            if !allowed {
                return Err(invalid(format!(
                    "it imports `{name}`, which the sandbox does not provide; a migration may import only the wasmig:migration interfaces and WASI"
                ))
                .into());
            }
        }
        for export in ["upgrade", "downgrade"] {
            let found = ty.exports(&tier.engine).any(|(name, item)| {
                name == export && matches!(item.ty, ComponentItem::ComponentFunc(_))
            });
            if !found {
                return Err(invalid(format!(
                    "it does not export the function `{export}`; build it for the `migration` world of wit/migration.wit (wasmig:migration@0.4.0, or an older version)"
                ))
                .into());
            }
        }
        let pre = tier.linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!(
                "it does not match the wasmig:migration world: {e:#}"
            ))
        })?;
        let pre = MigrationHostPre::new(pre)
            .map_err(|e| invalid(format!("it does not match the migration world: {e:#}")))?;
        Ok(Loaded {
            pre: Some(pre),
            cache,
            load_time,
        })
    }

    /// Loads a component from the cache or compiles it with `tier`'s compiler, giving up
    /// after the compile timeout. A compiler cannot be interrupted, so the compile runs on a
    /// thread of its own, left to finish in the background when it is given up on (the
    /// process ends soon after, the run having failed). An entry of the cache that verifies
    /// is loaded here: mapping it cannot hang, and a thread per step was most of a warm
    /// load's cost besides the entry's check.
    fn compile(&self, tier: &Tier, dir: Option<&Path>, bytes: &[u8]) -> Compiled {
        if let Some(dir) = dir
            && let Some(component) =
                cache::load_cached(&tier.engine, dir, &self.project_root, bytes)
        {
            return Compiled::Done(Ok((component, CacheStatus::Hit)));
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        let engine = tier.engine.clone();
        let dir = dir.map(Path::to_path_buf);
        let root = self.project_root.clone();
        let bytes = bytes.to_vec();
        let spawned = std::thread::Builder::new()
            .name("wasmig-compile".into())
            .spawn(move || {
                let _ = sender.send(cache::load_or_compile(
                    &engine,
                    dir.as_deref(),
                    &root,
                    &bytes,
                ));
            });
        if let Err(e) = spawned {
            return Compiled::Done(Err(wasmtime::Error::from_anyhow(anyhow::anyhow!(
                "cannot start a compile thread: {e}"
            ))));
        }
        match receiver.recv_timeout(self.options.compile_timeout) {
            Ok(result) => Compiled::Done(result),
            Err(_) => Compiled::TimedOut,
        }
    }

    /// Runs one call of `upgrade` or `downgrade` (one batch, see the WIT's `batch`) of a
    /// loaded component in a fresh instance. Always hands the session and the progress back
    /// (to commit or roll back, and for the next batch), with the failure if the call's work
    /// must not commit, or else the checkpoint of the next batch the guest asked for.
    pub async fn run(&self, loaded: &Loaded, call: Call<'_>) -> Returned {
        let Call {
            revision,
            direction,
            session,
            limits,
            deadline,
            checkpoint,
            progress,
            journal,
            rate,
        } = call;
        let direction_name = direction.as_str();
        let state = GuestState::new(
            session,
            revision,
            deadline,
            limits.memory,
            progress,
            checkpoint,
            journal.map(|j| (j, direction_name)),
        )
        .with_rate(rate);
        let db_calls = Arc::clone(&state.db_calls);
        // The engine the component was compiled for (Cranelift's or Winch's). A released
        // component fails the call below; any engine will do for that.
        let engine = loaded
            .pre
            .as_ref()
            .map_or(&self.cranelift.engine, MigrationHostPre::engine);
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        // At every tick while wasm runs: trap past the deadline, else hand the thread back
        // to the runtime for a moment (the run's other tasks, such as the relay or a lease's
        // renewal, share it with a guest that computes). Set before instantiating (the
        // default of 0 would trap the start function).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if tokio::time::Instant::now() >= deadline {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Yield(1)
            })
        });

        let call = async {
            let started = std::time::Instant::now();
            let pre = loaded.pre.as_ref().ok_or_else(|| {
                wasmtime::Error::from_anyhow(anyhow::anyhow!(
                    "bug: the component of revision {revision} was released before its last call"
                ))
            })?;
            let instance = pre.instantiate_async(&mut store).await?;
            tracing::debug!(
                "revision {revision}: instantiated in {} µs",
                started.elapsed().as_micros()
            );
            match direction {
                Direction::Upgrade => instance.call_upgrade(&mut store).await,
                Direction::Downgrade => instance.call_downgrade(&mut store).await,
            }
        };
        // The epoch only interrupts running wasm, and database calls race the deadline
        // themselves (with a grace period to cancel their statement). A guest parked
        // anywhere else in the host, such as a WASI sleep or poll, is stopped at the
        // deadline by dropping the call (the instance is never entered again); one in a
        // database call, once that call has unwound, at the latest by the backstop.
        let backstop = deadline
            .checked_add(host::UNWIND_LIMIT + Duration::from_secs(1))
            .unwrap_or(deadline);
        let parked = async {
            tokio::time::sleep_until(deadline).await;
            while db_calls.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < backstop {
                tokio::time::sleep(PARKED_CHECK).await;
            }
        };
        let outcome = tokio::select! {
            biased;
            outcome = call => outcome,
            () = parked => Err(wasmtime::Error::new(LimitTrap::Deadline)),
        };

        let mut state = store.into_data();
        // Linear memory never shrinks: what the guest holds at the end is its peak.
        tracing::debug!(
            "revision {revision}: {} KiB of linear memory at the end of the call (its peak)",
            state.limiter.reserved() / 1024
        );
        flush_output(revision, &state);
        let outcome = classify(outcome, &state, limits).and_then(|()| match state.next_batch.take() {
            Some(c) if c.len() > MAX_CHECKPOINT => Err(Failure::GuestError(format!(
                "the checkpoint passed to `next-batch` is {} bytes; the limit is {} KiB: keep in it only what the next batch needs to resume (the last key, counters), not data",
                c.len(),
                MAX_CHECKPOINT / 1024
            ))),
            next => Ok(next),
        });
        Returned {
            session: state.session.take(),
            progress: state.progress,
            outcome,
        }
    }
}

/// One call into a guest: [`Sandbox::run`]'s input.
pub struct Call<'a> {
    /// The revision, for messages.
    pub revision: &'a str,
    /// Which export to call.
    pub direction: Direction,
    /// The transaction the call runs in; handed back in [`Returned`].
    pub session: Box<dyn Session>,
    /// The limits (the memory cap applies to this call's instance).
    pub limits: Limits,
    /// When the call must stop: the step's deadline, or the batch's in a `batched` revision.
    pub deadline: tokio::time::Instant,
    /// What `batch.checkpoint` returns in this call.
    pub checkpoint: Option<String>,
    /// The step's progress, handed back in [`Returned`].
    pub progress: Progress,
    /// The run's journal, if it keeps one: every SQL call is written to it.
    pub journal: Option<std::sync::Arc<journal::Journal>>,
    /// The step's row rate (`[throttle] max_rows_per_sec`), shared by its batches.
    pub rate: Option<Arc<throttle::RowRate>>,
}

/// What [`Sandbox::run`] hands back.
pub struct Returned {
    /// The call's transaction (`None` only if the guest state lost it: a host bug).
    pub session: Option<Box<dyn Session>>,
    /// The step's progress, for the next batch.
    pub progress: Progress,
    /// The call's failure, or the checkpoint the guest asked the next batch to start from
    /// (`None`: this was the last batch).
    pub outcome: Result<Option<String>, Failure>,
}

impl Limits {
    /// The deadline for a transaction that starts now: now plus the timeout, or far in the
    /// future when that cannot be represented (configuration bounds the timeout, but an
    /// instant out of range must not panic).
    pub fn deadline_from_now(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        now.checked_add(self.timeout).unwrap_or(now + MAX_DEADLINE)
    }
}

/// Turns the call's outcome and the state it left into a failure with the right blame.
fn classify(
    outcome: wasmtime::Result<Result<(), String>>,
    state: &GuestState,
    limits: Limits,
) -> Result<(), Failure> {
    if state.transaction_ended {
        return Err(Failure::TransactionEnded { guest: true });
    }
    if let Some(io) = &state.io_failure {
        return Err(Failure::connection_lost(io));
    }
    // A statement refused by the untrusted SQL policy fails the step, handled or not, as
    // an SQL error of the migration (a limit the guest then hit still says so, below).
    if let (Ok(_), Some(refused)) = (&outcome, &state.policy_refused) {
        return Err(Failure::Sql(Box::new(refused.clone())));
    }
    match outcome {
        Ok(Ok(())) => match state.pending_error() {
            Some(err) => Err(Failure::UnhandledSql(Box::new(err.clone()))),
            None => Ok(()),
        },
        Ok(Err(message)) => Err(Failure::GuestError(message)),
        Err(err) => {
            // The host's refusal to answer `dialect` to a component built against a WIT
            // version without the database's dialect. Blamed on the guest, as a statement
            // that ended the transaction is: the component is what must change (rebuilt
            // with the current SDK), while the database, wasmig and the limits are fine.
            // Its own message rather than the trap's debug text, which adds a backtrace.
            if let Some(refused) = err.downcast_ref::<NoSuchDialect>() {
                return Err(Failure::GuestTrap(refused.to_string()));
            }
            if state.deadline_hit
                || matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt))
                || matches!(err.downcast_ref::<LimitTrap>(), Some(LimitTrap::Deadline))
            {
                return Err(Failure::Deadline(limits.timeout));
            }
            if state.limiter.exceeded
                || matches!(err.downcast_ref::<LimitTrap>(), Some(LimitTrap::Memory(_)))
            {
                return Err(Failure::Memory {
                    limit: limits.memory,
                });
            }
            if state.limiter.tables_exceeded
                || matches!(err.downcast_ref::<LimitTrap>(), Some(LimitTrap::Tables(_)))
            {
                return Err(Failure::Tables {
                    limit: host::TABLE_ELEMENTS_CAP,
                });
            }
            Err(Failure::GuestTrap(trap_text(&err)))
        }
    }
}

/// What a trap says, for its one-line error: the causes (`wasm trap: wasm \`unreachable\`
/// instruction executed`, a Rust guest's panic; or the host's refusal of what the guest
/// passed, such as text that is not UTF-8) without the wasm backtrace wasmtime puts first,
/// which is logged at debug level (`-v`) instead: mostly numbered functions, it drowned the
/// cause.
fn trap_text(err: &wasmtime::Error) -> String {
    let backtrace = err.downcast_ref::<wasmtime::WasmBacktrace>().is_some();
    if backtrace {
        // Escaped as the error is: the frames' names come from the component.
        tracing::debug!(
            "the migration trapped: {}",
            wasmig_contract::text::shown(&format!("{err:?}"))
        );
    }
    // The canonical ABI's reading of a string the guest passed (C and Go strings are
    // bytes), in a call or as the error it returned: the guest's fault, said as such.
    if let Some(utf8) = err
        .chain()
        .find_map(|e| e.downcast_ref::<std::str::Utf8Error>())
    {
        let logged = if backtrace {
            " (`-v` logs its wasm backtrace)"
        } else {
            ""
        };
        return format!(
            "it passed wasmig text that is not UTF-8 ({utf8}); every string a migration hands the host (SQL, parameters, names, log lines, its error) must be UTF-8{logged}"
        );
    }
    if !backtrace {
        return format!("{err:#}");
    }
    let causes = err
        .chain()
        .skip(1)
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    if causes.is_empty() {
        return format!("{err:#}");
    }
    format!("{} (`-v` logs its wasm backtrace)", causes.join(": "))
}

/// Copies what the guest wrote to stdout and stderr into wasmig's log, and says how many
/// log lines went past the call's budget.
fn flush_output(revision: &str, state: &GuestState) {
    for (stream, pipe) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
        let bytes = pipe.contents();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = wasmig_contract::text::shown(line);
            tracing::info!(target: "wasmig::guest", "[{revision}] {stream}: {line}");
        }
    }
    if state.log_dropped > 0 {
        tracing::warn!(
            "revision {revision}: {} more log line(s) of the migration were dropped: it logged over {} KiB in one call",
            state.log_dropped,
            host::LOG_BUDGET / 1024
        );
    }
}

/// Whether the bytes start with the component-model preamble (layer 1).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}
