"""`llmkit redteam`: run the probe families against an OpenAI-compatible endpoint and report
the attack success rate (ASR) per family as JSON, markdown and a PNG.

    rep = redteam("smollm2", guard=True)          # starts llmkit's server on a loopback port
    rep = redteam("http://127.0.0.1:8000/v1")     # any OpenAI-compatible server
    rep.families["indirect_rag"]["asr"]

A target that is not an http(s) URL is a model spec (packaged name, .gguf, checkpoint): the
server is started in this process, with llmkit.guard's chat hooks when ``guard`` is set.
Requests are sent by a few threads (the server batches them), greedily (temperature 0), so a
run is repeatable.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from llmkit.core.errors import ConfigError, LLMKitError
from llmkit.core.fileio import atomic_write_file
from llmkit.guard.probes import FAMILIES, Probe, build_probes


class TargetError(LLMKitError):
    """A red-team target that cannot be reached or answers with something that is not OpenAI JSON."""


@dataclass
class ProbeResult:
    family: str
    name: str
    success: bool
    blocked: bool  # the endpoint refused the request (4xx), e.g. a guard's injection detector
    reply: str
    target: str
    mentioned: bool = False  # the token appears somewhere in the reply (success or not)


@dataclass
class RedTeamReport:
    target: str
    guard: bool
    model: str
    seconds: float
    families: dict[str, dict] = field(default_factory=dict)  # family -> {n, success, blocked, asr}
    results: list[ProbeResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"target": self.target, "guard": self.guard, "model": self.model, "seconds": round(self.seconds, 1),
                "families": self.families, "results": [asdict(r) for r in self.results]}


def summarize(results: Sequence[ProbeResult]) -> dict[str, dict]:
    """Per-family counts and ASR = successes / probes (a blocked probe is a failed attack)."""
    out: dict[str, dict] = {}
    for fam in FAMILIES:
        rs = [r for r in results if r.family == fam]
        if rs:
            s = sum(r.success for r in rs)
            out[fam] = {"n": len(rs), "success": s, "blocked": sum(r.blocked for r in rs), "asr": s / len(rs),
                        "mentioned": sum(r.mentioned for r in rs)}
    return out


def _post(url: str, body: dict, api_key: str | None, timeout: float) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {}
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise TargetError(f"cannot reach {url}: {e}", "start the server (llmkit serve) or fix --target") from None


def _get_json(url: str, api_key: str | None, timeout: float = 30) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise TargetError(f"cannot reach {url}: {e}", "start the server (llmkit serve) or fix --target") from None


def base_url(url: str) -> str:
    """'http://h:8000', 'http://h:8000/', 'http://h:8000/v1' -> 'http://h:8000/v1'."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def run_probe(url: str, model: str, probe: Probe, max_tokens: int, api_key: str | None,
              timeout: float = 300) -> ProbeResult:
    body = {"model": model, "messages": probe.messages, "temperature": 0, "max_tokens": max_tokens}
    status, data = _post(f"{url}/chat/completions", body, api_key, timeout)
    if status >= 500 or (status == 200 and "choices" not in data):
        raise TargetError(f"{url} answered {status} to probe {probe.name}: {str(data)[:200]}",
                          "check the server log")
    if status != 200:
        return ProbeResult(probe.family, probe.name, False, True, data.get("error", {}).get("message", ""),
                           probe.target)
    reply = data["choices"][0]["message"].get("content") or ""
    return ProbeResult(probe.family, probe.name, probe.succeeded(reply), False, reply, probe.target,
                       probe.mentioned(reply))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(model, guard: bool = False, max_batch: int = 8) -> Iterator[str]:
    """llmkit's server for ``model`` (a spec or a LoadedModel) on a free loopback port; yields its /v1 URL."""
    import uvicorn

    from llmkit.formats.loader import LoadedModel, load_model
    from llmkit.serve.app import create_app
    from llmkit.serve.state import ServeConfig

    hooks = None
    if guard:
        from llmkit.guard import Guard
        from llmkit.guard.wiring import chat_hooks

        hooks = chat_hooks(Guard())
    lm = model if isinstance(model, LoadedModel) else load_model(model)
    port = _free_port()
    app = create_app(lm, ServeConfig(port=port, max_batch=max_batch), hooks=hooks)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise TargetError("the local llmkit server did not start", "run `llmkit serve` to see why")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(30)


