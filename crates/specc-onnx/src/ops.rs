//! Lowering of each supported ONNX operator to IR primitives.
//!
//! Each function handles one op type across opsets 1..=20 where ONNX moved
//! attributes to inputs (Squeeze/Unsqueeze/Split axes and sizes at 13,
//! ReduceMean axes at 18, Split `num_outputs` at 18, Softmax's semantics at
//! 13, Slice inputs at 10, Shape `start`/`end` at 15, Reshape `allowzero` at
//! 14). Spec: <https://onnx.ai/onnx/operators/>.

use crate::ctx::{Ctx, LResult};
use crate::proto::{self, TensorValue};
use onnx_ir::NodeProto;
use specc_ir::{BinaryOp, CompareDir, DType, Dim, DotDims, Literal, LiteralData, NodeId, Op, ReduceOp, Shape, UnaryOp};

/// Every ONNX op type (default domain) specc imports.
pub const SUPPORTED: &[&str] = &[
    "Add",
    "And",
    "Cast",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Cos",
    "Div",
    "Equal",
    "Expand",
    "Flatten",
    "Gather",
    "GatherND",
    "Gemm",
    "Greater",
    "Identity",
    "IsNaN",
    "LayerNormalization",
    "LessOrEqual",
    "MatMul",
    "Max",
    "Mul",
    "Neg",
    "Pow",
    "Range",
    "Reciprocal",
    "ReduceMean",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Sin",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Lowers one node; returns the IR nodes for its outputs, in order (`None`
/// for optional outputs it does not produce).
pub fn lower(c: &mut Ctx, n: &NodeProto) -> LResult<Vec<Option<NodeId>>> {
    let one = |id: NodeId| Ok(vec![Some(id)]);
    match n.op_type.as_str() {
        "Identity" => one(c.input(n, 0)?),
        "Constant" => one(constant(c, n)?),
        "Cast" => {
            let to = c.attrs(n).int("to").ok_or_else(|| c.err("missing attribute `to`"))? as i32;
            let dt = proto::dtype_of(to)
                .ok_or_else(|| c.err(format!("cast to {} is not supported", proto::elem_name(to))))?;
            let x = c.input(n, 0)?;
            one(c.convert(x, dt)?)
        }
        "Add" => one(arith(c, n, BinaryOp::Add)?),
        "Sub" => one(arith(c, n, BinaryOp::Sub)?),
        "Mul" => one(arith(c, n, BinaryOp::Mul)?),
        "Div" => one(arith(c, n, BinaryOp::Div)?),
        "Pow" => one(pow(c, n)?),
        "And" => {
            let (a, b) = (c.input(n, 0)?, c.input(n, 1)?);
            one(c.binary(BinaryOp::And, a, b)?)
        }
        "Max" => {
            let xs = c.inputs(n)?;
            let mut acc = *xs.first().ok_or_else(|| c.err("Max needs at least one input"))?;
            for &x in &xs[1..] {
                acc = c.binary(BinaryOp::Max, acc, x)?;
            }
            one(acc)
        }
        "Equal" => one(compare(c, n, CompareDir::Eq)?),
        "Greater" => one(compare(c, n, CompareDir::Gt)?),
        "LessOrEqual" => one(compare(c, n, CompareDir::Le)?),
        "Where" => {
            let v = [c.input(n, 0)?, c.input(n, 1)?, c.input(n, 2)?];
            let v = c.align(&v)?;
            one(c.add(Op::Select, &v)?)
        }
        "Neg" => one(unary(c, n, UnaryOp::Neg)?),
        "Sqrt" => one(unary(c, n, UnaryOp::Sqrt)?),
        "Cos" => one(unary(c, n, UnaryOp::Cos)?),
        "Sin" => one(unary(c, n, UnaryOp::Sin)?),
        "Tanh" => one(unary(c, n, UnaryOp::Tanh)?),
        "Sigmoid" => one(unary(c, n, UnaryOp::Logistic)?),
        "Reciprocal" => {
            let x = c.input(n, 0)?;
            let dt = float_only(c, x)?;
            let unit = c.scalar(dt, 1.0)?;
            one(c.binary(BinaryOp::Div, unit, x)?)
        }
        "IsNaN" => {
            let x = c.input(n, 0)?;
            float_only(c, x)?;
            one(c.add(Op::Compare { dir: CompareDir::Ne }, &[x, x])?)
        }
        "Shape" => one(shape(c, n)?),
        "Gather" => one(gather(c, n)?),
        "GatherND" => one(gather_nd(c, n)?),
        "Unsqueeze" => one(unsqueeze(c, n)?),
        "Squeeze" => one(squeeze(c, n)?),
        "Flatten" => one(flatten(c, n)?),
        "Reshape" => one(reshape(c, n)?),
        "Transpose" => {
            let x = c.input(n, 0)?;
            let r = c.rank(x);
            let perm = match c.attrs(n).ints("perm") {
                Some(p) => p.iter().map(|&a| c.axis(a, r)).collect::<LResult<Vec<_>>>()?,
                None => (0..r).rev().collect(),
            };
            one(c.add(Op::Transpose { perm }, &[x])?)
        }
        "Concat" => {
            let xs = c.inputs(n)?;
            let first = *xs.first().ok_or_else(|| c.err("Concat needs at least one input"))?;
            let axis = c.attrs(n).int("axis").ok_or_else(|| c.err("missing attribute `axis`"))?;
            let axis = c.axis(axis, c.rank(first))?;
            one(c.add(Op::Concat { axis }, &xs)?)
        }
        "Slice" => one(slice(c, n)?),
        "Split" => split(c, n).map(|v| v.into_iter().map(Some).collect()),
        "Expand" => one(expand(c, n)?),
        "ConstantOfShape" => one(constant_of_shape(c, n)?),
        "Range" => one(range(c, n)?),
        "MatMul" => {
            let (a, b) = (c.input(n, 0)?, c.input(n, 1)?);
            one(matmul(c, a, b)?)
        }
        "Gemm" => one(gemm(c, n)?),
        "Softmax" => one(softmax(c, n)?),
        "LayerNormalization" => layer_norm(c, n),
        "ReduceMean" => one(reduce_mean(c, n)?),
        other => Err(c.err(format!("no lowering for {other}"))),
    }
}

fn float_only(c: &Ctx, x: NodeId) -> LResult<DType> {
    let dt = c.dtype(x);
    if !dt.is_float() {
        return Err(c.err(format!("takes float tensors, got {dt}")));
    }
    Ok(dt)
}

fn constant(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let a = c.attrs(n);
    let out = n.output.first().cloned().unwrap_or_default();
    if let Some(t) = a.tensor("value") {
        let mut t = t.clone();
        if t.name.is_empty() {
            t.name = out.clone();
        }
        let value = proto::tensor_value(&t, &c.external, false, &mut c.warnings)?;
        return match value {
            TensorValue::Literal(l) => c.constant(l),
            TensorValue::Weight(ty, bytes) => c.weight(&out, ty, bytes),
        };
    }
    if let Some(attr) = a.get("value_float") {
        return c.constant(Literal::scalar_f32(attr.f));
    }
    if let Some(attr) = a.get("value_floats") {
        return c.constant(Literal { shape: vec![attr.floats.len()], data: LiteralData::F32(attr.floats.clone()) });
    }
    if let Some(attr) = a.get("value_int") {
        return c.constant(Literal::scalar_i64(attr.i));
    }
    if let Some(attr) = a.get("value_ints") {
        return c.constant(Literal::vec_i64(attr.ints.clone()));
    }
    Err(c.err("Constant with a sparse or string value is not supported"))
}

fn arith(c: &mut Ctx, n: &NodeProto, op: BinaryOp) -> LResult<NodeId> {
    let (a, b) = (c.input(n, 0)?, c.input(n, 1)?);
    if c.dtype(a) == DType::Bool {
        return Err(c.err("arithmetic on bool tensors"));
    }
    c.binary(op, a, b)
}

fn pow(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let (a, b) = (c.input(n, 0)?, c.input(n, 1)?);
    let dt = c.dtype(a);
    if !dt.is_float() {
        return Err(c.err(format!("Pow of {dt} base is not supported (only float bases)")));
    }
    let b = c.convert(b, dt)?;
    c.binary(BinaryOp::Pow, a, b)
}

fn compare(c: &mut Ctx, n: &NodeProto, dir: CompareDir) -> LResult<NodeId> {
    let v = [c.input(n, 0)?, c.input(n, 1)?];
    let v = c.align(&v)?;
    c.add(Op::Compare { dir }, &v)
}

fn unary(c: &mut Ctx, n: &NodeProto, op: UnaryOp) -> LResult<NodeId> {
    let x = c.input(n, 0)?;
    c.add(Op::Unary { op }, &[x])
}

fn shape(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let x = c.input(n, 0)?;
    let r = c.rank(x) as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(c.attrs(n).int_or("start", 0));
    let end = clamp(c.attrs(n).int_or("end", r)).max(start);
    let dims = c.dims(x);
    if let Some(d) = Shape(dims[start..end].to_vec()).as_fixed() {
        return c.constant(Literal::vec_i64(d.iter().map(|&v| v as i64).collect()));
    }
    let s = c.add(Op::ShapeOf, &[x])?;
    if start == 0 && end == r as usize {
        return Ok(s);
    }
    c.add(Op::Slice { starts: vec![start], limits: vec![end], strides: vec![1] }, &[s])
}

/// Indices with ONNX's negative-counts-from-the-end rule resolved.
fn nonnegative_indices(c: &mut Ctx, data: NodeId, axis: usize, idx: NodeId) -> LResult<NodeId> {
    let dim = c.dims(data)[axis].clone();
    if let (Some(v), Dim::Fixed(d)) = (c.literal(idx).cloned(), &dim) {
        let vals = v.to_i64_vec().unwrap_or_default();
        if vals.iter().all(|&i| i >= 0) {
            return Ok(idx);
        }
        let fixed: Vec<i64> = vals.iter().map(|&i| if i < 0 { i + *d as i64 } else { i }).collect();
        let lit = match v.data {
            LiteralData::I32(_) => {
                Literal { shape: v.shape, data: LiteralData::I32(fixed.iter().map(|&x| x as i32).collect()) }
            }
            _ => Literal { shape: v.shape, data: LiteralData::I64(fixed) },
        };
        return c.constant(lit);
    }
    let dt = c.dtype(idx);
    let size = c.dim_size(data, axis)?;
    let size = c.convert(size, dt)?;
    let zero = c.scalar(dt, 0.0)?;
    let r = c.rank(idx);
    let (size, zero) = (c.lift_rank(size, r)?, c.lift_rank(zero, r)?);
    let neg = c.add(Op::Compare { dir: CompareDir::Lt }, &[idx, zero])?;
    let wrapped = c.add(Op::Binary { op: BinaryOp::Add }, &[idx, size])?;
    c.add(Op::Select, &[neg, wrapped, idx])
}

fn gather(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let (x, idx) = (c.input(n, 0)?, c.input(n, 1)?);
    if !c.dtype(idx).is_int() {
        return Err(c.err(format!("indices must be int32 or int64, got {}", c.dtype(idx))));
    }
    let axis = c.axis(c.attrs(n).int_or("axis", 0), c.rank(x))?;
    let idx = nonnegative_indices(c, x, axis, idx)?;
    c.add(Op::Gather { axis }, &[x, idx])
}

/// GatherND with `batch_dims = 0`: the index tuples become linear indices
/// into the data flattened over the indexed dims, then one gather.
fn gather_nd(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let (x, idx) = (c.input(n, 0)?, c.input(n, 1)?);
    if c.attrs(n).int_or("batch_dims", 0) != 0 {
        return Err(c.err("GatherND with batch_dims != 0 is not supported"));
    }
    let xd = c.dims(x);
    let id = c.dims(idx);
    let Some(Dim::Fixed(k)) = id.last().cloned() else {
        return Err(c.err("GatherND needs indices whose last dim is static"));
    };
    let Some(lead) = Shape(xd[..k.min(xd.len())].to_vec()).as_fixed().filter(|_| k <= xd.len()) else {
        return Err(
            c.err(format!("GatherND indexing {k} dims needs those dims of the data to be static, got {}", c.ty(x)))
        );
    };
    let dt = c.dtype(idx);
    let mut linear: Option<NodeId> = None;
    let r = id.len();
    for (j, &d) in lead.iter().enumerate() {
        let part = c.onnx_slice(idx, &[r - 1], &[j as i64], &[j as i64 + 1], &[1])?;
        let part = c.reshape(part, id[..r - 1].to_vec())?;
        // Negative components count from the end of their dim.
        let (zero, size) = (c.scalar(dt, 0.0)?, c.scalar(dt, d as f64)?);
        let (zero, size) = (c.lift_rank(zero, r - 1)?, c.lift_rank(size, r - 1)?);
        let neg = c.add(Op::Compare { dir: CompareDir::Lt }, &[part, zero])?;
        let wrapped = c.add(Op::Binary { op: BinaryOp::Add }, &[part, size])?;
        let part = c.add(Op::Select, &[neg, wrapped, part])?;
        let stride: usize = lead[j + 1..].iter().product();
        let stride = c.scalar(dt, stride as f64)?;
        let stride = c.lift_rank(stride, r - 1)?;
        let scaled = c.add(Op::Binary { op: BinaryOp::Mul }, &[part, stride])?;
        linear = Some(match linear {
            None => scaled,
            Some(acc) => c.add(Op::Binary { op: BinaryOp::Add }, &[acc, scaled])?,
        });
    }
    let Some(linear) = linear else {
        return Err(c.err("GatherND with empty index tuples is not supported"));
    };
    let mut flat = vec![Dim::Fixed(lead.iter().product())];
    flat.extend(xd[k..].iter().cloned());
    let xf = c.reshape(x, flat)?;
    c.add(Op::Gather { axis: 0 }, &[xf, linear])
}

/// Axes from the attribute (before opset 13) or the second input.
fn axes_arg(c: &Ctx, n: &NodeProto, input: usize, since: i64) -> LResult<Option<Vec<i64>>> {
    if c.opset < since {
        return Ok(c.attrs(n).ints("axes"));
    }
    match c.opt_input(n, input)? {
        None => Ok(None),
        Some(_) => c.required_const_i64s(n, input, "axes").map(Some),
    }
}

fn unsqueeze(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let x = c.input(n, 0)?;
    let axes = axes_arg(c, n, 1, 13)?.ok_or_else(|| c.err("Unsqueeze needs axes"))?;
    let out_rank = c.rank(x) + axes.len();
    let mut axes: Vec<usize> = axes.iter().map(|&a| c.axis(a, out_rank)).collect::<LResult<_>>()?;
    axes.sort_unstable();
    if axes.windows(2).any(|w| w[0] == w[1]) {
        return Err(c.err("repeated axis"));
    }
    let mut src = c.dims(x).into_iter();
    let dims =
        (0..out_rank).map(|i| if axes.contains(&i) { Dim::Fixed(1) } else { src.next().expect("rank") }).collect();
    c.reshape(x, dims)
}

fn squeeze(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let x = c.input(n, 0)?;
    let dims = c.dims(x);
    let axes: Vec<usize> = match axes_arg(c, n, 1, 13)? {
        Some(a) => a.iter().map(|&a| c.axis(a, dims.len())).collect::<LResult<_>>()?,
        None => {
            if dims.iter().any(|d| matches!(d, Dim::Sym(_))) {
                return Err(c.err(format!("Squeeze without axes on {}: which run-time dims are 1 is unknown", c.ty(x))));
            }
            (0..dims.len()).filter(|&i| dims[i] == Dim::Fixed(1)).collect()
        }
    };
    if let Some(&a) = axes.iter().find(|&&a| matches!(dims[a], Dim::Fixed(d) if d != 1)) {
        return Err(c.err(format!("cannot squeeze axis {a} of size {}", dims[a])));
    }
    let kept = dims.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect();
    c.reshape(x, kept)
}

fn product(dims: &[Dim]) -> Option<usize> {
    dims.iter().map(Dim::fixed).product()
}

fn flatten(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let x = c.input(n, 0)?;
    let dims = c.dims(x);
    let r = dims.len() as i64;
    let a = c.attrs(n).int_or("axis", 1);
    let axis = if a < 0 { a + r } else { a };
    if !(0..=r).contains(&axis) {
        return Err(c.err(format!("axis {a} out of range for rank {r}")));
    }
    let (front, back) = dims.split_at(axis as usize);
    let (f, b) = (product(front), product(back));
    if let (Some(f), Some(b)) = (f, b) {
        return c.reshape(x, vec![Dim::Fixed(f), Dim::Fixed(b)]);
    }
    // One side known: reshape to [known, -1] or [-1, known] at run time.
    let target = match (f, b) {
        (Some(f), None) => vec![f as i64, -1],
        (None, Some(b)) => vec![-1, b as i64],
        _ => {
            let s = c.add(Op::ShapeOf, &[x])?;
            let fs = c.add(Op::Slice { starts: vec![0], limits: vec![axis as usize], strides: vec![1] }, &[s])?;
            let fp = c.add(Op::Reduce { op: ReduceOp::Prod, axes: vec![0] }, &[fs])?;
            let fp = c.reshape(fp, vec![Dim::Fixed(1)])?;
            let m1 = c.constant(Literal::vec_i64(vec![-1]))?;
            let t = c.add(Op::Concat { axis: 0 }, &[fp, m1])?;
            return c.add(Op::DynReshape { zero_copies: false }, &[x, t]);
        }
    };
    let t = c.constant(Literal::vec_i64(target))?;
    c.add(Op::DynReshape { zero_copies: false }, &[x, t])
}

fn reshape(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let (x, s) = (c.input(n, 0)?, c.input(n, 1)?);
    let zero_copies = c.attrs(n).int_or("allowzero", 0) == 0;
    let Some(target) = c.const_i64s(s) else {
        return c.add(Op::DynReshape { zero_copies }, &[x, s]);
    };
    let xd = c.dims(x);
    let mut dims = Vec::with_capacity(target.len());
    for (i, &t) in target.iter().enumerate() {
        dims.push(match t {
            0 if zero_copies => xd
                .get(i)
                .cloned()
                .ok_or_else(|| c.err(format!("shape {target:?} copies dim {i} of a rank-{} input", xd.len())))?,
            t if t > 0 => Dim::Fixed(t as usize),
            _ => return c.add(Op::DynReshape { zero_copies }, &[x, s]),
        });
    }
    c.reshape(x, dims)
}

fn slice(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let x = c.input(n, 0)?;
    let r = c.rank(x);
    let (starts, ends, axes, steps) = if c.opset < 10 {
        let a = c.attrs(n);
        let starts = a.ints("starts").ok_or_else(|| c.err("missing `starts`"))?;
        let ends = a.ints("ends").ok_or_else(|| c.err("missing `ends`"))?;
        let axes = a.ints("axes");
        (Some(starts), Some(ends), axes, None)
    } else {
        let starts = c.input(n, 1).map(|s| c.const_i64s(s))?;
        let ends = c.input(n, 2).map(|s| c.const_i64s(s))?;
        let axes = c.opt_input(n, 3)?.map(|_| c.required_const_i64s(n, 3, "axes")).transpose()?;
        let steps = c.opt_input(n, 4)?.map(|_| c.required_const_i64s(n, 4, "steps")).transpose()?;
        (starts, ends, axes, steps)
    };
    let count = starts.as_ref().map(Vec::len).or(ends.as_ref().map(Vec::len)).or(axes.as_ref().map(Vec::len));
    let k = match count {
        Some(k) => k,
        None => match c.ty(c.input(n, 1)?).shape.0.first() {
            Some(Dim::Fixed(k)) => *k,
            _ => return Err(c.err("cannot tell how many axes are sliced")),
        },
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| c.axis(a, r)).collect::<LResult<_>>()?,
        None => (0..k).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    if axes.len() != k || steps.len() != k {
        return Err(c.err("starts, ends, axes and steps must have one entry per sliced axis"));
    }
    if steps.contains(&0) {
        return Err(c.err("slice step 0"));
    }
    match (starts, ends) {
        (Some(s), Some(e)) if s.len() == k && e.len() == k => c.onnx_slice(x, &axes, &s, &e, &steps),
        (Some(_), Some(_)) => Err(c.err("starts, ends, axes and steps must have one entry per sliced axis")),
        _ => {
            let (s, e) = (c.input(n, 1)?, c.input(n, 2)?);
            let (s, e) = (c.convert(s, DType::I64)?, c.convert(e, DType::I64)?);
            c.add(Op::DynSlice { axes, steps }, &[x, s, e])
        }
    }
}

fn split(c: &mut Ctx, n: &NodeProto) -> LResult<Vec<NodeId>> {
    let x = c.input(n, 0)?;
    let dims = c.dims(x);
    let axis = c.axis(c.attrs(n).int_or("axis", 0), dims.len())?;
    let outputs = n.output.len();
    let sizes: Vec<i64> = if c.opset < 13 {
        c.attrs(n).ints("split").unwrap_or_default()
    } else {
        match c.opt_input(n, 1)? {
            Some(_) => c.required_const_i64s(n, 1, "split")?,
            None => vec![],
        }
    };
    let sizes = if sizes.is_empty() {
        // num_outputs (opset 18) must name the outputs the node has.
        if let Some(k) = c.attrs(n).int("num_outputs").filter(|_| c.opset >= 18)
            && k != outputs as i64
        {
            return Err(c.err(format!("num_outputs is {k}, but the node has {outputs} outputs")));
        }
        let parts = outputs;
        let Dim::Fixed(d) = dims[axis] else {
            return Err(c.err(format!("splitting run-time dim {} into equal parts needs explicit sizes", dims[axis])));
        };
        let chunk = d.div_ceil(parts.max(1));
        (0..parts).map(|i| chunk.min(d.saturating_sub(i * chunk)) as i64).collect()
    } else {
        sizes
    };
    if sizes.len() != outputs {
        return Err(c.err(format!("{} split sizes for {outputs} outputs", sizes.len())));
    }
    if sizes.iter().any(|&s| s < 0) {
        return Err(c.err(format!("negative split sizes {sizes:?}")));
    }
    // In i128: sizes from the file may add up past i64.
    let total: i128 = sizes.iter().map(|&s| s as i128).sum();
    if let Dim::Fixed(d) = dims[axis]
        && total != d as i128
    {
        return Err(c.err(format!("split sizes {sizes:?} do not add up to dim {d}")));
    }
    if total > i64::MAX as i128 {
        return Err(c.err(format!("split sizes {sizes:?} add up past 2^63")));
    }
    let mut start = 0;
    let mut out = Vec::new();
    for &s in &sizes {
        out.push(c.onnx_slice(x, &[axis], &[start], &[start + s], &[1])?);
        start += s;
    }
    Ok(out)
}

fn expand(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let (x, s) = (c.input(n, 0)?, c.input(n, 1)?);
    let Some(target) = c.const_i64s(s) else {
        return c.add(Op::DynBroadcast, &[x, s]);
    };
    if target.iter().any(|&t| t < 0) {
        return Err(c.err(format!("expand to negative size {target:?}")));
    }
    let rank = target.len().max(c.rank(x));
    let x = c.lift_rank(x, rank)?;
    let xd = c.dims(x);
    let t: Vec<i64> = std::iter::repeat_n(1, rank - target.len()).chain(target.iter().copied()).collect();
    let mut out = Vec::with_capacity(rank);
    for (d, &t) in xd.iter().zip(&t) {
        out.push(match (d, t) {
            (_, 1) => d.clone(),
            (Dim::Fixed(1), t) => Dim::Fixed(t as usize),
            (Dim::Fixed(a), t) if *a == t as usize => d.clone(),
            (Dim::Fixed(a), t) => return Err(c.err(format!("cannot expand dim {a} to {t}"))),
            // A run-time dim against a size > 1: it must be that size or 1.
            (Dim::Sym(_), _) => return c.add(Op::DynBroadcast, &[x, s]),
        });
    }
    if out == xd {
        return Ok(x);
    }
    c.add(Op::Broadcast { shape: Shape(out), dims: (0..rank).collect() }, &[x])
}

fn constant_of_shape(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let s = c.input(n, 0)?;
    let value = match c.attrs(n).tensor("value") {
        None => Literal::scalar_f32(0.0),
        Some(t) => match proto::tensor_value(t, &c.external, true, &mut c.warnings)? {
            TensorValue::Literal(l) if l.num_elements() == 1 => Literal { shape: vec![], data: l.data },
            _ => return Err(c.err("value must hold one element")),
        },
    };
    c.add(Op::DynFill { value }, &[s])
}

fn range(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let v = [c.input(n, 0)?, c.input(n, 1)?, c.input(n, 2)?];
    let v: Vec<NodeId> = v.iter().map(|&x| c.reshape(x, vec![])).collect::<LResult<_>>()?;
    c.add(Op::DynRange, &v)
}

/// numpy `matmul`: 1-D operands are promoted, batch dims broadcast.
pub fn matmul(c: &mut Ctx, a: NodeId, b: NodeId) -> LResult<NodeId> {
    let (ra, rb) = (c.rank(a), c.rank(b));
    if ra == 0 || rb == 0 {
        return Err(c.err("MatMul of a scalar"));
    }
    let a2 = if ra == 1 { c.reshape(a, vec![Dim::Fixed(1), c.dims(a)[0].clone()])? } else { a };
    let b2 = if rb == 1 { c.reshape(b, vec![c.dims(b)[0].clone(), Dim::Fixed(1)])? } else { b };
    let (ra2, rb2) = (c.rank(a2), c.rank(b2));
    let y = if rb2 == 2 {
        // [.., m, k] x [k, n]: no batch dims needed.
        let dims = DotDims { lhs_contract: vec![ra2 - 1], rhs_contract: vec![0], ..Default::default() };
        c.add(Op::Dot { dims }, &[a2, b2])?
    } else {
        let batch = ra2.max(rb2) - 2;
        let (a3, b3) = (c.lift_rank(a2, batch + 2)?, c.lift_rank(b2, batch + 2)?);
        let (ad, bd) = (c.dims(a3), c.dims(b3));
        let mut bdims = Vec::with_capacity(batch);
        for i in 0..batch {
            bdims.push(match (&ad[i], &bd[i]) {
                (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d.clone(),
                (x, y) if x == y => x.clone(),
                (Dim::Fixed(x), Dim::Fixed(y)) => {
                    return Err(c.err(format!("batch dims {x} and {y} do not broadcast")));
                }
                (Dim::Fixed(_), _) => ad[i].clone(),
                _ => bd[i].clone(),
            });
        }
        let widen = |c: &mut Ctx, x: NodeId, d: &[Dim]| -> LResult<NodeId> {
            let mut out = bdims.clone();
            out.extend(d[batch..].iter().cloned());
            if out == d {
                return Ok(x);
            }
            c.add(Op::Broadcast { shape: Shape(out), dims: (0..d.len()).collect() }, &[x])
        };
        let a4 = widen(c, a3, &ad)?;
        let b4 = widen(c, b3, &bd)?;
        let dims = DotDims {
            lhs_batch: (0..batch).collect(),
            rhs_batch: (0..batch).collect(),
            lhs_contract: vec![batch + 1],
            rhs_contract: vec![batch],
        };
        c.add(Op::Dot { dims }, &[a4, b4])?
    };
    // Drop the dims that 1-D operands were promoted with.
    let mut dims = c.dims(y);
    if rb == 1 {
        dims.pop();
    }
    if ra == 1 {
        let at = dims.len() - if rb == 1 { 1 } else { 2 };
        dims.remove(at);
    }
    c.reshape(y, dims)
}

fn gemm(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let (a, b) = (c.input(n, 0)?, c.input(n, 1)?);
    let at = c.attrs(n);
    let (alpha, beta) = (at.float_or("alpha", 1.0), at.float_or("beta", 1.0));
    let (ta, tb) = (at.int_or("transA", 0) != 0, at.int_or("transB", 0) != 0);
    if c.rank(a) != 2 || c.rank(b) != 2 {
        return Err(c.err(format!("Gemm needs 2-D operands, got {} and {}", c.ty(a), c.ty(b))));
    }
    float_only(c, a)?;
    let dims = DotDims {
        lhs_contract: vec![if ta { 0 } else { 1 }],
        rhs_contract: vec![if tb { 1 } else { 0 }],
        ..Default::default()
    };
    // Dot puts the lhs free dim first and the rhs free dim last: [m, n].
    let mut y = c.add(Op::Dot { dims }, &[a, b])?;
    if alpha != 1.0 {
        let s = c.literal_f32(alpha)?;
        y = c.binary(BinaryOp::Mul, y, s)?;
    }
    if let Some(cc) = c.opt_input(n, 2)? {
        let mut cc = cc;
        if beta != 1.0 {
            let s = c.literal_f32(beta)?;
            cc = c.binary(BinaryOp::Mul, cc, s)?;
        }
        y = c.binary(BinaryOp::Add, y, cc)?;
    }
    Ok(y)
}

fn reduce(c: &mut Ctx, op: ReduceOp, x: NodeId, axes: &[usize], keep: bool) -> LResult<NodeId> {
    let r = c.add(Op::Reduce { op, axes: axes.to_vec() }, &[x])?;
    if !keep {
        return Ok(r);
    }
    let dims =
        c.dims(x).iter().enumerate().map(|(i, d)| if axes.contains(&i) { Dim::Fixed(1) } else { d.clone() }).collect();
    c.reshape(r, dims)
}

/// Number of elements over `axes` as an f32 scalar node.
fn count(c: &mut Ctx, x: NodeId, axes: &[usize], dt: DType) -> LResult<NodeId> {
    let dims = c.dims(x);
    if let Some(n) = axes.iter().map(|&a| dims[a].fixed()).product::<Option<usize>>() {
        return c.scalar(dt, n as f64);
    }
    let mut acc: Option<NodeId> = None;
    for &a in axes {
        let d = c.dim_size(x, a)?;
        acc = Some(match acc {
            None => d,
            Some(p) => c.add(Op::Binary { op: BinaryOp::Mul }, &[p, d])?,
        });
    }
    let n = acc.expect("at least one axis");
    c.convert(n, dt)
}

fn softmax(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let x = c.input(n, 0)?;
    float_only(c, x)?;
    let r = c.rank(x);
    // Before opset 13 the op normalises over all dims from `axis` on.
    let axes: Vec<usize> = if c.opset < 13 {
        let a = c.axis(c.attrs(n).int_or("axis", 1), r)?;
        (a..r).collect()
    } else {
        vec![c.axis(c.attrs(n).int_or("axis", -1), r)?]
    };
    let m = reduce(c, ReduceOp::Max, x, &axes, true)?;
    let shifted = c.binary(BinaryOp::Sub, x, m)?;
    let e = c.add(Op::Unary { op: UnaryOp::Exp }, &[shifted])?;
    let s = reduce(c, ReduceOp::Sum, e, &axes, true)?;
    c.binary(BinaryOp::Div, e, s)
}

fn layer_norm(c: &mut Ctx, n: &NodeProto) -> LResult<Vec<Option<NodeId>>> {
    let (x, scale) = (c.input(n, 0)?, c.input(n, 1)?);
    let dt = float_only(c, x)?;
    let r = c.rank(x);
    let axis = c.axis(c.attrs(n).int_or("axis", -1), r)?;
    let eps = c.attrs(n).float_or("epsilon", 1e-5);
    let axes: Vec<usize> = (axis..r).collect();
    let cnt = count(c, x, &axes, dt)?;
    let sum = reduce(c, ReduceOp::Sum, x, &axes, true)?;
    let mean = c.binary(BinaryOp::Div, sum, cnt)?;
    let d = c.binary(BinaryOp::Sub, x, mean)?;
    let sq = c.binary(BinaryOp::Mul, d, d)?;
    let ss = reduce(c, ReduceOp::Sum, sq, &axes, true)?;
    let var = c.binary(BinaryOp::Div, ss, cnt)?;
    let eps = c.scalar(dt, eps as f64)?;
    let ve = c.binary(BinaryOp::Add, var, eps)?;
    let inv = c.add(Op::Unary { op: UnaryOp::Rsqrt }, &[ve])?;
    let normed = c.binary(BinaryOp::Mul, d, inv)?;
    let mut y = c.binary(BinaryOp::Mul, normed, scale)?;
    if let Some(bias) = c.opt_input(n, 2)? {
        y = c.binary(BinaryOp::Add, y, bias)?;
    }
    Ok(vec![Some(y), Some(mean), Some(inv)])
}

fn reduce_mean(c: &mut Ctx, n: &NodeProto) -> LResult<NodeId> {
    let x = c.input(n, 0)?;
    let dt = float_only(c, x)?;
    let r = c.rank(x);
    let keep = c.attrs(n).int_or("keepdims", 1) != 0;
    let axes = axes_arg(c, n, 1, 18)?;
    let mut axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&a| c.axis(a, r)).collect::<LResult<_>>()?,
        _ if c.attrs(n).int_or("noop_with_empty_axes", 0) != 0 => return Ok(x),
        _ => (0..r).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    let s = reduce(c, ReduceOp::Sum, x, &axes, keep)?;
    let cnt = count(c, x, &axes, dt)?;
    c.binary(BinaryOp::Div, s, cnt)
}
