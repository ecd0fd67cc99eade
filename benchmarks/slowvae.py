"""Training speed (iterations/s, batch 64 = 32 pairs) of superpos.disentangle.training.train against a faithful
re-implementation of the reference training loop (bethgelab/slow_disentanglement), same machine.

The reference loop, as in its `scripts/dataset.py`, `scripts/solver.py` and `main.py`:
- a `Dataset` over pre-rendered dSprites; `__getitem__` returns one pair: the first frame by index
  (shuffled `DataLoader`), the second from the truncated discrete Laplace transition drawn per
  factor with `scipy.stats.laplace.pdf` + `np.random.choice` (categorical shape kept, at least one
  change), each image converted to float32 per sample;
- `DataLoader(batch_size=32, shuffle=True, num_workers=2, pin_memory=True, drop_last=True)` with the
  reference's interleaving `custom_collate`;
- the BetaVAE_H model in fp32 (NCHW, no compile), the reference loss code (torch.distributions
  normal CDF), Adam, and the reference's per-step bookkeeping (`.item()` of every loss term, latent
  means and variances to numpy), `cudnn.benchmark = True`.
The reference keeps the 737,280 images as a float32 array (12 GB); here they are kept bit-packed
(377 MB, rendered once by superpos.disentangle.dsprites and cached on disk) and unpacked per sample, which costs
microseconds per image and only makes the reference faster.

superpos runs `superpos.disentangle.training.train` at its defaults for the device, with evaluation off: CUDA,
bfloat16 autocast and torch.compile; a CPU with native bfloat16 (AVX512-BF16 or AMX), bfloat16 autocast,
channels-last, no compile (and, to show the autocast's share, a second superpos loop in fp32); any
other CPU, fp32, channels-last, no compile. Rounds alternate between the two loops (and which goes first) so that both see the same machine load;
the speed-up is the median of the per-round ratios, which is robust to the load of a shared machine
changing between rounds.

    python benchmarks/slowvae.py                 # CPU (2 cores here)
    python benchmarks/slowvae.py --device cuda   # GPU

Results are printed and written to benchmarks/results/slowvae.txt (slowvae_cuda.txt for CUDA).
"""
import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import laplace
from torch import nn
from torch.utils.data import DataLoader, Dataset

from superpos.disentangle import training
from superpos.core import atomic_write, cache_dir, get_device
from superpos.disentangle.dsprites import FACTOR_SIZES, DSprites

# ---------------------------------------------------------------------------- reference data


def packed_dsprites(device) -> np.ndarray:
    """All 737,280 images bit-packed (n, 512) in index order, rendered once and cached on disk."""
    path = cache_dir("benchmarks") / "dsprites_packed.npy"
    if path.exists():
        return np.load(path, mmap_mode=None)
    dataset = DSprites(device=device)
    chunks = []
    for start in range(0, len(dataset), 16384):
        index = torch.arange(start, min(start + 16384, len(dataset)), device=dataset.device)
        images = dataset.render(dataset.index_to_factors(index))
        chunks.append(np.packbits(images.bool().reshape(len(index), -1).cpu().numpy(), axis=1))
    packed = np.concatenate(chunks)
    atomic_write(path, lambda f: np.save(f, packed))
    return packed