def redteam(target: str = "smollm2", guard: bool = False, families: Sequence[str] = FAMILIES,
            max_tokens: int = 48, concurrency: int = 4, api_key: str | None = None, model_name: str | None = None,
            seed: int = 0, lm=None, limit: int | None = None) -> RedTeamReport:
    """Run the probes against ``target`` (URL, or a model spec served here; ``lm``: an already loaded model;
    ``limit``: at most this many probes per family, for a quick look)."""
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ConfigError(f"unknown probe families {sorted(unknown)}", f"use some of {', '.join(FAMILIES)}")
    is_url = target.startswith(("http://", "https://"))
    if is_url and guard:
        raise ConfigError("--guard applies to a model target started here",
                          "start the URL's server with `llmkit serve --guard` instead")
    probes = build_probes(families, seed)
    if limit is not None:
        probes = [p for fam in FAMILIES for p in [q for q in probes if q.family == fam][:limit]]
    t0 = time.perf_counter()
    with (_remote(target) if is_url else local_server(lm or target, guard)) as url:
        name = model_name or _first_model(url, api_key)
        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            results = list(pool.map(lambda p: run_probe(url, name, p, max_tokens, api_key), probes))
    return RedTeamReport(target, guard, name, time.perf_counter() - t0, summarize(results), results)


@contextmanager
def _remote(url: str) -> Iterator[str]:
    yield base_url(url)


def _first_model(url: str, api_key: str | None) -> str:
    data = _get_json(f"{url}/models", api_key).get("data") or []
    if not data:
        raise TargetError(f"{url}/models lists no model", "pass --model-name")
    return data[0]["id"]


def _cell(f: dict | None) -> str:
    if not f:
        return "—"
    extra = f", {f['blocked']} blocked" if f["blocked"] else ""
    return f"{f['asr']:.0%} ({f['success']}/{f['n']}{extra})"


def markdown(reports: Sequence[RedTeamReport]) -> str:
    """One row per family, one ASR column per report (e.g. guards off / on)."""
    heads = [("guards on" if r.guard else "guards off") if len(reports) > 1 else "ASR" for r in reports]
    lines = ["| probe family | probes | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(reports)]
    for fam in FAMILIES:
        cells = [_cell(r.families.get(fam)) for r in reports]
        n = next((r.families[fam]["n"] for r in reports if fam in r.families), None)
        if n is not None:
            lines.append(f"| {fam} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(reports: Sequence[RedTeamReport], path: str | Path) -> Path:
    """Grouped bars of ASR per family, one bar per report."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = [f for f in FAMILIES if any(f in r.families for r in reports)]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(reports))
    for k, r in enumerate(reports):
        xs = [i + k * width for i in range(len(fams))]
        ax.bar(xs, [100 * r.families.get(f, {}).get("asr", 0) for f in fams], width,
               label=("guards on" if r.guard else "guards off"))
    ax.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(fams))], fams, rotation=15)
    ax.set_ylabel("attack success rate (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"llmkit redteam: {reports[0].target} ({reports[0].model})")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_file(path, buf.getvalue())


def write_reports(reports: Sequence[RedTeamReport], out_dir: str | Path) -> dict[str, Path]:
    """redteam.json, redteam.md and redteam.png in ``out_dir``."""
    out = Path(out_dir)
    paths = {"json": out / "redteam.json", "markdown": out / "redteam.md", "png": out / "redteam.png"}
    atomic_write_file(paths["json"], json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False))
    atomic_write_file(paths["markdown"], markdown(reports))
    plot(reports, paths["png"])
    return paths
