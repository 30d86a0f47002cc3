"""PyTorch's MNIST example, run by nptfunc with only its import lines changed.

``Net``, ``train`` and ``test`` below are those of pytorch/examples' ``mnist/main.py``
character for character; the six import lines are the port (``torch`` ->
``nptfunc.torch``). What differs is the data: there is no torchvision here, so
``main`` feeds scikit-learn's 8x8 digits, scaled to 24x24 and padded to 28x28,
normalised with MNIST's mean and standard deviation, through
``DataLoader(TensorDataset(...))``.

Run::

    python examples/mnist_port.py --epochs 4

``RESNET`` and ``MLP`` are two more torch programs for the same data: a small
ResNet (two BasicBlocks with ``out + identity``) and an MLP kept in an
``nn.ModuleList`` with a Python loop in ``forward``. The tests run all three with
``nptfunc.torch`` and with ``torch`` itself.
"""

from __future__ import annotations

import argparse

import _digits  # the sibling module with the digits (the script's folder is on sys.path)
import numpy as np

import nptfunc.torch as torch
import nptfunc.torch.nn as nn
import nptfunc.torch.nn.functional as F
import nptfunc.torch.optim as optim
from nptfunc.torch.optim.lr_scheduler import StepLR
from nptfunc.torch.utils.data import DataLoader, TensorDataset


# --------------------------------------------------- torch's example, unchanged
class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item()))
            if args.dry_run:
                break


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction='sum').item()  # sum up batch loss
            pred = output.argmax(dim=1, keepdim=True)  # get the index of the max log-probability
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)

    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'.format(
        test_loss, correct, len(test_loader.dataset),
        100. * correct / len(test_loader.dataset)))
    return correct / len(test_loader.dataset)  # added: the tests read the accuracy


# ------------------------------------------------- two more torch-style models
class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm and ``out + identity``."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        identity = x
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return F.relu(out)


class ResNet(nn.Module):
    """A small ResNet: a strided stem, two BasicBlocks, average pooling, a classifier."""

    def __init__(self, channels=16, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.block1 = BasicBlock(channels)
        self.block2 = BasicBlock(channels)
        self.fc = nn.Linear(channels * 7 * 7, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.block2(self.block1(x))
        x = F.avg_pool2d(x, 2)
        return F.log_softmax(self.fc(torch.flatten(x, 1)), dim=1)


class MLP(nn.Module):
    """An MLP whose layers sit in an ``nn.ModuleList``, run by a Python loop."""

    def __init__(self, sizes=(784, 128, 64, 10)):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])

    def forward(self, x):
        x = torch.flatten(x, 1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return F.log_softmax(x, dim=1)


MODELS = {"net": Net, "resnet": ResNet, "mlp": MLP}


# ------------------------------------------------------------------------ data
def digits_28x28(limit=None):
    """scikit-learn's 8x8 digits as MNIST-like 28x28 images, normalised as the example does.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: float32 ``(N, 1, 28, 28)`` and int64
        ``(N,)``, split 80/20 by the digits examples' fixed key.
    """
    (x_train, y_train), (x_test, y_test) = _digits.load_digits(limit)

    def to_28(x):
        big = np.kron(x, np.ones((1, 1, 3, 3), np.float32))  # 8x8 -> 24x24
        big = np.pad(big, ((0, 0), (0, 0), (2, 2), (2, 2)))  # -> 28x28, as MNIST's border
        return ((big - 0.1307) / 0.3081).astype(np.float32)

    return (to_28(x_train), y_train.astype(np.int64)), (to_28(x_test), y_test.astype(np.int64))


def main(argv=None):
    parser = argparse.ArgumentParser(description='PyTorch MNIST Example, ported to nptfunc')
    parser.add_argument('--model', choices=sorted(MODELS), default='net')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--test-batch-size', type=int, default=1000)
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--lr', type=float, default=1.0)
    parser.add_argument('--gamma', type=float, default=0.7)
    parser.add_argument('--dry-run', action='store_true', default=False)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--log-interval', type=int, default=10)
    parser.add_argument('--limit', type=int, default=None, help='use at most this many images per split')
    parser.add_argument('--save-model', action='store_true', default=False)
    parser.add_argument('--stop-at', type=float, default=None, help='stop once test accuracy reaches this')
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    (x_train, y_train), (x_test, y_test) = digits_28x28(args.limit)
    train_loader = DataLoader(TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
                              batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test)),
                             batch_size=args.test_batch_size)

    model = MODELS[args.model]().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    accuracies = []
    for epoch in range(1, args.epochs + 1):
        train(args, model, device, train_loader, optimizer, epoch)
        accuracies.append(test(model, device, test_loader))
        scheduler.step()
        if args.stop_at is not None and accuracies[-1] >= args.stop_at:
            break
    if args.save_model:
        torch.save(model.state_dict(), "mnist_cnn.pt")
    return accuracies


if __name__ == '__main__':
    main()
