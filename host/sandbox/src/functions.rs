//! Compiling a function once for a run: Cranelift's compiled functions kept in memory by
//! the hash of their input ([`FunctionMemo`], wasmtime's incremental compilation), and
//! how much of a run's new components' code repeats ([`CodeShare`]): enough for Cranelift
//! to compile a bulk as fast as Winch, or for the first component to go alone.
//!
//! Not here: choosing the compiler and compiling (`Sandbox::precompile`, `Sandbox::load`),
//! the compile cache of whole components (`cache`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use wasmtime::wasmparser::{Parser, Payload};

use crate::precompile::fingerprint;

/// Cranelift's compiled functions, by the hash of their input, for the rest of the run
/// (wasmtime's incremental compilation): the components of one project share most of their
/// code (the SDK, the bindings, the standard library; a Python or JavaScript revision the
/// whole interpreter), so each new component compiles only the functions no component
/// before it had. In memory only: compiled code read back from a file would need the
/// compile cache's authentication. Holds at most [`FUNCTION_MEMO_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct FunctionMemo {
    held: Mutex<Held>,
    /// How many functions were found (for the log and the tests).
    pub(crate) reused: AtomicU64,
}

/// What a [`FunctionMemo`] holds.
#[derive(Debug, Default)]
struct Held {
    /// What its entries take: keys, values (their capacity) and [`ENTRY_OVERHEAD`] each.
    bytes: usize,
    /// Compiled functions, by their key.
    functions: HashMap<Vec<u8>, Vec<u8>>,
}

/// The most memory a run's [`FunctionMemo`] takes: its keys, values and entries.
const FUNCTION_MEMO_BYTES: usize = 256 * 1024 * 1024;

/// What an entry of the [`FunctionMemo`] takes beside its key's and value's bytes: the two
/// vectors' headers and the table's slot, rounded up.
const ENTRY_OVERHEAD: usize = 128;

impl wasmtime::CacheStore for FunctionMemo {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let found = held.functions.get(key)?.clone();
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(Cow::Owned(found))
    }

    fn insert(&self, key: &[u8], mut value: Vec<u8>) -> bool {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.functions.contains_key(key) {
            return true;
        }
        value.shrink_to_fit();
        let size = key.len() + value.capacity() + ENTRY_OVERHEAD;
        if held.bytes + size > FUNCTION_MEMO_BYTES {
            return false;
        }
        held.bytes += size;
        held.functions.insert(key.to_vec(), value);
        true
    }
}

/// How much of a run's new components' code is distinct: each function body counted once,
/// identical components once ([`CodeShare::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodeShare {
    /// The bytes of the distinct function bodies.
    distinct: usize,
    /// The bytes of every component's bodies.
    total: usize,
}

impl CodeShare {
    /// Of `components` (a component that does not parse adds nothing).
    pub(crate) fn of(components: &[Vec<u8>]) -> CodeShare {
        let mut components_seen = HashSet::new();
        let mut distinct: HashMap<u64, usize> = HashMap::new();
        let mut total = 0usize;
        for bytes in components {
            if !components_seen.insert(fingerprint(bytes)) {
                continue;
            }
            for (hash, size) in bodies(bytes) {
                total += size;
                distinct.entry(hash).or_insert(size);
            }
        }
        CodeShare {
            distinct: distinct.values().sum(),
            total,
        }
    }

    /// Whether Cranelift, with the run's [`FunctionMemo`], is expected to compile these
    /// components about as fast as Winch would: their distinct code is at most an eighth
    /// of all of it.
    ///
    /// The model, from measurements on this kind of machine: Cranelift compiles a function
    /// in full in about three times Winch's time, and takes one from the memo in about a
    /// third of a full compile (the wasm is still translated and its input hashed; 200 Rust
    /// revisions: 2.6 s of CPU with the memo, 9.2 s without; Python components: 7.5-12.6 s
    /// against 24-39 s). In Winch's time per byte, Cranelift costs about `3 D + 0.9 (T - D)`
    /// against Winch's `T`, for `D` distinct bytes of `T`: the same at `D = T / 21`, and
    /// Cranelift's code, faster to run, is worth the margin up to `T / 8` (about 1.16 times
    /// Winch's time). A bulk of unrelated components, or of a few of each kind, is Winch's.
    pub(crate) fn cranelift_as_fast(&self) -> bool {
        self.total > 0 && self.distinct.saturating_mul(SHARED_BULK) <= self.total
    }

    /// Whether at least half of the code repeats: then the first component is compiled
    /// alone before the others, which find most of their functions compiled (two compiled
    /// at once would each compile them in full).
    pub(crate) fn mostly_repeated(&self) -> bool {
        self.total > 0 && self.distinct.saturating_mul(2) <= self.total
    }
}

