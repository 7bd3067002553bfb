//! Sampling inside the graphs, with randomness from a counter-based
//! generator built from plain integer ops, so the same seed gives the same
//! tokens on the reference backend, on XLA and on Neuron.
//!
//! * Random bits: `hash(hash(seed ^ hash(counter * 0x9E3779B9 + stream)) + i)`
//!   for element `i`, where `hash` is the "lowbias32" integer mixer (xor,
//!   logical shifts and wrapping 32-bit multiplies). `counter` is the
//!   position being sampled, `stream` separates the uses in one call.
//! * Uniform `(0, 1)`: the top 24 bits, `(b >>> 8 + 0.5) / 2^24`.
//! * A token from a distribution: Gumbel-max, `argmax(log p + G)` with
//!   `G = -log(-log u)`: exact sampling without a sort or a cumulative sum,
//!   and unnormalised weights do as well (the residual `max(0, p - q)`).
//! * Temperature, top-k and top-p processing: `logits / T`, then the top-k
//!   and top-p thresholds found by 32 steps of bisection (plain compares and
//!   reductions; no sort, which Neuron lacks). Ties at a threshold are kept.
//!
//! Lossless speculative sampling (Leviathan et al.; Chen et al.): proposal
//! `x ~ q` is accepted when `u * q(x) < p(x)`; at the first rejection the
//! token is drawn from `max(0, p - q)` (renormalised); if all K are
//! accepted, a bonus token is drawn from the target's `p`.

use crate::build::{Emit, R};
use specc_ir::{BinaryOp, CompareDir, DType, Literal, LiteralData, NodeId, ReduceOp, UnaryOp};

/// Streams: distinct random numbers for each use within one call.
pub const STREAM_DECODE: i64 = 1;
pub const STREAM_ACCEPT: i64 = 2;
pub const STREAM_RESIDUAL: i64 = 3;
pub const STREAM_BONUS: i64 = 4;
/// Draft step `j` uses `STREAM_DRAFT + j`.
pub const STREAM_DRAFT: i64 = 16;

/// The sampling parameters a sample graph takes at run time.
#[derive(Clone, Copy)]
pub struct Params {
    /// f32 scalar, > 0 (greedy graphs serve temperature 0).
    pub temperature: NodeId,
    /// s64 scalar; 0 turns top-k off.
    pub top_k: NodeId,
    /// f32 scalar; 1 turns top-p off.
    pub top_p: NodeId,
    /// s32 scalar.
    pub seed: NodeId,
}

fn i32c(e: &mut Emit, v: u32) -> R<NodeId> {
    e.constant(Literal::scalar_i32(v as i32))
}

/// The lowbias32 mixer on s32 values (bits read as unsigned).
fn hash32(e: &mut Emit, x: NodeId) -> R<NodeId> {
    let (s16, s15) = (i32c(e, 16)?, i32c(e, 15)?);
    let (m1, m2) = (i32c(e, 0x7feb352d)?, i32c(e, 0x846ca68b)?);
    let t = e.binary(BinaryOp::ShiftRightLogical, x, s16)?;
    let x = e.binary(BinaryOp::Xor, x, t)?;
    let x = e.binary(BinaryOp::Mul, x, m1)?;
    let t = e.binary(BinaryOp::ShiftRightLogical, x, s15)?;
    let x = e.binary(BinaryOp::Xor, x, t)?;
    let x = e.binary(BinaryOp::Mul, x, m2)?;
    let t = e.binary(BinaryOp::ShiftRightLogical, x, s16)?;
    e.binary(BinaryOp::Xor, x, t)
}

