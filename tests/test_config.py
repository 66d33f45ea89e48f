"""Strict configuration: presets resolve, unknown or mistyped keys are errors naming key and file."""
import pytest

from cometa.config import ConfigError, config_from_dict, load_config, load_run_config


@pytest.mark.parametrize("preset", ["tiny", "demo", "paper"])
def test_presets_resolve(preset):
    cfg = load_config(preset)
    assert cfg.preset == preset
    assert config_from_dict(cfg.to_dict()) == cfg  # round trip through the plain dict


def test_paper_preset_carries_the_papers_values():
    cfg = load_config("paper")
    s2 = cfg.stage2
    assert (s2.tau, s2.e_k, s2.alpha, s2.beta, s2.margin, s2.scale) == (0.2, 10, 0.01, 0.001, 0.2, 32.0)
    assert s2.rounds * s2.epochs_per_round == 200  # E_max
    assert cfg.clustering.k == 6000
    assert cfg.audio_encoder.channels == 512 and cfg.audio_encoder.embed_dim == 192
    assert cfg.visual_encoder.depth == 34 and cfg.visual_encoder.image_size == 224
    assert (cfg.features.n_mels, cfg.features.crop_seconds) == (80, 1.8)
    assert cfg.corpus.kind == "voxceleb"


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("stage2:\n  tua: 0.3\n")
    with pytest.raises(ConfigError) as e:
        load_config("tiny", path=f)
    assert "stage2.tua" in str(e.value) and str(f) in str(e.value)
    assert "tau" in str(e.value)  # the suggestion


def test_mistyped_value_names_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("stage1:\n  epochs: three\n")
    with pytest.raises(ConfigError, match=r"stage1\.epochs.*integer"):
        load_config("tiny", path=f)
    with pytest.raises(ConfigError, match=r"stage2\.second_order"):
        load_config("tiny", overrides=["stage2.second_order=maybe"])


def test_validation_errors_name_the_section():
    with pytest.raises(ConfigError, match="vote_policy"):
        load_config("tiny", overrides={"clustering.vote_policy": "coin"})
    with pytest.raises(ConfigError, match=r"clustering\.truth_noise' must be in \[0, 1\)"):
        load_config("tiny", overrides=["clustering.method=truth", "clustering.truth_noise=1.0"])
    with pytest.raises(ConfigError, match=r"clustering\.truth_noise_unit"):
        load_config("tiny", overrides=["clustering.truth_noise_unit=speaker"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("huge")


def test_overrides_apply_last(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("stage2:\n  tau: 0.3\n")
    cfg = load_config("tiny", path=f, overrides=["stage2.tau=0.4", "stage2.strategies=[cometa]"])
    assert cfg.stage2.tau == 0.4 and cfg.stage2.strategies == ["cometa"]
    assert load_config("tiny", path=f).stage2.tau == 0.3


def test_int_accepted_for_float_and_tuples(tmp_path):
    cfg = load_config("tiny", overrides=["stage2.scale=30", "augment.snr_noise=[1, 2]"])
    assert cfg.stage2.scale == 30.0 and isinstance(cfg.stage2.scale, float)
    assert cfg.augment.snr_noise == (1.0, 2.0)


def test_run_config_roundtrip(tmp_path):
    cfg = load_config("demo")
    f = tmp_path / "config.yaml"
    f.write_text(cfg.to_yaml() + "git_sha: abc\n")
    assert load_run_config(f) == cfg


@pytest.mark.parametrize("override, key, rule", [
    ("stage2.tau=1.5", "stage2.tau", "in [0, 1)"),
    ("stage2.tau=1", "stage2.tau", "in [0, 1)"),  # τ = 1 would select nothing
    ("stage2.tau=-0.1", "stage2.tau", "in [0, 1)"),
    ("stage2.alpha=0", "stage2.alpha", "> 0"),
    ("stage2.beta=-1e-3", "stage2.beta", "> 0"),
    ("stage2.e_k=0", "stage2.e_k", ">= 1"),
    ("stage2.epochs_per_round=0", "stage2.epochs_per_round", ">= 1"),
    ("stage2.rounds=0", "stage2.rounds", ">= 1"),
    ("stage2.batch_size=1", "stage2.batch_size", ">= 2"),
    ("clustering.k=1", "clustering.k", ">= 2"),
    ("clustering.backend=mkl", "clustering.backend", "one of auto|faiss|numpy|sklearn|torch"),
    ("stage1.epochs=0", "stage1.epochs", ">= 1"),
    ("stage1.lr=0", "stage1.lr", "> 0"),
    ("stage1.temperature=0", "stage1.temperature", "> 0"),
    ("stage1.lr_schedule.final_ratio=0", "stage1.lr_schedule.final_ratio", "in (0, 1]"),
    ("stage2.lr_schedule.kind=step", "stage2.lr_schedule.kind", "one of constant|cosine|exponential"),
    ("augment.visual_p=1.2", "augment.visual_p", "in [0, 1]"),
    ("visual_encoder.depth=50", "visual_encoder.depth", "one of 10|18|34"),
    ("corpus.synthetic.n_test_speakers=1", "corpus.synthetic.n_test_speakers", ">= 2"),
    ("jobs=0", "jobs", ">= 1"),
])
def test_out_of_range_values_are_refused_naming_the_key(override, key, rule):
    with pytest.raises(ConfigError) as e:
        load_config("demo", overrides=[override])
    msg = str(e.value)
    assert f"'{key}'" in msg and rule in msg and msg.startswith("--set:"), msg


def test_out_of_range_value_in_a_file_names_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("stage2:\n  alpha: -0.01\n")
    with pytest.raises(ConfigError, match=rf"{f}: 'stage2.alpha' must be > 0, got -0.01"):
        load_config("tiny", path=f)


def test_boundary_values_are_accepted():
    cfg = load_config("tiny", overrides=["stage2.tau=0", "stage2.e_k=1", "clustering.k=2", "augment.visual_p=1"])
    assert (cfg.stage2.tau, cfg.stage2.e_k, cfg.clustering.k, cfg.augment.visual_p) == (0.0, 1, 2, 1.0)


def test_tau_out_of_range_refused_by_the_cli_dry_run(capsys):
    from cometa.cli import main

    assert main(["run", "--preset", "demo", "--set", "stage2.tau=1.5", "--dry-run"]) == 2
    assert "'stage2.tau' must be in [0, 1), got 1.5" in capsys.readouterr().err


def test_paper_preset_trains_stage1_with_the_augmentation_discriminator():
    assert load_config("paper").stage1.discriminator  # Sec. 4.4.1: "we add the discriminator training [6]"


def test_apply_overrides_to_a_resolved_config():
    from cometa.config import ConfigError, apply_overrides

    base = load_config("tiny")
    cfg = apply_overrides(base, ["stage2.tau=0.35", "clustering.k=30"])
    assert (cfg.stage2.tau, cfg.clustering.k) == (0.35, 30) and cfg.stage2.e_k == base.stage2.e_k
    assert apply_overrides(base, {"stage2.alpha": 0.05}).stage2.alpha == 0.05
    assert apply_overrides(base, []) == base
    with pytest.raises(ConfigError, match="stage2.taux"):
        apply_overrides(base, ["stage2.taux=0.3"])
