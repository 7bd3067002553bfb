//! An in-memory HLO module: the one representation that both the text and
//! the proto are printed from, so the two always describe the same module.

use specc_ir::{CompareDir, DotDims, Literal};

/// HLO element types specc emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    Pred,
    S32,
    S64,
    U32,
    F32,
    Bf16,
}

impl Elem {
    pub fn name(self) -> &'static str {
        match self {
            Elem::Pred => "pred",
            Elem::S32 => "s32",
            Elem::S64 => "s64",
            Elem::U32 => "u32",
            Elem::F32 => "f32",
            Elem::Bf16 => "bf16",
        }
    }

    pub fn primitive(self) -> i32 {
        use crate::proto::primitive::*;
        match self {
            Elem::Pred => PRED,
            Elem::S32 => S32,
            Elem::S64 => S64,
            Elem::U32 => U32,
            Elem::F32 => F32,
            Elem::Bf16 => BF16,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Array(Elem, Vec<usize>),
    Tuple(Vec<Shape>),
}

impl Shape {
    pub fn array(e: Elem, dims: &[usize]) -> Shape {
        Shape::Array(e, dims.to_vec())
    }

    pub fn dims(&self) -> &[usize] {
        match self {
            Shape::Array(_, d) => d,
            Shape::Tuple(_) => &[],
        }
    }

    pub fn elem(&self) -> Option<Elem> {
        match self {
            Shape::Array(e, _) => Some(*e),
            Shape::Tuple(_) => None,
        }
    }
}

/// One HLO instruction kind with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub enum HOp {
    Parameter(usize),
    Constant(Literal),
    /// Ops whose only attribute is the opcode: elementwise, select,
    /// convert, reshape, tuple, dynamic-update-slice.
    Plain(&'static str),
    Compare(CompareDir),
    Dot(DotDims),
    /// `reduce(x, init)` over `dims`, applying computation `to_apply`.
    Reduce {
        dims: Vec<usize>,
        to_apply: usize,
    },
    /// `all-reduce(x)` within each replica group, combining with
    /// computation `to_apply` (no channel id: one program for every rank).
    AllReduce {
        groups: Vec<Vec<usize>>,
        to_apply: usize,
    },
    Broadcast(Vec<usize>),
    Transpose(Vec<usize>),
    Reverse(Vec<usize>),
    /// (start, limit, stride) per dim.
    Slice(Vec<(usize, usize, usize)>),
    Concatenate(usize),
    /// (low, high) edge padding per dim.
    Pad(Vec<(usize, usize)>),
    Iota(usize),
    Gather {
        offset_dims: Vec<usize>,
        collapsed_slice_dims: Vec<usize>,
        start_index_map: Vec<usize>,
        index_vector_dim: usize,
        slice_sizes: Vec<usize>,
    },
    DynamicSlice(Vec<usize>),
    GetTupleElement(usize),
    CustomCall {
        target: String,
        backend_config: String,
    },
    /// Any other opcode, unattributed. specc's lowering never makes these;
    /// they exist so that target checks can be tested on modules from
    /// elsewhere (a `sort`, a `while`, ...).
    Other(String),
}

impl HOp {
    pub fn opcode(&self) -> &str {
        match self {
            HOp::Parameter(_) => "parameter",
            HOp::Constant(_) => "constant",
            HOp::Plain(o) => o,
            HOp::Compare(_) => "compare",
            HOp::Dot(_) => "dot",
            HOp::Reduce { .. } => "reduce",
            HOp::AllReduce { .. } => "all-reduce",
            HOp::Broadcast(_) => "broadcast",
            HOp::Transpose(_) => "transpose",
            HOp::Reverse(_) => "reverse",
            HOp::Slice(_) => "slice",
            HOp::Concatenate(_) => "concatenate",
            HOp::Pad(_) => "pad",
            HOp::Iota(_) => "iota",
            HOp::Gather { .. } => "gather",
            HOp::DynamicSlice(_) => "dynamic-slice",
            HOp::GetTupleElement(_) => "get-tuple-element",
            HOp::CustomCall { .. } => "custom-call",
            HOp::Other(o) => o,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instr {
    /// Unique within the module.
    pub name: String,
    pub shape: Shape,
    pub op: HOp,
    /// Indices of operands in the same computation.
    pub operands: Vec<usize>,
    /// The IR node this came from (HLO `metadata={op_name=...}`).
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Computation {
    pub name: String,
    pub instrs: Vec<Instr>,
    pub root: usize,
}

impl Computation {
    /// Parameter instructions in parameter-number order.
    pub fn params(&self) -> Vec<usize> {
        let mut p: Vec<(usize, usize)> = self
            .instrs
            .iter()
            .enumerate()
            .filter_map(|(i, ins)| match ins.op {
                HOp::Parameter(n) => Some((n, i)),
                _ => None,
            })
            .collect();
        p.sort();
        p.into_iter().map(|(_, i)| i).collect()
    }
}

/// Output `output` (tuple index of the entry root) must alias parameter
/// `param` (HLO `input_output_alias`, kind must-alias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alias {
    pub output: usize,
    pub param: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub name: String,
    /// Callees before callers; the entry computation is `computations[entry]`.
    pub computations: Vec<Computation>,
    pub entry: usize,
    pub aliases: Vec<Alias>,
}

impl Module {
    pub fn entry(&self) -> &Computation {
        &self.computations[self.entry]
    }

    pub fn instruction_count(&self) -> usize {
        self.computations.iter().map(|c| c.instrs.len()).sum()
    }
}
