//! The lowering context: the IR builder, the map from ONNX value names to IR
//! nodes, and the helpers op lowerings share (rank alignment, constants,
//! run-time dims).

use crate::error::ImportError;
use crate::proto::Attrs;
use crate::proto::ExternalData;
use onnx_ir::NodeProto;
use specc_ir::{
    BinaryOp, DType, Dim, GraphBuilder, IrError, Literal, LiteralData, NodeId, Op, Shape, TensorType, WeightBytes,
    WeightStore,
};
use std::collections::HashMap;

pub struct Ctx {
    pub b: GraphBuilder,
    /// Weight data met so far (initializers and large constants).
    pub weights: WeightStore,
    /// Where external data may be read from.
    pub external: ExternalData,
    /// What the user should know about the import (external data read
    /// from outside the model's directory, when allowed).
    pub warnings: Vec<String>,
    pub values: HashMap<String, NodeId>,
    /// Default-domain opset of the model.
    pub opset: i64,
    /// The ONNX node being lowered: its name (or a made-up one) and op type.
    pub cur_name: String,
    pub cur_op: String,
    sub: usize,
}

pub type LResult<T> = Result<T, ImportError>;

impl Ctx {
    pub fn new(b: GraphBuilder, opset: i64, external: ExternalData) -> Ctx {
        Ctx {
            b,
            weights: WeightStore::new(),
            external,
            warnings: Vec::new(),
            values: HashMap::new(),
            opset,
            cur_name: String::new(),
            cur_op: String::new(),
            sub: 0,
        }
    }

    /// Declares a weight with its data.
    pub fn weight(&mut self, name: &str, ty: TensorType, bytes: WeightBytes) -> LResult<NodeId> {
        let id = self.b.weight(name, ty.clone()).map_err(|e| self.ir(e))?;
        self.weights.insert(name, ty, bytes).map_err(ImportError::Invalid)?;
        Ok(id)
    }

    pub fn begin(&mut self, node: &NodeProto, index: usize) {
        self.cur_name = if node.name.is_empty() { format!("{}_{index}", node.op_type) } else { node.name.clone() };
        self.cur_op = node.op_type.clone();
        self.sub = 0;
    }

    /// An error about the current node.
    pub fn err(&self, message: impl Into<String>) -> ImportError {
        ImportError::Node { node: self.cur_name.clone(), op_type: self.cur_op.clone(), message: message.into() }
    }

    fn ir(&self, e: IrError) -> ImportError {
        match e {
            IrError::Infer { source, .. } => self.err(source.0),
            other => self.err(other.to_string()),
        }
    }

    /// Adds an IR node named after the current ONNX node.
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> LResult<NodeId> {
        let name = if self.sub == 0 { self.cur_name.clone() } else { format!("{}#{}", self.cur_name, self.sub) };
        self.sub += 1;
        self.b.add(name, op, operands).map_err(|e| self.ir(e))
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        self.b.ty(id)
    }

    pub fn dims(&self, id: NodeId) -> Vec<Dim> {
        self.ty(id).shape.0.clone()
    }

    pub fn rank(&self, id: NodeId) -> usize {
        self.ty(id).rank()
    }

    pub fn dtype(&self, id: NodeId) -> DType {
        self.ty(id).dtype
    }

    /// Input `i` of `node`, which must be present.
    pub fn input(&self, node: &NodeProto, i: usize) -> LResult<NodeId> {
        match node.input.get(i).map(String::as_str) {
            None | Some("") => Err(self.err(format!("required input {i} is missing"))),
            Some(name) => self.values.get(name).copied().ok_or_else(|| ImportError::Dangling {
                node: self.cur_name.clone(),
                op_type: self.cur_op.clone(),
                input: name.to_string(),
            }),
        }
    }

