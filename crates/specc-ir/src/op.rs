//! The closed set of IR operations.
//!
//! Two tiers:
//! * **Primitive ops** map one-to-one onto XLA HLO instructions. Every graph
//!   that reaches HLO emission uses only these, with static shapes.
//! * **Shape-computing ops** (`ShapeOf`, `Dyn*`) exist because exported
//!   graphs compute shapes at run time from symbolic dims. They are legal
//!   only before specialization, which folds them to constants and static
//!   primitive ops (`Op::is_shape_computing`).
//!
//! Semantics that differ between ONNX, burn and XLA are fixed here, and the
//! interpreter implements exactly this:
//! * Elementwise ops (`Unary`, `Binary`, `Compare`, `Select`) take operands of
//!   equal rank whose dims are equal or 1 (1 broadcasts). Rank alignment is the
//!   importer's job.
//! * Integer `Add`, `Sub`, `Mul` wrap (two's complement), as in XLA.
//!   Shifts by the bit width or more give 0.
//! * Integer `Div` truncates toward zero and `Rem` takes the sign of the
//!   dividend (C, HLO and onnxruntime agree; numpy floors). Division by zero
//!   gives -1 (`Rem`: the dividend), and `MIN / -1` gives `MIN` (`Rem`: 0),
//!   which is what XLA's CPU and GPU backends produce.
//! * `Max`/`Min` (elementwise and reduce) propagate NaN, as XLA does.
//! * `Convert` from float to integer truncates toward zero, saturates at the
//!   integer range and maps NaN to 0 (XLA's semantics); integer narrowing
//!   wraps (two's complement); to `Bool` means `!= 0`.
//! * Index operands (`Gather` indices, `DynamicSlice`/`DynamicUpdateSlice`
//!   starts) must be in range. XLA clamps them, Neuron faults
//!   (`NRT_EXEC_OOB`), ONNX calls them invalid: the interpreter reports an
//!   error, and the compiler must never rely on clamping.

