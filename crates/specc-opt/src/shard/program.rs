//! Tensor-parallel sharding, the rank program: from a [`ShardPlan`], the one
//! graph every rank runs (local shapes, an all-reduce after each
//! row-parallel product, split outputs gathered along the vocabulary with
//! the rank's offset from a `tp_rank` input) and each rank's weight blocks.

use super::*;

/// The program every rank runs, and each rank's weights.
pub struct Sharded {
    pub graph: Graph,
    /// By rank.
    pub weights: Vec<specc_ir::WeightStore>,
    /// The name of the rank's index input (an s32 scalar).
    pub rank_input: Option<String>,
}

impl ShardPlan {
    /// The layout the rank program gives node `i`: a plan layout, or for a
    /// free value the split of the weight it comes from.
    fn local_layout(&self, i: usize) -> Layout {
        match &self.sources[i] {
            Source::Data => self.layouts[i],
            Source::Weight { index, map } => match self.weights[*index].split_axis() {
                Some(wa) => map.iter().position(|m| *m == Some(wa)).map_or(Layout::Replicated, Layout::Split),
                None => Layout::Replicated,
            },
            Source::Constant | Source::Mixed => Layout::Replicated,
        }
    }

    /// Into how many blocks node `i`'s split axis is cut in the rank program.
    fn local_blocks(&self, i: usize) -> usize {
        match &self.sources[i] {
            Source::Data => self.blocks[i],
            Source::Weight { index, .. } => match self.weights[*index] {
                WeightRole::Columns { blocks, .. } => blocks,
                _ => self.tp,
            },
            _ => self.tp,
        }
    }
}

fn local_dims(global: &[usize], layout: Layout, blocks: usize) -> Vec<usize> {
    let mut d = global.to_vec();
    if let Layout::Split(a) = layout {
        d[a] /= blocks;
    }
    d
}

/// Writes the rank program of `g` under `plan`, and every rank's weights
/// from `store`.
pub fn shard(g: &Graph, store: &specc_ir::WeightStore, plan: &ShardPlan) -> Result<Sharded, ShardError> {
    let (graph, rank_input) = shard_program(g, plan)?;
    let weights = (0..plan.tp).map(|r| rank_weights(g, store, plan, r)).collect::<Result<Vec<_>, _>>()?;
    Ok(Sharded { graph, weights, rank_input })
}

