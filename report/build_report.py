"""Build the comparison report (PDF) and the README's short answer from the runner's files.

    python report/build_report.py                          # report/report.pdf from experiments/results
    python report/build_report.py --setting quick          # report/report_quick.pdf from .../quick
    python report/build_report.py --readme README.md       # rewrite the README's short answer
    python report/build_report.py --check-readme README.md # exit 2 when that block is stale

Reads comparison.csv, summary.csv, the run records and the runner's figures of
one results folder (names in utils/paths.py), keeps the newest configuration of
every (dataset, setting, method, ablation cell, K), computes the verdicts on each
method's default cell and the ablation of the other cells (report/verdicts.py),
states them (report/answer.py, verdict_text.py, ablation_text.py,
setup_text.py) and lays out the PDF (report/layout.py), drawing
the summary and ablation figures (report/figures.py) into the results' figures/
folder. Every number in the text is computed from those files; configurations
that summary.csv lacks (a run still in progress) are summarised from comparison.csv.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from report import answer as AN
from report import batch_size, generation, kl_weight, readme, tuned, verdict_text
from report.figures import plot_headline
from report.formatting import display_path
from report.layout import build_story, make_styles, write_pdf
from report.load import load_results
from report.sections import Extra, present_extras
from report.verdicts import all_ablations, all_verdicts
from utils import metric_registry as R
from utils.cli import make_parser, run_main
from utils.errors import UserError
from utils.paths import SETTINGS, ResultPaths, report_pdf, results_dir

# Sections beyond comparison.csv, as report.sections.Extra entries; each is skipped
# while its CSV is absent.
EXTRAS: tuple[Extra, ...] = (tuned.EXTRA, generation.EXTRA, tuned.GENERATION_EXTRA,
                             kl_weight.EXTRA, batch_size.EXTRA)


def parse_args(argv=None):
    """--setting, --results-dir, --out, --figures-dir, --readme / --check-readme."""
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--setting", choices=SETTINGS, default="full",
                   help="which results the defaults of --results-dir and --out point to")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="folder with comparison.csv, summary.csv, the run records and figures/ "
                        "(default: experiments/results, or experiments/results/quick)")
    p.add_argument("--out", type=Path, default=None,
                   help="the PDF to write (default: report/report.pdf, or report/report_quick.pdf)")
    p.add_argument("--figures-dir", type=Path, default=None,
                   help="where the figures drawn from summary.csv go (default: the results' "
                        "figures/ folder)")
    readme_flags = p.add_mutually_exclusive_group()
    readme_flags.add_argument("--readme", type=Path, default=None,
                        help="rewrite the short answer between this README's markers; no PDF")
    readme_flags.add_argument("--check-readme", type=Path, default=None,
                        help="exit 2 when this README's short answer differs from the results; "
                             "no PDF")
    args = p.parse_args(argv)
    args.results_dir = args.results_dir or results_dir(args.setting)
    args.out = args.out or report_pdf(args.setting)
    args.figures_dir = args.figures_dir or ResultPaths(args.results_dir).figures
    return args


def sync_readme(path: Path, block: str, *, check: bool, others: dict[str, str] | None = None) -> None:
    """Rewrite (atomically) or, with ``check``, verify the README's short-answer block
    and the ``others`` blocks ({name: content}) whose markers it has."""
    if not path.is_file():
        raise UserError(f"{path} not found")
    current = path.read_text()
    updated = readme.replace_readme_block(current, block)
    for name, content in (others or {}).items():
        updated = readme.replace_optional_block(updated, name, content)
    if check:
        if updated != current:
            raise UserError(f"the generated blocks in {path} are stale; run python report/build_report.py "
                            f"--readme {path}")
        print(f"{path}: generated blocks up to date", file=sys.stderr)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(updated)
    os.replace(tmp, path)
    print(f"wrote the generated blocks into {path}", file=sys.stderr)


def main(args):
    """Read the results, compute the verdicts; write the README block, or the PDF."""
    results = load_results(args.results_dir)
    readme_path = args.readme or args.check_readme
    if readme_path:
        answer = AN.short_answer(results, all_verdicts(results), EXTRAS, all_ablations(results))
        block = readme.readme_block(answer, Path(display_path(args.out)))
        sync_readme(readme_path, block, check=args.check_readme is not None,
                    others=readme.generated_blocks(args.results_dir))
        return
    pages = write_pdf(report_story(results, args.figures_dir), args.out)
    print(f"wrote {args.out} ({pages} pages)", file=sys.stderr)


def report_story(results, figures_dir: Path) -> list:
    """The PDF's flowables from ``results`` (report.layout.build_story), the
    figures drawn from summary.csv into ``figures_dir``."""
    verdicts, ablations = all_verdicts(results), all_ablations(results)
    answer = AN.short_answer(results, verdicts, EXTRAS, ablations)
    return build_story(results, verdicts, answer, headline_figure(results, verdicts), figures_dir,
                       make_styles(), EXTRAS, ablations)


def headline_figure(results, verdicts):
    """Page 1's figure (report.figures.plot_headline) over every group with a
    verdict, at every rate, from the rows page 1's table reads (the tuned rows of a
    dataset and method in place of its fixed-budget ones), with the generation rows
    where they exist; None without a verdict."""
    groups = list(dict.fromkeys((v.dataset, v.setting) for v in verdicts if v.against))
    if not groups:
        return None
    tables = AN.answer_tables(results, present_extras(results, EXTRAS))
    contests = list(dict.fromkeys(v.contest for v in verdicts if v.against))
    return plot_headline(tables[R.COMPARISON],
                         [(d, s, verdict_text.group_label(results, d, s)) for d, s in groups], contests,
                         tables.get(R.GENERATION))


if __name__ == "__main__":
    sys.exit(run_main(main, parse_args()))
