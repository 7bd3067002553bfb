//! `--dtype bf16`: weights stored in bf16, matmuls with weights in bf16 with
//! f32 accumulation, everything else in f32.
//!
//! Why this split: on Trainium the weights dominate memory traffic and the
//! tensor engine's bf16 path is the fast one, while norms, softmax and
//! residual adds are cheap and lose accuracy in bf16. So every f32 weight
//! becomes bf16 (round to nearest even); a dot with a bf16 weight operand
//! takes its other operand converted to bf16 and yields f32; a weight read
//! by anything else (an embedding gather, a norm scale) is converted back
//! to f32 once. Dots between activations (attention scores, rotary angles
//! from position ids, where bf16's 8-bit mantissa would make positions past
//! 256 inexact) stay f32.

use specc_ir::{
    DType, Graph, GraphBuilder, IrError, Node, NodeId, Op, Rewrite, TensorType, WeightBytes, WeightStore, bf16_from_f32,
};
use std::collections::HashMap;
use std::sync::Arc;

struct ToBf16 {
    /// New bf16 value -> its f32 widening, made once.
    widened: HashMap<NodeId, NodeId>,
    narrowed: HashMap<NodeId, NodeId>,
}

fn bf16(t: &TensorType) -> TensorType {
    if t.dtype == DType::F32 { TensorType::new(DType::BF16, t.shape.clone()) } else { t.clone() }
}

impl Rewrite for ToBf16 {
    fn weight_type(&mut self, _index: usize, old: &Node) -> Result<TensorType, IrError> {
        Ok(bf16(&old.ty))
    }

    fn node(&mut self, b: &mut GraphBuilder, old: &Node, operands: &[NodeId]) -> Result<NodeId, IrError> {
        let mut ops = operands.to_vec();
        let is_dot = matches!(old.op, Op::Dot { .. }) && ops.iter().any(|&o| b.ty(o).dtype == DType::BF16);
        for o in ops.iter_mut() {
            let dt = b.ty(*o).dtype;
            if is_dot && dt == DType::F32 {
                *o = match self.narrowed.get(o) {
                    Some(&n) => n,
                    None => {
                        let n = b.add(format!("{}#to_bf16", old.name), Op::Convert { to: DType::BF16 }, &[*o])?;
                        self.narrowed.insert(*o, n);
                        n
                    }
                };
            } else if !is_dot && dt == DType::BF16 {
                *o = match self.widened.get(o) {
                    Some(&w) => w,
                    None => {
                        let w = b.add(
                            format!("{}#to_f32", b.graph().node(*o).name),
                            Op::Convert { to: DType::F32 },
                            &[*o],
                        )?;
                        self.widened.insert(*o, w);
                        w
                    }
                };
            }
        }
        b.add(old.name.clone(), old.op.clone(), &ops)
    }
}

/// The bf16 graph and its weights (f32 weights rounded to bf16).
pub fn to_bf16(g: &Graph, store: &WeightStore) -> Result<(Graph, WeightStore), IrError> {
    let names: Vec<String> = g.weights().iter().map(|w| w.name.clone()).collect();
    Ok((to_bf16_graph(g)?, weights_to_bf16(store, &names)?))
}

/// The graph with bf16 weights and weight matmuls.
pub fn to_bf16_graph(g: &Graph) -> Result<Graph, IrError> {
    g.rewrite(&mut ToBf16 { widened: HashMap::new(), narrowed: HashMap::new() })
}

/// The weights `names` of `store`, f32 ones rounded to bf16.
pub fn weights_to_bf16(store: &WeightStore, names: &[String]) -> Result<WeightStore, IrError> {
    let mut weights = WeightStore::new();
    for name in names {
        let Some(e) = store.get(name) else { continue };
        if e.ty.dtype != DType::F32 {
            weights.insert(name.clone(), e.ty.clone(), e.bytes.clone()).expect("unchanged entry");
            continue;
        }
        let raw = e.bytes.read().map_err(|err| IrError::Decode(format!("weight `{name}`: {err}")))?;
        let halves: Vec<u8> = raw
            .chunks_exact(4)
            .flat_map(|c| bf16_from_f32(f32::from_le_bytes(c.try_into().expect("4 bytes"))).to_le_bytes())
            .collect();
        weights.insert(name.clone(), bf16(&e.ty), WeightBytes::Owned(Arc::new(halves))).expect("sized");
    }
    Ok(weights)
}
