"""Summarise one experiments/gpu_check.sh run: summary.md, summary.json and curves.png.

    python experiments/gpu/summarize.py RESULTS_DIR [--smoke 0|1]

Reads what the check left in RESULTS_DIR (steps.jsonl, <step>.log, runs/<step>/config.json and
metrics.jsonl, throughput_CartpoleBalance.md, gpu_monitor.csv, environment.txt) and works with
whatever is there: a run stopped by its timeout is summarised from its streamed metrics and marked
partial. Exit status 0 when every step ran (see gpu_check.sh), 1 otherwise.

Only the standard library, numpy and matplotlib: it runs wherever the check ran.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

TRAIN_STEPS = ("main", "seeds1", "seeds5")  # plus every fpo_<task>
TIMEOUT_RCS = (124, 137)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                pass
    return out


def fmt(x: float | None, digits: int = 0, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.{digits}f}{unit}"


def median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None and math.isfinite(x))
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def gpu_samples(results: Path) -> list[tuple[float, float, float, float]]:
    """(unix time, memory used MiB, memory total MiB, utilisation %) from gpu_monitor.csv."""
    path = results / "gpu_monitor.csv"
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            t = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            out.append((t, float(parts[1]), float(parts[2]), float(parts[3])))
        except ValueError:
            continue
    return out


def step_gpu(samples: list[tuple[float, float, float, float]], t0: float, t1: float) -> dict:
    inside = [s for s in samples if t0 - 0.5 <= s[0] <= t1 + 1.0]
    if not inside:
        return {}
    return {
        "peak_memory_mib": max(s[1] for s in inside),
        "memory_total_mib": inside[0][2],
        "mean_utilisation_pct": sum(s[3] for s in inside) / len(inside),
    }


def train_run(results: Path, name: str) -> dict[str, Any]:
    run_dir = results / "runs" / name
    cfg_path = run_dir / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    if "config" in cfg and isinstance(cfg["config"], dict):  # tolerate a wrapped layout
        cfg = cfg["config"]
    history = read_jsonl(run_dir / "metrics.jsonl")
    calls = [r for r in history if r.get("call", 0) > 0]
    log = (results / f"{name}.log").read_text() if (results / f"{name}.log").exists() else ""
    # "compiled in 12.3 s" or "loaded from the compilation cache in 0.4 s"
    m = re.search(r"(compiled|loaded from the compilation cache) in ([0-9.]+) s", log)
    walls = [float(r["wall_time"]) for r in calls if "wall_time" in r]
    call_s = [b - a for a, b in zip([0.0, *walls[:-1]], walls, strict=True)]
    evals = [
        (r["env_steps"], r["eval/episode_return"]) for r in history if "eval/episode_return" in r
    ]
    sps = [r.get("env_steps_per_second") for r in calls]
    return {
        "env": cfg.get("env"),
        "algo": cfg.get("algo"),
        "num_seeds": cfg.get("num_seeds", 1),
        "num_envs": cfg.get("num_envs"),
        "planned_env_steps": cfg.get("num_timesteps"),
        "env_steps": calls[-1]["env_steps"] if calls else 0,
        "calls": len(calls),
        "compile_s": float(m.group(2)) if m else None,
        "compile_cached": bool(m and m.group(1) != "compiled"),
        "train_wall_s": walls[-1] if walls else None,
        "call_s": call_s,
        # first call excluded where there are more: it can include one-off work
        "median_env_steps_per_s": median(sps[1:] if len(sps) > 1 else sps),
        "evals": evals,
        "train_return": [
            (r["env_steps"], r[k])
            for r in calls
            for k in ("episode_return", "train/episode_return")
            if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])
        ],
    }


def throughput_tables(results: Path) -> list[str]:
    """The benchmark report's headings, tables and bold lines, up to its machine section."""
    path = results / "throughput_CartpoleBalance.md"
    if not path.exists():
        return ["(no throughput report)"]
    keep: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("## Machine"):
            break
        if line.startswith(("## ", "|", "**", "Layout")):
            if line.startswith(("## ", "**", "Layout")) and keep and keep[-1] != "":
                keep.append("")
            keep.append(line.replace("## ", "### ", 1) if line.startswith("## ") else line)
        elif keep and keep[-1] != "":
            keep.append("")
    return keep or ["(the throughput report has no table)"]


