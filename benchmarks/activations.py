"""Images/s of `superpos.networks.extraction.extract` versus a plain forward pass of the same model on the same batches.

    python benchmarks/activations.py                    # CPU, small
    python benchmarks/activations.py --device cuda      # GPU, mixed precision, larger n

Both sides do the same work per batch: uint8 -> device -> float -> the model's preprocessing
(resize to its input size, normalise) -> forward under torch.inference_mode (and the same autocast).
`extract` adds the hooks, the pooling and the copy of the pooled activations to host memory (and may
stop the forward pass early once every requested layer has fired). Every case is timed alike
(`benchmarks/timing.py`): one warm-up run each on all stimuli, then `--repeats` alternated rounds (order
rotated each round); images/s from the median round, the ratio (extract / plain) the median of the
per-round ratios with its min-max. Check that both compute the same thing: `extract` of the
classifier layer (`_fc`) must equal the plain forward pass's logits (max difference printed).
Target: ratio (extract / plain) >= 0.9.
"""
import argparse
import platform
import time
from pathlib import Path

import torch

from timing import compare
from superpos.networks.models import autocast_dtype, default_layers, load_model
from superpos.networks.extraction import extract
from superpos.core import get_device
from superpos.stimuli.natural import natural_stimuli


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_forward(vm, stimuli, batch_size, device, dtype):
    """The baseline: the same batches through the same model, no hooks, logits copied to the host (returned)."""
    module = vm.module.to(device).eval()
    logits = []
    with torch.inference_mode():
        for start in range(0, len(stimuli), batch_size):
            x = vm.preprocess(stimuli.images[start:start + batch_size].to(device, non_blocking=True).float() / 255)
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                out = module(x)
            logits.append(out.float().cpu())
    _sync(device)
    return torch.cat(logits)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--n", type=int, default=None, help="stimuli (default 128 on cpu, 4096 on cuda)")
    parser.add_argument("--size", type=int, default=96, help="stimulus size (resized to the model's input size)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 on cpu, 256 on cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--amp", default=None, help="None (auto: on for cuda), bf16, fp16 or off")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "activations.txt"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    amp = False if args.amp == "off" else args.amp
    dtype = autocast_dtype(amp, device)
    n = args.n or (4096 if device.type == "cuda" else 128)
    batch_size = args.batch_size or (256 if device.type == "cuda" else 64)
    vm = load_model(args.model)
    stimuli = natural_stimuli(n, args.size, seed=0)
    cases = {"default layers": default_layers(vm), "one late layer": default_layers(vm)[-1:],
             "every block": default_layers(vm, k=10_000)}
    check = stimuli.subset(range(min(n, batch_size)))
    logits = plain_forward(vm, check, batch_size, device, dtype)
    fc = extract(vm, "_fc", check, batch_size=batch_size, device=device, amp=amp, progress=False)
    diff = float((torch.as_tensor(fc.values) - logits).abs().max())
    timed_cases = {"plain forward": lambda: plain_forward(vm, stimuli, batch_size, device, dtype)}
    for case, layers in cases.items():
        timed_cases[case] = (lambda layers=layers: extract(vm, layers, stimuli, batch_size=batch_size, device=device,
                                                           amp=amp, progress=False))
    timings = compare(timed_cases, rounds=args.repeats, warmup=1, min_time=0, sync=lambda: _sync(device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    lines = [f"# {args.model}, {n} stimuli of {args.size} px -> {vm.input_size} px, batch {batch_size}, "
             f"device {device.type} ({name}), autocast {dtype}, torch {torch.__version__}",
             f"{'':<22}{'images/s':>10}{'ratio [min-max]':>20}  layers"]
    plain = n / timings.median("plain forward")
    lines.append(f"{'plain forward':<22}{plain:>10.1f}{'1.00':>20}  (logits)")
    for case, layers in cases.items():
        rate = n / timings.median(case)
        shown = ", ".join(layers) if len(layers) <= 5 else f"{len(layers)} layers: {layers[0]} ... {layers[-1]}"
        lines.append(f"{'extract: ' + case:<22}{rate:>10.1f}{timings.ratio('plain forward', case):>20}  {shown}")
    lines.append(f"# same result: max |extract('_fc') - plain logits| = {diff:.2e} on {len(check)} stimuli")
    lines.append(timings.how_timed())
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(text + "\n\n")


if __name__ == "__main__":
    main()
