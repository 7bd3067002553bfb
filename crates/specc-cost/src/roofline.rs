//! The roofline time of one graph execution, and speculation's arithmetic.
//!
//! Per rank: `compute = bf16 dot FLOPs / bf16 peak + f32 dot FLOPs / fp32
//! peak`, `memory = bytes / HBM bandwidth`; the graph takes
//! `max(compute, memory) / efficiency + collectives` (collectives only when
//! `tp > 1`, see `tp`). Elementwise FLOPs are not on the roofline (other
//! engines, overlapped with the tensor engine).
//!
//! The model has one calibrated number (see `CostParams::CALIBRATED` and
//! BENCHMARKS.md, "Roofline estimate against published Trainium numbers").

use crate::count::Counts;
use crate::hardware::Instance;
use crate::tp::{self, Collectives};
use serde::Serialize;

/// The model's free parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CostParams {
    /// Achieved fraction of the roofline (1 = peak FLOPs or bandwidth).
    pub efficiency: f64,
    /// Fixed time per all-reduce, seconds.
    pub collective_latency_s: f64,
}

/// The Neuron runtime documentation ("Intra-node Collective Communications
/// with AWS Neuron", aws-neuron-sdk `neuron-runtime/explore/
/// intranode-collective-comm.rst`) gives the latency term of a collective
/// as "of 10^0 to 10^1 us magnitude" (per-hop latency of Ring/KangaRing
/// about 1-2 us; Mesh, used below 1 MB, has O(1) steps). 10 us is the top of
/// that documented range.
pub const DOCUMENTED_COLLECTIVE_LATENCY_S: f64 = 10e-6;

impl CostParams {
    /// Calibrated on ONE published measurement: Llama-3.1-405B, bf16,
    /// trn2.48xlarge, tp 64, p50 inter-token latency 37.9 ms (NxD Inference
    /// tutorial), with the efficiency held at 1: the fixed cost per
    /// collective that makes the decode graph take 37.9 ms (`specc estimate
    /// <405B artifact> --instance trn2.48xlarge --tp 64 --calibrate
    /// collective-latency=37.9` solves 72.1 us). It absorbs all
    /// per-layer fixed overhead of a TP-64 decode step (the documented
    /// collective latency alone is 1-10 us). Validated on a different
    /// model (Llama-3.3-70B, same instance and tp): BENCHMARKS.md.
    pub const CALIBRATED: CostParams = CostParams { efficiency: 1.0, collective_latency_s: 72.1e-6 };

    /// The documented collective latency with efficiency 1 (before any
    /// calibration).
    pub const DOCUMENTED: CostParams =
        CostParams { efficiency: 1.0, collective_latency_s: DOCUMENTED_COLLECTIVE_LATENCY_S };
}

/// Where one execution's time goes, per rank.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GraphTime {
    /// Dot FLOPs per rank.
    pub rank_flops: f64,
    /// Bytes per rank.
    pub rank_bytes: f64,
    pub compute_s: f64,
    pub memory_s: f64,
    /// `compute` or `memory`.
    pub bound: &'static str,
    /// `max(compute, memory) / efficiency`.
    pub roofline_s: f64,
    pub collectives: Collectives,
    pub total_s: f64,
}

pub fn graph_time(c: &Counts, inst: &Instance, tp: usize, p: &CostParams) -> GraphTime {
    let tp = tp.max(1);
    let split = tp::analytic_split(c, tp);
    let bf16 = c.dot_flops_bf16 as f64 / split as f64;
    let f32 = c.dot_flops_f32 as f64 / split as f64;
    let compute_s = bf16 / inst.rank_flops(true) + f32 / inst.rank_flops(false);
    let rank_bytes = tp::rank_bytes(c, split);
    let memory_s = rank_bytes / inst.rank_bandwidth();
    let roofline_s = compute_s.max(memory_s) / p.efficiency;
    let collectives = tp::collectives(c, tp, inst, p.collective_latency_s);
    GraphTime {
        rank_flops: bf16 + f32,
        rank_bytes,
        compute_s,
        memory_s,
        bound: if compute_s > memory_s { "compute" } else { "memory" },
        roofline_s,
        total_s: roofline_s + collectives.seconds,
        collectives,
    }
}

/// Which parameter a measurement calibrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calibrate {
    CollectiveLatency,
    Efficiency,
}

