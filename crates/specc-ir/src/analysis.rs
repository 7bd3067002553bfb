//! Graph analyses on a petgraph view of the IR: reachability, dead-code
//! removal, and which inputs an output depends on.

use crate::graph::{Graph, GraphOutput, Node, NodeId, WeightDecl};
use crate::op::Op;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

/// The data-flow graph: an edge from each operand to its user. Node index
/// `i` is IR node `%i`.
pub fn dataflow(g: &Graph) -> DiGraph<NodeId, ()> {
    let mut d = DiGraph::with_capacity(g.len(), g.len() * 2);
    for id in g.ids() {
        d.add_node(id);
    }
    for (i, n) in g.nodes().iter().enumerate() {
        for o in &n.operands {
            d.add_edge(NodeIndex::new(o.index()), NodeIndex::new(i), ());
        }
    }
    d
}

/// Nodes reachable backwards from `roots` (the roots included).
pub fn fan_in(g: &Graph, roots: impl IntoIterator<Item = NodeId>) -> Vec<bool> {
    let d = dataflow(g);
    let rev = Reversed(&d);
    let mut live = vec![false; g.len()];
    let mut dfs = Dfs::empty(rev);
    for r in roots {
        dfs.move_to(NodeIndex::new(r.index()));
        while let Some(n) = dfs.next(rev) {
            live[n.index()] = true;
        }
    }
    live
}

/// The parameters (by index) that `output` depends on.
pub fn inputs_of(g: &Graph, output: NodeId) -> Vec<usize> {
    let live = fan_in(g, [output]);
    g.params().iter().enumerate().filter(|(_, p)| live[p.index()]).map(|(i, _)| i).collect()
}

impl Graph {
    /// The same graph computing other outputs (by node name), dead nodes
    /// removed: a way to cut a block out of a model.
    pub fn with_outputs(&self, outputs: &[&str]) -> Result<Graph, String> {
        let mut g = self.clone();
        g.outputs = outputs
            .iter()
            .map(|name| {
                let id = self
                    .ids()
                    .find(|&i| self.node(i).name == *name)
                    .ok_or_else(|| format!("no node named `{name}`"))?;
                Ok(GraphOutput { name: name.to_string(), node: id })
            })
            .collect::<Result<_, String>>()?;
        Ok(g.without_dead_nodes())
    }

    /// Removes every node no output depends on. Parameters stay (they are
    /// the interface); unread weights are dropped and the rest renumbered.
    pub fn without_dead_nodes(&self) -> Graph {
        let mut live = fan_in(self, self.outputs.iter().map(|o| o.node));
        for p in &self.params {
            live[p.index()] = true;
        }
        let mut map = vec![None; self.len()];
        let mut nodes = Vec::new();
        let mut weights = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !live[i] {
                continue;
            }
            let mut node: Node = n.clone();
            node.operands = n.operands.iter().map(|o| map[o.index()].expect("operands precede users")).collect();
            if let Op::Weight { index } = n.op {
                let decl: &WeightDecl = &self.weights[index];
                node.op = Op::Weight { index: weights.len() };
                weights.push(decl.clone());
            }
            map[i] = Some(NodeId(nodes.len() as u32));
            nodes.push(node);
        }
        let g = Graph {
            name: self.name.clone(),
            nodes,
            params: self.params.iter().map(|p| map[p.index()].expect("parameters are live")).collect(),
            weights,
            outputs: self
                .outputs
                .iter()
                .map(|o| GraphOutput { name: o.name.clone(), node: map[o.node.index()].expect("outputs are live") })
                .collect(),
            next_anon: self.next_anon,
        };
        debug_assert!(crate::verify::verify(&g).is_ok());
        g
    }
}
