"""Does stage 1 (weak texture-map labels) help stage 2 (manual masks)? A seeded A/B on real faces.

Arm "pretrain": stage 1 on the unlabelled faces' texture maps (configs/cpu_paper_pretrain.yaml,
the labelled faces left out), then stage 2 on the labelled training ids from its best weights.
Arm "scratch": the same stage 2 from random weights. Both arms run stage 2 with the same config,
epochs, schedule and validation ids (split seed 42); only the seed of weights, augmentation and
order changes between repeats. Early stopping is off so every run gets the full budget.
Arm "long" (optional): stage 2 from random weights for --long-epochs, so that scratch training
sees at least as many training images as stage 1 + stage 2 together (no less compute).

With --scratch-from-long the "scratch" arm is not trained again but read from the first
--stage2-epochs epochs of the long runs: the schedule restarts every --stage2-restart epochs
whatever the run's length and training on a CPU is deterministic, so a shorter run is exactly the
start of the long one (checked: a 40-epoch run agreed bit for bit with the 80-epoch run of the same
seed on every epoch compared).

Validation micro (pooled) F1 and Jaccard are reported twice: at the last epoch (no selection,
the honest figure) and at the epoch with the best validation Jaccard (what best.pth holds; chosen
on the same ids, so optimistic). Runs go to --out; a run with a summary.json is not run again,
so a stopped experiment continues where it was.

Examples:
    python bench/two_stage_experiment.py --out runs/two_stage --seeds 42 43 44 --jobs 2
    python bench/two_stage_experiment.py --out runs/two_stage --arms pretrain scratch long \
        --scratch-from-long
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.errors import UserError, run_cli  # noqa: E402
from utils.io import write_json, write_text  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ffhq-wrinkle-256"
ARMS = ("pretrain", "scratch", "long")
LABELS = {"pretrain": "stage 1 + stage 2", "scratch": "stage 2 alone",
          "long": "stage 2 alone, longer"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/two_stage", help="folder of the runs and the results")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="training seeds")
    p.add_argument("--stage1-epochs", type=int, default=8, help="stage 1 epochs")
    p.add_argument("--stage1-restart", type=int, default=4, help="stage 1 cosine cycle (epochs)")
    p.add_argument("--stage2-epochs", type=int, default=40, help="stage 2 epochs (both arms)")
    p.add_argument("--stage2-restart", type=int, default=10, help="stage 2 cosine cycle (epochs)")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=["pretrain", "scratch"],
                   help="which arms to run (long: scratch for --long-epochs)")
    p.add_argument("--long-epochs", type=int, default=80,
                   help="stage 2 epochs of the long scratch arm")
    p.add_argument("--scratch-from-long", action="store_true",
                   help="read the scratch arm from the long runs' first --stage2-epochs epochs")
    p.add_argument("--jobs", type=int, default=2, help="training processes at once")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per training process")
    p.add_argument("--data", default=str(DATA), help="the ffhq-wrinkle-256 folder")
    return p.parse_args(argv)


class Job:
    """One train.py run; `after` must have finished first (stage 2 after its stage 1)."""

    def __init__(self, name: str, args: list[str], after: Job | None = None) -> None:
        self.name, self.args, self.after = name, args, after
        self.proc: subprocess.Popen | None = None
        self.log: Any = None

    def done(self, out: Path) -> bool:
        return (out / self.name / "summary.json").is_file()


def plan(a: argparse.Namespace, out: Path) -> list[Job]:
    data = Path(a.data)
    images, masks = data / "images256x256", data / "manual_wrinkle_masks"
    for path in (images, masks):
        if not path.is_dir():
            raise UserError(f"{path}: folder not found (the real sample from ../shared)")
    common = ["--out-dir", str(out), "--workers", "0", "--no-progress", "--image-dir", str(images),
              "--set", "train.early_stopping=0"]
    stage2 = [*common, "--config", "configs/cpu_paper_finetune.yaml", "--mask-dir", str(masks),
              "--set", f"train.restart_epochs={a.stage2_restart}"]
    jobs: list[Job] = []
    for seed in a.seeds:
        pre = Job(f"stage1_s{seed}", [
            *common, "--config", "configs/cpu_paper_pretrain.yaml", "--exclude-ids", str(masks),
            "--epochs", str(a.stage1_epochs), "--seed", str(seed),
            "--set", f"train.restart_epochs={a.stage1_restart}"])
        epochs = ["--epochs", str(a.stage2_epochs), "--seed", str(seed)]
        if "pretrain" in a.arms:
            jobs.append(pre)
            jobs.append(Job(f"pretrain_s{seed}", [
                *stage2, *epochs, "--init", str(out / pre.name / "best.pth")], after=pre))
        if "scratch" in a.arms and not a.scratch_from_long:
            jobs.append(Job(f"scratch_s{seed}", [*stage2, *epochs]))
        if "long" in a.arms:
            jobs.append(Job(f"long_s{seed}", [*stage2, "--epochs", str(a.long_epochs),
                                              "--seed", str(seed)]))
    # Stage 1 runs first: they gate the fine-tunes; scratch runs fill the gaps.
    return sorted(jobs, key=lambda j: (not j.name.startswith("stage1"), j.after is not None))


def run_all(jobs: list[Job], out: Path, n_parallel: int, threads: int) -> None:
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    todo = [j for j in jobs if not j.done(out)]
    running: list[Job] = []
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    while todo or running:
        for job in list(running):
            if job.proc is not None and job.proc.poll() is not None:
                running.remove(job)
                job.log.close()
                took = (time.time() - start) / 60
                if job.proc.returncode != 0:
                    raise UserError(f"{job.name} failed (exit {job.proc.returncode}); see "
                                    f"{out / (job.name + '.log')}")
                print(f"[{took:5.1f} min] finished {job.name}", flush=True)
        for job in list(todo):
            if len(running) >= n_parallel:
                break
            if job.after is not None and not job.after.done(out):
                continue
            stale = out / job.name
            if stale.exists():  # an interrupted run: start it again from nothing
                for f in sorted(stale.iterdir()):
                    f.unlink()
                stale.rmdir()
            # Open for the run's whole life (closed when it ends), so no context manager.
            job.log = open(out / f"{job.name}.log", "w", encoding="utf-8")  # noqa: SIM115
            job.proc = subprocess.Popen([sys.executable, "train.py", "--run-name", job.name,
                                         *job.args], cwd=ROOT, env=env, stdout=job.log,
                                        stderr=subprocess.STDOUT)
            print(f"[{(time.time() - start) / 60:5.1f} min] started {job.name}", flush=True)
            todo.remove(job)
            running.append(job)
        time.sleep(2)


def read_history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def summarise(out: Path, a: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"seeds": a.seeds, "arms": {}}
    for arm in [x for x in ARMS if x in a.arms]:
        per_seed = []
        for seed in a.seeds:
            if arm == "scratch" and a.scratch_from_long:
                hist = read_history(out / f"long_s{seed}")[:a.stage2_epochs]
            else:
                hist = read_history(out / f"{arm}_s{seed}")
            best = max(hist, key=lambda r: r["jaccard"])
            last = hist[-1]
            per_seed.append({"seed": seed, "last_f1": last["f1"], "last_jaccard": last["jaccard"],
                             "best_epoch": int(best["epoch"]), "best_f1": best["f1"],
                             "best_jaccard": best["jaccard"], "epochs": len(hist),
                             "minutes": sum(r["seconds"] for r in hist) / 60})
        agg = {}
        for key in ("last_f1", "last_jaccard", "best_f1", "best_jaccard"):
            vals = [r[key] for r in per_seed]
            agg[key] = {"mean": statistics.mean(vals),
                        "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                        "min": min(vals), "max": max(vals)}
        results["arms"][arm] = {"runs": per_seed, "summary": agg}
    if "pretrain" in a.arms:
        stage1 = [read_history(out / f"stage1_s{s}") for s in a.seeds]
        results["stage1_minutes"] = [sum(r["seconds"] for r in h) / 60 for h in stage1]
        results["stage1_best_val_loss"] = [min(r["val_loss"] for r in h) for h in stage1]
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| arm | stage 2 epochs | F1 last epoch | Jaccard last epoch | F1 best epoch "
             "| Jaccard best epoch |", "|---|---|---|---|---|---|"]
    for arm, res in results["arms"].items():
        s = res["summary"]
        cells = [f"{s[k]['mean']:.3f} ± {s[k]['sd']:.3f}"
                 for k in ("last_f1", "last_jaccard", "best_f1", "best_jaccard")]
        lines.append(f"| {LABELS[arm]} | {res['runs'][0]['epochs']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("mean ± sample standard deviation over seeds; per seed (last-epoch F1): " + "; ".join(
        f"{arm} " + ", ".join(f"{r['seed']}: {r['last_f1']:.3f}" for r in res["runs"])
        for arm, res in results["arms"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.jobs < 1 or a.threads < 1 or min(a.stage1_epochs, a.stage2_epochs, a.long_epochs) < 1:
        raise UserError("--jobs, --threads and the epoch counts must be at least 1")
    if a.scratch_from_long and ("long" not in a.arms or a.long_epochs < a.stage2_epochs
                                or a.stage2_epochs % a.stage2_restart):
        raise UserError("--scratch-from-long needs the long arm, --long-epochs >= "
                        "--stage2-epochs, and --stage2-epochs a multiple of --stage2-restart")
    out = Path(a.out).resolve()
    jobs = plan(a, out)
    run_all(jobs, out, a.jobs, a.threads)
    results = summarise(out, a)
    results["settings"] = {k: v for k, v in vars(a).items() if k != "out"}
    write_json(out / "results.json", results)
    text = table(results)
    write_text(out / "results.md", text + "\n")
    print(text)
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
