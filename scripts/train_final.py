"""Train notebook 06's final model on a profile without Jupyter: the notebook's own library
calls, for a machine that has torch but not the notebook stack (a lent GPU machine).

    MINBERT_REPORTS_DIR=out python scripts/train_final.py --profile full -p checkpoint /path/to/bert

Writes out/results/06_final_bert.json (with its run stamp) and the prediction files under
out/predictions/06_final_bert/; prints the dev scores and each aim's state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from minbert import reporting  # noqa: E402
from minbert.bert import load_tokenizer  # noqa: E402
from minbert.config import load_params, parse_override, validate  # noqa: E402
from minbert.experiments import (  # noqa: E402
    final_run_options,
    load_multitask,
    run_strategy,
    save_multitask_predictions,
)
from minbert.study import FINAL_AIMS  # noqa: E402
from minbert.training import pick_device, seed_everything  # noqa: E402

NOTEBOOK = "06_final_bert"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    args = parser.parse_args(argv)
    overrides = {key: parse_override(value) for key, value in args.param}
    cfg = validate(NOTEBOOK, load_params(NOTEBOOK, args.profile, overrides))
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    stamp = reporting.RunStamp(cfg.model_dump(), cfg.seed, device)
    tokenizer = load_tokenizer(cfg.checkpoint)
    data = load_multitask(cfg, tokenizer, cross_encoder=cfg.mode == "cross-encoder")
    record, model = run_strategy(cfg, cfg.strategy, data, NOTEBOOK, device, run_name="final",
                                 mode=cfg.mode, run_options=final_run_options(cfg))
    save_multitask_predictions(model, data, "final", NOTEBOOK, cfg, device)
    print("\n".join(reporting.aim_findings(record, FINAL_AIMS)))
    checks = {"aims": FINAL_AIMS, "aims_met": reporting.aims_met(record, FINAL_AIMS)}
    path = reporting.save_results(NOTEBOOK, cfg.profile, stamp, data.summary, [record], checks=checks)
    print(f"wrote {path}; {stamp.as_dict()['wall_s']} s on {stamp.device}")


if __name__ == "__main__":
    main()
