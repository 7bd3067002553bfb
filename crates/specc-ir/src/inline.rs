//! Inlining one graph into another (through the checked builder): how the
//! speculation compiler composes model steps into one fused graph.

use crate::builder::GraphBuilder;
use crate::error::IrError;
use crate::graph::{Graph, NodeId, WeightDecl};
use crate::infer::InferError;
use crate::op::Op;

impl GraphBuilder {
    /// Adds `g`'s nodes: its parameters bound to `params` (same types, in
    /// order), its weights to the nodes `weight` returns (so that several
    /// inlined copies share one weight), every node name prefixed with
    /// `prefix`. Returns `g`'s outputs in order.
    pub fn inline(
        &mut self,
        g: &Graph,
        params: &[NodeId],
        prefix: &str,
        weight: &mut dyn FnMut(&mut GraphBuilder, &WeightDecl) -> Result<NodeId, IrError>,
    ) -> Result<Vec<NodeId>, IrError> {
        let mismatch = |detail: String| IrError::Infer {
            node: format!("{prefix}{}", g.name()),
            op: "inline",
            source: InferError(detail),
        };
        if params.len() != g.params().len() {
            return Err(mismatch(format!("{} takes {} inputs, got {}", g.name(), g.params().len(), params.len())));
        }
        let mut map: Vec<Option<NodeId>> = vec![None; g.len()];
        for (i, (&p, &arg)) in g.params().iter().zip(params).enumerate() {
            if g.ty(p) != self.ty(arg) {
                return Err(mismatch(format!(
                    "input {i} (`{}`) is {}, bound to a {}",
                    g.node(p).name,
                    g.ty(p),
                    self.ty(arg)
                )));
            }
            map[p.index()] = Some(arg);
        }
        for (id, node) in g.nodes().iter().enumerate() {
            if map[id].is_some() {
                continue;
            }
            map[id] = Some(match &node.op {
                Op::Weight { index } => weight(self, &g.weights()[*index])?,
                op => {
                    let operands: Vec<NodeId> =
                        node.operands.iter().map(|o| map[o.index()].expect("operands precede users")).collect();
                    self.add(format!("{prefix}{}", node.name), op.clone(), &operands)?
                }
            });
        }
        Ok(g.outputs().iter().map(|o| map[o.node.index()].expect("outputs are nodes")).collect())
    }
}
