//! A fuzzing campaign: seeds, mutation rounds in `jobs` worker processes
//! for a time budget, outcome counts, and every distinct bug saved as a
//! case directory (with what happened) for `specc-fuzz repro` and the
//! regression tests.
//!
//! Without coverage instrumentation (stable Rust), the campaign keeps a
//! case in its corpus when it produced an outcome not seen before (a new
//! error message, a new stage reached): mutations then compound from
//! inputs that already went somewhere new.

use crate::case::Case;
use crate::rng::Rng;
use crate::supervisor::{Outcome, Worker, WorkerConfig};
use crate::targets::Target;
use crate::{mutate_artifact, mutate_onnx};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct CampaignConfig {
    pub worker: WorkerConfig,
    pub seconds: f64,
    /// Stop after this many runs (per campaign), if set.
    pub max_runs: Option<u64>,
    pub seed: u64,
    pub jobs: usize,
    /// Where cases are written while they run and saved when they crash.
    pub out: PathBuf,
    /// The first `favored` seeds are picked as parents half the time.
    pub favored: usize,
}

/// What a campaign did.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub runs: u64,
    /// Outcome class -> count.
    pub by_class: BTreeMap<String, u64>,
    /// Mutator -> count of runs it took part in.
    pub by_mutator: BTreeMap<String, u64>,
    /// Distinct bugs: (class, message, saved case directory).
    pub bugs: Vec<(String, String, PathBuf)>,
    pub corpus: usize,
    pub seconds: f64,
}

impl Stats {
    pub fn count(&self, class: &str) -> u64 {
        self.by_class.get(class).copied().unwrap_or(0)
    }

    pub fn bug_count(&self) -> u64 {
        ["panic", "abort", "signal", "hang", "died"].iter().map(|c| self.count(c)).sum()
    }

    pub fn merge(&mut self, other: &Stats) {
        self.runs += other.runs;
        for (k, v) in &other.by_class {
            *self.by_class.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.by_mutator {
            *self.by_mutator.entry(k.clone()).or_default() += v;
        }
        self.bugs.extend(other.bugs.iter().cloned());
        self.corpus += other.corpus;
        self.seconds = self.seconds.max(other.seconds);
    }

    pub fn report(&self, title: &str) -> String {
        let mut s = format!(
            "{title}: {} runs in {:.0} s ({:.1}/s), corpus {}\n  outcomes:",
            self.runs,
            self.seconds,
            self.runs as f64 / self.seconds.max(1e-9),
            self.corpus
        );
        for class in ["ok", "error", "panic", "abort", "signal", "hang", "died"] {
            s.push_str(&format!(" {class} {}", self.count(class)));
        }
        s.push_str("\n  mutators:");
        for (k, v) in &self.by_mutator {
            s.push_str(&format!(" {k} {v}"));
        }
        s.push('\n');
        for (class, msg, dir) in &self.bugs {
            s.push_str(&format!("  BUG {class}: {msg}\n      case: {}\n", dir.display()));
        }
        s
    }
}

/// Applies 1-3 mutations of the target's kind; returns their names.
pub fn mutate(target: Target, case: &mut Case, rng: &mut Rng) -> Vec<&'static str> {
    (0..1 + rng.below(3))
        .map(|_| match target {
            Target::Onnx => mutate_onnx::mutate(case, rng),
            Target::Artifact => mutate_artifact::mutate(case, rng),
            Target::Tokenizer => mutate_artifact::mutate_tokenizer(case, rng),
        })
        .collect()
}

/// Saves a buggy case with what happened; returns its directory.
pub fn save_bug(out: &Path, target: Target, case: &Case, outcome: &Outcome, mutators: &[&str]) -> PathBuf {
    let dir = out.join("bugs").join(target.name()).join(format!("{}-{}", outcome.class(), case.hash()));
    if !dir.exists() {
        let _ = case.write(&dir.join("case"));
        let _ = std::fs::write(
            dir.join("outcome.txt"),
            format!("{}: {}\nmutators: {}\n", outcome.class(), outcome.message(), mutators.join(", ")),
        );
    }
    dir.join("case")
}

