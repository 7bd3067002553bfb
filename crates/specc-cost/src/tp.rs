//! Tensor parallelism: how a graph's work splits over `tp` ranks, what the
//! collectives cost, and whether the weights and caches fit.
//!
//! The split is Megatron-style, as AWS's NxD Inference does it: every
//! weight matrix is sharded (column-parallel q/k/v/gate/up, row-parallel
//! o_proj/down_proj, vocabulary-parallel embedding and lm_head), so weights
//! and matmul FLOPs divide by `tp`. The KV cache is sharded by KV head;
//! with more ranks than KV heads the heads are replicated (NxDI's default
//! GQA strategy, "replicate to TP degree"), so a rank holds and reads
//! `cache / min(tp, kv_heads)`.
//!
//! Each transformer layer ends its attention and its MLP with a
//! row-parallel matmul whose partial sums are all-reduced: two all-reduces
//! per layer per forward pass, of the activations (tokens x hidden, bf16 on
//! the wire: 2 bytes). Layers are counted from the cache parameters (a key
//! and a value per layer), passes from the cache updates. One all-reduce of
//! `B` bytes over `tp` ranks costs, as a ring, `2 (tp - 1) / tp * B /
//! link bandwidth` plus a fixed latency per collective (see
//! `roofline::CostParams`).

use crate::count::Counts;
use crate::hardware::Instance;
use serde::Serialize;

/// Bytes per activation element on the wire (bf16).
pub const WIRE_BYTES: u64 = 2;

/// Ranks the KV cache is split over: by head, up to the head count.
pub fn kv_split(tp: usize, kv_heads: usize) -> usize {
    tp.min(kv_heads.max(1)).max(1)
}

/// Bytes one rank moves for one execution of the graph.
pub fn rank_bytes(c: &Counts, tp: usize) -> f64 {
    let tp = tp.max(1);
    let mut b = (c.activation_bytes_in + c.activation_bytes_out) as f64;
    for m in c.models.values() {
        b += m.weight_bytes_read as f64 / tp as f64;
        b += (m.state_bytes_read + m.state_bytes_written) as f64 / kv_split(tp, m.kv_heads) as f64;
    }
    b
}

/// The collectives of one execution.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Collectives {
    /// All-reduces.
    pub count: u64,
    /// Their payload, summed (bytes each rank contributes).
    pub bytes: u64,
    /// Their time: fixed latencies plus ring transfer.
    pub seconds: f64,
}

/// The ranks the estimate still has to split counts over at `tp`, for
/// graphs built for `built_tp` ranks: `tp` for unsharded graphs, 1 for rank
/// programs (already split).
pub fn remaining_split(built_tp: usize, tp: usize) -> usize {
    if built_tp > 1 { 1 } else { tp.max(1) }
}

/// [`remaining_split`] for one graph's counts.
pub fn analytic_split(c: &Counts, tp: usize) -> usize {
    remaining_split(c.built_tp, tp)
}

/// A rank program's collectives are its own all-reduce nodes. An unsharded
/// graph's are modelled: two all-reduces per layer per pass of each model;
/// nothing at `tp` = 1.
pub fn collectives(c: &Counts, tp: usize, inst: &Instance, latency_s: f64) -> Collectives {
    if tp <= 1 {
        return Collectives::default();
    }
    let ring = 2.0 * (tp - 1) as f64 / tp as f64;
    if c.built_tp > 1 {
        let count = c.all_reduces;
        let bytes = c.all_reduce_bytes;
        let seconds = count as f64 * latency_s + ring * bytes as f64 / inst.rank_link_bandwidth();
        return Collectives { count, bytes, seconds };
    }
    let mut out = Collectives::default();
    for m in c.models.values() {
        let layers = m.layers() as u64;
        out.count += 2 * layers * m.passes() as u64;
        out.bytes += 2 * layers * m.pass_tokens() * m.hidden.unwrap_or(0) as u64 * WIRE_BYTES;
    }
    out.seconds = out.count as f64 * latency_s + ring * out.bytes as f64 / inst.rank_link_bandwidth();
    out
}

/// What one model keeps in HBM.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resident {
    pub model: String,
    pub weight_bytes: u64,
    pub cache_bytes: u64,
    pub kv_heads: usize,
    pub layers: usize,
}

/// Bytes one rank holds at `tp`.
pub fn rank_resident(models: &[Resident], tp: usize) -> u64 {
    let tp = tp.max(1);
    models.iter().map(|m| m.weight_bytes / tp as u64 + m.cache_bytes / kv_split(tp, m.kv_heads) as u64).sum()
}

/// The smallest of the instance's tp degrees at which everything fits a
/// rank's HBM share.
pub fn smallest_fitting(models: &[Resident], inst: &Instance) -> Option<usize> {
    inst.tp_degrees.iter().copied().find(|&tp| rank_resident(models, tp) <= inst.rank_hbm())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::count::ModelCounts;
    use crate::hardware::instance;

    fn llama_like(layers: usize, passes: usize, tokens: u64, hidden: usize) -> Counts {
        let mut c = Counts::default();
        c.models.insert(
            "target".into(),
            ModelCounts {
                weight_bytes_read: 1_000_000,
                state_bytes_read: 80_000,
                state_bytes_written: 0,
                cache_params: 2 * layers,
                cache_updates: 2 * layers * passes,
                cache_update_tokens: 2 * layers as u64 * tokens,
                kv_heads: 8,
                hidden: Some(hidden),
                ..Default::default()
            },
        );
        c
    }

    #[test]
    fn two_all_reduces_per_layer_and_pass_with_the_ring_formula() {
        let inst = instance("trn2.48xlarge").unwrap();
        let c = llama_like(4, 1, 3, 1024);
        assert_eq!(collectives(&c, 1, &inst, 1e-5), Collectives::default());
        let k = collectives(&c, 8, &inst, 1e-5);
        assert_eq!(k.count, 8);
        assert_eq!(k.bytes, 8 * 3 * 1024 * 2);
        let expected = 8.0 * 1e-5 + 2.0 * 7.0 / 8.0 * (8 * 3 * 1024 * 2) as f64 / (1280e9 / 4.0);
        assert!((k.seconds - expected).abs() < 1e-15, "{} vs {expected}", k.seconds);
    }

    #[test]
    fn weights_split_by_tp_and_caches_by_kv_head_up_to_the_head_count() {
        let c = llama_like(2, 1, 1, 64);
        assert_eq!(rank_bytes(&c, 1), 1_080_000.0);
        assert_eq!(rank_bytes(&c, 4), 250_000.0 + 20_000.0);
        // 8 KV heads: at tp 16 the cache is replicated in pairs.
        assert_eq!(rank_bytes(&c, 16), 62_500.0 + 10_000.0);
        let inst = instance("trn1.32xlarge").unwrap();
        let gib = 1u64 << 30;
        let m = vec![Resident {
            model: "target".into(),
            weight_bytes: 100 * gib,
            cache_bytes: 8 * gib,
            kv_heads: 8,
            layers: 2,
        }];
        // 108 GiB at tp 8 is 13.5 GiB per rank: fits 16 GiB; at tp 2 it does not.
        assert_eq!(smallest_fitting(&m, &inst), Some(8));
        assert_eq!(rank_resident(&m, 32), 100 * gib / 32 + gib);
    }
}