/// The value of `what` (the other parameter as in `p`) that makes the
/// graph take `measured_s`.
pub fn calibrate(
    c: &Counts,
    inst: &Instance,
    tp: usize,
    p: &CostParams,
    what: Calibrate,
    measured_s: f64,
) -> Result<f64, String> {
    match what {
        Calibrate::CollectiveLatency => {
            let base = graph_time(c, inst, tp, &CostParams { collective_latency_s: 0.0, ..*p });
            let n = base.collectives.count;
            if n == 0 {
                return Err(format!("at tp {tp} the graph has no collectives: there is no latency to calibrate"));
            }
            let rest = measured_s - base.total_s;
            if rest < 0.0 {
                return Err(format!(
                    "the measurement ({:.3} ms) is faster than the roofline without collective latency ({:.3} ms): the model over-counts",
                    measured_s * 1e3,
                    base.total_s * 1e3
                ));
            }
            Ok(rest / n as f64)
        }
        Calibrate::Efficiency => {
            let t = graph_time(c, inst, tp, &CostParams { efficiency: 1.0, ..*p });
            let left = measured_s - t.collectives.seconds;
            if left <= 0.0 {
                return Err(format!(
                    "the collectives alone ({:.3} ms) take longer than the measurement ({:.3} ms)",
                    t.collectives.seconds * 1e3,
                    measured_s * 1e3
                ));
            }
            Ok(t.roofline_s / left)
        }
    }
}

/// Expected tokens per round with per-token acceptance `a` and K
/// proposals: `(1 - a^(K+1)) / (1 - a)` (K+1 at a = 1).
pub fn tokens_per_round(a: f64, k: usize) -> f64 {
    if (1.0 - a).abs() < 1e-12 { (k + 1) as f64 } else { (1.0 - a.powi(k as i32 + 1)) / (1.0 - a) }
}

/// The per-token acceptance `a` in [0, 1] with `tokens_per_round(a, k) =
/// l` (bisection; the function is increasing in `a`).
pub fn solve_acceptance(l: f64, k: usize) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if tokens_per_round(mid, k) < l { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::count::ModelCounts;
    use crate::hardware::instance;

    #[test]
    fn the_slower_of_compute_and_memory_wins_and_calibration_inverts_it() {
        let inst = instance("trn1.2xlarge").unwrap();
        let mut c = Counts { dot_flops_bf16: 95_000_000_000, ..Default::default() };
        c.models.insert(
            "target".into(),
            ModelCounts {
                weight_bytes_read: 820_000_000,
                cache_params: 2,
                cache_updates: 2,
                cache_update_tokens: 2,
                kv_heads: 2,
                hidden: Some(512),
                ..Default::default()
            },
        );
        let p = CostParams { efficiency: 0.5, collective_latency_s: 1e-5 };
        // One rank: 95 GFLOP at 95 TFLOPS = 1 ms; 820 MB at 410 GB/s = 2 ms.
        let t = graph_time(&c, &inst, 1, &p);
        assert!((t.compute_s - 1e-3).abs() < 1e-12 && (t.memory_s - 2e-3).abs() < 1e-12);
        assert_eq!(t.bound, "memory");
        assert!((t.total_s - 4e-3).abs() < 1e-12);
        // tp 2: half of each, plus 2 all-reduces of 1 x 512 x 2 bytes.
        let t2 = graph_time(&c, &inst, 2, &p);
        assert_eq!(t2.collectives.count, 2);
        let ring = 2.0 * 0.5 * 2048.0 / 192e9;
        assert!((t2.total_s - (2e-3 + 2e-5 + ring)).abs() < 1e-12);
        let eff = calibrate(&c, &inst, 2, &p, Calibrate::Efficiency, t2.total_s).unwrap();
        assert!((eff - 0.5).abs() < 1e-9);
        let lat = calibrate(&c, &inst, 2, &p, Calibrate::CollectiveLatency, t2.total_s).unwrap();
        assert!((lat - 1e-5).abs() < 1e-12);
        assert!(calibrate(&c, &inst, 1, &p, Calibrate::CollectiveLatency, 1.0).unwrap_err().contains("no collectives"));
        assert!(calibrate(&c, &inst, 2, &p, Calibrate::CollectiveLatency, 1e-4).unwrap_err().contains("faster"));
    }

    #[test]
    fn expected_tokens_follow_the_formula() {
        assert_eq!(tokens_per_round(0.0, 7), 1.0);
        assert_eq!(tokens_per_round(1.0, 7), 8.0);
        assert!((tokens_per_round(0.8, 4) - (1.0 - 0.8f64.powi(5)) / 0.2).abs() < 1e-12);
        assert!((solve_acceptance(tokens_per_round(0.63, 5), 5) - 0.63).abs() < 1e-9);
    }
}
