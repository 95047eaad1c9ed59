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
