//! The interpreter implements the IR semantics written in `specc_ir::op`
//! where ONNX, burn and XLA differ. The expected values are XLA's documented
//! results (integer division by zero gives -1, float-to-int conversion
//! saturates, max/min propagate NaN) and the IR's rule that out-of-range
//! indices are an error.

use specc_interp::{Cpu, InterpError, NdArray, Session, cpu_device};
use specc_ir::*;

fn lit_i32(v: &[i32]) -> Literal {
    Literal::new(vec![v.len()], LiteralData::I32(v.to_vec())).unwrap()
}
fn lit_i64(v: &[i64]) -> Literal {
    Literal::new(vec![v.len()], LiteralData::I64(v.to_vec())).unwrap()
}
fn lit_f32(v: &[f32]) -> Literal {
    Literal::new(vec![v.len()], LiteralData::F32(v.to_vec())).unwrap()
}

/// Runs `op` on literal operands (as graph inputs, so nothing folds).
fn run(op: Op, args: &[Literal]) -> Result<Literal, InterpError> {
    let mut b = GraphBuilder::new("t");
    let ps: Vec<NodeId> = args.iter().enumerate().map(|(i, a)| b.parameter(format!("p{i}"), a.ty()).unwrap()).collect();
    let y = b.add("the_node", op, &ps).unwrap();
    b.output("y", y).unwrap();
    let g = b.finish().unwrap();
    let names: Vec<String> = (0..args.len()).map(|i| format!("p{i}")).collect();
    let named: Vec<(&str, &Literal)> = names.iter().map(String::as_str).zip(args).collect();
    let flex = Session::<Cpu>::new(g.clone(), &WeightStore::new(), cpu_device()).unwrap().run_named(&named);
    let nd = Session::<NdArray>::new(g, &WeightStore::new(), Default::default()).unwrap().run_named(&named);
    // Both CPU backends must agree exactly, errors included.
    match (&flex, &nd) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "flex and ndarray differ"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("flex {flex:?} vs ndarray {nd:?}"),
    }
    Ok(flex?.remove(0).1)
}

#[test]
fn integer_division_truncates_and_defines_the_edge_cases() {
    let q = run(
        Op::Binary { op: BinaryOp::Div },
        &[lit_i32(&[7, -7, 7, -7, 5, i32::MIN]), lit_i32(&[2, 2, -2, -2, 0, -1])],
    )
    .unwrap();
    assert_eq!(q, lit_i32(&[3, -3, -3, 3, -1, i32::MIN]));
    let r = run(Op::Binary { op: BinaryOp::Rem }, &[lit_i64(&[7, -7, 7, 5, i64::MIN]), lit_i64(&[2, 2, -2, 0, -1])])
        .unwrap();
    assert_eq!(r, lit_i64(&[1, -1, 1, 5, 0]));
    let f = run(Op::Binary { op: BinaryOp::Rem }, &[lit_f32(&[5.5, -5.5]), lit_f32(&[2.0, 2.0])]).unwrap();
    assert_eq!(f, lit_f32(&[1.5, -1.5]));
}

#[test]
fn max_and_min_propagate_nan() {
    let n = f32::NAN;
    for op in [BinaryOp::Max, BinaryOp::Min] {
        let y = run(Op::Binary { op }, &[lit_f32(&[n, 1.0, 2.0]), lit_f32(&[0.0, n, 3.0])]).unwrap();
        let LiteralData::F32(v) = y.data else { panic!() };
        assert!(v[0].is_nan() && v[1].is_nan(), "{op:?}: {v:?}");
        assert_eq!(v[2], if op == BinaryOp::Max { 3.0 } else { 2.0 });
    }
    let m = run(Op::Reduce { op: ReduceOp::Max, axes: vec![0] }, &[lit_f32(&[1.0, n, 3.0])]).unwrap();
    assert!(m.scalar_value().unwrap().is_nan());
    let m = run(Op::Reduce { op: ReduceOp::Min, axes: vec![0] }, &[lit_f32(&[1.0, -2.0, 3.0])]).unwrap();
    assert_eq!(m.scalar_value(), Some(-2.0));
}

#[test]
fn float_to_int_truncates_saturates_and_zeroes_nan() {
    let y = run(Op::Convert { to: DType::I32 }, &[lit_f32(&[1.9, -1.9, f32::NAN, 3e9, -3e9, f32::INFINITY])]).unwrap();
    assert_eq!(y, lit_i32(&[1, -1, 0, i32::MAX, i32::MIN, i32::MAX]));
    let y = run(Op::Convert { to: DType::I32 }, &[lit_i64(&[(1 << 32) + 5, 1 << 31, -1])]).unwrap();
    assert_eq!(y, lit_i32(&[5, i32::MIN, -1]), "narrowing wraps");
    let y = run(Op::Convert { to: DType::Bool }, &[lit_f32(&[0.0, -0.0, 2.0, f32::NAN])]).unwrap();
    assert_eq!(y, Literal::new(vec![4], LiteralData::Bool(vec![false, false, true, true])).unwrap());
}

