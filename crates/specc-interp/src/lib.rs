//! The reference interpreter: executes specc IR exactly, on any burn
//! backend (`burn-flex` by default, `burn-ndarray` runs the same code and
//! the tests compare the two).
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
mod ranks;
mod session;
pub mod skinny;
mod value;

pub use ranks::RankGroup;
pub use session::{InterpError, Profile, Session, fold, output_index};
pub use value::Value;

/// The default CPU backend: burn-flex. On the fixtures it runs a decode
/// step about 10x faster than burn-ndarray (see BENCHMARKS.md), mostly
/// because its matmul does not repack the weight for every call.
pub type Cpu = burn_flex::Flex;

/// burn-ndarray, the design card's backend; the tests run both and compare.
#[allow(deprecated)]
pub type NdArray = burn_ndarray::NdArray;

/// The default device of [`Cpu`].
pub fn cpu_device() -> <Cpu as burn_backend::BackendTypes>::Device {
    Default::default()
}
