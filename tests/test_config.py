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
