//! `specc compile`: import, specialize, (for Neuron) narrow to s32, lower to
//! HLO, check the target's rules, and write the artifact directory
//! atomically; then run neuronx-cc on each graph when it is installed
//! (all graphs at once, `--jobs` at a time, NEFFs reused from the NEFF
//! cache).
//!
//! Two modes:
//! * one model, one graph: `specc compile model.onnx -o out/ --dim ...`;
//! * generation: `specc compile target.onnx [--draft draft.onnx]
//!   --max-seq-len C [-k K] [--prompt-buckets 32,128]`: the static-cache
//!   graphs of `specc_spec` (prefill per bucket, decode, verify, and the
//!   fused speculation round with a draft), one weights file per model
//!   shared by all its graphs.

use crate::neff_cache::{self, CacheSetting, Fetch, NeffCache};
use crate::neuronx::{self, NeuronxOptions};
use crate::tensor_parallel;
pub use crate::tensor_parallel::{DraftPlacement, TP_DEGREES};
use crate::text::{TOKENIZER_FILE, Text, TextError, find_tokenizer};
use indicatif::{ProgressBar, ProgressStyle};
use specc_artifact::{
    ArtifactError, FileRef, GraphEntry, Manifest, ModelEntry, NeuronxCc, OutputPolicy, Speculation, Staging,
    TensorEntry, Weights,
};
use specc_hlo::Target;
use specc_ir::{DType, Graph, Op, WeightStore};
use specc_spec::{DecoderModel, SpecConfig, SpecError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Import(#[from] specc_onnx::ImportError),
    #[error(transparent)]
    Specialize(#[from] specc_opt::OptError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The draft cannot be split like the target; it can still run whole.
    #[error("{0}\n  hint: --draft-placement replicated runs the whole draft on every rank instead")]
    DraftShard(SpecError),
    #[error("graph `{graph}`: {source}")]
    Lower {
        graph: String,
        #[source]
        source: specc_hlo::LowerError,
    },
    #[error("graph `{graph}` breaks {} {} rule(s):\n{}", .violations.len(), .target, .violations.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n"))]
    Target { graph: String, target: &'static str, violations: Vec<specc_hlo::Violation> },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Text(#[from] crate::text::TextError),
    #[error("{0}")]
    Usage(String),
    /// Every graph neuronx-cc failed on (all graphs are tried, so one
    /// compile reports all of them), out of `graphs`.
    #[error("{}", neuronx_failures(.failures, .graphs))]
    Neuronx { failures: Vec<NeuronxFailure>, graphs: usize },
}

/// One graph neuronx-cc could not compile.
#[derive(Debug)]
pub struct NeuronxFailure {
    pub graph: String,
    /// How it failed, with the compiler's last stderr line.
    pub detail: String,
    /// Its log, kept beside the artifact directory (the staging directory
    /// is removed on failure).
    pub log: String,
}

fn neuronx_failures(failures: &[NeuronxFailure], graphs: &usize) -> String {
    match failures {
        [f] => format!("neuronx-cc failed on graph `{}`: {}; its log is {}", f.graph, f.detail, f.log),
        _ => {
            let mut s = format!("neuronx-cc failed on {} of {graphs} graphs:", failures.len());
            for f in failures {
                write!(s, "\n  - graph `{}`: {}; its log is {}", f.graph, f.detail, f.log).unwrap();
            }
            s
        }
    }
}

/// How weights go into the artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightMode {
    /// A safetensors copy inside the artifact.
    Copy,
    /// A table of where they are in the source's external data files:
    /// nothing is read or copied (large models).
    Link,
    /// Only each weight's name, dtype and shape: a shape-only artifact that
    /// `specc estimate` can cost but `specc run` refuses.
    None,
}

#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub dims: Vec<String>,
    pub target: Target,
    /// `F32`, or `BF16`: bf16 weights and matmuls (f32 accumulation).
    pub dtype: DType,
    pub weights: WeightMode,
    pub neuronx: NeuronxOptions,
    /// Rebuild even when `out` is up to date, and replace an artifact there
    /// that was compiled from other models.
    pub force: bool,
    /// Read ONNX external data that lies outside the model's directory
    /// (refused by default, as onnxruntime does).
    pub allow_external_data_outside: bool,
    /// Tensor-parallel ranks (`--tp`): the target is sharded across them.
    pub tp: usize,
    /// How the draft runs under tensor parallelism.
    pub draft_placement: DraftPlacement,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            dims: vec![],
            target: Target::Trn1,
            dtype: DType::F32,
            weights: WeightMode::Copy,
            neuronx: NeuronxOptions::default(),
            force: false,
            allow_external_data_outside: false,
            tp: 1,
            draft_placement: DraftPlacement::Sharded,
        }
    }
}

impl CompileOptions {
    fn import(&self, model: &Path) -> Result<specc_onnx::Model, CompileError> {
        let o = specc_onnx::ImportOptions { allow_external_data_outside: self.allow_external_data_outside };
        Ok(specc_onnx::import_file_with(model, &o)?)
    }