/// 32 random bits per element of `dims` for (seed, counter, stream).
pub fn random_bits(e: &mut Emit, seed: NodeId, counter: NodeId, stream: i64, dims: &[usize]) -> R<NodeId> {
    let counter = e.convert(counter, DType::I32)?;
    let golden = i32c(e, 0x9E3779B9)?;
    let c = e.binary(BinaryOp::Mul, counter, golden)?;
    let s = i32c(e, stream as u32)?;
    let c = e.binary(BinaryOp::Add, c, s)?;
    let c = hash32(e, c)?;
    let key = e.binary(BinaryOp::Xor, seed, c)?;
    let key = hash32(e, key)?;
    let n: usize = dims.iter().product();
    let idx = e.iota(&[n], 0, DType::I32)?;
    let x = e.binary(BinaryOp::Add, idx, key)?;
    let bits = hash32(e, x)?;
    e.reshape(bits, dims)
}

/// Uniform floats in (0, 1) from random bits.
pub fn uniform(e: &mut Emit, bits: NodeId) -> R<NodeId> {
    let eight = i32c(e, 8)?;
    let top = e.binary(BinaryOp::ShiftRightLogical, bits, eight)?;
    let f = e.convert(top, DType::F32)?;
    let half = e.scalar(DType::F32, 0.5)?;
    let f = e.binary(BinaryOp::Add, f, half)?;
    let scale = e.scalar(DType::F32, 1.0 / 16_777_216.0)?;
    e.binary(BinaryOp::Mul, f, scale)
}

/// A token per row of `weights` (`[R, V]`, non-negative, not necessarily
/// normalised) by Gumbel-max; returns `s64[R]`.
pub fn gumbel_sample(e: &mut Emit, weights: NodeId, seed: NodeId, counter: NodeId, stream: i64) -> R<NodeId> {
    let d = e.dims(weights);
    let bits = random_bits(e, seed, counter, stream, &d)?;
    let u = uniform(e, bits)?;
    let l = e.add("log", specc_ir::Op::Unary { op: UnaryOp::Log }, &[u])?;
    let l = e.add("negate", specc_ir::Op::Unary { op: UnaryOp::Neg }, &[l])?;
    let l = e.add("log", specc_ir::Op::Unary { op: UnaryOp::Log }, &[l])?;
    let g = e.add("negate", specc_ir::Op::Unary { op: UnaryOp::Neg }, &[l])?;
    let lw = e.add("log", specc_ir::Op::Unary { op: UnaryOp::Log }, &[weights])?;
    let score = e.binary(BinaryOp::Add, lw, g)?;
    e.argmax(score, DType::I64)
}

/// `v` broadcast along a new last axis of size `n` (rows of a `[R, n]`).
fn per_row(e: &mut Emit, v: NodeId, n: usize) -> R<NodeId> {
    let d = e.dims(v);
    let mut with_one = d.clone();
    with_one.push(1);
    let col = e.reshape(v, &with_one)?;
    let mut full = d;
    full.push(n);
    let ident: Vec<usize> = (0..full.len()).collect();
    e.add("broadcast", specc_ir::Op::Broadcast { shape: specc_ir::Shape::fixed(&full), dims: ident }, &[col])
}

const BISECTION_STEPS: usize = 32;

