//! `specc`: compile ONNX draft/target models for speculative decoding on
//! AWS Trainium, and run them.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "specc", version = specc_driver::VERSION, about = "Speculative-decoding compiler and runtime for LLMs on AWS Trainium")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The largest tensor specc accepts from a file or builds, in bytes
    /// (suffixes K, M, G, T: powers of 1024). Default 16G, or
    /// $SPECC_MAX_TENSOR_BYTES. Larger shapes are refused, naming the
    /// tensor, before anything is allocated.
    #[arg(long, global = true, value_name = "BYTES", value_parser = parse_bytes)]
    max_tensor_bytes: Option<u64>,
}

/// `17179869184`, `16G`, `512M`: bytes, with binary suffixes.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("`{s}`: the suffix must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size in bytes (e.g. 17179869184 or 16G)"))?;
    match n.checked_mul(1 << shift) {
        Some(0) | None => Err(format!("`{s}`: give a size from 1 byte to 2^64-1 bytes")),
        Some(b) => Ok(b),
    }
}

/// The tensor size limit: the flag, else the environment, else the default.
fn set_tensor_limit(flag: Option<u64>) -> Result<(), String> {
    use specc_ir::limits;
    let bytes = match flag {
        Some(b) => b,
        None => match std::env::var(limits::ENV_MAX_TENSOR_BYTES) {
            Ok(v) => parse_bytes(&v).map_err(|e| format!("${}: {e}", limits::ENV_MAX_TENSOR_BYTES))?,
            Err(_) => limits::DEFAULT_MAX_TENSOR_BYTES,
        },
    };
    limits::set_max_tensor_bytes(bytes);
    Ok(())
}

