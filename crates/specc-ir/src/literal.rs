//! Literals: small tensors held inside the graph (constants, folded shape
//! arithmetic). Weights are never literals; see `Op::Weight`.

use crate::types::{DType, Shape, TensorType};
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

/// Row-major data of one element type.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LiteralData {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    /// bfloat16 bit patterns.
    BF16(Vec<u16>),
}

/// bf16 bits of `x`, rounded to nearest even (NaN stays a quiet NaN).
pub fn bf16_from_f32(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x40;
    }
    let lsb = (b >> 16) & 1;
    ((b + 0x7fff + lsb) >> 16) as u16
}

/// The f32 value of bf16 bits (exact).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// `x` rounded to the nearest bf16 value.
pub fn round_bf16(x: f32) -> f32 {
    bf16_to_f32(bf16_from_f32(x))
}

impl LiteralData {
    pub fn dtype(&self) -> DType {
        match self {
            LiteralData::Bool(_) => DType::Bool,
            LiteralData::I32(_) => DType::I32,
            LiteralData::I64(_) => DType::I64,
            LiteralData::F32(_) => DType::F32,
            LiteralData::BF16(_) => DType::BF16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            LiteralData::Bool(v) => v.len(),
            LiteralData::I32(v) => v.len(),
            LiteralData::I64(v) => v.len(),
            LiteralData::F32(v) => v.len(),
            LiteralData::BF16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The element count of `shape`, saturating at `usize::MAX`: a shape whose
/// count overflows then never matches real data (and its type is refused
/// by the size check, `crate::limits`).
pub(crate) fn elements(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |a, &b| a.saturating_mul(b))
}

/// A static tensor value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Literal {
    pub shape: Vec<usize>,
    pub data: LiteralData,
}

/// Why a literal could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("literal of shape {shape:?} needs {expected} {unit}, got {got}")]
pub struct LiteralError {
    pub shape: Vec<usize>,
    pub expected: usize,
    pub got: usize,
    /// `elements`, or `bytes` for raw data.
    pub unit: &'static str,
}

impl Literal {
    /// From little-endian bytes, the layout safetensors, ONNX `raw_data` and
    /// the Neuron runtime's tensors share (bool: one byte per element).
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, raw: &[u8]) -> Result<Literal, LiteralError> {
        let expected = elements(&shape).saturating_mul(dtype.size_bytes());
        if raw.len() != expected {
            return Err(LiteralError { shape, expected, got: raw.len(), unit: "bytes" });
        }
        let data = match dtype {
            DType::F32 => {
                LiteralData::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
            }
            DType::I32 => {
                LiteralData::I32(raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect())
            }
            DType::I64 => {
                LiteralData::I64(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
            }
            DType::Bool => LiteralData::Bool(raw.iter().map(|&b| b != 0).collect()),
            DType::BF16 => {
                LiteralData::BF16(raw.chunks_exact(2).map(|c| u16::from_le_bytes(c.try_into().unwrap())).collect())
            }
        };
        Ok(Literal { shape, data })
    }

    /// The little-endian bytes of the data (see [`Literal::from_le_bytes`]).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.data {
            LiteralData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            LiteralData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            LiteralData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            LiteralData::Bool(v) => v.iter().map(|&x| x as u8).collect(),
            LiteralData::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    pub fn new(shape: Vec<usize>, data: LiteralData) -> Result<Literal, LiteralError> {
        let expected = elements(&shape);
        if expected != data.len() {
            return Err(LiteralError { shape, expected, got: data.len(), unit: "elements" });
        }
        Ok(Literal { shape, data })
    }

    pub fn scalar_f32(v: f32) -> Literal {
        Literal { shape: vec![], data: LiteralData::F32(vec![v]) }
    }

    pub fn scalar_i64(v: i64) -> Literal {
        Literal { shape: vec![], data: LiteralData::I64(vec![v]) }
    }

    pub fn scalar_i32(v: i32) -> Literal {
        Literal { shape: vec![], data: LiteralData::I32(vec![v]) }
    }

    pub fn scalar_bool(v: bool) -> Literal {
        Literal { shape: vec![], data: LiteralData::Bool(vec![v]) }
    }

    /// A scalar of `dtype` holding `v` (converted as `as` would).
    pub fn scalar_of(dtype: DType, v: f64) -> Literal {
        let data = match dtype {
            DType::Bool => LiteralData::Bool(vec![v != 0.0]),
            DType::I32 => LiteralData::I32(vec![v as i32]),
            DType::I64 => LiteralData::I64(vec![v as i64]),
            DType::F32 => LiteralData::F32(vec![v as f32]),
            DType::BF16 => LiteralData::BF16(vec![bf16_from_f32(v as f32)]),
        };
        Literal { shape: vec![], data }
    }

    pub fn vec_i64(v: Vec<i64>) -> Literal {
        Literal { shape: vec![v.len()], data: LiteralData::I64(v) }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), Shape::fixed(&self.shape))
    }

    pub fn num_elements(&self) -> usize {
        self.data.len()
    }

    /// The values as i64, for integer and boolean literals (shape arithmetic).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        match &self.data {
            LiteralData::I64(v) => Some(v.clone()),
            LiteralData::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            LiteralData::Bool(v) => Some(v.iter().map(|&x| x as i64).collect()),
            LiteralData::F32(_) | LiteralData::BF16(_) => None,
        }
    }

    /// The values as f64 (exact for every type the IR has).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            LiteralData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            LiteralData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            LiteralData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
            LiteralData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            LiteralData::BF16(v) => v.iter().map(|&x| bf16_to_f32(x) as f64).collect(),
        }
    }

    /// The single value of a one-element literal, as f64.
    pub fn scalar_value(&self) -> Option<f64> {
        (self.num_elements() == 1).then(|| self.to_f64_vec()[0])
    }

    /// Whether every element equals `v`.
    pub fn is_splat_of(&self, v: f64) -> bool {
        self.to_f64_vec().iter().all(|&x| x == v)
    }
}

// Equality and hashing compare floats by bit pattern, so that common
// subexpression elimination never merges 0.0 with -0.0 and treats equal NaNs
// as equal.
impl PartialEq for Literal {
    fn eq(&self, other: &Literal) -> bool {
        if self.shape != other.shape {
            return false;
        }
        match (&self.data, &other.data) {
            (LiteralData::Bool(a), LiteralData::Bool(b)) => a == b,
            (LiteralData::I32(a), LiteralData::I32(b)) => a == b,
            (LiteralData::I64(a), LiteralData::I64(b)) => a == b,
            (LiteralData::BF16(a), LiteralData::BF16(b)) => a == b,
            (LiteralData::F32(a), LiteralData::F32(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        }
    }
}

impl Eq for Literal {}

impl Hash for Literal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.shape.hash(state);
        match &self.data {
            LiteralData::Bool(v) => (0u8, v).hash(state),
            LiteralData::I32(v) => (1u8, v).hash(state),
            LiteralData::I64(v) => (2u8, v).hash(state),
            LiteralData::BF16(v) => (4u8, v).hash(state),
            LiteralData::F32(v) => {
                3u8.hash(state);
                for x in v {
                    x.to_bits().hash(state);
                }
            }
        }
    }
}
