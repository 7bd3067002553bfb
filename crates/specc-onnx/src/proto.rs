//! Reading the ONNX wire format (onnx-ir's `ModelProto`): element types,
//! value types with their symbolic dim names, tensors and attributes.
//!
//! onnx-ir's typed graph renames every value and node and drops `dim_param`
//! names; specc needs the real names (weights, KV-cache inputs, errors that
//! point at a node), so it reads the protobuf model directly.

use crate::error::ImportError;
use onnx_ir::{AttributeProto, NodeProto, TensorProto, ValueInfoProto};
use specc_ir::{DType, Dim, Literal, Shape, TensorType, WeightBytes};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ONNX `TensorProto.DataType` codes (onnx.proto).
pub mod elem {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
}

pub fn elem_name(code: i32) -> String {
    match code {
        elem::FLOAT => "float32".into(),
        elem::UINT8 => "uint8".into(),
        elem::INT8 => "int8".into(),
        elem::UINT16 => "uint16".into(),
        elem::INT16 => "int16".into(),
        elem::INT32 => "int32".into(),
        elem::INT64 => "int64".into(),
        elem::STRING => "string".into(),
        elem::BOOL => "bool".into(),
        elem::FLOAT16 => "float16".into(),
        elem::DOUBLE => "float64".into(),
        elem::UINT32 => "uint32".into(),
        elem::UINT64 => "uint64".into(),
        elem::BFLOAT16 => "bfloat16".into(),
        other => format!("element type {other}"),
    }
}

/// The IR dtype of an ONNX element type, if specc computes with it.
pub fn dtype_of(code: i32) -> Option<DType> {
    match code {
        elem::FLOAT => Some(DType::F32),
        elem::INT32 => Some(DType::I32),
        elem::INT64 => Some(DType::I64),
        elem::BOOL => Some(DType::Bool),
        elem::BFLOAT16 => Some(DType::BF16),
        _ => None,
    }
}

/// The type of a graph input or output, keeping `dim_param` names. A dim
/// with neither value nor name gets `fresh()`.
pub fn value_type(vi: &ValueInfoProto, fresh: &mut dyn FnMut() -> Dim) -> Result<TensorType, ImportError> {
    if !vi.type_.has_tensor_type() {
        return Err(ImportError::UnsupportedType {
            what: format!("value `{}`", vi.name),
            ty: "a non-tensor type".into(),
        });
    }
    let t = vi.type_.tensor_type();
    let dtype = dtype_of(t.elem_type).ok_or_else(|| ImportError::UnsupportedType {
        what: format!("value `{}`", vi.name),
        ty: elem_name(t.elem_type),
    })?;
    let Some(shape) = t.shape.as_ref() else {
        return Err(ImportError::Invalid(format!("value `{}` has no shape (its rank must be known)", vi.name)));
    };
    let dims = shape
        .dim
        .iter()
        .map(|d| {
            if d.has_dim_value() && d.dim_value() >= 0 {
                Dim::Fixed(d.dim_value() as usize)
            } else if !d.dim_param().is_empty() {
                Dim::Sym(d.dim_param().to_string())
            } else {
                fresh()
            }
        })
        .collect();
    Ok(TensorType::new(dtype, Shape(dims)))
}

/// A tensor's content: either a literal (small, or integer) or weight bytes.
pub enum TensorValue {
    Literal(Literal),
    Weight(TensorType, WeightBytes),
}

/// Float tensors with more elements than this become weights, smaller ones
/// stay inline as constants (shape arithmetic needs them folded).
pub const INLINE_LIMIT: usize = 64;

fn tensor_err(name: &str, msg: impl Into<String>) -> ImportError {
    ImportError::Invalid(format!("tensor `{name}`: {}", msg.into()))
}