class ReferenceSprites(Dataset):
    """The reference `SpriteDataset` / `TupleLoader` with prior='laplace' (per-sample numpy/scipy)."""

    def __init__(self, packed: np.ndarray, rate: float = 1.0):
        self.data = packed
        self.factor_sizes = list(FACTOR_SIZES)
        self.categorical = np.array([True, False, False, False, False])
        self.rate = rate
        sizes = np.array(self.factor_sizes)
        self.bases = np.prod(sizes) / np.cumprod(sizes)
        grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
        self.index_to_feat = np.stack([g.reshape(-1) for g in grids], 1)   # sklearn `cartesian`

    def __len__(self):
        return len(self.data)

    def features_to_index(self, features):
        return np.array(np.dot(features, self.bases), dtype=np.int64)

    def image(self, index):
        return np.unpackbits(self.data[index]).reshape(64, 64).astype(np.float32)[None]

    def truncated_laplace(self, start):
        rate = np.random.uniform(1, 10, 1)[0] if self.rate == -1 else self.rate
        end = []
        for mean, upper in zip(start, np.array(self.factor_sizes)):
            x = np.arange(upper)
            p = laplace.pdf(x, loc=mean, scale=np.log(upper) / rate)
            p /= np.sum(p)
            end.append(np.random.choice(x, 1, p=p)[0])
        end = np.array(end).astype(int)
        end[self.categorical] = start[self.categorical]
        if np.sum(abs(start - end)) == 0:
            ind = np.random.choice(np.arange(len(self.factor_sizes))[~self.categorical], 1)[0]
            x = np.arange(self.factor_sizes[ind])
            p = laplace.pdf(x, loc=start[ind], scale=np.log(self.factor_sizes[ind]) / rate)
            p[x == start[ind]] = 0
            p /= np.sum(p)
            end[ind] = np.random.choice(x, 1, p=p)[0]
        return end

    def __getitem__(self, idx):
        first_feat = self.index_to_feat[idx]
        second_feat = self.truncated_laplace(first_feat)
        second_idx = self.features_to_index(second_feat)
        return self.image(idx), self.image(second_idx), first_feat, second_feat


def custom_collate(sample):
    inputs, labels = [], []
    for s in sample:
        inputs += [s[0], s[1]]
        labels += [s[2], s[3]]
    return torch.tensor(np.stack(inputs)), torch.tensor(np.stack(labels))


# ---------------------------------------------------------------------------- reference model + loop


class View(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, tensor):
        return tensor.view(self.size)


class ReferenceBetaVAEH(nn.Module):
    """BetaVAE_H as in the reference `scripts/model.py` (nc=1, z_dim=10)."""

    def __init__(self, z_dim=10, nc=1):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(nc, 32, 4, 2, 1), nn.ReLU(True), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(True),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(True), nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(True),
            nn.Conv2d(64, 256, 4, 1), nn.ReLU(True), View((-1, 256)), nn.Linear(256, z_dim * 2))
        self.decoder = nn.Sequential(
            nn.Linear(z_dim, 256), View((-1, 256, 1, 1)), nn.ReLU(True), nn.ConvTranspose2d(256, 64, 4),
            nn.ReLU(True), nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(True),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(True), nn.ConvTranspose2d(32, 32, 4, 2, 1),
            nn.ReLU(True), nn.ConvTranspose2d(32, nc, 4, 2, 1))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight)
                m.bias.data.fill_(0)

    def forward(self, x):
        distributions = self.encoder(x)
        mu, logvar = distributions[:, :self.z_dim], distributions[:, self.z_dim:]
        std = logvar.div(2).exp()
        z = mu + std * std.data.new(std.size()).normal_()
        return self.decoder(z), mu, logvar


