"""Config validation: each bad input gives one message that names it."""

import copy

import pytest

from vaeflow.config import ConfigError, load_config, run_config, trains_on, validate_config
from vaeflow.hashing import config_hash


@pytest.fixture()
def config(root):
    return load_config(root / "config/config.yaml", root / "config/schema.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(root, name):
    cfg = load_config(root / "config" / name, root / "config/schema.yaml")
    for dataset in cfg["datasets"]:
        for model in cfg["models"]:
            if not trains_on(cfg, model, dataset):
                continue
            run = run_config(cfg, dataset, model, cfg["seeds"][0])
            assert run["training"]["steps"] >= 1


@pytest.mark.parametrize(
    ("mutate", "names"),
    [
        (lambda c: c["models"].update(vea={"steps": {"digits": 1}}), ["models", "'vea'", "vae"]),
        (lambda c: c["training"].update(lr="fast"), ["training.lr", "'fast'", "number"]),
        (lambda c: c["models"]["vae"]["options"].update(latnet=3), ["models.vae.options", "'latnet'", "latent_dim"]),
        (lambda c: c.update(seedz=[1]), ["top level", "'seedz'"]),
        (lambda c: c["datasets"].update(cifar={}), ["datasets", "'cifar'", "digits"]),
        (lambda c: c["models"]["realnvp"]["steps"].update(digits=0), ["models.realnvp.steps.digits", "0"]),
        (lambda c: c.pop("training"), ["'training' is a required property"]),
    ],
)
def test_bad_config_names_the_key(config, mutate, names):
    bad = copy.deepcopy(config)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad, "config/schema.yaml", source="config/config.yaml")
    message = str(err.value)
    assert "\n" not in message, "one message, one line"
    for name in names:
        assert name in message


def test_schema_knows_exactly_the_models_and_their_options(root, config):
    """The schema's model names are the registry's, and where it gives a model's option types, their keys
    are the constructor's keyword arguments."""
    import inspect

    from vaeflow.config import load_schema
    from vaeflow.models import MODELS

    schema = load_schema(root / "config/schema.yaml")
    assert set(schema["properties"]["models"]["properties"]) == set(MODELS)
    for name, cls in MODELS.items():
        if f"{name}_options" not in schema["$defs"]:
            continue
        accepted = {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "data_shape", "levels")}
        assert set(schema["$defs"][f"{name}_options"]["properties"]) == accepted, name


def test_run_config_holds_only_its_model_and_dataset(config):
    run = run_config(config, "toy2d", "vae", 1)
    assert run["model"] == "vae" and run["dataset"] == "toy2d" and run["seed"] == 1
    assert run["options"]["latent_dim"] == 2  # dataset_options override options
    assert run["training"]["steps"] == config["models"]["vae"]["steps"]["toy2d"]
    other = copy.deepcopy(config)
    other["models"]["realnvp"]["options"]["hidden"] = 7
    assert config_hash(run_config(other, "toy2d", "vae", 1)) == config_hash(run)
    assert config_hash(run_config(other, "toy2d", "realnvp", 1)) != config_hash(
        run_config(config, "toy2d", "realnvp", 1)
    )


def test_defaults_are_filled(config):
    assert config["device"] == "auto" and config["threads"] >= 1


def test_training_objective_names_how_each_run_learned(config):
    from vaeflow.evaluation.objective import training_objective

    distilled = copy.deepcopy(config)
    distilled["models"]["iaf"]["distill"] = {"teacher": "maf", "datasets": ["mnist"]}
    assert training_objective(run_config(distilled, "mnist", "iaf", 0), exact=True) == "density distillation from maf"
    assert training_objective(run_config(config, "mnist", "iaf", 0), exact=True) == "maximum likelihood"
    assert training_objective(run_config(config, "toy2d", "iaf", 0), exact=True) == "maximum likelihood"
    assert training_objective(run_config(config, "mnist", "vae", 0), exact=False) == "its ELBO"
    flowpp = run_config(config, "mnist", "flowpp", 0)
    assert (
        training_objective(flowpp, False, "variational-dequantisation bound") == "its variational-dequantisation bound"
    )
    iwae = run_config(config, "mnist", "vae", 0)
    iwae["options"]["iwae_k"] = 8
    assert training_objective(iwae, exact=False) == "IWAE-8 bound"