    /// Optional input `i` (absent or empty name = not given).
    pub fn opt_input(&self, node: &NodeProto, i: usize) -> LResult<Option<NodeId>> {
        match node.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(_) => self.input(node, i).map(Some),
        }
    }

    pub fn inputs(&self, node: &NodeProto) -> LResult<Vec<NodeId>> {
        (0..node.input.len()).filter(|&i| !node.input[i].is_empty()).map(|i| self.input(node, i)).collect()
    }

    pub fn literal(&self, id: NodeId) -> Option<&Literal> {
        self.b.constant_value(id)
    }

    pub fn const_i64s(&self, id: NodeId) -> Option<Vec<i64>> {
        self.literal(id).and_then(Literal::to_i64_vec)
    }

    /// The integer values of an input that ONNX requires to be constant here.
    pub fn required_const_i64s(&self, node: &NodeProto, i: usize, what: &str) -> LResult<Vec<i64>> {
        let id = self.input(node, i)?;
        self.const_i64s(id).ok_or_else(|| {
            self.err(format!("{what} (input {i}) must be a constant; specc does not support it computed at run time"))
        })
    }

    pub fn attrs<'a>(&self, node: &'a NodeProto) -> Attrs<'a> {
        Attrs::new(node)
    }

    pub fn constant(&mut self, l: Literal) -> LResult<NodeId> {
        self.add(Op::Constant { value: l }, &[])
    }

    pub fn scalar(&mut self, dtype: DType, v: f64) -> LResult<NodeId> {
        self.constant(Literal::scalar_of(dtype, v))
    }

    /// Resolves a possibly negative axis against `rank`.
    pub fn axis(&self, a: i64, rank: usize) -> LResult<usize> {
        let r = rank as i64;
        if a < -r || a >= r {
            return Err(self.err(format!("axis {a} out of range for rank {rank}")));
        }
        Ok(if a < 0 { (a + r) as usize } else { a as usize })
    }

    pub fn reshape(&mut self, x: NodeId, dims: Vec<Dim>) -> LResult<NodeId> {
        if self.dims(x) == dims {
            return Ok(x);
        }
        self.add(Op::Reshape { shape: Shape(dims) }, &[x])
    }

    /// Adds leading size-1 dims up to `rank` (numpy broadcasting alignment).
    pub fn lift_rank(&mut self, x: NodeId, rank: usize) -> LResult<NodeId> {
        let d = self.dims(x);
        if d.len() >= rank {
            return Ok(x);
        }
        let mut dims = vec![Dim::Fixed(1); rank - d.len()];
        dims.extend(d);
        self.reshape(x, dims)
    }

    /// Aligns the ranks of elementwise operands.
    pub fn align(&mut self, xs: &[NodeId]) -> LResult<Vec<NodeId>> {
        let rank = xs.iter().map(|&x| self.rank(x)).max().unwrap_or(0);
        xs.iter().map(|&x| self.lift_rank(x, rank)).collect()
    }

    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> LResult<NodeId> {
        let v = self.align(&[a, b])?;
        self.add(Op::Binary { op }, &v)
    }

    pub fn convert(&mut self, x: NodeId, to: DType) -> LResult<NodeId> {
        if self.dtype(x) == to {
            return Ok(x);
        }
        self.add(Op::Convert { to }, &[x])
    }

    /// Size of dim `axis` of `x` as an s64 scalar: a constant when static,
    /// else computed from `ShapeOf`.
    pub fn dim_size(&mut self, x: NodeId, axis: usize) -> LResult<NodeId> {
        if let Dim::Fixed(n) = self.dims(x)[axis] {
            return self.constant(Literal::scalar_i64(n as i64));
        }
        let shape = self.add(Op::ShapeOf, &[x])?;
        let one = self.add(Op::Slice { starts: vec![axis], limits: vec![axis + 1], strides: vec![1] }, &[shape])?;
        self.reshape(one, vec![])
    }

    /// Slices `x` on `axes` with ONNX semantics, static when it can be.
    pub fn onnx_slice(
        &mut self,
        x: NodeId,
        axes: &[usize],
        starts: &[i64],
        ends: &[i64],
        steps: &[i64],
    ) -> LResult<NodeId> {
        if let Some(shape) = self.ty(x).shape.as_fixed() {
            let sl =
                specc_ir::semantics::onnx_slice_static(&shape, axes, starts, ends, steps).map_err(|e| self.err(e.0))?;
            if sl.is_identity(&shape) {
                return Ok(x);
            }
            let reverse = sl.reverse.clone();
            let y = self.add(Op::Slice { starts: sl.starts, limits: sl.limits, strides: sl.strides }, &[x])?;
            return if reverse.is_empty() { Ok(y) } else { self.add(Op::Reverse { axes: reverse }, &[y]) };
        }
        let s = self.constant(Literal::vec_i64(starts.to_vec()))?;
        let e = self.constant(Literal::vec_i64(ends.to_vec()))?;
        self.add(Op::DynSlice { axes: axes.to_vec(), steps: steps.to_vec() }, &[x, s, e])
    }

    pub fn literal_f32(&mut self, v: f32) -> LResult<NodeId> {
        self.constant(Literal { shape: vec![], data: LiteralData::F32(vec![v]) })
    }
}
