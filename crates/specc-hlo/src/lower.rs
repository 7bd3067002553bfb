//! IR (static) -> HLO: one lowering per IR op.
//!
//! The entry computation's parameters are the graph inputs (in order)
//! followed by the weights (in order): weights are parameters, never
//! constants, so an HLO module never embeds weight values. The root is
//! always a tuple of the graph outputs, so NEFF output `output{i}` is graph
//! output `i`.

use crate::module::{Alias, Computation, Elem, HOp, Instr, Module, Shape};
use specc_ir::{BinaryOp, DType, Graph, Literal, NodeId, Op, ReduceOp, UnaryOp, verify};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("the graph must be specialized to static shapes before HLO emission: {0}")]
    NotStatic(verify::VerifyError),
    #[error("alias of output {output} to parameter {param}: {reason}")]
    BadAlias { output: usize, param: usize, reason: String },
}

pub fn elem_of(d: DType) -> Elem {
    match d {
        DType::Bool => Elem::Pred,
        DType::I32 => Elem::S32,
        DType::I64 => Elem::S64,
        DType::F32 => Elem::F32,
        DType::BF16 => Elem::Bf16,
    }
}

fn unary_opcode(u: UnaryOp) -> &'static str {
    u.name()
}

fn binary_opcode(b: BinaryOp) -> &'static str {
    b.name()
}

struct Lowering<'g> {
    g: &'g Graph,
    entry: Vec<Instr>,
    /// IR node -> entry instruction index.
    map: Vec<usize>,
    /// Reduction computations made so far, by (op, elem).
    reducers: HashMap<(ReduceOp, Elem), usize>,
    computations: Vec<Computation>,
    names: usize,
}

impl<'g> Lowering<'g> {
    fn push(&mut self, op: HOp, shape: Shape, operands: Vec<usize>, origin: &str) -> usize {
        self.names += 1;
        let stem = match &op {
            HOp::Parameter(_) => "param".to_string(),
            other => other.opcode().replace('-', "_"),
        };
        self.entry.push(Instr {
            name: format!("{stem}.{}", self.names),
            shape,
            op,
            operands,
            origin: origin.to_string(),
        });
        self.entry.len() - 1
    }

    fn shape_of(&self, id: NodeId) -> Shape {
        let t = self.g.ty(id);
        Shape::Array(elem_of(t.dtype), t.shape.as_fixed().expect("static graph"))
    }

    fn dims(&self, i: usize) -> Vec<usize> {
        self.entry[i].shape.dims().to_vec()
    }

    fn elem(&self, i: usize) -> Elem {
        self.entry[i].shape.elem().expect("array")
    }

    /// broadcast_in_dim with size-1 stretching: HLO `broadcast` needs each
    /// mapped dim to match exactly, so stretched unit dims are reshaped away
    /// first.
    fn broadcast_to(&mut self, x: usize, out: &[usize], dims: &[usize], origin: &str) -> usize {
        let xd = self.dims(x);
        if xd == out && dims.iter().enumerate().all(|(i, &d)| i == d) {
            return x;
        }
        let keep: Vec<usize> = (0..xd.len()).filter(|&i| xd[i] == out[dims[i]]).collect();
        let mut src = x;
        if keep.len() != xd.len() {
            let kept: Vec<usize> = keep.iter().map(|&i| xd[i]).collect();
            src = self.push(HOp::Plain("reshape"), Shape::array(self.elem(x), &kept), vec![x], origin);
        }
        let mapped: Vec<usize> = keep.iter().map(|&i| dims[i]).collect();
        self.push(HOp::Broadcast(mapped), Shape::array(self.elem(x), out), vec![src], origin)
    }

    /// Elementwise operands of equal rank stretched to `out`.
    fn stretch(&mut self, x: usize, out: &[usize], origin: &str) -> usize {
        let ident: Vec<usize> = (0..out.len()).collect();
        self.broadcast_to(x, out, &ident, origin)
    }

    fn scalar_constant(&mut self, elem: Elem, v: f64, origin: &str) -> usize {
        let lit = match elem {
            Elem::Pred => Literal::scalar_bool(v != 0.0),
            Elem::S32 | Elem::U32 => Literal::scalar_i32(v as i32),
            Elem::S64 => Literal::scalar_i64(v as i64),
            Elem::F32 => Literal::scalar_f32(v as f32),
            Elem::Bf16 => Literal::scalar_of(DType::BF16, v),
        };
        self.push(HOp::Constant(lit), Shape::array(elem, &[]), vec![], origin)
    }