def test_a_standalone_notebook_gets_the_default_studys_analysis_block(root, monkeypatch):
    from vaeflow.config import study_analysis_settings

    monkeypatch.chdir(root)
    block = study_analysis_settings("likelihood")
    assert block["iwae_ks"][-1] == 5000 and block["batch_size"] == 50  # the default filled from the schema
    assert study_analysis_settings("anomaly", "config/smoke.yaml")["max_examples"] == 20


# --------------------------------------------------------------------------- checks at load time
# Each case is a value that passed validation and failed later (or never): now it fails when the
# study configuration is read, with one message that names the file, the line, the key, the value
# and what to do. The cases edit config/smoke.yaml as text, so the line a message names is known.


def _edited_smoke(root, tmp_path, old, new, *more):
    """config/smoke.yaml with ``old`` replaced by ``new`` (and each further pair of ``more``), written to
    a file in ``tmp_path``; returns the path and the line (1-based) of the first edit."""
    text = (root / "config/smoke.yaml").read_text()
    line = text[: text.index(old)].count("\n") + 1
    for a, b in [(old, new), *zip(more[::2], more[1::2])]:
        assert text.count(a) == 1, a
        text = text.replace(a, b)
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path, line


def _message(path, root, **kwargs):
    with pytest.raises(ConfigError) as err:
        load_config(path, root / "config/schema.yaml", **kwargs)
    message = str(err.value)
    assert "\n" not in message, "one message, one line"
    assert "config/config.yaml or --configfile" not in message
    return message


@pytest.mark.parametrize(
    ("old", "new", "key", "value"),
    [
        ("  lr: 0.001", "  lr: .nan", "training.lr", "nan (.nan in YAML)"),
        ("  lr: 0.001", "  lr: .inf", "training.lr", "inf (.inf in YAML)"),
        ("  grad_clip: 100.0", "  grad_clip: .nan", "training.grad_clip", "nan"),
        ("temperatures: [0.5, 1.0]", "temperatures: [0.5, -.inf]", "analyses.high_frequency.temperatures[1]", "-inf"),
        ("cutoff: 0.25", "cutoff: .NaN", "analyses.high_frequency.cutoff", "nan"),
    ],
)
def test_a_non_finite_number_anywhere_is_rejected_at_load(root, tmp_path, old, new, key, value):
    path, line = _edited_smoke(root, tmp_path, old, new)
    message = _message(path, root)
    for part in (f"{path}, line {line}", f"at '{key}'", value, "not a finite number", "Give a finite number there"):
        assert part in message, (part, message)


@pytest.mark.parametrize(
    ("old", "new", "key", "value", "dataset", "shape", "largest"),
    [
        (
            "n_scales: 2, coupling_layers: 4",
            "n_scales: 6, coupling_layers: 4",
            "models.realnvp.options.n_scales",
            6,
            "mnist",
            "(1, 14, 14)",
            2,
        ),
        (
            "mnist: {n_levels: 1}",
            "mnist: {n_levels: 2}",
            "models.glow.dataset_options.mnist.n_levels",
            2,
            "mnist",
            "(1, 14, 14)",
            1,
        ),
        (
            "steps: 2, n_levels: 2, logit_alpha",
            "steps: 2, n_levels: 4, logit_alpha",
            "models.glow.options.n_levels",
            4,
            "digits",
            "(1, 8, 8)",
            3,
        ),
        (
            "steps: 1, n_scales: 1, dequant_steps",
            "steps: 1, n_scales: 5, dequant_steps",
            "models.flowpp.options.n_scales",
            5,
            "mnist",
            "(1, 14, 14)",
            2,
        ),
    ],
)
def test_a_scale_count_that_does_not_fit_a_dataset_is_rejected_at_load(
    root, tmp_path, old, new, key, value, dataset, shape, largest
):
    path, line = _edited_smoke(root, tmp_path, old, new)
    message = _message(path, root)
    for part in (
        f"{path}, line {line}",
        f"at '{key}': {value} does not fit dataset '{dataset}'",
        f"examples have shape {shape}",
        f"Set it to at most {largest}",
    ):
        assert part in message, (part, message)


