"""Entry modules of ``logdistill demo|distill|label|predict`` (``add_arguments`` + ``main``; light at import).

The registry is ``COMMANDS`` in :mod:`logdistill.cli`.
"""
