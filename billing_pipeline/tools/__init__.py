"""Development tools: sample generator, FOCUS conformance runner, benchmark, demo.

Never imported by the code location (`definitions.py`); a test asserts it.
"""