def test_n_scales_6_on_the_8x8_digits_names_the_dataset_its_shape_and_the_largest_value(root, tmp_path):
    path, line = _edited_smoke(
        root,
        tmp_path,
        "    options: {hidden_channels: 8, res_blocks: 1, n_scales: 2,",
        "    dataset_options: {digits: {n_scales: 6}}\n    options: {hidden_channels: 8, res_blocks: 1, n_scales: 2,",
    )
    message = _message(path, root)
    for part in (
        f"{path}, line {line}",
        "at 'models.realnvp.dataset_options.digits.n_scales': 6 does not fit dataset "
        "'digits', whose examples have shape (1, 8, 8)",
        "divisible by 2^(n_scales-1) = 32",
        "Set it to at most 3",
    ):
        assert part in message, (part, message)


def test_an_unset_scale_count_is_checked_with_the_models_default(root, tmp_path):
    """Without its mnist override, Glow's n_levels is the constructor's default 2, which 14x14 images do not fit."""
    path, line = _edited_smoke(
        root,
        tmp_path,
        "steps: 2, n_levels: 2, logit_alpha",
        "steps: 2, logit_alpha",
        "mnist: {n_levels: 1}",
        "mnist: {}",
    )
    message = _message(path, root)
    assert "at 'models.glow.options.n_levels': unset, so the default 2, does not fit dataset 'mnist'" in message, (
        message
    )
    assert f"{path}, line {line}" in message, message  # the glow block's options (the key is absent)


@pytest.mark.parametrize(
    ("old", "new", "key", "value", "dataset", "limit"),
    [
        ("  batch_size: 32\n  lr", "  batch_size: 1000000000\n  lr", "training.batch_size", 1000000000, "digits", 1257),
        (
            "    options: {latent_dim: 4, hidden: 32, layers: 1}\n    dataset_options:\n      toy2d: {latent_dim: "
            "2}\n  realnvp",
            "    options: {latent_dim: 4, hidden: 32, layers: 1}\n    training: {batch_size: 2001}\n    "
            "dataset_options:\n"
            "      toy2d: {latent_dim: 2}\n  realnvp",
            "models.vae.training.batch_size",
            2001,
            "digits",
            1257,
        ),
        ("n_train: 2000", "n_train: 20", "training.batch_size", 32, "toy2d", 20),
    ],
)
def test_a_batch_size_larger_than_a_training_split_is_rejected_at_load(
    root, tmp_path, old, new, key, value, dataset, limit
):
    path, _ = _edited_smoke(root, tmp_path, old, new)
    message = _message(path, root)
    for part in (
        f"{path}, line",
        f"at '{key}': {value} is larger than the training split of dataset '{dataset}'",
        f"({limit} examples)",
        "full-batch",
        f"Set it to at most {limit}",
    ):
        assert part in message, (part, message)


def test_a_distilled_student_may_use_a_batch_larger_than_the_split_it_does_not_train_on(root, tmp_path):
    """iaf learns digits, mnist and textures from its teacher's density, on its own samples; only
    toy2d (2,000 training points) bounds its batch."""
    path, _ = _edited_smoke(
        root, tmp_path, "    distill: {teacher: maf", "    training: {batch_size: 2000}\n    distill: {teacher: maf"
    )
    load_config(path, root / "config/schema.yaml")


def test_device_cuda_without_a_gpu_is_rejected_at_load(root, tmp_path, monkeypatch):
    import torch

    path, line = _edited_smoke(root, tmp_path, "device: cpu", "device: cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = _message(path, root)
    for part in (f"{path}, line {line}", "at 'device': 'cuda'", "sees no CUDA GPU", "Set device: auto there"):
        assert part in message, (part, message)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert load_config(path, root / "config/schema.yaml")["device"] == "cuda"


def test_reading_and_validating_a_study_does_not_import_torch(root):
    """Planning (`snakemake -n`) reads the study: with device auto or cpu that must not cost a torch import."""
    import subprocess
    import sys

    code = (
        "import sys; from vaeflow.config import load_config\n"
        "for name in ('config.yaml', 'smoke.yaml', 'paper.yaml'):\n"
        "    load_config(f'config/{name}', 'config/schema.yaml')\n"
        "sys.exit('torch' in sys.modules)"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], cwd=root, env={**__import__("os").environ, "PYTHONPATH": str(root / "src")}
        ).returncode
        == 0
    )


