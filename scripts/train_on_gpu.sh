#!/usr/bin/env bash
# Retrain TinyOmni on the hard world for streams of any length (docs/training.md) on one GPU, and
# measure its accuracy at full memory against clip length, 1 to 60 minutes.
#
#   scripts/train_on_gpu.sh train   OUT_DIR [STEPS] [CLIPS_AT_40S]   about 11 min (16-core host)
#   scripts/train_on_gpu.sh lengths OUT_DIR [CLIPS_PER_LENGTH]       about 2.5 min
#   scripts/train_on_gpu.sh all     OUT_DIR                          both, one after the other
#   scripts/train_on_gpu.sh shipped OUT_DIR                          the shipped checkpoint's recipe
#   scripts/train_on_gpu.sh long    OUT_DIR [STEPS]                  warm start, short + long clips
#   scripts/train_on_gpu.sh versus  OUT_DIR BASE [CLIPS_PER_LENGTH]  OUT_DIR against BASE, 1-60 min
#
# train    the recipe of omnimem_ref/checkpoints/tinyomni-hard: hard world, half the batches
#          stretched to stand for clips up to an hour, time features without the ramp, with the
#          log time and periods up to 8192 s, questions that carry the time they are asked at,
#          counting attention spread evenly over each instance's onset, patch tokens that see
#          their neighbours, the evidence loss at 0.3 (docs/training.md, "The frame-context
#          run"); STEPS (default 6000) of CLIPS_AT_40S clips (default 16) at 40 s. The GPU is not
#          the bottleneck for a 1M-parameter model, rendering fresh clips is: all but two cores
#          render batches. A hard batch takes 1.3 s to render on one core (0.75 s classic), so
#          14 workers give ~0.11 s a step: 6000 steps ~ 11 min with the start-up (estimated, not
#          measured). It saves every 500 steps; run the same command again after a cut (e.g. the
#          10-minute limit of one command) and it resumes, ending with the weights an
#          uninterrupted run has. OUT_DIR ends holding only the checkpoint (config.json,
#          model.safetensors, tokenizer.json, training.json): copy it over
#          omnimem_ref/checkpoints/tinyomni-hard. The log goes to OUT_DIR.log. TRAIN_OPTIONS adds
#          train-tiny options: the next run to try is a larger backbone,
#          TRAIN_OPTIONS="--layers 6 --width 256" (not yet timed on a GPU).
# lengths  for each clip length in LENGTHS (default 60 300 600 1800 3600 s), generates
#          CLIPS_PER_LENGTH clips of its world (default 4, one folder each, every core at once: the
#          hour-long ones take ~90 s each) and streams each through OUT_DIR at full memory (several
#          at once on the GPU). It prints the table of accuracy against clip length, overall and
#          per family, and writes OUT_DIR.lengths/accuracy_by_length.{json,txt,png}. Folders
#          already done are skipped, so it resumes too.
# shipped  the recipe of omnimem_ref/checkpoints/tinyomni: train-tiny's defaults (classic world,
#          6000 steps, nothing stretched, the original time features), 407 s on an H100 host.
# long     a warm start from INIT_FROM (default omnimem_ref/checkpoints/tinyomni-hard-fourth):
#          STEPS (default 1600) at half the fourth schedule's peak learning rate, saving every
#          50. The first half draws the fourth's own clip lengths (16-120 s); in the second half
#          SHORT_SHARE (0.5) of the steps still do, the rest draw real clips of up to LONG_MAX
#          seconds (1800): a CPU pilot on long clips alone forgot the short ones (docs/training.md,
#          "Thirty minutes: what a CPU cannot train", which explains why this needs a GPU). A long
#          batch is two clips of up to 16,200 tokens each; rendering, not the GPU, sets the pace
#          (two 30-minute clips take ~14 s on one core, so ~1 s a long step with 14 workers, and
#          the whole run about 7 min, estimated). Resumes like train.
# versus   generates CLIPS_PER_LENGTH new clips (default 10; seeds seconds x 1000 + k, none of
#          them a test clip) of each length in LENGTHS (default 60 1800 3600), streams each through
#          OUT_DIR and through BASE at full memory, and prints both accuracies per length and
#          OUT_DIR's change with its 95% paired interval over clips (OUT_DIR.versus/versus.txt).
#          These clips are for choosing; the README's tables come from the test clips after.
#
# Environment: PYTHON (python3), DEVICE (cuda), WORKERS (nproc - 2), LENGTHS, WORLD (of the
# length sweep; default the world OUT_DIR was trained on), EVAL_JOBS (8: evaluations at once),
# LENGTHS_DIR (OUT_DIR.lengths; OUT_DIR.versus for versus), INIT_FROM, LONG_MAX, SHORT_SHARE.
# The shipped model's curve on its own (classic) world:
#   LENGTHS_DIR=runs/shipped.lengths scripts/train_on_gpu.sh lengths omnimem_ref/checkpoints/tinyomni
set -euo pipefail
usage="usage: scripts/train_on_gpu.sh train|lengths|all|shipped|long|versus OUT_DIR [...]"
phase=${1:?$usage}
out=${2:?$usage}
out=${out%/}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHON=${PYTHON:-python3} DEVICE=${DEVICE:-cuda}
omnimem() { "$PYTHON" -m omnimem_ref.cli "$@"; }
export -f omnimem

