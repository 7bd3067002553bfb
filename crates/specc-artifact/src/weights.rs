//! Weights in an artifact: copied into a safetensors file, linked where
//! they are in the source's external data, or shape-only.

use crate::ArtifactError;
use crate::manifest::{LinkedTensor, ShapeTensor, Weights};
use specc_ir::{DType, WeightBytes, WeightStore};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) fn st_dtype(d: DType) -> safetensors::Dtype {
    match d {
        DType::F32 => safetensors::Dtype::F32,
        DType::I32 => safetensors::Dtype::I32,
        DType::I64 => safetensors::Dtype::I64,
        DType::Bool => safetensors::Dtype::BOOL,
        DType::BF16 => safetensors::Dtype::BF16,
    }
}

pub(crate) fn from_st_dtype(d: safetensors::Dtype) -> Option<DType> {
    match d {
        safetensors::Dtype::F32 => Some(DType::F32),
        safetensors::Dtype::I32 => Some(DType::I32),
        safetensors::Dtype::I64 => Some(DType::I64),
        safetensors::Dtype::BOOL => Some(DType::Bool),
        safetensors::Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// Writes the weights `names` of `store` into one safetensors file at `p`;
/// returns their bytes.
pub(crate) fn write_safetensors(p: &Path, store: &WeightStore, names: &[String]) -> Result<u64, ArtifactError> {
    let mut data = Vec::with_capacity(names.len());
    for n in names {
        let e = store.get(n).ok_or_else(|| ArtifactError::Missing { file: format!("weight data for `{n}`") })?;
        let bytes = e.bytes.read().map_err(|source| ArtifactError::Io { path: format!("weight `{n}`"), source })?;
        data.push((n.clone(), e.ty.clone(), bytes));
    }
    let mut views = Vec::with_capacity(data.len());
    for (n, ty, b) in &data {
        let shape = ty.shape.as_fixed().expect("weights are static");
        let view = safetensors::tensor::TensorView::new(st_dtype(ty.dtype), shape, b)
            .map_err(|e| ArtifactError::Corrupt { file: format!("weight `{n}`"), detail: e.to_string() })?;
        views.push((n.clone(), view));
    }
    safetensors::serialize_to_file(views, None, p).map_err(|e| ArtifactError::Io {
        path: p.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(data.iter().map(|(_, _, b)| b.len() as u64).sum())
}

/// Linked weights: where each weight's bytes are in its source file.
/// `outside` records that the import was allowed to read external data
/// outside the model's directory (otherwise every file lies inside it, and
/// reading the artifact checks that again).
pub fn link_weights(store: &WeightStore, names: &[String], outside: bool) -> Result<Weights, ArtifactError> {
    let mut tensors = Vec::new();
    let mut files = BTreeMap::new();
    for n in names {
        let e = store.get(n).ok_or_else(|| ArtifactError::Missing { file: format!("weight data for `{n}`") })?;
        let WeightBytes::File { path, offset, len } = &e.bytes else {
            return Err(ArtifactError::CannotLink(n.clone()));
        };
        let abs = std::fs::canonicalize(path).map_err(crate::io(path))?;
        let size = std::fs::metadata(&abs).map_err(crate::io(&abs))?.len();
        files.insert(abs.display().to_string(), size);
        tensors.push(LinkedTensor {
            name: n.clone(),
            dtype: e.ty.dtype.name().into(),
            shape: e.ty.shape.as_fixed().expect("static"),
            file: abs.display().to_string(),
            offset: *offset,
            length: *len as u64,
        });
    }
    Ok(Weights::Linked { tensors, files, outside })
}

/// Shape-only weights: names, dtypes (`dtype` replaces f32, as the artifact
/// stores them) and shapes of `names`; nothing is read.
pub fn shape_only_weights(store: &WeightStore, names: &[String], dtype: DType) -> Result<Weights, ArtifactError> {
    let mut decls = Vec::new();
    for n in names {
        let e = store.get(n).ok_or_else(|| ArtifactError::Missing { file: format!("weight declaration for `{n}`") })?;
        decls.push((n.clone(), e.ty.clone()));
    }
    Ok(shape_only_from(&decls, dtype))
}

/// Shape-only weights from each weight's name and type (`dtype` replacing
/// f32): a sharded model's rank blocks are described without cutting them.
pub fn shape_only_from(decls: &[(String, specc_ir::TensorType)], dtype: DType) -> Weights {
    let mut tensors = Vec::new();
    let mut bytes = 0u64;
    for (n, ty) in decls {
        let d = if ty.dtype == DType::F32 { dtype } else { ty.dtype };
        let shape = ty.shape.as_fixed().expect("static");
        let n_el = shape.iter().fold(1u64, |a, &b| a.saturating_mul(b as u64));
        bytes = bytes.saturating_add(n_el.saturating_mul(d.size_bytes() as u64));
        tensors.push(ShapeTensor { name: n.clone(), dtype: d.name().into(), shape });
    }
    Weights::ShapeOnly { tensors, bytes }
}
