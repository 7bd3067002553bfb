//! The counts of an artifact's graphs, with roles (state parameters, the
//! model of each weight) taken from its manifest.

use crate::count::{self, CountError, Counts, Roles};
use crate::tp::Resident;
use serde::Serialize;
use specc_artifact::{Artifact, ArtifactError, GraphEntry};
use specc_ir::Op;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Count(#[from] CountError),
    #[error("graph `{graph}` in {dir}: {detail}")]
    Manifest { dir: String, graph: String, detail: String },
}

/// One graph's counts.
#[derive(Clone, Debug, Serialize)]
pub struct GraphCost {
    pub name: String,
    /// `prefill`, `decode`, `verify` or `fused`.
    pub kind: String,
    pub counts: Counts,
}

/// The counted graphs and what each model keeps resident.
#[derive(Clone, Debug, Serialize)]
pub struct ArtifactCost {
    /// The artifact's weight dtype (`f32` or `bf16`).
    pub dtype: String,
    pub graphs: Vec<GraphCost>,
    /// Per model: weights (each counted once, over all counted graphs) and
    /// caches.
    pub resident: Vec<Resident>,
}

impl ArtifactCost {
    pub fn graph(&self, name: &str) -> Option<&GraphCost> {
        self.graphs.iter().find(|g| g.name == name)
    }
}

/// The roles of a graph's parameters, from its manifest entry: state
/// parameters are those an output aliases; a state parameter named
/// `model/...` belongs to that model, others to the graph's model; each
/// weight's model is recorded on its entry.
pub fn roles(entry: &GraphEntry, models: &[&str]) -> Roles {
    let inputs = entry.parameters.iter().filter(|p| p.kind != "weight").count();
    let state = entry
        .outputs
        .iter()
        .filter_map(|o| o.aliases_parameter)
        .map(|p| {
            let name = entry.parameters.get(p).map(|e| e.name.as_str()).unwrap_or("");
            let model =
                name.split_once('/').map(|(m, _)| m).filter(|m| models.contains(m)).unwrap_or(entry.model.as_str());
            (p, model.to_string())
        })
        .collect();
    let mut weight_models = Vec::new();
    for p in entry.parameters.iter().filter(|p| p.kind == "weight") {
        let i = p.index.saturating_sub(inputs);
        if weight_models.len() <= i {
            weight_models.resize(i + 1, entry.model.clone());
        }
        weight_models[i] = p.model.clone().unwrap_or_else(|| entry.model.clone());
    }
    Roles { state, weight_models, default_model: entry.model.clone() }
}

/// Counts the graphs `include` accepts (reading each one's IR, checked
/// against its checksum).
pub fn from_artifact(a: &Artifact, include: &dyn Fn(&GraphEntry) -> bool) -> Result<ArtifactCost, CostError> {
    let models: Vec<&str> = a.manifest.models.iter().map(|m| m.name.as_str()).collect();
    let mut graphs = Vec::new();
    // (model, name) -> bytes, and model -> (cache name -> (bytes, heads)).
    let mut weights: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut caches: BTreeMap<String, BTreeMap<String, (u64, usize)>> = BTreeMap::new();
    for entry in a.manifest.graphs.iter().filter(|g| include(g)) {
        let g = a.graph_ir(entry)?;
        if g.params().len() + g.weights().len() != entry.parameters.len() {
            return Err(CostError::Manifest {
                dir: a.dir.display().to_string(),
                graph: entry.name.clone(),
                detail: format!(
                    "the IR has {} parameters and {} weights, the manifest lists {} entries",
                    g.params().len(),
                    g.weights().len(),
                    entry.parameters.len()
                ),
            });
        }
        let r = roles(entry, &models);
        let mut counts = count::count(&g, &r)?;
        // Every graph of a sharded artifact is one rank's program, also the
        // replicated draft's (whole, but on every rank).
        counts.built_tp = a.manifest.tp;
        for id in g.ids() {
            if let Op::Weight { index } = g.node(id).op {
                let model = r.weight_models.get(index).cloned().unwrap_or_else(|| entry.model.clone());
                let bytes = g.ty(id).size_bytes().unwrap_or(0) as u64;
                weights.insert((model, g.node(id).name.clone()), bytes);
            }
        }
        for (p, model) in &r.state {
            let node = g.params()[*p];
            let ty = g.ty(node);
            let heads = ty.shape.as_fixed().filter(|d| d.len() >= 2).map(|d| d[1]).unwrap_or(1);
            caches
                .entry(model.clone())
                .or_default()
                .insert(g.node(node).name.clone(), (ty.size_bytes().unwrap_or(0) as u64, heads));
        }
        graphs.push(GraphCost { name: entry.name.clone(), kind: entry.kind.clone(), counts });
    }
    let mut resident = Vec::new();
    for m in &models {
        let weight_bytes = weights.iter().filter(|((wm, _), _)| wm == m).map(|(_, b)| b).sum();
        let c = caches.get(*m);
        resident.push(Resident {
            model: m.to_string(),
            weight_bytes,
            cache_bytes: c.map(|c| c.values().map(|v| v.0).sum()).unwrap_or(0),
            kv_heads: c.and_then(|c| c.values().map(|v| v.1).max()).unwrap_or(1),
            layers: c.map(|c| c.len().div_ceil(2)).unwrap_or(0),
        });
    }
    Ok(ArtifactCost { dtype: a.manifest.dtype.clone(), graphs, resident })
}
