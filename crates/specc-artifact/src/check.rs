//! The checks `Artifact::open` runs on a manifest before anything uses it.
//!
//! A manifest is data from a file: every path, size, index and name in it
//! is checked here, so that the executor, the cost model and the Neuron
//! backend can index and allocate from it without checking again.
//! - Paths: every file is a relative name inside the artifact (no `..`, no
//!   absolute path, no symlink out of it), a regular file of its recorded
//!   size. Linked weights are absolute paths of regular files inside their
//!   model's directory (unless the compile allowed external data elsewhere),
//!   each range within its file. Nothing outside the artifact is read, and
//!   no error prints a hash or size of a file outside it.
//! - Sizes: every shape within the tensor limit (`specc_ir::limits`).
//! - Indices and names: parameter and output numbering, aliases pointing at
//!   an input of the same type, models that exist, state (KV caches) of one
//!   type across graphs, sane speculation settings.

use crate::ArtifactError;
use crate::manifest::{GraphEntry, Manifest, Speculation, TensorEntry, Weights};
use specc_ir::{DType, Graph, limits};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

/// More speculative tokens per round than any published system uses.
pub const MAX_K: usize = 64;
/// The most tensor-parallel ranks an artifact may ask for (64 is the most
/// `--tp` compiles; two trn2 nodes have 128 NeuronCores).
pub const MAX_TP: usize = 128;

pub(crate) fn manifest(dir: &Path, m: &Manifest) -> Result<(), ArtifactError> {
    let shown = dir.display().to_string();
    let bad = |detail: String| ArtifactError::Inconsistent { dir: shown.clone(), detail };
    let unsafe_path =
        |file: &str, detail: String| ArtifactError::UnsafePath { dir: shown.clone(), file: file.into(), detail };
    let home = std::fs::canonicalize(dir).map_err(crate::io(dir))?;

    // Files inside the artifact.
    for f in m.files() {
        let p = inside(&home, &f.file).map_err(|detail| unsafe_path(&f.file, detail))?;
        let meta = std::fs::metadata(&p)
            .map_err(|_| ArtifactError::Missing { file: dir.join(&f.file).display().to_string() })?;
        if !meta.is_file() {
            return Err(unsafe_path(&f.file, "is not a regular file".into()));
        }
        if meta.len() != f.bytes {
            return Err(ArtifactError::Corrupt {
                file: dir.join(&f.file).display().to_string(),
                detail: format!("{} bytes, the manifest says {}", meta.len(), f.bytes),
            });
        }
    }

    // Models and their weights.
    let mut models = BTreeSet::new();
    for model in &m.models {
        if !models.insert(model.name.as_str()) {
            return Err(bad(format!("model `{}` is listed twice", model.name)));
        }
        let parts = model.weights.parts();
        if let Weights::Sharded { ranks, .. } = &model.weights
            && ranks.len() != m.tp
        {
            return Err(bad(format!(
                "model `{}` has weights for {} ranks, the artifact runs {}",
                model.name,
                ranks.len(),
                m.tp
            )));
        }
        for part in parts {
            match part {
                Weights::Sharded { .. } => {
                    return Err(bad(format!("model `{}` has sharded weights inside sharded weights", model.name)));
                }
                Weights::Copied { .. } => {}
                Weights::ShapeOnly { tensors, .. } => {
                    for t in tensors {
                        tensor_size(&t.dtype, &t.shape, || format!("shape-only weight `{}`", t.name)).map_err(&bad)?;
                    }
                }
                Weights::Linked { tensors, files, outside } => linked(&model.source, tensors, files, *outside)
                    .map_err(|(file, detail)| unsafe_path(&file, detail))?,
            }
        }
    }
    if m.tp == 0 || m.tp > MAX_TP {
        return Err(bad(format!("tp is {}, not in 1..={MAX_TP}", m.tp)));
    }
    let everyone: Vec<usize> = (0..m.tp).collect();
    if m.tp > 1 && m.replica_groups != [everyone] || m.tp == 1 && !m.replica_groups.is_empty() {
        return Err(bad(format!(
            "the replica groups {:?} are not the one group of all {} ranks",
            m.replica_groups, m.tp
        )));
    }

    // Graphs.
    let mut names = BTreeSet::new();
    let mut state: BTreeMap<&str, (&str, &[usize], &str)> = BTreeMap::new();
    for g in &m.graphs {
        if !names.insert(g.name.as_str()) {
            return Err(bad(format!("graph `{}` is listed twice", g.name)));
        }
        if !models.contains(g.model.as_str()) {
            return Err(bad(format!("graph `{}` belongs to model `{}`, which is not listed", g.name, g.model)));
        }
        graph_entry(g, &models).map_err(|d| bad(format!("graph `{}`: {d}", g.name)))?;
        if m.tp == 1 && g.all_reduces > 0 {
            return Err(bad(format!(
                "graph `{}` has {} all-reduces but the artifact runs on one rank",
                g.name, g.all_reduces
            )));
        }
        for o in &g.outputs {
            if let Some(p) = o.aliases_parameter {
                let param = &g.parameters[p];
                let seen = state.entry(param.name.as_str()).or_insert((&param.dtype, &param.shape, &g.name));
                if (seen.0, seen.1) != (param.dtype.as_str(), param.shape.as_slice()) {
                    return Err(bad(format!(
                        "state `{}` is {}{:?} in graph `{}` but {}{:?} in graph `{}`",
                        param.name, seen.0, seen.1, seen.2, param.dtype, param.shape, g.name
                    )));
                }
            }
        }
    }
    if let Some(s) = &m.speculation {
        speculation(s).map_err(&bad)?;
    }
    Ok(())
}

