"""Why seed 003's alphabet model fitted its training data (loss 2e-5) and failed its test (loss 7.2, 0/7).

    python docs/examples/alphabet_seed003.py        # about 15 s on a 2-core CPU

A minimal re-run of the seed's setup, with the one thing changed that matters. What the seed shows is
kept: a hand-written tanh RNN (one-hot lookup, x·W_x + h·W_h + b, Xavier-uniform weights, U(0, 1)
biases), ``forward`` returning the logits of the *last* state only, cross-entropy, 1000 full-batch epochs.
What it does not show is filled in and printed: the data are all windows of 3 letters over a..z with the
letter after each as its target (23 windows; a random third held out gives the seed's 7 test windows),
hidden size 64, Adam at lr 0.01.

Two trainings per split, identical except for the loss:

  last     the seed's: one target per window, the letter after it
  every    every position predicts its next letter (a language model's loss), same windows, same test

and, for each test window, whether its answer letter is a training target anywhere.
"""

from __future__ import annotations

import math
import string

import torch
import torch.nn.functional as F
from torch import nn

LETTERS = string.ascii_lowercase
WINDOW, HIDDEN, EPOCHS, LR = 3, 64, 1000, 0.01


class SeedRNN(nn.Module):
    """The seed's model, written afresh: h_t = tanh(x_t W_x + h_{t-1} W_h + b_h), logits = h W_o + b_o."""

    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.onehot = torch.eye(vocab)                           # fixed lookup table, as the seed's
        self.W_x = nn.Parameter(nn.init.xavier_uniform_(torch.empty(vocab, hidden)))
        self.W_o = nn.Parameter(nn.init.xavier_uniform_(torch.empty(hidden, vocab)))
        self.W_h = nn.Parameter(nn.init.xavier_uniform_(torch.empty(hidden, hidden)))
        self.b_h = nn.Parameter(torch.rand(hidden))
        self.b_o = nn.Parameter(torch.rand(vocab))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.onehot[w]                                       # (N, T, V)
        h = x.new_zeros(x.shape[0], self.W_h.shape[0])
        logits = []
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ self.W_x + h @ self.W_h + self.b_h)
            logits.append(h @ self.W_o + self.b_o)
        return torch.stack(logits, 1)                            # (N, T, V): every step's prediction


def run(seed: int, loss_at: str):
    torch.manual_seed(seed)
    seq = torch.arange(26)
    x = torch.stack([seq[i:i + WINDOW] for i in range(26 - WINDOW)])          # (23, 3)
    y = torch.stack([seq[i + 1:i + WINDOW + 1] for i in range(26 - WINDOW)])  # (23, 3): next letters
    order = torch.randperm(len(x))
    test, train = order[:len(x) // 3], order[len(x) // 3:]
    model = SeedRNN(26, HIDDEN)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        logits = model(x[train])
        if loss_at == "last":                                    # the seed: final step only
            loss = F.cross_entropy(logits[:, -1], y[train, -1])
        else:                                                    # every step
            loss = F.cross_entropy(logits.reshape(-1, 26), y[train].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final_train = F.cross_entropy(model(x[train])[:, -1], y[train, -1]).item()
        test_logits = model(x[test])[:, -1]
        test_loss = F.cross_entropy(test_logits, y[test, -1]).item()
        right = int((test_logits.argmax(-1) == y[test, -1]).sum())
        p_answer = test_logits.softmax(-1).gather(1, y[test, -1:]).mean().item()
    taught = set((y[train, -1] if loss_at == "last" else y[train]).flatten().tolist())
    answers_taught = sum(int(a) in taught for a in y[test, -1].tolist())
    return final_train, test_loss, right, len(test), answers_taught, p_answer, \
        "".join(LETTERS[int(a)] for a in y[test, -1])


def main() -> None:
    torch.set_num_threads(1)                                     # tiny tensors: threads only add overhead
    print(f"uniform guess over 26 letters: test loss ln 26 = {math.log(26):.3f}")
    print(f"{'seed':>4} {'loss':>5} {'train':>9} {'test':>7} {'right':>6} {'answers taught':>15} "
          f"{'p(answer)':>9}  test answers")
    for seed in range(3):
        for loss_at in ("last", "every"):
            tr, te, right, n, taught, p, answers = run(seed, loss_at)
            print(f"{seed:>4} {loss_at:>5} {tr:9.2e} {te:7.3f} {right:>3}/{n:<2} {taught:>11}/{n:<3} "
                  f"{p:9.4f}  {answers}")


if __name__ == "__main__":
    main()