use crate::literal::Literal;
use crate::types::{DType, Shape};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Sin,
    Cos,
    Tanh,
    /// 1 / (1 + exp(-x)) (HLO `logistic`).
    Logistic,
    Floor,
    Ceil,
    /// Logical not for `Bool`, bitwise not for integers.
    Not,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 13] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Logistic,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Not,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "negate",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exponential",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Sin => "sine",
            UnaryOp::Cos => "cosine",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Logistic => "logistic",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Not => "not",
        }
    }

    /// Whether the op accepts operands of `dtype`.
    pub fn accepts(self, dtype: DType) -> bool {
        match self {
            UnaryOp::Neg | UnaryOp::Abs => dtype.is_float() || dtype.is_int(),
            UnaryOp::Not => dtype == DType::Bool || dtype.is_int(),
            _ => dtype.is_float(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Max,
    Min,
    Pow,
    And,
    Or,
    Xor,
    /// Integer shift left (bits shifted past the width are lost).
    ShiftLeft,
    /// Integer shift right filling with zeros (the bits read as unsigned).
    ShiftRightLogical,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
        BinaryOp::ShiftLeft,
        BinaryOp::ShiftRightLogical,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "subtract",
            BinaryOp::Mul => "multiply",
            BinaryOp::Div => "divide",
            BinaryOp::Rem => "remainder",
            BinaryOp::Max => "maximum",
            BinaryOp::Min => "minimum",
            BinaryOp::Pow => "power",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
            BinaryOp::ShiftLeft => "shift-left",
            BinaryOp::ShiftRightLogical => "shift-right-logical",
        }
    }

    pub fn accepts(self, dtype: DType) -> bool {
        match self {
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => dtype == DType::Bool || dtype.is_int(),
            BinaryOp::ShiftLeft | BinaryOp::ShiftRightLogical => dtype.is_int(),
            BinaryOp::Pow => dtype.is_float(),
            _ => dtype.is_float() || dtype.is_int(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareDir {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareDir {
    pub const ALL: [CompareDir; 6] =
        [CompareDir::Eq, CompareDir::Ne, CompareDir::Lt, CompareDir::Le, CompareDir::Gt, CompareDir::Ge];

    /// HLO's `direction=` spelling.
    pub fn name(self) -> &'static str {
        match self {
            CompareDir::Eq => "EQ",
            CompareDir::Ne => "NE",
            CompareDir::Lt => "LT",
            CompareDir::Le => "LE",
            CompareDir::Gt => "GT",
            CompareDir::Ge => "GE",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Prod,
    Max,
    Min,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Prod => "prod",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

/// Dimension numbers of a general dot product (HLO `dot_general`).
///
/// The result's dims are: the batch dims (in `lhs_batch` order), then the
/// lhs dims that are neither batch nor contracting (in order), then the rhs
/// dims likewise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct DotDims {
    pub lhs_batch: Vec<usize>,
    pub rhs_batch: Vec<usize>,
    pub lhs_contract: Vec<usize>,
    pub rhs_contract: Vec<usize>,
}

/// One IR operation. Operand counts and roles are listed per variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Graph input number `index` (no operands).
    Parameter { index: usize },
    /// Model weight number `index` (no operands); its data lives outside the
    /// graph, so a graph never embeds weight values.
    Weight { index: usize },
    /// A literal (no operands).
    Constant { value: Literal },
    /// `(x)`.
    Unary { op: UnaryOp },
    /// `(lhs, rhs)`, same dtype.
    Binary { op: BinaryOp },
    /// `(lhs, rhs)` -> `Bool`.
    Compare { dir: CompareDir },
    /// `(pred: Bool, on_true, on_false)`.
    Select,
    /// `(x)` -> `to`.
    Convert { to: DType },
    /// `(lhs, rhs)`, floats only; see [`DotDims`].
    Dot { dims: DotDims },
    /// `(x)`: reduces over `axes` (sorted, distinct), which disappear from the
    /// shape. The init value is the op's identity (0, 1, -inf/MIN, +inf/MAX).
    Reduce { op: ReduceOp, axes: Vec<usize> },
    /// `(x)`: HLO `broadcast_in_dim`: operand dim `i` becomes result dim
    /// `dims[i]` (strictly increasing) and must be equal to it or 1.
    Broadcast { shape: Shape, dims: Vec<usize> },
    /// `(x)`: same elements in row-major order, new shape.
    Reshape { shape: Shape },
    /// `(x)`: result dim `i` is operand dim `perm[i]`.
    Transpose { perm: Vec<usize> },
    /// `(x)`: reverses the order of elements along `axes`.
    Reverse { axes: Vec<usize> },
    /// `(x)`: static strided slice, `start <= limit <= dim`, `stride >= 1`.
    Slice { starts: Vec<usize>, limits: Vec<usize>, strides: Vec<usize> },
    /// `(x0, x1, ...)` joined along `axis`.
    Concat { axis: usize },
    /// `(x, value: scalar)`: adds `low[i]`/`high[i]` elements of `value` before
    /// and after dim `i`.
    Pad { low: Vec<usize>, high: Vec<usize> },
    /// No operands: `0, 1, 2, ...` along `axis`, broadcast over the others.
    Iota { shape: Shape, axis: usize, dtype: DType },
    /// `(x, indices: integer)`: result is
    /// `x.shape[..axis] ++ indices.shape ++ x.shape[axis+1..]`, taking
    /// `x[.., indices[j], ..]` (HLO `gather` with one index dimension).
    Gather { axis: usize },
    /// `(x, start_0, .., start_{r-1})`: scalar integer starts of one type;
    /// result shape `sizes`.
    DynamicSlice { sizes: Vec<usize> },
    /// `(x, update, start_0, .., start_{r-1})`: `x` with `update` written at
    /// the starts.
    DynamicUpdateSlice,
    /// `(x)`, floats only: the elementwise sum of `x` over the `ranks` ranks
    /// of the program's tensor-parallel group (HLO `all-reduce` with one
    /// replica group of every rank). Every rank runs the same program and
    /// gets the same sum; a graph run alone (ranks 1) gets `x`.
    AllReduce { ranks: usize },

    // ---- shape-computing ops: only before specialization ----
    /// `(x)` -> `I64[rank]`, the run-time shape of `x`.
    ShapeOf,
    /// `(x, shape: I64[n])`: reshape to a run-time shape. An entry of -1 is
    /// inferred from the element count; with `zero_copies`, an entry of 0
    /// copies the operand's dim at that position (ONNX `Reshape`).
    DynReshape { zero_copies: bool },
    /// `(x, shape: I64[n])`: numpy-style broadcast of `x` against `shape`
    /// (ONNX `Expand`: the result shape is the broadcast of both).
    DynBroadcast,
    /// `(start, limit, delta)`: scalars of one type ->
    /// `[max(ceil((limit - start) / delta), 0)]` (ONNX `Range`).
    DynRange,
    /// `(shape: I64[n])`: a tensor of that shape filled with the scalar
    /// `value` (ONNX `ConstantOfShape`).
    DynFill { value: Literal },
    /// `(x, starts: I64[n], ends: I64[n])`: ONNX `Slice` on `axes` with
    /// `steps` (negative indices count from the end, out-of-range bounds
    /// clamp, negative steps walk backwards).
    DynSlice { axes: Vec<usize>, steps: Vec<i64> },
}

impl Op {
    /// Short name used in the text dump and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Parameter { .. } => "parameter",
            Op::Weight { .. } => "weight",
            Op::Constant { .. } => "constant",
            Op::Unary { op } => op.name(),
            Op::Binary { op } => op.name(),
            Op::Compare { .. } => "compare",
            Op::Select => "select",
            Op::Convert { .. } => "convert",
            Op::Dot { .. } => "dot",
            Op::Reduce { .. } => "reduce",
            Op::Broadcast { .. } => "broadcast",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Reverse { .. } => "reverse",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concatenate",
            Op::Pad { .. } => "pad",
            Op::Iota { .. } => "iota",
            Op::Gather { .. } => "gather",
            Op::DynamicSlice { .. } => "dynamic-slice",
            Op::DynamicUpdateSlice => "dynamic-update-slice",
            Op::AllReduce { .. } => "all-reduce",
            Op::ShapeOf => "shape-of",
            Op::DynReshape { .. } => "dyn-reshape",
            Op::DynBroadcast => "dyn-broadcast",
            Op::DynRange => "dyn-range",
            Op::DynFill { .. } => "dyn-fill",
            Op::DynSlice { .. } => "dyn-slice",
        }
    }

    /// Ops that compute shapes at run time; none may remain after
    /// specialization.
    pub fn is_shape_computing(&self) -> bool {
        matches!(
            self,
            Op::ShapeOf
                | Op::DynReshape { .. }
                | Op::DynBroadcast
                | Op::DynRange
                | Op::DynFill { .. }
                | Op::DynSlice { .. }
        )
    }

    /// Ops without operands that introduce values.
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Parameter { .. } | Op::Weight { .. } | Op::Constant { .. } | Op::Iota { .. })
    }

    /// The number of operands, or `None` when variadic.
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Parameter { .. } | Op::Weight { .. } | Op::Constant { .. } | Op::Iota { .. } => Some(0),
            Op::Unary { .. }
            | Op::Convert { .. }
            | Op::Reduce { .. }
            | Op::Broadcast { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Reverse { .. }
            | Op::Slice { .. }
            | Op::ShapeOf
            | Op::AllReduce { .. }
            | Op::DynFill { .. } => Some(1),
            Op::Binary { .. }
            | Op::Compare { .. }
            | Op::Dot { .. }
            | Op::Pad { .. }
            | Op::Gather { .. }
            | Op::DynReshape { .. }
            | Op::DynBroadcast => Some(2),
            Op::Select | Op::DynRange | Op::DynSlice { .. } => Some(3),
            Op::Concat { .. } | Op::DynamicSlice { .. } | Op::DynamicUpdateSlice => None,
        }
    }
}

/// The name of a tensor-parallel rank program's own index input (an s32
/// scalar): the one input that differs between ranks. Backends bind it; the
/// program never asks the device who it is (no ReplicaId, as AWS's stack).
pub const RANK_INPUT: &str = "tp_rank";
