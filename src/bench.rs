//! Measuring speculative decoding: plain vs speculative tokens/s on the
//! same prompts in the same run (per domain, for every K and adaptively),
//! acceptance, the measured cost ratios, and what the formula of Leviathan
//! et al. predicts from them.
//!
//! With per-token acceptance `a`, K proposals and a draft step costing `c`
//! target steps (verifying K+1 tokens costing one), the expected speedup is
//! `S = (1 - a^(K+1)) / ((1 - a)(K c + 1))`. Here `c` and the verify cost
//! are measured from the artifact's own graphs: `c = (t_fused - t_verify) /
//! K / t_decode`, verify ratio `v = t_verify / t_decode`, and the prediction
//! with the measured verify cost is `(1 - a^(K+1)) / ((1 - a)(K c + v))`.
//! `a` is solved from the measured mean acceptance length
//! `L = (1 - a^(K+1)) / (1 - a)`.

use serde::Serialize;
use specc_exec::{Backend, Engine, ExecError, GenerateOptions, Metrics, Mode, SyntheticAcceptance};

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

/// Measured cost of one K's round graphs, relative to a target step.
#[derive(Clone, Debug, Serialize)]
pub struct KCost {
    pub k: usize,
    pub verify_ms: f64,
    /// The fused draft+verify round (the verify graph with prompt lookup).
    pub round_ms: f64,
    pub draft_step_ms: f64,
    /// Draft step / target step.
    pub c: f64,
    /// Verifying K+1 tokens / one target step.
    pub verify_ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Costs {
    pub target_decode_ms: f64,
    pub per_k: Vec<KCost>,
}

/// One speculative configuration on one domain.
#[derive(Clone, Debug, Serialize)]
pub struct SpecRun {
    /// `K=3` or `adaptive`.
    pub label: String,
    pub k: Option<usize>,
    pub side: Side,
    /// Decode tokens/s over plain's (the prefill is the same).
    pub measured_speedup: f64,
    pub mean_acceptance_length: f64,
    pub draft_acceptance_rate: f64,
    pub accepted_per_position: Vec<f64>,
    /// Per-token acceptance solved from the mean acceptance length (fixed K).
    pub alpha: Option<f64>,
    /// The formula's speedup from `alpha`, K and `c` (verify = one step).
    pub predicted_speedup: Option<f64>,
    /// The same with the measured verify cost.
    pub predicted_speedup_with_verify_cost: Option<f64>,
    /// Measured over predicted (with the verify cost).
    pub efficiency: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DomainReport {
    pub domain: String,
    pub prompts: usize,
    /// Set for the benchmark-only synthetic-acceptance mode.
    pub synthetic_acceptance: Option<f64>,
    pub plain: Side,
    pub speculative: Vec<SpecRun>,
    pub adaptive: Option<SpecRun>,
    /// The fixed K with the best measured speedup.
    pub best_k: usize,
    pub best_speedup: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What ran the graphs (backend, device or plugin).
    pub backend: String,
    pub mode: String,
    pub max_new_tokens: usize,
    pub runs: usize,
    pub costs: Costs,
    pub domains: Vec<DomainReport>,
}

/// Prompts of one kind (code, JSON, prose...), or one synthetic acceptance.
#[derive(Clone, Debug)]
pub struct Domain {
    pub name: String,
    pub prompts: Vec<Vec<i64>>,
    pub synthetic_acceptance: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub max_new_tokens: usize,
    pub runs: usize,
    /// The fixed K to measure (each must be compiled).
    pub ks: Vec<usize>,
    pub adaptive: bool,
    pub mode: Mode,
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

/// Times the target step and each K's round graphs (`reps` calls each).
pub fn measure_costs<B: Backend>(
    engine: &mut Engine<B>,
    ks: &[usize],
    mode: Mode,
    reps: usize,
) -> Result<Costs, ExecError> {
    let t_decode = engine.time_graph("target_decode", reps)?;
    let mut per_k = Vec::new();
    for &k in ks {
        let t_verify = engine.time_graph(&format!("verify_k{k}"), reps)?;
        let t_round = if mode == Mode::Draft { engine.time_graph(&format!("fused_k{k}"), reps)? } else { t_verify };
        let draft_step = ((t_round - t_verify) / k as f64).max(0.0);
        per_k.push(KCost {
            k,
            verify_ms: t_verify * 1e3,
            round_ms: t_round * 1e3,
            draft_step_ms: draft_step * 1e3,
            c: draft_step / t_decode,
            verify_ratio: t_verify / t_decode,
        });
    }
    Ok(Costs { target_decode_ms: t_decode * 1e3, per_k })
}

fn spec_run(label: String, k: Option<usize>, runs: &[Metrics], plain: &Side, cost: Option<&KCost>) -> SpecRun {
    let s = side(runs);
    let drafts: u64 = runs.iter().map(|m| m.num_drafts).sum();
    let accepted: u64 = runs.iter().map(|m| m.num_accepted_tokens).sum();
    let proposed: u64 = runs.iter().map(|m| m.num_draft_tokens).sum();
    let positions = runs.iter().map(|m| m.accepted_per_position.len()).max().unwrap_or(0);
    let per_pos: Vec<f64> = (0..positions)
        .map(|i| {
            runs.iter().map(|m| m.accepted_per_position.get(i).copied().unwrap_or(0)).sum::<u64>() as f64
                / drafts.max(1) as f64
        })
        .collect();
    let l = if drafts == 0 { 1.0 } else { 1.0 + accepted as f64 / drafts as f64 };
    let measured = s.decode_tokens_per_second / plain.decode_tokens_per_second;
    let (alpha, predicted, with_verify) = match (k, cost) {
        (Some(k), Some(c)) => {
            let a = solve_alpha(l, k);
            (
                Some(a),
                Some(formula_speedup(a, k, c.c)),
                Some(tokens_per_round(a, k) / (k as f64 * c.c + c.verify_ratio)),
            )
        }
        _ => (None, None, None),
    };
    SpecRun {
        label,
        k,
        side: s,
        measured_speedup: measured,
        mean_acceptance_length: l,
        draft_acceptance_rate: accepted as f64 / proposed.max(1) as f64,
        accepted_per_position: per_pos,
        alpha,
        predicted_speedup: predicted,
        predicted_speedup_with_verify_cost: with_verify,
        efficiency: with_verify.map(|p| measured / p),
    }
}

/// Runs every domain: each run of each prompt goes plain, then with every
/// K, then adaptively, so that machine noise hits all of them alike.
pub fn measure<B: Backend>(
    engine: &mut Engine<B>,
    domains: &[Domain],
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, ExecError> {
    progress("timing the graphs");
    let costs = measure_costs(engine, &cfg.ks, cfg.mode, 10)?;
    let mut reports = Vec::new();
    for d in domains {
        let base = GenerateOptions {
            ignore_eos: true,
            synthetic_acceptance: d
                .synthetic_acceptance
                .map(|probability| SyntheticAcceptance { probability, seed: 0x5eed }),
            ..GenerateOptions::greedy(cfg.max_new_tokens, cfg.mode)
        };
        let mut plain = Vec::new();
        let mut fixed: Vec<Vec<Metrics>> = vec![Vec::new(); cfg.ks.len()];
        let mut adaptive = Vec::new();
        for run in 0..cfg.runs.max(1) {
            for (i, p) in d.prompts.iter().enumerate() {
                progress(&format!(
                    "{}: run {}/{}, prompt {}/{}",
                    d.name,
                    run + 1,
                    cfg.runs.max(1),
                    i + 1,
                    d.prompts.len()
                ));
                // Synthetic draws: the same for every K of one (run, prompt),
                // different across prompts and runs.
                let base = GenerateOptions {
                    synthetic_acceptance: base
                        .synthetic_acceptance
                        .map(|s| SyntheticAcceptance { seed: s.seed ^ ((run as u64) << 32 | i as u64), ..s }),
                    ..base.clone()
                };
                let plain_opts = GenerateOptions { mode: Mode::Plain, ..base.clone() };
                plain.push(engine.generate(p, &plain_opts, &mut |_| {})?.metrics);
                for (j, &k) in cfg.ks.iter().enumerate() {
                    let o = GenerateOptions { k: Some(k), ..base.clone() };
                    fixed[j].push(engine.generate(p, &o, &mut |_| {})?.metrics);
                }
                if cfg.adaptive {
                    let o = GenerateOptions { adaptive: true, ..base.clone() };
                    adaptive.push(engine.generate(p, &o, &mut |_| {})?.metrics);
                }
            }
        }
        let plain = side(&plain);
        let speculative: Vec<SpecRun> = cfg
            .ks
            .iter()
            .zip(&fixed)
            .map(|(&k, m)| spec_run(format!("K={k}"), Some(k), m, &plain, costs.per_k.iter().find(|c| c.k == k)))
            .collect();
        let adaptive = cfg.adaptive.then(|| spec_run("adaptive".into(), None, &adaptive, &plain, None));
        let best = speculative
            .iter()
            .max_by(|a, b| a.measured_speedup.total_cmp(&b.measured_speedup))
            .expect("at least one K");
        reports.push(DomainReport {
            domain: d.name.clone(),
            prompts: d.prompts.len(),
            synthetic_acceptance: d.synthetic_acceptance,
            best_k: best.k.expect("fixed K"),
            best_speedup: best.measured_speedup,
            plain,
            speculative,
            adaptive,
        });
    }
    Ok(Report {
        backend: engine.backend_description(),
        mode: match cfg.mode {
            Mode::Draft => "draft model".into(),
            Mode::PromptLookup { .. } => "prompt lookup".into(),
            Mode::Plain => "plain".into(),
        },
        max_new_tokens: cfg.max_new_tokens,
        runs: cfg.runs.max(1),
        costs,
        domains: reports,
    })
}

fn opt(x: Option<f64>, unit: &str) -> String {
    x.map(|v| format!("{v:.2}{unit}")).unwrap_or_else(|| "-".into())
}

impl Report {
    /// The tables people read.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let synthetic = self.domains.iter().any(|d| d.synthetic_acceptance.is_some());
        if synthetic {
            writeln!(
                s,
                "SYNTHETIC ACCEPTANCE (benchmark only): each proposal is accepted with a fixed probability instead of by comparing tokens; the device work is real, the text is not the target's.\n"
            )
            .unwrap();
        }
        writeln!(
            s,
            "speculation by {}, {} new tokens per prompt, {} run(s), on {}\n",
            self.mode, self.max_new_tokens, self.runs, self.backend
        )
        .unwrap();
        writeln!(s, "graph costs: target step {:.2} ms", self.costs.target_decode_ms).unwrap();
        writeln!(s, "| K | verify K+1 | ratio to a step | round | draft step | c |\n|---|---|---|---|---|---|")
            .unwrap();
        for c in &self.costs.per_k {
            writeln!(
                s,
                "| {} | {:.2} ms | {:.2} | {:.2} ms | {:.2} ms | {:.3} |",
                c.k, c.verify_ms, c.verify_ratio, c.round_ms, c.draft_step_ms, c.c
            )
            .unwrap();
        }
        for d in &self.domains {
            let label = match d.synthetic_acceptance {
                Some(a) => format!("SYNTHETIC acceptance {a}"),
                None => d.domain.clone(),
            };
            writeln!(
                s,
                "\n{label} ({} prompts): plain {:.1} decode tokens/s ({:.2} ms per token)",
                d.prompts, d.plain.decode_tokens_per_second, d.plain.inter_token_latency_ms
            )
            .unwrap();
            writeln!(
                s,
                "| | decode tokens/s | speedup | formula | efficiency | mean acceptance length | calls/token | accepted per position |\n|---|---|---|---|---|---|---|---|"
            )
            .unwrap();
            for r in d.speculative.iter().chain(d.adaptive.iter()) {
                let pp: Vec<String> = r.accepted_per_position.iter().map(|x| format!("{x:.2}")).collect();
                writeln!(
                    s,
                    "| {} | {:.1} | {:.2}x | {} | {} | {:.2} | {:.2} | {} |",
                    r.label,
                    r.side.decode_tokens_per_second,
                    r.measured_speedup,
                    opt(r.predicted_speedup_with_verify_cost, "x"),
                    opt(r.efficiency, ""),
                    r.mean_acceptance_length,
                    r.side.device_calls_per_token,
                    pp.join(" ")
                )
                .unwrap();
            }
            writeln!(s, "best K: {} ({:.2}x)", d.best_k, d.best_speedup).unwrap();
        }
        s
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
