#!/usr/bin/python3
"""Reference PGD and forward timings in plain PyTorch, for comparison with ardent's C++ benchmarks.

The PGD loop is written the way common Python code writes it (torchattacks' PGD, the papers'
repositories): the model in eval mode with its parameters still requiring grad, a fresh autograd
graph per step, the input gradient taken with torch.autograd.grad, and the projection done with
two clamps. Nothing here is tuned: the point is to time what people usually run.

Run with Debian's python3-torch, whose ATen is the one the C++ side links against:
    /usr/bin/python3 benchmarks/python/pgd_reference.py --model resnet18 --batch 128 --threads 2
"""
import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from models import MobileNetV2, ResNet18, SmallCNN

# Model name -> (constructor, shape of one image, eps, alpha): the settings of the C++ side.
SETTINGS = {
    'small_cnn': (lambda: SmallCNN(width=16), (1, 28, 28), 0.1, 0.01),
    'mobilenet_v2': (MobileNetV2, (3, 32, 32), 8 / 255, 2 / 255),
    'resnet18': (ResNet18, (3, 32, 32), 8 / 255, 2 / 255),
}


def setup(name, batch, seed=0):
    """Random-init model (seed 0), images uniform in [0, 1], labels in [0, 10), eps and alpha."""
    make_model, shape, eps, alpha = SETTINGS[name]
    torch.manual_seed(seed)
    model = make_model()
    images = torch.rand(batch, *shape)
    labels = torch.randint(0, 10, (batch,))
    return model, images, labels, eps, alpha


def pgd(model, images, labels, eps, alpha, steps):
    """L-inf PGD with a uniform random start in the eps ball, as torchattacks writes it."""
    adv = images + torch.empty_like(images).uniform_(-eps, eps)
    adv = torch.clamp(adv, 0, 1).detach()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), labels)
        grad = torch.autograd.grad(loss, [adv])[0]
        adv = adv.detach() + alpha * grad.sign()
        delta = torch.clamp(adv - images, -eps, eps)
        adv = torch.clamp(images + delta, 0, 1).detach()
    return adv


def _median_seconds(fn, repeats):
    """Median wall time of fn() over `repeats` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_forward(model, x, repeats):
    """Seconds per inference forward (eval mode, inference_mode), median over repeats."""
    model.eval()

    def forward():
        with torch.inference_mode():
            model(x)

    return _median_seconds(forward, repeats)


def time_pgd_step(model, x, labels, eps, alpha, steps, repeats):
    """Seconds per PGD step: the time of a whole attack (random start included) divided by steps,
    median over repeats. The parameters keep requires_grad, as in common code."""
    model.eval()
    return _median_seconds(lambda: pgd(model, x, labels, eps, alpha, steps), repeats) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', choices=sorted(SETTINGS), default='resnet18')
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--steps', type=int, default=2, help='PGD steps per timed attack')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, x, labels, eps, alpha = setup(args.model, args.batch)
    forward = time_forward(model, x, args.repeats)
    step = time_pgd_step(model, x, labels, eps, alpha, args.steps, args.repeats)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{args.model}, batch {args.batch}')
    print(f'forward:  {forward:.4f} s ({args.batch / forward:.1f} img/s)')
    print(f'PGD step: {step:.4f} s ({args.steps} steps per attack)')


if __name__ == '__main__':
    main()
