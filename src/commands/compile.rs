//! `specc compile model.onnx -o out/ [--dim name=value ...] [--target ...]`:
//! import, specialize, (for Neuron) narrow to s32, lower to HLO, check the
//! target's rules, and write the artifact directory atomically; then run
//! neuronx-cc on each graph when it is installed.

use crate::neuronx::{self, NeuronxOptions};
use indicatif::{ProgressBar, ProgressStyle};
use specc_artifact::{ArtifactError, GraphEntry, Manifest, ModelEntry, NeuronxCc, Staging, TensorEntry};
use specc_hlo::Target;
use specc_ir::{DType, Graph, Op};
use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Import(#[from] specc_onnx::ImportError),
    #[error(transparent)]
    Specialize(#[from] specc_opt::OptError),
    #[error(transparent)]
    Lower(#[from] specc_hlo::LowerError),
    #[error("the module breaks {} {} rule(s):\n{}", .violations.len(), .target, .violations.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n"))]
    Target { target: &'static str, violations: Vec<specc_hlo::Violation> },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{0}")]
    Usage(String),
    #[error("neuronx-cc failed on graph `{graph}`: {detail}; its log is {log}")]
    Neuronx { graph: String, detail: String, log: String },
}

/// How weights go into the artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightMode {
    /// A safetensors copy inside the artifact.
    Copy,
    /// A table of where they are in the source's external data files:
    /// nothing is read or copied (large models).
    Link,
}

#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub dims: Vec<String>,
    pub target: Target,
    /// `F32`, or `BF16`: bf16 weights and matmuls (f32 accumulation).
    pub dtype: DType,
    pub weights: WeightMode,
    pub neuronx: NeuronxOptions,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            dims: vec![],
            target: Target::Trn1,
            dtype: DType::F32,
            weights: WeightMode::Copy,
            neuronx: NeuronxOptions::default(),
        }
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

/// Manifest entries for the parameters and outputs of a lowered graph.
fn tensor_entries(g: &Graph, before: &Graph) -> (Vec<TensorEntry>, Vec<TensorEntry>) {
    let n = g.params().len();
    let mut params = Vec::new();
    for (i, &p) in g.params().iter().enumerate() {
        let t = g.ty(p);
        let was = before.ty(before.params()[i]).dtype;
        params.push(TensorEntry {
            index: i,
            name: g.node(p).name.clone(),
            kind: "input".into(),
            dtype: t.dtype.name().into(),
            shape: t.shape.as_fixed().expect("static"),
            neff_name: format!("input{i}"),
            narrowed_from: (was != t.dtype).then(|| was.name().to_string()),
            aliases_parameter: None,
        });
    }
    for id in g.ids() {
        if let Op::Weight { index } = g.node(id).op {
            let t = g.ty(id);
            let was =
                before.weights().iter().find(|w| w.name == g.node(id).name).map(|w| w.ty.dtype).unwrap_or(t.dtype);
            params.push(TensorEntry {
                index: n + index,
                name: g.node(id).name.clone(),
                kind: "weight".into(),
                dtype: t.dtype.name().into(),
                shape: t.shape.as_fixed().expect("static"),
                neff_name: format!("input{}", n + index),
                narrowed_from: (was != t.dtype).then(|| was.name().to_string()),
                aliases_parameter: None,
            });
        }
    }
    let outputs = g
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let t = g.ty(o.node);
            let was = before.ty(before.outputs()[i].node).dtype;
            TensorEntry {
                index: i,
                name: o.name.clone(),
                kind: "output".into(),
                dtype: t.dtype.name().into(),
                shape: t.shape.as_fixed().expect("static"),
                neff_name: format!("output{i}"),
                narrowed_from: (was != t.dtype).then(|| was.name().to_string()),
                aliases_parameter: None,
            }
        })
        .collect();
    (params, outputs)
}

