//! Shared helpers of the integration tests: fixture paths, tolerances as
//! data, and comparisons that say what differs.
#![allow(dead_code)]

use specc_ir::{Literal, LiteralData};
use std::path::PathBuf;

pub const ARCHS: [&str; 4] = ["llama", "qwen2", "gpt2", "mistral"];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(arch: &str) -> PathBuf {
    repo().join("graphs/fixtures").join(arch)
}

pub fn read(path: &std::path::Path) -> Vec<(String, Literal)> {
    specc::tensor_io::read(path).unwrap_or_else(|e| panic!("{e}"))
}

/// How close two tensors must be.
#[derive(Clone, Copy, Debug)]
pub enum Tolerance {
    Exact,
    /// Max absolute difference.
    Abs(f64),
}

/// Compares shapes, dtypes and values; returns the max abs difference.
pub fn compare(what: &str, got: &Literal, want: &Literal, tol: Tolerance) -> Result<f64, String> {
    if got.shape != want.shape {
        return Err(format!("{what}: shape {:?}, expected {:?}", got.shape, want.shape));
    }
    if got.dtype() != want.dtype() {
        return Err(format!("{what}: dtype {}, expected {}", got.dtype(), want.dtype()));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut worst = (0.0f64, 0usize);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let d = if a.is_nan() && b.is_nan() {
            0.0
        } else if a == b {
            0.0
        } else {
            (a - b).abs()
        };
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if d > worst.0 {
            worst = (d, i);
        }
    }
    let ok = match tol {
        Tolerance::Exact => worst.0 == 0.0,
        Tolerance::Abs(t) => worst.0 <= t,
    };
    if !ok {
        return Err(format!(
            "{what}: max abs diff {:e} at element {} (got {}, expected {}), tolerance {tol:?}",
            worst.0, worst.1, g[worst.1], w[worst.1]
        ));
    }
    Ok(worst.0)
}

pub fn argmax_last(l: &Literal) -> Vec<i64> {
    let LiteralData::F32(v) = &l.data else { panic!("logits are f32") };
    let n = *l.shape.last().unwrap();
    v.chunks(n)
        .map(|row| {
            let mut best = 0;
            for (i, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = i;
                }
            }
            best as i64
        })
        .collect()
}
