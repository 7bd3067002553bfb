//! XLA HLO emission (work in progress).
pub mod proto;
