//! Static KV caches from an unmodified "with past" export.
//!
//! The contract (verified on real exports, see the ONNX notes): bind the
//! export's past length to the cache capacity C and its sequence length to
//! T; feed the whole fixed cache `[B, H, C, D]` as the past, an attention
//! mask that is 1 on the first `pos` slots, 0 on the rest of the cache and
//! 1 on the T new tokens, and positions `pos .. pos+T`. The model's own
//! causal logic then makes the new tokens attend causally to each other,
//! the mask hides every slot at or after `pos` (stale or rejected entries),
//! and the T new entries are `present[:, :, C:C+T, :]`, written back at
//! `pos` with a dynamic-update-slice. Rejected speculative tokens need no
//! rollback: the next call writes over their slots.
//!
//! This needs the positions as an input: an export that derives them from
//! the past length (no `position_ids`) cannot use a fixed-size cache.

use crate::build::{Emit, R};
use specc_ir::{BinaryOp, CompareDir, DType, Graph, GraphBuilder, IrError, NodeId, Op, WeightDecl, WeightStore};
use specc_opt::WeightRole;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "model `{model}` has no `position_ids` input: its export derives token positions from the past length, \
         which a fixed-capacity KV cache (whose past is always C slots) would make wrong. Re-export it with \
         position_ids (optimum does for Llama, Mistral, Qwen2, GPT2, Phi3)"
    )]
    NoPositionIds { model: String },
    #[error("model `{model}` is not a decoder with past: {detail}")]
    NotWithPast { model: String, detail: String },
    #[error("the draft and the target do not share a vocabulary: {0}")]
    Vocabulary(String),
    #[error("{0}")]
    Config(String),
    #[error("specializing `{model}` for {what}: {source}")]
    Specialize {
        model: String,
        what: String,
        #[source]
        source: specc_opt::OptError,
    },
    /// (The cause is in the message, not a `source`: it is the whole story,
    /// and a report would print it twice.)
    #[error("model `{model}` at --tp {tp}: {why}")]
    Shard { model: String, tp: usize, why: specc_opt::ShardError },
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// A with-past decoder export and the facts the speculation graphs need.
#[derive(Clone)]
pub struct DecoderModel {
    /// `target` or `draft`: prefixes its weights in graphs that hold both.
    pub role: String,
    pub graph: Graph,
    pub weights: WeightStore,
    /// `(past input, present output)` names per cache tensor, in order.
    pub caches: Vec<(String, String)>,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    /// Set when the model's graphs are tensor-parallel (see [`Sharding`]).
    pub sharding: Option<Sharding>,
}

/// How a model is split across `tp` ranks, found by the sharding pass on
/// one of its steps and required of every other step (all of a model's
/// graphs share its weights, so they must split them alike).
#[derive(Clone, Debug)]
pub struct Sharding {
    pub tp: usize,
    /// By weight name (as the export names it).
    pub roles: BTreeMap<String, WeightRole>,
    /// KV heads in each rank's cache (all of them / tp, or one when heads
    /// are replicated across ranks).
    pub local_kv_heads: usize,
    /// All-reduces in one step (two per layer).
    pub all_reduces_per_step: usize,
}

