"""A papermill engine: `papermill in.ipynb out.ipynb --engine dsenv -p ...` executes inside the notebook folder's
dsenv image, with the same provenance as `dsenv repro`."""
from __future__ import annotations

import tempfile
from pathlib import Path

try:
    from papermill.engines import Engine
except ImportError as e:  # pragma: no cover - papermill is what loads this module
    raise ImportError("the dsenv papermill engine needs papermill: pip install papermill") from e


class DsenvEngine(Engine):
    """Runs the (already parameterized) notebook with papermill inside the dsenv image of its folder."""

    @classmethod
    def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                         autosave_cell_every=30, **kwargs):
        """Execute `nb` in the image and return the executed notebook (papermill writes it to output_path)."""
        import nbformat

        from . import api, repro

        input_path = Path(kwargs.get("input_path") or ".").resolve()
        if input_path.suffix != ".ipynb" or not input_path.is_file():
            raise ValueError(f"--engine dsenv needs a local input notebook, not {input_path}")
        built = api.build(input_path.parent)
        timeout = int(kwargs.get("execution_timeout") or 600)
        with tempfile.NamedTemporaryFile("w", suffix=".ipynb", delete=False, encoding="utf-8") as f:
            nbformat.write(nb, f)
            parameterized = Path(f.name)
        try:
            executed, code, facts = repro.execute_in_image(
                input_path, input_path.parent, built.image_id, [], timeout=timeout,
                on_output=(lambda chunk: print(chunk, end="")) if log_output else None, source=parameterized)
        finally:
            parameterized.unlink(missing_ok=True)
        if executed is None:
            raise RuntimeError(f"papermill inside {built.tag} exited with code {code} and wrote no notebook")
        executed.metadata["papermill"] = {**nb.metadata.get("papermill", {}), **executed.metadata.get("papermill", {}),
                                          "parameters": nb.metadata.get("papermill", {}).get("parameters", {})}
        repro.add_provenance(executed, facts, input_path)
        return executed
