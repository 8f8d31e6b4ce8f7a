//! The compile probe of `bench/run`'s profile.
//!
//! `wasmig-bench-probe FILE...` compiles every component with the engine configuration
//! wasmig uses (epoch interruption, component model), first with Cranelift (wasmig's
//! compiler) and then with Winch (wasmtime's baseline compiler), each one file at a time and
//! then with one worker thread per core, and deserializes the Cranelift results (what a warm
//! cache costs once the file is read), and times compile + serialize one at a time (what
//! wasmig's cold path does before writing the cache entry). Prints one tab-separated line per measurement:
//! `what  threads  files  total_ms  median_ms_per_file`.

use std::time::Instant;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, Strategy};

fn engine(strategy: Strategy) -> Engine {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.strategy(strategy);
    Engine::new(&config).expect("engine")
}

/// Runs `work` on every file with `threads` workers; returns the total and per-file times.
fn timed(files: &[Vec<u8>], threads: usize, work: impl Fn(&[u8]) + Sync) -> (f64, Vec<f64>) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let times = std::sync::Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(bytes) = files.get(i) else { break };
                    let t = Instant::now();
                    work(bytes);
                    times.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                }
            });
        }
    });
    (started.elapsed().as_secs_f64() * 1000.0, times.into_inner().unwrap())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let files: Vec<Vec<u8>> = std::env::args()
        .skip(1)
        .map(|p| std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}")))
        .collect();
    assert!(!files.is_empty(), "usage: wasmig-bench-probe FILE...");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, strategy) in [("cranelift", Strategy::Cranelift), ("winch", Strategy::Winch)] {
        let engine = engine(strategy);
        for threads in [1, cores] {
            let (total, each) = timed(&files, threads, |b| {
                Component::new(&engine, b).expect("compiles");
            });
            println!("compile-{name}\t{threads}\t{}\t{total:.1}\t{:.2}", files.len(), median(each));
        }
    }
    // What wasmig's cold path does per component: compile, then serialize for the cache.
    let engine = engine(Strategy::Cranelift);
    let (total, each) = timed(&files, 1, |b| {
        let c = Component::new(&engine, b).expect("compiles");
        c.serialize().expect("serializes");
    });
    println!("compile+serialize-cranelift\t1\t{}\t{total:.1}\t{:.2}", files.len(), median(each));
    let serialized: Vec<Vec<u8>> = files
        .iter()
        .map(|b| Component::new(&engine, b).and_then(|c| c.serialize()).expect("serializes"))
        .collect();
    let (total, each) = timed(&serialized, 1, |b| {
        // SAFETY: these bytes were serialized just above by this engine.
        unsafe { Component::deserialize(&engine, b) }.expect("deserializes");
    });
    println!("deserialize-cranelift\t1\t{}\t{total:.1}\t{:.3}", files.len(), median(each));
}
