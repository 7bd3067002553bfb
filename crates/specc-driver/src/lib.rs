//! What specc's commands do, as a library: the CLI is a thin shell over it,
//! and the tests (and the server) call the same functions users run.
//!
//! - [`compile`]: the compile pipeline's orchestration (import, specialize,
//!   the speculation graphs, target passes, lowering, the artifact written
//!   atomically, neuronx-cc per graph).
//! - [`neuronx`] and [`neff_cache`]: the neuronx-cc driver and the NEFF
//!   cache keyed by HLO, flags and compiler version.
//! - `tensor_parallel` (`--tp`, its options re-exported by [`compile`]):
//!   which models are sharded and how the compile reports it.
//! - [`text`]: the model's `tokenizer.json` (text exists only at the edges).

pub mod compile;
pub mod neff_cache;
pub mod neuronx;
mod tensor_parallel;
pub mod text;

/// specc's version, with the git commit it was built from when known.
pub const VERSION: &str = env!("SPECC_VERSION");
