"""Train notebook 06's final model on a profile without Jupyter: the same library call as the
notebook (`experiments.final_model`), for a machine that has torch but not the notebook stack
(a lent GPU machine).

    MINBERT_REPORTS_DIR=out python scripts/train_final.py --profile full -p checkpoint /path/to/bert

Writes out/results/06_final_bert.<profile>.json (with its run stamp) and the prediction files
under out/predictions/06_final_bert.<profile>/; prints the dev scores and each aim's state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from minbert import records, reporting  # noqa: E402
from minbert.config import load_config, parse_override  # noqa: E402
from minbert.experiments import FINAL_AIMS, final_model  # noqa: E402
from minbert.runtime import Runtime  # noqa: E402

NOTEBOOK = "06_final_bert"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    args = parser.parse_args(argv)
    cfg = load_config(NOTEBOOK, args.profile, {key: parse_override(value) for key, value in args.param})
    runtime = Runtime.resolve(cfg.device, cfg.precision, cfg.seed)
    stamp = records.start_run(NOTEBOOK, cfg, runtime)
    final = final_model(cfg, runtime, NOTEBOOK)
    print("\n".join(reporting.aim_findings(final.record, FINAL_AIMS)))
    path = records.save_results(NOTEBOOK, cfg.profile, stamp, final.data.summary, final.runs,
                                checks=final.checks())
    print(f"wrote {path}; {stamp.as_dict()['wall_s']} s on {stamp.device}")


if __name__ == "__main__":
    main()