    fn reducer(&mut self, op: ReduceOp, elem: Elem) -> usize {
        if let Some(&c) = self.reducers.get(&(op, elem)) {
            return c;
        }
        let scalar = Shape::array(elem, &[]);
        let opcode = match op {
            ReduceOp::Sum => "add",
            ReduceOp::Prod => "multiply",
            ReduceOp::Max => "maximum",
            ReduceOp::Min => "minimum",
        };
        let name = format!("{}_{}", op.name(), elem.name());
        let instrs = vec![
            Instr {
                name: format!("{name}.lhs"),
                shape: scalar.clone(),
                op: HOp::Parameter(0),
                operands: vec![],
                origin: String::new(),
            },
            Instr {
                name: format!("{name}.rhs"),
                shape: scalar.clone(),
                op: HOp::Parameter(1),
                operands: vec![],
                origin: String::new(),
            },
            Instr {
                name: format!("{name}.apply"),
                shape: scalar,
                op: HOp::Plain(opcode),
                operands: vec![0, 1],
                origin: String::new(),
            },
        ];
        self.computations.push(Computation { name, instrs, root: 2 });
        let i = self.computations.len() - 1;
        self.reducers.insert((op, elem), i);
        i
    }

    fn reduce_init(&mut self, op: ReduceOp, elem: Elem, origin: &str) -> usize {
        let v = match (op, elem) {
            (ReduceOp::Sum, _) => 0.0,
            (ReduceOp::Prod, _) => 1.0,
            (ReduceOp::Max, Elem::F32 | Elem::Bf16) => f64::NEG_INFINITY,
            (ReduceOp::Min, Elem::F32 | Elem::Bf16) => f64::INFINITY,
            (ReduceOp::Max, Elem::S32) => i32::MIN as f64,
            (ReduceOp::Min, Elem::S32) => i32::MAX as f64,
            (ReduceOp::Max, _) => i64::MIN as f64,
            (ReduceOp::Min, _) => i64::MAX as f64,
        };
        self.scalar_constant(elem, v, origin)
    }

    fn lower_node(&mut self, id: NodeId) -> usize {
        let node = self.g.node(id);
        let origin = node.name.as_str();
        let out = self.shape_of(id);
        let out_dims = out.dims().to_vec();
        let ops: Vec<usize> = node.operands.iter().map(|o| self.map[o.index()]).collect();
        match &node.op {
            Op::Parameter { .. } | Op::Weight { .. } => unreachable!("declared before the walk"),
            Op::Constant { value } => self.push(HOp::Constant(value.clone()), out, vec![], origin),
            Op::Unary { op } => self.push(HOp::Plain(unary_opcode(*op)), out, ops, origin),
            Op::Binary { op } => {
                let v: Vec<usize> = ops.iter().map(|&o| self.stretch(o, &out_dims, origin)).collect();
                self.push(HOp::Plain(binary_opcode(*op)), out, v, origin)
            }
            Op::Compare { dir } => {
                let v: Vec<usize> = ops.iter().map(|&o| self.stretch(o, &out_dims, origin)).collect();
                self.push(HOp::Compare(*dir), out, v, origin)
            }
            Op::Select => {
                let v: Vec<usize> = ops.iter().map(|&o| self.stretch(o, &out_dims, origin)).collect();
                self.push(HOp::Plain("select"), out, v, origin)
            }
            Op::Convert { .. } => self.push(HOp::Plain("convert"), out, ops, origin),
            Op::Dot { dims } => self.push(HOp::Dot(dims.clone()), out, ops, origin),
            Op::Reduce { op, axes } => {
                let elem = self.elem(ops[0]);
                let comp = self.reducer(*op, elem);
                let init = self.reduce_init(*op, elem, origin);
                self.push(HOp::Reduce { dims: axes.clone(), to_apply: comp }, out, vec![ops[0], init], origin)
            }
            Op::AllReduce { ranks } => {
                let comp = self.reducer(ReduceOp::Sum, self.elem(ops[0]));
                self.push(HOp::AllReduce { groups: vec![(0..*ranks).collect()], to_apply: comp }, out, ops, origin)
            }
            Op::Broadcast { dims, .. } => self.broadcast_to(ops[0], &out_dims, dims, origin),
            Op::Reshape { .. } => self.push(HOp::Plain("reshape"), out, ops, origin),
            Op::Transpose { perm } => self.push(HOp::Transpose(perm.clone()), out, ops, origin),
            Op::Reverse { axes } => self.push(HOp::Reverse(axes.clone()), out, ops, origin),
            Op::Slice { starts, limits, strides } => {
                let s = (0..starts.len()).map(|i| (starts[i], limits[i], strides[i])).collect();
                self.push(HOp::Slice(s), out, ops, origin)
            }
            Op::Concat { axis } => self.push(HOp::Concatenate(*axis), out, ops, origin),
            Op::Pad { low, high } => {
                let p = low.iter().zip(high).map(|(&l, &h)| (l, h)).collect();
                self.push(HOp::Pad(p), out, ops, origin)
            }
            Op::Iota { axis, .. } => self.push(HOp::Iota(*axis), out, vec![], origin),
            Op::Gather { axis } => {
                // Indices get an explicit trailing index-vector dim of 1.
                let xd = self.dims(ops[0]);
                let idx = self.dims(ops[1]);
                let mut with_vec = idx.clone();
                with_vec.push(1);
                let ielem = self.elem(ops[1]);
                let iv = self.push(HOp::Plain("reshape"), Shape::array(ielem, &with_vec), vec![ops[1]], origin);
                let r = idx.len();
                let offset_dims: Vec<usize> = (0..*axis).chain(axis + r..xd.len() - 1 + r).collect();
                let mut slice_sizes = xd.clone();
                slice_sizes[*axis] = 1;
                let g = HOp::Gather {
                    offset_dims,
                    collapsed_slice_dims: vec![*axis],
                    start_index_map: vec![*axis],
                    index_vector_dim: r,
                    slice_sizes,
                };
                self.push(g, out, vec![ops[0], iv], origin)
            }
            Op::DynamicSlice { sizes } => self.push(HOp::DynamicSlice(sizes.clone()), out, ops, origin),
            Op::DynamicUpdateSlice => self.push(HOp::Plain("dynamic-update-slice"), out, ops, origin),
            Op::ShapeOf
            | Op::DynReshape { .. }
            | Op::DynBroadcast
            | Op::DynRange
            | Op::DynFill { .. }
            | Op::DynSlice { .. } => {
                unreachable!("verify_static refused shape-computing ops")
            }
        }
    }
}

