"""Compression methods as training phases (``tfclf.training.phases``): magnitude pruning,
weight clustering and quantisation-aware training with TF-MOT, each fine-tuning a trained
network through the ordinary training loop (so checkpoints, resume and TensorBoard work as
in training).

- Pruning: ``prune_low_magnitude`` (Zhu & Gupta 2017) with a polynomial or constant
  sparsity schedule; the stem and the classifier stay dense by default (they are small and
  sensitive); ``strip_pruning`` at the end. DepthwiseConv2D kernels are never pruned by
  TF-MOT.
- Clustering: ``cluster_weights`` with k-means++ centroids, ``strip_clustering`` at the end.
  A centroid's gradient is the mean of its weights' gradients (TF-MOT's ``AVG``
  aggregation, mo#667), not their sum (TF-MOT's default, which cluster-preserving QAT
  hard-codes): with the sum a centroid shared by thousands of weights takes steps thousands
  of times the learning rate's, and the fine-tune collapses at learning rates ordinary
  fine-tuning takes (docs/benchmarks/compression.md).
- QAT: ``quantize_model``'s scheme, with two QuantizeConfigs for layers TF-MOT's default
  registry refuses: the squeeze-and-excitation ``Multiply`` and a batch normalisation not
  preceded by a convolution (pre-activation nets): neither has weights to quantise, so both
  quantise their output with an 8-bit moving-average quantizer (the pattern of mo#408 and
  TF Model Garden's quantised SE layer). After pruning or clustering, the sparsity- or
  cluster-preserving scheme (TF-MOT's collaborative optimisation) keeps what they gained.
"""

from __future__ import annotations

import fnmatch
import re

import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.clustering.keras.cluster_config import (
    GradientAggregation,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E501
    cluster_preserve_quantize_registry as cqat_registry,
)

from tfclf.keras import keras
from tfclf.training.phases import Phase, PhaseContext
from tfclf.training.trainer import transfer_weights

sparsity = tfmot.sparsity.keras
clustering = tfmot.clustering.keras
quantization = tfmot.quantization.keras

PRUNABLE = (keras.layers.Conv2D, keras.layers.Dense)
# TF-MOT's QAT state, not deployed parameters: the ranges and step counters, and the
# centroids, indices and original kernels of cluster-preserving QAT
QUANTIZER_STATE = re.compile(
    r"(_min|_max|optimizer_step|cluster_centroids_tf|pulling_indices_tf|ori_weights_vars_tf)"
    r"(:\d+)?$"
)


class OutputQuantizeConfig(quantization.QuantizeConfig):
    """For a layer without weights: only its output is quantised (8-bit, asymmetric)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            quantization.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


def kernel_layers(model: keras.Model) -> list:
    """Conv2D and Dense layers: what TF-MOT prunes and clusters (not depthwise kernels)."""
    return [
        layer
        for layer in model.layers
        if isinstance(layer, PRUNABLE) and not isinstance(layer, keras.layers.DepthwiseConv2D)
    ]


def prunable_layers(
    model: keras.Model, *, keep_ends_dense: bool = True, exclude: tuple[str, ...] = ()
) -> list[str]:
    """Names of the layers pruned: every kernel layer but (by default) the first
    convolution and the last dense layer (the classifier), and those whose name matches
    one of the ``exclude`` shell patterns (``stage3_*``); a pattern that matches no kernel
    layer is a ``ValueError`` naming it."""
    names = [layer.name for layer in kernel_layers(model)]
    for pattern in exclude:
        if not fnmatch.filter(names, pattern):
            raise ValueError(
                f"--prune_exclude: {pattern!r} matches no Conv2D/Dense layer of "
                f"{model.name} (they are {', '.join(names[:6])}, ...)"
            )
    skip = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in exclude)}
    if keep_ends_dense:
        convs = [n for n in names if isinstance(model.get_layer(n), keras.layers.Conv2D)]
        dense = [n for n in names if isinstance(model.get_layer(n), keras.layers.Dense)]
        skip |= set(convs[:1] + dense[-1:])
    return [n for n in names if n not in skip]


def deployed_weights(model: keras.Model) -> list[np.ndarray]:
    """The model's weights without QAT's quantizer state (the ranges and step counters that
    TF-MOT adds as ``*_min``, ``*_max`` and ``optimizer_step`` variables, and the centroids,
    indices and original weights that cluster-preserving QAT keeps beside each kernel): what
    the ``.tflite`` file stores as parameters."""
    return [w.numpy() for w in model.weights if not QUANTIZER_STATE.search(w.name)]


def layer_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of zero kernel weights per Conv/Dense layer of a stripped (or QAT) model."""
    found = {}
    for wrapper in model.layers:
        layer = getattr(wrapper, "layer", wrapper)  # a QAT wrapper holds the layer
        if isinstance(layer, PRUNABLE) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = layer.kernel
            if wrapper is not layer:  # QAT: the variable is the wrapper's, not the layer's
                kernel = next(w for w in wrapper.weights if w.name.startswith(f"{layer.name}/k"))
            k = kernel.numpy()
            found[layer.name] = float(1 - np.count_nonzero(k) / k.size)
    return found


