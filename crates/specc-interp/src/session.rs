//! Executing a graph: weights are uploaded once per [`Session`], then each
//! run walks the nodes in order.
//!
//! Symbolic dims are bound at run time: the inputs bind the named dims, and
//! every value a node produces binds (or is checked against) the symbols in
//! its recorded type. A value whose size contradicts an earlier binding is an
//! error, so a wrong shape inference cannot pass silently.

use crate::kernels as k;
use crate::value::Value;
use burn_backend::Backend;
use specc_ir::infer::{self, DimSource, Operand};
use specc_ir::{DType, Dim, Graph, Literal, Op, Shape, TensorType, WeightStore, limits, semantics};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("missing required input `{name}` ({ty})")]
    MissingInput { name: String, ty: TensorType },
    #[error("unknown input `{name}`; the graph's inputs are: {known}")]
    UnknownInput { name: String, known: String },
    #[error("input `{name}`: expected {expected}, got {got_dtype}{got_shape:?}")]
    InputType { name: String, expected: TensorType, got_dtype: DType, got_shape: Vec<usize> },
    #[error("expected {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
    #[error("dim `{dim}` is {first} (bound by `{first_at}`) but {second} at `{second_at}`")]
    DimMismatch { dim: String, first: usize, first_at: String, second: usize, second_at: String },
    #[error("weight `{name}`: {message}")]
    Weight { name: String, message: String },
    #[error("node `{node}` ({op}): {message}")]
    Kernel { node: String, op: &'static str, message: String },
}

/// Symbol bindings of one run, remembering who bound each.
#[derive(Default)]
struct Env {
    dims: HashMap<String, (usize, String)>,
}

