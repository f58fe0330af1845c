"""Model summary: ``python -m tfclf.models NAME [--input_size=32] [--num_classes=10]
[--model_args="{'base': 16}"]``.

Prints trainable/total parameters, MACs at the input size, float32 size and a per-layer
table; ``--list`` lists every registered model.
"""

from __future__ import annotations

import json

from absl import flags

from tfclf import cli

FLAGS = flags.FLAGS
flags.DEFINE_bool("list", False, "List registered models and exit.")
flags.DEFINE_integer("input_size", None, "Input height and width (default: the model's own).")
flags.DEFINE_integer("channels", 3, "Input channels.")
flags.DEFINE_integer("num_classes", 10, "Number of classes.")
flags.DEFINE_string(
    "model_args", "{}", "The model's arguments as a Python dict literal, as in tfclf.train."
)
flags.DEFINE_bool("layers", True, "Print the per-layer table.")
flags.DEFINE_bool("json", False, "Print the statistics as JSON instead of a table.")


def main(argv):
    from tfclf.models import create_model, format_stats, get_spec, list_models, model_stats
    from tfclf.models.registry import check_model_args

    if FLAGS.list or len(argv) < 2:
        if not FLAGS.list:
            print("usage: python -m tfclf.models NAME [--input_size=N] | --list\n")
        width = max(len(n) for n in list_models())
        for name in list_models():
            spec = get_spec(name)
            print(f"{name:{width}s}  {spec.default_size:>4d}px  {spec.description.splitlines()[0]}")
        return 0 if FLAGS.list else 2
    name = argv[1]
    try:
        spec = get_spec(name)
        size = spec.default_size if FLAGS.input_size is None else FLAGS.input_size
        for flag, value in (("input_size", size), ("channels", FLAGS.channels)):
            if value < 1:
                raise ValueError(f"--{flag} must be positive, got {value}")
        args = cli.parse_model_args(FLAGS.model_args)
        if problem := check_model_args(name, args):
            raise ValueError(f"--model_args: {problem}")
        model = create_model(name, (size, size, FLAGS.channels), FLAGS.num_classes, **args)
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    stats = model_stats(model)
    print(
        json.dumps(stats.to_dict(), indent=2)
        if FLAGS.json
        else format_stats(stats, per_layer=FLAGS.layers)
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
