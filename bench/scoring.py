"""Classification accuracy and the majority-class baseline (pure functions)."""

from __future__ import annotations

import torch

from bench.api import Task, to_float_images


@torch.no_grad()
def predict(model, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """model.classify over uint8 `images` (on the model's device), in batches; float probs on CPU."""
    was_training = model.training
    model.eval()
    outputs = [model.classify(to_float_images(images[i : i + batch_size])).cpu()
               for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(outputs)


def per_label_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-label: accuracy of each label at threshold 0.5, shape (L,)."""
    return ((probs > 0.5).float() == labels).float().mean(0)


def accuracy(probs: torch.Tensor, labels: torch.Tensor, task: Task) -> float:
    """Mean per-label accuracy (multi-label) or top-1 accuracy (multi-class)."""
    if task == "multilabel":
        return float(per_label_accuracy(probs, labels).mean())
    return float((probs.argmax(1) == labels.argmax(1)).float().mean())


def majority_accuracy(train_labels: torch.Tensor, test_labels: torch.Tensor, task: Task) -> float:
    """Accuracy of always predicting the training set's majority value per label (or class)."""
    frequencies = train_labels.float().mean(0)
    if task == "multilabel":
        constant = (frequencies > 0.5).float().expand_as(test_labels)
        return float((constant == test_labels).float().mean())
    return float(test_labels[:, int(frequencies.argmax())].mean())
