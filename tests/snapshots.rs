//! Snapshots (insta) of emitted HLO text: one per op lowering on small
//! shapes, one transformer block cut from a real export, one whole small
//! decoder. Each was read when accepted; a change shows up as a diff.
//! Accept changes with `cargo insta review` (or INSTA_UPDATE=always).

mod common;
use common::*;
use specc_ir::*;

fn hlo(g: &Graph) -> String {
    specc_hlo::to_text(&specc_hlo::lower(g, &[]).unwrap())
}

/// A graph of one op on fresh parameters of the given types.
fn one_op(op: Op, params: &[TensorType]) -> String {
    let mut b = GraphBuilder::new("op");
    let ps: Vec<NodeId> =
        params.iter().enumerate().map(|(i, t)| b.parameter(format!("p{i}"), t.clone()).unwrap()).collect();
    let y = b.add("the_op", op, &ps).unwrap();
    b.output("y", y).unwrap();
    hlo(&b.finish().unwrap())
}

fn f32s(d: &[usize]) -> TensorType {
    TensorType::fixed(DType::F32, d)
}

#[test]
fn elementwise_ops() {
    let mut b = GraphBuilder::new("elementwise");
    let x = b.parameter("x", f32s(&[2, 3])).unwrap();
    let row = b.parameter("row", f32s(&[1, 3])).unwrap();
    let mut outs = vec![];
    for u in UnaryOp::ALL.into_iter().filter(|u| u.accepts(DType::F32)) {
        outs.push((u.name(), b.add(u.name(), Op::Unary { op: u }, &[x]).unwrap()));
    }
    for op in BinaryOp::ALL.into_iter().filter(|o| o.accepts(DType::F32)) {
        // The [1,3] operand is broadcast (a reshape away of the unit dim, then broadcast).
        outs.push((op.name(), b.add(op.name(), Op::Binary { op }, &[x, row]).unwrap()));
    }
    let lt = b.add("lt", Op::Compare { dir: CompareDir::Lt }, &[x, row]).unwrap();
    let sel = b.add("select", Op::Select, &[lt, x, row]).unwrap();
    let conv = b.add("convert", Op::Convert { to: DType::I32 }, &[x]).unwrap();
    let not = b.add("not", Op::Unary { op: UnaryOp::Not }, &[lt]).unwrap();
    for (n, id) in outs {
        b.output(n, id).unwrap();
    }
    for (n, id) in [("select", sel), ("convert", conv), ("not", not)] {
        b.output(n, id).unwrap();
    }
    insta::assert_snapshot!(hlo(&b.finish().unwrap()));
}

#[test]
fn dot() {
    let plain = DotDims { lhs_contract: vec![1], rhs_contract: vec![0], ..Default::default() };
    insta::assert_snapshot!("dot_matmul", one_op(Op::Dot { dims: plain }, &[f32s(&[2, 3]), f32s(&[3, 4])]));
    let batched = DotDims { lhs_batch: vec![0], rhs_batch: vec![0], lhs_contract: vec![2], rhs_contract: vec![2] };
    insta::assert_snapshot!("dot_batched", one_op(Op::Dot { dims: batched }, &[f32s(&[2, 3, 5]), f32s(&[2, 4, 5])]));
}

#[test]
fn reduce() {
    insta::assert_snapshot!("reduce_sum", one_op(Op::Reduce { op: ReduceOp::Sum, axes: vec![1] }, &[f32s(&[2, 3])]));
    insta::assert_snapshot!(
        "reduce_max_s32",
        one_op(Op::Reduce { op: ReduceOp::Max, axes: vec![0, 1] }, &[TensorType::fixed(DType::I32, &[2, 3])])
    );
}

#[test]
fn layout_ops() {
    insta::assert_snapshot!(
        "broadcast",
        one_op(Op::Broadcast { shape: Shape::fixed(&[2, 4, 3]), dims: vec![1, 2] }, &[f32s(&[1, 3])])
    );
    insta::assert_snapshot!("reshape", one_op(Op::Reshape { shape: Shape::fixed(&[3, 2]) }, &[f32s(&[2, 3])]));
    insta::assert_snapshot!("transpose", one_op(Op::Transpose { perm: vec![1, 0] }, &[f32s(&[2, 3])]));
    insta::assert_snapshot!("reverse", one_op(Op::Reverse { axes: vec![1] }, &[f32s(&[2, 3])]));
    insta::assert_snapshot!(
        "slice",
        one_op(Op::Slice { starts: vec![0, 1], limits: vec![2, 3], strides: vec![1, 2] }, &[f32s(&[2, 3])])
    );
    insta::assert_snapshot!("concatenate", one_op(Op::Concat { axis: 0 }, &[f32s(&[2, 3]), f32s(&[1, 3])]));
    insta::assert_snapshot!("pad", one_op(Op::Pad { low: vec![1, 0], high: vec![0, 2] }, &[f32s(&[2, 3]), f32s(&[])]));
    insta::assert_snapshot!("iota", one_op(Op::Iota { shape: Shape::fixed(&[2, 3]), axis: 1, dtype: DType::I32 }, &[]));
}

