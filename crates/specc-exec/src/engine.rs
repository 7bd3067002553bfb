//! The generation loop: prefill, then speculation rounds (fused draft +
//! verify, or prompt-lookup proposals + verify) or plain decode steps,
//! until the token budget, an end-of-sequence token, or a full cache.
//!
//! State between calls: `pos` is the position of `cur`, the last emitted
//! token, which no cache holds yet; `prev` is the token before it. A round
//! writes the target's cache at `pos ..= pos+K` (the draft's at
//! `pos-1 .. pos+K`), so it needs `pos + K + 1 <= C`; a decode step writes
//! `pos` alone. Every token emitted is the target's own choice, so the
//! output is what the target alone would produce.

use crate::backend::{Backend, BackendError};
use crate::lookup;
use crate::metrics::Metrics;
use specc_artifact::{Artifact, Speculation};
use specc_ir::{DType, Literal, LiteralData};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0} was not compiled for generation (compile it with --max-seq-len)")]
    NotGeneration(String),
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    #[error(
        "the prompt has {len} tokens; the largest prompt bucket is {bucket} (recompile with --prompt-buckets {len} or larger)"
    )]
    PromptTooLong { len: usize, bucket: usize },
    #[error("the prompt has {len} tokens but the KV cache holds {capacity} (recompile with a larger --max-seq-len)")]
    PromptExceedsCache { len: usize, capacity: usize },
    #[error("token id {token} at prompt position {at} is outside the vocabulary (0..{vocab})")]
    TokenOutOfRange { token: i64, at: usize, vocab: usize },
    #[error("this artifact has no draft model: use prompt lookup or no speculation, or recompile with --draft")]
    NoDraft,
    #[error("K={k} was not compiled; this artifact has round graphs for K in {available:?} (recompile with -k)")]
    KNotCompiled { k: usize, available: Vec<usize> },
    #[error("invalid sampling parameters: {0}")]
    Sampling(String),
    #[error("graph `{graph}` returned no `{output}`")]
    BadOutput { graph: String, output: String },
}

/// How proposals are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The draft model, in the fused graph.
    Draft,
    /// n-gram matches against the prompt and the text so far.
    PromptLookup { max_ngram: usize },
    /// No speculation: one target decode step per token.
    Plain,
}

/// Sampling parameters (temperature 0 means greedy).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    /// 0 turns top-k off.
    pub top_k: usize,
    /// 1 turns top-p off.
    pub top_p: f32,
    pub seed: u64,
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// `None` (or temperature 0): greedy.
    pub sampling: Option<Sampling>,
    pub max_new_tokens: usize,
    pub mode: Mode,
    /// Keep going past end-of-sequence tokens (benchmarks, tests).
    pub ignore_eos: bool,
    /// End-of-sequence ids to use instead of the model config's.
    pub eos: Option<Vec<i64>>,
    /// Speculative tokens per round (one of the compiled K; default: the
    /// artifact's default). With `adaptive`, the largest K to use.
    pub k: Option<usize>,
    /// Choose K each round from the observed acceptance and the measured
    /// costs, and stop speculating for the request when it does not pay.
    pub adaptive: bool,
    /// BENCHMARK ONLY, never lossless: replace each round's accepted count
    /// by a draw that accepts every proposal with this probability (until
    /// the first rejection). The device work is unchanged; the text is not
    /// the target's.
    pub synthetic_acceptance: Option<SyntheticAcceptance>,
}

/// See [`GenerateOptions::synthetic_acceptance`].
#[derive(Clone, Copy, Debug)]
pub struct SyntheticAcceptance {
    pub probability: f64,
    pub seed: u64,
}

impl SyntheticAcceptance {
    /// How many of `k` proposals the `round`-th draw accepts (a hash of
    /// seed, round and position, so runs repeat exactly).
    fn accepted(&self, round: u64, k: usize) -> usize {
        (0..k)
            .take_while(|&i| {
                let mut z = self.seed
                    ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
                // splitmix64's finalizer.
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 11) as f64 / (1u64 << 53) as f64) < self.probability
            })
            .count()
    }
}

