//! `x[m, k] @ w[k, n]` for a few rows (m <= 16): the decode and verify
//! steps of a decoder, whose cost is reading the weights.
//!
//! Why: burn-flex's matmul takes a matrix-vector path for one row but packs
//! the whole weight matrix for two or more, so verifying K+1 tokens cost
//! 2.3-2.7x a one-token step on a 94M-parameter model, where a memory-bound
//! machine (Trainium, or this CPU) reads the weights once either way. This
//! kernel streams the weights once, in memory order, for all m rows, split
//! into a fixed number of row bands summed in parallel and added in order,
//! so results do not depend on the thread count.

use rayon::prelude::*;

/// Most rows this kernel takes; beyond, a packed matmul is the better one.
pub const MAX_ROWS: usize = 16;

/// The weight rows are split into this many bands, summed separately (in
/// parallel) and then added in band order: a fixed number, so the result
/// does not depend on the machine's thread count.
const BANDS: usize = 8;

/// `acc[i, :] += x[i, kk] * w[kk, :]` over the rows `kk` of one band: the
/// weights stream through once, in memory order.
#[inline(always)]
fn band_kernel(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, rows: std::ops::Range<usize>, acc: &mut [f32]) {
    for kk in rows {
        let row = &w[kk * n..(kk + 1) * n];
        for i in 0..m {
            let a = x[i * k + kk];
            for (o, &b) in acc[i * n..(i + 1) * n].iter_mut().zip(row) {
                *o += a * b;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn band_kernel_avx2(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    rows: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    band_kernel(x, w, m, k, n, rows, acc)
}

fn run_band(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, rows: std::ops::Range<usize>, acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function was compiled for.
        return unsafe { band_kernel_avx2(x, w, m, k, n, rows, acc) };
    }
    band_kernel(x, w, m, k, n, rows, acc)
}

/// `x` is `[m, k]`, `w` is `[k, n]`, both row-major; returns `[m, n]`.
pub fn matmul(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert_eq!((x.len(), w.len()), (m * k, k * n), "skinny matmul operand sizes");
    let per = k.div_ceil(BANDS).max(1);
    let partials: Vec<Vec<f32>> = (0..k.div_ceil(per))
        .into_par_iter()
        .map(|b| {
            let mut acc = vec![0.0f32; m * n];
            run_band(x, w, m, k, n, b * per..((b + 1) * per).min(k), &mut acc);
            acc
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut out = parts.next().unwrap_or_else(|| vec![0.0; m * n]);
    for p in parts {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn agrees_with_a_naive_product() {
        for (m, k, n) in [(1, 3, 5), (3, 17, 300), (16, 64, 513), (5, 768, 256)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.5).collect();
            let got = super::matmul(&x, &w, m, k, n);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|kk| x[i * k + kk] * w[kk * n + j]).sum();
                    // Small integers times quarters: every sum is exact.
                    assert_eq!(got[i * n + j], want, "({m},{k},{n}) at [{i},{j}]");
                }
            }
        }
    }
}
