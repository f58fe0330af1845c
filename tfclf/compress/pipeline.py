"""From a finished run to verified ``.tflite`` candidates, a summary and a byte-budget pick.

``compress_run(run_dir, options)``: the run's best (raw-pixel) model is exported in every
TFLite mode; each method asked for (a pruning sweep, network slimming, clustering, QAT and
the QAT that keeps a pruned or clustered model's structure; with ``chain``, pruning or
clustering of each slimmed network) fine-tunes the trained network through the training
loop (``tfclf.training.train`` with a phase, in ``RUN/compress/finetune/NAME``, so a
killed rerun resumes; a fine-tune of another model or with other options is started over)
and is exported too, pruned weights sparse-encoded when that makes
the file smaller. Every file is verified with LiteRT on the run's validation split (and
its test split when the source has one). Reports 000 and 003 ask for exactly this table:
non-zero parameters, gzip size and accuracy per method.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
from absl import logging

from tfclf.config import ScheduleConfig, Stage, TrainConfig
from tfclf.data.pipeline import array_batches, resize_images
from tfclf.data.sources import GRAY_WEIGHTS, to_channels
from tfclf.errors import UsageError
from tfclf.export import litert, tflite
from tfclf.export.deploy import (
    PROBABILITIES,
    deployable,
    model_card,
    rgb_input,
    trained_part,
    with_probabilities,
    write_labels,
)
from tfclf.export.load import load_keras_model
from tfclf.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from tfclf.keras import keras
from tfclf.models.summary import model_stats
from tfclf.rundir import CARD_FILE, LABELS_FILE, RunDir

SPARSE_MAX_NONZERO = 0.9  # try sparse encoding when at most this fraction of weights is non-zero
DENSE_BELOW = 0.05  # a layer with fewer zeros than this counts as not pruned in the summary


RGB_NOTE = "gray = {} R + {} G + {} B inside (ITU-R 601-2 luma)".format(*GRAY_WEIGHTS)


class CompressError(UsageError):
    """A bad compression request (the message names the flag or file)."""


@dataclasses.dataclass(frozen=True)
class CompressOptions:
    modes: tuple[str, ...] = tflite.MODES
    method_modes: tuple[str, ...] = ("int8",)
    io_dtype: str = "uint8"
    per_channel: bool = True  # int8 weight scales per output channel (False: per tensor)
    keep_names: bool = False  # keep the names of inner tensors in the files
    sparse: bool = True  # sparse-encode pruned weights when that makes a file smaller
    num_calibration: int = 200
    prune: tuple[float, ...] = ()
    prune_schedule: str = "polynomial"
    prune_ends: bool = False  # prune the stem and the classifier too
    prune_exclude: tuple[str, ...] = ()  # shell patterns of layer names kept dense
    cluster: tuple[int, ...] = ()
    slim: tuple[float, ...] = ()  # network-slimming channel ratios
    qat: bool = False
    chain: bool = False  # also prune / cluster each slimmed network
    finetune_epochs: int = 2
    finetune_lr: float | None = None  # default: the run's peak LR / 10
    max_tflite_kb: float | None = None
    latency_runs: int = 50
    out: str | None = None  # default RUN/compress
    rgb_input: bool = False  # files of a grayscale model take RGB (converted inside)
    probabilities: bool = False  # files end in a softmax: class probabilities out

    @property
    def output(self) -> str:
        """What the files return: ``deploy.OUTPUT_NOTES``' key."""
        return PROBABILITIES if self.probabilities else "logits"

    def validate(self) -> None:
        for s in self.prune:
            if not 0 < s < 1:
                raise CompressError(f"--prune: a sparsity must be in (0, 1), got {s}")
        for r in self.slim:
            if not 0 < r < 1:
                raise CompressError(f"--slim: a channel ratio must be in (0, 1), got {r}")
        for k in self.cluster:
            if k < 2:
                raise CompressError(f"--cluster: clusters must be >= 2, got {k}")
        for m in (*self.modes, *self.method_modes):
            if m not in tflite.MODES:
                raise CompressError(f"--modes: {m!r} is not one of {', '.join(tflite.MODES)}")
        if self.prune_exclude and not self.prune:
            raise CompressError("--prune_exclude names layers to keep dense: give --prune too")
        if self.chain and not (self.slim and (self.prune or self.cluster)):
            raise CompressError(
                "--chain prunes or clusters each slimmed network: give --slim and --prune "
                "or --cluster"
            )
        for name in ("finetune_epochs", "num_calibration", "latency_runs"):
            if getattr(self, name) < 1:
                raise CompressError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_lr is not None and self.finetune_lr <= 0:
            raise CompressError(f"--finetune_lr must be positive, got {self.finetune_lr}")
        if self.max_tflite_kb is not None and self.max_tflite_kb <= 0:
            raise CompressError(f"--max_tflite_kb must be positive, got {self.max_tflite_kb}")


