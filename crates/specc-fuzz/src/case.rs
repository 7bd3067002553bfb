//! A fuzz case: a small tree of files (an ONNX model with its external
//! data, or a whole artifact), written to a directory for each run and
//! saved as one when it crashes (so `specc-fuzz repro` and the regression
//! tests replay it exactly).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>),
    /// A symbolic link to this target (a path that leads out, a device).
    Symlink(String),
    /// A named pipe (reading it would block forever).
    Fifo,
}

/// Relative path (`/`-separated) -> entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Case {
    pub entries: BTreeMap<String, Entry>,
}

impl Case {
    pub fn file(&self, rel: &str) -> Option<&Vec<u8>> {
        match self.entries.get(rel) {
            Some(Entry::File(b)) => Some(b),
            _ => None,
        }
    }

    /// The bytes of its files.
    pub fn bytes(&self) -> usize {
        self.entries.values().map(|e| if let Entry::File(b) = e { b.len() } else { 0 }).sum()
    }

    pub fn set(&mut self, rel: &str, bytes: Vec<u8>) {
        self.entries.insert(rel.to_string(), Entry::File(bytes));
    }

    /// A short content hash (names saved cases; derives per-case choices so
    /// that a replay takes the same path).
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.entries {
            h.update(k.as_bytes());
            h.update([0]);
            match v {
                Entry::File(b) => {
                    h.update([1]);
                    h.update((b.len() as u64).to_le_bytes());
                    h.update(b);
                }
                Entry::Symlink(t) => {
                    h.update([2]);
                    h.update(t.as_bytes());
                }
                Entry::Fifo => h.update([3]),
            }
        }
        h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Reads every file under `dir` (symlinks and FIFOs as such).
    pub fn load(dir: &Path) -> std::io::Result<Case> {
        let mut case = Case::default();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let e = e?;
                let p = e.path();
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                let t = e.file_type()?;
                if t.is_symlink() {
                    case.entries.insert(rel, Entry::Symlink(std::fs::read_link(&p)?.display().to_string()));
                } else if t.is_dir() {
                    stack.push(p);
                } else if t.is_file() {
                    case.entries.insert(rel, Entry::File(std::fs::read(&p)?));
                } else {
                    case.entries.insert(rel, Entry::Fifo);
                }
            }
        }
        Ok(case)
    }

    /// Writes the case into `dir` (which must not exist).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (rel, e) in &self.entries {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match e {
                Entry::File(b) => std::fs::write(&p, b)?,
                #[cfg(unix)]
                Entry::Symlink(t) => std::os::unix::fs::symlink(t, &p)?,
                #[cfg(unix)]
                Entry::Fifo => {
                    use std::os::unix::ffi::OsStrExt;
                    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
                    // SAFETY: a valid NUL-terminated path.
                    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                #[cfg(not(unix))]
                _ => {}
            }
        }
        Ok(())
    }
}
