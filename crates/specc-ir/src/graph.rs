//! The graph: an arena of single-output nodes.
//!
//! A node's id is its index in the arena and names the one value it
//! produces (as in HLO). Operands always have smaller ids than their users,
//! so the arena order is a topological order; the builder guarantees it and
//! the verifier checks it.

use crate::literal::Literal;
use crate::op::Op;
use crate::types::{Dim, TensorType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Names a node and the value it produces. Displays as `%N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub op: Op,
    pub operands: Vec<NodeId>,
    pub ty: TensorType,
    /// Where the node came from (the ONNX node name, with a suffix when one
    /// ONNX node became several IR nodes); for parameters and weights, their
    /// external name. Used in every error about the node.
    pub name: String,
}

/// A model weight the graph reads; its data is held outside the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightDecl {
    pub name: String,
    pub ty: TensorType,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphOutput {
    pub name: String,
    pub node: NodeId,
}

/// A typed tensor graph. Built only through [`crate::GraphBuilder`] (or
/// decoded and verified), so its invariants (see [`crate::verify`]) hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub(crate) name: String,
    pub(crate) nodes: Vec<Node>,
    pub(crate) params: Vec<NodeId>,
    pub(crate) weights: Vec<WeightDecl>,
    pub(crate) outputs: Vec<GraphOutput>,
    /// The next anonymous dim number, so rewrites never reuse a name.
    pub(crate) next_anon: usize,
}

impl Graph {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// The graph inputs, in order (parameter `i` is `params()[i]`).
    pub fn params(&self) -> &[NodeId] {
        &self.params
    }

    pub fn param_by_name(&self, name: &str) -> Option<(usize, NodeId)> {
        self.params.iter().enumerate().find(|(_, id)| self.node(**id).name == name).map(|(i, id)| (i, *id))
    }

    pub fn weights(&self) -> &[WeightDecl] {
        &self.weights
    }

    pub fn outputs(&self) -> &[GraphOutput] {
        &self.outputs
    }

    pub fn output_by_name(&self, name: &str) -> Option<&GraphOutput> {
        self.outputs.iter().find(|o| o.name == name)
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.node(id).ty
    }

    /// The literal a node holds, when it is a constant.
    pub fn constant_value(&self, id: NodeId) -> Option<&Literal> {
        match &self.node(id).op {
            Op::Constant { value } => Some(value),
            _ => None,
        }
    }

    /// Named symbolic dims of the graph inputs, in order of first use. These
    /// are what a user binds (`--dim name=value`).
    pub fn input_symbols(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for &p in &self.params {
            for d in &self.ty(p).shape.0 {
                if let Dim::Sym(s) = d
                    && !d.is_anonymous()
                    && seen.insert(s.clone())
                {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Whether every value has a static shape and no shape-computing op is
    /// left: the state specialization must reach.
    pub fn is_static(&self) -> bool {
        self.nodes.iter().all(|n| n.ty.shape.is_static() && !n.op.is_shape_computing())
    }

    /// Count of nodes per op name, sorted by name.
    pub fn op_histogram(&self) -> Vec<(&'static str, usize)> {
        let mut counts = std::collections::BTreeMap::new();
        for n in &self.nodes {
            *counts.entry(n.op.name()).or_insert(0) += 1;
        }
        counts.into_iter().collect()
    }

    /// Parameter and weight counts: (elements, bytes), for static weights.
    pub fn weight_totals(&self) -> (usize, usize) {
        self.weights
            .iter()
            .fold((0, 0), |(n, b), w| (n + w.ty.shape.num_elements().unwrap_or(0), b + w.ty.size_bytes().unwrap_or(0)))
    }
}