impl DecoderModel {
    /// Checks the with-past interface of an imported export.
    pub fn new(role: &str, graph: Graph, weights: WeightStore) -> Result<DecoderModel, SpecError> {
        let err = |detail: String| SpecError::NotWithPast { model: role.into(), detail };
        for name in ["input_ids", "attention_mask"] {
            if graph.param_by_name(name).is_none() {
                return Err(err(format!("it has no `{name}` input")));
            }
        }
        let mut caches = Vec::new();
        let mut kv = None;
        for &p in graph.params() {
            let name = &graph.node(p).name;
            let Some(rest) = name.strip_prefix("past_key_values.") else { continue };
            let present = format!("present.{rest}");
            if graph.output_by_name(&present).is_none() {
                return Err(err(format!("input `{name}` has no matching output `{present}`")));
            }
            let d = &graph.ty(p).shape.0;
            if d.len() != 4 {
                return Err(err(format!("`{name}` is {}, not [batch, kv_heads, past, head_dim]", graph.ty(p))));
            }
            let (h, hd) = (d[1].fixed(), d[3].fixed());
            let (Some(h), Some(hd)) = (h, hd) else {
                return Err(err(format!("`{name}` has symbolic heads or head size: {}", graph.ty(p))));
            };
            kv.get_or_insert((h, hd));
            caches.push((name.clone(), present));
        }
        let Some((kv_heads, head_dim)) = kv else {
            return Err(err("it has no `past_key_values.*` inputs (export it \"with past\")".into()));
        };
        if graph.param_by_name("position_ids").is_none() {
            return Err(SpecError::NoPositionIds { model: role.into() });
        }
        let logits = graph.output_by_name("logits").ok_or_else(|| err("it has no `logits` output".into()))?;
        let vocab = graph
            .ty(logits.node)
            .shape
            .0
            .last()
            .and_then(|d| d.fixed())
            .ok_or_else(|| err("its logits have no static vocabulary dim".into()))?;
        Ok(DecoderModel { role: role.into(), graph, weights, caches, kv_heads, head_dim, vocab, sharding: None })
    }

    pub fn layers(&self) -> usize {
        self.caches.len() / 2
    }

    /// This model split across `tp` ranks: its steps become rank programs
    /// (local shapes, all-reduces, a `tp_rank` input) and its weights are
    /// cut per rank. Where the pass cannot prove a split it refuses, naming
    /// the node.
    pub fn sharded(&self, tp: usize) -> Result<DecoderModel, SpecError> {
        let mut m = self.clone();
        m.sharding = None;
        if tp <= 1 {
            return Ok(m);
        }
        // A small decode step: the split depends on the structure, not on
        // the sequence or the cache length.
        let step = self.step_graph(1, 8)?;
        let plan = self.plan(&step, tp)?;
        let (local, _) = specc_opt::shard_program(&step, &plan).map_err(|e| self.shard_error(tp, e))?;
        let cache = local.param_by_name(&self.caches[0].0).expect("a cache input").1;
        let local_kv_heads = local.ty(cache).shape.as_fixed().expect("static")[1];
        let roles = step.weights().iter().zip(&plan.weights).map(|(w, r)| (w.name.clone(), *r)).collect();
        m.sharding = Some(Sharding { tp, roles, local_kv_heads, all_reduces_per_step: plan.all_reduces.len() });
        Ok(m)
    }

    fn shard_error(&self, tp: usize, source: specc_opt::ShardError) -> SpecError {
        SpecError::Shard { model: self.role.clone(), tp, why: source }
    }

    /// The sharding plan of one of this model's (unsharded) steps.
    fn plan(&self, step: &Graph, tp: usize) -> Result<specc_opt::ShardPlan, SpecError> {
        let past: Vec<&str> = self.caches.iter().map(|(p, _)| p.as_str()).collect();
        let present: Vec<&str> = self.caches.iter().map(|(_, p)| p.as_str()).collect();
        specc_opt::shard_plan(step, tp, &past, &present).map_err(|e| self.shard_error(tp, e))
    }

    /// One rank's weights (`names` only): replicated ones shared, split ones
    /// cut out (each read once per rank).
    pub fn rank_weights(&self, names: &[String], rank: usize) -> Result<WeightStore, SpecError> {
        let Some(s) = &self.sharding else { return Ok(self.weights.clone()) };
        let mut out = WeightStore::new();
        for name in names {
            let role = self.weight_role(name);
            let bad = |why: String| self.weight_error(name, why);
            let e = self.weights.get(name).ok_or_else(|| bad("no data for it".into()))?;
            if role == WeightRole::Replicated {
                out.insert(name.clone(), e.ty.clone(), e.bytes.clone()).map_err(bad)?;
                continue;
            }
            let bytes = e.bytes.read().map_err(|e| bad(format!("reading it: {e}")))?;
            let (ty, block) = specc_opt::weight_block(&e.ty, &bytes, role, s.tp, rank);
            out.insert(name.clone(), ty, specc_ir::WeightBytes::Owned(std::sync::Arc::new(block))).map_err(bad)?;
        }
        Ok(out)
    }

