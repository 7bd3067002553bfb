//! Specialization: bind dims, fold, make shape ops static, simplify.
//!
//! One forward rewrite does it all, because an op's operands are rebuilt
//! before the op: parameters get their bound types; every node is re-added
//! (re-inferring its type); its old type is unified with the new one so
//! that symbols in later attributes (a reshape's target, say) are replaced
//! by what they turned out to be; nodes whose operands are all constants
//! are folded; shape-computing ops whose shape operands became constants
//! become static primitives; trivial ops (reshape to the same shape,
//! convert to the same type, ...) disappear.

use specc_ir::infer::{self, DimSource, Operand};
use specc_ir::semantics;
use specc_ir::{Dim, Graph, GraphBuilder, IrError, Literal, Node, NodeId, Op, Rewrite, Shape, TensorType, verify};
use std::collections::{BTreeMap, HashMap};

/// Constant results up to this many elements are folded into literals;
/// larger ones stay computed (HLO should not carry big literals).
pub const FOLD_LIMIT: usize = 4096;

/// Values for named symbolic dims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bindings(pub BTreeMap<String, usize>);

impl Bindings {
    pub fn new() -> Bindings {
        Bindings::default()
    }

    pub fn with(mut self, name: &str, value: usize) -> Bindings {
        self.0.insert(name.to_string(), value);
        self
    }

