//! The subcommands. Each returns what it would print, so tests can check
//! the text users see.

pub mod bench;
pub mod compile;
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

/// Parses repeated `--dim name=value` flags.
pub fn parse_dims(dims: &[String]) -> Result<specc_opt::Bindings, String> {
    let mut b = specc_opt::Bindings::new();
    for d in dims {
        let (n, v) = specc_opt::Bindings::parse_one(d)?;
        if b.0.insert(n.clone(), v).is_some() {
            return Err(format!("--dim {n} is given twice"));
        }
    }
    Ok(b)
}

/// The artifact's tokenizer (checksummed on read), when it has one.
fn artifact_text<E>(artifact: &specc_artifact::Artifact) -> Result<Option<crate::text::Text>, E>
where
    E: From<specc_artifact::ArtifactError> + From<crate::text::TextError>,
{
    let Some(f) = &artifact.manifest.tokenizer else { return Ok(None) };
    let origin = artifact.dir.join(&f.file).display().to_string();
    Ok(Some(crate::text::Text::from_bytes(&artifact.read(f)?, &origin)?))
}
