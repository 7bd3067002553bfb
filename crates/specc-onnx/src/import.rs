//! The import driver: read the file, refuse unsupported ops all at once,
//! declare inputs and initializers, lower each node in order, name the
//! outputs.

use crate::ctx::Ctx;
use crate::error::{ImportError, UnsupportedOp};
use crate::ops;
use crate::proto::{self, ExternalData, TensorValue};
use onnx_ir::{Message, ModelProto};
use specc_ir::{Graph, GraphBuilder, TensorType, WeightStore};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// An imported model: the IR graph and the weight data it reads.
pub struct Model {
    pub graph: Graph,
    pub weights: WeightStore,
    pub info: ModelInfo,
}

/// Facts about the ONNX file itself.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub opset: i64,
    pub producer: String,
    pub onnx_nodes: usize,
    /// ONNX op type -> node count.
    pub op_histogram: BTreeMap<String, usize>,
    /// Graph inputs as declared (initializers excluded).
    pub inputs: Vec<(String, TensorType)>,
    pub outputs: Vec<String>,
    /// What the user should be told (external data read from outside the
    /// model's directory, when allowed).
    pub warnings: Vec<String>,
}

/// Reads and parses an ONNX file without lowering it.
pub fn read_model(path: &Path) -> Result<ModelProto, ImportError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ImportError::Io { path: shown.clone(), source })?;
    let len = file.metadata().map_err(|source| ImportError::Io { path: shown.clone(), source })?.len();
    if len == 0 {
        return Err(ImportError::Empty { path: shown });
    }
    // SAFETY: the map is read-only and private, and every byte read from it
    // goes through bounds-checked slices of its length (protobuf parsing,
    // weight views checked against their types). What no mmap reader can
    // rule out is another process truncating or rewriting the file while it
    // is mapped: reads then see the new bytes or fault with SIGBUS. Like
    // onnxruntime and safetensors, specc requires that its input files do
    // not change during a run; it never maps its own outputs.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ImportError::Io { path: shown.clone(), source })?;
    parse_bytes(bytes::Bytes::from_owner(map), &shown)
}

/// Parses ONNX bytes; `what` names them in errors.
pub fn parse_bytes(buf: bytes::Bytes, what: &str) -> Result<ModelProto, ImportError> {
    if buf.is_empty() {
        return Err(ImportError::Empty { path: what.into() });
    }
    let parsed = specc_ir::contain::contain(|| ModelProto::parse_from_tokio_bytes(&buf));
    let model = match parsed {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            return Err(ImportError::NotOnnx { path: what.into(), detail: specc_ir::contain::brief(e) });
        }
        Err(panic) => {
            return Err(ImportError::NotOnnx {
                path: what.into(),
                detail: format!("the protobuf parser gave up ({panic})"),
            });
        }
    };
    // Protobuf parsing is lenient: arbitrary bytes can decode into an empty
    // message. A real model has a graph and an operator set.
    if model.graph.as_ref().is_none() || model.opset_import.is_empty() {
        return Err(ImportError::NotOnnx { path: what.into(), detail: "it has no graph or no opset_import".into() });
    }
    Ok(model)
}

fn default_opset(model: &ModelProto) -> i64 {
    model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version).unwrap_or(0)
}

/// Every op specc cannot import, with the nodes that use it.
pub fn unsupported_ops(model: &ModelProto) -> Vec<UnsupportedOp> {
    let mut found: BTreeMap<(String, String), UnsupportedOp> = BTreeMap::new();
    let graph = model.graph.as_ref().expect("checked by parse");
    for (i, n) in graph.node.iter().enumerate() {
        let default = n.domain.is_empty() || n.domain == "ai.onnx";
        if default && ops::SUPPORTED.contains(&n.op_type.as_str()) {
            continue;
        }
        let opset = model.opset_import.iter().find(|o| o.domain == n.domain).map(|o| o.version).unwrap_or(0);
        let name = if n.name.is_empty() { format!("{}_{i}", n.op_type) } else { n.name.clone() };
        found
            .entry((n.domain.clone(), n.op_type.clone()))
            .or_insert_with(|| UnsupportedOp {
                op_type: n.op_type.clone(),
                domain: n.domain.clone(),
                opset,
                nodes: vec![],
            })
            .nodes
            .push(name);
    }
    found.into_values().collect()
}

/// How to import a model file.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Read external data that lies outside the model's directory (refused
    /// by default, as onnxruntime does; see [`ExternalData`]).
    pub allow_external_data_outside: bool,
}

/// Imports a model file with the default options.
pub fn import_file(path: &Path) -> Result<Model, ImportError> {
    import_file_with(path, &ImportOptions::default())
}

pub fn import_file_with(path: &Path, o: &ImportOptions) -> Result<Model, ImportError> {
    let model = read_model(path)?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let external = ExternalData { anywhere: o.allow_external_data_outside, ..ExternalData::beside(path) };
    import_model(&model, name, &external)
}

/// Lowers a parsed model into the IR; external data is read as `external`
/// allows.
pub fn import_model(model: &ModelProto, name: &str, external: &ExternalData) -> Result<Model, ImportError> {
    let unsupported = unsupported_ops(model);
    if !unsupported.is_empty() {
        return Err(ImportError::UnsupportedOps(unsupported));
    }
    let graph = model.graph.as_ref().expect("checked by parse");
    let opset = default_opset(model);
    let mut c = Ctx::new(GraphBuilder::new(name), opset, external.clone());

    let initializer_names: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut inputs = Vec::new();
    for vi in &graph.input {
        if initializer_names.contains(vi.name.as_str()) {
            continue;
        }
        // Unnamed unknown dims get fresh anonymous symbols.
        let ty = proto::value_type(vi, &mut || c.b.fresh_dim())?;
        let id = c.b.parameter(vi.name.clone(), ty.clone())?;
        c.values.insert(vi.name.clone(), id);
        inputs.push((vi.name.clone(), ty));
    }
    for t in &graph.initializer {
        c.cur_name = t.name.clone();
        c.cur_op = "initializer".into();
        let value = proto::tensor_value(t, &c.external, false, &mut c.warnings)?;
        let id = match value {
            TensorValue::Literal(l) => c.constant(l)?,
            TensorValue::Weight(ty, bytes) => c.weight(&t.name, ty, bytes)?,
        };
        c.values.insert(t.name.clone(), id);
    }

    let mut histogram = BTreeMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        *histogram.entry(n.op_type.clone()).or_insert(0) += 1;
        c.begin(n, i);
        let outs = ops::lower(&mut c, n)?;
        for (k, out_name) in n.output.iter().enumerate() {
            if out_name.is_empty() {
                continue;
            }
            match outs.get(k).copied().flatten() {
                Some(id) => {
                    c.values.insert(out_name.clone(), id);
                }
                None => return Err(c.err(format!("output {k} (`{out_name}`) is not supported"))),
            }
        }
    }

    let mut outputs = Vec::new();
    for o in &graph.output {
        let id = *c.values.get(&o.name).ok_or_else(|| ImportError::MissingOutput(o.name.clone()))?;
        c.b.output(o.name.clone(), id)?;
        outputs.push(o.name.clone());
    }
    let weights = std::mem::take(&mut c.weights);
    let warnings = std::mem::take(&mut c.warnings);
    let graph_ir = c.b.finish()?.without_dead_nodes();
    Ok(Model {
        graph: graph_ir,
        weights,
        info: ModelInfo {
            opset,
            producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
            onnx_nodes: graph.node.len(),
            op_histogram: histogram,
            inputs,
            outputs,
            warnings,
        },
    })
}
