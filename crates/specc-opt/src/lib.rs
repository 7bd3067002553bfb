//! Graph passes, above all specialization: binding symbolic dims to numbers
//! and folding until every shape is static and no shape arithmetic is left,
//! as XLA HLO (and so Trainium) requires.
//!
//! Passes are rewrites through the IR's checked builder (`Graph::rewrite`),
//! so every rebuilt node is re-inferred and checked; `specialize` runs them
//! to a fixpoint and then checks the static invariants
//! (`verify::verify_static`).
//!
//! Architecture Invariant: constant folding evaluates ops with the
//! reference interpreter's kernels (`specc_interp::fold`), never with
//! arithmetic of its own.

mod bf16;
mod cse;
mod dim_expr;
mod narrow;
mod shard;
mod specialize;

pub use bf16::{to_bf16, to_bf16_graph, weights_to_bf16};
pub use cse::cse;
pub use narrow::{DEFAULT_INPUT_RANGE, NarrowReport, narrow_to_s32};
pub use shard::{
    Layout, RANK_INPUT, ShardError, ShardPlan, Sharded, WeightRole, local_weight_type, plan as shard_plan,
    rank_weights, shard, shard_program, weight_block,
};
pub use specialize::{Bindings, OptError, Report, fold, freeze_inputs, specialize};
