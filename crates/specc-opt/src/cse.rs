//! Common subexpression elimination: two nodes with the same op and the
//! same operands are one node. Ops are pure, so this is always sound; float
//! literals compare by bit pattern (see `specc_ir::Literal`).

use specc_ir::{Graph, GraphBuilder, IrError, Node, NodeId, Op, Rewrite};
use std::collections::HashMap;

struct Cse {
    seen: HashMap<(Op, Vec<NodeId>), NodeId>,
}

impl Rewrite for Cse {
    fn node(&mut self, b: &mut GraphBuilder, old: &Node, operands: &[NodeId]) -> Result<NodeId, IrError> {
        let key = (old.op.clone(), operands.to_vec());
        if let Some(&id) = self.seen.get(&key) {
            return Ok(id);
        }
        let id = b.add(old.name.clone(), old.op.clone(), operands)?;
        self.seen.insert(key, id);
        Ok(id)
    }
}

/// Merges equal nodes, then drops the dead ones.
pub fn cse(g: &Graph) -> Result<Graph, IrError> {
    Ok(g.rewrite(&mut Cse { seen: HashMap::new() })?.without_dead_nodes())
}
