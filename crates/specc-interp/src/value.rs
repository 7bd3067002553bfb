//! Run-time values: burn tensor primitives tagged by kind, and their
//! conversion to and from host [`Literal`]s.

use burn_backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn_backend::{Backend, DType as BDType, TensorData, TensorMetadata};
use specc_ir::{DType, Literal, LiteralData};

/// A burn tensor primitive of one of the three kinds.
pub enum Prim<B: Backend> {
    F32(FloatTensor<B>),
    /// `I32` or `I64`; the primitive carries which.
    Int(IntTensor<B>),
    Bool(BoolTensor<B>),
}

impl<B: Backend> Clone for Prim<B> {
    fn clone(&self) -> Self {
        match self {
            Prim::F32(t) => Prim::F32(t.clone()),
            Prim::Int(t) => Prim::Int(t.clone()),
            Prim::Bool(t) => Prim::Bool(t.clone()),
        }
    }
}

/// One tensor of the interpreter: a primitive and its logical shape.
///
/// burn-ndarray has no rank-0 tensors, so a scalar is held as a `[1]`
/// primitive; the logical shape is the truth and kernels compute it
/// themselves.
pub struct Value<B: Backend> {
    pub prim: Prim<B>,
    shape: Vec<usize>,
    /// bf16 values live in f32 primitives, rounded to bf16 precision.
    bf16: bool,
}

impl<B: Backend> Clone for Value<B> {
    fn clone(&self) -> Self {
        Value { prim: self.prim.clone(), shape: self.shape.clone(), bf16: self.bf16 }
    }
}

/// The primitive's shape for a logical shape.
pub fn physical(shape: &[usize]) -> Vec<usize> {
    if shape.is_empty() { vec![1] } else { shape.to_vec() }
}

impl<B: Backend> std::fmt::Debug for Value<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{:?}", self.dtype(), self.shape())
    }
}

pub(crate) fn ir_dtype(d: BDType) -> DType {
    match d {
        BDType::F32 => DType::F32,
        BDType::I32 => DType::I32,
        BDType::I64 => DType::I64,
        BDType::Bool(_) => DType::Bool,
        other => unreachable!("the interpreter never makes {other:?} tensors"),
    }
}

impl<B: Backend> Value<B> {
    /// Wraps a primitive whose physical shape is `physical(&shape)`.
    pub fn new(prim: Prim<B>, shape: Vec<usize>) -> Value<B> {
        Value { prim, shape, bf16: false }
    }

    /// Marks an f32 value whose elements are bf16-representable as bf16.
    pub fn as_bf16(mut self) -> Value<B> {
        debug_assert!(matches!(self.prim, Prim::F32(_)));
        self.bf16 = true;
        self
    }

    /// The same elements, typed f32.
    pub fn as_f32(mut self) -> Value<B> {
        self.bf16 = false;
        self
    }

    pub fn dtype(&self) -> DType {
        match &self.prim {
            Prim::F32(_) if self.bf16 => DType::BF16,
            Prim::F32(_) => DType::F32,
            Prim::Int(t) => ir_dtype(t.dtype()),
            Prim::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The primitive's own shape (a check for kernels).
    pub fn physical_shape(&self) -> Vec<usize> {
        match &self.prim {
            Prim::F32(t) => t.shape().to_vec(),
            Prim::Int(t) => t.shape().to_vec(),
            Prim::Bool(t) => t.shape().to_vec(),
        }
    }

    pub fn num_elements(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn from_literal(l: &Literal, device: &B::Device) -> Value<B> {
        let shape = physical(&l.shape);
        let prim = match &l.data {
            LiteralData::F32(v) => Prim::F32(B::float_from_data(TensorData::new(v.clone(), shape), device)),
            LiteralData::I32(v) => Prim::Int(B::int_from_data(TensorData::new(v.clone(), shape), device)),
            LiteralData::I64(v) => Prim::Int(B::int_from_data(TensorData::new(v.clone(), shape), device)),
            LiteralData::Bool(v) => Prim::Bool(B::bool_from_data(TensorData::new(v.clone(), shape), device)),
            LiteralData::BF16(v) => {
                let f: Vec<f32> = v.iter().map(|&b| specc_ir::bf16_to_f32(b)).collect();
                Prim::F32(B::float_from_data(TensorData::new(f, shape), device))
            }
        };
        Value { prim, shape: l.shape.clone(), bf16: l.dtype() == DType::BF16 }
    }

    /// Builds a value from little-endian row-major bytes.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8], device: &B::Device) -> Value<B> {
        fn words<const N: usize, T>(b: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N).map(|c| f(c.try_into().expect("chunk of N bytes"))).collect()
        }
        let data = match dtype {
            DType::F32 => LiteralData::F32(words(bytes, f32::from_le_bytes)),
            DType::I32 => LiteralData::I32(words(bytes, i32::from_le_bytes)),
            DType::I64 => LiteralData::I64(words(bytes, i64::from_le_bytes)),
            DType::Bool => LiteralData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::BF16 => LiteralData::BF16(words(bytes, u16::from_le_bytes)),
        };
        Value::from_literal(&Literal { shape: shape.to_vec(), data }, device)
    }

    /// Reads the value back to the host.
    pub fn to_literal(&self) -> Literal {
        let shape = self.shape();
        let data = match &self.prim {
            Prim::F32(t) => read(B::float_into_data(t.clone())),
            Prim::Int(t) => read(B::int_into_data(t.clone())),
            Prim::Bool(t) => read(B::bool_into_data(t.clone())),
        };
        let data = match self.dtype() {
            DType::F32 => LiteralData::F32(data.try_to_vec::<f32>().expect("f32 data")),
            DType::I32 => LiteralData::I32(data.try_to_vec::<i32>().expect("i32 data")),
            DType::I64 => LiteralData::I64(data.try_to_vec::<i64>().expect("i64 data")),
            DType::Bool => LiteralData::Bool(bools(&data)),
            DType::BF16 => LiteralData::BF16(
                data.try_to_vec::<f32>().expect("f32 data").into_iter().map(specc_ir::bf16_from_f32).collect(),
            ),
        };
        Literal { shape, data }
    }

    /// Integer or boolean contents as i64 (for index and shape operands).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        self.to_literal().to_i64_vec().unwrap_or_default()
    }
}

/// A boolean tensor's values, however the backend stores them: burn-flex
/// hands some boolean results back as `u8` data, which `try_to_vec::<bool>`
/// refuses.
fn bools(data: &TensorData) -> Vec<bool> {
    let bytes = data.as_bytes();
    match data.dtype() {
        BDType::U32 | BDType::Bool(burn_backend::BoolStore::U32) => {
            bytes.chunks_exact(4).map(|c| c.iter().any(|&b| b != 0)).collect()
        }
        _ => bytes.iter().map(|&b| b != 0).collect(),
    }
}

fn read(f: impl std::future::Future<Output = Result<TensorData, burn_backend::ExecutionError>> + Send) -> TensorData {
    burn_backend::read_sync(f).expect("CPU backends cannot fail to read a tensor")
}
