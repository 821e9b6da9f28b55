"""SecAgg+ with CSPRNG mask expansion: exact sums, dropout recovery, nothing learnable per client.

Rounds run Flower's real SecAgg+ client mod and server workflow (fedsynth's private copies
with ChaCha20 masks) over an in-process transport (tests/_loopback.py).
"""

import numpy as np
import pytest
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
from scipy import stats

from _loopback import secagg_round, stage_of
from fedsynth.common.protocol.federation import SecAggSettings
from fedsynth.common.protocol.secure_masks import (
    SecureSecAggPlusWorkflow,
    expand_masks,
    secure_secaggplus_mod,
    uses_secure_expansion,
)
from fedsynth.common.dp.rng import ChaChaStream

CLIP, QRANGE = 8.0, 2**22
QUANTUM = 2 * CLIP / QRANGE  # one quantisation step


def updates(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return {nid: [rng.uniform(-CLIP, CLIP, (7, 3)).astype(np.float32), rng.uniform(-1, 1, 11).astype(np.float32)]
            for nid in range(101, 101 + n)}


def mean_of(ups, nids):
    return [np.mean([ups[n][i] for n in nids], axis=0) for i in range(2)]


# --------------------------------------------------------------------------- expansion
def test_expansion_is_deterministic_in_range_and_shaped():
    shapes = [(7, 3), (11,), ()]
    a, b = expand_masks(b"s" * 44, 2**32, shapes), expand_masks(b"s" * 44, 2**32, shapes)
    assert [x.shape for x in a] == shapes and all(x.dtype == np.int64 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    for m in (2**32, 3 * 2**29 + 7, 1000):  # power of two and rejection-sampled moduli
        v = expand_masks(b"k" * 32, m, [(200_000,)])[0]
        assert v.min() >= 0 and v.max() < m
        assert v.max() == m - 1 or m > 2**20  # Flower's randint(0, m - 1) never draws m - 1


@pytest.mark.parametrize("m", [2**32, 3 * 10**9])
def test_expansion_is_uniform(m):
    v = expand_masks(b"uniformity-test-secret-0000", m, [(200_000,)])[0]
    assert stats.kstest(v / m, "uniform").pvalue > 1e-4
    counts = np.bincount((v * 64 // m).astype(int), minlength=64)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_masks_depend_on_every_bit_of_the_secret():
    secret = bytes(range(44))
    # Flower's expansion XOR-folds the secret into 32 bits: flipping the same bits in two
    # 4-byte words (here the high bits of words 0 and 7) leaves its masks unchanged...
    twin = bytearray(secret)
    for word in (0, 7):
        twin[4 * word + 3] ^= 0x80
    shapes = [(1000,)]
    assert np.array_equal(pseudo_rand_gen(secret, 2**32, shapes)[0], pseudo_rand_gen(bytes(twin), 2**32, shapes)[0])
    # ... fedsynth's is keyed by all bits: the twin and every single-bit flip give new masks.
    base = expand_masks(secret, 2**32, shapes)[0]
    assert not np.array_equal(base, expand_masks(bytes(twin), 2**32, shapes)[0])
    for bit in range(0, 44 * 8, 7):
        flipped = bytearray(secret)
        flipped[bit // 8] ^= 1 << (bit % 8)
        other = expand_masks(bytes(flipped), 2**32, shapes)[0]
        assert np.mean(base == other) < 0.01  # unrelated streams, not a near-copy


def test_flower_modules_stay_untouched_and_fedsynth_uses_the_strong_copies(tmp_path):
    from flwr.client.mod import secaggplus_mod
    from flwr.server.workflow import SecAggPlusWorkflow

    assert uses_secure_expansion(secure_secaggplus_mod) and uses_secure_expansion(SecureSecAggPlusWorkflow)
    assert not uses_secure_expansion(secaggplus_mod) and not uses_secure_expansion(SecAggPlusWorkflow)

    from fedsynth.client.app import ClientSettings, make_client_app

    app = make_client_app(lambda ctx: ClientSettings("x.csv", "s.json", str(tmp_path), 1.0, 1e-5))
    assert secure_secaggplus_mod in app._mods and secaggplus_mod not in app._mods
    from fedsynth.common.dp.shared_noise import SharedNoise
    from fedsynth.common.protocol.federation import FIELD_CLIPPING_RANGE, FederationPlan, SecAggSettings
    from fedsynth.server.workflow import FederatedRun

    # the round's fit workflow is built by _fit_workflow: the strong copy
    fit = FederatedRun(FederationPlan(), None, tmp_path, SecAggSettings(), 5)._fit_workflow(5)
    assert isinstance(fit, SecureSecAggPlusWorkflow) and uses_secure_expansion(type(fit))
    # with shared noise too, its threshold raised to K_min and the field's quantisation
    shared = FederationPlan(shared_noise=SharedNoise(sample_rate=0.1, noise_multiplier=1.0, min_contributors=5))
    fit = FederatedRun(shared, None, tmp_path, SecAggSettings(), 5)._fit_workflow(5)
    assert isinstance(fit, SecureSecAggPlusWorkflow) and uses_secure_expansion(type(fit))
    assert (fit.reconstruction_threshold, fit.clipping_range) == (5, FIELD_CLIPPING_RANGE)


def test_chacha_stream_normals_and_uniforms_are_calibrated():
    s = ChaChaStream.from_os()
    z = s.normal(200_001)
    assert z.shape == (200_001,) and abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert stats.kstest(z, "norm").pvalue > 1e-4
    u = s.uniform(100_000)
    assert u.min() > 0 and u.max() < 1


# --------------------------------------------------------------------------- protocol
def test_secagg_round_sums_exactly():
    ups = updates(5)
    mean, grid = secagg_round(ups)
    assert not grid.dead
    for got, want in zip(mean, mean_of(ups, ups)):
        np.testing.assert_allclose(got, want, atol=2 * QUANTUM)


def test_secagg_round_recovers_from_a_client_dropping_after_sharing_keys():
    ups = updates(5)
    dropped = 103
    mean, grid = secagg_round(ups, drop=lambda nid, msg: nid == dropped and stage_of(msg) == "collect_masked_vectors")
    assert grid.dead == {dropped}
    survivors = [n for n in ups if n != dropped]
    for got, want in zip(mean, mean_of(ups, survivors)):
        np.testing.assert_allclose(got, want, atol=2 * QUANTUM)  # its pairwise masks were reconstructed


def test_a_fixed_share_count_masks_with_neighbours_only_and_still_sums_exactly():
    """SecAgg+'s remedy for many clients: each key shared with 3 nodes, not all 9, and a count
    given as a float (a CLI or TOML 3.0) still reaches Flower as a count."""
    ups = updates(9)
    shares, threshold = SecAggSettings(num_shares=3.0, reconstruction_threshold=2.0).for_round(len(ups))
    assert (shares, threshold) == (3, 2) and isinstance(shares, int)
    mean, grid = secagg_round(ups, num_shares=shares, threshold=threshold)
    share_msgs = [m for m in grid.sent if stage_of(m) == "share_keys"]
    # each node is handed the public keys of its 3-node neighbourhood (itself included) + the stage
    assert len(share_msgs) == 9 and all(len(m.content.config_records["secaggplus_configs"]) == 3 + 1 for m in share_msgs)
    for got, want in zip(mean, mean_of(ups, ups)):
        np.testing.assert_allclose(got, want, atol=2 * QUANTUM)
    # one neighbour of each dropping out is recovered from the other shares
    dropped = 104
    mean, grid = secagg_round(ups, num_shares=shares, threshold=threshold,
                              drop=lambda nid, msg: nid == dropped and stage_of(msg) == "collect_masked_vectors")
    for got, want in zip(mean, mean_of(ups, [n for n in ups if n != dropped])):
        np.testing.assert_allclose(got, want, atol=2 * QUANTUM)


def test_an_even_share_count_is_made_odd_so_the_round_completes():
    """Flower tells clients an even count, then uses one more neighbour: every round failed."""
    ups = updates(9)
    shares, threshold = SecAggSettings(num_shares=4, reconstruction_threshold=3).for_round(len(ups))
    assert (shares, threshold) == (5, 3)
    mean, grid = secagg_round(ups, num_shares=shares, threshold=threshold)
    assert mean is not None and not grid.dead
    for got, want in zip(mean, mean_of(ups, ups)):
        np.testing.assert_allclose(got, want, atol=2 * QUANTUM)


def test_share_settings_are_fractions_or_whole_counts():
    assert SecAggSettings().for_round(5) == (1.0, 0.67)
    assert SecAggSettings(num_shares=9, reconstruction_threshold=6).for_round(5) == (1.0, 6 / 9)  # count >= clients: all
    assert SecAggSettings(num_shares=11, reconstruction_threshold=0.5).for_round(50) == (11, 0.5)
    assert SecAggSettings(num_shares=10).num_shares == 11  # odd: itself + 5 neighbours each side
    for bad, where in (({"num_shares": 2.5}, "whole number"), ({"num_shares": 2}, "at least 3"),
                       ({"num_shares": 0}, "fraction"), ({"reconstruction_threshold": 1.5}, "whole number"),
                       ({"num_shares": 5, "reconstruction_threshold": 5}, "below")):
        with pytest.raises(ValueError, match=where):
            SecAggSettings(**bad)


def test_too_few_survivors_reveal_nothing():
    """Below the Shamir threshold the server cannot unmask: the round yields no aggregate."""
    ups = updates(5)
    mean, grid = secagg_round(ups, threshold=0.8,
                              drop=lambda nid, msg: nid in (102, 104) and stage_of(msg) == "unmask")
    assert mean is None and grid.dead == {102, 104}


def test_mixing_weak_and_strong_expansion_breaks_the_sum():
    """Both sides must expand masks the same way (why fedsynth wires both)."""
    from flwr.client.mod import secaggplus_mod

    ups = updates(4)
    mean, _ = secagg_round(ups, mod=secaggplus_mod)
    assert mean is None or not np.allclose(mean[0], mean_of(ups, ups)[0], atol=0.1)


def test_what_the_server_receives_from_one_client_is_uniform_and_independent_of_its_update():
    """The masked vector of a client is uniform noise whatever its update (zeros or the extreme)."""
    size = 20_000
    seen: dict[str, np.ndarray] = {}

    def capture(label):
        def tamper(nid, reply):
            if nid == 101 and reply.content is not None and "secaggplus_configs" in reply.content.config_records:
                rec = reply.content.config_records["secaggplus_configs"]
                if "masked_params" in rec:
                    seen[label] = np.concatenate([bytes_to_ndarray(b).ravel() for b in rec["masked_params"]])
            return reply
        return tamper

    for label, value in (("zeros", 0.0), ("extreme", CLIP)):
        ups = {nid: [np.full(size, value if nid == 101 else 0.5, np.float32)] for nid in (101, 102, 103)}
        mean, _ = secagg_round(ups, tamper=capture(label))
        np.testing.assert_allclose(mean[0], (value + 1.0) / 3, atol=2 * QUANTUM)
    for label in ("zeros", "extreme"):
        v = seen[label][1:]  # element 0 carries the (public) weight factor
        assert v.min() >= 0 and v.max() < 2**32
        assert stats.kstest(v / 2**32, "uniform").pvalue > 1e-4
    # the two views are draws from the same distribution: the update does not show through
    assert stats.ks_2samp(seen["zeros"][1:], seen["extreme"][1:]).pvalue > 1e-4
