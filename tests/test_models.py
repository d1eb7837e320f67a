"""The Table 1 network: shapes for every patch size and latent size, size, linear ends."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aeinspect.errors import InputError
from aeinspect.kinds.config import ModelConfig
from aeinspect.nets.autoencoder import Autoencoder, UpsamplingOutput, count_parameters


@pytest.mark.parametrize("patch", [32, 64, 128, 256])
@pytest.mark.parametrize("latent", [1, 100, 500])
def test_output_and_latent_shapes(patch: int, latent: int) -> None:
    model = Autoencoder(patch, latent=latent)
    x = torch.rand(2, 1, patch, patch)
    code = model.encoder(x)
    assert code.shape == (2, latent, 1, 1)
    assert model(x).shape == (2, 1, patch, patch)


def test_colour_model_keeps_three_channels() -> None:
    model = Autoencoder(64, channels=3)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def table1_parameter_count(d: int, k: int = 1, latent_kernel: int = 8) -> int:
    """Weights + biases of Table 1's encoder and its mirrored decoder, counted by hand."""
    encoder = [(k, 32, 4), (32, 32, 4), (32, 32, 3), (32, 64, 4), (64, 64, 3), (64, 128, 4),
               (128, 64, 3), (64, 32, 3), (32, d, latent_kernel)]  # fmt: skip
    decoder = [(cout, cin, kernel) for cin, cout, kernel in reversed(encoder)]
    return sum(cin * cout * kernel * kernel + cout for cin, cout, kernel in encoder + decoder)


def test_parameter_count_of_the_paper_network() -> None:
    model = Autoencoder(128, latent=100)
    assert count_parameters(model) == table1_parameter_count(100) == 1_048_549


def test_latent_code_and_output_are_linear() -> None:
    model = Autoencoder(32, latent=8)
    assert isinstance(model.encoder[-1], nn.Conv2d)
    assert isinstance(model.decoder[-1], nn.ConvTranspose2d)
    activations = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(activations) == 16
    assert all(m.negative_slope == 0.2 for m in activations)
    # a linear output can leave [0, 1]; a sigmoid or ReLU at the end could not go negative
    with torch.no_grad():
        model.decoder[-1].bias.fill_(-5.0)
    assert model(torch.rand(1, 1, 32, 32)).max() < 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"patch_size": 40}, "multiple of 16"),
        ({"patch_size": 16}, "at least 32"),
        ({"latent": 0}, "--latent"),
        ({"window": 10}, "odd"),
        ({"kind": "gan"}, "--model"),
    ],
)
def test_bad_model_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ModelConfig(**settings)


def test_wrong_input_shape_says_what_was_received() -> None:
    model = Autoencoder(32)
    with pytest.raises(ValueError, match=r"got \(1, 1, 64, 64\)"):
        model(torch.rand(1, 1, 64, 64))


@pytest.mark.parametrize("channels", [1, 3])
def test_output_layer_of_the_model_is_the_transposed_conv(channels: int) -> None:
    model = Autoencoder(32, latent=8, channels=channels)
    layer = model.decoder[-1]
    reference = nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1)
    reference.load_state_dict(layer.state_dict())
    h = torch.randn(3, 32, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(layer(h), reference(h), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer(h), reference(h), atol=1e-5, rtol=0)  # with gradients
    assert list(model.state_dict())[-2:] == ["decoder.16.weight", "decoder.16.bias"]


@pytest.mark.parametrize(("cout", "size"), [(1, 64), (3, 8), (2, 5)])
def test_output_layer_without_gradients_equals_the_transposed_convolution(
    cout: int, size: int
) -> None:
    layer = UpsamplingOutput(32, cout)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(3, 32, size, size, generator=torch.Generator().manual_seed(cout))
    expected = F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1)
    with torch.no_grad():
        for batch in (x, x.to(memory_format=torch.channels_last)):
            torch.testing.assert_close(layer(batch), expected.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("input_needs_grad", [True, False])
def test_output_layer_gradients_equal_the_transposed_convolution(input_needs_grad: bool) -> None:
    layer = UpsamplingOutput(32, 2)
    x = torch.randn(3, 32, 8, 8, generator=torch.Generator().manual_seed(0))
    x = x.to(memory_format=torch.channels_last).requires_grad_(input_needs_grad)
    reference = nn.ConvTranspose2d(32, 2, 4, stride=2, padding=1)
    reference.load_state_dict(layer.state_dict())
    x_reference = x.detach().clone().requires_grad_(input_needs_grad)
    upstream = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    layer(x).backward(upstream)
    reference(x_reference).backward(upstream)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.bias.grad, reference.bias.grad, atol=1e-5, rtol=1e-5)
    if input_needs_grad:
        torch.testing.assert_close(x.grad, x_reference.grad, atol=1e-5, rtol=1e-5)
    else:
        assert x.grad is None


def test_a_network_built_empty_takes_the_shapes_of_its_fitted_buffers() -> None:
    from aeinspect.nets.resizable import ResizableBuffers

    class Bank(ResizableBuffers):
        resizable = ("vectors",)

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("vectors", torch.zeros(0, 3))
            self.register_buffer("fixed", torch.zeros(2))

    fitted = Bank()
    fitted.vectors = torch.arange(15.0).reshape(5, 3)
    fresh = Bank()
    fresh.load_state_dict(fitted.state_dict())
    assert torch.equal(fresh.vectors, fitted.vectors)
    with pytest.raises(RuntimeError, match="size mismatch"):  # other buffers keep their shape
        fresh.load_state_dict({**fitted.state_dict(), "fixed": torch.zeros(3)})
