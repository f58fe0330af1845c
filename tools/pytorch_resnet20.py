"""Reference: PyTorch CPU training throughput of CIFAR ResNet-20 (projection
shortcuts, 272,474 parameters, the same architecture as tfclf's `resnet20`),
32x32x3, SGD momentum, random data. The peer that tfclf's CPU training speed is
measured against, on the same machine, in the same run.

    python -m venv ~/pt && ~/pt/bin/pip install torch==2.13.0 numpy
    ~/pt/bin/python pytorch_resnet20.py [--batch 128] [--steps 40] [--bf16]

(pip on these machines offers a CPU build of torch 2.13.) Prints one line:
`pytorch resnet20 32x32x3 float32 channels_last: N images/s`.
"""

import argparse
import time

import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.short(x))


def resnet20(num_classes=10):
    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for k in range(3):
            layers.append(Block(cin, cout, stride if k == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    a = p.parse_args()
    torch.manual_seed(0)
    model = resnet20().to(memory_format=torch.channels_last)
    assert sum(q.numel() for q in model.parameters()) == 272_474
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(a.batch, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    rate = a.batch * a.steps / (time.perf_counter() - start)
    print(
        f"pytorch resnet20 32x32x3 {'bfloat16' if a.bf16 else 'float32'} channels_last: "
        f"{rate:,.0f} images/s"
    )


if __name__ == "__main__":
    main()
