"""The two generative models behind :class:`fedsynth.Synthesizer`, with one interface.

Both expose ``train_steps(x, steps, sample_rate, noise_multiplier)`` (exactly ``steps`` DP-SGD
steps, so a federated client can plan a round to the step), ``generate(n)`` (encoded rows),
and their weights as a list of numpy arrays (what Flower ships and SecAgg+ sums).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedsynth.common.data.encoding import Segment, TableEncoder
from fedsynth.common.dp.dp_sgd import csprng_torch_rng
from fedsynth.common.dp.integer_noise import IntegerGrid
from fedsynth.common.dp.shared_step import Contribution, parameter_dim, shared_contribution
from fedsynth.common.dp.trainer import DPOptimizerConfig, DPSchedule, StepFn, StepHook, train_dp_steps
from fedsynth.common.errors import FedsynthError
from fedsynth.common.model.networks import (
    GeneratorNet,
    PairDiscriminator,
    PairGANLoss,
    TabularVAE,
    VAELoss,
    activate,
    sample_from_raw,
)

MODELS = ("vae", "gan")
BINNINGS = ("measured", "schema")  # ModelConfig.binning


@dataclass
class ModelConfig:
    """Architecture and optimiser settings. Defaults were tuned on Adult at epsilon = 1."""

    model: str = "vae"
    # Small on purpose: DP noise grows with sqrt(#parameters) while each row's clipped
    # signal does not, so a 64-wide network beats a 256-wide one at epsilon ~ 1 (measured).
    hidden: int = 64
    depth: int = 2
    latent: int = 8  # VAE latent / GAN noise size
    lr: float = 1e-2
    max_grad_norm: float = 1.0
    grad_sample_mode: str = "bookkeeping"
    beta: float = 1.0  # VAE KL weight
    gen_steps_per_disc: int = 1  # GAN
    # "measured": numerical bins of equal released mass (TableEncoder.measured, from the counts
    # release every fit makes); "schema": the schema's equal-width bins, as models before them
    binning: str = "measured"

    def __post_init__(self) -> None:
        if self.binning not in BINNINGS:
            raise FedsynthError(f"binning must be one of {BINNINGS}, not {self.binning!r}")

    def to_json(self) -> dict:
        """The fields as saved in a model and a plan: ``binning`` only when measured, so that what
        was written before the field existed (schema bins, :meth:`from_json`'s default) reads and
        hashes as it did."""
        out = asdict(self)
        if self.binning == "schema":
            del out["binning"]
        return out

    @classmethod
    def from_json(cls, raw: dict) -> ModelConfig:
        return cls(**{"binning": "schema", **raw})


class TabularModel:
    """Common plumbing: weights as arrays, DP training (by the trainer), conditional generation."""

    config: ModelConfig
    encoder: TableEncoder
    # State of the DP module's optimiser (Adam moments), carried between train_steps calls
    # so a federated client continues its optimiser across rounds instead of restarting it.
    optimizer_state: dict | None = None

    def modules(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def get_arrays(self) -> list[np.ndarray]:
        return [p.detach().cpu().numpy().copy() for m in self.modules() for p in m.state_dict().values()]

    def set_arrays(self, arrays: list[np.ndarray]) -> None:
        arrays = list(arrays)
        expected = [(k, v.shape) for m in self.modules() for k, v in m.state_dict().items()]
        if len(arrays) != len(expected):
            raise ValueError(f"model has {len(expected)} weight arrays, received {len(arrays)}")
        for (name, shape), arr in zip(expected, arrays):
            if tuple(arr.shape) != tuple(shape):
                raise ValueError(f"weight {name!r}: expected shape {tuple(shape)}, received {tuple(arr.shape)}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"weight {name!r}: received non-finite values")
        i = 0
        for m in self.modules():
            sd = m.state_dict()
            for k in sd:
                sd[k] = torch.as_tensor(arrays[i], dtype=sd[k].dtype)
                i += 1
            m.load_state_dict(sd)

    conditioner: Conditioner

    def train_steps(self, x: torch.Tensor, steps: int, sample_rate: float, noise_multiplier: float,
                    progress: StepHook | None = None) -> list[float]:
        raise NotImplementedError

    def _train(self, module: torch.nn.Module, loss: torch.nn.Module, x: torch.Tensor, steps: int,
               sample_rate: float, noise_multiplier: float, one_step: StepFn, progress: StepHook | None = None,
               betas: tuple[float, float] = (0.9, 0.999)) -> tuple[list[float], torch.nn.Module]:
        """Ask the DP trainer for ``steps`` steps on ``module``; keeps its optimiser state.

        Returns the losses and the plain (unwrapped) module.
        """
        cfg = self.config
        result = train_dp_steps(module, loss, x, DPSchedule(steps, sample_rate, noise_multiplier),
                                DPOptimizerConfig(cfg.max_grad_norm, cfg.lr, cfg.grad_sample_mode, betas),
                                one_step, optimizer_state=self.optimizer_state, on_step=progress)
        self.optimizer_state = result.optimizer_state
        return result.losses, result.module

    def shared_contribution(self, x: torch.Tensor, sample_rate: float, grid: IntegerGrid,
                            mu_share: float) -> Contribution:
        """This institution's part of one shared-noise DP-SGD step (fedsynth.common.dp.shared_step)."""
        raise FedsynthError(f"shared-noise training is implemented for the VAE only, not {self.config.model!r}; "
                            "use --noise local")

    def trainable_dim(self) -> int:
        """d of the shared-noise integer grid: the trainable values, which are all the weight arrays."""
        return sum(parameter_dim(m) for m in self.modules())

    def _raw(self, cond: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Generator logits for the given condition vectors."""
        raise NotImplementedError

    def logits(self, cond: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """:meth:`_raw` with gradients to :meth:`generator_parameters` (marginal fitting)."""
        raise NotImplementedError

    def generator_parameters(self) -> list[torch.nn.Parameter]:
        """The weights that map a latent draw and a condition to a row."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, n: int, seed: int | None = None, cond: tuple[int, int] | None = None) -> np.ndarray:
        """``n`` encoded rows; ``cond`` = (conditionable column index, category index) fixes one value."""
        for m in self.modules():
            m.eval()
        g = _rows_rng(seed)
        c, col, cat = self.conditioner.sample(n, g, cond)
        out = sample_from_raw(self._raw(c, g), self.encoder.segments, rng=g)
        return self.conditioner.impose(out, col, cat).numpy()


class Conditioner:
    """CTGAN-style condition vectors: one category of one categorical/boolean column.

    During training a row's condition is read off the row itself (column chosen uniformly at
    random), so it costs no privacy beyond the row's own DP-SGD step. Generating needs the
    category frequencies: ``probs`` holds them per column, *privatised* with the Gaussian
    mechanism and accounted by the caller (or uniform when none were released).
    """

    def __init__(self, encoder: TableEncoder, probs: list[np.ndarray] | None = None) -> None:
        self.segments: list[Segment] = encoder.conditionable
        self.dim = sum(s.size for s in self.segments)
        self.offsets = np.cumsum([0] + [s.size for s in self.segments])[:-1].astype(np.int64)
        self.probs = [np.asarray(p, dtype=float) for p in probs] if probs else [
            np.full(s.size, 1.0 / s.size) for s in self.segments]

    def from_rows(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        cond = torch.zeros(n, self.dim)
        if not self.segments:
            return cond
        col = torch.randint(0, len(self.segments), (n,), generator=g)
        for j, seg in enumerate(self.segments):
            rows = torch.nonzero(col == j).squeeze(1)
            off = int(self.offsets[j])
            cond[rows, off: off + seg.size] = x[rows, seg.start: seg.end]
        return cond

    def sample(self, n: int, g: torch.Generator, fixed: tuple[int, int] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Conditions for ``n`` generated rows: (one-hot, column index, category index)."""
        cond = torch.zeros(n, self.dim)
        col = torch.randint(0, max(1, len(self.segments)), (n,), generator=g)
        cat = torch.zeros(n, dtype=torch.long)
        if fixed is not None:
            col[:], cat[:] = fixed
        else:
            for j in range(len(self.segments)):
                rows = torch.nonzero(col == j).squeeze(1)
                if len(rows):
                    probs = torch.as_tensor(self.probs[j], dtype=torch.float)
                    cat[rows] = torch.multinomial(probs, len(rows), replacement=True, generator=g)
        if self.segments:
            cond[torch.arange(n), torch.as_tensor(self.offsets)[col] + cat] = 1.0
        return cond, col, cat

    def impose(self, encoded: torch.Tensor, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Set each generated row's conditioned column to exactly its condition."""
        for j, seg in enumerate(self.segments):
            rows = torch.nonzero(col == j).squeeze(1)
            if len(rows):
                encoded[rows, seg.start: seg.end] = 0.0
                encoded[rows, seg.start + cat[rows]] = 1.0
        return encoded

    def penalty(self, raw: torch.Tensor, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Cross-entropy pushing the GeneratorNet to honour its condition (CTGAN's cond loss)."""
        loss = torch.zeros((), dtype=raw.dtype)
        for j, seg in enumerate(self.segments):
            rows = torch.nonzero(col == j).squeeze(1)
            if len(rows):
                loss = loss + F.cross_entropy(raw[rows, seg.start: seg.end], cat[rows], reduction="sum")
        return loss / raw.shape[0]

    def index(self, segment: Segment) -> int:
        return [s.start for s in self.segments].index(segment.start)


class VAEModel(TabularModel):
    def __init__(self, encoder: TableEncoder, config: ModelConfig, cond_probs=None) -> None:
        self.encoder, self.config = encoder, config
        self.conditioner = Conditioner(encoder, cond_probs)
        self.net = TabularVAE(encoder.dim, self.conditioner.dim, config.hidden, config.latent, config.depth)

    def modules(self) -> list[torch.nn.Module]:
        return [self.net]

    def train_steps(self, x, steps, sample_rate, noise_multiplier, progress=None):
        cfg = self.config
        loss = VAELoss(self.encoder.segments, self.encoder.dim, cfg.latent, cfg.beta)

        def one_step(trainer, batch, g):
            inputs = torch.cat([batch, self.conditioner.from_rows(batch, g)], dim=1)
            return trainer.step(lambda m: m(inputs), batch)

        losses, self.net = self._train(self.net, loss, x, steps, sample_rate, noise_multiplier, one_step, progress)
        return losses

    def shared_contribution(self, x, sample_rate, grid, mu_share):
        cfg = self.config
        loss = VAELoss(self.encoder.segments, self.encoder.dim, cfg.latent, cfg.beta)
        loss.reduction = "none"
        g = csprng_torch_rng()

        def per_row(module, rows):
            return loss(module(torch.cat([rows, self.conditioner.from_rows(rows, g)], dim=1)), rows)

        return shared_contribution(self.net, per_row, x, sample_rate, grid, mu_share)

    def _raw(self, cond, g):
        return self.net.generate(cond, rng=g)

    def logits(self, cond, g):
        return self.net.decode(torch.randn(cond.shape[0], self.net.latent, generator=g), cond)

    def generator_parameters(self):
        skip = [self.net.cond_skip.weight] if self.net.cond_skip is not None else []
        return [*self.net.decoder.parameters(), *skip]


class GANModel(TabularModel):
    """Conditional GAN with a DP discriminator; real and generated conditions follow the same
    (privatised) frequencies, so the discriminator cannot tell them apart by condition alone."""

    def __init__(self, encoder: TableEncoder, config: ModelConfig, cond_probs=None) -> None:
        self.encoder, self.config = encoder, config
        self.conditioner = Conditioner(encoder, cond_probs)
        cdim = self.conditioner.dim
        self.gen = GeneratorNet(config.latent, cdim, encoder.dim, config.hidden, config.depth)
        self.disc = PairDiscriminator(encoder.dim + cdim, config.hidden, config.depth)

    def modules(self):
        return [self.gen, self.disc]

    def train_steps(self, x, steps, sample_rate, noise_multiplier, progress=None):
        cfg = self.config
        cnd = self.conditioner
        g_opt = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr, betas=(0.5, 0.9))

        def one_step(trainer, real, g):
            b = real.shape[0]
            real_pairs = torch.cat([real, cnd.from_rows(real, g)], dim=1)
            with torch.no_grad():
                cond, _, _ = cnd.sample(b, g)
                fake = activate(self.gen(torch.randn(b, cfg.latent, generator=g), cond), self.encoder.segments)
            fake_pairs = torch.cat([fake, cond], dim=1)
            pairs = torch.stack([real_pairs, fake_pairs], dim=1)
            loss = trainer.step(lambda m: m(pairs), None)
            # GeneratorNet step: no real row is involved, so it needs no privacy of its own
            trainer.set_hooks(False)
            disc_params = list(trainer.module.parameters())
            for p in disc_params:
                p.requires_grad_(False)
            for _ in range(cfg.gen_steps_per_disc):
                cond, col, cat = cnd.sample(b, g)
                raw = self.gen(torch.randn(b, cfg.latent, generator=g), cond)
                fake = activate(raw, self.encoder.segments)
                score = trainer.module(torch.stack([fake_pairs, torch.cat([fake, cond], 1)], 1))[:, 1]
                g_loss = F.softplus(-score).mean() + cnd.penalty(raw, col, cat)
                g_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                g_opt.step()
            for p in disc_params:
                p.requires_grad_(True)
                p.grad = None
            trainer.set_hooks(True)
            return loss

        losses, self.disc = self._train(self.disc, PairGANLoss(), x, steps, sample_rate, noise_multiplier,
                                        one_step, progress, betas=(0.5, 0.9))
        return losses

    def _raw(self, cond, g):
        return self.gen(torch.randn(cond.shape[0], self.config.latent, generator=g), cond)

    def logits(self, cond, g):
        return self._raw(cond, g)

    def generator_parameters(self):
        return list(self.gen.parameters())


def _rows_rng(seed: int | None) -> torch.Generator:
    """The torch RNG for generating rows: seeded for a reproducible sample, else from the OS CSPRNG."""
    return torch.Generator().manual_seed(seed) if seed is not None else csprng_torch_rng()


def build_model(encoder: TableEncoder, config: ModelConfig, cond_probs=None) -> TabularModel:
    if config.model == "vae":
        return VAEModel(encoder, config, cond_probs)
    if config.model == "gan":
        return GANModel(encoder, config, cond_probs)
    raise ValueError(f"unknown model {config.model!r}; choose one of {MODELS}")
