//! Index arithmetic of the shape-computing ops, as plain functions on
//! numbers. Shape inference, the interpreter and constant folding all call
//! these, so the three never disagree.

use std::fmt;

/// A shape-arithmetic rule that the values given at run time break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SemanticsError(pub String);

impl fmt::Display for SemanticsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, SemanticsError> {
    Err(SemanticsError(msg.into()))
}

/// Numpy/ONNX broadcasting of two static shapes (aligned at the right).
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, SemanticsError> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => {
                return err(format!("cannot broadcast {a:?} with {b:?} (dim {x} vs {y})"));
            }
        };
    }
    Ok(out)
}

/// The result dims of `DynReshape`: `-1` is inferred, `0` copies the
/// operand's dim when `zero_copies` is set.
pub fn reshape_dims(input: &[usize], target: &[i64], zero_copies: bool) -> Result<Vec<usize>, SemanticsError> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return err(format!("reshape target {target:?} has more than one -1"));
                }
                out.push(1);
            }
            0 if zero_copies => match input.get(i) {
                Some(&d) => out.push(d),
                None => {
                    return err(format!("reshape target {target:?} copies dim {i} of a rank-{} operand", input.len()));
                }
            },
            t if t < 0 => return err(format!("reshape target {target:?} has a negative size {t}")),
            t => out.push(t as usize),
        }
    }
    // Checked: a target like [2^32, 2^32, -1] must not wrap into a size
    // that happens to divide the input.
    let Some(known) = out.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) else {
        return err(format!("reshape target {target:?} has more elements than a 64-bit count can hold"));
    };
    if let Some(i) = infer_at {
        if known == 0 || !total.is_multiple_of(known) {
            return err(format!("cannot infer -1 in reshape of {input:?} to {target:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return err(format!("cannot reshape {input:?} ({total} elements) to {out:?} ({known} elements)"));
    }
    Ok(out)
}

/// Length of `DynRange(start, limit, delta)`.
pub fn range_len(start: f64, limit: f64, delta: f64) -> Result<usize, SemanticsError> {
    if delta == 0.0 || !delta.is_finite() {
        return err(format!("range delta must be finite and non-zero, got {delta}"));
    }
    let n = ((limit - start) / delta).ceil();
    if n.is_nan() {
        return err(format!("range({start}, {limit}, {delta}) has no length"));
    }
    Ok(n.max(0.0) as usize)
}

/// One axis of an ONNX `Slice`: the first index taken and how many elements,
/// after resolving negative bounds and clamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceAxis {
    pub start: usize,
    pub count: usize,
    pub step: i64,
}

pub fn onnx_slice_axis(dim: usize, start: i64, end: i64, step: i64) -> Result<SliceAxis, SemanticsError> {
    if step == 0 {
        return err("slice step must not be 0");
    }
    // In i128: starts, ends and steps come from files and may be anywhere
    // in i64 (i64::MIN as a step, say), where `e - s + step` would wrap.
    let d = dim as i128;
    let resolve = |v: i64| if v < 0 { v as i128 + d } else { v as i128 };
    let (s, e) = (resolve(start), resolve(end));
    let (s, e) = if step > 0 { (s.clamp(0, d), e.clamp(0, d)) } else { (s.clamp(-1, d - 1), e.clamp(-1, d - 1)) };
    let stride = step.unsigned_abs() as i128;
    let span = if step > 0 { e - s } else { s - e };
    let count = if span > 0 { (span - 1) / stride + 1 } else { 0 };
    // Both are within [0, dim] after clamping.
    Ok(SliceAxis { start: s.max(0) as usize, count: count as usize, step })
}

/// A static ONNX-style slice of a tensor of static `shape`: per-dim starts,
/// limits and strides for a forward strided slice, and the axes to reverse
/// afterwards (for negative steps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSlice {
    pub starts: Vec<usize>,
    pub limits: Vec<usize>,
    pub strides: Vec<usize>,
    pub reverse: Vec<usize>,
}

impl StaticSlice {
    /// Whether the slice takes the whole tensor unchanged.
    pub fn is_identity(&self, shape: &[usize]) -> bool {
        self.reverse.is_empty()
            && self.starts.iter().all(|&s| s == 0)
            && self.limits == shape
            && self.strides.iter().all(|&s| s == 1)
    }
}

pub fn onnx_slice_static(
    shape: &[usize],
    axes: &[usize],
    starts: &[i64],
    ends: &[i64],
    steps: &[i64],
) -> Result<StaticSlice, SemanticsError> {
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return err(format!(
            "slice on {} axes got {} starts, {} ends and {} steps",
            axes.len(),
            starts.len(),
            ends.len(),
            steps.len()
        ));
    }
    if let Some(&a) = axes.iter().find(|&&a| a >= shape.len()) {
        return err(format!("slice axis {a} out of range for rank {}", shape.len()));
    }
    let mut out = StaticSlice {
        starts: vec![0; shape.len()],
        limits: shape.to_vec(),
        strides: vec![1; shape.len()],
        reverse: Vec::new(),
    };
    for (j, &a) in axes.iter().enumerate() {
        let s = onnx_slice_axis(shape[a], starts[j], ends[j], steps[j])?;
        let step = s.step.unsigned_abs() as usize;
        let (st, lim) = if s.count == 0 {
            (0, 0)
        } else if s.step > 0 {
            (s.start, s.start + (s.count - 1) * step + 1)
        } else {
            // Walk backwards: take the same elements forwards, then reverse.
            out.reverse.push(a);
            (s.start - (s.count - 1) * step, s.start + 1)
        };
        out.starts[a] = st;
        out.limits[a] = lim;
        out.strides[a] = if s.count == 0 { 1 } else { step };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
        assert_eq!(broadcast_shapes(&[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shapes(&[2], &[3]).is_err());
    }

    #[test]
    fn reshape_infers_and_copies() {
        assert_eq!(reshape_dims(&[2, 3, 4], &[0, -1], true).unwrap(), vec![2, 12]);
        assert_eq!(reshape_dims(&[2, 3, 4], &[-1], false).unwrap(), vec![24]);
        assert!(reshape_dims(&[2, 3], &[0, 6], false).is_err());
        assert!(reshape_dims(&[2, 3], &[-1, -1], false).is_err());
        assert!(reshape_dims(&[2, 3], &[4, -1], false).is_err());
    }

    #[test]
    fn range_lengths() {
        assert_eq!(range_len(0.0, 5.0, 1.0).unwrap(), 5);
        assert_eq!(range_len(10.0, 4.0, -3.0).unwrap(), 2);
        assert_eq!(range_len(5.0, 0.0, 1.0).unwrap(), 0);
        assert!(range_len(0.0, 1.0, 0.0).is_err());
    }

    #[test]
    fn onnx_slice_clamps_and_walks_backwards() {
        assert_eq!(onnx_slice_axis(10, 2, 100, 3).unwrap(), SliceAxis { start: 2, count: 3, step: 3 });
        assert_eq!(onnx_slice_axis(10, -3, i64::MAX, 1).unwrap(), SliceAxis { start: 7, count: 3, step: 1 });
        assert_eq!(onnx_slice_axis(10, -1, i64::MIN, -1).unwrap(), SliceAxis { start: 9, count: 10, step: -1 });
        assert_eq!(onnx_slice_axis(10, 5, 2, 1).unwrap().count, 0);
        assert_eq!(onnx_slice_axis(4, 20, 0, -1).unwrap(), SliceAxis { start: 3, count: 3, step: -1 });
    }
}