/// Runs a campaign over `seeds` until the time or run budget is spent.
pub fn run(config: &CampaignConfig, seeds: &[Case]) -> Stats {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(config.seconds);
    let total = Mutex::new(Stats::default());
    let runs_left = std::sync::atomic::AtomicI64::new(config.max_runs.map(|n| n as i64).unwrap_or(i64::MAX));
    // A case that grew far past the largest seed would only test reading
    // speed: it is run, but not kept to mutate further.
    let max_case_bytes = seeds.iter().map(Case::bytes).max().unwrap_or(0).saturating_mul(4).max(1 << 20);
    // Bug signatures seen by any job, so each distinct bug is saved once.
    let bugs_seen = Mutex::new(HashSet::new());
    std::thread::scope(|s| {
        for job in 0..config.jobs.max(1) {
            let (total, runs_left, bugs_seen) = (&total, &runs_left, &bugs_seen);
            s.spawn(move || {
                let work = config.out.join("work").join(format!("{}-{job}", config.worker.target.name()));
                let _ = std::fs::remove_dir_all(&work);
                let _ = std::fs::create_dir_all(&work);
                let mut stats = Stats::default();
                let mut worker = match Worker::spawn(config.worker.clone(), work.join("worker.stderr")) {
                    Ok(w) => w,
                    Err(e) => {
                        stats.by_class.insert(format!("worker failed to start: {e}"), 1);
                        total.lock().unwrap().merge(&stats);
                        return;
                    }
                };
                let mut rng = Rng::new(config.seed.wrapping_mul(1000).wrapping_add(job as u64));
                let mut corpus: Vec<Case> = seeds.to_vec();
                let mut seen: HashSet<String> = HashSet::new();
                let mut n = 0u64;
                // First the favored seeds (or all, when there are few) as
                // they are: a baseline of results, and a check that the
                // seeds themselves are sound.
                let baseline = if config.favored > 0 { config.favored } else { seeds.len().min(16) };
                let mut unmutated = (job..baseline).step_by(config.jobs.max(1));
                while Instant::now() < deadline && runs_left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) > 0 {
                    let (case, mutators) = match unmutated.next() {
                        Some(i) => (seeds[i].clone(), vec!["none (seed)"]),
                        None => {
                            // Half the time a favored seed (the real
                            // exports, not the hundreds of one-op
                            // conformance cases), so the paths of real
                            // models get their share.
                            let parent = if config.favored > 0 && rng.one_in(2) {
                                &corpus[rng.below(config.favored.min(corpus.len()))]
                            } else {
                                match rng.pick(&corpus) {
                                    Some(p) => p,
                                    None => break,
                                }
                            };
                            let mut case = parent.clone();
                            let mutators = mutate(config.worker.target, &mut case, &mut rng);
                            (case, mutators)
                        }
                    };
                    let dir = work.join(format!("case-{}", n % 2));
                    n += 1;
                    let _ = std::fs::remove_dir_all(&dir);
                    if case.write(&dir).is_err() {
                        continue;
                    }
                    let outcome = worker.run(&dir);
                    stats.runs += 1;
                    *stats.by_class.entry(outcome.class().into()).or_default() += 1;
                    for m in &mutators {
                        *stats.by_mutator.entry(m.to_string()).or_default() += 1;
                    }
                    let sig = outcome.signature(&dir);
                    if outcome.is_bug() {
                        if bugs_seen.lock().unwrap().insert(sig) {
                            let saved = save_bug(&config.out, config.worker.target, &case, &outcome, &mutators);
                            stats.bugs.push((outcome.class().into(), outcome.message(), saved));
                        }
                    } else if seen.insert(sig) && corpus.len() < 4000 && case.bytes() <= max_case_bytes {
                        corpus.push(case);
                    }
                }
                let _ = std::fs::remove_dir_all(work.join("case-0"));
                let _ = std::fs::remove_dir_all(work.join("case-1"));
                stats.corpus = corpus.len();
                total.lock().unwrap().merge(&stats);
            });
        }
    });
    let mut stats = total.into_inner().unwrap();
    stats.seconds = t0.elapsed().as_secs_f64();
    stats
}

