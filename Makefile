# Two commands (see README):
#   make demo   set up .venv and run the main job on the bundled sample clip
#   make test   lint, type-check, pytest and nbval over every notebook
#
# TORCH picks the PyTorch build. torch==2.13.0 from PyPI is a CUDA build on Linux x86_64,
# a CPU/MPS build on macOS; on a CPU-only Linux laptop, save 2 GB with
#   make demo TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN = $(VENV)/bin
# One torch/BLAS thread: TinyOmni's matrices are tiny, and extra threads on a busy 2-core machine
# spin and slow every step many times over (pass OMP_NUM_THREADS=2 to try).
export OMP_NUM_THREADS ?= 1
STAMP = $(VENV)/.installed

.PHONY: demo notebooks notebook-outputs html test lint typecheck pytest nbval wheel-demo clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/python -m pip install -e ".[notebooks,dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/omnimem demo

notebooks: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# Re-execute every notebook top to bottom and save its outputs, so GitHub shows the figures.
# (Sliders cannot render there: with OMNIMEM_STATIC set, notebooks draw static views instead.)
notebook-outputs: $(STAMP)
	for nb in notebooks/*.ipynb; do \
		OMNIMEM_STATIC=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=900 "$$nb" || exit 1; \
	done

# The committed, executed notebooks as static HTML pages (figures included), for reading without
# Jupyter: nothing is re-executed, so the pages show exactly the committed outputs.
HTML_DIR = build/html
html: $(STAMP)
	mkdir -p $(HTML_DIR)
	$(BIN)/jupyter nbconvert --to html --output-dir $(HTML_DIR) notebooks/*.ipynb
	@echo "open $(HTML_DIR)/00_synthetic_world.html"

lint: $(STAMP)
	$(BIN)/ruff check omnimem_ref tests notebooks
	$(BIN)/ruff format --check omnimem_ref tests

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q tests

nbval: $(STAMP)
	$(BIN)/python -m pytest -q --nbval-lax --nbval-cell-timeout=900 notebooks

# Installed from a wheel (not editable, run outside the checkout), `omnimem demo` with no
# arguments must still work: the package carries its checkpoint and regenerates the sample clips.
WHEEL_DIR = build/wheel
wheel-demo: $(STAMP)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation -q . -w $(WHEEL_DIR)
	$(BIN)/python -m pip install --no-deps -q --target $(WHEEL_DIR)/site $(WHEEL_DIR)/*.whl
	cd $(WHEEL_DIR) && PYTHONPATH=$(abspath $(WHEEL_DIR))/site OMNIMEM_CACHE=$(abspath $(WHEEL_DIR))/cache \
		$(abspath $(BIN))/python -c "import omnimem_ref, sys; assert 'site' in omnimem_ref.__file__, omnimem_ref.__file__; from omnimem_ref.cli import main; sys.exit(main(['demo', '--out', 'outputs']))"

test: lint typecheck pytest nbval wheel-demo

clean-venv:
	rm -rf $(VENV)
