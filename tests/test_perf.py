"""The fast path computes what the plain path computes, and `bench perf` measures it."""

from __future__ import annotations

import copy
import os
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bench import layers, models
from bench.cli import main
from bench.config import StepOptions
from bench.perf import timing, training
from bench.runtime import tune_cpu_allocator
from bench.train import TrainingStep, float_batch
from evaluators import fid
from evaluators.common import Resources

MODELS = tuple(models.MODELS)
PLAIN = StepOptions(channels_last=False)


def with_library_layers(model: nn.Module) -> nn.Module:
    """The model with torch's own Conv2d / ConvTranspose2d in place of bench.layers' faster equivalents."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Conv2d | nn.ConvTranspose2d) and type(child) not in (nn.Conv2d, nn.ConvTranspose2d):
                setattr(module, name, layers.torch_equivalent(child))
    return model


def two_steps(model_name: str, options: StepOptions, task: str = "multilabel",
              library_layers: bool = False) -> tuple[list[float], dict]:
    """Losses of a labelled and an unlabelled step from the same start, noise and batches."""
    data = timing.synthetic_images(64, 32, 4, task, seed=0)
    torch.manual_seed(0)
    model = models.resolve(model_name)(timing.spec_of(data), **models.model_entry(model_name).options)
    if library_layers:
        model = with_library_layers(model)
    optimizer = torch.optim.SGD(model.parameters(), 1e-4)  # updates proportional to the gradients (Adam's are not)
    step = TrainingStep(model, optimizer, data.images, data.labels, options)
    losses = []
    for labelled in (True, False):
        torch.manual_seed(1)
        losses.append(step(torch.arange(16), labelled).item())
    return losses, {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("model_name", MODELS)
def test_channels_last_steps_compute_the_plain_losses_and_updates(model_name):
    plain_losses, plain_state = two_steps(model_name, PLAIN)
    fast_losses, fast_state = two_steps(model_name, StepOptions(channels_last=True))
    np.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-5)
    for name, value in plain_state.items():
        torch.testing.assert_close(fast_state[name], value, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("model_name", MODELS)
def test_fast_layers_compute_the_library_layers_losses_and_updates(model_name):
    library_losses, library_state = two_steps(model_name, PLAIN, library_layers=True)
    fast_losses, fast_state = two_steps(model_name, StepOptions(channels_last=True))
    np.testing.assert_allclose(fast_losses, library_losses, rtol=1e-5)
    for name, value in library_state.items():
        torch.testing.assert_close(fast_state[name], value, rtol=1e-4, atol=1e-5, msg=name)


LAYERS = [  # (bench.layers layer, torch's layer it replaces, input shape)
    (layers.StridedConvTranspose2d(5, 3, 4, 2, 1), nn.ConvTranspose2d(5, 3, 4, 2, 1), (4, 5, 4, 4)),
    (layers.PhasedConvTranspose2d(5, 3), nn.ConvTranspose2d(5, 3, 4, 2, 1), (4, 5, 6, 6)),
    (layers.PhasedConvTranspose2d(4, 1), nn.ConvTranspose2d(4, 1, 4, 2, 1), (3, 4, 5, 7)),
    (layers.WholeInputConv2d(6, 7, 4, 1), nn.Conv2d(6, 7, 4, 1), (4, 6, 4, 4)),
    (layers.WholeOutputConvTranspose2d(7, 6, 4), nn.ConvTranspose2d(7, 6, 4), (4, 7, 1, 1)),
]


@pytest.mark.parametrize(("fast", "library", "shape"), LAYERS, ids=lambda layer: type(layer).__name__)
def test_fast_layers_are_the_library_layers_in_float64(fast, library, shape):
    assert fast.state_dict().keys() == library.state_dict().keys()
    fast, library = fast.double(), library.double()
    library.load_state_dict(fast.state_dict())
    x = torch.randn(shape, dtype=torch.float64)
    weights = torch.randn(library(x).shape, dtype=torch.float64)  # a loss Σ weights · output with known gradients
    results = []
    for layer in (fast, library):
        inputs = x.clone().requires_grad_()
        output = layer(inputs)
        (weights * output).sum().backward()
        results.append((output, inputs.grad, layer.weight.grad, layer.bias.grad))
    for fast_value, library_value in zip(*results, strict=True):
        torch.testing.assert_close(fast_value, library_value, rtol=1e-12, atol=1e-12)


def test_whole_image_layers_refuse_inputs_they_do_not_cover():
    with pytest.raises(ValueError, match="needs a"):
        layers.WholeInputConv2d(6, 7, 4, 1)(torch.zeros(2, 6, 5, 5))
    with pytest.raises(ValueError, match="needs a"):
        layers.WholeOutputConvTranspose2d(7, 6, 4)(torch.zeros(2, 7, 2, 2))
    with pytest.raises(ValueError, match="4×4, stride-2"):
        layers.PhasedConvTranspose2d(4, 1, 3, 1, 1)


def test_m2_exact_class_sum_is_unchanged_by_the_fast_path():
    plain_losses, _ = two_steps("m2", PLAIN, task="multiclass")
    fast_losses, _ = two_steps("m2", StepOptions(channels_last=True), task="multiclass")
    np.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-5)


@pytest.mark.slow
def test_compiled_ccvae_loss_equals_the_eager_loss(monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "fallback_random", True)  # the compiled graph draws eager's random numbers
    data = timing.synthetic_images(32, 32, 4, "multilabel", seed=0)
    torch.manual_seed(0)
    model = models.resolve("ccvae")(timing.spec_of(data))
    compiled = torch.compile(copy.deepcopy(model).loss)
    x = float_batch(data.images, torch.arange(16), channels_last=False)
    for labels in (data.labels[:16], None):
        torch.manual_seed(2)
        eager_loss, _ = model.loss(x, labels)
        torch.manual_seed(2)
        compiled_loss, _ = compiled(x, labels)
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-3)


def test_the_data_pipeline_slices_the_cache_into_floats_in_the_steps_memory_format():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    index = torch.tensor([3, 7])
    batch = float_batch(images, index, channels_last=True)
    assert batch.dtype == torch.float32 and batch.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(batch, images[index].float() / 255)


def test_allocator_tuning_applies_on_glibc_and_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("BENCH_MALLOC", "default")
    assert tune_cpu_allocator() == "default"
    monkeypatch.delenv("BENCH_MALLOC")
    expected = "tuned" if os.uname().sysname == "Linux" else "default"
    assert tune_cpu_allocator() == expected


def fake_authors_checkout(root):
    """The layout `--reference` expects (models/ccvae.py with their constructor and sup/unsup), with a tiny
    stand-in model: the authors' code itself never enters this repository."""
    (root / "models").mkdir(parents=True)
    (root / "models" / "ccvae.py").write_text(textwrap.dedent("""
        import torch

        class CCVAE(torch.nn.Module):
            def __init__(self, z_dim, num_classes, im_shape, use_cuda, prior_fn):
                super().__init__()
                self.net = torch.nn.Linear(im_shape[0] * im_shape[1] * im_shape[2], num_classes)
                self.prior = prior_fn()

            def sup(self, x, y):
                return torch.nn.functional.binary_cross_entropy_with_logits(self.net(x.flatten(1)), y)

            def unsup(self, x):
                return self.net(x.flatten(1)).pow(2).mean()
    """))
    return root


