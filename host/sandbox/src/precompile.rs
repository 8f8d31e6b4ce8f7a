//! Compiling a run's new components in the background, in step order, while the earlier
//! steps run (issue 18's cold cache).
//!
//! A run's components that the compile cache lacks are queued in the order their steps
//! come. Worker threads take them from the front and compile each into the cache. When a
//! step needs its component ([`Background::claim`]), one of three things holds: a worker
//! finished it (the step loads it from the cache), a worker is compiling it (the step waits
//! for that worker, up to the compile timeout, rather than compile the same bytes beside
//! it), or no worker has started it (the step takes it off the queue and compiles it
//! itself, as it would without a queue). Nothing else changes: the step's own load checks
//! the cache entry, its imports and its exports, and reports any failure with the
//! revision's name; a worker's failure is only a missing cache entry.
//!
//! Dropped with its sandbox: the queue is emptied and the workers stop after the component
//! each is compiling (a failed run does not compile the rest of its components).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use wasmtime::Engine;

use crate::cache;

/// The queue and its workers; see the module's documentation.
pub(crate) struct Background {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled whenever a worker finishes a component.
    finished: Condvar,
    /// Whether a worker waits, before it takes a component, until the first one taken is
    /// finished (see [`Background::start`]).
    first_alone: bool,
}

/// One component of the queue.
#[derive(Clone)]
struct Entry {
    /// [`fingerprint`] of the bytes, compared before them.
    print: u64,
    bytes: Arc<[u8]>,
}

impl Entry {
    fn is(&self, print: u64, bytes: &[u8]) -> bool {
        self.print == print && *self.bytes == *bytes
    }
}

#[derive(Default)]
struct Queue {
    /// Not started, in step order.
    waiting: VecDeque<Entry>,
    /// Being compiled by a worker.
    compiling: Vec<Entry>,
    /// Compiled by a worker (whether or not it was valid), by [`fingerprint`]: the step
    /// reports it as compiled in this run, not as found in the cache.
    finished: Vec<u64>,
    /// The sandbox is gone: workers take nothing more.
    stopped: bool,
}

/// Names component bytes among a run's: a collision would only mislabel a component as
/// compiled in this run, or compile it with Winch though it is not one of a bulk (or, for
/// `functions::CodeShare`, count a function body or component as repeated).
pub(crate) fn fingerprint(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// What a step may do after [`Background::claim`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Load the component as usual (no worker compiled it: it was never queued, or the
    /// step took it off the queue).
    Load,
    /// Load it from the cache, where a worker put it in this run (if it could: otherwise
    /// the step compiles it).
    CompiledInBackground,
    /// A worker has been compiling it for longer than the compile timeout allows.
    TimedOut,
}

impl Background {
    /// Queues `components` (in step order, each once) and starts `workers` threads
    /// compiling them into the cache in `dir`. With `first_alone`, the other workers wait
    /// until the first component a worker took is finished: Cranelift's compiles of the
    /// rest then find its functions compiled (`functions`), which two compiles side by side
    /// would each make in full. (A step that takes its component off the queue compiles it
    /// beside the workers, as without `first_alone`.)
    pub(crate) fn start(
        engine: &Engine,
        dir: PathBuf,
        project_root: PathBuf,
        components: Vec<Vec<u8>>,
        workers: usize,
        first_alone: bool,
    ) -> Background {
        let mut waiting: VecDeque<Entry> = VecDeque::with_capacity(components.len());
        for bytes in components {
            let print = fingerprint(&bytes);
            if !waiting.iter().any(|e| e.is(print, &bytes)) {
                waiting.push_back(Entry {
                    print,
                    bytes: Arc::from(bytes),
                });
            }
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting,
                ..Queue::default()
            }),
            finished: Condvar::new(),
            first_alone,
        });
        for _ in 0..workers {
            let shared = Arc::clone(&shared);
            let engine = engine.clone();
            let dir = dir.clone();
            let root = project_root.clone();
            let spawned = std::thread::Builder::new()
                .name("wasmig-precompile".into())
                .spawn(move || shared.work(&engine, &dir, &root));
            if let Err(e) = spawned {
                // The steps compile what no worker takes.
                tracing::warn!("cannot start a compile thread: {e}");
                break;
            }
        }
        Background { shared }
    }

    /// Before a step loads `bytes`: takes them off the queue if no worker has started them,
    /// or waits (at most `timeout`) for the worker compiling them.
    pub(crate) fn claim(&self, bytes: &[u8], timeout: Duration) -> Claim {
        let print = fingerprint(bytes);
        let mut queue = self.shared.lock();
        if let Some(at) = queue.waiting.iter().position(|e| e.is(print, bytes)) {
            queue.waiting.remove(at);
            return Claim::Load;
        }
        let (queue, waited) = self
            .shared
            .finished
            .wait_timeout_while(queue, timeout, |q| {
                q.compiling.iter().any(|e| e.is(print, bytes))
            })
            .unwrap_or_else(PoisonError::into_inner);
        if waited.timed_out() {
            Claim::TimedOut
        } else if queue.finished.contains(&print) {
            Claim::CompiledInBackground
        } else {
            Claim::Load
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.stopped = true;
        queue.waiting.clear();
        drop(queue);
        // A worker waiting for the first component ([`Background::start`]) stops now.
        self.shared.finished.notify_all();
    }
}

