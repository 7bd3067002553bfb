//! The speculation compiler: turns a target (and optionally a draft)
//! "with past" export into the static graphs of a speculative-decoding
//! artifact, each one device call with the KV caches resident (aliased
//! parameters): prefill per prompt bucket, one-token decode, the fused
//! draft+verify round, and the verify-only graph for prompt lookup.
//!
//! Architecture Invariant: acceptance is computed inside the graphs; the
//! host only reads the accepted count and the chosen tokens.

mod build;
mod cache;
pub mod graphs;
pub mod sampling;

pub use build::Emit;
pub use cache::{DecoderModel, Sharding, SharedWeights, SpecError, emit_step};
pub use graphs::BuiltGraph;

/// What to build.
#[derive(Clone, Debug)]
pub struct SpecConfig {
    /// The K (speculative tokens per round, each >= 1) to build round
    /// graphs for; the executor picks among them (and adapts K) at run time.
    pub ks: Vec<usize>,
    /// KV-cache capacity in tokens (C).
    pub capacity: usize,
    /// Prompt buckets: prefill graphs for prompts padded to these lengths.
    pub buckets: Vec<usize>,
}

impl SpecConfig {
    /// The largest K.
    pub fn max_k(&self) -> usize {
        self.ks.iter().copied().max().unwrap_or(0)
    }

    pub fn check(&self) -> Result<(), SpecError> {
        if self.ks.is_empty() || self.ks.contains(&0) {
            return Err(SpecError::Config(format!("--num-speculative-tokens must be at least 1, got {:?}", self.ks)));
        }
        if self.buckets.is_empty() {
            return Err(SpecError::Config("give at least one prompt bucket".into()));
        }
        if let Some(&b) = self.buckets.iter().find(|&&b| b == 0 || b > self.capacity) {
            return Err(SpecError::Config(format!(
                "prompt bucket {b} must be in 1..={} (the cache capacity)",
                self.capacity
            )));
        }
        if self.max_k() + 2 > self.capacity {
            return Err(SpecError::Config(format!(
                "a cache of {} tokens cannot hold a round of K={}",
                self.capacity,
                self.max_k()
            )));
        }
        Ok(())
    }
}

/// Every graph for `target` (and `draft`, when speculating with one).
pub fn build_all(
    target: &DecoderModel,
    draft: Option<&DecoderModel>,
    cfg: &SpecConfig,
) -> Result<Vec<BuiltGraph>, SpecError> {
    cfg.check()?;
    if let Some(d) = draft
        && d.vocab != target.vocab
    {
        return Err(SpecError::Vocabulary(format!(
            "the draft's logits have {} entries, the target's {}",
            d.vocab, target.vocab
        )));
    }
    let mut out = Vec::new();
    for &bucket in &cfg.buckets {
        out.push(graphs::prefill(target, bucket, cfg.capacity, true, false)?);
        out.push(graphs::prefill(target, bucket, cfg.capacity, true, true)?);
        if let Some(d) = draft {
            out.push(graphs::prefill(d, bucket, cfg.capacity, false, false)?);
        }
    }
    // Greedy and sampling versions: the host picks by temperature.
    let mut ks = cfg.ks.clone();
    ks.sort_unstable();
    ks.dedup();
    for sample in [false, true] {
        out.push(graphs::decode(target, cfg.capacity, sample)?);
        for &k in &ks {
            out.push(graphs::verify(target, k, cfg.capacity, sample)?);
            if let Some(d) = draft {
                out.push(graphs::fused(d, target, k, cfg.capacity, sample)?);
            }
        }
    }
    Ok(out)
}
