"""What a training config may say: nested frozen dataclasses, one per section, parsed with ``edge.schema``.

One YAML file describes a whole run (data, features, windows, model,
augmentation, fitting, export, output, bundle).  Every setting's default,
unit and range is declared here; reading a file, the checks across sections
and resolving its paths are in training/recipe/load.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edge.features import FeatureParams
from edge.schema import setting

REPORT_FRACTION = 0.5
"""Default share of the calibrate groups held out as the report part (bench/events.py uses the same)."""


@dataclass(frozen=True, kw_only=True)
class ExtraSource:
    """Labelled recordings from elsewhere (other microphones and rooms) that only ever train: never validation or
    test clips, so no figure rests on them (``data.extra``; ../shared/data/labelled_other)."""

    manifest: str
    """CSV of the recordings, relative to the config file."""
    filename_column: str = "filename"
    """Column of file names, relative to the manifest's folder."""
    label_column: str = "label"
    """Column of labels: each one of the dataset's own (a typo is an error naming the nearest)."""


@dataclass(frozen=True, kw_only=True)
class BackgroundSource:
    """Audio in which none of the labels occurs: a folder of audio files or a CSV manifest."""

    path: str
    """A folder (searched recursively for audio) or a CSV manifest (``.csv``)."""
    filename_column: str = "filename"
    """Manifest column of file names, relative to the manifest's folder joined with ``audio_root``."""
    audio_root: str = "."
    """Folder the manifest's file names are relative to (itself relative to the manifest)."""
    split_column: str = "split"
    """Manifest column naming each file's part; absent from the CSV = every file goes to ``split``."""
    train_split: str = "train"
    """Split value (or, in a folder, top-level subfolder name) of the part used for training."""
    calibrate_split: str = "calibrate"
    """Split value (or subfolder name) of the part kept for thresholds and false-alarm figures, never trained on."""
    split: Literal["train", "calibrate"] = "train"
    """Part of a file that names neither split (a plain folder, a manifest without the column)."""
    group_column: str = "group"
    """Manifest column of a file's group (a speaker, a recording); absent = each file is its own group."""
    exclude: tuple[str, ...] = ()
    """Glob patterns (``fnmatch``, on the path relative to the folder or the manifest's ``audio_root``) of
    files left out of every part: recordings of a label's own sound are not background (ESC-50: a car
    engine is ``engine``, a vacuum cleaner ``vacuum_cleaner``), neither as negatives nor as false alarms."""
    exclude_from: str = ""
    """A list of files left out of every part, one path a line, relative to the list's folder (or absolute); a line
    starting with ``#`` is a comment.  ``auricle-train screen -o`` writes one: background that sounds like a label.
    A listed file of another source is not this source's concern, so every source can name the same list."""
    report_fraction: float = setting(REPORT_FRACTION, lo=0.0, hi=0.9, unit="of the calibrate part's groups")
    """Held out from threshold choice (part ``report``): the false alarms per hour the report gives are
    measured there, on audio the thresholds never saw. Groups are assigned by a stable hash of their name."""


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where the labelled audio is and how it is split."""

    manifest: str = ""
    """CSV manifest (ESC-50 style); empty means a folder-per-class tree under ``audio_root``."""
    audio_root: str = "audio"
    """Folder the manifest's file names are relative to (or the class folders' parent)."""
    filename_column: str = "filename"
    label_column: str = "category"
    fold_column: str = "fold"
    """Empty, or absent from the CSV, means no folds: stratified split instead."""
    group_column: str = ""
    """Clips sharing a value (ESC-50: ``src_file``, one source recording) stay on one side of a split."""
    min_clips_per_class: int = setting(2, lo=1, hi=1_000_000, unit="clips")
    train_folds: tuple[int, ...] = ()
    """Folds to train on; empty means every fold not in ``test_folds``."""
    test_folds: tuple[int, ...] = ()
    """Held-out folds, never used for training, thresholds, early stopping or calibration."""
    val_fraction: float = setting(0.15, lo=0.0, hi=0.5, unit="of the training clips, stratified")
    test_fraction: float = setting(0.2, lo=0.0, hi=0.5, unit="of all clips, stratified, when there are no folds")
    seed: int = setting(0, lo=0, hi=2**31 - 1, unit="split seed")
    cache_dir: str = "~/.cache/auricle/features"
    """Feature cache, keyed by the FeatureParams fingerprint and each file's sha256."""
    workers: int = setting(0, lo=0, hi=256, unit="processes for feature extraction, 0 = all cores")
    codec_fraction: float = setting(0.0, lo=0.0, hi=1.0, unit="of the training clips added again through Opus")
    """Copies of training clips coded as the background corpus is (Opus, about 13 kbps), so that the model
    cannot learn "coded means background" (training/data/data.py ``through_codec``)."""
    background: tuple[BackgroundSource, ...] = ()
    """Sources of background audio: negatives, mixing material, and (their calibrate part) thresholds."""
    extra: tuple[ExtraSource, ...] = ()
    """Labelled recordings from other sources added to the training clips only (each recording one clip)."""
    other_labels: tuple[str, ...] = ()
    """The dataset's own none-of-these classes (``casual``): trained as negatives, as background is, never an output
    and never an event.  Their clips keep their split: training clips join the backgrounds' ``train`` part,
    validation clips the ``calibrate`` part (thresholds), test clips the ``report`` part (held-out false alarms)."""


