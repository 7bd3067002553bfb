//! The Neuron backend: the artifact's NEFFs on a NeuronCore through libnrt.
//!
//! What stays on the device and what moves (the point of the design):
//! - each model's weights are uploaded once, as one device tensor each, and
//!   the same tensor is bound to every graph of that model;
//! - each state tensor (a KV cache) is allocated once, zeroed, and bound in
//!   BOTH the input and the output set of every graph that aliases it, so
//!   the graph updates it in place and it never travels to the host;
//! - per call, only the small inputs (tokens, position, seed) are written
//!   and the small outputs (tokens, accepted count) read.
//!
//! Tensors are bound by the NEFF's names (`input{N}` for parameter N,
//! `output{i}` for tuple element i, as the manifest records them), and at
//! load the NEFF's own tensor list is checked against the manifest, so a
//! NEFF from another compile is refused instead of silently misbound.

pub mod nrt;

use crate::backend::{Backend, BackendError};
use nrt::{Model, NrtError, Runtime, Tensor, TensorInfo, TensorSet};
use specc_artifact::{Artifact, GraphEntry, RankWeights, TensorEntry};
use specc_ir::{DType, Literal};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// Errors of the Neuron backend.
#[derive(Debug, thiserror::Error)]
pub enum NeuronError {
    #[error(transparent)]
    Runtime(#[from] NrtError),
    #[error(
        "the artifact was compiled for target `{target}`, which has no NEFFs: recompile it with --target trn1 (or trn2, inf2) \
         on a machine with neuronx-cc to run it on a NeuronCore"
    )]
    NotNeuronTarget { target: String },
    #[error(
        "the artifact has no NEFF for {} of its graphs ({}): it was compiled where neuronx-cc is not installed. \
         Compile it on a machine with the Neuron SDK (pip package neuronx-cc; `specc compile` runs it when it is on PATH), \
         or run each graph's command recorded in manifest.json there",
        .graphs.len(),
        if .graphs.len() > 4 { format!("{}, and {} more", .graphs[..4].join(", "), .graphs.len() - 4) } else { .graphs.join(", ") }
    )]
    NoNeff { graphs: Vec<String> },
    #[error("graph `{graph}`: the NEFF's tensors do not match the manifest (a NEFF from another compile?):\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    TensorMismatch { graph: String, problems: Vec<String> },
    #[error("graph `{graph}`: {message}")]
    Graph { graph: String, message: String },
    #[error(
        "the artifact was compiled with --tp {tp}: its ranks' collectives need NEURON_RT_ROOT_COMM_ID, the address \
         their communicator starts at (the specc command sets localhost:<port> itself when it is unset; a program \
         using the library exports it before loading, for example NEURON_RT_ROOT_COMM_ID=localhost:62182)"
    )]
    NoRootComm { tp: usize },
}

impl From<NeuronError> for BackendError {
    fn from(e: NeuronError) -> BackendError {
        BackendError::Neuron(Box::new(e))
    }
}

impl From<NrtError> for BackendError {
    fn from(e: NrtError) -> BackendError {
        NeuronError::Runtime(e).into()
    }
}

/// Where and how to run.
#[derive(Clone, Debug, Default)]
pub struct NeuronOptions {
    /// libnrt's path (else `$SPECC_LIBNRT`, the loader's path, /opt/aws/neuron/lib).
    pub library: Option<PathBuf>,
    /// The NeuronCore to load every graph on.
    pub core: i32,
}

/// A tensor written or read on every call.
struct CallTensor {
    /// The manifest's name (`input_ids`, `next_token`, ...).
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    tensor: Rc<Tensor>,
}

/// One loaded graph, its sets bound once at load.
struct Loaded {
    // Field order is drop order: sets are destroyed before the graph's own
    // tensors are freed, and the model is unloaded last.
    inputs: TensorSet,
    outputs: TensorSet,
    per_call: Vec<CallTensor>,
    returned: Vec<CallTensor>,
    model: Model,
}