impl GenerateOptions {
    /// Greedy, no end-of-sequence override, the artifact's K.
    pub fn greedy(max_new_tokens: usize, mode: Mode) -> GenerateOptions {
        GenerateOptions {
            sampling: None,
            max_new_tokens,
            mode,
            ignore_eos: false,
            eos: None,
            k: None,
            adaptive: false,
            synthetic_acceptance: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxNewTokens,
    Eos,
    /// The KV cache is full (`--max-seq-len` reached).
    CacheFull,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Generation {
    pub tokens: Vec<i64>,
    pub stop: StopReason,
    pub metrics: Metrics,
}

pub struct Engine<B: Backend> {
    backend: B,
    spec: Speculation,
    manifest: specc_artifact::Manifest,
    /// Measured seconds per call, by graph (for the adaptive policy).
    costs: std::collections::HashMap<String, f64>,
}

/// The round graph for K (`fused_k4`, `verify_k2`, ...; `call` appends
/// `_sample`): the names `specc_spec::graphs::round_graph_name` gives.
fn round_graph(base: &str, k: usize) -> String {
    format!("{base}_k{k}")
}

/// The adaptive policy: a per-token acceptance estimate updated every
/// round, and measured costs per round size; each round takes the K (or no
/// speculation) with the best expected tokens per second.
pub struct Policy {
    /// (K, seconds per round); K = 0 is a plain decode step.
    costs: Vec<(usize, f64)>,
    /// Accepted proposals and rejections seen, with a prior of 0.6 worth
    /// four rounds, so a few early rejections do not end speculation.
    accepted: f64,
    rejected: f64,
    /// Once speculation stops paying for this request it stays off: the
    /// draft's cache would miss the plainly decoded tokens.
    off: bool,
    rounds: usize,
}

impl Policy {
    /// Warm-up rounds before the policy may turn speculation off.
    const WARM_UP: usize = 4;

    pub fn new(costs: Vec<(usize, f64)>) -> Policy {
        Policy { costs, accepted: 2.4, rejected: 1.6, off: false, rounds: 0 }
    }

    pub fn alpha(&self) -> f64 {
        self.accepted / (self.accepted + self.rejected)
    }

    /// Expected generated tokens per second of a round of size `k`.
    fn rate(&self, k: usize, t: f64) -> f64 {
        let a = self.alpha();
        let tokens = if k == 0 { 1.0 } else { (1.0 - a.powi(k as i32 + 1)) / (1.0 - a).max(1e-9) };
        tokens / t
    }

    pub fn choose(&self) -> usize {
        if self.off {
            return 0;
        }

        self.costs
            .iter()
            .filter(|(k, _)| *k > 0 || self.rounds >= Self::WARM_UP)
            .max_by(|a, b| self.rate(a.0, a.1).partial_cmp(&self.rate(b.0, b.1)).expect("finite rates"))
            .map(|(k, _)| *k)
            .unwrap_or(0)
    }

    pub fn observe(&mut self, k: usize, accepted: usize) {
        self.rounds += 1;
        self.accepted += accepted as f64;
        if accepted < k {
            self.rejected += 1.0;
        }
        if self.choose() == 0 {
            self.off = true;
        }
    }
}

/// Emits tokens into the output until the budget or an end token.
struct Sink<'a> {
    out: Vec<i64>,
    max: usize,
    eos: &'a [i64],
    stop: Option<StopReason>,
}

impl Sink<'_> {
    /// Takes tokens in order; returns how many were taken.
    fn take(&mut self, tokens: &[i64], on_tokens: &mut dyn FnMut(&[i64])) -> usize {
        let mut n = 0;
        for &t in tokens {
            if self.stop.is_some() {
                break;
            }
            self.out.push(t);
            n += 1;
            if self.eos.contains(&t) {
                self.stop = Some(StopReason::Eos);
            } else if self.out.len() >= self.max {
                self.stop = Some(StopReason::MaxNewTokens);
            }
        }
        on_tokens(&tokens[..n]);
        n
    }
}

impl<B: Backend> Engine<B> {
    /// Loads `artifact` onto `backend`.
    pub fn load(artifact: &Artifact, mut backend: B) -> Result<Engine<B>, ExecError> {
        let spec = artifact
            .manifest
            .speculation
            .clone()
            .ok_or_else(|| ExecError::NotGeneration(artifact.dir.display().to_string()))?;
        backend.load(artifact)?;
        Ok(Engine { backend, spec, manifest: artifact.manifest.clone(), costs: Default::default() })
    }