/// The target distribution after temperature, top-k and top-p: `[R, V]`
/// probabilities (zero outside the kept set), from logits `[R, V]`.
pub fn processed_probs(e: &mut Emit, logits: NodeId, p: &Params) -> R<NodeId> {
    let d = e.dims(logits);
    let (rows, v) = (d[0], d[1]);
    let tiny = e.scalar(DType::F32, 1e-6)?;
    let t = e.binary(BinaryOp::Max, p.temperature, tiny)?;
    let z = e.binary(BinaryOp::Div, logits, t)?;
    // Top-k: the largest threshold with at least k values at or above it.
    let zero_k = e.scalar(DType::I64, 0.0)?;
    let vk = e.scalar(DType::I64, v as f64)?;
    let off = e.compare(CompareDir::Le, p.top_k, zero_k)?;
    let k_clamped = e.binary(BinaryOp::Min, p.top_k, vk)?;
    let k = e.select(off, vk, k_clamped)?;
    let k = e.convert(k, DType::F32)?;
    let mut lo = e.reduce(ReduceOp::Min, z, &[1])?;
    let zmax = e.reduce(ReduceOp::Max, z, &[1])?;
    let one = e.scalar(DType::F32, 1.0)?;
    let mut hi = e.binary(BinaryOp::Add, zmax, one)?;
    let half = e.scalar(DType::F32, 0.5)?;
    for _ in 0..BISECTION_STEPS {
        let sum = e.binary(BinaryOp::Add, lo, hi)?;
        let mid = e.binary(BinaryOp::Mul, sum, half)?;
        let midb = per_row(e, mid, v)?;
        let at_least = e.compare(CompareDir::Ge, z, midb)?;
        let at_least = e.convert(at_least, DType::F32)?;
        let count = e.reduce(ReduceOp::Sum, at_least, &[1])?;
        let ok = e.compare(CompareDir::Ge, count, k)?;
        lo = e.select(ok, mid, lo)?;
        hi = e.select(ok, hi, mid)?;
    }
    let lob = per_row(e, lo, v)?;
    let keep = e.compare(CompareDir::Ge, z, lob)?;
    let neg_inf = e.scalar(DType::F32, f64::NEG_INFINITY)?;
    let zk = e.select(keep, z, neg_inf)?;
    let probs = softmax_rows(e, zk)?;
    // Top-p: the largest threshold whose kept mass is at least top_p.
    let mut lo = e.constant(Literal::new(vec![rows], LiteralData::F32(vec![0.0; rows])).expect("sized"))?;
    let pmax = e.reduce(ReduceOp::Max, probs, &[1])?;
    let eps = e.scalar(DType::F32, 1e-6)?;
    let mut hi = e.binary(BinaryOp::Add, pmax, eps)?;
    let zero = e.scalar(DType::F32, 0.0)?;
    for _ in 0..BISECTION_STEPS {
        let sum = e.binary(BinaryOp::Add, lo, hi)?;
        let mid = e.binary(BinaryOp::Mul, sum, half)?;
        let midb = per_row(e, mid, v)?;
        let at_least = e.compare(CompareDir::Ge, probs, midb)?;
        let kept = e.select(at_least, probs, zero)?;
        let mass = e.reduce(ReduceOp::Sum, kept, &[1])?;
        let ok = e.compare(CompareDir::Ge, mass, p.top_p)?;
        lo = e.select(ok, mid, lo)?;
        hi = e.select(ok, hi, mid)?;
    }
    let lob = per_row(e, lo, v)?;
    let keep = e.compare(CompareDir::Ge, probs, lob)?;
    let kept = e.select(keep, probs, zero)?;
    let mass = e.reduce(ReduceOp::Sum, kept, &[1])?;
    let massb = per_row(e, mass, v)?;
    e.binary(BinaryOp::Div, kept, massb)
}

/// Softmax over the last axis of `[R, V]` (rows of -inf stay well-defined
/// as long as one entry is finite).
fn softmax_rows(e: &mut Emit, z: NodeId) -> R<NodeId> {
    let v = e.dims(z)[1];
    let m = e.reduce(ReduceOp::Max, z, &[1])?;
    let mb = per_row(e, m, v)?;
    let s = e.binary(BinaryOp::Sub, z, mb)?;
    let x = e.add("exp", specc_ir::Op::Unary { op: UnaryOp::Exp }, &[s])?;
    let sum = e.reduce(ReduceOp::Sum, x, &[1])?;
    let sb = per_row(e, sum, v)?;
    e.binary(BinaryOp::Div, x, sb)
}

/// `probs[r, tokens[r]]` for each row: `[R]`.
pub fn pick(e: &mut Emit, probs: NodeId, tokens: NodeId) -> R<NodeId> {
    let d = e.dims(probs);
    let idx = e.iota(&d, 1, DType::I64)?;
    let tb = per_row(e, tokens, d[1])?;
    let hit = e.compare(CompareDir::Eq, idx, tb)?;
    let zero = e.scalar(DType::F32, 0.0)?;
    let sel = e.select(hit, probs, zero)?;
    e.reduce(ReduceOp::Sum, sel, &[1])
}

