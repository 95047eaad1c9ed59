"""The comparison report, in three jobs and one script.

* :mod:`report.verdicts` -- the statistics: which method beats which beyond the
  seed spread, per dataset, setting and rate, at each method's default cell,
  and what the other ablation cells change (no text, no PDF);
* :mod:`report.text` -- the sentences that state them, among them the short
  answer shared by page 1 of the PDF and the README;
* :mod:`report.layout` -- the reportlab layout of the PDF;
* :mod:`report.figures` -- the figures drawn from summary.csv (the ablation's included);
* ``report/build_report.py`` -- the script: ``parse_args()`` then ``main(args)``.
"""