# Train into $out with train-tiny options "$@", or resume the unfinished run there.
train_or_resume() {
    local workers=${WORKERS:-$(($(nproc) > 3 ? $(nproc) - 2 : 1))}
    if [[ -d "$out/resume" ]]; then
        echo "resuming the unfinished run in $out"
        omnimem train-tiny --resume "$out" --device "$DEVICE" --threads 2 --log-file "$out.log"
    elif [[ -f "$out/training.json" ]]; then
        echo "$out already holds a finished run; delete it to train again"
    else
        omnimem train-tiny --out "$out" --device "$DEVICE" --threads 2 --log-file "$out.log" \
            --workers "$workers" "$@"
    fi
}

train() {
    train_or_resume --world hard --stretch-share 0.5 --stretch-seconds 3600 \
        --time-periods 8,32,128,512,2048,8192 --no-time-ramp --time-log --question-time \
        --count-target spread --frame-context --evidence-weight 0.3 \
        --steps "${1:-6000}" --batch "${2:-16}" --save-every 500 \
        ${TRAIN_OPTIONS:-}  # e.g. TRAIN_OPTIONS="--layers 6 --width 256"
}

# The hard-world checkpoint trained on, on short and long real clips (top of this file, "long").
long() {
    train_or_resume --init-from "${INIT_FROM:-omnimem_ref/checkpoints/tinyomni-hard-fourth}" \
        --seed 6 --lr 0.0005 --min-seconds 16 --curriculum-seconds 120 \
        --max-seconds "${LONG_MAX:-1800}" --short-share "${SHORT_SHARE:-0.5}" \
        --steps "${1:-1600}" --save-every 50
}

# One hard-world clip of $1 seconds, seed $2, in its own folder (skipped if already there).
generate_one() {
    local folder="$LENGTHS_DIR/${1}s/seed$2"
    [[ -f "$folder/questions.json" ]] && return
    mkdir -p "$(dirname "$folder")"
    if ! omnimem generate --out "$folder" --n 1 --seed "$2" --world "$WORLD" --duration "$1" \
        --overwrite > "$folder.log" 2>&1; then
        tail -n 1 "$folder.log" >&2
        return 1
    fi
}
export -f generate_one

# Every question of one folder's clip answered at full memory, to $ANSWERS (answers.json) beside it.
EVALUATE_ONE=$(cat <<'EOF'
import json, sys, warnings
from pathlib import Path
import torch
from omnimem_ref.evaluation import evaluate
from omnimem_ref.model.checkpoint import load_model

checkpoint, folder, device, answers_file = sys.argv[1:5]
torch.set_num_threads(1)
warnings.simplefilter("ignore")  # a clip longer than training saw: that is the measurement
model, tokenizer = load_model(checkpoint)
result = evaluate(model.to(device), tokenizer, folder, "full", None, progress=False)
seconds = json.loads((Path(folder) / "manifest.json").read_text())["parameters"]["duration"]
answers = {"seconds": seconds, "predictions": result.predictions}
(Path(folder) / answers_file).write_text(json.dumps(answers))
EOF
)
export EVALUATE_ONE
evaluate_one() {
    local answers=${ANSWERS:-answers.json}
    [[ -f "$2/$answers" ]] || "$PYTHON" -c "$EVALUATE_ONE" "$1" "$2" "$DEVICE" "$answers"
}
export -f evaluate_one

# The table, the JSON and the figure of accuracy against clip length.
SUMMARISE=$(cat <<'EOF'
import json, os, sys
from collections import defaultdict
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
from omnimem_ref.benchmark.records import families_of
from omnimem_ref.plots import plot_accuracy_vs_length

checkpoint, root = Path(sys.argv[1]), Path(sys.argv[2])
hits = defaultdict(lambda: defaultdict(list))
for path in root.glob("*/*/answers.json"):
    answers = json.loads(path.read_text())
    for p in answers["predictions"]:
        hits[answers["seconds"]][p["family"]].append(p["prediction"] == p["answer"])
rows = []
for seconds in sorted(hits):
    every = [h for family in hits[seconds].values() for h in family]
    by_family = {f: sum(h) / len(h) for f, h in hits[seconds].items()}
    n_by_family = {f: len(h) for f, h in hits[seconds].items()}
    rows.append({"seconds": seconds, "n": len(every), "accuracy": sum(every) / len(every),
                 "by_family": by_family, "n_by_family": n_by_family})
families = families_of(r["by_family"] for r in rows)
lines = [f"{'clip length':>11}{'questions':>11}{'all':>7}" + "".join(f"{f:>10}" for f in families)]
for r in rows:
    cells = "".join(f"{100 * r['by_family'][f]:>10.1f}" if f in r["by_family"] else f"{'-':>10}"
                    for f in families)
    lines.append(f"{r['seconds']:>10g}s{r['n']:>11}{100 * r['accuracy']:>7.1f}{cells}")
config = json.loads((checkpoint / "training.json").read_text())["train_config"]
title = (f"TinyOmni ({checkpoint.name}) at full memory, {os.environ['WORLD']} world; "
         f"training clips up to {config['max_seconds']:g} s"
         + (f", stretched to {config['stretch_seconds']:g} s" if config.get("stretch_share") else ""))
text = "\n".join([title, "accuracy (%) against clip length", *lines])
print(text)
(root / "accuracy_by_length.txt").write_text(text + "\n")
(root / "accuracy_by_length.json").write_text(json.dumps(rows, indent=1))
ax = plot_accuracy_vs_length(rows, trained_seconds=config["max_seconds"])
ax.set_title(title, fontsize=9)
ax.figure.savefig(root / "accuracy_by_length.png", dpi=150, bbox_inches="tight")
EOF
)

