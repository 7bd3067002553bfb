//! The graphs of a speculative-decoding artifact, all static, all with the
//! KV caches as parameters aliased to outputs (state that stays on the
//! device):
//!
//! * `{role}_prefill_{bucket}`: the prompt (padded to the bucket) written
//!   into the cache from position 0; the target's also gives the first
//!   token from the logits at the last real prompt position.
//! * `target_decode`: one token at `pos` -> the next token.
//! * `fused`: one whole speculation round (see [`fused`]).
//! * `verify`: the target checks K proposals made on the host (prompt
//!   lookup), with the same acceptance as `fused`.
//!
//! Token ids and positions are s64 here, as the exports have them; the
//! Neuron profile narrows them to s32 afterwards.

use crate::build::{Emit, R};
use crate::cache::{DecoderModel, SharedWeights, SpecError, emit_step};
use crate::sampling::{self, Params};
use specc_ir::{BinaryOp, CompareDir, DType, Graph, GraphBuilder, NodeId, Op, ReduceOp, TensorType};

/// One graph of the artifact and which of its outputs alias which inputs.
pub struct BuiltGraph {
    pub name: String,
    /// `prefill`, `decode`, `fused` or `verify` (decides neuronx-cc's -O).
    pub kind: &'static str,
    pub graph: Graph,
    /// (output index, parameter index) pairs: the caches.
    pub aliases: Vec<(usize, usize)>,
}

/// Declares the caches of `m` as parameters named `{role}/{past name}`.
fn cache_params(b: &mut GraphBuilder, m: &DecoderModel, c: usize) -> R<Vec<NodeId>> {
    m.caches
        .iter()
        .map(|(past, _)| b.parameter(format!("{}/{past}", m.role), TensorType::fixed(DType::F32, &m.cache_dims(c))))
        .collect()
}

/// Names the updated caches as outputs (same names as their inputs) and
/// records the aliases.
fn cache_outputs(
    b: &mut GraphBuilder,
    m: &DecoderModel,
    params: &[NodeId],
    updated: &[NodeId],
    aliases: &mut Vec<(usize, usize)>,
) -> R<()> {
    for ((past, _), (&p, &u)) in m.caches.iter().zip(params.iter().zip(updated)) {
        let param_index = b.graph().params().iter().position(|&q| q == p).expect("a parameter");
        aliases.push((b.graph().outputs().len(), param_index));
        b.output(format!("{}/{past}", m.role), u)?;
    }
    Ok(())
}

fn finish(
    b: GraphBuilder,
    name: String,
    kind: &'static str,
    aliases: Vec<(usize, usize)>,
) -> Result<BuiltGraph, SpecError> {
    Ok(BuiltGraph { name, kind, graph: b.finish()?, aliases })
}

/// The prompt, padded to `bucket` tokens, written into an empty cache. The
/// target's version also outputs `next_token`: the greedy choice after the
/// last real token (`length` of them).
pub fn prefill(
    m: &DecoderModel,
    bucket: usize,
    c: usize,
    with_token: bool,
    sample: bool,
) -> Result<BuiltGraph, SpecError> {
    let step = m.step_graph(bucket, c)?;
    let name = format!("{}_prefill_{bucket}{}", m.role, if sample { "_sample" } else { "" });
    let mut b = GraphBuilder::new(name.clone());
    let tokens = b.parameter("tokens", TensorType::fixed(DType::I64, &[1, bucket]))?;
    let length = b.parameter("length", TensorType::scalar(DType::I64))?;
    let params = if sample { Some(sampling_params(&mut b)?) } else { None };
    let caches = cache_params(&mut b, m, c)?;
    let mut w = SharedWeights::default();
    let mut e = Emit::new(&mut b, "");
    let zero = e.scalar(DType::I64, 0.0)?;
    let (logits, updated) = emit_step(&mut e, m, &step, tokens, zero, &caches, &mut w)?;
    let mut aliases = Vec::new();
    if with_token {
        let last = e.scalar(DType::I64, 1.0)?;
        let at = e.binary(BinaryOp::Sub, length, last)?;
        let row = e.add("last_logits", Op::DynamicSlice { sizes: vec![1, 1, m.vocab] }, &[logits, zero, at, zero])?;
        let next = choose(&mut e, row, m.vocab, params.as_ref(), length)?;
        b.output("next_token", next)?;
    }
    cache_outputs(&mut b, m, &caches, &updated, &mut aliases)?;
    finish(b, name, "prefill", aliases)
}

/// `fused_k4`, `verify_k2_sample`, ...: one round graph per K.
pub fn round_graph_name(base: &str, k: usize, sample: bool) -> String {
    format!("{base}_k{k}{}", if sample { "_sample" } else { "" })
}

/// Declares the run-time sampling parameters.
fn sampling_params(b: &mut GraphBuilder) -> R<Params> {
    Ok(Params {
        temperature: b.parameter("temperature", TensorType::scalar(DType::F32))?,
        top_k: b.parameter("top_k", TensorType::scalar(DType::I64))?,
        top_p: b.parameter("top_p", TensorType::scalar(DType::F32))?,
        seed: b.parameter("seed", TensorType::scalar(DType::I32))?,
    })
}

