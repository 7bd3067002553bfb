//! Shape and type inference: the result type of an op from its operands.
//!
//! Symbolic dims are checked as far as they can be: two different symbols may
//! stand for the same size, so only contradictions between numbers are
//! errors before specialization. Once every dim is a number, inference checks
//! everything.

use crate::literal::Literal;
use crate::op::{DotDims, Op};
use crate::semantics;
use crate::types::{DType, Dim, Shape, TensorType};

/// Why an op cannot take its operands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InferError(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, InferError> {
    Err(InferError(msg.into()))
}

/// Makes fresh anonymous dims (`?0`, `?1`, ...).
pub trait DimSource {
    fn fresh(&mut self) -> Dim;
}

/// What inference knows about one operand: its type, and its value when it
/// is a constant.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub ty: &'a TensorType,
    pub value: Option<&'a Literal>,
}

/// Unifies two dims that must be equal.
fn same_dim(a: &Dim, b: &Dim, what: &str) -> Result<Dim, InferError> {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) if x != y => fail(format!("{what}: {x} != {y}")),
        (Dim::Fixed(_), _) => Ok(a.clone()),
        (_, Dim::Fixed(_)) => Ok(b.clone()),
        _ => Ok(a.clone()),
    }
}

/// Broadcasts dims of equal-rank operands (1 stretches).
fn broadcast_dim(a: &Dim, b: &Dim, src: &mut dyn DimSource) -> Result<Dim, InferError> {
    Ok(match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => match (x, y) {
            _ if x == y => a.clone(),
            (1, _) => b.clone(),
            (_, 1) => a.clone(),
            _ => return fail(format!("dims {x} and {y} do not broadcast")),
        },
        (Dim::Fixed(1), _) => b.clone(),
        (_, Dim::Fixed(1)) => a.clone(),
        (Dim::Fixed(_), _) => a.clone(),
        (_, Dim::Fixed(_)) => b.clone(),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => a.clone(),
        _ => src.fresh(),
    })
}

fn broadcast_all(ops: &[Operand], src: &mut dyn DimSource) -> Result<Shape, InferError> {
    let rank = ops[0].ty.rank();
    if let Some(o) = ops.iter().find(|o| o.ty.rank() != rank) {
        return fail(format!("elementwise operands must have equal rank, got {} and {}", ops[0].ty, o.ty));
    }
    let mut dims = ops[0].ty.shape.0.clone();
    for o in &ops[1..] {
        for (d, e) in dims.iter_mut().zip(&o.ty.shape.0) {
            *d = broadcast_dim(d, e, src)?;
        }
    }
    Ok(Shape(dims))
}

fn check_axes(axes: &[usize], rank: usize, what: &str) -> Result<(), InferError> {
    for (i, &a) in axes.iter().enumerate() {
        if a >= rank {
            return fail(format!("{what} axis {a} out of range for rank {rank}"));
        }
        if axes[..i].contains(&a) {
            return fail(format!("{what} axis {a} repeated"));
        }
    }
    Ok(())
}

fn is_int_scalar(t: &TensorType) -> bool {
    t.dtype.is_int() && t.rank() == 0
}

/// A rank-1 I64 shape operand: its length, and its values when constant.
fn shape_operand(o: &Operand, what: &str) -> Result<(usize, Option<Vec<i64>>), InferError> {
    if o.ty.dtype != DType::I64 || o.ty.rank() != 1 {
        return fail(format!("{what} must be s64[n], got {}", o.ty));
    }
    let Some(n) = o.ty.shape.0[0].fixed() else {
        return fail(format!("{what} must have a static length, got {}", o.ty));
    };
    Ok((n, o.value.and_then(Literal::to_i64_vec)))
}

fn sem(e: semantics::SemanticsError) -> InferError {
    InferError(e.0)
}

/// The result type of `op` applied to `operands`, checked against the
/// tensor size limit (`crate::limits`): a shape whose element count
/// overflows, or a tensor over the limit, is an error here, before any
/// kernel could allocate it. `Parameter` and `Weight` are typed by their
/// declarations, not here.
pub fn infer(op: &Op, operands: &[Operand], src: &mut dyn DimSource) -> Result<TensorType, InferError> {
    let ty = infer_type(op, operands, src)?;
    crate::limits::check_type(&ty).map_err(|e| InferError(e.to_string()))?;
    Ok(ty)
}

