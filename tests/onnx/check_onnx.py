"""onnx.checker (Debian's python3-onnx) on every .onnx file of a folder, with full shape inference.

    python3 check_onnx.py <dir>

Exit 77 (ctest: skipped) when the onnx module is not installed.
"""
import pathlib
import sys

try:
    import onnx
except ImportError:
    print("SKIPPED: python3-onnx is not installed (scripts/setup.sh installs it)")
    sys.exit(77)

models = sorted(pathlib.Path(sys.argv[1]).glob("*.onnx"))
if not models:
    print("no .onnx files in", sys.argv[1])
    sys.exit(1)
for path in models:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    print(f"ok {path.name}: opset {opset}, {len(model.graph.node)} nodes, batch dimension '{batch}'")
