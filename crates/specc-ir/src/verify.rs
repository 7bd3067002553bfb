//! The verifier. Passes run it between steps in tests; decoding a graph
//! always runs it.
//!
//! Invariants of a [`Graph`]:
//! 1. **Topological arena**: every operand of node `n` has an id smaller than
//!    `n` (so there are no cycles and no dangling edges).
//! 2. **Arity**: each node has as many operands as its op takes.
//! 3. **Types**: each node's recorded type is what inference gives for its
//!    op and operand types (numbers equal, named symbols equal; anonymous
//!    symbols may be renamed).
//! 4. **Parameters**: `params[i]` is a `Parameter { index: i }` node; no other
//!    parameter node exists; parameter names are distinct.
//! 5. **Weights**: weight `i` is read by exactly one `Weight { index: i }`
//!    node whose type equals the declaration, which is static; weight names
//!    are distinct.
//! 6. **Literals**: a constant holds exactly as many elements as its shape.
//! 7. **Outputs**: every output names an existing node; output names are
//!    distinct.
//! 8. **Sizes**: every type's element count fits in 64 bits and its bytes
//!    are within the per-tensor limit (`crate::limits`), so kernels may
//!    allocate any value of a graph without checking.
//!
//! [`verify_static`] adds the state specialization must reach: every dim is a
//! number and no shape-computing op is left.

use crate::graph::{Graph, NodeId};
use crate::infer::{self, DimSource, Operand};
use crate::op::Op;
use crate::types::{Dim, TensorType};
use std::collections::HashSet;
use std::fmt;

/// A broken invariant, with the node it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct VerifyError {
    pub rule: &'static str,
    pub node: Option<(NodeId, String)>,
    pub detail: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some((id, name)) => write!(f, "[{}] at {id} `{name}`: {}", self.rule, self.detail),
            None => write!(f, "[{}] {}", self.rule, self.detail),
        }
    }
}

struct Scratch(usize);
impl DimSource for Scratch {
    fn fresh(&mut self) -> Dim {
        self.0 += 1;
        Dim::Sym(format!("?v{}", self.0))
    }
}

fn agrees(recorded: &TensorType, inferred: &TensorType) -> bool {
    recorded.dtype == inferred.dtype
        && recorded.rank() == inferred.rank()
        && recorded.shape.0.iter().zip(&inferred.shape.0).all(|(r, i)| match (r, i) {
            (Dim::Fixed(a), Dim::Fixed(b)) => a == b,
            (_, i) if i.is_anonymous() => true,
            (Dim::Sym(a), Dim::Sym(b)) => a == b,
            _ => false,
        })
}

pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let at = |id: usize, rule: &'static str, detail: String| VerifyError {
        rule,
        node: Some((NodeId(id as u32), g.nodes[id].name.clone())),
        detail,
    };
    let global = |rule: &'static str, detail: String| VerifyError { rule, node: None, detail };

    let mut weight_readers = vec![0usize; g.weights.len()];
    let mut scratch = Scratch(0);
    for (id, node) in g.nodes.iter().enumerate() {
        if let Some(bad) = node.operands.iter().find(|o| o.index() >= id) {
            return Err(at(id, "topological arena", format!("operand {bad} is not defined before the node")));
        }
        // Declared types (parameters, weights) are not inferred below, so
        // their size is checked here; inference checks every other type.
        if let Err(e) = crate::limits::check_type(&node.ty) {
            return Err(at(id, "sizes", e.to_string()));
        }
        match &node.op {
            Op::Parameter { index } => {
                if g.params.get(*index) != Some(&NodeId(id as u32)) {
                    return Err(at(id, "parameters", format!("parameter {index} is not params[{index}]")));
                }
                continue;
            }
            Op::Weight { index } => {
                let Some(decl) = g.weights.get(*index) else {
                    return Err(at(id, "weights", format!("weight {index} is not declared")));
                };
                if decl.ty != node.ty || !decl.ty.shape.is_static() || decl.name != node.name {
                    return Err(at(
                        id,
                        "weights",
                        format!("node {} disagrees with declaration {} {}", node.ty, decl.name, decl.ty),
                    ));
                }
                weight_readers[*index] += 1;
                continue;
            }
            Op::Constant { value } => {
                let expected = crate::literal::elements(&value.shape);
                if expected != value.num_elements() {
                    return Err(at(
                        id,
                        "literals",
                        format!("shape {:?} but {} elements", value.shape, value.num_elements()),
                    ));
                }
            }
            _ => {}
        }
        if let Some(n) = node.op.arity()
            && node.operands.len() != n
        {
            return Err(at(id, "arity", format!("{} takes {n} operands, has {}", node.op.name(), node.operands.len())));
        }
        let ops: Vec<Operand> =
            node.operands.iter().map(|&o| Operand { ty: &g.nodes[o.index()].ty, value: g.constant_value(o) }).collect();
        let inferred = infer::infer(&node.op, &ops, &mut scratch).map_err(|e| at(id, "types", e.0))?;
        if !agrees(&node.ty, &inferred) {
            return Err(at(id, "types", format!("recorded {} but inference gives {inferred}", node.ty)));
        }
    }

    let mut names = HashSet::new();
    for (i, &p) in g.params.iter().enumerate() {
        let ok = g.nodes.get(p.index()).is_some_and(|n| n.op == Op::Parameter { index: i });
        if !ok {
            return Err(global("parameters", format!("params[{i}] = {p} is not parameter {i}")));
        }
        if !names.insert(&g.nodes[p.index()].name) {
            return Err(global("parameters", format!("parameter name `{}` repeated", g.nodes[p.index()].name)));
        }
    }
    let mut names = HashSet::new();
    for (i, w) in g.weights.iter().enumerate() {
        if weight_readers[i] != 1 {
            return Err(global("weights", format!("weight `{}` is read by {} nodes", w.name, weight_readers[i])));
        }
        if !names.insert(&w.name) {
            return Err(global("weights", format!("weight name `{}` repeated", w.name)));
        }
    }
    let mut names = HashSet::new();
    for o in &g.outputs {
        if o.node.index() >= g.nodes.len() {
            return Err(global("outputs", format!("output `{}` names missing node {}", o.name, o.node)));
        }
        if !names.insert(&o.name) {
            return Err(global("outputs", format!("output name `{}` repeated", o.name)));
        }
    }
    Ok(())
}

