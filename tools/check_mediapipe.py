"""Runs a tfclf ``.tflite`` file in MediaPipe Tasks' ``ImageClassifier``, the on-device
runtime Android and iOS apps call, on a labelled folder (one sub-folder per class), with the
class names read from the file's own TFLite Support metadata. It prints what MediaPipe
reads from the metadata, its top-1 accuracy and what its scores are (the top one's mean,
and the range of a result's sum over the classes: 1 for probabilities):

    python3.11 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==1.2.3 pillow
    /tmp/mp/bin/python tools/check_mediapipe.py runs/photos/compress/trained_int8.tflite PHOTOS/

MediaPipe runs in its own environment: it needs absl-py 2, and TF-MOT 0.8.1 (so tfclf)
pins absl-py 1. This script imports neither tfclf nor TensorFlow. MediaPipe's classifier
takes RGB models only (it refuses a 1-channel input tensor), and it reports the file's
outputs as "scores": logits for tfclf files unless ``tfclf.compress --probabilities`` made
them end in a softmax.

MediaPipe squashes the whole image to the model's size (its ImageToTensorCalculator keeps
no aspect ratio). A model trained with ``--load_resize=crop`` (the file's tfclf card says
so) is given the centred square as its region of interest, and a ``pad`` model its image
already padded and resized to the model's size with Pillow, as tfclf does, which is what
an app calling MediaPipe has to do for such a model (docs/deploy.md: padding the image at
its own size and letting MediaPipe shrink it cost 4.6 points).
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def prepare(image, resize: str, size: tuple[int, int]):
    """(image, region of interest) for MediaPipe that give the model what tfclf's
    ``--load_resize`` gave it in training; ``size``: the model's (width, height)."""
    from mediapipe.tasks.python.components.containers.rect import RectF
    from PIL import ImageOps

    w, h = image.size
    if resize == "pad":
        return ImageOps.pad(image, size, Image.BILINEAR, color=0), None
    if resize == "crop" and w != h:
        dx, dy = (1 - min(w, h) / w) / 2, (1 - min(w, h) / h) / 2
        return image, RectF(left=dx, top=dy, right=1 - dx, bottom=1 - dy)
    return image, None


def main(model: str, folder: str) -> int:
    import mediapipe as mp
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
    from mediapipe.tasks.metadata import schema_py_generated as schema
    from mediapipe.tasks.python import BaseOptions, vision

    blob = Path(model).read_bytes()
    root = schema.Model.GetRootAs(blob, 0)
    entries = {
        root.Metadata(i).Name(): root.Metadata(i).Buffer() for i in range(root.MetadataLength())
    }
    if b"TFLITE_METADATA" not in entries:
        sys.exit(
            f"error: {model} has no TFLITE_METADATA (written by tfclf.compress 0.1.0 and later)"
        )
    data = root.Buffers(entries[b"TFLITE_METADATA"]).DataAsNumpy().tobytes()
    info = meta.ModelMetadataT.InitFromObj(meta.ModelMetadata.GetRootAs(data, 0))
    image = info.subgraphMetadata[0].inputTensorMetadata[0]
    norm = image.processUnits[0].options
    output = info.subgraphMetadata[0].outputTensorMetadata[0]
    print(
        f"metadata: model {info.name.decode()}, input {image.name.decode()} (colour space "
        f"{image.content.contentProperties.colorSpace}, mean {norm.mean.tolist()}, std "
        f"{norm.std.tolist()}), output {output.name.decode()}, labels in "
        f"{output.associatedFiles[0].name.decode()}"
    )
    card = json.loads(root.Buffers(entries[b"tfclf_model_card"]).DataAsNumpy().tobytes())
    resize = card["input"].get("resize", {}).get("mode", "squash")
    _, model_h, model_w, _ = card["input"]["shape"]
    print(f"resize: {resize} (the file's tfclf card)")
    if image.content.contentProperties.colorSpace == meta.ColorSpaceType.GRAYSCALE:
        sys.exit(f"error: {model} takes grayscale images; MediaPipe's classifier takes RGB only")
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model))
    classifier = vision.ImageClassifier.create_from_options(options)
    right = total = 0
    tops, sums = [], []
    for class_dir in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in EXTENSIONS):
            image, roi = prepare(Image.open(path).convert("RGB"), resize, (model_w, model_h))
            result = classifier.classify(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.asarray(image)),
                vision.ImageProcessingOptions(region_of_interest=roi),
            )
            categories = result.classifications[0].categories  # every class, best first
            right += categories[0].category_name == class_dir.name
            total += 1
            tops.append(categories[0].score)
            sums.append(sum(c.score for c in categories))
    classifier.close()
    if not total:
        sys.exit(f"error: no images in class sub-folders of {folder}")
    print(f"MediaPipe ImageClassifier: top-1 {right / total:.4f} on {total} images ({model})")
    print(
        f"scores: the top one's mean {np.mean(tops):.3f}; a result's sum over the classes "
        f"{min(sums):.3f} to {max(sums):.3f}"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
