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
use std::collections::HashMap;

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
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// A with-past decoder export and the facts the speculation graphs need.
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
        Ok(DecoderModel { role: role.into(), graph, weights, caches, kv_heads, head_dim, vocab })
    }

    pub fn layers(&self) -> usize {
        self.caches.len() / 2
    }

    /// The export specialized to batch 1, `t` new tokens and a past of `c`.
    pub fn step_graph(&self, t: usize, c: usize) -> Result<Graph, SpecError> {
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
        [1, self.kv_heads, c, self.head_dim]
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
