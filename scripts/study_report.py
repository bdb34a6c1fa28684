#!/usr/bin/env python3
"""Turns the outputs of scripts/reproduce.sh into docs/reproduction_results.md and two plots.

Every number comes from a JSON or CSV file the study's programs wrote; nothing is typed in."""
import csv
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

study = pathlib.Path(sys.argv[1])
docs = pathlib.Path(sys.argv[2])
images = docs / "images"
images.mkdir(parents=True, exist_ok=True)

LABELS = {"natural": "natural", "madry": "Madry AT", "kd": "KD (clean)", "ard": "ARD", "rslad": "RSLAD"}


def load(name):
    report = json.loads((study / f"{name}.eval.json").read_text())
    row = {"clean": report["clean_accuracy"], "worst": report["worst_case_accuracy"], "samples": report["samples"]}
    for attack in report["attacks"]:
        key = attack["name"].split(" ")[0]  # PGD-20, CW-Linf-20, APGD-CE, APGD-T
        row[key] = attack["robust_accuracy"]
    return row


def history(name):
    with open(study / name / "metrics.csv") as f:
        return list(csv.DictReader(f))


def save_plot(fig, ax, xlabel, ylabel, title, filename):
    """Labels, grid and legend of one plot, written to docs/images/<filename>."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(images / filename, dpi=120)


def pct(x):
    return f"{100 * x:.1f}%"


ORDER = list(LABELS)
names = ["teacher"] + sorted((p.name for p in study.iterdir() if p.is_dir()),
                             key=lambda n: (ORDER.index(n.rsplit("_w", 1)[0]), int(n.rsplit("_w", 1)[1])))
rows = {name: load(name) for name in names if (study / f"{name}.eval.json").exists()}
attacks = ["PGD-20", "CW-Linf-20", "APGD-CE", "APGD-T"]

lines = ["<!-- written by scripts/study_report.py from the outputs of scripts/reproduce.sh -->", ""]
samples = rows["teacher"]["samples"]
lines.append(f"Linf epsilon 0.1, the first {samples} Fashion-MNIST test images. "
             "'worst case': every attack tried on each image (the AutoAttack protocol).")
lines.append("")
lines.append("| model | width | clean | " + " | ".join(attacks) + " | worst case |")
lines.append("| --- | --- | --- | " + " | ".join("---" for _ in attacks) + " | --- |")
for name, r in rows.items():
    method, width = ("teacher (Madry AT)", "32") if name == "teacher" else (LABELS[name.rsplit("_w", 1)[0]], name.rsplit("_w", 1)[1])
    lines.append(f"| {method} | {width} | {pct(r['clean'])} | " + " | ".join(pct(r[a]) for a in attacks) +
                 f" | {pct(r['worst'])} |")
lines.append("")

# Schedule sweep: per-epoch clean / PGD-20 of Madry AT and ARD (on the programs' per-epoch evaluation images).
lines.append("Per-epoch accuracy of Madry AT and ARD students (PGD-20 at epsilon 0.1, from each run's metrics.csv):")
lines.append("")
lines.append("| width | epoch | Madry AT clean | Madry AT PGD-20 | ARD clean | ARD PGD-20 | more robust |")
lines.append("| --- | --- | --- | --- | --- | --- | --- |")
widths = sorted({int(n.rsplit("_w", 1)[1]) for n in rows if n.startswith("ard_")})
for width in widths:
    madry, ard = history(f"madry_w{width}"), history(f"ard_w{width}")
    for m, a in zip(madry, ard):
        winner = "ARD" if float(a["test_pgd20"]) > float(m["test_pgd20"]) else (
            "Madry AT" if float(a["test_pgd20"]) < float(m["test_pgd20"]) else "tie")
        lines.append(f"| {width} | {m['epoch']} | {pct(float(m['test_clean']))} | {pct(float(m['test_pgd20']))} | "
                     f"{pct(float(a['test_clean']))} | {pct(float(a['test_pgd20']))} | {winner} |")
lines.append("")
(docs / "reproduction_results.md").write_text("\n".join(lines) + "\n")

# Plot 1: accuracy against epsilon.
fig, ax = plt.subplots(figsize=(6, 4))
for name in rows:
    if name != "teacher" and not name.endswith("_w16"):
        continue
    points = [(0.0, rows[name]["clean"])]
    for eps in ["0.025", "0.05", "0.075", "0.1", "0.15"]:
        path = study / f"{name}.pgd_{eps}.json"
        if eps == "0.1":
            points.append((0.1, rows[name]["PGD-20"]))
        elif path.exists():
            points.append((float(eps), json.loads(path.read_text())["attacks"][0]["robust_accuracy"]))
    points.sort()
    label = "teacher (Madry AT, w32)" if name == "teacher" else LABELS[name.rsplit("_w", 1)[0]] + " (w16)"
    ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=label)
save_plot(fig, ax, "Linf epsilon (PGD-20)", "accuracy (%)", "Fashion-MNIST: accuracy against epsilon",
          "accuracy_vs_epsilon.png")

# Plot 2: robust accuracy against student width, Madry AT and ARD.
fig, ax = plt.subplots(figsize=(6, 4))
for method in ["madry", "ard"]:
    ws = [w for w in widths if f"{method}_w{w}" in rows]
    ax.plot(ws, [100 * rows[f"{method}_w{w}"]["APGD-CE"] for w in ws], marker="o", label=f"{LABELS[method]} (APGD-CE)")
    ax.plot(ws, [100 * rows[f"{method}_w{w}"]["PGD-20"] for w in ws], marker="x", linestyle="--",
            label=f"{LABELS[method]} (PGD-20)")
ax.set_xscale("log", base=2)
ax.set_xticks(widths)
ax.set_xticklabels([str(w) for w in widths])
save_plot(fig, ax, "student width (SmallCNN channels)", "robust accuracy at eps 0.1 (%)",
          "Robust accuracy against student size", "robust_vs_width.png")
