"""Turning records into tables: collect, statistics, the leaderboard model, its
renderers (Markdown, CSV, LaTeX, JSON, the HTML site), plots and published results.

Reporting reads records and never imports the engine or torch, so ``kdbench report``
starts in well under a second and runs where no GPU stack is installed.
"""