/// One tensor-parallel rank (the only one at tp 1): its NeuronCore, its
/// weight blocks and caches, its copy of every graph.
struct Rank {
    core: i32,
    // Drop order again: graphs (sets, then models) before the tensors
    // their sets bind.
    graphs: HashMap<String, Loaded>,
    weights: HashMap<(String, String), Rc<Tensor>>,
    state: HashMap<String, Rc<Tensor>>,
    /// The rank's index as an s32 tensor, bound to the programs' `tp_rank`.
    index: Option<Rc<Tensor>>,
}

/// One rank's copy of a graph, handed to its own thread for the call.
struct RankRun<'a> {
    model: &'a Model,
    inputs: &'a TensorSet,
    outputs: &'a mut TensorSet,
}

// SAFETY: libnrt executes models loaded on different NeuronCores from
// different threads at once (that is how AWS's stack drives the ranks of a
// tensor-parallel graph, one thread per rank); each RankRun is the only user
// of its model and sets during the call, and touches no Rc.
unsafe impl Send for RankRun<'_> {}

impl RankRun<'_> {
    /// Takes the whole RankRun (a closure naming its fields would capture
    /// them one by one, without the Send above).
    fn go(self) -> Result<(), NrtError> {
        self.model.execute(self.inputs, self.outputs)
    }
}

pub struct Neuron {
    options: NeuronOptions,
    // Drop order: every rank's handles before the runtime (nrt_close):
    // every handle holds the runtime's Arc, so it closes when the last one
    // is gone.
    ranks: Vec<Rank>,
    runtime: Option<Arc<Runtime>>,
}

impl Neuron {
    pub fn new(options: NeuronOptions) -> Neuron {
        Neuron { options, ranks: Vec::new(), runtime: None }
    }

    /// The libnrt `--backend auto` would open, if the loader finds one.
    pub fn find_library(options: &NeuronOptions) -> Option<PathBuf> {
        nrt::find(options.library.as_deref())
    }

    /// The libnrt this backend opened (after `load`).
    pub fn library(&self) -> Option<&str> {
        self.runtime.as_deref().map(Runtime::path)
    }
}

fn dtype(graph: &str, t: &TensorEntry) -> Result<DType, NeuronError> {
    DType::from_name(&t.dtype).ok_or_else(|| NeuronError::Graph {
        graph: graph.into(),
        message: format!("tensor `{}` has unknown dtype `{}`", t.name, t.dtype),
    })
}

fn bytes_of(graph: &str, t: &TensorEntry) -> Result<usize, NeuronError> {
    Ok(dtype(graph, t)?.size_bytes() * t.shape.iter().product::<usize>())
}

/// The trailing number of `input12` / `output3`, for numeric order: the
/// runtime lists tensors lexically (input0, input1, input10, input2).
fn numeric_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.bytes().rev().take_while(u8::is_ascii_digit).count();
    (name[..digits].to_string(), name[digits..].parse().unwrap_or(u64::MAX))
}

/// Differences between the NEFF's tensors and what the manifest expects.
fn compare(graph: &str, neff: &[TensorInfo], entry: &GraphEntry) -> Result<Vec<String>, NeuronError> {
    let mut want: BTreeMap<(String, u64), (String, bool, usize)> = BTreeMap::new();
    for p in &entry.parameters {
        want.insert(numeric_key(&p.neff_name), (p.neff_name.clone(), true, bytes_of(graph, p)?));
    }
    for o in &entry.outputs {
        want.insert(numeric_key(&o.neff_name), (o.neff_name.clone(), false, bytes_of(graph, o)?));
    }
    let mut have: BTreeMap<(String, u64), &TensorInfo> = BTreeMap::new();
    for t in neff {
        have.insert(numeric_key(&t.name), t);
    }
    let side = |input: bool| if input { "input" } else { "output" };
    let mut problems = Vec::new();
    for (key, (name, input, size)) in &want {
        match have.get(key) {
            None => {
                problems.push(format!("the manifest's {} `{name}` ({size} bytes) is not in the NEFF", side(*input)))
            }
            Some(t) if t.input != *input => problems.push(format!(
                "`{name}` is an {} in the NEFF, an {} in the manifest",
                side(t.input),
                side(*input)
            )),
            Some(t) if t.size != *size => {
                problems.push(format!("`{name}` has {} bytes in the NEFF, {size} in the manifest", t.size))
            }
            Some(_) => {}
        }
    }
    for (key, t) in &have {
        if !want.contains_key(key) {
            problems.push(format!(
                "the NEFF's {} `{}` ({} bytes) is not in the manifest",
                side(t.input),
                t.name,
                t.size
            ));
        }
    }
    Ok(problems)
}

