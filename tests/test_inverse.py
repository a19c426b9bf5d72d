"""The speckle → pattern reconstructors: each fitted on a tiny simulated set recovers its own
training patterns, the matrix inversion recovers x from |Tx|² through a known T, training resumes
exactly, the pattern families are what they say, and hostile inputs get one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from common.checkpoint_files import CheckpointError
from inverse import evaluate, predict, train
from inverse.checkpoint import ReconstructorError, load_reconstructor
from inverse.scoring import pcc_rows
from inverse.tm_inverse import invert
from speckle.families import FAMILIES, family_bases, letters, split_pool
from speckle.io import write_dataset
from speckle.mmf import simulate_mmf
from speckle.tm_fit import TransmissionMatrix

SEED = 0


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("inverse")
    write_dataset(simulate_mmf(240, SEED, size=32), root / "train")
    write_dataset(simulate_mmf(40, 9, size=32, digits="test"), root / "test")
    return root


def _train(sets, method: str, out, *extra: str) -> int:
    argv = ["--method", method, "--data", str(sets / "train"), "--out", str(out)]
    return train.main(argv + ["--no-progress", "--threads", "1", *extra])


def test_tm_inversion_recovers_x_through_a_known_t() -> None:
    rng = np.random.default_rng(SEED)
    side, rows = 6, 150
    t = (rng.normal(size=(rows, side * side)) + 1j * rng.normal(size=(rows, side * side))) / 2
    x = rng.random((12, side * side)).astype(np.float32) * (rng.random((12, 36)) > 0.4)
    mask = np.zeros((15, 15), bool)
    mask.flat[:rows] = True
    frames = np.zeros((12, 15, 15), np.float32)
    frames[:, mask] = np.abs(x @ t.T) ** 2 * 7.0  # any units: the frame's scale is free
    tm = TransmissionMatrix(t.real.astype(np.float32), t.imag.astype(np.float32), mask, 0, 0)
    out = invert(tm, frames, starts=3, steps=400)
    assert pcc_rows(out.patterns, x.reshape(12, side, side)).min() > 0.99
    assert np.median(out.loss) < 1e-3


def test_ridge_recovers_its_own_training_patterns(sets, tmp_path, capsys) -> None:
    assert _train(sets, "ridge-pixels", tmp_path / "rp", "--val-fraction", "0") == 0
    rec = load_reconstructor(tmp_path / "rp")
    config = rec.config
    assert config["method"] == "ridge-pixels" and config["dataset"]["n_train"] == 240
    argv = ["--checkpoint", str(tmp_path / "rp"), "--data", str(sets / "train"), "--json"]
    assert evaluate.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    ridge = result["methods"]["ridge-pixels"]
    assert ridge["pcc"] > 0.95 and ridge["pcc"] > result["mean_pattern"]["pcc"] + 0.2
    lo, hi = ridge["pcc_ci95"]
    assert lo <= ridge["pcc"] <= hi
    assert 0 <= result["classifier_on_truth"] <= 1 and "digit_accuracy" in ridge


def test_tm_fit_recovers_its_training_patterns_and_records_its_matrix(sets, tmp_path) -> None:
    code = _train(sets, "tm", tmp_path / "tm", "--max-steps", "300", "--eval-every", "300")
    assert code == 0
    rec = load_reconstructor(tmp_path / "tm")
    assert rec.config["tm_sha256"] == rec.tm.sha256()
    assert rec.config["metrics"]["val_pcc"] > 0.9
    assert rec.mask.sum() < rec.mask.size / 3  # every other lit pixel (stride 2)


def test_dense_training_resumes_exactly(sets, tmp_path) -> None:
    args = ("--max-steps", "12", "--hidden", "16", "--batch-size", "32", "--checkpoint-every", "6")
    assert _train(sets, "dense-pixels", tmp_path / "a", *args) == 0
    assert _train(sets, "dense-pixels", tmp_path / "b", *args[:1], "6", *args[2:]) == 0
    assert _train(sets, "dense-pixels", tmp_path / "b", *args, "--resume") == 0
    a = load_file(tmp_path / "a" / "checkpoint" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint" / "model.safetensors")
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_predict_writes_patterns_and_names_bad_files(sets, tmp_path, capsys) -> None:
    assert _train(sets, "ridge-pixels", tmp_path / "rp") == 0
    capsys.readouterr()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    frames = sorted((sets / "test" / "images").glob("*.png"))[:3]
    argv = ["--checkpoint", str(tmp_path / "rp"), "--out", str(tmp_path / "out")]
    code = predict.main(argv + [str(bad), *map(str, frames)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "bad.png" in err[0]
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 4
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "out" / "ridge-pixels" / "000000.png"))
    assert img.dtype == np.uint16 and img.shape == (16, 16) and img.max() > 30000


def test_hostile_inputs_get_one_line_errors(sets, tmp_path, capsys) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "config.json").write_text(
        '{"format": "speckle-inverse-checkpoint", "method": "rm -rf"}'
    )
    with pytest.raises(ReconstructorError, match="unknown method"):
        load_reconstructor(fake)
    (fake / "config.json").write_text("[" * 10000)
    with pytest.raises(ReconstructorError):
        load_reconstructor(fake)
    # A pickle where the weights belong is refused, not loaded.
    assert _train(sets, "ridge-pixels", tmp_path / "rp") == 0
    weights = tmp_path / "rp" / "checkpoint" / "model.safetensors"
    weights.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="pickle"):
        load_reconstructor(tmp_path / "rp")
    capsys.readouterr()
    # μ methods need a VAE; data without patterns is named.
    assert _train(sets, "mlp-mu", tmp_path / "m") == 2
    no_pairs = tmp_path / "frames-only"
    (no_pairs / "images").mkdir(parents=True)
    for f in sorted((sets / "test" / "images").glob("*.png"))[:2]:
        (no_pairs / "images" / f.name).write_bytes(f.read_bytes())
    assert (
        train.main(
            [
                "--method",
                "ridge-pixels",
                "--data",
                str(no_pairs),
                "--out",
                str(tmp_path / "x"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "give --vae" in err[0] and "pattern" in err[1]
    code = evaluate.main(["--checkpoint", str(fake), "--data", str(sets / "test")])
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_pattern_families() -> None:
    assert FAMILIES == ("digits", "letters", "dots", "bars", "random")
    a = letters()
    assert a.shape == (52, 16, 16) and a.max() == 1.0 and a.min() == 0.0
    # Every glyph differs from every other, and sits inside the SLM.
    flat = a.reshape(52, -1)
    assert np.min(np.linalg.norm(flat[:, None] - flat[None], axis=-1) + np.eye(52) * 9) > 0.5
    for family in ("letters", "dots", "bars", "random"):
        bases, classes = family_bases(family)
        train_i, test_i = split_pool(len(bases), "train"), split_pool(len(bases), "test")
        assert not set(train_i) & set(test_i) and len(train_i) + len(test_i) == len(bases)
        sim = simulate_mmf(20, 3, size=32, family=family, digits="test")
        assert set(sim.labels["source_index"]) <= set(test_i)
        assert sim.meta["family"] == family and np.isfinite(sim.images).all()
    dots, counts = family_bases("dots")
    assert set(np.unique(counts)) == {1, 2, 3, 4}
    # random: binary pixels inside the central 12x12, their count the class, fills spread.
    rnd, on = family_bases("random")
    assert set(np.unique(rnd)) == {0.0, 1.0} and rnd[:, :2].max() == 0 and rnd[:, -2:].max() == 0
    assert np.array_equal(rnd.sum((1, 2)), on)
    fill = on / 144
    assert (
        fill.min() < 0.15
        and fill.max() > 0.35
        and len(np.unique(rnd.reshape(len(rnd), -1), axis=0)) == len(rnd)
    )


def test_a_comma_list_of_families_mixes_them_and_its_record_rebuilds_it(tmp_path) -> None:
    from speckle.cli import main as speckle_main
    from speckle.mmf import simulate_from_record
    from speckle.slm_patterns import family_names, family_pool

    assert family_names("dots") == ("dots",)
    assert family_names("digits, dots,bars") == ("digits", "dots", "bars")
    for bad in ("digits,digits", "digits,fonts", ""):
        with pytest.raises(ValueError, match="pattern family"):
            family_names(bad)
    # The pooled test split is each family's own test split, in the list's order.
    base, _, pool = family_pool("digits,dots", "test")
    n_digits = len(family_pool("digits", "all")[0])
    assert len(base) == n_digits + len(family_bases("dots")[0])
    assert len(pool) == len(family_pool("digits", "test")[2]) + len(split_pool(1000, "test"))
    assert set(pool[pool >= n_digits] - n_digits) == set(split_pool(1000, "test"))

    sim = simulate_mmf(60, 3, size=32, family="digits,dots,bars", digits="test")
    assert sim.meta["family"] == "digits,dots,bars"
    assert set(sim.labels["family"]) == {"digits", "dots", "bars"}
    dots_rows = sim.labels[sim.labels["family"] == "dots"]
    assert set(dots_rows["class"]) <= {1, 2, 3, 4}
    again = simulate_from_record(sim.meta, 60)
    assert np.allclose(again.images, sim.images) and again.labels.equals(sim.labels)

    out = tmp_path / "mixed"
    argv = ["mmf", "--n", "6", "--seed", "1", "--size", "32", "--out", str(out)]
    assert speckle_main([*argv, "--pattern-family", "digits, letters"]) == 0
    assert json.loads((out / "simulation.json").read_text())["family"] == "digits,letters"
    with pytest.raises(SystemExit):
        speckle_main([*argv, "--pattern-family", "digits,digits", "--overwrite"])


def test_speckle_mmf_pattern_family_flag(tmp_path) -> None:
    from speckle.cli import main as speckle_main

    out = tmp_path / "dots"
    argv = ["mmf", "--n", "8", "--seed", "1", "--size", "32", "--out", str(out)]
    assert speckle_main([*argv, "--pattern-family", "dots", "--digits", "test"]) == 0
    record = json.loads((out / "simulation.json").read_text())
    assert record["family"] == "dots" and record["digits"] == "test"
    header = (out / "labels.csv").read_text().splitlines()[0].split(",")
    assert "dots" in header and "digit" not in header
    # The record rebuilds the same patterns (prefix-stable, as for digits).
    from speckle.mmf import simulate_from_record

    again = simulate_from_record(record, 4)
    from PIL import Image

    first = np.asarray(Image.open(out / "patterns" / "000000.png"), np.float64)
    assert np.corrcoef(first.ravel(), again.patterns[0].ravel())[0, 1] > 0.999


def test_a_reconstructor_run_is_not_offered_as_a_model(sets, tmp_path, monkeypatch) -> None:
    from explorer import sources
    from inverse.checkpoint import FORMAT

    assert sources.INVERSE_FORMAT == FORMAT
    runs = tmp_path / "runs"
    assert _train(sets, "ridge-pixels", runs / "inv-ridge") == 0
    monkeypatch.setenv("SPECKLE_VAE_RUNS_ROOT", str(runs))
    assert not any(m.startswith("runs/") for m in sources.list_models())
    from explorer import inverse as explorer_inverse

    assert runs / "inv-ridge" / "checkpoint" in explorer_inverse.reconstructor_dirs()
