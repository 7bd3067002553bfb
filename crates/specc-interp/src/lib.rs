//! The reference interpreter: executes specc IR exactly, on any burn
//! backend (`burn-ndarray` by default; `burn-flex` runs the same code).
//!
//! It is the oracle the rest of specc is checked against (HLO on XLA, the
//! speculative executor), so it implements the IR's semantics as written in
//! `specc_ir::op`, including the cases where burn, ONNX and XLA differ, and
//! it refuses (with an error naming the node) what the IR calls invalid,
//! such as out-of-range indices.
//!
//! Architecture Invariant: the interpreter implements each IR op once, in
//! `kernels`; constant folding reuses it rather than having its own
//! arithmetic.

pub mod kernels;
mod session;
mod value;

pub use session::{InterpError, Session, fold, output_index};
pub use value::Value;

/// The default CPU backend.
#[allow(deprecated)]
pub type Cpu = burn_ndarray::NdArray;

/// The default device of [`Cpu`].
#[allow(deprecated)]
pub fn cpu_device() -> <Cpu as burn_backend::BackendTypes>::Device {
    Default::default()
}
