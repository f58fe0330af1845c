"""Compression and deployment (issue 10): TFLite modes verified on real digits, raw-pixel
files, pruning and clustering through the training loop, the budget pick, the compress and
predict CLIs and their one-line errors."""

import io
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_CNN, run_clis, tiny_config

from tfclf.compress import methods, pipeline
from tfclf.compress.pipeline import Candidate, CompressOptions, compress_run, pick_under_budget
from tfclf.data.pipeline import resize_images
from tfclf.export import litert, tflite
from tfclf.export.deploy import trained_part
from tfclf.keras import keras
from tfclf.models import create_model
from tfclf.training.trainer import train

MODEL = SMALL_CNN  # conv-BN-ReLU, Flatten, classifier: every method applies


@pytest.fixture(scope="module")
def run(small_cnn_run):
    return small_cnn_run


@pytest.fixture(scope="module")
def val_pixels(run):
    _, _, result = run
    return resize_images(result.data.val.images, result.image_size).numpy(), result.data.val.labels


def test_every_tflite_mode_converts_and_is_scored_on_real_digits(run, val_pixels, tmp_path):
    run_dir, _, result = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)
    x, y = val_pixels
    logits = deploy.predict(x.astype(np.float32), verbose=0)
    keras_acc = (logits.argmax(-1) == y).mean()
    assert keras_acc > 0.5  # the tiny run learned something: agreement below means something
    train_x = resize_images(result.data.train.images[:100], result.image_size).numpy()
    sizes = {}
    for mode in tflite.MODES:
        path = tmp_path / f"{mode}.tflite"
        path.write_bytes(tflite.convert(deploy, mode, representative=train_x, num_calibration=50))
        rep = litert.verify(path, {"val": (x, y)}, reference={"val": logits}, latency_runs=3)
        sizes[mode] = rep.size_bytes
        assert rep.gzip_bytes > 0 and rep.latency_ms > 0
        assert rep.agreement >= (0.999 if mode == "float32" else 0.9), mode
        assert abs(rep.accuracy - keras_acc) <= (0.001 if mode == "float32" else 0.1), mode
        if mode == "float32":  # raw pixels in, the Keras model's logits out
            interp = litert.interpreter(path)
            np.testing.assert_allclose(litert.predict(interp, x), logits, atol=1e-3, rtol=1e-3)
    assert sizes["int8"] < 0.5 * sizes["float32"] and sizes["float16"] < 0.6 * sizes["float32"]


@pytest.mark.parametrize("io_dtype, zero_point", [("uint8", 0), ("int8", -128)])
def test_int8_files_take_raw_pixels_in_the_requested_dtype(
    run, val_pixels, io_dtype, zero_point, capfd
):
    run_dir, _, result = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)
    x, _ = val_pixels
    capfd.readouterr()
    blob = tflite.convert(deploy, "int8", representative=x[:50], io_dtype=io_dtype)
    assert "fully_quantize" not in capfd.readouterr().err  # the quantiser's line per file
    spec = litert.io_spec(litert.interpreter(blob))
    assert spec["input"]["dtype"] == spec["output"]["dtype"] == io_dtype
    assert spec["input"]["quant"] == {"scale": 1.0, "zero_point": zero_point}


def test_quantizer_chatter_is_dropped_and_other_stderr_kept(capfd):
    capfd.readouterr()
    with tflite._without_quantizer_chatter():
        os.write(2, b"fully_quantize: 0, inference_type: 6\n")
        os.write(2, b"a real warning\n")
    err = capfd.readouterr().err
    assert "a real warning" in err and "fully_quantize" not in err


def test_per_tensor_int8_has_one_scale_per_tensor_and_a_smaller_file(run, val_pixels):
    run_dir, _, _ = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)
    x, _ = val_pixels
    files = {
        pc: tflite.convert(deploy, "int8", representative=x[:50], per_channel=pc)
        for pc in (True, False)
    }

    def most_scales(blob):  # read before allocation: XNNPACK adds tensors of its own
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_content=blob)
        return max(len(t["quantization_parameters"]["scales"]) for t in interp.get_tensor_details())

    assert most_scales(files[True]) > 1 and most_scales(files[False]) == 1
    assert len(files[False]) < len(files[True])