    /// Adds the dims among `known` whose names are formulas over bound dims
    /// (`past_sequence_length + sequence_length`); a formula dim bound by
    /// hand must agree with its formula.
    pub fn completed(&self, known: &[String]) -> Result<Bindings, OptError> {
        let mut out = self.clone();
        for k in known {
            if let Some(v) = crate::dim_expr::eval(k, &self.0) {
                let v = usize::try_from(v)
                    .map_err(|_| OptError::UnknownDim { name: k.clone(), known: format!("its formula gives {v}") })?;
                match self.0.get(k) {
                    Some(&given) if given != v => {
                        return Err(OptError::UnknownDim {
                            name: k.clone(),
                            known: format!("bound to {given}, but its formula gives {v}"),
                        });
                    }
                    _ => {
                        out.0.insert(k.clone(), v);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Binds every named dim of the graph inputs from concrete input shapes
    /// (inputs named as the graph's parameters).
    pub fn from_shapes(g: &Graph, shapes: &[(&str, &[usize])]) -> Result<Bindings, String> {
        let mut out = Bindings::new();
        for (name, shape) in shapes {
            let (_, p) = g.param_by_name(name).ok_or_else(|| format!("the graph has no input `{name}`"))?;
            let ty = g.ty(p);
            if ty.rank() != shape.len() {
                return Err(format!("input `{name}` has rank {}, got shape {shape:?}", ty.rank()));
            }
            for (d, &n) in ty.shape.0.iter().zip(shape.iter()) {
                if let Dim::Sym(s) = d {
                    if d.is_anonymous() {
                        continue;
                    }
                    if let Some(&m) = out.0.get(s)
                        && m != n
                    {
                        return Err(format!("dim `{s}` is {m} in one input but {n} in `{name}`"));
                    }
                    out.0.insert(s.clone(), n);
                }
            }
        }
        Ok(out)
    }

    /// Parses `name=value`.
    /// Parses repeated `--dim name=value` flags; a name given twice is refused.
    pub fn parse_flags(dims: &[String]) -> Result<Bindings, String> {
        let mut b = Bindings::new();
        for d in dims {
            let (n, v) = Bindings::parse_one(d)?;
            if b.0.insert(n.clone(), v).is_some() {
                return Err(format!("--dim {n} is given twice"));
            }
        }
        Ok(b)
    }

    pub fn parse_one(s: &str) -> Result<(String, usize), String> {
        let (n, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not name=value"))?;
        let v = v.trim().parse().map_err(|_| format!("`{s}`: {v:?} is not a non-negative integer"))?;
        Ok((n.trim().to_string(), v))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptError {
    #[error("unknown dim `{name}`; the model's symbolic dims are: {known}")]
    UnknownDim { name: String, known: String },
    #[error("the graph is not static after specialization: {detail}{hint}")]
    NotStatic { detail: String, hint: String },
    #[error("narrowing s64 to s32 at node `{node}` ({op}): {detail}")]
    Narrow { node: String, op: &'static str, detail: String },
    #[error("folding node `{node}` ({op}): {message}")]
    Fold { node: String, op: &'static str, message: String },
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// What specialization did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub shape_ops_before: usize,
    pub folded: usize,
    pub rounds: usize,
}

struct Scratch;
impl DimSource for Scratch {
    fn fresh(&mut self) -> Dim {
        Dim::Sym("?scratch".into())
    }
}

struct Specializer {
    /// Old symbol -> what it is in the new graph.
    subst: HashMap<String, Dim>,
    folded: usize,
    fold_error: Option<OptError>,
}

impl Specializer {
    fn dim(&self, d: &Dim) -> Dim {
        match d {
            Dim::Sym(s) => self.subst.get(s).cloned().unwrap_or_else(|| d.clone()),
            Dim::Fixed(_) => d.clone(),
        }
    }

    fn shape(&self, s: &Shape) -> Shape {
        Shape(s.0.iter().map(|d| self.dim(d)).collect())
    }

    /// The op with its shape attributes rewritten through `subst`.
    fn op(&self, op: &Op) -> Op {
        match op {
            Op::Reshape { shape } => Op::Reshape { shape: self.shape(shape) },
            Op::Broadcast { shape, dims } => Op::Broadcast { shape: self.shape(shape), dims: dims.clone() },
            Op::Iota { shape, axis, dtype } => Op::Iota { shape: self.shape(shape), axis: *axis, dtype: *dtype },
            other => other.clone(),
        }
    }

    /// Learns what the old type's symbols became.
    fn unify(&mut self, old: &TensorType, new: &TensorType) {
        for (o, n) in old.shape.0.iter().zip(&new.shape.0) {
            if let Dim::Sym(s) = o
                && o != n
            {
                self.subst.entry(s.clone()).or_insert_with(|| n.clone());
            }
        }
    }

    /// The node that replaces `op(operands)`, if a rule applies.
    fn rule(
        &mut self,
        b: &mut GraphBuilder,
        name: &str,
        op: &Op,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>, IrError> {
        let ty = |i: usize| b.ty(operands[i]).clone();
        let lit = |b: &GraphBuilder, i: usize| b.constant_value(operands[i]).cloned();
        match op {
            Op::ShapeOf => {
                if let Some(d) = ty(0).shape.as_fixed() {
                    let l = Literal::vec_i64(d.iter().map(|&v| v as i64).collect());
                    return b.constant(name, l).map(Some);
                }
            }
            Op::Reshape { shape } if ty(0).shape == *shape => return Ok(Some(operands[0])),
            Op::Convert { to } if ty(0).dtype == *to => return Ok(Some(operands[0])),
            Op::Transpose { perm } if perm.iter().enumerate().all(|(i, &p)| i == p) => {
                return Ok(Some(operands[0]));
            }
            Op::Broadcast { shape, dims } if ty(0).shape == *shape && dims.iter().enumerate().all(|(i, &d)| i == d) => {
                return Ok(Some(operands[0]));
            }
            // x^2 is x*x: exact, cheaper everywhere, and Neuron wants
            // constant integer exponents anyway.
            Op::Binary { op: specc_ir::BinaryOp::Pow }
                if lit(b, 1).is_some_and(|l| l.is_splat_of(2.0)) && fits_within(&ty(1).shape, &ty(0).shape) =>
            {
                return b.add(name, Op::Binary { op: specc_ir::BinaryOp::Mul }, &[operands[0], operands[0]]).map(Some);
            }
            Op::Slice { starts, limits, strides } => {
                if let Some(s) = ty(0).shape.as_fixed() {
                    let sl = semantics::StaticSlice {
                        starts: starts.clone(),
                        limits: limits.clone(),
                        strides: strides.clone(),
                        reverse: vec![],
                    };
                    if sl.is_identity(&s) {
                        return Ok(Some(operands[0]));
                    }
                }
            }
            _ => {}
        }
        // Fold: every operand a literal, the result small.
        // An all-reduce over ranks sums what the other ranks hold: not a
        // function of this graph's constants alone.
        if !matches!(op, Op::Parameter { .. } | Op::Weight { .. } | Op::Constant { .. } | Op::AllReduce { .. })
            && operands.iter().all(|&o| b.constant_value(o).is_some())
        {
            let ops: Vec<Operand> =
                operands.iter().map(|&o| Operand { ty: b.ty(o), value: b.constant_value(o) }).collect();
            if let Ok(t) = infer::infer(op, &ops, &mut Scratch)
                && t.shape.num_elements().is_some_and(|n| n <= FOLD_LIMIT || matches!(op, Op::DynRange))
            {
                let args: Vec<&Literal> = operands.iter().map(|&o| b.constant_value(o).expect("checked")).collect();
                match specc_interp::fold(op, &args) {
                    Ok(l) => {
                        self.folded += 1;
                        return b.constant(name, l).map(Some);
                    }
                    Err(message) => {
                        self.fold_error.get_or_insert(OptError::Fold { node: name.into(), op: op.name(), message });
                        return Ok(None);
                    }
                }
            }
        }
        // Shape-computing ops whose shape operands are now constants.
        match op {
            Op::DynReshape { zero_copies } => {
                if let (Some(target), Some(input)) = (lit(b, 1).and_then(|l| l.to_i64_vec()), ty(0).shape.as_fixed())
                    && let Ok(d) = semantics::reshape_dims(&input, &target, *zero_copies)
                {
                    return b.add(name, Op::Reshape { shape: Shape::fixed(&d) }, &operands[..1]).map(Some);
                }
            }
            Op::DynBroadcast => {
                if let (Some(target), Some(input)) = (lit(b, 1).and_then(|l| l.to_i64_vec()), ty(0).shape.as_fixed()) {
                    let target: Option<Vec<usize>> = target.iter().map(|&v| usize::try_from(v).ok()).collect();
                    if let Some(out) = target.and_then(|t| semantics::broadcast_shapes(&input, &t).ok()) {
                        let lift = out.len() - input.len();
                        let dims = (lift..out.len()).collect();
                        return b
                            .add(name, Op::Broadcast { shape: Shape::fixed(&out), dims }, &operands[..1])
                            .map(Some);
                    }
                }
            }
            Op::DynFill { value } => {
                if let Some(target) = lit(b, 0).and_then(|l| l.to_i64_vec())
                    && let Some(out) = target.iter().map(|&v| usize::try_from(v).ok()).collect::<Option<Vec<_>>>()
                {
                    let v = b.constant(format!("{name}#value"), value.clone())?;
                    return b.add(name, Op::Broadcast { shape: Shape::fixed(&out), dims: vec![] }, &[v]).map(Some);
                }
            }
            Op::DynSlice { axes, steps } => {
                let (s, e) = (lit(b, 1).and_then(|l| l.to_i64_vec()), lit(b, 2).and_then(|l| l.to_i64_vec()));
                if let (Some(s), Some(e), Some(shape)) = (s, e, ty(0).shape.as_fixed())
                    && let Ok(sl) = semantics::onnx_slice_static(&shape, axes, &s, &e, steps)
                {
                    if sl.is_identity(&shape) {
                        return Ok(Some(operands[0]));
                    }
                    let rev = sl.reverse.clone();
                    let y = b.add(
                        name,
                        Op::Slice { starts: sl.starts, limits: sl.limits, strides: sl.strides },
                        &operands[..1],
                    )?;
                    if rev.is_empty() {
                        return Ok(Some(y));
                    }
                    return b.add(format!("{name}#reverse"), Op::Reverse { axes: rev }, &[y]).map(Some);
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

impl Rewrite for Specializer {
    fn param_type(&mut self, _index: usize, old: &Node) -> Result<TensorType, IrError> {
        Ok(TensorType::new(old.ty.dtype, self.shape(&old.ty.shape)))
    }

    fn node(&mut self, b: &mut GraphBuilder, old: &Node, operands: &[NodeId]) -> Result<NodeId, IrError> {
        let op = self.op(&old.op);
        let id = match self.rule(b, &old.name, &op, operands)? {
            Some(id) => id,
            None => b.add(old.name.clone(), op, operands)?,
        };
        let new_ty = b.ty(id).clone();
        self.unify(&old.ty, &new_ty);
        Ok(id)
    }
}

/// Whether broadcasting `small` against `big` (equal rank) leaves `big`'s
/// shape unchanged.
fn fits_within(small: &Shape, big: &Shape) -> bool {
    small.rank() == big.rank() && small.0.iter().zip(&big.0).all(|(s, b)| s == b || *s == Dim::Fixed(1))
}

/// One forward folding rewrite with `bindings`, then dead-code removal.
pub fn fold(g: &Graph, bindings: &Bindings) -> Result<(Graph, usize), OptError> {
    let subst = bindings.0.iter().map(|(k, &v)| (k.clone(), Dim::Fixed(v))).collect();
    let mut s = Specializer { subst, folded: 0, fold_error: None };
    let out = g.rewrite(&mut s)?;
    if let Some(e) = s.fold_error {
        return Err(e);
    }
    Ok((out.without_dead_nodes(), s.folded))
}

fn shape_ops(g: &Graph) -> usize {
    g.nodes().iter().filter(|n| n.op.is_shape_computing()).count()
}

/// Binds `bindings`, then folds, simplifies, removes dead code and merges
/// common subexpressions to a fixpoint. The result is static, or an error
/// says which node is not and which dims are unbound.
pub fn specialize(g: &Graph, bindings: &Bindings) -> Result<(Graph, Report), OptError> {
    let known = g.input_symbols();
    let bindings = &bindings.completed(&known)?;
    for name in bindings.0.keys() {
        if !known.contains(name) {
            let known = if known.is_empty() { "(none: the model is static)".to_string() } else { known.join(", ") };
            return Err(OptError::UnknownDim { name: name.clone(), known });
        }
    }
    let mut report = Report { nodes_before: g.len(), shape_ops_before: shape_ops(g), ..Report::default() };
    let mut cur = g.clone();
    let none = Bindings::default();
    loop {
        report.rounds += 1;
        let (folded, n) = fold(&cur, if report.rounds == 1 { bindings } else { &none })?;
        report.folded += n;
        let next = crate::cse(&folded)?;
        let done = next.len() == cur.len() && n == 0;
        cur = next;
        if done || report.rounds >= 16 {
            break;
        }
    }
    if let Err(e) = verify::verify_static(&cur) {
        let unbound: Vec<String> = known.iter().filter(|k| !bindings.0.contains_key(*k)).cloned().collect();
        let hint = if unbound.is_empty() {
            String::new()
        } else {
            format!(" (unbound dims: {}; bind them with --dim name=value)", unbound.join(", "))
        };
        return Err(OptError::NotStatic { detail: e.to_string(), hint });
    }
    report.nodes_after = cur.len();
    Ok((cur, report))
}

struct Freeze<'a> {
    /// New parameter id -> its fixed value.
    values: HashMap<NodeId, &'a Literal>,
    made: HashMap<NodeId, NodeId>,
    names: &'a [(&'a str, Literal)],
}

impl Rewrite for Freeze<'_> {
    fn node(&mut self, b: &mut GraphBuilder, old: &Node, operands: &[NodeId]) -> Result<NodeId, IrError> {
        if self.values.is_empty() {
            for (name, lit) in self.names {
                if let Some((_, id)) = b.graph().param_by_name(name) {
                    self.values.insert(id, lit);
                }
            }
        }
        let mut ops = operands.to_vec();
        for o in ops.iter_mut() {
            if let Some(lit) = self.values.get(o) {
                let c = match self.made.get(o) {
                    Some(&c) => c,
                    None => {
                        let c = b.constant(format!("{}#frozen", b.graph().node(*o).name), (*lit).clone())?;
                        self.made.insert(*o, c);
                        c
                    }
                };
                *o = c;
            }
        }
        b.add(old.name.clone(), old.op.clone(), &ops)
    }
}

/// Replaces every use of the named inputs by their given values (the inputs
/// stay in the interface, unused), so that shapes given as data can fold.
pub fn freeze_inputs(g: &Graph, values: &[(&str, Literal)]) -> Result<Graph, OptError> {
    for (name, lit) in values {
        let (_, p) = g
            .param_by_name(name)
            .ok_or_else(|| OptError::UnknownDim { name: name.to_string(), known: "(no such input)".into() })?;
        if g.ty(p).dtype != lit.dtype() || g.ty(p).rank() != lit.shape.len() {
            return Err(OptError::Fold {
                node: name.to_string(),
                op: "parameter",
                message: format!("value {} does not fit {}", lit.ty(), g.ty(p)),
            });
        }
    }
    let mut f = Freeze { values: HashMap::new(), made: HashMap::new(), names: values };
    Ok(g.rewrite(&mut f)?)
}
