//! Generation metrics, named as vLLM names them.
//!
//! * `num_drafts`: speculation rounds; `num_draft_tokens`: tokens proposed;
//!   `num_accepted_tokens`: proposals accepted;
//! * `accepted_per_position[i]`: rounds whose proposal `i` was accepted;
//! * mean acceptance length = 1 + accepted / drafts (the +1 is the target's
//!   own token each round: correction or bonus);
//! * draft acceptance rate = accepted / draft tokens (not the paper's
//!   per-token rate `a`; `per_position_rate` gives the curve).

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    pub num_drafts: u64,
    pub num_draft_tokens: u64,
    pub num_accepted_tokens: u64,
    pub accepted_per_position: Vec<u64>,
    /// Every device execution (prefills included).
    pub device_calls: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    /// Time to the first generated token (prefill).
    pub prefill_seconds: f64,
    /// Time from the first generated token to the last.
    pub decode_seconds: f64,
}

impl Metrics {
    pub fn mean_acceptance_length(&self) -> f64 {
        if self.num_drafts == 0 { 0.0 } else { 1.0 + self.num_accepted_tokens as f64 / self.num_drafts as f64 }
    }

    pub fn draft_acceptance_rate(&self) -> f64 {
        if self.num_draft_tokens == 0 { 0.0 } else { self.num_accepted_tokens as f64 / self.num_draft_tokens as f64 }
    }

    /// Fraction of rounds whose proposal `i` was accepted.
    pub fn per_position_rate(&self) -> Vec<f64> {
        self.accepted_per_position
            .iter()
            .map(|&a| if self.num_drafts == 0 { 0.0 } else { a as f64 / self.num_drafts as f64 })
            .collect()
    }

    pub fn device_calls_per_token(&self) -> f64 {
        if self.generated_tokens == 0 { 0.0 } else { self.device_calls as f64 / self.generated_tokens as f64 }
    }

    /// Generated tokens per second over the whole request.
    pub fn tokens_per_second(&self) -> f64 {
        let t = self.prefill_seconds + self.decode_seconds;
        if t == 0.0 { 0.0 } else { self.generated_tokens as f64 / t }
    }

    /// Mean time between generated tokens after the first.
    pub fn inter_token_latency_ms(&self) -> f64 {
        if self.generated_tokens <= 1 { 0.0 } else { 1e3 * self.decode_seconds / (self.generated_tokens - 1) as f64 }
    }
}