def test_stripped_names_give_a_smaller_file_with_the_same_outputs_and_signature(run, val_pixels):
    run_dir, _, _ = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)
    x, _ = val_pixels
    named = tflite.convert(deploy, "int8", representative=x[:50], keep_names=True)
    stripped = tflite.strip_names(named)
    assert len(stripped) < len(named)

    def run_file(blob):
        interp = litert.interpreter(blob)
        names = [d["name"] for d in interp.get_input_details() + interp.get_output_details()]
        inner = [t["name"] for t in interp.get_tensor_details()]
        logits = litert.predict(interp, x[:32])
        # a second interpreter: predict resized the first one's input, which the runner's
        # views would pin ("reference to internal data")
        runner = litert.interpreter(blob).get_signature_runner("serving_default")
        return names, inner, logits, next(iter(runner(pixels=x[:1]).values()))

    (names_a, inner_a, out_a, sig_a), (names_b, inner_b, out_b, sig_b) = map(
        run_file, (named, stripped)
    )
    assert names_a == names_b and all(names_b)  # the input's and output's names stay
    assert sum(map(len, inner_b)) < sum(map(len, inner_a)) / 4
    np.testing.assert_array_equal(out_a, out_b)
    np.testing.assert_array_equal(sig_a, sig_b)


def test_a_file_is_the_one_from_keras_model_makes(run):
    """``convert`` hands the converter an inference-only SavedModel instead of letting
    ``from_keras_model`` write Keras' full one (docs/decisions/tflite-conversion.md): the
    file is the same but for the conversion metadata's record of its source (and inner
    tensor names, which a file drops by default)."""
    from tensorflow.lite.tools import flatbuffer_utils

    run_dir, _, _ = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)

    def without_source(blob):
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
        (entry,) = [m for m in model.metadata if m.name == b"CONVERSION_METADATA"]
        model.buffers[entry.buffer].data = None
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

    ours = tflite.convert(deploy, "float32")
    keras_ones = tflite.strip_names(tf.lite.TFLiteConverter.from_keras_model(deploy).convert())
    assert ours != keras_ones  # so that the comparison below is not vacuous
    assert without_source(ours) == without_source(keras_ones)


def test_a_tflite_file_names_its_classes_on_its_own(run, val_pixels, tmp_path):
    from tfclf.export.deploy import model_card
    from tfclf.export.load import load_classifier

    run_dir, _, result = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)
    x, _ = val_pixels
    names = [f"digit {i}" for i in range(10)]
    card = model_card(deploy, names, result.normalizer, resize="crop")
    plain, carded = (
        tflite.convert(deploy, "int8", representative=x[:50], card=c) for c in (None, card)
    )
    assert litert.read_card(plain) is None and litert.read_card(b"TFL3 garbage") is None
    embedded = litert.read_card(carded)
    assert embedded["classes"] == names and embedded["model"] == trained_part(deploy).name
    assert (
        embedded["input"]["dtype"] == "uint8"
        and "= raw pixel value" in embedded["input"]["meaning"]
    )
    assert embedded["normalization_inside"] == card["normalization_inside"]
    # the card changes no output; with TFLite Support's metadata and the zipped labels
    # (below) it costs about 1.3 KB
    np.testing.assert_array_equal(
        *(litert.predict(litert.interpreter(b), x) for b in (plain, carded))
    )
    assert 0 < len(carded) - len(plain) < 2048
    # alone in a folder, or beside another model's labels.txt: the file's own names win
    lone = tmp_path / "lone" / "model.tflite"
    lone.parent.mkdir()
    lone.write_bytes(carded)
    (tmp_path / "lone" / "labels.txt").write_text("".join(f"other {i}\n" for i in range(10)))
    clf = load_classifier(lone)
    assert clf.class_names == names and clf.names_from == "the file's model card"
    assert embedded["output"]["values"] == clf.outputs == "logits"  # no --probabilities
    assert clf.resize == "crop"  # predict resizes images as the card says training did
    lone.write_bytes(plain)
    assert load_classifier(lone).resize == "squash"  # no card, none beside: the default
    # writing a card again replaces it rather than adding a second one
    again = tflite._rewrite(carded, strip=False, card=card | {"classes": list("abcdefghij")})
    assert litert.read_card(again)["classes"] == list("abcdefghij")
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAs(again, 0)
    entries = [root.Metadata(i).Name() for i in range(root.MetadataLength())]
    assert entries.count(litert.CARD_METADATA.encode()) == 1, entries
    float_card = litert.read_card(tflite.convert(deploy, "float32", card=card))
    assert float_card["input"]["dtype"] == "float32"
    # TFLite Support's metadata too (what MediaPipe Tasks and Android's tools read): its
    # flatbuffer, and the labels as an associated file in a zip appended to the model
    for blob in (carded, again):
        support = litert._metadata(blob, tflite.SUPPORT_METADATA)
        assert support[4:8] == b"M001" and b"labels.txt" in support and b"pixels" in support
        archive = zipfile.ZipFile(io.BytesIO(blob))
        assert archive.namelist() == ["labels.txt"]
    assert zipfile.ZipFile(io.BytesIO(carded)).read("labels.txt").decode().splitlines() == names
    assert zipfile.ZipFile(io.BytesIO(again)).read("labels.txt").decode().splitlines() == list(
        "abcdefghij"
    )
    assert entries.count(tflite.SUPPORT_METADATA.encode()) == 1, entries


