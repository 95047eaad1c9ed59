"""The comparison report, in its parts and one script.

* :mod:`report.load` -- the runner's files of a results folder, read and checked
  (torn rows, required metric columns), newest configuration only;
* :mod:`report.verdicts` -- the statistics on those frames: which method beats which beyond the
  seed spread, per dataset, setting and rate, at each method's default cell,
  and what the other ablation cells change (no text, no PDF);
* :mod:`report.sections` -- what each verdict section reads and compares, as data
  (its table, methods, detail and answer metrics, table columns); one verdict path
  (report.verdicts.opponent_verdict) serves them all;
* :mod:`report.tables` -- the one table of mean ± std over seeds, as data
  (report.layout.render lays out every table);
* the sentences that state them, one job per module: :mod:`report.answer` (page 1's
  answer, shared with the README: one sentence, one table, their notes),
  :mod:`report.verdict_text` (what one verdict says, its findings and detail
  sentences), :mod:`report.ablation_text` (the ablation of the a-posteriori cells)
  and :mod:`report.setup_text` (the question, the rule, the set-up, the methods and
  the limitations);
* :mod:`report.formatting` -- the Markdown subset and the format of every number;
* :mod:`report.readme` -- the README's short-answer block between its markers;
* :mod:`report.layout` -- the reportlab layout of the PDF;
* :mod:`report.figures` -- the figures drawn from summary.csv (the ablation's included);
* ``report/build_report.py`` -- the script: ``parse_args()`` then ``main(args)``.
"""