def test_a_misspelt_required_key_is_named_with_the_key_it_resembles(root, tmp_path):
    path, line = _edited_smoke(root, tmp_path, "  batch_size: 32\n  lr", "  batchsize: 32\n  lr")
    message = _message(path, root)
    for part in (
        f"{path}, line {line}",
        "at 'training': unknown key 'batchsize'",
        "did you mean 'batch_size'?",
        "'batch_size' is required and missing",
        "Rename or remove it there",
    ):
        assert part in message, (part, message)


@pytest.mark.parametrize(
    ("old", "new", "parts"),
    [
        (
            "    options: {blocks: 2, hidden: 32, layers: 1}\n  iaf",
            "    options: {blocks: 2, hiden: 32, layers: 1}\n  iaf",
            ["at 'models.maf.options': unknown key 'hiden'", "did you mean 'hidden'?"],
        ),
        ("device: cpu", "device: cdua", ["at 'device': 'cdua' is not one of", "did you mean 'cuda'?"]),
        (
            "distill: {teacher: maf",
            "distill: {teacher: mfa",
            ["at 'models.iaf.distill.teacher': 'mfa'", "did you mean 'maf'?"],
        ),
        (
            "steps: {digits: 30, mnist: 30, textures: 30, toy2d: 30}\n    options: {latent_dim: 4",
            "steps: {digits: 30, mnist: 30, textures: 30}\n    options: {latent_dim: 4",
            [
                "at 'models.vae.steps': no training steps for dataset(s) 'toy2d'",
                "Add toy2d: <steps> there",
                "models.vae.left_out: {toy2d:",
            ],
        ),
        ("patch: 8, stride: 16", "patch: 400, stride: 16", ["at 'datasets.textures'", "too small for patch=400"]),
        (
            "  digits: {}",
            "  digits: {val_fraction: 0.5, test_fraction: 0.6}",
            ["at 'datasets.digits'", "val_fraction + test_fraction = 1.1", "make their sum smaller than 1"],
        ),
    ],
)
def test_other_mistakes_name_the_file_line_key_and_fix(root, tmp_path, old, new, parts):
    path, line = _edited_smoke(root, tmp_path, old, new)
    message = _message(path, root)
    for part in (f"{path}, line {line}", *parts):
        assert part in message, (part, message)


def test_messages_name_the_file_that_holds_the_key(root, tmp_path):
    """Of several --configfile files the one that set the key (the last to hold it), and --config values."""
    from vaeflow.config import merged, read_config_files, shown_path

    base = root / "config/smoke.yaml"
    extra = tmp_path / "extra.yaml"
    extra.write_text("evaluation:\n  samples: 4\ntraining:\n  lr: .nan\n")
    files = read_config_files([base, extra])
    with pytest.raises(ConfigError, match=rf"{extra}, line 4: at 'training.lr'"):
        validate_config(merged(files), root / "config/schema.yaml", files=files)
    with pytest.raises(ConfigError, match=r"configuration --config: at 'training.warmup_steps': -1 is less"):
        validate_config(
            merged(files[:1]) | {"training": {**merged(files[:1])["training"], "warmup_steps": -1}},
            root / "config/schema.yaml",
            files=files[:1],
            overrides={"training": {"warmup_steps": -1}},
        )
    files = read_config_files([base])
    bad = merged(files)
    bad["training"].pop("lr")
    line = base.read_text().splitlines().index("training:") + 1
    with pytest.raises(
        ConfigError, match=rf"configuration {shown_path(base)}, line {line}: at 'training': 'lr' is a required property"
    ):
        validate_config(bad, root / "config/schema.yaml", files=files)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "seeds: [0]\ntraining:\n  lr: [0.1\n  batch_size: 3\n",
            ["line 4, column 13", "expected ',' or ']'", "flow sequence that starts at line 3, column 7"],
        ),
        ("seeds: [0]\n\tdatasets: {}\n", ["line 2, column 1", "'\\t'", "indent with spaces, not tabs"]),
        ("", ["holds nothing, not a mapping"]),
        ("- seeds\n", ["holds a list, not a mapping"]),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_named_with_line_and_column(tmp_path, text, parts):
    from vaeflow.config import read_config_file

    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    message = str(err.value)
    assert "\n" not in message and f"study configuration {path}" in message
    for part in parts:
        assert part in message, (part, message)


