# Two commands on a fresh clone: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/django_rocket
MARIADB_URL ?= mysql://root@127.0.0.1:3306/django_rocket

.PHONY: demo test test-database lint format typecheck docs bench clean

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

# The whole suite on SQLite; again on PostgreSQL, MariaDB or MySQL when DATABASE_URL
# points at one.
test: $(BIN)/.installed
	env -u DATABASE_URL $(BIN)/pytest $(PYTEST_ARGS)
	@case "$$DATABASE_URL" in \
	  "") echo "DATABASE_URL is not set: PostgreSQL and MariaDB tests skipped (set DATABASE_URL=$(PG_URL) or $(MARIADB_URL) to run them).";; \
	  postgres*|mysql*) $(MAKE) --no-print-directory test-database;; \
	  *) echo "DATABASE_URL=$$DATABASE_URL is neither PostgreSQL nor MariaDB/MySQL; ran SQLite only.";; \
	esac

# The whole suite on DATABASE_URL's database alone (PostgreSQL, MariaDB or MySQL).
test-database: $(BIN)/.installed
	@case "$$DATABASE_URL" in \
	  postgres*) echo "--- again on PostgreSQL ($$DATABASE_URL)";; \
	  mysql*) $(MAKE) --no-print-directory $(BIN)/.mysqlclient || exit 1; \
	    echo "--- again on MariaDB/MySQL ($$DATABASE_URL)";; \
	  *) echo "DATABASE_URL=$$DATABASE_URL is neither PostgreSQL nor MariaDB/MySQL."; exit 2;; \
	esac
	$(BIN)/pytest $(PYTEST_ARGS)

# mysqlclient builds against the client library: libmariadb-dev and pkg-config on Debian.
$(BIN)/.mysqlclient: pyproject.toml $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --group mysql
	touch $@

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
	rm -rf $(VENV) .tox .tox-lane-b docs/_build
