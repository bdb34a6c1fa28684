"""The deploy study's table (docs/deploy.md) from the reports scripts/deploy_study.sh committed.

    python3 scripts/deploy_study.py docs/performance_data/deploy

Per seed and as the mean over seeds: clean accuracy, each attack alone and the worst case, in
percent, for the float ARD student, its post-training int8 version and the quantization-aware ARD
student's int8 version; then the shipped teacher, float and int8.
"""
import json
import pathlib
import sys

ROWS = ["clean", "APGD-CE", "APGD-T", "Square-5000", "worst case"]
COLUMNS = [("float", "float ARD student"), ("int8", "int8, post-training"), ("qat_int8", "int8, QAT ARD")]


def cells(report):
    """The five rows of one EvalReport's JSON, in percent."""
    attacks = [100 * a["robust_accuracy"] for a in report["attacks"]]
    return [100 * report["clean_accuracy"], *attacks, 100 * report["worst_case_accuracy"]]


def table(header, columns):
    print("| | " + " | ".join(header) + " |")
    print("| --- |" + " --- |" * len(header))
    for i, row in enumerate(ROWS):
        print(f"| {row} | " + " | ".join(c[i] for c in columns) + " |")
    print()


def main(folder):
    data = pathlib.Path(folder)
    seeds = sorted(data.glob("seed*.json"))
    reports = [json.loads(p.read_text()) for p in seeds]
    header, columns = [], []
    for key, title in COLUMNS:
        per_seed = [cells(r[key]) for r in reports if key in r]
        mean = [sum(v) / len(v) for v in zip(*per_seed)]
        header.append(f"{title} (mean of {len(per_seed)})")
        columns.append([f"{m:.2f}% ({', '.join(f'{s[i]:.1f}' for s in per_seed)})" for i, m in enumerate(mean)])
    print(f"Seeds: {', '.join(p.stem for p in seeds)}; each cell: the mean, then each seed's value.\n")
    table(header, columns)
    teacher = data / "teacher.json"
    if teacher.exists():
        r = json.loads(teacher.read_text())
        table(["float teacher", "int8, post-training"], [[f"{v:.2f}%" for v in cells(r[k])] for k in ("float", "int8")])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/performance_data/deploy")