    /// The output path's policy: it may be replaced only if it holds an
    /// artifact of the same models (or with `force`).
    fn output_policy(&self, sources: &[&str]) -> OutputPolicy {
        OutputPolicy { sources: sources.iter().map(|s| s.to_string()).collect(), force: self.force }
    }
}

/// A model's path as the manifest records it: absolute, symlinks resolved
/// (as given when it cannot be resolved).
fn source_path(model: &Path) -> String {
    std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf()).display().to_string()
}

/// What to compile for generation (`--max-seq-len` and friends).
#[derive(Clone, Debug)]
pub struct GenerationOptions {
    pub draft: Option<PathBuf>,
    pub spec: SpecConfig,
    /// The target's `tokenizer.json` (default: found beside the model).
    pub tokenizer: Option<PathBuf>,
}

/// A fingerprint of a compile's inputs: the specc version, the options, and
/// each file's path, size and modification time (cheap: a linked 30 GiB
/// export is not read).
fn fingerprint(files: &[&Path], options: &str) -> String {
    let mut s = format!("specc {}\n{options}\n", crate::VERSION);
    for f in files {
        let meta = std::fs::metadata(f).ok();
        let size = meta.as_ref().map(|m| m.len());
        let mtime = meta.and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        s.push_str(&format!("{} {size:?} {mtime:?}\n", f.display()));
    }
    specc_artifact::sha256_hex(s.as_bytes())
}

/// Whether `out` is a sound artifact compiled from inputs with `print`.
fn up_to_date(out: &Path, print: &str) -> bool {
    match specc_artifact::Artifact::open(out) {
        Ok(a) => a.manifest.inputs.as_deref() == Some(print),
        Err(_) => false,
    }
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb.set_message(msg.to_string());
    pb
}

/// Prefill or decode, from the token input's length (decode feeds 1).
fn graph_kind(g: &Graph) -> &'static str {
    match g.param_by_name("input_ids").map(|(_, p)| g.ty(p).shape.as_fixed().unwrap_or_default()) {
        Some(d) if d.last() == Some(&1) => "decode",
        Some(_) => "prefill",
        None => "plain",
    }
}

/// A weight's model and name: generation graphs prefix weights with their
/// model's role (`target::x`, `draft::x`); single-model graphs do not (and
/// ONNX names may themselves contain `::`, as in `onnx::MatMul_12`).
fn split_weight<'a>(name: &'a str, default_model: &'a str, roles: &[&str]) -> (&'a str, &'a str) {
    for &role in roles {
        if let Some(rest) = name.strip_prefix(role).and_then(|r| r.strip_prefix("::")) {
            return (&name[..role.len()], rest);
        }
    }
    (default_model, name)
}

/// Manifest entries for the parameters and outputs of a lowered graph;
/// `before` is the graph before the target passes (to tell narrowed types).
fn tensor_entries(
    g: &Graph,
    before: &Graph,
    aliases: &[(usize, usize)],
    model: &str,
    roles: &[&str],
) -> (Vec<TensorEntry>, Vec<TensorEntry>) {
    let n = g.params().len();
    let changed = |was: DType, now: DType| (was != now).then(|| was.name().to_string());
    let entry = |index: usize, name: &str, kind: &str, t: &specc_ir::TensorType, neff: String| TensorEntry {
        index,
        name: name.into(),
        kind: kind.into(),
        dtype: t.dtype.name().into(),
        shape: t.shape.as_fixed().expect("static"),
        neff_name: neff,
        narrowed_from: None,
        aliases_parameter: None,
        model: None,
    };
    let mut params = Vec::new();
    for (i, &p) in g.params().iter().enumerate() {
        let mut e = entry(i, &g.node(p).name, "input", g.ty(p), format!("input{i}"));
        e.narrowed_from = changed(before.ty(before.params()[i]).dtype, g.ty(p).dtype);
        params.push(e);
    }
    for id in g.ids() {
        if let Op::Weight { index } = g.node(id).op {
            let full = &g.node(id).name;
            let (m, w) = split_weight(full, model, roles);
            let mut e = entry(n + index, w, "weight", g.ty(id), format!("input{}", n + index));
            let was = before.weights().iter().find(|d| &d.name == full).map(|d| d.ty.dtype).unwrap_or(g.ty(id).dtype);
            e.narrowed_from = changed(was, g.ty(id).dtype);
            e.model = Some(m.to_string());
            params.push(e);
        }
    }
    let outputs = g
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let mut e = entry(i, &o.name, "output", g.ty(o.node), format!("output{i}"));
            e.narrowed_from = changed(before.ty(before.outputs()[i].node).dtype, g.ty(o.node).dtype);
            e.aliases_parameter = aliases.iter().find(|(out, _)| *out == i).map(|(_, p)| *p);
            e
        })
        .collect();
    (params, outputs)
}

