//! Named tensors in safetensors files, as host literals.
//!
//! safetensors is what `specc eval` reads and writes, and what the fixture
//! references are stored in, so that any runtime (onnxruntime, PyTorch, XLA)
//! can be compared with specc without Python on this side.

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use specc_ir::{DType, Literal};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TensorIoError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path} is not a valid safetensors file: {detail}")]
    Format { path: String, detail: String },
    #[error("{path}: tensor `{name}` has dtype {dtype:?}; specc reads F32, BF16, I32, I64 and BOOL")]
    Dtype { path: String, name: String, dtype: Dtype },
}

fn dtype_of(d: Dtype) -> Option<DType> {
    match d {
        Dtype::F32 => Some(DType::F32),
        Dtype::I32 => Some(DType::I32),
        Dtype::I64 => Some(DType::I64),
        Dtype::BOOL => Some(DType::Bool),
        Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// Every tensor of a safetensors file, sorted by name.
pub fn read(path: &Path) -> Result<Vec<(String, Literal)>, TensorIoError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TensorIoError::Read { path: shown.clone(), source })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| TensorIoError::Format { path: shown.clone(), detail: e.to_string() })?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let dtype = dtype_of(view.dtype()).ok_or_else(|| TensorIoError::Dtype {
            path: shown.clone(),
            name: name.clone(),
            dtype: view.dtype(),
        })?;
        let lit = Literal::from_le_bytes(dtype, view.shape().to_vec(), view.data())
            .map_err(|e| TensorIoError::Format { path: shown.clone(), detail: format!("tensor `{name}`: {e}") })?;
        out.push((name, lit));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn le_bytes(l: &Literal) -> (Dtype, Vec<u8>) {
    let dtype = match l.dtype() {
        DType::F32 => Dtype::F32,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::Bool => Dtype::BOOL,
        DType::BF16 => Dtype::BF16,
    };
    (dtype, l.to_le_bytes())
}

/// Writes tensors atomically (a temporary file renamed into place).
pub fn write(path: &Path, tensors: &[(String, Literal)]) -> Result<(), TensorIoError> {
    let shown = path.display().to_string();
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, l)| {
            let (d, b) = le_bytes(l);
            (n.clone(), d, l.shape.clone(), b)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).expect("consistent view")))
        .collect();
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| TensorIoError::Format { path: shown.clone(), detail: e.to_string() })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TensorIoError::Write { path: shown.clone(), source })?;
    }
    let tmp = path.with_extension("safetensors.partial");
    std::fs::write(&tmp, bytes).map_err(|source| TensorIoError::Write { path: shown.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| TensorIoError::Write { path: shown, source })
}
