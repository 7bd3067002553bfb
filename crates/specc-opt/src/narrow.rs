//! Narrowing of 64-bit integers to 32 bits, for Neuron (trn1 has no int64
//! datapath; token ids, positions and index math all fit 32 bits).
//!
//! Every s64 value becomes s32: parameters, constants, converts and iotas
//! change type and everything downstream is re-inferred. An interval
//! analysis proves that no narrowed value leaves the s32 range: integer
//! inputs are assumed to lie in their declared range (default
//! `[0, 2^24)`: token ids, positions, masks; the executor refuses inputs
//! outside it), and every add, multiply, sum, ... is bounded from its
//! operands. A narrowed node whose bound does not fit is an error naming
//! it. Conversions from float saturate at the new range, as XLA's do.

use crate::specialize::OptError;
use specc_ir::{
    BinaryOp, DType, Graph, GraphBuilder, IrError, Literal, LiteralData, Node, NodeId, Op, ReduceOp, Rewrite,
    TensorType, UnaryOp,
};
use std::collections::HashMap;

/// The range assumed for integer inputs without a declared one.
pub const DEFAULT_INPUT_RANGE: (i64, i64) = (0, (1 << 24) - 1);

const I32: (i128, i128) = (i32::MIN as i128, i32::MAX as i128);

#[derive(Clone, Debug, Default)]
pub struct NarrowReport {
    /// Inputs and outputs whose type changed from s64 to s32, by name.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub nodes: usize,
}

struct Narrow<'a> {
    ranges_in: &'a HashMap<String, (i64, i64)>,
    /// Bounds of integer values in the new graph.
    range: HashMap<NodeId, (i128, i128)>,
    error: Option<OptError>,
    narrowed: usize,
}

fn narrow_ty(t: &TensorType) -> TensorType {
    if t.dtype == DType::I64 { TensorType::new(DType::I32, t.shape.clone()) } else { t.clone() }
}

fn span(a: (i128, i128), b: (i128, i128), f: impl Fn(i128, i128) -> i128) -> (i128, i128) {
    let c = [f(a.0, b.0), f(a.0, b.1), f(a.1, b.0), f(a.1, b.1)];
    (*c.iter().min().unwrap(), *c.iter().max().unwrap())
}

fn union(a: (i128, i128), b: (i128, i128)) -> (i128, i128) {
    (a.0.min(b.0), a.1.max(b.1))
}

impl Narrow<'_> {
    fn of(&self, id: NodeId) -> (i128, i128) {
        self.range.get(&id).copied().unwrap_or(I32)
    }

    /// The bound of a node of the new graph from its operands' bounds.
    fn bound(&self, b: &GraphBuilder, id: NodeId) -> (i128, i128) {
        let node = b.graph().node(id);
        let r = |i: usize| self.of(node.operands[i]);
        match &node.op {
            Op::Constant { value } => match value.to_i64_vec() {
                Some(v) if !v.is_empty() => (*v.iter().min().unwrap() as i128, *v.iter().max().unwrap() as i128),
                _ => (0, 0),
            },
            Op::Iota { shape, axis, .. } => (0, shape.0[*axis].fixed().unwrap_or(1).max(1) as i128 - 1),
            Op::Convert { .. } => match b.ty(node.operands[0]).dtype {
                DType::Bool => (0, 1),
                DType::F32 => I32,
                _ => r(0),
            },
            Op::Unary { op: UnaryOp::Neg } => (-r(0).1, -r(0).0),
            Op::Unary { op: UnaryOp::Abs } => {
                let (lo, hi) = r(0);
                if lo >= 0 { (lo, hi) } else { (0, lo.abs().max(hi.abs())) }
            }
            Op::Binary { op } => match op {
                BinaryOp::Add => span(r(0), r(1), |x, y| x + y),
                BinaryOp::Sub => span(r(0), r(1), |x, y| x - y),
                BinaryOp::Mul => span(r(0), r(1), |x, y| x * y),
                BinaryOp::Max => span(r(0), r(1), i128::max),
                BinaryOp::Min => span(r(0), r(1), i128::min),
                BinaryOp::Div => {
                    let m = r(0).0.abs().max(r(0).1.abs());
                    (-m, m)
                }
                BinaryOp::Rem => {
                    let m = r(1).0.abs().max(r(1).1.abs());
                    (-m, m)
                }
                _ => I32,
            },
            Op::Select => union(r(1), r(2)),
            Op::Reduce { op, axes } => {
                let shape = b.ty(node.operands[0]).shape.as_fixed().unwrap_or_default();
                let n = axes.iter().map(|&a| shape[a] as i128).product::<i128>();
                match op {
                    ReduceOp::Max | ReduceOp::Min => r(0),
                    ReduceOp::Sum => (r(0).0.min(0) * n, r(0).1.max(0) * n),
                    ReduceOp::Prod => {
                        let m = r(0).0.abs().max(r(0).1.abs()).max(1);
                        let p = m.checked_pow(n.min(64) as u32).unwrap_or(i128::MAX / 4);
                        (-p, p)
                    }
                }
            }
            Op::Concat { .. } => node.operands.iter().map(|&o| self.of(o)).reduce(union).unwrap_or((0, 0)),
            Op::Pad { .. } => union(r(0), r(1)),
            Op::Reshape { .. }
            | Op::Broadcast { .. }
            | Op::Transpose { .. }
            | Op::Reverse { .. }
            | Op::Slice { .. }
            | Op::Gather { .. }
            | Op::DynamicSlice { .. } => r(0),
            Op::DynamicUpdateSlice => union(r(0), r(1)),
            _ => I32,
        }
    }
}