/// Emits the graphs of one compile into a staging directory.
struct Emitter<'a> {
    staging: Staging,
    o: &'a CompileOptions,
    out: &'a Path,
    compiler: Option<PathBuf>,
    report: String,
    pb: ProgressBar,
    /// Weight names each model's graphs read.
    used_weights: BTreeMap<String, BTreeSet<String>>,
    /// Model roles that prefix weight names (generation mode).
    roles: Vec<&'static str>,
}

impl Emitter<'_> {
    /// Target passes, lowering, checks, files and neuronx-cc for one graph.
    fn graph(
        &mut self,
        name: &str,
        model: &str,
        kind: &str,
        dims: BTreeMap<String, usize>,
        g: &Graph,
        aliases: &[(usize, usize)],
    ) -> Result<GraphEntry, CompileError> {
        let o = self.o;
        self.pb.set_message(format!("graph {name}: target passes"));
        let mut lowered = g.clone();
        if o.target.is_neuron() {
            lowered = specc_opt::narrow_to_s32(&lowered, &Default::default())?.0;
        }
        if o.dtype == DType::BF16 {
            lowered = specc_opt::to_bf16_graph(&lowered).map_err(specc_opt::OptError::Ir)?;
        }
        self.pb.set_message(format!("graph {name}: lowering to HLO"));
        let hlo_aliases: Vec<specc_hlo::Alias> =
            aliases.iter().map(|&(output, param)| specc_hlo::Alias { output, param }).collect();
        let module = specc_hlo::lower(&lowered, &hlo_aliases)
            .map_err(|source| CompileError::Lower { graph: name.into(), source })?;
        specc_hlo::check(&module, o.target).map_err(|violations| CompileError::Target {
            graph: name.into(),
            target: o.target.name(),
            violations,
        })?;
        for w in lowered.weights() {
            let (m, n) = split_weight(&w.name, model, &self.roles);
            self.used_weights.entry(m.to_string()).or_default().insert(n.to_string());
        }
        let s = &self.staging;
        let hlo_pb = s.write(&format!("graphs/{name}.hlo.pb"), &specc_hlo::to_proto_bytes(&module))?;
        let hlo_txt = s.write(&format!("graphs/{name}.hlo.txt"), specc_hlo::to_text(&module).as_bytes())?;
        let ir = s.write(&format!("graphs/{name}.ir"), &lowered.to_bytes())?;
        let (parameters, outputs) = tensor_entries(&lowered, g, aliases, model, &self.roles);
        let mut entry = GraphEntry {
            name: name.into(),
            model: model.into(),
            kind: kind.into(),
            dims,
            hlo_pb,
            hlo_txt,
            ir,
            neff: None,
            neuronx_cc: NeuronxCc { command: vec![], status: String::new(), log: None },
            parameters,
            outputs,
            instructions: module.instruction_count(),
            all_reduces: lowered.nodes().iter().filter(|n| matches!(n.op, Op::AllReduce { .. })).count(),
        };
        self.record_command(&mut entry);
        writeln!(self.report, "  graph {name:<20} {kind:<8} {:>6} HLO instructions", entry.instructions).unwrap();
        Ok(entry)
    }

    /// The neuronx-cc command of a graph, recorded whether or not it runs
    /// (so it can be rerun by hand on a Neuron machine).
    fn record_command(&self, entry: &mut GraphEntry) {
        let o = self.o;
        let (neff, log) = neff_files(&entry.name);
        let args = neuronx::arguments(&entry.hlo_pb.file, &neff, &log, o.target.name(), &entry.kind, &o.neuronx);
        entry.neuronx_cc.command = std::iter::once("neuronx-cc".to_string()).chain(args).collect();
        entry.neuronx_cc.status = if !o.target.is_neuron() {
            "not run: --target xla".into()
        } else if self.compiler.is_none() {
            "not run: neuronx-cc not found on PATH".into()
        } else {
            // Set by `neuronx_all`, which runs before the manifest is written.
            String::new()
        };
    }

    /// neuronx-cc over every graph, `--jobs` runs at a time, NEFFs taken
    /// from the cache where it has them. It runs after every graph is
    /// written, so the compiler runs overlap each other rather than wait
    /// for lowering. Every graph is tried even after one fails, so that one
    /// compile reports all failures (and caches the NEFFs that did build).
    fn neuronx_all(&mut self, graphs: &mut [GraphEntry]) -> Result<(), CompileError> {
        let Some(cc) = self.compiler.clone() else { return Ok(()) };
        let (o, target) = (self.o, self.o.target.name());
        let cache = match neff_cache::location(&o.neuronx.neff_cache) {
            Err(why) => {
                writeln!(self.report, "NEFF cache off: {why}").unwrap();
                None
            }
            // Asked once per compile: the version is part of every key.
            Ok(dir) => match neuronx::version(&cc) {
                Ok(version) => Some((NeffCache::new(dir), version)),
                Err(why) => {
                    writeln!(
                        self.report,
                        "NEFF cache off: {why} (without the compiler's version a cached NEFF could come from another release)"
                    )
                    .unwrap();
                    None
                }
            },
        };
        let jobs: Vec<NeffJob> = graphs
            .iter()
            .map(|g| {
                let (neff, log) = neff_files(&g.name);
                NeffJob {
                    name: g.name.clone(),
                    level: neuronx::level(&g.kind, &o.neuronx),
                    args: neuronx::arguments(&g.hlo_pb.file, &neff, &log, target, &g.kind, &o.neuronx),
                    key: cache.as_ref().map(|(_, version)| {
                        neff_cache::key(&g.hlo_pb.sha256, &neuronx::flags(target, &g.kind, &o.neuronx), version)
                    }),
                }
            })
            .collect();
        let workers = neuronx::jobs(&o.neuronx).min(jobs.len()).max(1);
        self.pb.set_style(
            ProgressStyle::with_template("{spinner} neuronx-cc: {pos}/{len} NEFFs done ({elapsed}) {msg}")
                .expect("valid template"),
        );
        self.pb.set_length(jobs.len() as u64);
        self.pb.set_position(0);
        let cx = NeffContext {
            cc: &cc,
            staging: &self.staging,
            out: self.out,
            cache: cache.as_ref().map(|(c, _)| c),
            pb: &self.pb,
        };
        // A bounded pool: `workers` threads take the next job until none is
        // left; each job is one external compiler process.
        let next = AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel();
        let (jobs_ref, next, cx) = (&jobs, &next, &cx);
        std::thread::scope(|s| {
            for _ in 0..workers {
                let tx = tx.clone();
                s.spawn(move || {
                    while let Some(job) = jobs_ref.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let done = neff_one(cx, job);
                        cx.pb.inc(1);
                        tx.send((job.name.clone(), done)).expect("the receiver outlives the workers");
                    }
                });
            }
        });
        drop(tx);
        let mut done: BTreeMap<String, NeffDone> = rx.try_iter().collect();
        let (mut hits, mut built, mut failures) = (0, 0, vec![]);
        for g in graphs.iter_mut() {
            let d = done.remove(&g.name).expect("every job reports");
            g.neff = d.neff;
            g.neuronx_cc.log = d.log;
            g.neuronx_cc.status = d.status;
            for note in d.notes {
                writeln!(self.report, "{note}").unwrap();
            }
            match d.failure {
                Some(f) => failures.push(f),
                None if d.hit => hits += 1,
                None => built += 1,
            }
        }
        write!(self.report, "neuronx-cc: {built} NEFF(s) built").unwrap();
        if let Some((c, _)) = &cache {
            write!(self.report, ", {hits} from the NEFF cache {}", c.dir().display()).unwrap();
        }
        writeln!(self.report, " (up to {workers} compiler run(s) at a time)").unwrap();
        if failures.is_empty() { Ok(()) } else { Err(CompileError::Neuronx { failures, graphs: graphs.len() }) }
    }

    /// Reports what the import warned about.
    fn warn(&mut self, warnings: &[String]) {
        for w in warnings {
            writeln!(self.report, "warning: {w}").unwrap();
        }
    }

    /// The weights of `model` that its graphs read, copied or linked.
    /// The weights of `model` that some emitted graph reads.
    fn used_names(&self, model: &str) -> Vec<String> {
        self.used_weights.get(model).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    fn weights(&mut self, model: &str, store: &WeightStore) -> Result<Weights, CompileError> {
        let names = self.used_names(model);
        self.pb.set_message(format!("writing the weights of {model}"));
        self.weights_file(&format!("weights/{model}.safetensors"), store, &names)
    }

    /// The weights of a generation model: for a sharded one, the replicated
    /// weights once and each rank's blocks in a file of its own.
    fn model_weights(&mut self, m: &DecoderModel) -> Result<Weights, CompileError> {
        let Some(sharding) = &m.sharding else { return self.weights(&m.role, &m.weights) };
        let names = self.used_names(&m.role);
        let (split, whole): (Vec<String>, Vec<String>) =
            names.into_iter().partition(|n| m.weight_role(n) != specc_opt::WeightRole::Replicated);
        if self.o.weights == WeightMode::Link {
            return Err(CompileError::Usage(format!(
                "--weights link cannot be combined with --tp {}: a rank's block of a split weight is not one range of the source file (use --weights copy, which writes each rank's blocks, or --weights none)",
                sharding.tp
            )));
        }
        self.pb.set_message(format!("writing the replicated weights of {}", m.role));
        let replicated = self.weights_file(&format!("weights/{}.safetensors", m.role), &m.weights, &whole)?;
        let mut ranks = Vec::with_capacity(sharding.tp);
        for r in 0..sharding.tp {
            self.pb.set_message(format!("writing the weights of {} for rank {r} of {}", m.role, sharding.tp));
            ranks.push(match self.o.weights {
                WeightMode::None => specc_artifact::shape_only_from(&m.rank_weight_types(&split)?, self.o.dtype),
                _ => {
                    let store = m.rank_weights(&split, r)?;
                    self.weights_file(&format!("weights/{}.rank{r}.safetensors", m.role), &store, &split)?
                }
            });
        }
        Ok(Weights::Sharded { replicated: Box::new(replicated), ranks })
    }

    /// `names` of `store` as the weight mode wants them (the file only for
    /// copied weights).
    fn weights_file(&mut self, file: &str, store: &WeightStore, names: &[String]) -> Result<Weights, CompileError> {
        match (self.o.weights, self.o.dtype) {
            (WeightMode::Link, DType::BF16) => Err(CompileError::Usage(
                "--weights link keeps the source's f32 weights; it cannot be combined with --dtype bf16".into(),
            )),
            (WeightMode::Link, _) => {
                Ok(specc_artifact::link_weights(store, names, self.o.allow_external_data_outside)?)
            }
            (WeightMode::None, dtype) => Ok(specc_artifact::shape_only_weights(store, names, dtype)?),
            (WeightMode::Copy, DType::BF16) => {
                let converted = specc_opt::weights_to_bf16(store, names).map_err(specc_opt::OptError::Ir)?;
                Ok(self.staging.write_weights(file, &converted, names)?)
            }
            (WeightMode::Copy, _) => Ok(self.staging.write_weights(file, store, names)?),
        }
    }

    /// Runs neuronx-cc, then commits the artifact: any failure before the
    /// commit drops the staging directory, so nothing looks complete.
    fn finish(mut self, manifest: &mut Manifest, t0: Instant) -> Result<String, CompileError> {
        self.neuronx_all(&mut manifest.graphs)?;
        self.staging.commit(manifest)?;
        self.pb.finish_and_clear();
        if self.o.target.is_neuron() && self.compiler.is_none() {
            writeln!(
                self.report,
                "neuronx-cc is not installed (not on PATH): no NEFF was built. On a Neuron machine run, in {}, each graph's command from manifest.json, e.g.\n  {}",
                self.out.display(),
                manifest.graphs[0].neuronx_cc.command.join(" ")
            )
            .unwrap();
        }
        writeln!(
            self.report,
            "wrote {} for {}: {} graph(s) in {:.2} s",
            self.out.display(),
            self.o.target.name(),
            manifest.graphs.len(),
            t0.elapsed().as_secs_f64()
        )
        .unwrap();
        Ok(self.report)
    }
}

