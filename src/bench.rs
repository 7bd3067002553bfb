//! Measuring speculative decoding: plain vs speculative tokens/s on the
//! same prompts in the same run, acceptance, the measured cost ratios, and
//! what the formula of Leviathan et al. predicts from them.
//!
//! With per-token acceptance `a`, K proposals and a draft step costing `c`
//! target steps (verifying K+1 tokens costing one), the expected speedup is
//! `S = (1 - a^(K+1)) / ((1 - a)(K c + 1))`. Here `c` and the verify cost
//! are measured from the artifact's own graphs: `c = (t_fused - t_verify) /
//! K / t_decode`, verify ratio `= t_verify / t_decode`. `a` is solved from
//! the measured mean acceptance length `L = (1 - a^(K+1)) / (1 - a)`.

use serde::Serialize;
use specc_exec::{Backend, Engine, ExecError, GenerateOptions, Metrics, Mode};

#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub tokens: u64,
    /// Prefill included.
    pub seconds: f64,
    pub tokens_per_second: f64,
    /// After the first token (what speculation changes).
    pub decode_tokens_per_second: f64,
    pub inter_token_latency_ms: f64,
    pub device_calls_per_token: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Costs {
    pub target_decode_ms: f64,
    pub verify_ms: f64,
    pub fused_ms: f64,
    pub draft_step_ms: f64,
    /// Draft step / target step.
    pub c: f64,
    /// Verifying K+1 tokens / one target step.
    pub verify_ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub k: usize,
    pub prompts: usize,
    pub max_new_tokens: usize,
    pub plain: Side,
    pub speculative: Side,
    /// Decode tokens/s, speculative over plain (the prefill is the same).
    pub measured_speedup: f64,
    pub mean_acceptance_length: f64,
    pub draft_acceptance_rate: f64,
    pub accepted_per_position: Vec<f64>,
    /// Per-token acceptance solved from the mean acceptance length.
    pub alpha: f64,
    pub costs: Costs,
    /// The formula's speedup from `alpha`, K and `c`.
    pub predicted_speedup: f64,
    /// The same with the measured verify cost instead of one target step.
    pub predicted_speedup_with_verify_cost: f64,
}

/// Expected tokens per round for per-token acceptance `a` and K proposals.
pub fn tokens_per_round(a: f64, k: usize) -> f64 {
    if (1.0 - a).abs() < 1e-12 { (k + 1) as f64 } else { (1.0 - a.powi(k as i32 + 1)) / (1.0 - a) }
}

/// The formula's speedup.
pub fn formula_speedup(a: f64, k: usize, c: f64) -> f64 {
    tokens_per_round(a, k) / (k as f64 * c + 1.0)
}