def test_sparse_encoding_shrinks_a_pruned_file_and_keeps_its_outputs(run, val_pixels):
    run_dir, _, _ = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)
    for layer in methods.kernel_layers(trained_part(deploy)):  # 80 % zeros, as pruning leaves
        k = layer.kernel.numpy()
        k[np.abs(k) < np.quantile(np.abs(k), 0.8)] = 0
        layer.kernel.assign(k)
    x, _ = val_pixels
    for mode in ("float32", "int8"):
        dense, sparse = (
            tflite.convert(deploy, mode, representative=x[:50], sparse=s) for s in (False, True)
        )
        assert tflite.sparse_weights(dense) == 0 < tflite.sparse_weights(sparse), mode
        assert len(sparse) < 0.7 * len(dense), (mode, len(sparse), len(dense))
        builtin = litert.interpreter(sparse, xnnpack=False)
        assert "DENSIFY" in {op["op_name"] for op in builtin._get_ops_details()}
        # the same kernels (XNNPACK refuses the int8 file's sparse classifier and rounds
        # differently from the builtin kernels it then runs on)
        outputs = [litert.predict(litert.interpreter(b, xnnpack=False), x) for b in (dense, sparse)]
        np.testing.assert_allclose(*outputs, rtol=1e-6, atol=1e-6)
        assert litert.interpreter(sparse).xnnpack == (mode == "float32")
        # compress keeps the sparse file only if it is smaller and as fast: the int8 one
        # (sparse classifier, builtin kernels) loses to the dense file despite its size
        expected = sparse if mode == "float32" else dense
        assert pipeline._smaller_if_as_fast(dense, sparse) is expected
        assert pipeline._smaller_if_as_fast(sparse, dense) is sparse  # a larger one never wins


def test_a_file_xnnpack_refuses_is_verified_with_the_builtin_kernels(tmp_path):
    # Found on a tiny SE-ResNet: XNNPACK fails to prepare this int8 graph (its SE blocks
    # squeeze 8 channels to 1), so verification falls back to the builtin kernels.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 28, 28, 1)).astype(np.uint8)
    y = rng.integers(0, 10, 64)
    reports = {}
    for se_ratio in (None, 8):
        keras.utils.set_random_seed(0)  # whether XNNPACK prepares depends on the weights
        net = create_model(
            "resnet_custom",
            (28, 28, 1),
            10,
            depths=(1, 1, 1),
            widths=(8, 16, 32),
            se_ratio=se_ratio,
        )
        path = tmp_path / f"se{se_ratio}.tflite"
        path.write_bytes(tflite.convert(net, "int8", representative=x[:50]))
        reports[se_ratio] = litert.verify(path, {"val": (x, y)}, latency_runs=2)
    assert reports[None].xnnpack and not reports[8].xnnpack
    assert 0 <= reports[8].accuracy <= 1 and reports[8].latency_ms > 0