#[test]
fn indexing_ops() {
    let idx = TensorType::fixed(DType::I32, &[2, 2]);
    insta::assert_snapshot!("gather", one_op(Op::Gather { axis: 1 }, &[f32s(&[4, 5, 6]), idx]));
    let s = TensorType::scalar(DType::I32);
    insta::assert_snapshot!(
        "dynamic_slice",
        one_op(Op::DynamicSlice { sizes: vec![1, 2] }, &[f32s(&[4, 5]), s.clone(), s.clone()])
    );
    insta::assert_snapshot!(
        "dynamic_update_slice",
        one_op(Op::DynamicUpdateSlice, &[f32s(&[4, 5]), f32s(&[1, 2]), s.clone(), s])
    );
}

#[test]
fn constants() {
    let mut b = GraphBuilder::new("constants");
    let m = Literal::new(vec![2, 2], LiteralData::F32(vec![1.5, -0.0, f32::INFINITY, 1e-5])).unwrap();
    let c = b.constant("matrix", m).unwrap();
    let i = b.constant("ints", Literal::vec_i64(vec![3, -4])).unwrap();
    let p = b.constant("flag", Literal::scalar_bool(true)).unwrap();
    b.output("m", c).unwrap();
    b.output("i", i).unwrap();
    b.output("p", p).unwrap();
    insta::assert_snapshot!(hlo(&b.finish().unwrap()));
}

/// Layer 0 of the Llama fixture (RMSNorm, rotary attention with GQA, SwiGLU
/// MLP, residuals), cut out of the real export at its output.
#[test]
fn transformer_block() {
    let m = specc_onnx::import_file(&fixture("llama").join("nocache.onnx")).unwrap();
    let b = specc_opt::Bindings::new().with("batch_size", 1).with("sequence_length", 4);
    let (g, _) = specc_opt::specialize(&m.graph, &b).unwrap();
    let block = g.with_outputs(&["/model/model/layers.0/Add_1"]).unwrap();
    insta::assert_snapshot!(hlo(&block));
}

/// The same block sharded for tensor parallelism at tp 2: Q/K/V and
/// gate/up split by output features (heads), o_proj and down_proj by input
/// features, each followed by its all-reduce over both ranks.
#[test]
fn sharded_transformer_block() {
    let m = specc_onnx::import_file(&fixture("llama").join("nocache.onnx")).unwrap();
    let b = specc_opt::Bindings::new().with("batch_size", 1).with("sequence_length", 4);
    let (g, _) = specc_opt::specialize(&m.graph, &b).unwrap();
    let block = g.with_outputs(&["/model/model/layers.0/Add_1"]).unwrap();
    let plan = specc_opt::shard_plan(&block, 2, &[], &[]).unwrap();
    let sharded = specc_opt::shard(&block, &m.weights, &plan).unwrap();
    assert_eq!(plan.all_reduces.len(), 2);
    insta::assert_snapshot!(hlo(&sharded.graph));
}

/// The whole Qwen2 fixture, one cached decode step, Neuron profile.
#[test]
fn small_decoder() {
    let m = specc_onnx::import_file(&fixture("qwen2").join("with_past/model.onnx")).unwrap();
    let b = specc_opt::Bindings::new().with("batch_size", 1).with("sequence_length", 1).with("past_sequence_length", 8);
    let (g, _) = specc_opt::specialize(&m.graph, &b).unwrap();
    let (g, _) = specc_opt::narrow_to_s32(&g, &Default::default()).unwrap();
    let module = specc_hlo::lower(&g, &[]).unwrap();
    specc_hlo::check(&module, specc_hlo::Target::Trn1).unwrap();
    insta::assert_snapshot!(specc_hlo::to_text(&module));
}

/// The fused speculation round of a tiny pair (1-layer Llama target and
/// draft, vocab 32), K=2, cache of 16, Neuron profile: two draft steps (the
/// first over the last two accepted tokens), one target pass over three
/// positions, the portable argmax, the acceptance count, and both caches
/// updated in place (input_output_alias in the header).
#[test]
fn fused_speculation_round() {
    let load = |role: &str, name: &str| {
        let m = specc_onnx::import_file(&repo().join(format!("graphs/small/{name}/with_past/model.onnx"))).unwrap();
        specc_spec::DecoderModel::new(role, m.graph, m.weights).unwrap()
    };
    let (target, draft) = (load("target", "tiny-target"), load("draft", "tiny-draft"));
    let built = specc_spec::graphs::fused(&draft, &target, 2, 16, false).unwrap();
    let (g, _) = specc_opt::narrow_to_s32(&built.graph, &Default::default()).unwrap();
    let aliases: Vec<specc_hlo::Alias> =
        built.aliases.iter().map(|&(output, param)| specc_hlo::Alias { output, param }).collect();
    let module = specc_hlo::lower(&g, &aliases).unwrap();
    specc_hlo::check(&module, specc_hlo::Target::Trn1).unwrap();
    insta::assert_snapshot!(specc_hlo::to_text(&module));
}