/// A graph's NEFF and compiler log, relative to the artifact directory.
fn neff_files(graph: &str) -> (String, String) {
    (format!("graphs/{graph}.neff"), format!("graphs/{graph}.neuronx-cc.log"))
}

/// One graph's neuronx-cc run, owned so that the workers borrow nothing
/// from the emitter.
struct NeffJob {
    name: String,
    level: u8,
    args: Vec<String>,
    /// Its NEFF cache key (`None` when the cache is off).
    key: Option<String>,
}

/// What the workers share.
struct NeffContext<'a> {
    cc: &'a Path,
    staging: &'a Staging,
    out: &'a Path,
    cache: Option<&'a NeffCache>,
    pb: &'a ProgressBar,
}

/// What a job leaves for the manifest and the report.
#[derive(Default)]
struct NeffDone {
    neff: Option<FileRef>,
    log: Option<FileRef>,
    status: String,
    /// Report lines (built, from the cache, warnings).
    notes: Vec<String>,
    failure: Option<NeuronxFailure>,
    /// Taken from the cache: the compiler did not run.
    hit: bool,
}

/// One graph: from the cache, else compiled (and then stored in the cache).
fn neff_one(cx: &NeffContext, job: &NeffJob) -> NeffDone {
    let (neff, log) = neff_files(&job.name);
    let mut done = NeffDone::default();
    let cached = cx.cache.zip(job.key.as_deref());
    if let Some((cache, key)) = cached {
        match cache.fetch(key, cx.staging, &neff) {
            // Hits are counted in the report's summary and named in the
            // manifest's status: a line each would bury the rest.
            Fetch::Hit(f) => {
                done.status = format!("ok, from the NEFF cache ({})", cache.entry(key).display());
                done.neff = Some(f);
                done.hit = true;
                return done;
            }
            Fetch::Miss => {}
            Fetch::Bad(why) => done.notes.push(format!(
                "warning: the NEFF cache entry of graph `{}` is unusable, so it is compiled again: {why}",
                job.name
            )),
        }
    }
    cx.pb.set_message(format!("started -O{} {}", job.level, job.name));
    let result = neuronx::run(cx.cc, &cx.staging.path(""), &job.args);
    let failed = |detail: String, output: &[u8]| NeffDone {
        status: "failed".into(),
        failure: Some(keep_failure(cx, &job.name, detail, output)),
        ..Default::default()
    };
    if let Err(f) = result {
        return failed(f.detail, &f.output);
    }
    let Ok(f) = cx.staging.adopt(&neff) else {
        return failed(format!("it exited 0 but wrote no {neff}"), &[]);
    };
    if cx.staging.path(&log).exists() {
        match cx.staging.adopt(&log) {
            Ok(l) => done.log = Some(l),
            Err(e) => done.notes.push(format!("warning: the log of graph `{}` is not kept: {e}", job.name)),
        }
    }
    if let Some((cache, key)) = cached {
        // A cache that cannot be written costs the next compile time, not
        // this one its artifact.
        if let Err(why) = cache.store(key, &cx.staging.path(&neff), &f.sha256) {
            done.notes.push(format!("warning: {neff} is not stored in the NEFF cache: {why}"));
        }
    }
    done.notes.push(format!("neuronx-cc built {neff}"));
    done.status = "ok".into();
    done.neff = Some(f);
    done
}

