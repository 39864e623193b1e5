"""The Reproduce page from Snakemake's job records: grouping, anchors, commands, hashes."""

import base64
import json

import pytest

from vaeflow.hashing import code_digest
from vaeflow.site.reproduce import code_hashes, combined_digest, group_by_job, markdown, rebuild_command, record


def _record(metadata, path, rule, job_hash, inputs, start=100.0, end=112.5):
    data = {
        "rule": rule,
        "job_hash": job_hash,
        "starttime": start,
        "endtime": end,
        "input": list(inputs),
        "input_checksums": {p: f"sha256:{'%064x' % (i + 1)}" for i, p in enumerate(inputs)},
        "params": ["'{\"k\": 1}'"],
    }
    (metadata / base64.urlsafe_b64encode(path.encode()).decode()).write_text(json.dumps(data))


@pytest.fixture()
def study(tmp_path):
    metadata = tmp_path / ".snakemake/metadata"
    metadata.mkdir(parents=True)
    inputs = ["workflow/notebooks/likelihood.ipynb", "results/a/metrics.json", "src/vaeflow/analysis/likelihood.py"]
    for path in ("results/tables/likelihood.md", "results/figures/learning_curves.svg"):
        _record(metadata, path, "likelihood_analysis", 7, inputs)
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    _record(metadata, "results/variables.yml", "variables", 8, ["results/variables/likelihood.yml"], 200.0, 201.0)
    (tmp_path / "results/variables.yml").write_text("a: 1\n")
    return tmp_path, metadata


def test_outputs_of_one_job_are_grouped_and_each_gets_its_anchor_and_command(study):
    root, metadata = study
    paths = ["results/tables/likelihood.md", "results/figures/learning_curves.svg", "results/variables.yml"]
    jobs = group_by_job(paths, metadata)
    assert [(j.rule, sorted(o.anchor for o in j.outputs)) for j in jobs] == [
        ("likelihood_analysis", ["figure-learning_curves", "table-likelihood"]),
        ("variables", ["variables"]),
    ]
    assert jobs[0].notebook == "workflow/notebooks/likelihood.ipynb" and jobs[0].run_time_s == pytest.approx(12.5)
    text = markdown(jobs, root, ["config/smoke.yaml"], "abc123")
    for anchor in ("{#figure-learning_curves}", "{#table-likelihood}", "{#variables}", "{#job-likelihood_analysis}"):
        assert anchor in text
    assert (
        "snakemake --cores 2 results/figures/learning_curves.svg --forcerun likelihood_analysis "
        "--configfile config/smoke.yaml"
    ) in text
    assert "12.5 s" in text and "`abc123`" in text and "3 files" in text
    assert f"`{2:064x}`" in text  # each input's recorded sha256


def test_records_of_one_job_a_millisecond_apart_are_one_job_and_one_anchor(tmp_path):
    """Snakemake stamps each output's record on its own: one job's records differ by milliseconds (seen in the
    default study: 18 records at ...030.1645 and 8 at ...030.1654), and must still make one section."""
    metadata = tmp_path / "m"
    metadata.mkdir()
    inputs = ["results/a/metrics.json"]
    _record(metadata, "results/tables/likelihood.md", "likelihood_analysis", 7, inputs, 100.0002, 112.5004)
    _record(metadata, "results/figures/learning_curves.svg", "likelihood_analysis", 7, inputs, 100.0001, 112.5013)
    _record(metadata, "results/tables/cost.md", "cost_analysis", 9, inputs, 100.0, 101.0)
    _record(metadata, "results/figures/cost.svg", "cost_analysis", 9, inputs, 400.0, 401.0)  # rerun: another job
    paths = ["results/tables/likelihood.md", "results/figures/learning_curves.svg"]
    jobs = group_by_job([*paths, "results/tables/cost.md", "results/figures/cost.svg"], metadata)
    assert [(j.rule, len(j.outputs)) for j in jobs] == [
        ("cost_analysis", 1),
        ("cost_analysis", 1),
        ("likelihood_analysis", 2),
    ]
    assert markdown(jobs[2:], tmp_path, [], "abc").count("{#job-likelihood_analysis}") == 1


def test_the_default_config_needs_no_configfile_flag():
    assert (
        rebuild_command("r", "results/x.svg", ["config/config.yaml"])
        == "snakemake --cores 2 results/x.svg --forcerun r"
    )


def test_the_combined_digest_changes_with_any_input():
    hashes = {"a": "sha256:1", "b": "sha256:2"}
    assert combined_digest(hashes) == combined_digest(dict(reversed(hashes.items())))
    assert combined_digest(hashes) != combined_digest({**hashes, "b": "sha256:3"})


def test_an_output_snakemake_never_built_is_named(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"no Snakemake record of results/tables/x.md .*snakemake --cores 2 results/tables/x.md"
    ):
        record("results/tables/x.md", tmp_path)


def test_only_tables_figures_and_variables_are_listed(study):
    root, metadata = study
    with pytest.raises(ValueError, match="not a table, figure or variables file"):
        group_by_job(["results/digits/vae/seed0/metrics.json"], metadata)


def test_a_code_digest_lists_each_file_with_its_sha256_and_the_page_lists_them(tmp_path, monkeypatch):
    import hashlib

    (tmp_path / "src").mkdir()
    (tmp_path / "src/b.py").write_text("b = 2\n")
    (tmp_path / "src/a.py").write_text("a = 1\n")
    monkeypatch.chdir(tmp_path)  # the workflow passes paths relative to the project
    text = code_digest(["src/b.py", "src/a.py"])
    sha = {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("src/a.py", "src/b.py")}
    assert text == f"{sha['src/a.py']}  src/a.py\n{sha['src/b.py']}  src/b.py\n"  # sha256sum's format, sorted
    digest = tmp_path / "results/code/models.x+training.engine.sha256"
    digest.parent.mkdir(parents=True)
    digest.write_text(text)
    hashes = {
        "results/code/models.x+training.engine.sha256": "sha256:" + "0" * 64,
        "workflow/notebooks/n.ipynb": "sha256:" + "1" * 64,
        "results/data/x.npz": "sha256:" + "2" * 64,
    }
    assert code_hashes(hashes, tmp_path) == {
        "src/a.py": sha["src/a.py"],
        "src/b.py": sha["src/b.py"],
        "workflow/notebooks/n.ipynb": "1" * 64,
    }
