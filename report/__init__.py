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
* :mod:`report.text` -- the sentences that state them, among them the short
  answer shared by page 1 of the PDF and the README;
* :mod:`report.formatting` -- the Markdown subset and the format of every number;
* :mod:`report.readme` -- the README's short-answer block between its markers;
* :mod:`report.layout` -- the reportlab layout of the PDF;
* :mod:`report.figures` -- the figures drawn from summary.csv (the ablation's included);
* ``report/build_report.py`` -- the script: ``parse_args()`` then ``main(args)``.
"""
