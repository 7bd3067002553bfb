//! Tensor-parallel sharding, the analysis: which weights are split along
//! which axis, where partial sums need an all-reduce, and how every value of
//! a static model step is laid out across `tp` ranks, decided from the graph
//! itself (never from architecture or node names).
//!
//! Values are replicated, split (each rank holds one of `tp` contiguous
//! blocks of one axis) or partial (each rank holds a summand). The pass walks
//! the graph in order: a weight matrix multiplied by a replicated activation
//! is split along its output features (column-parallel: attention Q/K/V,
//! MLP gate/up, the vocabulary projection); one multiplied by an activation
//! split along the contracted axis is split along its input features
//! (row-parallel: attention output, MLP down) and its product is partial,
//! summed at once by an all-reduce. Splits propagate through what lies
//! between: reshapes that split or merge the split axis as its major part
//! (hidden into heads, heads back into hidden), transposes, broadcasts (a
//! KV-head repeat), elementwise ops with replicated operands of size 1 on
//! the split axis (rotary tables, masks), reductions over other axes
//! (softmax per head), batched products over heads (attention), and
//! concatenations with the KV cache, whose parameters become split too.
//! Anything else that meets a split value is refused, naming the node and
//! why: the pass never replicates a weight it cannot prove it may split,
//! except an embedding table read by a gather (the documented default).
//!
//! [`shard`] then writes the one program every rank runs (local shapes, an
//! all-reduce after each row-parallel product, split outputs gathered along
//! the vocabulary with the rank's offset from a `tp_rank` input) and each
//! rank's weight shards.
//!
//! Architecture Invariant: every rank runs the same graph; only its weights,
//! its KV caches and its `tp_rank` input differ.

use specc_ir::{DType, Graph, NodeId, Op};
use std::collections::BTreeMap;

/// How one value is held across the ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Every rank holds all of it.
    Replicated,
    /// Rank r holds block r of `tp` contiguous blocks of this axis.
    Split(usize),
    /// Each rank holds a summand; the value is their sum.
    Partial,
}

/// What a weight is to the sharded program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightRole {
    Replicated,
    /// Split along `axis` into `blocks` blocks (`tp`, or fewer when the
    /// model has fewer KV heads than ranks: then each block is replicated on
    /// `tp / blocks` consecutive ranks, NxD's rule): the output features of a
    /// column-parallel matrix (or a vector added to its output).
    /// With `segments` > 1 the axis is that many equal segments side by
    /// side (a fused Q/K/V matrix) and each is split the same way.
    Columns {
        axis: usize,
        blocks: usize,
        segments: usize,
    },
    /// Split along `axis`, the contracted input features of a row-parallel
    /// matrix, whose product is all-reduced.
    Rows {
        axis: usize,
    },
}

