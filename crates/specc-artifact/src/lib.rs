//! The artifact directory `specc compile` writes and `specc run` reads.
//!
//! ```text
//! out/
//!   manifest.json               written last: its presence means complete
//!   graphs/<graph>.hlo.pb       HloModuleProto, the input of neuronx-cc
//!   graphs/<graph>.hlo.txt      the same module as HLO text
//!   graphs/<graph>.ir           the IR (bincode) for the reference backend
//!   graphs/<graph>.neff         when neuronx-cc ran, with its log beside it
//!   weights/<model>.safetensors the weights (or, with linked weights, a
//!                               table of where they are in the source files)
//! ```
//!
//! - [`manifest`]: the manifest's types.
//! - [`Staging`] (`staging`): writing, then an atomic swap into place;
//!   `output` decides what an output path may hold (never a user's files).
//! - [`Artifact`] (`read`): opening checks the manifest before anything is
//!   used (`check`: paths stay inside the artifact, sizes within limits,
//!   indices in range); every file carries its size and SHA-256, verified
//!   when read, so a truncated or edited file is refused by name.

mod check;
pub mod fault;
pub mod manifest;
mod output;
mod read;
mod staging;
mod weights;

pub use manifest::*;
pub use output::OutputPolicy;
pub use read::{Artifact, RankWeights};
pub use staging::Staging;
pub use weights::{link_weights, shape_only_from, shape_only_weights};

use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{dir} is not a specc artifact: {detail}")]
    NotAnArtifact { dir: String, detail: String },
    #[error(
        "{dir} was written in artifact format version {found}; this specc reads version {supported} (recompile it)"
    )]
    Version { dir: String, found: u32, supported: u32 },
    #[error("artifact file {file} is missing")]
    Missing { file: String },
    #[error("artifact file {file} is corrupt: {detail}")]
    Corrupt { file: String, detail: String },
    #[error("{dir}/{MANIFEST} is inconsistent: {detail} (was it edited by hand? recompile the artifact)")]
    Inconsistent { dir: String, detail: String },
    #[error(
        "{dir}/{MANIFEST} names the file `{file}`, which {detail}; specc reads only files inside the artifact (and linked weights inside their model's directory)"
    )]
    UnsafePath { dir: String, file: String, detail: String },
    #[error("cannot write the artifact to {path}: {reason}")]
    Occupied { path: String, reason: String },
    #[error(
        "{path} holds an artifact compiled from {old}, not from {new}; pass --force to replace it, or choose another -o"
    )]
    OtherSources { path: String, old: String, new: String },
    #[error(
        "weight `{0}` is stored inside the ONNX file: only weights stored as ONNX external data can be linked (use --weights copy)"
    )]
    CannotLink(String),
    #[error("artifact has no graph named `{0}`")]
    NoGraph(String),
    #[error("artifact has no model named `{0}`")]
    NoModel(String),
    #[error(
        "model `{model}` of the artifact in {dir} is shape-only (compiled with --weights none): it has no weight data, so it can be estimated (`specc estimate`) but not run; recompile with --weights copy or --weights link"
    )]
    ShapeOnly { dir: String, model: String },
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io { path: path.display().to_string(), source }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256_file(path: &Path) -> Result<(u64, String), ArtifactError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}