/// Where a model's external data may be read from.
///
/// onnxruntime refuses an external-data location that leaves the model's
/// directory, and so does specc by default: otherwise an ONNX file could
/// make specc read any file on the machine (`../../etc/passwd`, an absolute
/// path, a symlink inside the directory that points out of it) into an
/// artifact.
#[derive(Clone, Debug, Default)]
pub struct ExternalData {
    /// The model's directory; locations are relative to it. None for a
    /// model parsed from bytes: it has no directory, so external data is
    /// refused.
    pub dir: Option<PathBuf>,
    /// Read locations outside `dir` too (`--allow-external-data-outside`,
    /// for users who really keep weights elsewhere); each one is reported
    /// in `warnings`.
    pub anywhere: bool,
}

impl ExternalData {
    /// The policy for a model file: its directory, nothing outside it.
    pub fn beside(model: &Path) -> ExternalData {
        ExternalData { dir: Some(model.parent().unwrap_or(Path::new(".")).to_path_buf()), anywhere: false }
    }

    /// The file a tensor's external data `location` names, after following
    /// symlinks; refused unless it is a regular file inside the model's
    /// directory (or `anywhere` is set, in which case a warning is
    /// returned with it).
    pub fn resolve(&self, tensor: &str, location: &str) -> Result<(PathBuf, Option<String>), ImportError> {
        let refuse =
            |detail: String| ImportError::ExternalData { tensor: tensor.into(), location: location.into(), detail };
        let Some(dir) = &self.dir else {
            return Err(refuse("cannot be resolved: the model was read from memory, not from a directory".into()));
        };
        if location.is_empty() {
            return Err(refuse("is empty".into()));
        }
        let given = Path::new(location);
        let absolute = given.is_absolute() || given.has_root();
        if absolute && !self.anywhere {
            return Err(refuse(format!(
                "is an absolute path; external data must be named relative to the model's directory {} (onnxruntime refuses it too; --allow-external-data-outside reads it anyway)",
                dir.display()
            )));
        }
        // `..` that climbs out is refused before the filesystem is asked
        // anything (so the error does not even tell whether it exists).
        let mut depth = 0i64;
        for c in given.components() {
            match c {
                std::path::Component::ParentDir => depth -= 1,
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 && !self.anywhere {
                return Err(refuse(format!(
                    "climbs out of the model's directory {} (onnxruntime refuses such locations too; --allow-external-data-outside reads it anyway)",
                    dir.display()
                )));
            }
        }
        let joined = dir.join(given);
        let real = std::fs::canonicalize(&joined)
            .map_err(|e| refuse(format!("cannot be opened as {}: {e}", joined.display())))?;
        let meta = std::fs::metadata(&real).map_err(|e| refuse(format!("{}: {e}", real.display())))?;
        if !meta.is_file() {
            return Err(refuse(format!("is {}, not a regular file", real.display())));
        }
        let home =
            std::fs::canonicalize(dir).map_err(|e| refuse(format!("the model's directory {}: {e}", dir.display())))?;
        if real.starts_with(&home) {
            return Ok((real, None));
        }
        if !self.anywhere {
            return Err(refuse(format!(
                "resolves to {}, outside the model's directory {} (onnxruntime refuses such locations too; --allow-external-data-outside reads it anyway)",
                real.display(),
                home.display()
            )));
        }
        let warning = format!(
            "tensor `{tensor}`: external data location `{location}` is read from {}, outside the model's directory {} (allowed by --allow-external-data-outside)",
            real.display(),
            home.display()
        );
        Ok((real, Some(warning)))
    }
}

/// Decodes a tensor; external data is found through `external`, and a
/// warning about where it came from, if any, is pushed on `warnings`.
/// `keep_inline` forces a literal whatever its size.
pub fn tensor_value(
    t: &TensorProto,
    external: &ExternalData,
    keep_inline: bool,
    warnings: &mut Vec<String>,
) -> Result<TensorValue, ImportError> {
    let name = t.name.as_str();
    let dtype = dtype_of(t.data_type)
        .ok_or_else(|| ImportError::UnsupportedType { what: format!("tensor `{name}`"), ty: elem_name(t.data_type) })?;
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| tensor_err(name, format!("negative dim {d}"))))
        .collect::<Result<_, _>>()?;
    // Before anything is read or allocated: a shape whose element count
    // wraps around 2^64 would otherwise pass every later length check.
    let n = specc_ir::limits::check_dims(dtype, &shape, || format!("tensor `{name}` of shape {shape:?}"))
        .map_err(|e| ImportError::Invalid(e.to_string()))?;
    let nbytes = n * dtype.size_bytes();
    let ty = TensorType::fixed(dtype, &shape);
    let as_weight = !keep_inline && dtype == DType::F32 && n > INLINE_LIMIT;

    let external_data = t.data_location.value() == 1 || !t.external_data.is_empty();
    let bytes: WeightBytes = if external_data {
        let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
        let location = get("location").ok_or_else(|| tensor_err(name, "external data without a location"))?;
        let offset: u64 = get("offset")
            .map(|s| s.parse())
            .transpose()
            .map_err(|_| tensor_err(name, "bad external offset"))?
            .unwrap_or(0);
        let length: Option<usize> =
            get("length").map(|s| s.parse()).transpose().map_err(|_| tensor_err(name, "bad external length"))?;
        if length.is_some_and(|l| l != nbytes) {
            return Err(tensor_err(name, format!("external length {length:?} but {ty} needs {nbytes} bytes")));
        }
        let (path, warning) = external.resolve(name, &location)?;
        warnings.extend(warning);
        let size = std::fs::metadata(&path)
            .map_err(|e| tensor_err(name, format!("external data file {}: {e}", path.display())))?
            .len();
        if offset.checked_add(nbytes as u64).is_none_or(|end| end > size) {
            return Err(tensor_err(
                name,
                format!(
                    "external data {}: {nbytes} bytes at offset {offset} pass the end ({size} bytes)",
                    path.display()
                ),
            ));
        }
        WeightBytes::File { path, offset, len: nbytes }
    } else if !t.raw_data.is_empty() || n == 0 {
        if t.raw_data.len() != nbytes {
            return Err(tensor_err(name, format!("raw_data has {} bytes, {ty} needs {nbytes}", t.raw_data.len())));
        }
        WeightBytes::Shared(Arc::new(t.raw_data.clone()), 0..nbytes)
    } else {
        let raw: Vec<u8> = match dtype {
            DType::F32 => t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::I64 => t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::I32 => t.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::Bool => t.int32_data.iter().map(|&v| (v != 0) as u8).collect(),
            // ONNX keeps bf16 bit patterns in int32_data.
            DType::BF16 => t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect(),
        };
        if raw.len() != nbytes {
            return Err(tensor_err(name, format!("holds {} bytes of data, {ty} needs {nbytes}", raw.len())));
        }
        WeightBytes::Owned(Arc::new(raw))
    };
    if as_weight {
        return Ok(TensorValue::Weight(ty, bytes));
    }
    let raw = bytes.read().map_err(|e| tensor_err(name, format!("cannot read data: {e}")))?;
    Literal::from_le_bytes(dtype, shape, &raw).map(TensorValue::Literal).map_err(|e| tensor_err(name, e.to_string()))
}

/// Typed access to a node's attributes.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Attrs<'a> {
        Attrs { node }
    }

    pub fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).map(|a| a.i)
    }

    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.int(name).unwrap_or(default)
    }

    pub fn float_or(&self, name: &str, default: f32) -> f32 {
        self.get(name).map(|a| a.f).unwrap_or(default)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    pub fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
}

/// Reads a serialized `TensorProto` file (the `.pb` files of ONNX test
/// cases) as a literal.
pub fn read_tensor_file(path: &Path) -> Result<Literal, ImportError> {
    use onnx_ir::Message;
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io { path: shown.clone(), source })?;
    let t = TensorProto::parse_from_bytes(&bytes)
        .map_err(|e| ImportError::NotOnnx { path: shown, detail: e.to_string() })?;
    match tensor_value(&t, &ExternalData::beside(path), true, &mut vec![])? {
        TensorValue::Literal(l) => Ok(l),
        TensorValue::Weight(..) => unreachable!("keep_inline gives literals"),
    }
}