/// Keeps a failed graph's log where the user can read it, beside the
/// artifact as `<out>.<graph>.neuronx-cc.log` (the staging directory is
/// removed on failure). When the compiler wrote no log, what it printed is
/// kept instead.
fn keep_failure(cx: &NeffContext, graph: &str, detail: String, output: &[u8]) -> NeuronxFailure {
    let staged = cx.staging.path(&neff_files(graph).1);
    let name = cx.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "artifact".into());
    let kept = cx.out.with_file_name(format!("{name}.{graph}.neuronx-cc.log"));
    let saved = if staged.exists() {
        std::fs::copy(&staged, &kept).map(|_| ())
    } else if output.is_empty() {
        Err(std::io::Error::other("it wrote no log and printed nothing"))
    } else {
        std::fs::write(&kept, output)
    };
    let log = match saved {
        Ok(()) => kept.display().to_string(),
        Err(e) => format!("not kept ({}: {e})", kept.display()),
    };
    NeuronxFailure { graph: graph.into(), detail, log }
}

fn emitter<'a>(staging: Staging, out: &'a Path, o: &'a CompileOptions, pb: ProgressBar) -> Emitter<'a> {
    let compiler = if o.target.is_neuron() { neuronx::find_compiler(o.neuronx.compiler.as_deref()) } else { None };
    let mut report = String::new();
    for p in staging.removed_leftovers() {
        writeln!(report, "removed {}, left by a compile that crashed", p.display()).unwrap();
    }
    Emitter { staging, o, out, compiler, report, pb, used_weights: BTreeMap::new(), roles: vec![] }
}

