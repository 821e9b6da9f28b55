"""The single-pass clipping engine (common/dp/bookkeeping.py) against Opacus' per-sample path.

The equivalence tests build the same step twice, with the same weights, rows and ChaCha20 key:
once through Opacus' ``GradSampleModule`` + ``DPOptimizer`` (per-sample gradients materialised,
clipped and summed, fedsynth's noise added), once through ``DPSGD`` with the single-pass
engine; the noisy averaged gradients handed to Adam must agree to float tolerance.
"""

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from scipy import stats
from torch import nn

from fedsynth.common.dp.bookkeeping import BookkeepingClipper, UnsupportedNetwork, linear_layers
from fedsynth.common.dp.dp_sgd import DPSGD, DPStepConfig, _secure_optimizer
from fedsynth.common.dp.rng import ChaChaStream
from fedsynth.common.model.networks import PairDiscriminator, PairGANLoss, TabularVAE

KEY = bytes(range(32))


def opacus_noisy_gradient(net, loss, x, y, clip, sigma, batch):
    """Opacus' per-sample path: p.grad after pre_step (clip, sum, noise, divide by the batch)."""
    gsm = GradSampleModule(net, batch_first=True, loss_reduction="mean")
    opt = _secure_optimizer(DPOptimizer, ChaChaStream(KEY), optimizer=torch.optim.SGD(net.parameters(), lr=1.0),
                            noise_multiplier=sigma, max_grad_norm=clip, expected_batch_size=batch,
                            loss_reduction="mean")
    opt.zero_grad()
    loss(gsm(x), y).backward()
    opt.pre_step()
    grads = [p.grad.detach().clone() for p in net.parameters()]
    gsm._close()
    for p in net.parameters():
        p.grad, p.grad_sample = None, None
    return grads


def single_pass_noisy_gradient(net, loss, x, y, clip, sigma, batch):
    trainer = DPSGD(net, loss, DPStepConfig(sigma, clip, batch, 0.1), noise_stream=ChaChaStream(KEY))
    assert trainer.engine == "bookkeeping"
    trainer.noisy_gradient(trainer.row_losses(lambda m: m(x), y))
    grads = [p.grad.detach().clone() for p in net.parameters()]
    trainer.close()
    return grads


def per_row_norms(net, loss, x, y):
    """The definition: one backward pass per row (``loss`` reduces to a scalar)."""
    norms = []
    for i in range(len(x)):
        net.zero_grad()
        loss(net(x[i : i + 1]), None if y is None else y[i : i + 1]).backward()
        norms.append(float(torch.cat([p.grad.reshape(-1) for p in net.parameters()]).norm()))
    net.zero_grad()
    return np.array(norms)


def random_mlp(rng: np.random.Generator) -> nn.Sequential:
    widths = [int(w) for w in rng.integers(2, 12, size=int(rng.integers(2, 5)))]
    acts = [nn.ReLU, nn.Tanh, lambda: nn.LeakyReLU(0.2), nn.ELU]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b, bias=bool(rng.integers(0, 2))), acts[int(rng.integers(0, 4))]()]
    return nn.Sequential(*layers[:-1])


