//! The executor: runs a generation artifact on a [`Backend`] (the reference
//! interpreter, or the Neuron runtime through libnrt) with the
//! draft->verify loop of [`Engine`], reporting vLLM-named [`Metrics`].
//!
//! Architecture Invariant: the loop never changes a token the target chose;
//! speculation only decides how many of the target's choices one device
//! call yields.

mod backend;
mod engine;
pub mod lookup;
mod metrics;
pub mod neuron;
pub mod pjrt;
mod reference;

pub use backend::{Backend, BackendError};
pub use engine::{Engine, ExecError, GenerateOptions, Generation, Mode, Sampling, StopReason, SyntheticAcceptance};
pub use metrics::Metrics;
pub use neuron::{Neuron, NeuronError, NeuronOptions};
pub use pjrt::{Pjrt, PjrtOptions};
pub use reference::Reference;
