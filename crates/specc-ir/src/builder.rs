//! The one checked way to add nodes.
//!
//! Every node goes through [`GraphBuilder::add`] (or the parameter and weight
//! declarations), which refuses dangling operands, infers the result type and
//! wraps every error with the node's name and op. [`Graph::rewrite`] rebuilds
//! a graph through a builder, so passes get the same checks.

use crate::error::IrError;
use crate::graph::{Graph, GraphOutput, Node, NodeId, WeightDecl};
use crate::infer::{self, DimSource, Operand};
use crate::literal::Literal;
use crate::op::Op;
use crate::types::{Dim, TensorType};
use std::collections::HashSet;

pub struct GraphBuilder {
    graph: Graph,
    param_names: HashSet<String>,
    weight_names: HashSet<String>,
    output_names: HashSet<String>,
}

struct Anon<'a>(&'a mut usize);

impl DimSource for Anon<'_> {
    fn fresh(&mut self) -> Dim {
        *self.0 += 1;
        Dim::Sym(format!("?{}", *self.0 - 1))
    }
}

impl GraphBuilder {
    pub fn new(name: impl Into<String>) -> GraphBuilder {
        GraphBuilder::continuing(name, 0)
    }

    /// A builder whose anonymous dims start at `next_anon` (used when
    /// rebuilding a graph, so old and new anonymous dims never collide).
    fn continuing(name: impl Into<String>, next_anon: usize) -> GraphBuilder {
        GraphBuilder {
            graph: Graph {
                name: name.into(),
                nodes: Vec::new(),
                params: Vec::new(),
                weights: Vec::new(),
                outputs: Vec::new(),
                next_anon,
            },
            param_names: HashSet::new(),
            weight_names: HashSet::new(),
            output_names: HashSet::new(),
        }
    }

    /// Declares graph input number `params().len()`.
    pub fn parameter(&mut self, name: impl Into<String>, ty: TensorType) -> Result<NodeId, IrError> {
        let name = name.into();
        if let Err(source) = crate::limits::check_type(&ty) {
            return Err(IrError::TooLarge { kind: "parameter", name, source: Box::new(source) });
        }
        if !self.param_names.insert(name.clone()) {
            return Err(IrError::Duplicate { kind: "parameter", name });
        }
        let index = self.graph.params.len();
        let id = self.push(Node { op: Op::Parameter { index }, operands: vec![], ty, name });
        self.graph.params.push(id);
        Ok(id)
    }

    /// Declares a weight. Weights always have static shapes.
    pub fn weight(&mut self, name: impl Into<String>, ty: TensorType) -> Result<NodeId, IrError> {
        let name = name.into();
        if !ty.shape.is_static() {
            return Err(IrError::DynamicWeight { name, ty });
        }
        if let Err(source) = crate::limits::check_type(&ty) {
            return Err(IrError::TooLarge { kind: "weight", name, source: Box::new(source) });
        }
        if !self.weight_names.insert(name.clone()) {
            return Err(IrError::Duplicate { kind: "weight", name });
        }
        let index = self.graph.weights.len();
        self.graph.weights.push(WeightDecl { name: name.clone(), ty: ty.clone() });
        Ok(self.push(Node { op: Op::Weight { index }, operands: vec![], ty, name }))
    }

    /// Adds a node, inferring and checking its type.
    pub fn add(&mut self, name: impl Into<String>, op: Op, operands: &[NodeId]) -> Result<NodeId, IrError> {
        let name = name.into();
        if matches!(op, Op::Parameter { .. } | Op::Weight { .. }) {
            return Err(IrError::Infer {
                node: name,
                op: op.name(),
                source: infer::InferError("declare parameters and weights with their own methods".into()),
            });
        }
        if let Some(bad) = operands.iter().find(|o| o.index() >= self.graph.nodes.len()) {
            return Err(IrError::Dangling { node: name, op: op.name(), operand: bad.0 });
        }
        let ops: Vec<Operand> = operands
            .iter()
            .map(|&o| Operand { ty: &self.graph.nodes[o.index()].ty, value: self.graph.constant_value(o) })
            .collect();
        let mut next_anon = self.graph.next_anon;
        let ty = infer::infer(&op, &ops, &mut Anon(&mut next_anon)).map_err(|source| IrError::Infer {
            node: name.clone(),
            op: op.name(),
            source,
        })?;
        self.graph.next_anon = next_anon;
        Ok(self.push(Node { op, operands: operands.to_vec(), ty, name }))
    }

