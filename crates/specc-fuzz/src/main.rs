//! `specc-fuzz`: fuzz specc with structure-aware mutations of its real
//! inputs, in supervised worker processes.
//!
//! ```text
//! specc-fuzz run [--target onnx|artifact|all] [--seconds 60] [--seed 1] [--jobs N] [--out DIR]
//! specc-fuzz bitflips MODEL.onnx [--kinds header,shape,node] [--stride 1] [--out DIR]
//! specc-fuzz repro --target onnx|artifact CASE_DIR
//! ```
//! Exit status 1 when a panic, abort, signal or hang was found (each saved
//! under `OUT/bugs/<target>/`).

use clap::{Parser, Subcommand};
use specc_fuzz::campaign::{self, CampaignConfig, Stats};
use specc_fuzz::supervisor::{Worker, WorkerConfig, worker_main};
use specc_fuzz::targets::Target;
use specc_fuzz::wire::Kind;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "specc-fuzz", about = "Fuzz specc's importer, compiler and artifact reader")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct WorkerArgs {
    /// A case running longer than this (seconds) is a hang.
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// The worker's address-space limit (MiB): an allocation a size check
    /// should have refused fails (an abort) instead of exhausting the host.
    #[arg(long, default_value_t = 6144)]
    memory_mb: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// A random campaign for a time budget.
    Run {
        /// onnx, artifact, tokenizer or all (the budget is split evenly).
        #[arg(long, default_value = "all")]
        target: String,
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Stop after this many runs per target.
        #[arg(long)]
        max_runs: Option<u64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Worker processes (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Seeds larger than this (bytes) are left out (slow to mutate).
        #[arg(long, default_value_t = 6 << 20)]
        max_seed_bytes: u64,
        /// Work, seed and bug directory.
        #[arg(long, default_value = "target/fuzz")]
        out: PathBuf,
        /// The repository whose graphs/ seed the campaign.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))]
        repo: PathBuf,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Every bit of MODEL's initializer headers and shapes (and nodes),
    /// flipped one at a time.
    Bitflips {
        model: PathBuf,
        /// Regions: header (initializer headers), shape, node.
        #[arg(long, value_delimiter = ',', default_value = "header,shape")]
        kinds: Vec<String>,
        /// Flip every Nth bit only (an odd stride samples every bit position).
        #[arg(long, default_value_t = 1)]
        stride: usize,
        /// At most this many flips: the stride is raised to fit.
        #[arg(long)]
        max_flips: Option<usize>,
        #[arg(long)]
        jobs: Option<usize>,
        #[arg(long, default_value = "target/fuzz")]
        out: PathBuf,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Runs one saved case and prints its outcome.
    Repro {
        #[arg(long)]
        target: String,
        case: PathBuf,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// (internal) The worker process.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        target: String,
        #[arg(long)]
        memory_mb: u64,
    },
}

fn target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| format!("unknown target `{s}` (onnx, artifact or tokenizer)"))
}

fn worker_config(t: Target, w: &WorkerArgs) -> Result<WorkerConfig, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find specc-fuzz itself: {e}"))?;
    Ok(WorkerConfig { exe, target: t, timeout: Duration::from_secs_f64(w.timeout), memory_mb: w.memory_mb })
}

fn jobs(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) when no bug was found.
fn real_main() -> Result<bool, String> {
    match Cli::parse().command {
        Cmd::Worker { target: t, memory_mb } => {
            worker_main(target(&t)?, memory_mb).map_err(|e| e.to_string())?;
            Ok(true)
        }
        Cmd::Repro { target: t, case, worker } => {
            let mut w = Worker::spawn(
                worker_config(target(&t)?, &worker)?,
                std::env::temp_dir().join("specc-fuzz-repro.stderr"),
            )
            .map_err(|e| e.to_string())?;
            // A copy: targets write their outputs into the case directory.
            let copy = std::env::temp_dir().join(format!("specc-fuzz-repro-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&copy);
            specc_fuzz::case::Case::load(&case)
                .and_then(|c| c.write(&copy))
                .map_err(|e| format!("{}: {e}", case.display()))?;
            let outcome = w.run(&copy);
            let _ = std::fs::remove_dir_all(&copy);
            println!("{}: {}", outcome.class(), outcome.message());
            Ok(!outcome.is_bug())
        }
        Cmd::Bitflips { model, kinds, stride, max_flips, jobs: j, out, worker } => {
            let kinds: Vec<Kind> = kinds
                .iter()
                .map(|k| match k.as_str() {
                    "header" => Ok(Kind::InitializerHeader),
                    "shape" => Ok(Kind::Shape),
                    "node" => Ok(Kind::Node),
                    other => Err(format!("--kinds {other}: use header, shape or node")),
                })
                .collect::<Result<_, _>>()?;
            let config = worker_config(Target::Onnx, &worker)?;
            let total = specc_fuzz::bitflips::region_bits(&model, &kinds);
            let mut stride = stride.max(1);
            if let Some(m) = max_flips {
                stride = stride.max(total.div_ceil(m.max(1)));
                if stride > 1 && stride % 2 == 0 {
                    stride += 1; // odd, so every bit position within a byte is hit
                }
            }
            let stats = specc_fuzz::bitflips::run(&model, &kinds, stride, jobs(j), &config, &out);
            let title =
                format!("bitflips {} ({} of its {total} region bits, stride {stride})", model.display(), stats.runs);
            print!("{}", stats.report(&title));
            Ok(stats.bug_count() == 0)
        }
        Cmd::Run { target: t, seconds, max_runs, seed, jobs: j, max_seed_bytes, out, repo, worker } => {
            let targets: Vec<Target> = if t == "all" { Target::ALL.to_vec() } else { vec![target(&t)?] };
            let mut all = Stats::default();
            for &t in &targets {
                let (seeds, favored) = match t {
                    Target::Onnx => campaign::onnx_seeds(&repo, max_seed_bytes),
                    Target::Artifact => (campaign::artifact_seeds(&repo, &out)?, 0),
                    Target::Tokenizer => (campaign::tokenizer_seeds(&repo), 0),
                };
                if seeds.is_empty() {
                    return Err(format!("no seeds for target {} under {}", t.name(), repo.display()));
                }
                let config = CampaignConfig {
                    worker: worker_config(t, &worker)?,
                    seconds: seconds / targets.len() as f64,
                    max_runs,
                    seed,
                    jobs: jobs(j),
                    out: out.clone(),
                    favored,
                };
                let stats = campaign::run(&config, &seeds);
                print!("{}", stats.report(&format!("target {} ({} seeds, seed {seed})", t.name(), seeds.len())));
                all.merge(&stats);
            }
            Ok(all.bug_count() == 0)
        }
    }
}