impl Neuron {
    fn load_all(&mut self, artifact: &Artifact) -> Result<(), BackendError> {
        // The Neuron targets of specc_hlo::Target (named here: the executor
        // does not depend on the HLO crate).
        let target = &artifact.manifest.target;
        if !["trn1", "trn2", "inf2"].contains(&target.as_str()) {
            return Err(NeuronError::NotNeuronTarget { target: target.clone() }.into());
        }
        let missing: Vec<String> =
            artifact.manifest.graphs.iter().filter(|g| g.neff.is_none()).map(|g| g.name.clone()).collect();
        if !missing.is_empty() {
            return Err(NeuronError::NoNeff { graphs: missing }.into());
        }
        let tp = artifact.manifest.tp.max(1);
        if tp > 1 && std::env::var_os("NEURON_RT_ROOT_COMM_ID").is_none() {
            return Err(NeuronError::NoRootComm { tp }.into());
        }
        // Each model's weight files read (and checksummed) once, for
        // every rank.
        let mut stores = BTreeMap::new();
        for m in &artifact.manifest.models {
            stores.insert(m.name.clone(), artifact.rank_stores(&m.name)?);
        }
        let rt = Runtime::open(self.options.library.as_deref())?;
        self.runtime = Some(rt.clone());
        for r in 0..tp {
            let rank = self.load_rank(&rt, artifact, &stores, r, tp)?;
            self.ranks.push(rank);
        }
        Ok(())
    }

    /// Rank `r` of `tp` on NeuronCore `core + r`: its weights (its blocks
    /// of the split ones), its zeroed caches, every graph loaded for it.
    fn load_rank(
        &self,
        rt: &Arc<Runtime>,
        artifact: &Artifact,
        stores: &BTreeMap<String, RankWeights>,
        r: usize,
        tp: usize,
    ) -> Result<Rank, BackendError> {
        let nc = self.options.core + r as i32;
        let mut rank =
            Rank { core: nc, graphs: HashMap::new(), weights: HashMap::new(), state: HashMap::new(), index: None };

        // Weights: each weight some graph reads uploaded once.
        let mut wanted: BTreeMap<String, BTreeMap<String, (String, usize)>> = BTreeMap::new();
        for g in &artifact.manifest.graphs {
            for p in g.parameters.iter().filter(|p| p.kind == "weight") {
                let model = p.model.clone().unwrap_or_else(|| g.model.clone());
                let size = bytes_of(&g.name, p)?;
                wanted.entry(model).or_default().entry(p.name.clone()).or_insert((g.name.clone(), size));
            }
        }
        for (model, names) in wanted {
            for (name, (graph, size)) in names {
                let w = stores.get(&model).and_then(|s| s.get(r, &name)).ok_or_else(|| NeuronError::Graph {
                    graph: graph.clone(),
                    message: format!("no weight `{name}` in model `{model}`"),
                })?;
                let bytes = w
                    .bytes
                    .read()
                    .map_err(|source| specc_artifact::ArtifactError::Io { path: name.clone(), source })?;
                if bytes.len() != size {
                    return Err(NeuronError::Graph {
                        graph,
                        message: format!("weight `{name}` has {} bytes, the graph takes {size}", bytes.len()),
                    }
                    .into());
                }
                let t = Tensor::allocate(rt, nc, size, &format!("{model}::{name}"))?;
                t.write(0, &bytes)?;
                rank.weights.insert((model.clone(), name), Rc::new(t));
            }
        }

        // State: a parameter any graph aliases to an output, allocated once
        // and zeroed (device memory is not; a NaN left in a masked cache slot
        // would still poison attention through 0 * NaN).
        let mut state_params: HashMap<String, (String, usize)> = HashMap::new();
        for g in &artifact.manifest.graphs {
            for o in &g.outputs {
                if let Some(i) = o.aliases_parameter {
                    let p = g.parameters.get(i).ok_or_else(|| NeuronError::Graph {
                        graph: g.name.clone(),
                        message: format!("output `{}` aliases parameter {i}, which does not exist", o.name),
                    })?;
                    state_params.insert(p.name.clone(), (g.name.clone(), bytes_of(&g.name, p)?));
                }
            }
        }
        let mut names: Vec<_> = state_params.keys().cloned().collect();
        names.sort();
        for name in names {
            let (_, size) = state_params[&name];
            let t = Tensor::allocate(rt, nc, size, &format!("state::{name}"))?;
            t.zero()?;
            rank.state.insert(name, Rc::new(t));
        }
        let takes_rank =
            artifact.manifest.graphs.iter().any(|g| g.parameters.iter().any(|p| p.name == specc_ir::RANK_INPUT));
        if takes_rank {
            let t = Tensor::allocate(rt, nc, 4, "rank")?;
            t.write(0, &(r as i32).to_le_bytes())?;
            rank.index = Some(Rc::new(t));
        }

        for g in &artifact.manifest.graphs {
            let loaded = load_graph(rt, artifact, g, &rank, r, tp)?;
            rank.graphs.insert(g.name.clone(), loaded);
        }
        Ok(rank)
    }
}

