#!/usr/bin/python3
"""Makes the hostile files of issue 22 that tests/reliability_test.cpp reads ([hostile] cases).

Run with Debian's python3-torch (``/usr/bin/python3 tests/data/hostile/make_hostile.py``) from the
repository root; it rewrites the files next to this script. Each file is small on disk and claims
much, or carries code that runs when opened by torch::jit::load:

  evil_setstate.pt   TorchScript module whose __setstate__ loops for ever (issue 22, defect 1)
  evil_alloc.pt      TorchScript module whose __setstate__ allocates 1 GiB (defect 1's variant)
  pickle_bomb.pt     zip whose deflated data.pkl is 20,000,000 NONE opcodes (defect 2: 3.19 GB before)
  deflated_tensor.pt state dict whose one tensor record (64 MiB of zeros) is deflated (defect 2)
  idx_bomb-images-idx3-ubyte.gz
                     gzip IDX file whose header promises 65,536 x 28 x 28 bytes, all present,
                     inflating 1,000 times (defect 2: the reader inflated everything first)
"""
import gzip
import io
import os
import struct
import zipfile
from typing import Tuple

import torch

here = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(here, name)


class Looping(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]):
        self.w = state[0]
        self.training = state[1]
        i = 0
        while i >= 0:
            i = (i + 1) % 1000


class Allocating(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]):
        self.w = torch.ones(1 << 28) + state[0]
        self.training = state[1]


def deflated(name, records):
    """A zip archive like torch.save's, every record deflated (level 9)."""
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for record, data in records:
            z.writestr("archive/" + record, data)


def main():
    torch.jit.script(Looping()).save(path("evil_setstate.pt"))
    torch.jit.script(Allocating()).save(path("evil_alloc.pt"))

    # PROTO 2, 20 million NONE, then STOP: valid pickle opcodes, each a value on the stack.
    deflated("pickle_bomb.pt", [("data.pkl", b"\x80\x02" + b"N" * 20_000_000 + b"."), ("version", b"3\n")])

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(16 << 20)}, buffer)
    stored = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    deflated("deflated_tensor.pt",
             [(info.filename.split("/", 1)[1], stored.read(info.filename)) for info in stored.infolist()])

    count, rows, cols = 1 << 16, 28, 28
    with gzip.open(path("idx_bomb-images-idx3-ubyte.gz"), "wb", compresslevel=9) as f:
        f.write(struct.pack(">IIII", 0x803, count, rows, cols))
        f.write(bytes(count * rows * cols))


if __name__ == "__main__":
    main()
