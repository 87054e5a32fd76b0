"""Serving throughput: raymlops versus bare Ray Serve and ``mlflow models serve``, in one run.

16 closed-loop clients (asyncio + aiohttp, in their own process) send one-row MLflow-
protocol requests (``dataframe_records``) to the demo model (``raymlops demo``'s
``demo-lending`` version 1) for ``--seconds`` per round, ``--rounds`` rounds after a
warm-up. Every contender runs in a fresh process with its own local Ray (HAProxy mode
is read when Serve starts), one replica with 0.5 CPU, on the same machine:

* ``raymlops``: a 90/10 split between versions 1 and 2 (version 2 is the same weights
  registered again, so the answers can be checked; the split's cost does not depend on
  the weights), co-located, metrics and capture on; with the default proxy and with
  HAProxy ingress (``RAY_SERVE_ENABLE_HA_PROXY=1``);
  and the separate shape (an ingress in front of one deployment per version) under
  HAProxy with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (gRPC between replicas);
* ``bare``: the deployment a Ray user would hand-write: load the pyfunc, parse the JSON,
  ``model.predict``, answer (default proxy; HAProxy unbatched; HAProxy with a
  ``@serve.batch`` method of 16 requests, 2 ms wait);
* ``mlflow``: ``mlflow models serve --env-manager local`` (its default workers).

Reports requests per second (median of rounds), p50 and p99 latency (over every request
of every round), errors, and the ratios the serving issue names. Shadow cost: the same
raymlops split with version 2 mirrored (a shadow of every request) against without.

    python benchmarks/serving_vs_bare.py                 # makes the demo model first
    python benchmarks/serving_vs_bare.py --workdir DIR   # reuse a demo workdir

Writes benchmarks/results/serving_vs_bare.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = "demo-lending"
CONTENDERS = ["raymlops", "raymlops_haproxy", "raymlops_haproxy_shadow",
              "raymlops_separate_haproxy", "bare", "bare_haproxy", "bare_haproxy_batched",
              "mlflow"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the load generator (its own process) --------------------------------------------------


async def _load(url: str, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    versions: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers={
                            "Content-Type": "application/json"}) as answer:
                        await answer.read()
                        ok = answer.status == 200
                        version = answer.headers.get("X-Model-Version", "")
                except aiohttp.ClientError:
                    ok, version = False, ""
                if ok:
                    latencies.append(time.perf_counter() - started)
                    versions[version] = versions.get(version, 0) + 1
                else:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return {"requests": len(latencies), "errors": errors, "seconds": elapsed,
            "latencies": latencies, "versions": versions}


def run_load(url: str, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """In a child process, so that the clients do not share the server's interpreter."""
    out = subprocess.run([sys.executable, __file__, "--load", url, "--clients", str(clients),
                          "--seconds", str(seconds)], input=body, capture_output=True,
                         check=True)
    return dict(json.loads(out.stdout))


# -- the contenders (each in its own process, with its own Ray) ---------------------------


def _bare_app(uri: str, tracking_uri: str, batched: bool) -> Any:
    import mlflow
    import pandas as pd
    from ray import serve
    from starlette.requests import Request

    @serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
    class Bare:
        def __init__(self) -> None:
            mlflow.set_tracking_uri(tracking_uri)
            self.model = mlflow.pyfunc.load_model(uri)

        async def __call__(self, request: Request) -> dict[str, Any]:
            frame = pd.DataFrame((await request.json())["dataframe_records"])
            return {"predictions": self.model.predict(frame).tolist()}

    @serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
    class BareBatched:
        def __init__(self) -> None:
            mlflow.set_tracking_uri(tracking_uri)
            self.model = mlflow.pyfunc.load_model(uri)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
        async def predict(self, frames: list[pd.DataFrame]) -> list[list[float]]:
            scores = self.model.predict(pd.concat(frames, ignore_index=True)).tolist()
            out, at = [], 0
            for frame in frames:
                out.append(scores[at:at + len(frame)])
                at += len(frame)
            return out

        async def __call__(self, request: Request) -> dict[str, Any]:
            frame = pd.DataFrame((await request.json())["dataframe_records"])
            return {"predictions": await self.predict(frame)}

    return (BareBatched if batched else Bare).bind()