fn infer_type(op: &Op, operands: &[Operand], src: &mut dyn DimSource) -> Result<TensorType, InferError> {
    if let Some(n) = op.arity()
        && operands.len() != n
    {
        return fail(format!("{} takes {n} operands, got {}", op.name(), operands.len()));
    }
    let t = |i: usize| operands[i].ty;
    match op {
        Op::Parameter { .. } | Op::Weight { .. } => fail("parameters and weights are typed by their declaration"),
        Op::Constant { value } => Ok(value.ty()),
        Op::Unary { op: u } => {
            if !u.accepts(t(0).dtype) {
                return fail(format!("{} does not take {}", u.name(), t(0).dtype));
            }
            Ok(t(0).clone())
        }
        Op::Binary { op: b } => {
            if t(0).dtype != t(1).dtype {
                return fail(format!("operand types differ: {} vs {}", t(0), t(1)));
            }
            if !b.accepts(t(0).dtype) {
                return fail(format!("{} does not take {}", b.name(), t(0).dtype));
            }
            Ok(TensorType::new(t(0).dtype, broadcast_all(operands, src)?))
        }
        Op::Compare { .. } => {
            if t(0).dtype != t(1).dtype {
                return fail(format!("operand types differ: {} vs {}", t(0), t(1)));
            }
            Ok(TensorType::new(DType::Bool, broadcast_all(operands, src)?))
        }
        Op::Select => {
            if t(0).dtype != DType::Bool {
                return fail(format!("select predicate must be pred, got {}", t(0)));
            }
            if t(1).dtype != t(2).dtype {
                return fail(format!("select branches differ: {} vs {}", t(1), t(2)));
            }
            Ok(TensorType::new(t(1).dtype, broadcast_all(operands, src)?))
        }
        Op::Convert { to } => Ok(TensorType::new(*to, t(0).shape.clone())),
        Op::AllReduce { ranks } => {
            // Neuron's compiler reduces floats only (neuronx-cc EVRF061);
            // integer results cross ranks carried as floats.
            if !t(0).dtype.is_float() {
                return fail(format!("all-reduce of {}: only floats are reduced across ranks", t(0)));
            }
            if *ranks == 0 {
                return fail("all-reduce over 0 ranks");
            }
            Ok(t(0).clone())
        }
        Op::Dot { dims } => infer_dot(dims, t(0), t(1)),
        Op::Reduce { axes, .. } => {
            if t(0).dtype == DType::Bool {
                return fail("reduce of pred");
            }
            check_axes(axes, t(0).rank(), "reduce")?;
            if axes.windows(2).any(|w| w[0] >= w[1]) {
                return fail(format!("reduce axes must be sorted: {axes:?}"));
            }
            let dims = t(0).shape.0.iter().enumerate().filter(|(i, _)| !axes.contains(i));
            Ok(TensorType::new(t(0).dtype, Shape(dims.map(|(_, d)| d.clone()).collect())))
        }
        Op::Broadcast { shape, dims } => {
            if dims.len() != t(0).rank() {
                return fail(format!("broadcast maps {} dims of a rank-{} operand", dims.len(), t(0).rank()));
            }
            if dims.windows(2).any(|w| w[0] >= w[1]) || dims.iter().any(|&d| d >= shape.rank()) {
                return fail(format!("broadcast dims {dims:?} must increase and be < {}", shape.rank()));
            }
            for (i, &d) in dims.iter().enumerate() {
                if let (Dim::Fixed(a), Dim::Fixed(b)) = (&t(0).shape.0[i], &shape.0[d])
                    && a != b
                    && *a != 1
                {
                    return fail(format!("broadcast of dim {i} ({a}) to {b}"));
                }
            }
            Ok(TensorType::new(t(0).dtype, shape.clone()))
        }
        Op::Reshape { shape } => {
            if let (Some(a), Some(b)) = (t(0).shape.num_elements(), shape.num_elements())
                && a != b
            {
                return fail(format!("reshape of {} ({a} elements) to {shape} ({b} elements)", t(0)));
            }
            Ok(TensorType::new(t(0).dtype, shape.clone()))
        }
        Op::Transpose { perm } => {
            if perm.len() != t(0).rank() {
                return fail(format!("transpose perm {perm:?} for rank {}", t(0).rank()));
            }
            check_axes(perm, t(0).rank(), "transpose")?;
            Ok(TensorType::new(t(0).dtype, Shape(perm.iter().map(|&p| t(0).shape.0[p].clone()).collect())))
        }
        Op::Reverse { axes } => {
            check_axes(axes, t(0).rank(), "reverse")?;
            Ok(t(0).clone())
        }
        Op::Slice { starts, limits, strides } => {
            let r = t(0).rank();
            if starts.len() != r || limits.len() != r || strides.len() != r {
                return fail(format!("slice needs {r} starts, limits and strides"));
            }
            let mut dims = Vec::with_capacity(r);
            for i in 0..r {
                let (s, l, st) = (starts[i], limits[i], strides[i]);
                if st == 0 || s > l {
                    return fail(format!("slice dim {i}: start {s}, limit {l}, stride {st}"));
                }
                if let Dim::Fixed(d) = t(0).shape.0[i]
                    && l > d
                {
                    return fail(format!("slice dim {i}: limit {l} > size {d}"));
                }
                dims.push(Dim::Fixed((l - s).div_ceil(st)));
            }
            Ok(TensorType::new(t(0).dtype, Shape(dims)))
        }
        Op::Concat { axis } => {
            if operands.is_empty() {
                return fail("concatenate needs at least one operand");
            }
            let first = t(0);
            if *axis >= first.rank() {
                return fail(format!("concatenate axis {axis} for rank {}", first.rank()));
            }
            let mut dims = first.shape.0.clone();
            let mut total = Some(0usize);
            for o in operands {
                if o.ty.dtype != first.dtype || o.ty.rank() != first.rank() {
                    return fail(format!("concatenate operands differ: {} vs {}", first, o.ty));
                }
                for (i, (d, e)) in dims.iter_mut().zip(&o.ty.shape.0).enumerate() {
                    if i != *axis {
                        *d = same_dim(d, e, &format!("concatenate dim {i}"))?;
                    }
                }
                total = total.zip(o.ty.shape.0[*axis].fixed()).map(|(a, b)| a.saturating_add(b));
            }
            dims[*axis] = total.map(Dim::Fixed).unwrap_or_else(|| src.fresh());
            Ok(TensorType::new(first.dtype, Shape(dims)))
        }
        Op::Pad { low, high } => {
            let r = t(0).rank();
            if low.len() != r || high.len() != r {
                return fail(format!("pad needs {r} low and high sizes"));
            }
            if t(1).rank() != 0 || t(1).dtype != t(0).dtype {
                return fail(format!("pad value must be a {} scalar, got {}", t(0).dtype, t(1)));
            }
            let dims = t(0).shape.0.iter().enumerate().map(|(i, d)| match d {
                // Saturating: an overflowing size is refused by the size check.
                Dim::Fixed(n) => Dim::Fixed(n.saturating_add(low[i]).saturating_add(high[i])),
                Dim::Sym(_) if low[i] == 0 && high[i] == 0 => d.clone(),
                Dim::Sym(_) => src.fresh(),
            });
            Ok(TensorType::new(t(0).dtype, Shape(dims.collect())))
        }
        Op::Iota { shape, axis, dtype } => {
            if *axis >= shape.rank() {
                return fail(format!("iota axis {axis} for rank {}", shape.rank()));
            }
            if *dtype == DType::Bool {
                return fail("iota of pred");
            }
            Ok(TensorType::new(*dtype, shape.clone()))
        }
        Op::Gather { axis } => {
            if *axis >= t(0).rank() {
                return fail(format!("gather axis {axis} for rank {}", t(0).rank()));
            }
            if !t(1).dtype.is_int() {
                return fail(format!("gather indices must be integers, got {}", t(1)));
            }
            let x = &t(0).shape.0;
            let mut dims = x[..*axis].to_vec();
            dims.extend(t(1).shape.0.iter().cloned());
            dims.extend(x[axis + 1..].iter().cloned());
            Ok(TensorType::new(t(0).dtype, Shape(dims)))
        }
        Op::DynamicSlice { sizes } => {
            let r = t(0).rank();
            if operands.len() != 1 + r || sizes.len() != r {
                return fail(format!("dynamic-slice of rank {r} needs {r} starts and sizes"));
            }
            check_starts(&operands[1..])?;
            for (i, (&s, d)) in sizes.iter().zip(&t(0).shape.0).enumerate() {
                if let Dim::Fixed(d) = d
                    && s > *d
                {
                    return fail(format!("dynamic-slice size {s} > dim {i} ({d})"));
                }
            }
            Ok(TensorType::fixed(t(0).dtype, sizes))
        }
        Op::DynamicUpdateSlice => {
            if operands.len() < 2 {
                return fail("dynamic-update-slice needs an operand, an update and starts");
            }
            let r = t(0).rank();
            if operands.len() != 2 + r || t(1).rank() != r || t(1).dtype != t(0).dtype {
                return fail(format!("dynamic-update-slice of {} with {} needs {r} starts", t(0), t(1)));
            }
            check_starts(&operands[2..])?;
            for (i, (u, d)) in t(1).shape.0.iter().zip(&t(0).shape.0).enumerate() {
                if let (Dim::Fixed(u), Dim::Fixed(d)) = (u, d)
                    && u > d
                {
                    return fail(format!("dynamic-update-slice update dim {i} ({u}) > {d}"));
                }
            }
            Ok(t(0).clone())
        }
        Op::ShapeOf => Ok(TensorType::fixed(DType::I64, &[t(0).rank()])),
        Op::DynReshape { zero_copies } => {
            let (n, target) = shape_operand(&operands[1], "reshape shape")?;
            let dims = match (target, t(0).shape.as_fixed()) {
                (Some(target), Some(input)) => {
                    let d = semantics::reshape_dims(&input, &target, *zero_copies).map_err(sem)?;
                    d.into_iter().map(Dim::Fixed).collect()
                }
                (Some(target), None) => target
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| match v {
                        0 if *zero_copies => t(0).shape.0.get(i).cloned().unwrap_or_else(|| src.fresh()),
                        v if v > 0 => Dim::Fixed(v as usize),
                        _ => src.fresh(),
                    })
                    .collect(),
                (None, _) => (0..n).map(|_| src.fresh()).collect(),
            };
            Ok(TensorType::new(t(0).dtype, Shape(dims)))
        }
        Op::DynBroadcast => {
            let (n, target) = shape_operand(&operands[1], "expand shape")?;
            let x = &t(0).shape.0;
            let rank = n.max(x.len());
            let mut dims = Vec::with_capacity(rank);
            for i in 0..rank {
                let xd = (i + x.len() >= rank).then(|| x[i + x.len() - rank].clone());
                let td = (i + n >= rank).then(|| target.as_ref().map(|t| t[i + n - rank]));
                let d = match (xd, td) {
                    (Some(xd), None) => xd,
                    (xd, Some(Some(v))) => {
                        let v = usize::try_from(v).map_err(|_| InferError(format!("expand to negative size {v}")))?;
                        broadcast_dim(&xd.unwrap_or(Dim::Fixed(1)), &Dim::Fixed(v), src)?
                    }
                    (Some(Dim::Fixed(d)), Some(None)) if d > 1 => Dim::Fixed(d),
                    _ => src.fresh(),
                };
                dims.push(d);
            }
            Ok(TensorType::new(t(0).dtype, Shape(dims)))
        }
        Op::DynRange => {
            let dt = t(0).dtype;
            if operands.iter().any(|o| o.ty.rank() != 0 || o.ty.dtype != dt) || dt == DType::Bool {
                return fail(format!(
                    "range takes three scalars of one numeric type, got {}, {}, {}",
                    t(0),
                    t(1),
                    t(2)
                ));
            }
            let vals: Option<Vec<f64>> = operands.iter().map(|o| o.value.and_then(Literal::scalar_value)).collect();
            let d = match vals {
                Some(v) => Dim::Fixed(semantics::range_len(v[0], v[1], v[2]).map_err(sem)?),
                None => src.fresh(),
            };
            Ok(TensorType::new(dt, Shape(vec![d])))
        }
        Op::DynFill { value } => {
            if value.num_elements() != 1 {
                return fail("fill value must have one element");
            }
            let (n, target) = shape_operand(&operands[0], "fill shape")?;
            let dims = match target {
                Some(v) => v
                    .iter()
                    .map(|&d| {
                        usize::try_from(d)
                            .map(Dim::Fixed)
                            .map_err(|_| InferError(format!("fill with negative size {d}")))
                    })
                    .collect::<Result<_, _>>()?,
                None => (0..n).map(|_| src.fresh()).collect(),
            };
            Ok(TensorType::new(value.dtype(), Shape(dims)))
        }
        Op::DynSlice { axes, steps } => {
            let r = t(0).rank();
            check_axes(axes, r, "slice")?;
            if steps.len() != axes.len() {
                return fail("slice needs one step per axis");
            }
            let (ns, starts) = shape_operand(&operands[1], "slice starts")?;
            let (ne, ends) = shape_operand(&operands[2], "slice ends")?;
            if ns != axes.len() || ne != axes.len() {
                return fail(format!("slice on {} axes got {ns} starts and {ne} ends", axes.len()));
            }
            let mut dims = t(0).shape.0.clone();
            for (k, &a) in axes.iter().enumerate() {
                dims[a] = match (&dims[a], &starts, &ends) {
                    (Dim::Fixed(d), Some(s), Some(e)) => {
                        Dim::Fixed(semantics::onnx_slice_axis(*d, s[k], e[k], steps[k]).map_err(sem)?.count)
                    }
                    _ => src.fresh(),
                };
            }
            Ok(TensorType::new(t(0).dtype, Shape(dims)))
        }
    }
}