/// The most of its code a bulk may hold once for [`CodeShare::cranelift_as_fast`]: one part in
/// this many.
const SHARED_BULK: usize = 8;

/// The function bodies of every core module of a component, each once: their hashes and
/// sizes (none for bytes that do not parse).
fn bodies(bytes: &[u8]) -> HashMap<u64, usize> {
    let mut bodies = HashMap::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::CodeSectionEntry(body)) => {
                let code = body.as_bytes();
                bodies.insert(fingerprint(code), code.len());
            }
            Ok(_) => {}
            Err(_) => return HashMap::new(),
        }
    }
    bodies
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use wasmtime::{CacheStore as _, Config, Engine, Store};

    use super::*;
    use crate::{Compiler, Sandbox, SandboxOptions};

    /// A component of the world's shape whose module holds `shared` (a function of its own
    /// code) and an `upgrade` returning `n`'s own pointer.
    fn component(n: u32, shared: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(component
  (core module $m
    (memory (export "mem") 1)
    (func (export "upgrade") (result i32) (drop (i32.const {n})) (i32.const 0))
    (func (export "downgrade") (result i32) (i32.const 0))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    {shared})
  (core instance $i (instantiate $m))
  (func $up (result (result (error string)))
    (canon lift (core func $i "upgrade") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (func $down (result (result (error string)))
    (canon lift (core func $i "downgrade") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (export "upgrade" (func $up))
  (export "downgrade" (func $down)))"#
        ))
        .expect("valid WAT")
    }

    /// A function of some size whose code differs with `seed`: its length too.
    fn work(seed: u32) -> String {
        work_of(30 + seed, seed)
    }

    /// A function of `len` steps, each with a constant of its own from `seed`.
    fn work_of(len: u32, seed: u32) -> String {
        let steps: String = (0..len)
            .map(|i| {
                format!(
                    "(local.set $x (i32.add (i32.mul (local.get $x) (i32.const {})) (i32.const {i})))",
                    seed + i
                )
            })
            .collect();
        format!("(func (param $x i32) (result i32) {steps} (local.get $x))")
    }

    #[test]
    fn a_bulk_sharing_most_of_its_code_is_told_from_unrelated_components() {
        // One kind: a large function in common, `upgrade` of its own.
        let family: Vec<Vec<u8>> = (0..10).map(|n| component(n, &work_of(200, 7))).collect();
        assert!(CodeShare::of(&family).cranelift_as_fast());
        assert!(CodeShare::of(&family).mostly_repeated());
        let unrelated: Vec<Vec<u8>> = (0..10)
            .map(|n| component(n, &work_of(200, 100 * n + 1)))
            .collect();
        assert!(!CodeShare::of(&unrelated).cranelift_as_fast());
        // Five kinds of two: half of the code is compiled in full, which Winch does faster.
        let pairs: Vec<Vec<u8>> = (0..10)
            .map(|n| component(n, &work_of(200, 100 * (n / 2) + 1)))
            .collect();
        assert!(!CodeShare::of(&pairs).cranelift_as_fast());
        assert!(CodeShare::of(&pairs).mostly_repeated());
        // Three of one kind, seven each its own.
        let mixed: Vec<Vec<u8>> = (0..10)
            .map(|n| component(n, &work_of(200, if n < 3 { 7 } else { 100 * n + 1 })))
            .collect();
        assert!(!CodeShare::of(&mixed).cranelift_as_fast());
        assert!(!CodeShare::of(&mixed).mostly_repeated());
        // The same component ten times is compiled once: nothing shared.
        assert!(!CodeShare::of(&vec![component(1, &work_of(200, 7)); 10]).cranelift_as_fast());
        assert!(
            !CodeShare::of(&vec![b"\0asm\x0d\0\x01\0garbage".to_vec(); 10]).cranelift_as_fast()
        );
        assert!(!CodeShare::of(&[]).cranelift_as_fast());
    }

    #[test]
    fn the_memo_counts_what_it_holds_and_stops_at_its_bound() {
        let memo = FunctionMemo::default();
        let mut value = Vec::with_capacity(4096);
        value.extend_from_slice(&[7; 100]);
        assert!(memo.insert(b"k", value));
        let held = memo.held.lock().unwrap().bytes;
        assert!((100..4096).contains(&held), "{held}");
        assert_eq!(memo.get(b"k").as_deref(), Some(&[7u8; 100][..]));
        assert!(!memo.insert(b"big", vec![0; FUNCTION_MEMO_BYTES]));
        assert_eq!(memo.get(b"big"), None);
        assert_eq!(memo.reused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn cranelift_compiles_a_function_once_for_the_run() {
        let root = std::env::temp_dir();
        let options = SandboxOptions {
            compiler: Compiler::Cranelift,
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::new(&root, None, options).unwrap();
        // The distinct functions compiled so far (how many hits a component's own identical
        // functions get depends on which of its threads compiles them first; this does not).
        let compiled = || {
            let memo = sandbox.cranelift.functions.as_ref().unwrap();
            memo.held.lock().unwrap().functions.len()
        };
        sandbox
            .load("a", Path::new("a.wasm"), &component(1, &work(7)))
            .unwrap();
        let (reused, first) = (sandbox.functions_reused(), compiled());
        sandbox
            .load("b", Path::new("b.wasm"), &component(2, &work(7)))
            .unwrap();
        // `work`, `downgrade` and `realloc` at least, compiled with `a`; `upgrade` differs.
        let hits = sandbox.functions_reused() - reused;
        assert!(hits >= 3, "{hits} reused");
        let second = compiled() - first;
        // Another `work` too: more to compile.
        sandbox
            .load("c", Path::new("c.wasm"), &component(3, &work(8)))
            .unwrap();
        let third = compiled() - first - second;
        // At least `b`'s own `upgrade`, and `c`'s `upgrade` and `work`. (How many more each
        // adds beside them varies from run to run, with which of wasmtime's threads compiled
        // what first: comparing the two counts failed one run in two under load.)
        assert!(
            second >= 1 && third >= 2,
            "{first}, then {second} and {third} new functions"
        );
    }

    #[test]
    fn code_reused_from_the_memo_computes_what_its_own_source_says() {
        let mut config = Config::new();
        let memo = Arc::new(FunctionMemo::default());
        config
            .enable_incremental_compilation(Arc::clone(&memo) as Arc<dyn wasmtime::CacheStore>)
            .unwrap();
        let engine = Engine::new(&config).unwrap();
        // The same code but for its constants, and code of another length.
        let module = |(len, seed): (u32, u32)| {
            let wat = format!(
                "(module {} (func (export \"f\") (param i32) (result i32) (call 0 (local.get 0))))",
                work_of(len, seed)
            );
            wasmtime::Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap()
        };
        let run = |module: &wasmtime::Module| {
            let mut store = Store::new(&engine, ());
            let instance = wasmtime::Instance::new(&mut store, module, &[]).unwrap();
            let f = instance
                .get_typed_func::<i32, i32>(&mut store, "f")
                .unwrap();
            f.call(&mut store, 3).unwrap()
        };
        let expected = |(len, seed): (u32, u32)| {
            (0..len).fold(3i32, |x, i| {
                x.wrapping_mul((seed + i) as i32).wrapping_add(i as i32)
            })
        };
        for made in [(40, 7), (40, 7), (40, 8), (40, 7), (41, 7), (40, 9)] {
            assert_eq!(run(&module(made)), expected(made), "{made:?}");
        }
        assert!(memo.reused.load(Ordering::Relaxed) > 0);

        // The same caller calling another function (its callee is outside the key, filled
        // in for each module), and the same load from a memory of the module's own or an
        // imported one (inside the key): each module's own semantics.
        let reused = memo.reused.load(Ordering::Relaxed);
        let calls = |callee: u32| {
            let wat = format!(
                "(module (func (result i32) (i32.const 11)) (func (result i32) (i32.const 22))
                   (func (export \"f\") (param i32) (result i32) (call {callee})))"
            );
            wasmtime::Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap()
        };
        assert_eq!(run(&calls(0)), 11);
        assert_eq!(run(&calls(1)), 22);
        assert!(memo.reused.load(Ordering::Relaxed) > reused);
        let load = "(func (export \"f\") (param i32) (result i32) (i32.load (local.get 0)))";
        let own = wat::parse_str(format!("(module (memory 1) {load})")).unwrap();
        let imported =
            wat::parse_str(format!("(module (import \"m\" \"mem\" (memory 1)) {load})")).unwrap();
        for bytes in [&own, &imported, &own] {
            let module = wasmtime::Module::new(&engine, bytes).unwrap();
            let mut store = Store::new(&engine, ());
            let imports: Vec<wasmtime::Extern> = if module.imports().len() == 1 {
                let memory =
                    wasmtime::Memory::new(&mut store, wasmtime::MemoryType::new(1, None)).unwrap();
                memory.data_mut(&mut store)[8] = 5;
                vec![memory.into()]
            } else {
                Vec::new()
            };
            let instance = wasmtime::Instance::new(&mut store, &module, &imports).unwrap();
            let f = instance
                .get_typed_func::<i32, i32>(&mut store, "f")
                .unwrap();
            let expected = if imports.is_empty() { 0 } else { 5 };
            assert_eq!(f.call(&mut store, 8).unwrap(), expected);
            // One past the page: a trap in both, bounds checked for each memory.
            assert!(f.call(&mut store, 65536).is_err());
        }
    }
}