class FromTrained(Phase):
    """Starts from a trained network: its weights in the freshly built model (matched by
    layer name) or, when the trained network's architecture differs (a slimmed one), a
    copy of the trained network itself."""

    def __init__(self, trained: keras.Model):
        self.trained = trained

    def wrap(self, model, ctx):
        if [w.shape for w in model.weights] != [w.shape for w in self.trained.weights]:
            model = keras.models.clone_model(self.trained)
        transfer_weights(self.trained, model)
        return model


class PrunePhase(FromTrained):
    """Magnitude pruning to ``target`` sparsity over the first ``ramp`` fraction of the
    fine-tuning steps (polynomial schedule), or at once (``schedule="constant"``)."""

    name = "prune"

    def __init__(
        self,
        trained: keras.Model,
        target: float,
        *,
        schedule: str = "polynomial",
        ramp: float = 0.7,
        frequency: int = 50,
        keep_ends_dense: bool = True,
        exclude: tuple[str, ...] = (),
    ):
        if not 0 < target < 1:
            raise ValueError(f"--prune: a sparsity must be in (0, 1), got {target}")
        super().__init__(trained)
        self.target, self.schedule, self.ramp = target, schedule, ramp
        self.frequency, self.keep_ends_dense, self.exclude = frequency, keep_ends_dense, exclude
        prunable_layers(trained, keep_ends_dense=keep_ends_dense, exclude=exclude)  # checks

    def wrap(self, model, ctx: PhaseContext):
        model = super().wrap(model, ctx)
        total = max(1, ctx.stage.epochs * ctx.steps_per_epoch)
        freq = max(1, min(self.frequency, total // 10))
        if self.schedule == "constant":
            sched = sparsity.ConstantSparsity(self.target, begin_step=0, frequency=freq)
        else:
            end = max(freq, int(total * self.ramp))
            sched = sparsity.PolynomialDecay(0.0, self.target, 0, end, frequency=freq)
        names = set(
            prunable_layers(model, keep_ends_dense=self.keep_ends_dense, exclude=self.exclude)
        )

        def clone(layer):
            if layer.name in names:
                return sparsity.prune_low_magnitude(layer, pruning_schedule=sched)
            return layer

        return keras.models.clone_model(model, clone_function=clone)

    def callbacks(self, model, ctx):
        return [sparsity.UpdatePruningStep()]

    def finish(self, model):
        return sparsity.strip_pruning(model)


class ClusterPhase(FromTrained):
    """Weight clustering: every clusterable kernel shares ``clusters`` values."""

    name = "cluster"

    def __init__(self, trained: keras.Model, clusters: int):
        if clusters < 2:
            raise ValueError(f"--cluster: the number of clusters must be >= 2, got {clusters}")
        super().__init__(trained)
        self.clusters = clusters

    def wrap(self, model, ctx):
        model = super().wrap(model, ctx)
        init = clustering.CentroidInitialization.KMEANS_PLUS_PLUS
        names = {layer.name for layer in kernel_layers(model)}

        def clone(layer):
            if layer.name in names:
                return clustering.cluster_weights(
                    layer,
                    number_of_clusters=self.clusters,
                    cluster_centroids_init=init,
                    cluster_gradient_aggregation=GradientAggregation.AVG,
                )
            return layer

        return keras.models.clone_model(model, clone_function=clone)

    def finish(self, model):
        return clustering.strip_clustering(model)


def _graph(model: keras.Model) -> tuple[dict, dict]:
    """Each layer's single parent (when it has one) and each layer's number of consumers."""
    parent, consumers = {}, {layer.name: 0 for layer in model.layers}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            parents = node.inbound_layers
            parents = parents if isinstance(parents, list) else [parents]
            for p in parents:
                consumers[p.name] = consumers.get(p.name, 0) + 1
            if len(parents) == 1:
                parent[layer.name] = parents[0]
    return parent, consumers


def output_only_layers(model: keras.Model) -> list[str]:
    """Layers TF-MOT's default registry refuses that we quantise by their output only: every
    ``Multiply`` (SE gate), the backbones' ``OUTPUT_QUANTIZED`` layers, and every batch
    normalisation that ``quantize_apply`` will not
    fold, i.e. one not fed by a convolution whose only consumer it is (pre-activation nets)."""
    from tfclf.models.applications import OUTPUT_QUANTIZED

    parent, consumers = _graph(model)
    names = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Multiply, *OUTPUT_QUANTIZED)):
            names.append(layer.name)
        elif isinstance(layer, keras.layers.BatchNormalization):
            p = parent.get(layer.name)
            if not (isinstance(p, keras.layers.Conv2D) and consumers[p.name] == 1):
                names.append(layer.name)
    return names