def _serve_contender(name: str, workdir: Path, port: int) -> str:
    """Start the contender; returns its scoring URL."""
    import ray

    from raymlops._internal.ray_runtime import apply_ray_defaults
    from raymlops.workspace import Workspace

    apply_ray_defaults()
    ws = Workspace.at(workdir)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    from ray import serve

    if name.startswith("bare"):
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(_bare_app(f"models:/{MODEL}/1", ws.mlflow_uri, "batched" in name),
                  name="bare", route_prefix="/bare")
        return f"http://127.0.0.1:{port}/bare"
    from raymlops.config import DeployConfig
    from raymlops.serving.deploy import deploy

    config = DeployConfig(name=MODEL, port=port, cpus_per_replica=0.5, capture=True,
                          placement="separate" if "separate" in name else "colocated",
                          router_cpus=0.5)
    shadows = {"2": 100.0} if name.endswith("shadow") else None
    weights = {"1": 100.0} if shadows else {"1": 90.0, "2": 10.0}
    result = deploy(config, versions={"1": f"models:/{MODEL}/1", "2": f"models:/{MODEL}/2"},
                    weights=weights, shadows=shadows, tracking_uri=ws.mlflow_uri,
                    capture_root=ws.capture_dir)
    return result.endpoint


def contender(name: str, workdir: Path, body: bytes, args: argparse.Namespace) -> dict:
    """Serve ``name`` in this process, load it, stop it; the measurement as JSON."""
    port = free_port()
    if "haproxy" in name:
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    if "separate" in name:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    started = time.perf_counter()
    url = _serve_contender(name, workdir, port)
    ready = time.perf_counter() - started
    try:
        run_load(url, body, args.clients, args.warmup)
        rounds = [run_load(url, body, args.clients, args.seconds) for _ in range(args.rounds)]
        propagation = weight_propagation_ms() if name.startswith("raymlops") else None
    finally:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    out = summarize(name, rounds, ready)
    if propagation is not None:
        out["weight_change_ms"] = propagation
    return out


def weight_propagation_ms(times: int = 7) -> dict[str, float]:
    """From pushing a new split to the control actor until every replica routes by it
    (no user_config change), median and max over ``times`` changes."""
    import ray

    from raymlops.serving import control
    from raymlops.serving.deploy import current_routing
    from raymlops.serving.routing import plan

    actor = control.lookup(MODEL)
    took = []
    for i in range(times):
        previous = current_routing(MODEL)
        weights = {"1": 80.0, "2": 20.0} if i % 2 else {"1": 90.0, "2": 10.0}
        if previous.shadows:
            weights = {"1": 100.0}
        state = plan(MODEL, previous.versions, weights, previous.shadows, previous=previous)
        expected = control.running_replicas(MODEL, [MODEL])
        started = time.perf_counter()
        ray.get(actor.set_routing.remote(state.to_dict()))
        while len(ray.get(actor.routed_by.remote(state.generation, [MODEL]))) < expected:
            time.sleep(0.005)
        took.append((time.perf_counter() - started) * 1000)
    return {"median": statistics.median(took), "max": max(took)}


