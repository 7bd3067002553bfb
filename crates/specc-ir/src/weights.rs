//! Weight data, held outside the graph.
//!
//! A graph only declares its weights (name and type); the bytes live in a
//! [`WeightStore`] that backends read when they upload weights. Bytes are
//! little-endian and row-major. They may be views into a memory-mapped file
//! or left on disk until first read, so importing and compiling a model
//! never has to read weight values.

use crate::types::TensorType;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Where one weight's bytes are.
#[derive(Clone)]
pub enum WeightBytes {
    /// A range of a shared buffer (a memory-mapped file, say).
    Shared(Arc<dyn AsRef<[u8]> + Send + Sync>, Range<usize>),
    Owned(Arc<Vec<u8>>),
    /// `len` bytes at `offset` of a file, read on demand (ONNX external data).
    File {
        path: PathBuf,
        offset: u64,
        len: usize,
    },
}

impl std::fmt::Debug for WeightBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightBytes::Shared(_, r) => write!(f, "Shared({r:?})"),
            WeightBytes::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            WeightBytes::File { path, offset, len } => {
                write!(f, "File({}, {offset}, {len})", path.display())
            }
        }
    }
}

impl WeightBytes {
    pub fn len(&self) -> usize {
        match self {
            WeightBytes::Shared(_, r) => r.len(),
            WeightBytes::Owned(v) => v.len(),
            WeightBytes::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes (read from disk for `File`).
    pub fn read(&self) -> std::io::Result<Cow<'_, [u8]>> {
        match self {
            WeightBytes::Shared(buf, r) => Ok(Cow::Borrowed(&(**buf).as_ref()[r.clone()])),
            WeightBytes::Owned(v) => Ok(Cow::Borrowed(v.as_slice())),
            WeightBytes::File { path, offset, len } => {
                let mut f = std::fs::File::open(path)?;
                f.seek(SeekFrom::Start(*offset))?;
                let mut out = vec![0u8; *len];
                f.read_exact(&mut out)?;
                Ok(Cow::Owned(out))
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct WeightEntry {
    pub ty: TensorType,
    pub bytes: WeightBytes,
}

/// Weight data by name.
#[derive(Clone, Debug, Default)]
pub struct WeightStore {
    entries: HashMap<String, WeightEntry>,
}

impl WeightStore {
    pub fn new() -> WeightStore {
        WeightStore::default()
    }

    /// Adds a weight; its byte length must match its static type.
    pub fn insert(&mut self, name: impl Into<String>, ty: TensorType, bytes: WeightBytes) -> Result<(), String> {
        let name = name.into();
        let expected = ty.size_bytes().ok_or_else(|| format!("weight `{name}` has a non-static type {ty}"))?;
        if bytes.len() != expected {
            return Err(format!("weight `{name}` of type {ty} needs {expected} bytes, has {}", bytes.len()));
        }
        self.entries.insert(name, WeightEntry { ty, bytes });
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&WeightEntry> {
        self.entries.get(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}
