//! Small builder helpers for the speculation graphs: constants, iotas,
//! rank-lifting elementwise ops, a portable argmax.

use specc_ir::{BinaryOp, CompareDir, DType, GraphBuilder, IrError, Literal, NodeId, Op, ReduceOp, Shape};

pub type R<T> = Result<T, IrError>;

/// A builder with a name prefix for the nodes it adds.
pub struct Emit<'a> {
    pub b: &'a mut GraphBuilder,
    pub prefix: String,
    n: usize,
}

impl<'a> Emit<'a> {
    pub fn new(b: &'a mut GraphBuilder, prefix: impl Into<String>) -> Emit<'a> {
        Emit { b, prefix: prefix.into(), n: 0 }
    }

    fn name(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{}{what}.{}", self.prefix, self.n)
    }

    pub fn add(&mut self, what: &str, op: Op, operands: &[NodeId]) -> R<NodeId> {
        let name = self.name(what);
        self.b.add(name, op, operands)
    }

    pub fn dims(&self, x: NodeId) -> Vec<usize> {
        self.b.ty(x).shape.as_fixed().expect("speculation graphs are static")
    }

    pub fn dtype(&self, x: NodeId) -> DType {
        self.b.ty(x).dtype
    }

    pub fn constant(&mut self, l: Literal) -> R<NodeId> {
        self.add("const", Op::Constant { value: l }, &[])
    }

    pub fn scalar(&mut self, dtype: DType, v: f64) -> R<NodeId> {
        self.constant(Literal::scalar_of(dtype, v))
    }

    pub fn iota(&mut self, dims: &[usize], axis: usize, dtype: DType) -> R<NodeId> {
        self.add("iota", Op::Iota { shape: Shape::fixed(dims), axis, dtype }, &[])
    }

    pub fn reshape(&mut self, x: NodeId, dims: &[usize]) -> R<NodeId> {
        if self.dims(x) == dims {
            return Ok(x);
        }
        self.add("reshape", Op::Reshape { shape: Shape::fixed(dims) }, &[x])
    }

    pub fn convert(&mut self, x: NodeId, to: DType) -> R<NodeId> {
        if self.dtype(x) == to {
            return Ok(x);
        }
        self.add("convert", Op::Convert { to }, &[x])
    }

    /// Lifts lower-rank operands with leading unit dims (numpy style).
    fn align(&mut self, xs: &[NodeId]) -> R<Vec<NodeId>> {
        let rank = xs.iter().map(|&x| self.dims(x).len()).max().unwrap_or(0);
        xs.iter()
            .map(|&x| {
                let d = self.dims(x);
                let mut l = vec![1; rank - d.len()];
                l.extend(d);
                self.reshape(x, &l)
            })
            .collect()
    }

    pub fn binary(&mut self, op: BinaryOp, x: NodeId, y: NodeId) -> R<NodeId> {
        let v = self.align(&[x, y])?;
        self.add(op.name(), Op::Binary { op }, &v)
    }

    pub fn compare(&mut self, dir: CompareDir, x: NodeId, y: NodeId) -> R<NodeId> {
        let v = self.align(&[x, y])?;
        self.add("compare", Op::Compare { dir }, &v)
    }

    pub fn select(&mut self, p: NodeId, t: NodeId, f: NodeId) -> R<NodeId> {
        let v = self.align(&[p, t, f])?;
        self.add("select", Op::Select, &v)
    }

    pub fn reduce(&mut self, op: ReduceOp, x: NodeId, axes: &[usize]) -> R<NodeId> {
        self.add(op.name(), Op::Reduce { op, axes: axes.to_vec() }, &[x])
    }

    pub fn slice(&mut self, x: NodeId, starts: &[usize], limits: &[usize]) -> R<NodeId> {
        let strides = vec![1; starts.len()];
        self.add("slice", Op::Slice { starts: starts.to_vec(), limits: limits.to_vec(), strides }, &[x])
    }

    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> R<NodeId> {
        if xs.len() == 1 {
            return Ok(xs[0]);
        }
        self.add("concat", Op::Concat { axis }, xs)
    }

    /// `x` broadcast to `dims`, its dims mapped to the trailing ones.
    pub fn broadcast(&mut self, x: NodeId, dims: &[usize]) -> R<NodeId> {
        let r = self.dims(x).len();
        let map = (dims.len() - r..dims.len()).collect();
        self.add("broadcast", Op::Broadcast { shape: Shape::fixed(dims), dims: map }, &[x])
    }

    /// Index of the largest element along the last axis, as `dtype`; ties
    /// go to the smallest index. Built from plain reductions (no variadic
    /// reduce), so Neuron takes it and XLA CPU runs it.
    pub fn argmax(&mut self, x: NodeId, dtype: DType) -> R<NodeId> {
        let d = self.dims(x);
        let last = d.len() - 1;
        let v = d[last];
        let m = self.reduce(ReduceOp::Max, x, &[last])?;
        let mut kept = d.clone();
        kept[last] = 1;
        let m = self.reshape(m, &kept)?;
        let hit = self.compare(CompareDir::Eq, x, m)?;
        let idx = self.iota(&d, last, dtype)?;
        let none = self.scalar(dtype, v as f64)?;
        let cand = self.select(hit, idx, none)?;
        let first = self.reduce(ReduceOp::Min, cand, &[last])?;
        // A row of NaNs matches nothing: keep the index in range.
        let top = self.scalar(dtype, (v - 1) as f64)?;
        self.binary(BinaryOp::Min, first, top)
    }
}
