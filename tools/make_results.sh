#!/usr/bin/env bash
# Makes the runs behind docs/results.md, then the page and its plot from them:
#   bash tools/make_results.sh [OUT_DIR] [SEEDS...]      (default: runs/results, seeds 0 1 2)
# Runs one at a time (so each training time is a solo one) and skips a run that finished
# before, so a killed batch continues where it stopped. About 25 minutes on a 2-core
# AVX-512 machine for three seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/results}"
shift || true
seeds=("${@:-0 1 2}")
read -r -a seeds <<< "${seeds[*]}"
mkdir -p "$out/data"

train() {  # train NAME FLAGS...: one run into $out/NAME, its log beside it
    local name="$1"
    shift
    [[ -f "$out/$name/metrics.json" ]] && return
    echo "train $name"
    python -m tfclf.train "$@" --run_dir="$out/$name" --verbose=line --resume \
        > "$out/$name.log" 2>&1 || { tail -5 "$out/$name.log"; exit 1; }
}
tested() {  # tested NAME: the run scored on its test split (report_test/)
    [[ -f "$out/$1/report_test/report.json" ]] ||
        python -m tfclf.evaluate --run_dir="$out/$1" --split=test 2>&1 | tail -1
}

for s in "${seeds[@]}"; do
    train "quickstart_s$s" --flagfile=configs/quickstart.flags --seed="$s"
    train "tiny_mnist_s$s" --flagfile=configs/tiny_mnist.flags --seed="$s"
    train "report001_baseline_s$s" --flagfile=configs/report001_baseline.flags --seed="$s"
    train "se_resnet20_s$s" --flagfile=configs/se_resnet20_mnist.flags --seed="$s"
done
for run in "$out"/quickstart_s0 "$out"/tiny_mnist_s*/; do
    run="${run%/}"
    [[ -f "$run/compress/summary.json" ]] ||
        python -m tfclf.compress --run_dir="$run" --modes=int8 2>&1 | tail -1
done

# Transfer: the quick start's MNIST model fine-tuned on 48 and on 10 images a class of
# scikit-learn's digits (docs/transfer.md), against the same network from scratch
for per in 48 10; do
    data="$out/data/sk_digits$per.npz"
    [[ -f "$data" ]] || python tools/make_sklearn_digits.py --per_class="$per" --out="$data" 2>&1 | tail -1
    for s in "${seeds[@]}"; do
        train "sk${per}_scratch_s$s" --source="npz:$data" --batch_size=32 --epochs=30 --seed="$s"
        train "sk${per}_init_from_s$s" --source="npz:$data" --batch_size=32 --seed="$s" \
            --init_from="$out/quickstart_s0" \
            --stage="epochs=5 train=head lr=0.05" --stage="epochs=25 lr=0.02"
        tested "sk${per}_scratch_s$s"
        tested "sk${per}_init_from_s$s"
    done
done

runs=()
for f in "$out"/*/metrics.json; do runs+=("$(dirname "$f")"); done
python -m tfclf.results "${runs[@]}" --out=docs/results.md --plot=docs/results.png \
    --title="Results" --command="bash tools/make_results.sh $out ${seeds[*]}"
