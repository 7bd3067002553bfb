#!/usr/bin/env python3
"""Run HLO modules that specc emitted on real XLA (jax's XLA CPU) and compare
them with specc's reference interpreter.

Each case is a directory (written by tests/xla.rs) holding:
  module.hlo.txt, module.hlo.pb   the same module as HLO text and as a
                                  serialized HloModuleProto
  inputs.safetensors              parameter i under key "i"
  expected.safetensors            the interpreter's output i under key "i"
  case.json                       {"atol": .., "rtol": ..}

For every case it checks that
  1. XLA parses the text and loads the proto, and both compile;
  2. the text, once parsed and re-serialized by XLA, has the same program
     shape (parameter and result shapes) and input/output aliases as
     specc's proto;
  3. both forms give bitwise-identical outputs;
  4. the outputs match the interpreter's within the case's tolerance
     (|a - b| <= atol + rtol * |b|, NaN equals NaN).

Malformed HLO can kill XLA instead of raising (an abort or a segfault), so
cases run in a worker process that is restarted after a crash; the crash
becomes that case's failure. Results go to DIR/results.json.

Usage: python tools/xla_check.py DIR
"""

import json
import os
import pathlib
import subprocess
import sys


def aliases(hlo_text):
    """The input_output_alias clause of a module's header line, if any."""
    header = hlo_text.splitlines()[0]
    start = header.find("input_output_alias={")
    if start < 0:
        return None
    depth, i = 0, start + len("input_output_alias=")
    for j in range(i, len(header)):
        depth += {"{": 1, "}": -1}.get(header[j], 0)
        if depth == 0:
            return header[i:j + 1]
    return header[i:]


# Compiled executables by module bytes: the generation loop replays the same
# graph many times, and compiling is what costs.
_EXECUTABLES = {}


def run_case(path):
    import hashlib
    import numpy as np
    import jax
    from jaxlib import _hlo, _jax, xla_client as xc
    from safetensors.numpy import load_file

    case = json.loads((path / "case.json").read_text())
    text = (path / "module.hlo.txt").read_text()
    ours = (path / "module.hlo.pb").read_bytes()
    inputs = load_file(str(path / "inputs.safetensors"))
    expected = load_file(str(path / "expected.safetensors"))
    args = [inputs[str(i)] for i in range(len(inputs))]
    want = [expected[str(i)] for i in range(len(expected))]
    dev = jax.devices("cpu")[0]

    def compile_and_run(proto, key):
        exe = _EXECUTABLES.get(key)
        if exe is None:
            mlir = _jax.mlir.hlo_to_stablehlo(proto)
            exe = dev.client.compile_and_load(mlir, xc.DeviceList((dev,)), xc.CompileOptions())
            _EXECUTABLES[key] = exe
        res = exe.execute_sharded([jax.device_put(a, dev) for a in args])
        return [np.asarray(x[0]) for x in res.disassemble_into_single_device_arrays()]

    def shapes(proto):
        ps = _hlo.XlaComputation(proto).program_shape()
        return [str(s) for s in ps.parameter_shapes()], str(ps.result_shape())

    parsed = _hlo.hlo_module_from_text(text)
    from_text = parsed.as_serialized_hlo_module_proto()
    if shapes(from_text) != shapes(ours):
        return f"program shapes differ: text {shapes(from_text)} vs proto {shapes(ours)}"
    alias_text, alias_proto = aliases(parsed.to_string()), aliases(_hlo.XlaComputation(ours).as_hlo_text())
    if alias_text != alias_proto:
        return f"input_output_alias differs: text {alias_text} vs proto {alias_proto}"
    # Keys: the text itself (XLA's re-serialization numbers ids afresh on
    # every parse) and specc's proto bytes.
    out_text = compile_and_run(from_text, "text:" + hashlib.sha256(text.encode()).hexdigest())
    out_proto = compile_and_run(ours, "proto:" + hashlib.sha256(ours).hexdigest())
    if len(out_proto) != len(want):
        return f"{len(out_proto)} outputs, the interpreter gave {len(want)}"
    def widened(a):
        # bfloat16 (ml_dtypes) compares through float32, which holds it exactly.
        return a.astype(np.float32) if a.dtype.name == "bfloat16" else a

    for i, (t, p) in enumerate(zip(out_text, out_proto)):
        t, p = widened(t), widened(p)
        same = t.shape == p.shape and t.dtype == p.dtype and np.array_equal(t, p, equal_nan=t.dtype.kind == "f")
        if not same:
            return f"output {i}: text and proto forms disagree"
    atol, rtol = case["atol"], case["rtol"]
    for i, (got, w) in enumerate(zip(out_proto, want)):
        if got.shape != w.shape:
            return f"output {i}: shape {got.shape}, interpreter {w.shape}"
        if got.dtype != w.dtype:
            return f"output {i}: dtype {got.dtype}, interpreter {w.dtype}"
        if got.dtype.kind in "fc" or got.dtype.name == "bfloat16":
            g, e = got.astype(np.float64), w.astype(np.float64)
            with np.errstate(invalid="ignore"):
                close = (g == e) | (np.abs(g - e) <= atol + rtol * np.abs(e)) | (np.isnan(g) & np.isnan(e))
            bad = ~close
        else:
            bad = got != w
        if bad.any():
            k = int(np.argmax(bad.reshape(-1)))
            return f"output {i}: element {k}: XLA {got.reshape(-1)[k]}, interpreter {w.reshape(-1)[k]}"
    return None


def worker():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax

    jax.config.update("jax_enable_x64", True)  # keep s64 inputs as s64
    for line in sys.stdin:
        path = pathlib.Path(line.strip())
        try:
            reason = run_case(path)
        except Exception as e:  # a refusal by XLA is a case failure, not ours
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        print(json.dumps({"case": path.name, "reason": reason}), flush=True)


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--worker":
        return worker()
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(sys.argv[1])
    cases = sorted(p for p in root.iterdir() if (p / "case.json").exists())
    results = {}
    pending = list(cases)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    while pending:
        proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        proc.stdin.write("".join(f"{p}\n" for p in pending))
        proc.stdin.close()
        for line in proc.stdout:
            r = json.loads(line)
            results[r["case"]] = r["reason"]
            pending = [p for p in pending if p.name != r["case"]]
        rc = proc.wait()
        if pending:
            # The worker died on the first case it had not answered.
            results[pending[0].name] = f"XLA crashed (exit {rc})"
            pending = pending[1:]
    (root / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    ok = sum(1 for r in results.values() if r is None)
    print(f"xla_check: {ok}/{len(results)} cases agree with the interpreter on XLA CPU (text and proto)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