class ReferenceSolver:
    """The reference `Solver.train` inner loop (SlowVAE defaults: beta 1, gamma 10, rate 6)."""

    def __init__(self, device, beta=1.0, gamma=10.0, rate_prior=6.0, z_dim=10):
        self.device, self.beta, self.gamma, self.z_dim = device, beta, gamma, z_dim
        self.rate_prior = rate_prior * torch.ones(1, device=device)
        self.normal_dist = torch.distributions.normal.Normal(torch.zeros(z_dim, device=device),
                                                             torch.ones(z_dim, device=device))
        self.net = ReferenceBetaVAEH(z_dim).to(device)
        self.optim = torch.optim.Adam(self.net.parameters(), lr=1e-4, betas=(0.9, 0.999))
        self.running = np.zeros(5)

    def cross_ent_laplace(self, mean, logvar, rate_prior):
        var = torch.exp(logvar)
        sigma = torch.sqrt(var)
        return (-torch.log(rate_prior / 2) + rate_prior * sigma * np.sqrt(2 / np.pi) * torch.exp(-mean ** 2 / (2 * var))
                - rate_prior * mean * (1 - 2 * self.normal_dist.cdf(mean / sigma)))

    def cross_ent_combined(self, mu, logvar):
        normal_entropy = 0.5 * (logvar + np.log(2 * np.pi * np.e))
        cross_ent_normal = 0.5 * (mu ** 2 + torch.exp(logvar)) + np.log(np.sqrt(2 * np.pi))
        mu0, mu1, logvar0, logvar1 = mu[::2], mu[1::2], logvar[::2], logvar[1::2]
        cross_ent_laplace = (self.cross_ent_laplace(mu0 - mu1, logvar0, self.rate_prior)
                             + self.cross_ent_laplace(mu1 - mu0, logvar1, self.rate_prior))
        return [t.sum(1).mean(0, True) for t in (normal_entropy, cross_ent_normal, cross_ent_laplace)]

    def step(self, x):
        x = x.to(self.device)
        x_recon, mu, logvar = self.net(x)
        mean_vars = torch.var(mu, dim=0)
        var_means = torch.mean(torch.exp(logvar), dim=0)
        recon_loss = F.binary_cross_entropy_with_logits(x_recon, x, reduction="sum").div(x.size(0))
        if torch.isnan(recon_loss):
            raise FloatingPointError("nan in loss")
        normal_entropy, cross_ent_normal, cross_ent_laplace = self.cross_ent_combined(mu, logvar)
        vae_loss = 2 * recon_loss + self.beta * (cross_ent_normal - normal_entropy) \
            + self.gamma * (cross_ent_laplace - normal_entropy)
        self.running[0] += recon_loss.item()
        self.running[4] += vae_loss.item()
        self.running[1] = normal_entropy.item()
        self.running[2] += cross_ent_normal.item()
        self.running[3] += cross_ent_laplace.item()
        torch.mean(torch.abs(mu[::2] - mu[1::2])).item()                      # compute_sparsity
        mean_vars.detach().cpu().numpy(), var_means.detach().cpu().numpy()
        self.optim.zero_grad()
        vae_loss.backward()
        self.optim.step()


def reference_round(solver, loader, warmup: int, iterations: int) -> float:
    """Iterations/s of the reference loop over `iterations` steps after `warmup` (fresh DataLoader)."""
    batches, done, start = iter(loader), 0, None
    while done < warmup + iterations:
        try:
            x, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        solver.step(x)
        done += 1
        if done == warmup:
            if solver.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
    if solver.device.type == "cuda":
        torch.cuda.synchronize()
    return iterations / (time.perf_counter() - start)


def same_loss(solver, loader) -> tuple[float, float]:
    """(reference loss, |reference - superpos slowvae_loss|) on one reference batch and the same network outputs."""
    from superpos.disentangle.model import slowvae_loss
    x, _ = next(iter(loader))
    x = x.to(solver.device)
    with torch.no_grad():
        x_recon, mu, logvar = solver.net(x)
        recon = F.binary_cross_entropy_with_logits(x_recon, x, reduction="sum").div(x.size(0))
        entropy, ce_normal, ce_laplace = solver.cross_ent_combined(mu, logvar)
        ref = 2 * recon + solver.beta * (ce_normal - entropy) + solver.gamma * (ce_laplace - entropy)
        ours = slowvae_loss(x, x_recon, mu, logvar, beta=solver.beta, gamma=solver.gamma, rate=6.0)["loss"]
    return float(ref), float((ref - ours).abs())


# ---------------------------------------------------------------------------- superpos


def superpos_round(device, warmup: int, iterations: int, seed: int, amp: bool | None = None) -> float:
    """Iterations/s of superpos.disentangle.training.train over `iterations` steps after `warmup` (device defaults)."""
    with tempfile.TemporaryDirectory() as folder:
        logs = training.train(n_iterations=warmup + iterations, log_every=warmup, eval_samples=0, checkpoint_every=0,
                             device=str(device), output_dir=folder, progress=False, seed=seed, amp=amp)
    rows = logs[(logs.metric == "it_per_s") & (logs.step > warmup)].sort_values("step")
    steps = np.diff(np.r_[warmup, rows.step.to_numpy()])
    return steps.sum() / (steps / rows.value.to_numpy()).sum()


