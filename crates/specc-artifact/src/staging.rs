//! Writing an artifact: every file goes to a staging directory beside the
//! target, and the commit swaps it into place atomically (see `output`).

use crate::fault::Steps;
use crate::manifest::{FileRef, MANIFEST, Manifest, Weights};
use crate::output::{self, Occupant, OutputPolicy, STAGING_MARKER};
use crate::{ArtifactError, io, sha256_file, sha256_hex};
use specc_ir::WeightStore;
use std::path::{Path, PathBuf};

/// An artifact being written. Dropped without [`Staging::commit`], it
/// removes everything it wrote.
pub struct Staging {
    tmp: PathBuf,
    target: PathBuf,
    policy: OutputPolicy,
    committed: bool,
    /// Leftovers of crashed compiles that were removed on the way in.
    removed: Vec<PathBuf>,
}

impl Staging {
    /// Checks that `target` may receive an artifact under `policy` (see
    /// `output`: nothing specc did not write is ever replaced), removes what
    /// crashed compiles left beside it, and makes the staging directory.
    pub fn new(target: &Path, policy: OutputPolicy) -> Result<Staging, ArtifactError> {
        output::check(target, &policy)?;
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let removed = output::remove_leftovers(target);
        let tmp = output::staging_path(target);
        // Our own PID's name: a leftover of a dead process that had it
        // (remove_leftovers skips it), or of this one.
        if tmp.join(STAGING_MARKER).is_file() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        let staging = Staging { tmp, target: target.to_path_buf(), policy, committed: false, removed };
        // First, so that a crash at any later point leaves a directory the
        // next compile recognises as its own.
        let marker = staging.path(STAGING_MARKER);
        std::fs::write(&marker, format!("specc staging for {}\n", target.display())).map_err(io(&marker))?;
        for d in ["graphs", "weights"] {
            let p = staging.path(d);
            std::fs::create_dir(&p).map_err(io(&p))?;
        }
        Ok(staging)
    }

    /// Staging directories of crashed compiles removed by [`Staging::new`].
    pub fn removed_leftovers(&self) -> &[PathBuf] {
        &self.removed
    }

    /// Where a file of the artifact is being written.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.join(rel)
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<FileRef, ArtifactError> {
        let p = self.path(rel);
        std::fs::write(&p, bytes).map_err(io(&p))?;
        Ok(FileRef { file: rel.into(), bytes: bytes.len() as u64, sha256: sha256_hex(bytes) })
    }

    /// Records a file something else wrote into the staging directory.
    pub fn adopt(&self, rel: &str) -> Result<FileRef, ArtifactError> {
        let (bytes, sha256) = sha256_file(&self.path(rel))?;
        Ok(FileRef { file: rel.into(), bytes, sha256 })
    }

    /// Copies the weights `names` from `store` into one safetensors file.
    pub fn write_weights(&self, rel: &str, store: &WeightStore, names: &[String]) -> Result<Weights, ArtifactError> {
        let p = self.path(rel);
        let total = crate::weights::write_safetensors(&p, store, names)?;
        Ok(Weights::Copied { file: self.adopt(rel)?, tensors: names.len(), bytes: total })
    }

