// Runs every model of manifest.json (written by ardent_onnx_export) in ONNX Runtime (npm package
// onnxruntime-node, CPU) and compares its logits with ardent's: the largest absolute difference
// (float exports) or the argmax agreement (int8 exports).
//   node check_onnxruntime.js <dir with manifest.json>
// Exit 77 (ctest: skipped) when onnxruntime-node is not installed; scripts/setup.sh installs it into
// .onnxruntime/ at the repository root (or set ARDENT_ONNXRUNTIME_NODE to the package's folder).
'use strict';
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
const candidates = [process.env.ARDENT_ONNXRUNTIME_NODE,
                    path.join(__dirname, '..', '..', '.onnxruntime', 'node_modules', 'onnxruntime-node')];
let ort = null;
for (const c of candidates.filter(Boolean)) {
  try {
    ort = require(c);
    break;
  } catch (e) { /* try the next */ }
}
if (ort === null) {
  console.log('SKIPPED: onnxruntime-node is not installed (scripts/setup.sh installs it into .onnxruntime/)');
  process.exit(77);
}

function readFloats(file) {
  const b = fs.readFileSync(path.join(dir, file));
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}

function argmax(values, row, width) {
  let best = 0;
  for (let j = 1; j < width; ++j) if (values[row * width + j] > values[row * width + best]) best = j;
  return best;
}

async function main() {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  let failed = 0;
  for (const check of manifest) {
    const session = await ort.InferenceSession.create(path.join(dir, check.model));
    const images = readFloats(check.images);
    const expected = readFloats(check.expected);
    const input = new ort.Tensor('float32', images, check.shape);
    const result = await session.run({[session.inputNames[0]]: input});
    const logits = result[session.outputNames[0]].data;
    const batch = check.shape[0];
    const width = logits.length / batch;
    let maxDiff = 0;
    let agree = 0;
    for (let i = 0; i < logits.length; ++i) maxDiff = Math.max(maxDiff, Math.abs(logits[i] - expected[i]));
    for (let r = 0; r < batch; ++r) agree += argmax(logits, r, width) === argmax(expected, r, width) ? 1 : 0;
    const agreement = agree / batch;
    let ok = logits.length === expected.length;
    if (check.max_abs_difference !== undefined) ok = ok && maxDiff <= check.max_abs_difference;
    if (check.min_argmax_agreement !== undefined) ok = ok && agreement >= check.min_argmax_agreement;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${check.model}: inputs ${session.inputNames} -> ${session.outputNames}, ` +
                `batch ${batch}, max |onnxruntime - ardent| = ${maxDiff.toExponential(3)}, argmax agreement ${agreement}`);
    if (!ok) ++failed;
  }
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
