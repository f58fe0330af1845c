"""Evaluation report: accuracy, per-class precision/recall/F1/support (report 002), confusion
matrix, well- and mis-classified examples per class (report 001), curves, model size.

Every number goes to ``report.json``; the figures are PNGs beside it, and ``report.md`` puts
the numbers a person reads first on one page: accuracy, the classes worst first, the most
confused pairs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tfclf.data import Normalizer, Split, eval_dataset
from tfclf.io import atomic_write_json, atomic_write_text
from tfclf.models import model_stats
from tfclf.models.summary import human
from tfclf.plots import figure, image_grid, save_figure


def predict_logits(
    model,
    split: Split,
    num_classes: int,
    normalizer: Normalizer | None,
    *,
    batch_size: int,
    image_size: int | None,
) -> np.ndarray:
    ds = eval_dataset(
        split, num_classes, normalizer, batch_size=batch_size, image_size=image_size
    ).map(lambda x, y: x)
    return model.predict(ds, verbose=0).astype(np.float64)


def classification_metrics(labels: np.ndarray, logits: np.ndarray, class_names) -> dict:
    """Top-1 (and top-5 above 10 classes), loss and per-class metrics from logits.

    Precision/recall/F1 are four lines of numpy on the confusion matrix, so no
    scikit-learn dependency is taken for them.
    """
    k = len(class_names)
    z = logits - logits.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    pred = logits.argmax(1)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (labels, pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    precision = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0
    )
    out = {
        "examples": int(len(labels)),
        "top1": float((pred == labels).mean()),
        "loss": float(-log_p[np.arange(len(labels)), labels].mean()),
        "macro_f1": float(f1.mean()),
        "per_class": [
            {
                "class": str(c),
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for c, p, r, f, s in zip(class_names, precision, recall, f1, support)
        ],
        "most_confused": most_confused(cm, class_names),
        "confusion_matrix": cm.tolist(),
    }
    if k > 10:
        top5 = np.argsort(-logits, 1)[:, :5]
        out["top5"] = float((top5 == labels[:, None]).any(1).mean())
    return out


def most_confused(cm: np.ndarray, class_names, top: int = 10) -> list[dict]:
    """The ``top`` largest off-diagonal cells: which class is taken for which, how often."""
    off = np.array(cm, dtype=np.int64)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    support = np.asarray(cm).sum(1)
    return [
        {
            "true": str(class_names[i]),
            "predicted": str(class_names[j]),
            "count": int(off[i, j]),
            "share_of_true": float(off[i, j] / support[i]),
        }
        for i, j in zip(*np.unravel_index(order, off.shape))
        if off[i, j] > 0
    ]


def worst_first(per_class: list[dict]) -> list[dict]:
    """Per-class rows by F1, lowest first (ties by class name)."""
    return sorted(per_class, key=lambda c: (c["f1"], c["class"]))


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def markdown_report(report: dict, curves: bool = False) -> str:
    """``report.json``'s headline numbers as a page to read: totals, every class worst F1
    first, the most confused pairs, the figures (``curves``: with ``curves.png``)."""
    m = report["model"]
    lines = [
        f"# Evaluation: {report['split']}"
        + (" split" if report["split"] in ("val", "test", "train") else "")
        + f", {report['examples']:,} images",
        "",
        f"top-1 **{100 * report['top1']:.2f} %**"
        + (f", top-5 {100 * report['top5']:.2f} %" if "top5" in report else "")
        + f", loss {report['loss']:.4f}, macro F1 {report['macro_f1']:.4f}",
        "",
        f"Model `{m['name']}`: {human(m['trainable_params'])} trainable parameters, "
        f"{human(m['macs'])} MACs an image at {report['image_size']} px"
        + "".join(f", {k} file {v / 1024:,.1f} KB" for k, v in m.get("files", {}).items()),
        "",
        "## Classes, worst F1 first",
        "",
        "| class | precision | recall | F1 | images |",
        "|---|---|---|---|---|",
    ]
    for c in worst_first(report["per_class"]):
        lines.append(
            f"| {_cell(c['class'])} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} "
            f"| {c['support']} |"
        )
    lines += ["", "## Most confused", ""]
    if report["most_confused"]:
        lines += ["| true | taken for | images | of the class |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(c['true'])} | {_cell(c['predicted'])} | {c['count']} | {100 * c['share_of_true']:.1f} % |"
            for c in report["most_confused"]
        ]
    else:
        lines.append("No mistakes.")
    lines += [
        "",
        "Figures: `per_class.png` (these scores as bars), `confusion_matrix.png`, `examples/` "
        "(per class: the most confident right and wrong images)"
        + (", `curves.png`" if curves else "")
        + ".",
        "",
    ]
    return "\n".join(lines)


def plot_confusion(cm: np.ndarray, class_names, path):
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(class_names)
    size = max(5, 0.45 * k)
    fig, axes = figure(1, 2, figsize=(2 * size + 1, size))
    for ax, m, title, fmt in (
        (axes[0], cm, "counts", "d"),
        (axes[1], norm, "normalised (rows)", ".2f"),
    ):
        im = ax.imshow(m, cmap="Blues")
        ax.set_title(title)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        # 0.45 inch a class leaves room for every name; the counts fit up to 30 classes
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
        if k <= 30:
            thresh = m.max() / 2
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        format(m[i, j], fmt),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if m[i, j] > thresh else "black",
                    )
        fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def plot_per_class(per_class: list[dict], path):
    """Every class's F1 as a bar with its precision and recall as ticks, worst F1 at the
    top, each labelled with its image count: which classes fail, and whether the rare ones
    do (report 002's 91 unbalanced classes)."""
    rows = worst_first(per_class)
    y = np.arange(len(rows))
    fig, ax = figure(figsize=(7, max(2.5, 0.22 * len(rows) + 1.2)))
    ax.barh(y, [c["f1"] for c in rows], color="tab:blue", alpha=0.5, label="F1")
    for key, colour in (("precision", "tab:green"), ("recall", "tab:red")):
        ax.plot([c[key] for c in rows], y, "|", color=colour, ms=9, mew=2, label=key)
    ax.set_yticks(y, [f"{c['class']} ({c['support']})" for c in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the worst at the top, no padding
    low = min(min(c[k] for k in ("f1", "precision", "recall")) for c in rows)
    start = max(0.0, np.floor((low - 0.02) * 10) / 10)
    ax.set_xlim(start, 1.0)
    ax.set_xlabel(f"score (the axis starts at {start:.1f})")
    ax.set_title("per class, worst F1 first (images in the split)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / fig.get_figheight()), ncol=3)
    return save_figure(fig, path)


def plot_curves(history: list[dict], path):
    """Loss and accuracy per epoch over all stages (stage changes as dashed lines)."""
    if not history:
        return None
    x = np.arange(1, len(history) + 1)
    fig, axes = figure(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--o")):  # val may skip epochs (--val_every)
            seen = [(i, h[prefix + key]) for i, h in zip(x, history) if prefix + key in h]
            if seen:
                ax.plot(*zip(*seen), style, ms=3, label=(prefix or "train_") + key)
        for i in range(1, len(history)):
            if history[i]["stage"] != history[i - 1]["stage"]:
                ax.axvline(i + 0.5, color="gray", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def example_grids(split: Split, logits: np.ndarray, class_names, out_dir: Path, per_kind: int = 8):
    """Per class: the most confident correct and most confident wrong predictions."""
    pred, conf = logits.argmax(1), logits.max(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(split.labels == c)
        good = idx[pred[idx] == c]
        bad = idx[pred[idx] != c]
        good = good[np.argsort(-conf[good])][:per_kind]
        bad = bad[np.argsort(-conf[bad])][:per_kind]
        chosen = list(good) + list(bad)
        if not chosen:
            continue
        titles = [f"ok: {class_names[pred[i]]}" for i in good] + [
            f"WRONG: {class_names[pred[i]]}" for i in bad
        ]
        safe = "".join(ch if ch.isalnum() else "_" for ch in str(name))
        paths.append(
            image_grid(
                split.images[chosen].astype(np.float32) / 255,
                titles,
                out_dir / f"class_{c:03d}_{safe}.png",
                cols=per_kind,
                title=f"class {name}: {len(good)} best correct, {len(bad)} most confident mistakes",
            )
        )
    return paths


def write_report(
    out_dir,
    model,
    split: Split,
    class_names,
    normalizer: Normalizer | None,
    *,
    image_size: int | None,
    batch_size: int = 256,
    history=None,
    split_name: str = "val",
    files: dict | None = None,
) -> dict:
    """Evaluates ``model`` on ``split`` and writes ``report.json`` and the figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logits = predict_logits(
        model, split, len(class_names), normalizer, batch_size=batch_size, image_size=image_size
    )
    metrics = classification_metrics(split.labels, logits, class_names)
    stats = model_stats(model)
    report = {
        "split": split_name,
        "image_size": image_size,
        **{k: v for k, v in metrics.items() if k != "confusion_matrix"},
        "model": {
            **stats.to_dict(),
            "files": {
                k: int(Path(v).stat().st_size) for k, v in (files or {}).items() if Path(v).exists()
            },
        },
        "confusion_matrix": metrics["confusion_matrix"],
    }
    plot_confusion(
        np.array(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png"
    )
    plot_per_class(metrics["per_class"], out_dir / "per_class.png")
    example_grids(
        split,
        logits,
        class_names,
        out_dir / "examples",
        per_kind=min(8, max(2, math.ceil(32 / len(class_names)))),
    )
    if history:
        plot_curves(history, out_dir / "curves.png")
    atomic_write_json(report, out_dir / "report.json")
    atomic_write_text(markdown_report(report, curves=bool(history)), out_dir / "report.md")
    return report