/// `a` in [0, 1] with `tokens_per_round(a, k) = l` (bisection; monotone).
pub fn solve_alpha(l: f64, k: usize) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if tokens_per_round(mid, k) < l { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

fn side(m: &[Metrics]) -> Side {
    let tokens: u64 = m.iter().map(|x| x.generated_tokens).sum();
    let seconds: f64 = m.iter().map(|x| x.prefill_seconds + x.decode_seconds).sum();
    let decode: f64 = m.iter().map(|x| x.decode_seconds).sum();
    let after_first: u64 = m.iter().map(|x| x.generated_tokens.saturating_sub(1)).sum();
    let calls: u64 = m.iter().map(|x| x.device_calls).sum();
    Side {
        tokens,
        seconds,
        tokens_per_second: tokens as f64 / seconds,
        decode_tokens_per_second: after_first as f64 / decode,
        inter_token_latency_ms: 1e3 * decode / after_first as f64,
        device_calls_per_token: calls as f64 / tokens as f64,
    }
}

/// Runs every prompt `runs` times plainly and speculatively (alternating, so
/// machine noise hits both alike), then times the graphs for cost ratios.
pub fn measure<B: Backend>(
    engine: &mut Engine<B>,
    prompts: &[Vec<i64>],
    max_new_tokens: usize,
    runs: usize,
    mode: Mode,
) -> Result<Report, ExecError> {
    let k = engine.speculation().k;
    let (mut plain, mut spec) = (Vec::new(), Vec::new());
    let opts = |mode| GenerateOptions { ignore_eos: true, k: Some(k), ..GenerateOptions::greedy(max_new_tokens, mode) };
    for _ in 0..runs.max(1) {
        for p in prompts {
            plain.push(engine.generate(p, &opts(Mode::Plain), &mut |_| {})?.metrics);
            spec.push(engine.generate(p, &opts(mode), &mut |_| {})?.metrics);
        }
    }
    let (ps, ss) = (side(&plain), side(&spec));
    let drafts: u64 = spec.iter().map(|m| m.num_drafts).sum();
    let accepted: u64 = spec.iter().map(|m| m.num_accepted_tokens).sum();
    let proposed: u64 = spec.iter().map(|m| m.num_draft_tokens).sum();
    let per_pos: Vec<f64> = (0..k)
        .map(|i| spec.iter().map(|m| m.accepted_per_position[i]).sum::<u64>() as f64 / drafts.max(1) as f64)
        .collect();
    let l = if drafts == 0 { 1.0 } else { 1.0 + accepted as f64 / drafts as f64 };
    let reps = 10;
    let t_decode = engine.time_graph("target_decode", reps)?;
    let t_verify = engine.time_graph(&format!("verify_k{k}"), reps)?;
    let t_fused = if engine.speculation().draft { engine.time_graph(&format!("fused_k{k}"), reps)? } else { t_verify };
    let draft_step = ((t_fused - t_verify) / k as f64).max(0.0);
    let costs = Costs {
        target_decode_ms: t_decode * 1e3,
        verify_ms: t_verify * 1e3,
        fused_ms: t_fused * 1e3,
        draft_step_ms: draft_step * 1e3,
        c: draft_step / t_decode,
        verify_ratio: t_verify / t_decode,
    };
    let alpha = solve_alpha(l, k);
    let predicted = formula_speedup(alpha, k, costs.c);
    let with_verify = tokens_per_round(alpha, k) / (k as f64 * costs.c + costs.verify_ratio);
    Ok(Report {
        k,
        prompts: prompts.len(),
        max_new_tokens,
        measured_speedup: ss.decode_tokens_per_second / ps.decode_tokens_per_second,
        plain: ps,
        speculative: ss,
        mean_acceptance_length: l,
        draft_acceptance_rate: accepted as f64 / proposed.max(1) as f64,
        accepted_per_position: per_pos,
        alpha,
        costs,
        predicted_speedup: predicted,
        predicted_speedup_with_verify_cost: with_verify,
    })
}

impl Report {
    /// The table people read.
    pub fn table(&self) -> String {
        let pp: Vec<String> = self.accepted_per_position.iter().map(|r| format!("{r:.2}")).collect();
        format!(
            "K={k}, {n} prompts x {t} new tokens\n\
             | | tokens/s (with prefill) | decode tokens/s | inter-token latency | device calls/token |\n|---|---|---|---|---|\n\
             | plain | {pt:.1} | {pd:.1} | {pl:.2} ms | {pc:.2} |\n| speculative | {st:.1} | {sd:.1} | {sl:.2} ms | {sc:.2} |\n\
             measured decode speedup {ms:.2}x; mean acceptance length {l:.2}, draft acceptance rate {r:.2}, per position [{pp}], alpha {a:.3}\n\
             costs: target step {td:.2} ms, verify (K+1) {tv:.2} ms (x{vr:.2}), fused round {tf:.2} ms, draft step {ds:.2} ms (c = {c:.3})\n\
             formula speedup {fs:.2}x (verify = 1 target step), {fv:.2}x with the measured verify cost; efficiency {eff:.2}\n",
            k = self.k,
            n = self.prompts,
            t = self.max_new_tokens,
            pt = self.plain.tokens_per_second,
            pc = self.plain.device_calls_per_token,
            pd = self.plain.decode_tokens_per_second,
            pl = self.plain.inter_token_latency_ms,
            sd = self.speculative.decode_tokens_per_second,
            sl = self.speculative.inter_token_latency_ms,
            st = self.speculative.tokens_per_second,
            sc = self.speculative.device_calls_per_token,
            ms = self.measured_speedup,
            l = self.mean_acceptance_length,
            r = self.draft_acceptance_rate,
            pp = pp.join(", "),
            a = self.alpha,
            td = self.costs.target_decode_ms,
            tv = self.costs.verify_ms,
            vr = self.costs.verify_ratio,
            tf = self.costs.fused_ms,
            ds = self.costs.draft_step_ms,
            c = self.costs.c,
            fs = self.predicted_speedup,
            fv = self.predicted_speedup_with_verify_cost,
            eff = self.measured_speedup / self.predicted_speedup_with_verify_cost,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_matches_the_published_examples() {
        // spec-decoding notes: a=0.8, c=0.05 -> best k=8, S=3.09; a=0.7, c=0.1 -> best k=4, S=1.98.
        let best = |a: f64, c: f64| {
            (1..=16).map(|k| (k, formula_speedup(a, k, c))).max_by(|x, y| x.1.partial_cmp(&y.1).unwrap()).unwrap()
        };
        let (k, s) = best(0.8, 0.05);
        assert_eq!(k, 8);
        assert!((s - 3.09).abs() < 0.01, "{s}");
        let (k, s) = best(0.7, 0.1);
        assert_eq!(k, 4);
        assert!((s - 1.98).abs() < 0.01, "{s}");
        assert!((solve_alpha(tokens_per_round(0.63, 5), 5) - 0.63).abs() < 1e-9);
    }
}
