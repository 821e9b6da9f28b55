"""What DP-SGD costs on CPU: time per epoch of fedsynth's default generator, without DP and
with each of Opacus' per-sample-gradient strategies, as ratios to the non-private run.

The model is the one every fedsynth client trains: the conditional VAE with the default
``ModelConfig`` on the encoded Adult training split, Poisson batches of the default expected
size (``default_batch_size``), Adam. Variants:

* ``nondp``     plain PyTorch: one forward, one backward, Adam (the reference);
* ``hooks``     Opacus ``GradSampleModule`` (per-sample gradients materialised by hooks);
* ``functorch`` the same with ``force_functorch=True`` (per-sample gradients via torch.func);
* ``ew``        Opacus' expanded-weights module (per-sample gradients via ExpandedWeights);
* ``ghost``     Opacus' ghost clipping, as fedsynth builds it (``fedsynth.common.dp.dp_sgd.DPSGD``):
  per-sample gradient *norms* from activations and output gradients, then a second
  backward pass with the clipping factors folded into the loss; noise and Poisson batches
  from fedsynth's ChaCha20 stream (``hooks`` is built by ``DPSGD`` too; ``functorch`` and
  ``ew`` use Opacus' own optimizer and noise);
* ``bookkeeping`` fedsynth's default engine (``fedsynth.common.dp.bookkeeping``, through
  ``DPSGD``): per-row norms and the clipped sum from one backward pass, same noise and batches.

Why interleaved: the machine is shared, so absolute times drift; every repetition runs one
epoch of every variant in a shuffled order and the ratio to ``nondp`` is taken within that
repetition; the median over repetitions is reported. Each step is also split into phases
(batch preparation, forward, loss + backward, optimiser step incl. clipping and noise) to
show where the time goes (for ``bookkeeping`` "backward" is the one backward pass, the
per-row norms, the clipped sums and the noise; "optimizer" is Adam alone).

``--device cuda`` runs the same comparison on a GPU: network, batches and the training table
on the device, the Poisson sample and the ChaCha20 noise drawn on the CPU and copied over (as
fedsynth does), ``torch.cuda.synchronize()`` before every clock reading.

    python bench/dp_cost.py [--reps 7] [--slow-reps 2] [--threads 1 2] [--batch 0 512] [--device cpu]
                            [--json bench/results/dp_cost.json]

``--batch 0`` means fedsynth's default expected batch for the table (2048 on Adult's 26k rows).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import time
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch

from fedsynth.common.dp.dp_sgd import DPSGD, DPStepConfig, poisson_indices
from fedsynth.common.data.encoding import TableEncoder
from fedsynth.common.model.tabular import ModelConfig, build_model
from fedsynth.common.model.networks import VAELoss
from fedsynth.common.dp.rng import ChaChaStream
from fedsynth.common.dp.plan import default_batch_size
from fedsynth.simulations.datasets import load_dataset
from fedsynth.simulations.partition import holdout_split

MODES = ("nondp", "hooks", "functorch", "ew", "ghost", "bookkeeping")
PHASES = ("batch", "forward", "backward", "optimizer")
NOISE = 1.0  # the noise multiplier's value does not change the cost


@dataclass
class Variant:
    """One way of training the same network; ``step`` runs one step and fills ``phases``."""

    mode: str
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss: torch.nn.Module
    trainer: DPSGD | None = None  # the single-pass engine's steps go through fedsynth's trainer
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    steps: int = 0
    sampler: ChaChaStream = field(default_factory=ChaChaStream.from_os)


def build_variant(mode: str, model, dim: int, batch: int) -> Variant:
    cfg = model.config
    net = model.net
    loss = VAELoss(model.encoder.segments, dim, cfg.latent, cfg.beta)
    if mode == "nondp":
        return Variant(mode, net, torch.optim.Adam(net.parameters(), lr=cfg.lr), loss)
    if mode in ("ghost", "hooks", "bookkeeping"):
        # fedsynth's own construction (what clients run)
        t = DPSGD(net, loss, DPStepConfig(NOISE, cfg.max_grad_norm, batch, cfg.lr, grad_sample_mode=mode))
        if t.engine != mode:
            raise RuntimeError(f"DPSGD fell back from {mode} to {t.engine}")
        return Variant(mode, t.module, t.optimizer, t._dp_loss or loss, t if mode == "bookkeeping" else None)
    from opacus import GradSampleModule
    from opacus.grad_sample import GradSampleModuleExpandedWeights
    from opacus.optimizers import DPOptimizer

    wrapped = (GradSampleModule(net, batch_first=True, loss_reduction="mean", force_functorch=True)
               if mode == "functorch" else GradSampleModuleExpandedWeights(net, batch_first=True, loss_reduction="mean"))
    opt = DPOptimizer(torch.optim.Adam(wrapped.parameters(), lr=cfg.lr), noise_multiplier=NOISE,
                      max_grad_norm=cfg.max_grad_norm, expected_batch_size=batch, loss_reduction="mean")
    return Variant(mode, wrapped, opt, loss)


def run_epoch(v: Variant, model, x: torch.Tensor, q: float, steps: int, g: torch.Generator) -> float:
    """``steps`` Poisson-sampled steps; returns wall seconds and accumulates phase times.

    The private variants draw their batches from the ChaCha20 stream fedsynth's DP-SGD uses
    (the DP proof relies on it); the non-private reference uses torch's sampler, as a plain
    training loop would. The difference shows up in the "batch" phase."""
    v.module.train()
    sampler = g if v.mode == "nondp" else v.sampler
    cuda = x.device.type == "cuda"

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    start = clock()
    for _ in range(steps):
        t0 = clock()
        idx = poisson_indices(len(x), q, sampler).to(x.device)
        b = x[idx]
        inputs = torch.cat([b, model.conditioner.from_rows(b.cpu(), g).to(x.device)], dim=1)
        t1 = clock()
        if v.trainer is not None:
            losses = v.trainer.row_losses(lambda m: m(inputs), b)
            t2 = clock()
            v.trainer.noisy_gradient(losses)
            t3 = clock()
            v.trainer.base_optimizer.step()
        else:
            v.optimizer.zero_grad(set_to_none=True)
            out = v.module(inputs)
            t2 = clock()
            v.loss(out, b).backward()
            t3 = clock()
            v.optimizer.step()
        t4 = clock()
        for k, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            v.phases[k] += dt
        v.steps += 1
    return clock() - start


SLOW = ("hooks", "functorch", "ew")  # 20-50x slower: a few repetitions pin their ratio down


def measure(x: torch.Tensor, encoder: TableEncoder, threads: int, batch: int, reps: int, modes: tuple[str, ...],
            seed: int, slow_reps: int = 2) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    q = min(1.0, batch / len(x))
    steps = int(math.ceil(1.0 / q))
    variants: dict[str, tuple[Variant, object]] = {}
    errors: dict[str, str] = {}
    g = torch.Generator().manual_seed(seed)
    for mode in modes:
        model = build_model(encoder, ModelConfig())  # a fresh default network per variant
        model.net.to(x.device)
        try:
            v = build_variant(mode, model, encoder.dim, batch)
            run_epoch(v, model, x, q, 1, g)  # warm-up step (allocations, hooks), not timed
            v.phases, v.steps = dict.fromkeys(PHASES, 0.0), 0
            variants[mode] = (v, model)
        except Exception as exc:  # record, do not hide: a mode that fails is a result
            errors[mode] = f"{type(exc).__name__}: {str(exc)[:300]}"
    rng = random.Random(seed)
    times: dict[str, list[float]] = {m: [] for m in variants}
    ratios: dict[str, list[float]] = {m: [] for m in variants}
    for i in range(reps):
        order = [m for m in variants if m not in SLOW or i < slow_reps]
        rng.shuffle(order)
        rep: dict[str, float] = {}
        for mode in order:
            v, model = variants[mode]
            try:
                rep[mode] = run_epoch(v, model, x, q, steps, g)
            except Exception as exc:
                errors[mode] = f"{type(exc).__name__}: {str(exc)[:300]}"
        for mode, t in rep.items():
            times[mode].append(t)
            if "nondp" in rep:
                ratios[mode].append(t / rep["nondp"])
    out = {"threads": threads, "expected_batch": batch, "sample_rate": q, "steps_per_epoch": steps,
           "rows": len(x), "reps": reps, "slow_reps": slow_reps, "errors": errors, "modes": {}}
    for mode, (v, _) in variants.items():
        if not times[mode]:
            continue
        out["modes"][mode] = {
            "epoch_s_median": statistics.median(times[mode]),
            "epoch_s_all": times[mode],
            "ratio_to_nondp_median": statistics.median(ratios[mode]) if ratios[mode] else None,
            "ratio_to_nondp_all": ratios[mode],
            "ms_per_step": {k: 1000 * t / max(v.steps, 1) for k, t in v.phases.items()},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--slow-reps", type=int, default=2, help=f"repetitions of the per-sample-gradient modes {SLOW}")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[0, 512], help="expected batch; 0 = fedsynth default")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU variant")
    ap.add_argument("--json", default="bench/results/dp_cost.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    df, schema, _ = load_dataset("adult")
    train, _ = holdout_split(df, 0.2, args.seed)
    encoder = TableEncoder(schema)
    x = torch.from_numpy(encoder.encode(train)).to(args.device)
    results = []
    for threads in args.threads:
        for b in args.batch:
            batch = b or default_batch_size(len(x))
            r = measure(x, encoder, threads, batch, args.reps, tuple(args.modes), args.seed, args.slow_reps)
            results.append(r)
            print(f"\nthreads={threads} expected batch={batch} ({r['steps_per_epoch']} steps/epoch, {r['reps']} reps, {r['slow_reps']} for {'/'.join(SLOW)})")
            print(f"{'mode':<10} {'epoch s':>8} {'x nondp':>8}   ms/step: " + "  ".join(f"{p:>9}" for p in PHASES))
            for mode, m in r["modes"].items():
                ph = "  ".join(f"{m['ms_per_step'][p]:9.2f}" for p in PHASES)
                print(f"{mode:<10} {m['epoch_s_median']:8.3f} {m['ratio_to_nondp_median']:8.2f}             {ph}")
            for mode, err in r["errors"].items():
                print(f"{mode:<10} FAILED: {err}")
    meta = {"date": date.today().isoformat(), "command": "python bench/dp_cost.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
        "torch": torch.__version__, "opacus": __import__("opacus").__version__, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "model": "fedsynth VAE, default ModelConfig",
        "encoded_dim": encoder.dim, "device": args.device,
        "gpu": torch.cuda.get_device_name() if x.device.type == "cuda" else None}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
