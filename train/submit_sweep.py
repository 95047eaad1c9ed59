"""Run the comparison's cells as cluster jobs: one submitit job per (method, K, seed, cell).

    python train/submit_sweep.py --executor slurm --slurm-partition gpu --timeout-min 240 \
        --dataset fashion-mnist --codebook-sizes 16 64 256 --seeds 0 1 2

The sweep flags are train/run_comparison.py's (same config hashes, same --work-dir
cache and --results-dir). Each job runs :func:`train.run_comparison.run_cell`, the
runner's code path for one cell, and appends its row through the runner's locked
append, which skips a row that is there already: a cell run twice writes one row,
and cells whose rows are written are not submitted again. Jobs are submitted with
submitit (SLURM, or "local" processes on this machine; "debug" runs them one after
the other in this process). When they have finished,
``run_comparison.py --cached-only`` with the same flags writes the summary and the
figures without training anything.
"""
from __future__ import annotations

import sys
from pathlib import Path

from train import run_comparison as rc
from utils import paths
from utils.cli import positive_int, run_main
from utils.errors import UserError
from utils.results import finished_keys, row_key, write_summary
from utils.runtime import ensure_output_dirs, write_run_record

EXECUTORS = ("slurm", "local", "debug")


def parse_args(argv=None):
    p = rc.sweep_parser(__doc__.splitlines()[0])
    rc.add_cached_only(p)
    p.add_argument("--executor", choices=EXECUTORS, default="slurm",
                   help="submitit executor: slurm, local (processes on this machine) or debug "
                        "(in this process, one job after the other) (default: slurm)")
    p.add_argument("--jobs-dir", type=Path, default=None,
                   help="submitit's job scripts and logs (default: <results-dir>/jobs)")
    p.add_argument("--timeout-min", type=positive_int, default=240,
                   help="time limit of each job in minutes (default 240)")
    p.add_argument("--cpus-per-task", type=positive_int, default=2, help="CPUs per job (default 2)")
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per job (default 0)")
    p.add_argument("--mem-gb", type=positive_int, default=8, help="memory per job in GB (default 8)")
    p.add_argument("--slurm-partition", default=None, help="SLURM partition (default: the cluster's)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the jobs and write summary.csv (always with --executor debug)")
    args = rc.finish_sweep_args(p.parse_args(argv))
    args.jobs_dir = args.jobs_dir or Path(args.results_dir) / "jobs"
    return args


def pending_cells(args) -> list[tuple[str, int, int, dict]]:
    """(method, K, seed, variant) of every cell of the sweep without a row yet."""
    done = finished_keys(paths.ResultPaths(args.results_dir).comparison)
    return [(m, K, seed, v) for seed in args.seeds for m, K, v in rc.sweep_cells(args)
            if row_key(rc.row_identity(args, m, K, seed, v)) not in done]


def make_executor(args):
    """A submitit executor of ``args.executor`` with the jobs' resources."""
    import submitit

    executor = submitit.AutoExecutor(folder=args.jobs_dir, cluster=args.executor)
    executor.update_parameters(name="vqvae-geodesic-cell", timeout_min=args.timeout_min,
                               cpus_per_task=args.cpus_per_task, gpus_per_node=args.gpus_per_node,
                               mem_gb=args.mem_gb, nodes=1, tasks_per_node=1,
                               **({"slurm_partition": args.slurm_partition}
                                  if args.slurm_partition else {}))
    return executor


def submit(args, executor=None) -> list:
    """Submit one job per pending cell (:func:`pending_cells`); returns the jobs."""
    out = paths.ResultPaths(args.results_dir)
    ensure_output_dirs(out.root)
    cells = pending_cells(args)
    if not cells:
        return []
    executor = executor or make_executor(args)
    write_run_record(out.run_record(args.dataset, args.setting, runner="submit"), args,
                     keep_earlier=True, executor=args.executor, cells=len(cells))
    with executor.batch():  # one SLURM job array
        jobs = [executor.submit(rc.run_cell, args, m, K, seed, v) for m, K, seed, v in cells]
    return jobs


def main(args) -> list:
    jobs = submit(args)
    if not jobs:
        print("every cell of the sweep has its row; nothing submitted", file=sys.stderr)
        return jobs
    print(f"submitted {len(jobs)} jobs ({args.executor}): {' '.join(str(j.job_id) for j in jobs)}; "
          f"logs in {args.jobs_dir}", file=sys.stderr)
    if args.wait or args.executor == "debug":
        failed = []
        for job in jobs:
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 - one failed cell must not hide the others
                failed.append(f"{job.job_id}: {str(err).strip().splitlines()[-1]}")
        out = paths.ResultPaths(args.results_dir)
        write_summary(out.comparison, out.summary)
        print(f"wrote {out.comparison} and {out.summary}", file=sys.stderr)
        if failed:
            raise UserError(f"{len(failed)} of {len(jobs)} jobs failed ({'; '.join(failed)}); "
                            f"their logs are in {args.jobs_dir}")
    return jobs


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
