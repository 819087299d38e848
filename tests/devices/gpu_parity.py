"""Every fused recurrent cell on a device against the CPU, and a short training run: the GPU tests.

    python -m tests.devices.gpu_parity --device cuda            # on a GPU machine (benchmarks/gpu_check.sh)
    NUMBA_ENABLE_CUDASIM=1 python -m tests.devices.gpu_parity --device fake --quick   # CI: numba's simulator

Checks, each printed on one line, exit status 1 if any fails:
- kernels: `cuda_backend` against `numpy_backend` through the kernel contract (forward and backward of the
  RNN (tanh, relu), LSTM and GRU; with and without a mask; both directions); the Adam step's CUDA kernel
  against NumPy's formula (L2 and decoupled weight decay, AMSGrad);
- layers: nn.RNN/LSTM/GRU with 1 and 2 layers, bidirectional, with `lengths`, outputs, final states and every
  parameter's gradient on the device against the same layer on the CPU;
- training: a character model (embedding, 2-layer LSTM with dropout, head, Adam, clipping) trained for some
  steps on each device from the same seed: the losses agree to float32 rounding.
Tolerances: float64 1e-10, float32 1e-5 (relative to the values' scale).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import chainrule as cr
from chainrule import nn, optim
from chainrule._kernels.device import CPU, to_device, to_host, use_cuda_backend
from chainrule.nn import functional as F
from chainrule.nn.kernels import numpy_backend

TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
failures: list[str] = []


def _error(a, b) -> float:
    a, b = to_host(a).astype(np.float64), to_host(b).astype(np.float64)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    return float(np.abs(a - b).max(initial=0.0)) / scale


def report(name: str, errors: list[float], dtype) -> None:
    worst = max(errors)
    ok = worst <= TOLERANCE[np.dtype(dtype)]
    print(f"{'ok  ' if ok else 'FAIL'} {name:<58} max relative error {worst:.2e}", flush=True)
    if not ok:
        failures.append(name)


def check_kernels(device, dtypes, sizes) -> None:
    from chainrule.nn.kernels import cuda_backend as gpu
    steps, batch, hidden = sizes
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        for masked in (False, True):
            for reverse in (False, True):
                mask = None
                if masked:
                    lengths = np.arange(batch) % steps + 1
                    mask = (np.arange(steps)[:, None] < lengths[None, :])[:, :, None]

                def r(*shape):
                    return rng.standard_normal(shape).astype(dtype)

                def on(*arrays):
                    return [None if a is None else to_device(a, device) for a in arrays]
                d_out, d_h, d_c = r(steps, batch, hidden), r(batch, hidden), r(batch, hidden)
                if mask is not None:
                    d_out = np.where(mask, d_out, 0).astype(dtype)
                tag = f"{np.dtype(dtype).name} mask={masked:d} reverse={reverse:d}"
                for nonlinearity in ("tanh", "relu"):
                    p, h0, w = r(steps, batch, hidden), r(batch, hidden), r(hidden, hidden) / 2
                    cpu = numpy_backend.rnn_forward(p, h0, w, mask, reverse, nonlinearity)
                    dev = gpu.rnn_forward(*on(p, h0, w, mask), reverse, nonlinearity)
                    back_cpu = numpy_backend.rnn_backward(cpu[2], w, d_out, d_h)
                    back_dev = gpu.rnn_backward(dev[2], *on(w, d_out, d_h))
                    pairs = zip((*dev[:2], *back_dev), (*cpu[:2], *back_cpu))
                    report(f"kernels rnn-{nonlinearity} {tag}", [_error(a, b) for a, b in pairs], dtype)
                p, h0, c0, w, bias = r(steps, batch, 4 * hidden), r(batch, hidden), r(batch, hidden), \
                    r(4 * hidden, hidden) / 2, r(4 * hidden)
                cpu = numpy_backend.lstm_forward(p, h0, c0, w, bias, mask, reverse)
                dev = gpu.lstm_forward(*on(p, h0, c0, w, bias, mask), reverse)
                back_cpu = numpy_backend.lstm_backward(cpu[3], w, d_out, d_h, d_c)
                back_dev = gpu.lstm_backward(dev[3], *on(w, d_out, d_h, d_c), overwrite_cache=True)
                report(f"kernels lstm {tag}", [_error(a, b) for a, b in
                                               zip((*dev[:3], *back_dev), (*cpu[:3], *back_cpu))], dtype)
                p, w, bias = r(steps, batch, 3 * hidden), r(3 * hidden, hidden) / 2, r(3 * hidden)
                cpu = numpy_backend.gru_forward(p, h0, w, bias, mask, reverse)
                dev = gpu.gru_forward(*on(p, h0, w, bias, mask), reverse)
                back_cpu = numpy_backend.gru_backward(cpu[2], w, d_out, d_h)
                back_dev = gpu.gru_backward(dev[2], *on(w, d_out, d_h))
                report(f"kernels gru {tag}", [_error(a, b) for a, b in
                                              zip((*dev[:2], *back_dev), (*cpu[:2], *back_cpu))], dtype)


def check_adam(device, dtypes) -> None:
    """The Adam step on the device (one CUDA kernel per parameter) against NumPy's formula on the CPU."""
    from chainrule.optim.optimizer import adam
    rng = np.random.default_rng(2)
    for dtype in dtypes:
        for weight_decay, decoupled, amsgrad in ((0.0, False, False), (0.1, False, True), (0.1, True, False)):
            arrays = [rng.standard_normal(37).astype(dtype) for _ in range(2)] + \
                [np.abs(rng.standard_normal(37)).astype(dtype) * s for s in (0.1, 0.01, 0.02)]
            arrays[2] = rng.standard_normal(37).astype(dtype) * 0.1   # m may be negative
            on_device = [to_device(a, device) for a in arrays]
            options = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay, decoupled=decoupled,
                           amsgrad=amsgrad)
            for step in (1, 2, 3):
                with np.errstate(all="ignore"):
                    adam(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4] if amsgrad else None, step=step,
                         **options)
                adam(on_device[0], on_device[1], on_device[2], on_device[3], on_device[4] if amsgrad else None,
                     step=step, **options)
            report(f"adam {np.dtype(dtype).name} weight_decay={weight_decay} decoupled={decoupled:d} "
                   f"amsgrad={amsgrad:d}", [_error(d, c) for d, c in zip(on_device, arrays)], dtype)


