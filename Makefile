# Two commands on a fresh clone: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/django_rocket

.PHONY: demo test test-sqlite test-postgres lint format typecheck docs bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable . --group dev
	touch $@

demo: $(BIN)/.installed  ## Migrate the example project's SQLite database and run the scheduler.
	cd example_project && ../$(BIN)/python manage.py migrate --noinput
	@echo
	@echo "Scheduler starting. In another terminal, to see the runs in the admin:"
	@echo "  cd example_project && ../$(BIN)/python manage.py createsuperuser"
	@echo "  cd example_project && ../$(BIN)/python manage.py runserver  # then open http://127.0.0.1:8000/admin/"
	@echo
	cd example_project && ../$(BIN)/python manage.py runscheduler

# The whole suite on SQLite; again on PostgreSQL when DATABASE_URL points at one.
test: $(BIN)/.installed
	env -u DATABASE_URL $(BIN)/pytest $(PYTEST_ARGS)
	@case "$$DATABASE_URL" in \
	  postgres*) echo "--- again on PostgreSQL ($$DATABASE_URL)"; $(BIN)/pytest $(PYTEST_ARGS);; \
	  "") echo "DATABASE_URL is not set: PostgreSQL tests skipped (set DATABASE_URL=$(PG_URL) to run them).";; \
	  *) echo "DATABASE_URL=$$DATABASE_URL is not PostgreSQL; ran SQLite only.";; \
	esac

lint: $(BIN)/.installed  ## ruff, and the layer contracts of pyproject's [tool.importlinter]
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(BIN)/.installed
	$(BIN)/tox -e typecheck

docs: $(BIN)/.installed
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .tox docs/_build
