#!/usr/bin/env bash
# What the tools refuse (issue 22, defects 4, 5 and 7), run by ctest (label tools):
#   refusals.sh DISTILL TEACHER WORKDIR
# TEACHER is a SmallCNN of width 4 saved by train_teacher. Each refusal must name the flag to use.
set -euo pipefail
distill="$1"; teacher="$2"; work="$3"
rm -rf "$work"; mkdir -p "$work"
small=(--teacher-width 4 --width 2 --limit 64 --steps 2 --batch-size 32 --eval-limit 32 --threads 1)
fail() { echo "refusals: $*" >&2; exit 1; }
# Runs distill, expecting a failure whose message matches $1.
refused() {
  local pattern="$1"; shift
  local status=0
  "$distill" "$@" > "$work/out.txt" 2>&1 || status=$?
  cat "$work/out.txt"
  [ "$status" -ne 0 ] || fail "accepted: $*"
  grep -q -- "$pattern" "$work/out.txt" || fail "message does not match '$pattern': $*"
}

# Defect 7: values that train nothing or overflow.
refused "--epsilon 0 with --recipe ard" --teacher "$teacher" --epsilon 0 --out "$work/eps0" "${small[@]}"
refused "outside \[0.1, 1000\]" --teacher "$teacher" --temperature 1e-30 --out "$work/t" "${small[@]}"
refused "^--lr" --teacher "$teacher" --lr 1e39 --out "$work/lr" "${small[@]}"

# Defect 5: a finished run is not overwritten without --overwrite.
"$distill" --teacher "$teacher" --out "$work/run" "${small[@]}"
cp "$work/run/metrics.csv" "$work/metrics.before"
refused "continue it with --resume, replace it with --overwrite" --teacher "$teacher" --out "$work/run" "${small[@]}"
cmp "$work/run/metrics.csv" "$work/metrics.before" || fail "the refused run changed metrics.csv"
"$distill" --teacher "$teacher" --out "$work/run" --overwrite "${small[@]}"

# Defect 4: resume compares the teacher and the data by content, not by path.
cp "$teacher" "$work/same_teacher.pt"
"$distill" --teacher "$work/same_teacher.pt" --out "$work/run" --resume --epochs 2 "${small[@]}" > "$work/out.txt" 2>&1
grep -q "resuming from" "$work/out.txt" || fail "the same teacher under another path was not resumed"
# Another teacher at the same path: the same archive with one weight changed (one bit flipped).
python3 - "$teacher" "$work/same_teacher.pt" <<'PY'
import sys, zipfile
source = zipfile.ZipFile(sys.argv[1])
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_STORED) as out:
    for info in source.infolist():
        data = source.read(info.filename)
        if info.filename.endswith("/data/0"):
            data = bytes([data[0] ^ 1]) + data[1:]
        out.writestr(info.filename, data)
PY
refused "sha256 of the teacher" --teacher "$work/same_teacher.pt" --out "$work/run" --resume --epochs 3 "${small[@]}"
# Data whose labels changed (shifted by one) under a new directory.
data=/usr/share/datasets/fashion-mnist
mkdir -p "$work/data"
for f in "$data"/*; do ln -s "$f" "$work/data/$(basename "$f")"; done
labels=$(ls "$work/data" | grep train-labels)
rm "$work/data/$labels"
python3 - "$data/$labels" "$work/data/$labels" <<'PY'
import gzip, sys
src, dst = sys.argv[1], sys.argv[2]
opener = gzip.open if src.endswith(".gz") else open
raw = bytearray(opener(src, "rb").read())
raw[8:] = bytes((b + 1) % 10 for b in raw[8:])
with opener(dst, "wb") as f:
    f.write(bytes(raw))
PY
refused "train-labels-idx1-ubyte" --teacher "$teacher" --data "$work/data" --out "$work/run" --resume --epochs 3 \
  "${small[@]}"
echo "refusals: passed"