    /// Writes `manifest.json` and swaps the directory into place
    /// atomically: at every instant the target path holds either what was
    /// there (nothing, or the complete old artifact) or the complete new
    /// one. Files in the staging directory that the manifest does not list
    /// (what neuronx-cc leaves in its working directory) are dropped first,
    /// so an artifact holds exactly what its manifest lists.
    pub fn commit(mut self, manifest: &Manifest) -> Result<(), ArtifactError> {
        let mut steps = Steps::new();
        let json = serde_json::to_string_pretty(manifest).expect("a manifest always serializes");
        let mp = self.path(MANIFEST);
        steps.step("write the manifest").map_err(io(&mp))?;
        write_synced(&mp, json.as_bytes()).map_err(io(&mp))?;
        self.prune(manifest)?;
        steps.step("flush the staging directory").map_err(io(&self.tmp))?;
        for d in [self.path("graphs"), self.path("weights"), self.tmp.clone()] {
            output::sync_dir(&d).map_err(io(&d))?;
        }
        let marker = self.path(STAGING_MARKER);
        steps.step("remove the staging marker").map_err(io(&marker))?;
        std::fs::remove_file(&marker).map_err(io(&marker))?;
        // Checked again: the path may have changed since the compile began.
        let occupant = output::check(&self.target, &self.policy)?;
        steps.step("swap the artifact into place").map_err(io(&self.target))?;
        let swapped = match occupant {
            Occupant::Nothing => output::rename_new(&self.tmp, &self.target).map(|()| false),
            // rename(2) replaces an empty directory in one step.
            Occupant::EmptyDir => std::fs::rename(&self.tmp, &self.target).map(|()| false),
            Occupant::Artifact => output::exchange(&self.tmp, &self.target).map(|()| true),
        };
        let swapped = swapped.map_err(|e| swap_error(&self.target, e))?;
        self.committed = true;
        let parent = self.target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        steps.step("flush the parent directory").map_err(io(parent))?;
        output::sync_dir(parent).map_err(io(parent))?;
        if swapped {
            // The staging path now holds the old artifact. Marked first, so
            // that if this removal is cut short the next compile finishes it.
            let _ = std::fs::write(self.path(STAGING_MARKER), "replaced artifact being removed\n");
            remove_tree(&self.tmp, &mut steps).map_err(io(&self.tmp))?;
        }
        Ok(())
    }

    /// Removes files of the staging directory that `manifest` does not
    /// list (the marker and manifest stay).
    fn prune(&self, manifest: &Manifest) -> Result<(), ArtifactError> {
        let listed: std::collections::BTreeSet<&str> = manifest.files().iter().map(|f| f.file.as_str()).collect();
        for dir in ["", "graphs", "weights"] {
            let d = self.path(dir);
            for e in std::fs::read_dir(&d).map_err(io(&d))?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
                let keep = listed.contains(rel.as_str())
                    || (dir.is_empty() && matches!(name.as_str(), "graphs" | "weights" | MANIFEST | STAGING_MARKER));
                if keep {
                    continue;
                }
                let p = e.path();
                let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                removed.map_err(io(&p))?;
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

fn swap_error(target: &Path, e: std::io::Error) -> ArtifactError {
    let unsupported = matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS))
        || e.kind() == std::io::ErrorKind::Unsupported;
    if unsupported {
        return ArtifactError::Occupied {
            path: target.display().to_string(),
            reason: format!(
                "the filesystem cannot swap two directories atomically ({e}), and specc does not replace an artifact in two steps (a crash between them would leave none); remove the old artifact first, or write to a new path"
            ),
        };
    }
    ArtifactError::Io { path: target.display().to_string(), source: e }
}

fn write_synced(p: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(p)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `remove_dir_all`, one filesystem step at a time (so the fault hook can
/// cut it short anywhere).
fn remove_tree(dir: &Path, steps: &mut Steps) -> std::io::Result<()> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        for e in std::fs::read_dir(&dirs[i])? {
            let e = e?;
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            } else {
                files.push(e.path());
            }
        }
        i += 1;
    }
    // The marker goes last but for the directory itself, so that an
    // interrupted removal is still recognised as specc's.
    let marker = dir.join(STAGING_MARKER);
    files.retain(|f| *f != marker);
    for f in files {
        steps.step("remove a file of the replaced artifact")?;
        std::fs::remove_file(f)?;
    }
    for d in dirs[1..].iter().rev() {
        steps.step("remove a directory of the replaced artifact")?;
        std::fs::remove_dir(d)?;
    }
    steps.step("remove the replaced artifact's marker")?;
    std::fs::remove_file(&marker)?;
    steps.step("remove the replaced artifact's directory")?;
    std::fs::remove_dir(dir)
}
