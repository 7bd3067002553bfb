//! The device interface the generation loop runs on.
//!
//! A backend holds a loaded artifact: each model's weights uploaded once and
//! shared by all its graphs, every graph ready to run, and the state (the
//! KV caches) allocated once and kept on the device. A call names a graph
//! and passes only the small per-call tensors (tokens, position, seed) by
//! parameter name; state parameters are bound by name to the resident state,
//! and outputs aliased to them update it in place and are never returned.
//! This is exactly what the Neuron runtime does (tensors bound by name in
//! input and output sets, the same device tensor in both for aliased
//! caches), so a device backend fits without changing the loop.

use specc_artifact::{Artifact, ArtifactError};
use specc_ir::Literal;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("graph `{graph}`: {message}")]
    Graph { graph: String, message: String },
    #[error("no graph named `{0}` is loaded")]
    NoGraph(String),
    #[error(transparent)]
    Neuron(Box<crate::neuron::NeuronError>),
    #[error(transparent)]
    Pjrt(Box<crate::pjrt::PjrtBackendError>),
}

pub trait Backend {
    /// A short name for reports (`reference`, `neuron`).
    fn name(&self) -> &'static str;

    /// What runs the graphs, for the run summary (after `load`): the
    /// library, device or plugin, and how it was found.
    fn description(&self) -> String {
        self.name().to_string()
    }

    /// Uploads every model's weights once, loads every graph, allocates the
    /// state.
    fn load(&mut self, artifact: &Artifact) -> Result<(), BackendError>;

    /// Makes `graphs` ready to run, before any timed call. A backend that
    /// compiles lazily (PJRT) compiles them here, once; the others did all
    /// of it at load. Unknown names are ignored (`execute` reports them).
    fn prepare(&mut self, graphs: &[String]) -> Result<(), BackendError> {
        let _ = graphs;
        Ok(())
    }

    /// Runs `graph` with the per-call `inputs` (by parameter name); returns
    /// the outputs that are not state, by name.
    fn execute(&mut self, graph: &str, inputs: &[(&str, &Literal)]) -> Result<Vec<(String, Literal)>, BackendError>;
}