@dataclass(frozen=True, kw_only=True)
class WindowConfig:
    """The device's inference window, which is also the training crop."""

    window_frames: int = setting(96, lo=8, hi=4096, unit="frames per window")
    hop_frames: int = setting(10, lo=1, hi=4096, unit="frames between inferences on the device")
    channel_mode: Literal["replicate", "deltas"] = "replicate"


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """The ImageNet CNN and its new head."""

    arch: Literal["mobilenet", "mobilenet_v2", "mobilenet_v3_small", "yamnet"] = "mobilenet"
    """An ImageNet MobileNet, or ``yamnet``: YAMNet's AudioSet network with its 521-class head kept
    (training/fit/audioset_fit.py; ``weights`` is then a YAMNet TFLite file to start from)."""
    alpha: float = setting(0.25, lo=0.1, hi=1.4, unit="width multiplier")
    weights: str = "imagenet"
    """'imagenet' (Keras cache), 'none', or a path to the no-top .h5 file."""
    dropout: float = setting(0.3, lo=0.0, hi=0.9, unit="head dropout rate")
    upsample: int = setting(1, lo=1, hi=4, unit="in-model nearest-neighbour upsampling factor")
    output: Literal["softmax", "softmax_background", "sigmoid"] = "softmax"
    """'softmax' (closed set), 'softmax_background' (an extra '_background' class, never published), or
    'sigmoid' (one independent score per label, background windows have all-zero targets)."""


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Augmentation of cached dB frames; every switch has a safe default."""

    time_crop: bool = True
    """Random window positions (else windows at the device hop, in order)."""
    skip_silent_crops: bool = True
    """Re-draw crops that are entirely digital silence (all frames at the dB floor)."""
    active_within_db: float = setting(0.0, lo=0.0, hi=120.0, unit="dB below the clip's loudest frame")
    """With ``skip_silent_crops``, and > 0: a labelled crop must hold ``active_min_frames`` frames within this
    many dB of its clip's loudest frame (mean power over the bands), so that a window of a short sound's
    room tone is not taught as the sound.  0: any frame above the floor will do."""
    active_min_frames: int = setting(1, lo=1, hi=1024, unit="frames")
    time_shift_frames: int = setting(8, lo=0, hi=1024, unit="max circular shift, frames")
    gain_db: float = setting(6.0, lo=0.0, hi=60.0, unit="max +/- level change, dB")
    time_masks: int = setting(2, lo=0, hi=16, unit="SpecAugment time masks")
    time_mask_frames: int = setting(10, lo=1, hi=1024, unit="max frames per time mask")
    freq_masks: int = setting(2, lo=0, hi=16, unit="SpecAugment frequency masks")
    freq_mask_bands: int = setting(8, lo=1, hi=512, unit="max bands per frequency mask")
    mixup_alpha: float = setting(0.2, lo=0.0, hi=10.0, unit="Beta(a, a) mixup, 0 = off")
    noise_dir: str = ""
    """Folder of extra noise clips mixed in the power domain (as is the background's training part)."""
    noise_from_background: bool = True
    """Mix the training part of ``data.background`` under labelled windows."""
    noise_probability: float = setting(0.5, lo=0.0, hi=1.0, unit="chance per labelled window")
    noise_snr_db: tuple[float, ...] = (5.0, 20.0)
    """Range of the window's level above the noise, dB."""

    def described(self) -> str:
        """What is switched on, in the words of a report: "crops, gain, mixup, background", or "none"."""
        on = {
            "crops": self.time_crop,
            "time shift": self.time_shift_frames > 0,
            "gain": self.gain_db > 0,
            "SpecAugment": self.time_masks > 0 or self.freq_masks > 0,
            "mixup": self.mixup_alpha > 0,
            "noise": bool(self.noise_dir) and self.noise_probability > 0,
            "background": self.noise_from_background and self.noise_probability > 0,
        }
        return ", ".join(name for name, is_on in on.items() if is_on) or "none"


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Two-phase fine-tuning: head on a frozen base, then the top blocks."""

    head_epochs: int = setting(10, lo=0, hi=10_000, unit="epochs, base frozen")
    finetune_epochs: int = setting(60, lo=0, hi=10_000, unit="epochs, top blocks unfrozen")
    head_lr: float = setting(1e-3, lo=1e-7, hi=1.0, unit="Adam learning rate")
    finetune_lr: float = setting(3e-4, lo=1e-7, hi=1.0, unit="Adam peak learning rate, cosine decay")
    batch_size: int = setting(64, lo=1, hi=65536, unit="windows")
    crops_per_clip: int = setting(4, lo=1, hi=1000, unit="random windows per clip per epoch")
    unfreeze_blocks: int = setting(13, lo=0, hi=100, unit="top blocks trained in phase 2")
    bn_momentum: float = setting(0.9, lo=0.0, hi=0.9999, unit="BatchNorm moving-average momentum")
    frozen_bn_blocks: int = setting(0, lo=0, hi=100, unit="lowest blocks whose BatchNorm keeps ImageNet statistics")
    """In phase 2, BatchNorm of the stem and the lowest N blocks stays in inference mode.

    Statistics fine-tuned on spectrograms fit the float model, but in the narrow
    early depthwise layers they make folded weights that quantise badly; frozen
    ImageNet statistics keep post-training int8 close to float (docs/training.md)."""
    qat_epochs: int = setting(0, lo=0, hi=10_000, unit="epochs of quantisation-aware fine-tuning (MobileNet v1)")
    """Phase 3: train through simulated int8 (folded BatchNorm, per-channel weights) so that the
    exported int8 model keeps the float accuracy (training/model/qat.py, docs/training.md)."""
    qat_lr: float = setting(1e-4, lo=1e-8, hi=1.0, unit="AdamW peak learning rate of phase 3, cosine decay")
    background_fraction: float = setting(0.0, lo=0.0, hi=0.9, unit="of each batch: random background windows")
    distill_weight: float = setting(1.0, lo=0.0, hi=100.0, unit="x loss toward the teacher embedding")
    """Used when ``teacher.path`` is set: a Dense projection of the pooled features is pulled toward the
    teacher's standardised embedding (dropped at export)."""
    distill_loss: Literal["cosine", "mse"] = "cosine"
    """Embedding loss: 1 - cosine similarity, or mean squared error, on standardised embeddings."""
    distill_scores_weight: float = setting(0.0, lo=0.0, hi=100.0, unit="x BCE toward the teacher's 521 scores")
    cache_copies: int = setting(4, lo=1, hi=1000, unit="augmented passes cached through the frozen blocks (yamnet)")
    lwf_weight: float = setting(1.0, lo=0.0, hi=100.0, unit="x BCE of the AudioSet head toward the untouched network")
    """``model.arch: yamnet``: learning without forgetting, the 521 head kept near what YAMNet said."""
    label_smoothing: float = setting(0.1, lo=0.0, hi=0.5)
    compete_weight: float = setting(0.0, lo=0.0, hi=100.0, unit="x softmax cross-entropy over the sigmoid logits")
    """Sigmoid outputs: a window's labels also compete (training/fit/fit.py, ``competing_loss``); 0: independent."""
    weight_decay: float = setting(1e-4, lo=0.0, hi=1.0, unit="AdamW decoupled weight decay")
    patience: int = setting(15, lo=1, hi=10_000, unit="epochs without validation improvement")
    average_epochs: int = setting(0, lo=0, hi=10_000, unit="last fine-tuning epochs whose weights are averaged")
    """``model.arch: yamnet``: phase 2 runs every epoch and keeps the mean of the last N epochs' weights
    (stochastic weight averaging) instead of the epoch with the best validation clip accuracy; 0: the best."""
    soup_seeds: tuple[int, ...] = ()
    """``model.arch: yamnet``: a uniform weight soup.  Both phases run once per seed here (a fresh head
    each, the same cached windows of ``seed``), and the network keeps the mean of their phase-2 weights:
    one network of the same size and cost; empty: one training with ``seed``."""
    val_hop_frames: int = setting(24, lo=1, hi=4096, unit="hop for the clip-level validation score")
    seed: int = setting(1, lo=0, hi=2**31 - 1)
    distribute: Literal["none", "mirrored"] = "none"


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Post-training int8 quantisation."""

    calibration_windows: int = setting(400, lo=1, hi=100_000, unit="training windows")
    latency_runs: int = setting(300, lo=1, hi=100_000, unit="timed invocations")


@dataclass(frozen=True, kw_only=True)
class TeacherConfig:
    """Knowledge distillation from YAMNet (training side only: never in the bundle)."""

    path: str = ""
    """YAMNet int8 TFLite taking 96x64 log-mel patches (``yamnet_spectra_in.tflite``); empty = no distillation."""
    step_frames: int = setting(10, lo=1, hi=1000, unit="frames between cached teacher positions")


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    """Per-label thresholds from a false-alarm budget on the calibrate part of the background."""

    budget_per_hour: float = setting(1.0, lo=0.001, hi=1e6, unit="false events per hour, all labels together")
    mixture_minutes: float = setting(
        30.0, lo=0.0, hi=6000.0, unit="min of mixtures per part (training/calibrate/mixtures.py)"
    )
    """Added to the calibrate part for thresholds, and to the report part for the held-out figures."""
    min_calibrate_hours: float = setting(0.0, lo=0.0, hi=100.0, unit="h of calibrate audio, plain and mixtures")
    """More mixtures in the calibrate part (never the report part) until it is this long.  No false event in
    T hours bounds the rate below 3/T per hour (Poisson, 95%): ``3 / budget_per_hour`` hours are what it takes
    for thresholds with no false event there to show the budget is met.  0: ``mixture_minutes`` only."""
    min_threshold: float = setting(0.05, lo=0.05, hi=0.99, unit="score: the lowest threshold calibration may choose")
    """A floor under every chosen threshold.  Calibration takes the lowest threshold with no false event on the
    calibrate part, and an hour or two of audio cannot show what a day brings: a label whose false events all
    stay below its threshold there may sit at 0.05 and fire on the first unusual sound after.  Measured for
    esc50 4.0.0 on an hour in a home built from the calibrate part (models/MODEL_CARD.md): 0.4."""
    noisy_copies: int = setting(0, lo=0, hi=100, unit="copies of each validation clip in calibrate audio")
    """Each validation clip also played inside calibrate background at ``noisy_snr_db``, with some of it before
    and after (training/calibrate/noisy.py): a positive for its label, and any other label's event on it false,
    so that thresholds answer for wrong labels on real sounds in a room, not only on clean clips.  0: clean only."""
    noisy_snr_db: tuple[float, float] = (0.0, 20.0)
    """Range of a copy's active level over the background under it, dB (bench/home_hour.py's range)."""


@dataclass(frozen=True, kw_only=True)
class VetoConfig:
    """The open-set rule the bundle carries (edge/model/audioset.py): AudioSet classes that silence our labels."""

    classes: tuple[int, ...] = ()
    """AudioSet class indices (0 Speech, 132 Music, ...); empty: no veto."""
    threshold: float = setting(0.8, lo=0.0, hi=1.0, unit="highest veto-class score that silences a hop")
    exempt: tuple[str, ...] = ()
    """Labels never vetoed: human sounds YAMNet may call speech-like (coughing, laughing, ...)."""


@dataclass(frozen=True, kw_only=True)
class ConfirmConfig:
    """The second opinion the bundle carries (edge/model/audioset.py): a label counts where its classes agree."""

    mapping: str = ""
    """CSV ``label,audioset_classes`` (``esc50_label`` is read too; YAMNet display names, ``;``-separated;
    configs/esc50_audioset.csv), relative to the config file; empty: no confirmation.  A label in it that is
    not the dataset's but is close to one is an error (a typo); the dataset's labels it leaves out are logged."""
    threshold: float = setting(0.05, lo=0.0, hi=1.0, unit="score of a label's AudioSet classes that confirms it")
    slope: float = setting(0.0, lo=0.0, hi=100.0, unit="0: a hard gate at threshold; else the soft confirmation")
    """Above 0, a label's score is weighed by ``sigmoid(slope * (logit(e) - logit(threshold)))`` (``e`` the best of
    its classes' scores) instead of zeroed below the threshold: half the score at the threshold."""
    keep_at: float = setting(1.0, lo=0.0, hi=1.0, unit="label head score kept whatever AudioSet says")
    min_confirmed: float = setting(0.0, lo=0.0, hi=1.0, unit="share of a label's own validation hops confirmed")
    """Learned per label on your own data: a label whose sounding validation hops reach ``threshold`` on its
    AudioSet classes less often than this is left unconfirmed (its own score counts, calibrated on equal terms
    with the rest): its classes do not hear it.  0: every mapped label is confirmed."""
    unconfirmed: tuple[str, ...] = ()
    """Mapped labels left unconfirmed anyway (the evaluate stage adds those ``min_confirmed`` drops)."""
    fit_thresholds: tuple[float, ...] = ()
    """Non-empty: ``threshold`` and ``slope`` are fitted in the evaluate stage, not stated: for each pair of these
    and ``fit_slopes``, thresholds for the false-alarm budget on the background kept from the network
    (``audioset.evidence.unseen_fraction``), and the pair with the most validation event recall there wins (the
    user's measure: events heard at a false-alarm rate, not a likelihood on hops)."""
    fit_slopes: tuple[float, ...] = ()
    """Slopes tried with ``fit_thresholds`` (empty: ``slope`` alone)."""
    class_map: str = ""
    """YAMNet's class map (``index,mid,display_name``) that turns the mapping's names into indices, relative to
    the config file; empty: ``yamnet_class_map.csv`` beside ``model.weights`` (the YAMNet file)."""