/// The ONNX seeds: every model under `graphs/` up to `max_bytes` (first),
/// and the ONNX conformance cases in `.cache/onnx-node-tests` when they
/// were fetched (those whose ops specc supports), each with a small data
/// file beside it for external data. Returns the seeds and how many come
/// from `graphs/`.
pub fn onnx_seeds(repo: &Path, max_bytes: u64) -> (Vec<Case>, usize) {
    let data = std::fs::read(repo.join("graphs/small/external_data.onnx.data")).unwrap_or_else(|_| vec![0; 544]);
    let mut models = Vec::new();
    let mut stack = vec![repo.join("graphs"), repo.join(".cache/onnx-node-tests")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "onnx")
                && std::fs::metadata(&p).is_ok_and(|m| m.len() <= max_bytes)
            {
                models.push(p);
            }
        }
    }
    // The repository's own models (real exports) first: they are favored.
    models.sort_by_key(|p| (!p.starts_with(repo.join("graphs")), p.clone()));
    models
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            // A conformance case of an unsupported op only reaches the
            // parser; the repository's own models are all kept.
            if !p.starts_with(repo.join("graphs")) {
                let m = specc_onnx::parse_bytes(bytes.clone().into(), "seed").ok()?;
                if !specc_onnx::unsupported_ops(&m).is_empty() {
                    return None;
                }
            }
            let mut c = Case::default();
            c.set(mutate_onnx::MODEL, bytes);
            c.set(mutate_onnx::DATA, data.clone());
            c.set("external_data.onnx.data", data.clone());
            Some((p.starts_with(repo.join("graphs")), c))
        })
        .fold((Vec::new(), 0), |(mut v, n), (own, c)| {
            v.push(c);
            (v, n + own as usize)
        })
}

/// The tokenizer seeds: every `tokenizer.json` under `graphs/` (one of
/// each content).
pub fn tokenizer_seeds(repo: &Path) -> Vec<Case> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut stack = vec![repo.join("graphs")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == crate::targets::TOKENIZER)
                && let Ok(bytes) = std::fs::read(&p)
                && seen.insert(bytes.clone())
            {
                let mut c = Case::default();
                c.set(crate::targets::TOKENIZER, bytes);
                out.push(c);
            }
        }
    }
    out
}

/// The artifact seeds, compiled into `out/seeds`: the tiny target and
/// draft (copied weights, trn1), the tiny target alone (prompt lookup, XLA,
/// bf16), the pair shape-only, and the external-data model with linked
/// weights.
pub fn artifact_seeds(repo: &Path, out: &Path) -> Result<Vec<Case>, String> {
    use specc_driver::compile::{CompileOptions, GenerationOptions, WeightMode, compile, compile_generation};
    let dir = out.join("seeds");
    let small = repo.join("graphs/small");
    let target = small.join("tiny-target/with_past/model.onnx");
    let draft = small.join("tiny-draft/with_past/model.onnx");
    let spec = specc_spec::SpecConfig { ks: vec![1, 2], capacity: 32, buckets: vec![8] };
    let options = |draft: Option<&Path>| GenerationOptions {
        draft: draft.map(Path::to_path_buf),
        spec: spec.clone(),
        tokenizer: None,
    };
    let force = CompileOptions { force: true, ..Default::default() };
    let e = |e: specc_driver::compile::CompileError| e.to_string();
    compile_generation(&target, &dir.join("pair"), &force, &options(Some(&draft))).map_err(e)?;
    let xla_bf16 = CompileOptions { target: specc_hlo::Target::Xla, dtype: specc_ir::DType::BF16, ..force.clone() };
    compile_generation(&target, &dir.join("lookup"), &xla_bf16, &options(None)).map_err(e)?;
    let shapes = CompileOptions { weights: WeightMode::None, ..force.clone() };
    compile_generation(&target, &dir.join("shapes"), &shapes, &options(Some(&draft))).map_err(e)?;
    let linked =
        CompileOptions { weights: WeightMode::Link, target: specc_hlo::Target::Xla, dims: vec!["n=2".into()], ..force };
    compile(&small.join("external_data.onnx"), &dir.join("linked"), &linked).map_err(e)?;
    ["pair", "lookup", "shapes", "linked"]
        .iter()
        .map(|n| Case::load(&dir.join(n)).map_err(|e| format!("{n}: {e}")))
        .collect()
}
