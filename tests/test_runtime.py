"""utils/runtime.py: what a run record says about the code that ran."""


def test_git_info_ignores_the_runs_own_outputs_but_not_code(tmp_path):
    """A sweep appends to experiments/results/*.csv: that is not a dirty tree; an
    edited script is."""
    import subprocess

    from utils.runtime import RUN_OUTPUTS, git_info

    def git(*cmd):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *cmd], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / RUN_OUTPUTS).mkdir(parents=True)
    (tmp_path / RUN_OUTPUTS / "comparison.csv").write_text("a\n")
    (tmp_path / "train.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    assert git_info(tmp_path)["dirty"] is False
    (tmp_path / RUN_OUTPUTS / "comparison.csv").write_text("a\n1\n")
    (tmp_path / "untracked.py").write_text("")
    assert git_info(tmp_path)["dirty"] is False
    (tmp_path / "train.py").write_text("x = 2\n")
    info = git_info(tmp_path)
    assert info["dirty"] is True and len(info["commit"]) == 40


def test_a_run_record_names_the_cpu_and_keeps_earlier_records(tmp_path):
    """The record says which CPU wrote the rows (another CPU is another run:
    docs/protocol.md), read from /proc/cpuinfo where Linux has it; a sweep's second
    record keeps the first under ``earlier``."""
    import json
    import os
    from pathlib import Path

    from utils.runtime import write_run_record

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
             if line.startswith("model name")]
    path = tmp_path / "run.json"
    write_run_record(path, {"seed": 0}, keep_earlier=True, note="first")
    write_run_record(path, {"seed": 1}, keep_earlier=True, note="second")
    record = json.loads(path.read_text())
    assert record["cpu_count"] == os.cpu_count() and record["cpu"]
    if names:
        assert record["cpu"] == names[0]
    assert record["config"] == {"seed": 1} and record["note"] == "second"
    assert [r["note"] for r in record["earlier"]] == ["first"]
