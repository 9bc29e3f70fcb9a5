"""Load test of the web demo: N concurrent clients calling ``/predict`` for a fixed time; errors and latency.

Run it like this (two CPU cores):

    .venv/bin/python bench/bench_demo.py                          # runs/default, 20 clients, 60 s
    .venv/bin/python bench/bench_demo.py --run runs/x --clients 20 --seconds 60 --concurrency 1

The demo is started the way users start it (``python demo --run RUN --port N``, a separate process, so the clients
do not share its interpreter). Each client is a `gradio_client.Client` in its own thread, looping until the time is up
and alternating an uploaded NPZ file with a bundled example, so the upload path is loaded too. A request counts as an
error when it raises or when the page reports anything but a prediction.

Baseline, measured in this process before the load: the same work without the server (read / pick the ECG,
`Predictor.predict`, render the page image) one request at a time. Printed: requests, errors, throughput against
the baseline's 1 / service time, and p50 / p95 / max latency against the baseline service time (with the queue
serving `--concurrency` requests at once, p95 ~ clients / concurrency x service time is the expected shape).
Without a run at `--run` (and no runs/default) the smoke configuration is trained into a temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNKNOWN_PATIENT = (None, "unknown", "unknown", "unknown", "unknown")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_folder(run: str | None, workdir: Path) -> str:
    if run is not None:
        return run
    if (REPO / "runs" / "default").is_dir():
        return str(REPO / "runs" / "default")
    print("no run given and no runs/default: training the smoke configuration (a minute or a few) ...", flush=True)
    from vlm_ecg.train import train
    from vlm_ecg.train_config import load_train_config

    config = load_train_config(
        ["--config", str(REPO / "finetune" / "configs" / "smoke.yaml"), "--output_dir", str(workdir / "run"),
         "--data_cache_dir", str(workdir / "cache")]
    )  # fmt: skip
    return str(train(config))


def _baseline(run: str, npz: Path, reps: int) -> float:
    """Median seconds of one request's work without the server (after warm-up): read or pick, predict, render."""
    from vlm_ecg.demo_app import _render_page
    from vlm_ecg.io import read_ecg
    from vlm_ecg.predict import Predictor
    from vlm_ecg.synth import make_examples

    predictor = Predictor.from_pretrained(run)
    example = make_examples(0)["LAD"].ecg
    for _ in range(3):  # warm-up: the first calls pay for lazy initialisation (oneDNN kernels, page templates)
        predictor.predict(example)
        _render_page(example.standardize())
    times = []
    for i in range(reps):
        start = time.perf_counter()
        std = (read_ecg(npz) if i % 2 == 0 else example).standardize()
        predictor.predict(std)
        _render_page(std)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _serve(run: str, port: int, concurrency: int) -> subprocess.Popen:
    code = (
        "import sys; from vlm_ecg.demo_app import build_demo; from vlm_ecg.predict import Predictor; "
        f"build_demo(Predictor.from_pretrained({run!r})).queue(default_concurrency_limit={concurrency})"
        f".launch(server_name='127.0.0.1', server_port={port}, quiet=True)"
    )
    if concurrency == 1:  # exactly what users run
        cmd = [sys.executable, str(REPO / "demo"), "--run", run, "--port", str(port)]
    else:
        cmd = [sys.executable, "-c", code]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the demo did not come up within 180 s")


def _client_loop(url: str, npz: Path, stop: float, latencies: list, errors: list, lock: threading.Lock) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    i = 0
    while time.time() < stop:
        upload = i % 2 == 0
        args = ([handle_file(str(npz))], None) if upload else ([], "LAD occlusion (anterior)")
        start = time.perf_counter()
        try:
            out = client.predict(*args, *UNKNOWN_PATIENT, api_name="/predict")
            ok = isinstance(out[0], str) and out[0].startswith("Predicted") and out[5] is not None
            problem = None if ok else f"page said: {out[0]!r}"
        except Exception as exc:  # a failed request is what this benchmark counts
            problem = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - start
        with lock:
            (errors.append(problem) if problem else latencies.append(elapsed))
        i += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run folder (default runs/default, else a smoke run is trained)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=1, help="requests the demo's queue serves at once")
    parser.add_argument("--baseline-reps", type=int, default=10)
    args = parser.parse_args()

    from vlm_ecg.io import write_ecg
    from vlm_ecg.synth import make_examples

    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        workdir = Path(tmp)
        run = _run_folder(args.run, workdir)
        npz = write_ecg(make_examples(1)["RCA"].ecg, workdir / "upload.npz")
        service_s = _baseline(run, npz, args.baseline_reps)
        port = _free_port()
        server = _serve(run, port, args.concurrency)
        try:
            latencies: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            stop = time.time() + args.seconds
            start = time.perf_counter()
            threads = [
                threading.Thread(
                    target=_client_loop, args=(f"http://127.0.0.1:{port}/", npz, stop, latencies, errors, lock)
                )
                for _ in range(args.clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=30)

    n = len(latencies)
    print(f"demo under load: {args.clients} clients x {args.seconds:.0f} s, queue concurrency {args.concurrency}")
    print(f"  baseline (no server, one at a time): {1000 * service_s:.0f} ms per request")
    print(f"  requests ok {n}, errors {len(errors)}")
    if n:
        lat = sorted(latencies)
        p50, p95 = statistics.median(lat), lat[min(n - 1, int(round(0.95 * (n - 1))))]
        throughput = n / wall
        print(f"  throughput {throughput:.2f} req/s = {throughput * service_s:.2f} x baseline (1 / service time)")
        print(f"  latency p50 {p50:.2f} s ({p50 / service_s:.1f} x service), p95 {p95:.2f} s "
              f"({p95 / service_s:.1f} x service), max {lat[-1]:.2f} s")  # fmt: skip
    for problem in sorted(set(errors))[:5]:
        print(f"  error: {problem}")
    return 1 if errors or not n else 0


if __name__ == "__main__":
    sys.exit(main())