impl WeightRole {
    pub fn split_axis(self) -> Option<usize> {
        match self {
            WeightRole::Replicated => None,
            WeightRole::Columns { axis, .. } | WeightRole::Rows { axis } => Some(axis),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot shard node `{node}` ({op}) across {tp} ranks: {why}")]
pub struct ShardError {
    pub node: String,
    pub op: &'static str,
    pub tp: usize,
    pub why: String,
}

/// The analysis of one graph for `tp` ranks.
#[derive(Clone, Debug)]
pub struct ShardPlan {
    pub tp: usize,
    /// By node: its layout (a row-parallel product counts as replicated:
    /// its all-reduce follows it at once).
    pub layouts: Vec<Layout>,
    /// By weight index.
    pub weights: Vec<WeightRole>,
    /// Row-parallel products, each followed by one all-reduce.
    pub all_reduces: Vec<NodeId>,
    /// Parameters that are split (the KV caches): their axis and blocks.
    pub split_params: BTreeMap<String, (usize, usize)>,
    /// Outputs that stay split per rank (state), with axis and blocks, and
    /// outputs split along the vocabulary that are gathered (logits).
    pub split_state_outputs: BTreeMap<String, (usize, usize)>,
    pub gathered_outputs: BTreeMap<String, usize>,
    /// By node: into how many blocks its split axis is cut (`tp`, or fewer
    /// for replicated KV heads).
    pub blocks: Vec<usize>,
    /// By node: how many equal segments its split axis has (1, or 3 for the
    /// output of a fused Q/K/V product before it is sliced apart).
    pub segments: Vec<usize>,
    /// By node: what a free value is computed from (for the rewrite).
    sources: Vec<Source>,
}

/// Values computed from weights and constants only, and where they lead:
/// they can be laid out as a consumer needs (a weight by splitting its
/// data; a constant only if it is the same along the split axis).
#[derive(Clone, Debug, PartialEq)]
enum Source {
    /// Depends on a parameter.
    Data,
    /// From one weight through layout-preserving ops: `map[i]` is the weight
    /// axis that this value's axis `i` is (None: an axis of size 1 or a
    /// broadcast one).
    Weight { index: usize, map: Vec<Option<usize>> },
    /// From constants (and iotas) only.
    Constant,
    /// From weights and constants mixed in another way.
    Mixed,
}

/// Plans the sharding of `g` (static) across `tp` ranks. `state` names the
/// parameters that are per-rank state (the KV caches) and may be split; the
/// outputs in `state_outputs` stay split, and any other split output is
/// gathered.
pub fn plan(g: &Graph, tp: usize, state: &[&str], state_outputs: &[&str]) -> Result<ShardPlan, ShardError> {
    // Split parameters are found where they meet split values; the walk is
    // repeated with them split until nothing new is found.
    let mut split_params: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut forced: BTreeMap<usize, usize> = BTreeMap::new();
    let mut forced_segments: BTreeMap<usize, usize> = BTreeMap::new();
    for _ in 0..8 {
        let mut w = Walk::new(g, tp, state, split_params.clone(), forced.clone());
        w.forced_segments = forced_segments.clone();
        w.run()?;
        if w.split_params == split_params && w.forced == forced && w.forced_segments == forced_segments {
            return w.finish(state_outputs);
        }
        split_params = w.split_params;
        forced = w.forced;
        forced_segments = w.forced_segments;
    }
    Err(ShardError {
        node: g.name().to_string(),
        op: "graph",
        tp,
        why: "the split of the state parameters did not settle".into(),
    })
}

struct Walk<'g> {
    g: &'g Graph,
    tp: usize,
    state: Vec<String>,
    layouts: Vec<Layout>,
    sources: Vec<Source>,
    weights: Vec<Option<WeightRole>>,
    all_reduces: Vec<NodeId>,
    split_params: BTreeMap<String, (usize, usize)>,
    /// By node: blocks of its split axis, and the column-parallel weight
    /// whose product it derives from.
    blocks: Vec<usize>,
    origin: Vec<Option<usize>>,
    /// Column weights cut into fewer blocks than ranks (KV heads).
    forced: BTreeMap<usize, usize>,
    /// Column weights whose output is sliced into equal segments (fused
    /// Q/K/V), and each node's segment count.
    forced_segments: BTreeMap<usize, usize>,
    segments: Vec<usize>,
    /// The node being visited: its blocks, segments and origin.
    cur_blocks: usize,
    cur_segments: usize,
    cur_origin: Option<usize>,
}

impl<'g> Walk<'g> {
    fn new(
        g: &'g Graph,
        tp: usize,
        state: &[&str],
        split_params: BTreeMap<String, (usize, usize)>,
        forced: BTreeMap<usize, usize>,
    ) -> Walk<'g> {
        Walk {
            g,
            tp,
            state: state.iter().map(|s| s.to_string()).collect(),
            layouts: vec![Layout::Replicated; g.len()],
            sources: vec![Source::Data; g.len()],
            weights: vec![None; g.weights().len()],
            all_reduces: vec![],
            split_params,
            blocks: vec![tp; g.len()],
            origin: vec![None; g.len()],
            forced,
            forced_segments: BTreeMap::new(),
            segments: vec![1; g.len()],
            cur_blocks: tp,
            cur_segments: 1,
            cur_origin: None,
        }
    }

    fn dims(&self, id: NodeId) -> Vec<usize> {
        self.g.ty(id).shape.as_fixed().unwrap_or_default()
    }

    fn fail(&self, id: NodeId, why: impl Into<String>) -> ShardError {
        let n = self.g.node(id);
        ShardError { node: n.name.clone(), op: n.op.name(), tp: self.tp, why: why.into() }
    }

    fn run(&mut self) -> Result<(), ShardError> {
        for i in 0..self.g.len() {
            let id = NodeId(i as u32);
            // Blocks and origin default to those of the split operands.
            let split_ops: Vec<usize> = self.g.nodes()[i]
                .operands
                .iter()
                .filter(|o| matches!(self.layouts[o.index()], Layout::Split(_)))
                .map(|o| o.index())
                .collect();
            self.cur_blocks = split_ops.iter().map(|&o| self.blocks[o]).max().unwrap_or(self.tp);
            self.cur_origin = match split_ops.first() {
                Some(&o) if split_ops.iter().all(|&x| self.origin[x] == self.origin[o]) => self.origin[o],
                _ => None,
            };
            self.cur_segments = split_ops.first().map_or(1, |&o| self.segments[o]);
            if split_ops.iter().any(|&o| self.segments[o] != self.cur_segments) {
                return Err(self.fail(id, "it combines values split into different segments"));
            }
            let (layout, source) = self.visit(id)?;
            // Values combined from several split operands: the coarser ones
            // are cut down to the finest blocks (each coarse block holds
            // whole fine ones).
            if let Layout::Split(_) = layout
                && split_ops.len() > 1
                && split_ops.iter().any(|&o| !self.cur_blocks.is_multiple_of(self.blocks[o]))
            {
                return Err(self.fail(id, "its operands are split into blocks that do not nest"));
            }
            self.blocks[i] = self.cur_blocks;
            self.segments[i] = if matches!(layout, Layout::Split(_)) { self.cur_segments } else { 1 };
            self.origin[i] = self.cur_origin;
            // A row-parallel product is all-reduced at once (recorded in
            // `all_reduces`): its users see the whole sum.
            self.layouts[i] = if layout == Layout::Partial { Layout::Replicated } else { layout };
            self.sources[i] = source;
        }
        Ok(())
    }

    /// Decides `w`'s role; a weight used two ways is refused.
    fn assign(&mut self, at: NodeId, w: usize, role: WeightRole) -> Result<(), ShardError> {
        match self.weights[w] {
            None => {
                self.weights[w] = Some(role);
                Ok(())
            }
            Some(r) if r == role => Ok(()),
            Some(r) => Err(self.fail(
                at,
                format!("weight `{}` is used as {r:?} elsewhere and as {role:?} here", self.g.weights()[w].name),
            )),
        }
    }

    /// A free value (weights or constants only) that a consumer needs split
    /// along `axis`: split its weight, or accept a constant that is the same
    /// along that axis (every rank's slice is then the same program).
    fn split_free(&mut self, at: NodeId, operand: NodeId, axis: usize, columns: bool) -> Result<(), ShardError> {
        let d = self.dims(operand);
        if d.get(axis).copied().unwrap_or(1) == 1 {
            return Ok(()); // broadcast along the split axis
        }
        match self.sources[operand.index()].clone() {
            Source::Weight { index, map } => {
                let Some(Some(waxis)) = map.get(axis).copied() else {
                    return Err(self.fail(at, "a weight broadcast along the split axis"));
                };
                let role = if columns {
                    WeightRole::Columns { axis: waxis, blocks: self.cur_blocks, segments: self.cur_segments }
                } else {
                    WeightRole::Rows { axis: waxis }
                };
                self.assign(at, index, role)
            }
            Source::Constant => match &self.g.node(operand).op {
                Op::Constant { value } if uniform_along(value, axis) => Ok(()),
                _ => Err(self
                    .fail(at, format!("constant `{}` differs along the split axis {axis}", self.g.node(operand).name))),
            },
            Source::Mixed => Err(self.fail(at, "a value mixing weights and constants meets a split value")),
            Source::Data => unreachable!("only free values are split this way"),
        }
    }

    fn visit(&mut self, id: NodeId) -> Result<(Layout, Source), ShardError> {
        let n = self.g.node(id);
        let ops: Vec<NodeId> = n.operands.clone();
        let lay = |w: &Walk, o: NodeId| w.layouts[o.index()];
        let free = |w: &Walk, o: NodeId| w.sources[o.index()] != Source::Data;
        let rank = n.ty.rank();
        // Free values: weights, constants and what is computed from them
        // alone through layout-preserving ops.
        match &n.op {
            Op::Weight { index } => {
                return Ok((Layout::Replicated, Source::Weight { index: *index, map: (0..rank).map(Some).collect() }));
            }
            Op::Constant { .. } | Op::Iota { .. } => return Ok((Layout::Replicated, Source::Constant)),
            Op::Parameter { .. } => {
                let name = &n.name;
                return Ok(match self.split_params.get(name) {
                    Some(&(a, blocks)) => {
                        self.cur_blocks = blocks;
                        (Layout::Split(a), Source::Data)
                    }
                    None => (Layout::Replicated, Source::Data),
                });
            }
            _ => {}
        }
        if !ops.is_empty() && ops.iter().all(|&o| free(self, o)) {
            let source = self.free_source(id, &ops);
            return Ok((Layout::Replicated, source));
        }
        let split_of = |w: &Walk, o: NodeId| match lay(w, o) {
            Layout::Split(a) => Some(a),
            _ => None,
        };
        let layout = match &n.op {
            Op::Unary { .. } | Op::Convert { .. } => lay(self, ops[0]),
            Op::Binary { .. } | Op::Compare { .. } | Op::Select => {
                // Broadcasting elementwise: operands align from the right.
                let splits: Vec<(NodeId, usize)> = ops
                    .iter()
                    .filter_map(|&o| split_of(self, o).map(|a| (o, a + rank - self.g.ty(o).rank())))
                    .collect();
                let Some(&(_, axis)) = splits.first() else { return Ok((Layout::Replicated, Source::Data)) };
                if splits.iter().any(|&(_, a)| a != axis) {
                    return Err(self.fail(id, "its operands are split along different axes"));
                }
                for &o in &ops {
                    let oa = (axis + self.g.ty(o).rank()).checked_sub(rank);
                    match lay(self, o) {
                        Layout::Split(_) => {}
                        Layout::Partial => return Err(self.fail(id, "a partial sum reaches an elementwise op")),
                        Layout::Replicated => {
                            let Some(oa) = oa else { continue };
                            if free(self, o) {
                                self.split_free(id, o, oa, true)?;
                            } else if self.dims(o)[oa] != 1 {
                                let name = &self.g.node(o).name;
                                if self.state.contains(name) && matches!(self.g.node(o).op, Op::Parameter { .. }) {
                                    self.split_params.insert(name.clone(), (oa, self.cur_blocks));
                                } else {
                                    return Err(self.fail(
                                        id,
                                        format!("replicated value `{name}` meets a value split along axis {axis}"),
                                    ));
                                }
                            }
                        }
                    }
                }
                Layout::Split(axis)
            }
            Op::Reshape { .. } => match lay(self, ops[0]) {
                Layout::Split(a) => {
                    let (from, to) = (self.dims(ops[0]), self.dims(id));
                    match reshape_axis(&from, &to, a, self.cur_blocks) {
                        Ok(t) if self.cur_segments > 1 && to[t] != from[a] => {
                            return Err(self.fail(id, "it reshapes a fused (segmented) split before slicing it"));
                        }
                        Ok(t) => Layout::Split(t),
                        // Fewer heads than blocks (KV heads under tp): when
                        // they divide the ranks, the projection they come
                        // from is cut into one block per head, each block
                        // replicated on tp / heads ranks.
                        Err(why) => match (reshape_axis(&from, &to, a, 1), self.cur_origin) {
                            (Ok(t), Some(w)) if self.tp.is_multiple_of(to[t]) && to[t] < self.cur_blocks => {
                                self.forced.insert(w, to[t]);
                                self.cur_blocks = to[t];
                                Layout::Split(t)
                            }
                            _ => return Err(self.fail(id, why)),
                        },
                    }
                }
                l => l,
            },
            Op::Transpose { perm } => match lay(self, ops[0]) {
                Layout::Split(a) => Layout::Split(perm.iter().position(|&p| p == a).expect("a permutation")),
                l => l,
            },
            Op::Broadcast { dims, .. } => match lay(self, ops[0]) {
                Layout::Split(a) => Layout::Split(dims[a]),
                l => l,
            },
            Op::Reduce { axes, .. } => match lay(self, ops[0]) {
                Layout::Split(a) if axes.contains(&a) => {
                    return Err(self.fail(id, format!("it reduces over the split axis {a}")));
                }
                Layout::Split(a) => Layout::Split(a - axes.iter().filter(|&&x| x < a).count()),
                l => l,
            },
            Op::Dot { dims } => self.dot(id, ops[0], ops[1], dims)?,
            Op::Concat { axis } => {
                let axis = *axis;
                let split = ops.iter().find_map(|&o| split_of(self, o));
                let Some(a) = split else { return Ok((Layout::Replicated, Source::Data)) };
                if a == axis {
                    return Err(self.fail(id, "it concatenates along the split axis"));
                }
                for &o in &ops {
                    match lay(self, o) {
                        Layout::Split(b) if b == a => {}
                        Layout::Replicated => {
                            let name = self.g.node(o).name.clone();
                            if self.state.contains(&name) && matches!(self.g.node(o).op, Op::Parameter { .. }) {
                                self.split_params.insert(name, (a, self.cur_blocks));
                            } else if free(self, o) {
                                self.split_free(id, o, a, true)?;
                            } else {
                                return Err(self.fail(id, format!("it joins replicated `{name}` with split values")));
                            }
                        }
                        _ => return Err(self.fail(id, "its operands are laid out differently")),
                    }
                }
                Layout::Split(a)
            }
            Op::Slice { starts, limits, strides } => match lay(self, ops[0]) {
                Layout::Split(a) => {
                    let d = self.dims(ops[0])[a];
                    let len = limits[a].saturating_sub(starts[a]);
                    let full = starts[a] == 0 && limits[a] == d && strides[a] == 1;
                    let one_segment =
                        strides[a] == 1 && len > 0 && d.is_multiple_of(len) && starts[a].is_multiple_of(len);
                    if full {
                        Layout::Split(a)
                    } else if one_segment && self.cur_segments == d / len {
                        // One segment of a fused product: split as its parts.
                        self.cur_segments = 1;
                        Layout::Split(a)
                    } else if let (true, 1, Some(w)) = (one_segment, self.cur_segments, self.cur_origin) {
                        // A fused product sliced apart: its weight is split
                        // per segment (found here, applied on the next walk).
                        self.forced_segments.insert(w, d / len);
                        Layout::Split(a)
                    } else {
                        return Err(self.fail(id, format!("it slices the split axis {a}")));
                    }
                }
                l => l,
            },
            Op::DynamicSlice { sizes } => match lay(self, ops[0]) {
                Layout::Split(a) if sizes[a] == self.dims(ops[0])[a] && is_zero(self.g, ops[1 + a]) => Layout::Split(a),
                Layout::Split(a) => return Err(self.fail(id, format!("it slices the split axis {a} at run time"))),
                l => l,
            },
            Op::DynamicUpdateSlice => {
                let a = split_of(self, ops[0]).or_else(|| split_of(self, ops[1]));
                match a {
                    None => Layout::Replicated,
                    Some(a) => {
                        for &o in &ops[..2] {
                            if lay(self, o) != Layout::Split(a) {
                                let name = self.g.node(o).name.clone();
                                if self.state.contains(&name) && matches!(self.g.node(o).op, Op::Parameter { .. }) {
                                    self.split_params.insert(name, (a, self.cur_blocks));
                                } else {
                                    return Err(self.fail(id, "it writes between differently laid out values"));
                                }
                            }
                        }
                        if !is_zero(self.g, ops[2 + a]) {
                            return Err(self.fail(id, format!("it writes at a run-time offset on the split axis {a}")));
                        }
                        Layout::Split(a)
                    }
                }
            }
            Op::Gather { axis } => {
                if lay(self, ops[1]) != Layout::Replicated {
                    return Err(self.fail(id, "its indices are split"));
                }
                if let Source::Weight { index, .. } = self.sources[ops[0].index()].clone() {
                    // An embedding table: replicated by default.
                    self.assign(id, index, WeightRole::Replicated)?;
                }
                match lay(self, ops[0]) {
                    Layout::Split(a) if a == *axis => return Err(self.fail(id, "it gathers along the split axis")),
                    Layout::Split(a) if a < *axis => Layout::Split(a),
                    Layout::Split(a) => Layout::Split(a - 1 + self.g.ty(ops[1]).rank()),
                    l => l,
                }
            }
            Op::Pad { low, high } => match lay(self, ops[0]) {
                Layout::Split(a) if low[a] != 0 || high[a] != 0 => {
                    return Err(self.fail(id, format!("it pads the split axis {a}")));
                }
                l => l,
            },
            Op::Reverse { axes } => match lay(self, ops[0]) {
                Layout::Split(a) if axes.contains(&a) => return Err(self.fail(id, "it reverses the split axis")),
                l => l,
            },
            Op::AllReduce { .. } => return Err(self.fail(id, "the graph is sharded already")),
            op => {
                if ops.iter().any(|&o| lay(self, o) != Layout::Replicated) {
                    return Err(self.fail(id, format!("{} of split values", op.name())));
                }
                Layout::Replicated
            }
        };
        Ok((layout, Source::Data))
    }

    /// A product: a weight by a replicated activation is column-parallel, by
    /// one split along the contracted axis row-parallel (then all-reduced);
    /// two activations split along paired batch axes stay split (attention
    /// per head).
    fn dot(&mut self, id: NodeId, l: NodeId, r: NodeId, d: &specc_ir::DotDims) -> Result<Layout, ShardError> {
        let (ll, rl) = (self.layouts[l.index()], self.layouts[r.index()]);
        let (lrank, rrank) = (self.g.ty(l).rank(), self.g.ty(r).rank());
        let free_axes = |rank: usize, batch: &[usize], contract: &[usize]| -> Vec<usize> {
            (0..rank).filter(|i| !batch.contains(i) && !contract.contains(i)).collect()
        };
        let lfree = free_axes(lrank, &d.lhs_batch, &d.lhs_contract);
        let rfree = free_axes(rrank, &d.rhs_batch, &d.rhs_contract);
        let out_of_rhs_free = |i: usize| d.lhs_batch.len() + lfree.len() + i;
        // Weights (and what is computed from them): constants multiply like
        // replicated activations (a rotary frequency table, say).
        let is_weight = |w: &Walk, o: NodeId| matches!(w.sources[o.index()], Source::Weight { .. } | Source::Mixed);
        if is_weight(self, r) {
            return match ll {
                Layout::Replicated => {
                    // Column-parallel: split the weight's output features
                    // (the last free axis; the first when the weight is a
                    // vector of features).
                    let Some(&axis) = rfree.last() else {
                        return Err(self.fail(id, "a product with a weight that has no output features"));
                    };
                    let w = match &self.sources[r.index()] {
                        Source::Weight { index, .. } => Some(*index),
                        _ => None,
                    };
                    let blocks = w.and_then(|w| self.forced.get(&w).copied()).unwrap_or(self.tp);
                    let segments = w.and_then(|w| self.forced_segments.get(&w).copied()).unwrap_or(1);
                    self.cur_segments = segments;
                    if !self.dims(r)[axis].is_multiple_of(blocks * segments) {
                        return Err(self.fail(
                            id,
                            format!("{} output features do not divide into {blocks} blocks", self.dims(r)[axis]),
                        ));
                    }
                    self.cur_blocks = blocks;
                    self.split_free(id, r, axis, true)?;
                    self.cur_origin = w;
                    Ok(Layout::Split(out_of_rhs_free(rfree.len() - 1)))
                }
                Layout::Split(a) => {
                    if let Some(k) = d.lhs_contract.iter().position(|&c| c == a) {
                        if self.blocks[l.index()] != self.tp {
                            let blocks = self.blocks[l.index()];
                            return Err(self.fail(
                                id,
                                format!(
                                    "its input is {blocks} heads, which {} ranks do not share evenly: choose a tp that divides the query heads ({blocks}); padding query heads is not implemented",
                                    self.tp
                                ),
                            ));
                        }
                        self.split_free(id, r, d.rhs_contract[k], false)?;
                        self.all_reduces.push(id);
                        Ok(Layout::Partial)
                    } else {
                        Err(self.fail(id, "a weight multiplies an activation split along a non-contracted axis"))
                    }
                }
                Layout::Partial => Err(self.fail(id, "a partial sum reaches a product")),
            };
        }
        if is_weight(self, l) {
            return Err(self.fail(id, "a weight on the left of a product"));
        }
        match (ll, rl) {
            (Layout::Replicated, Layout::Replicated) => Ok(Layout::Replicated),
            (Layout::Split(a), Layout::Split(b)) => {
                if let Some(k) = d.lhs_batch.iter().position(|&x| x == a)
                    && d.rhs_batch[k] == b
                {
                    return Ok(Layout::Split(k));
                }
                if let Some(k) = d.lhs_contract.iter().position(|&x| x == a)
                    && d.rhs_contract[k] == b
                {
                    self.all_reduces.push(id);
                    return Ok(Layout::Partial);
                }
                Err(self.fail(id, "a product of activations split along unpaired axes"))
            }
            (Layout::Split(a), Layout::Replicated) if lfree.contains(&a) => {
                Ok(Layout::Split(d.lhs_batch.len() + lfree.iter().position(|&x| x == a).expect("free")))
            }
            (Layout::Replicated, Layout::Split(b)) if rfree.contains(&b) => {
                Ok(Layout::Split(out_of_rhs_free(rfree.iter().position(|&x| x == b).expect("free"))))
            }
            _ => Err(self.fail(id, "a product of a split and a replicated activation along a shared axis")),
        }
    }

    /// The source of a value computed from free operands only.
    fn free_source(&self, id: NodeId, ops: &[NodeId]) -> Source {
        let n = self.g.node(id);
        let all_constant = ops.iter().all(|&o| self.sources[o.index()] == Source::Constant);
        if all_constant {
            return Source::Constant;
        }
        let single = match &self.sources[ops[0].index()] {
            Source::Weight { index, map } if ops.len() == 1 => Some((*index, map.clone())),
            _ => None,
        };
        let Some((index, map)) = single else { return Source::Mixed };
        let (from, to) = (self.dims(ops[0]), self.dims(id));
        let map = match &n.op {
            Op::Convert { to } if *to != DType::Bool => Some(map),
            Op::Transpose { perm } => Some(perm.iter().map(|&p| map[p]).collect()),
            Op::Broadcast { dims, .. } => {
                let mut m = vec![None; to.len()];
                for (i, &d) in dims.iter().enumerate() {
                    if from[i] == to[d] {
                        m[d] = map[i];
                    }
                }
                Some(m)
            }
            Op::Reshape { .. } => {
                // Only reshapes that add or drop axes of size 1.
                let keep_from: Vec<usize> = (0..from.len()).filter(|&i| from[i] != 1).collect();
                let keep_to: Vec<usize> = (0..to.len()).filter(|&i| to[i] != 1).collect();
                if keep_from.iter().map(|&i| from[i]).eq(keep_to.iter().map(|&i| to[i])) {
                    let mut m = vec![None; to.len()];
                    for (&f, &t) in keep_from.iter().zip(&keep_to) {
                        m[t] = map[f];
                    }
                    Some(m)
                } else {
                    None
                }
            }
            _ => None,
        };
        match map {
            Some(map) => Source::Weight { index, map },
            None => Source::Mixed,
        }
    }

    fn finish(self, state_outputs: &[&str]) -> Result<ShardPlan, ShardError> {
        let mut split_state_outputs = BTreeMap::new();
        let mut gathered_outputs = BTreeMap::new();
        for o in self.g.outputs() {
            match self.layouts[o.node.index()] {
                Layout::Split(a) if state_outputs.contains(&o.name.as_str()) => {
                    split_state_outputs.insert(o.name.clone(), (a, self.blocks[o.node.index()]));
                }
                Layout::Split(a) if self.blocks[o.node.index()] == self.tp => {
                    gathered_outputs.insert(o.name.clone(), a);
                }
                Layout::Split(_) => return Err(self.fail(o.node, "an output split into fewer blocks than ranks")),
                Layout::Partial => return Err(self.fail(o.node, "a partial sum is an output")),
                Layout::Replicated => {}
            }
        }
        Ok(ShardPlan {
            tp: self.tp,
            blocks: self.blocks,
            segments: self.segments,
            sources: self.sources,
            layouts: self.layouts,
            weights: self.weights.into_iter().map(|w| w.unwrap_or(WeightRole::Replicated)).collect(),
            all_reduces: self.all_reduces,
            split_params: self.split_params,
            split_state_outputs,
            gathered_outputs,
        })
    }
}

/// Where a split of axis `a` of `from` (its major part, in `tp` contiguous
/// blocks) lands in `to`: the reshape must keep `a`'s group of axes whole
/// (groups: the shortest runs of axes with equal element counts) with `a`
/// its major non-unit axis, and put the split on the group's major non-unit
/// axis of `to`, which `tp` must divide: then both splits cut the group's
/// elements into the same contiguous blocks.
fn reshape_axis(from: &[usize], to: &[usize], a: usize, tp: usize) -> Result<usize, String> {
    let (mut i, mut j) = (0usize, 0usize);
    while i < from.len() && j < to.len() {
        let (gi, gj) = (i, j);
        let (mut pf, mut pt) = (from[i], to[j]);
        while pf != pt {
            if pf < pt {
                i += 1;
                let Some(&d) = from.get(i) else { break };
                pf *= d;
            } else {
                j += 1;
                let Some(&d) = to.get(j) else { break };
                pt *= d;
            }
        }
        if (gi..=i).contains(&a) {
            if (gi..a).any(|k| from[k] != 1) {
                return Err(format!("the reshape of {from:?} to {to:?} puts the split axis {a} inside another"));
            }
            let Some(t) = (gj..=j.min(to.len() - 1)).find(|&k| to[k] != 1) else {
                return Err(format!("the reshape of {from:?} to {to:?} loses the split axis {a}"));
            };
            if !to[t].is_multiple_of(tp) {
                return Err(format!(
                    "the reshape of {from:?} to {to:?} splits the split axis into {} parts (heads?) that do not divide into {tp} ranks",
                    to[t]
                ));
            }
            return Ok(t);
        }
        i += 1;
        j += 1;
    }
    Err(format!("the reshape of {from:?} to {to:?} has no axis {a}"))
}

fn is_zero(g: &Graph, id: NodeId) -> bool {
    match &g.node(id).op {
        Op::Constant { value } => value.to_i64_vec().is_some_and(|v| v.iter().all(|&x| x == 0)),
        _ => false,
    }
}

/// Whether `value` is the same at every index of `axis`.
fn uniform_along(value: &specc_ir::Literal, axis: usize) -> bool {
    let v = value.to_f64_vec();
    let shape = &value.shape;
    if axis >= shape.len() || shape[axis] <= 1 {
        return true;
    }
    let inner: usize = shape[axis + 1..].iter().product();
    let d = shape[axis];
    v.iter().enumerate().all(|(i, x)| {
        let k = (i / inner) % d;
        k == 0 || v[i - k * inner].to_bits() == x.to_bits()
    })
}

mod program;
pub use program::{Sharded, local_weight_type, rank_weights, shard, shard_program, weight_block};
pub use specc_ir::RANK_INPUT;