def _layer_run(kind, device, dtype, layers, bidirectional, lengths, sizes, mode):
    steps, batch, hidden = sizes
    cr.manual_seed(1)
    options = dict(num_layers=layers, bidirectional=bidirectional, batch_first=True)
    if kind == "rnn-relu":
        layer = nn.RNN(3, hidden, nonlinearity="relu", **options)
    else:
        layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](3, hidden, **options)
    layer.to(dtype).to(device)
    x = cr.randn(batch, steps, 3, dtype=dtype, device=device, requires_grad=True)
    out, state = layer(x, lengths=lengths)
    finals = state if isinstance(state, tuple) else (state,)
    loss = (out * out).sum() + sum((s * s).sum() for s in finals) if mode == "squares" else out.sum()
    loss.backward()
    return [out, *finals, x.grad, *(p.grad for p in layer.parameters())]


def check_layers(device, dtypes, sizes, quick=False) -> None:
    steps, batch, _ = sizes
    lengths = list(np.arange(batch, 0, -1) % steps + 1)
    for kind in ("rnn", "lstm", "gru") if quick else ("rnn", "rnn-relu", "lstm", "gru"):
        for dtype in dtypes:
            for layers, bidirectional, use_lengths in ((1, False, False), (2, False, True), (2, True, True)):
                runs = [_layer_run(kind, where, dtype, layers, bidirectional, lengths if use_lengths else None,
                                   sizes, "squares") for where in (CPU, device)]
                errors = [_error(*(t.data if isinstance(t, cr.Tensor) else t for t in (d, c)))
                          for c, d in zip(*runs)]
                report(f"layer {kind} {np.dtype(dtype).name} layers={layers} bidirectional={bidirectional:d} "
                       f"lengths={use_lengths:d}", errors, dtype)


def train(device, steps, hidden, batch, seq_len, text) -> list[float]:
    cr.manual_seed(0)
    vocabulary = sorted(set(text))
    ids = np.array([vocabulary.index(ch) for ch in text])
    embedding, lstm = nn.Embedding(len(vocabulary), 16), nn.LSTM(16, hidden, num_layers=2, dropout=0.25,
                                                                 batch_first=True)
    head = nn.Linear(hidden, len(vocabulary))
    parameters = [p for m in (embedding, lstm, head) for p in m.to(device).parameters()]
    optimizer = optim.Adam(parameters, lr=2e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        starts = rng.integers(0, len(ids) - seq_len - 1, batch)
        window = np.stack([ids[s:s + seq_len + 1] for s in starts])
        out, _ = lstm.forward_tokens(window[:, :-1], embedding.weight)   # as charlm's model reads its text
        loss = F.cross_entropy(head(out).reshape(-1, len(vocabulary)),
                               cr.tensor(window[:, 1:].reshape(-1), device=device))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 5.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


def check_training(device, steps, hidden, batch, seq_len) -> None:
    text = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings "
            "and arrows of outrageous fortune, or to take arms against a sea of troubles. ") * 4
    cpu = train(CPU, steps, hidden, batch, seq_len, text)
    dev = train(device, steps, hidden, batch, seq_len, text)
    errors = [abs(a - b) / abs(b) for a, b in zip(dev, cpu)]
    print(f"     training losses cpu {cpu[0]:.6f} .. {cpu[-1]:.6f}, device {dev[0]:.6f} .. {dev[-1]:.6f}")
    report(f"training {steps} steps, 2x{hidden} LSTM, batch {batch}: loss per step", errors, np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or fake (the tests' stand-in device)")
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer cases (the simulator is slow)")
    args = parser.parse_args(argv)
    if args.device == "fake":
        from tests.devices.fake_cuda import BACKEND
        use_cuda_backend(BACKEND)
        device = cr.zeros(1, device="cuda").device
    else:
        device = cr.zeros(1, device=args.device).device
    started = time.perf_counter()
    if args.quick:
        check_kernels(device, (np.float64,), (3, 3, 3))
        check_adam(device, (np.float64,))
        check_layers(device, (np.float64,), (3, 2, 3), quick=True)
        check_training(device, steps=3, hidden=8, batch=2, seq_len=6)
    else:
        check_kernels(device, (np.float64, np.float32), (7, 5, 48))
        check_adam(device, (np.float64, np.float32))
        check_layers(device, (np.float64, np.float32), (9, 4, 32))
        check_training(device, steps=30, hidden=128, batch=16, seq_len=32)
    print(f"{'FAILED: ' + ', '.join(failures) if failures else 'all passed'} ({time.perf_counter() - started:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
