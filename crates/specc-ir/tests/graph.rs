//! The builder, verifier, text dump and encoding of the IR.

use specc_ir::*;

fn tiny() -> Graph {
    let mut b = GraphBuilder::new("tiny");
    let x = b.parameter("x", TensorType::new(DType::F32, Shape(vec![Dim::sym("batch"), Dim::Fixed(4)]))).unwrap();
    let w = b.weight("w", TensorType::fixed(DType::F32, &[4, 3])).unwrap();
    let dims = DotDims { lhs_contract: vec![1], rhs_contract: vec![0], ..Default::default() };
    let y = b.add("/MatMul", Op::Dot { dims }, &[x, w]).unwrap();
    let e = b.add("/Exp", Op::Unary { op: UnaryOp::Exp }, &[y]).unwrap();
    b.output("y", e).unwrap();
    b.finish().unwrap()
}

#[test]
fn builder_infers_types_with_symbolic_dims() {
    let g = tiny();
    assert_eq!(g.ty(g.outputs()[0].node).to_string(), "f32[batch,3]");
    assert_eq!(g.input_symbols(), vec!["batch".to_string()]);
    assert!(!g.is_static());
}

#[test]
fn builder_errors_name_the_node() {
    let mut b = GraphBuilder::new("bad");
    let x = b.parameter("x", TensorType::fixed(DType::F32, &[2, 3])).unwrap();
    let y = b.parameter("y", TensorType::fixed(DType::F32, &[4, 3])).unwrap();
    let e = b.add("/Add_7", Op::Binary { op: BinaryOp::Add }, &[x, y]).unwrap_err();
    assert_eq!(e.to_string(), "node `/Add_7` (add): dims 2 and 4 do not broadcast");
    let e = b.add("/Ghost", Op::Unary { op: UnaryOp::Neg }, &[NodeId(99)]).unwrap_err();
    assert!(matches!(e, IrError::Dangling { operand: 99, .. }), "{e}");
    let e = b.parameter("x", TensorType::fixed(DType::F32, &[1])).unwrap_err();
    assert!(matches!(e, IrError::Duplicate { kind: "parameter", .. }), "{e}");
    let i = b.parameter("i", TensorType::fixed(DType::I64, &[2])).unwrap();
    let e = b.add("/Exp", Op::Unary { op: UnaryOp::Exp }, &[i]).unwrap_err();
    assert!(e.to_string().contains("exponential does not take s64"), "{e}");
}

#[test]
fn text_dump_is_readable() {
    let text = tiny().to_string();
    let expected = "\
graph tiny {
  %0 = parameter 0 \"x\" : f32[batch,4]
  %1 = weight 0 \"w\" : f32[4,3]
  %2 = dot(%0, %1) lhs_contract={1} rhs_contract={0} : f32[batch,3]   # /MatMul
  %3 = exponential(%2) : f32[batch,3]   # /Exp
  output \"y\" = %3
}
";
    assert_eq!(text, expected);
}

#[test]
fn encoding_round_trips_and_rejects_corruption() {
    let g = tiny();
    let bytes = g.to_bytes();
    assert_eq!(Graph::from_bytes(&bytes).unwrap(), g);
    assert!(matches!(Graph::from_bytes(b"not a graph"), Err(IrError::Decode(_))));
    assert!(matches!(Graph::from_bytes(&bytes[..bytes.len() - 3]), Err(IrError::Decode(_))));
    let mut other_version = bytes.clone();
    other_version[8] = 99;
    let e = Graph::from_bytes(&other_version).unwrap_err();
    assert!(e.to_string().contains("version 99"), "{e}");
}

#[test]
fn static_verifier_rejects_symbols_and_shape_ops() {
    let g = tiny();
    let e = verify::verify_static(&g).unwrap_err();
    assert_eq!(e.rule, "static");
}

#[test]
fn dead_nodes_are_removed_but_parameters_stay() {
    let mut b = GraphBuilder::new("dce");
    let x = b.parameter("x", TensorType::fixed(DType::F32, &[2])).unwrap();
    let unused = b.parameter("unused", TensorType::fixed(DType::F32, &[2])).unwrap();
    let _dead = b.add("dead", Op::Unary { op: UnaryOp::Exp }, &[unused]).unwrap();
    let y = b.add("live", Op::Unary { op: UnaryOp::Neg }, &[x]).unwrap();
    b.output("y", y).unwrap();
    let g = b.finish().unwrap().without_dead_nodes();
    assert_eq!(g.len(), 3);
    assert_eq!(g.params().len(), 2);
    assert_eq!(analysis::inputs_of(&g, g.outputs()[0].node), vec![0]);
}
