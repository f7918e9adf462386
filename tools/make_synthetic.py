"""Writes synthetic copies of the FER datasets in their real on-disk formats.

    python tools/make_synthetic.py --dataset=all --out=input/synthetic --num=200
    python tools/make_synthetic.py --dataset=affectnet --num=50 --bad_rows="missing image=2,nan value=1"

Each dataset goes to ``<out>/<dataset>/`` (the layout ``input/README.md``
describes), so ``make_reader(<dataset>, "<out>/<dataset>")`` reads it.  The
expected record and skip counts per split are printed and written to
``<out>/<dataset>/expected_counts.json``.
"""

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ferkeras.data.readers import canonical_name  # noqa: E402
from ferkeras.data.synthetic_datasets import BAD_ROW_KINDS, WRITERS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "all", f"one of {sorted(WRITERS)} or 'all' (also accepted: the aliases of "
                    "ferkeras.data.readers.canonical_name, e.g. rafdb, affwild2; any case, '-' for '_')")
flags.DEFINE_string("out", "input/synthetic", "output folder; each dataset goes to <out>/<dataset>/")
flags.DEFINE_integer("num", 200, "good records in the training split (other splits get num/4)")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_bool("overwrite", False, "delete an existing <out>/<dataset>/ folder first")
flags.DEFINE_string("bad_rows", "0",
                    "bad rows to inject in the training split: a count spread over the kinds the dataset "
                    "supports, or 'kind=n,kind=n' (kinds: missing image, corrupt image, invalid label, "
                    "bad landmarks, nan value; FERPlus also: no image name, unknown or non-face, no majority)")


def parse_bad_rows(text: str):
    """'3' -> 3; 'missing image=2,nan value=1' -> {'missing image': 2, 'nan value': 1}."""
    text = text.strip()
    if "=" not in text:
        try:
            return int(text or 0)
        except ValueError:
            raise app.UsageError(f"--bad_rows must be an integer or 'kind=n,...', got '{text}'")
    out = {}
    for part in text.split(","):
        kind, _, count = part.partition("=")
        try:
            out[kind.strip()] = int(count)
        except ValueError:
            raise app.UsageError(f"--bad_rows: '{part}' is not 'kind=n'")
    return out


def writer_name(name: str) -> str:
    """The dataset name (a key of WRITERS, the reader's name) that ``name`` spells, aliases included; a UsageError
    naming it otherwise."""
    try:
        canonical = canonical_name(name)
    except ValueError as e:
        raise app.UsageError(f"--dataset={name}: {e}; or 'all'") from None
    if canonical not in WRITERS:
        raise app.UsageError(f"--dataset={name}: no synthetic writer for {canonical}; choose from {sorted(WRITERS)} "
                             "or 'all'")
    return canonical


def main(argv):
    del argv
    names = sorted(WRITERS) if FLAGS.dataset == "all" else [writer_name(FLAGS.dataset)]
    bad_rows = parse_bad_rows(FLAGS.bad_rows)
    for name in tqdm(names, desc="datasets", unit="dataset"):
        root = Path(FLAGS.out) / name
        if FLAGS.overwrite and root.is_dir():
            shutil.rmtree(root)
        wanted = bad_rows
        if isinstance(bad_rows, dict) and FLAGS.dataset == "all":  # skip kinds a dataset cannot hold
            wanted = {k: n for k, n in bad_rows.items() if k in BAD_ROW_KINDS[name]}
        try:
            result = WRITERS[name](root, num=FLAGS.num, seed=FLAGS.seed, bad_rows=wanted)
        except (ValueError, FileExistsError) as e:  # a bad-row kind the dataset cannot hold; a used folder
            raise app.UsageError(str(e))
        counts = {split: {"records": s["records"], "skips": s["skips"]} for split, s in result["splits"].items()}
        (root / "expected_counts.json").write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n")
        logging.info("%s -> %s: %s", name, root, counts)


if __name__ == "__main__":
    app.run(main)