@dataclasses.dataclass
class Candidate:
    name: str  # file stem, e.g. "prune50_int8"
    method: str  # "trained", "prune 0.5", "cluster 16", "qat", ...
    mode: str
    file: str
    size_bytes: int
    gzip_bytes: int
    accuracy: float
    agreement: float | None
    latency_ms: float
    keras_accuracy: float  # the method's float Keras model
    params: int
    nonzero_params: int
    splits: dict
    io: dict
    extra: dict = dataclasses.field(default_factory=dict)
    macs: int = 0  # multiply-accumulates per image of the Keras model
    xnnpack: bool = True  # runs in LiteRT's default XNNPACK delegate
    sparse_weights: int = 0  # weight tensors stored in TFLite's sparse format


def _methods(opts: CompressOptions, chained: bool = False) -> list[tuple[str, str, object]]:
    """(name, label, phase factory taking the trained network) per requested method; with
    ``chained``, the ones that ``--chain`` applies to a slimmed network."""
    from tfclf.compress import methods as m
    from tfclf.compress.slim import SlimPhase

    out = []
    for s in opts.prune:
        out.append(
            (
                f"prune{round(s * 100):02d}",
                f"prune {s:g}",
                lambda net, s=s: m.PrunePhase(
                    net,
                    s,
                    schedule=opts.prune_schedule,
                    keep_ends_dense=not opts.prune_ends,
                    exclude=opts.prune_exclude,
                ),
            )
        )
    for r in () if chained else opts.slim:
        out.append((f"slim{round(r * 100):02d}", f"slim {r:g}", lambda net, r=r: SlimPhase(net, r)))
    for k in opts.cluster:
        out.append((f"cluster{k}", f"cluster {k}", lambda net, k=k: m.ClusterPhase(net, k)))
    if opts.qat and not chained:
        out.append(("qat", "qat", lambda net: m.QATPhase(net)))
    return out


def finetune_config(cfg: TrainConfig, run_dir: Path, size: int, opts: CompressOptions):
    """The run's config, fine-tuning at the deployed resolution for a few epochs, float32
    (QAT and TF-MOT wrappers are float32 graphs)."""
    last = cfg.stages[-1]
    schedule = ScheduleConfig(
        kind="cosine",
        lr=opts.finetune_lr or last.schedule.lr / 10,
        epochs=opts.finetune_epochs,
        warmup_epochs=0.0,
    )
    return dataclasses.replace(
        cfg,
        run_dir=str(run_dir),
        stages=(Stage(size=size, schedule=schedule, train="all", augment=last.augment),),
        precision="float32",
        strategy="default",
        early_stopping=0,
        val_every=1,
        time_budget=0.0,
    )


