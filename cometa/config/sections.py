"""The sections of the study's configuration: one typed dataclass per part of the study, plain data.

Each section is re-exported by the module it configures (``Stage2Config`` by
:mod:`cometa.train.stage2`, ``FeatureConfig`` by :mod:`cometa.models.features` ...), so it reads as
living beside its code; it is defined here so that loading a config (:mod:`cometa.config`), and
reading one in the dashboard, imports no torch. Ranges are declared with
:func:`~cometa.config.bounds.bounded` and checked when a config loads.

| section           | dataclass                      | configures                                              |
|-------------------|--------------------------------|---------------------------------------------------------|
| corpus            | CorpusConfig                   | :mod:`cometa.data.corpus`                               |
| corpus.synthetic  | SyntheticConfig                | :mod:`cometa.data.synthetic`                            |
| features          | FeatureConfig                  | :mod:`cometa.models.features`                           |
| audio_encoder     | EcapaConfig                    | :mod:`cometa.models.encoders.ecapa`                     |
| visual_encoder    | ResNetConfig                   | :mod:`cometa.models.encoders.resnet`                    |
| augment           | AugmentConfig                  | :mod:`cometa.models.augment`                            |
| clustering        | ClusteringConfig               | :mod:`cometa.core.pseudo_labels`                        |
| projection        | ProjectionConfig               | :mod:`cometa.core.projections`                          |
| eval              | EvalConfig                     | :mod:`cometa.evaluation.evaluate`                       |
| evaluation        | EvaluationConfig               | :mod:`cometa.pipeline.analysis` (AS-norm, label issues) |
| stage2.lgl        | LGLConfig                      | :mod:`cometa.core.strategies.lgl`                       |
| stage2.dlg_lc     | DLGLCConfig                    | :mod:`cometa.core.strategies.dlg_lc`                    |
| stage1, stage2    | Stage1Config, Stage2Config     | :mod:`cometa.train.stage1`, :mod:`cometa.train.stage2`  |
| *.lr_schedule     | LRScheduleConfig               | :mod:`cometa.core.schedules`                            |
| *_encoder.adapters| AdapterConfig                  | :mod:`cometa.models.adapters`                           |
| stage2.distill    | DistillConfig                  | :mod:`cometa.train.stage2` (``distillation``)           |
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cometa.config.bounds import bounded

__all__ = ["SyntheticConfig", "CorpusConfig", "FeatureConfig", "AugmentConfig", "EcapaConfig", "ResNetConfig",
           "ClusteringConfig", "LRScheduleConfig", "ProjectionConfig", "EvalConfig", "Stage1Config", "Stage2Config",
           "LGLConfig", "DLGLCConfig", "AsNormConfig", "LabelIssueConfig", "EvaluationConfig", "STRATEGY_OPTIONS",
           "PAPER_STRATEGIES", "AdapterConfig", "DistillConfig", "MISSING_FACES_POLICIES", "LR_KINDS", "LR_SCOPES",
           "NOISE_UNITS", "NOISE_TARGETS", "OPTIMIZER_SCOPES", "STRATEGY_NAMES", "POOLINGS", "STAGE2_TRAIN",
           "DISTILL_TEACHERS", "split_shape", "check_stage2_options"]

MISSING_FACES_POLICIES = ("exclude", "audio_only", "error")
# the Stage II strategies (their classes: the registry of cometa.core.strategies, which needs torch)
STRATEGY_NAMES = ("baseline", "coteaching_plus", "cometa", "lgl", "dlg_lc")
PAPER_STRATEGIES = ("baseline", "coteaching_plus", "cometa")  # the study's three (the default; `make demo`)
# strategies with their own options under stage2.<name>: only that strategy's rounds read (and hash) them
STRATEGY_OPTIONS = ("lgl", "dlg_lc")
LR_KINDS = ("constant", "cosine", "exponential")
NOISE_UNITS = ("utterance", "video")  # clustering.truth_noise_unit: what moves as one
NOISE_TARGETS = ("uniform", "audio_nearest")  # clustering.truth_noise_target: which units move, and where
# the audio encoder's pooling (its classes: the registry of cometa.models.encoders.pooling)
POOLINGS = ("asp", "query_attention")
LR_SCOPES = ("round", "stage")  # what Stage II's learning-rate schedule spans (Stage2Config.lr_scope)
OPTIMIZER_SCOPES = ("round", "stage")  # how long Stage II's Adam moments live (Stage2Config.optimizer_scope)
STAGE2_TRAIN = ("full", "adapters")  # what Stage II trains (cometa.models.adapters)
DISTILL_TEACHERS = ("none", "stage1", "peer")  # the frozen teacher of stage2.distill (cometa.train.stage2.distillation)


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class SyntheticConfig:
    """Sizes and difficulty knobs of the generated corpus."""

    seed: int = bounded(0, ge=0)
    n_train_speakers: int = bounded(200, ge=1)
    n_test_speakers: int = bounded(40, ge=2)
    videos_per_speaker: int = bounded(3, ge=1)
    utterances_per_video: int = bounded(3, ge=1)
    test_videos_per_speaker: int = bounded(0, ge=0)  # the test split's, when it differs (0 = as train)
    test_utterances_per_video: int = bounded(0, ge=0)  # ... (0 = as train)
    min_seconds: float = bounded(2.0, ge=0.5)
    max_seconds: float = bounded(6.0, ge=0.5)
    image_size: int = bounded(64, ge=8)  # face frames are square, this many pixels
    voice_twin_fraction: float = bounded(0.15, ge=0, le=1)  # fraction of identities with a near-identical-voice twin
    face_twin_fraction: float = bounded(0.15, ge=0, le=1)  # ... a near-identical-face twin
    snr_db_min: float = 5.0  # session noise level range
    snr_db_max: float = 30.0
    face_noise: float = bounded(0.05, ge=0)  # pixel noise std (0..1 scale)
    n_trials_o: int = bounded(2000, ge=2)
    n_trials_e: int = bounded(6000, ge=2)
    n_trials_h: int = bounded(2000, ge=2)
    # scales per-session audio nuisance: EQ depth, band limits, reverb, voice drift
    channel_spread: float = bounded(1.0, ge=0)
    scene_spread: float = bounded(1.0, ge=0)  # scales per-session face nuisance: pose, lighting, background contrast

    def validate(self) -> None:
        """Raise ValueError naming every field whose value the generator cannot use."""
        checks = {
            "n_train_speakers": self.n_train_speakers >= 1, "n_test_speakers": self.n_test_speakers >= 2,
            "videos_per_speaker": self.videos_per_speaker >= 1,
            "utterances_per_video": self.utterances_per_video >= 1,
            "min_seconds": 0.5 <= self.min_seconds <= self.max_seconds,
            "image_size": self.image_size >= 8, "snr_db_min": self.snr_db_min <= self.snr_db_max,
            "voice_twin_fraction": 0.0 <= self.voice_twin_fraction <= 1.0,
            "face_twin_fraction": 0.0 <= self.face_twin_fraction <= 1.0,
            "n_trials_o": min(self.n_trials_o, self.n_trials_e, self.n_trials_h) >= 2,
        }
        if split_shape(self, "test")[0] * split_shape(self, "test")[1] < 2:
            checks["utterances_per_video"] = False  # a target trial needs two utterances of one speaker
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid SyntheticConfig field(s) {bad}: {self}")


def split_shape(cfg: SyntheticConfig, split: str) -> tuple[int, int]:
    """(videos per speaker, utterances per video) of ``split`` of the generated corpus."""
    if split == "test":
        return (cfg.test_videos_per_speaker or cfg.videos_per_speaker,
                cfg.test_utterances_per_video or cfg.utterances_per_video)
    return cfg.videos_per_speaker, cfg.utterances_per_video


@dataclass
class CorpusConfig:
    kind: str = bounded("voxceleb", choices=("synthetic", "voxceleb"))
    root: str = ""  # data root; for synthetic "" = cache dir keyed by the generator config
    missing_faces: str = bounded("exclude", choices=MISSING_FACES_POLICIES)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


# ---------------------------------------------------------------------------------------------
# models


@dataclass
class FeatureConfig:
    """Log-mel front end and crop lengths."""

    sample_rate: int = bounded(16000, gt=0)
    n_mels: int = bounded(80, ge=1)
    win_ms: float = bounded(25.0, gt=0)
    hop_ms: float = bounded(10.0, gt=0)
    n_fft: int = bounded(512, ge=16)
    crop_seconds: float = bounded(1.8, gt=0)  # random training crop (paper: 1.8 s)
    # 0 = whole utterance for embeddings; > 0 = mean of fixed crops of this length
    eval_seconds: float = bounded(0.0, ge=0)


@dataclass
class AugmentConfig:
    """Audio: noise / music / babble at an SNR drawn from each category's range, reverberation.
    Visual: with probability ``visual_p``, random crop, flip, colour distortion, greyscale, blur."""

    musan_dir: str = ""  # MUSAN root (noise/ music/ speech/); "" = the project's generated bank
    rir_dir: str = ""  # RIRS_NOISES root; "" = generated impulse responses
    p_noise: float = bounded(0.6, ge=0, le=1)
    p_reverb: float = bounded(0.3, ge=0, le=1)
    snr_noise: tuple[float, float] = (0.0, 15.0)
    snr_music: tuple[float, float] = (5.0, 15.0)
    snr_babble: tuple[float, float] = (13.0, 20.0)
    visual_p: float = bounded(0.6, ge=0, le=1)
    crop_scale: tuple[float, float] = (0.7, 1.0)
    stage2_audio: bool = True  # augment audio crops in Stage II too
    stage2_visual: bool = True


@dataclass
class AdapterConfig:
    """Hourglass adapters (cross-lingual transfer paper, Sec. 2; Pfeiffer et al.'s MAD-X): a 1x1
    down-projection to ``bottleneck`` x the width, ReLU, a 1x1 up-projection (zero at insertion, so an
    inserted adapter is the identity) and a residual, after each block of the encoder. Inserted for
    Stage II only; ``stage2.train: adapters`` then trains them alone."""

    enabled: bool = False
    bottleneck: float = bounded(0.25, gt=0, le=1)  # hidden width / block width (the paper's best: 1/4)


@dataclass
class EcapaConfig:
    """ECAPA-TDNN; ``channels`` is C (512 in the paper), ``embed_dim`` the speaker embedding (192)."""

    name: str = "ecapa_tdnn"
    channels: int = bounded(512, ge=1)
    embed_dim: int = bounded(192, ge=1)
    scale: int = bounded(8, ge=1)  # Res2Net scale
    se_bottleneck: int = bounded(128, ge=1)
    attention_channels: int = bounded(128, ge=1)
    # asp: attentive statistics pooling (ECAPA's own) | query_attention: one learnable query (SAMU-XLS-R)
    pooling: str = bounded("asp", choices=POOLINGS)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)  # after each SE-Res2 block (Stage II)


@dataclass
class ResNetConfig:
    """ResNet face encoder. ``depth`` 34 at 224 px in the paper; smaller nets/inputs for tiny/demo."""

    name: str = "resnet"
    depth: int = bounded(34, choices=(10, 18, 34))  # 10 = one BasicBlock per stage, for tiny/demo
    base_width: int = bounded(64, ge=1)  # channels of the first stage (64 in torchvision)
    image_size: int = bounded(224, ge=8)
    embed_dim: int = bounded(192, ge=1)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)  # after each ResNet stage


# ---------------------------------------------------------------------------------------------
# noisy-label core


@dataclass
class ClusteringConfig:
    # kmeans | agglomerative | truth. "truth" is a controlled experiment, not a method of the paper: it
    # reads the ground truth. Every utterance gets its true identity, then a fraction ``truth_noise``
    # is moved to another identity (uniformly drawn), one utterance at a time ("utterance") or one
    # whole video at a time ("video": the noise k-means makes, see README "Labels of known noise").
    # ``truth_noise_target`` says which units move and where: "uniform" (random units, each to a random
    # other identity) or "audio_nearest" (the units Stage I's audio encoder confuses most, each to the
    # identity it sounds most like: the kind of error k-means makes, at a known rate, the rest true).
    # The same labels every round; k, niter, nredo, init, backend and vote_policy are then unused.
    method: str = bounded("kmeans", choices=("kmeans", "agglomerative", "truth"))
    k: int = bounded(6000, ge=2)
    niter: int = bounded(20, ge=1)
    nredo: int = bounded(1, ge=1)  # k-means restarts (the run with the lowest objective is kept)
    # kmeans++ | random (faiss's default: k random points)
    init: str = bounded("kmeans++", choices=("kmeans++", "random"))
    # Lloyd backend: auto (faiss, or numpy's BLAS where faiss's OpenBLAS is generic on this CPU; a GPU
    # when visible) | faiss | numpy | sklearn | torch  (cometa.core.blas.choose_kmeans_backend)
    backend: str = bounded("auto", choices=("auto", "faiss", "numpy", "sklearn", "torch"))
    # reference | drop  (where audio, visual, joint all differ)
    vote_policy: str = bounded("reference", choices=("reference", "drop"))
    truth_noise: float = bounded(0.0, ge=0, lt=1)  # method truth: the fraction of utterances given a wrong label
    truth_noise_unit: str = bounded("utterance", choices=NOISE_UNITS)  # method truth: what moves as one
    truth_noise_target: str = bounded("uniform", choices=NOISE_TARGETS)  # method truth: which units, where to


@dataclass
class LRScheduleConfig:
    """Learning-rate schedule: ``warmup_epochs`` of linear warm-up, then ``kind`` decay to
    ``final_ratio`` × the initial rate at the last step."""

    kind: str = bounded("cosine", choices=LR_KINDS)  # constant | cosine | exponential
    warmup_epochs: float = bounded(1.0, ge=0)  # may be fractional; 0 = no warm-up
    final_ratio: float = bounded(0.05, gt=0, le=1)  # lr at the last step / initial lr (ignored by "constant")


@dataclass
class ProjectionConfig:
    enabled: bool = True
    max_points: int = bounded(50000, ge=1)  # subsample cap per round (stated in the dashboard)
    n_neighbors: int = bounded(15, ge=2)
    min_dist: float = bounded(0.1, ge=0)
    n_epochs: int = bounded(0, ge=0)  # UMAP optimisation epochs (0 = umap's default: 500 below 10k points, else 200)


@dataclass
class ReportConfig:
    # the figures as SVG/PDF/PNG besides report.html (kaleido starts a Chromium, ~20 s); false: the tables,
    # tables.json and report.html with its interactive figures only (no browser needed)
    static: bool = True


# ---------------------------------------------------------------------------------------------
# evaluation and training


@dataclass
class EvalConfig:
    """Trial lists (VoxCeleb1 file names) keyed by their short name, and minDCF operating points."""

    trial_lists: dict = field(
        default_factory=lambda: {"O": "veri_test2.txt", "E": "list_test_all2.txt", "H": "list_test_hard2.txt"}
    )
    p_targets: list[float] = field(default_factory=lambda: [0.01, 0.05])
    batch_size: int = bounded(64, ge=1)


@dataclass
class Stage1Config:
    epochs: int = bounded(50, ge=1)
    batch_size: int = bounded(128, ge=2)  # N utterances per mini-batch (2N views)
    lr: float = bounded(1e-3, gt=0)  # Adam, initial rate (paper Sec. 4.4.1)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)  # warm-up + decay, per step
    # of the contrastive loss; the paper sets none ("we do not set the temperature")
    temperature: float = bounded(1.0, gt=0)
    discriminator: bool = False  # augmentation adversarial term of Huh et al. (ref. [6])
    discriminator_weight: float = bounded(1.0, ge=0)


@dataclass
class DistillConfig:
    """Frozen-teacher cosine distillation (SAMU-XLS-R's semantic distillation): ``weight`` x the mean
    over the mini-batch of 1 - cos(student embedding, teacher embedding of the same utterance) joins
    the loss each model's update differentiates. ``stage1``: the Stage I audio encoder teaches the
    audio model; ``peer``: each model is taught by the other modality's encoder as it was at the start
    of the round, through a learned linear map (cross-modal); in round 1 the visual model only (the face
    network has had no training yet)."""

    teacher: str = bounded("none", choices=DISTILL_TEACHERS)
    weight: float = bounded(1.0, ge=0)


@dataclass
class LGLConfig:
    """Loss-gated learning (Tao et al., ICASSP 2022): each model trains on the samples of its
    mini-batch whose AAM-softmax loss is at most the fixed ``gate``; Tao et al. train without a gate
    until the loss settles, then with it (here: the first ``warmup_epochs`` of every round)."""

    gate: float = bounded(1.0, gt=0)  # loss threshold (the paper's gate; its code raises it per iteration)
    warmup_epochs: int = bounded(1, ge=0)  # ungated epochs at the start of each round


@dataclass
class DLGLCConfig:
    """Dynamic loss-gate and label correction (Han, Chen & Qian, Interspeech 2022): the gate is where
    a 2-component GMM of the previous epoch's per-sample losses gives the low-loss component posterior
    ``gmm_posterior``; a sample above the gate trains on the model's own prediction when its softmax
    probability exceeds ``lc_threshold`` (label correction), else sits the step out."""

    gmm_posterior: float = bounded(0.5, gt=0, lt=1)  # gate: P(clean | loss) = this value
    lc_threshold: float = bounded(0.5, gt=0, lt=1)  # minimum predicted probability to correct a label
    correct_labels: bool = True  # False: DLG alone


@dataclass
class AsNormConfig:
    """Adaptive symmetric score normalisation: cohort = training-set embeddings (subsampled)."""

    enabled: bool = True
    top_n: int = bounded(300, ge=1)  # the top-n cohort scores of each side
    cohort_size: int = bounded(20000, ge=2)  # training utterances sampled into the cohort


@dataclass
class LabelIssueConfig:
    """Out-of-sample label-quality scores (self-confidence, normalised margin) of each round's pseudo
    labels, from a k-fold logistic regression (``exact``) or leave-one-out class centroids (``centroid``)
    on the round's frozen embeddings (cleanlab's equations)."""

    enabled: bool = True
    # exact: the k-fold logistic regression, a dense (N, K) P̂ (52 GB and days per round at N = 1.09 M,
    # K = 6000); centroid: a softmax over leave-one-out class centroids, top-k sparse (paper scale: ≤ 3 min
    # per view on 2 cores, bench/paper_scale.json); cometa.core.label_issues
    method: str = bounded("exact", choices=("exact", "centroid"))
    n_folds: int = bounded(5, ge=2)  # exact only
    max_iter: int = bounded(200, ge=10)  # logistic regression iterations (exact only)
    temperature: float = bounded(0.05, gt=0, le=1)  # centroid only: the softmax's T, in cosine units
    top_k: int = bounded(8, ge=1)  # centroid only: probabilities kept a row besides the own label's


@dataclass
class EvaluationConfig:
    """Analyses after training (the ``analysis`` step): AS-norm scoring and label-issue scores."""

    as_norm: AsNormConfig = field(default_factory=AsNormConfig)
    label_issues: LabelIssueConfig = field(default_factory=LabelIssueConfig)


@dataclass
class Stage2Config:
    """Algorithm 1's inputs: tau, E_k, alpha, beta; relabelling every ``epochs_per_round`` epochs."""

    strategies: list[str] = field(default_factory=lambda: ["baseline", "coteaching_plus", "cometa"])
    rounds: int = bounded(20, ge=1)  # relabellings; E_max = rounds * epochs_per_round (paper: 200)
    epochs_per_round: int = bounded(10, ge=1)  # Algorithm 1 line 14: relabel when e mod 10 = 0
    batch_size: int = bounded(128, ge=2)
    tau: float = bounded(0.2, ge=0, lt=1)  # estimated noise rate
    e_k: int = bounded(10, ge=1)  # epochs over which lambda(e) ramps from 1 to 1 - tau
    alpha: float = bounded(0.01, gt=0)  # inner (support) step size, lines 5-6
    beta: float = bounded(0.001, gt=0)  # outer step size (Adam), lines 10-11; also the baseline's Adam lr
    second_order: bool = True  # differentiate through the inner step (False = first-order MAML)
    margin: float = bounded(0.2, ge=0, lt=1.5707963)  # AAM-softmax, radians
    scale: float = bounded(32.0, gt=0)
    # schedule of the outer (Adam, β) rate
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    # round: the schedule spans one round and restarts with every relabelling, as the heads and Adam
    # do | stage: one schedule over all rounds · epochs_per_round epochs (one warm-up, one decay, as
    # wespeaker schedules a whole training); each round trains on its slice of it
    lr_scope: str = bounded("round", choices=LR_SCOPES)
    # round: each round's Adam starts empty, as its heads do | stage: from round 2 on, the encoders'
    # (and distillation maps') Adam moments and step counts continue from the previous round's end;
    # the heads' start empty, their rows being the new round's clusters
    optimizer_scope: str = bounded("round", choices=OPTIMIZER_SCOPES)
    # full: every parameter trains | adapters: only the adapters and the AAM heads (the audio encoder
    # stays Stage I's; the visual one trains fully in round 1 and is frozen from round 2 on)
    train: str = bounded("full", choices=STAGE2_TRAIN)
    distill: DistillConfig = field(default_factory=DistillConfig)
    lgl: LGLConfig = field(default_factory=LGLConfig)  # options of the `lgl` strategy
    dlg_lc: DLGLCConfig = field(default_factory=DLGLCConfig)  # options of the `dlg_lc` strategy

    def validate(self) -> None:
        """Raise ValueError when ``strategies`` names an unknown strategy, repeats one or is empty."""
        unknown = [s for s in self.strategies if s not in STRATEGY_NAMES]
        if unknown:
            raise ValueError(f"strategies: unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGY_NAMES)}")
        if not self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies: name each strategy once, at least one; got {self.strategies}")


def check_stage2_options(cfg) -> None:
    """Refuse option combinations no single section can check (called when a run is planned):
    ``stage2.train: adapters`` needs adapters in both encoders."""
    if cfg.stage2.train == "adapters":
        off = [f"{m}.adapters.enabled" for m in ("audio_encoder", "visual_encoder")
               if not getattr(cfg, m).adapters.enabled]
        if off:
            verb = "are" if len(off) > 1 else "is"
            raise ValueError(f"'stage2.train' is 'adapters' but {' and '.join(off)} {verb} false: "
                             f"set {', '.join(k + '=true' for k in off)}")
