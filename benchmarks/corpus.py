"""Corpora of any size: encoding speed and peak memory, and a short training run's anonymous memory.

    python benchmarks/corpus.py                      # 1 MB, 10 MB, 100 MB of tiny-shakespeare repeated
    python benchmarks/corpus.py --sizes 1M,10M,100M,1G
    python benchmarks/corpus.py --kind multibyte     # a synthetic text of 1- to 4-byte characters

Each text is generated under --dir (default /tmp/chainrule-corpus-bench, never the repository) and encoded
into a fresh cache there, in a process of its own: the table gives the encoder's MB/s and its peak resident
memory (ru_maxrss, the Python interpreter and NumPy included). Then a short training run on the cached corpus
(another process) samples /proc/self/status every 20 ms and at each step: its peak RssAnon (the pages the
kernel cannot drop, unlike the map's file-backed ones) and VmRSS. Targets (issue 19): encoding >= 50 MB/s,
peak RSS < 300 MB at any size; RssAnon within 100 MB of the 1 MB run's. The rows also go to
bench-results/corpus-KIND.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

ENCODE = """
import json, resource, sys, time
from chainrule.charlm.corpus import encode_file
start = time.perf_counter()
corpus = encode_file(sys.argv[1], sys.argv[2], progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "characters": len(corpus), "vocabulary": len(corpus.vocabulary),
                  "dtype": corpus.ids.dtype.name,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

TRAIN = """
import json, sys, threading, time
from chainrule.charlm.training import TrainConfig, Trainer

peaks = {"RssAnon": 0, "VmRSS": 0}

def sample():
    with open("/proc/self/status") as status:
        for line in status:
            key = line.split(":")[0]
            if key in peaks:
                peaks[key] = max(peaks[key], int(line.split()[1]) * 1024)

done = threading.Event()

def watch():
    while not done.wait(0.02):
        sample()

threading.Thread(target=watch, daemon=True).start()
config = TrainConfig.from_options(dict(text=sys.argv[1], model="lstm", hidden=128, layers=2, seq_len=64,
                                       batch_size=32, steps=int(sys.argv[3]), val_frac=0.0, eval_every=10**6,
                                       sample_every=0, seed=0))
trainer = Trainer(config, sys.argv[2], quiet=True, report=lambda line: None)
original = trainer.train_streams.batch

def batch(index):
    sample()
    return original(index)

trainer.train_streams.batch = batch
start = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - start
sample()
done.set()
print(json.dumps({**peaks, "seconds": seconds}))
"""


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def generate(path: Path, size: int, kind: str) -> None:
    """`size` bytes (cut at a character boundary) of tiny-shakespeare repeated, or of a synthetic text whose
    characters are 1 to 4 bytes long in UTF-8."""
    if kind == "shakespeare":
        block = SHAKESPEARE.read_bytes()
    else:
        words = ["plain", "naïve", "Grüße", "东京", "Ελλάδα", "😀🙂", "\n", "кошка", "ℵ₀"]
        block = " ".join(words[(i * 7) % len(words)] for i in range(200_000)).encode("utf-8")
    with open(path, "wb") as out:
        left = size
        while left > 0:
            piece = block[:left]
            out.write(piece)
            left -= len(piece)
    with open(path, "rb+") as out:   # drop a character cut in half at the end
        out.seek(max(0, size - 4))
        tail = out.read()
        start = len(tail) - 1
        while start > 0 and (tail[start] & 0xC0) == 0x80:   # back to the last character's first byte
            start -= 1
        lead = tail[start]
        length = 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if len(tail) - start < length:
            out.truncate(size - len(tail) + start)


def run(script: str, *args: str, cache: Path) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0", "CHAINRULE_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"the measuring process failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M,100M", help="comma-separated sizes (K, M, G: binary units)")
    parser.add_argument("--kind", choices=["shakespeare", "multibyte"], default="shakespeare")
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/chainrule-corpus-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the generated texts and caches")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'size':>8} {'chars':>13} {'vocab':>5} {'dtype':>6} {'encode s':>9} {'MB/s':>7} {'peak RSS':>9} "
          f"{'train s':>8} {'RssAnon':>9} {'VmRSS':>9}")
    for size_text in args.sizes.split(","):
        size = parse_size(size_text)
        text = args.dir / f"{args.kind}-{size}.txt"
        cache = args.dir / f"cache-{size}"
        shutil.rmtree(cache, ignore_errors=True)
        generate(text, size, args.kind)
        encoded = run(ENCODE, str(text), str(cache / "corpora"), cache=cache)
        trained = run(TRAIN, str(text), str(args.dir / f"run-{size}"), str(args.steps), cache=cache)   # cached
        mb = text.stat().st_size / 1e6
        print(f"{size_text:>8} {encoded['characters']:>13,} {encoded['vocabulary']:>5} {encoded['dtype']:>6} "
              f"{encoded['seconds']:>9.2f} {mb / encoded['seconds']:>7.1f} {encoded['peak_rss'] / 1e6:>7.1f}MB "
              f"{trained['seconds']:>8.1f} {trained['RssAnon'] / 1e6:>7.1f}MB {trained['VmRSS'] / 1e6:>7.1f}MB",
              flush=True)
        rows.append({"size": size, "kind": args.kind, "steps": args.steps, "encode_mb_per_s": mb / encoded["seconds"],
                     **{f"encode_{k}": v for k, v in encoded.items()}, **{f"train_{k}": v for k, v in trained.items()}})
        if not args.keep:
            text.unlink()
            for folder in (cache, args.dir / f"run-{size}"):
                shutil.rmtree(folder, ignore_errors=True)
    print(f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; MB = 10^6 bytes; sizes in binary units)")
    results = Path(__file__).resolve().parent.parent / "bench-results"
    results.mkdir(exist_ok=True)
    (results / f"corpus-{args.kind}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
