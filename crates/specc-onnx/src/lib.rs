//! Imports ONNX decoder models (as torch.onnx.export and optimum write them)
//! into specc's IR.
//!
//! * Real names are kept: graph inputs, outputs and initializers keep their
//!   ONNX names, symbolic dims their `dim_param` names, and IR nodes carry
//!   the name of the ONNX node they came from.
//! * Every ONNX op becomes IR primitives (`ops`); composite ops (Softmax,
//!   LayerNormalization, Gemm, GatherND, ...) become primitive subgraphs.
//! * Large float tensors become weights whose bytes stay in the
//!   memory-mapped file (or external data file) until a backend reads them.
//! * Unsupported ops are reported together, each with its nodes.
//!
//! Architecture Invariant: this is the only crate that knows ONNX. Nothing
//! below it (IR, interpreter, passes, HLO) sees an ONNX type or name rule.

mod ctx;
mod error;
mod import;
mod inspect;
mod ops;
pub mod proto;

pub use error::{ImportError, UnsupportedOp};
pub use import::{
    ImportOptions, Model, ModelInfo, import_file, import_file_with, import_model, parse_bytes, read_model,
    unsupported_ops,
};
pub use inspect::inspect_report;
pub use ops::SUPPORTED;
pub use proto::ExternalData;
