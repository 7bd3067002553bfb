//! How large a tensor may be, checked before anything is allocated.
//!
//! Every size specc reads from a file (an ONNX dim, an initializer's shape,
//! a reshape target computed by constant folding, a manifest's shape) ends
//! up in a [`TensorType`]. The builder checks each type it records with
//! [`check_type`] (and decoding a graph re-checks them through the
//! verifier), so a kernel may allocate any value of a graph's type without
//! further checks: an element count that wraps around 2^64, or a tensor of
//! terabytes, is refused with the node's name before any kernel runs.
//!
//! The limit is per tensor and per process: [`max_tensor_bytes`], by
//! default [`DEFAULT_MAX_TENSOR_BYTES`], set once at startup from
//! `--max-tensor-bytes` or `$SPECC_MAX_TENSOR_BYTES` by the CLI. It is a
//! process setting (like an rlimit) rather than a parameter threaded
//! through every pass, because every pass builds graphs and all of them
//! must obey the same bound.

use crate::types::{DType, Dim, TensorType};
use std::sync::atomic::{AtomicU64, Ordering};

/// 16 GiB: above the largest single tensor of any published dense model in
/// f32 (Llama-3.1-405B's embedding, 128256 x 16384, is 8.4 GB) and below
/// what a host can allocate without trouble.
pub const DEFAULT_MAX_TENSOR_BYTES: u64 = 16 << 30;

/// The environment variable that raises (or lowers) the limit.
pub const ENV_MAX_TENSOR_BYTES: &str = "SPECC_MAX_TENSOR_BYTES";

static MAX_TENSOR_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_TENSOR_BYTES);

/// The largest tensor, in bytes, that specc accepts from a file or builds.
pub fn max_tensor_bytes() -> u64 {
    MAX_TENSOR_BYTES.load(Ordering::Relaxed)
}

/// Sets the per-tensor limit for this process (the CLI does it once, at
/// startup). A value of 0 is taken as the default.
pub fn set_max_tensor_bytes(bytes: u64) {
    let v = if bytes == 0 { DEFAULT_MAX_TENSOR_BYTES } else { bytes };
    MAX_TENSOR_BYTES.store(v, Ordering::Relaxed);
}

/// A tensor that is too large, or whose size cannot even be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("{what} has more elements than a 64-bit count can hold")]
    Overflow { what: String },
    #[error(
        "{what} would take {bytes} bytes, over the limit of {limit} bytes per tensor (raise it with --max-tensor-bytes or ${ENV_MAX_TENSOR_BYTES} if the model really has such a tensor)"
    )]
    TooLarge { what: String, bytes: u64, limit: u64 },
}

/// The product of `dims`, or None when it does not fit in a `usize`. Dims of
/// size 0 count as 1 here: a shape like `[2^40, 2^40, 0]` holds nothing, but
/// strides computed from it would still wrap, so it is refused too.
pub fn extent(dims: impl IntoIterator<Item = usize>) -> Option<usize> {
    dims.into_iter().try_fold(1usize, |acc, d| acc.checked_mul(d.max(1)))
}

/// Checks `dims` of `dtype` against the limit and returns the element
/// count. `what` names the tensor in the error.
pub fn check_dims(dtype: DType, dims: &[usize], what: impl FnOnce() -> String) -> Result<usize, SizeError> {
    check_extent(dtype, dims.iter().copied(), what)?;
    // Cannot overflow: the extent (with zeros counted as ones) did not.
    Ok(dims.iter().product())
}

fn check_extent(
    dtype: DType,
    dims: impl IntoIterator<Item = usize>,
    what: impl FnOnce() -> String,
) -> Result<(), SizeError> {
    let Some(n) = extent(dims) else { return Err(SizeError::Overflow { what: what() }) };
    let Some(bytes) = (n as u64).checked_mul(dtype.size_bytes() as u64) else {
        return Err(SizeError::Overflow { what: what() });
    };
    let limit = max_tensor_bytes();
    if bytes > limit {
        return Err(SizeError::TooLarge { what: what(), bytes, limit });
    }
    Ok(())
}

/// Checks a tensor type: its static dims (symbolic ones are checked when
/// they are bound) must not overflow and must stay within the limit.
pub fn check_type(ty: &TensorType) -> Result<(), SizeError> {
    let fixed = ty.shape.dims().iter().filter_map(Dim::fixed);
    check_extent(ty.dtype, fixed, || format!("a tensor of type {ty}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Shape;

    #[test]
    fn wrapping_and_oversized_shapes_are_refused_and_zero_dims_do_not_hide_them() {
        let f32 = |dims: &[usize]| TensorType::fixed(DType::F32, dims);
        assert!(check_type(&f32(&[1, 32, 128])).is_ok());
        // 32 * (2^61 + 1) wraps to 32 in 64-bit arithmetic.
        let wraps = f32(&[1, (1 << 61) + 1, 32]);
        assert!(matches!(check_type(&wraps), Err(SizeError::Overflow { .. })));
        assert!(matches!(check_type(&f32(&[1 << 20, 1 << 20])), Err(SizeError::TooLarge { .. })));
        assert!(matches!(check_type(&f32(&[1 << 40, 1 << 40, 0])), Err(SizeError::Overflow { .. })));
        // Symbolic dims are checked once bound; the fixed part is checked now.
        let partly = TensorType::new(DType::F32, Shape(vec![Dim::sym("batch"), Dim::Fixed(1 << 62)]));
        assert!(check_type(&partly).is_err());
        assert_eq!(check_dims(DType::I64, &[4, 0, 3], || "x".into()), Ok(0));
    }
}
