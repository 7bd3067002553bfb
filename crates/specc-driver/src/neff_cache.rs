//! A cache of NEFFs shared by every `specc compile` on a machine: neuronx-cc
//! takes minutes per graph, and most recompiles (another artifact directory,
//! `--force`, one more K beside the old ones, a changed bucket) hand it
//! graphs it has already compiled.
//!
//! An entry is two files named by its key: `<key>.neff`, the compiler's
//! output byte for byte (so a hit can be hard-linked into the artifact), and
//! `<key>.sha256`, that file's checksum. The checksum is what turns a damaged
//! entry (truncated by a full disk, edited through a hard link) into a miss
//! with a warning instead of a NEFF that fails on the device. Entries are
//! written under temporary names in the cache directory and renamed, so a
//! concurrent or interrupted compile never exposes half a file.

use specc_artifact::{FileRef, Staging, sha256_hex};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the cache is, as the user asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheSetting {
    /// `$SPECC_NEFF_CACHE`, else `$XDG_CACHE_HOME/specc/neff`, else
    /// `~/.cache/specc/neff`.
    #[default]
    Default,
    /// `--neff-cache DIR`.
    Dir(PathBuf),
    /// `--no-neff-cache`.
    Off,
}

/// The cache directory, or why there is none.
pub fn location(setting: &CacheSetting) -> Result<PathBuf, String> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    match setting {
        CacheSetting::Off => Err("turned off by --no-neff-cache".into()),
        CacheSetting::Dir(d) => Ok(d.clone()),
        CacheSetting::Default => {
            if let Some(d) = var("SPECC_NEFF_CACHE") {
                return Ok(d);
            }
            // The XDG spec says to ignore a relative $XDG_CACHE_HOME.
            if let Some(d) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
                return Ok(d.join("specc/neff"));
            }
            match var("HOME") {
                Some(home) => Ok(home.join(".cache/specc/neff")),
                None => Err("no cache directory: none of $SPECC_NEFF_CACHE, $XDG_CACHE_HOME and $HOME is set (give --neff-cache DIR)".into()),
            }
        }
    }
}

/// The key of a NEFF: the SHA-256 of everything that decides its bytes.
///
/// * A schema tag, bumped if the key's parts or the entry format change, so
///   that an old entry is never read under a new meaning.
/// * The HLO proto (by its SHA-256, which the artifact computes anyway): the
///   compiler's only input, so every change to the model, the bound shapes,
///   the dtype, K, the buckets or specc's lowering shows up here. This is
///   also why the specc version is not part of the key: a specc that emits
///   the same HLO may reuse the NEFF.
/// * The flags (`--target`, `-O`, `--auto-cast`, `--model-type`, ...): they
///   change the generated code. The input, output and log file names are
///   left out: they differ per artifact directory for the same content, and
///   keeping them would make every new directory miss.
/// * The compiler's version (`neuronx-cc --version`): another release may
///   emit different code, or a NEFF the installed runtime cannot load.
///
/// Each part is length-prefixed so that no two lists of parts hash alike.
pub fn key(hlo_sha256: &str, flags: &[String], compiler_version: &str) -> String {
    let mut doc = String::from("specc-neff-cache 1\n");
    let mut part = |name: &str, value: &str| doc.push_str(&format!("{name} {}:{value}\n", value.len()));
    part("hlo-proto-sha256", hlo_sha256);
    for f in flags {
        part("flag", f);
    }
    part("compiler-version", compiler_version);
    sha256_hex(doc.as_bytes())
}

/// What a lookup found.
#[derive(Debug)]
pub enum Fetch {
    /// The NEFF is in the staging directory, checked against its checksum.
    Hit(FileRef),
    Miss,
    /// The entry is damaged or unreadable: a miss, and the reason to warn.
    Bad(String),
}

pub struct NeffCache {
    dir: PathBuf,
}