/// A worker's component, taken off `compiling` and counted finished when it is dropped:
/// after its compile, or as a panic in it unwinds (the workers waiting for the first
/// component, and the step waiting for this one, then go on).
struct Taken<'a> {
    shared: &'a Shared,
    entry: Entry,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue
            .compiling
            .retain(|e| !Arc::ptr_eq(&e.bytes, &self.entry.bytes));
        queue.finished.push(self.entry.print);
        drop(queue);
        self.shared.finished.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One worker: compiles the front of the queue until it is empty or stopped.
    fn work(&self, engine: &Engine, dir: &std::path::Path, root: &std::path::Path) {
        loop {
            let taken = {
                let mut queue = self.lock();
                if self.first_alone {
                    queue = self
                        .finished
                        .wait_while(queue, |q| {
                            !q.stopped && q.finished.is_empty() && !q.compiling.is_empty()
                        })
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if queue.stopped {
                    return;
                }
                let Some(entry) = queue.waiting.pop_front() else {
                    return;
                };
                queue.compiling.push(entry.clone());
                Taken {
                    shared: self,
                    entry,
                }
            };
            let bytes = &taken.entry.bytes;
            let started = std::time::Instant::now();
            // A failure is the step's to report, when it compiles the bytes itself.
            let outcome = cache::load_or_compile(engine, Some(dir), root, bytes);
            tracing::debug!(
                "compiled a {} byte component in the background in {} ms{}",
                bytes.len(),
                started.elapsed().as_millis(),
                if outcome.is_ok() { "" } else { " (invalid)" }
            );
            drop(outcome);
            drop(taken);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn background(components: &[&[u8]]) -> Background {
        let engine = Engine::default();
        Background::start(
            &engine,
            std::env::temp_dir(),
            std::env::temp_dir(),
            components.iter().map(|c| c.to_vec()).collect(),
            0,
            false,
        )
    }

    #[test]
    fn with_the_first_alone_a_worker_waits_for_it_and_stops_with_the_queue() {
        let b = background(&[b"a", b"b"]);
        let shared = Arc::clone(&b.shared);
        let shared = Shared {
            queue: Mutex::new(Queue {
                waiting: shared.lock().waiting.clone(),
                ..Queue::default()
            }),
            finished: Condvar::new(),
            first_alone: true,
        };
        let shared = Arc::new(shared);
        // The first, taken by a worker that has not finished it.
        let first = {
            let mut queue = shared.lock();
            let entry = queue.waiting.pop_front().unwrap();
            queue.compiling.push(entry.clone());
            Taken {
                shared: &shared,
                entry,
            }
        };
        let engine = Engine::default();
        let dir = std::env::temp_dir();
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || shared.work(&engine, &dir, &dir))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(shared.lock().waiting.len(), 1, "the second was taken");
        // Stopped: the waiting worker returns without taking it.
        shared.lock().stopped = true;
        shared.finished.notify_all();
        worker.join().unwrap();
        assert_eq!(shared.lock().waiting.len(), 1);
        drop(first);
        assert_eq!(shared.lock().finished.len(), 1);
        assert!(shared.lock().compiling.is_empty());
    }

    #[test]
    fn each_component_is_queued_once_in_step_order() {
        let b = background(&[b"a", b"b", b"a", b"c"]);
        let queue = b.shared.lock();
        let order: Vec<&[u8]> = queue.waiting.iter().map(|e| &*e.bytes).collect();
        assert_eq!(order, [b"a", b"b", b"c"]);
    }

    #[test]
    fn a_step_takes_its_component_off_the_queue_when_no_worker_started_it() {
        let b = background(&[b"a", b"b"]);
        assert_eq!(b.claim(b"b", Duration::from_secs(1)), Claim::Load);
        let queue = b.shared.lock();
        let left: Vec<&[u8]> = queue.waiting.iter().map(|e| &*e.bytes).collect();
        assert_eq!(left, [b"a"]);
        drop(queue);
        // Neither queued nor compiled by a worker: loaded as usual, without waiting.
        assert_eq!(b.claim(b"b", Duration::from_secs(1)), Claim::Load);
        assert_eq!(b.claim(b"z", Duration::from_secs(1)), Claim::Load);
    }

    #[test]
    fn a_step_waits_for_the_worker_compiling_its_component_and_says_so() {
        let b = background(&[b"a"]);
        // What a worker does, by hand: take it, then finish it a little later.
        let entry = b.shared.lock().waiting.pop_front().unwrap();
        b.shared.lock().compiling.push(entry.clone());
        let shared = Arc::clone(&b.shared);
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut queue = shared.lock();
            queue.compiling.clear();
            queue.finished.push(entry.print);
            drop(queue);
            shared.finished.notify_all();
        });
        assert_eq!(
            b.claim(b"a", Duration::from_secs(60)),
            Claim::CompiledInBackground
        );
        worker.join().unwrap();
    }

    #[test]
    fn a_step_stops_waiting_at_the_compile_timeout() {
        let b = background(&[b"a"]);
        let entry = b.shared.lock().waiting.pop_front().unwrap();
        b.shared.lock().compiling.push(entry);
        assert_eq!(b.claim(b"a", Duration::from_millis(20)), Claim::TimedOut);
    }

    #[test]
    fn a_dropped_queue_stops_its_workers() {
        let b = background(&[b"a", b"b"]);
        let shared = Arc::clone(&b.shared);
        drop(b);
        let queue = shared.lock();
        assert!(queue.stopped && queue.waiting.is_empty());
    }
}
