//! The artifact directory `specc compile` writes and `specc run` reads.
//!
//! ```text
//! out/
//!   manifest.json               written last: its presence means complete
//!   graphs/<graph>.hlo.pb       HloModuleProto, the input of neuronx-cc
//!   graphs/<graph>.hlo.txt      the same module as HLO text
//!   graphs/<graph>.ir           the IR (bincode) for the reference backend
//!   graphs/<graph>.neff         when neuronx-cc ran, with its log beside it
//!   weights/<model>.safetensors the weights (or, with linked weights, a
//!                               table of where they are in the source files)
//! ```
//!
//! Every file the manifest names carries its size and SHA-256; reading
//! verifies them, so a truncated or edited artifact is refused with the
//! file's name instead of being run. Writing goes to a hidden staging
//! directory beside the target that is renamed into place only after the
//! manifest is written: a failed compile leaves nothing that looks complete.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use specc_ir::{DType, Graph, TensorType, WeightBytes, WeightStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "specc-artifact";
/// Bump when the manifest or a file format changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{dir} is not a specc artifact: {detail}")]
    NotAnArtifact { dir: String, detail: String },
    #[error(
        "{dir} was written in artifact format version {found}; this specc reads version {supported} (recompile it)"
    )]
    Version { dir: String, found: u32, supported: u32 },
    #[error("artifact file {file} is missing")]
    Missing { file: String },
    #[error("artifact file {file} is corrupt: {detail}")]
    Corrupt { file: String, detail: String },
    #[error(
        "weight `{0}` is stored inside the ONNX file: only weights stored as ONNX external data can be linked (use --weights copy)"
    )]
    CannotLink(String),
    #[error("artifact has no graph named `{0}`")]
    NoGraph(String),
    #[error("artifact has no model named `{0}`")]
    NoModel(String),
    #[error(
        "model `{model}` of the artifact in {dir} is shape-only (compiled with --weights none): it has no weight data, so it can be estimated (`specc estimate`) but not run; recompile with --weights copy or --weights link"
    )]
    ShapeOnly { dir: String, model: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io { path: path.display().to_string(), source }
}

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
    /// size, since hashing them would read every weight.
    Linked { tensors: Vec<LinkedTensor>, files: BTreeMap<String, u64> },
    /// No weight data at all, only what each weight is (`--weights none`):
    /// enough to estimate costs, not to run.
    ShapeOnly { tensors: Vec<ShapeTensor>, bytes: u64 },
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
            Weights::Linked { tensors, .. } => tensors.iter().map(|t| t.length).sum(),
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

    /// The first model without weight data (`--weights none`), if any.
    pub fn shape_only_model(&self) -> Option<&str> {
        self.models.iter().find(|m| matches!(m.weights, Weights::ShapeOnly { .. })).map(|m| m.name.as_str())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> Result<(u64, String), ArtifactError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

fn dtype_name(d: DType) -> &'static str {
    d.name()
}

fn st_dtype(d: DType) -> safetensors::Dtype {
    match d {
        DType::F32 => safetensors::Dtype::F32,
        DType::I32 => safetensors::Dtype::I32,
        DType::I64 => safetensors::Dtype::I64,
        DType::Bool => safetensors::Dtype::BOOL,
        DType::BF16 => safetensors::Dtype::BF16,
    }
}