/// `rel` as a path inside the artifact at `home` (canonical): a relative
/// name of plain components that, with symlinks followed, stays inside.
fn inside(home: &Path, rel: &str) -> Result<std::path::PathBuf, String> {
    let p = Path::new(rel);
    if rel.is_empty() || rel.contains('\0') {
        return Err("is not a file name".into());
    }
    if p.is_absolute() || p.has_root() {
        return Err("is an absolute path".into());
    }
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("leaves the artifact (it has `..` or `.` components)".into());
    }
    let joined = home.join(p);
    // A missing file is reported as missing by the caller; a present one
    // must not be a symlink out of the artifact.
    match std::fs::canonicalize(&joined) {
        Ok(real) if !real.starts_with(home) => Err("is a symbolic link that leads out of the artifact".into()),
        _ => Ok(joined),
    }
}

fn tensor_size(dtype: &str, shape: &[usize], what: impl FnOnce() -> String) -> Result<usize, String> {
    let d = DType::from_name(dtype).ok_or_else(|| format!("unknown dtype `{dtype}`"))?;
    limits::check_dims(d, shape, what).map(|n| n * d.size_bytes()).map_err(|e| e.to_string())
}

/// Linked weights: absolute paths of regular files, unchanged in size,
/// inside the model's directory unless `outside`; each tensor's range
/// within its file and as long as its type.
fn linked(
    source: &str,
    tensors: &[crate::LinkedTensor],
    files: &BTreeMap<String, u64>,
    outside: bool,
) -> Result<(), (String, String)> {
    let model_dir = Path::new(source).parent().and_then(|d| std::fs::canonicalize(d).ok());
    for (f, size) in files {
        let p = Path::new(f);
        let err = |d: &str| (f.clone(), d.to_string());
        if !p.is_absolute() {
            return Err(err("is a linked weights file but not an absolute path"));
        }
        let real = std::fs::canonicalize(p).map_err(|_| err("is a linked weights file that does not exist"))?;
        if real != p {
            return Err(err("is not the path the compile recorded (it goes through a symbolic link)"));
        }
        if !outside {
            match &model_dir {
                Some(d) if real.starts_with(d) => {}
                Some(d) => {
                    return Err((f.clone(), format!("lies outside the model's directory {}", d.display())));
                }
                None => return Err(err("is linked, but the model's directory (of its source) does not exist")),
            }
        }
        let meta = std::fs::metadata(&real).map_err(|_| err("cannot be examined"))?;
        if !meta.is_file() {
            return Err(err("is not a regular file (a device or FIFO, say)"));
        }
        if meta.len() != *size {
            return Err(err("changed size since the artifact was compiled (recompile it)"));
        }
    }
    for t in tensors {
        let Some(size) = files.get(&t.file) else {
            return Err((
                t.file.clone(),
                format!("holds linked weight `{}` but is not among the linked files", t.name),
            ));
        };
        let bytes = tensor_size(&t.dtype, &t.shape, || format!("linked weight `{}`", t.name))
            .map_err(|d| (t.file.clone(), d))?;
        if t.length != bytes as u64 {
            return Err((
                t.file.clone(),
                format!("links {} bytes for weight `{}`, whose type needs {bytes}", t.length, t.name),
            ));
        }
        if t.offset.checked_add(t.length).is_none_or(|end| end > *size) {
            return Err((t.file.clone(), format!("is too short for the range of weight `{}`", t.name)));
        }
    }
    Ok(())
}

fn entry(t: &TensorEntry, kind: &str) -> Result<(), String> {
    tensor_size(&t.dtype, &t.shape, || format!("{kind} `{}`", t.name))?;
    if let Some(n) = &t.narrowed_from
        && DType::from_name(n).is_none()
    {
        return Err(format!("{kind} `{}` narrowed from unknown dtype `{n}`", t.name));
    }
    Ok(())
}

