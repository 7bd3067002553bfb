//! Element types, dimensions and tensor types.
//!
//! A dimension is either a number or a symbol. Named symbols come from the
//! model (ONNX `dim_param`, e.g. `sequence_length`); anonymous symbols (their
//! names start with `?`) are made by shape inference where a size is only
//! known at run time (the result of a reshape to a computed shape, say).
//! Specialization replaces every symbol by a number.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The element types the IR computes with.
///
/// Architecture Invariant: the set is closed; every `match` on it is
/// exhaustive so that adding a type stops the build until the interpreter,
/// the verifier and every lowering handle it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum DType {
    /// Booleans (HLO `pred`).
    Bool,
    I32,
    I64,
    F32,
    /// bfloat16. Arithmetic on bf16 values is done in f32 and rounded to
    /// bf16 (round to nearest even); a dot of bf16 operands accumulates and
    /// returns f32.
    BF16,
}

impl DType {
    pub const ALL: [DType; 5] = [DType::Bool, DType::I32, DType::I64, DType::F32, DType::BF16];

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::BF16)
    }

    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    pub fn size_bytes(self) -> usize {
        match self {
            DType::Bool => 1,
            DType::BF16 => 2,
            DType::I32 | DType::F32 => 4,
            DType::I64 => 8,
        }
    }

    /// The HLO spelling, also used by the text dump.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "pred",
            DType::I32 => "s32",
            DType::I64 => "s64",
            DType::F32 => "f32",
            DType::BF16 => "bf16",
        }
    }

    /// The dtype [`DType::name`] spells `name` (manifests store that name).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dim {
    Fixed(usize),
    /// A size known only at run time; see the module doc.
    Sym(String),
}

impl Dim {
    pub fn sym(name: impl Into<String>) -> Dim {
        Dim::Sym(name.into())
    }

    pub fn fixed(self: &Dim) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }

    /// Anonymous symbols are made by inference and carry no meaning of their own.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Dim::Sym(s) if s.starts_with('?'))
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// A shape: one [`Dim`] per axis (rank 0 = scalar).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The sizes, when every dimension is a number.
    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::fixed).collect()
    }

    pub fn is_static(&self) -> bool {
        self.0.iter().all(|d| matches!(d, Dim::Fixed(_)))
    }

    /// Number of elements, when static. Saturates at `usize::MAX` rather
    /// than wrapping, so a count that overflows never equals a real one;
    /// types in a graph never get there (see `crate::limits`).
    pub fn num_elements(&self) -> Option<usize> {
        self.as_fixed().map(|d| d.iter().fold(1usize, |a, &b| a.saturating_mul(b)))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The type of every value in the graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }

    pub fn fixed(dtype: DType, dims: &[usize]) -> TensorType {
        TensorType::new(dtype, Shape::fixed(dims))
    }

    pub fn scalar(dtype: DType) -> TensorType {
        TensorType::new(dtype, Shape::scalar())
    }

    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// Bytes of a static tensor of this type (saturating, as
    /// [`Shape::num_elements`]).
    pub fn size_bytes(&self) -> Option<usize> {
        self.shape.num_elements().map(|n| n.saturating_mul(self.dtype.size_bytes()))
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}
