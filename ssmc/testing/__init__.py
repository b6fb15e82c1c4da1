"""Testing support: the tolerance table, the comparison rule, the differential check used by
tests and by ``ssmc run --check``, and hypothesis strategies."""
