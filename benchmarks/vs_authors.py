"""Side-by-side speed: a whole `physml train specs/aphynity_pendulum.phy` run against the
authors' public APHYNITY implementation, both running AT THE SAME TIME on the same CPU, one
thread each (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, torch.set_num_threads(1)).

Acceptance target: physml's whole-run time per Adam step ≤ 0.5 × the authors' time per Adam
step (``pairs.*.ratio_whole_run``).

Getting the authors' code (not shipped here, never copied into this repository)::

    git clone https://github.com/yuan-yin/APHYNITY /path/to/APHYNITY

It needs torch, torchdiffeq, scipy, numpy and matplotlib. Its `experiments.py` imports
``torchvision.utils.make_grid`` but never uses it; when torchvision is not installed this
benchmark's launcher puts an empty stand-in module for it in ``sys.modules`` before running
``train_aphynity.py`` (no file of the authors' code is edited). Nothing else is needed: the
code runs on CPU by default (``--device cpu``) and downloads nothing. Its pendulum setting
(``train_aphynity.py pendulum``, default ``--phy incomplete --aug``) is the thesis protocol:
25 train / 25 test trajectories simulated with DOP853 (rtol 1e-10) on first use, batch 25
(one batch per epoch), torchdiffeq rk4, Adam lr 1e-3, ``niter = 5`` Adam steps per batch,
λ₀ = 1, τ₂ = 1, validation every 100 batches (checkpoint written when it improves), a log
line every 10 batches. It has no option for the number of epochs (50 000 fixed), so it is
stopped (SIGTERM) when the physml run it is paired with exits.

    python benchmarks/vs_authors.py --authors-dir /path/to/APHYNITY [--seconds 300]
        [--variants compile,nocompile] [--out benchmarks/results/vs_authors_cpu.json]

Each variant is one session: the authors' pendulum training and one physml run are launched
together; physml trains for ``--seconds`` of training-loop time (``--minutes``, with
``--epochs`` raised so the epoch count does not stop it first), then writes its report as
the CLI always does; the authors' run is stopped when physml exits. Each session starts
both from scratch: fresh data caches (both simulate their data), fresh run folders.
Variants: ``compile`` is the spec as shipped (``compile true``) with the user's usual
TorchInductor cache (warm after a first compiled run: what a user's next run sees);
``compile_cold`` the same with an empty cache (``TORCHINDUCTOR_CACHE_DIR`` in the session
folder: a first run ever); ``nocompile`` a temporary copy of the spec with ``compile false``
(or a ``--no-compile`` CLI flag if the CLI has one). ``first_batch_s`` shows what the
compilation cost in each session.

Figures (ms per Adam step; physml's ``niter`` from its config.json, the authors' 5):

- physml ``whole_run``: process wall time (launch → exit: imports, data simulation, model
  build, every batch with its validation / metrics / checkpoints, compilation, the final
  report and plots) ÷ Adam steps done. This is the acceptance figure.
- physml ``loop``: from ``metrics.jsonl`` ``time`` stamps, after a few warm-up batches;
  includes per-epoch validation, checkpointing and metric writing, excludes start-up and
  the report. ``loop_median_batch``: median batch-to-batch delta (batches without a
  validation).
- authors ``whole_run``: launch → its last log line ÷ Adam steps logged by then (its log
  line ``[N][epoch/...]`` gives the batch count N; Adam steps = 5 N); includes its start-up
  and its data generation (done lazily during the first epoch).
- authors ``loop``: first → last log line (excludes start-up and data generation;
  includes its validation, checkpoint saves and printing).

The JSON also records each process's CPU seconds (its share of a core over the session)
and the load the rest of the machine put on the CPUs during each session, because the
figures only compare under the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "aphynity_pendulum.phy"
AUTHORS_NITER = 5  # train_aphynity.py, pendulum branch (checked below)

# Runs the authors' train_aphynity.py unchanged, single-threaded, from its own folder.
AUTHORS_LAUNCHER = r"""
import os, runpy, sys, types
import torch
torch.set_num_threads(1)
try:
    import torchvision.utils  # noqa: F401  (imported, unused, by experiments.py)
