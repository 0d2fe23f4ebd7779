"""``python -m synapses_study.forecast FILE``: the forecast of each run line of a sweep file
or a config (:mod:`synapses_study.forecast.predict`)."""

import sys

from .predict import main

sys.exit(main())
