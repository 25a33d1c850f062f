"""The reports' parts: tables, figures, findings in words, the index page."""