def _finetune_key(parent: str, label: str, cfg: TrainConfig, opts: CompressOptions) -> str:
    """What a fine-tune depends on: the network it starts from (the run's model file, or the
    method it follows), the method, its training config and the options that shape it."""
    shaping = {k: getattr(opts, k) for k in ("prune_schedule", "prune_ends", "prune_exclude")}
    text = json.dumps([parent, label, dataclasses.asdict(cfg), shaping], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _fresh_finetune_dir(ft_dir: Path, key: str, label: str) -> None:
    """Keeps ``ft_dir`` for resuming only if it holds this very fine-tune (its ``key.txt``);
    one of another model or with other options is deleted, so a rerun never exports a stale
    fine-tune (these directories are compress's own intermediate runs)."""
    stamp = ft_dir / "key.txt"
    if ft_dir.exists():
        if stamp.exists() and stamp.read_text().strip() == key:
            return
        logging.info(
            "method %s: %s holds a fine-tune of another model or with other options; "
            "fine-tuning from the start",
            label,
            ft_dir,
        )
        shutil.rmtree(ft_dir)
    ft_dir.mkdir(parents=True)
    atomic_write_text(key + "\n", stamp)


class _Data:
    """The run's data at the deployed resolution, as raw uint8 pixels."""

    def __init__(self, run: RunDir, cfg: TrainConfig, size: int, num_calibration: int):
        data, self.norm = run.data(cfg)
        self.resize = cfg.load_resize
        self.class_names = data.class_names
        self.splits = {"val": data.val}
        if data.test is not None:
            self.splits["test"] = data.test
        self.arrays = {
            k: (resize_images(s.images, size).numpy(), s.labels) for k, s in self.splits.items()
        }
        rng = np.random.default_rng(cfg.seed)
        pick = rng.choice(len(data.train), min(num_calibration, len(data.train)), replace=False)
        self.calibration = resize_images(data.train.images[np.sort(pick)], size).numpy()

    def as_rgb(self) -> _Data:
        """The same images as RGB copies of their gray values (for ``rgb_input`` files)."""
        rgb = copy.copy(self)
        rgb.arrays = {k: (to_channels(x, 3), y) for k, (x, y) in self.arrays.items()}
        rgb.calibration = to_channels(self.calibration, 3)
        return rgb


def _keras_logits(model: keras.Model, arrays) -> dict[str, np.ndarray]:
    return {k: model.predict(array_batches(x), verbose=0) for k, (x, _) in arrays.items()}


def _export(
    name: str,
    label: str,
    deploy: keras.Model,
    modes,
    data: _Data,
    out: Path,
    opts: CompressOptions,
    *,
    quantized: bool = False,
    extra: dict | None = None,
) -> list[Candidate]:
    net = trained_part(deploy)
    card = model_card(deploy, data.class_names, data.norm, resize=data.resize, output=opts.output)
    if opts.rgb_input:  # ``data`` holds RGB copies of the images (``_Data.as_rgb``)
        deploy = rgb_input(deploy)
        card["input"] |= {"shape": [*card["input"]["shape"][:3], 3], "to_gray": RGB_NOTE}
    logits = _keras_logits(deploy, data.arrays)  # the reference for the files' agreement
    if opts.probabilities:
        deploy = with_probabilities(deploy)
    keras_acc = float((logits["val"].argmax(-1) == data.arrays["val"][1]).mean())
    from tfclf.compress.methods import deployed_weights

    weights = deployed_weights(net)
    params = int(sum(w.size for w in weights))
    macs = model_stats(net).macs
    nonzero = int(sum(np.count_nonzero(w) for w in weights))
    found = []
    for mode in modes:
        start = time.perf_counter()
        convert = functools.partial(
            tflite.convert,
            deploy,
            mode,
            representative=data.calibration,
            io_dtype=opts.io_dtype,
            per_channel=opts.per_channel,
            keep_names=opts.keep_names,
            num_calibration=opts.num_calibration,
            quantized=quantized,
            card=card,
        )
        blob = convert()
        if opts.sparse and nonzero < SPARSE_MAX_NONZERO * params:
            blob = _smaller_if_as_fast(blob, convert(sparse=True))
        path = out / f"{name}_{mode}.tflite"
        atomic_write_bytes(blob, path)
        rep = litert.verify(path, data.arrays, reference=logits, latency_runs=opts.latency_runs)
        found.append(
            Candidate(
                name=f"{name}_{mode}",
                method=label,
                mode=mode,
                file=path.name,
                size_bytes=rep.size_bytes,
                gzip_bytes=rep.gzip_bytes,
                accuracy=rep.accuracy,
                agreement=rep.agreement,
                latency_ms=rep.latency_ms,
                keras_accuracy=keras_acc,
                params=params,
                nonzero_params=nonzero,
                splits=rep.splits,
                io=rep.io,
                extra=extra or {},
                macs=macs,
                xnnpack=rep.xnnpack,
                sparse_weights=tflite.sparse_weights(blob),
            )
        )
        _log_file(path, rep, keras_acc, time.perf_counter() - start)
    return found


def _log_file(path: Path, rep, keras_acc: float, seconds: float) -> None:
    logging.info(
        "%-22s %8.1f KB (gzip %7.1f KB)  val %.4f (Keras %.4f, agreement %.4f)  %.2f ms  [%.1f s]",
        path.name,
        rep.size_bytes / 1024,
        rep.gzip_bytes / 1024,
        rep.accuracy,
        keras_acc,
        rep.agreement,
        rep.latency_ms,
        seconds,
    )


def _smaller_if_as_fast(dense: bytes, sparse: bytes) -> bytes:
    """The sparse-encoded file when it is smaller and runs in XNNPACK wherever the dense one
    does. The converter sparse-encodes every tensor with enough zeros, but an int8 weight
    costs about a byte of index too, so at half zeros the file grows (measured: 357 vs
    321 KB for the quick start's int8 at 50 %); and XNNPACK refuses a sparse int8 fully
    connected layer (``--prune_ends``), which would move the whole graph to slower kernels."""
    if len(sparse) >= len(dense):
        return dense
    runs = [litert.interpreter(b, warn=False).xnnpack for b in (dense, sparse)]
    return sparse if runs[1] >= runs[0] else dense


def pick_under_budget(candidates: list[Candidate], max_kb: float) -> Candidate | None:
    """The most accurate file whose raw size is at most ``max_kb`` KiB (ties: smaller)."""
    fits = [c for c in candidates if c.size_bytes <= max_kb * 1024]
    return max(fits, key=lambda c: (c.accuracy, -c.size_bytes)) if fits else None


def _compressible(run: RunDir, opts: CompressOptions, cfg: TrainConfig):
    """(model file, deployable model) of a run these options can compress, or a
    ``CompressError`` saying why not, before any work."""
    from tfclf.models.applications import NO_QAT

    opts.validate()
    if opts.qat and cfg.model in NO_QAT:
        raise CompressError(f"--qat: {cfg.model}: {NO_QAT[cfg.model]}")
    model_path = run.require_model()
    deploy = load_keras_model(model_path)
    if trained_part(deploy) is deploy:
        raise CompressError(
            f"{model_path} takes normalised images (a run from before raw-pixel export): "
            "rerun python -m tfclf.train with the same flags to re-export it"
        )
    return model_path, deploy


def compress_run(run_dir: str | Path, opts: CompressOptions, cfg: TrainConfig) -> dict:
    """Exports, fine-tunes and verifies as described in the module docstring; returns the
    summary written to ``OUT/summary.json``."""
    from tfclf.training.trainer import train

    run = RunDir(run_dir)
    model_path, deploy = _compressible(run, opts, cfg)
    out = Path(opts.out) if opts.out else run.compress
    out.mkdir(parents=True, exist_ok=True)
    size = deploy.input_shape[1]
    if opts.rgb_input and deploy.input_shape[-1] != 1:
        raise CompressError(
            f"--rgb_input is for grayscale models; {model_path} takes "
            f"{deploy.input_shape[-1]} channels already"
        )
    data = _Data(run, cfg, size, opts.num_calibration)
    if opts.rgb_input:  # the files take RGB: they are verified on RGB copies of the images
        data = data.as_rgb()
    start = time.perf_counter()
    net = trained_part(deploy)
    from tfclf.compress import methods as m
    from tfclf.compress.slim import SlimPhase

    source = hashlib.sha256(model_path.read_bytes()).hexdigest()
    try:  # a method that cannot apply to this network fails before any work
        methods = [(name, label, make(net), source) for name, label, make in _methods(opts)]
    except ValueError as e:
        raise CompressError(f"{e} ({model_path})") from None
    candidates = _export("trained", "trained", deploy, opts.modes, data, out, opts)
    while methods:
        name, label, phase, parent = methods.pop(0)
        logging.info("method %s: fine-tuning %d epoch(s)", label, opts.finetune_epochs)
        ft_dir = out / "finetune" / name
        ft_cfg = finetune_config(cfg, ft_dir, size, opts)
        key = _finetune_key(parent, label, ft_cfg, opts)
        _fresh_finetune_dir(ft_dir, key, label)
        result = train(ft_cfg, phase)
        extra = {}
        if "prune" in name:
            extra["layer_sparsity"] = m.layer_sparsity(result.model)
        if getattr(phase, "report", None):
            extra["slimming"] = phase.report
        candidates += _export(
            name,
            label,
            deployable(result.model, data.norm),
            opts.method_modes,
            data,
            out,
            opts,
            quantized=isinstance(phase, m.QATPhase),
            extra=extra,
        )
        follow = []
        if opts.qat and not isinstance(phase, m.QATPhase):
            # QAT of the pruned / clustered / slimmed network, keeping its zeros or centroids
            # (TF-MOT's collaborative optimisation)
            preserve = {m.PrunePhase: "sparsity", m.ClusterPhase: "clusters"}.get(type(phase))
            kept = f" ({preserve} kept)" if preserve else ""
            follow.append(
                (f"{name}_qat", f"{label} + QAT{kept}", m.QATPhase(result.model, preserve), key)
            )
        if opts.chain and isinstance(phase, SlimPhase):  # prune / cluster it too
            follow += [
                (f"{name}_{n}", f"{label} + {lab}", make(result.model), key)
                for n, lab, make in _methods(opts, chained=True)
            ]
        methods[0:0] = follow
    summary = _summary(candidates, opts, data, deploy, time.perf_counter() - start)
    write_summary(out, summary, candidates, opts)
    write_labels(data.class_names, out / LABELS_FILE)
    atomic_write_json(_card(deploy, data, candidates, opts.output), out / CARD_FILE)
    return summary


def _card(deploy, data: _Data, candidates: list[Candidate], output: str) -> dict:
    card = model_card(deploy, data.class_names, data.norm, resize=data.resize, output=output)
    card["files"] = {
        c.file: {
            "input": c.io["input"] | {"shape": [1, *c.io["input"]["shape"][1:]]},
            "output": c.io["output"] | {"shape": [1, *c.io["output"]["shape"][1:]]},
            "val_accuracy": c.accuracy,
            "runs_in_xnnpack": c.xnnpack,
            "sparse_weight_tensors": c.sparse_weights,  # DENSIFY ops: not in TFLite Micro
            "note": tflite.INPUT_NOTES[c.io["input"]["dtype"]],
        }
        for c in candidates
    }
    return card


def _summary(candidates, opts, data, deploy, seconds) -> dict:
    base = {c.mode: c for c in candidates if c.method == "trained"}
    summary = {
        "model": trained_part(deploy).name,
        "input_shape": list(deploy.input_shape[1:]),
        "classes": list(map(str, data.class_names)),
        "splits": {k: len(v) for k, v in data.splits.items()},
        "seconds": round(seconds, 1),
        "per_channel": opts.per_channel,
        "rgb_input": opts.rgb_input,
        "output": opts.output,
        "candidates": [dataclasses.asdict(c) for c in candidates],
    }
    if "float32" in base:
        f32 = base["float32"]
        for c in summary["candidates"]:
            c["size_vs_float32"] = c["size_bytes"] / f32.size_bytes
            c["latency_vs_float32"] = c["latency_ms"] / f32.latency_ms
    if opts.max_tflite_kb:
        best = pick_under_budget(candidates, opts.max_tflite_kb)
        smallest = min(candidates, key=lambda c: c.size_bytes)
        summary["budget"] = {
            "max_tflite_kb": opts.max_tflite_kb,
            "fits": [c.name for c in candidates if c.size_bytes <= opts.max_tflite_kb * 1024],
            "picked": best.name if best else None,
            "smallest": {"name": smallest.name, "kb": smallest.size_bytes / 1024},
        }
    return summary


def write_summary(out: Path, summary: dict, candidates: list[Candidate], opts) -> None:
    atomic_write_json(summary, out / "summary.json")
    rows = [
        "| file | method | mode | size KB | gzip KB | non-zero params | MMACs | val acc "
        "| Keras acc | agreement | latency ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in candidates:
        rows.append(
            f"| {c.file} | {c.method} | {c.mode}{', sparse' if c.sparse_weights else ''} | "
            f"{c.size_bytes / 1024:.1f} | "
            f"{c.gzip_bytes / 1024:.1f} | {c.nonzero_params:,} / {c.params:,} | {c.macs / 1e6:.2f} | "
            f"{c.accuracy:.4f} | {c.keras_accuracy:.4f} | {c.agreement:.4f} | "
            f"{c.latency_ms:.2f} |"
        )
    lines = [
        f"# Compression of {summary['model']} ({summary['seconds']:.0f} s)",
        "",
        f"Input {summary['input_shape']} raw pixels; validation split "
        f"{summary['splits']['val']} images. Accuracy and agreement (top-1 with the float "
        "Keras model of the same method) are measured on each file with the LiteRT "
        "interpreter; latency is the median of single-threaded batch-1 runs on this machine. "
        f"Each file names its {len(summary['classes'])} classes in its `{litert.CARD_METADATA}` "
        "metadata (also in labels.txt here)."
        + ("" if summary["per_channel"] else " Int8 weights: one scale per tensor.")
        + (f" The files take RGB pixels: {RGB_NOTE}." if summary.get("rgb_input") else "")
        + (
            " The files output class probabilities (a softmax inside), not logits."
            if summary.get("output") == "probabilities"
            else ""
        ),
        "",
        *rows,
        "",
    ]
    sparse = [c.file for c in candidates if c.sparse_weights]
    if sparse:
        lines += [
            f"Pruned weights stored sparse (TFLite's sparse format, expanded once at load by "
            f"a DENSIFY op, which LiteRT runs and TFLite Micro does not; --nosparse keeps "
            f"them dense): {', '.join(sparse)}.",
            "",
        ]
    builtin = [c.file for c in candidates if not c.xnnpack]
    if builtin:
        lines += [
            f"Not runnable in LiteRT's default XNNPACK delegate (verified and timed with the "
            f"builtin kernels; an app must turn the default delegate off): {', '.join(builtin)}.",
            "",
        ]
    lines += _budget_notes(summary.get("budget")) + _method_notes(candidates)
    lines.append("![size vs accuracy](size_accuracy.png)")
    atomic_write_text("\n".join(lines) + "\n", out / "summary.md")
    plot_size_accuracy(candidates, out / "size_accuracy.png", opts.max_tflite_kb)


def _budget_notes(budget: dict | None) -> list[str]:
    """The summary's lines about the ``--max_tflite_kb`` pick."""
    lines = []
    if budget:
        lines.append(f"## Budget: {budget['max_tflite_kb']:g} KB (raw file size)")
        lines.append("")
        if budget["picked"]:
            lines.append(
                f"Picked **{budget['picked']}**, the most accurate of the "
                f"{len(budget['fits'])} file(s) under the budget: {', '.join(budget['fits'])}."
            )
        else:
            lines.append(
                f"No file fits; the smallest reached is {budget['smallest']['name']} "
                f"({budget['smallest']['kb']:.1f} KB)."
            )
        lines.append("")
    return lines


def _method_notes(candidates: list[Candidate]) -> list[str]:
    """The summary's lines about each pruned and slimmed network."""
    lines = []
    pruned = {
        c.method: c.extra["layer_sparsity"] for c in candidates if "layer_sparsity" in c.extra
    }
    for method, sparsity in pruned.items():
        cut = sorted(v for v in sparsity.values() if v >= DENSE_BELOW)
        dense = [n for n, v in sparsity.items() if v < DENSE_BELOW]
        lines += [
            f"{method}: {len(cut)} layers pruned to sparsity "
            + (f"{cut[0]:.2f}-{cut[-1]:.2f}" if cut else "-")
            + f"; kept dense: {', '.join(dense) or 'none'} (per layer in summary.json).",
            "",
        ]
    slimmed = {c.method: c.extra["slimming"] for c in candidates if "slimming" in c.extra}
    for method, r in slimmed.items():
        widths = ", ".join(f"{g['layers'][0]} {g['channels']}->{g['kept']}" for g in r["groups"])
        lines += [
            f"{method}: {r['params_before']:,} -> {r['params_after']:,} parameters, "
            f"{r['macs_before'] / 1e6:.2f} -> {r['macs_after'] / 1e6:.2f} MMACs; channels "
            f"(first layer of each group): {widths}.",
            "",
        ]
    return lines


def plot_size_accuracy(candidates: list[Candidate], path: Path, budget_kb=None) -> None:
    from matplotlib import colormaps

    from tfclf.plots import figure, save_figure

    fig, ax = figure(figsize=(7, 4.5))
    methods = list(dict.fromkeys(c.method for c in candidates))
    for i, method in enumerate(methods):
        cs = [c for c in candidates if c.method == method]
        ax.scatter(
            [c.size_bytes / 1024 for c in cs],
            [100 * c.accuracy for c in cs],
            label=method,
            color=colormaps["tab10"](i % 10),
        )
        for c in cs:
            ax.annotate(c.mode, (c.size_bytes / 1024, 100 * c.accuracy), fontsize=7)
    if budget_kb:
        ax.axvline(budget_kb, color="gray", ls="--", label=f"budget {budget_kb:g} KB")
    ax.set_xscale("log")
    ax.set_xlabel(".tflite size (KB, log scale)")
    ax.set_ylabel("validation accuracy (%), measured on the file")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def load_summary(out: Path) -> dict:
    return json.loads((Path(out) / "summary.json").read_text())
