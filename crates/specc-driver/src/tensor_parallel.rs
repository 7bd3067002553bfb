//! `--tp N`: the models of a generation artifact as its ranks run them.
//! The sharding itself is `specc_opt::shard` (planned once per model on its
//! decode step, by `DecoderModel::sharded`); this is the compile's choice of
//! what to shard and its report.

use crate::compile::{CompileError, CompileOptions};
use indicatif::ProgressBar;
use specc_spec::DecoderModel;
use std::fmt::Write;

/// The tensor-parallel degrees `--tp` compiles.
pub const TP_DEGREES: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// Where the draft's weights live when the target is sharded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DraftPlacement {
    /// Split like the target (two all-reduces per layer in each draft step).
    Sharded,
    /// Whole on every rank: no collectives in the K draft steps, but every
    /// rank reads all of the draft's weights each step.
    Replicated,
}

impl DraftPlacement {
    pub fn parse(s: &str) -> Result<DraftPlacement, String> {
        match s {
            "sharded" => Ok(DraftPlacement::Sharded),
            "replicated" => Ok(DraftPlacement::Replicated),
            _ => Err(format!("`{s}`: the draft is `sharded` (like the target) or `replicated` (whole on every rank)")),
        }
    }
}

/// The target and draft as the ranks hold them.
pub(crate) struct ShardedModels {
    pub target: DecoderModel,
    pub draft: Option<DecoderModel>,
}

/// The models sharded for `o.tp` ranks, or `None` at tp 1 (use them as
/// they are); what was done goes to `report`.
pub(crate) fn shard_models(
    target: &DecoderModel,
    draft: Option<&DecoderModel>,
    o: &CompileOptions,
    report: &mut String,
    pb: &ProgressBar,
) -> Result<Option<ShardedModels>, CompileError> {
    if !TP_DEGREES.contains(&o.tp) {
        return Err(CompileError::Usage(format!("--tp {} is not one of {TP_DEGREES:?}", o.tp)));
    }
    if o.tp == 1 {
        return Ok(None);
    }
    pb.set_message(format!("sharding the target across {} ranks", o.tp));
    let sharded_target = target.sharded(o.tp)?;
    let t = sharded_target.sharding.as_ref().expect("sharded");
    writeln!(
        report,
        "tensor parallel: tp {}, the target's {} KV heads as {} per rank, {} all-reduces per step",
        o.tp, target.kv_heads, t.local_kv_heads, t.all_reduces_per_step
    )
    .unwrap();
    let sharded_draft = match draft {
        Some(d) => {
            let tp = if o.draft_placement == DraftPlacement::Sharded { o.tp } else { 1 };
            let d = d.sharded(tp).map_err(CompileError::DraftShard)?;
            let how = match &d.sharding {
                Some(s) => format!("sharded like the target ({} all-reduces per step)", s.all_reduces_per_step),
                None => "replicated on every rank (no collectives in its steps)".into(),
            };
            writeln!(report, "tensor parallel: the draft is {how}").unwrap();
            Some(d)
        }
        None => None,
    };
    Ok(Some(ShardedModels { target: sharded_target, draft: sharded_draft }))
}