def plot(runs: dict[str, dict[str, Any]], out: Path) -> bool:
    curves = {k: r for k, r in runs.items() if r["evals"] or r["train_return"]}
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], curves.items(), strict=True):
        if r["evals"]:
            x, y = zip(*r["evals"], strict=True)
            ax.plot(x, y, "o-", label="eval return")
        if r["train_return"]:
            x, y = zip(*r["train_return"], strict=True)
            ax.plot(x, y, ".-", alpha=0.6, label="training episodes")
        ax.set_title(f"{name}: {r['algo']} on {r['env']}", fontsize=9)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--smoke", default="0")
    args = p.parse_args(argv)
    results: Path = args.results
    smoke = args.smoke == "1"
    steps = {s["step"]: s for s in read_jsonl(results / "steps.jsonl")}
    samples = gpu_samples(results)
    names = [n for n in steps if n in TRAIN_STEPS or n.startswith("fpo_")]
    runs = {n: train_run(results, n) for n in names}

    # Verdict per step.
    failed = []
    rows = []
    for name, s in steps.items():
        rc = s.get("rc")
        if rc is None:
            status = "skipped (budget)"
            if smoke:
                failed.append(name)
        elif rc == 0:
            status = "ok"
        elif rc in TIMEOUT_RCS and name in runs and runs[name]["calls"] > 0 and not smoke:
            status = "partial (stopped by its timeout; streamed metrics kept)"
        elif rc in TIMEOUT_RCS and name == "throughput" and not smoke:
            status = "stopped by its timeout"
            failed.append(name)
        else:
            status = f"failed (exit status {rc})"
            failed.append(name)
        s["status"] = status
        s.update(step_gpu(samples, s["start"], s["end"]))
        rows.append(
            f"| {name} | {status} | {s['wall_s']} | {s['timeout_s']} | "
            f"{fmt(s.get('peak_memory_mib'))} | {fmt(s.get('mean_utilisation_pct'))} |"
        )

    env_txt = (
        (results / "environment.txt").read_text() if (results / "environment.txt").exists() else ""
    )
    imports = (results / "imports.log").read_text() if (results / "imports.log").exists() else ""
    gpu_name = ""
    smi = results / "nvidia-smi.txt"
    if smi.exists():
        csv = [ln for ln in smi.read_text().splitlines() if ln.count(",") >= 3]
        gpu_name = csv[-1] if len(csv) >= 2 else ""
    versions = [ln for ln in imports.splitlines() if re.match(r"^[a-z][\w-]* (\d|missing)", ln)]
    devices = next((ln for ln in imports.splitlines() if ln.startswith("devices")), "")

    lines = [
        f"# GPU check{' (smoke run: tiny sizes, not a measurement)' if smoke else ''}",
        "",
        f"Folder `{results.name}`; command `{'GPU_CHECK_SMOKE=1 ' if smoke else ''}bash "
        "experiments/gpu_check.sh`; written "
        f"{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
        f"- {devices}" if devices else "- devices: (import check did not run)",
        f"- GPU (nvidia-smi: name, memory, driver, max SM clock): {gpu_name or 'none'}",
        f"- versions: {', '.join(versions)}",
        f"- git: {next((ln[5:] for ln in env_txt.splitlines() if ln.startswith('git: ')), '?')}",
        "",
        "## Steps",
        "",
        "Peak GPU memory and mean utilisation: nvidia-smi every 0.5 s during the step (jax with "
        "XLA_PYTHON_CLIENT_PREALLOCATE=false, so memory is what the process took, not 75 % of the "
        "card).",
        "",
        "| step | status | wall s | timeout s | peak GPU MiB | mean GPU util % |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        "## Training runs",
        "",
        "env steps/s: median over training calls after the first (all seeds together). compile s: "
        "the CLI's own report; '(cache)': the program was loaded from the persistent compilation "
        "cache (a repeat of one compiled earlier in the check).",
        "",
        "| step | env | algo | seeds | envs | env steps (planned) | calls | compile s | train s | "
        "env steps/s | eval return: first -> last (best) |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, r in runs.items():
        ev = [e[1] for e in r["evals"]]
        curve = f"{ev[0]:.1f} -> {ev[-1]:.1f} ({max(ev):.1f})" if ev else "-"
        planned = r["planned_env_steps"]
        partial = " partial" if steps.get(name, {}).get("status", "").startswith("partial") else ""
        lines.append(
            f"| {name} | {r['env']} | {r['algo']} | {r['num_seeds']} | {fmt(r['num_envs'])} | "
            f"{r['env_steps']:,} ({fmt(planned)}){partial} | {r['calls']} | {fmt(r['compile_s'], 1)}"
            f"{' (cache)' if r['compile_cached'] else ''} | "
            f"{fmt(r['train_wall_s'], 1)} | {fmt(r['median_env_steps_per_s'])} | {curve} |"
        )
    if plot({n: r for n, r in runs.items() if not n.startswith("seeds")}, results / "curves.png"):
        lines += ["", "![curves](curves.png)"]

    lines += ["", "## --num-seeds 5 vs 1 (FPO, CartpoleBalance, same steps per seed)", ""]
    s1, s5 = runs.get("seeds1"), runs.get("seeds5")
    seeds: dict[str, Any] = {}
    n = min(s1["calls"], s5["calls"]) if s1 and s5 else 0
    if n > 0:  # compare the calls both runs made (one may have been cut by its timeout)
        wall1, wall5 = sum(s1["call_s"][:n]), sum(s5["call_s"][:n])
        last1, last5 = s1["call_s"][n - 1], s5["call_s"][n - 1]
        proc1, proc5 = steps["seeds1"]["wall_s"], steps["seeds5"]["wall_s"]
        seeds = {
            "calls": n,
            "train_wall_ratio": wall5 / wall1 if wall1 else None,
            "last_call_ratio": last5 / last1 if last1 else None,
            "process_wall_ratio": proc5 / proc1 if proc1 else None,
        }
        ratio = seeds["train_wall_ratio"]
        lines += [
            f"- the first {n} training calls: 1 seed {wall1:.2f} s, 5 seeds {wall5:.2f} s: "
            f"**ratio {fmt(ratio, 2)}**"
            + (
                f" (5 / ratio = {5 / ratio:.2f}x the steps per second of one seed)" if ratio else ""
            ),
            f"- call {n} alone: {last1:.3f} s vs {last5:.3f} s (ratio "
            f"{fmt(seeds['last_call_ratio'], 2)}; call 1 can include one-off work)",
            f"- whole processes (start-up, compile, training, as many calls as each made): {proc1} s "
            f"vs {proc5} s (ratio {fmt(seeds['process_wall_ratio'], 2)}); compile "
            f"{fmt(s1['compile_s'], 1)} s vs {fmt(s5['compile_s'], 1)} s",
        ]
    else:
        lines.append("- not available (a run is missing, or made no training call)")

    lines += ["", "## Throughput at the paper's layout (`bench_throughput.py`)", ""]
    lines += throughput_tables(results)
    lines += [
        "",
        f"Verdict: {'every step ran' if not failed else 'FAILED: ' + ', '.join(failed)}.",
        "",
    ]
    (results / "summary.md").write_text("\n".join(lines))
    summary = {"smoke": smoke, "failed": failed, "steps": steps, "runs": runs, "seeds": seeds}
    (results / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print("\n".join(lines))
    print(f"wrote {results / 'summary.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
