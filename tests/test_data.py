"""Sources, splits, normalisation, balancing and the training stream."""

import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfclf.data import (
    DataError,
    Normalizer,
    Split,
    class_weights,
    eval_dataset,
    load_source,
    stratified_split,
    train_dataset,
)


def test_builtin_mnist5k_is_real_digits():
    data = load_source("mnist5k")
    assert data.train.images.shape == (5000, 28, 28, 1)
    assert (data.train.counts(10) == 500).all()
    x = data.train.images.astype(np.float32) / 255
    # Real MNIST: mostly black background, bright strokes, centred mass; noise is none of these.
    assert 0.10 < x.mean() < 0.16
    assert (x == 0).mean() > 0.7
    centre = x[:, 8:20, 8:20].mean()
    border = np.concatenate([x[:, :3].ravel(), x[:, -3:].ravel()]).mean()
    assert centre > 5 * border
    # The same digit is more alike than different digits.
    mean_img = np.stack([x[data.train.labels == c].mean(0) for c in range(10)])
    assert np.linalg.norm(mean_img[1] - mean_img[7]) > 1.0


def test_stratified_split_report000():
    data = load_source("mnist5k")
    train, val = stratified_split(data.train, 0.2, seed=0)
    assert len(train) == 4000 and len(val) == 1000
    assert (val.counts(10) == 100).all()
    again, _ = stratified_split(data.train, 0.2, seed=0)
    np.testing.assert_array_equal(train.labels, again.labels)
    np.testing.assert_array_equal(train.images, again.images)
    other, _ = stratified_split(data.train, 0.2, seed=1)
    assert not np.array_equal(other.images, train.images)


def _write_folder(root):
    rng = np.random.default_rng(0)
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(root / "cat" / f"{i}.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 40), np.uint8), "L").save(root / "dog" / "gray.png")
    Image.fromarray(rng.integers(0, 255, (10, 12, 4), np.uint8), "RGBA").save(
        root / "dog" / "a.png"
    )
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).convert("P").save(
        root / "dog" / "pal.gif"
    )
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(root / "dog" / "b.bmp")
    good = root / "dog" / "full.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    (root / "dog" / "truncated.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (root / "dog" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "fake.jpg").write_bytes(b"this is not a jpeg")
    (root / "cat" / "notes.txt").write_text("hello")
    (root / "cat" / "zip.png").write_bytes(zlib.compress(b"garbage" * 10))


def test_folder_loader_skips_bad_files_and_converts(tmp_path, caplog):
    _write_folder(tmp_path)
    data = load_source(f"folder:{tmp_path}", channels=3, image_size=24)
    assert data.class_names == ["cat", "dog"]
    assert data.train.images.shape == (3 + 5, 24, 24, 3)
    assert list(data.train.counts(2)) == [3, 5]
    problems = {p.name: why for p, why in data.skipped}
    assert set(problems) == {"truncated.png", "empty.jpg", "fake.jpg", "notes.txt", "zip.png"}
    assert problems["empty.jpg"] == "empty file"
    assert "truncated" in problems["truncated.png"]
    gray = load_source(f"folder:{tmp_path}", channels=1, image_size=8)
    assert gray.train.images.shape[-1] == 1


