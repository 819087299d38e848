"""One chainrule training step of the LSTM 512x2 batch-64 row of benchmarks/rnn.py, 10 timed after 2 warm-up.

    python benchmarks/lstm_step.py benchmarks/rnn.py LABEL

Prints the median and the fastest step, for comparing two checkouts run alternately in separate processes.
"""
import importlib.util
import statistics
import sys
import time

spec = importlib.util.spec_from_file_location("rnn_benchmark", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
step = bench.chainrule_step("lstm", 512, 2, 64)
for _ in range(2):
    step()
times = []
for _ in range(10):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
print(f"{sys.argv[2]} median {statistics.median(times) * 1e3:.1f} ms  min {min(times) * 1e3:.1f} ms")
