"""The regimes section of docs/validation.md: a pair measured here replaces its own subsection,
pairs measured elsewhere stay as the file has them, and the rows that start the generator from
the pooled TM's prediction are read against the same targets as the generator's."""

from __future__ import annotations

from benchmarks import regimes_doc as rd


def _m(v: float) -> dict:
    return {"mean": v, "ci95": [v - 0.01, v + 0.01]}


def _rows(gen: float, start: dict[float, float], tm: float) -> dict:
    rows = {"generator": {k: _m(gen) for k in ("pcc", "mean_of_k", "coverage", "energy")}}
    for s, v in start.items():
        rows[f"{rd.TM_START}{s:g}"] = {
            "pcc": _m(v),
            "mean_of_k": _m(v),
            "coverage": _m(v),
            "energy": _m(1 - v),
        }
    for name in rd.ROW_NAMES:
        if name != "generator":
            rows[name] = {"pcc": _m(tm), "energy": _m(1 - tm)}
    return rows


def _result(generator: str, gen: float, start: dict[float, float], tm: float) -> dict:
    fibre = "step-index modal fibre, fixed"
    return {
        "vae": "models/modal",
        "generator": generator,
        "train_fibre": fibre,
        "train_family": "digits,dots,bars",
        "train_n": 100,
        "pca_k": 12,
        "recipe": [],
        "settings": {
            "patterns": 10,
            "states": 1,
            "samples": 8,
            "n_ref": 64,
            "tm_steps": 10,
            "steps": 5,
            "sampler": "ddpm",
            "guidance": 1.5,
            "seed": 0,
            "interval": "bootstrap",
        },
        "regimes": {
            "letters, fibre as in training": {
                "letter": "b",
                "family": "letters",
                "fibre": fibre + ", one state",
                "camera": None,
                "states": 1,
                "rows": _rows(gen, start, tm),
            }
        },
    }


def test_a_start_from_the_tm_is_scored_against_the_same_targets() -> None:
    r = _result("/x/runs/gen-a", gen=0.90, start={0.4: 0.97, 0.8: 0.93}, tm=0.99)
    text = "\n".join(rd.render_pair(r, "today"))
    assert "generator started from the pooled TM's prediction, strength 0.4 |" in text
    target = next(t for t in rd.targets(r) if t.startswith("(b) letters"))
    assert "generator one sample 0.900 ≥ 0.95: **missed**" in target
    # The start at 0.4: 0.97 meets 0.95 and is within 0.03 of the TM's 0.99; 0.8's 0.93 is not.
    assert "at strength 0.4, 0.970 (against 0.95: met, against the TM − 0.03: met)" in target
    assert "at strength 0.8, 0.930 (against 0.95: **missed** (short by 0.020)" in target
    assert (
        "The pair's regressor scores 0.990: against 0.95 met, within 0.03 of the TM met" in target
    )
    verdict = rd.verdict(r["regimes"]["letters, fibre as in training"])
    assert "Learning loses in PCC: the generator's mean of samples 0.900" in verdict
    assert "Started from the TM, learning loses in PCC" in verdict and "0.970" in verdict
    # A pair measured without starts says nothing about them.
    plain = _result("/x/runs/gen-b", gen=0.90, start={}, tm=0.99)
    assert "Started from" not in " ".join(rd.targets(plain))


def test_a_rewrite_keeps_the_pairs_it_did_not_measure() -> None:
    a = _result("/x/runs/gen-a", gen=0.90, start={}, tm=0.99)
    b = _result("/repo/models/generators/modal", gen=0.80, start={}, tm=0.99)
    first = rd.render(
        {"pairs": {"a": {"result": a, "stamp": "then"}, "b": {"result": b, "stamp": "then"}}}
    )
    assert "gen-a (trained for this table, not shipped)" in first
    # Remeasure b only, with another figure: a stays as it was, b is replaced in place.
    b2 = _result("/repo/models/generators/modal", gen=0.85, start={}, tm=0.99)
    second = rd.render({"pairs": {"b": {"result": b2, "stamp": "now"}}}, kept=first)
    heads = [line for line in second.splitlines() if line.startswith(rd.PAIR_HEADING)]
    assert heads == [line for line in first.splitlines() if line.startswith(rd.PAIR_HEADING)]
    assert second.count("then.") == 1 and second.count("now.") == 1
    assert "0.850" in second and "0.800 [" not in second
    assert second.startswith(rd.BEGIN) and second.rstrip().endswith(rd.END)
    # A new pair goes after the kept ones.
    c = _result("/x/runs/gen-c", gen=0.70, start={}, tm=0.99)
    third = rd.render({"pairs": {"c": {"result": c, "stamp": "now"}}}, kept=second)
    assert third.index("gen-c") > third.index("models/generators/modal")


def test_science_regimes_scores_a_pair_on_some_regimes_and_keeps_the_others(tmp_path) -> None:
    """A real run on the shipped modal pair, tiny: regime (b) only, a start from the TM, and a
    non-default sampler, written into a copy of validation.md whose other tables stay."""
    import json

    from benchmarks import science_regimes

    doc = tmp_path / "validation.md"
    doc.write_text(rd.REPO.joinpath("docs", "validation.md").read_text(encoding="utf-8"))
    before = rd.kept_pairs(doc.read_text(encoding="utf-8").split(rd.BEGIN)[1])
    rows = tmp_path / "rows.json"
    args = ["--vae", str(rd.REPO / "models" / "modal")]
    args += ["--generator", str(rd.REPO / "models" / "generators" / "modal")]
    args += ["--regimes", "b", "--n", "4", "--states", "2", "--samples", "2", "--n-ref", "64"]
    args += ["--tm-steps", "3", "--tm-start", "0.4", "--steps", "2", "--threads", "1"]
    assert science_regimes.main([*args, "--out", str(doc), "--rows", str(rows)]) == 0
    ((key, entry),) = json.loads(rows.read_text())["pairs"].items()
    r = entry["result"]
    assert key.endswith("(2 ddpm steps, guidance 1.5)") and r["variant"]
    assert {reg["letter"] for reg in r["regimes"].values()} == {"b"}
    assert len(r["regimes"]) == 2  # letters and dots
    for reg in r["regimes"].values():
        assert list(reg["rows"])[:2] == ["generator", f"{rd.TM_START}0.4"]
        assert 0 < reg["rows"][f"{rd.TM_START}0.4"]["pcc"]["mean"] <= 1
    v = r["pca_variance"]
    assert v["k_0.99"] <= v["k_0.999"] <= 64 and 0 < v["at_k"] <= 1.0
    assert r["pca_k"] == 32  # capped at half the 64 reference frames
    assert (v["at_k"] >= 0.99) == (r["pca_k"] >= v["k_0.99"])
    after = rd.kept_pairs(doc.read_text(encoding="utf-8").split(rd.BEGIN)[1])
    assert all(after[head] == text for head, text in before.items())
    new = [head for head in after if head not in before]
    assert new == [
        f"{rd.PAIR_HEADING}models/generators/modal with VAE models/modal, sampled with "
        "2 ddpm steps, guidance 1.5"
    ]