/// One model, specialized to `--dim`s, as one graph named `model`.
pub fn compile(model: &Path, out: &Path, o: &CompileOptions) -> Result<String, CompileError> {
    let t0 = Instant::now();
    if o.tp != 1 {
        // The sharding pass plans on the generation step graphs (it needs the
        // cache layout to know which axis holds the heads).
        return Err(CompileError::Usage(format!(
            "--tp {} needs generation graphs: add --max-seq-len (the KV-cache capacity)",
            o.tp
        )));
    }
    let bindings = specc_opt::Bindings::parse_flags(&o.dims).map_err(CompileError::Usage)?;
    let source = source_path(model);
    // Before any work: an output path specc may not write is refused now.
    let staging = Staging::new(out, o.output_policy(&[&source]))?;
    let pb = spinner(&format!("importing {}", model.display()));
    let m = o.import(model)?;
    let t_import = t0.elapsed().as_secs_f64();
    pb.set_message("specializing to static shapes");
    let (g, rep) = specc_opt::specialize(&m.graph, &bindings)?;
    let t_spec = t0.elapsed().as_secs_f64() - t_import;
    let mut e = emitter(staging, out, o, pb);
    e.warn(&m.info.warnings);
    writeln!(
        e.report,
        "specialized {}: {} -> {} IR nodes ({} folded)",
        model.display(),
        rep.nodes_before,
        rep.nodes_after,
        rep.folded
    )
    .unwrap();
    let entry = e.graph("model", "model", graph_kind(&g), bindings.0.clone(), &g, &[])?;
    let weights = e.weights("model", &m.weights)?;
    let mut manifest = Manifest::new(crate::VERSION, o.target.name(), o.dtype.name());
    manifest.models.push(ModelEntry { name: "model".into(), source, weights });
    manifest.graphs.push(entry);
    let total = t0.elapsed().as_secs_f64();
    writeln!(
        e.report,
        "time: import {t_import:.3} s, specialize {t_spec:.3} s, emit and write {:.3} s",
        total - t_import - t_spec
    )
    .unwrap();
    e.finish(&mut manifest, t0)
}

/// End-of-sequence ids from the Hugging Face `config.json` beside a model.
fn eos_ids(model: &Path) -> Vec<i64> {
    let Some(text) = model.parent().and_then(|d| std::fs::read_to_string(d.join("config.json")).ok()) else {
        return vec![];
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return vec![] };
    match &v["eos_token_id"] {
        serde_json::Value::Number(n) => n.as_i64().into_iter().collect(),
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_i64()).collect(),
        _ => vec![],
    }
}