/// A tensor of its own for `t`, a per-call input or a returned output of
/// `graph`, recorded in `list`.
fn call_tensor(
    rt: &Arc<Runtime>,
    nc: i32,
    graph: &str,
    t: &TensorEntry,
    list: &mut Vec<CallTensor>,
) -> Result<Rc<Tensor>, BackendError> {
    let tensor = Rc::new(Tensor::allocate(rt, nc, bytes_of(graph, t)?, &format!("{graph}::{}", t.name))?);
    list.push(CallTensor {
        name: t.name.clone(),
        dtype: dtype(graph, t)?,
        shape: t.shape.clone(),
        tensor: tensor.clone(),
    });
    Ok(tensor)
}

/// One graph on one rank, its sets bound once: weights, state and the
/// rank's index resident, a tensor for each per-call input and returned
/// output.
fn load_graph(
    rt: &Arc<Runtime>,
    artifact: &Artifact,
    g: &GraphEntry,
    rank: &Rank,
    r: usize,
    tp: usize,
) -> Result<Loaded, BackendError> {
    let nc = rank.core;
    let neff = artifact.read(g.neff.as_ref().expect("checked at load"))?;
    let model =
        if tp > 1 { Model::load_rank(rt, &neff, nc, r, tp, &g.name)? } else { Model::load(rt, &neff, nc, &g.name)? };
    let problems = compare(&g.name, &model.tensors()?, g)?;
    if !problems.is_empty() {
        return Err(NeuronError::TensorMismatch { graph: g.name.clone(), problems }.into());
    }
    let mut inputs = TensorSet::new(rt, &format!("inputs of `{}`", g.name))?;
    let mut outputs = TensorSet::new(rt, &format!("outputs of `{}`", g.name))?;
    let mut per_call = Vec::new();
    for p in &g.parameters {
        let bound = if p.kind == "weight" {
            let model = p.model.clone().unwrap_or_else(|| g.model.clone());
            rank.weights[&(model, p.name.clone())].clone()
        } else if let Some(t) = rank.state.get(&p.name) {
            t.clone()
        } else if p.name == specc_ir::RANK_INPUT
            && let Some(t) = &rank.index
        {
            t.clone()
        } else {
            call_tensor(rt, nc, &g.name, p, &mut per_call)?
        };
        inputs.add(&p.neff_name, &bound)?;
    }
    let mut returned = Vec::new();
    for o in &g.outputs {
        let bound = match o.aliases_parameter {
            // The very tensor bound as the input: updated in place.
            Some(i) => rank.state[&g.parameters[i].name].clone(),
            None => call_tensor(rt, nc, &g.name, o, &mut returned)?,
        };
        outputs.add(&o.neff_name, &bound)?;
    }
    Ok(Loaded { inputs, outputs, per_call, returned, model })
}