pub fn compile(model: &Path, out: &Path, o: &CompileOptions) -> Result<String, CompileError> {
    let mut report = String::new();
    let t0 = Instant::now();
    // (stage, seconds) for the report: where compile time goes.
    let mut stages: Vec<(&str, f64)> = Vec::new();
    let mut lap = Instant::now();
    let mut stage = |name: &'static str, stages: &mut Vec<(&str, f64)>| {
        stages.push((name, lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    let pb = spinner(&format!("importing {}", model.display()));
    let m = specc_onnx::import_file(model)?;
    let bindings = super::parse_dims(&o.dims).map_err(CompileError::Usage)?;
    stage("import", &mut stages);
    pb.set_message("specializing to static shapes");
    let (g, rep) = specc_opt::specialize(&m.graph, &bindings)?;
    writeln!(
        report,
        "specialized {}: {} -> {} IR nodes ({} folded)",
        model.display(),
        rep.nodes_before,
        rep.nodes_after,
        rep.folded
    )
    .unwrap();
    stage("specialize", &mut stages);
    let g = if o.target.is_neuron() {
        pb.set_message("narrowing s64 to s32");
        let (n, nr) = specc_opt::narrow_to_s32(&g, &Default::default())?;
        if !nr.inputs.is_empty() || !nr.outputs.is_empty() {
            writeln!(
                report,
                "narrowed s64 -> s32 for {}: inputs {:?}, outputs {:?}",
                o.target.name(),
                nr.inputs,
                nr.outputs
            )
            .unwrap();
        }
        n
    } else {
        g
    };
    let (g, store) = if o.dtype == DType::BF16 {
        pb.set_message("converting weights and matmuls to bf16");
        specc_opt::to_bf16(&g, &m.weights).map_err(specc_opt::OptError::Ir)?
    } else {
        (g, m.weights.clone())
    };
    stage("narrow/bf16", &mut stages);
    pb.set_message("lowering to HLO");
    let module = specc_hlo::lower(&g, &[])?;
    specc_hlo::check(&module, o.target)
        .map_err(|violations| CompileError::Target { target: o.target.name(), violations })?;
    let name = "model";
    let kind = graph_kind(&g);

    stage("lower+check", &mut stages);
    pb.set_message(format!("writing {}", out.display()));
    let staging = Staging::new(out)?;
    let hlo_pb = staging.write(&format!("graphs/{name}.hlo.pb"), &specc_hlo::to_proto_bytes(&module))?;
    let hlo_txt = staging.write(&format!("graphs/{name}.hlo.txt"), specc_hlo::to_text(&module).as_bytes())?;
    let ir = staging.write(&format!("graphs/{name}.ir"), &g.to_bytes())?;
    let weight_names: Vec<String> = g.weights().iter().map(|w| w.name.clone()).collect();
    let weights = match o.weights {
        WeightMode::Copy => staging.write_weights(&format!("weights/{name}.safetensors"), &store, &weight_names)?,
        WeightMode::Link if o.dtype == DType::BF16 => {
            return Err(CompileError::Usage(
                "--weights link keeps the source's f32 weights; it cannot be combined with --dtype bf16".into(),
            ));
        }
        WeightMode::Link => specc_artifact::link_weights(&store, &weight_names)?,
    };
    let (parameters, outputs) = tensor_entries(&g, &m.graph);
    let mut entry = GraphEntry {
        name: name.into(),
        model: name.into(),
        kind: kind.into(),
        dims: bindings.0.clone(),
        hlo_pb,
        hlo_txt,
        ir,
        neff: None,
        neuronx_cc: NeuronxCc { command: vec![], status: String::new(), log: None },
        parameters,
        outputs,
        instructions: module.instruction_count(),
    };
    let (neff, log) = (format!("graphs/{name}.neff"), format!("graphs/{name}.neuronx-cc.log"));
    let args = neuronx::arguments(&entry.hlo_pb.file, &neff, &log, o.target.name(), kind, &o.neuronx);
    let compiler = if o.target.is_neuron() { neuronx::find_compiler(o.neuronx.compiler.as_deref()) } else { None };
    entry.neuronx_cc.command = std::iter::once("neuronx-cc".to_string()).chain(args.iter().cloned()).collect();
    match (&compiler, o.target.is_neuron()) {
        (_, false) => entry.neuronx_cc.status = "not run: --target xla".into(),
        (None, true) => {
            entry.neuronx_cc.status = "not run: neuronx-cc not found on PATH".into();
            writeln!(
                report,
                "neuronx-cc is not installed (not on PATH): no NEFF was built. On a Neuron machine run, in {}:\n  {}",
                out.display(),
                entry.neuronx_cc.command.join(" ")
            )
            .unwrap();
        }
        (Some(cc), true) => {
            pb.set_message(format!(
                "neuronx-cc -O{} on {name} ({kind})",
                o.neuronx.opt_level.unwrap_or(neuronx::opt_level(kind))
            ));
            let result = neuronx::run(cc, &staging.path(""), &args);
            entry.neuronx_cc.log = staging.path(&log).exists().then(|| staging.adopt(&log)).transpose()?;
            match result {
                Ok(()) => {
                    entry.neuronx_cc.status = "ok".into();
                    entry.neff = Some(staging.adopt(&neff).map_err(|_| CompileError::Neuronx {
                        graph: name.into(),
                        detail: format!("it exited 0 but wrote no {neff}"),
                        log: out.join(&log).display().to_string(),
                    })?);
                    writeln!(report, "neuronx-cc built {neff}").unwrap();
                }
                Err(detail) => {
                    // Keep the log where the user can read it: the staging
                    // directory is removed on failure.
                    let kept = out.with_extension("neuronx-cc.log");
                    let _ = std::fs::copy(staging.path(&log), &kept);
                    return Err(CompileError::Neuronx { graph: name.into(), detail, log: kept.display().to_string() });
                }
            }
        }
    }
    stage("write+neuronx-cc", &mut stages);
    let mut manifest = Manifest::new(env!("SPECC_VERSION"), o.target.name(), o.dtype.name());
    manifest.models.push(ModelEntry { name: name.into(), source: model.display().to_string(), weights });
    manifest.graphs.push(entry);
    staging.commit(&manifest)?;
    pb.finish_and_clear();
    let shown: Vec<String> = stages.iter().map(|(n, t)| format!("{n} {t:.3} s")).collect();
    writeln!(report, "time: {}", shown.join(", ")).unwrap();
    writeln!(
        report,
        "wrote {} for {}: graph `{name}` ({kind}, {} HLO instructions) in {:.2} s",
        out.display(),
        o.target.name(),
        module.instruction_count(),
        t0.elapsed().as_secs_f64()
    )
    .unwrap();
    Ok(report)
}

pub fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| format!("unknown target `{s}` (trn1, trn2, inf2 or xla)"))
}
