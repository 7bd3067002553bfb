//! XLA HLO emission: static specc IR -> an HLO [`Module`], printed as HLO
//! text (for people, tests and XLA's parser) and as a serialized
//! `HloModuleProto` (for neuronx-cc).
//!
//! Architecture Invariant: text and proto are printed from the same
//! [`Module`] value by `print`, never built separately, so they cannot
//! describe different programs.
//!
//! Architecture Invariant: weights are entry parameters, never constants:
//! emitting HLO never reads weight values.

mod lower;
pub mod module;
mod print;
pub mod proto;
mod target;

pub use lower::{LowerError, elem_of, lower};
pub use module::{Alias, Module};
pub use print::{shape_text, to_proto, to_proto_bytes, to_text};
pub use target::{MAX_INSTRUCTIONS, Target, Violation, check};
