//! Compiling a function once for a run: Cranelift's compiled functions kept in memory by
//! the hash of their input ([`FunctionMemo`], wasmtime's incremental compilation), and
//! whether a bulk of new components shares enough code for it to beat Winch
//! ([`mostly_shared`]).
//!
//! Not here: choosing the compiler and compiling (`Sandbox::precompile`, `Sandbox::load`),
//! the compile cache of whole components (`cache`).

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use wasmtime::wasmparser::{Parser, Payload};

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
    /// Its keys' and values' bytes.
    bytes: usize,
    /// Compiled functions, by their key.
    functions: HashMap<Vec<u8>, Vec<u8>>,
}

/// The most compiled code a run keeps in its [`FunctionMemo`].
const FUNCTION_MEMO_BYTES: usize = 256 * 1024 * 1024;

impl wasmtime::CacheStore for FunctionMemo {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let found = held.functions.get(key)?.clone();
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(Cow::Owned(found))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.functions.contains_key(key) {
            return true;
        }
        let size = key.len() + value.len();
        if held.bytes + size > FUNCTION_MEMO_BYTES {
            return false;
        }
        held.bytes += size;
        held.functions.insert(key.to_vec(), value);
        true
    }
}

/// Whether most of a bulk's code is shared between its components: the function bodies
/// (of every core module) that also occur in another of them hold at least half of the
/// bulk's code, by size. Then Cranelift, with the run's [`FunctionMemo`], compiles each
/// component after the first of its kind about as fast as Winch does (measured on 200 Rust
/// revisions: 2.6 s of CPU against Winch's 2.9 s; 9.2 s without the memo), into faster
/// code. Unrelated components (each its own code) are Winch's: it compiles them about three
/// times faster than Cranelift. A component that does not parse counts as unshared.
pub(crate) fn mostly_shared(components: &[Vec<u8>]) -> bool {
    let bodies: Vec<HashMap<u64, usize>> = components
        .iter()
        .map(|bytes| {
            let mut bodies = HashMap::new();
            for payload in Parser::new(0).parse_all(bytes) {
                match payload {
                    Ok(Payload::CodeSectionEntry(body)) => {
                        let code = body.as_bytes();
                        let mut hasher = DefaultHasher::new();
                        code.hash(&mut hasher);
                        bodies.insert(hasher.finish(), code.len());
                    }
                    Ok(_) => {}
                    Err(_) => return HashMap::new(),
                }
            }
            bodies
        })
        .collect();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for component in &bodies {
        for hash in component.keys() {
            *seen.entry(*hash).or_default() += 1;
        }
    }
    let (mut shared, mut total) = (0usize, 0usize);
    for component in &bodies {
        let counted: HashSet<&u64> = component.keys().collect();
        for hash in counted {
            let size = component[hash];
            total += size;
            if seen[hash] > 1 {
                shared += size;
            }
        }
    }
    total > 0 && shared * 2 >= total
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use wasmtime::{Config, Engine, Store};

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
        let family: Vec<Vec<u8>> = (0..10).map(|n| component(n, &work(7))).collect();
        assert!(mostly_shared(&family));
        let unrelated: Vec<Vec<u8>> = (0..10).map(|n| component(n, &work(100 * n + 1))).collect();
        assert!(!mostly_shared(&unrelated));
        // Half of them of one family, half each its own: most of the code is not shared.
        let mixed: Vec<Vec<u8>> = (0..10)
            .map(|n| component(n, &work(if n < 3 { 7 } else { 100 * n + 1 })))
            .collect();
        assert!(!mostly_shared(&mixed));
        assert!(!mostly_shared(&vec![
            b"\0asm\x0d\0\x01\0garbage".to_vec();
            10
        ]));
        assert!(!mostly_shared(&[]));
    }

    #[test]
    fn cranelift_compiles_a_function_once_for_the_run() {
        let root = std::env::temp_dir();
        let options = SandboxOptions {
            compiler: Compiler::Cranelift,
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::new(&root, None, options).unwrap();
        sandbox
            .load("a", Path::new("a.wasm"), &component(1, &work(7)))
            .unwrap();
        let first = sandbox.functions_reused();
        sandbox
            .load("b", Path::new("b.wasm"), &component(2, &work(7)))
            .unwrap();
        let second = sandbox.functions_reused() - first;
        // `work`, `downgrade` and `realloc` at least; `upgrade` differs.
        assert!(second >= 3, "{first} then {second} reused");
        // Another function compiles anew; what it shares is still found.
        sandbox
            .load("c", Path::new("c.wasm"), &component(3, &work(8)))
            .unwrap();
        let third = sandbox.functions_reused() - first - second;
        assert!(
            third >= 2 && third < second,
            "{first}, {second}, then {third} reused"
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
    }
}
