"""The write-up's numbers: tables, value markers, facts, and the report that regenerates
regularization.md."""