#[test]
fn out_of_range_indices_are_errors_naming_the_node() {
    let table = Literal::new(vec![3, 2], LiteralData::F32(vec![0., 1., 2., 3., 4., 5.])).unwrap();
    let ok = run(Op::Gather { axis: 0 }, &[table.clone(), lit_i64(&[2, 0])]).unwrap();
    assert_eq!(ok, Literal::new(vec![2, 2], LiteralData::F32(vec![4., 5., 0., 1.])).unwrap());
    for bad in [3, -1] {
        let e = run(Op::Gather { axis: 0 }, &[table.clone(), lit_i64(&[bad])]).unwrap_err();
        let InterpError::Kernel { node, message, .. } = &e else { panic!("{e:?}") };
        assert_eq!(node, "the_node");
        assert!(message.contains(&format!("index {bad} is out of range [0, 3)")), "{message}");
    }
    let start = |v: i32| Literal::scalar_i32(v);
    let ok = run(Op::DynamicSlice { sizes: vec![2] }, &[lit_f32(&[1., 2., 3., 4.]), start(2)]).unwrap();
    assert_eq!(ok, lit_f32(&[3., 4.]));
    let e = run(Op::DynamicSlice { sizes: vec![2] }, &[lit_f32(&[1., 2., 3., 4.]), start(3)]).unwrap_err();
    assert!(e.to_string().contains("dynamic-slice start 3 with size 2"), "{e}");
    let e = run(Op::DynamicUpdateSlice, &[lit_f32(&[1., 2., 3.]), lit_f32(&[9., 9.]), start(-1)]).unwrap_err();
    assert!(e.to_string().contains("start -1"), "{e}");
    let ok = run(Op::DynamicUpdateSlice, &[lit_f32(&[1., 2., 3.]), lit_f32(&[9., 8.]), start(1)]).unwrap();
    assert_eq!(ok, lit_f32(&[1., 9., 8.]));
}

#[test]
fn scalars_and_empty_tensors_work() {
    let s = run(Op::Binary { op: BinaryOp::Add }, &[Literal::scalar_f32(1.5), Literal::scalar_f32(2.0)]).unwrap();
    assert_eq!(s, Literal::scalar_f32(3.5));
    let empty = Literal::new(vec![0, 2], LiteralData::F32(vec![])).unwrap();
    let two = Literal::new(vec![1, 2], LiteralData::F32(vec![1., 2.])).unwrap();
    let c = run(Op::Concat { axis: 0 }, &[empty.clone(), two.clone()]).unwrap();
    assert_eq!(c, two);
    let r = run(Op::Reduce { op: ReduceOp::Sum, axes: vec![0] }, &[empty]).unwrap();
    assert_eq!(r, lit_f32(&[0., 0.]));
}

#[test]
fn the_same_interpreter_runs_on_burn_flex() {
    // Generic over burn's Backend: one small graph on both CPU backends.
    let mut b = GraphBuilder::new("t");
    let x = b.parameter("x", TensorType::fixed(DType::F32, &[2, 3])).unwrap();
    let w = b.parameter("w", TensorType::fixed(DType::F32, &[3, 2])).unwrap();
    let dims = DotDims { lhs_contract: vec![1], rhs_contract: vec![0], ..Default::default() };
    let y = b.add("mm", Op::Dot { dims }, &[x, w]).unwrap();
    let y = b.add("tanh", Op::Unary { op: UnaryOp::Tanh }, &[y]).unwrap();
    let m = b.add("max", Op::Reduce { op: ReduceOp::Max, axes: vec![1] }, &[y]).unwrap();
    b.output("m", m).unwrap();
    let g = b.finish().unwrap();
    let xs = Literal::new(vec![2, 3], LiteralData::F32(vec![0.1, -0.2, 0.3, 0.5, 0.4, -0.6])).unwrap();
    let ws = Literal::new(vec![3, 2], LiteralData::F32(vec![1., -1., 0.5, 2., -0.5, 0.25])).unwrap();
    let inputs = [("x", &xs), ("w", &ws)];
    let nd = Session::<NdArray>::new(g.clone(), &WeightStore::new(), Default::default())
        .unwrap()
        .run_named(&inputs)
        .unwrap();
    let flex = Session::<Cpu>::new(g, &WeightStore::new(), cpu_device()).unwrap().run_named(&inputs).unwrap();
    let (LiteralData::F32(a), LiteralData::F32(b)) = (&nd[0].1.data, &flex[0].1.data) else { panic!() };
    assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6), "{a:?} vs {b:?}");
}

#[test]
fn integer_arithmetic_wraps_and_shifts_are_logical() {
    let m = run(Op::Binary { op: BinaryOp::Mul }, &[lit_i32(&[0x7feb352d, -3]), lit_i32(&[0x846ca68bu32 as i32, 5])])
        .unwrap();
    assert_eq!(m, lit_i32(&[0x7feb352du32.wrapping_mul(0x846ca68b) as i32, -15]));
    let a = run(Op::Binary { op: BinaryOp::Add }, &[lit_i32(&[i32::MAX, 1]), lit_i32(&[1, 2])]).unwrap();
    assert_eq!(a, lit_i32(&[i32::MIN, 3]));
    let r = run(Op::Binary { op: BinaryOp::ShiftRightLogical }, &[lit_i32(&[-1, -16, 256]), lit_i32(&[28, 2, 40])])
        .unwrap();
    assert_eq!(r, lit_i32(&[15, ((-16i32 as u32) >> 2) as i32, 0]));
    let l = run(Op::Binary { op: BinaryOp::ShiftLeft }, &[lit_i64(&[1, 3]), lit_i64(&[63, 1])]).unwrap();
    assert_eq!(l, lit_i64(&[i64::MIN, 6]));
}