def test_python_m_vaeflow_config_checks_a_file(root, tmp_path):
    """What a user can run on a --configfile that Snakemake cannot parse (its message names no file)."""
    import subprocess
    import sys

    broken = tmp_path / "broken.yaml"
    broken.write_text("seeds: [0\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(root / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "vaeflow.config", str(broken)], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and f"{broken} is not valid YAML: at line 2, column 1" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "vaeflow.config", "config/smoke.yaml"], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "config/smoke.yaml: a valid study configuration" in proc.stdout


def test_a_model_left_out_of_a_dataset_has_no_runs_there_and_its_reason_is_kept(root, tmp_path):
    from vaeflow.config import left_out_runs, run_config, trains_on

    path, _ = _edited_smoke(
        root,
        tmp_path,
        "    steps: {digits: 3, mnist: 3, toy2d: 10}",
        "    steps: {digits: 3, toy2d: 10}",
        "    left_out: {textures: left out to exercise the left_out setting in the tests}",
        "    left_out: {mnist: too slow here, textures: too slow\n      here}",
    )
    config = load_config(path, root / "config/schema.yaml")
    assert [trains_on(config, "ffjord", d) for d in ("digits", "mnist", "textures", "toy2d")] == [
        True,
        False,
        False,
        True,
    ]
    assert trains_on(config, "vae", "mnist")
    assert left_out_runs(config) == [
        {"model": "ffjord", "dataset": "mnist", "reason": "too slow here"},
        {"model": "ffjord", "dataset": "textures", "reason": "too slow here"},
    ]
    with pytest.raises(ConfigError, match=r"models.ffjord is left out of dataset 'mnist'.*too slow here"):
        run_config(config, "mnist", "ffjord", 0)


def test_a_dataset_both_trained_on_and_left_out_is_rejected(root, tmp_path):
    path, _ = _edited_smoke(
        root,
        tmp_path,
        "    steps: {digits: 3, mnist: 3, toy2d: 10}",
        "    steps: {digits: 3, mnist: 3, textures: 3, toy2d: 10}",
    )
    message = _message(path, root)
    for part in (
        "at 'models.ffjord.left_out': 'textures' is also in models.ffjord.steps",
        "Remove it from one of the two",
    ):
        assert part in message, (part, message)


def test_the_studys_logit_alpha_reaches_every_model_that_takes_one(root, tmp_path):
    from vaeflow.config import run_config

    path, _ = _edited_smoke(
        root,
        tmp_path,
        "models:\n",
        "logit_alpha: {mnist: 0.01}\n\nmodels:\n",
        "logit_alpha: 0.05, hidden: 16",
        "hidden: 16",
    )
    config = load_config(path, root / "config/schema.yaml")
    for model in ("realnvp", "glow", "maf", "iaf", "ffjord", "flowpp"):
        assert run_config(config, "mnist", model, 0)["options"]["logit_alpha"] == 0.01, model
        assert "logit_alpha" not in run_config(config, "digits", model, 0)["options"], model
    for model in ("vae", "vae_iaf"):  # no logit pre-processing
        assert "logit_alpha" not in run_config(config, "mnist", model, 0)["options"], model
    again = validate_config(copy.deepcopy(config), root / "config/schema.yaml")  # idempotent
    assert run_config(again, "mnist", "maf", 0) == run_config(config, "mnist", "maf", 0)


def test_logit_alpha_set_both_by_the_study_and_by_a_model_is_rejected(root, tmp_path):
    path, _ = _edited_smoke(root, tmp_path, "models:\n", "logit_alpha: {mnist: 0.01}\n\nmodels:\n")
    message = _message(path, root)
    for part in (
        "models.glow sets logit_alpha 0.05 and so does 'logit_alpha.mnist' (0.01)",
        "remove logit_alpha from models.glow",
    ):
        assert part in message, (part, message)