def test_a_corrupt_tflite_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(litert.TFLiteFileError, match="broken.tflite is not a valid .tflite"):
        litert.interpreter(bad)


def test_pruning_reaches_the_sparsity_and_qat_after_it_keeps_the_zeros(run, tmp_path, digits):
    net = run[2].model  # the trained network (normalised images in)
    with pytest.raises(ValueError, match=r"--prune_exclude: 'nope_\*' matches no Conv2D/Dense"):
        methods.PrunePhase(net, 0.6, exclude=("nope_*",))
    phase = methods.PrunePhase(net, 0.6, schedule="constant", exclude=("stage3_*2_conv",))
    pruned = train(
        tiny_config(tmp_path / "prune", digits, epochs=1, model=MODEL, model_args={}), phase
    ).model
    names = [type(layer).__name__ for layer in pruned.layers]
    assert not any("Prune" in n for n in names), names
    sparsity = methods.layer_sparsity(pruned)
    targets = methods.prunable_layers(net, exclude=("stage3_*2_conv",))
    ends = set(sparsity) - set(targets)
    # stem conv, classifier and the excluded layer stay dense
    assert targets and ends == {"stage1_conv1_conv", "logits", "stage3_conv2_conv"}, ends
    for name in targets:
        assert sparsity[name] == pytest.approx(0.6, abs=0.02), (name, sparsity[name])
    for name in ends:
        assert sparsity[name] < 0.05, (name, sparsity[name])
    # sparsity-preserving QAT (collaborative optimisation) keeps every pruned zero
    qat = train(
        tiny_config(tmp_path / "qat", digits, epochs=1, model=MODEL, model_args={}),
        methods.QATPhase(pruned, preserve="sparsity"),
    ).model
    assert any("Quantize" in type(layer).__name__ for layer in qat.layers)
    after = methods.layer_sparsity(qat)
    for name in targets:
        assert after[name] >= sparsity[name] - 1e-6, (name, sparsity[name], after[name])


def test_sparsity_preserving_qat_keeps_the_zeros_of_kernels_that_feed_a_relu():
    """An SE block's reduce conv feeds a ReLU; TF-MOT gave it no weight quantizer, so QAT
    lost its pruned zeros (the compress summary showed it back at 0 % sparsity)."""
    model = create_model("se_resnet8", input_shape=(12, 12, 1), num_classes=3)
    for layer in methods.kernel_layers(model):  # half zeros, as pruning leaves them
        k = layer.kernel.numpy()
        k[np.abs(k) < np.median(np.abs(k))] = 0
        layer.kernel.assign(k)
    before = methods.layer_sparsity(model)
    qat = methods.QATPhase(model, preserve="sparsity").wrap(model, None)
    optimizer = keras.optimizers.SGD(0.5)
    x = tf.constant(np.random.default_rng(0).normal(size=(8, 12, 12, 1)), tf.float32)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(qat(x, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, qat.trainable_variables),
                                      qat.trainable_variables))  # fmt: skip
    after = methods.layer_sparsity(qat)
    reduce = [name for name in before if name.endswith("se_reduce")]
    assert len(reduce) == 3
    for name in before:
        assert after[name] >= before[name] - 1e-6, (name, before[name], after[name])