#[derive(Subcommand)]
enum Command {
    /// Print an ONNX model's interface, size, op histogram and unsupported ops.
    Inspect {
        /// The ONNX model.
        model: PathBuf,
    },
    /// Compile an ONNX model to an artifact directory: HLO (proto and text),
    /// IR, weights and a manifest; NEFFs too when neuronx-cc is installed.
    /// With --max-seq-len (and --draft), the graphs for generation:
    /// prefill per prompt bucket, decode, verify and the fused speculation
    /// round, with static KV caches.
    Compile {
        /// The ONNX model (the target, with --draft).
        model: PathBuf,
        /// A draft model exported "with past" (same vocabulary as the target).
        #[arg(long)]
        draft: Option<PathBuf>,
        /// KV-cache capacity in tokens (prompt + generated); turns on generation graphs.
        #[arg(long)]
        max_seq_len: Option<usize>,
        /// Speculative tokens per round (K): one value (`4`), a list (`2,4`)
        /// or a range (`1-8`); a round graph is built for each, and `specc
        /// run` uses the largest unless told otherwise (or adapts among them).
        #[arg(short = 'k', long = "num-speculative-tokens", default_value = "4", value_parser = specc_driver::compile::parse_ks)]
        num_speculative_tokens: std::vec::Vec<usize>,
        /// The target's Hugging Face tokenizer.json (default: found beside
        /// the model or one directory up); copied into the artifact.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Rebuild even when the artifact is up to date, and replace an
        /// artifact at -o that was compiled from other models. (A path that
        /// holds anything but a specc artifact is never replaced.)
        #[arg(long)]
        force: bool,
        /// Read ONNX external data outside the model's directory (an
        /// absolute location, `..`, a symlink leading out). Refused by
        /// default, as onnxruntime does; each such file is reported.
        #[arg(long)]
        allow_external_data_outside: bool,
        /// Prompt buckets (comma-separated lengths; default 32,128 capped at the capacity).
        #[arg(long, value_delimiter = ',')]
        prompt_buckets: Vec<usize>,
        /// Tensor-parallel ranks (1, 2, 4, 8, 16, 32 or 64): the target is
        /// split across that many NeuronCores (or PJRT devices), one program
        /// for every rank, each rank with its own block of every split weight.
        #[arg(long, default_value_t = 1)]
        tp: usize,
        /// With --tp: `sharded` (split like the target; two all-reduces per
        /// layer in each draft step) or `replicated` (whole on every rank;
        /// no collectives in the draft steps).
        #[arg(long, default_value = "sharded")]
        draft_placement: String,
        /// The artifact directory to write (replaced atomically).
        #[arg(short, long)]
        out: PathBuf,
        /// Bind a symbolic dim (repeatable); every dim must end up bound.
        #[arg(long = "dim", value_name = "NAME=VALUE")]
        dims: Vec<String>,
        /// trn1, trn2, inf2 (Neuron: checked and narrowed to s32) or xla (portable).
        #[arg(long, default_value = "trn1")]
        target: String,
        /// f32, or bf16: weights stored in bf16 and matmuls in bf16 with f32
        /// accumulation (everything else stays f32).
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// `copy` the weights into the artifact, or `link` them where they are
        /// (ONNX external data; nothing is read), or `none`: record only
        /// their names, dtypes and shapes (a shape-only artifact for `specc
        /// estimate`, which `specc run` refuses).
        #[arg(long, default_value = "copy")]
        weights: String,
        /// neuronx-cc --model-type.
        #[arg(long, default_value = "transformer")]
        model_type: String,
        /// neuronx-cc --auto-cast (none, matmult, all).
        #[arg(long, default_value = "none")]
        auto_cast: String,
        /// neuronx-cc -O level for every graph (default: 1 for prefill, 2 otherwise).
        #[arg(long)]
        opt_level: Option<u8>,
        /// The neuronx-cc to run (default: $SPECC_NEURONX_CC, then PATH).
        #[arg(long)]
        neuronx_cc: Option<PathBuf>,
        /// neuronx-cc runs at a time (default: the number of CPUs).
        #[arg(short = 'j', long)]
        jobs: Option<usize>,
        /// Where compiled NEFFs are cached, keyed by HLO, flags and compiler
        /// version (default: $SPECC_NEFF_CACHE, else
        /// $XDG_CACHE_HOME/specc/neff, else ~/.cache/specc/neff).
        #[arg(long, value_name = "DIR")]
        neff_cache: Option<PathBuf>,
        /// Always run neuronx-cc: neither read nor write the NEFF cache.
        #[arg(long, conflicts_with = "neff_cache")]
        no_neff_cache: bool,
    },
    /// Generate with a compiled artifact (speculatively when it has a draft
    /// or with prompt lookup), on the reference backend or a NeuronCore.
    Run {
        /// The artifact directory (`specc compile ... --max-seq-len C -o DIR`).
        artifact: PathBuf,
        /// The prompt as text (encoded with the artifact's tokenizer.json).
        #[arg(long, required_unless_present = "prompt_ids", conflicts_with = "prompt_ids")]
        prompt: Option<String>,
        /// The prompt as token ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        prompt_ids: Vec<i64>,
        /// How many tokens to generate at most.
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// One target step per token, no speculation.
        #[arg(long)]
        no_speculation: bool,
        /// Propose with n-gram prompt lookup instead of the draft.
        #[arg(long)]
        prompt_lookup: bool,
        /// Do not stop at end-of-sequence tokens.
        #[arg(long)]
        ignore_eos: bool,
        /// `text` (stream tokens, then a summary) or `json`.
        #[arg(long, default_value = "text")]
        output_format: String,
        /// Sampling temperature (0: greedy).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Keep only the k most likely tokens (0: off).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Keep the most likely tokens whose mass reaches p (1: off).
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Seed of the in-graph random generator.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Speculative tokens per round: one of the K the artifact was
        /// compiled for (default: the largest); with --adaptive, the most.
        #[arg(short = 'k', long = "num-speculative-tokens")]
        num_speculative_tokens: Option<usize>,
        /// Choose K each round from the acceptance seen so far and the
        /// measured graph costs; stop speculating when it does not pay.
        #[arg(long)]
        adaptive: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Measure plain vs speculative generation on the same prompts, per
    /// domain and for every K: tokens/s, acceptance, measured cost ratios,
    /// the formula's prediction and the best K; a table, JSON and a plot.
    Bench {
        /// The artifact directory.
        artifact: PathBuf,
        /// Prompts, one JSON object per line with `prompt` (text) or
        /// `prompt_ids`, and `domain` (default: the file name); repeatable.
        #[arg(long)]
        prompts: Vec<PathBuf>,
        /// A prompt as token ids (repeatable).
        #[arg(long = "prompt-ids", value_delimiter = ',', num_args = 1)]
        prompt_ids: Vec<i64>,
        /// At most this many prompts per domain.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// Repetitions of the whole prompt set.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The K to measure (`4`, `2,4`, `1-8`; default: every compiled K).
        #[arg(short = 'k', long = "num-speculative-tokens", value_parser = specc_driver::compile::parse_ks)]
        num_speculative_tokens: Option<std::vec::Vec<usize>>,
        /// Also measure the adaptive K policy.
        #[arg(long)]
        adaptive: bool,
        /// Speculate with prompt lookup instead of the draft.
        #[arg(long)]
        prompt_lookup: bool,
        /// BENCHMARK ONLY: accept each proposal with these probabilities
        /// (comma-separated) instead of comparing tokens; compute unchanged.
        #[arg(long, value_delimiter = ',')]
        synthetic_acceptance: Vec<f64>,
        /// `text` or `json`.
        #[arg(long, default_value = "text")]
        output_format: String,
        /// Also write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG plot of speedup vs K per domain here.
        #[arg(long)]
        plot: Option<PathBuf>,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Estimate a generation artifact's latency on Trainium from its graphs'
    /// shapes (a roofline per graph plus tensor-parallel collectives):
    /// prefill per bucket, plain inter-token latency, and per K the
    /// speculative round, the expected tokens and the best K.
    Estimate {
        /// The artifact directory (`specc compile ... --max-seq-len C -o DIR`;
        /// `--weights none` is enough).
        artifact: PathBuf,
        /// trn1.2xlarge, trn1.32xlarge or trn2.48xlarge.
        #[arg(long)]
        instance: String,
        /// Tensor-parallel degree (default: the smallest whose weights and
        /// KV caches fit a NeuronCore's HBM share).
        #[arg(long)]
        tp: Option<usize>,
        /// Per-token acceptance rate of the proposals (0-1).
        #[arg(long, conflicts_with = "from_bench")]
        acceptance: Option<f64>,
        /// Take the acceptance from a `specc bench --json` report (measured
        /// per-position rates, per domain).
        #[arg(long)]
        from_bench: Option<PathBuf>,
        /// `text` or `json`.
        #[arg(long, default_value = "text")]
        output_format: String,
        /// Override the achieved fraction of the roofline (default 1).
        #[arg(long)]
        efficiency: Option<f64>,
        /// Override the fixed cost per all-reduce, in microseconds (default:
        /// the value calibrated in BENCHMARKS.md).
        #[arg(long)]
        collective_latency_us: Option<f64>,
        /// Solve one parameter from a measured plain inter-token latency
        /// first: `collective-latency=MS` or `efficiency=MS`.
        #[arg(long, value_name = "PARAM=MS")]
        calibrate: Option<String>,
        /// Report the per-token acceptance that a measured speculative
        /// inter-token latency implies: `K=MS` (repeatable).
        #[arg(long, value_name = "K=MS")]
        implied_acceptance: Vec<String>,
    },
    /// Run an ONNX model once on the reference interpreter.
    Eval {
        /// The ONNX model.
        model: PathBuf,
        /// Input tensors, named as the model's inputs (safetensors).
        #[arg(long)]
        inputs: PathBuf,
        /// Where to write the outputs, named as the model's outputs (safetensors).
        #[arg(long)]
        output: PathBuf,
        /// Bind a symbolic dim and specialize to static shapes first (repeatable).
        #[arg(long = "dim", value_name = "NAME=VALUE")]
        dims: Vec<String>,
    },
}

/// Where `run` and `bench` execute the graphs.
#[derive(clap::Args, Debug)]
struct DeviceArgs {
    /// `auto` (neuron when libnrt loads and the artifact has NEFFs, else
    /// pjrt when a plugin is installed, else reference), `reference` (the
    /// interpreter, anywhere), `neuron` (the NEFFs on a NeuronCore through
    /// libnrt) or `pjrt` (the HLO on an XLA PJRT plugin).
    #[arg(long, default_value = "auto")]
    backend: String,
    /// With --backend neuron: the NeuronCore to run on.
    #[arg(long, default_value_t = 0)]
    neuron_core: i32,
    /// With --backend neuron: the Neuron runtime library (default:
    /// $SPECC_LIBNRT, else libnrt.so.1 on the loader's path, else
    /// /opt/aws/neuron/lib/libnrt.so.1).
    #[arg(long)]
    libnrt: Option<PathBuf>,
    /// With --backend pjrt: `cpu` (the xla-cpu-pjrt wheel), `cuda` (the
    /// jax-cuda12-pjrt wheel) or a plugin's path (default:
    /// $SPECC_PJRT_PLUGIN, else cpu). Wheels are found in the active Python
    /// environment, ./.venv-pjrt, ./.venv-ci, ./.venv or ~/.local.
    #[arg(long, value_name = "cpu|cuda|PATH")]
    pjrt_plugin: Option<String>,
    /// With --backend pjrt: where compiled executables are cached, or `off`
    /// (default: $SPECC_PJRT_CACHE, else ~/.cache/specc/pjrt).
    #[arg(long, value_name = "DIR|off")]
    pjrt_cache: Option<String>,
}

impl DeviceArgs {
    fn device(self) -> Result<specc::commands::Device, String> {
        use specc::commands::Device;
        use specc_exec::pjrt::{ExecutableCache, PluginChoice};
        let neuron = specc_exec::NeuronOptions { library: self.libnrt, core: self.neuron_core };
        let pjrt = specc_exec::PjrtOptions {
            plugin: self.pjrt_plugin.as_deref().map(PluginChoice::parse),
            cache: match self.pjrt_cache.as_deref() {
                None => ExecutableCache::Default,
                Some("off") => ExecutableCache::Off,
                Some(dir) => ExecutableCache::Dir(dir.into()),
            },
            devices: 1,
        };
        match self.backend.as_str() {
            "auto" => Ok(Device::Auto { neuron, pjrt }),
            "reference" => Ok(Device::Reference),
            "neuron" => Ok(Device::Neuron(neuron)),
            "pjrt" => Ok(Device::Pjrt(pjrt)),
            other => Err(format!("--backend {other}: use auto, reference, neuron or pjrt")),
        }
    }
}

fn report(e: &dyn std::error::Error) -> String {
    let mut s = format!("error: {e}");
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(&format!("\n  caused by: {inner}"));
        src = inner.source();
    }
    s
}

/// The generation flags of `specc compile`.
struct Generation {
    draft: Option<PathBuf>,
    tp: usize,
    draft_placement: String,
    max_seq_len: Option<usize>,
    ks: Vec<usize>,
    buckets: Vec<usize>,
    tokenizer: Option<PathBuf>,
}

#[allow(clippy::too_many_arguments)]
fn compile(
    model: PathBuf,
    out: PathBuf,
    dims: Vec<String>,
    target: String,
    dtype: String,
    weights: String,
    neuronx: specc_driver::neuronx::NeuronxOptions,
    generation: Generation,
    force: bool,
    allow_external_data_outside: bool,
) -> Result<String, Box<dyn std::error::Error>> {
    use specc_driver::compile::{self as c, CompileOptions, WeightMode};
    let weights = match weights.as_str() {
        "copy" => WeightMode::Copy,
        "link" => WeightMode::Link,
        "none" => WeightMode::None,
        other => return Err(format!("--weights {other}: use copy, link or none").into()),
    };
    if neuronx.jobs == Some(0) {
        return Err("--jobs 0: give at least 1 (neuronx-cc runs at a time)".into());
    }
    let o = CompileOptions {
        dims,
        target: c::parse_target(&target)?,
        dtype: match dtype.as_str() {
            "f32" => specc_ir::DType::F32,
            "bf16" => specc_ir::DType::BF16,
            other => return Err(format!("--dtype {other}: use f32 or bf16").into()),
        },
        weights,
        neuronx,
        force,
        allow_external_data_outside,
        tp: generation.tp,
        draft_placement: c::DraftPlacement::parse(&generation.draft_placement)
            .map_err(|e| format!("--draft-placement {e}"))?,
    };
    let Generation { draft, max_seq_len, ks, buckets, tokenizer, .. } = generation;
    match (max_seq_len, &draft) {
        (None, None) => Ok(c::compile(&model, &out, &o)?),
        (None, Some(_)) => Err("--draft needs --max-seq-len (the KV-cache capacity)".into()),
        (Some(capacity), _) => {
            let buckets = if buckets.is_empty() {
                let b: Vec<usize> = [32, 128].into_iter().filter(|&b| b <= capacity).collect();
                if b.is_empty() { vec![capacity] } else { b }
            } else {
                buckets
            };
            let spec = specc_spec::SpecConfig { ks, capacity, buckets };
            Ok(c::compile_generation(&model, &out, &o, &c::GenerationOptions { draft, spec, tokenizer })?)
        }
    }
}

fn main() -> ExitCode {
    // The ranks of a tensor-parallel artifact on NeuronCores meet through a
    // communicator libnrt starts at NEURON_RT_ROOT_COMM_ID (mandatory for
    // collectives). One instance is the common case: give it a port of its
    // own unless the user chose one.
    if std::env::var_os("NEURON_RT_ROOT_COMM_ID").is_none() {
        let port = 62000 + std::process::id() % 3000;
        // SAFETY: first thing in main, before any thread exists.
        unsafe { std::env::set_var("NEURON_RT_ROOT_COMM_ID", format!("localhost:{port}")) };
    }
    // A panic is a bug in specc, never the user's fault: say so, and how to
    // report it, above Rust's own message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A dependency's panic that specc turns into a typed error.
        if specc_ir::contain::is_contained() {
            return;
        }
        eprintln!(
            "error: specc hit an internal error: this is a bug in specc, not a problem with your input; please report it with the command that triggered it and, if you can, the input file"
        );
        default_hook(info);
    }));
    let cli = Cli::parse();
    if let Err(e) = set_tensor_limit(cli.max_tensor_bytes) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result: Result<String, Box<dyn std::error::Error>> = match cli.command {
        Command::Inspect { model } => specc::commands::inspect::inspect(&model).map_err(Into::into),
        Command::Compile {
            model,
            draft,
            max_seq_len,
            num_speculative_tokens,
            tokenizer,
            force,
            allow_external_data_outside,
            prompt_buckets,
            tp,
            draft_placement,
            out,
            dims,
            target,
            dtype,
            weights,
            model_type,
            auto_cast,
            opt_level,
            neuronx_cc,
            jobs,
            neff_cache,
            no_neff_cache,
        } => compile(
            model,
            out,
            dims,
            target,
            dtype,
            weights,
            specc_driver::neuronx::NeuronxOptions {
                model_type,
                auto_cast,
                opt_level,
                compiler: neuronx_cc,
                jobs,
                neff_cache: match (no_neff_cache, neff_cache) {
                    (true, _) => specc_driver::neff_cache::CacheSetting::Off,
                    (false, Some(dir)) => specc_driver::neff_cache::CacheSetting::Dir(dir),
                    (false, None) => specc_driver::neff_cache::CacheSetting::Default,
                },
            },
            Generation {
                draft,
                tp,
                draft_placement,
                max_seq_len,
                ks: num_speculative_tokens,
                buckets: prompt_buckets,
                tokenizer,
            },
            force,
            allow_external_data_outside,
        ),
        Command::Run {
            artifact,
            prompt,
            prompt_ids,
            max_new_tokens,
            no_speculation,
            prompt_lookup,
            ignore_eos,
            output_format,
            temperature,
            top_k,
            top_p,
            seed,
            num_speculative_tokens,
            adaptive,
            device,
        } => {
            let device = device.device();
            let sampling = Some(specc_exec::Sampling { temperature, top_k, top_p, seed });
            let json = match output_format.as_str() {
                "text" => Ok(false),
                "json" => Ok(true),
                other => Err(format!("--output-format {other}: use text or json")),
            };
            match json.and_then(|j| device.map(|d| (j, d))) {
                Err(e) => Err(e.into()),
                Ok((json, device)) => {
                    use specc::commands::run::Prompt;
                    let o = specc::commands::run::RunOptions {
                        prompt: match prompt {
                            Some(text) => Prompt::Text(text),
                            None => Prompt::Ids(prompt_ids),
                        },
                        max_new_tokens,
                        no_speculation,
                        prompt_lookup,
                        ignore_eos,
                        json,
                        sampling,
                        k: num_speculative_tokens,
                        adaptive,
                        device,
                    };
                    specc::commands::run::run(&artifact, &o).map_err(Into::into)
                }
            }
        }
        Command::Bench {
            artifact,
            prompts,
            prompt_ids,
            limit,
            max_new_tokens,
            runs,
            num_speculative_tokens,
            adaptive,
            prompt_lookup,
            synthetic_acceptance,
            output_format,
            json,
            plot,
            device,
        } => match (output_format.as_str(), device.device()) {
            (_, Err(e)) => Err(e.into()),
            ("text" | "json", Ok(device)) => {
                let o = specc::commands::bench::BenchOptions {
                    device,
                    prompt_files: prompts,
                    prompt_ids: if prompt_ids.is_empty() { vec![] } else { vec![prompt_ids] },
                    limit,
                    max_new_tokens,
                    runs,
                    ks: num_speculative_tokens,
                    adaptive,
                    lookup: prompt_lookup,
                    synthetic: synthetic_acceptance,
                    json: output_format == "json",
                    json_file: json,
                    plot,
                };
                specc::commands::bench::bench(&artifact, &o).map_err(Into::into)
            }
            (other, _) => Err(format!("--output-format {other}: use text or json").into()),
        },
        Command::Eval { model, inputs, output, dims } => {
            specc::commands::eval::eval(&model, &inputs, &output, &dims).map_err(Into::into)
        }
        Command::Estimate {
            artifact,
            instance,
            tp,
            acceptance,
            from_bench,
            output_format,
            efficiency,
            collective_latency_us,
            calibrate,
            implied_acceptance,
        } => match output_format.as_str() {
            "text" | "json" => {
                let o = specc::commands::estimate::EstimateOptions {
                    instance,
                    tp,
                    acceptance,
                    from_bench,
                    json: output_format == "json",
                    efficiency,
                    collective_latency_us,
                    calibrate,
                    implied_acceptance,
                };
                specc::commands::estimate::estimate(&artifact, &o).map_err(Into::into)
            }
            other => Err(format!("--output-format {other}: use text or json").into()),
        },
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
