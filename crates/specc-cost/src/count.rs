//! IR -> counts: the FLOPs and bytes one execution of a graph costs.
//!
//! What is counted, and why so:
//! * **FLOPs.** A dot costs `2 * (elements of its result) * (product of its
//!   contracting dims)`, i.e. `2*M*N*K` for a matmul, batch dims included.
//!   Dots are split by operand type (bf16 operands run on the tensor
//!   engine's bf16 path, f32 ones on its fp32 path). Elementwise ops count
//!   one FLOP per result element and reductions one per operand element;
//!   they are reported apart and not put on the matmul roofline, since they
//!   run on other engines and are mostly hidden under the matmuls.
//! * **Weights read.** Each *use* of a weight reads it once: the unrolled
//!   draft steps of a fused round each read the draft's weights again
//!   (they do not fit in on-chip SRAM at these sizes). A use reached only
//!   through views (`convert`, `reshape`, `transpose`, `broadcast`: fused
//!   into the consumer on the device) counts at the consumer; a `gather`,
//!   `slice` or `dynamic-slice` reads only what it selects (an embedding
//!   lookup reads a few rows, not the table).
//! * **KV-cache state.** State parameters are the graph inputs an output
//!   aliases (the caches). A cache value read by anything but the
//!   in-place `dynamic-update-slice` that writes it is read in full (the
//!   attention's `concatenate` of past and new entries); the writes are the
//!   update operands' sizes. The chain `param -> dus -> dus ...` of one
//!   cache is followed, so every draft step's read of its cache counts.
//! * **Activations.** The other graph inputs and the non-state outputs.
//!   Intermediates are assumed to stay on chip.
//!
//! Per model (target, draft) it also records what the tensor-parallel model
//! needs: how many cache parameters (2 per layer), how many cache updates
//! (one per layer per forward pass), the tokens each pass carries, the KV
//! heads (the cache's dim 1) and the hidden size (the embedding table's
//! row length).

use serde::Serialize;
use specc_ir::{DType, Graph, NodeId, Op};
use std::collections::BTreeMap;

/// Which graph inputs are state and which model each state input and each
/// weight belongs to.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    /// (parameter index, model) for every state (cache) parameter.
    pub state: Vec<(usize, String)>,
    /// The model of weight `i` (by weight index); a missing entry means
    /// `default_model`.
    pub weight_models: Vec<String>,
    /// The model of anything not listed.
    pub default_model: String,
}

impl Roles {
    /// One model, with the given state parameters.
    pub fn single(model: &str, state: &[usize]) -> Roles {
        Roles {
            state: state.iter().map(|&i| (i, model.to_string())).collect(),
            weight_models: vec![],
            default_model: model.into(),
        }
    }

    fn weight_model(&self, index: usize) -> &str {
        self.weight_models.get(index).map(String::as_str).unwrap_or(&self.default_model)
    }
}

/// What one model's part of a graph costs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelCounts {
    /// Bytes of weights read by one execution (per use; see the module doc).
    pub weight_bytes_read: u64,
    /// Elements of the weights that feed a dot, each weight counted once:
    /// the "matmul parameters" (a decode step costs twice this in FLOPs).
    pub dot_weight_elements: u64,
    /// KV-cache bytes read (a full cache per reading pass).
    pub state_bytes_read: u64,
    /// KV-cache bytes written (the new entries).
    pub state_bytes_written: u64,
    /// Cache parameters (a key and a value per layer).
    pub cache_params: usize,
    /// Bytes of the cache parameters (resident state).
    pub cache_bytes: u64,
    /// In-place cache updates (one per cache parameter per forward pass).
    pub cache_updates: usize,
    /// Tokens summed over the cache updates (each update writes its pass's
    /// tokens).
    pub cache_update_tokens: u64,
    /// KV heads of the caches (dim 1 of `[batch, heads, capacity, head_dim]`).
    pub kv_heads: usize,
    /// The hidden size: the row length of the embedding table (the weight
    /// a `gather` reads), when there is one.
    pub hidden: Option<usize>,
}