impl Backend for Neuron {
    fn name(&self) -> &'static str {
        "neuron"
    }

    fn description(&self) -> String {
        let cores = match self.ranks.len() {
            0 | 1 => format!("NeuronCore {}", self.options.core),
            n => format!(
                "NeuronCores {}-{} (tp {n}, one rank per core)",
                self.options.core,
                self.options.core + n as i32 - 1
            ),
        };
        match self.library() {
            Some(l) => format!("neuron: {cores} through {l}"),
            None => "neuron".into(),
        }
    }

    fn load(&mut self, artifact: &Artifact) -> Result<(), BackendError> {
        let result = self.load_all(artifact);
        if result.is_err() {
            // Free whatever the failed load allocated now, not at drop.
            self.ranks.clear();
            self.runtime = None;
        }
        result
    }

    fn execute(&mut self, graph: &str, inputs: &[(&str, &Literal)]) -> Result<Vec<(String, Literal)>, BackendError> {
        let err = |message: String| NeuronError::Graph { graph: graph.into(), message };
        // The per-call inputs, the same on every rank.
        for rank in &self.ranks {
            let g = rank.graphs.get(graph).ok_or_else(|| BackendError::NoGraph(graph.into()))?;
            for c in &g.per_call {
                let lit = inputs
                    .iter()
                    .find(|(n, _)| *n == c.name)
                    .map(|(_, l)| *l)
                    .ok_or_else(|| err(format!("missing input `{}`", c.name)))?;
                if lit.dtype() != c.dtype || lit.shape != c.shape {
                    return Err(err(format!(
                        "input `{}` is {}, the graph takes {}{:?}",
                        c.name,
                        lit.ty(),
                        c.dtype.name(),
                        c.shape
                    ))
                    .into());
                }
                c.tensor.write(0, &lit.to_le_bytes())?;
            }
        }
        let mut runs: Vec<RankRun> = Vec::with_capacity(self.ranks.len());
        for rank in &mut self.ranks {
            let g = rank.graphs.get_mut(graph).ok_or_else(|| BackendError::NoGraph(graph.into()))?;
            runs.push(RankRun { model: &g.model, inputs: &g.inputs, outputs: &mut g.outputs });
        }
        if runs.len() == 1 {
            let run = runs.pop().expect("one rank");
            run.go()?;
        } else {
            // Every rank's copy at once, each on its own thread: a collective
            // completes only when all ranks have reached it.
            let results: Vec<Result<(), BackendError>> = std::thread::scope(|scope| {
                let handles: Vec<_> =
                    runs.into_iter().map(|run| scope.spawn(move || run.go().map_err(BackendError::from))).collect();
                handles
                    .into_iter()
                    .enumerate()
                    .map(|(r, h)| {
                        h.join()
                            .unwrap_or_else(|_| Err(err(format!("rank {r}'s thread panicked in nrt_execute")).into()))
                    })
                    .collect()
            });
            // Every failing rank is named: the first to fail is the cause,
            // the others may only report that a collective was abandoned.
            let ranks = self.ranks.len();
            let failed: Vec<String> = results
                .into_iter()
                .enumerate()
                .filter_map(|(r, result)| result.err().map(|e| format!("rank {r}: {e}")))
                .collect();
            if !failed.is_empty() {
                return Err(err(format!("{} of {ranks} ranks failed: {}", failed.len(), failed.join("; "))).into());
            }
        }
        // Every rank holds the same tokens and counts (decided from
        // all-reduced logits): rank 0's cross to the host.
        let g = &self.ranks[0].graphs[graph];
        let mut out = Vec::with_capacity(g.returned.len());
        for c in &g.returned {
            let bytes = c.tensor.read()?;
            let lit = Literal::from_le_bytes(c.dtype, c.shape.clone(), &bytes)
                .map_err(|e| err(format!("output `{}`: {e}", c.name)))?;
            out.push((c.name.clone(), lit));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::numeric_key;

    #[test]
    fn tensor_names_sort_numerically() {
        let mut names = vec!["input10", "input2", "output0", "input1", "input0"];
        names.sort_by_key(|n| numeric_key(n));
        assert_eq!(names, ["input0", "input1", "input2", "input10", "output0"]);
    }
}
