#!/usr/bin/env python3
"""Write the small hand-built ONNX models of graphs/bad/ and graphs/small/.

graphs/bad/: minimal graphs that each exercise one error path (see
tests/bad_input.rs and tests/compile.rs). graphs/small/: minimal valid
graphs for one feature (external-data weights, for linked weights).
Regenerate with the fixtures venv:

    .venv-fixtures/bin/python tools/make_small_models.py
"""

import pathlib

import onnx
from onnx import TensorProto, helper

OUT = pathlib.Path(__file__).resolve().parent.parent / "graphs" / "bad"
SMALL = pathlib.Path(__file__).resolve().parent.parent / "graphs" / "small"


def vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def save(model, name):
    OUT.mkdir(parents=True, exist_ok=True)
    # No checker here: some of these models are invalid on purpose.
    onnx.save(model, OUT / name)
    print("wrote", OUT / name)


def opset(graph, version=17, extra=()):
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", version), *extra],
        producer_name="specc tools/make_bad_models.py",
    )


def unsupported_ops():
    """Two TopK nodes, one Erf and one com.microsoft op: none supported."""
    nodes = [
        helper.make_node("Erf", ["x"], ["e"], name="erf_1"),
        helper.make_node("TopK", ["e", "k"], ["v1", "i1"], name="topk_a"),
        helper.make_node("TopK", ["v1", "k"], ["v2", "i2"], name="topk_b"),
        helper.make_node("FastGelu", ["v2"], ["y"], name="gelu_ms", domain="com.microsoft"),
    ]
    k = helper.make_tensor("k", TensorProto.INT64, [1], [2])
    g = helper.make_graph(nodes, "unsupported", [vi("x", [1, 8])], [vi("y", [1, 2])], initializer=[k])
    save(opset(g, extra=[helper.make_opsetid("com.microsoft", 1)]), "unsupported_ops.onnx")


def dangling_edge():
    """A node reads `ghost`, which nothing defines."""
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add_ghost")]
    g = helper.make_graph(nodes, "dangling", [vi("x", [2])], [vi("y", [2])])
    save(opset(g), "dangling_edge.onnx")


def missing_node_input():
    """MatMul with only one of its two required inputs."""
    nodes = [helper.make_node("MatMul", ["x"], ["y"], name="matmul_half")]
    g = helper.make_graph(nodes, "missing", [vi("x", [2, 2])], [vi("y", [2, 2])])
    save(opset(g), "missing_node_input.onnx")


def two_inputs():
    """A valid model with two inputs, for the missing-input-at-run-time test."""
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    g = helper.make_graph(nodes, "two_inputs", [vi("a", ["n"]), vi("b", ["n"])], [vi("y", ["n"])])
    save(opset(g), "two_inputs.onnx")


def pow_runtime_exponent():
    """x ** e with e a graph input: valid ONNX, but Neuron needs a constant exponent."""
    nodes = [helper.make_node("Pow", ["x", "e"], ["y"], name="pow_dynamic")]
    g = helper.make_graph(nodes, "pow", [vi("x", [4]), vi("e", [4])], [vi("y", [4])])
    save(opset(g), "pow_runtime_exponent.onnx")


def external_data():
    """y = x @ W + b with W and b stored as external data (one file)."""
    import numpy as np
    from onnx import numpy_helper

    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b"], ["y"], name="bias"),
    ]
    g = helper.make_graph(nodes, "external", [vi("x", ["n", 16])], [vi("y", ["n", 8])], initializer=[w, b])
    model = opset(g)
    SMALL.mkdir(parents=True, exist_ok=True)
    onnx.save(model, SMALL / "external_data.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="external_data.onnx.data", size_threshold=0)
    print("wrote", SMALL / "external_data.onnx")


if __name__ == "__main__":
    unsupported_ops()
    dangling_edge()
    missing_node_input()
    two_inputs()
    pow_runtime_exponent()
    external_data()
