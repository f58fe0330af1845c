"""Compress a finished run into verified ``.tflite`` files: ``python -m tfclf.compress
--run_dir=RUN [--prune=0.3,0.5,0.7] [--slim=0.5] [--cluster=16] [--qat] [--chain]
[--max_tflite_kb=300]``.

With no method flags the run's best model is exported as float32, float16, dynamic-range
and full-int8 ``.tflite`` (uint8 raw pixels in). Each file is verified with the LiteRT
interpreter; ``RUN/compress/`` gets the files, ``labels.txt``, ``model_card.json``,
``summary.md``/``summary.json`` and ``size_accuracy.png``. Method flags add fine-tuned
candidates (checkpointed under ``RUN/compress/finetune/``: rerunning a killed command
resumes). ``--max_tflite_kb`` picks the most accurate file under the budget.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from tfclf import cli
from tfclf.rundir import RunDir

cli.define_train_flags()  # --run_dir, and the run's flags read back from its flags.txt
flags.declare_key_flag("run_dir")  # listed by --help
flags.DEFINE_list(
    "modes", ["float32", "float16", "dynamic", "int8"], "TFLite modes of the run's model."
)
flags.DEFINE_list("method_modes", ["int8"], "TFLite modes of each fine-tuned method's model.")
flags.DEFINE_enum("io_dtype", "uint8", ["uint8", "int8"], "Input/output type of int8 files.")
flags.DEFINE_bool(
    "per_channel",
    True,
    "Int8 weight scales per output channel (TFLite's default); --noper_channel stores one "
    "per tensor: a smaller file, accuracy measured in the summary (QAT files keep theirs).",
)
flags.DEFINE_bool(
    "keep_names",
    False,
    "Keep the converter's names of inner tensors in the .tflite files (for Netron); by "
    "default only the input's and output's are kept, which saves about 20 KB a file.",
)
flags.DEFINE_bool(
    "sparse",
    True,
    "Store pruned weights in TFLite's sparse format when that makes a file smaller (a DENSIFY "
    "op expands them once at load; LiteRT and its XNNPACK delegate run it, TFLite Micro does "
    "not): pruning then shrinks the file, not only its gzip. --nosparse keeps files dense.",
)
flags.DEFINE_integer("num_calibration", 200, "Training images for int8 calibration.")
flags.DEFINE_bool(
    "rgb_input",
    False,
    "For a grayscale model: files that take RGB pixels and convert them to gray inside "
    "(what cameras give and MediaPipe Tasks' classifier requires).",
)
flags.DEFINE_bool(
    "probabilities",
    False,
    "Files that end in a softmax and output class probabilities instead of logits (what "
    "MediaPipe Tasks' classifier reports as scores and its score_threshold compares).",
)
flags.DEFINE_list("prune", [], "Magnitude-pruning sparsities, e.g. 0.3,0.5,0.7 (a sweep).")
flags.DEFINE_enum("prune_schedule", "polynomial", ["polynomial", "constant"], "Sparsity schedule.")
flags.DEFINE_bool("prune_ends", False, "Also prune the stem convolution and the classifier.")
flags.DEFINE_list(
    "prune_exclude",
    [],
    "Layers kept dense when pruning: names or shell patterns, e.g. stage3_*,se_* "
    "(python -m tfclf.models MODEL lists them).",
)
flags.DEFINE_list("cluster", [], "Weight-clustering cluster counts, e.g. 16.")
flags.DEFINE_list(
    "slim",
    [],
    "Network-slimming channel ratios, e.g. 0.5: remove that fraction of the channels with "
    "the smallest batch-norm scales (train with --bn_l1 first), rebuild, fine-tune.",
)
flags.DEFINE_bool("qat", False, "Quantisation-aware fine-tuning.")
flags.DEFINE_bool(
    "chain",
    False,
    "Also apply --prune and --cluster to each --slim network (then QAT with --qat): "
    "slimming removes channels, pruning zeros in what is left, for the smallest files.",
)
flags.DEFINE_integer("finetune_epochs", 2, "Fine-tuning epochs of each method.")
flags.DEFINE_float("finetune_lr", None, "Fine-tuning peak LR (default: the run's LR / 10).")
flags.DEFINE_float("max_tflite_kb", None, "Pick the most accurate file of at most this size.")
flags.DEFINE_integer("latency_runs", 50, "Batch-1 invocations timed per file (median).")
flags.DEFINE_string("out", None, "Output directory (default: RUN/compress).")
FLAGS = flags.FLAGS


def _numbers(name: str, kind):
    try:
        return tuple(kind(v) for v in FLAGS[name].value)
    except ValueError:
        raise cli.UsageError(
            f"--{name}: expected comma-separated {kind.__name__}s, got {','.join(FLAGS[name].value)}"
        ) from None


def main(argv):
    cli.quiet_library_info()
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected argument(s): {' '.join(argv[1:])}")
    if not FLAGS["run_dir"].present:
        raise cli.UsageError("--run_dir is required: the run directory to compress")
    run = RunDir(FLAGS.run_dir)
    run.require_model()
    from tfclf.compress.pipeline import CompressError, CompressOptions, compress_run

    opts = CompressOptions(
        modes=tuple(FLAGS.modes),
        method_modes=tuple(FLAGS.method_modes),
        io_dtype=FLAGS.io_dtype,
        per_channel=FLAGS.per_channel,
        keep_names=FLAGS.keep_names,
        sparse=FLAGS.sparse,
        num_calibration=FLAGS.num_calibration,
        prune=_numbers("prune", float),
        prune_schedule=FLAGS.prune_schedule,
        prune_ends=FLAGS.prune_ends,
        prune_exclude=tuple(FLAGS.prune_exclude),
        cluster=_numbers("cluster", int),
        slim=_numbers("slim", float),
        qat=FLAGS.qat,
        chain=FLAGS.chain,
        finetune_epochs=FLAGS.finetune_epochs,
        finetune_lr=FLAGS.finetune_lr,
        max_tflite_kb=FLAGS.max_tflite_kb,
        latency_runs=FLAGS.latency_runs,
        out=FLAGS.out,
        rgb_input=FLAGS.rgb_input,
        probabilities=FLAGS.probabilities,
    )
    try:
        opts.validate()
    except CompressError as e:
        raise cli.UsageError(str(e)) from None
    cfg = run.config(cli.given_flags(FLAGS))  # the command line's data flags win
    summary = compress_run(run.path, opts, cfg)
    out = Path(opts.out) if opts.out else run.compress
    count = len(summary["candidates"])
    print(f"{count} file{'s' * (count != 1)} verified -> {out / 'summary.md'}")
    budget = summary.get("budget")
    if budget:
        if budget["picked"] is None:
            raise cli.UsageError(
                f"--max_tflite_kb={budget['max_tflite_kb']:g}: no file fits; the smallest is "
                f"{budget['smallest']['name']} at {budget['smallest']['kb']:.1f} KB "
                f"(see {out / 'summary.md'})"
            )
        print(f"budget {budget['max_tflite_kb']:g} KB: {out / (budget['picked'] + '.tflite')}")
    return 0


if __name__ == "__main__":
    cli.run(main, lambda: FLAGS.run_dir, tensorflow=True)
