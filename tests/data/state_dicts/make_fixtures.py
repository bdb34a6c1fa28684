#!/usr/bin/env python3
"""Writes the state-dict fixtures of tests/models_test.cpp with Python's torch.save.

Run from this folder with Debian's python3-torch (1.13.1):
    /usr/bin/python3 make_fixtures.py
Every file is deterministic given the seed; see README.md for what each holds.
"""
import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    """ardent::models::SmallCNN (include/ardent/models/small_cnn.hpp), width w."""

    def __init__(self, width=4, num_classes=10):
        super().__init__()
        self.c1 = nn.Conv2d(1, width, 3, padding=1)
        self.c2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * 7 * 7, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


class TinyBN(nn.Module):
    """A conv + BatchNorm model, defined the same way in tests/models_test.cpp, to check buffers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


def raw(t, path):
    a = t.detach().contiguous().numpy()
    a.astype(a.dtype.newbyteorder("<")).tofile(path)


def main():
    torch.manual_seed(20240501)

    cnn = SmallCNN(width=4).eval()
    x = torch.rand(2, 1, 28, 28)
    raw(x, "smallcnn_w4_input.bin")
    raw(cnn(x), "smallcnn_w4_logits.bin")
    # DataParallel prefixes every key with "module." (it runs on the CPU too).
    torch.save(nn.DataParallel(cnn).state_dict(), "smallcnn_w4_dataparallel.pt")
    # A training checkpoint: the state dict nested under "state_dict", next to other Python objects.
    torch.save({"epoch": 7, "best_acc": np.float64(0.5), "args": argparse.Namespace(lr=0.1, arch="smallcnn"),
                "state_dict": cnn.state_dict(), "history": [1.5, 0.75]},
               "smallcnn_w4_checkpoint.pt")
    # The legacy (pre-1.6) format, which ardent rejects with a message saying how to convert it.
    torch.save(cnn.state_dict(), "smallcnn_w4_legacy.pt", _use_new_zipfile_serialization=False)

    tiny = TinyBN().train()
    with torch.no_grad():
        for _ in range(3):  # running statistics and num_batches_tracked = 3
            tiny(torch.randn(8, 3, 6, 6) * 2 + 0.5)
    tiny.eval()
    xt = torch.rand(2, 3, 6, 6)
    raw(xt, "tinybn_input.bin")
    raw(tiny(xt), "tinybn_logits.bin")
    torch.save(tiny.state_dict(), "tinybn.pt")


if __name__ == "__main__":
    main()