fn graph_entry(g: &GraphEntry, models: &BTreeSet<&str>) -> Result<(), String> {
    for (i, p) in g.parameters.iter().enumerate() {
        if p.index != i {
            return Err(format!("parameter `{}` is numbered {} at position {i}", p.name, p.index));
        }
        match p.kind.as_str() {
            "input" => {}
            "weight" => {
                if let Some(m) = &p.model
                    && !models.contains(m.as_str())
                {
                    return Err(format!("weight `{}` belongs to model `{m}`, which is not listed", p.name));
                }
            }
            other => return Err(format!("parameter `{}` has kind `{other}`", p.name)),
        }
        entry(p, "parameter")?;
    }
    let inputs = g.parameters.iter().take_while(|p| p.kind == "input").count();
    if g.parameters[inputs..].iter().any(|p| p.kind != "weight") {
        return Err("inputs must come before weights".into());
    }
    let mut aliased = BTreeSet::new();
    for (i, o) in g.outputs.iter().enumerate() {
        if o.index != i || o.kind != "output" {
            return Err(format!("output `{}` is numbered {} ({}) at position {i}", o.name, o.index, o.kind));
        }
        entry(o, "output")?;
        if let Some(p) = o.aliases_parameter {
            let Some(param) = g.parameters.get(p).filter(|param| param.kind == "input") else {
                return Err(format!("output `{}` aliases parameter {p}, which is not an input", o.name));
            };
            if (&param.dtype, &param.shape) != (&o.dtype, &o.shape) {
                return Err(format!(
                    "output `{}` ({}{:?}) aliases parameter `{}` of another type ({}{:?})",
                    o.name, o.dtype, o.shape, param.name, param.dtype, param.shape
                ));
            }
            if !aliased.insert(p) {
                return Err(format!("parameter `{}` is aliased by two outputs", param.name));
            }
        }
    }
    Ok(())
}

fn speculation(s: &Speculation) -> Result<(), String> {
    if s.ks.is_empty() || s.ks.windows(2).any(|w| w[0] >= w[1]) || s.ks.iter().any(|&k| k == 0 || k > MAX_K) {
        return Err(format!("speculation K list {:?} must be non-empty, ascending and within 1..={MAX_K}", s.ks));
    }
    if !s.ks.contains(&s.k) {
        return Err(format!("default K {} is not among the compiled K {:?}", s.k, s.ks));
    }
    if s.capacity == 0 {
        return Err("the KV cache capacity is 0".into());
    }
    if s.buckets.is_empty() || s.buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("prompt buckets {:?} must be non-empty and ascending", s.buckets));
    }
    if let Some(b) = s.buckets.iter().find(|&&b| b == 0 || b > s.capacity) {
        return Err(format!("prompt bucket {b} is not within 1..={} (the cache capacity)", s.capacity));
    }
    if s.vocab == 0 || s.vocab > i32::MAX as usize {
        return Err(format!("vocabulary size {} is not within 1..=2^31-1", s.vocab));
    }
    if let Some(e) = s.eos_token_ids.iter().find(|&&e| e < 0 || e as u64 >= s.vocab as u64) {
        return Err(format!("end-of-sequence id {e} is outside the vocabulary (0..{})", s.vocab));
    }
    Ok(())
}

/// The graph's inputs, weights and outputs are the entry's, in order, with
/// the same types (inputs and outputs by name too: weights are named by
/// model in the entry and by role prefix in the graph).
pub(crate) fn graph_matches_entry(g: &Graph, e: &GraphEntry) -> Result<(), String> {
    let ty = |t: &TensorEntry| format!("{}{:?}", t.dtype, t.shape);
    let ir = |t: &specc_ir::TensorType| format!("{}{:?}", t.dtype.name(), t.shape.as_fixed().unwrap_or_default());
    let inputs: Vec<&TensorEntry> = e.parameters.iter().filter(|p| p.kind == "input").collect();
    let weights: Vec<&TensorEntry> = e.parameters.iter().filter(|p| p.kind == "weight").collect();
    let who = format!("graph `{}`", e.name);
    if inputs.len() != g.params().len() || weights.len() != g.weights().len() || e.outputs.len() != g.outputs().len() {
        return Err(format!(
            "{who}: the manifest lists {} inputs, {} weights and {} outputs; its IR has {}, {} and {}",
            inputs.len(),
            weights.len(),
            e.outputs.len(),
            g.params().len(),
            g.weights().len(),
            g.outputs().len()
        ));
    }
    for (t, &p) in inputs.iter().zip(g.params()) {
        let node = g.node(p);
        if node.name != t.name || ty(t) != ir(&node.ty) || !node.ty.shape.is_static() {
            return Err(format!(
                "{who}: input `{}` {} in the manifest is `{}` {} in the IR",
                t.name,
                ty(t),
                node.name,
                node.ty
            ));
        }
    }
    for (t, w) in weights.iter().zip(g.weights()) {
        let named = w.name == t.name || w.name.strip_suffix(t.name.as_str()).is_some_and(|pre| pre.ends_with("::"));
        if !named || ty(t) != ir(&w.ty) {
            return Err(format!(
                "{who}: weight `{}` {} in the manifest is `{}` {} in the IR",
                t.name,
                ty(t),
                w.name,
                w.ty
            ));
        }
    }
    for (t, o) in e.outputs.iter().zip(g.outputs()) {
        let oty = g.ty(o.node);
        if o.name != t.name || ty(t) != ir(oty) || !oty.shape.is_static() {
            return Err(format!(
                "{who}: output `{}` {} in the manifest is `{}` {} in the IR",
                t.name,
                ty(t),
                o.name,
                oty
            ));
        }
    }
    Ok(())
}
