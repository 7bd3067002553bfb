#!/usr/bin/env python3
"""Fetch the official ONNX node conformance cases into a local cache.

The `onnx==1.22.0` wheel on PyPI ships `onnx/backend/test/data/node/*`
(model.onnx plus test_data_set_*/input_N.pb and output_N.pb for about 1,765
cases); onnx 1.23 no longer does. This script downloads that one wheel with
pip (no install, no dependencies) and unpacks only the node cases into
`.cache/onnx-node-tests/` at the repository root. Nothing it writes is
committed. Re-running is cheap: an existing complete cache is kept.

Usage: python3 tools/fetch_onnx_conformance.py [--cache DIR]
"""

import argparse
import pathlib
import subprocess
import sys
import zipfile

VERSION = "1.22.0"
PREFIX = "onnx/backend/test/data/node/"
ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(ROOT / ".cache"), help="cache directory (default: .cache)")
    args = ap.parse_args()
    cache = pathlib.Path(args.cache)
    dest = cache / "onnx-node-tests"
    marker = dest / f".complete-{VERSION}"
    if marker.exists():
        print(f"onnx {VERSION} node tests already in {dest}")
        return 0

    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"onnx-{VERSION}-*.whl"))
    if not found:
        print(f"downloading the onnx=={VERSION} wheel into {wheels} ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", f"onnx=={VERSION}", "--no-deps",
               "--only-binary=:all:", "-d", str(wheels), "-q"]
        if subprocess.run(cmd).returncode != 0:
            print(f"error: could not download onnx=={VERSION} from PyPI", file=sys.stderr)
            return 1
        found = sorted(wheels.glob(f"onnx-{VERSION}-*.whl"))
    if not found:
        print(f"error: no onnx-{VERSION} wheel in {wheels} after download", file=sys.stderr)
        return 1

    count = 0
    with zipfile.ZipFile(found[0]) as z:
        for name in z.namelist():
            if not name.startswith(PREFIX) or name.endswith("/"):
                continue
            rel = name[len(PREFIX):]
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
            if rel.endswith("/model.onnx"):
                count += 1
    if count == 0:
        print(f"error: the wheel holds no {PREFIX} cases", file=sys.stderr)
        return 1
    marker.write_text(f"{count} cases from {found[0].name}\n")
    print(f"unpacked {count} node test cases into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