class WeightsBeforeReLU(quantization.QuantizeScheme, quantization.QuantizeLayoutTransform):
    """``scheme`` with the kernels of layers that feed a ReLU quantised in training.

    TF-MOT 0.8.1's layout transform ``LayerReLUQuantize``, written to keep a fake-quant out
    of Add -> ReLU, also matches Conv2D, DepthwiseConv2D and Dense -> ReLU and gives such a
    layer a no-op config: its kernel was never fake-quantised during QAT, and the
    sparsity- and cluster-preserving schemes, which act through the weight quantizer,
    lost its zeros or centroids (seen: a pruned SE block's ``se_reduce`` back to 0 %
    sparsity after "sparsity kept" QAT; LeNet-5 had no quantised kernel at all). Here such
    a layer gets the scheme's own config without its activation quantizer: the ReLU's
    output fake-quant is the range of the fused Conv+ReLU kernel, as TF-MOT does for
    Conv -> BN -> ReLU."""

    WEIGHTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)

    def __init__(self, scheme):
        self.scheme = scheme

    def get_quantize_registry(self):
        return self.scheme.get_quantize_registry()

    def get_layout_transformer(self):
        return self

    def apply(self, model, layer_quantize_map):
        model, layer_map = self.scheme.get_layout_transformer().apply(model, layer_quantize_map)
        registry = self.scheme.get_quantize_registry()
        for layer in model.layers:  # no other transform gives a weighted layer a no-op
            meta = layer_map.get(layer.name, {})
            if (
                isinstance(layer, self.WEIGHTED)
                and type(meta.get("quantize_config")).__name__ == "NoOpQuantizeConfig"
                and registry.supports(layer)
            ):
                config = registry.get_quantize_config(layer)
                config.activation_attrs = []
                meta["quantize_config"] = config
        return model, layer_map


def quantize(model: keras.Model, scheme=None) -> keras.Model:
    """``model`` made quantisation-aware (TF-MOT's default 8-bit scheme or ``scheme``,
    with ``WeightsBeforeReLU``'s correction)."""
    output_only = set(output_only_layers(model))

    def annotate(layer):
        if layer.name in output_only:
            return quantization.quantize_annotate_layer(layer, OutputQuantizeConfig())
        return layer

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated = quantization.quantize_annotate_model(annotated)
    scheme = WeightsBeforeReLU(scheme or quantization.default_8bit.Default8BitQuantizeScheme())
    with quantization.quantize_scope({"OutputQuantizeConfig": OutputQuantizeConfig}):
        return quantization.quantize_apply(annotated, scheme)


class QATPhase(FromTrained):
    """Quantisation-aware fine-tuning. ``preserve="sparsity"`` or ``"clusters"`` uses the
    collaborative scheme that keeps a pruned or clustered model's zeros or centroids."""

    name = "qat"

    def __init__(self, trained: keras.Model, preserve: str | None = None):
        super().__init__(trained)
        combine = tfmot.experimental.combine
        self.scheme = {
            None: None,
            "sparsity": combine.Default8BitPrunePreserveQuantizeScheme(),
            "clusters": combine.Default8BitClusterPreserveQuantizeScheme(),
        }[preserve]
        self.preserve = preserve

    def wrap(self, model, ctx):
        model = quantize(super().wrap(model, ctx), self.scheme)
        if self.preserve == "clusters":
            average_centroid_gradients(model)
        return model


def average_centroid_gradients(model: keras.Model) -> None:
    """Cluster-preserving QAT with each centroid's gradient the mean of its weights' (as
    ``ClusterPhase``), where TF-MOT 0.8 hard-codes their sum: its quantizers read the
    aggregation from their clustering object when the training step is traced, so setting
    it after ``quantize_apply`` is enough."""
    for layer in model.layers:
        for _, _, quantizer_vars in getattr(layer, "_weight_vars", ()):
            impl = quantizer_vars.get(cqat_registry.CLUSTERING_IMPL)
            if impl is not None:
                impl.cluster_gradient_aggregation = GradientAggregation.AVG
