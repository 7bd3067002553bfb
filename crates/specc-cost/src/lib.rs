//! A roofline model of Trainium latency for specc's compiled graphs, and
//! the speculative K it predicts to be best.
//!
//! * [`count`]: IR -> FLOPs and bytes of one graph execution.
//! * [`hardware`]: the Trainium chips and instances.
//! * [`tp`]: tensor-parallel split, collectives, HBM fit.
//! * [`roofline`]: time per graph, the one calibrated parameter,
//!   speculation's expected tokens per round.
//! * [`artifact`]: the counts of a generation artifact's graphs.
//!
//! It works on shapes alone: nothing here reads a weight value, so an
//! artifact compiled with `--weights none` (or linked to a sparse file) is
//! enough.

pub mod artifact;
pub mod count;
pub mod hardware;
pub mod roofline;
pub mod tp;

pub use artifact::{ArtifactCost, CostError, GraphCost, from_artifact};
pub use count::{CountError, Counts, ModelCounts, Roles, count};
pub use hardware::{INSTANCES, Instance, instance};
pub use roofline::{Calibrate, CostParams, GraphTime, calibrate, graph_time, solve_acceptance, tokens_per_round};
pub use tp::{Collectives, Resident};
