//! Import errors. Each names the file, node or value it is about.

use specc_ir::IrError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is empty (0 bytes): not an ONNX model")]
    Empty { path: String },
    #[error("{path} is not a valid ONNX model (truncated or not ONNX): {detail}")]
    NotOnnx { path: String, detail: String },
    #[error("tensor `{tensor}`: external data location `{location}` {detail}")]
    ExternalData { tensor: String, location: String, detail: String },
    #[error("invalid ONNX model: {0}")]
    Invalid(String),
    #[error("{what} has type {ty}, which specc does not support (supported: float32, bfloat16, int32, int64, bool)")]
    UnsupportedType { what: String, ty: String },
    #[error("the model uses operators specc does not support:\n{}", list_unsupported(.0))]
    UnsupportedOps(Vec<UnsupportedOp>),
    #[error("node `{node}` ({op_type}) reads `{input}`, which no node, input or initializer defines")]
    Dangling { node: String, op_type: String, input: String },
    #[error("node `{node}` ({op_type}): {message}")]
    Node { node: String, op_type: String, message: String },
    #[error("graph output `{0}` is not defined by any node, input or initializer")]
    MissingOutput(String),
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// One unsupported op type and the nodes that use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOp {
    pub op_type: String,
    pub domain: String,
    pub opset: i64,
    pub nodes: Vec<String>,
}

fn list_unsupported(ops: &[UnsupportedOp]) -> String {
    ops.iter()
        .map(|o| {
            let domain = if o.domain.is_empty() { String::new() } else { format!("{}::", o.domain) };
            let shown: Vec<&str> = o.nodes.iter().take(5).map(String::as_str).collect();
            let more = if o.nodes.len() > 5 { format!(" and {} more", o.nodes.len() - 5) } else { String::new() };
            format!(
                "  - {domain}{} (opset {}), {} node(s): {}{more}",
                o.op_type,
                o.opset,
                o.nodes.len(),
                shown.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