    /// The name and local type of each of `names` on one rank (the same on
    /// every rank); nothing is read.
    pub fn rank_weight_types(&self, names: &[String]) -> Result<Vec<(String, specc_ir::TensorType)>, SpecError> {
        let tp = self.sharding.as_ref().map_or(1, |s| s.tp);
        names
            .iter()
            .map(|n| {
                let e = self.weights.get(n).ok_or_else(|| self.weight_error(n, "no data for it".into()))?;
                Ok((n.clone(), specc_opt::local_weight_type(&e.ty, self.weight_role(n), tp)))
            })
            .collect()
    }

    /// A sharding error about weight `name`.
    fn weight_error(&self, name: &str, why: String) -> SpecError {
        let tp = self.sharding.as_ref().map_or(1, |s| s.tp);
        self.shard_error(tp, specc_opt::ShardError { node: name.to_string(), op: "weight", tp, why })
    }

    /// The role of weight `name` (replicated when the model is not sharded).
    pub fn weight_role(&self, name: &str) -> WeightRole {
        self.sharding.as_ref().and_then(|s| s.roles.get(name).copied()).unwrap_or(WeightRole::Replicated)
    }

    /// The step of `t` new tokens after a cache of `c`: the export
    /// specialized, and for a sharded model its rank program (whose weight
    /// split must be the model's).
    pub fn step_graph(&self, t: usize, c: usize) -> Result<Graph, SpecError> {
        let g = self.unsharded_step(t, c)?;
        let Some(s) = &self.sharding else { return Ok(g) };
        let plan = self.plan(&g, s.tp)?;
        for (w, role) in g.weights().iter().zip(&plan.weights) {
            if s.roles.get(&w.name) != Some(role) {
                return Err(self.weight_error(
                    &w.name,
                    format!(
                        "the step of {t} tokens splits it as {role:?}, the decode step as {:?}",
                        s.roles.get(&w.name)
                    ),
                ));
            }
        }
        Ok(specc_opt::shard_program(&g, &plan).map_err(|e| self.shard_error(s.tp, e))?.0)
    }

    /// The export specialized to batch 1, `t` new tokens and a past of `c`.
    fn unsharded_step(&self, t: usize, c: usize) -> Result<Graph, SpecError> {
        let ids = self.graph.ty(self.graph.param_by_name("input_ids").expect("checked").1).shape.0.clone();
        let past = self.graph.ty(self.graph.param_by_name(&self.caches[0].0).expect("checked").1).shape.0.clone();
        let mut b = specc_opt::Bindings::new();
        // batch, sequence (from input_ids) and past (from a cache input).
        for (dim, value) in [(&ids[0], 1), (&ids[1], t), (&past[2], c)] {
            if let specc_ir::Dim::Sym(s) = dim {
                b = b.with(s, value);
            }
        }
        let (g, _) = specc_opt::specialize(&self.graph, &b).map_err(|source| SpecError::Specialize {
            model: self.role.clone(),
            what: format!("{t} tokens after a cache of {c}"),
            source,
        })?;
        Ok(g)
    }

    /// The shape of one cache tensor at capacity `c`.
    pub fn cache_dims(&self, c: usize) -> [usize; 4] {
        let heads = self.sharding.as_ref().map_or(self.kv_heads, |s| s.local_kv_heads);
        [1, heads, c, self.head_dim]
    }

    /// The name a weight of this model has in a graph holding several.
    pub fn weight_name(&self, w: &str) -> String {
        format!("{}::{w}", self.role)
    }
}

/// Weights declared once per graph and shared by every inlined step.
#[derive(Default)]
pub struct SharedWeights {
    ids: HashMap<String, NodeId>,
}