/// The next token from a logits row: greedy, or sampled at `counter`.
fn choose(e: &mut Emit, row: NodeId, v: usize, params: Option<&Params>, counter: NodeId) -> R<NodeId> {
    match params {
        None => {
            let row = e.reshape(row, &[v])?;
            e.argmax(row, DType::I64)
        }
        Some(p) => {
            let row = e.reshape(row, &[1, v])?;
            let probs = sampling::processed_probs(e, row, p)?;
            let t = sampling::gumbel_sample(e, probs, p.seed, counter, sampling::STREAM_DECODE)?;
            e.reshape(t, &[])
        }
    }
}

/// One token at `pos` -> the greedy next token.
pub fn decode(m: &DecoderModel, c: usize, sample: bool) -> Result<BuiltGraph, SpecError> {
    let step = m.step_graph(1, c)?;
    let name = format!("{}_decode{}", m.role, if sample { "_sample" } else { "" });
    let mut b = GraphBuilder::new(name.clone());
    let token = b.parameter("token", TensorType::fixed(DType::I64, &[1, 1]))?;
    let pos = b.parameter("pos", TensorType::scalar(DType::I64))?;
    let params = if sample { Some(sampling_params(&mut b)?) } else { None };
    let caches = cache_params(&mut b, m, c)?;
    let mut w = SharedWeights::default();
    let mut e = Emit::new(&mut b, "");
    let (logits, updated) = emit_step(&mut e, m, &step, token, pos, &caches, &mut w)?;
    let next = choose(&mut e, logits, m.vocab, params.as_ref(), pos)?;
    let mut aliases = Vec::new();
    b.output("next_token", next)?;
    cache_outputs(&mut b, m, &caches, &updated, &mut aliases)?;
    finish(b, name, "decode", aliases)
}

/// Greedy acceptance: how many leading proposals equal the target's own
/// choices (`proposals: s64[K]`, `choices: s64[K+1]`), as `s64[]`.
fn accepted_count(e: &mut Emit, proposals: NodeId, choices: NodeId, k: usize) -> R<NodeId> {
    let head = e.slice(choices, &[0], &[k])?;
    let miss = e.compare(CompareDir::Ne, proposals, head)?;
    let idx = e.iota(&[k], 0, DType::I64)?;
    let all = e.scalar(DType::I64, k as f64)?;
    let first_miss = e.select(miss, idx, all)?;
    e.reduce(ReduceOp::Min, first_miss, &[0])
}

/// The target scores `tokens` (`s64[1, K+1]`: the last accepted token and K
/// proposals) in one pass at `pos`; returns (accepted count, the target's
/// choices `s64[K+1]`, updated caches).
/// Sampling: `q` (`[K, V]`) is the distribution the proposals were drawn
/// from (one-hot for host proposals); greedy when `sampled` is `None`.
#[allow(clippy::too_many_arguments)]
fn verify_pass(
    e: &mut Emit,
    target: &DecoderModel,
    step: &Graph,
    tokens: NodeId,
    pos: NodeId,
    caches: &[NodeId],
    w: &mut SharedWeights,
    k: usize,
    sampled: Option<(&Params, NodeId)>,
) -> R<(NodeId, NodeId, Vec<NodeId>)> {
    let (logits, updated) = emit_step(e, target, step, tokens, pos, caches, w)?;
    let rows = e.reshape(logits, &[k + 1, target.vocab])?;
    let flat = e.reshape(tokens, &[k + 1])?;
    let proposals = e.slice(flat, &[1], &[k + 1])?;
    match sampled {
        None => {
            let choices = e.argmax(rows, DType::I64)?;
            let n = accepted_count(e, proposals, choices, k)?;
            Ok((n, choices, updated))
        }
        Some((params, q)) => {
            let p = sampling::processed_probs(e, rows, params)?;
            let (n, tokens) = sampling::accept_sampled(e, proposals, q, p, params, pos)?;
            Ok((n, tokens, updated))
        }
    }
}