/// One-hot rows `[R, V]` of `tokens` (`s64[R]`).
pub fn one_hot(e: &mut Emit, tokens: NodeId, v: usize) -> R<NodeId> {
    let r = e.dims(tokens)[0];
    let idx = e.iota(&[r, v], 1, DType::I64)?;
    let tb = per_row(e, tokens, v)?;
    let hit = e.compare(CompareDir::Eq, idx, tb)?;
    e.convert(hit, DType::F32)
}

/// Speculative sampling acceptance for K proposals `drafts` (`s64[K]`)
/// drawn from `q` (`[K, V]`), against the target's `p` (`[K+1, V]`), at
/// counter `pos`. Returns (accepted count `s64[]`, `tokens` `s64[K+1]`):
/// the accepted proposals, then the correction (or bonus) token.
pub fn accept_sampled(
    e: &mut Emit,
    drafts: NodeId,
    q: NodeId,
    p: NodeId,
    params: &Params,
    pos: NodeId,
) -> R<(NodeId, NodeId)> {
    let k = e.dims(drafts)[0];
    let v = e.dims(p)[1];
    let p_head = e.slice(p, &[0, 0], &[k, v])?;
    let p_last = e.slice(p, &[k, 0], &[k + 1, v])?;
    let pd = pick(e, p_head, drafts)?;
    let qd = pick(e, q, drafts)?;
    let bits = random_bits(e, params.seed, pos, STREAM_ACCEPT, &[k])?;
    let u = uniform(e, bits)?;
    let uq = e.binary(BinaryOp::Mul, u, qd)?;
    let ok = e.compare(CompareDir::Lt, uq, pd)?;
    let idx = e.iota(&[k], 0, DType::I64)?;
    let all = e.scalar(DType::I64, k as f64)?;
    let first_reject = e.select(ok, all, idx)?;
    let n = e.reduce(ReduceOp::Min, first_reject, &[0])?;
    // Residual max(0, p - q) per row (p itself where it vanishes).
    let diff = e.binary(BinaryOp::Sub, p_head, q)?;
    let zero = e.scalar(DType::F32, 0.0)?;
    let resid = e.binary(BinaryOp::Max, diff, zero)?;
    let mass = e.reduce(ReduceOp::Sum, resid, &[1])?;
    let has = e.compare(CompareDir::Gt, mass, zero)?;
    let hasb = per_row(e, has, v)?;
    let resid = e.select(hasb, resid, p_head)?;
    let corrections = gumbel_sample(e, resid, params.seed, pos, STREAM_RESIDUAL)?;
    let bonus = gumbel_sample(e, p_last, params.seed, pos, STREAM_BONUS)?;
    let cands = e.concat(&[corrections, bonus], 0)?;
    let correction = e.add("correction", specc_ir::Op::DynamicSlice { sizes: vec![1] }, &[cands, n])?;
    // tokens[j] = drafts[j] for j < n, the correction at n, 0 after.
    let z1 = e.constant(Literal::vec_i64(vec![0]))?;
    let drafts_ext = e.concat(&[drafts, z1], 0)?;
    let pos_idx = e.iota(&[k + 1], 0, DType::I64)?;
    let before = e.compare(CompareDir::Lt, pos_idx, n)?;
    let at = e.compare(CompareDir::Eq, pos_idx, n)?;
    let zeros = e.constant(Literal::new(vec![k + 1], LiteralData::I64(vec![0; k + 1])).expect("sized"))?;
    let corr_b = e.add(
        "broadcast",
        specc_ir::Op::Broadcast { shape: specc_ir::Shape::fixed(&[k + 1]), dims: vec![0] },
        &[correction],
    )?;
    let tail = e.select(at, corr_b, zeros)?;
    let tokens = e.select(before, drafts_ext, tail)?;
    Ok((n, tokens))
}