# OUT_DIR's and BASE's answers on the same clips: accuracy per length, and the paired change.
COMPARE=$(cat <<'EOF'
import json, sys
from collections import defaultdict
from pathlib import Path
from omnimem_ref.stats import paired_bootstrap

root, new, base = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
by_length = defaultdict(lambda: ([], [], []))  # base hits, new hits, the clip of each question
for folder in sorted(p.parent for p in root.glob("*/*/answers_new.json")):
    runs = [json.loads((folder / f"answers_{w}.json").read_text()) for w in ("base", "new")]
    base_hits, new_hits, clips = by_length[runs[0]["seconds"]]
    for a, b in zip(*(r["predictions"] for r in runs), strict=True):
        base_hits.append(a["prediction"] == a["answer"])
        new_hits.append(b["prediction"] == b["answer"])
        clips.append(folder.name)
lines = [f"full memory on the same new clips: {new} (new) against {base} (base)",
         f"{'clip length':>11}{'clips':>7}{'questions':>11}{'base':>7}{'new':>7}"
         "  change [95% paired interval over clips]"]
for seconds in sorted(by_length):
    base_hits, new_hits, clips = by_length[seconds]
    change = paired_bootstrap(base_hits, new_hits, clips)
    base_accuracy, new_accuracy = (100 * sum(h) / len(clips) for h in (base_hits, new_hits))
    lines.append(f"{seconds:>10g}s{len(set(clips)):>7}{len(clips):>11}"
                 f"{base_accuracy:>7.1f}{new_accuracy:>7.1f}"
                 f"  {change.estimate:+.1f} [{change.low:+.1f}, {change.high:+.1f}]")
text = "\n".join(lines)
print(text)
(root / "versus.txt").write_text(text + "\n")
EOF
)

# "seconds seed" for CLIPS_PER_LENGTH ($2) clips of each length in LENGTHS, seeds seconds x $1
# + k, the longest first so that they do not finish last.
clip_jobs() {
    for seconds in ${LENGTHS:-60 300 600 1800 3600}; do
        for k in $(seq 1 "$2"); do echo "$seconds $((seconds * $1 + k))"; done
    done | sort -k1,1nr
}

# Generate the clips of the "seconds seed" lines $1 (every core at once) and stream each through
# checkpoint $2 at full memory, EVAL_JOBS at a time.
generate_and_evaluate() {
    xargs -P "$(nproc)" -n 2 bash -c 'generate_one "$@"' _ <<< "$1"
    awk -v root="$LENGTHS_DIR" '{print root "/" $1 "s/seed" $2}' <<< "$1" \
        | xargs -P "${EVAL_JOBS:-8}" -I{} bash -c 'evaluate_one "$1" "$2"' _ "$2" {}
}

trained_world() {
    "$PYTHON" -c "import json, sys
print(json.load(open(sys.argv[1]))['train_config'].get('world', 'classic'))" "$1/training.json"
}

lengths() {
    export LENGTHS_DIR=${LENGTHS_DIR:-$out.lengths}
    export WORLD=${WORLD:-$(trained_world "$out")}
    mkdir -p "$LENGTHS_DIR"
    generate_and_evaluate "$(clip_jobs 100 "${1:-4}")" "$out"
    "$PYTHON" -c "$SUMMARISE" "$out" "$LENGTHS_DIR"
}

versus() {
    local base=${1:?usage: scripts/train_on_gpu.sh versus OUT_DIR BASE [CLIPS_PER_LENGTH]} jobs
    export LENGTHS_DIR=${LENGTHS_DIR:-$out.versus} LENGTHS=${LENGTHS:-60 1800 3600}
    export WORLD=${WORLD:-$(trained_world "$out")}
    mkdir -p "$LENGTHS_DIR"
    jobs=$(clip_jobs 1000 "${2:-10}")
    ANSWERS=answers_new.json generate_and_evaluate "$jobs" "$out"
    ANSWERS=answers_base.json generate_and_evaluate "$jobs" "$base"
    "$PYTHON" -c "$COMPARE" "$LENGTHS_DIR" "$out" "$base"
}

case "$phase" in
    train) train "${@:3}" ;;
    lengths) lengths "${@:3}" ;;
    all) train && lengths ;;
    shipped) train_or_resume ;;
    long) long "${@:3}" ;;
    versus) versus "${@:3}" ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