impl Rewrite for Narrow<'_> {
    fn begin(&mut self, b: &GraphBuilder) {
        for &p in b.graph().params() {
            let node = b.graph().node(p);
            if node.ty.dtype.is_int() {
                let (lo, hi) = self.ranges_in.get(&node.name).copied().unwrap_or(DEFAULT_INPUT_RANGE);
                self.range.insert(p, (lo as i128, hi as i128));
            }
        }
    }

    fn param_type(&mut self, _index: usize, old: &Node) -> Result<TensorType, IrError> {
        Ok(narrow_ty(&old.ty))
    }

    fn node(&mut self, b: &mut GraphBuilder, old: &Node, operands: &[NodeId]) -> Result<NodeId, IrError> {
        let op = match &old.op {
            Op::Constant { value: Literal { shape, data: LiteralData::I64(v) } } => {
                let (lo, hi) = (v.iter().min().copied().unwrap_or(0), v.iter().max().copied().unwrap_or(0));
                if lo < i32::MIN as i64 || hi > i32::MAX as i64 {
                    self.error.get_or_insert(OptError::Narrow {
                        node: old.name.clone(),
                        op: "constant",
                        detail: format!("holds values in [{lo}, {hi}], outside s32"),
                    });
                }
                let d = v.iter().map(|&x| x as i32).collect();
                Op::Constant { value: Literal { shape: shape.clone(), data: LiteralData::I32(d) } }
            }
            Op::Convert { to: DType::I64 } => Op::Convert { to: DType::I32 },
            Op::Iota { shape, axis, dtype: DType::I64 } => {
                Op::Iota { shape: shape.clone(), axis: *axis, dtype: DType::I32 }
            }
            other => other.clone(),
        };
        let id = b.add(old.name.clone(), op, operands)?;
        if b.ty(id).dtype.is_int() {
            let r = self.bound(b, id);
            self.range.insert(id, r);
            if old.ty.dtype == DType::I64 {
                self.narrowed += 1;
                if r.0 < I32.0 || r.1 > I32.1 {
                    self.error.get_or_insert(OptError::Narrow {
                        node: old.name.clone(),
                        op: old.op.name(),
                        detail: format!("its values may reach [{}, {}], outside s32", r.0, r.1),
                    });
                }
            }
        }
        Ok(id)
    }
}

/// Narrows every s64 value to s32. `input_ranges` bounds integer inputs by
/// name (others get [`DEFAULT_INPUT_RANGE`]).
pub fn narrow_to_s32(g: &Graph, input_ranges: &HashMap<String, (i64, i64)>) -> Result<(Graph, NarrowReport), OptError> {
    let mut n = Narrow { ranges_in: input_ranges, range: HashMap::new(), error: None, narrowed: 0 };
    let out = g.rewrite(&mut n)?;
    if let Some(e) = n.error {
        return Err(e);
    }
    let report = NarrowReport {
        inputs: g.params().iter().filter(|&&p| g.ty(p).dtype == DType::I64).map(|&p| g.node(p).name.clone()).collect(),
        outputs: g.outputs().iter().filter(|o| g.ty(o.node).dtype == DType::I64).map(|o| o.name.clone()).collect(),
        nodes: n.narrowed,
    };
    Ok((out, report))
}