# ---------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default cpu 6, cuda 3)")
    parser.add_argument("--warmup", type=int, default=None, help="steps before timing (default cpu 10, cuda 300)")
    parser.add_argument("--iterations", type=int, default=None, help="timed steps (default cpu 60, cuda 3000)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = get_device(args.device)
    cuda = device.type == "cuda"
    args.rounds = args.rounds or (3 if cuda else 6)
    warmup = args.warmup or (300 if cuda else 10)
    iterations = args.iterations or (3000 if cuda else 60)
    if warmup > iterations and not cuda:
        raise SystemExit("--warmup must not exceed --iterations")
    torch.backends.cudnn.benchmark = True
    packed = packed_dsprites(device)
    loader = DataLoader(ReferenceSprites(packed), batch_size=32, shuffle=True, num_workers=2,
                        pin_memory=cuda, drop_last=True, collate_fn=custom_collate, persistent_workers=False)
    solver = ReferenceSolver(device)
    check = same_loss(solver, loader)
    ours, theirs, fp32 = [], [], []
    with_fp32 = not cuda and training.native_bf16(device)   # CPU: also time superpos without autocast, its share
    reference_warmup = warmup  # the same warm-up steps for both loops, every round
    for r in range(args.rounds):
        if r % 2:
            theirs.append(reference_round(solver, loader, reference_warmup, iterations))
        ours.append(superpos_round(device, warmup, iterations, seed=r))
        if with_fp32:
            fp32.append(superpos_round(device, warmup, iterations, seed=r, amp=False))
        if not r % 2:
            theirs.append(reference_round(solver, loader, reference_warmup, iterations))
        print(f"round {r}: superpos {ours[-1]:.2f} it/s, reference {theirs[-1]:.2f} it/s, "
              f"ratio {ours[-1] / theirs[-1]:.2f}" + (f"; superpos fp32 {fp32[-1]:.2f} it/s" if fp32 else ""), flush=True)
    report(device, args, warmup, iterations, ours, theirs, fp32, check)


def report(device, args, warmup, iterations, ours, theirs, fp32, check):
    a, b = statistics.median(ours), statistics.median(theirs)
    ratios = [x / y for x, y in zip(ours, theirs)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    lines = [f"# superpos.disentangle.training benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"# device: {device} ({name}); cores: {torch.get_num_threads()} torch threads; torch {torch.__version__}",
             f"# superpos precision: {'bfloat16 autocast' if training.native_bf16(device) else 'fp32'}; "
             f"reference: fp32",
             f"# batch 64 (32 pairs), SlowVAE loss; {args.rounds} alternating rounds of {iterations} steps after "
             f"{warmup} warm-up steps; median round; load average {os.getloadavg()[0]:.1f} at the end "
             f"(the machine is shared)",
             f"{'loop':<34}{'it/s':>10}   rounds",
             f"{'superpos (train, device defaults)':<34}{a:>10.2f}   " + ", ".join(f"{v:.2f}" for v in ours),
             f"{'reference (DataLoader x2, scipy)':<34}{b:>10.2f}   " + ", ".join(f"{v:.2f}" for v in theirs)]
    if fp32:
        lines.append(f"{'superpos (train, amp=False: fp32)':<34}{statistics.median(fp32):>10.2f}   "
                     + ", ".join(f"{v:.2f}" for v in fp32))
    lines += [f"{'ratio per round':<34}{'':>10}   " + ", ".join(f"{v:.2f}" for v in ratios),
              f"speed-up (median of the per-round ratios [min-max]): {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]"]
    if fp32:
        r32 = [x / y for x, y in zip(fp32, theirs)]
        lines.append(f"speed-up at the reference's precision (superpos fp32, no autocast; median of per-round "
                     f"ratios [min-max]): {statistics.median(r32):.2f}x [{min(r32):.2f}-{max(r32):.2f}]")
    lines.append(f"# timed alike: each round, each loop runs {warmup} untimed warm-up steps then {iterations} timed "
                 f"steps; rounds alternate which loop goes first; it/s = median round; both loops use the same "
                 f"{torch.get_num_threads()} torch threads (the reference's DataLoader adds its 2 workers, as published)")
    lines.append(f"# same computation: the reference loss {check[0]:.3f} vs superpos slowvae_loss on the same batch "
                 f"and network outputs, |difference| {check[1]:.1e}")
    if device.type == "cpu":
        lines.append("# GPU: pending here (no GPU); run `python benchmarks/slowvae.py --device cuda`")
    text = "\n".join(lines) + "\n"
    print(text)
    default = "slowvae.txt" if device.type == "cpu" else f"slowvae_{device.type}.txt"
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / default
    atomic_write(out, lambda f: f.write(text), mode="w")


if __name__ == "__main__":
    main()