/// The special token ids in a model's `config.json`, for the draft/target
/// vocabulary check.
fn special_tokens(model: &Path) -> BTreeMap<String, serde_json::Value> {
    let Some(text) = model.parent().and_then(|d| std::fs::read_to_string(d.join("config.json")).ok()) else {
        return BTreeMap::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return BTreeMap::new() };
    ["bos_token_id", "eos_token_id", "pad_token_id"]
        .into_iter()
        .filter(|k| !v[*k].is_null())
        .map(|k| (k.to_string(), v[k].clone()))
        .collect()
}

/// A target (and draft) as the graphs of a generation artifact.
pub fn compile_generation(
    target: &Path,
    out: &Path,
    o: &CompileOptions,
    g: &GenerationOptions,
) -> Result<String, CompileError> {
    g.spec.check()?;
    if !o.dims.is_empty() {
        return Err(CompileError::Usage(
            "--dim does not apply with --max-seq-len: generation graphs bind batch 1, the cache capacity and the buckets".into(),
        ));
    }
    let tokenizer_path = find_tokenizer(g.tokenizer.as_deref(), target);
    let mut inputs: Vec<&Path> = vec![target];
    inputs.extend(g.draft.as_deref());
    inputs.extend(tokenizer_path.as_deref());
    // The compiler is an input too: an artifact built where neuronx-cc was
    // absent (no NEFFs) must not count as up to date once it is installed
    // or upgraded (its path, size and mtime; running --version costs seconds).
    let compiler = if o.target.is_neuron() { neuronx::find_compiler(o.neuronx.compiler.as_deref()) } else { None };
    inputs.extend(compiler.as_deref());
    // `--jobs` and the NEFF cache change how fast the artifact is built,
    // not what is in it: changing them does not make it out of date.
    let mut same = o.clone();
    same.neuronx.jobs = None;
    same.neuronx.neff_cache = CacheSetting::Default;
    same.force = false;
    let print = fingerprint(&inputs, &format!("{same:?} {:?} {:?}", g.spec, g.draft));
    if !o.force && up_to_date(out, &print) {
        return Ok(format!(
            "{} is up to date (compiled from the same models, tokenizer and options; --force rebuilds it)\n",
            out.display()
        ));
    }
    let (target_source, draft_source) = (source_path(target), g.draft.as_deref().map(source_path));
    let mut models = vec![target_source.as_str()];
    models.extend(draft_source.as_deref());
    // Before any work: an output path specc may not write is refused now.
    let staging = Staging::new(out, o.output_policy(&models))?;
    let tm = o.import(target)?;
    let mut warnings = tm.info.warnings.clone();
    let target_model = DecoderModel::new("target", tm.graph, tm.weights)?;
    let draft_model = match &g.draft {
        None => None,
        Some(d) => {
            let dm = o.import(d)?;
            warnings.extend(dm.info.warnings.iter().cloned());
            let (ts, ds) = (special_tokens(target), special_tokens(d));
            for (k, v) in &ts {
                if let Some(w) = ds.get(k).filter(|w| *w != v) {
                    return Err(SpecError::Vocabulary(format!(
                        "{k} is {v} in the target's config.json but {w} in the draft's"
                    ))
                    .into());
                }
            }
            Some((DecoderModel::new("draft", dm.graph, dm.weights)?, draft_source.clone().unwrap_or_default()))
        }
    };
    let tokenizer = match tokenizer_path {
        Some(p) => Some((
            std::fs::read(&p)
                .map_err(|e| TextError::Load { origin: p.display().to_string(), detail: e.to_string() })?,
            p,
        )),
        None => None,
    };
    if let (Some((bytes, path)), Some(d)) = (&tokenizer, &g.draft)
        && let Some(dp) = find_tokenizer(None, d)
    {
        Text::from_bytes(bytes, &path.display().to_string())?.check_same_as(&Text::from_file(&dp)?)?;
    }
    let sources = GenerationSources {
        target: target_source.clone(),
        eos_token_ids: eos_ids(target),
        tokenizer: tokenizer.map(|(bytes, p)| (bytes, p.display().to_string())),
        inputs: Some(print),
    };
    let draft = draft_model.as_ref().map(|(m, s)| (m, s.as_str()));
    emit_generation(staging, &warnings, &target_model, draft, &sources, out, o, &g.spec)
}

/// Where the models came from, for the manifest.
pub struct GenerationSources {
    pub target: String,
    pub eos_token_ids: Vec<i64>,
    /// The target's `tokenizer.json` bytes and where they came from.
    pub tokenizer: Option<(Vec<u8>, String)>,
    /// The inputs' fingerprint, for `up_to_date`.
    pub inputs: Option<String>,
}

