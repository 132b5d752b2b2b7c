"""What a reviewer reads: the model card (the version page), its HTML twin (the artifact viewer
shows .md as plain text) and the short verdict on the run and logged-model pages."""

from __future__ import annotations

import base64
from typing import Any

from ganpkg.metrics import lower_is_better, summarize
from pipelines.gate import GateDecision, progress

LINEAGE_PREFIXES = ("git.", "data.", "ganpkg.", "prefect.", "torch.", "device", "env.")
NOTE_TAG = "mlflow.note.content"  # what MLflow's run and logged-model pages show as Description


def grid_link(run_id: str) -> str:
    # An absolute path on the MLflow server: the version page renders the card, and a link
    # relative to it pointed nowhere (the image was broken there).
    return f"/get-artifact?path=model_card%2Fsamples.png&run_uuid={run_id}"


def verdict(name: str, version: str, metric: str, tags: dict[str, str],
            metrics: dict[str, float], protocol: dict[str, Any], decision: GateDecision,
            run_id: str) -> str:
    """The short card: the gate's decision and why, the gate metric with its interval, floor and
    baseline said in words, the checkpoint and the code it came from, the grid."""
    lines = [f"### {name} v{version} → @{decision.alias}", "", decision.reason, ""]
    found = [s for s in summarize(metrics) if s.name == metric]
    if found:
        s = found[0]
        better = "lower" if lower_is_better(metric) else "higher"
        head = f"**{metric} = {s.value:.4g}**"
        if s.ci_low is not None and s.ci_high is not None:
            head += (f", 95% interval {s.ci_low:.4g} to {s.ci_high:.4g} (how much it could move "
                     f"with other generated samples)")
        n = protocol.get("n_samples", "?")
        lines += [f"{head}; {n} generated images, {better} is better.", ""]
        if s.floor is not None:
            times = (f" It is {s.times_floor:.3g}× the floor: {s.times_floor:.3g} times as far "
                     f"from the reference as real images are." if s.times_floor else "")
            lines.append(f"- **Floor {s.floor:.4g}**: held-out real images measured the same "
                         f"way, the best a generator can reach.{times}")
        if s.baseline is not None:
            went = (progress(s.value, s.baseline, s.floor, lower_is_better(metric))
                    if s.floor is not None else None)
            way = (f" Counting on a log scale (each halving of the distance counts the same), it "
                   f"has gone {max(went, 0):.0%} of the way from the baseline to the floor."
                   if went is not None else "")
            lines.append(f"- **Baseline {s.baseline:.4g}**: this generator before training.{way}")
    commit = tags.get("git.commit", "unknown")
    dirty = tags.get("git.dirty") == "true"
    step, chosen = tags.get("checkpoint.step", "?"), tags.get("checkpoint.chosen", "the last")
    code = ("with uncommitted changes (their diff: git/diff.patch)" if dirty
            else "no uncommitted changes")
    lines += [f"- Checkpoint: step {step}; {chosen}", f"- Code: commit {commit[:12]}, {code}",
              "", f"![samples]({grid_link(run_id)})", "",
              ("The full card (metrics, protocol, lineage): model_card/model_card.html in the "
               "run's artifacts, or the version page.")]
    return "\n".join(lines) + "\n"


def card_html(card: str, grid_png: bytes) -> str:
    """The card as one self-contained page: its grid inline, so the artifact viewer (which
    shows .html, and .md only as text) renders both."""
    import markdown

    inline = "data:image/png;base64," + base64.b64encode(grid_png).decode()
    body = markdown.markdown(card, extensions=["tables"])
    start = body.find('src="/get-artifact?')
    if start != -1:
        end = body.index('"', start + 5)
        body = body[:start] + f'src="{inline}"' + body[end + 1:]
    style = ("body{font-family:sans-serif;max-width:60em;margin:1em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}")
    return f"<!doctype html><meta charset=utf-8><style>{style}</style>\n{body}\n"


def _table(rows: list[tuple[str, str]], head: tuple[str, str]) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    return "\n".join(lines)


def model_card(name: str, version: str, tags: dict[str, str], metrics: dict[str, float],
               protocol: dict[str, Any], decision: GateDecision, run_id: str,
               spread: str | None = None) -> str:
    """Markdown: decision, metrics table, protocol, lineage, sample grid, how to use it."""
    lineage = [(k, v) for k, v in sorted(tags.items()) if k.startswith(LINEAGE_PREFIXES)]
    return "\n\n".join([
        f"# {name} v{version}",
        f"**Gate:** `{decision.alias}`: {decision.reason}",
        "## Metrics",
        "\n".join(f"- {summary.describe()}" for summary in summarize(metrics)),
        ("Value ± standard error [95% interval] from a bootstrap of the generated samples. "
         "The floor is held-out real images against the same reference, the best reachable: "
         "N× the floor means N times as far from the reference as real images are. The "
         "baseline is this generator before training; the gate's \"way from the baseline to "
         "the floor\" counts on a log scale, where each halving of the distance counts the "
         "same."),
        *([spread] if spread else []),
        _table([(k, f"{v:.6g}") for k, v in sorted(metrics.items())], ("metric", "value")),
        "## Evaluation protocol", _table(sorted(protocol.items()), ("field", "value")),
        "## Lineage", _table([*lineage, ("mlflow run", run_id),
                              ("checkpoint step", tags.get("checkpoint.step", "?")),
                              ("checkpoint chosen", tags.get("checkpoint.chosen", "last"))],
                             ("tag", "value")),
        "## Samples (fixed noise, seed 0)",
        (f"![samples]({grid_link(run_id)})  \n"
         f"(run artifact `model_card/samples.png`)"),
        "## Use",
        (f"```\nganpkg sample --model models:/{name}/{version} --n 64 --out grid.png\n"
         f"ganpkg lineage models:/{name}/{version}\n```"),
    ]) + "\n"
