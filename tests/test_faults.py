"""Regression tests of the operator's fault cases: each ends in one line
``error: ...`` (exit 2, or 130 for Ctrl-C) or a warning plus a correct
result, with nothing lost. Tiny in-process runs on mnist-5k, on the CPU.

Case numbers refer to the issue: 1 wrong model class, 2 bad --device,
3 two runs into one --out-dir, 4 rerun over a finished run, 5 unwritable
--out-dir, 6 disk full at a checkpoint, 7 torn or wrong log rows and
--resume, 9 bad CSV for train/plot_run.py, 10 exploding loss, 12 seed range,
unsafe torch advice and Ctrl-C; plus quiet logs off a terminal.
"""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.vae import VAE
from train import train_geodesic, train_vae, train_vqvae
from utils import runtime
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.cli import run_main
from utils.runlock import lock_path, run_lock

REPO_ROOT = Path(__file__).resolve().parents[1]
LOG, CKPT = "logs/vae_mnist-5k_train_log.csv", "checkpoints/vae_mnist-5k.pt"
LOSSES = ["total_loss", "bce", "kld", "val_total_loss", "val_bce", "val_kld"]


def vae_args(out, *extra, epochs=2, limit=64, batch_size=32):
    return train_vae.parse_args(["--dataset", "mnist-5k", "--limit", str(limit), "--epochs",
                                 str(epochs), "--batch-size", str(batch_size), "--out-dir", str(out),
                                 "--device", "cpu", "--no-plots", *extra])


def vq_args(out, *extra, epochs=1, limit=64):
    return train_vqvae.parse_args(["--dataset", "mnist-5k", "--arch", "global", "--limit",
                                   str(limit), "--epochs", str(epochs), "--batch-size", "16",
                                   "--codebook-size", "8", "--out-dir", str(out), "--device", "cpu",
                                   "--no-plots", *extra])


def read_log(out):
    with open(out / LOG, newline="") as f:
        return list(csv.DictReader(f))


def losses(rows):
    return [[r[c] for c in LOSSES] for r in rows]


def one_error(err: str) -> str:
    """The single ``error:`` line of a run's stderr (and no traceback)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run (64 images, batch 32), read-only: copy it to change it."""
    out = tmp_path_factory.mktemp("finished")
    train_vae.main(vae_args(out))
    return out


