//! Reading the ONNX wire format (onnx-ir's `ModelProto`): element types,
//! value types with their symbolic dim names, tensors and attributes.
//!
//! onnx-ir's typed graph renames every value and node and drops `dim_param`
//! names; specc needs the real names (weights, KV-cache inputs, errors that
//! point at a node), so it reads the protobuf model directly.

use crate::error::ImportError;
use onnx_ir::{AttributeProto, NodeProto, TensorProto, ValueInfoProto};
use specc_ir::{DType, Dim, Literal, Shape, TensorType, WeightBytes};
use std::path::Path;
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

/// Decodes a tensor. `dir` is the model's directory (for external data);
/// `keep_inline` forces a literal whatever its size.
pub fn tensor_value(t: &TensorProto, dir: Option<&Path>, keep_inline: bool) -> Result<TensorValue, ImportError> {
    let name = t.name.as_str();
    let dtype = dtype_of(t.data_type)
        .ok_or_else(|| ImportError::UnsupportedType { what: format!("tensor `{name}`"), ty: elem_name(t.data_type) })?;
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| tensor_err(name, format!("negative dim {d}"))))
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let nbytes = n * dtype.size_bytes();
    let ty = TensorType::fixed(dtype, &shape);
    let as_weight = !keep_inline && dtype == DType::F32 && n > INLINE_LIMIT;

    let external = t.data_location.value() == 1 || !t.external_data.is_empty();
    let bytes: WeightBytes = if external {
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
        let path = dir.unwrap_or(Path::new(".")).join(&location);
        let size = std::fs::metadata(&path)
            .map_err(|e| tensor_err(name, format!("external data file {}: {e}", path.display())))?
            .len();
        if offset + nbytes as u64 > size {
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
    match tensor_value(&t, path.parent(), true)? {
        TensorValue::Literal(l) => Ok(l),
        TensorValue::Weight(..) => unreachable!("keep_inline gives literals"),
    }
}