fn check_starts(starts: &[Operand]) -> Result<(), InferError> {
    if let Some(first) = starts.first()
        && starts.iter().any(|s| !is_int_scalar(s.ty) || s.ty.dtype != first.ty.dtype)
    {
        return fail("start indices must be integer scalars of one type");
    }
    Ok(())
}

fn infer_dot(d: &DotDims, lhs: &TensorType, rhs: &TensorType) -> Result<TensorType, InferError> {
    if lhs.dtype != rhs.dtype || !lhs.dtype.is_float() {
        return fail(format!("dot takes floats of one type, got {lhs} and {rhs}"));
    }
    if d.lhs_batch.len() != d.rhs_batch.len() || d.lhs_contract.len() != d.rhs_contract.len() {
        return fail("dot: batch and contracting dims must pair up");
    }
    let lhs_used: Vec<usize> = d.lhs_batch.iter().chain(&d.lhs_contract).copied().collect();
    let rhs_used: Vec<usize> = d.rhs_batch.iter().chain(&d.rhs_contract).copied().collect();
    check_axes(&lhs_used, lhs.rank(), "dot lhs")?;
    check_axes(&rhs_used, rhs.rank(), "dot rhs")?;
    let mut dims = Vec::new();
    for (&a, &b) in d.lhs_batch.iter().zip(&d.rhs_batch) {
        dims.push(same_dim(&lhs.shape.0[a], &rhs.shape.0[b], "dot batch dim")?);
    }
    for (&a, &b) in d.lhs_contract.iter().zip(&d.rhs_contract) {
        same_dim(&lhs.shape.0[a], &rhs.shape.0[b], "dot contracting dim")?;
    }
    dims.extend((0..lhs.rank()).filter(|i| !lhs_used.contains(i)).map(|i| lhs.shape.0[i].clone()));
    dims.extend((0..rhs.rank()).filter(|i| !rhs_used.contains(i)).map(|i| rhs.shape.0[i].clone()));
    // bf16 operands accumulate in f32 and give f32.
    let out = if lhs.dtype == DType::BF16 { DType::F32 } else { lhs.dtype };
    Ok(TensorType::new(out, Shape(dims)))
}