/// Generation graphs from models already loaded (tests build drafts in
/// memory this way).
pub fn compile_models(
    target: &DecoderModel,
    draft: Option<(&DecoderModel, &str)>,
    sources: &GenerationSources,
    out: &Path,
    o: &CompileOptions,
    spec: &SpecConfig,
) -> Result<String, CompileError> {
    let mut models = vec![sources.target.as_str()];
    models.extend(draft.map(|(_, s)| s));
    let staging = Staging::new(out, o.output_policy(&models))?;
    emit_generation(staging, &[], target, draft, sources, out, o, spec)
}

/// The generation graphs of loaded models, written through `staging`.
#[allow(clippy::too_many_arguments)]
fn emit_generation(
    staging: Staging,
    warnings: &[String],
    target: &DecoderModel,
    draft: Option<(&DecoderModel, &str)>,
    sources: &GenerationSources,
    out: &Path,
    o: &CompileOptions,
    spec: &SpecConfig,
) -> Result<String, CompileError> {
    let t0 = Instant::now();
    let mut e = emitter(staging, out, o, spinner("building the speculation graphs"));
    e.warn(warnings);
    e.roles = vec!["target", "draft"];
    // Tensor parallelism: the target split across the ranks, the draft
    // split alike or whole on every rank.
    let sharded = tensor_parallel::shard_models(target, draft.map(|(d, _)| d), o, &mut e.report, &e.pb)?;
    let (target, draft) = match &sharded {
        Some(s) => (&s.target, draft.zip(s.draft.as_ref()).map(|((_, source), d)| (d, source))),
        None => (target, draft),
    };
    if let Some((bytes, origin)) = &sources.tokenizer {
        let text = Text::from_bytes(bytes, origin)?;
        text.check_model_vocab(target.vocab)?;
        writeln!(e.report, "tokenizer {origin}: {} tokens", text.vocab_size()).unwrap();
    }
    let built = specc_spec::build_all(target, draft.map(|(m, _)| m), spec)?;
    writeln!(
        e.report,
        "{} graphs for K in {:?}, cache capacity {}, prompt buckets {:?}{}:",
        built.len(),
        spec.ks,
        spec.capacity,
        spec.buckets,
        if draft.is_some() { ", with a draft" } else { ", no draft (prompt lookup)" }
    )
    .unwrap();
    let mut manifest = Manifest::new(crate::VERSION, o.target.name(), o.dtype.name());
    for b in &built {
        let model = if b.name.starts_with("draft") { "draft" } else { "target" };
        let entry = e.graph(&b.name, model, b.kind, BTreeMap::new(), &b.graph, &b.aliases)?;
        manifest.graphs.push(entry);
    }
    if o.tp > 1 {
        manifest.tp = o.tp;
        manifest.replica_groups = vec![(0..o.tp).collect()];
    }
    let weights = e.model_weights(target)?;
    manifest.models.push(ModelEntry { name: "target".into(), source: sources.target.clone(), weights });
    if let Some((d, source)) = draft {
        let weights = e.model_weights(d)?;
        manifest.models.push(ModelEntry { name: "draft".into(), source: source.into(), weights });
    }
    if let Some((bytes, _)) = &sources.tokenizer {
        manifest.tokenizer = Some(e.staging.write(TOKENIZER_FILE, bytes)?);
    }
    manifest.inputs = sources.inputs.clone();
    let mut buckets = spec.buckets.clone();
    buckets.sort_unstable();
    let mut ks = spec.ks.clone();
    ks.sort_unstable();
    ks.dedup();
    manifest.speculation = Some(Speculation {
        k: spec.max_k(),
        ks,
        capacity: spec.capacity,
        buckets,
        vocab: target.vocab,
        draft: draft.is_some(),
        eos_token_ids: sources.eos_token_ids.clone(),
    });
    e.finish(&mut manifest, t0)
}

pub fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| format!("unknown target `{s}` (trn1, trn2, inf2 or xla)"))
}

/// Parses `-k`: `4`, `2,4,6` or `1-8` (sorted, without repeats).
pub fn parse_ks(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("`{s}`: give K as a number (4), a list (2,4) or a range (1-8), each at least 1");
    let mut ks = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
            None => (part.parse::<usize>(), part.parse::<usize>()),
        };
        let (lo, hi) = (lo.map_err(|_| bad())?, hi.map_err(|_| bad())?);
        if lo == 0 || hi < lo {
            return Err(bad());
        }
        ks.extend(lo..=hi);
    }
    ks.sort_unstable();
    ks.dedup();
    Ok(ks)
}

#[cfg(test)]
mod tests {
    use super::parse_ks;

    #[test]
    fn k_lists_and_ranges_parse_and_nonsense_is_refused() {
        assert_eq!(parse_ks("4"), Ok(vec![4]));
        assert_eq!(parse_ks("5,2,2"), Ok(vec![2, 5]));
        assert_eq!(parse_ks("1-4,7"), Ok(vec![1, 2, 3, 4, 7]));
        for bad in ["0", "3-1", "x", "", "2,", "1-"] {
            assert!(parse_ks(bad).unwrap_err().contains("give K as a number"), "{bad}");
        }
    }
}
