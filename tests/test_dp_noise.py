"""DP-SGD noise and Poisson sampling come from the ChaCha20 stream, with the right scale."""

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from scipy import stats
from torch import nn

from fedsynth.common.dp.dp_sgd import DPSGD, DPStepConfig, _secure_optimizer, poisson_indices
from fedsynth.common.dp.rng import ChaChaStream


def noisy_grad(stream, sigma=2.0, clip=0.5, batch=10, width=4000):
    """p.grad after Opacus' pre_step on a zero loss: exactly the (scaled) noise."""
    lin = nn.Linear(width, 1, bias=False)
    gsm = GradSampleModule(lin, batch_first=True, loss_reduction="mean")
    opt = _secure_optimizer(DPOptimizer, stream, optimizer=torch.optim.SGD(lin.parameters(), lr=1.0),
                            noise_multiplier=sigma, max_grad_norm=clip, expected_batch_size=batch,
                            loss_reduction="mean")
    (gsm(torch.randn(batch, width)) * 0.0).mean().backward()
    opt.pre_step()
    assert opt.noise_multiplier == sigma  # restored after the zero-noise pass through Opacus
    return lin.weight.grad.detach().numpy().ravel()


def test_noise_has_the_calibrated_scale_and_is_gaussian():
    g = noisy_grad(ChaChaStream.from_os(), sigma=2.0, clip=0.5, batch=10)
    expected_std = 2.0 * 0.5 / 10  # sigma * C, divided by the expected batch ("mean" loss)
    assert g.std() == pytest.approx(expected_std, rel=0.05)
    assert stats.kstest(g / expected_std, "norm").pvalue > 1e-4


def test_noise_comes_from_the_stream_not_torchs_generator():
    key = bytes(range(32))
    torch.manual_seed(0)
    a = noisy_grad(ChaChaStream(key))
    torch.manual_seed(1)  # torch's global generator changes; the noise must not
    b = noisy_grad(ChaChaStream(key))
    np.testing.assert_array_equal(a, b)
    torch.manual_seed(0)
    c = noisy_grad(ChaChaStream(bytes(32)))  # same torch seed, other key: other noise
    assert np.corrcoef(a, c)[0, 1] < 0.1


@pytest.mark.parametrize("engine", ["bookkeeping", "ghost"])
def test_a_training_step_uses_the_stream(engine):
    def one_step(key):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
        trainer = DPSGD(net, nn.MSELoss(), DPStepConfig(1.0, 1.0, 16, 0.1, grad_sample_mode=engine),
                        noise_stream=ChaChaStream(key))
        assert trainer.engine == engine
        x, y = torch.randn(16, 6), torch.randn(16, 1)
        trainer.step(lambda m: m(x), y)
        return torch.cat([p.detach().ravel() for p in trainer.close().parameters()])

    assert torch.equal(one_step(b"a" * 32), one_step(b"a" * 32))
    assert not torch.equal(one_step(b"a" * 32), one_step(b"b" * 32))


def test_poisson_sampling_from_the_stream_keeps_rows_independently_at_rate_q():
    s = ChaChaStream.from_os()
    sizes = [len(poisson_indices(10_000, 0.05, s)) for _ in range(200)]
    assert np.mean(sizes) == pytest.approx(500, rel=0.02)
    assert np.std(sizes) == pytest.approx(np.sqrt(10_000 * 0.05 * 0.95), rel=0.2)  # binomial spread
    idx = poisson_indices(10_000, 0.05, s)
    assert idx.dtype == torch.int64 and torch.all(idx[1:] > idx[:-1])


def test_category_count_release_draws_its_noise_from_the_stream(monkeypatch):
    """The one-off Gaussian release of category counts uses the same CSPRNG as DP-SGD."""
    from fedsynth.common.dp import rng as secure_random
    from fedsynth.common.dp.accounting import noisy_counts

    blocks = [np.eye(3)[[0, 1, 1, 2, 2, 2]], np.eye(2)[[0, 0, 1, 1, 1, 1]]]
    monkeypatch.setattr(secure_random.ChaChaStream, "from_os", classmethod(lambda cls: cls(b"k" * 32)))
    np.random.seed(0)
    a = noisy_counts(blocks, sigma=5.0)
    np.random.seed(1)  # numpy's global state changes; the noise must not
    b = noisy_counts(blocks, sigma=5.0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    expected = ChaChaStream(b"k" * 32).normal(3) * 5.0 * np.sqrt(2) + np.array([1, 2, 3])
    np.testing.assert_allclose(a[0], expected)