@pytest.fixture
def run(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """The same run trained straight to 3 epochs: what every repaired resume must equal."""
    out = tmp_path_factory.mktemp("three")
    train_vae.main(vae_args(out, epochs=3))
    return read_log(out)


# ----------------------------------------------------------------------------- 1: model class

def test_vqvae_checkpoint_given_as_the_vae_is_named(tmp_path, capsys):
    train_vqvae.main(vq_args(tmp_path / "vq"))
    ckpt = tmp_path / "vq" / "checkpoints" / "vqvae_global_mnist-5k.pt"
    assert load_checkpoint(ckpt)["model_class"] == "VQVAE"
    args = train_geodesic.parse_args(["--vae-checkpoint", str(ckpt), "--out-dir", str(tmp_path),
                                      "--device", "cpu", "--no-plots"])
    capsys.readouterr()
    assert run_main(train_geodesic.main, args) == 2
    assert one_error(capsys.readouterr().err) == f"error: {ckpt} holds a VQVAE, not a VAE"


def test_vqvae_checkpoint_without_its_class_name_is_still_named(tmp_path, capsys):
    """Checkpoints written before model_class: the constructor's TypeError names the file."""
    train_vqvae.main(vq_args(tmp_path / "vq"))
    ckpt = tmp_path / "vq" / "checkpoints" / "vqvae_global_mnist-5k.pt"
    old = load_checkpoint(ckpt)
    del old["model_class"]
    save_checkpoint(ckpt, old)
    args = train_geodesic.parse_args(["--vae-checkpoint", str(ckpt), "--out-dir", str(tmp_path),
                                      "--device", "cpu", "--no-plots"])
    capsys.readouterr()
    assert run_main(train_geodesic.main, args) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{ckpt} does not hold a VAE" in line and "TypeError" in line


# ----------------------------------------------------------------------------- 2: --device

@pytest.mark.parametrize("name", ["tpu", "mps", "xla", "cuda:x", "cpu:0", "cuda:-1", ""])
def test_unsupported_device_is_one_line(name):
    with pytest.raises(runtime.UserError, match="not supported; use auto, cpu, cuda or cuda:N"):
        runtime.pick_device(name)


@pytest.mark.parametrize("name", ["auto", "cpu", "CPU"])
def test_supported_devices(name):
    assert runtime.pick_device(name).type in ("cpu", "cuda")


def test_cuda_that_is_not_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(runtime.UserError, match="no CUDA GPU is available"):
        runtime.pick_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(runtime.UserError, match="there is no GPU 3, only 1 visible"):
        runtime.pick_device("cuda:3")


@pytest.mark.parametrize("script", ["vae", "vqvae", "geodesic"])
def test_every_script_rejects_a_bad_device_in_one_line(script, tmp_path, capsys):
    if script == "vae":
        main, args = train_vae.main, vae_args(tmp_path, "--device", "tpu")
    elif script == "vqvae":
        main, args = train_vqvae.main, vq_args(tmp_path, "--device", "tpu")
    else:
        main, args = train_geodesic.main, train_geodesic.parse_args(
            ["--vae-checkpoint", str(tmp_path / "v.pt"), "--device", "mps",
             "--out-dir", str(tmp_path)])
    assert run_main(main, args) == 2
    assert "is not supported" in one_error(capsys.readouterr().err)
    assert not (tmp_path / "checkpoints").exists()


# ----------------------------------------------------------------------------- 3: one writer

HOLDER = """
import sys, time
from utils.runlock import acquire_run_lock
acquire_run_lock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock_in_another_process(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_into_the_same_out_dir_is_refused(tmp_path, capsys):
    ckpt = tmp_path / CKPT
    holder = hold_lock_in_another_process(ckpt)
    try:
        assert run_main(train_vae.main, vae_args(tmp_path, "--seed", "1")) == 2
        line = one_error(capsys.readouterr().err)
        assert "another run" in line and str(lock_path(ckpt)) in line and str(holder.pid) in line
        assert not ckpt.exists() and not (tmp_path / LOG).exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_crashed_holder_does_not_block_the_next_run(tmp_path):
    ckpt = tmp_path / CKPT
    holder = hold_lock_in_another_process(ckpt)
    holder.send_signal(signal.SIGKILL)  # dies holding the lock: the file stays behind
    holder.wait()
    assert lock_path(ckpt).exists()
    assert run_main(train_vae.main, vae_args(tmp_path, epochs=1)) == 0
    assert load_checkpoint(ckpt)["epoch"] == 1
    assert not lock_path(ckpt).exists()  # released at the end of the run


def test_the_lock_is_released_after_a_failed_run(tmp_path, capsys):
    assert run_main(train_vae.main, vae_args(tmp_path, "--resume")) == 2  # no checkpoint
    assert not lock_path(tmp_path / CKPT).exists()
    assert run_main(train_vae.main, vae_args(tmp_path, epochs=1)) == 0


def test_two_scripts_started_half_a_second_apart(tmp_path):
    """The operator's case: the second of two train_vae.py runs into one folder
    is refused while the first finishes with its own rows and checkpoint."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("VQG_DEBUG", None)
    base = [sys.executable, "train/train_vae.py", "--dataset", "mnist-5k", "--limit", "1000",
            "--batch-size", "32", "--out-dir", str(tmp_path), "--device", "cpu", "--no-plots"]
    first_err = tmp_path / "first.err"
    with first_err.open("w") as f:
        # SIGINT at its default, so that Python turns it into KeyboardInterrupt even when
        # this suite runs in the background (nohup, &), whose children inherit SIGINT ignored
        first = subprocess.Popen(base + ["--seed", "0", "--epochs", "100000"], cwd=REPO_ROOT,
                                 env=env, stderr=f,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 600  # generous: guards against a hang, not a speed test
        while not (tmp_path / CKPT).exists():  # the first run is training (and holds its lock)
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        second = subprocess.run(base + ["--seed", "1", "--epochs", "1"], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=600)
        assert first.poll() is None, "the first run must still be training"
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C: it stops, keeping what it finished
        first.wait(timeout=600)
    err = first_err.read_text()
    assert second.returncode == 2 and "another run" in one_error(second.stderr)
    assert first.returncode == 130 and "interrupted" in one_error(err)
    ck = load_checkpoint(tmp_path / CKPT)
    rows = read_log(tmp_path)
    assert ck["config"]["seed"] == 0 and {r["dataset"] for r in rows} == {"mnist-5k"}
    # the first run's rows only; Ctrl-C between a checkpoint and its row may leave that
    # one row out, which --resume restores from the checkpoint
    assert rows == ck["log"][:len(rows)] and len(rows) >= ck["epoch"] - 1


def test_run_lock_is_reentrant_and_leaves_no_file(tmp_path):
    target = tmp_path / "c.pt"
    with run_lock(target) as outer:
        assert lock_path(target).read_text().strip() == str(os.getpid())
        with run_lock(target) as inner:  # e.g. a script calling a driver twice in-process
            assert inner is outer
        assert lock_path(target).exists()  # the inner block keeps the outer's lock
    assert not lock_path(target).exists()


def test_a_held_lock_refuses_another_process(tmp_path):
    target = tmp_path / "c.pt"
    code = "import sys; from utils.runlock import acquire_run_lock; acquire_run_lock(sys.argv[1])"
    with run_lock(target):
        r = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode != 0 and "RunLockedError" in r.stderr and str(os.getpid()) in r.stderr
    r = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- 4: no silent replace

def test_rerun_without_resume_into_a_finished_run_is_refused(run, capsys):
    before = (run / LOG).read_bytes(), (run / CKPT).read_bytes()
    assert run_main(train_vae.main, vae_args(run, "--seed", "1")) == 2
    line = one_error(capsys.readouterr().err)
    assert str(run / CKPT) in line and "--resume" in line and "--overwrite" in line
    assert ((run / LOG).read_bytes(), (run / CKPT).read_bytes()) == before


def test_a_log_with_rows_and_no_checkpoint_is_not_replaced_either(run, capsys):
    (run / CKPT).unlink()
    assert run_main(train_vae.main, vae_args(run)) == 2
    assert "already logs 2 epochs" in one_error(capsys.readouterr().err)
    assert len(read_log(run)) == 2


def test_overwrite_replaces_log_and_checkpoint_together(run):
    assert run_main(train_vae.main, vae_args(run, "--overwrite", "--seed", "1", epochs=1)) == 0
    ck = load_checkpoint(run / CKPT)
    assert ck["epoch"] == 1 and ck["config"]["seed"] == 1
    assert [r["epoch"] for r in read_log(run)] == ["1"]


def test_overwrite_removes_the_old_checkpoint_when_the_new_run_fails(run, monkeypatch, capsys):
    decode = VAE.decode
    monkeypatch.setattr(VAE, "decode", lambda self, z: decode(self, z) * float("nan"))
    assert run_main(train_vae.main, vae_args(run, "--overwrite")) == 2
    assert "NaN" in one_error(capsys.readouterr().err)
    assert not (run / CKPT).exists() and read_log(run) == []  # they agree: nothing


def test_resume_and_overwrite_together_is_an_error(run, capsys):
    assert run_main(train_vae.main, vae_args(run, "--resume", "--overwrite")) == 2
    assert "give only one of them" in one_error(capsys.readouterr().err)


# ----------------------------------------------------------------------------- 5: unwritable out dir

def test_a_file_given_as_out_dir(tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("not a folder\n")
    assert run_main(train_vae.main, vae_args(out)) == 2
    assert one_error(capsys.readouterr().err) == (
        f"error: {out} is a file, not a folder; choose another --out-dir")
    assert out.read_text() == "not a folder\n"


def test_a_file_above_out_dir(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert run_main(train_vae.main, vae_args(tmp_path / "f" / "sub")) == 2
    assert f"{tmp_path / 'f'} is a file" in one_error(capsys.readouterr().err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_dir(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert run_main(train_vae.main, vae_args(out)) == 2
    finally:
        out.chmod(0o755)
    line = one_error(capsys.readouterr().err)
    assert str(out) in line and "Permission denied" in line


def test_an_out_dir_that_refuses_writes(tmp_path, monkeypatch, capsys):
    """As a read-only mount answers (EROFS), also when the tests run as root."""
    out = tmp_path / "mnt"

    def read_only(*args, dir=None, **kwargs):
        raise OSError(30, "Read-only file system", str(dir))

    monkeypatch.setattr(runtime.tempfile, "mkstemp", read_only)
    assert run_main(train_vae.main, vae_args(out)) == 2
    line = one_error(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write in {out}") and "Read-only file system" in line


@pytest.mark.parametrize("exc,line", [
    (PermissionError(13, "Permission denied", "/data/out/logs"),
     "error: /data/out/logs: Permission denied"),
    (NotADirectoryError(20, "Not a directory", "/data/out.txt/logs"),
     "error: /data/out.txt/logs: Not a directory"),
    (OSError(28, "No space left on device", "a.csv", None, "b.csv"),
     "error: a.csv -> b.csv: No space left on device"),
    (OSError("no path known"), "error: no path known"),
])
def test_run_main_turns_os_errors_into_one_line(exc, line, capsys):
    def main(_):
        raise exc
    assert run_main(main, None) == 2
    assert capsys.readouterr().err == line + "\n"


# ----------------------------------------------------------------------------- 6: disk full

def disk_full_on_call(monkeypatch, n: int):
    """torch.save writes half an archive and fails as torch does on ENOSPC, at call n."""
    real = torch.save
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            f.write(b"PK\x03\x04 half")
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_disk_full_at_a_checkpoint_keeps_log_and_checkpoint_in_step(tmp_path, monkeypatch, capsys,
                                                                     finished):
    disk_full_on_call(monkeypatch, 2)
    assert run_main(train_vae.main, vae_args(tmp_path)) == 2
    line = one_error(capsys.readouterr().err)
    assert "epoch 2: could not write" in line and "inline_container" in line
    assert f"last good checkpoint: {tmp_path / CKPT} (epoch 1)" in line
    assert load_checkpoint(tmp_path / CKPT)["epoch"] == 1
    assert [r["epoch"] for r in read_log(tmp_path)] == ["1"]  # no row without its checkpoint
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["vae_mnist-5k.pt"]
    monkeypatch.undo()
    assert run_main(train_vae.main, vae_args(tmp_path, "--resume")) == 0
    assert losses(read_log(tmp_path)) == losses(read_log(finished))


# ----------------------------------------------------------------------------- 7: logs agree with checkpoints

def rewrite_last_line(path: Path, edit) -> None:
    text = path.read_text()
    head, last = text.rstrip("\n").rsplit("\n", 1)
    path.write_text(head + "\n" + edit(last))


@pytest.mark.parametrize("edit", [
    pytest.param(lambda ln: ln[: len(ln) // 2], id="torn-mid-row"),  # no newline, fields missing
    pytest.param(lambda ln: ln[:-4], id="torn-in-last-field"),
    # the row looks valid, but its val -ELBO is cut ("12" of "127.3"): only the checkpoint knows
    pytest.param(lambda ln: ",".join(f[:2] if i == 4 else f for i, f in
                                     enumerate(ln.split(","))) + "\n", id="cut-number"),
    pytest.param(lambda ln: "", id="row-missing"),  # Ctrl-C between checkpoint and log row
    pytest.param(lambda ln: ln + "\n3,1,2,3,4,5,6,7,mnist-5k\n", id="row-of-no-checkpoint"),
])
def test_resume_rewrites_a_wrong_last_row_from_the_checkpoint(run, three_epochs, edit):
    rewrite_last_line(run / LOG, edit)
    with pytest.warns(UserWarning, match="rewrote the log from the checkpoint"):
        assert run_main(train_vae.main, vae_args(run, "--resume", epochs=3)) == 0
    assert losses(read_log(run)) == losses(three_epochs)


def test_resume_repairs_a_malformed_middle_row(run, three_epochs):
    lines = (run / LOG).read_text().splitlines(keepends=True)
    lines[1] = lines[1].rstrip("\n") + ",extra\n"
    (run / LOG).write_text("".join(lines))
    with pytest.warns(UserWarning, match=r"line 2: 10 fields where the header has 9"):
        assert run_main(train_vae.main, vae_args(run, "--resume", epochs=3)) == 0
    assert losses(read_log(run)) == losses(three_epochs)


@pytest.fixture
def legacy_run(run):
    """The run as older code wrote it: a checkpoint without its copy of the log."""
    ck = load_checkpoint(run / CKPT)
    del ck["log"], ck["model_class"], ck["reference_loss"]
    save_checkpoint(run / CKPT, ck)
    return run


def test_legacy_checkpoint_torn_last_row_is_taken_from_its_metrics(legacy_run, three_epochs):
    rewrite_last_line(legacy_run / LOG, lambda ln: ln[:-4])
    with pytest.warns(UserWarning) as seen:
        assert run_main(train_vae.main, vae_args(legacy_run, "--resume", epochs=3)) == 0
    messages = " | ".join(str(w.message) for w in seen)
    assert "torn last line 3" in messages and "at epochs 2" in messages
    assert losses(read_log(legacy_run)) == losses(three_epochs)


def test_legacy_checkpoint_malformed_middle_row_is_an_error(legacy_run, capsys):
    lines = (legacy_run / LOG).read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(lines[1].split(",")[1], "oops", 1)
    (legacy_run / LOG).write_text("".join(lines))
    before = (legacy_run / CKPT).read_bytes()
    assert run_main(train_vae.main, vae_args(legacy_run, "--resume", epochs=3)) == 2
    line = one_error(capsys.readouterr().err)
    assert f"{legacy_run / LOG}, line 2: column 'total_loss' holds 'oops'" in line
    assert (legacy_run / CKPT).read_bytes() == before


def test_every_checkpoint_holds_the_rows_logged_so_far(finished):
    ck = load_checkpoint(finished / CKPT)
    with open(finished / LOG, newline="") as f:
        assert ck["log"] == list(csv.DictReader(f))


def as_older_version(name: str) -> str:
    """A column as the version that evaluated every epoch on the test split named it."""
    return "test_" + name.removeprefix("val_") if name.startswith("val_") else name


@pytest.mark.parametrize("with_log_copy", [True, False], ids=["checkpoint-with-log", "legacy"])
def test_resume_of_a_run_logged_on_the_test_split_is_refused(run, capsys, with_log_copy):
    """A run of the older version logged test_* columns every epoch: continuing it
    into val_* columns would mix two splits in one log, so --resume refuses it
    in one line that says to --overwrite, and leaves both files as they were."""
    ck = load_checkpoint(run / CKPT)
    ck["metrics"] = {as_older_version(k): v for k, v in ck["metrics"].items()}
    ck["log"] = [{as_older_version(k): v for k, v in r.items()} for r in ck["log"]]
    if not with_log_copy:
        del ck["log"]
    save_checkpoint(run / CKPT, ck)
    header, body = (run / LOG).read_text().split("\n", 1)
    (run / LOG).write_text(",".join(map(as_older_version, header.split(","))) + "\n" + body)
    assert "test_total_loss" in (run / LOG).read_text().splitlines()[0]
    before = (run / LOG).read_bytes(), (run / CKPT).read_bytes()
    assert run_main(train_vae.main, vae_args(run, "--resume", epochs=3)) == 2
    line = one_error(capsys.readouterr().err)
    assert str(run / CKPT) in line and "--overwrite" in line and "val_total_loss" in line
    assert ((run / LOG).read_bytes(), (run / CKPT).read_bytes()) == before
    assert run_main(train_vae.main, vae_args(run, "--overwrite", epochs=1)) == 0
    assert list(read_log(run)[0]) == train_vae.COLUMNS


# ----------------------------------------------------------------------------- 9: plot.py CSVs

@pytest.mark.parametrize("content,needle", [
    (b"epoch,total_loss,dataset\n1,12.5,mnist\n2,abc,mnist\n3,10.0,mnist\n",
     "line 3: column 'total_loss' holds 'abc', not a number"),
    (b"epoch,total_loss,dataset\n1,12.5,mnist,7\n2,11.0,mnist\n", "line 2: 4 fields where the"),
    (b"", "is empty"),
    (b"\n\n", "is empty"),
    (bytes(range(256)) * 8, "is not a CSV file"),
    (b"\xff\xfegarbage\n", "is not UTF-8 text"),
    (b"epoch,total_loss,dataset\n", "holds no rows to plot"),
    (b"step,total_loss\n1,2\n", "no 'epoch' column"),
])
def test_plot_rejects_a_bad_log_in_one_line_naming_it(tmp_path, capsys, content, needle):
    from train import plot_run as plot
    log = tmp_path / "bad_log.csv"
    log.write_bytes(content)
    args = plot.parse_args(["vae", "--log", str(log), "--checkpoint", str(tmp_path / "none.pt"),
                            "--out-dir", str(tmp_path / "plots")])
    assert run_main(plot.main, args) == 2
    line = one_error(capsys.readouterr().err)
    assert str(log) in line and needle in line
    assert not (tmp_path / "plots").exists()


def test_plot_reads_a_good_log_and_drops_a_torn_last_line(tmp_path):
    from utils.plot import load_log
    log = tmp_path / "log.csv"
    log.write_text("epoch,total_loss,dataset\n1,12.5,mnist\n2,11.25,mnist\n3,1")
    with pytest.warns(UserWarning, match="torn last line 4"):
        df = load_log(log)
    assert df["epoch"].tolist() == [1, 2] and df["total_loss"].tolist() == [12.5, 11.25]
    assert df["dataset"].tolist() == ["mnist", "mnist"]


# ----------------------------------------------------------------------------- 10: exploding loss

def test_lr_1e6_on_the_global_vqvae_stops_as_diverged(tmp_path, capsys):
    assert run_main(train_vqvae.main, vq_args(tmp_path, "--lr", "1e6")) == 2
    line = one_error(capsys.readouterr().err)
    assert "stopping as diverged" in line and "--max-loss-ratio" in line
    assert "last good checkpoint: none yet" in line
    assert not (tmp_path / "checkpoints" / "vqvae_global_mnist-5k.pt").exists()


def test_a_healthy_run_passes_the_divergence_check(tmp_path):
    """Default --max-loss-ratio; a higher but sane lr keeps every batch far below it."""
    assert run_main(train_vqvae.main, vq_args(tmp_path, "--lr", "1e-2", epochs=2)) == 0
    ck = load_checkpoint(tmp_path / "checkpoints" / "vqvae_global_mnist-5k.pt")
    assert ck["epoch"] == 2 and ck["reference_loss"] > 0
    # even this poor run (its codebook collapses) stays two orders of magnitude below the limit
    assert all(float(r["total_loss"]) < 10 * ck["reference_loss"] for r in ck["log"])


def test_an_explosion_after_good_epochs_keeps_the_last_checkpoint(run, monkeypatch, capsys):
    before = (run / CKPT).read_bytes()
    decode = VAE.decode
    monkeypatch.setattr(VAE, "decode", lambda self, z: decode(self, z) * 1e7)  # finite, huge
    assert run_main(train_vae.main, vae_args(run, "--resume", epochs=3)) == 2
    line = one_error(capsys.readouterr().err)
    assert "stopping as diverged" in line and f"{run / CKPT} (epoch 2)" in line
    assert (run / CKPT).read_bytes() == before and len(read_log(run)) == 2


# ----------------------------------------------------------------------------- 12: seeds, advice, Ctrl-C

@pytest.mark.parametrize("seed", ["99999999999999999999", str(2**63), str(2**32), "-1", "1.5"])
def test_seed_out_of_range_is_an_argument_error(seed, capsys):
    with pytest.raises(SystemExit) as info:
        vae_args(Path("unused"), "--seed", seed)
    assert info.value.code == 2
    assert "argument --seed" in capsys.readouterr().err


def test_the_largest_seed_runs(tmp_path):
    assert run_main(train_vae.main, vae_args(tmp_path, "--seed", str(2**32 - 1), epochs=1)) == 0


def test_ctrl_c_says_what_was_saved(run, monkeypatch, capsys):
    calls = []
    decode = VAE.decode

    def interrupted(self, z):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return decode(self, z)

    monkeypatch.setattr(VAE, "decode", interrupted)
    before = (run / CKPT).read_bytes()
    assert run_main(train_vae.main, vae_args(run, "--resume", epochs=4)) == 130
    assert one_error(capsys.readouterr().err) == (
        f"error: interrupted; stopped in epoch 3; last good checkpoint: {run / CKPT} (epoch 2)")
    assert (run / CKPT).read_bytes() == before and not lock_path(run / CKPT).exists()


def test_ctrl_c_elsewhere_names_the_last_checkpoint_written(tmp_path, capsys):
    def main(_):
        save_checkpoint(tmp_path / "q.pt", {"a": 1})
        raise KeyboardInterrupt

    assert run_main(main, None) == 130
    assert capsys.readouterr().err == f"error: interrupted; last checkpoint written: {tmp_path / 'q.pt'}\n"
    def main_without_saving(_):
        raise KeyboardInterrupt

    assert run_main(main_without_saving, None) == 130
    assert capsys.readouterr().err == "error: interrupted; no checkpoint was written\n"


# ----------------------------------------------------------------------------- quiet logs

def test_off_a_terminal_a_run_prints_one_config_line_and_one_line_per_epoch(tmp_path, capsys):
    assert run_main(train_vae.main, vae_args(tmp_path, epochs=2)) == 0
    err = capsys.readouterr().err
    assert "\r" not in err  # no progress bars
    lines = err.splitlines()
    config = [ln for ln in lines if ln.startswith("config: ")]
    assert len(config) == 1 and "batch_size=32" in config[0] and "seed=0" in config[0]
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1", "epoch 2"]
    assert all("| val -ELBO " in ln and "test" not in ln for ln in epochs)


# ----------------------------------------------------------------------------- issue #29, item 6

def test_regression_temperature_1e_300_is_refused_at_the_flag(capsys):
    """Bug: --temperature 1e-300 passed positive_float, then sample() died with
    'probability tensor contains either inf, nan or element < 0' after training."""
    from train import run_generation, train_prior

    for parse in (train_prior.parse_args, run_generation.parse_args):
        with pytest.raises(SystemExit) as info:
            parse(["--temperature", "1e-300"])
        assert info.value.code == 2
        assert "argument --temperature: must be a finite number >= 1e-06" in capsys.readouterr().err
    assert train_prior.parse_args(["--temperature", "1e-6"]).temperature == 1e-6


@pytest.mark.parametrize("temperature", [1e-300, 1e-7, 0.0, float("nan"), float("inf"), True])
def test_regression_sample_refuses_a_temperature_that_overflows(temperature):
    from models.prior import GatedPixelCNN, HistogramPrior

    torch.manual_seed(0)
    model = GatedPixelCNN(n_codes=4, height=2, width=2, channels=4, n_layers=2)
    histogram = HistogramPrior(4, code_shape=(2,)).fit(torch.tensor([[3, 1], [0, 2]]))
    for prior in (model, histogram):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 1e-06"):
            prior.sample(2, temperature=temperature)


def test_regression_a_cached_quantizer_with_a_nan_code_names_its_file(tmp_path):
    """Bug: a cached quantizer whose codebook held a NaN loaded silently; the prior then
    saw every latent on one code and drew 100% NaN samples."""
    import numpy as np

    from models.geodesic_vq import EuclideanQuantizer, GeodesicQuantizer
    from train.comparison_methods import load_quantizer

    Z = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    for stage, q, key in (("kmeans-vae", EuclideanQuantizer(4), "codebook_"),
                          ("geodesic-vae", GeodesicQuantizer(4, n_neighbors=5), "node_distances_")):
        state = q.fit(Z).state_dict()
        state[key][1] = float("nan")
        path = save_checkpoint(tmp_path / f"{stage}_K4.pt", {"config": {"stage": stage, "K": 4},
                                                            "quantizer": state})
        with pytest.raises(ValueError) as info:
            load_quantizer(load_checkpoint(path), source=path)
        assert str(info.value).startswith(f"{path}: ") and key in str(info.value)
        assert "NaN or inf" in str(info.value)


@pytest.mark.parametrize("script", ["run_comparison", "train_prior", "train_geodesic", "train_vae"])
def test_regression_a_seed_numpy_refuses_is_refused_before_any_work(script, capsys):
    """Bug: run_comparison --seeds 5000000000 was accepted (help: up to 2**63-1); the VAE
    trained, then scikit-learn's KMeans refused the seed."""
    import importlib

    module = importlib.import_module(f"train.{script}")
    flag = "--seeds" if script == "run_comparison" else "--seed"
    with pytest.raises(SystemExit) as info:
        module.parse_args([flag, "5000000000"])
    assert info.value.code == 2
    assert f"argument {flag}: must be in 0 .. 2**32-1" in capsys.readouterr().err
    assert getattr(module.parse_args([flag, str(2**32 - 1)]), flag[2:]) in (2**32 - 1, [2**32 - 1])


def test_the_largest_seed_is_accepted_by_kmeans():
    import numpy as np

    from models.geodesic_vq import EuclideanQuantizer
    from utils.cli import SEED_LIMIT

    Z = np.random.default_rng(0).standard_normal((30, 2)).astype(np.float32)
    EuclideanQuantizer(3, seed=SEED_LIMIT - 1, algorithm="lloyd").fit(Z)
