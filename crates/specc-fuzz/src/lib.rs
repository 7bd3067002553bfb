//! specc's fuzzing harness, on stable Rust.
//!
//! - [`targets`]: what is fuzzed: an ONNX file end to end (inspect,
//!   import, specialize, compile, run, and the generation graphs of a
//!   with-past export) and an artifact directory (open with every manifest
//!   check, estimate, load, generate).
//! - [`mutate_onnx`] and [`mutate_artifact`]: structure-aware mutations
//!   (bit flips aimed at the protobuf regions that hold sizes, see [`wire`];
//!   decoded-protobuf edits; manifest edits as JSON with checksums fixed up
//!   so the decoders behind them are reached; symlinks and FIFOs).
//! - [`supervisor`]: cases run in worker processes, so that a panic, an
//!   abort, a signal and a hang are each caught and told apart.
//! - [`campaign`] (random, time-boxed, with outcome-guided corpus growth)
//!   and [`bitflips`] (every bit of a model's size regions).
//!
//! Why not libFuzzer or AFL: both need a nightly compiler for their
//! instrumentation (`-Zsanitizer`, `-Cpasses=sancov`), and this project
//! builds and tests on stable Rust only. What the harness gives up is
//! coverage guidance; it makes up for it with mutations that know the
//! formats, and with outcome-guided corpus growth. The target functions
//! take a case directory, so a libFuzzer target could call them unchanged
//! where a nightly toolchain is available.

pub mod bitflips;
pub mod campaign;
pub mod case;
pub mod mutate_artifact;
pub mod mutate_onnx;
pub mod rng;
pub mod supervisor;
pub mod targets;
pub mod wire;
