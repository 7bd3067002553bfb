//! Lossless speculative sampling, statistically: with a fixed target
//! distribution p and a different draft distribution q (context-free, a
//! small vocabulary), every token the in-graph procedure emits (accepted
//! proposals, corrections from the residual, bonus tokens) must be
//! distributed as p after the same temperature/top-k/top-p processing.
//!
//! Threshold: Pearson's chi-square over the V categories, compared with the
//! chi-square quantile at significance 1e-4 (Wilson-Hilferty), so a correct
//! implementation fails by chance once in 10,000 runs; the sample (about
//! 5,000 tokens for 6 categories, every expected count above 100) gives the
//! test power to see a distribution error of a few percent. A negative
//! control shows that power: the proposals alone (distributed as q) fail
//! the same test by a wide margin.

use specc_interp::{Cpu, Session, cpu_device};
use specc_ir::{DType, GraphBuilder, Literal, LiteralData, TensorType, WeightStore};
use specc_spec::Emit;
use specc_spec::sampling::{self, Params};

const V: usize = 6;
const K: usize = 3;
const ROUNDS: i64 = 2500;

/// The processed distribution, computed on the host by sorting (an
/// independent implementation of temperature, top-k and top-p).
fn processed(logits: &[f32], t: f32, top_k: usize, top_p: f32) -> Vec<f64> {
    let z: Vec<f64> = logits.iter().map(|&l| (l / t) as f64).collect();
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[b].partial_cmp(&z[a]).unwrap());
    let keep_k = if top_k == 0 { z.len() } else { top_k.min(z.len()) };
    let kept: Vec<usize> = order[..keep_k].to_vec();
    let m = kept.iter().map(|&i| z[i]).fold(f64::MIN, f64::max);
    let mut p = vec![0.0; z.len()];
    let s: f64 = kept.iter().map(|&i| (z[i] - m).exp()).sum();
    for &i in &kept {
        p[i] = (z[i] - m).exp() / s;
    }
    let mut mass = 0.0;
    let mut nucleus = vec![0.0; z.len()];
    for &i in &kept {
        if mass >= top_p as f64 {
            break;
        }
        nucleus[i] = p[i];
        mass += p[i];
    }
    let total: f64 = nucleus.iter().sum();
    nucleus.iter().map(|x| x / total).collect()
}

fn chi2_quantile(df: f64, z: f64) -> f64 {
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Pearson's statistic of `counts` against `p` over categories with p > 0
/// (a count in a category of probability 0 is an outright failure).
fn chi2(counts: &[u64], p: &[f64]) -> (f64, usize) {
    let n: u64 = counts.iter().sum();
    let mut stat = 0.0;
    let mut cats = 0;
    for (c, &pi) in counts.iter().zip(p) {
        if pi == 0.0 {
            if *c > 0 {
                return (f64::INFINITY, 1);
            }
            continue;
        }
        let e = pi * n as f64;
        stat += (*c as f64 - e).powi(2) / e;
        cats += 1;
    }
    (stat, cats - 1)
}

fn run(p_logits: &[f32], q_logits: &[f32], t: f32, top_k: usize, top_p: f32) -> (Vec<u64>, Vec<u64>) {
    let mut b = GraphBuilder::new("sampling");
    let counter = b.parameter("counter", TensorType::scalar(DType::I64)).unwrap();
    let seed = b.parameter("seed", TensorType::scalar(DType::I32)).unwrap();
    let mut e = Emit::new(&mut b, "");
    let params = Params {
        temperature: e.constant(Literal::scalar_f32(t)).unwrap(),
        top_k: e.constant(Literal::scalar_i64(top_k as i64)).unwrap(),
        top_p: e.constant(Literal::scalar_f32(top_p)).unwrap(),
        seed,
    };
    let row = |e: &mut Emit, l: &[f32], rows: usize| {
        let data: Vec<f32> = (0..rows).flat_map(|_| l.iter().copied()).collect();
        e.constant(Literal::new(vec![rows, V], LiteralData::F32(data)).unwrap()).unwrap()
    };
    let ql = row(&mut e, q_logits, 1);
    let q = sampling::processed_probs(&mut e, ql, &params).unwrap();
    let mut drafts = vec![];
    for j in 1..=K {
        drafts.push(sampling::gumbel_sample(&mut e, q, seed, counter, sampling::STREAM_DRAFT + j as i64).unwrap());
    }
    let drafts = e.concat(&drafts, 0).unwrap();
    let qs = e.concat(&[q, q, q], 0).unwrap();
    let pl = row(&mut e, p_logits, K + 1);
    let p = sampling::processed_probs(&mut e, pl, &params).unwrap();
    let (n, tokens) = sampling::accept_sampled(&mut e, drafts, qs, p, &params, counter).unwrap();
    b.output("accepted", n).unwrap();
    b.output("tokens", tokens).unwrap();
    b.output("drafts", drafts).unwrap();
    // The distributions are constants: fold them away once.
    let (g, _) = specc_opt::specialize(&b.finish().unwrap(), &Default::default()).unwrap();
    let s = Session::<Cpu>::new(g, &WeightStore::new(), cpu_device()).unwrap();
    let (mut emitted, mut proposed) = (vec![0u64; V], vec![0u64; V]);
    for round in 0..ROUNDS {
        let c = Literal::scalar_i64(round);
        let sd = Literal::scalar_i32(12345);
        let out = s.run_named(&[("counter", &c), ("seed", &sd)]).unwrap();
        let n = out[0].1.to_i64_vec().unwrap()[0] as usize;
        let toks = out[1].1.to_i64_vec().unwrap();
        for &t in &toks[..=n] {
            emitted[t as usize] += 1;
        }
        for &d in &out[2].1.to_i64_vec().unwrap() {
            proposed[d as usize] += 1;
        }
    }
    (emitted, proposed)
}

#[test]
fn speculative_samples_follow_the_target_distribution() {
    let p_logits = [1.2f32, 0.3, -0.5, 2.0, 0.0, -1.0];
    let q_logits = [0.1f32, 1.5, -0.2, 0.4, 1.0, -2.0];
    for (t, top_k, top_p) in [(1.0f32, 0usize, 1.0f32), (0.7, 4, 0.9)] {
        let (emitted, proposed) = run(&p_logits, &q_logits, t, top_k, top_p);
        let p = processed(&p_logits, t, top_k, top_p);
        let (stat, df) = chi2(&emitted, &p);
        let limit = chi2_quantile(df as f64, 3.719);
        eprintln!(
            "T={t} top_k={top_k} top_p={top_p}: {} tokens, chi2 {stat:.2} (df {df}, limit {limit:.2}); counts {emitted:?}, p {:?}",
            emitted.iter().sum::<u64>(),
            p.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>()
        );
        assert!(stat < limit, "emitted tokens are not distributed as the target's p: chi2 {stat} >= {limit}");
        // Negative control: the proposals follow q, and the test sees it.
        let (control, _) = chi2(&proposed, &p);
        assert!(control > 10.0 * limit, "the test cannot tell q from p (chi2 {control})");
    }
}