/// Makes temporary names unique between the worker threads of one process
/// (two graphs with the same HLO and flags share a key).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl NeffCache {
    pub fn new(dir: PathBuf) -> NeffCache {
        NeffCache { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry's NEFF file.
    pub fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.neff"))
    }

    fn checksum_file(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.sha256"))
    }

    /// Puts the entry's NEFF at `rel` in `staging` (hard-linked, else
    /// copied) and checks it. The check reads the placed file once, through
    /// `Staging::adopt`, which the artifact needs anyway for its manifest.
    pub fn fetch(&self, key: &str, staging: &Staging, rel: &str) -> Fetch {
        let (neff, sum) = (self.entry(key), self.checksum_file(key));
        let expected = match std::fs::read_to_string(&sum) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return if neff.exists() {
                    Fetch::Bad(format!("{} has no checksum file {}", neff.display(), sum.display()))
                } else {
                    Fetch::Miss
                };
            }
            Err(e) => return Fetch::Bad(format!("cannot read {}: {e}", sum.display())),
        };
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Fetch::Bad(format!("{} does not hold a SHA-256", sum.display()));
        }
        let dest = staging.path(rel);
        let _ = std::fs::remove_file(&dest);
        if let Err(e) = link_or_copy(&neff, &dest) {
            return Fetch::Bad(format!("cannot read {}: {e}", neff.display()));
        }
        match staging.adopt(rel) {
            Ok(f) if f.sha256 == expected => Fetch::Hit(f),
            Ok(f) => {
                // Remove the placed file before anyone writes there: it may
                // be a hard link to the entry.
                let _ = std::fs::remove_file(&dest);
                Fetch::Bad(format!(
                    "{} is corrupt: its SHA-256 is {} but {} records {expected}",
                    neff.display(),
                    f.sha256,
                    sum.display()
                ))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&dest);
                Fetch::Bad(e.to_string())
            }
        }
    }

    /// Stores `neff` (whose SHA-256 is `sha256`) under `key`: copied to
    /// temporary names in the cache directory, then renamed into place.
    /// It is copied, not linked, so that the artifact and the cache never
    /// share the file the compiler wrote.
    pub fn store(&self, key: &str, neff: &Path, sha256: &str) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = |ext: &str| self.dir.join(format!(".{key}.{}-{n}.{ext}.tmp", std::process::id()));
        let (tmp_neff, tmp_sum) = (tmp("neff"), tmp("sha256"));
        let result = (|| {
            std::fs::copy(neff, &tmp_neff)
                .map_err(|e| format!("cannot copy {} to {}: {e}", neff.display(), tmp_neff.display()))?;
            std::fs::write(&tmp_sum, format!("{sha256}\n"))
                .map_err(|e| format!("cannot write {}: {e}", tmp_sum.display()))?;
            // The NEFF first: a reader between the two renames sees a new
            // NEFF with an old (or no) checksum, which is a miss, never a
            // wrong hit.
            let (dest_neff, dest_sum) = (self.entry(key), self.checksum_file(key));
            std::fs::rename(&tmp_neff, &dest_neff)
                .map_err(|e| format!("cannot rename into {}: {e}", dest_neff.display()))?;
            std::fs::rename(&tmp_sum, &dest_sum).map_err(|e| format!("cannot rename into {}: {e}", dest_sum.display()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp_neff);
            let _ = std::fs::remove_file(&tmp_sum);
        }
        result
    }
}

/// A hard link saves the copy (NEFFs can be large); across file systems, or
/// where links are refused, a copy.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(e),
        Err(_) => std::fs::copy(from, to).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_part_changes_the_key_and_paths_are_not_parts() {
        let flags: Vec<String> = ["--target", "trn1", "-O2"].map(String::from).to_vec();
        let base = key("ab", &flags, "2.21");
        assert_eq!(base, key("ab", &flags, "2.21"));
        assert_ne!(base, key("ac", &flags, "2.21"));
        assert_ne!(base, key("ab", &["--target", "trn1", "-O1"].map(String::from), "2.21"));
        assert_ne!(base, key("ab", &flags, "2.22"));
        // Length prefixes: moving text between parts changes the key.
        assert_ne!(key("ab", &["x y".into()], "v"), key("ab", &["x".into(), "y".into()], "v"));
    }

    #[test]
    fn an_explicit_directory_wins_and_off_says_why() {
        assert_eq!(location(&CacheSetting::Dir("/c".into())), Ok(PathBuf::from("/c")));
        assert!(location(&CacheSetting::Off).unwrap_err().contains("--no-neff-cache"));
    }
}