@dataclass(frozen=True, kw_only=True)
class EvidenceConfig:
    """The AudioSet head as evidence, not a gate (edge/model/audioset.py): per label, a logistic combination of
    its score and its classes' best score (``confirm.mapping`` names them), fitted on the validation clips and the
    backgrounds' ``train`` part (training/calibrate/evidence.py).  It replaces the confirmation in the bundle."""

    enabled: bool = False
    keep_at: float = setting(0.9, lo=0.0, hi=1.0, unit="label head score kept whatever AudioSet says")
    l2: float = setting(1.0, lo=0.0, hi=1e6, unit="L2 penalty of each label's fit")
    background_minutes: float = setting(20.0, lo=0.0, hi=600.0, unit="min of the backgrounds' train part")
    unseen_fraction: float = setting(0.0, lo=0.0, hi=0.9, unit="share of the background train groups")
    """0: the fit's background is the train part the network learned (on it the network is already quiet, and
    the fit finds no use for AudioSet).  Above 0: this share of the train groups (a stable hash) is kept from
    the network and the fit reads only it: background as the device meets it, never seen in training."""


@dataclass(frozen=True, kw_only=True)
class OptionalLabelConfig:
    """A label scored by the AudioSet head where ESC-50 has none (smoke alarm, doorbell, ...)."""

    name: str
    classes: tuple[int, ...]
    """AudioSet class indices; the label's score is the highest of theirs."""
    threshold: float = setting(0.8, lo=0.0, hi=1.0, unit="score; 0.8 where no audio calibrates it")
    enabled_by_default: bool = False


@dataclass(frozen=True, kw_only=True)
class AudiosetConfig:
    """``model.arch: yamnet``: what the bundle does with the kept AudioSet head on the device."""

    veto: VetoConfig = field(default_factory=VetoConfig)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    labels: tuple[OptionalLabelConfig, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BundleConfig:
    """The shipped bundle."""

    name: str = "model"
    version: str = "0.1.0"
    signing_key: str = ""
    """ed25519 private key (PEM) to sign with; empty = unsigned."""
    path: str = ""
    """Where to write the bundle; empty = ``<output>/<name>.auricle``."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A whole training run."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureParams = field(default_factory=FeatureParams)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: NetworkConfig = field(default_factory=NetworkConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    output: str = "runs/model"
    bundle: BundleConfig = field(default_factory=BundleConfig)
    audioset: AudiosetConfig = field(default_factory=AudiosetConfig)