def mlflow_contender(workdir: Path, body: bytes, args: argparse.Namespace) -> dict:
    from raymlops.workspace import Workspace

    port = free_port()
    # mlflow runs uvicorn from PATH: the virtualenv's bin folder must be on it
    env = {**os.environ, "MLFLOW_TRACKING_URI": Workspace.at(workdir).mlflow_uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    mlflow_cli = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen([mlflow_cli, "models", "serve", "-m",
                               f"models:/{MODEL}/1", "--env-manager", "local", "--host",
                               "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import requests

        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mlflow models serve did not start (exit {server.poll()})")
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        ready = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}/invocations"
        run_load(url, body, args.clients, args.warmup)
        rounds = [run_load(url, body, args.clients, args.seconds) for _ in range(args.rounds)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return summarize("mlflow", rounds, ready)


def summarize(name: str, rounds: list[dict], ready: float) -> dict[str, Any]:
    latencies = sorted(x for r in rounds for x in r["latencies"])

    def pct(q: float) -> float:
        return latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000 if \
            latencies else float("nan")

    versions: dict[str, int] = {}
    for r in rounds:
        for v, n in r["versions"].items():
            versions[v] = versions.get(v, 0) + n
    return {"contender": name, "rps": statistics.median(r["requests"] / r["seconds"]
                                                        for r in rounds),
            "rps_rounds": [r["requests"] / r["seconds"] for r in rounds],
            "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "errors": sum(r["errors"] for r in rounds),
            "requests": sum(r["requests"] for r in rounds), "versions": versions,
            "startup_s": ready}


# -- the demo model -------------------------------------------------------------------------


def make_demo(workdir: Path) -> None:
    """``raymlops demo`` into ``workdir``, then version 2: version 1's weights again."""
    subprocess.run([sys.executable, "-m", "raymlops.cli", "demo", "--workdir", str(workdir),
                    "--port", str(free_port()), "--json"], check=True,
                   stdout=subprocess.DEVNULL)


def ensure_second_version(workdir: Path) -> None:
    import mlflow

    from raymlops.workspace import Workspace

    mlflow.set_tracking_uri(Workspace.at(workdir).mlflow_uri)
    client = mlflow.MlflowClient()
    if len(client.search_model_versions(f"name='{MODEL}'")) < 2:
        first = client.get_model_version(MODEL, "1")
        client.create_model_version(MODEL, first.source, run_id=first.run_id)


def request_body(workdir: Path) -> bytes:
    import pandas as pd

    from raymlops.workspace import Workspace

    ws = Workspace.at(workdir)
    source = ws.demo_data_dir / "production.csv"
    row = pd.read_csv(source).drop(columns=["defaulted"], errors="ignore").head(1)
    return json.dumps({"dataframe_records": json.loads(row.to_json(orient="records"))}
                      ).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, choices=CONTENDERS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serving_vs_bare.json")
    parser.add_argument("--load", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        result = asyncio.run(_load(args.load, sys.stdin.buffer.read(), args.clients,
                                   args.seconds))
        print(json.dumps(result))
        return 0
    if args.child:
        body = sys.stdin.buffer.read()
        if args.child == "mlflow":
            out = mlflow_contender(args.workdir, body, args)
        else:
            out = contender(args.child, args.workdir, body, args)
        print("RESULT " + json.dumps(out))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raymlops-bench-"))
    if not (workdir / "demo-data" / "production.csv").exists():
        print(f"making the demo model in {workdir} ...", file=sys.stderr)
        make_demo(workdir)
    ensure_second_version(workdir)
    body = request_body(workdir)
    results = []
    for name in args.only or CONTENDERS:
        print(f"measuring {name} ...", file=sys.stderr)
        child = subprocess.run([sys.executable, __file__, "--child", name, "--workdir",
                                str(workdir), "--clients", str(args.clients), "--seconds",
                                str(args.seconds), "--warmup", str(args.warmup), "--rounds",
                                str(args.rounds)], input=body, capture_output=True,
                               check=False)
        lines = [ln for ln in child.stdout.decode().splitlines() if ln.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            print(child.stderr.decode()[-3000:], file=sys.stderr)
            raise SystemExit(f"{name} failed (exit {child.returncode})")
        result = json.loads(lines[-1][7:])
        results.append(result)
        print(f"  {name}: {result['rps']:.0f} rps, p50 {result['p50_ms']:.1f} ms, p99 "
              f"{result['p99_ms']:.1f} ms, {result['errors']} errors", file=sys.stderr)
        leftover = subprocess.run(["pgrep", "-x", "haproxy"], capture_output=True, text=True,
                                  check=False)
        if leftover.stdout.strip():
            print(f"  note: haproxy processes outlived {name}: {leftover.stdout.split()}",
                  file=sys.stderr)
    by = {r["contender"]: r for r in results}
    ratios = {}

    def ratio(a: str, b: str, key: str = "rps") -> float | None:
        return by[a][key] / by[b][key] if a in by and b in by and by[b][key] else None

    for mine in ("raymlops", "raymlops_haproxy"):
        ratios[f"{mine}_vs_bare_haproxy_unbatched"] = ratio(mine, "bare_haproxy")
        ratios[f"{mine}_vs_bare_haproxy_batched"] = ratio(mine, "bare_haproxy_batched")
        ratios[f"{mine}_vs_bare_default"] = ratio(mine, "bare")
        ratios[f"{mine}_vs_mlflow"] = ratio(mine, "mlflow")
    ratios["shadow_p50_ratio"] = ratio("raymlops_haproxy_shadow", "raymlops_haproxy", "p50_ms")
    ratios["shadow_p99_ratio"] = ratio("raymlops_haproxy_shadow", "raymlops_haproxy", "p99_ms")
    ratios["raymlops_haproxy_p99_vs_bare_haproxy_unbatched"] = ratio(
        "raymlops_haproxy", "bare_haproxy", "p99_ms")
    out = {"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
           "cpus": os.cpu_count(), "results": results, "ratios": ratios,
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