impl SharedWeights {
    pub fn get(&mut self, b: &mut GraphBuilder, m: &DecoderModel, w: &WeightDecl) -> Result<NodeId, IrError> {
        let name = m.weight_name(&w.name);
        if let Some(&id) = self.ids.get(&name) {
            return Ok(id);
        }
        let id = b.weight(name.clone(), w.ty.clone())?;
        self.ids.insert(name, id);
        Ok(id)
    }
}

/// One cached forward pass of `tokens` (`s64[1, T]`) at positions
/// `pos .. pos+T` (`pos`: `s64[]`) over the caches `[1, H, C, D]`. Returns the
/// logits `[1, T, V]` and the updated caches.
pub fn emit_step(
    e: &mut Emit,
    m: &DecoderModel,
    step: &Graph,
    tokens: NodeId,
    pos: NodeId,
    caches: &[NodeId],
    weights: &mut SharedWeights,
) -> R<(NodeId, Vec<NodeId>)> {
    let t = e.dims(tokens)[1];
    let c = e.dims(caches[0])[2];
    // Mask: cache slots before `pos`, then the T new tokens.
    let slots = e.iota(&[c], 0, DType::I64)?;
    let valid = e.compare(CompareDir::Lt, slots, pos)?;
    let valid = e.convert(valid, DType::I64)?;
    let ones = e.constant(specc_ir::Literal::new(vec![t], specc_ir::LiteralData::I64(vec![1; t])).expect("sized"))?;
    let mask = e.concat(&[valid, ones], 0)?;
    let mask = e.reshape(mask, &[1, c + t])?;
    // Positions pos .. pos+T.
    let offsets = e.iota(&[t], 0, DType::I64)?;
    let positions = e.binary(BinaryOp::Add, offsets, pos)?;
    let positions = e.reshape(positions, &[1, t])?;

    let mut args = Vec::with_capacity(step.params().len());
    for &p in step.params() {
        let name = step.node(p).name.as_str();
        args.push(match name {
            "input_ids" => e.convert(tokens, step.ty(p).dtype)?,
            "attention_mask" => e.convert(mask, step.ty(p).dtype)?,
            "position_ids" => e.convert(positions, step.ty(p).dtype)?,
            specc_opt::RANK_INPUT => rank_param(e.b)?,
            other => match m.caches.iter().position(|(past, _)| past == other) {
                Some(i) => caches[i],
                None => {
                    return Err(IrError::Infer {
                        node: other.into(),
                        op: "inline",
                        source: specc_ir::infer::InferError(format!(
                            "model `{}` has an input specc cannot feed",
                            m.role
                        )),
                    });
                }
            },
        });
    }
    let prefix = format!("{}{}/", e.prefix, m.role);
    let outs = e.b.inline(step, &args, &prefix, &mut |b, w| weights.get(b, m, w))?;
    let out =
        |name: &str| step.outputs().iter().position(|o| o.name == name).map(|i| outs[i]).expect("checked outputs");
    let logits = out("logits");
    let mut updated = Vec::with_capacity(caches.len());
    let zero = e.scalar(DType::I64, 0.0)?;
    for (i, (_, present)) in m.caches.iter().enumerate() {
        let p = out(present);
        let d = e.dims(p);
        let fresh = e.slice(p, &[0, 0, c, 0], &[d[0], d[1], c + t, d[3]])?;
        let pos_s = e.convert(pos, DType::I64)?;
        updated.push(e.add("cache_update", Op::DynamicUpdateSlice, &[caches[i], fresh, zero, zero, pos_s, zero])?);
    }
    Ok((logits, updated))
}

/// The graph's `tp_rank` input (an s32 scalar), declared on first use: a
/// graph holding several sharded steps feeds them all the same rank.
fn rank_param(b: &mut GraphBuilder) -> R<NodeId> {
    match b.graph().param_by_name(specc_opt::RANK_INPUT) {
        Some((_, id)) => Ok(id),
        None => b.parameter(specc_opt::RANK_INPUT, specc_ir::TensorType::scalar(DType::I32)),
    }
}