def test_clustering_leaves_at_most_k_values_per_kernel(run, tmp_path, digits):
    _, _, result = run
    clustered = train(
        tiny_config(tmp_path / "cluster", digits, epochs=1, model=MODEL, model_args={}),
        methods.ClusterPhase(result.model, 8),
    ).model
    assert not any("Cluster" in type(layer).__name__ for layer in clustered.layers)
    for layer in methods.kernel_layers(clustered):
        assert len(np.unique(layer.kernel.numpy())) <= 8, layer.name
    # cluster-preserving QAT keeps centroids, indices and the original kernels beside each
    # kernel: none of it is a deployed parameter (the summary once counted 3x the params)
    cqat = methods.QATPhase(clustered, preserve="clusters").wrap(clustered, None)
    assert any("cluster_centroids" in w.name for w in cqat.weights)
    deployed = methods.deployed_weights(cqat)
    assert sum(w.size for w in deployed) == clustered.count_params()
    # each centroid moves by the mean of its weights' gradients, not their sum (TF-MOT's
    # default, with which the quick start's cluster-preserving QAT collapsed to 11 %)
    reg = methods.cqat_registry
    layer, qvars = next(
        (layer, v) for layer in cqat.layers for _, _, v in getattr(layer, "_weight_vars", ())
        if reg.CLUSTER_CENTROIDS in v
    )  # fmt: skip
    centroids, kernel = qvars[reg.CLUSTER_CENTROIDS], qvars[reg.ORIGINAL_WEIGHTS]
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, *cqat.input_shape[1:])))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(cqat(x, training=True)))
    d_centroids, d_kernel = (g.numpy() for g in tape.gradient(loss, [centroids, kernel]))
    indices = qvars[reg.PULLING_INDICES].numpy()
    used = np.unique(indices)
    assert len(used) > 1 and np.abs(d_kernel).max() > 0, layer.name
    mean = [d_kernel[indices == k].mean() for k in used]
    np.testing.assert_allclose(d_centroids[used], mean, rtol=1e-4, atol=1e-9)


def _candidate(name, kb, acc):
    return Candidate(name, "m", "int8", f"{name}.tflite", int(kb * 1024), 1, acc, 1.0, 1.0,
                     acc, 10, 10, {}, {})  # fmt: skip


def test_budget_picks_the_most_accurate_file_under_it():
    cands = [_candidate("a", 500, 0.99), _candidate("b", 280, 0.97), _candidate("c", 90, 0.95)]
    assert pick_under_budget(cands, 300).name == "b"
    assert pick_under_budget(cands, 100).name == "c"
    assert pick_under_budget(cands, 50) is None


def test_compress_run_with_a_pruning_candidate_and_a_budget(run, tmp_path):
    run_dir, cfg, _ = run
    opts = CompressOptions(
        modes=("int8",),  # the float32 file of the trained model: test_every_tflite_mode
        prune=(0.8,),
        slim=(0.3,),
        chain=True,
        finetune_epochs=1,
        max_tflite_kb=10_000,
        latency_runs=3,
        out=str(tmp_path / "out"),
    )
    summary = compress_run(run_dir, opts, cfg)
    out = tmp_path / "out"
    names = [c["name"] for c in summary["candidates"]]
    assert names == [
        "trained_int8",
        "prune80_int8",
        "slim30_int8",
        "slim30_prune80_int8",  # --chain: the slimmed network pruned
    ]
    trained, pruned, slim, both = summary["candidates"]
    # int8 files: pruning shrinks the file itself, and slimming then pruning shrinks it most
    assert pruned["sparse_weights"] > 0 and pruned["size_bytes"] < 0.7 * trained["size_bytes"]
    assert both["params"] == slim["params"] and both["nonzero_params"] < 0.5 * slim["params"]
    assert both["size_bytes"] < min(slim["size_bytes"], pruned["size_bytes"])
    assert slim["params"] == slim["extra"]["slimming"]["params_after"] < trained["params"]
    assert slim["macs"] == slim["extra"]["slimming"]["macs_after"] < trained["macs"]
    for c in summary["candidates"]:
        assert (out / c["file"]).exists() and 0 < c["accuracy"] <= 1
        card = litert.read_card(out / c["file"])  # every file names its classes itself
        assert card["classes"] == [str(i) for i in range(10)], c["file"]
        assert card["input"]["dtype"] == c["io"]["input"]["dtype"], c["file"]
    assert summary["budget"]["picked"] in names
    assert (out / "size_accuracy.png").stat().st_size > 1000
    text = (out / "summary.md").read_text()
    assert (
        "prune 0.8" in text
        and "int8, sparse" in text
        and "slim 0.3: " in text
        and "MMACs" in text
        and "names its 10 classes in its `tfclf_model_card` metadata" in text
    )
    assert re.search(
        r"\nprune 0\.8: 3 layers pruned to sparsity 0\.[78]\d-0\.[78]\d; "
        r"kept dense: stage1_conv1_conv, logits ",
        text,
    ), text
    card = json.loads((out / "model_card.json").read_text())
    assert card["files"]["trained_int8.tflite"]["input"]["dtype"] == "uint8"
    assert (out / "labels.txt").read_text().splitlines() == [str(i) for i in range(10)]
    # the fine-tuning checkpoint is there: a rerun resumes instead of training again
    assert list((out / "finetune" / "prune80" / "checkpoints").glob("ckpt-*"))