/// Lowers a static graph. `aliases` pairs graph outputs with graph inputs
/// that must share a buffer (state such as KV caches).
pub fn lower(g: &Graph, aliases: &[Alias]) -> Result<Module, LowerError> {
    verify::verify_static(g).map_err(LowerError::NotStatic)?;
    let n_params = g.params().len();
    for a in aliases {
        let bad = |reason: String| LowerError::BadAlias { output: a.output, param: a.param, reason };
        let out = g.outputs().get(a.output).ok_or_else(|| bad("no such output".into()))?;
        if a.param >= n_params {
            return Err(bad("aliases may name graph inputs only".into()));
        }
        let (pt, ot) = (g.ty(g.params()[a.param]), g.ty(out.node));
        if pt != ot {
            return Err(bad(format!("input type {pt} differs from output type {ot}")));
        }
    }
    let mut l = Lowering {
        g,
        entry: Vec::new(),
        map: vec![usize::MAX; g.len()],
        reducers: HashMap::new(),
        computations: Vec::new(),
        names: 0,
    };
    for (i, &p) in g.params().iter().enumerate() {
        let shape = l.shape_of(p);
        let origin = g.node(p).name.clone();
        l.map[p.index()] = l.push(HOp::Parameter(i), shape, vec![], &origin);
    }
    for id in g.ids() {
        if let Op::Weight { index } = g.node(id).op {
            let shape = l.shape_of(id);
            let origin = g.node(id).name.clone();
            l.map[id.index()] = l.push(HOp::Parameter(n_params + index), shape, vec![], &origin);
        }
    }
    for id in g.ids() {
        if l.map[id.index()] == usize::MAX {
            l.map[id.index()] = l.lower_node(id);
        }
    }
    let outs: Vec<usize> = g.outputs().iter().map(|o| l.map[o.node.index()]).collect();
    let shape = Shape::Tuple(outs.iter().map(|&o| l.entry[o].shape.clone()).collect());
    let root = l.push(HOp::Plain("tuple"), shape, outs, "");
    let mut computations = std::mem::take(&mut l.computations);
    computations.push(Computation { name: "main".into(), instrs: std::mem::take(&mut l.entry), root });
    let entry = computations.len() - 1;
    let name: String = g.name().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    Ok(Module {
        name: if name.is_empty() { "specc".into() } else { name },
        computations,
        entry,
        aliases: aliases.to_vec(),
    })
}
