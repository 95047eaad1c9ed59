"""train/geodesic_kmedoids.py, the geodesic-kmedoids console script: in-process runs
of its main, one subprocess, its one-line errors, and a demo on scikit-learn's digits."""
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

from models.geodesic_kmedoids import GeodesicKMedoids
from train import geodesic_kmedoids as script

REPO_ROOT = Path(__file__).resolve().parents[1]


def points(n=60, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def run(argv, capsys):
    """cli(argv) -> (status, stdout, stderr)."""
    status = script.cli([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_digits_demo(tmp_path, capsys):
    """The README's "use on your own latents" example, on scikit-learn's 8x8 digits:
    ten geodesic medoids recover the digit classes better than k-means does."""
    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "digits.npy", X.astype(np.float32))
    status, out, err = run([tmp_path / "digits.npy", "-K", 10, "-k", 10, "-o", tmp_path / "codes.npz"],
                           capsys)
    assert status == 0 and err == "" and out.startswith(f"wrote {tmp_path / 'codes.npz'}: 1797 codes")
    codes = np.load(tmp_path / "codes.npz")
    assert codes["indices"].shape == (1797,) and codes["medoids"].shape == (10, 64)
    assert np.array_equal(codes["medoids"], X[codes["medoid_indices"]].astype(np.float32))
    assert adjusted_rand_score(y, codes["indices"]) > 0.7  # k-means (3 restarts): 0.57
    km = GeodesicKMedoids(10, n_neighbors=10, random_state=0).fit(X.astype(np.float32))
    assert np.array_equal(codes["indices"], km.labels_)
    assert np.allclose(codes["distances"], km.transform(X.astype(np.float32))[np.arange(1797), km.labels_])
    assert float(codes["inertia"]) == pytest.approx(km.inertia_)
    assert int(codes["config_n_neighbors"]) == 10 and int(codes["config_seed"]) == 0


def test_as_a_subprocess_with_the_default_output_and_progress(tmp_path):
    np.save(tmp_path / "z.npy", points())
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "train/geodesic_kmedoids.py", str(tmp_path / "z.npy"),
                           "-K", "4", "-k", "5", "--progress"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "geodesic k-medoids (K = 4)" in done.stderr and "wrote" in done.stderr
    assert (np.load(tmp_path / "z_codes.npz")["indices"] < 4).all()


def test_quiet_off_a_terminal(tmp_path, capsys):
    np.save(tmp_path / "z.npy", points())
    assert run([tmp_path / "z.npy", "-K", 3, "-k", 4], capsys)[2] == ""


def test_npz_and_pt_inputs_with_keys_and_weights(tmp_path, capsys):
    Z = points(40)
    w = np.random.default_rng(1).integers(0, 3, len(Z))
    np.savez(tmp_path / "z.npz", z=Z, other=np.zeros(3))
    torch.save({"z": torch.from_numpy(Z), "w": torch.from_numpy(w)}, tmp_path / "z.pt")
    np.save(tmp_path / "rep.npy", np.repeat(Z, w, axis=0))
    for argv in ([tmp_path / "z.npz", "--key", "z", "--weights", tmp_path / "z.pt", "--weights-key", "w",
                  "-o", tmp_path / "a.npz"],
                 [tmp_path / "z.pt", "--key", "z", "--weights", tmp_path / "z.pt", "--weights-key", "w",
                  "-o", tmp_path / "b.npz"],
                 [tmp_path / "rep.npy", "-o", tmp_path / "c.npz"]):
        assert run([*argv, "-K", 3, "-k", 4, "--seed", 7], capsys)[0] == 0
    a, b, c = (np.load(tmp_path / f"{x}.npz") for x in "abc")
    assert np.array_equal(a["indices"], b["indices"]) and np.array_equal(a["medoids"], c["medoids"])
    assert float(a["inertia"]) == pytest.approx(float(c["inertia"]))


def save(path: Path, value) -> Path:
    if path.suffix == ".pt":
        torch.save(value, path)
    elif path.suffix == ".npz":
        np.savez(path, **value)
    else:
        path.write_bytes(value) if isinstance(value, bytes) else np.save(path, value)
    return path


@pytest.mark.parametrize("name, value, extra, needle", [
    ("missing.npy", None, [], "no such file"),
    ("empty.npy", np.zeros((0, 4), np.float32), [], "is empty"),
    ("flat.npy", np.zeros(10, np.float32), [], "expected an (N, d) array of vectors, got shape (10,)"),
    ("grid.npy", np.zeros((5, 2, 3), np.float32), [], "reshape it to (N, d) first"),
    ("nan.npy", np.r_[points(9), [[np.nan, 0, 0]]].astype(np.float32), [], "1 of 10 rows hold NaN or inf"),
    ("inf.pt", torch.tensor([[0.0, float("inf")]] * 10), [], "10 of 10 rows hold NaN or inf"),
    ("two.npz", {"a": points(), "b": points()}, [], "holds 2 arrays ['a', 'b']; choose one with --key"),
    ("key.npz", {"a": points()}, ["--key", "z"], "no array 'z'"),
    ("text.npy", np.array(["a", "b"]), [], "expected numbers"),
    ("torn.npy", b"\x93NUMPY garbage", [], "cannot be read as .npy"),
    ("latents.csv", b"1,2\n", [], "expected a .npy, .npz, .pt file"),
    ("small.npy", points(5), [], "-K 8 is more than its 5 rows; lower -K"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, name, value, extra, needle):
    path = tmp_path / name
    if value is not None:
        save(path, value)
    status, out, err = run([path, "-K", 8, "-k", 3, *extra], capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}") and needle in err, err
    assert not list(tmp_path.glob("*_codes.npz"))


@pytest.mark.parametrize("weights, needle", [(np.ones(7), "expected (60,) weights"),
                                             (-np.ones(60), "finite and >= 0"),
                                             (np.zeros(60), "positive sum")])
def test_bad_weights_are_one_line_and_exit_2(tmp_path, capsys, weights, needle):
    np.save(tmp_path / "z.npy", points())
    np.save(tmp_path / "w.npy", weights)
    status, _, err = run([tmp_path / "z.npy", "--weights", tmp_path / "w.npy", "-K", 3], capsys)
    assert status == 2 and err.startswith(f"error: {tmp_path / 'w.npy'}: ") and needle in err


def test_help_on_every_flag_and_the_seed_range(capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("-K", "--n-neighbors", "--output", "--key", "--weights", "--weights-key", "--seed",
                 "--swap-budget", "--init", "--alternating-steps", "--device", "--progress"):
        assert flag in text
    assert "2**32-1" in text
    with pytest.raises(SystemExit) as info:
        script.parse_args(["z.npy", "--seed", str(2**32)])
    assert info.value.code == 2


def test_the_console_script_is_declared():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["geodesic-kmedoids"].partition(":")
    assert module == "train.geodesic_kmedoids" and callable(getattr(script, func))


def test_a_swap_budget_of_zero_is_the_fit_without_swaps(tmp_path, capsys, monkeypatch):
    """--swap-budget B caps the swaps at B x N visits: 0 gives the medoids of k-medoids++
    plus alternating, as the estimator fits them with no swap pass."""
    from models.geodesic_kmedoids import GeodesicKMedoids

    Z = points(60)
    np.save(tmp_path / "z.npy", Z)
    caps = []
    real = GeodesicKMedoids.fit
    monkeypatch.setattr(GeodesicKMedoids, "fit",
                        lambda self, *a, **k: caps.append(self.max_swap_visits) or real(self, *a, **k))
    for budget in ("0", "2.5"):
        assert run([tmp_path / "z.npy", "-K", 4, "-k", 5, "--swap-budget", budget, "-o",
                    tmp_path / f"b{budget}.npz"], capsys)[0] == 0
    assert caps == [0, 150]
    no_swaps = GeodesicKMedoids(4, n_neighbors=5, n_swap_passes=0, random_state=0).fit(Z)
    got = np.load(tmp_path / "b0.npz")
    assert sorted(got["medoid_indices"]) == sorted(no_swaps.medoid_indices_)
    assert float(got["inertia"]) == pytest.approx(no_swaps.inertia_)
    with pytest.raises(SystemExit) as info:
        script.parse_args(["z.npy", "--swap-budget", "-1"])
    assert info.value.code == 2


def test_the_start_and_the_alternating_steps_reach_the_estimator(tmp_path, capsys, monkeypatch):
    """--init k-means --alternating-steps 1 gives the estimator's fit with those settings."""
    from models.geodesic_kmedoids import GeodesicKMedoids

    Z = points(60)
    np.save(tmp_path / "z.npy", Z)
    seen = []
    real = GeodesicKMedoids.fit
    monkeypatch.setattr(GeodesicKMedoids, "fit",
                        lambda self, *a, **k: seen.append((self.init, self.max_iter)) or real(self, *a, **k))
    assert run([tmp_path / "z.npy", "-K", 4, "-k", 5, "--init", "k-means", "--alternating-steps", 1,
                "-o", tmp_path / "c.npz"], capsys)[0] == 0
    assert seen == [("k-means", 1)]
    ref = GeodesicKMedoids(4, n_neighbors=5, init="k-means", max_iter=1, random_state=0).fit(Z)
    got = np.load(tmp_path / "c.npz")
    assert sorted(got["medoid_indices"]) == sorted(ref.medoid_indices_)
    assert float(got["inertia"]) == pytest.approx(ref.inertia_)
    assert str(got["config_init"]) == "k-means" and int(got["config_alternating_steps"]) == 1
    for bad in (["--alternating-steps", "-1"], ["--init", "pam"]):
        with pytest.raises(SystemExit) as info:
            script.parse_args(["z.npy", *bad])
        assert info.value.code == 2