/// [`verify`], plus: every dim is a number and no shape-computing op is left.
pub fn verify_static(g: &Graph) -> Result<(), VerifyError> {
    verify(g)?;
    for (id, node) in g.nodes.iter().enumerate() {
        let err =
            |detail: String| VerifyError { rule: "static", node: Some((NodeId(id as u32), node.name.clone())), detail };
        if node.op.is_shape_computing() {
            return Err(err(format!("shape-computing op {} left after specialization", node.op.name())));
        }
        if !node.ty.shape.is_static() {
            return Err(err(format!("type {} is not static", node.ty)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, DotDims, GraphBuilder, Op, Shape, TensorType, UnaryOp};

    fn tiny() -> Graph {
        let mut b = GraphBuilder::new("tiny");
        let x = b.parameter("x", TensorType::new(DType::F32, Shape(vec![Dim::sym("batch"), Dim::Fixed(4)]))).unwrap();
        let w = b.weight("w", TensorType::fixed(DType::F32, &[4, 3])).unwrap();
        let dims = DotDims { lhs_contract: vec![1], rhs_contract: vec![0], ..Default::default() };
        let y = b.add("/MatMul", Op::Dot { dims }, &[x, w]).unwrap();
        let e = b.add("/Exp", Op::Unary { op: UnaryOp::Exp }, &[y]).unwrap();
        b.output("y", e).unwrap();
        b.finish().unwrap()
    }

    fn rule_broken_by(edit: impl Fn(&mut Graph)) -> &'static str {
        let mut g = tiny();
        edit(&mut g);
        // A tampered graph is refused on decoding too.
        assert!(Graph::from_bytes(&g.to_bytes()).is_err());
        verify(&g).unwrap_err().rule
    }

    #[test]
    fn each_invariant_is_checked() {
        assert_eq!(rule_broken_by(|g| g.nodes[3].ty = TensorType::fixed(DType::F32, &[7, 3])), "types");
        assert_eq!(rule_broken_by(|g| g.nodes[2].operands[0] = NodeId(3)), "topological arena");
        assert_eq!(rule_broken_by(|g| g.nodes[3].operands.push(NodeId(0))), "arity");
        assert_eq!(rule_broken_by(|g| g.params.clear()), "parameters");
        assert_eq!(rule_broken_by(|g| g.nodes[1].ty = TensorType::fixed(DType::F32, &[4, 4])), "weights");
        assert_eq!(rule_broken_by(|g| g.outputs[0].node = NodeId(40)), "outputs");
        assert_eq!(
            rule_broken_by(|g| g.nodes[3].op =
                Op::Constant { value: crate::Literal { shape: vec![2], data: crate::LiteralData::F32(vec![1.0]) } }),
            "literals"
        );
    }
}
