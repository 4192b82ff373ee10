"""The HTML tolerance report and the terminal summary, built from recorded results (``conformance.results.records``).

``conformance.reports.summarize`` merges results files into cells (environment × implementation × check column)
and writes the one-screen terminal summary; ``conformance.reports.plots`` draws a cell's error/bound distribution;
``conformance.reports.render`` turns it all into one self-contained HTML page (``write_report``).
"""
