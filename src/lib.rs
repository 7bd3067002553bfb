//! The `specc` command-line tool's library: what the subcommands do, so that
//! tests drive the same code as users.

pub mod bench;
pub mod commands;
pub mod neff_cache;
pub mod neuronx;
pub mod plot;
pub mod tensor_io;
pub mod text;