impl ModelCounts {
    /// Transformer layers: one key and one value cache each.
    pub fn layers(&self) -> usize {
        self.cache_params.div_ceil(2)
    }

    /// Forward passes of the model in the graph (a fused round runs the
    /// draft K times).
    pub fn passes(&self) -> usize {
        self.cache_updates.checked_div(self.cache_params).unwrap_or(0)
    }

    /// Tokens summed over the passes (the first draft step of a fused round
    /// carries 2, the others 1, the verify pass K+1).
    pub fn pass_tokens(&self) -> u64 {
        self.cache_update_tokens.checked_div(self.cache_params as u64).unwrap_or(0)
    }
}

/// What one execution of a graph costs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// FLOPs of dots with a bf16 operand (the tensor engine's bf16 path).
    pub dot_flops_bf16: u64,
    /// FLOPs of all other dots (f32).
    pub dot_flops_f32: u64,
    /// Elementwise and reduction FLOPs (reported, not on the roofline).
    pub other_flops: u64,
    /// Non-state graph inputs.
    pub activation_bytes_in: u64,
    /// Non-state graph outputs.
    pub activation_bytes_out: u64,
    pub models: BTreeMap<String, ModelCounts>,
    /// The graph's own all-reduce nodes (a tensor-parallel rank program),
    /// and the bytes each rank contributes to them, at their dtype.
    pub all_reduces: u64,
    pub all_reduce_bytes: u64,
    /// The ranks the program is already split for (a graph of an artifact
    /// compiled with `--tp N`: its shapes are one rank's); 0 or 1 for an
    /// unsharded graph, which the estimate splits analytically.
    pub built_tp: usize,
}

impl Counts {
    pub fn dot_flops(&self) -> u64 {
        self.dot_flops_bf16.saturating_add(self.dot_flops_f32)
    }

    pub fn weight_bytes_read(&self) -> u64 {
        self.models.values().map(|m| m.weight_bytes_read).sum()
    }

    pub fn state_bytes(&self) -> u64 {
        self.models.values().map(|m| m.state_bytes_read + m.state_bytes_written).sum()
    }

    /// Every byte the graph moves to or from HBM.
    pub fn bytes(&self) -> u64 {
        self.weight_bytes_read() + self.state_bytes() + self.activation_bytes_in + self.activation_bytes_out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error(
        "graph `{graph}`: node {node} (`{name}`) has a symbolic shape; only static (compiled) graphs can be counted"
    )]
    Symbolic { graph: String, node: NodeId, name: String },
    #[error("graph `{graph}`: state parameter index {index} is out of range ({params} parameters)")]
    BadState { graph: String, index: usize, params: usize },
}

fn elements(g: &Graph, id: NodeId) -> Result<u64, CountError> {
    g.ty(id).shape.num_elements().map(|n| n as u64).ok_or_else(|| CountError::Symbolic {
        graph: g.name().into(),
        node: id,
        name: g.node(id).name.clone(),
    })
}

fn bytes(g: &Graph, id: NodeId) -> Result<u64, CountError> {
    Ok(elements(g, id)?.saturating_mul(g.ty(id).dtype.size_bytes() as u64))
}

/// Ops that only re-type or re-arrange a value and are fused into its
/// consumer on the device (a weight seen through them is read by the
/// consumer).
fn is_view(op: &Op) -> bool {
    matches!(op, Op::Convert { .. } | Op::Reshape { .. } | Op::Transpose { .. } | Op::Broadcast { .. })
}

/// Ops that read only the part of their first operand they select.
fn is_selecting(op: &Op) -> bool {
    matches!(op, Op::Gather { .. } | Op::Slice { .. } | Op::DynamicSlice { .. })
}

