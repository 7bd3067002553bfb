//! Reading an artifact: the manifest is checked on open (`check`), every
//! file against its size and checksum when read.

use crate::manifest::{FORMAT, FORMAT_VERSION, GraphEntry, MANIFEST, Manifest, Weights};
use crate::weights::from_st_dtype;
use crate::{ArtifactError, io, sha256_hex};
use specc_ir::contain::brief;
use specc_ir::{DType, Graph, TensorType, WeightBytes, WeightStore};
use std::path::{Path, PathBuf};

/// Larger than any manifest specc writes (about 100 KB per graph).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// An artifact opened for reading; its manifest is checked.
#[derive(Debug)]
pub struct Artifact {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Artifact {
    /// Opens `dir` and checks its manifest: the format and version, every
    /// path (inside the artifact; linked weights inside their model's
    /// directory), every size against the tensor limit, every index and
    /// cross-reference, and each listed file's presence and size. Nothing
    /// outside the artifact is read.
    pub fn open(dir: &Path) -> Result<Artifact, ArtifactError> {
        let shown = dir.display().to_string();
        if !dir.is_dir() {
            return Err(ArtifactError::NotAnArtifact { dir: shown, detail: "no such directory".into() });
        }
        let mp = dir.join(MANIFEST);
        let meta = match std::fs::symlink_metadata(&mp) {
            Ok(m) => m,
            Err(_) => {
                return Err(ArtifactError::NotAnArtifact {
                    dir: shown,
                    detail: format!("it has no {MANIFEST} (an unfinished or failed compile leaves none)"),
                });
            }
        };
        if !meta.is_file() {
            return Err(ArtifactError::NotAnArtifact {
                dir: shown,
                detail: format!("its {MANIFEST} is not a regular file"),
            });
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(ArtifactError::Corrupt {
                file: mp.display().to_string(),
                detail: format!("{} bytes, larger than any manifest specc writes", meta.len()),
            });
        }
        let text = std::fs::read_to_string(&mp).map_err(io(&mp))?;
        let raw: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ArtifactError::Corrupt { file: mp.display().to_string(), detail: brief(e) })?;
        if raw.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(ArtifactError::NotAnArtifact {
                dir: shown,
                detail: format!("{MANIFEST} is not a {FORMAT} manifest"),
            });
        }
        let found = raw.get("format_version").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != FORMAT_VERSION as u64 {
            let found = u32::try_from(found).unwrap_or(u32::MAX);
            return Err(ArtifactError::Version { dir: shown, found, supported: FORMAT_VERSION });
        }
        let manifest: Manifest = serde_json::from_value(raw)
            .map_err(|e| ArtifactError::Corrupt { file: mp.display().to_string(), detail: brief(e) })?;
        crate::check::manifest(dir, &manifest)?;
        Ok(Artifact { dir: dir.to_path_buf(), manifest })
    }

    /// A file's bytes, checked against its size and checksum.
    pub fn read(&self, f: &crate::FileRef) -> Result<Vec<u8>, ArtifactError> {
        let p = self.dir.join(&f.file);
        let bytes = std::fs::read(&p).map_err(|_| ArtifactError::Missing { file: p.display().to_string() })?;
        let sum = sha256_hex(&bytes);
        if bytes.len() as u64 != f.bytes || sum != f.sha256 {
            return Err(ArtifactError::Corrupt {
                file: p.display().to_string(),
                detail: format!(
                    "checksum {sum} ({} bytes), the manifest says {} ({} bytes)",
                    bytes.len(),
                    f.sha256,
                    f.bytes
                ),
            });
        }
        Ok(bytes)
    }

    /// The IR of a graph (verified on decoding), checked against the
    /// graph's manifest entry: the same inputs, weights and outputs, in
    /// order, with the same types. A backend may then trust the entry.
    pub fn graph_ir(&self, g: &GraphEntry) -> Result<Graph, ArtifactError> {
        let bytes = self.read(&g.ir)?;
        let graph = Graph::from_bytes(&bytes)
            .map_err(|e| ArtifactError::Corrupt { file: g.ir.file.clone(), detail: e.to_string() })?;
        crate::check::graph_matches_entry(&graph, g)
            .map_err(|detail| ArtifactError::Inconsistent { dir: self.dir.display().to_string(), detail })?;
        Ok(graph)
    }

    /// The weights of a model as a store (copied weights are checked first);
    /// for a sharded model, rank 0's.
    pub fn weights(&self, model: &str) -> Result<WeightStore, ArtifactError> {
        self.rank_weights(model, 0)
    }

    /// The weights rank `rank` holds of a model: all of them for a model
    /// that is not sharded (replicated on every rank), else the replicated
    /// ones and the rank's blocks.
    pub fn rank_weights(&self, model: &str, rank: usize) -> Result<WeightStore, ArtifactError> {
        let mut store = self.replicated_weights(model)?;
        if let Some(blocks) = self.rank_blocks(model, rank)? {
            for name in blocks.names().map(String::from).collect::<Vec<_>>() {
                let e = blocks.get(&name).expect("listed");
                store
                    .insert(name, e.ty.clone(), e.bytes.clone())
                    .map_err(|detail| ArtifactError::Inconsistent { dir: self.dir.display().to_string(), detail })?;
            }
        }
        Ok(store)
    }

    /// The weights every rank of a sharded model holds alike (all of them
    /// for a model that is not sharded).
    fn replicated_weights(&self, model: &str) -> Result<WeightStore, ArtifactError> {
        match &self.manifest.model(model)?.weights {
            Weights::Sharded { replicated, .. } => self.store(model, replicated),
            w => self.store(model, w),
        }
    }

    /// Rank `rank`'s own blocks of a sharded model's split weights; `None`
    /// for a model whose weights are whole on every rank.
    fn rank_blocks(&self, model: &str, rank: usize) -> Result<Option<WeightStore>, ArtifactError> {
        match &self.manifest.model(model)?.weights {
            Weights::Sharded { ranks, .. } => {
                let part = ranks.get(rank).ok_or_else(|| ArtifactError::Inconsistent {
                    dir: self.dir.display().to_string(),
                    detail: format!("model `{model}` has {} rank(s), rank {rank} was asked for", ranks.len()),
                })?;
                self.store(model, part).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Every rank's view of a model's weights, each file read (and
    /// checksummed) once: what a backend loading all ranks uses, instead of
    /// `rank_weights` per rank (which would read the replicated file again
    /// for every rank).
    pub fn rank_stores(&self, model: &str) -> Result<RankWeights, ArtifactError> {
        let blocks = match &self.manifest.model(model)?.weights {
            Weights::Sharded { ranks, .. } => {
                ranks.iter().map(|part| self.store(model, part)).collect::<Result<_, _>>()?
            }
            _ => vec![],
        };
        Ok(RankWeights { replicated: self.replicated_weights(model)?, blocks })
    }

    /// The store of one part of a model's weights.
    fn store(&self, model: &str, weights: &Weights) -> Result<WeightStore, ArtifactError> {
        let mut store = WeightStore::new();
        match weights {
            Weights::Sharded { .. } => {
                return Err(ArtifactError::Inconsistent {
                    dir: self.dir.display().to_string(),
                    detail: format!("model `{model}` has sharded weights inside sharded weights"),
                });
            }
            Weights::ShapeOnly { .. } => {
                return Err(ArtifactError::ShapeOnly { dir: self.dir.display().to_string(), model: model.into() });
            }
            Weights::Copied { file, .. } => {
                let bytes = std::sync::Arc::new(self.read(file)?);
                let st = safetensors::SafeTensors::deserialize(&bytes)
                    .map_err(|e| ArtifactError::Corrupt { file: file.file.clone(), detail: brief(e) })?;
                let base = bytes.as_ptr() as usize;
                let mut entries = Vec::new();
                for (name, view) in st.tensors() {
                    let dtype = from_st_dtype(view.dtype()).ok_or_else(|| ArtifactError::Corrupt {
                        file: file.file.clone(),
                        detail: format!("`{name}` has dtype {:?}", view.dtype()),
                    })?;
                    specc_ir::limits::check_dims(dtype, view.shape(), || format!("weight `{name}`"))
                        .map_err(|e| ArtifactError::Corrupt { file: file.file.clone(), detail: brief(e) })?;
                    let start = view.data().as_ptr() as usize - base;
                    entries.push((name, TensorType::fixed(dtype, view.shape()), start..start + view.data().len()));
                }
                for (name, ty, range) in entries {
                    let shared: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync> = bytes.clone();
                    store
                        .insert(name, ty, WeightBytes::Shared(shared, range))
                        .map_err(|detail| ArtifactError::Corrupt { file: file.file.clone(), detail })?;
                }
            }
            Weights::Linked { tensors, files, .. } => {
                // Paths, sizes and ranges were checked on open; checked
                // again here in case a file changed since.
                for (f, size) in files {
                    let meta = std::fs::metadata(f).map_err(|_| ArtifactError::Missing { file: f.clone() })?;
                    if meta.len() != *size {
                        return Err(ArtifactError::Corrupt {
                            file: f.clone(),
                            detail: format!("{} bytes, linked at {size}", meta.len()),
                        });
                    }
                }
                for t in tensors {
                    let dtype = DType::from_name(&t.dtype).ok_or_else(|| ArtifactError::Corrupt {
                        file: MANIFEST.into(),
                        detail: format!("dtype {}", t.dtype),
                    })?;
                    let len = usize::try_from(t.length).map_err(|_| ArtifactError::Corrupt {
                        file: MANIFEST.into(),
                        detail: format!("linked weight `{}` of {} bytes", t.name, t.length),
                    })?;
                    let bytes = WeightBytes::File { path: PathBuf::from(&t.file), offset: t.offset, len };
                    store
                        .insert(t.name.clone(), TensorType::fixed(dtype, &t.shape), bytes)
                        .map_err(|detail| ArtifactError::Corrupt { file: MANIFEST.into(), detail })?;
                }
            }
        }
        Ok(store)
    }
}

/// A model's weights as its ranks hold them (see [`Artifact::rank_stores`]).
pub struct RankWeights {
    /// What every rank holds alike (everything, for a model not sharded).
    pub replicated: WeightStore,
    /// Per rank, its blocks of the split weights (empty when not sharded).
    pub blocks: Vec<WeightStore>,
}

impl RankWeights {
    /// Rank `rank`'s `name`: its block of a split weight, else the weight
    /// every rank holds.
    pub fn get(&self, rank: usize, name: &str) -> Option<&specc_ir::WeightEntry> {
        self.blocks.get(rank).and_then(|b| b.get(name)).or_else(|| self.replicated.get(name))
    }
}