fn from_st_dtype(d: safetensors::Dtype) -> Option<DType> {
    match d {
        safetensors::Dtype::F32 => Some(DType::F32),
        safetensors::Dtype::I32 => Some(DType::I32),
        safetensors::Dtype::I64 => Some(DType::I64),
        safetensors::Dtype::BOOL => Some(DType::Bool),
        safetensors::Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// An artifact being written. Dropped without [`Staging::commit`], it
/// removes everything it wrote.
pub struct Staging {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn new(target: &Path) -> Result<Staging, ArtifactError> {
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("artifact");
        let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("graphs")).map_err(io(&tmp))?;
        std::fs::create_dir_all(tmp.join("weights")).map_err(io(&tmp))?;
        Ok(Staging { tmp, target: target.to_path_buf(), committed: false })
    }

    /// Where a file of the artifact is being written.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.join(rel)
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<FileRef, ArtifactError> {
        let p = self.path(rel);
        std::fs::write(&p, bytes).map_err(io(&p))?;
        Ok(FileRef { file: rel.into(), bytes: bytes.len() as u64, sha256: sha256_hex(bytes) })
    }

    /// Records a file something else wrote into the staging directory.
    pub fn adopt(&self, rel: &str) -> Result<FileRef, ArtifactError> {
        let (bytes, sha256) = sha256_file(&self.path(rel))?;
        Ok(FileRef { file: rel.into(), bytes, sha256 })
    }

    /// Copies the weights `names` from `store` into one safetensors file.
    pub fn write_weights(&self, rel: &str, store: &WeightStore, names: &[String]) -> Result<Weights, ArtifactError> {
        let mut data = Vec::with_capacity(names.len());
        for n in names {
            let e = store.get(n).ok_or_else(|| ArtifactError::Missing { file: format!("weight data for `{n}`") })?;
            let bytes = e.bytes.read().map_err(|source| ArtifactError::Io { path: format!("weight `{n}`"), source })?;
            data.push((n.clone(), e.ty.clone(), bytes));
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = data
            .iter()
            .map(|(n, ty, b)| {
                let shape = ty.shape.as_fixed().expect("weights are static");
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(st_dtype(ty.dtype), shape, b)
                        .expect("sizes checked by the store"),
                )
            })
            .collect();
        let p = self.path(rel);
        safetensors::serialize_to_file(views, None, &p).map_err(|e| ArtifactError::Io {
            path: p.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let total = data.iter().map(|(_, _, b)| b.len() as u64).sum();
        Ok(Weights::Copied { file: self.adopt(rel)?, tensors: names.len(), bytes: total })
    }

    /// Writes `manifest.json` and moves the directory into place (replacing
    /// an older artifact there).
    pub fn commit(mut self, manifest: &Manifest) -> Result<(), ArtifactError> {
        let json = serde_json::to_string_pretty(manifest).expect("a manifest always serializes");
        let p = self.path(MANIFEST);
        std::fs::write(&p, json).map_err(io(&p))?;
        if self.target.exists() {
            let old = self.tmp.with_extension("old");
            std::fs::rename(&self.target, &old).map_err(io(&self.target))?;
            std::fs::rename(&self.tmp, &self.target).map_err(io(&self.target))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.tmp, &self.target).map_err(io(&self.target))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Linked weights: where each weight's bytes are in its source file.
pub fn link_weights(store: &WeightStore, names: &[String]) -> Result<Weights, ArtifactError> {
    let mut tensors = Vec::new();
    let mut files = BTreeMap::new();
    for n in names {
        let e = store.get(n).ok_or_else(|| ArtifactError::Missing { file: format!("weight data for `{n}`") })?;
        let WeightBytes::File { path, offset, len } = &e.bytes else {
            return Err(ArtifactError::CannotLink(n.clone()));
        };
        let abs = std::fs::canonicalize(path).map_err(io(path))?;
        let size = std::fs::metadata(&abs).map_err(io(&abs))?.len();
        files.insert(abs.display().to_string(), size);
        tensors.push(LinkedTensor {
            name: n.clone(),
            dtype: dtype_name(e.ty.dtype).into(),
            shape: e.ty.shape.as_fixed().expect("static"),
            file: abs.display().to_string(),
            offset: *offset,
            length: *len as u64,
        });
    }
    Ok(Weights::Linked { tensors, files })
}

/// Shape-only weights: names, dtypes (`dtype` replaces f32, as the artifact
/// stores them) and shapes of `names`; nothing is read.
pub fn shape_only_weights(store: &WeightStore, names: &[String], dtype: DType) -> Result<Weights, ArtifactError> {
    let mut tensors = Vec::new();
    let mut bytes = 0u64;
    for n in names {
        let e = store.get(n).ok_or_else(|| ArtifactError::Missing { file: format!("weight declaration for `{n}`") })?;
        let d = if e.ty.dtype == DType::F32 { dtype } else { e.ty.dtype };
        let shape = e.ty.shape.as_fixed().expect("static");
        bytes += (shape.iter().product::<usize>() * d.size_bytes()) as u64;
        tensors.push(ShapeTensor { name: n.clone(), dtype: dtype_name(d).into(), shape });
    }
    Ok(Weights::ShapeOnly { tensors, bytes })
}

/// An artifact opened for reading; its manifest is checked.
#[derive(Debug)]
pub struct Artifact {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Artifact {
    pub fn open(dir: &Path) -> Result<Artifact, ArtifactError> {
        let shown = dir.display().to_string();
        if !dir.is_dir() {
            return Err(ArtifactError::NotAnArtifact { dir: shown, detail: "no such directory".into() });
        }
        let mp = dir.join(MANIFEST);
        if !mp.exists() {
            return Err(ArtifactError::NotAnArtifact {
                dir: shown,
                detail: format!("it has no {MANIFEST} (an unfinished or failed compile leaves none)"),
            });
        }
        let text = std::fs::read_to_string(&mp).map_err(io(&mp))?;
        let raw: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ArtifactError::Corrupt { file: mp.display().to_string(), detail: e.to_string() })?;
        if raw.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(ArtifactError::NotAnArtifact {
                dir: shown,
                detail: format!("{MANIFEST} is not a {FORMAT} manifest"),
            });
        }
        let found = raw.get("format_version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if found != FORMAT_VERSION {
            return Err(ArtifactError::Version { dir: shown, found, supported: FORMAT_VERSION });
        }
        let manifest: Manifest = serde_json::from_value(raw)
            .map_err(|e| ArtifactError::Corrupt { file: mp.display().to_string(), detail: e.to_string() })?;
        let a = Artifact { dir: dir.to_path_buf(), manifest };
        // Every listed file must be there with its recorded size (checksums
        // are verified when a file is read).
        for f in a.files() {
            let p = dir.join(&f.file);
            let meta = std::fs::metadata(&p).map_err(|_| ArtifactError::Missing { file: p.display().to_string() })?;
            if meta.len() != f.bytes {
                return Err(ArtifactError::Corrupt {
                    file: p.display().to_string(),
                    detail: format!("{} bytes, the manifest says {}", meta.len(), f.bytes),
                });
            }
        }
        Ok(a)
    }

    fn files(&self) -> Vec<&FileRef> {
        let mut v = Vec::new();
        for g in &self.manifest.graphs {
            v.extend([&g.hlo_pb, &g.hlo_txt, &g.ir]);
            v.extend(g.neff.iter());
        }
        for m in &self.manifest.models {
            if let Weights::Copied { file, .. } = &m.weights {
                v.push(file);
            }
        }
        v.extend(self.manifest.tokenizer.iter());
        v
    }

    /// A file's bytes, checked against its size and checksum.
    pub fn read(&self, f: &FileRef) -> Result<Vec<u8>, ArtifactError> {
        let p = self.dir.join(&f.file);
        let bytes = std::fs::read(&p).map_err(|_| ArtifactError::Missing { file: p.display().to_string() })?;
        let sum = sha256_hex(&bytes);
        if bytes.len() as u64 != f.bytes || sum != f.sha256 {
            return Err(ArtifactError::Corrupt {
                file: p.display().to_string(),
                detail: format!(
                    "checksum {sum} ({} bytes), the manifest says {} ({} bytes)",
                    bytes.len(),
                    f.sha256,
                    f.bytes
                ),
            });
        }
        Ok(bytes)
    }

    /// The IR of a graph (verified on decoding).
    pub fn graph_ir(&self, g: &GraphEntry) -> Result<Graph, ArtifactError> {
        let bytes = self.read(&g.ir)?;
        Graph::from_bytes(&bytes).map_err(|e| ArtifactError::Corrupt { file: g.ir.file.clone(), detail: e.to_string() })
    }

    /// The weights of a model as a store (copied weights are checked first).
    pub fn weights(&self, model: &str) -> Result<WeightStore, ArtifactError> {
        let m = self.manifest.model(model)?;
        let mut store = WeightStore::new();
        match &m.weights {
            Weights::ShapeOnly { .. } => {
                return Err(ArtifactError::ShapeOnly { dir: self.dir.display().to_string(), model: model.into() });
            }
            Weights::Copied { file, .. } => {
                let bytes = std::sync::Arc::new(self.read(file)?);
                let st = safetensors::SafeTensors::deserialize(&bytes)
                    .map_err(|e| ArtifactError::Corrupt { file: file.file.clone(), detail: e.to_string() })?;
                let base = bytes.as_ptr() as usize;
                let mut entries = Vec::new();
                for (name, view) in st.tensors() {
                    let dtype = from_st_dtype(view.dtype()).ok_or_else(|| ArtifactError::Corrupt {
                        file: file.file.clone(),
                        detail: format!("`{name}` has dtype {:?}", view.dtype()),
                    })?;
                    let start = view.data().as_ptr() as usize - base;
                    entries.push((name, TensorType::fixed(dtype, view.shape()), start..start + view.data().len()));
                }
                for (name, ty, range) in entries {
                    let shared: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync> = bytes.clone();
                    store
                        .insert(name, ty, WeightBytes::Shared(shared, range))
                        .map_err(|detail| ArtifactError::Corrupt { file: file.file.clone(), detail })?;
                }
            }
            Weights::Linked { tensors, files } => {
                for (f, size) in files {
                    let meta = std::fs::metadata(f).map_err(|_| ArtifactError::Missing { file: f.clone() })?;
                    if meta.len() != *size {
                        return Err(ArtifactError::Corrupt {
                            file: f.clone(),
                            detail: format!("{} bytes, linked at {size}", meta.len()),
                        });
                    }
                }
                for t in tensors {
                    let dtype = DType::from_name(&t.dtype).ok_or_else(|| ArtifactError::Corrupt {
                        file: MANIFEST.into(),
                        detail: format!("dtype {}", t.dtype),
                    })?;
                    let bytes =
                        WeightBytes::File { path: PathBuf::from(&t.file), offset: t.offset, len: t.length as usize };
                    store
                        .insert(t.name.clone(), TensorType::fixed(dtype, &t.shape), bytes)
                        .map_err(|detail| ArtifactError::Corrupt { file: MANIFEST.into(), detail })?;
                }
            }
        }
        Ok(store)
    }
}