LAYER_NAMES = ("StridedConvTranspose2d", "PhasedConvTranspose2d", "WholeInputConv2d",
               "WholeOutputConvTranspose2d")


@pytest.mark.slow
def test_perf_cli_writes_one_row_per_measurement_and_compares_with_the_reference(tmp_path, capsys):
    out = tmp_path / "perf.csv"  # --out is a folder: perf.csv and perf-profile.csv are written into it
    reference = fake_authors_checkout(tmp_path / "ccvae_pytorch")
    assert main(["perf", "--models", "ccvae,m2", "--batch", "8", "--steps", "1", "--repeats", "1",
                 "--evaluators", "classification,fid", "--eval-samples", "16", "--reference", str(reference),
                 "--epoch-images", "40", "--profile",
                 "--device", "cpu", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(out)
    rows = list(zip(frame.model, frame["mode"], frame.implementation, strict=True))
    assert rows == [("ccvae", "sup", "bench"), ("ccvae", "sup", "authors"), ("ccvae", "unsup", "bench"),
                    ("ccvae", "unsup", "authors"), ("m2", "sup", "bench"), ("m2", "unsup", "bench"),
                    ("-", "data", "bench"),
                    *[(name, "layer", implementation) for name in LAYER_NAMES for implementation in ("bench", "torch")],
                    ("ccvae", "epoch", "bench"),
                    ("ccvae", "eval:classification", "bench"), ("ccvae", "eval:fid", "bench")]
    assert list(frame.columns[:5]) == ["model", "mode", "device", "batch", "images_per_s"]
    assert (frame.images_per_s > 0).all() and (frame.device == "cpu").all()
    assert {"machine", "torch", "torchvision", "python", "allocator", "channels_last"} <= set(frame.columns)
    ours = frame[(frame.implementation == "bench") & (frame.model == "ccvae") & (frame["mode"] == "sup")]
    authors = frame[(frame.implementation == "authors") & (frame["mode"] == "sup")]
    assert ours.vs_authors.iloc[0] == pytest.approx(ours.images_per_s.iloc[0] / authors.images_per_s.iloc[0], abs=0.006)
    assert 0 < frame.loc[frame["mode"] == "data", "share_of_step"].iloc[0]
    fast_layers = frame[(frame["mode"] == "layer") & (frame.implementation == "bench")].set_index("model")
    torch_layers = frame[(frame["mode"] == "layer") & (frame.implementation == "torch")].set_index("model")
    np.testing.assert_allclose(fast_layers.vs_torch, fast_layers.images_per_s / torch_layers.images_per_s, atol=0.006)
    _, note = fid.random_weights_stand_in(Resources(), tmp_path, torch.device("cpu"))
    assert frame.loc[frame["mode"] == "eval:fid", "note"].fillna("").iloc[0] == note  # random weights where absent
    printed = capsys.readouterr().out
    assert "eval:classification" in printed
    operators = pd.read_csv(tmp_path / "perf-profile.csv")
    steps = operators.groupby(["model", "mode", "implementation"], sort=False)
    assert list(steps.groups) == [("ccvae", "sup", "bench"), ("ccvae", "sup", "authors"), ("ccvae", "unsup", "bench"),
                                  ("ccvae", "unsup", "authors"), ("m2", "sup", "bench"), ("m2", "unsup", "bench")]
    np.testing.assert_allclose(steps.share.sum(), 1.0)
    shares = {key: training.convolution_share(step) for key, step in steps}
    assert all(share > 0.1 for (_, _, implementation), share in shares.items() if implementation == "bench")
    assert shares[("ccvae", "sup", "authors")] == 0  # the stand-in is one linear layer
    assert "ccvae unsup (authors):" in printed and "convolutions" in printed


def test_operator_profile_attributes_a_convolution_to_convolutions_and_a_matrix_product_to_none():
    settings = timing.PerfSettings(steps=3, warmup=1)
    images, kernels = torch.randn(32, 16, 48, 48), torch.randn(32, 16, 3, 3)  # large enough to dominate its step
    matrix = torch.randn(256, 256)
    convolution = training.operator_profile(lambda call: torch.conv2d(images, kernels), settings, torch.device("cpu"))
    product = training.operator_profile(lambda call: matrix @ matrix, settings, torch.device("cpu"))
    assert training.convolution_share(convolution) > 0.9 and training.convolution_share(product) == 0
    assert convolution.calls_per_step[convolution.operator == "aten::mkldnn_convolution"].item() == 1
    assert convolution.share.sum() == pytest.approx(1.0)


def test_steps_compared_side_by_side_take_turns_repeat_by_repeat():
    calls = []
    settings = timing.PerfSettings(steps=2, repeats=2, warmup=1)

    def step(name, pause):
        def call(index):
            calls.append((name, index))
            time.sleep(pause)
        return call

    fast, slow = timing.interleaved_seconds([step("ours", 0.0), step("authors", 0.02)], settings, torch.device("cpu"))
    assert calls == [("ours", 0), ("authors", 0),  # warm-up, then each repeat times both in turn
                     ("ours", 1), ("ours", 2), ("authors", 1), ("authors", 2),
                     ("ours", 3), ("ours", 4), ("authors", 3), ("authors", 4)]
    assert slow >= 0.02 > fast


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "nope"], "unknown model 'nope'"),
    (["--evaluators", "bogus"], "unknown evaluator 'bogus'"),
    (["--batch", "0"], "--batch 0 must be at least 1"),
    (["--reference", "/nonexistent"], "has no models/ccvae.py"),
])
def test_bad_perf_input_is_one_line_and_exit_code_2(args, message, tmp_path, capsys):
    assert main(["perf", "--models", "ccvae", "--steps", "1", "--repeats", "1", "--evaluators", "none",
                 "--batch", "4", *args, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert not (tmp_path / "p.csv").exists()
