"""Finished runs read: tidy tables, statistics and their families, feature selection, a run's
summary and its network scored, the birth-death demography."""