/// The rank program of `g` under `plan` alone (no weight data is read), and
/// the name of its rank input.
pub fn shard_program(g: &Graph, plan: &ShardPlan) -> Result<(Graph, Option<String>), ShardError> {
    use specc_ir::{GraphBuilder, Literal, TensorType};
    let tp = plan.tp;
    let fail = |id: usize, why: String| {
        let n = &g.nodes()[id];
        ShardError { node: n.name.clone(), op: n.op.name(), tp, why }
    };
    let ir = |id: usize| move |e: specc_ir::IrError| fail(id, format!("rewriting: {e}"));
    let mut b = GraphBuilder::new(g.name());
    let mut map: Vec<NodeId> = Vec::with_capacity(g.len());
    let dims = |id: NodeId| g.ty(id).shape.as_fixed().unwrap_or_default();
    let local_ty = |i: usize| {
        let n = &g.nodes()[i];
        TensorType::fixed(n.ty.dtype, &local_dims(&dims(NodeId(i as u32)), plan.local_layout(i), plan.local_blocks(i)))
    };
    let mut rank: Option<NodeId> = None;
    for (i, n) in g.nodes().iter().enumerate() {
        let layout = plan.local_layout(i);
        if rank.is_none() && !matches!(n.op, Op::Parameter { .. }) {
            // Every rank program takes its rank, after the graph's own inputs.
            rank = Some(b.parameter(RANK_INPUT, TensorType::scalar(DType::I32)).map_err(ir(i))?);
        }
        let mut ops: Vec<NodeId> = n.operands.iter().map(|o| map[o.index()]).collect();
        // Operands split into fewer blocks than this node (KV heads shared
        // by several ranks meeting per-rank query heads): each rank cuts its
        // own part out of the shared block.
        if let (Layout::Split(_), Some(rank)) = (layout, rank) {
            let bi = plan.local_blocks(i);
            for (k, &o) in n.operands.iter().enumerate() {
                let (Layout::Split(oa), bo) = (plan.local_layout(o.index()), plan.local_blocks(o.index())) else {
                    continue;
                };
                if bo >= bi {
                    continue;
                }
                let local = local_dims(&dims(o), Layout::Split(oa), bo);
                let mut sizes = local.clone();
                sizes[oa] = local[oa] / (bi / bo);
                let name = &g.nodes()[o.index()].name;
                let c = |b: &mut GraphBuilder, what: &str, v: usize| {
                    b.constant(format!("{name}#refine_{what}"), Literal::scalar_i32(v as i32)).map_err(ir(i))
                };
                let (per, parts, size) =
                    (c(&mut b, "per", tp / bi)?, c(&mut b, "parts", bi / bo)?, c(&mut b, "size", sizes[oa])?);
                let zero = c(&mut b, "zero", 0)?;
                let fine = b
                    .add(format!("{name}#refine_fine"), Op::Binary { op: specc_ir::BinaryOp::Div }, &[rank, per])
                    .map_err(ir(i))?;
                let part = b
                    .add(format!("{name}#refine_part"), Op::Binary { op: specc_ir::BinaryOp::Rem }, &[fine, parts])
                    .map_err(ir(i))?;
                let at = b
                    .add(format!("{name}#refine_at"), Op::Binary { op: specc_ir::BinaryOp::Mul }, &[part, size])
                    .map_err(ir(i))?;
                let mut operands = vec![ops[k]];
                operands.extend((0..local.len()).map(|x| if x == oa { at } else { zero }));
                ops[k] = b.add(format!("{name}#refine"), Op::DynamicSlice { sizes }, &operands).map_err(ir(i))?;
            }
        }
        let op = match &n.op {
            Op::Parameter { .. } => {
                map.push(b.parameter(n.name.clone(), local_ty(i)).map_err(ir(i))?);
                continue;
            }
            Op::Weight { .. } => {
                map.push(b.weight(n.name.clone(), local_ty(i)).map_err(ir(i))?);
                continue;
            }
            Op::Reshape { .. } => Op::Reshape { shape: local_ty(i).shape },
            Op::Broadcast { dims: bd, .. } => Op::Broadcast { shape: local_ty(i).shape, dims: bd.clone() },
            Op::Slice { starts, limits, strides } => {
                let mut limits = limits.clone();
                let mut starts = starts.clone();
                if let Layout::Split(a) = plan.local_layout(n.operands[0].index()) {
                    // Each segment shrinks by the same factor, so a segment's
                    // bounds scale with it (the whole axis is one segment).
                    let b = plan.local_blocks(n.operands[0].index());
                    starts[a] /= b;
                    limits[a] /= b;
                }
                Op::Slice { starts, limits, strides: strides.clone() }
            }
            Op::DynamicSlice { sizes } => {
                let mut sizes = sizes.clone();
                if let Layout::Split(a) = plan.local_layout(n.operands[0].index()) {
                    sizes[a] /= plan.local_blocks(n.operands[0].index());
                }
                Op::DynamicSlice { sizes }
            }
            op => op.clone(),
        };
        // A constant the same along the split axis, at full size there,
        // is cut to a rank's block (the same block on every rank).
        if let (Layout::Split(a), Op::Binary { .. } | Op::Compare { .. } | Op::Select | Op::Concat { .. }) =
            (layout, &n.op)
        {
            let rank = n.ty.rank();
            for (k, &o) in n.operands.iter().enumerate() {
                let orank = g.ty(o).rank();
                let Some(oa) = (a + orank).checked_sub(rank) else { continue };
                let od = dims(o);
                if plan.local_layout(o.index()) == Layout::Replicated
                    && od[oa] == dims(NodeId(i as u32))[a]
                    && od[oa] > 1
                {
                    let mut limits = od.clone();
                    limits[oa] /= plan.local_blocks(i);
                    let cut = Op::Slice { starts: vec![0; orank], limits, strides: vec![1; orank] };
                    ops[k] =
                        b.add(format!("{}#rank_block", g.nodes()[o.index()].name), cut, &[ops[k]]).map_err(ir(i))?;
                }
            }
        }
        let mut id = b.add(n.name.clone(), op, &ops).map_err(ir(i))?;
        let want = local_ty(i);
        if *b.ty(id) != want && !plan.all_reduces.contains(&NodeId(i as u32)) {
            return Err(fail(i, format!("the rank program gives it {}, the plan {want}", b.ty(id))));
        }
        if plan.all_reduces.contains(&NodeId(i as u32)) {
            id = b.add(format!("{}#all_reduce", n.name), Op::AllReduce { ranks: tp }, &[id]).map_err(ir(i))?;
        }
        map.push(id);
    }
    let rank_input = match rank {
        Some(r) => Some(r),
        None => Some(b.parameter(RANK_INPUT, TensorType::scalar(DType::I32)).map_err(ir(0))?),
    };
    for o in g.outputs() {
        let i = o.node.index();
        let mut id = map[i];
        if let (Some(&a), Some(rank)) = (plan.gathered_outputs.get(&o.name), rank_input) {
            // Gathered by an all-reduce of zeros holding this rank's block at
            // its offset: adding zeros is exact, and all-reduce is the one
            // collective the program uses.
            let global = dims(o.node);
            let dtype = g.ty(o.node).dtype;
            let zero = b.constant(format!("{}#gather_zero", o.name), Literal::scalar_of(dtype, 0.0)).map_err(ir(i))?;
            let zeros = b
                .add(
                    format!("{}#gather_zeros", o.name),
                    Op::Broadcast { shape: TensorType::fixed(dtype, &global).shape, dims: vec![] },
                    &[zero],
                )
                .map_err(ir(i))?;
            let block = b
                .constant(format!("{}#gather_block", o.name), Literal::scalar_i32((global[a] / tp) as i32))
                .map_err(ir(i))?;
            let offset = b
                .add(format!("{}#gather_offset", o.name), Op::Binary { op: specc_ir::BinaryOp::Mul }, &[rank, block])
                .map_err(ir(i))?;
            let zero_i = b.constant(format!("{}#gather_origin", o.name), Literal::scalar_i32(0)).map_err(ir(i))?;
            let mut operands = vec![zeros, id];
            operands.extend((0..global.len()).map(|k| if k == a { offset } else { zero_i }));
            let placed = b.add(format!("{}#gather_place", o.name), Op::DynamicUpdateSlice, &operands).map_err(ir(i))?;
            id = b.add(format!("{}#gather", o.name), Op::AllReduce { ranks: tp }, &[placed]).map_err(ir(i))?;
        }
        b.output(o.name.clone(), id).map_err(ir(i))?;
    }
    let graph = b.finish().map_err(ir(0))?;
    Ok((graph, rank_input.map(|_| RANK_INPUT.to_string())))
}

