//! The output path of a compile: what may be replaced, and how.
//!
//! specc never deletes or hides a file it did not write. `-o DIR` may name
//! nothing yet, an empty directory, or a directory that holds a specc
//! artifact and nothing else (every file listed in its manifest); anything
//! else (a user's directory, the current directory, a regular file, a
//! symlink) is refused with what is there. An artifact compiled from other
//! models is replaced only with `--force`.
//!
//! Replacement is atomic: the new artifact is staged beside the target
//! (`.NAME.partial-PID`) and swapped with it in one `renameat2(...,
//! RENAME_EXCHANGE)` (`renamex_np(..., RENAME_SWAP)` on macOS), so the path
//! holds the complete old or the complete new artifact at every instant.
//! Where the filesystem cannot swap directories, specc refuses to replace
//! rather than do it in two steps. A staging directory left by a crashed
//! compile (its process is gone) is removed by the next compile to the same
//! path, if it is recognisably specc's.

use crate::ArtifactError;
use crate::manifest::{FORMAT, MANIFEST};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The file that marks a directory as specc's staging directory (removed
/// just before the swap).
pub(crate) const STAGING_MARKER: &str = ".specc-staging";

/// What a compile asks of its output path.
#[derive(Clone, Debug, Default)]
pub struct OutputPolicy {
    /// The models this compile reads (their paths, canonical where they
    /// exist): an artifact compiled from others is replaced only with
    /// `force`.
    pub sources: Vec<String>,
    /// Replace an artifact compiled from other models.
    pub force: bool,
}

/// What the output path holds now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Occupant {
    Nothing,
    EmptyDir,
    /// A specc artifact (replaced by an atomic swap).
    Artifact,
}

fn occupied(path: &Path, reason: String) -> ArtifactError {
    ArtifactError::Occupied { path: path.display().to_string(), reason }
}

/// Some of `names`, for an error message.
fn some(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Whether `target` may receive an artifact under `policy`, and what is
/// there now. Refuses, saying what is there, anything specc did not write.
pub(crate) fn check(target: &Path, policy: &OutputPolicy) -> Result<Occupant, ArtifactError> {
    if let (Ok(cwd), Ok(real)) = (std::env::current_dir(), std::fs::canonicalize(target))
        && let Ok(cwd) = std::fs::canonicalize(cwd)
        && cwd.starts_with(&real)
    {
        return Err(occupied(
            target,
            "it is the current directory or one that holds it; an artifact is replaced as a whole directory, so give it a directory of its own".into(),
        ));
    }
    if target.file_name().is_none() {
        return Err(occupied(
            target,
            "it does not name a directory of its own (give a new or existing artifact directory)".into(),
        ));
    }
    let meta = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Occupant::Nothing),
        Err(e) => return Err(ArtifactError::Io { path: target.display().to_string(), source: e }),
        Ok(m) => m,
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        let to = std::fs::read_link(target).map(|p| p.display().to_string()).unwrap_or_else(|_| "?".into());
        return Err(occupied(
            target,
            format!(
                "it is a symbolic link (to {to}); specc replaces only real directories it wrote: give the link's target or a new path"
            ),
        ));
    }
    if ft.is_file() {
        return Err(occupied(
            target,
            format!(
                "it is a regular file ({} bytes), not a specc artifact; specc will not replace it: choose another -o",
                meta.len()
            ),
        ));
    }
    if !ft.is_dir() {
        return Err(occupied(
            target,
            "it is not a regular file or directory (a device, FIFO or socket); specc will not replace it".into(),
        ));
    }
    let io = |source| ArtifactError::Io { path: target.display().to_string(), source };
    let mut top: Vec<String> = std::fs::read_dir(target)
        .map_err(io)?
        .take(6)
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    if top.is_empty() {
        return Ok(Occupant::EmptyDir);
    }
    let manifest_path = target.join(MANIFEST);
    let Some(listed) = manifest_files(&manifest_path) else {
        // Only the first few names: a directory like $HOME is not walked.
        top.sort();
        let more = if top.len() > 5 { " and more" } else { "" };
        top.truncate(5);
        return Err(occupied(
            target,
            format!(
                "it is a directory that is not a specc artifact (no specc {MANIFEST}) and holds {}{more}; specc will not replace it: choose another -o",
                top.join(", ")
            ),
        ));
    };
    let entries = list_tree(target)?;
    let foreign: Vec<String> = entries.into_iter().filter(|e| !listed.files.contains(e) && !is_ours(e)).collect();
    if !foreign.is_empty() {
        return Err(occupied(
            target,
            format!(
                "it is a specc artifact, but it also holds files the artifact does not list ({}); specc will not delete them: move them out, or choose another -o",
                some(&foreign)
            ),
        ));
    }
    if !policy.force && !policy.sources.is_empty() && !same_sources(&listed.sources, &policy.sources) {
        return Err(ArtifactError::OtherSources {
            path: target.display().to_string(),
            old: listed.sources.join(" + "),
            new: policy.sources.join(" + "),
        });
    }
    Ok(Occupant::Artifact)
}