    pub fn constant(&mut self, name: impl Into<String>, value: Literal) -> Result<NodeId, IrError> {
        self.add(name, Op::Constant { value }, &[])
    }

    /// Names a value as a graph output.
    pub fn output(&mut self, name: impl Into<String>, node: NodeId) -> Result<(), IrError> {
        let name = name.into();
        if node.index() >= self.graph.nodes.len() {
            return Err(IrError::Dangling { node: name, op: "output", operand: node.0 });
        }
        if !self.output_names.insert(name.clone()) {
            return Err(IrError::Duplicate { kind: "output", name });
        }
        self.graph.outputs.push(GraphOutput { name, node });
        Ok(())
    }

    /// A fresh anonymous dim.
    pub fn fresh_dim(&mut self) -> Dim {
        Anon(&mut self.graph.next_anon).fresh()
    }

    /// The graph built so far (for looking at types and constants).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        self.graph.ty(id)
    }

    pub fn constant_value(&self, id: NodeId) -> Option<&Literal> {
        self.graph.constant_value(id)
    }

    /// Finishes the graph and runs the verifier.
    pub fn finish(self) -> Result<Graph, IrError> {
        crate::verify::verify(&self.graph)?;
        Ok(self.graph)
    }

    fn push(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.graph.nodes.len() as u32);
        self.graph.nodes.push(node);
        id
    }
}

/// How [`Graph::rewrite`] rebuilds one node.
pub trait Rewrite {
    /// The type of parameter `index` in the new graph (default: unchanged).
    fn param_type(&mut self, _index: usize, old: &Node) -> Result<TensorType, IrError> {
        Ok(old.ty.clone())
    }

    /// The type of weight `index` in the new graph (default: unchanged).
    fn weight_type(&mut self, _index: usize, old: &Node) -> Result<TensorType, IrError> {
        Ok(old.ty.clone())
    }

    /// Called once parameters and weights are declared, before other nodes.
    fn begin(&mut self, _b: &GraphBuilder) {}

    /// Adds `old` (whose operands are already rebuilt as `operands`) to `b`
    /// and returns the id that stands for it. The default copies the node.
    fn node(&mut self, b: &mut GraphBuilder, old: &Node, operands: &[NodeId]) -> Result<NodeId, IrError> {
        b.add(old.name.clone(), old.op.clone(), operands)
    }
}

/// The identity rewrite: re-adds every node, re-running inference.
pub struct Copy;
impl Rewrite for Copy {}

impl Graph {
    /// Rebuilds the graph node by node through a checked builder:
    /// parameters first (in order), then weights (in order), then every other
    /// node in topological order, then the outputs.
    pub fn rewrite(&self, r: &mut dyn Rewrite) -> Result<Graph, IrError> {
        let mut b = GraphBuilder::continuing(self.name.clone(), self.next_anon);
        let mut map: Vec<Option<NodeId>> = vec![None; self.nodes.len()];
        for (i, &p) in self.params.iter().enumerate() {
            let node = self.node(p);
            map[p.index()] = Some(b.parameter(node.name.clone(), r.param_type(i, node)?)?);
        }
        for (id, node) in self.nodes.iter().enumerate() {
            if let Op::Weight { index } = node.op {
                map[id] = Some(b.weight(node.name.clone(), r.weight_type(index, node)?)?);
            }
        }
        r.begin(&b);
        for (id, node) in self.nodes.iter().enumerate() {
            if map[id].is_some() {
                continue;
            }
            let operands: Vec<NodeId> = node
                .operands
                .iter()
                .map(|o| {
                    map[o.index()].ok_or(IrError::Dangling {
                        node: node.name.clone(),
                        op: node.op.name(),
                        operand: o.0,
                    })
                })
                .collect::<Result<_, _>>()?;
            map[id] = Some(r.node(&mut b, node, &operands)?);
        }
        for o in &self.outputs {
            let node = map[o.node.index()].expect("every node was rebuilt");
            b.output(o.name.clone(), node)?;
        }
        b.finish()
    }

    /// Replaces the graph name.
    pub fn renamed(mut self, name: impl Into<String>) -> Graph {
        self.name = name.into();
        self
    }
}