/// Counts one execution of `g`.
pub fn count(g: &Graph, roles: &Roles) -> Result<Counts, CountError> {
    let n = g.len();
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for id in g.ids() {
        for &o in &g.node(id).operands {
            let u = &mut users[o.index()];
            if u.last() != Some(&id) {
                u.push(id);
            }
        }
    }
    let mut c = Counts::default();

    // FLOPs.
    for id in g.ids() {
        let node = g.node(id);
        match &node.op {
            Op::Dot { dims } => {
                let lhs = node.operands[0];
                let lhs_dims = g.ty(lhs).shape.as_fixed().ok_or_else(|| CountError::Symbolic {
                    graph: g.name().into(),
                    node: lhs,
                    name: g.node(lhs).name.clone(),
                })?;
                let k: u64 = dims.lhs_contract.iter().map(|&d| lhs_dims.get(d).copied().unwrap_or(1) as u64).product();
                let flops = 2u64.saturating_mul(elements(g, id)?).saturating_mul(k);
                if node.operands.iter().any(|&o| g.ty(o).dtype == DType::BF16) {
                    c.dot_flops_bf16 = c.dot_flops_bf16.saturating_add(flops);
                } else {
                    c.dot_flops_f32 = c.dot_flops_f32.saturating_add(flops);
                }
            }
            Op::Unary { .. } | Op::Binary { .. } | Op::Compare { .. } | Op::Select | Op::Convert { .. } => {
                c.other_flops = c.other_flops.saturating_add(elements(g, id)?);
            }
            Op::Reduce { .. } => {
                c.other_flops = c.other_flops.saturating_add(elements(g, node.operands[0])?);
            }
            Op::AllReduce { ranks } if *ranks > 1 => {
                c.all_reduces += 1;
                c.all_reduce_bytes = c.all_reduce_bytes.saturating_add(bytes(g, id)?);
            }
            _ => {}
        }
    }

    // Weights: follow views to the consumers that read.
    for id in g.ids() {
        let Op::Weight { index } = g.node(id).op else { continue };
        let m = roles.weight_model(index).to_string();
        let full = bytes(g, id)?;
        let size = g.ty(id).dtype.size_bytes() as u64;
        let (mut read, mut feeds_dot, mut gathered_row) = (0u64, false, None);
        let mut stack = vec![id];
        while let Some(v) = stack.pop() {
            for &u in &users[v.index()] {
                let op = &g.node(u).op;
                if is_view(op) {
                    stack.push(u);
                } else if is_selecting(op) && g.node(u).operands[0] == v {
                    read = read.saturating_add(elements(g, u)?.saturating_mul(size));
                    if matches!(op, Op::Gather { .. }) {
                        gathered_row = g.ty(id).shape.as_fixed().and_then(|d| d.last().copied());
                    }
                } else {
                    read = read.saturating_add(full);
                    feeds_dot |= matches!(op, Op::Dot { .. });
                }
            }
        }
        let mc = c.models.entry(m).or_default();
        mc.weight_bytes_read = mc.weight_bytes_read.saturating_add(read);
        if feeds_dot {
            mc.dot_weight_elements = mc.dot_weight_elements.saturating_add(elements(g, id)?);
        }
        // The widest gathered table is the token embedding.
        if let Some(h) = gathered_row {
            mc.hidden = Some(mc.hidden.map_or(h, |old| old.max(h)));
        }
    }

    // State: each cache's chain of in-place updates.
    let params = g.params();
    let mut is_state = vec![false; params.len()];
    for (index, m) in &roles.state {
        let Some(&p) = params.get(*index) else {
            return Err(CountError::BadState { graph: g.name().into(), index: *index, params: params.len() });
        };
        is_state[*index] = true;
        let dims = g.ty(p).shape.as_fixed().unwrap_or_default();
        let full = bytes(g, p)?;
        let mc = c.models.entry(m.clone()).or_default();
        mc.cache_params += 1;
        mc.cache_bytes = mc.cache_bytes.saturating_add(full);
        mc.kv_heads = mc.kv_heads.max(if dims.len() >= 2 { dims[1] } else { 1 });
        let mut chain = vec![p];
        let mut i = 0;
        while i < chain.len() {
            let v = chain[i];
            i += 1;
            for &u in &users[v.index()] {
                let un = g.node(u);
                let writes_here = matches!(un.op, Op::DynamicUpdateSlice) && un.operands[0] == v;
                if writes_here {
                    let upd = un.operands[1];
                    mc.state_bytes_written = mc.state_bytes_written.saturating_add(bytes(g, upd)?);
                    mc.cache_updates += 1;
                    let ud = g.ty(upd).shape.as_fixed().unwrap_or_default();
                    mc.cache_update_tokens += if ud.len() == 4 { ud[2] as u64 } else { 1 };
                    chain.push(u);
                    // The update operand or a start index may also be the
                    // cache itself (not in these graphs); count it as a read.
                    if un.operands[1..].contains(&v) {
                        mc.state_bytes_read = mc.state_bytes_read.saturating_add(full);
                    }
                } else if is_selecting(&un.op) && un.operands[0] == v {
                    mc.state_bytes_read = mc.state_bytes_read.saturating_add(bytes(g, u)?);
                } else {
                    mc.state_bytes_read = mc.state_bytes_read.saturating_add(full);
                }
            }
        }
    }

    // Activations in and out. An output that is a state chain's end is the
    // aliased cache (its bytes are the updates, counted above).
    for (i, &p) in params.iter().enumerate() {
        if !is_state[i] {
            c.activation_bytes_in = c.activation_bytes_in.saturating_add(bytes(g, p)?);
        }
    }
    let mut state_values = vec![false; n];
    for (index, _) in &roles.state {
        let mut v = params[*index];
        state_values[v.index()] = true;
        // Walk forward along the updates (each cache has a single chain).
        'walk: loop {
            for &u in &users[v.index()] {
                if matches!(g.node(u).op, Op::DynamicUpdateSlice) && g.node(u).operands[0] == v {
                    v = u;
                    state_values[v.index()] = true;
                    continue 'walk;
                }
            }
            break;
        }
    }
    for o in g.outputs() {
        if !state_values[o.node.index()] {
            c.activation_bytes_out = c.activation_bytes_out.saturating_add(bytes(g, o.node)?);
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use specc_ir::{DotDims, GraphBuilder, Literal, ReduceOp, Shape, TensorType, UnaryOp};

    fn matmul() -> DotDims {
        DotDims { lhs_contract: vec![2], rhs_contract: vec![0], ..Default::default() }
    }

    #[test]
    fn a_single_matmul() {
        let mut b = GraphBuilder::new("mm");
        let x = b.parameter("x", TensorType::fixed(DType::F32, &[1, 4, 8])).unwrap();
        let w = b.weight("w", TensorType::fixed(DType::F32, &[8, 16])).unwrap();
        let y = b.add("y", Op::Dot { dims: matmul() }, &[x, w]).unwrap();
        b.output("y", y).unwrap();
        let g = b.finish().unwrap();
        let c = count(&g, &Roles::single("model", &[])).unwrap();
        // 2 * M * N * K = 2 * 4 * 16 * 8.
        assert_eq!(c.dot_flops_f32, 1024);
        assert_eq!(c.dot_flops_bf16, 0);
        assert_eq!(c.other_flops, 0);
        let m = &c.models["model"];
        assert_eq!(m.weight_bytes_read, 8 * 16 * 4);
        assert_eq!(m.dot_weight_elements, 128);
        assert_eq!((c.activation_bytes_in, c.activation_bytes_out), (4 * 8 * 4, 4 * 16 * 4));
        assert_eq!(c.bytes(), 512 + 128 + 256);
    }

    #[test]
    fn a_bf16_matmul_is_on_the_bf16_path_and_reads_half_the_bytes() {
        let mut b = GraphBuilder::new("mm");
        let x = b.parameter("x", TensorType::fixed(DType::F32, &[1, 4, 8])).unwrap();
        let w = b.weight("w", TensorType::fixed(DType::BF16, &[8, 16])).unwrap();
        let xb = b.add("xb", Op::Convert { to: DType::BF16 }, &[x]).unwrap();
        let y = b.add("y", Op::Dot { dims: matmul() }, &[xb, w]).unwrap();
        b.output("y", y).unwrap();
        let c = count(&b.finish().unwrap(), &Roles::single("model", &[])).unwrap();
        assert_eq!((c.dot_flops_bf16, c.dot_flops_f32), (1024, 0));
        assert_eq!(c.other_flops, 32, "the convert: one per element");
        assert_eq!(c.models["model"].weight_bytes_read, 8 * 16 * 2);
    }

    /// One attention layer (2 heads of 4, hidden 8) over a cache of 6
    /// slots, one new token at `pos`; `passes` times in a row (each pass
    /// reads the cache the previous one wrote), like a draft unrolled in a
    /// fused round.
    fn attention(passes: usize) -> Graph {
        let (h, heads, d, c) = (8, 2, 4, 6);
        let mut b = GraphBuilder::new("attn");
        let token = b.parameter("token", TensorType::fixed(DType::I32, &[1, 1])).unwrap();
        let pos = b.parameter("pos", TensorType::scalar(DType::I32)).unwrap();
        let mut ck = b.parameter("cache_k", TensorType::fixed(DType::F32, &[1, heads, c, d])).unwrap();
        let mut cv = b.parameter("cache_v", TensorType::fixed(DType::F32, &[1, heads, c, d])).unwrap();
        let embed = b.weight("embed", TensorType::fixed(DType::F32, &[10, h])).unwrap();
        let ws: Vec<NodeId> = ["wq", "wk", "wv", "wo"]
            .iter()
            .map(|n| b.weight(*n, TensorType::fixed(DType::F32, &[h, h])).unwrap())
            .collect();
        let zero = b.constant("zero", Literal::scalar_i32(0)).unwrap();
        let mut x = b.add("embed", Op::Gather { axis: 0 }, &[embed, token]).unwrap();
        for p in 0..passes {
            let dot =
                |b: &mut GraphBuilder, n: &str, a, w| b.add(format!("{p}{n}"), Op::Dot { dims: matmul() }, &[a, w]);
            let heads_of = |b: &mut GraphBuilder, n: &str, v| {
                let r = b.add(format!("{p}{n}r"), Op::Reshape { shape: Shape::fixed(&[1, 1, heads, d]) }, &[v])?;
                b.add(format!("{p}{n}t"), Op::Transpose { perm: vec![0, 2, 1, 3] }, &[r])
            };
            let q = dot(&mut b, "q", x, ws[0]).unwrap();
            let q = heads_of(&mut b, "q", q).unwrap();
            let k = dot(&mut b, "k", x, ws[1]).unwrap();
            let k = heads_of(&mut b, "k", k).unwrap();
            let v = dot(&mut b, "v", x, ws[2]).unwrap();
            let v = heads_of(&mut b, "v", v).unwrap();
            let k_all = b.add(format!("{p}kall"), Op::Concat { axis: 2 }, &[ck, k]).unwrap();
            let v_all = b.add(format!("{p}vall"), Op::Concat { axis: 2 }, &[cv, v]).unwrap();
            let batch = DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], ..Default::default() };
            let s_dims = DotDims { lhs_contract: vec![3], rhs_contract: vec![3], ..batch.clone() };
            let s = b.add(format!("{p}scores"), Op::Dot { dims: s_dims }, &[q, k_all]).unwrap();
            let e = b.add(format!("{p}exp"), Op::Unary { op: UnaryOp::Exp }, &[s]).unwrap();
            let _z = b.add(format!("{p}sum"), Op::Reduce { op: ReduceOp::Sum, axes: vec![3] }, &[e]).unwrap();
            let o_dims = DotDims { lhs_contract: vec![3], rhs_contract: vec![2], ..batch };
            let o = b.add(format!("{p}pv"), Op::Dot { dims: o_dims }, &[e, v_all]).unwrap();
            let o = b.add(format!("{p}ot"), Op::Transpose { perm: vec![0, 2, 1, 3] }, &[o]).unwrap();
            let o = b.add(format!("{p}or"), Op::Reshape { shape: Shape::fixed(&[1, 1, h]) }, &[o]).unwrap();
            x = dot(&mut b, "o", o, ws[3]).unwrap();
            let slice = |b: &mut GraphBuilder, n: &str, all| {
                b.add(
                    format!("{p}{n}"),
                    Op::Slice { starts: vec![0, 0, c, 0], limits: vec![1, heads, c + 1, d], strides: vec![1; 4] },
                    &[all],
                )
            };
            let nk = slice(&mut b, "nk", k_all).unwrap();
            let nv = slice(&mut b, "nv", v_all).unwrap();
            ck = b.add(format!("{p}uk"), Op::DynamicUpdateSlice, &[ck, nk, zero, zero, pos, zero]).unwrap();
            cv = b.add(format!("{p}uv"), Op::DynamicUpdateSlice, &[cv, nv, zero, zero, pos, zero]).unwrap();
        }
        b.output("hidden", x).unwrap();
        b.output("cache_k", ck).unwrap();
        b.output("cache_v", cv).unwrap();
        b.finish().unwrap()
    }

    #[test]
    fn a_one_layer_attention_step_by_hand() {
        let c = count(&attention(1), &Roles::single("target", &[2, 3])).unwrap();
        // q, k, v, o: 2 * 1 * 8 * 8 each; scores: 2 heads x 7 keys x 4 x 2;
        // probabilities x values: 2 heads x 4 x 7 x 2.
        assert_eq!(c.dot_flops_f32, 4 * 128 + 112 + 112);
        assert_eq!(c.other_flops, 14 + 14, "exp over 2x7 scores, a sum over them");
        let m = &c.models["target"];
        // The embedding gather reads one row of 8 floats; the four matrices in full.
        assert_eq!(m.weight_bytes_read, 8 * 4 + 4 * 64 * 4);
        assert_eq!(m.dot_weight_elements, 4 * 64);
        assert_eq!(m.hidden, Some(8));
        // Each cache (1x2x6x4 f32 = 192 bytes) is read once by its concat;
        // one new entry (1x2x1x4 f32 = 32 bytes) is written into each.
        assert_eq!((m.state_bytes_read, m.state_bytes_written), (2 * 192, 2 * 32));
        assert_eq!((m.cache_params, m.cache_bytes, m.kv_heads), (2, 384, 2));
        assert_eq!((m.layers(), m.passes(), m.pass_tokens()), (1, 1, 1));
        // token and pos (s32) in; the hidden state out (the caches are aliased).
        assert_eq!((c.activation_bytes_in, c.activation_bytes_out), (8, 32));
    }

    #[test]
    fn an_unrolled_pass_reads_the_weights_and_the_updated_cache_again() {
        let one = count(&attention(1), &Roles::single("draft", &[2, 3])).unwrap();
        let three = count(&attention(3), &Roles::single("draft", &[2, 3])).unwrap();
        let (m1, m3) = (&one.models["draft"], &three.models["draft"]);
        assert_eq!(three.dot_flops(), 3 * one.dot_flops());
        assert_eq!(m3.weight_bytes_read, 8 * 4 + 3 * 4 * 64 * 4, "one gather, three uses of each matrix");
        assert_eq!(m3.dot_weight_elements, m1.dot_weight_elements, "parameters are counted once");
        assert_eq!(m3.state_bytes_read, 3 * m1.state_bytes_read);
        assert_eq!(m3.state_bytes_written, 3 * m1.state_bytes_written);
        assert_eq!((m3.layers(), m3.passes(), m3.pass_tokens()), (1, 3, 3));
        assert_eq!(three.activation_bytes_out, one.activation_bytes_out);
    }

    #[test]
    fn bad_state_indices_and_symbolic_graphs_are_errors_not_panics() {
        let e = count(&attention(1), &Roles::single("t", &[9])).unwrap_err();
        assert!(e.to_string().contains("state parameter index 9 is out of range (4 parameters)"), "{e}");
        let mut b = GraphBuilder::new("sym");
        let x = b.parameter("x", TensorType::new(DType::F32, Shape(vec![specc_ir::Dim::sym("n"), 8.into()]))).unwrap();
        let w = b.weight("w", TensorType::fixed(DType::F32, &[8, 2])).unwrap();
        let dims = DotDims { lhs_contract: vec![1], rhs_contract: vec![0], ..Default::default() };
        let y = b.add("y", Op::Dot { dims }, &[x, w]).unwrap();
        b.output("y", y).unwrap();
        let e = count(&b.finish().unwrap(), &Roles::default()).unwrap_err();
        assert!(e.to_string().contains("symbolic shape"), "{e}");
    }
}