@pytest.mark.parametrize("seed", range(6))
def test_random_networks_match_opacus_per_sample_path_with_the_same_noise(seed):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = random_mlp(rng)
    d_in, d_out = net[0].in_features, [m for m in net if isinstance(m, nn.Linear)][-1].out_features
    x = torch.randn(48, d_in) * torch.logspace(-2, 1, 48)[:, None]  # small rows stay under the bound
    y = torch.randn(48, d_out)
    norms = per_row_norms(net, nn.MSELoss(), x, y)
    clip = float(np.median(norms))
    assert (norms < clip).sum() >= 10 and (norms > clip).sum() >= 10  # both sides of the bound
    sigma = [0.0, 0.8][seed % 2]
    want = opacus_noisy_gradient(net, nn.MSELoss(), x, y, clip, sigma, batch=40)
    got = single_pass_noisy_gradient(net, nn.MSELoss(), x, y, clip, sigma, batch=40)
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_the_gan_discriminator_on_pairs_matches_opacus():
    """Inputs shaped (rows, 2, features): each layer runs on both slots of a row."""
    torch.manual_seed(3)
    net = PairDiscriminator(10, 16, 2)
    x = torch.randn(30, 2, 10) * torch.logspace(-2, 1.5, 30)[:, None, None]
    want = opacus_noisy_gradient(net, PairGANLoss(), x, None, 0.3, 1.1, batch=30)
    got = single_pass_noisy_gradient(net, PairGANLoss(), x, None, 0.3, 1.1, batch=30)
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_a_long_sequence_dimension_matches_opacus():
    """T * T above in * out: the engine takes each row's gradient itself instead of Gram matrices."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))
    x = torch.randn(24, 7, 2) * torch.logspace(-2, 1, 24)[:, None, None]

    want = opacus_noisy_gradient(net, SumSquares(), x, None, 0.4, 0.5, batch=24)
    got = single_pass_noisy_gradient(net, SumSquares(), x, None, 0.4, 0.5, batch=24)
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


class SumSquares(nn.Module):
    """Per-row sum of squared outputs; ``reduction`` as Opacus and DPSGD set it."""

    reduction = "mean"

    def forward(self, out, _target=None):
        per_row = out.pow(2).sum((1, 2))
        return per_row.mean() if self.reduction == "mean" else per_row


def test_norms_are_each_rows_gradient_norm():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    x, y = torch.randn(20, 5) * 2, torch.randn(20, 2)
    clipper = BookkeepingClipper(net, 1.0)
    result = clipper.clipped_sum(lambda m: nn.MSELoss(reduction="none")(m(x), y))
    np.testing.assert_allclose(result.norms.numpy(), per_row_norms(net, nn.MSELoss(), x, y), rtol=1e-5)
    assert result.losses.shape == (20,)


def test_the_default_vae_is_covered_and_its_conditional_skip_layer_counts():
    net = TabularVAE(dim=12, cond_dim=5, hidden=8, latent=3)
    layers = linear_layers(net)
    assert net.cond_skip in layers and len(layers) == 7  # 3 encoder + 3 decoder + the skip
    assert BookkeepingClipper(net, 1.0).parameters == [p for p in net.parameters()]


@pytest.mark.parametrize("net", [
    nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)),
    nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 1)),
    nn.Conv1d(2, 2, 3),
], ids=["layernorm", "embedding", "conv"])
def test_uncovered_layers_are_refused_at_construction_and_the_trainer_falls_back(net):
    with pytest.raises(UnsupportedNetwork, match="not nn.Linear"):
        BookkeepingClipper(net, 1.0)
    trainer = DPSGD(net, nn.MSELoss(), DPStepConfig(1.0, 1.0, 8, 0.1))
    assert trainer.engine == "ghost"
    trainer.close()


def test_a_layer_that_mixes_rows_is_refused_by_both_engines():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    with pytest.raises(UnsupportedNetwork, match="BatchNorm1d"):
        BookkeepingClipper(net, 1.0)
    with pytest.raises(Exception, match="BatchNorm"):  # Opacus refuses it too: no silent fallback
        DPSGD(net, nn.MSELoss(), DPStepConfig(1.0, 1.0, 8, 0.1))


def test_a_frozen_layer_is_left_out_and_a_shared_weight_is_refused():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    a.requires_grad_(False)
    assert linear_layers(nn.Sequential(a, b)) == [b]
    b.weight = a.weight
    a.requires_grad_(True)
    with pytest.raises(UnsupportedNetwork, match="share a parameter"):
        linear_layers(nn.Sequential(a, b))


def test_a_layer_run_twice_in_one_forward_pass_is_an_error_not_a_wrong_norm():
    lin = nn.Linear(3, 3)
    clipper = BookkeepingClipper(lin, 1.0)
    x = torch.randn(4, 3)
    with pytest.raises(UnsupportedNetwork, match="ran 2 times"):
        clipper.clipped_sum(lambda m: m(m(x)).sum(1))
    with pytest.raises(UnsupportedNetwork, match="one value per row"):
        clipper.clipped_sum(lambda m: m(x).sum())
    with pytest.raises(UnsupportedNetwork, match="shape"):
        clipper.clipped_sum(lambda m: m(x.reshape(2, 2, 1, 3)).sum((1, 2, 3)))


def test_a_layer_the_loss_does_not_reach_gets_a_zero_sum():
    first, unused = nn.Linear(3, 2), nn.Linear(3, 2)
    net = nn.ModuleDict({"first": first, "unused": unused})
    clipper = BookkeepingClipper(net, 1.0)
    x = torch.randn(6, 3)
    grads = clipper.clipped_sum(lambda m: m["first"](x).pow(2).sum(1)).grads
    assert all(float(g.abs().sum()) == 0.0 for g in grads[2:])
    assert float(grads[0].abs().sum()) > 0


def test_the_noise_has_the_calibrated_scale_and_comes_from_the_stream():
    net = nn.Linear(4000, 1, bias=False)

    def noise(key):
        torch.manual_seed(0)
        trainer = DPSGD(net, nn.MSELoss(), DPStepConfig(2.0, 0.5, 10, 0.1), noise_stream=ChaChaStream(key))
        x = torch.randn(10, 4000)
        trainer.noisy_gradient(trainer.row_losses(lambda m: m(x) * 0.0, torch.zeros(10, 1)))  # zero gradient
        out = net.weight.grad.detach().numpy().ravel().copy()
        trainer.close()
        return out

    g = noise(KEY)
    expected_std = 2.0 * 0.5 / 10  # sigma * C / expected batch
    assert g.std() == pytest.approx(expected_std, rel=0.05)
    assert stats.kstest(g / expected_std, "norm").pvalue > 1e-4
    np.testing.assert_array_equal(g, noise(KEY))
    assert np.corrcoef(g, noise(bytes(32)))[0, 1] < 0.1


def test_normal_tensor_is_the_streams_normal_draw():
    a = ChaChaStream(KEY).normal(1001)
    b = ChaChaStream(KEY).normal_tensor(1001)
    assert b.dtype == torch.float64 and b.shape == (1001,)
    np.testing.assert_array_equal(a, b.numpy())