def test_folder_channels_follow_the_images(tmp_path):
    """Without --channels a folder of grayscale images trains on 1 channel, not 3 copies; one
    colour image anywhere (here only in the test split) makes every split RGB, gray ones as
    R = G = B."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                gray = rng.integers(0, 255, (8, 8), np.uint8)
                Image.fromarray(gray, "L").save(tmp_path / split / cls / f"{i}.png")
    assert load_source(f"folder:{tmp_path / 'train'}").train.images.shape == (4, 8, 8, 1)
    data = load_source(str(tmp_path))
    assert data.train.images.shape[-1] == data.test.images.shape[-1] == 1
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(tmp_path / "test/a/c.png")
    data = load_source(str(tmp_path))
    assert data.train.images.shape == (4, 8, 8, 3) and data.test.images.shape == (5, 8, 8, 3)
    first = data.train.images[0]
    assert (first[..., 0] == first[..., 1]).all() and (first[..., 0] == first[..., 2]).all()
    assert load_source(str(tmp_path), channels=1).test.images.shape == (5, 8, 8, 1)


def test_folder_with_split_subfolders_and_empty_class(tmp_path):
    for split in ("train", "test"):
        _write_folder(tmp_path / split)
    data = load_source(str(tmp_path), image_size=16)
    assert data.test is not None and len(data.test) == len(data.train) == 8
    (tmp_path / "test" / "cow").mkdir()  # a class the training folder does not have
    with pytest.raises(DataError, match="has folder.s. cow that are not classes of the training"):
        load_source(str(tmp_path), image_size=16)
    (tmp_path / "test" / "cow").rmdir()
    bad = tmp_path / "bad"
    (bad / "empty_class").mkdir(parents=True)
    (bad / "ok").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad / "ok" / "x.png")
    (bad / "empty_class" / "broken.jpg").write_bytes(b"\xff\xd8broken")
    with pytest.raises(DataError, match="'empty_class'.*no usable image"):
        load_source(f"folder:{bad}", image_size=8)
    with pytest.raises(DataError, match="not found"):
        load_source(f"folder:{tmp_path / 'missing'}")


def _png16(path, gray16):
    """A 16-bit grayscale PNG (Pillow cannot write one)."""
    h, w = gray16.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in gray16)

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def test_photos_as_cameras_and_scanners_write_them(tmp_path):
    """16-bit grayscale PNGs are scaled to 8 bits as TF's own decoder does (Pillow's convert
    clipped them to white); a phone photo's EXIF orientation is applied; WebP is read; a
    large JPEG decoded at a reduced DCT scale matches the full decode; the ``__MACOSX``
    folder and ``._`` files of a zip made on a Mac are not data; predict decodes the same."""
    from tfclf.data.sources import decode_image
    from tfclf.inference import load_images

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    gradient = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    _png16(tmp_path / "a" / "deep.png", gradient)
    ours, problem = decode_image(tmp_path / "a" / "deep.png", None, None)
    assert problem is None and ours.shape == (16, 16, 1)
    tfs = tf.io.decode_png((tmp_path / "a" / "deep.png").read_bytes(), dtype=tf.uint8).numpy()
    np.testing.assert_array_equal(ours, tfs)
    assert (ours == 255).mean() < 0.01
    # a float TIFF in [0, 1] is scaled by 255; 32-bit integers beyond 16 bits are refused
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(tmp_path / "f.tif")
    floats, _ = decode_image(tmp_path / "f.tif", None, None)
    assert floats.min() == 0 and floats.max() == 255 and floats.shape == (8, 8, 1)
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(tmp_path / "i32.tif")
    assert "outside 16 bits" in decode_image(tmp_path / "i32.tif", None, None)[1]

    # A phone held upright stores a landscape sensor image and orientation 6 (turn 90° clockwise).
    sensor = np.zeros((40, 60, 3), np.uint8)
    sensor[:10, :10] = 255  # top-left of the sensor: top-right once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(sensor).save(tmp_path / "b" / "phone.jpg", exif=exif, quality=95)
    upright, _ = decode_image(tmp_path / "b" / "phone.jpg", 3, None)
    assert upright.shape == (60, 40, 3)
    assert upright[:8, -8:].mean() > 200 and upright[:8, :8].mean() < 50

    Image.fromarray(rng.integers(0, 255, (12, 12, 3), np.uint8)).save(tmp_path / "b" / "w.webp")
    (tmp_path / "__MACOSX" / "b").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "b" / "._phone.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (tmp_path / "b" / "._w.webp").write_bytes(b"\x00\x05\x16\x07 resource fork")
    data = load_source(f"folder:{tmp_path}", image_size=24)
    assert data.class_names == ["a", "b"] and list(data.train.counts(2)) == [1, 2]
    assert data.skipped == []
    assert data.train.images.shape == (3, 24, 24, 3)

    big = tmp_path / "big.jpg"
    y, x = np.mgrid[:768, :1024]
    smooth = np.stack([x / 4, y / 3, (x + y) / 7], -1) % 256
    Image.fromarray(smooth.astype(np.uint8)).save(big, quality=95)
    drafted, _ = decode_image(big, 3, 48)
    with Image.open(big) as im:
        full = np.asarray(im.convert("RGB").resize((48, 48), Image.BILINEAR))
    assert np.abs(drafted.astype(int) - full).mean() < 2
    predicted, kept, _ = load_images(
        [(big, None), (tmp_path / "a" / "deep.png", None)], (48, 48, 3)
    )
    np.testing.assert_array_equal(predicted[0], drafted)
    assert predicted[1].std() > 30  # the gradient, not a white square


def test_npz_source(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x=rng.integers(0, 255, (30, 8, 8, 3), np.uint8),
        y=np.arange(30) % 3,
        class_names=np.array(["a", "b", "c"]),
        x_test=np.zeros((6, 8, 8, 3), np.uint8),
        y_test=np.arange(6) % 3,
    )
    data = load_source(f"npz:{path}")
    assert data.class_names == ["a", "b", "c"] and len(data.test) == 6
    np.savez(tmp_path / "bad.npz", images=np.zeros(3))
    with pytest.raises(DataError, match="needs arrays 'x' and 'y'"):
        load_source(f"npz:{tmp_path / 'bad.npz'}")


def test_tfds_with_mock_data_and_missing_dataset(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        data = load_source("tfds:cifar10", data_dir=str(tmp_path))
    assert data.train.images.shape == (24, 32, 32, 3) and data.num_classes == 10
    assert len(data.class_names) == 10 and len(data.test) == 24
    with pytest.raises(DataError, match="not prepared under .*tfds build cifar10"):
        load_source("tfds:cifar10", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="--source=tfds:: a dataset name must follow the colon"):
        load_source("tfds:")
    with pytest.raises(DataError, match="'celeb_a' has no .image, label. pair of supervised"):
        load_source("tfds:celeb_a", data_dir=str(tmp_path))  # attributes, not one class


def test_load_resize_squashes_crops_or_pads_a_wide_image_the_same_in_training_and_predict(
    tmp_path,
):
    from tfclf.data.sources import decode_image, fit_arrays
    from tfclf.inference import load_images

    wide = np.zeros((8, 24), np.uint8)
    wide[:, 8:16] = 255  # a white centre between black thirds
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for cls in "ab":
        Image.fromarray(wide).save(tmp_path / cls / "wide.png")
    got = {}
    for mode in ("squash", "crop", "pad"):
        got[mode], problem = decode_image(tmp_path / "a" / "wide.png", 1, 16, mode)
        assert problem is None and got[mode].shape == (16, 16, 1)
        folder = load_source(f"folder:{tmp_path}", image_size=16, resize=mode).train.images
        predicted, _, _ = load_images(
            [(tmp_path / "a" / "wide.png", None)], (16, 16, 1), resize=mode
        )
        np.testing.assert_array_equal(folder[0], got[mode])
        np.testing.assert_array_equal(predicted[0], got[mode])
        np.testing.assert_array_equal(fit_arrays(wide[None, ..., None], 16, mode)[0], got[mode])
    squash, crop, pad = (got[m][..., 0].astype(int) for m in ("squash", "crop", "pad"))
    assert (crop[:, 1:-1] == 255).all()  # the centre square is the white third (its edge
    # columns blend with the black beyond, as the bilinear filter reaches past the crop)
    assert squash[:, :3].max() == 0 and squash[:, 7:9].min() == 255  # thirds stretched
    # the whole image, 16 wide and so 5-6 high, centred on black bars above and below
    assert pad[:5].max() == 0 and pad[-5:].max() == 0 and pad[7:9, 7:9].min() > 200
    assert abs(squash.mean() - 255 / 3) < 10 and pad.mean() < squash.mean() / 2


def _varsize_builder():
    """A TFDS dataset of images of random sizes, each one gray value, prepared offline."""
    import tensorflow_datasets as tfds

    class VarsizeGray(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {
                "image": tfds.features.Image(shape=(None, None, 3)),
                "shade": tfds.features.ClassLabel(names=["dark", "light"]),
            }
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(features),
                supervised_keys=("image", "shade"),  # not "label", as in smallnorb
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(24, 0), "test": self._generate_examples(6, 1)}

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                h, w = rng.integers(10, 40, 2)
                yield i, {"image": np.full((h, w, 3), 60 + 140 * (i % 2), np.uint8), "shade": i % 2}

    return VarsizeGray


def test_tfds_images_of_varying_size_are_resized_not_padded_with_black(tmp_path):
    # tfds.load(batch_size=...) pads each batch with black to its largest image: a dataset of
    # photos trained on 60-80 % black borders until tfclf read such datasets one by one
    builder = _varsize_builder()(data_dir=str(tmp_path))
    builder.download_and_prepare()
    with pytest.raises(DataError, match="different sizes .* --load_size=N"):
        load_source("tfds:varsize_gray", data_dir=str(tmp_path))
    data = load_source("tfds:varsize_gray", data_dir=str(tmp_path), image_size=16)
    assert data.train.images.shape == (24, 16, 16, 3) and data.test.images.shape == (6, 16, 16, 3)
    assert data.class_names == ["dark", "light"]
    for split in (data.train, data.test):  # one gray value each, no black anywhere
        for image, label in zip(split.images, split.labels):
            assert set(np.unique(image)) == {60 + 140 * label}
    padded = load_source("tfds:varsize_gray", data_dir=str(tmp_path), image_size=16, resize="pad")
    assert (padded.train.images == 0).any(axis=(1, 2, 3)).mean() > 0.8  # bars on non-square ones


def test_csv_source_as_kaggle_ships_it(tmp_path):
    # labels.csv beside a train_images/ folder, ids without their extension, string labels
    (tmp_path / "train_images").mkdir()
    rows = ["image_id,breed"]
    for i in range(12):
        value = 40 if i % 3 == 0 else 200
        Image.fromarray(np.full((10, 10), value, np.uint8)).save(
            tmp_path / "train_images" / f"img{i}.png"
        )
        rows.append(f"img{i},{'beagle' if i % 3 == 0 else 'akita'}")
    rows += ["gone,akita", "img0.png,"]  # a missing file; a row without a label
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="names a file in .*; pass the images' folder with"):
        load_source(f"csv:{tmp_path / 'labels.csv'}")
    data = load_source(f"csv:{tmp_path / 'labels.csv'}", data_dir=str(tmp_path / "train_images"))
    assert data.class_names == ["akita", "beagle"] and list(data.train.counts(2)) == [8, 4]
    assert data.train.images.shape == (12, 10, 10, 1)
    assert all(
        (img == (40 if y else 200)).all() for img, y in zip(data.train.images, data.train.labels)
    )
    assert sorted(why.split(" in ")[0] for _, why in data.skipped) == ["listed", "no label"]
    # three columns: the one named label is the label; integer labels sort as numbers
    lines = ["id,label,notes"] + [
        f"train_images/img{i}.png,{10 if i % 2 else 9},x" for i in range(12)
    ]
    (tmp_path / "numbers.csv").write_text("\n".join(lines))
    data = load_source(f"csv:{tmp_path / 'numbers.csv'}", image_size=6, resize="crop")
    assert data.class_names == ["9", "10"] and data.train.images.shape == (12, 6, 6, 1)
    semicolons = [line.replace(",", ";") for line in lines]  # a European spreadsheet's export
    (tmp_path / "semicolons.csv").write_text("\r\n".join(semicolons))
    assert load_source(f"csv:{tmp_path / 'semicolons.csv'}").class_names == ["9", "10"]
    # a split column assigns rows to train/val/test (a class may be missing from test)
    split_of = ["train"] * 8 + ["valid", "valid", "test", "test"]
    lines = ["split,file,label"] + [
        f"{sp},train_images/img{i}.png,{'ab'[i % 2]}" for i, sp in enumerate(split_of)
    ]
    (tmp_path / "splits.csv").write_text("\n".join(lines))
    data = load_source(f"csv:{tmp_path / 'splits.csv'}")
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)
    assert data.val.labels.tolist() == [0, 1] and data.class_names == ["a", "b"]
    (tmp_path / "no_train_b.csv").write_text(
        "\n".join(
            ["file,label,subset", "train_images/img0.png,a,train"]
            + ["train_images/img1.png,b,test"]
        )
    )
    with pytest.raises(DataError, match="class.es. b have no training image .column 'subset'"):
        load_source(f"csv:{tmp_path / 'no_train_b.csv'}")
    (tmp_path / "which.csv").write_text("id,a,b\ntrain_images/img0.png,1,2\n")
    with pytest.raises(DataError, match="which column is the label"):
        load_source(f"csv:{tmp_path / 'which.csv'}")
    (tmp_path / "short.csv").write_text(
        "id,label\ntrain_images/img0.png,a\ntrain_images/img1.png\n"
    )
    with pytest.raises(DataError, match="line.s. 3 do not have the header's 2 columns"):
        load_source(f"csv:{tmp_path / 'short.csv'}")
    (tmp_path / "unlabelled.csv").write_text("id,label\ntrain_images/img0.png,\n")
    with pytest.raises(DataError, match="its label column 'label' is empty"):
        load_source(f"csv:{tmp_path / 'unlabelled.csv'}")
    with pytest.raises(DataError, match="CSV file not found"):
        load_source(f"csv:{tmp_path / 'nowhere.csv'}")


def test_load_size_resizes_in_memory_sources_too():
    data = load_source("mnist5k", image_size=32)
    assert data.train.images.shape == (5000, 32, 32, 1)
    assert data.train.images[:, :8].mean() < data.train.images[:, 12:20].mean()


def test_normalizer_from_images_and_values():
    x = np.stack([np.full((4, 4), 0, np.uint8), np.full((4, 4), 255, np.uint8)])[..., None]
    n = Normalizer.from_images(np.concatenate([x, x], -1))
    np.testing.assert_allclose(n.mean, [0.5, 0.5])
    np.testing.assert_allclose(n.std, [0.5, 0.5], atol=1e-6)
    assert Normalizer.from_json(n.to_json()) == n
    assert Normalizer.from_values([0.49], [0.25], 3).mean == (0.49,) * 3
    with pytest.raises(ValueError):
        Normalizer.from_values([0.1, 0.2], [0.3, 0.3], 3)


def _skewed():
    labels = np.repeat([0, 1, 2], [200, 40, 10])
    images = labels.astype(np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
    return Split(images, labels)


def test_oversampling_balances_a_skewed_set():
    split = _skewed()
    stream = train_dataset(
        split, 3, Normalizer((0.0,), (1.0,)), batch_size=50, balance="oversample", seed=0
    )
    seen = np.zeros(3)
    for x, y in stream.dataset.take(stream.steps_per_epoch * 6):
        seen += y.numpy().sum(0)
        # labels and images still agree after the class-balanced draw
        np.testing.assert_array_equal(np.argmax(y, -1), np.round(x.numpy()[:, 0, 0, 0] * 255))
    frac = seen / seen.sum()
    np.testing.assert_allclose(frac, [1 / 3] * 3, atol=0.04)


def test_class_weights_equalise_class_mass():
    split = _skewed()
    w = class_weights(split.counts(3))
    np.testing.assert_allclose(w * split.counts(3), [250 / 3] * 3)
    stream = train_dataset(
        split, 3, Normalizer((0.0,), (1.0,)), batch_size=25, balance="class_weight"
    )
    x, y, sw = next(iter(stream.dataset))
    np.testing.assert_allclose(sw.numpy(), w[np.argmax(y.numpy(), -1)])


def test_training_stream_is_deterministic_and_resumable():
    data = load_source("mnist5k")
    split = data.train.subset(np.arange(600))
    norm = Normalizer.from_images(split.images)

    def batches(start_epoch, n):
        s = train_dataset(
            split,
            10,
            norm,
            batch_size=100,
            image_size=32,
            seed=7,
            augment="random_crop(4)|cutmix(0.5)",
            start_epoch=start_epoch,
        )
        return [b[0].numpy() for b in s.dataset.take(n)]

    full = batches(0, 12)  # two epochs of 6 steps
    np.testing.assert_array_equal(full[0], batches(0, 1)[0])
    resumed = batches(1, 6)
    for a, b in zip(full[6:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(full[0], full[6])  # epochs differ
    assert full[0].shape == (100, 32, 32, 1)
    # no autotuning thread: its sleep could stall the iterator teardown at the end of fit
    stream = train_dataset(split, 10, norm, batch_size=100)
    assert stream.dataset.options().autotune.enabled is False


def test_eval_dataset_keeps_order_and_last_batch():
    split = _skewed()
    ds = eval_dataset(split, 3, Normalizer((0.0,), (1.0,)), batch_size=64, image_size=8)
    ys = np.concatenate([np.argmax(y, -1) for _, y in ds])
    np.testing.assert_array_equal(ys, split.labels)
    x, _ = next(iter(ds))
    assert x.shape == (64, 8, 8, 1) and x.dtype == tf.float32
    assert ds.options().autotune.enabled is False


def test_transparent_pixels_are_shown_over_white(tmp_path):
    """Black strokes on a transparent background (what drawing apps export) were a black
    square once the alpha channel was dropped; they are composited over white, as viewers
    show them. White strokes on transparency come out blank and are skipped with a reason."""
    from tfclf.data.sources import decode_image

    stroke = np.zeros((16, 16), np.uint8)
    stroke[4:12, 7:9] = 255  # a "1"
    ink = np.zeros((16, 16, 4), np.uint8)
    ink[..., 3] = stroke  # black, opaque only where the stroke is
    Image.fromarray(ink, "RGBA").save(tmp_path / "black_ink.png")
    got, problem = decode_image(tmp_path / "black_ink.png", None, None)
    assert problem is None and got.shape == (16, 16, 3)
    assert (got[stroke == 255] == 0).all() and (got[stroke == 0] == 255).all()
    gray_ink = np.stack([np.zeros_like(stroke), stroke], -1)
    Image.fromarray(gray_ink, "LA").save(tmp_path / "gray_ink.png")
    got, _ = decode_image(tmp_path / "gray_ink.png", None, None)
    assert got.shape == (16, 16, 1) and got[8, 8, 0] == 0 and got[0, 0, 0] == 255
    palette = Image.fromarray(np.where(stroke == 255, 1, 0).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 200, 30, 30])
    palette.save(tmp_path / "transparent.gif", transparency=0)  # index 0 (black) transparent
    got, _ = decode_image(tmp_path / "transparent.gif", 3, None)
    assert tuple(got[0, 0]) == (255, 255, 255) and tuple(got[8, 8]) == (200, 30, 30)

    white = ink.copy()
    white[..., :3] = 255
    Image.fromarray(white, "RGBA").save(tmp_path / "white_ink.png")
    got, problem = decode_image(tmp_path / "white_ink.png", None, None)
    assert got is None and "blank once its transparent pixels are shown over white" in problem


def test_colour_files_of_gray_content_are_named_in_the_log(tmp_path, monkeypatch):
    from tfclf.data import sources

    said = []  # absl's handler may keep records from caplog, depending on test order
    monkeypatch.setattr(sources.logging, "info", lambda msg, *args: said.append(msg % args))
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            gray = rng.integers(0, 255, (8, 8, 1), np.uint8)
            Image.fromarray(np.repeat(gray, 3, -1)).save(tmp_path / cls / f"{i}.png")
    assert load_source(f"folder:{tmp_path}").train.images.shape[-1] == 3
    assert "colour files of gray content, 3 channels (--channels=1 trains on one)" in said[-1]
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(tmp_path / "a" / "c.png")
    load_source(f"folder:{tmp_path}")
    assert "colour images, 3 channels" in said[-1]
