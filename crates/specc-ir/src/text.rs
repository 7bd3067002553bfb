//! A readable text dump of a graph: one line per node, with its type, op
//! attributes and provenance.
//!
//! ```text
//! graph tiny {
//!   %0 = parameter 0 "x" : f32[batch,4]
//!   %1 = weight 0 "w" : f32[4,3]
//!   %2 = dot(%0, %1) lhs_contract={1} rhs_contract={0} : f32[batch,3]   # /MatMul
//!   output "y" = %2
//! }
//! ```

use crate::graph::Graph;
use crate::literal::{Literal, LiteralData};
use crate::op::Op;
use std::fmt::{self, Write};

fn list<T: fmt::Display>(v: &[T]) -> String {
    let mut s = String::from("{");
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write!(s, "{x}").unwrap();
    }
    s.push('}');
    s
}

/// Literals of up to 16 elements are printed in full.
pub fn literal_text(l: &Literal) -> String {
    const SHOWN: usize = 16;
    if l.num_elements() > SHOWN {
        return format!("<{} elements>", l.num_elements());
    }
    let body = match &l.data {
        LiteralData::Bool(v) => v.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
        LiteralData::I32(v) => v.iter().map(|x| x.to_string()).collect(),
        LiteralData::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        LiteralData::F32(v) => v.iter().map(|x| format!("{x:?}")).collect(),
        LiteralData::BF16(v) => v.iter().map(|&x| format!("{:?}", crate::bf16_to_f32(x))).collect(),
    };
    if l.shape.is_empty() { body[0].clone() } else { format!("{{{}}}", body.join(",")) }
}

/// The attributes of an op as ` key=value` pairs.
pub fn attrs(op: &Op) -> String {
    match op {
        Op::Parameter { .. } | Op::Weight { .. } | Op::Unary { .. } | Op::Binary { .. } => String::new(),
        Op::Select | Op::DynamicUpdateSlice | Op::ShapeOf | Op::DynBroadcast | Op::DynRange => String::new(),
        Op::Constant { value } => format!(" {}", literal_text(value)),
        Op::Compare { dir } => format!(" direction={}", dir.name()),
        Op::Convert { to } => format!(" to={to}"),
        Op::AllReduce { ranks } => format!(" ranks={ranks}"),
        Op::Dot { dims } => {
            let mut s = String::new();
            if !dims.lhs_batch.is_empty() {
                write!(s, " lhs_batch={} rhs_batch={}", list(&dims.lhs_batch), list(&dims.rhs_batch)).unwrap();
            }
            write!(s, " lhs_contract={} rhs_contract={}", list(&dims.lhs_contract), list(&dims.rhs_contract)).unwrap();
            s
        }
        Op::Reduce { op, axes } => format!(" {} axes={}", op.name(), list(axes)),
        Op::Broadcast { dims, .. } => format!(" dims={}", list(dims)),
        Op::Reshape { .. } => String::new(),
        Op::Transpose { perm } => format!(" perm={}", list(perm)),
        Op::Reverse { axes } => format!(" axes={}", list(axes)),
        Op::Slice { starts, limits, strides } => {
            let parts: Vec<String> = (0..starts.len())
                .map(|i| {
                    if strides[i] == 1 {
                        format!("[{}:{}]", starts[i], limits[i])
                    } else {
                        format!("[{}:{}:{}]", starts[i], limits[i], strides[i])
                    }
                })
                .collect();
            format!(" {}", parts.concat())
        }
        Op::Concat { axis } => format!(" axis={axis}"),
        Op::Pad { low, high } => format!(" low={} high={}", list(low), list(high)),
        Op::Iota { axis, .. } => format!(" axis={axis}"),
        Op::Gather { axis } => format!(" axis={axis}"),
        Op::DynamicSlice { sizes } => format!(" sizes={}", list(sizes)),
        Op::DynReshape { zero_copies } => {
            if *zero_copies {
                " zero_copies".into()
            } else {
                String::new()
            }
        }
        Op::DynFill { value } => format!(" value={}", literal_text(value)),
        Op::DynSlice { axes, steps } => format!(" axes={} steps={}", list(axes), list(steps)),
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "graph {} {{", self.name())?;
        for id in self.ids() {
            let n = self.node(id);
            match &n.op {
                Op::Parameter { index } => writeln!(f, "  {id} = parameter {index} {:?} : {}", n.name, n.ty)?,
                Op::Weight { index } => writeln!(f, "  {id} = weight {index} {:?} : {}", n.name, n.ty)?,
                op => {
                    let operands: Vec<String> = n.operands.iter().map(|o| o.to_string()).collect();
                    write!(f, "  {id} = {}({}){} : {}", op.name(), operands.join(", "), attrs(op), n.ty)?;
                    if n.name.is_empty() { writeln!(f)? } else { writeln!(f, "   # {}", n.name)? }
                }
            }
        }
        for o in self.outputs() {
            writeln!(f, "  output {:?} = {}", o.name, o.node)?;
        }
        writeln!(f, "}}")
    }
}