def test_a_rerun_resumes_its_own_fine_tune_and_redoes_another(run, tmp_path):
    """Same model and options: the finished fine-tune is reused. Other fine-tuning options
    (or another model in the run directory): it is trained again, never exported stale."""
    run_dir, cfg, _ = run
    ckpt = tmp_path / "out" / "finetune" / "cluster4" / "checkpoints"

    def compress(lr):
        opts = CompressOptions(modes=(), method_modes=("float32",), cluster=(4,), finetune_epochs=1,
                               finetune_lr=lr, latency_runs=1, out=str(tmp_path / "out"))  # fmt: skip
        compress_run(run_dir, opts, cfg)
        return {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}

    first = compress(0.01)
    assert compress(0.01) == first  # resumed: nothing trained again
    assert compress(0.02) != first  # other options: fine-tuned again


def test_files_for_mediapipe_take_rgb_and_output_probabilities(run, val_pixels, tmp_path):
    """What MediaPipe Tasks' classifier needs: RGB input (``--rgb_input``, for a grayscale
    model) and probabilities as its scores (``--probabilities``)."""
    from tfclf.export.deploy import rgb_input
    from tfclf.export.load import load_classifier
    from tfclf.inference import softmax

    run_dir, cfg, _ = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)
    x = np.random.default_rng(0).integers(0, 256, (8, *deploy.input_shape[1:])).astype("float32")
    rgb = rgb_input(deploy)
    np.testing.assert_allclose(
        rgb.predict(np.repeat(x, 3, -1), verbose=0), deploy.predict(x, verbose=0), atol=1e-3
    )
    with pytest.raises(ValueError, match="already takes 3 channels"):
        rgb_input(rgb)
    opts = CompressOptions(modes=("float32", "int8"), rgb_input=True, probabilities=True,
                           latency_runs=1, out=str(tmp_path))  # fmt: skip
    files = compress_run(run_dir, opts, cfg)["candidates"]
    gray, _ = val_pixels
    expected = softmax(deploy.predict(gray.astype("float32"), verbose=0))
    for file, atol in zip(files, (1e-5, 0.02)):  # int8 probabilities: steps of 1/256
        assert file["io"]["input"]["shape"][-1] == 3
        assert file["io"]["input"]["dtype"] == {"float32": "float32", "int8": "uint8"}[file["mode"]]
        assert file["agreement"] >= 0.99  # the RGB file agrees with the gray Keras model
        path = tmp_path / file["file"]
        card = litert.read_card(path)
        assert card["input"]["shape"] == [1, 28, 28, 3] and "0.299 R" in card["input"]["to_gray"]
        assert card["output"]["values"] == "probabilities"
        support = litert._metadata(path.read_bytes(), tflite.SUPPORT_METADATA)
        assert b"probabilities" in support and b"logits" not in support  # what MediaPipe reads
        probs = litert.predict(litert.interpreter(path), np.repeat(gray, 3, -1))
        assert (probs >= 0).all() and np.allclose(probs.sum(-1), 1, atol=10 * atol)
        np.testing.assert_allclose(probs, expected, atol=atol)
        # readers take the file's probabilities as they are (no second softmax)
        clf = load_classifier(path)
        np.testing.assert_allclose(softmax(clf.logits(np.repeat(gray[:20], 3, -1))),
                                   probs[:20] / probs[:20].sum(-1, keepdims=True), atol=1e-6)  # fmt: skip
    assert json.loads((tmp_path / "model_card.json").read_text())["output"]["values"] == (
        "probabilities"
    )
    assert "output class probabilities" in (tmp_path / "summary.md").read_text()