except ImportError:
    tv, tvu = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
    def make_grid(*args, **kwargs):
        raise RuntimeError("torchvision is not installed")
    tvu.make_grid, tv.utils = make_grid, tvu
    sys.modules["torchvision"], sys.modules["torchvision.utils"] = tv, tvu
code_dir = sys.argv[1]
sys.path.insert(0, code_dir)
os.chdir(code_dir)
sys.argv = ["train_aphynity.py"] + sys.argv[2:]
runpy.run_path("train_aphynity.py", run_name="__main__")
"""

AUTHORS_LOG = re.compile(r"^\[(\d+)\]\[(\d+)/(\d+)\]\[(\d+)/(\d+)\]")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _physml_cmd() -> list[str]:
    if (ROOT / "physml" / "__main__.py").exists():
        return [sys.executable, "-m", "physml"]
    return [sys.executable, "-c", "from physml.cli.app import main; main()"]


class Proc:
    """A child process whose output lines are time-stamped as they arrive."""

    def __init__(self, cmd: list[str], log: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None):
        self.cmd = cmd
        self.lines: list[tuple[float, str]] = []
        self.log = open(log, "w", encoding="utf-8")
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(cmd, cwd=cwd, env={**_env(), **(env or {})}, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1,
                                  start_new_session=True)
        self.t_end: float | None = None
        self.cpu_s: float | None = None
        self.rc: int | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.p.stdout:
            t = time.perf_counter() - self.t0
            self.lines.append((t, line.rstrip("\n")))
            self.log.write(f"{t:10.3f} {line}")

    def poll(self) -> bool:
        """True once the process has exited (then reaped, with its CPU time)."""
        if self.rc is not None:
            return True
        pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.t_end = time.perf_counter() - self.t0
        self.rc = os.waitstatus_to_exitcode(status)
        self.p.returncode = self.rc
        self.cpu_s = ru.ru_utime + ru.ru_stime
        self.reader.join(timeout=5)
        self.log.close()
        return True

    def stop(self) -> None:
        if self.poll():
            return
        try:
            os.killpg(self.p.pid, signal.SIGTERM)  # its own session, started above
        except ProcessLookupError:
            pass
        deadline = time.perf_counter() + 15
        while not self.poll():
            if time.perf_counter() > deadline:
                os.killpg(self.p.pid, signal.SIGKILL)
                deadline += 15
            time.sleep(0.1)

    def tail(self, n: int = 15) -> list[str]:
        return [l for _, l in self.lines[-n:]]


def _cpu_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds over all cores since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    v = [int(x) for x in fields]
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / hz, sum(v[:8]) / hz


def _physml_has_flag(flag: str) -> bool:
    out = subprocess.run(_physml_cmd() + ["train", "--help"], env=_env(), capture_output=True,
                         text=True, timeout=120)
    return flag in out.stdout


def _physml_figures(proc: Proc, run_dir: Path) -> dict:
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    niter = int(cfg.get("method_options", {}).get("niter", 1))
    rows, vals = [], 0
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in rec:
            rows.append(rec)
        elif "val" in rec:
            vals += 1
    n = len(rows)
    steps = n * niter
    times = [r["time"] for r in rows]
    warm = min(5, n // 3)
    out = {"compile": cfg.get("compile"), "niter": niter, "batches": n, "adam_steps": steps,
           "validations": vals, "exit_code": proc.rc, "process_wall_s": round(proc.t_end, 2),
           "process_cpu_s": round(proc.cpu_s, 2),
           "cpu_share_of_one_core": round(proc.cpu_s / proc.t_end, 3)}
    if n < 3:
        out["error"] = "too few batches"
        return out
    deltas = [b - a for a, b in zip(times, times[1:])]
    out["ms_per_adam_step"] = {
        "whole_run": round(1e3 * proc.t_end / steps, 2),
        "loop": round(1e3 * (times[-1] - times[warm]) / ((n - 1 - warm) * niter), 2),
        "loop_median_batch": round(1e3 * statistics.median(deltas[warm:]) / niter, 2),
    }
    # Where the wall time went, from the first printed progress line ("step 1 …",
    # printed right after the first batch) and the loop's own clock.
    first = next((t for t, l in proc.lines if re.match(r"\s*step 1 ", l)), None)
    phases = {"training_loop_s": round(times[-1], 2), "first_batch_s": round(times[0], 2),
              "warmup_batches_s": round(times[warm], 2)}
    if first is not None:
        phases["startup_s (imports, spec, data simulation, model, first save)"] = \
            round(first - times[0], 2)
        phases["after_loop_s (final validation, save, report, plots, exit)"] = \
            round(proc.t_end - first - (times[-1] - times[0]), 2)
    out["phases"] = phases
    return out


def _authors_figures(proc: Proc, window_s: float) -> dict:
    logs = []
    for t, line in proc.lines:
        m = AUTHORS_LOG.match(line)
        if m:
            logs.append((t, int(m.group(1))))
    out = {"niter": AUTHORS_NITER, "log_lines": len(logs),
           "process_cpu_s": round(proc.cpu_s, 2) if proc.cpu_s is not None else None,
           "cpu_share_of_one_core": round(proc.cpu_s / proc.t_end, 3) if proc.cpu_s else None,
           "paired_window_s": round(window_s, 2)}
    if len(logs) < 2:
        out["error"] = "fewer than two log lines"
        out["tail"] = proc.tail()
        return out
    t_first, b_first = logs[0]
    t_last, b_last = max(logs, key=lambda x: (x[1], -x[0]))
    out.update({"batches_logged": b_last, "adam_steps": b_last * AUTHORS_NITER,
                "first_log_s": round(t_first, 2), "last_log_s": round(t_last, 2)})
    out["ms_per_adam_step"] = {
        "whole_run": round(1e3 * t_last / (b_last * AUTHORS_NITER), 2),
        "loop": round(1e3 * (t_last - t_first) / ((b_last - b_first) * AUTHORS_NITER), 2),
    }
    return out


def session(variant: str, authors_dir: Path, seconds: float, work: Path,
            compile_flag: bool) -> dict:
    work.mkdir(parents=True)
    spec = SPEC
    extra: list[str] = []
    if variant == "nocompile":
        if compile_flag:
            extra = ["--no-compile"]
        else:
            text = SPEC.read_text(encoding="utf-8")
            new, k = re.subn(r"\bcompile\s+true\b", "compile false", text)
            if not k:
                new = re.sub(r"^(train\s.*)$", r"\1 compile false", text, count=1, flags=re.M)
            spec = work / SPEC.name
            spec.write_text(new, encoding="utf-8")
    run_dir = work / "physml_run"
    cmd = _physml_cmd() + ["train", str(spec), "--out", str(run_dir), "--data-dir",
                           str(work / "physml_data"), "--minutes", f"{seconds / 60:.6g}",
                           "--epochs", "100000000", "-q"] + extra
    acmd = [sys.executable, "-u", "-c", AUTHORS_LAUNCHER, str(authors_dir), "pendulum",
            "--root", str(work / "authors_exp"), "--device", "cpu"]
    load0, busy0 = os.getloadavg(), _cpu_busy()
    authors = Proc(acmd, work / "authors.log")
    env = {}
    if variant == "compile_cold":
        env["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor_cache")
    ours = Proc(cmd, work / "physml.log", cwd=ROOT, env=env)
    limit = time.perf_counter() + 3 * seconds + 600
    while not ours.poll():
        if time.perf_counter() > limit:
            ours.stop()
            break
        if authors.poll() and authors.rc not in (0, None):
            break  # the authors' run failed: stop measuring
        time.sleep(0.2)
    window = time.perf_counter() - ours.t0
    authors.stop()
    ours.stop()
    busy1, load1 = _cpu_busy(), os.getloadavg()
    res = {"variant": variant, "command": " ".join(cmd[:1] + ["…"] + cmd[3:]),
           "inductor_cache": ("fresh (empty)" if env else
                              os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default")
                              if variant == "compile" else None)}
    try:
        res["physml"] = _physml_figures(ours, run_dir)
    except (OSError, ValueError, KeyError) as exc:
        res["physml"] = {"error": str(exc), "exit_code": ours.rc, "tail": ours.tail()}
    res["authors"] = _authors_figures(authors, window)
    p, a = res["physml"].get("ms_per_adam_step"), res["authors"].get("ms_per_adam_step")
    if p and a:
        res["ratio_whole_run"] = round(p["whole_run"] / a["whole_run"], 3)
        res["ratio_whole_run_vs_authors_loop"] = round(p["whole_run"] / a["loop"], 3)
        res["ratio_loop"] = round(p["loop"] / a["loop"], 3)
    if busy0 and busy1:
        busy, total = busy1[0] - busy0[0], busy1[1] - busy0[1]
        ours_cpu = (ours.cpu_s or 0) + (authors.cpu_s or 0)
        res["machine"] = {
            "cores": os.cpu_count(), "window_s": round(window, 1),
            "cpu_busy_fraction": round(busy / total, 3) if total else None,
            "other_processes_cores": round(max(0.0, busy - ours_cpu) / window, 2),
            "loadavg_before": [round(x, 2) for x in load0],
            "loadavg_after": [round(x, 2) for x in load1]}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors-dir", type=Path, required=True,
                    help="a checkout of github.com/yuan-yin/APHYNITY")
    ap.add_argument("--seconds", type=float, default=300,
                    help="physml training-loop time per session (default 300)")
    ap.add_argument("--variants", default="compile,nocompile",
                    help="comma-separated: compile, compile_cold, nocompile")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--keep", type=Path, help="keep run folders and logs here")
    ap.add_argument("--authors-commit", help="record this commit when --authors-dir is not "
                    "a git checkout")
    args = ap.parse_args()

    authors_dir = args.authors_dir.resolve()
    entry = authors_dir / "train_aphynity.py"
    if not entry.is_file():
        sys.exit(f"{entry} not found: clone github.com/yuan-yin/APHYNITY and pass its folder")
    src = entry.read_text(encoding="utf-8")
    pend = src[src.find("dataset_name == 'pendulum'"):]
    m = re.search(r"niter\s*=\s*(\d+)", pend)
    if not m or int(m.group(1)) != AUTHORS_NITER:
        sys.exit("the authors' pendulum branch no longer has niter = 5; update AUTHORS_NITER")

    import torch

    result = {
        "benchmark": "benchmarks/vs_authors.py",
        "what": "whole `physml train specs/aphynity_pendulum.phy` run vs the authors' "
                "train_aphynity.py pendulum, side by side, 1 thread each; ms per Adam step",
        "target": "pairs.<variant>.ratio_whole_run <= 0.5",
        "seconds_per_session": args.seconds,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
                 "python": platform.python_version(), "torch": torch.__version__},
        "authors_commit": args.authors_commit or _git_head(authors_dir),
        "physml_commit": _git_head(ROOT),
        "notes": [
            "physml whole_run = process wall (launch to exit, incl. data simulation, "
            "compilation, validation, checkpoints, report and plots) / Adam steps.",
            "authors whole_run = launch to its last log line / Adam steps logged (5 per "
            "batch); includes its start-up and data generation; loop = first to last log "
            "line.",
            "physml trains with `loss robust` (Cauchy over trajectories) as the spec says; "
            "the authors' with MSE: the cost difference is a few elementwise ops per step.",
            "Figures are only comparable within a pair (same load); see machine.*",
        ],
        "pairs": {},
    }
    compile_flag = _physml_has_flag("--no-compile")
    base = Path(tempfile.mkdtemp(prefix="vs_authors_"))
    try:
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            if variant not in ("compile", "compile_cold", "nocompile"):
                sys.exit(f"unknown variant {variant!r}")
            print(f"[vs_authors] session {variant}: {args.seconds:g} s …", file=sys.stderr)
            result["pairs"][variant] = session(variant, authors_dir, args.seconds,
                                               base / variant, compile_flag)
    finally:
        if args.keep:
            shutil.copytree(base, args.keep, dirs_exist_ok=True)
        shutil.rmtree(base, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


def _git_head(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except OSError:
        return None


if __name__ == "__main__":
    main()
