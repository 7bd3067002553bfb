//! Errors of the IR crate. Every error about a node names it and its op.

use crate::infer::InferError;
use crate::types::TensorType;

#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error("node `{node}` ({op}): {source}")]
    Infer {
        node: String,
        op: &'static str,
        #[source]
        source: InferError,
    },
    #[error("node `{node}` ({op}) refers to %{operand}, which does not exist (yet)")]
    Dangling { node: String, op: &'static str, operand: u32 },
    #[error("duplicate {kind} name `{name}`")]
    Duplicate { kind: &'static str, name: String },
    #[error("{kind} `{name}`: {source}")]
    TooLarge {
        kind: &'static str,
        name: String,
        #[source]
        source: Box<crate::limits::SizeError>,
    },
    #[error("weight `{name}` must have a static shape, got {ty}")]
    DynamicWeight { name: String, ty: TensorType },
    #[error("invalid graph: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    #[error("cannot decode IR graph: {0}")]
    Decode(String),
}