    pub fn speculation(&self) -> &Speculation {
        &self.spec
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn backend_description(&self) -> String {
        self.backend.description()
    }

    /// The backend, for its own reports (load statistics, device state).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The seconds per call the adaptive policy has measured, by graph.
    pub fn graph_costs(&self) -> &std::collections::HashMap<String, f64> {
        &self.costs
    }

    /// Replaces the measured costs: the adaptive policy's choices then
    /// depend on acceptance alone, so two engines given the same costs
    /// choose the same K round by round (tests compare backends this way).
    pub fn set_graph_costs(&mut self, costs: std::collections::HashMap<String, f64>) {
        self.costs = costs;
    }

    /// Makes every graph of the artifact ready (see [`Backend::prepare`]).
    pub fn prepare_all(&mut self) -> Result<(), ExecError> {
        let all: Vec<String> = self.manifest.graphs.iter().map(|g| g.name.clone()).collect();
        Ok(self.backend.prepare(&all)?)
    }

    /// The graphs a generation may call: its prefills, the plain step (near
    /// the end of the cache, and between lookup matches) and the round of
    /// every K it may use.
    fn graphs_for(&self, bucket: usize, mode: Mode, ks: &[usize], sampling: bool) -> Vec<String> {
        let suffix = if sampling { "_sample" } else { "" };
        let mut v = vec![format!("target_prefill_{bucket}{suffix}"), format!("target_decode{suffix}")];
        if mode == Mode::Draft {
            v.push(format!("draft_prefill_{bucket}"));
        }
        let base = match mode {
            Mode::Plain => return v,
            Mode::Draft => "fused",
            Mode::PromptLookup { .. } => "verify",
        };
        v.extend(ks.iter().map(|&k| format!("{}{suffix}", round_graph(base, k))));
        v
    }

    /// Integer input `param` of `graph`, in the dtype the graph takes (s64,
    /// or s32 after Neuron narrowing).
    fn ints(&self, graph: &str, param: &str, shape: Vec<usize>, values: &[i64]) -> Literal {
        let dtype = self
            .manifest
            .graphs
            .iter()
            .find(|g| g.name == graph)
            .and_then(|g| g.parameters.iter().find(|p| p.name == param))
            .map(|p| p.dtype.clone())
            .unwrap_or_else(|| "s64".into());
        let data = if dtype == DType::I32.name() {
            LiteralData::I32(values.iter().map(|&v| v as i32).collect())
        } else {
            LiteralData::I64(values.to_vec())
        };
        Literal::new(shape, data).expect("sized")
    }

    /// Runs `base` (or its `_sample` version when sampling, with the
    /// sampling parameters added to `inputs`).
    fn call(
        &mut self,
        m: &mut Metrics,
        base: &str,
        sampling: Option<&Sampling>,
        inputs: &[(&str, &Literal)],
    ) -> Result<Vec<(String, Literal)>, ExecError> {
        m.device_calls += 1;
        let Some(s) = sampling else {
            return Ok(self.backend.execute(base, inputs)?);
        };
        let name = format!("{base}_sample");
        let temperature = Literal::scalar_f32(s.temperature);
        let top_p = Literal::scalar_f32(s.top_p);
        let top_k = self.ints(&name, "top_k", vec![], &[s.top_k as i64]);
        // The seed's low 32 bits feed the in-graph generator.
        let seed = Literal::scalar_i32(s.seed as u32 as i32);
        let mut all: Vec<(&str, &Literal)> = inputs.to_vec();
        all.extend([("temperature", &temperature), ("top_k", &top_k), ("top_p", &top_p), ("seed", &seed)]);
        Ok(self.backend.execute(&name, &all)?)
    }

    fn scalar_out(outs: &[(String, Literal)], graph: &str, name: &str) -> Result<i64, ExecError> {
        outs.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, l)| l.to_i64_vec())
            .and_then(|v| v.first().copied())
            .ok_or_else(|| ExecError::BadOutput { graph: graph.into(), output: name.into() })
    }

