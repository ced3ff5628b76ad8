"""atlas_eda's benchmark suite, run by ``make bench`` (``python -m benchmarks.run``).

Every figure is measured in one run beside a same-run reference on the raw library it is
built on: these machines are shared and noisy, so ratios compare, absolute times do not
(the few absolute targets come from the issues and are printed as such). Nothing here is
collected by pytest: timing never decides a unit test.
"""
