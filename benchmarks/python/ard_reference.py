#!/usr/bin/python3
"""One ARD training step (Goldblum et al., AAAI 2020) written like the official code
(github.com/goldblum/AdversariallyRobustDistillation, main.py), timed on random CIFAR-shaped data.

What the official step does, and so what is timed here:
  - the student (MobileNetV2) is in train mode for the whole step, the attack included, so
    BatchNorm uses batch statistics (and updates its running statistics) at every attack forward;
  - the attack is PGD-10, cross-entropy summed over the batch, eps 8/255, step 2/255, uniform
    random start, min/max projection then a clamp to [0, 1];
  - the student runs once more on the adversarial images (the outputs the loss uses);
  - the teacher (ResNet18, eval mode, parameters frozen) runs on the clean images, not under
    no_grad;
  - the student runs on the clean images for the cross-entropy term even though alpha = 1 weighs it
    by zero, so its backward is still paid for;
  - loss = alpha*T*T*KLDiv(log_softmax(outputs/T), softmax(teacher/T)) + (1-alpha)*CE, T = 30,
    with nn.KLDivLoss() at its default reduction 'mean' (divides by batch * classes);
  - SGD, lr 0.1, momentum 0.9, weight decay 2e-4: zero_grad, backward, step.

    /usr/bin/python3 benchmarks/python/ard_reference.py --batch 128 --threads 2
"""
import argparse
import os
import statistics
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import MobileNetV2, ResNet18

EPS, STEP_SIZE, NUM_STEPS = 8 / 255, 2 / 255, 10
TEMP, ALPHA = 30.0, 1.0

# nn.KLDivLoss() warns at every call that 'mean' is not 'batchmean'; 'mean' is what the official
# code computes, so the warning is expected here.
warnings.filterwarnings('ignore', message='reduction: \'mean\' divides the total loss')


def attack_pgd(student, inputs, targets):
    """The official AttackPGD.forward: returns the student's outputs on x_adv, and x_adv."""
    x = inputs.detach()
    x = x + torch.zeros_like(x).uniform_(-EPS, EPS)
    for _ in range(NUM_STEPS):
        x.requires_grad_()
        with torch.enable_grad():
            loss = F.cross_entropy(student(x), targets, reduction='sum')
        grad = torch.autograd.grad(loss, [x])[0]
        x = x.detach() + STEP_SIZE * torch.sign(grad.detach())
        x = torch.min(torch.max(x, inputs - EPS), inputs + EPS)
        x = torch.clamp(x, 0.0, 1.0)
    return student(x), x


class ArdStep:
    """Student, teacher, optimizer and losses, set up as in the official main.py."""

    def __init__(self, seed=0):
        torch.manual_seed(seed)
        self.student = MobileNetV2(num_classes=10)
        self.teacher = ResNet18(num_classes=10)
        for param in self.teacher.parameters():
            param.requires_grad = False
        self.teacher.eval()
        self.kl_loss = nn.KLDivLoss()
        self.xent_loss = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=0.1, momentum=0.9,
                                         weight_decay=2e-4)

    def __call__(self, inputs, targets):
        self.student.train()
        self.optimizer.zero_grad()
        outputs, _ = attack_pgd(self.student, inputs, targets)
        teacher_outputs = self.teacher(inputs)
        basic_outputs = self.student(inputs)
        loss = (ALPHA * TEMP * TEMP
                * self.kl_loss(F.log_softmax(outputs / TEMP, dim=1),
                               F.softmax(teacher_outputs / TEMP, dim=1))
                + (1.0 - ALPHA) * self.xent_loss(basic_outputs, targets))
        loss.backward()
        self.optimizer.step()
        return loss.item()


def time_ard_step(batch, repeats):
    """Images per second of the ARD step (median step time over repeats), after one untimed
    warm-up step. Random images in [0, 1] and random labels in [0, 10)."""
    step = ArdStep()
    inputs = torch.rand(batch, 3, 32, 32)
    targets = torch.randint(0, 10, (batch,))
    step(inputs, targets)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(inputs, targets)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rate = time_ard_step(args.batch, args.repeats)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}')
    print(f'ARD step: {rate:.1f} img/s ({args.batch / rate:.3f} s per step)')


if __name__ == '__main__':
    main()