    fn vec_out(outs: &[(String, Literal)], graph: &str, name: &str) -> Result<Vec<i64>, ExecError> {
        outs.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, l)| l.to_i64_vec())
            .ok_or_else(|| ExecError::BadOutput { graph: graph.into(), output: name.into() })
    }

    /// The adaptive policy for this request: round costs measured once per
    /// engine (first use) for the round graphs of `ks` and the plain step.
    fn policy(&mut self, ks: &[usize], mode: Mode, sampling: Option<&Sampling>) -> Result<Policy, ExecError> {
        let suffix = if sampling.is_some() { "_sample" } else { "" };
        let base = if mode == Mode::Draft { "fused" } else { "verify" };
        let mut costs = vec![(0, format!("target_decode{suffix}"))];
        costs.extend(ks.iter().map(|&k| (k, format!("{}{suffix}", round_graph(base, k)))));
        let mut out = Vec::new();
        for (k, graph) in costs {
            let t = match self.costs.get(&graph) {
                Some(&t) => t,
                None => {
                    let t = self.time_graph(&graph, 5)?;
                    self.costs.insert(graph, t);
                    t
                }
            };
            // A plain step competes with draft rounds only: with prompt
            // lookup a round happens only on a match, and a miss is already
            // a plain step, so turning lookup off would only lose matches.
            let keep = match mode {
                Mode::Plain => k == 0,
                Mode::Draft => true,
                Mode::PromptLookup { .. } => k > 0,
            };
            if keep {
                out.push((k, t));
            }
        }
        Ok(Policy::new(out))
    }

    /// Median wall time of one call of `graph` over `reps` calls, with
    /// placeholder per-call inputs (token 0 at position 1, neutral sampling
    /// parameters): the device cost of the graph, for cost ratios. The
    /// state it writes is stale afterwards, which the next generation's
    /// prefill and masks make harmless.
    pub fn time_graph(&mut self, graph: &str, reps: usize) -> Result<f64, ExecError> {
        let entry = self
            .manifest
            .graphs
            .iter()
            .find(|g| g.name == graph)
            .cloned()
            .ok_or_else(|| ExecError::Backend(BackendError::NoGraph(graph.into())))?;
        self.backend.prepare(&[graph.to_string()])?;
        let state: Vec<usize> = entry.outputs.iter().filter_map(|o| o.aliases_parameter).collect();
        let mut inputs: Vec<(String, Literal)> = Vec::new();
        for p in entry.parameters.iter().filter(|p| p.kind == "input" && !state.contains(&p.index)) {
            let n: usize = p.shape.iter().product();
            let value = match p.name.as_str() {
                "pos" | "length" => 1.0,
                "temperature" | "top_p" => 1.0,
                _ => 0.0,
            };
            let data = match p.dtype.as_str() {
                "f32" => LiteralData::F32(vec![value as f32; n]),
                "s32" => LiteralData::I32(vec![value as i32; n]),
                _ => LiteralData::I64(vec![value as i64; n]),
            };
            inputs.push((p.name.clone(), Literal::new(p.shape.clone(), data).expect("sized")));
        }
        let named: Vec<(&str, &Literal)> = inputs.iter().map(|(n, l)| (n.as_str(), l)).collect();
        self.backend.execute(graph, &named)?; // warm-up
        // The median call: a shared machine's preemptions inflate a mean.
        let mut times = Vec::with_capacity(reps.max(1));
        for _ in 0..reps.max(1) {
            let start = Instant::now();
            self.backend.execute(graph, &named)?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// Generates after `prompt`; `on_tokens` sees the tokens as they are
    /// accepted (for streaming).
    pub fn generate(
        &mut self,
        prompt: &[i64],
        o: &GenerateOptions,
        on_tokens: &mut dyn FnMut(&[i64]),
    ) -> Result<Generation, ExecError> {
        let cap = self.spec.capacity;
        let k_max = o.k.unwrap_or(self.spec.k);
        if !self.spec.ks.contains(&k_max) {
            return Err(ExecError::KNotCompiled { k: k_max, available: self.spec.ks.clone() });
        }
        let ks: Vec<usize> = self.spec.ks.iter().copied().filter(|&k| k <= k_max).collect();
        if prompt.is_empty() {
            return Err(ExecError::EmptyPrompt);
        }
        if let Some((at, &token)) = prompt.iter().enumerate().find(|(_, t)| **t < 0 || **t as usize >= self.spec.vocab)
        {
            return Err(ExecError::TokenOutOfRange { token, at, vocab: self.spec.vocab });
        }
        if prompt.len() >= cap {
            return Err(ExecError::PromptExceedsCache { len: prompt.len(), capacity: cap });
        }
        let bucket =
            *self.spec.buckets.iter().find(|&&b| b >= prompt.len()).ok_or(ExecError::PromptTooLong {
                len: prompt.len(),
                bucket: *self.spec.buckets.last().unwrap_or(&0),
            })?;
        if o.mode == Mode::Draft && !self.spec.draft {
            return Err(ExecError::NoDraft);
        }
        let sampling = match o.sampling {
            Some(s) if !(s.temperature >= 0.0 && s.temperature.is_finite()) => {
                return Err(ExecError::Sampling(format!("temperature must be finite and >= 0, got {}", s.temperature)));
            }
            Some(s) if !(s.top_p > 0.0 && s.top_p <= 1.0) => {
                return Err(ExecError::Sampling(format!("top-p must be in (0, 1], got {}", s.top_p)));
            }
            Some(s) if s.temperature > 0.0 => Some(s),
            _ => None,
        };
        let sampling = sampling.as_ref();
        // Compiled before any clock starts (a lazily compiling backend).
        let needed = self.graphs_for(bucket, o.mode, &ks, sampling.is_some());
        self.backend.prepare(&needed)?;
        let mut m =
            Metrics { accepted_per_position: vec![0; k_max], prompt_tokens: prompt.len() as u64, ..Default::default() };
        let mut policy = if o.adaptive { Some(self.policy(&ks, o.mode, sampling)?) } else { None };
        let eos = match (&o.eos, o.ignore_eos) {
            (_, true) => vec![],
            (Some(ids), false) => ids.clone(),
            (None, false) => self.spec.eos_token_ids.clone(),
        };
        let mut sink = Sink { out: Vec::new(), max: o.max_new_tokens, eos: &eos, stop: None };
        if o.max_new_tokens == 0 {
            return Ok(Generation { tokens: vec![], stop: StopReason::MaxNewTokens, metrics: m });
        }

        // Prefill: the prompt, padded to its bucket, into both caches.
        let start = Instant::now();
        let mut padded = prompt.to_vec();
        padded.resize(bucket, *prompt.last().expect("non-empty"));
        let tname = format!("target_prefill_{bucket}");
        let tokens = self.ints(&tname, "tokens", vec![1, bucket], &padded);
        let length = self.ints(&tname, "length", vec![], &[prompt.len() as i64]);
        let outs = self.call(&mut m, &tname, sampling, &[("tokens", &tokens), ("length", &length)])?;
        let first = Self::scalar_out(&outs, &tname, "next_token")?;
        if o.mode == Mode::Draft {
            let dname = format!("draft_prefill_{bucket}");
            let tokens = self.ints(&dname, "tokens", vec![1, bucket], &padded);
            let length = self.ints(&dname, "length", vec![], &[prompt.len() as i64]);
            self.call(&mut m, &dname, None, &[("tokens", &tokens), ("length", &length)])?;
        }
        m.prefill_seconds = start.elapsed().as_secs_f64();
        let decode_start = Instant::now();
        sink.take(&[first], on_tokens);
        let mut history: Vec<i64> = prompt.to_vec();
        history.push(first);
        let (mut prev, mut cur, mut pos) = (*prompt.last().expect("non-empty"), first, prompt.len());

        while sink.stop.is_none() {
            // This round's K (0: a plain step), if a round fits in the cache.
            let want = match &policy {
                Some(p) => p.choose(),
                None if o.mode == Mode::Plain => 0,
                None => k_max,
            };
            // Near the end of the cache, the largest compiled K that fits.
            let k = ks.iter().copied().filter(|&k| k <= want && pos + k < cap).max().unwrap_or(0);
            let proposals = match o.mode {
                Mode::PromptLookup { max_ngram } if k > 0 => lookup::propose(&history, k, max_ngram),
                _ => None,
            };
            let (accepted, choices) = if o.mode == Mode::Draft && k > 0 {
                let g = round_graph("fused", k);
                let last = self.ints(&g, "last_tokens", vec![1, 2], &[prev, cur]);
                let p = self.ints(&g, "pos", vec![], &[pos as i64]);
                let outs = self.call(&mut m, &g, sampling, &[("last_tokens", &last), ("pos", &p)])?;
                (Self::scalar_out(&outs, &g, "accepted")? as usize, Self::vec_out(&outs, &g, "tokens")?)
            } else if let Some(mut props) = proposals {
                let g = round_graph("verify", k);
                props.resize(k, *props.last().expect("non-empty proposals"));
                let mut seq = vec![cur];
                seq.extend(&props);
                let t = self.ints(&g, "tokens", vec![1, k + 1], &seq);
                let p = self.ints(&g, "pos", vec![], &[pos as i64]);
                let outs = self.call(&mut m, &g, sampling, &[("tokens", &t), ("pos", &p)])?;
                (Self::scalar_out(&outs, &g, "accepted")? as usize, Self::vec_out(&outs, &g, "tokens")?)
            } else if pos < cap {
                // A plain step: no proposals, or no room for a round.
                let t = self.ints("target_decode", "token", vec![1, 1], &[cur]);
                let p = self.ints("target_decode", "pos", vec![], &[pos as i64]);
                let outs = self.call(&mut m, "target_decode", sampling, &[("token", &t), ("pos", &p)])?;
                let next = Self::scalar_out(&outs, "target_decode", "next_token")?;
                sink.take(&[next], on_tokens);
                history.push(next);
                (prev, cur, pos) = (cur, next, pos + 1);
                continue;
            } else {
                sink.stop = Some(StopReason::CacheFull);
                break;
            };
            let accepted = match o.synthetic_acceptance {
                Some(s) => s.accepted(m.num_drafts, k),
                None => accepted,
            };
            if let Some(p) = policy.as_mut() {
                p.observe(k, accepted);
            }
            m.num_drafts += 1;
            m.num_draft_tokens += k as u64;
            m.num_accepted_tokens += accepted as u64;
            for a in m.accepted_per_position.iter_mut().take(accepted) {
                *a += 1;
            }
            let emitted = &choices[..=accepted];
            sink.take(emitted, on_tokens);
            history.extend(emitted);
            prev = if accepted == 0 { cur } else { choices[accepted - 1] };
            cur = choices[accepted];
            pos += accepted + 1;
        }
        m.decode_seconds = decode_start.elapsed().as_secs_f64();
        m.generated_tokens = sink.out.len() as u64;
        Ok(Generation { stop: sink.stop.expect("the loop ends with a reason"), tokens: sink.out, metrics: m })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Costs (K, seconds per round): a draft step costs a tenth of a target
    /// step, verifying K+1 tokens about one step.
    fn cheap_draft() -> Vec<(usize, f64)> {
        vec![(0, 1.0), (1, 1.15), (3, 1.35), (5, 1.55)]
    }

    #[test]
    fn a_draft_that_never_agrees_is_dropped_after_the_warm_up_for_good() {
        let mut p = Policy::new(cheap_draft());
        let mut rounds = 0;
        while p.choose() > 0 && rounds < 100 {
            let k = p.choose();
            p.observe(k, 0);
            rounds += 1;
        }
        // With a draft this cheap, speculating pays while alpha > 0.15: the
        // prior (0.6, worth four rounds) fades in about a dozen rounds.
        assert!((Policy::WARM_UP..=16).contains(&rounds), "dropped after {rounds} rounds");
        // Once off, it stays off (the draft's cache would miss plain tokens).
        p.observe(5, 5);
        assert_eq!(p.choose(), 0);
    }

    #[test]
    fn high_acceptance_picks_the_largest_k_and_low_acceptance_a_smaller_one() {
        let mut p = Policy::new(cheap_draft());
        for _ in 0..20 {
            let k = p.choose();
            p.observe(k, k);
        }
        assert_eq!(p.choose(), 5, "alpha {:.2}", p.alpha());
        // About half of the proposals accepted: a short round pays best.
        let mut q = Policy::new(cheap_draft());
        for _ in 0..40 {
            let k = q.choose();
            q.observe(k, k.min(1));
        }
        let k = q.choose();
        assert!(k == 1 || k == 3, "alpha {:.2} chose K={k}", q.alpha());
        // Expensive drafts at the same acceptance: speculation stops.
        let mut r = Policy::new(vec![(0, 1.0), (1, 2.2), (3, 4.6), (5, 7.0)]);
        for _ in 0..10 {
            let k = r.choose();
            r.observe(k, k.min(1));
        }
        assert_eq!(r.choose(), 0, "alpha {:.2}", r.alpha());
    }

    #[test]
    fn synthetic_acceptance_draws_are_repeatable_and_have_the_asked_rate() {
        let s = SyntheticAcceptance { probability: 0.7, seed: 9 };
        let draws: Vec<usize> = (0..20_000).map(|r| s.accepted(r, 8)).collect();
        assert_eq!(draws, (0..20_000).map(|r| s.accepted(r, 8)).collect::<Vec<_>>());
        // Accepted proposals over (accepted + rejections) estimates the rate.
        let acc: usize = draws.iter().sum();
        let rej = draws.iter().filter(|&&a| a < 8).count();
        let rate = acc as f64 / (acc + rej) as f64;
        assert!((rate - 0.7).abs() < 0.01, "{rate}");
    }
}