/// One speculation round, one device call:
/// 1. the draft runs K steps; its first step takes the last two accepted
///    tokens (at `pos-1` and `pos`), so that after a fully accepted round,
///    whose last proposal the draft never saw as input, no extra call is
///    needed; later steps take the previous proposal;
/// 2. the target scores the last accepted token and the K proposals in one
///    pass;
/// 3. acceptance is computed in the graph: `accepted` is the number of
///    leading proposals equal to the target's choices, and `tokens` holds
///    the target's K+1 choices: the host emits `tokens[0..=accepted]`.
///
/// Both caches are parameters aliased to outputs. Cache slots past the
/// accepted point hold rejected entries; the next round's mask hides them
/// and its writes replace them.
pub fn fused(
    draft: &DecoderModel,
    target: &DecoderModel,
    k: usize,
    c: usize,
    sample: bool,
) -> Result<BuiltGraph, SpecError> {
    let first = draft.step_graph(2, c)?;
    let rest = draft.step_graph(1, c)?;
    let verify = target.step_graph(k + 1, c)?;
    let name = round_graph_name("fused", k, sample);
    let mut b = GraphBuilder::new(name.clone());
    let last2 = b.parameter("last_tokens", TensorType::fixed(DType::I64, &[1, 2]))?;
    let pos = b.parameter("pos", TensorType::scalar(DType::I64))?;
    let params = if sample { Some(sampling_params(&mut b)?) } else { None };
    let dcache = cache_params(&mut b, draft, c)?;
    let tcache = cache_params(&mut b, target, c)?;
    let mut w = SharedWeights::default();
    let mut e = Emit::new(&mut b, "");
    // Draft: step 1 over the last two accepted tokens.
    let one = e.scalar(DType::I64, 1.0)?;
    let prev_pos = e.binary(BinaryOp::Sub, pos, one)?;
    e.prefix = "draft_step1/".into();
    let (logits, mut dc) = emit_step(&mut e, draft, &first, last2, prev_pos, &dcache, &mut w)?;
    let rows = e.reshape(logits, &[2, draft.vocab])?;
    let last_row = e.slice(rows, &[1, 0], &[2, draft.vocab])?;
    let mut qs = Vec::new();
    let mut propose = |e: &mut Emit, row: NodeId, step: i64| -> R<NodeId> {
        match &params {
            None => e.argmax(row, DType::I64),
            Some(p) => {
                let q = sampling::processed_probs(e, row, p)?;
                qs.push(q);
                sampling::gumbel_sample(e, q, p.seed, pos, sampling::STREAM_DRAFT + step)
            }
        }
    };
    let mut proposal = propose(&mut e, last_row, 1)?; // s64[1]
    let mut proposals = vec![proposal];
    for i in 2..=k {
        e.prefix = format!("draft_step{i}/");
        let tok = e.reshape(proposal, &[1, 1])?;
        let offset = e.scalar(DType::I64, (i - 1) as f64)?;
        let at = e.binary(BinaryOp::Add, pos, offset)?;
        let (logits, next) = emit_step(&mut e, draft, &rest, tok, at, &dc, &mut w)?;
        dc = next;
        let row = e.reshape(logits, &[1, draft.vocab])?;
        proposal = propose(&mut e, row, i as i64)?;
        proposals.push(proposal);
    }
    // Target: the last accepted token and the K proposals, in one pass.
    e.prefix = "verify/".into();
    let current = e.slice(last2, &[0, 1], &[1, 2])?;
    let current = e.reshape(current, &[1])?;
    let mut seq = vec![current];
    seq.extend(&proposals);
    let tokens = e.concat(&seq, 0)?;
    let tokens = e.reshape(tokens, &[1, k + 1])?;
    let q = if qs.is_empty() { None } else { Some(e.concat(&qs, 0)?) };
    let sampled = params.as_ref().zip(q);
    let (n, choices, tc) = verify_pass(&mut e, target, &verify, tokens, pos, &tcache, &mut w, k, sampled)?;
    let mut aliases = Vec::new();
    b.output("accepted", n)?;
    b.output("tokens", choices)?;
    cache_outputs(&mut b, draft, &dcache, &dc, &mut aliases)?;
    cache_outputs(&mut b, target, &tcache, &tc, &mut aliases)?;
    finish(b, name, "fused", aliases)
}

/// The target checks K proposals made on the host (prompt lookup):
/// `tokens` = the last accepted token and the K proposals, at `pos`.
pub fn verify(target: &DecoderModel, k: usize, c: usize, sample: bool) -> Result<BuiltGraph, SpecError> {
    let step = target.step_graph(k + 1, c)?;
    let name = round_graph_name("verify", k, sample);
    let mut b = GraphBuilder::new(name.clone());
    let tokens = b.parameter("tokens", TensorType::fixed(DType::I64, &[1, k + 1]))?;
    let pos = b.parameter("pos", TensorType::scalar(DType::I64))?;
    let params = if sample { Some(sampling_params(&mut b)?) } else { None };
    let tcache = cache_params(&mut b, target, c)?;
    let mut w = SharedWeights::default();
    let mut e = Emit::new(&mut b, "");
    // Host proposals are certain: q is one-hot.
    let q = match &params {
        None => None,
        Some(_) => {
            let flat = e.reshape(tokens, &[k + 1])?;
            let props = e.slice(flat, &[1], &[k + 1])?;
            Some(sampling::one_hot(&mut e, props, target.vocab)?)
        }
    };
    let sampled = params.as_ref().zip(q);
    let (n, choices, tc) = verify_pass(&mut e, target, &step, tokens, pos, &tcache, &mut w, k, sampled)?;
    let mut aliases = Vec::new();
    b.output("accepted", n)?;
    b.output("tokens", choices)?;
    cache_outputs(&mut b, target, &tcache, &tc, &mut aliases)?;
    finish(b, name, "verify", aliases)
}