impl Env {
    fn bind(&mut self, ty: &Shape, actual: &[usize], at: &str) -> Result<(), InterpError> {
        for (d, &n) in ty.0.iter().zip(actual) {
            match d {
                Dim::Fixed(f) if *f != n => {
                    return Err(InterpError::DimMismatch {
                        dim: f.to_string(),
                        first: *f,
                        first_at: "its type".into(),
                        second: n,
                        second_at: at.into(),
                    });
                }
                Dim::Fixed(_) => {}
                Dim::Sym(s) => match self.dims.get(s) {
                    Some((m, first_at)) if *m != n => {
                        return Err(InterpError::DimMismatch {
                            dim: s.clone(),
                            first: *m,
                            first_at: first_at.clone(),
                            second: n,
                            second_at: at.into(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        self.dims.insert(s.clone(), (n, at.to_string()));
                    }
                },
            }
        }
        Ok(())
    }

    fn resolve(&self, d: &Dim) -> Option<usize> {
        match d {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(s) => self.dims.get(s).map(|(n, _)| *n),
        }
    }

    /// Resolves a shape attribute; for a reshape, one unknown dim may be
    /// inferred from the element count.
    fn shape(&self, s: &Shape, reshape_of: Option<usize>) -> Result<Vec<usize>, String> {
        let dims: Vec<Option<usize>> = s.0.iter().map(|d| self.resolve(d)).collect();
        let unknown: Vec<usize> = (0..dims.len()).filter(|&i| dims[i].is_none()).collect();
        match (unknown.as_slice(), reshape_of) {
            ([], _) => Ok(dims.into_iter().map(Option::unwrap).collect()),
            ([i], Some(total)) => {
                let known: usize = dims.iter().flatten().product();
                if known == 0 || total % known != 0 {
                    return Err(format!("cannot infer {} in reshape of {total} elements to {s}", s.0[*i]));
                }
                let mut out: Vec<usize> = dims.iter().map(|d| d.unwrap_or(1)).collect();
                out[*i] = total / known;
                Ok(out)
            }
            _ => Err(format!("dims of {s} are not bound at run time")),
        }
    }
}

/// Time spent per op name: (node count, total time).
#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub by_op: std::collections::BTreeMap<&'static str, (usize, std::time::Duration)>,
}

/// burn-ndarray's highest rank.
pub const MAX_RANK: usize = 6;

pub struct Session<B: Backend> {
    graph: Graph,
    device: B::Device,
    weights: Vec<Value<B>>,
    /// For each node, the last node that reads it (values are dropped then).
    last_use: Vec<usize>,
    /// The tensor-parallel group this session is one rank of, and its rank.
    rank: Option<(std::sync::Arc<crate::RankGroup>, usize)>,
}

impl<B: Backend> Session<B> {
    /// Uploads the graph's weights from `store`.
    pub fn new(graph: Graph, store: &WeightStore, device: B::Device) -> Result<Session<B>, InterpError> {
        let mut weights = Vec::with_capacity(graph.weights().len());
        for w in graph.weights() {
            let err = |message: String| InterpError::Weight { name: w.name.clone(), message };
            let entry = store.get(&w.name).ok_or_else(|| err("no data for it in the weight store".into()))?;
            if entry.ty != w.ty {
                return Err(err(format!("the graph declares {} but the data is {}", w.ty, entry.ty)));
            }
            let bytes = entry.bytes.read().map_err(|e| err(format!("cannot read its data: {e}")))?;
            let dims = w.ty.shape.as_fixed().expect("weights are static");
            weights.push(Value::from_le_bytes(w.ty.dtype, &dims, &bytes, &device));
        }
        let last_use = Self::last_uses(&graph);
        Ok(Session { graph, device, weights, last_use, rank: None })
    }

    /// This session as rank `rank` of `group`: its all-reduce nodes meet the
    /// other ranks' (each rank runs on its own thread).
    pub fn as_rank(mut self, group: std::sync::Arc<crate::RankGroup>, rank: usize) -> Session<B> {
        self.set_rank(group, rank);
        self
    }

    /// Moves this session into `group` as rank `rank` (a group that a
    /// failing rank poisoned is replaced this way).
    pub fn set_rank(&mut self, group: std::sync::Arc<crate::RankGroup>, rank: usize) {
        self.rank = Some((group, rank));
    }

    /// A session over weights already uploaded (shared by several graphs of
    /// one model): `weights[i]` is the value of the graph's weight `i`.
    pub fn with_weights(graph: Graph, weights: Vec<Value<B>>, device: B::Device) -> Result<Session<B>, InterpError> {
        for (w, v) in graph.weights().iter().zip(&weights) {
            let dims = w.ty.shape.as_fixed().expect("weights are static");
            if v.dtype() != w.ty.dtype || v.shape() != dims {
                return Err(InterpError::Weight {
                    name: w.name.clone(),
                    message: format!("the graph declares {} but the value is {}{:?}", w.ty, v.dtype(), v.shape()),
                });
            }
        }
        if weights.len() != graph.weights().len() {
            return Err(InterpError::Weight {
                name: graph.name().into(),
                message: format!("{} weight values for {} weights", weights.len(), graph.weights().len()),
            });
        }
        let last_use = Self::last_uses(&graph);
        Ok(Session { graph, device, weights, last_use, rank: None })
    }

    fn last_uses(graph: &Graph) -> Vec<usize> {
        let mut last_use: Vec<usize> = (0..graph.len()).collect();
        for (i, n) in graph.nodes().iter().enumerate() {
            for o in &n.operands {
                last_use[o.index()] = i;
            }
        }
        for o in graph.outputs() {
            last_use[o.node.index()] = usize::MAX;
        }
        last_use
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Runs with host inputs named as the graph's parameters; returns the
    /// outputs in order, with their names.
    pub fn run_named(&self, inputs: &[(&str, &Literal)]) -> Result<Vec<(String, Literal)>, InterpError> {
        let mut by_param: Vec<Option<Value<B>>> = vec![None; self.graph.params().len()];
        for (name, lit) in inputs {
            let Some((i, _)) = self.graph.param_by_name(name) else {
                let known: Vec<&str> = self.graph.params().iter().map(|p| self.graph.node(*p).name.as_str()).collect();
                return Err(InterpError::UnknownInput { name: name.to_string(), known: known.join(", ") });
            };
            by_param[i] = Some(Value::from_literal(lit, &self.device));
        }
        let mut values = Vec::with_capacity(by_param.len());
        for (i, v) in by_param.into_iter().enumerate() {
            let node = self.graph.node(self.graph.params()[i]);
            values.push(v.ok_or_else(|| InterpError::MissingInput { name: node.name.clone(), ty: node.ty.clone() })?);
        }
        let outs = self.run(values)?;
        Ok(self.graph.outputs().iter().zip(outs).map(|(o, v)| (o.name.clone(), v.to_literal())).collect())
    }

    /// Runs with device values in parameter order; returns the outputs in
    /// order.
    pub fn run(&self, inputs: Vec<Value<B>>) -> Result<Vec<Value<B>>, InterpError> {
        self.run_profiled(inputs, None)
    }

    /// [`Session::run`], adding each node's wall time to `profile` (by op
    /// name) when given.
    pub fn run_profiled(
        &self,
        inputs: Vec<Value<B>>,
        mut profile: Option<&mut Profile>,
    ) -> Result<Vec<Value<B>>, InterpError> {
        let g = &self.graph;
        if inputs.len() != g.params().len() {
            return Err(InterpError::InputCount { expected: g.params().len(), got: inputs.len() });
        }
        let mut env = Env::default();
        let mut slots: Vec<Option<Value<B>>> = vec![None; g.len()];
        for (i, v) in inputs.into_iter().enumerate() {
            let node = g.node(g.params()[i]);
            let shape = v.shape();
            if v.dtype() != node.ty.dtype || shape.len() != node.ty.rank() {
                return Err(InterpError::InputType {
                    name: node.name.clone(),
                    expected: node.ty.clone(),
                    got_dtype: v.dtype(),
                    got_shape: shape,
                });
            }
            env.bind(&node.ty.shape, &shape, &node.name)?;
            slots[g.params()[i].index()] = Some(v);
        }
        for (i, node) in g.nodes().iter().enumerate() {
            if let Op::Parameter { .. } = node.op {
                continue;
            }
            let kernel_err =
                |message: String| InterpError::Kernel { node: node.name.clone(), op: node.op.name(), message };
            if node.ty.rank() > MAX_RANK {
                return Err(kernel_err(format!(
                    "rank {} is beyond the interpreter's limit of {MAX_RANK}",
                    node.ty.rank()
                )));
            }
            let args: Vec<Value<B>> = node
                .operands
                .iter()
                .map(|o| slots[o.index()].clone().expect("operands are computed before users"))
                .collect();
            if !node.ty.shape.is_static() {
                // A symbolic type was checked only in its static part: the
                // size this run gives it is checked before the kernel runs.
                run_time_type(&node.op, &args).map_err(kernel_err)?;
            }
            let started = profile.is_some().then(std::time::Instant::now);
            let mut v = match &node.op {
                Op::AllReduce { ranks } => self.all_reduce(*ranks, args).map_err(kernel_err)?,
                op => eval(op, args, &env, &self.device, &self.weights).map_err(kernel_err)?,
            };
            if node.ty.dtype == DType::BF16 {
                // bf16 arithmetic is f32 arithmetic rounded to bf16 (as XLA does it).
                v = k::to_bf16(v);
            }
            if let (Some(p), Some(t)) = (profile.as_deref_mut(), started) {
                let e = p.by_op.entry(node.op.name()).or_default();
                e.0 += 1;
                e.1 += t.elapsed();
            }
            let shape = v.shape();
            if v.dtype() != node.ty.dtype || shape.len() != node.ty.rank() {
                return Err(kernel_err(format!("produced {}{:?}, its type says {}", v.dtype(), shape, node.ty)));
            }
            env.bind(&node.ty.shape, &shape, &node.name)?;
            slots[i] = Some(v);
            for o in &node.operands {
                if self.last_use[o.index()] == i {
                    slots[o.index()] = None;
                }
            }
        }
        Ok(g.outputs().iter().map(|o| slots[o.node.index()].clone().expect("outputs are kept")).collect())
    }
}

impl<B: Backend> Session<B> {
    /// The sum over the ranks of this session's group (the value itself
    /// for a one-rank all-reduce).
    fn all_reduce(&self, ranks: usize, mut args: Vec<Value<B>>) -> Result<Value<B>, String> {
        let x = args.pop().ok_or("all-reduce without operand")?;
        if ranks == 1 {
            return Ok(x);
        }
        let Some((group, rank)) = &self.rank else {
            return Err(format!("an all-reduce over {ranks} ranks needs its ranks: run the graph as a rank group"));
        };
        if group.ranks() != ranks {
            return Err(format!("an all-reduce over {ranks} ranks in a group of {}", group.ranks()));
        }
        let sum = group.all_reduce(*rank, &x.to_literal());
        match sum {
            Ok(l) => Ok(Value::from_literal(&l, &self.device)),
            Err(e) => Err(e),
        }
    }
}

/// Folds one op whose operands are all literals (specialization's constant
/// folding), with the interpreter's own kernels on the CPU backend. The
/// result's type is inferred (and size-checked) first, so folding never
/// hands a kernel a shape it cannot hold.
pub fn fold(op: &Op, args: &[&Literal]) -> Result<Literal, String> {
    if matches!(op, Op::Parameter { .. } | Op::Weight { .. }) {
        return Err(format!("cannot fold {}", op.name()));
    }
    let types: Vec<TensorType> = args.iter().map(|l| l.ty()).collect();
    let operands: Vec<Operand> = types.iter().zip(args).map(|(ty, l)| Operand { ty, value: Some(*l) }).collect();
    let ty = infer::infer(op, &operands, &mut Unbound).map_err(|e| e.0)?;
    if let Some(r) = types.iter().chain([&ty]).map(TensorType::rank).find(|&r| r > MAX_RANK) {
        return Err(format!("rank {r} is beyond the interpreter's limit of {MAX_RANK}"));
    }
    let device = crate::cpu_device();
    let values: Vec<Value<crate::Cpu>> = args.iter().map(|l| Value::from_literal(l, &device)).collect();
    eval(op, values, &Env::default(), &device, &[]).map(|v| v.to_literal())
}

/// Anonymous dims for run-time inference (their names never matter: the
/// result is only checked for size).
struct Unbound;
impl DimSource for Unbound {
    fn fresh(&mut self) -> Dim {
        Dim::Sym("?run".into())
    }
}

/// The type `op` gives these run-time values, checked against the size
/// limit (`specc_ir::limits`) before its kernel allocates anything. Shape
/// operands (small integer tensors) are read so that shape-computing ops
/// get their exact result shape.
fn run_time_type<B: Backend>(op: &Op, args: &[Value<B>]) -> Result<TensorType, String> {
    let types: Vec<TensorType> = args.iter().map(|v| TensorType::fixed(v.dtype(), &v.shape())).collect();
    // The operands whose values decide a shape-computing op's result shape.
    let shape_operand = |i: usize| match op {
        Op::DynReshape { .. } | Op::DynBroadcast => i == 1,
        Op::DynSlice { .. } => i >= 1,
        Op::DynFill { .. } | Op::DynRange => true,
        _ => false,
    };
    let values: Vec<Option<Literal>> =
        args.iter().enumerate().map(|(i, v)| shape_operand(i).then(|| v.to_literal())).collect();
    let operands: Vec<Operand> =
        types.iter().zip(&values).map(|(ty, value)| Operand { ty, value: value.as_ref() }).collect();
    infer::infer(op, &operands, &mut Unbound).map_err(|e| e.0)
}

fn eval<B: Backend>(
    op: &Op,
    mut a: Vec<Value<B>>,
    env: &Env,
    device: &B::Device,
    weights: &[Value<B>],
) -> Result<Value<B>, String> {
    let host_i64 = |v: &Value<B>| v.to_i64_vec();
    Ok(match op {
        Op::Parameter { .. } => unreachable!("parameters are bound before the walk"),
        Op::Weight { index } => weights[*index].clone(),
        Op::Constant { value } => Value::from_literal(value, device),
        Op::Unary { op } => k::unary(*op, a.remove(0))?,
        Op::Binary { op } => {
            let b = a.pop().expect("two operands");
            k::binary(*op, a.pop().expect("two operands"), b)?
        }
        Op::Compare { dir } => {
            let b = a.pop().expect("two operands");
            k::compare(*dir, a.pop().expect("two operands"), b)?
        }
        Op::Select => {
            let f = a.pop().expect("three operands");
            let t = a.pop().expect("three operands");
            k::select(a.pop().expect("three operands"), t, f)?
        }
        Op::Convert { to } => k::convert(a.remove(0), *to),
        Op::Dot { dims } => {
            let r = a.pop().expect("two operands");
            k::dot(a.pop().expect("two operands"), r, dims)?
        }
        Op::Reduce { op, axes } => k::reduce(*op, a.remove(0), axes)?,
        Op::Broadcast { shape, dims } => {
            let out = env.shape(shape, None)?;
            limits::check_dims(a[0].dtype(), &out, || format!("the broadcast to {out:?}"))
                .map_err(|e| e.to_string())?;
            k::broadcast_in_dim(a.remove(0), &out, dims)
        }
        Op::Reshape { shape } => {
            let n = a[0].num_elements();
            let out = env.shape(shape, Some(n))?;
            if out.iter().product::<usize>() != n {
                return Err(format!("cannot reshape {:?} to {out:?}", a[0].shape()));
            }
            k::reshape(a.remove(0), &out)
        }
        Op::Transpose { perm } => k::transpose(a.remove(0), perm),
        Op::Reverse { axes } => k::reverse(a.remove(0), axes),
        Op::Slice { starts, limits, strides } => {
            let shape = a[0].shape();
            if let Some(i) = (0..shape.len()).find(|&i| limits[i] > shape[i]) {
                return Err(format!("slice limit {} > dim {i} of size {}", limits[i], shape[i]));
            }
            k::slice(a.remove(0), starts, limits, strides)
        }
        Op::Concat { axis } => k::concat(a, *axis),
        Op::Pad { low, high } => {
            let v = a.pop().expect("two operands");
            k::pad(a.pop().expect("two operands"), v, low, high)
        }
        Op::Iota { shape, axis, dtype } => {
            let out = env.shape(shape, None)?;
            limits::check_dims(*dtype, &out, || format!("the iota of shape {out:?}")).map_err(|e| e.to_string())?;
            k::iota(&out, *axis, *dtype, device)
        }
        Op::Gather { axis } => {
            let idx = a.pop().expect("two operands");
            k::gather(a.pop().expect("two operands"), idx, *axis)?
        }
        Op::DynamicSlice { sizes } => {
            let x = a.remove(0);
            k::dynamic_slice(x, &a, sizes)?
        }
        Op::DynamicUpdateSlice => {
            let x = a.remove(0);
            let u = a.remove(0);
            k::dynamic_update_slice(x, u, &a)?
        }
        // A rank group's sum is computed by `Session::all_reduce`; alone, a
        // one-rank all-reduce is its operand.
        Op::AllReduce { ranks: 1 } => a.remove(0),
        Op::AllReduce { ranks } => return Err(format!("an all-reduce over {ranks} ranks needs its ranks")),
        Op::ShapeOf => {
            let s: Vec<i64> = a[0].shape().iter().map(|&d| d as i64).collect();
            Value::from_literal(&Literal::vec_i64(s), device)
        }
        Op::DynReshape { zero_copies } => {
            let target = host_i64(&a[1]);
            let out = semantics::reshape_dims(&a[0].shape(), &target, *zero_copies).map_err(|e| e.0)?;
            k::reshape(a.remove(0), &out)
        }
        Op::DynBroadcast => {
            let target: Vec<usize> = host_i64(&a[1])
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| format!("expand to negative size {d}")))
                .collect::<Result<_, _>>()?;
            let x = a.remove(0);
            let out = semantics::broadcast_shapes(&x.shape(), &target).map_err(|e| e.0)?;
            let mut lifted = vec![1; out.len() - x.shape().len()];
            lifted.extend(x.shape());
            k::expand(k::reshape(x, &lifted), &out)
        }
        Op::DynRange => {
            let v: Vec<Literal> = a.iter().map(Value::to_literal).collect();
            let (s, l, d) = (v[0].to_f64_vec()[0], v[1].to_f64_vec()[0], v[2].to_f64_vec()[0]);
            let n = semantics::range_len(s, l, d).map_err(|e| e.0)?;
            let data = match a[0].dtype() {
                DType::F32 => {
                    let (s, d) = (s as f32, d as f32);
                    specc_ir::LiteralData::F32((0..n).map(|i| s + i as f32 * d).collect())
                }
                DType::I32 => {
                    specc_ir::LiteralData::I32((0..n).map(|i| (s as i64 + i as i64 * d as i64) as i32).collect())
                }
                DType::I64 => specc_ir::LiteralData::I64((0..n).map(|i| s as i64 + i as i64 * d as i64).collect()),
                DType::BF16 => specc_ir::LiteralData::BF16(
                    (0..n).map(|i| specc_ir::bf16_from_f32(s as f32 + i as f32 * d as f32)).collect(),
                ),
                DType::Bool => return Err("range of pred".into()),
            };
            Value::from_literal(&Literal { shape: vec![n], data }, device)
        }
        Op::DynFill { value } => {
            let dims: Vec<usize> = host_i64(&a[0])
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| format!("fill with negative size {d}")))
                .collect::<Result<_, _>>()?;
            let scalar = Value::from_literal(value, device);
            k::expand(k::reshape(scalar, &vec![1; dims.len()]), &dims)
        }
        Op::DynSlice { axes, steps } => {
            let (starts, ends) = (host_i64(&a[1]), host_i64(&a[2]));
            let x = a.remove(0);
            let sl = semantics::onnx_slice_static(&x.shape(), axes, &starts, &ends, steps).map_err(|e| e.0)?;
            k::reverse(k::slice(x, &sl.starts, &sl.limits, &sl.strides), &sl.reverse)
        }
    })
}

/// Index of a node's value in a run's results, for callers that keep values.
pub fn output_index(g: &Graph, name: &str) -> Option<usize> {
    g.outputs().iter().position(|o| o.name == name)
}
