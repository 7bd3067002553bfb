//! The manifest: what an artifact holds, as `manifest.json` records it.

use crate::ArtifactError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT: &str = "specc-artifact";
/// Bump when the manifest or a file format changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

/// A file inside the artifact with its size and checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A weight tensor left in its source file (linked weights).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub file: String,
    pub offset: u64,
    pub length: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Weights {
    /// All weights in one safetensors file inside the artifact.
    Copied { file: FileRef, tensors: usize, bytes: u64 },
    /// Weights left where they are (large models); files are checked by
    /// size, since hashing them would read every weight. Each file lies in
    /// the model's directory unless `outside` records that the compile was
    /// told to allow external data elsewhere (`--allow-external-data-outside`).
    Linked {
        tensors: Vec<LinkedTensor>,
        files: BTreeMap<String, u64>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        outside: bool,
    },
    /// No weight data at all, only what each weight is (`--weights none`):
    /// enough to estimate costs, not to run.
    ShapeOnly { tensors: Vec<ShapeTensor>, bytes: u64 },
    /// A tensor-parallel model (`--tp N`): the weights every rank holds
    /// (norms, the embedding), stored once, and each rank's blocks of the
    /// split ones (`ranks[r]`, the same names and local shapes on every
    /// rank). Neither part is itself sharded.
    Sharded { replicated: Box<Weights>, ranks: Vec<Weights> },
}

/// A weight of a shape-only artifact: its name, dtype (as stored in the
/// artifact) and shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

impl Weights {
    /// The weights' bytes (as stored, or as they would be for shape-only).
    pub fn bytes(&self) -> u64 {
        match self {
            Weights::Copied { bytes, .. } | Weights::ShapeOnly { bytes, .. } => *bytes,
            Weights::Linked { tensors, .. } => tensors.iter().fold(0u64, |a, t| a.saturating_add(t.length)),
            Weights::Sharded { replicated, ranks } => {
                ranks.iter().fold(replicated.bytes(), |a, r| a.saturating_add(r.bytes()))
            }
        }
    }

    /// The parts that hold data: itself, or a sharded model's replicated
    /// part and every rank's.
    pub fn parts(&self) -> Vec<&Weights> {
        match self {
            Weights::Sharded { replicated, ranks } => std::iter::once(replicated.as_ref()).chain(ranks).collect(),
            w => vec![w],
        }
    }

    /// Bytes one rank holds: everything, or for a sharded model the
    /// replicated part and one rank's blocks.
    pub fn bytes_per_rank(&self) -> u64 {
        match self {
            Weights::Sharded { replicated, ranks } => {
                replicated.bytes().saturating_add(ranks.first().map_or(0, Weights::bytes))
            }
            w => w.bytes(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    pub source: String,
    pub weights: Weights,
}

/// One parameter or output of a compiled graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Parameter number or output (tuple) index.
    pub index: usize,
    pub name: String,
    /// `input`, `weight` or `output`.
    pub kind: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// The NEFF's name for it: `input{N}` or `output{N}`.
    pub neff_name: String,
    /// Set when the compiler narrowed the type (e.g. `s64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narrowed_from: Option<String>,
    /// For outputs aliased to an input (state kept on the device): that
    /// parameter's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases_parameter: Option<usize>,
    /// For weights: the model whose weights file holds it (`name` is the
    /// weight's name there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// What a speculative-decoding artifact was compiled for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speculation {
    /// The default speculative tokens per round (the largest compiled).
    pub k: usize,
    /// Every K with round graphs (`fused_k{K}`, `verify_k{K}`).
    pub ks: Vec<usize>,
    /// KV-cache capacity in tokens.
    pub capacity: usize,
    /// Prompt buckets, ascending.
    pub buckets: Vec<usize>,
    pub vocab: usize,
    /// Whether a draft model (and the fused graph) is present.
    pub draft: bool,
    /// End-of-sequence token ids from the model's config (may be empty).
    pub eos_token_ids: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeuronxCc {
    /// The exact command (run, or to run).
    pub command: Vec<String>,
    /// `ok`, `ok, from the NEFF cache (<entry>)` (the compiler did not
    /// run), or `not run: <why>`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<FileRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphEntry {
    pub name: String,
    pub model: String,
    /// `prefill`, `decode`, `fused`, ...: decides the neuronx-cc -O level.
    pub kind: String,
    pub dims: BTreeMap<String, usize>,
    pub hlo_pb: FileRef,
    pub hlo_txt: FileRef,
    pub ir: FileRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neff: Option<FileRef>,
    pub neuronx_cc: NeuronxCc,
    pub parameters: Vec<TensorEntry>,
    pub outputs: Vec<TensorEntry>,
    pub instructions: usize,
    /// The all-reduces in the graph (tensor parallelism), each over the
    /// manifest's replica group.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub all_reduces: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub specc_version: String,
    pub target: String,
    /// Weight dtype (`f32` or `bf16`).
    pub dtype: String,
    pub models: Vec<ModelEntry>,
    pub graphs: Vec<GraphEntry>,
    /// Tensor-parallel ranks every graph runs on (`--tp`): each rank runs
    /// the same program with its own weights, caches and `tp_rank` input.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tp: usize,
    /// The collective groups of the graphs' all-reduces (one group of all
    /// ranks; empty at tp 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_groups: Vec<Vec<usize>>,
    /// Set for generation artifacts (prefill/decode/verify/fused graphs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculation: Option<Speculation>,
    /// The target's Hugging Face `tokenizer.json`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<FileRef>,
    /// What the artifact was compiled from (specc version, options, and
    /// each input file's path, size and modification time): a compile with
    /// the same fingerprint is skipped as up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

impl Manifest {
    pub fn new(specc_version: &str, target: &str, dtype: &str) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            specc_version: specc_version.into(),
            target: target.into(),
            dtype: dtype.into(),
            models: vec![],
            graphs: vec![],
            tp: 1,
            replica_groups: vec![],
            speculation: None,
            tokenizer: None,
            inputs: None,
        }
    }

    pub fn graph(&self, name: &str) -> Result<&GraphEntry, ArtifactError> {
        self.graphs.iter().find(|g| g.name == name).ok_or_else(|| ArtifactError::NoGraph(name.into()))
    }

    pub fn model(&self, name: &str) -> Result<&ModelEntry, ArtifactError> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| ArtifactError::NoModel(name.into()))
    }

    /// Every file of the artifact the manifest lists (besides itself).
    pub fn files(&self) -> Vec<&FileRef> {
        let mut v = Vec::new();
        for g in &self.graphs {
            v.extend([&g.hlo_pb, &g.hlo_txt, &g.ir]);
            v.extend(g.neff.iter());
            v.extend(g.neuronx_cc.log.iter());
        }
        for m in &self.models {
            for part in m.weights.parts() {
                if let Weights::Copied { file, .. } = part {
                    v.push(file);
                }
            }
        }
        v.extend(self.tokenizer.iter());
        v
    }

    /// The first model without weight data (`--weights none`), if any.
    pub fn shape_only_model(&self) -> Option<&str> {
        self.models
            .iter()
            .find(|m| m.weights.parts().iter().any(|w| matches!(w, Weights::ShapeOnly { .. })))
            .map(|m| m.name.as_str())
    }
}