/// Rank `rank`'s block of one weight's little-endian bytes under `role`
/// (the whole weight when it is replicated), and its local type.
pub fn weight_block(
    ty: &specc_ir::TensorType,
    bytes: &[u8],
    role: WeightRole,
    tp: usize,
    rank: usize,
) -> (specc_ir::TensorType, Vec<u8>) {
    let Some(a) = role.split_axis() else { return (ty.clone(), bytes.to_vec()) };
    let wdims = ty.shape.as_fixed().unwrap_or_default();
    let esz = ty.dtype.size_bytes();
    let outer: usize = wdims[..a].iter().product();
    let inner: usize = wdims[a + 1..].iter().product::<usize>() * esz;
    let (blocks, segments) = match role {
        WeightRole::Columns { blocks, segments, .. } => (blocks, segments),
        _ => (tp, 1),
    };
    let segment = wdims[a] / segments;
    let block = segment / blocks;
    // A block shared by tp / blocks consecutive ranks.
    let index = rank / (tp / blocks);
    let mut out = Vec::with_capacity(outer * segments * block * inner);
    for o in 0..outer {
        for k in 0..segments {
            let start = (o * wdims[a] + k * segment + index * block) * inner;
            out.extend_from_slice(&bytes[start..start + block * inner]);
        }
    }
    (local_weight_type(ty, role, tp), out)
}

/// A weight's type on one rank under `role`.
pub fn local_weight_type(ty: &specc_ir::TensorType, role: WeightRole, tp: usize) -> specc_ir::TensorType {
    let wdims = ty.shape.as_fixed().unwrap_or_default();
    match role {
        WeightRole::Replicated => ty.clone(),
        WeightRole::Columns { axis, blocks, .. } => {
            specc_ir::TensorType::fixed(ty.dtype, &local_dims(&wdims, Layout::Split(axis), blocks))
        }
        WeightRole::Rows { axis } => {
            specc_ir::TensorType::fixed(ty.dtype, &local_dims(&wdims, Layout::Split(axis), tp))
        }
    }
}

/// Rank `rank`'s weights of `g` under `plan`, from `store`: replicated ones
/// shared (not copied), split ones cut (read once).
pub fn rank_weights(
    g: &Graph,
    store: &specc_ir::WeightStore,
    plan: &ShardPlan,
    rank: usize,
) -> Result<specc_ir::WeightStore, ShardError> {
    let tp = plan.tp;
    let mut out = specc_ir::WeightStore::new();
    for (w, decl) in g.weights().iter().enumerate() {
        let bad = |why: String| ShardError { node: decl.name.clone(), op: "weight", tp, why };
        let entry = store.get(&decl.name).ok_or_else(|| bad("no data for it".into()))?;
        let role = plan.weights[w];
        if role.split_axis().is_none() {
            out.insert(decl.name.clone(), decl.ty.clone(), entry.bytes.clone()).map_err(bad)?;
            continue;
        }
        let bytes = entry.bytes.read().map_err(|e| bad(format!("reading it: {e}")))?;
        let (ty, block) = weight_block(&decl.ty, &bytes, role, tp, rank);
        out.insert(decl.name.clone(), ty, specc_ir::WeightBytes::Owned(std::sync::Arc::new(block))).map_err(bad)?;
    }
    Ok(out)
}