def test_grayscale_files_are_widened_for_a_colour_model_and_not_the_reverse(tmp_path):
    from PIL import Image

    from tfclf.inference import ImageError, load_images

    gray, rgb = tmp_path / "gray.png", tmp_path / "rgb.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(gray)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(rgb)
    pixels, kept, skipped = load_images([(gray, None), (rgb, None)], (8, 8, 3))
    assert pixels.shape == (2, 8, 8, 3) and not skipped
    assert (pixels[0] == np.arange(64).reshape(8, 8, 1)).all()  # the gray values, thrice
    with pytest.raises(ImageError, match="rgb.png has 3 channel.* pass --convert_channels"):
        load_images([(rgb, None)], (8, 8, 1))
    assert load_images([(rgb, None)], (8, 8, 1), convert_channels=True)[0].shape == (1, 8, 8, 1)


def test_predict_cli_scores_a_labelled_folder_and_names_a_corrupt_file(run, tmp_path):
    from PIL import Image

    run_dir, _, result = run
    folder = tmp_path / "digits"
    images, labels = result.data.val.images, result.data.val.labels
    for i in range(40):
        d = folder / str(labels[i])
        d.mkdir(parents=True, exist_ok=True)
        digit = Image.fromarray(images[i].squeeze(-1))
        (digit.resize((40, 40)) if i % 4 == 0 else digit).save(d / f"{i}.png")  # mixed sizes
    (folder / str(labels[0]) / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    table = tmp_path / "predictions.csv"
    model = run_dir / "best_model" / "model.keras"
    # predict, then evaluate three ways, in one process (cli_runner.py): its full report on
    # another labelled set (the folder: the run had no --load_size, so the 40 px images are
    # brought to the model's 28 px), an exported file scored on the run's own split by the
    # file, and the run's report rebuilt
    predicted, on_folder, on_file, rebuilt = run_clis(
        [
            ["tfclf.predict", [f"--model={model}", f"--csv={table}", str(folder)]],
            ["tfclf.evaluate", [f"--run_dir={run_dir}", f"--source=folder:{folder}"]],
            ["tfclf.evaluate", [f"--run_dir={run_dir}", f"--file={run_dir / 'best_model'}"]],
            ["tfclf.evaluate", [f"--run_dir={run_dir}", f"--out={tmp_path / 'report'}"]],
        ],
        tmp_path,
    )
    assert predicted["code"] == 0, predicted["stderr"][-2000:]
    assert "skipped" in predicted["stdout"] and "broken.png" in predicted["stdout"]
    acc = float(predicted["stdout"].split("accuracy ")[1].split()[0])
    assert acc > 0.5
    import csv

    rows = list(csv.DictReader(table.open()))
    names = result.data.class_names
    assert len(rows) == 40 and list(rows[0])[:4] == ["path", "label", "prediction", "probability"]
    assert sum(r["label"] == r["prediction"] for r in rows) / 40 == pytest.approx(acc)
    for r in rows:
        probs = [float(r[c]) for c in names]
        assert sum(probs) == pytest.approx(1, abs=1e-4)
        assert r["prediction"] == names[int(np.argmax(probs))]
        assert r["path"].split("/")[-2] == r["label"]
    from tfclf.export.load import load_classifier
    from tfclf.inference import classify, collect_images

    clf = load_classifier(str(model))
    items = collect_images([folder], clf.class_names)
    whole, kept, skipped = classify(clf, items)
    chunked, kept7, skipped7 = classify(clf, items, chunk=7)  # 41 files: 6 chunks and a 6th
    assert (kept7, skipped7) == (kept, skipped) and len(kept) == 40
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    # the same images, the same score
    assert on_folder["code"] == 0, on_folder["stderr"][-2000:]
    assert f"top-1 {acc:.4f}" in on_folder["stdout"]
    report = json.loads((run_dir / "report_on_digits" / "report.json").read_text())
    assert report["examples"] == 40 and report["split"] == f"folder:{folder}"
    assert on_file["code"] == 0, on_file["stderr"][-2000:]
    top1 = float(on_file["stdout"].split("top-1 ")[1].split()[0])
    report_top1 = json.loads((run_dir / "metrics.json").read_text())["top1"]
    assert top1 == pytest.approx(report_top1, abs=1e-4), (top1, report_top1)  # printed to 4 places
    assert rebuilt["code"] == 0, rebuilt["stderr"][-2000:]
    again = json.loads((tmp_path / "report" / "report.json").read_text())
    assert again["top1"] == pytest.approx(report_top1) and again["split"] == "val"
    assert (tmp_path / "report" / "confusion_matrix.png").exists()


PREDICT_WITHOUT_TF = """
import runpy, sys
sys.argv = ["tfclf.predict", *sys.argv[1:]]
try:
    runpy.run_module("tfclf.predict", run_name="__main__")
except SystemExit as e:
    assert e.code in (0, None), e.code
assert "tensorflow" not in sys.modules, "predict on a .tflite file imported TensorFlow"
"""


def test_predict_on_a_tflite_file_imports_no_tensorflow(run, tmp_path):
    """A .tflite file runs in LiteRT alone (tfclf.export.litert): predict starts in well
    under a second instead of importing TensorFlow for 4-5 s."""
    from PIL import Image

    run_dir, _, result = run
    deploy = keras.models.load_model(run_dir / "best_model" / "model.keras", compile=False)
    card = json.loads((run_dir / "best_model" / "model_card.json").read_text())
    model = tmp_path / "digits.tflite"
    model.write_bytes(tflite.convert(deploy, "float32", card=card))
    images, labels = result.data.val.images[:10], result.data.val.labels[:10]
    for i, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "set" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze(-1)).save(tmp_path / "set" / str(label) / f"{i}.png")
    proc = subprocess.run(
        [sys.executable, "-c", PREDICT_WITHOUT_TF, f"--model={model}", str(tmp_path / "set")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 10 labelled images (tflite" in proc.stdout, proc.stdout
    assert "XNNPACK delegate" not in proc.stderr  # LiteRT's INFO line (native_stderr)
    expected = (deploy.predict(images.astype("float32"), verbose=0).argmax(-1) == labels).mean()
    assert f"accuracy {expected:.4f}" in proc.stdout, (expected, proc.stdout)


def test_a_csv_list_is_read_as_trainings_csv_source_reads_it(tmp_path):
    """Predict's CSV inputs: ids without extensions found in --data_dir, labelled by a
    column of class names, unlabelled when the other column holds no classes, a missing
    file kept to be skipped by name, and a label column of unknown classes an error."""
    from PIL import Image

    from tfclf.inference import ImageError, collect_images, load_images

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a1", "b2", "c3"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / f"{name}.png")
    classes = ["cat", "dog"]
    labelled = tmp_path / "test.csv"
    labelled.write_text("id;Label\na1;dog\nb2;cat\ngone;cat\nc3;\n")  # semicolons, no extensions
    items = collect_images([labelled], classes, images)
    assert items == [
        (images / "a1.png", 1), (images / "b2.png", 0), (images / "gone", 0), (images / "c3.png", None)
    ]  # fmt: skip
    other = tmp_path / "other.csv"
    other.write_text("file,score\nimages/a1.png,0.3\nimages/b2.png,0.9\n")  # beside the CSV
    assert collect_images([other], classes) == [
        (images / "a1.png", None),
        (images / "b2.png", None),
    ]
    only = tmp_path / "ids.csv"
    only.write_text("id\na1\nc3\n")  # one column: just the images
    assert collect_images([only], classes, images) == [
        (images / "a1.png", None),
        (images / "c3.png", None),
    ]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("id,class\na1,cow\nb2,dog\n")
    with pytest.raises(ImageError, match="column 'class' holds cow, not classes of the model"):
        collect_images([unknown], classes, images)
    with pytest.raises(ImageError, match="no column of its first row .* names a file"):
        collect_images([labelled], classes)  # the images are not beside it
    pixels, kept, skipped = load_images(items, (8, 8, 1))
    assert pixels.shape == (3, 8, 8, 1) and [p.name for p, _ in kept] == [
        "a1.png",
        "b2.png",
        "c3.png",
    ]
    assert skipped == [(images / "gone", "no such file")]
