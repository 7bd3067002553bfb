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
    /// The artifact's HLO on an XLA PJRT plugin (CPU, CUDA, Neuron).
    Pjrt(specc_exec::PjrtOptions),
    /// The best one present: neuron when libnrt loads and the artifact has
    /// NEFFs, else pjrt when a plugin is installed, else reference.
    Auto { neuron: specc_exec::NeuronOptions, pjrt: specc_exec::PjrtOptions },
}

/// The backend a run uses, once `Auto` has chosen.
#[derive(Clone, Debug)]
pub(crate) enum Chosen {
    Reference,
    Neuron(specc_exec::NeuronOptions),
    Pjrt(specc_exec::PjrtOptions),
}

impl Device {
    /// The backend to use for `artifact`, and why (for the run summary).
    /// Only `Auto` chooses; the others are what the user asked for.
    pub(crate) fn resolve(&self, artifact: &specc_artifact::Artifact) -> (Chosen, String) {
        let asked = "--backend as given".to_string();
        let (neuron, pjrt) = match self {
            Device::Reference => return (Chosen::Reference, asked),
            Device::Neuron(n) => return (Chosen::Neuron(n.clone()), asked),
            Device::Pjrt(p) => return (Chosen::Pjrt(p.clone()), asked),
            Device::Auto { neuron, pjrt } => (neuron, pjrt),
        };
        let has_neffs = artifact.manifest.graphs.iter().all(|g| g.neff.is_some());
        let libnrt = specc_exec::Neuron::find_library(neuron);
        if let (Some(lib), true) = (&libnrt, has_neffs) {
            return (
                Chosen::Neuron(neuron.clone()),
                format!("--backend auto: {} loads and the artifact has NEFFs", lib.display()),
            );
        }
        let why_not_neuron = match libnrt {
            None => "no libnrt",
            Some(_) => "the artifact has no NEFFs (compile on a machine with neuronx-cc)",
        };
        match specc_exec::pjrt::available(pjrt) {
            Some(_) => {
                (Chosen::Pjrt(pjrt.clone()), format!("--backend auto: {why_not_neuron}, a PJRT plugin is installed"))
            }
            None => (
                Chosen::Reference,
                format!(
                    "--backend auto: {why_not_neuron}, no PJRT plugin (pip install xla-cpu-pjrt for XLA's CPU speed)"
                ),
            ),
        }
    }
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
