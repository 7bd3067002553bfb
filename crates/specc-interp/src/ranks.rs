//! Tensor-parallel ranks simulated on the host: one `Session` per rank, each
//! on its own thread, meeting at every `all-reduce` node. The group sums
//! the ranks' contributions in rank order (so every rank gets bit-identical
//! results, as a device collective guarantees) and hands the sum back.
//!
//! A rank that fails leaves the group poisoned: every rank waiting at, or
//! later arriving at, an all-reduce gets an error instead of blocking
//! forever.

use specc_ir::Literal;
use std::sync::{Condvar, Mutex};

/// The meeting point of `ranks` sessions.
pub struct RankGroup {
    ranks: usize,
    state: Mutex<Round>,
    turned: Condvar,
}

#[derive(Default)]
struct Round {
    /// Increases by one per completed all-reduce.
    generation: u64,
    contributions: Vec<Option<Vec<f32>>>,
    sum: Option<std::sync::Arc<Vec<f32>>>,
    /// Ranks that have taken the current sum.
    taken: usize,
    poisoned: Option<String>,
}

impl RankGroup {
    pub fn new(ranks: usize) -> RankGroup {
        RankGroup {
            ranks,
            state: Mutex::new(Round { contributions: vec![None; ranks], ..Default::default() }),
            turned: Condvar::new(),
        }
    }

    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// Stops the group: ranks blocked in, or later entering, an all-reduce
    /// get `why` as their error.
    pub fn poison(&self, why: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.poisoned.get_or_insert_with(|| why.to_string());
        self.turned.notify_all();
    }

    /// Rank `rank`'s contribution `x`; returns the sum over all ranks once
    /// every rank has contributed to this all-reduce.
    pub fn all_reduce(&self, rank: usize, x: &Literal) -> Result<Literal, String> {
        if rank >= self.ranks {
            return Err(format!("rank {rank} of a group of {}", self.ranks));
        }
        let mine = x.to_f64_vec().into_iter().map(|v| v as f32).collect::<Vec<f32>>();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Wait until the previous all-reduce's sum has been taken by all.
        while s.sum.is_some() && s.poisoned.is_none() {
            s = self.turned.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(why) = &s.poisoned {
            return Err(format!("another rank stopped: {why}"));
        }
        if s.contributions[rank].is_some() {
            return Err(format!("rank {rank} entered one all-reduce twice"));
        }
        s.contributions[rank] = Some(mine);
        let generation = s.generation;
        if s.contributions.iter().all(Option::is_some) {
            let parts: Vec<Vec<f32>> = s.contributions.iter_mut().map(|c| c.take().unwrap_or_default()).collect();
            let n = parts[0].len();
            if let Some(bad) = parts.iter().position(|p| p.len() != n) {
                let why = format!("rank {bad} contributed {} elements, rank 0 {n}", parts[bad].len());
                s.poisoned = Some(why.clone());
                self.turned.notify_all();
                return Err(why);
            }
            let mut sum = vec![0f32; n];
            for p in &parts {
                for (acc, v) in sum.iter_mut().zip(p) {
                    *acc += v;
                }
            }
            s.sum = Some(std::sync::Arc::new(sum));
            s.taken = 0;
            self.turned.notify_all();
        }
        while s.generation == generation && s.sum.is_none() && s.poisoned.is_none() {
            s = self.turned.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(why) = &s.poisoned {
            return Err(format!("another rank stopped: {why}"));
        }
        let sum = s.sum.clone().expect("set when every rank contributed");
        s.taken += 1;
        if s.taken == self.ranks {
            s.sum = None;
            s.generation += 1;
            self.turned.notify_all();
        }
        drop(s);
        let data = match x.dtype() {
            specc_ir::DType::BF16 => {
                specc_ir::LiteralData::BF16(sum.iter().map(|&v| specc_ir::bf16_from_f32(v)).collect())
            }
            _ => specc_ir::LiteralData::F32(sum.to_vec()),
        };
        Literal::new(x.shape.clone(), data).map_err(|e| e.to_string())
    }
}
