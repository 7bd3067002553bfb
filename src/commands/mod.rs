//! The subcommands. Each returns what it would print, so tests can check
//! the text users see.

pub mod bench;
pub mod estimate;
pub mod eval;
pub mod inspect;
pub mod run;

/// The backend `run` and `bench` execute on.
#[derive(Clone, Debug)]
pub enum Device {
    /// The reference interpreter on the CPU (any machine).
    Reference,
    /// The artifact's NEFFs on a NeuronCore through libnrt.
    Neuron(specc_exec::NeuronOptions),
}

/// The artifact's tokenizer (checksummed on read), when it has one.
fn artifact_text<E>(artifact: &specc_artifact::Artifact) -> Result<Option<specc_driver::text::Text>, E>
where
    E: From<specc_artifact::ArtifactError> + From<specc_driver::text::TextError>,
{
    let Some(f) = &artifact.manifest.tokenizer else { return Ok(None) };
    let origin = artifact.dir.join(&f.file).display().to_string();
    Ok(Some(specc_driver::text::Text::from_bytes(&artifact.read(f)?, &origin)?))
}
