"""Writes the seed corpora of ardent's fuzz targets (fuzz/corpus/<target>/seed_*).

Run with Debian's python3-torch 1.13 from the repository root:
    /usr/bin/python3 fuzz/corpus/make_seeds.py
The checkpoint seed is written by the kill-and-resume child (see fuzz/corpus/README.md).
"""
import gzip
import os
import sys

import torch

root = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20261202)


def out(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)


def saved(obj):
    path = os.path.join(root, "tmp.pt")
    torch.save(obj, path)
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


# --- state dicts: what torch.save writes, small -----------------------------------------------
lin = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
out("state_dict", "seed_linear_bn.pt", saved(lin.state_dict()))
out("state_dict", "seed_checkpoint_dict.pt",
    saved({"epoch": 3, "state_dict": lin.state_dict(), "best": 0.5, "history": [1.0, 2.0], "name": "x"}))
out("state_dict", "seed_dtypes.pt", saved({
    "f64": torch.arange(3, dtype=torch.float64), "i64": torch.arange(4), "u8": torch.arange(5, dtype=torch.uint8),
    "half": torch.ones(2, dtype=torch.float16), "bool": torch.tensor([True, False]), "scalar": torch.tensor(2.5)}))
base = torch.arange(12.0)
out("state_dict", "seed_views.pt", saved({"base": base, "t": base.view(3, 4).t(), "expanded": torch.ones(1).expand(64),
                                        "offset": base[5:], "empty": torch.empty(0, 3)}))
loop = [1, 2]
loop.append(loop)
out("state_dict", "seed_self_reference.pt", saved({"w": torch.ones(2), "loop": loop}))
sys.setrecursionlimit(20000)
deep = []
for _ in range(1200):
    deep = [deep]
out("state_dict", "seed_deep.pt", saved({"w": torch.ones(1), "deep": deep}))

# --- IDX: images [3, 28, 28] and labels [3] (the target parses bytes; gzip is zlib's) ---------------
images = bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(range(256)) * 9 + bytes(48)
labels = bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 7, 9])
out("idx", "seed_images.idx", images)
out("idx", "seed_labels.idx", labels)

# --- CIFAR: two CIFAR-10 records (label byte + 3072 pixels), one CIFAR-100 record ----------------
out("cifar", "seed_cifar10.bin", bytes([3]) + bytes(range(256)) * 12 + bytes([9]) + bytes(3072))
out("cifar", "seed_cifar100.bin", bytes([4, 42]) + bytes(range(256)) * 12)
