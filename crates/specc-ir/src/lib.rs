//! specc's intermediate representation: a typed tensor graph over a closed
//! set of primitive ops chosen close to XLA HLO.
//!
//! * [`types`]: dtypes, symbolic or static dims, tensor types.
//! * [`op`]: the op set and its semantics (read its module doc).
//! * [`GraphBuilder`]: the one checked way to add nodes; [`Graph::rewrite`]
//!   rebuilds a graph through it.
//! * [`verify`]: the written-down invariants.
//! * [`limits`]: how large a tensor may be (checked on every type a graph
//!   records, before anything is allocated).
//! * [`analysis`]: reachability and dead-code removal (petgraph).
//! * Text dump (`Display` for [`Graph`]) and bincode encoding
//!   ([`Graph::to_bytes`], [`Graph::from_bytes`]).
//!
//! Architecture Invariant: this crate knows nothing of ONNX, XLA, burn or
//! Neuron. It depends only on serde, bincode, petgraph and thiserror.

pub mod analysis;
mod builder;
pub mod contain;
mod error;
mod graph;
pub mod infer;
mod inline;
pub mod limits;
mod literal;
pub mod op;
pub mod semantics;
mod serialize;
pub mod text;
pub mod types;
pub mod verify;
mod weights;

pub use builder::{Copy, GraphBuilder, Rewrite};
pub use error::IrError;
pub use graph::{Graph, GraphOutput, Node, NodeId, WeightDecl};
pub use literal::{Literal, LiteralData, LiteralError, bf16_from_f32, bf16_to_f32, round_bf16};
pub use op::{BinaryOp, CompareDir, DotDims, Op, RANK_INPUT, ReduceOp, UnaryOp};
pub use serialize::FORMAT_VERSION;
pub use types::{DType, Dim, Shape, TensorType};
pub use weights::{WeightBytes, WeightEntry, WeightStore};
