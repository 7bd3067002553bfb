//! The exhaustive campaign: every bit of every region that holds sizes,
//! types and indices (initializer headers, shapes, optionally nodes) of
//! one ONNX model, flipped one at a time and run through the `onnx`
//! target. This is how the crashes of the hostile-input testing were
//! found; its counts per outcome are what BENCHMARKS.md records.

use crate::campaign::{Stats, save_bug};
use crate::case::Case;
use crate::supervisor::{Worker, WorkerConfig};
use crate::targets::Target;
use crate::wire::{self, Kind};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bits of the regions of `kinds` in `model`.
pub fn region_bits(model: &Path, kinds: &[Kind]) -> usize {
    let bytes = std::fs::read(model).unwrap_or_default();
    let mut bits: Vec<usize> = Vec::new();
    for r in wire::regions(&bytes).into_iter().filter(|r| kinds.contains(&r.kind)) {
        bits.extend(r.bytes.start * 8..r.bytes.end * 8);
    }
    bits.sort_unstable();
    bits.dedup();
    bits.len()
}

/// Flips every bit of the regions of `kinds` in `model` (every `stride`-th
/// bit, to sample a large model), `jobs` at a time.
pub fn run(model: &Path, kinds: &[Kind], stride: usize, jobs: usize, worker: &WorkerConfig, out: &Path) -> Stats {
    let t0 = std::time::Instant::now();
    let bytes = std::fs::read(model).unwrap_or_default();
    let data = vec![0u8; 544];
    let mut bits: Vec<usize> = Vec::new();
    for r in wire::regions(&bytes).into_iter().filter(|r| kinds.contains(&r.kind)) {
        bits.extend((r.bytes.start * 8..r.bytes.end * 8).step_by(stride.max(1)));
    }
    bits.sort_unstable();
    bits.dedup();
    let next = AtomicUsize::new(0);
    let total = Mutex::new(Stats::default());
    let seen = Mutex::new(std::collections::HashSet::new());
    std::thread::scope(|s| {
        for job in 0..jobs.max(1) {
            let (bits, next, total, seen, bytes, data) = (&bits, &next, &total, &seen, &bytes, &data);
            s.spawn(move || {
                let work = out.join("work").join(format!("bitflips-{job}"));
                let _ = std::fs::remove_dir_all(&work);
                let _ = std::fs::create_dir_all(&work);
                let mut stats = Stats::default();
                let Ok(mut w) =
                    Worker::spawn(WorkerConfig { target: Target::Onnx, ..worker.clone() }, work.join("worker.stderr"))
                else {
                    return;
                };
                while let Some(&bit) = bits.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut flipped = bytes.clone();
                    flipped[bit / 8] ^= 1 << (bit % 8);
                    let mut case = Case::default();
                    case.set(crate::mutate_onnx::MODEL, flipped);
                    case.set(crate::mutate_onnx::DATA, data.clone());
                    let dir = work.join("case");
                    let _ = std::fs::remove_dir_all(&dir);
                    if case.write(&dir).is_err() {
                        continue;
                    }
                    let outcome = w.run(&dir);
                    stats.runs += 1;
                    *stats.by_class.entry(outcome.class().into()).or_default() += 1;
                    if outcome.is_bug() && seen.lock().unwrap().insert(outcome.signature(&dir)) {
                        let saved = save_bug(out, Target::Onnx, &case, &outcome, &["bitflip"]);
                        stats.bugs.push((outcome.class().into(), outcome.message(), saved));
                    }
                }
                let _ = std::fs::remove_dir_all(work.join("case"));
                total.lock().unwrap().merge(&stats);
            });
        }
    });
    let mut stats = total.into_inner().unwrap();
    stats.seconds = t0.elapsed().as_secs_f64();
    stats
}