/// Files specc writes into an artifact that its manifest does not list.
fn is_ours(rel: &str) -> bool {
    rel == MANIFEST || rel == STAGING_MARKER
}

/// What an existing manifest lists, read leniently (any format version, so
/// that an artifact of an older specc can be replaced too).
struct Listed {
    files: BTreeSet<String>,
    sources: Vec<String>,
}

fn manifest_files(path: &Path) -> Option<Listed> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > crate::read::MAX_MANIFEST_BYTES {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if v.get("format")?.as_str()? != FORMAT {
        return None;
    }
    let mut files = BTreeSet::new();
    collect_files(&v, &mut files);
    let sources = v
        .get("models")
        .and_then(|m| m.as_array())
        .map(|ms| ms.iter().filter_map(|m| m.get("source")?.as_str().map(String::from)).collect())
        .unwrap_or_default();
    Some(Listed { files, sources })
}

/// Every `"file"` string of a file reference (an object with `file`,
/// `bytes` and `sha256`) anywhere in the manifest.
fn collect_files(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(o) => {
            if let (Some(serde_json::Value::String(f)), true) = (o.get("file"), o.contains_key("sha256")) {
                out.insert(f.clone());
            }
            o.values().for_each(|x| collect_files(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_files(x, out)),
        _ => {}
    }
}

fn canonical(p: &str) -> String {
    std::fs::canonicalize(p).map(|c| c.display().to_string()).unwrap_or_else(|_| p.to_string())
}

fn same_sources(old: &[String], new: &[String]) -> bool {
    let old: BTreeSet<String> = old.iter().map(|s| canonical(s)).collect();
    let new: BTreeSet<String> = new.iter().map(|s| canonical(s)).collect();
    old == new
}

/// Every file and directory under `dir`, as paths relative to it (`/`
/// separated; directories end in `/` only when empty). Symlinks are
/// listed, never followed.
fn list_tree(dir: &Path) -> Result<Vec<String>, ArtifactError> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        let mut any = false;
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            any = true;
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            if e.file_type()?.is_dir() {
                walk(base, &path, out)?;
            } else {
                out.push(rel);
            }
        }
        if !any && dir != base {
            let rel = dir.strip_prefix(base).unwrap_or(dir).to_string_lossy().replace('\\', "/");
            out.push(format!("{rel}/"));
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out).map_err(|source| ArtifactError::Io { path: dir.display().to_string(), source })?;
    // Empty subdirectories of an artifact (graphs/, weights/) are specc's.
    out.retain(|e| !matches!(e.as_str(), "graphs/" | "weights/"));
    out.sort();
    Ok(out)
}

/// The staging directory of this process for `target`.
pub(crate) fn staging_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "artifact".into());
    target.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Removes staging directories that crashed compiles left beside `target`:
/// `.NAME.partial-PID` (and `.NAME.partial-PID.old`, from specc before the
/// atomic swap) whose process is gone, and which specc recognisably wrote
/// (its staging marker, or a specc artifact with nothing else). Anything
/// else is left alone. Returns what was removed.
pub(crate) fn remove_leftovers(target: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else { return vec![] };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let prefix = format!(".{}.partial-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else { return vec![] };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&prefix) else { continue };
        let Ok(pid) = rest.strip_suffix(".old").unwrap_or(rest).parse::<u32>() else { continue };
        let path = e.path();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if !is_dir || pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let marked = path.join(STAGING_MARKER).is_file();
        let artifact = check(&path, &OutputPolicy { sources: vec![], force: true }).is_ok();
        if (marked || artifact) && std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: kill with signal 0 sends nothing; it only asks whether the
    // process exists (EPERM: it does, owned by someone else).
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    // Unknown: never remove another process's directory.
    true
}

/// Moves `from` to `to`, which must not exist (atomically: fails if it
/// appeared meanwhile).
pub(crate) fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        renameat2(from, to, libc::RENAME_NOREPLACE)
    }
    #[cfg(target_os = "macos")]
    {
        renamex(from, to, libc::RENAME_EXCL)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        if to.exists() {
            return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
        }
        std::fs::rename(from, to)
    }
}

/// Swaps two directories atomically: afterwards `a` holds what `b` held and
/// `b` what `a` held.
pub(crate) fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        renameat2(a, b, libc::RENAME_EXCHANGE)
    }
    #[cfg(target_os = "macos")]
    {
        renamex(a, b, libc::RENAME_SWAP)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = (a, b);
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

#[cfg(unix)]
fn c_path(p: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

#[cfg(target_os = "linux")]
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let (f, t) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), flags) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(target_os = "macos")]
fn renamex(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let (f, t) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let r = unsafe { libc::renamex_np(f.as_ptr(), t.as_ptr(), flags) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Flushes a directory's entries (new names, renames) to disk.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
